//! Healthchecks: `healthcheck run` runs a container's check (as an exec session), keeps its
//! state beside the container (`health.json`: status, failing streak, the last results) and
//! applies `--health-on-failure` once it turns unhealthy. What runs the checks: a transient
//! systemd timer when the monitor runs under a user manager, else a thread of the monitor.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use burrow_storage::{ContainerRecord, ContainerState, Store};
use serde::{Deserialize, Serialize};

use crate::sdunits::{HealthAction, HealthConfig};
use crate::GlobalOptions;

/// Results kept, as Podman.
const LOG_ENTRIES: usize = 5;
/// Output kept of one check.
const OUTPUT_MAX: usize = 4096;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// `.State.Health` of `inspect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    /// starting, healthy or unhealthy.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthLog>,
}

fn state_path(store: &Store, id: &str) -> PathBuf {
    store.paths.container_dir(id).join("health.json")
}

/// The recorded health of a container with a healthcheck (None without one).
pub fn state(store: &Store, c: &ContainerRecord) -> Option<HealthState> {
    let launch = crate::launch::summary(c).ok()?;
    launch.systemd.health.as_ref()?;
    Some(
        std::fs::read_to_string(state_path(store, &c.id))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| HealthState {
                status: "starting".into(),
                ..HealthState::default()
            }),
    )
}

/// `ps`: "Up 5 seconds (healthy)", as Podman shows a running container with a check.
pub fn annotate_status(store: &Store, c: &ContainerRecord, row: &mut serde_json::Value) {
    if c.state != ContainerState::Running {
        return;
    }
    if let (Some(h), Some(status)) = (state(store, c), row.get_mut("Status")) {
        if let Some(text) = status.as_str() {
            *status = serde_json::Value::String(format!("{text} ({})", h.status));
        }
    }
}

/// Forgets earlier results: a container (re)starting is `starting` again.
pub fn reset(store: &Store, id: &str) {
    let _ = std::fs::remove_file(state_path(store, id));
}

/// What one check found.
pub struct Outcome {
    pub healthy: bool,
    pub status: String,
}

/// Runs the container's check once, records it and applies the on-failure action when it
/// turns (or stays) unhealthy.
pub fn run_check(store: &Store, global: &GlobalOptions, c: &ContainerRecord) -> anyhow::Result<Outcome> {
    let launch = crate::launch::summary(c)?;
    let config = launch
        .systemd
        .health
        .clone()
        .with_context(|| format!("container {} has no defined healthcheck", c.name))?;
    if c.state != ContainerState::Running || c.paused {
        anyhow::bail!("container {} is not running", c.name);
    }
    let start = SystemTime::now();
    let (exit_code, output) = exec_check(global, &c.id, &config)?;
    let end = SystemTime::now();
    let mut state = state(store, c).unwrap_or_default();
    let in_start_period = c
        .started
        .map(|s| {
            let started = SystemTime::UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
            start.duration_since(started).unwrap_or_default() < config.start_period
        })
        .unwrap_or(false);
    let healthy = exit_code == 0;
    if healthy {
        state.status = "healthy".into();
        state.failing_streak = 0;
    } else if !in_start_period {
        // Failures in the start period do not count, as Docker's.
        state.failing_streak += 1;
        if state.failing_streak >= config.retries {
            state.status = "unhealthy".into();
        }
    }
    if state.status.is_empty() {
        state.status = "starting".into();
    }
    state.log.push(HealthLog {
        start: crate::monitor::log_timestamp(start),
        end: crate::monitor::log_timestamp(end),
        exit_code,
        output,
    });
    let excess = state.log.len().saturating_sub(LOG_ENTRIES);
    state.log.drain(..excess);
    let path = state_path(store, &c.id);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&state)?)?;
    std::fs::rename(&tmp, &path)?;
    store.container_event(c, "health_status", None);
    if state.status == "unhealthy" {
        on_failure(store, c, config.on_failure)?;
    }
    Ok(Outcome {
        healthy: state.status != "unhealthy",
        status: state.status,
    })
}

/// Runs the check as `burrow exec` (a process of its own, killed at the timeout).
fn exec_check(global: &GlobalOptions, id: &str, config: &HealthConfig) -> anyhow::Result<(i32, String)> {
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(root) = &global.root {
        cmd.arg("--root").arg(root);
    }
    if let Some(runroot) = &global.runroot {
        cmd.arg("--runroot").arg(runroot);
    }
    cmd.arg("exec").arg(id);
    match config.test.first().map(String::as_str) {
        Some("CMD-SHELL") => cmd.args(["/bin/sh", "-c", &config.test[1..].join(" ")]),
        _ => cmd.args(&config.test[1..]),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the healthcheck")?;
    let mut readers = Vec::new();
    for mut pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        readers.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        }));
    }
    let timeout = if config.timeout.is_zero() {
        Duration::from_secs(30)
    } else {
        config.timeout
    };
    let pid = child.id() as i32;
    let finished = crate::commands::stop::wait_exit(pid, timeout);
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let mut output = Vec::new();
    for r in readers {
        output.extend(r.join().unwrap_or_default());
    }
    let mut text = String::from_utf8_lossy(&output).into_owned();
    if text.len() > OUTPUT_MAX {
        let mut cut = OUTPUT_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if !finished {
        return Ok((1, format!("healthcheck timed out after {timeout:?}")));
    }
    Ok((status.code().unwrap_or(1), text))
}

