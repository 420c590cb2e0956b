//! `burrow stop` and `burrow kill`.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use burrow_storage::{ContainerRecord, ContainerState, Store};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use crate::context::Engine;
use crate::launch::{self, parse_signal};
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Stop all running containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Seconds to wait for stop before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    time: Option<u32>,
    /// Ignore errors when a specified container is missing
    #[arg(short = 'i', long)]
    ignore: bool,
    /// Read the container ID from the file
    #[arg(long, value_name = "FILE")]
    cidfile: Vec<std::path::PathBuf>,
    /// Containers (names or ids)
    containers: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    /// Signal all running containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Containers (names or ids)
    containers: Vec<String>,
}

/// Waits until `pid` has exited (a pidfd polls readable then), at most `timeout`.
pub(crate) fn wait_exit(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true; // gone already
    }
    // SAFETY: we own the new descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&fd), PollFlags::POLLIN)];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX))
        .map(|n| n > 0)
        .unwrap_or(true)
}

/// Waits as long as it takes for `pid` to exit.
pub fn wait_forever(pid: i32) {
    while !wait_exit(pid, Duration::from_secs(3600)) {}
}

/// Waits (bounded) until whoever watches the container has recorded its end.
pub fn wait_recorded(store: &Store, id: &str) -> anyhow::Result<ContainerRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = store.container(id)?;
        if c.state != ContainerState::Running {
            return Ok(c);
        }
        // The monitor (or foreground burrow) records the exit once the process is gone; if
        // it is gone too, take the truth from the kernel.
        if c.monitor_pid
            .is_some_and(|m| wait_exit(m, Duration::from_millis(20)))
            || Instant::now() > deadline
        {
            store.refresh_state(&mut c)?;
            return Ok(c);
        }
        if c.monitor_pid.is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Stops one container: its stop signal, then SIGKILL after `timeout`.
pub fn stop_container(store: &Store, c: &mut ContainerRecord, timeout: Option<u32>) -> anyhow::Result<()> {
    store.refresh_state(c)?;
    if c.state != ContainerState::Running {
        return Ok(());
    }
    let launch = launch::summary(c)?;
    let timeout = timeout.unwrap_or(launch.stop_timeout);
    // A unit's container is stopped through its unit, or systemd would restart it.
    if crate::sdunits::stop_through_unit(c, timeout)? {
        match wait_recorded(store, &c.id) {
            Ok(now) => *c = now,
            // A --new unit's container (--rm) is gone once its unit has stopped.
            Err(e) if crate::sdunits::is_no_such_container(&e) => c.state = ContainerState::Exited,
            Err(e) => return Err(e),
        }
        store.container_event(c, "stop", None);
        return Ok(());
    }
    store.set_stop_requested(&c.id, true)?;
    let pid = c.pid.context("a running container without a pid")?;
    let signal = parse_signal(&launch.stop_signal)?;
    if timeout > 0 {
        let _ = send(Pid::from_raw(pid), signal);
    }
    if timeout == 0 || !wait_exit(pid, Duration::from_secs(timeout.into())) {
        if timeout > 0 {
            eprintln!(
                "WARN: StopSignal {} failed to stop container {} in {timeout} seconds, resorting to SIGKILL",
                launch.stop_signal, c.name
            );
        }
        let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
        wait_exit(pid, Duration::from_secs(10));
    }
    let monitor = c.monitor_pid;
    match wait_recorded(store, &c.id) {
        Ok(now) => *c = now,
        // A --rm container's monitor removed it once it ended: stopped all the same.
        Err(e) if crate::sdunits::is_no_such_container(&e) => c.state = ContainerState::Exited,
        Err(e) => return Err(e),
    }
    // As a unit's ExecStop=: systemd does not wait for a main process it did not start itself
    // (the monitor, named by MAINPID=) but kills it at once when ExecStop= returns, so the
    // monitor must be gone by then.
    if let Some(m) = monitor.filter(|_| burrow_systemd::scope::in_service_unit()) {
        wait_exit(m, Duration::from_secs(10));
    }
    store.container_event(c, "stop", None);
    Ok(())
}

fn targets(
    store: &Store,
    all: bool,
    names: &[String],
) -> anyhow::Result<Vec<(String, anyhow::Result<ContainerRecord>)>> {
    if all {
        return Ok(store
            .containers()?
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| (c.id.clone(), Ok(c)))
            .collect());
    }
    if names.is_empty() {
        anyhow::bail!("you must provide at least one container name or id");
    }
    Ok(names
        .iter()
        .map(|n| (n.clone(), store.container(n).map_err(Into::into)))
        .collect())
}

pub fn stop(mut args: StopArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let mut code = 0;
    match crate::sdunits::read_cidfiles(&args.cidfile, args.ignore)? {
        ids if args.cidfile.is_empty() || !ids.is_empty() => args.containers.extend(ids),
        _ => return Ok(0), // --ignore and no file: nothing to stop
    }
    for (name, found) in targets(&engine.store, args.all, &args.containers)? {
        if args.ignore && found.as_ref().is_err_and(crate::sdunits::is_no_such_container) {
            continue;
        }
        match found.and_then(|mut c| stop_container(&engine.store, &mut c, args.time)) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::message(&e));
                code = 125;
            }
        }
    }
    Ok(code)
}

pub fn kill(args: KillArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let signal = parse_signal(&args.signal)?;
    let engine = Engine::open(global)?;
    let mut code = 0;
    for (name, found) in targets(&engine.store, args.all, &args.containers)? {
        let result = found.and_then(|mut c| {
            engine.store.refresh_state(&mut c)?;
            if c.state != ContainerState::Running {
                anyhow::bail!(
                    "can only kill running containers. {} is in state {}: container state improper",
                    c.id,
                    c.state.as_str()
                );
            }
            if matches!(signal, Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT) {
                engine.store.set_stop_requested(&c.id, true)?;
            }
            send(Pid::from_raw(c.pid.unwrap_or(0)), signal).context("sending the signal")?;
            engine.store.container_event(&c, "kill", None);
            Ok(())
        });
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::message(&e));
                code = 125;
            }
        }
    }
    Ok(code)
}
