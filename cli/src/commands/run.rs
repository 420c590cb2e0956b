//! `burrow run`: `create` and start, in the foreground or (`-d`) under a monitor.

use crate::commands::create::{prepare, CreateArgs};
use crate::context::Engine;
use crate::{launch, monitor, GlobalOptions};

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// With -d, run the container's monitor as a transient unit of the user's systemd manager, when one is reachable (false: a plain monitor)
    #[arg(long, value_name = "BOOL", default_value = "true", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    systemd: String,
    #[command(flatten)]
    create: CreateArgs,
}

pub fn run(args: RunArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let systemd = match args.systemd.as_str() {
        "true" | "always" => true,
        "false" => false,
        other => anyhow::bail!("invalid --systemd {other:?}: must be true, false or always"),
    };
    let engine = Engine::open(global)?;
    if args.detach {
        // The monitor checkpoints once the container runs: no fsync before we return.
        engine.store.defer_checkpoints()?;
    }
    let (record, launch) = prepare(&engine, &args.create)?;
    super::start::start_requirements(&engine, global, &launch.requires, 0)?;
    if !args.detach {
        return launch::run_foreground(&engine, &record, &launch);
    }
    monitor::start_detached_with(&engine, global, &record, None, systemd)?;
    println!("{}", record.id);
    Ok(0)
}
