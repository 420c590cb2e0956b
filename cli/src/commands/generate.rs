//! `burrow generate systemd`: a user unit for a container, as Podman's.

use anyhow::{bail, Context as _};
use burrow_systemd::unit::{self, ContainerUnitOptions};
use clap::CommandFactory;

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum GenerateCommand {
    /// Generate systemd units
    Systemd(SystemdArgs),
}

#[derive(Debug, clap::Args)]
pub struct SystemdArgs {
    /// Create a new container on start and remove it on stop, instead of starting an existing one
    #[arg(long)]
    new: bool,
    /// Use the container's name instead of its id in the unit's name
    #[arg(short = 'n', long)]
    name: bool,
    /// Write the unit to a file in the current directory instead of stdout
    #[arg(short = 'f', long)]
    files: bool,
    /// systemd restart policy (Restart=; default: the container's --restart, else on-failure)
    #[arg(long = "restart-policy", value_name = "POLICY")]
    restart_policy: Option<String>,
    /// Seconds systemd waits before restarting (RestartSec=)
    #[arg(long = "restart-sec", value_name = "SECONDS")]
    restart_sec: Option<u32>,
    /// Start timeout in seconds (TimeoutStartSec=)
    #[arg(long = "start-timeout", value_name = "SECONDS")]
    start_timeout: Option<u32>,
    /// Stop timeout in seconds (default: the container's)
    #[arg(
        short = 't',
        long = "stop-timeout",
        visible_alias = "time",
        value_name = "SECONDS"
    )]
    stop_timeout: Option<u32>,
    /// Add the unit to After= (repeatable)
    #[arg(long, value_name = "UNIT")]
    after: Vec<String>,
    /// Add the unit to Wants= (repeatable)
    #[arg(long, value_name = "UNIT")]
    wants: Vec<String>,
    /// Add the unit to Requires= (repeatable)
    #[arg(long, value_name = "UNIT")]
    requires: Vec<String>,
    /// Set an environment variable in the unit (KEY=VALUE)
    #[arg(short = 'e', long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Make a template unit (NAME@.service); needs --new
    #[arg(long)]
    template: bool,
    /// Prefix of the unit's name
    #[arg(long = "container-prefix", default_value = "container")]
    container_prefix: String,
    /// Separator between prefix and name
    #[arg(long, default_value = "-")]
    separator: String,
    /// Leave out the header comment
    #[arg(long = "no-header")]
    no_header: bool,
    /// The container (name or id)
    container: String,
}

pub fn generate(cmd: GenerateCommand, global: &GlobalOptions) -> anyhow::Result<i32> {
    match cmd {
        GenerateCommand::Systemd(args) => systemd(args, global),
    }
}

fn systemd(args: SystemdArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    if let Some(policy) = &args.restart_policy {
        if !unit::RESTART_POLICIES.contains(&policy.as_str()) {
            bail!(
                "{policy} is not a valid restart policy: must be one of {}",
                unit::RESTART_POLICIES.join(", ")
            );
        }
    }
    if args.template && !args.new {
        bail!("--template cannot be set without --new");
    }
    for e in &args.env {
        if !e.contains('=') || e.starts_with('=') {
            bail!("invalid --env {e:?}: expected KEY=VALUE");
        }
    }
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let record = store.container(&args.container)?;
    let launch = crate::launch::summary(&record)?;
    let new_run_args = if args.new {
        let command = &launch.systemd.create_command;
        if command.is_empty() {
            bail!(
                "container {} has no recorded create command (made by an older burrow): cannot use --new",
                record.name
            );
        }
        Some(run_args_for_unit(command)?)
    } else {
        None
    };
    let base = if args.name { &record.name } else { &record.id };
    let unit_name = format!("{}{}{}", args.container_prefix, args.separator, base);
    let options = ContainerUnitOptions {
        unit_name: unit_name.clone(),
        container: if args.name {
            record.name.clone()
        } else {
            record.id.clone()
        },
        burrow: crate::sdunits::unit_burrow(&store.paths, engine.host_uid, global),
        new_run_args,
        sdnotify: match launch.systemd.sdnotify {
            crate::sdunits::SdNotify::Container => "container".into(),
            crate::sdunits::SdNotify::Ignore => "ignore".into(),
            crate::sdunits::SdNotify::Conmon => "conmon".into(),
        },
        pid_file: store
            .container_dirs(&record.id)
            .bundle
            .join("monitor.pid")
            .display()
            .to_string(),
        run_root: store.paths.run_root.display().to_string(),
        // The container's --restart, as systemd's Restart= (the unit restarts it, not the monitor).
        restart_policy: args.restart_policy.clone().unwrap_or_else(|| {
            match launch.restart {
                crate::launch::RestartPolicy::No => "on-failure",
                crate::launch::RestartPolicy::OnFailure(_) => "on-failure",
                crate::launch::RestartPolicy::Always | crate::launch::RestartPolicy::UnlessStopped => {
                    "always"
                }
            }
            .to_string()
        }),
        restart_sec: args.restart_sec,
        start_timeout: args.start_timeout,
        stop_timeout: args.stop_timeout.unwrap_or(launch.stop_timeout),
        after: args.after.clone(),
        wants: args.wants.clone(),
        requires: args.requires.clone(),
        env: args.env.clone(),
        template: args.template,
    };
    let file_name = if args.template {
        format!("{unit_name}@.service")
    } else {
        format!("{unit_name}.service")
    };
    let mut text = String::new();
    if !args.no_header {
        text.push_str(&unit::header(&file_name, env!("CARGO_PKG_VERSION")));
    }
    text.push_str(&unit::container_unit(&options, env!("CARGO_PKG_VERSION")).render());
    if args.files {
        let path = std::env::current_dir()?.join(&file_name);
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    } else {
        print!("{text}");
    }
    Ok(0)
}

