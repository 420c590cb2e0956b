//! `burrow run`: `create` and start, in the foreground or (`-d`) under a monitor.

use burrow_storage::{Store, StoreError};

use crate::commands::create::{prepare, prepare_with_id, CreateArgs};
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
    // Before the user namespace is joined (a fork) and while it is (the manager answers).
    let bus = if args.detach {
        crate::sdunits::warm_for_unit(systemd)
    } else {
        None
    };
    let engine = Engine::open(global)?;
    if !args.detach {
        let (record, launch) = prepare(&engine, &args.create)?;
        super::start::start_requirements(&engine, global, &launch.requires, 0)?;
        return launch::run_foreground(&engine, &record, &launch);
    }
    // The monitor (and its unit) starts first and gets ready while the container is made.
    let id = Store::new_container_id();
    let stop_timeout = args.create.stop_timeout.unwrap_or(10);
    let pending = monitor::PendingMonitor::spawn(&engine, global, &id, None, systemd, stop_timeout, bus)?;
    let made = prepare_with_id(&engine, &args.create, &id)
        .and_then(|(_, launch)| super::start::start_requirements(&engine, global, &launch.requires, 0));
    if let Err(e) = made {
        pending.cancel();
        // Nothing of a container that was not made stays (its record, if made, keeps its dir).
        if matches!(engine.store.container(&id), Err(StoreError::NoSuchContainer(_))) {
            let _ = engine.store.remove_container(&id);
        }
        return Err(e);
    }
    pending.go()?;
    println!("{id}");
    Ok(0)
}
