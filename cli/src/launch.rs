//! Starting a created container: in the foreground (burrow stays its parent), or detached,
//! under a monitor process of its own (burrow re-executed as `burrow __monitor ID`), which
//! logs its output, records its exit and applies its restart policy. No daemon.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use burrow_netstack::StackConfig;
use burrow_storage::{ContainerRecord, Store};
use burrow_userns::mount::RootfsSource;
use burrow_userns::process::{self, LaunchOptions, Launched};
use burrow_userns::spec::NetworkMode;
use burrow_userns::{foreground, seccomp};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::commands::netstack::NetstackProcess;
use crate::context::Engine;
use crate::exit::ExitError;

/// Everything needed to start a container again, stored as its record's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    /// Kept in its own file (`spec.json` in the container's dir), not in the record: with
    /// its seccomp profile it is most of the bytes, and every write of it costs pages.
    #[serde(skip)]
    pub spec: Spec,
    pub rootfs: RootfsSource,
    pub init: bool,
    pub interactive: bool,
    /// The image as the user named it (for `ps`).
    pub image: String,
    pub command: Vec<String>,
    pub restart: RestartPolicy,
    pub stop_signal: String,
    pub stop_timeout: u32,
    /// burrow's userspace network (slirp4netns addressing, published ports), if used.
    #[serde(default)]
    pub network: Option<StackConfig>,
    #[serde(default)]
    pub dns: Dns,
    /// `--add-host HOST:IP` entries.
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// The image's labels and `--label`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub log: LogOptions,
    /// The mounts the user asked for (-v, --mount, --tmpfs, image VOLUMEs), as given.
    #[serde(default)]
    pub mounts: Vec<crate::commands::mounts::UserMount>,
    /// `--network ns:PATH` or `container:NAME`: the network namespace to join.
    #[serde(default)]
    pub join_network: Option<JoinNetwork>,
    /// Ids of the containers started before this one (`--requires`, `--link`).
    #[serde(default)]
    pub requires: Vec<String>,
    /// `--sdnotify` and healthcheck settings, and the command line that created the
    /// container (for `generate systemd --new`).
    #[serde(default)]
    pub systemd: crate::sdunits::SystemdOptions,
}

/// Another network namespace a container joins instead of getting its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinNetwork {
    /// `ns:PATH`: a namespace file, such as `/proc/PID/ns/net` or a bind mount of one.
    Path(PathBuf),
    /// `container:NAME`: the namespace of that container (by id), while it runs.
    Container(String),
}

/// `--log-driver` and `--log-opt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    pub driver: LogDriver,
    /// k8s-file: the log is emptied when it would grow past this (as conmon does).
    pub max_size: Option<u64>,
    /// journald: SYSLOG_IDENTIFIER (default: the container's short id).
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogDriver {
    #[default]
    K8sFile,
    Journald,
    None,
}

impl LogOptions {
    pub fn parse(driver: Option<&str>, opts: &[String]) -> anyhow::Result<LogOptions> {
        let driver = match driver.unwrap_or("k8s-file") {
            "k8s-file" | "json-file" => LogDriver::K8sFile,
            "journald" => LogDriver::Journald,
            "none" => LogDriver::None,
            other => bail!("invalid log driver {other:?}: burrow supports k8s-file, journald and none"),
        };
        let mut log = LogOptions {
            driver,
            ..LogOptions::default()
        };
        for opt in opts {
            match opt.split_once('=') {
                Some(("max-size", size)) => log.max_size = Some(parse_size(size)?),
                Some(("tag", tag)) => log.tag = Some(tag.to_string()),
                _ => bail!("invalid --log-opt {opt:?}: burrow supports max-size=SIZE and tag=NAME"),
            }
        }
        Ok(log)
    }
}

/// `10k`, `5m`, `1g` or bytes, as Podman's sizes.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {text:?}"))?;
    let factor = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => bail!("invalid size {text:?}: unit must be b, k, m or g"),
    };
    Ok(n * factor)
}

