//! `burrow container SUBCOMMAND`: the container commands under one noun (Podman's and
//! Docker's `container`), each the same handler as its top-level spelling, plus `exists`
//! and `prune`, which live only here.

use anyhow::Result;

use super::{
    attach, commit, cp, create, ctrutil, diff, exec, inspect, logs, mount, pause, port, ps, rename, restart,
    rm, run, start, stats, stop, top, wait,
};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum ContainerCommand {
    /// Attach to a running container
    Attach(attach::AttachArgs),
    /// Create new image based on the changed container
    Commit(commit::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Create but do not start a container
    Create(Box<create::CreateArgs>),
    /// Inspect changes to the container's file systems
    Diff(diff::DiffArgs),
    /// Run a process in a running container
    Exec(exec::ExecArgs),
    /// Check if a container exists in local storage
    Exists {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Display the configuration of a container
    Inspect(inspect::InspectArgs),
    /// Kill one or more running containers with a specific signal
    Kill(stop::KillArgs),
    /// List containers
    #[command(visible_aliases = ["ls", "ps"])]
    List(ps::PsArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Mount a working container's root filesystem
    Mount(mount::MountArgs),
    /// Pause all the processes in one or more containers
    Pause(pause::PauseArgs),
    /// List port mappings or a specific mapping for the container
    Port(port::PortArgs),
    /// Remove all non running containers
    Prune(PruneArgs),
    /// Rename an existing container
    Rename(rename::RenameArgs),
    /// Restart one or more containers
    Restart(restart::RestartArgs),
    /// Remove one or more containers
    Rm(rm::RmArgs),
    /// Run a command in a new container
    Run(Box<run::RunArgs>),
    /// Start one or more containers
    Start(start::StartArgs),
    /// Display a live stream of container resource usage statistics
    Stats(stats::StatsArgs),
    /// Stop one or more containers
    Stop(stop::StopArgs),
    /// Display the running processes of a container
    Top(top::TopArgs),
    /// Unmount working container's root filesystem
    #[command(visible_alias = "unmount")]
    Umount(mount::UmountArgs),
    /// Unpause the processes in one or more containers
    Unpause(pause::PauseArgs),
    /// Block on one or more containers
    Wait(wait::WaitArgs),
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (until=TIMESTAMP|DURATION, label=KEY[=VALUE])
    #[arg(long)]
    filter: Vec<String>,
}

pub fn container(cmd: ContainerCommand, global: &GlobalOptions) -> Result<i32> {
    match cmd {
        ContainerCommand::Attach(a) => attach::attach(a, global),
        ContainerCommand::Commit(a) => commit::commit(a, global),
        ContainerCommand::Cp(a) => cp::cp(a, global),
        ContainerCommand::Create(a) => create::create(*a, global),
        ContainerCommand::Diff(a) => diff::diff(a, global),
        ContainerCommand::Exec(a) => exec::exec(a, global),
        ContainerCommand::Exists { container } => exists(&container, global),
        ContainerCommand::Inspect(a) => inspect::inspect_containers(a, global),
        ContainerCommand::Kill(a) => stop::kill(a, global),
        ContainerCommand::List(a) => ps::ps(a, global),
        ContainerCommand::Logs(a) => logs::logs(a, global),
        ContainerCommand::Mount(a) => mount::mount(a, global),
        ContainerCommand::Pause(a) => pause::pause(a, global),
        ContainerCommand::Port(a) => port::port(a, global),
        ContainerCommand::Prune(a) => prune(a, global),
        ContainerCommand::Rename(a) => rename::rename(a, global),
        ContainerCommand::Restart(a) => restart::restart(a, global),
        ContainerCommand::Rm(a) => rm::rm(a, global),
        ContainerCommand::Run(a) => run::run(*a, global),
        ContainerCommand::Start(a) => start::start(a, global),
        ContainerCommand::Stats(a) => stats::stats(a, global),
        ContainerCommand::Stop(a) => stop::stop(a, global),
        ContainerCommand::Top(a) => top::top(a, global),
        ContainerCommand::Umount(a) => mount::umount(a, global),
        ContainerCommand::Unpause(a) => pause::unpause(a, global),
        ContainerCommand::Wait(a) => wait::wait(a, global),
    }
}

fn exists(name: &str, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    match engine.store.container(name) {
        Ok(_) => Ok(0),
        Err(burrow_storage::StoreError::NoSuchContainer(_)) => Ok(1),
        Err(e) => Err(e.into()),
    }
}

/// Seconds since the epoch of an `until=` value: a time (RFC 3339, `2006-01-02`, unix
/// seconds) or a duration back from now (`10m`, `1h30m`, `45s`).
pub fn parse_until(text: &str, now: i64) -> Result<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    if let Some(t) = super::imageutil::parse_rfc3339(text) {
        return Ok(t);
    }
    if let Some(t) = super::imageutil::parse_rfc3339(&format!("{text}T00:00:00Z")) {
        return Ok(t);
    }
    let mut total = 0i64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid time or duration {text:?}"))?;
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => anyhow::bail!("invalid time or duration {text:?}"),
        };
    }
    if !number.is_empty() || total == 0 {
        anyhow::bail!("invalid time or duration {text:?}");
    }
    Ok(now - total)
}

fn prune(args: PruneArgs, global: &GlobalOptions) -> Result<i32> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let mut until = None;
    let mut labels = Vec::new();
    for f in &args.filter {
        match f.split_once('=') {
            Some(("until", v)) => until = Some(parse_until(v, now)?),
            Some(("label", v)) => labels.push(v.to_string()),
            _ => anyhow::bail!("invalid filter {f:?}: burrow's container prune supports until= and label="),
        }
    }
    if !args.force
        && !ctrutil::confirm(&format!(
            "WARNING! This will remove all non running containers.\n{}",
            ctrutil::ARE_YOU_SURE
        ))?
    {
        return Ok(0);
    }
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let mut code = 0;
    for mut c in store.containers()? {
        store.refresh_state(&mut c)?;
        if c.state == burrow_storage::ContainerState::Running {
            continue;
        }
        if until.is_some_and(|u| c.created >= u) {
            continue;
        }
        if !labels.is_empty() {
            let have = serde_json::from_str::<serde_json::Value>(&c.config)
                .ok()
                .and_then(|v| v.get("labels").cloned())
                .unwrap_or_default();
            let matches = labels.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => have.get(k).and_then(|x| x.as_str()) == Some(v),
                None => have.get(l.as_str()).is_some(),
            });
            if !matches {
                continue;
            }
        }
        super::mount::release(store, &c);
        match super::network::remove_container(store, &c.id, false) {
            Ok(()) => println!("{}", c.id),
            Err(e) => {
                eprintln!("Error: removing container {}: {e}", c.id);
                code = 125;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn until_takes_times_and_durations() {
        let now = 1_000_000;
        assert_eq!(super::parse_until("1h30m", now).unwrap(), now - 5400);
        assert_eq!(super::parse_until("10s", now).unwrap(), now - 10);
        assert_eq!(super::parse_until("12345", now).unwrap(), 12345);
        assert_eq!(super::parse_until("1970-01-02T00:00:00Z", now).unwrap(), 86400);
        assert!(super::parse_until("soon", now).is_err());
    }
}
