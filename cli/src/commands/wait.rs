//! `burrow wait`: block until containers stop, print their exit codes.

use burrow_storage::ContainerState;

use super::stop::wait_recorded;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Condition to wait on: stopped (default) or exited
    #[arg(long, default_value = "stopped")]
    condition: String,
    /// Containers (names or ids)
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(args: WaitArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    if !matches!(args.condition.as_str(), "stopped" | "exited") {
        anyhow::bail!(
            "invalid condition {:?}: burrow waits for stopped or exited",
            args.condition
        );
    }
    let engine = Engine::open(global)?;
    for name in &args.containers {
        let c = engine.store.container(name)?;
        let mut c = if c.state == ContainerState::Running {
            // The process first, then the record of its end.
            if let Some(pid) = c.pid {
                super::stop::wait_forever(pid);
            }
            wait_recorded(&engine.store, &c.id)?
        } else {
            c
        };
        engine.store.refresh_state(&mut c)?;
        println!("{}", c.exit_code.unwrap_or(-1));
    }
    Ok(0)
}
