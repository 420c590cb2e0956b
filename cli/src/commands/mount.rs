//! `burrow mount` / `burrow umount`: a container's root filesystem mounted where the user can
//! reach it, in the persistent mount namespace of burrow's mount holder (see
//! `burrow_userns::mountns`: burrow's calls otherwise share the host's mount namespace, where
//! the user namespace may not mount). The path printed is valid inside that namespace:
//! under `burrow unshare`, or from the host as `/proc/HOLDER/root/PATH`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use burrow_storage::{ContainerRecord, Store};
use burrow_userns::mount::RootfsSource;
use burrow_userns::mountns;
use nix::mount::{umount2, MntFlags};

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// Mount all containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Print the mounted containers in the given format (json)
    #[arg(long)]
    format: Option<String>,
    /// Do not truncate IDs in the listing
    #[arg(long)]
    notruncate: bool,
    /// Containers (names or ids); none lists the mounted ones
    containers: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UmountArgs {
    /// Unmount all mounted containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Accepted as Podman's (a mount is never shared with a running container here)
    #[arg(short = 'f', long)]
    force: bool,
    /// Containers (names or ids)
    containers: Vec<String>,
}

/// Where a container's root is mounted: its own directory for `--rootfs`, else `merged`
/// next to its upper dir.
fn mountpoint(store: &Store, c: &ContainerRecord) -> Result<(PathBuf, Option<RootfsSource>)> {
    let launch = crate::launch::load(store, c)?;
    Ok(match launch.rootfs {
        RootfsSource::Directory(dir) => (dir, None),
        overlay => (store.paths.container_dir(&c.id).join("merged"), Some(overlay)),
    })
}

fn targets(store: &Store, all: bool, names: &[String]) -> Result<Vec<ContainerRecord>> {
    if all {
        return Ok(store.containers()?);
    }
    names
        .iter()
        .map(|n| store.container(n).map_err(Into::into))
        .collect()
}

pub fn mount(args: MountArgs, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let run_root = store.paths.run_root.clone();
    if args.containers.is_empty() && !args.all {
        // The listing: what is mounted in the holder's namespace.
        let mut rows = Vec::new();
        if mountns::join(&run_root, false)?.is_some() {
            for c in store.containers()? {
                let (path, overlay) = mountpoint(store, &c)?;
                if overlay.is_some() && mountns::is_mounted(&path) {
                    rows.push((c.id, path));
                }
            }
        }
        if args.format.as_deref() == Some("json") {
            let list: Vec<_> = rows
                .iter()
                .map(|(id, p)| serde_json::json!({"id": id, "mountpoint": p.display().to_string()}))
                .collect();
            println!("{}", super::format::json_pretty(&list));
            return Ok(0);
        }
        for (id, path) in rows {
            let id = if args.notruncate { &id[..] } else { &id[..12] };
            println!("{id}  {}", path.display());
        }
        return Ok(0);
    }
    let list = targets(store, args.all, &args.containers)?;
    mountns::join(&run_root, true)?;
    for c in list {
        let (path, overlay) = mountpoint(store, &c)?;
        if let Some(source) = overlay {
            if !mountns::is_mounted(&path) {
                std::fs::create_dir_all(&path)?;
                burrow_userns::mount::mount_rootfs(&source, &path)
                    .map_err(|e| anyhow::anyhow!("mounting container {}: {e}", c.id))?;
                store.container_event(&c, "mount", None);
            }
        }
        if args.all {
            println!("{} {}", c.id, path.display());
        } else {
            println!("{}", path.display());
        }
    }
    Ok(0)
}

pub fn umount(args: UmountArgs, global: &GlobalOptions) -> Result<i32> {
    let _ = args.force;
    if args.containers.is_empty() && !args.all {
        bail!("when no flags are specified, at least one container name or ID must be specified");
    }
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let list = targets(store, args.all, &args.containers)?;
    let joined = mountns::join(&store.paths.run_root, false)?.is_some();
    for c in list {
        let (path, overlay) = mountpoint(store, &c)?;
        if joined && overlay.is_some() && mountns::is_mounted(&path) {
            umount2(&path, MntFlags::MNT_DETACH)
                .map_err(|e| anyhow::anyhow!("unmounting container {}: {}", c.id, e.desc()))?;
            let _ = std::fs::remove_dir(&path);
            store.container_event(&c, "unmount", None);
        } else if args.all {
            continue;
        }
        println!("{}", c.id);
    }
    Ok(0)
}

/// Unmounts a container's root if `mount` mounted it (before the container is removed, so
/// that no mount in the holder's namespace pins its deleted directories). Best effort.
pub fn release(store: &Store, c: &ContainerRecord) {
    let Ok((path, Some(_))) = mountpoint(store, c) else {
        return;
    };
    if mountns::existing(&store.paths.run_root).is_none() {
        return;
    }
    if matches!(mountns::join(&store.paths.run_root, false), Ok(Some(_))) && mountns::is_mounted(&path) {
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&path);
    }
}