/// `--dns`, `--dns-search`, `--dns-option`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// `--restart`, as Podman's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure(Option<u32>),
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(text: &str) -> anyhow::Result<RestartPolicy> {
        Ok(match text.split_once(':') {
            None if text.is_empty() || text == "no" => RestartPolicy::No,
            None if text == "always" => RestartPolicy::Always,
            None if text == "unless-stopped" => RestartPolicy::UnlessStopped,
            None if text == "on-failure" => RestartPolicy::OnFailure(None),
            Some(("on-failure", n)) => RestartPolicy::OnFailure(Some(
                n.parse().map_err(|_| anyhow::anyhow!("invalid restart policy {text:?}: bad retry count"))?,
            )),
            _ => bail!("invalid restart policy {text:?}: must be one of no, on-failure[:max_retries], always, unless-stopped"),
        })
    }

    /// Whether a container that exited with `code`, after `restarts` restarts, starts again.
    pub fn restarts(self, code: i32, restarts: i64, stop_requested: bool) -> bool {
        if stop_requested {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < i64::from(m)),
        }
    }
}

/// A signal by name (`SIGTERM`, `TERM`, `term`) or number.
pub fn parse_signal(text: &str) -> anyhow::Result<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("invalid signal: {text}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| anyhow::anyhow!("invalid signal: {text}"))
}

/// The files in a bundle that become the container's /etc/hosts, /etc/hostname,
/// /etc/resolv.conf and /run/.containerenv.
pub fn etc_files(bundle: &Path) -> Vec<(PathBuf, &'static str)> {
    vec![
        (bundle.join("hosts"), "/etc/hosts"),
        (bundle.join("hostname"), "/etc/hostname"),
        (bundle.join("resolv.conf"), "/etc/resolv.conf"),
        (bundle.join(".containerenv"), "/run/.containerenv"),
    ]
}

fn network_of(launch: &Launch) -> NetworkMode {
    if launch.join_network.is_some() {
        return NetworkMode::Joined;
    }
    let private = launch
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    if private {
        NetworkMode::Private
    } else {
        NetworkMode::Host
    }
}

/// The container `id` joins, running: its first process' pid.
fn joined_container_pid(store: &Store, id: &str) -> anyhow::Result<i32> {
    let mut other = store
        .container(id)
        .with_context(|| format!("joining the network namespace of container {id}"))?;
    store.refresh_state(&mut other)?;
    match (other.state, other.pid) {
        (burrow_storage::ContainerState::Running, Some(pid)) => Ok(pid),
        _ => bail!(
            "cannot join the network namespace of container {}: it is not running",
            other.name
        ),
    }
}

/// The spec the container starts with: with `--network ns:PATH` or `container:NAME`, the
/// namespace to join, found now (the other container's process changes when it restarts).
/// The stored spec itself otherwise: no copy of it (with its seccomp profile) on every start.
fn spec_to_start<'a>(store: &Store, launch: &'a Launch) -> anyhow::Result<Cow<'a, Spec>> {
    let path = match &launch.join_network {
        None => return Ok(Cow::Borrowed(&launch.spec)),
        Some(JoinNetwork::Path(path)) => path.clone(),
        Some(JoinNetwork::Container(id)) => {
            PathBuf::from(format!("/proc/{}/ns/net", joined_container_pid(store, id)?))
        }
    };
    let mut spec = launch.spec.clone();
    burrow_userns::spec::join_namespace(&mut spec, LinuxNamespaceType::Network, &path);
    Ok(Cow::Owned(spec))
}

