//! `burrow __monitor ID`: the hidden mode a detached container's monitor runs in.

use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    id: String,
}

pub fn monitor(args: MonitorArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    crate::monitor::monitor_main(global, &args.id)
}
