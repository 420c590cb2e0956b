//! The container side of burrow's systemd integration: the `run`/`create` flags for it
//! (`--sdnotify`, `--replace`, healthchecks), what is recorded of them, and the store
//! location a unit must be told when it differs from a login session's.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use burrow_storage::{ContainerState, StorePaths};
use serde::{Deserialize, Serialize};

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct SystemdArgs {
    /// Control sd-notify behaviour: conmon (READY=1 once the container runs; the monitor as MAINPID), container (the container's own READY=1 is passed through), ignore
    #[arg(long, value_name = "MODE")]
    pub sdnotify: Option<String>,
    /// If a container with the same name exists, replace it
    #[arg(long)]
    pub replace: bool,
    /// Set a healthcheck command for the container ('none' disables the image's)
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Interval between healthchecks (default 30s; 'disable' for none)
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Consecutive failures before the container is unhealthy (default 3)
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time for the container to start before failures count (default 0s)
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Longest a healthcheck may run before it counts as failed (default 30s)
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// What to do when the container turns unhealthy: none, kill, restart, stop
    #[arg(long = "health-on-failure", value_name = "ACTION")]
    pub health_on_failure: Option<String>,
}

/// `--sdnotify`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SdNotify {
    #[default]
    Conmon,
    Container,
    Ignore,
}

impl SdNotify {
    pub fn parse(text: &str) -> anyhow::Result<SdNotify> {
        Ok(match text {
            "conmon" => SdNotify::Conmon,
            "container" => SdNotify::Container,
            "ignore" => SdNotify::Ignore,
            _ => bail!("invalid --sdnotify {text:?}: must be conmon, container or ignore"),
        })
    }
}

/// `--health-on-failure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthAction {
    #[default]
    None,
    Kill,
    Restart,
    Stop,
}

/// A container's healthcheck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// As Docker's `Test`: `["CMD-SHELL", "cmd"]` or `["CMD", "arg", ...]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
    pub on_failure: HealthAction,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemdOptions {
    pub sdnotify: SdNotify,
    pub health: Option<HealthConfig>,
    /// burrow's command line that created the container, as Podman's CreateCommand.
    pub create_command: Vec<String>,
}

/// A Go-style duration: `30s`, `1m30s`, `500ms`, `2h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("invalid duration {text:?}: expected e.g. 30s, 1m30s, 500ms");
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(n * factor);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The HEALTHCHECK of a Docker image config (`config.Healthcheck`; OCI configs have none):
/// its test, and interval, timeout, start period and retries when set.
#[derive(Debug, Default, PartialEq)]
struct ImageHealthcheck {
    test: Vec<String>,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    start_period: Option<Duration>,
    retries: Option<u32>,
}

fn image_healthcheck(config_json: Option<&str>) -> Option<ImageHealthcheck> {
    let v: serde_json::Value = serde_json::from_str(config_json?).ok()?;
    let h = v.get("config")?.get("Healthcheck")?;
    let test: Vec<String> = serde_json::from_value(h.get("Test")?.clone()).ok()?;
    // ["NONE"] disables a check inherited from a base image.
    if test.is_empty() || test[0] == "NONE" {
        return None;
    }
    let nanos = |k: &str| {
        h.get(k)
            .and_then(serde_json::Value::as_u64)
            .filter(|&n| n > 0)
            .map(Duration::from_nanos)
    };
    Some(ImageHealthcheck {
        test,
        interval: nanos("Interval"),
        timeout: nanos("Timeout"),
        start_period: nanos("StartPeriod"),
        retries: h
            .get("Retries")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n as u32)
            .filter(|&n| n > 0),
    })
}

