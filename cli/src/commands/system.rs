//! `burrow system ...`: managing burrow itself.

use super::{info, system_clean, system_df};
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum SystemCommand {
    /// Show burrow disk usage
    Df(system_df::DfArgs),
    /// Display burrow system information
    Info(info::InfoArgs),
    /// Remove unused data
    Prune(system_clean::PruneArgs),
    /// Reset burrow storage back to initial state
    Reset(system_clean::ResetArgs),
    /// Stop the process that keeps the user namespace, so the next call makes a new one
    /// (after /etc/subuid or /etc/subgid changed)
    Migrate,
}

pub fn system(cmd: SystemCommand, global: &GlobalOptions) -> anyhow::Result<i32> {
    match cmd {
        SystemCommand::Df(a) => system_df::df(a, global),
        SystemCommand::Info(a) => info::info(a, global),
        SystemCommand::Prune(a) => system_clean::prune(a, global),
        SystemCommand::Reset(a) => system_clean::reset(a, global),
        SystemCommand::Migrate => {
            let (uid, _, _) = crate::context::host_ids()?;
            let (paths, _) = crate::context::store_paths(global, uid)?;
            burrow_userns::pause::stop(&paths.run_root);
            Ok(0)
        }
    }
}