/// Makes the bundle's root mount point and returns the generated /etc files, to be written
/// (see [`write_files`]) with config.json. Done at every start, since the run root does not
/// survive a reboot.
fn bundle_files(
    store: &Store,
    record: &ContainerRecord,
    launch: &Launch,
    on_networks: bool,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let bundle = store.container_dirs(&record.id).bundle;
    fs::create_dir_all(bundle.join("rootfs")).context("creating the rootfs mount point")?;
    crate::commands::mounts::reset_overlays(&launch.spec, &bundle)?;
    let hostname = launch.spec.hostname().clone().unwrap_or_default();
    let network = network_of(launch);
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4\n\
         ::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6\n",
    );
    if network == NetworkMode::Host {
        hosts = fs::read_to_string("/etc/hosts").unwrap_or(hosts);
    }
    for entry in &launch.add_hosts {
        if let Some((host, ip)) = entry.split_once(':') {
            hosts.push_str(&format!("{ip}\t{host}\n"));
        }
    }
    match &launch.network {
        Some(stack) => {
            // As Podman with slirp4netns: the container's address, and the host as seen from it.
            hosts.push_str(&format!(
                "{}\t{hostname} {}\n",
                stack.slirp.container_address(),
                record.name
            ));
            hosts.push_str(&format!(
                "{}\thost.containers.internal host.docker.internal\n",
                stack.slirp.gateway()
            ));
        }
        None => hosts.push_str(&format!("127.0.1.1\t{hostname} {}\n", record.name)),
    }
    // The containers on its user networks, by name (see commands/network.rs).
    if on_networks {
        hosts.push_str(&crate::commands::network::hosts_block(store, &record.id));
    }
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host_lines = |prefix: &str| -> Vec<String> {
        host_resolv
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let mut resolv = String::new();
    let servers: Vec<String> = if !launch.dns.servers.is_empty() {
        launch.dns.servers.clone()
    } else if let Some(stack) = &launch.network {
        // The stack answers on its DNS address and asks the host's resolvers.
        vec![stack.slirp.dns().to_string()]
    } else {
        host_resolv
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver").map(str::trim))
            // The host's loopback resolvers are not reachable from a network namespace.
            .filter(|ip| network == NetworkMode::Host || !(ip.starts_with("127.") || *ip == "::1"))
            .map(str::to_string)
            .collect()
    };
    if launch.dns.search.is_empty() {
        resolv.extend(host_lines("search"));
    } else {
        resolv.push_str(&format!("search {}\n", launch.dns.search.join(" ")));
    }
    for server in servers {
        resolv.push_str(&format!("nameserver {server}\n"));
    }
    if launch.dns.options.is_empty() {
        resolv.extend(host_lines("options"));
    } else {
        resolv.push_str(&format!("options {}\n", launch.dns.options.join(" ")));
    }
    let containerenv = format!(
        "engine=\"burrow-{}\"\nname=\"{}\"\nid=\"{}\"\nimage=\"{}\"\nrootless=1\n",
        env!("CARGO_PKG_VERSION"),
        record.name,
        record.id,
        launch.image
    );
    // As Podman: a container in another's network namespace uses its hosts and resolv.conf.
    let (hosts, resolv) = match &launch.join_network {
        Some(JoinNetwork::Container(id)) => {
            let other = store.container_dirs(id).bundle;
            (
                fs::read_to_string(other.join("hosts")).unwrap_or(hosts),
                fs::read_to_string(other.join("resolv.conf")).unwrap_or(resolv),
            )
        }
        _ => (hosts, resolv),
    };
    Ok(etc_files(&bundle)
        .into_iter()
        .map(|(path, _)| path)
        .zip([hosts, format!("{hostname}\n"), resolv, containerenv])
        .collect())
}

fn write_files(files: &[(PathBuf, String)]) -> Result<(), String> {
    files.iter().try_for_each(|(path, text)| {
        fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    })
}

/// A started container and what runs beside it.
pub struct Started {
    pub launched: Launched,
    /// Its network stack (stopped when dropped).
    pub network: Option<NetstackProcess>,
}