fn health_config(args: &SystemdArgs, image_config: Option<&str>) -> anyhow::Result<Option<HealthConfig>> {
    let image = image_healthcheck(image_config);
    let test = match (args.health_cmd.as_deref(), &image) {
        (Some("none"), _) => return Ok(None),
        (None, Some(image)) => image.test.clone(),
        (None, None) => {
            let any = args.health_interval.is_some()
                || args.health_retries.is_some()
                || args.health_timeout.is_some()
                || args.health_start_period.is_some()
                || args.health_on_failure.is_some();
            if any {
                bail!("healthcheck flags need --health-cmd (or an image with a HEALTHCHECK)");
            }
            return Ok(None);
        }
        // A JSON array is the exec form; anything else runs in a shell.
        (Some(cmd), _) => match serde_json::from_str::<Vec<String>>(cmd) {
            Ok(v) if v.first().is_some_and(|f| f == "CMD" || f == "CMD-SHELL") => v,
            Ok(v) if !v.is_empty() => std::iter::once("CMD".to_string()).chain(v).collect(),
            _ => vec!["CMD-SHELL".into(), cmd.to_string()],
        },
    };
    let image = image.unwrap_or_default();
    let interval = match args.health_interval.as_deref() {
        Some("disable") => Duration::ZERO,
        Some(t) => parse_duration(t)?,
        None => image.interval.unwrap_or(Duration::from_secs(30)),
    };
    let on_failure = match args.health_on_failure.as_deref().unwrap_or("none") {
        "none" => HealthAction::None,
        "kill" => HealthAction::Kill,
        "restart" => HealthAction::Restart,
        "stop" => HealthAction::Stop,
        other => bail!("invalid --health-on-failure {other:?}: must be none, kill, restart or stop"),
    };
    let retries = args.health_retries.or(image.retries).unwrap_or(3);
    if retries == 0 {
        bail!("healthcheck-retries must be greater than 0");
    }
    Ok(Some(HealthConfig {
        test,
        interval,
        timeout: args
            .health_timeout
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .or(image.timeout)
            .unwrap_or(Duration::from_secs(30)),
        start_period: args
            .health_start_period
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .or(image.start_period)
            .unwrap_or(Duration::ZERO),
        retries,
        on_failure,
    }))
}

/// Checks the flags, applies `--replace` (removes the container of that name), and
/// returns what to record.
pub fn prepare(
    engine: &Engine,
    args: &SystemdArgs,
    name: Option<&str>,
    image_config_json: Option<&str>,
) -> anyhow::Result<SystemdOptions> {
    let sdnotify = args
        .sdnotify
        .as_deref()
        .map(SdNotify::parse)
        .transpose()?
        .unwrap_or_default();
    let health = health_config(args, image_config_json)?;
    if args.replace {
        let Some(name) = name else {
            bail!("cannot replace container without --name being set");
        };
        let store = &engine.store;
        if let Ok(mut old) = store.container(name) {
            store.refresh_state(&mut old)?;
            if old.state == ContainerState::Running {
                crate::commands::stop::stop_container(store, &mut old, Some(0))?;
            }
            crate::commands::network::remove_container(store, &old.id, false)
                .with_context(|| format!("replacing container {name}"))?;
        }
    }
    Ok(SystemdOptions {
        sdnotify,
        health,
        create_command: std::env::args().collect(),
    })
}

/// The global options (`--root`, `--runroot`) a unit's burrow commands need to reach this
/// store: none when it is where a login session's burrow finds it, as systemd runs units
/// with the user's plain environment (HOME, `XDG_RUNTIME_DIR=/run/user/UID`).
pub fn unit_global_args(paths: &StorePaths, uid: u32, global: &GlobalOptions) -> Vec<String> {
    let defaults = login_defaults(uid);
    let mut out = Vec::new();
    if global.root.is_some() || defaults.as_ref().map(|d| &d.graph_root) != Some(&paths.graph_root) {
        out.extend(["--root".to_string(), paths.graph_root.display().to_string()]);
    }
    if global.runroot.is_some() || defaults.as_ref().map(|d| &d.run_root) != Some(&paths.run_root) {
        out.extend(["--runroot".to_string(), paths.run_root.display().to_string()]);
    }
    out
}

