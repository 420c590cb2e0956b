//! `burrow start`: start created or exited containers, each under its monitor; with `-a`,
//! stay attached to it (its output, and with `-i` our input) until it ends.

use std::os::fd::OwnedFd;

use anyhow::bail;
use burrow_storage::{ContainerRecord, ContainerState};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::attach;
use crate::context::Engine;
use crate::{launch, monitor, GlobalOptions};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach container's STDOUT and STDERR
    #[arg(short = 'a', long)]
    attach: bool,
    /// Select the key sequence for detaching a container (with --attach)
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q", value_name = "KEYS")]
    detach_keys: String,
    /// Make STDIN available to the contained process (implies --attach)
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Start all containers regardless of their state or configuration
    #[arg(long)]
    all: bool,
    /// Containers to start (names or ids)
    #[arg(required_unless_present = "all")]
    containers: Vec<String>,
}

impl StartArgs {
    /// Whether this start stays attached (its exit code is then the container's).
    pub fn attaches(&self) -> bool {
        self.attach || self.interactive
    }
}

/// Starts `c` under its monitor unless it runs, after the containers it requires
/// (`--requires`, `--link`), as Podman does. `attach` is the `start -a` client's socket.
pub fn start_one(
    engine: &Engine,
    global: &GlobalOptions,
    c: &mut ContainerRecord,
    attach: Option<OwnedFd>,
) -> anyhow::Result<()> {
    engine.store.refresh_state(c)?;
    if c.state == ContainerState::Running {
        return Ok(());
    }
    start_requirements(engine, global, &launch::summary(c)?.requires, 0)?;
    monitor::start_detached(engine, global, c, attach)
}

/// Starts the containers in `requires` (ids) that do not run, each after its own.
pub fn start_requirements(
    engine: &Engine,
    global: &GlobalOptions,
    requires: &[String],
    depth: usize,
) -> anyhow::Result<()> {
    // A container can only require containers that existed before it: no cycle, but a
    // hand-edited store must not loop us forever.
    if depth > 64 {
        bail!("container requirements nest too deep");
    }
    for id in requires {
        let mut dep = engine
            .store
            .container(id)
            .map_err(|_| anyhow::anyhow!("required container {id} no longer exists"))?;
        engine.store.refresh_state(&mut dep)?;
        if dep.state != ContainerState::Running {
            start_requirements(engine, global, &launch::summary(&dep)?.requires, depth + 1)?;
            monitor::start_detached(engine, global, &dep, None)?;
        }
    }
    Ok(())
}

pub fn start(args: StartArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let attach = args.attach || args.interactive;
    if attach && (args.all || args.containers.len() != 1) {
        bail!("you cannot start and attach multiple containers at once");
    }
    let keys = attach::parse_detach_keys(&args.detach_keys)?;
    let engine = Engine::open(global)?;
    if attach {
        return start_attached(&engine, global, &args.containers[0], args.interactive, &keys);
    }
    let names: Vec<String> = if args.all {
        engine.store.containers()?.into_iter().map(|c| c.id).collect()
    } else {
        args.containers.clone()
    };
    let mut failed = None;
    for name in &names {
        let result = engine
            .store
            .container(name)
            .map_err(anyhow::Error::from)
            .and_then(|mut c| start_one(&engine, global, &mut c, None));
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::message(&e));
                failed = Some(125);
            }
        }
    }
    Ok(failed.unwrap_or(0))
}

/// `start -a`: the client connects before the container starts, so no output is missed.
fn start_attached(
    engine: &Engine,
    global: &GlobalOptions,
    name: &str,
    interactive: bool,
    keys: &[u8],
) -> anyhow::Result<i32> {
    let store = &engine.store;
    let mut c = store.container(name)?;
    store.refresh_state(&mut c)?;
    if c.state == ContainerState::Running {
        // Already running: as `attach`.
        return attach::attach_to(engine, &c, interactive, keys);
    }
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    start_one(engine, global, &mut c, Some(theirs))?;
    let launch = launch::load(store, &c)?;
    attach::client(store, &c.id, &launch, &ours, interactive, keys)
}
