//! `burrow __monitor ID`: the hidden mode a detached container's monitor runs in.

use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Report readiness on stdout (a transient unit's), not on descriptor 3
    #[arg(long)]
    ready_on_stdout: bool,
    /// Start the container only once "go" comes on stdin; exit if it closes without it
    #[arg(long)]
    go_on_stdin: bool,
    id: String,
}

pub fn monitor(args: MonitorArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    crate::monitor::monitor_main(global, &args.id, args.ready_on_stdout, args.go_on_stdin)
}