/// The store paths a login session of `uid` would use (HOME from the password database,
/// no XDG overrides but `XDG_RUNTIME_DIR=/run/user/UID`).
fn login_defaults(uid: u32) -> Option<StorePaths> {
    let home = nix::unistd::User::from_uid(uid.into()).ok().flatten()?.dir;
    let runtime = format!("/run/user/{uid}");
    let conf = |dir: &str| home.join(".config").join(dir).join("storage.conf");
    // A storage.conf in the real config dir moves the store for units too.
    if conf("burrow").exists() || conf("containers").exists() {
        return None;
    }
    Some(StorePaths {
        graph_root: home.join(".local/share/burrow/storage"),
        run_root: PathBuf::from(runtime).join("burrow"),
    })
}

/// The burrow binary and global options that a unit runs.
pub fn unit_burrow(paths: &StorePaths, uid: u32, global: &GlobalOptions) -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/local/bin/burrow".into());
    std::iter::once(exe)
        .chain(unit_global_args(paths, uid, global))
        .collect()
}

/// The transient unit a detached container's monitor should run as: with `systemd`
/// wanted, a user manager reachable, and burrow not already running as part of a unit
/// (whose container it then is).
pub fn monitor_unit(id: &str, systemd: bool) -> Option<String> {
    use burrow_systemd::scope;
    (systemd && !scope::in_service_unit() && scope::user_manager_reachable()).then(|| scope::service_name(id))
}

/// For a detached start that will ask for a unit (see [`monitor_unit`]), before the user
/// namespace is joined: a connection to the manager, whose handshake it answers meanwhile;
/// for [`start_monitor_service`].
pub fn connect_for_unit(systemd: bool) -> Option<burrow_systemd::bus::Connection> {
    monitor_unit("", systemd)?;
    burrow_systemd::bus::Connection::user_early().ok()
}

