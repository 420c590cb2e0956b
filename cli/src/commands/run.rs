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
    #[command(flatten)]
    create: CreateArgs,
}

pub fn run(args: RunArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let (record, launch) = prepare(&engine, &args.create)?;
    super::start::start_requirements(&engine, global, &launch.requires, 0)?;
    if !args.detach {
        return launch::run_foreground(&engine, &record, &launch);
    }
    monitor::start_detached(&engine, global, &record, None)?;
    println!("{}", record.id);
    Ok(0)
}