/// `--health-on-failure`. A container whose monitor is a systemd service is restarted or
/// stopped through its unit; otherwise the monitor restarts it (asked by a flag file).
fn on_failure(store: &Store, c: &ContainerRecord, action: HealthAction) -> anyhow::Result<()> {
    let unit = c
        .monitor_pid
        .and_then(burrow_systemd::scope::unit_of_pid)
        .filter(|u| u.ends_with(".service"));
    match action {
        HealthAction::None => Ok(()),
        HealthAction::Kill => {
            store.set_stop_requested(&c.id, true)?;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.pid.unwrap_or(0)),
                nix::sys::signal::Signal::SIGKILL,
            );
            Ok(())
        }
        HealthAction::Stop => match unit {
            Some(u) => {
                burrow_systemd::bus::Connection::user()?.stop_unit(&u)?;
                Ok(())
            }
            None => {
                let mut c = c.clone();
                crate::commands::stop::stop_container(store, &mut c, None)
            }
        },
        HealthAction::Restart => {
            reset(store, &c.id);
            match unit {
                Some(u) => {
                    // A restart like the monitor's own (Podman counts it as its restart policy's).
                    store.count_restart(&c.id)?;
                    burrow_systemd::bus::Connection::user()?.restart_unit(&u)?;
                }
                None => {
                    std::fs::write(restart_flag(store, &c.id), b"")?;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(c.pid.unwrap_or(0)),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            Ok(())
        }
    }
}

/// Set by a healthcheck that asks the monitor to start the container again.
pub fn restart_flag(store: &Store, id: &str) -> PathBuf {
    store.paths.container_dir(id).join("health-restart")
}

/// Who runs a container's checks while its monitor runs.
pub enum Driver {
    /// A transient timer of the user's manager (stopped when dropped).
    Timer(String),
    Thread,
    None,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Driver::Timer(timer) = self {
            if let Ok(mut bus) = burrow_systemd::bus::Connection::user() {
                let _ = bus.stop_unit(timer);
            }
        }
    }
}

/// Starts the checks of the container `id` (called by its monitor once it runs): under a
/// user manager (the monitor is part of a service) a transient timer, else a thread.
pub fn start_driver(store: &Store, global: &GlobalOptions, id: &str, config: &HealthConfig) -> Driver {
    if config.interval.is_zero() {
        return Driver::None;
    }
    let in_service = burrow_systemd::scope::unit_of_pid(std::process::id() as i32)
        .is_some_and(|u| u.ends_with(".service"));
    if in_service && burrow_systemd::scope::user_manager_reachable() {
        let mut argv = vec![std::fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "burrow".into())];
        if let Some(root) = &global.root {
            argv.extend(["--root".into(), root.display().to_string()]);
        }
        if let Some(runroot) = &global.runroot {
            argv.extend(["--runroot".into(), runroot.display().to_string()]);
        }
        argv.extend(["healthcheck".into(), "run".into(), id.to_string()]);
        let environment = crate::sdunits::unit_environment();
        let timer = format!("burrow-{id}-healthcheck.timer");
        match burrow_systemd::scope::start_timer(&timer, &argv, environment, config.interval) {
            Ok(()) => return Driver::Timer(timer),
            Err(e) => eprintln!("WARN: healthcheck timer {timer}: {e}; the monitor runs the checks"),
        }
    }
    // One thread per monitor, for all the container's restarts.
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Driver::Thread;
    }
    let global = GlobalOptions {
        root: Some(store.paths.graph_root.clone()),
        runroot: Some(store.paths.run_root.clone()),
        ..GlobalOptions::defaults()
    };
    let paths = store.paths.clone();
    let (id, interval) = (id.to_string(), config.interval);
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        let Ok(store) = Store::open(paths.clone()) else {
            continue;
        };
        let Ok(mut c) = store.container(&id) else { return };
        if store.refresh_state(&mut c).is_err() || c.state != ContainerState::Running {
            continue;
        }
        if let Err(e) = run_check(&store, &global, &c) {
            eprintln!("WARN: healthcheck of {id}: {e:#}");
        }
    });
    Driver::Thread
}