/// Once a container runs under a plain monitor though `systemd` was wanted, because no user
/// manager is reachable: the notice that logout may end it (none if the user lingers).
pub fn notice_no_manager(id: &str, systemd: bool) -> Option<String> {
    use burrow_systemd::scope;
    if !systemd || scope::in_service_unit() || scope::user_manager_reachable() {
        return None;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    // Lingering users keep their processes after logout: nothing to warn about.
    let lingers = std::path::Path::new("/var/lib/systemd/linger")
        .join(&user)
        .exists();
    (!lingers).then(|| {
        format!(
            "NOTICE: no systemd user manager reachable: container {} runs under a plain monitor, which logout may end (`loginctl enable-linger` keeps it)",
            &id[..12.min(id.len())]
        )
    })
}

/// The environment burrow's units run with: what burrow reads to find the user's store,
/// manager and configuration. Not the rest of the shell's: variables such as NOTIFY_SOCKET
/// or INVOCATION_ID are the shell's unit's, and tokens and the like have no business in a
/// unit file (nor does the manager need to parse them at every start).
pub fn unit_environment() -> Vec<String> {
    const NAMES: &[&str] = &[
        "HOME",
        "PATH",
        "USER",
        "LOGNAME",
        "LANG",
        "TMPDIR",
        "DBUS_SESSION_BUS_ADDRESS",
        "REGISTRY_AUTH_FILE",
    ];
    const PREFIXES: &[&str] = &["XDG_", "LC_", "BURROW_", "CONTAINERS_"];
    std::env::vars()
        .filter(|(k, _)| NAMES.contains(&k.as_str()) || PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// The descriptors a monitor run as a unit gets: the go pipe as its stdin, the ready pipe as
/// its stdout, its log as its stderr.
pub struct MonitorStdio {
    pub go: std::os::fd::RawFd,
    pub ready: std::os::fd::RawFd,
    pub log: std::os::fd::RawFd,
}

/// Asks for `argv` (a monitor with `--ready-on-stdout --go-on-stdin`) to run as transient
/// service `unit` for container `id`, on `bus` if connected already; the manager's answer is
/// read by [`burrow_systemd::scope::StartingService::wait`].
pub fn start_monitor_service(
    bus: Option<burrow_systemd::bus::Connection>,
    unit: &str,
    id: &str,
    argv: &[String],
    stdio: &MonitorStdio,
    stop_timeout: u32,
) -> Result<burrow_systemd::scope::StartingService, burrow_systemd::bus::BusError> {
    let service = burrow_systemd::scope::TransientService {
        name: unit,
        description: &format!("burrow container {id}"),
        argv,
        environment: unit_environment(),
        stdout: stdio.ready,
        stderr: stdio.log,
        // The monitor stops the container with its own timeout first.
        stop_timeout: Duration::from_secs(u64::from(stop_timeout) + 10),
    };
    let bus = match bus {
        Some(bus) => bus,
        None => burrow_systemd::bus::Connection::user_early()?,
    };
    burrow_systemd::scope::begin_service(bus, &service, Some(stdio.go))
}

/// Where the container finds its notify socket (`--sdnotify=container`).
const CONTAINER_NOTIFY_SOCKET: &str = "/run/notify/notify.sock";

/// `--sdnotify=container`: a socket of the monitor's own, bind-mounted into the container
/// and named in its environment. The monitor passes what the container sends on to the
/// unit's socket as its own (with MAINPID), as conmon does: systemd then never has to
/// find the unit of a short-lived sender (a `systemd-notify` that exits at once is dropped
/// when its pid is gone before the manager reads the message). One socket serves every
/// start of the container by this monitor (restart policy, healthcheck restart).
pub struct NotifyProxy {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    unit_socket: String,
    spawned: bool,
}

impl NotifyProxy {
    /// Binds the socket in the container's bundle.
    pub fn bind(bundle: &std::path::Path, unit_socket: &str) -> anyhow::Result<NotifyProxy> {
        let dir = bundle.join("notify");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        // Through the directory's descriptor: the bundle's path may exceed a socket address.
        let dir_fd = std::fs::File::open(&dir)?;
        let short = format!(
            "/proc/self/fd/{}/notify.sock",
            std::os::fd::AsRawFd::as_raw_fd(&dir_fd)
        );
        let socket = std::os::unix::net::UnixDatagram::bind(&short)
            .with_context(|| format!("binding {}", path.display()))?;
        Ok(NotifyProxy {
            socket,
            path,
            unit_socket: unit_socket.to_string(),
            spawned: false,
        })
    }

    /// Mounts the socket into the container of `spec` and names it in its environment; for
    /// every start, as the spec is loaded anew each time.
    pub fn mount_into(&self, spec: &mut oci_spec::runtime::Spec) -> anyhow::Result<()> {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(
            oci_spec::runtime::MountBuilder::default()
                .destination(CONTAINER_NOTIFY_SOCKET)
                .source(&self.path)
                .typ("bind")
                .options(vec![
                    "bind".to_string(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                ])
                .build()?,
        );
        spec.set_mounts(Some(mounts));
        if let Some(process) = spec.process_mut().as_mut() {
            let mut env = process.env().clone().unwrap_or_default();
            env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
            env.push(format!("NOTIFY_SOCKET={CONTAINER_NOTIFY_SOCKET}"));
            process.set_env(Some(env));
        }
        Ok(())
    }

    /// Passes messages on from a thread of their own, started once the container first runs
    /// (no thread may exist while the monitor forks it; messages sent before wait in the
    /// socket). Later calls do nothing: the thread serves the restarts too.
    pub fn spawn_once(&mut self) -> anyhow::Result<()> {
        if self.spawned {
            return Ok(());
        }
        let socket = self.socket.try_clone()?;
        let unit_socket = self.unit_socket.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let mut state: Vec<&str> = text.lines().filter(|l| !l.starts_with("MAINPID=")).collect();
                let main = format!("MAINPID={}", std::process::id());
                state.push(&main);
                if let Err(e) = burrow_systemd::notify(&unit_socket, &state.join("\n")) {
                    eprintln!("WARN: passing on the container's notification: {e}");
                }
            }
        });
        self.spawned = true;
        Ok(())
    }
}

/// Tells the unit that the monitor is its main process, and (conmon) that it is ready.
pub fn notify_started(socket: &str, mode: SdNotify) {
    let state = format!("MAINPID={}", std::process::id());
    let state = match mode {
        SdNotify::Conmon => format!("{state}\nREADY=1"),
        SdNotify::Container => state,
        SdNotify::Ignore => return,
    };
    if let Err(e) = burrow_systemd::notify(socket, &state) {
        eprintln!("WARN: {e}");
    }
}

/// If a systemd service of the user's (not burrow's own transient `burrow-ID.service`, and
/// not the one this process runs in, as its ExecStop=) runs the container's monitor, stops
/// that unit and waits for the container to end: true then.
pub fn stop_through_unit(c: &burrow_storage::ContainerRecord, timeout: u32) -> anyhow::Result<bool> {
    use burrow_systemd::scope;
    let Some(unit) = c.monitor_pid.and_then(scope::unit_of_pid) else {
        return Ok(false);
    };
    let ours = scope::unit_of_pid(std::process::id() as i32);
    if !unit.ends_with(".service")
        || unit == scope::service_name(&c.id)
        || ours.as_deref() == Some(unit.as_str())
    {
        return Ok(false);
    }
    let Ok(mut bus) = burrow_systemd::bus::Connection::user() else {
        return Ok(false);
    };
    bus.stop_unit(&unit)
        .with_context(|| format!("stopping unit {unit} of container {}", c.name))?;
    if let Some(pid) = c.pid {
        // The unit's ExecStop= stops the container (its own timeout), then systemd kills.
        crate::commands::stop::wait_exit(pid, Duration::from_secs(u64::from(timeout) + 90));
    }
    Ok(true)
}

/// The container ids in `--cidfile` files (`stop`, `rm`); with `ignore`, a missing file is
/// skipped, as Podman's units expect on a stop after a failed start.
pub fn read_cidfiles(files: &[PathBuf], ignore: bool) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) if !text.trim().is_empty() => ids.push(text.trim().to_string()),
            Ok(_) if ignore => {}
            Err(e) if ignore && e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(_) => bail!("reading CIDFile {}: the file is empty", file.display()),
            Err(e) => bail!("reading CIDFile {}: {e}", file.display()),
        }
    }
    Ok(ids)
}

