//! `burrow wait`: block until containers reach a condition (by default, until they stop),
//! print their exit codes.

use std::time::Duration;

use anyhow::bail;
use burrow_storage::{ContainerRecord, ContainerState, Store};

use super::stop::wait_recorded;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Condition to wait on: stopped (default), exited, running, created, paused
    #[arg(long, default_value = "stopped")]
    condition: Vec<String>,
    /// Time interval to wait before polling for completion (for conditions other than stopped/exited)
    #[arg(short = 'i', long, default_value = "250ms", value_name = "DURATION")]
    interval: String,
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    /// Ignore "no such container" errors
    #[arg(long)]
    ignore: bool,
    /// Containers (names or ids)
    #[arg(required_unless_present = "latest")]
    containers: Vec<String>,
}

/// A state `wait --condition` can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Not running: created, exited (Podman's "stopped" and "exited" both end with the process).
    Stopped,
    Running,
    Created,
    Paused,
}

fn parse_condition(text: &str) -> anyhow::Result<Condition> {
    Ok(match text {
        "stopped" | "exited" => Condition::Stopped,
        "running" => Condition::Running,
        "created" | "configured" => Condition::Created,
        "paused" => Condition::Paused,
        other => {
            bail!("invalid condition {other:?}: burrow waits for stopped, exited, running, created or paused")
        }
    })
}

/// A Go-style duration: `250ms`, `1s`, `2m`, or plain milliseconds.
fn parse_interval(text: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("invalid interval {text:?}: expected e.g. 250ms or 1s");
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(match &text[digits.len()..] {
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    })
}

fn holds(c: &ContainerRecord, condition: Condition) -> bool {
    match condition {
        Condition::Stopped => c.state != ContainerState::Running,
        Condition::Running => c.state == ContainerState::Running && !c.paused,
        Condition::Created => c.state == ContainerState::Created,
        Condition::Paused => c.state == ContainerState::Running && c.paused,
    }
}

/// Waits until `c` meets one of `conditions`; returns its record then.
fn wait_one(
    store: &Store,
    mut c: ContainerRecord,
    conditions: &[Condition],
    interval: Duration,
) -> anyhow::Result<ContainerRecord> {
    loop {
        store.refresh_state(&mut c)?;
        if conditions.iter().any(|&k| holds(&c, k)) {
            return Ok(c);
        }
        if conditions == [Condition::Stopped] {
            // The process first (a pidfd, no polling), then the record of its end.
            if let Some(pid) = c.pid {
                super::stop::wait_forever(pid);
            }
            return wait_recorded(store, &c.id);
        }
        // Other states are changes of the record, which nothing signals: poll it, as Podman.
        std::thread::sleep(interval);
        c = store.container(&c.id)?;
    }
}

pub fn wait(args: WaitArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let conditions = args
        .condition
        .iter()
        .map(|c| parse_condition(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let interval = parse_interval(&args.interval)?;
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let names = if args.latest {
        let latest = store
            .containers()?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no containers to wait for"))?;
        vec![latest.id]
    } else {
        args.containers.clone()
    };
    let mut code = 0;
    for name in &names {
        let c = match store.container(name) {
            Ok(c) => c,
            Err(burrow_storage::StoreError::NoSuchContainer(_)) if args.ignore => {
                println!("-1");
                continue;
            }
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
                continue;
            }
        };
        let c = wait_one(store, c, &conditions, interval)?;
        println!("{}", c.exit_code.unwrap_or(-1));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_intervals_parse() {
        assert_eq!(parse_condition("exited").unwrap(), Condition::Stopped);
        assert_eq!(parse_condition("running").unwrap(), Condition::Running);
        assert!(parse_condition("healthy").is_err());
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("soon").is_err());
    }
}
