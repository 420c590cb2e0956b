//! `burrow healthcheck run`: run a container's healthcheck once.

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum HealthcheckCommand {
    /// Run the health check of a container
    Run {
        /// The container (name or id)
        container: String,
    },
}

pub fn healthcheck(cmd: HealthcheckCommand, global: &GlobalOptions) -> anyhow::Result<i32> {
    let HealthcheckCommand::Run { container } = cmd;
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let mut c = store.container(&container)?;
    store.refresh_state(&mut c)?;
    let outcome = crate::health::run_check(store, global, &c)?;
    // As Podman: silent when healthy (or still starting), "unhealthy" and 1 otherwise.
    if outcome.healthy {
        Ok(0)
    } else {
        println!("{}", outcome.status);
        Ok(1)
    }
}