/// Whether `e` says that no container has the name or id asked for.
pub fn is_no_such_container(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<burrow_storage::StoreError>(),
        Some(burrow_storage::StoreError::NoSuchContainer(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn health_flags() {
        let args = SystemdArgs {
            health_cmd: Some("wget -q -O- http://127.0.0.1/".into()),
            health_interval: Some("1s".into()),
            health_on_failure: Some("restart".into()),
            ..Default::default()
        };
        let h = health_config(&args, None).unwrap().unwrap();
        assert_eq!(h.test[0], "CMD-SHELL");
        assert_eq!(
            (h.interval, h.retries, h.on_failure),
            (Duration::from_secs(1), 3, HealthAction::Restart)
        );
        let bad = SystemdArgs {
            health_on_failure: Some("explode".into()),
            health_cmd: Some("true".into()),
            ..Default::default()
        };
        assert!(health_config(&bad, None).is_err());
        let orphan = SystemdArgs {
            health_retries: Some(2),
            ..Default::default()
        };
        assert!(health_config(&orphan, None).is_err());
    }

    #[test]
    fn image_healthcheck_is_the_default() {
        let config = r#"{"config":{"Healthcheck":{"Test":["CMD-SHELL","wget -q localhost"],"Interval":5000000000,"Retries":2}}}"#;
        let h = health_config(&SystemdArgs::default(), Some(config))
            .unwrap()
            .unwrap();
        assert_eq!(h.test, vec!["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(
            (h.interval, h.retries, h.timeout),
            (Duration::from_secs(5), 2, Duration::from_secs(30))
        );
        let none = SystemdArgs {
            health_cmd: Some("none".into()),
            ..Default::default()
        };
        assert!(health_config(&none, Some(config)).unwrap().is_none());
        let disabled = r#"{"config":{"Healthcheck":{"Test":["NONE"]}}}"#;
        assert!(health_config(&SystemdArgs::default(), Some(disabled))
            .unwrap()
            .is_none());
    }
}
