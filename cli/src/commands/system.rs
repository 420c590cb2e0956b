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
            let (paths, _) =
                burrow_storage::StorePaths::for_current_user(global.root.clone(), global.runroot.clone())?;
            burrow_userns::pause::stop(&paths.run_root);
            Ok(0)
        }
    }
}
