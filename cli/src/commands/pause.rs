//! `burrow pause` / `burrow unpause`. With a cgroup delegated, Podman freezes the container's
//! cgroup; here none is (cgroup v1, or no systemd delegation), so burrow stops every process
//! in the container's pid namespace with SIGSTOP and continues them with SIGCONT. What
//! differs from a freezer: the processes can see it (a parent gets SIGCHLD for a stopped
//! child), and a process forked while the signals go out may escape (the list is taken again
//! until it no longer grows). The container stays `running` for stop, kill and rm (SIGKILL
//! ends a stopped process) and shows as `paused`.

use anyhow::{bail, Result};
use burrow_storage::{ContainerRecord, ContainerState};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::ctrutil;
use crate::context::Engine;
use crate::exit::ExitError;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Pause (or unpause) all running (or paused) containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Containers (names or ids)
    containers: Vec<String>,
}

/// Stops (`stop`) or continues every process of a running container.
pub fn signal_container(c: &ContainerRecord, stop: bool) -> Result<()> {
    let Some(init) = c.pid else {
        bail!("container {} has no process", c.id);
    };
    let signal = if stop { Signal::SIGSTOP } else { Signal::SIGCONT };
    let mut done: Vec<i32> = Vec::new();
    // The first process first (it may be forking), then the rest until none is new.
    for _ in 0..10 {
        let pids = burrow_userns::exec::container_pids(init);
        let new: Vec<i32> = pids.into_iter().filter(|p| !done.contains(p)).collect();
        if new.is_empty() {
            break;
        }
        for p in new {
            let _ = kill(Pid::from_raw(p), signal);
            done.push(p);
        }
    }
    Ok(())
}

fn improper(message: String) -> anyhow::Error {
    ExitError {
        code: 125,
        message: format!("{message}: container state improper"),
    }
    .into()
}

fn run(args: PauseArgs, global: &GlobalOptions, pause: bool) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let names: Vec<String> = if args.all {
        let mut v = Vec::new();
        for mut c in store.containers()? {
            store.refresh_state(&mut c)?;
            if c.state == ContainerState::Running && c.paused != pause {
                v.push(c.id);
            }
        }
        v
    } else {
        if args.containers.is_empty() {
            bail!("you must provide at least one container name or id");
        }
        args.containers.clone()
    };
    let mut code = 0;
    for name in &names {
        let result = ctrutil::find(store, name).and_then(|c| {
            if c.state != ContainerState::Running {
                return Err(improper(format!(
                    "\"{}\" is not running, can't {}",
                    c.name,
                    if pause { "pause" } else { "unpause" }
                )));
            }
            if c.paused == pause {
                return Err(improper(if pause {
                    format!("\"{}\" is already paused", c.name)
                } else {
                    format!("\"{}\" is not paused, can't unpause", c.name)
                }));
            }
            signal_container(&c, pause)?;
            store.set_paused(&c.id, pause)?;
            Ok(c.id)
        });
        match result {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::message(&e));
                code = 125;
            }
        }
    }
    Ok(code)
}

pub fn pause(args: PauseArgs, global: &GlobalOptions) -> Result<i32> {
    run(args, global, true)
}

pub fn unpause(args: PauseArgs, global: &GlobalOptions) -> Result<i32> {
    run(args, global, false)
}
