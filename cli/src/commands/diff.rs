//! `burrow diff`: what a container changed in its image (A added, C changed, D deleted).

use anyhow::{bail, Result};
use burrow_userns::mount::RootfsSource;
use serde::Serialize;

use super::changes::{self, Kind};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Change the output format (json)
    #[arg(long)]
    format: Option<String>,
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    /// The container (name or id)
    #[arg(required_unless_present = "latest")]
    container: Option<String>,
}

/// Where the container's spec mounts something.
pub fn mount_destinations(launch: &crate::launch::Launch) -> Vec<std::path::PathBuf> {
    launch
        .spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .collect()
}

#[derive(Serialize)]
struct JsonChanges {
    changed: Vec<String>,
    added: Vec<String>,
    deleted: Vec<String>,
}

pub fn diff(args: DiffArgs, global: &GlobalOptions) -> Result<i32> {
    if args.format.as_deref().is_some_and(|f| f != "json") {
        bail!("only json is supported as --format");
    }
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let record = match (&args.container, args.latest) {
        (Some(name), _) => store.container(name)?,
        (None, _) => store
            .containers()?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no containers"))?,
    };
    let launch = crate::launch::load(store, &record)?;
    let RootfsSource::Overlay { lower, upper, .. } = &launch.rootfs else {
        bail!(
            "container {} runs on a root directory of its own (--rootfs): it has no image to differ from",
            record.id
        );
    };
    let skip = changes::mount_points(upper, lower, &mount_destinations(&launch));
    let list: Vec<_> = changes::changes(upper, lower, &skip)?
        .into_iter()
        .filter(|(_, path)| !changes::MOUNT_POINTS.contains(&&path[1..]))
        .collect();
    if args.format.is_some() {
        let pick = |k: Kind| {
            list.iter()
                .filter(|(x, _)| *x == k)
                .map(|(_, p)| p.clone())
                .collect()
        };
        let out = JsonChanges {
            changed: pick(Kind::Changed),
            added: pick(Kind::Added),
            deleted: pick(Kind::Deleted),
        };
        println!("{}", super::format::json_pretty(&out));
        return Ok(0);
    }
    let mut text = String::new();
    for (kind, path) in list {
        text.push_str(&format!("{} {path}\n", kind.letter()));
    }
    print!("{text}");
    Ok(0)
}
