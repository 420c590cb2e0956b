//! Transient units for detached containers: the monitor runs as the main process of a
//! transient service of the user's manager, so the container outlives the shell (and its
//! login session) and shows in `systemctl --user list-units`. A service rather than a
//! scope: moving a running process into a scope needs write access to the cgroup it is in,
//! which a user manager has only with a systemd PID 1 to ask.

use std::os::fd::RawFd;
use std::time::Duration;

use crate::bus::{BusError, Connection, SentCall, Value};

/// The transient service whose main process is a detached container's monitor.
pub fn service_name(id: &str) -> String {
    format!("burrow-{id}.service")
}

/// What a transient service runs.
pub struct TransientService<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// The program and its argv (argv[0] included).
    pub argv: &'a [String],
    pub environment: Vec<String>,
    /// Its stdout and stderr (passed over the bus; stdin is /dev/null).
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// How long systemd waits after SIGTERM to the main process before SIGKILL.
    pub stop_timeout: Duration,
}

/// Starts a transient service of the user's manager, as `systemd-run --user` would but in
/// one D-Bus round trip. KillMode=mixed: `systemctl stop` signals the main process (the
/// monitor, which stops the container), and kills what is left after the timeout.
pub fn start_service(s: &TransientService) -> Result<(), BusError> {
    begin_service(Connection::user_early()?, s, None)?.wait()
}

/// A transient service asked for, the manager's answer not read yet.
pub struct StartingService {
    bus: Connection,
    call: SentCall,
}

impl StartingService {
    /// Waits for the manager's answer: Ok once the start job is queued.
    pub fn wait(mut self) -> Result<(), BusError> {
        self.bus.job(self.call)?;
        Ok(())
    }
}

/// [`start_service`] on `bus` (connected early, see [`Connection::user_early`]) without
/// waiting for the manager's answer (the caller does something else while it works), and
/// with `stdin` (passed over the bus) as the service's standard input instead of /dev/null.
/// The descriptors may be closed once this returns.
pub fn begin_service(
    mut bus: Connection,
    s: &TransientService,
    stdin: Option<RawFd>,
) -> Result<StartingService, BusError> {
    let (input, fds) = match stdin {
        Some(fd) => (
            Value::property("StandardInputFileDescriptor", Value::Fd(2)),
            vec![s.stdout, s.stderr, fd],
        ),
        None => (
            Value::property("StandardInput", Value::Str("null".into())),
            vec![s.stdout, s.stderr],
        ),
    };
    let exec = Value::Array(
        "(sasb)".into(),
        vec![Value::Struct(vec![
            Value::Str(s.argv[0].clone()),
            Value::strings(s.argv.iter().cloned()),
            Value::Bool(false),
        ])],
    );
    let call = bus.send_start_transient_unit(
        s.name,
        vec![
            Value::property("Description", Value::Str(s.description.into())),
            Value::property("ExecStart", exec),
            Value::property("Environment", Value::strings(s.environment.iter().cloned())),
            input,
            Value::property("StandardOutputFileDescriptor", Value::Fd(0)),
            Value::property("StandardErrorFileDescriptor", Value::Fd(1)),
            Value::property("KillMode", Value::Str("mixed".into())),
            Value::property("TimeoutStopUSec", Value::U64(s.stop_timeout.as_micros() as u64)),
            Value::property("CollectMode", Value::Str("inactive-or-failed".into())),
        ],
        vec![],
        &fds,
    )?;
    Ok(StartingService { bus, call })
}

/// Whether this process already runs as part of a systemd unit (a service's ExecStart):
/// then the container belongs to that unit and must not be moved out of it.
pub fn in_service_unit() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Whether a user manager can be reached at all (cheap: no connection).
pub fn user_manager_reachable() -> bool {
    crate::bus::user_bus_path().is_some()
}

/// Starts transient timer `timer` that runs `argv` (as the same-named service) every
/// `interval` after the last run ended, the first time `interval` from now.
pub fn start_timer(
    timer: &str,
    argv: &[String],
    environment: Vec<String>,
    interval: Duration,
) -> Result<(), BusError> {
    let service = format!("{}.service", timer.trim_end_matches(".timer"));
    let usec = interval.as_micros() as u64;
    let exec = Value::Array(
        "(sasb)".into(),
        vec![Value::Struct(vec![
            Value::Str(argv[0].clone()),
            Value::strings(argv.iter().cloned()),
            Value::Bool(false),
        ])],
    );
    let mut bus = Connection::user()?;
    bus.start_transient_units(
        timer,
        vec![
            Value::property("Description", Value::Str(format!("{service} timer"))),
            Value::property(
                "TimersMonotonic",
                Value::Array(
                    "(st)".into(),
                    vec![
                        Value::Struct(vec![Value::Str("OnActiveSec".into()), Value::U64(usec)]),
                        Value::Struct(vec![Value::Str("OnUnitInactiveSec".into()), Value::U64(usec)]),
                    ],
                ),
            ),
            // Checks a second apart must not be merged into one by timer slack.
            Value::property("AccuracyUSec", Value::U64(1000)),
            Value::property("RemainAfterElapse", Value::Bool(false)),
        ],
        vec![(
            service.clone(),
            vec![
                Value::property("Description", Value::Str(service.clone())),
                Value::property("ExecStart", exec),
                Value::property("Environment", Value::strings(environment)),
                Value::property("Type", Value::Str("oneshot".into())),
                Value::property("CollectMode", Value::Str("inactive-or-failed".into())),
            ],
        )],
    )?;
    Ok(())
}

/// The unit (`foo.service`, `burrow-ID.scope`) the process `pid` runs in, per its cgroup.
pub fn unit_of_pid(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unit_in_cgroup(&text)
}

fn unit_in_cgroup(text: &str) -> Option<String> {
    // The name=systemd (v1) or unified line; the innermost .service or .scope.
    let line = text
        .lines()
        .find(|l| l.contains(":name=systemd:"))
        .or_else(|| text.lines().find(|l| l.starts_with("0::")))?;
    let path = line.splitn(3, ':').nth(2)?;
    path.split('/')
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .filter(|u| !u.starts_with("user@") && *u != "init.scope")
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unit_in_a_cgroup_file() {
        let v1 = "12:pids:/\n1:name=systemd:/user.slice/user-1001.slice/user@1001.service/app.slice/web.service\n0::/\n";
        assert_eq!(unit_in_cgroup(v1).as_deref(), Some("web.service"));
        let scope = "0::/user.slice/user-1001.slice/user@1001.service/burrow-ab.scope\n";
        assert_eq!(unit_in_cgroup(scope).as_deref(), Some("burrow-ab.scope"));
        let manager = "1:name=systemd:/user.slice/user-1001.slice/user@1001.service/init.scope\n";
        assert_eq!(unit_in_cgroup(manager), None);
    }
}
