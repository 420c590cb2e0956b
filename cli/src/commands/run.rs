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

/// Before the command line is parsed (single-threaded), for what looks like a `run -d`:
/// - one that will ask the user's manager for a unit gets the kernel's cgroup migration ready
///   for it first (see [`burrow_systemd::warm`]): the grace period it may wait is the longest
///   part of the start, and it runs beside everything else from here on;
/// - one with a plain monitor forks, and the child becomes the monitor once it has made the
///   container (see [`monitor::fork_early`]). Not within a service unit: there the unit's
///   processes and main process are the manager's business, and a `__monitor` is what it
///   expects (as `start` and a refused unit have). Nor with `--init` or a nested user
///   namespace: a process that never execs (`--init`'s PID 1), or whose credentials change
///   early (a nested root), and whose memory was made by a forked `run -d`, can have its
///   /proc/PID/ns opened only with CAP_SYS_PTRACE in the initial user namespace (the
///   memory's), so `exec` and the network's set-up could not join it; an exec'd monitor's
///   memory belongs to burrow's namespace.
///
/// A wrong guess costs a no-op, or a parent that waits for its child.
pub fn before_parsing() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(systemd) = detached_run(&args) else {
        return;
    };
    if crate::sdunits::monitor_unit("", systemd).is_some() {
        burrow_systemd::warm::warm_cgroup_migration();
    } else if !burrow_systemd::scope::in_service_unit() && !needs_exec_monitor(&args) {
        monitor::fork_early();
    }
}

/// Whether `args` ask for `--init` or a nested user namespace (see [`before_parsing`]).
fn needs_exec_monitor(args: &[String]) -> bool {
    const FLAGS: [&str; 6] = [
        "--init",
        "--userns",
        "--uidmap",
        "--gidmap",
        "--subuidname",
        "--subgidname",
    ];
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| FLAGS.contains(&a.split('=').next().unwrap_or_default()))
}

/// Whether `args` (argv without argv[0]) look like `[GLOBAL...] [container] run ... -d ...`:
/// if so, whether a unit may be asked for (no `--systemd=false`).
fn detached_run(args: &[String]) -> Option<bool> {
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
        return None;
    }
    let mut detach = false;
    let mut systemd = true;
    let mut previous = "";
    for arg in rest {
        // The image and its command follow; `--` ends the flags.
        if arg == "--" {
            break;
        }
        match arg {
            "--systemd=false" => systemd = false,
            "false" if previous == "--systemd" => systemd = false,
            "--detach" | "--detach=true" => detach = true,
            a if a.starts_with('-') && !a.starts_with("--") && a[1..].contains('d') => detach = true,
            _ => {}
        }
        previous = arg;
    }
    detach.then_some(systemd)
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
    // Forked before parsing to become the monitor: the container is made here, and run.
    let forked = args.detach.then(monitor::take_forked_parent).flatten();
    // While the user namespace is joined, the manager answers.
    let bus = if args.detach && forked.is_none() {
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
    let id = Store::new_container_id();
    let make = || {
        prepare_with_id(&engine, &args.create, &id).and_then(|(record, launch)| {
            super::start::start_requirements(&engine, global, &launch.requires, 0)?;
            Ok((record, launch))
        })
    };
    if let Some(parent) = forked {
        // The monitor checkpoints once the container runs: no fsync before the user has its id.
        engine.store.defer_checkpoints()?;
        return match make() {
            Ok((record, launch)) => monitor::serve_forked(&engine, global, record, launch, parent, systemd),
            Err(e) => {
                remove_unmade(&engine, &id);
                Err(e)
            }
        };
    }
    // The monitor (and its unit) starts first and gets ready while the container is made.
    let stop_timeout = args.create.stop_timeout.unwrap_or(10);
    let pending = monitor::PendingMonitor::spawn(&engine, global, &id, None, systemd, stop_timeout, bus)?;
    if let Err(e) = make() {
        pending.cancel();
        remove_unmade(&engine, &id);
        return Err(e);
    }
    pending.go()?;
    println!("{id}");
    Ok(0)
}

/// Nothing of a container that was not made stays (its record, if made, keeps its dir).
fn remove_unmade(engine: &Engine, id: &str) {
    if matches!(engine.store.container(id), Err(StoreError::NoSuchContainer(_))) {
        let _ = engine.store.remove_container(id);
    }
}

#[cfg(test)]
mod tests {
    use super::detached_run;

    fn detached(line: &str) -> Option<bool> {
        detached_run(&line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn guesses_a_detached_run_before_parsing() {
        // Some(whether a unit may be asked for).
        assert_eq!(detached("run -d img true"), Some(true));
        assert_eq!(
            detached("--runroot /r container run --rm -dit img sh"),
            Some(true)
        );
        assert_eq!(detached("run --name x --detach img"), Some(true));
        assert_eq!(detached("run -d --systemd=false img"), Some(false));
        assert_eq!(detached("run --systemd false -d img"), Some(false));
        assert_eq!(detached("run img true"), None);
        assert_eq!(detached("run -it img sh"), None);
        assert_eq!(detached("run --systemd=false img"), None);
        assert_eq!(detached("create -d img"), None);
        assert_eq!(detached("--root run ps -d"), None);
        assert_eq!(detached("run img -- -d"), None);
    }

    #[test]
    fn init_and_nested_user_namespaces_want_an_exec_monitor() {
        let needs = |line: &str| {
            super::needs_exec_monitor(&line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        };
        assert!(needs("run -d --init img true"));
        assert!(needs("run -d --init=true img true"));
        assert!(needs("run -d --userns=auto img true"));
        assert!(needs("run -d --uidmap 0:1:5000 img true"));
        assert!(!needs("run -d img true"));
        assert!(!needs("run -d --user 1000 img true"));
        assert!(!needs("run -d img -- --init"));
    }
}
