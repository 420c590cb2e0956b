//! `burrow start`: start created or exited containers, each under its monitor.

use burrow_storage::ContainerState;

use crate::context::Engine;
use crate::{monitor, GlobalOptions};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Containers to start (names or ids)
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn start(args: StartArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let mut failed = None;
    for name in &args.containers {
        let result = engine
            .store
            .container(name)
            .map_err(anyhow::Error::from)
            .and_then(|mut c| {
                engine.store.refresh_state(&mut c)?;
                if c.state != ContainerState::Running {
                    monitor::start_detached(&engine, global, &c)?;
                }
                Ok(())
            });
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
