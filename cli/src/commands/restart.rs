//! `burrow restart`: stop (the stop signal, then SIGKILL after the timeout) and start again,
//! under a monitor.

use burrow_storage::ContainerState;

use super::start::start_one;
use super::stop::stop_container;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// Restart all non-running containers too (with --running: only the running ones)
    #[arg(short = 'a', long)]
    all: bool,
    /// Restart only running containers (with --all)
    #[arg(long)]
    running: bool,
    /// Seconds to wait for stop before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout", value_name = "SECONDS")]
    time: Option<u32>,
    /// Containers (names or ids)
    #[arg(required_unless_present = "all")]
    containers: Vec<String>,
}

pub fn restart(args: RestartArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let names: Vec<String> = if args.all {
        let mut all = store.containers()?;
        for c in &mut all {
            store.refresh_state(c)?;
        }
        all.into_iter()
            .filter(|c| !args.running || c.state == ContainerState::Running)
            .map(|c| c.id)
            .collect()
    } else {
        args.containers.clone()
    };
    let mut code = 0;
    for name in &names {
        let result = store
            .container(name)
            .map_err(anyhow::Error::from)
            .and_then(|mut c| {
                stop_container(store, &mut c, args.time)?;
                start_one(&engine, global, &mut c, None)
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