/// Writes the bundle and starts the container's first process (see
/// [`burrow_userns::process::launch`]; the caller blocks the forwarded signals first), and
/// its network stack before its command runs. `beside`: the caller's work that may run while
/// the container sets itself up (once it was cloned).
pub fn start(
    store: &Store,
    record: &ContainerRecord,
    launch: &Launch,
    output: Option<(RawFd, RawFd)>,
    keep_stdin: bool,
    monitor_pid: Option<i32>,
    beside: Option<&dyn Fn()>,
) -> anyhow::Result<Started> {
    let spec = spec_to_start(store, launch)?;
    // Its user networks, looked up once: most containers have none.
    let attachments = store.container_networks(&record.id)?;
    // Written while the container sets up its network and root (it binds the /etc files
    // once they are), as are config.json and what the caller does beside.
    let files = bundle_files(store, record, launch, !attachments.is_empty())?;
    let program = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::compile_cached(
            s,
            &store.paths.cache_dir().join("seccomp"),
        )?),
        None => None,
    };
    let bundle = store.container_dirs(&record.id).bundle;
    let stack: RefCell<Option<NetstackProcess>> = RefCell::new(None);
    // The network stack starts once the container's first process exists, beside its set-up
    // (not before: the clone waited for the spawn); it gets the tap once the container made it
    // (dropped unused, it exits).
    let pending = RefCell::new(None);
    let after_clone = || {
        if let Some(config) = &launch.network {
            let config = crate::commands::network::with_names(!attachments.is_empty(), &bundle, config);
            *pending.borrow_mut() = Some(crate::commands::netstack::spawn_early(&config));
        }
        // For OCI tools and `inspect`'s OCIConfigPath; burrow itself reads the stored spec.
        if let Err(e) = spec.save(bundle.join("config.json")) {
            eprintln!("WARN: writing config.json: {e}");
        }
        if let Some(beside) = beside {
            beside();
        }
    };
    // Before the command runs: its network. (Not yet the record that it runs: the container is
    // still mounting, and a command that joined it now, such as `exec`, would find no root.)
    let before_exec = |pid: nix::unistd::Pid, tap: Option<OwnedFd>| -> Result<(), String> {
        if let (Some(pending), Some(tap)) = (pending.borrow_mut().take(), tap) {
            let pending = pending.map_err(|e| crate::exit::message(&e))?;
            // Its network namespace too, so that the stack splices published ports' loopback
            // clients into it (without it, they take the tap).
            let netns = fs::File::open(format!("/proc/{pid}/ns/net"))
                .ok()
                .map(OwnedFd::from);
            let process = pending.attach(tap, netns).map_err(|e| crate::exit::message(&e))?;
            // The ports as bound (-P and port 0 get theirs from the kernel), for `port` and
            // `inspect`.
            let bound = serde_json::to_string(&process.published).map_err(|e| e.to_string())?;
            fs::write(bundle.join("ports.json"), bound).map_err(|e| format!("writing ports.json: {e}"))?;
            *stack.borrow_mut() = Some(process);
        }
        crate::commands::network::attach_all(store, record, &attachments, pid.as_raw())
            .map_err(|e| crate::exit::message(&e))
    };
    let launched = process::launch(&LaunchOptions {
        spec: &spec,
        rootfs_source: &launch.rootfs,
        seccomp: program.as_ref(),
        init: launch.init,
        keep_stdin,
        output,
        tap: launch
            .network
            .as_ref()
            .map(|n| crate::commands::netstack::tap_config(&n.slirp, true)),
        before_exec: Some(&before_exec),
        after_clone: Some(&after_clone),
        mount_sources: Some(&|| write_files(&files)),
    });
    match launched {
        // Its command runs: from here the store says so. (Should we die before, the container
        // goes with us: its first process has SIGKILL as its parent-death signal.)
        Ok(launched) => match store.set_running(&record.id, launched.pid.as_raw(), monitor_pid) {
            Ok(()) => Ok(Started {
                launched,
                network: stack.into_inner(),
            }),
            Err(e) => {
                let _ = nix::sys::signal::kill(launched.pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(launched.pid, None);
                let _ = store.set_exited(&record.id, 125);
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = store.set_exited(&record.id, e.exit_code());
            Err(ExitError::from(e).into())
        }
    }
}

/// Runs a container in the foreground and returns its exit code; removes it after with --rm.
pub fn run_foreground(engine: &Engine, record: &ContainerRecord, launch: &Launch) -> anyhow::Result<i32> {
    let store = &engine.store;
    let result = (|| {
        let forwarded = process::forwarded_signals();
        let mut previous = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut previous))?;
        // This process watches the container: recorded as its monitor.
        let watcher = Some(std::process::id() as i32);
        let outcome =
            start(store, record, launch, None, launch.interactive, watcher, None).and_then(|started| {
                let code = foreground::wait(started.launched, launch.interactive).map_err(ExitError::from)?;
                drop(started.network);
                Ok(code)
            });
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
        let code = outcome?;
        // A --rm container's record goes right after; no need to write its exit first.
        if !record.auto_remove {
            store.set_exited(&record.id, code)?;
        }
        Ok(code)
    })();
    let cleanup = if record.auto_remove {
        crate::commands::network::remove_container(store, &record.id, false).map_err(anyhow::Error::from)
    } else {
        Ok(())
    };
    match (result, cleanup) {
        (Ok(code), Ok(())) => Ok(code),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.context(format!("removing container {}", record.id))),
    }
}

