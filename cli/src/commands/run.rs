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

/// Before the command line is parsed (single-threaded): a `run -d` that will ask the user's
/// manager for a unit gets the kernel's cgroup migration ready for it first (see
/// [`burrow_systemd::warm`]): the grace period it may wait is the longest part of the
/// start, and it runs beside everything else from here on. A wrong guess costs a no-op.
pub fn before_parsing() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if detached_run(&args) && crate::sdunits::monitor_unit("", true).is_some() {
        burrow_systemd::warm::warm_cgroup_migration();
    }
}

/// Whether `args` (argv without argv[0]) look like `[GLOBAL...] [container] run ... -d ...`
/// without `--systemd=false`.
fn detached_run(args: &[String]) -> bool {
    let mut rest = args.iter().map(String::as_str);
    let mut command = None;
    while let Some(arg) = rest.next() {
        match arg {
            "--root" | "--runroot" | "--log-level" => {
                rest.next();
            }
            "container" => {}
            a if a.starts_with('-') => {}
            a => {
                command = Some(a);
                break;
            }
        }
    }
    if command != Some("run") {
        return false;
    }
    let mut detach = false;
    let mut previous = "";
    for arg in rest {
        // The image and its command follow; `--` ends the flags.
        if arg == "--" {
            break;
        }
        match arg {
            "--systemd=false" => return false,
            "false" if previous == "--systemd" => return false,
            "--detach" | "--detach=true" => detach = true,
            a if a.starts_with('-') && !a.starts_with("--") && a[1..].contains('d') => detach = true,
            _ => {}
        }
        previous = arg;
    }
    detach
}

pub fn run(args: RunArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let result = run_inner(args, global);
    burrow_systemd::warm::reap();
    result
}

fn run_inner(args: RunArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let systemd = match args.systemd.as_str() {
        "true" | "always" => true,
        "false" => false,
        other => anyhow::bail!("invalid --systemd {other:?}: must be true, false or always"),
    };
    // While the user namespace is joined, the manager answers.
    let bus = if args.detach {
        crate::sdunits::connect_for_unit(systemd)
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

#[cfg(test)]
mod tests {
    use super::detached_run;

    fn detached(line: &str) -> bool {
        detached_run(&line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn guesses_a_detached_run_before_parsing() {
        assert!(detached("run -d img true"));
        assert!(detached("--runroot /r container run --rm -dit img sh"));
        assert!(detached("run --name x --detach img"));
        assert!(!detached("run img true"));
        assert!(!detached("run -it img sh"));
        assert!(!detached("run -d --systemd=false img"));
        assert!(!detached("run -d --systemd false img"));
        assert!(!detached("create -d img"));
        assert!(!detached("--root run ps -d"));
        assert!(!detached("run img -- -d"));
    }
}
