//! `burrow system prune` and `burrow system reset`: removing what is unused, or everything.

use anyhow::Result;
use burrow_storage::{ContainerState, Store};

use super::ctrutil;
use super::format::human_size;
use super::system_df::disk_usage;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Prune volumes not used by at least one container
    #[arg(long)]
    volumes: bool,
    /// Provide filter values (e.g. 'label=<key>=<value>')
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Remove external containers too (accepted; burrow's containers are all its own)
    #[arg(long)]
    external: bool,
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn prune(args: PruneArgs, global: &GlobalOptions) -> Result<i32> {
    if !args.filter.is_empty() {
        anyhow::bail!("system prune --filter is not supported yet");
    }
    let _ = args.external;
    if !args.force {
        let volumes = if args.volumes {
            "\n\t- all volumes not used by at least one container"
        } else {
            ""
        };
        let images = if args.all {
            "\t- all images without at least one container associated with them\n\t- all build cache"
        } else {
            "\t- all dangling images\n\t- all dangling build cache"
        };
        let question = format!(
            "WARNING! This command removes:\n\t- all stopped containers\n\t- all networks not used by at least one container{volumes}\n{images}\n\n{}",
            ctrutil::ARE_YOU_SURE
        );
        if !ctrutil::confirm(&question)? {
            return Ok(0);
        }
    }
    let mut engine = Engine::open(global)?;
    let store = &mut engine.store;
    let mut reclaimed = 0u64;
    let mut errors = Vec::new();
    let mut removed_containers = Vec::new();
    for mut c in store.containers()? {
        store.refresh_state(&mut c)?;
        if c.state == ContainerState::Running {
            continue;
        }
        let size = disk_usage(&store.container_dirs(&c.id).upper);
        match super::network::remove_container(store, &c.id, false) {
            Ok(()) => {
                reclaimed += size;
                removed_containers.push(c.id);
            }
            Err(e) => errors.push(format!("removing container {}: {e}", c.id)),
        }
    }
    let (removed_images, bytes) = prune_images(store, args.all, &mut errors)?;
    reclaimed += bytes;
    let mut removed_volumes = Vec::new();
    if args.volumes {
        for v in store.volumes()? {
            if !store.volume_users(&v.name)?.is_empty() {
                continue;
            }
            let size = disk_usage(&store.volume_data(&v.name));
            match store.remove_volume(&v.name) {
                Ok(()) => {
                    reclaimed += size;
                    removed_volumes.push(v.name);
                }
                Err(e) => errors.push(format!("removing volume {}: {e}", v.name)),
            }
        }
    }
    if !removed_containers.is_empty() {
        println!("Deleted Containers");
        for id in &removed_containers {
            println!("{id}");
        }
    }
    if !removed_volumes.is_empty() {
        println!("Deleted Volumes");
        for name in &removed_volumes {
            println!("{name}");
        }
    }
    if !removed_images.is_empty() {
        println!("Deleted Images");
        for id in &removed_images {
            println!("{id}");
        }
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    report(errors)
}

/// Removes dangling images (all unused ones with `all`), again and again while that frees
/// more. Returns their ids and the bytes their layers took.
pub fn prune_images(store: &mut Store, all: bool, errors: &mut Vec<String>) -> Result<(Vec<String>, u64)> {
    let before: u64 = store.layer_sizes()?.values().sum();
    let mut removed = Vec::new();
    loop {
        let used: Vec<String> = store
            .containers()?
            .into_iter()
            .filter_map(|c| c.image_id)
            .collect();
        let doomed: Vec<String> = store
            .images()?
            .into_iter()
            .filter(|i| (all || i.names.is_empty()) && !used.contains(&i.id))
            .map(|i| i.id)
            .filter(|id| !removed.contains(id))
            .collect();
        if doomed.is_empty() {
            break;
        }
        for id in doomed {
            match store.remove_image(&id) {
                Ok(()) => removed.push(id),
                Err(burrow_storage::StoreError::ImageNotKnown(_)) => {}
                Err(e) => {
                    errors.push(format!("removing image {id}: {e}"));
                    removed.push(id);
                }
            }
        }
    }
    let after: u64 = store.layer_sizes()?.values().sum();
    Ok((removed, before.saturating_sub(after)))
}

/// Prints every error but the last, which becomes the command's.
fn report(mut errors: Vec<String>) -> Result<i32> {
    let Some(last) = errors.pop() else {
        return Ok(0);
    };
    for e in errors {
        eprintln!("Error: {e}");
    }
    Err(anyhow::anyhow!(last))
}

pub fn reset(args: ResetArgs, global: &GlobalOptions) -> Result<i32> {
    if !args.force
        && !ctrutil::confirm(&format!(
            "WARNING! This will remove:\n        - all containers\n        - all pods\n        - all images\n        - all networks\n        - all build cache\n        - all machines\n        - all volumes\n{}",
            ctrutil::ARE_YOU_SURE
        ))?
    {
        return Ok(0);
    }
    // Joins the user namespace first: the store's files belong to subordinate ids, which
    // only root inside it may delete, and this process keeps it after the pause process goes.
    let engine = Engine::open(global)?;
    let mut errors = Vec::new();
    for c in engine.store.containers()? {
        for pid in [c.monitor_pid, c.pid].into_iter().flatten() {
            if pid > 1 && burrow_storage::process_alive(pid) {
                // SAFETY: plain kill(2) of a pid a record names, checked alive first.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let paths = engine.store.paths.clone();
    drop(engine);
    burrow_userns::pause::stop(&paths.run_root);
    for dir in [&paths.graph_root, &paths.run_root] {
        remove_store_dir(dir, &mut errors);
    }
    report(errors)
}

/// What burrow keeps in its graph and run roots.
const OWN_ENTRIES: &[&str] = &[
    "burrow.db",
    "burrow.db-wal",
    "burrow.db-shm",
    "layers",
    "layers.lock",
    "containers",
    "burrow-volumes",
    "tmp",
    "cache",
    "events.log",
    "pause.pid",
];

/// Removes a store directory whole, unless Podman shares it (a storage.conf may point both
/// at one place): then only burrow's own entries go.
fn remove_store_dir(dir: &std::path::Path, errors: &mut Vec<String>) {
    let shared = ["storage.lock", "libpod", "overlay-images", "overlay-containers"]
        .iter()
        .any(|m| dir.join(m).exists());
    let result = if shared {
        OWN_ENTRIES.iter().try_for_each(|name| {
            let path = dir.join(name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    } else {
        std::fs::remove_dir_all(dir)
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("removing {}: {e}", dir.display())),
    }
}