/// Flags a `--new` unit sets itself, dropped from the recorded command (with their values):
/// `--restart` is the unit's Restart= (and `run --rm` refuses it).
const UNIT_SETS: &[&str] = &[
    "detach", "rm", "replace", "cidfile", "sdnotify", "systemd", "restart",
];

/// The arguments of `run` that re-create the container from its recorded command line
/// (`burrow [GLOBAL...] run|create [FLAGS...] IMAGE [CMD...]`), without the flags the unit
/// sets itself.
pub fn run_args_for_unit(command: &[String]) -> anyhow::Result<Vec<String>> {
    let mut root = crate::Cli::command();
    // The commands' flags are deferred until built.
    root.build();
    let position = command
        .iter()
        .position(|a| a == "run" || a == "create")
        .context("the recorded create command has no run or create")?;
    let run = root.find_subcommand("run").context("no run subcommand")?.clone();
    let takes_value = |arg: &clap::Arg| {
        arg.get_num_args()
            .map_or_else(|| arg.get_action().takes_values(), |n| n.min_values() > 0)
    };
    let mut out = Vec::new();
    let mut rest = command[position + 1..].iter();
    while let Some(token) = rest.next() {
        if token == "--" || !token.starts_with('-') || token == "-" {
            out.push(token.clone());
            out.extend(rest.cloned());
            break;
        }
        if let Some(long) = token.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            let arg = run.get_arguments().find(|a| {
                a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            });
            let value = match arg {
                Some(a) if takes_value(a) && !inline => rest.next().cloned(),
                _ => None,
            };
            let id = arg.map(|a| a.get_id().as_str().to_string()).unwrap_or_default();
            if UNIT_SETS.contains(&name) || UNIT_SETS.contains(&id.as_str()) {
                continue;
            }
            out.push(token.clone());
            out.extend(value);
            continue;
        }
        // A cluster of short flags (`-dit`), the last of which may take a value.
        let mut kept = String::from("-");
        let chars: Vec<char> = token[1..].chars().collect();
        let mut value = None;
        for (i, c) in chars.iter().enumerate() {
            let arg = run.get_arguments().find(|a| a.get_short() == Some(*c));
            let dropped = arg.is_some_and(|a| UNIT_SETS.contains(&a.get_id().as_str()));
            if !dropped {
                kept.push(*c);
            }
            if arg.is_some_and(takes_value) {
                let attached: String = chars[i + 1..].iter().collect();
                if attached.is_empty() {
                    value = rest.next().cloned();
                } else {
                    kept.push_str(&attached);
                }
                break;
            }
        }
        if kept != "-" {
            out.push(kept);
            out.extend(value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn drops_what_the_unit_sets() {
        let cmd = v(&[
            "/usr/bin/burrow",
            "--root",
            "/r",
            "run",
            "-dit",
            "--rm",
            "--name",
            "web",
            "-e",
            "-d",
            "--cidfile=/x",
            "--sdnotify",
            "conmon",
            "--restart",
            "always",
            "-p",
            "8080:80",
            "bb",
            "httpd",
            "-f",
            "-d",
        ]);
        assert_eq!(
            run_args_for_unit(&cmd).unwrap(),
            v(&["-it", "--name", "web", "-e", "-d", "-p", "8080:80", "bb", "httpd", "-f", "-d"])
        );
        let create = v(&["burrow", "create", "--replace", "bb", "sleep", "1"]);
        assert_eq!(run_args_for_unit(&create).unwrap(), v(&["bb", "sleep", "1"]));
    }
}
