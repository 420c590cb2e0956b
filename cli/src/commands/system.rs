//! `burrow system ...`: managing burrow itself.

use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Stop the process that keeps the user namespace, so the next call makes a new one
    /// (after /etc/subuid or /etc/subgid changed)
    Migrate,
}

pub fn system(cmd: SystemCommand, global: &GlobalOptions) -> anyhow::Result<i32> {
    match cmd {
        SystemCommand::Migrate => {
            let (uid, _, _) = crate::context::host_ids()?;
            let (paths, _) = crate::context::store_paths(global, uid)?;
            burrow_userns::pause::stop(&paths.run_root);
            Ok(0)
        }
    }
}