/// Where a container's OCI spec is kept between starts.
fn spec_path(store: &Store, id: &str) -> PathBuf {
    store.paths.container_dir(id).join("spec.json")
}

/// Records a container's launch description: the spec in its file, the rest in the record.
pub fn save(store: &Store, id: &str, launch: &Launch) -> anyhow::Result<()> {
    let path = spec_path(store, id);
    launch
        .spec
        .save(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    store.set_config(id, &serde_json::to_string(launch)?)?;
    Ok(())
}

/// Reads a container's launch description.
pub fn load(store: &Store, record: &ContainerRecord) -> anyhow::Result<Launch> {
    let unreadable = || format!("container {}: its stored configuration is unreadable", record.id);
    let mut launch: Launch = serde_json::from_str(&record.config).with_context(unreadable)?;
    launch.spec = match Spec::load(spec_path(store, &record.id)) {
        Ok(spec) => spec,
        // Records made before the spec had a file of its own carry it inline.
        Err(_) => serde_json::from_str::<serde_json::Value>(&record.config)
            .ok()
            .and_then(|v| serde_json::from_value(v.get("spec")?.clone()).ok())
            .with_context(unreadable)?,
    };
    Ok(launch)
}

/// The parts of a launch description that live in the record (no spec): for listings.
pub fn summary(record: &ContainerRecord) -> anyhow::Result<Launch> {
    serde_json::from_str(&record.config)
        .with_context(|| format!("container {}: its stored configuration is unreadable", record.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure(Some(3))
        );
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
        let p = RestartPolicy::OnFailure(Some(2));
        assert!(p.restarts(1, 0, false) && p.restarts(1, 1, false));
        assert!(!p.restarts(1, 2, false) && !p.restarts(0, 0, false));
        assert!(RestartPolicy::Always.restarts(0, 100, false));
        assert!(
            !RestartPolicy::Always.restarts(1, 0, true),
            "a stopped container stays stopped"
        );
    }

    #[test]
    fn log_options() {
        let log = LogOptions::parse(Some("json-file"), &["max-size=10k".into()]).unwrap();
        assert_eq!((log.driver, log.max_size), (LogDriver::K8sFile, Some(10240)));
        assert_eq!(
            LogOptions::parse(Some("none"), &[]).unwrap().driver,
            LogDriver::None
        );
        assert!(LogOptions::parse(Some("syslog"), &[]).is_err());
        assert!(LogOptions::parse(None, &["max-size=lots".into()]).is_err());
        assert!(LogOptions::parse(None, &["colour=red".into()]).is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
