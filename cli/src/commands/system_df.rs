//! `burrow system df`: disk space used by images, containers and volumes, as Podman's.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use burrow_storage::{ContainerState, Store};
use serde_json::json;

use super::format::{self, human_size, Format};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// Pretty-print images using a Go template, or json
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Show detailed information on disk usage
    #[arg(short, long)]
    verbose: bool,
}

/// Bytes used by the files under `dir` (blocks allocated, as du counts; hard links once).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Per container: id, bytes of its upper dir, whether it runs.
type ContainerUsage = Vec<(String, u64, bool)>;

/// Images: (total, active, size, reclaimable); containers: the same.
struct Usage {
    images: (usize, usize, u64, u64),
    containers: (usize, usize, u64, u64),
}

fn usage(store: &Store) -> Result<(Usage, ContainerUsage)> {
    let images = store.images()?;
    let sizes = store.layer_sizes()?;
    let mut containers = store.containers()?;
    for c in &mut containers {
        store.refresh_state(c)?;
    }
    let used: HashSet<&str> = containers.iter().filter_map(|c| c.image_id.as_deref()).collect();
    let mut all_layers = HashSet::new();
    let mut active_layers = HashSet::new();
    for i in &images {
        all_layers.extend(i.layers.iter().map(String::as_str));
        if used.contains(i.id.as_str()) {
            active_layers.extend(i.layers.iter().map(String::as_str));
        }
    }
    let size_of = |set: &HashSet<&str>| set.iter().filter_map(|l| sizes.get(*l)).sum::<u64>();
    let image_size = size_of(&all_layers);
    let active = images.iter().filter(|i| used.contains(i.id.as_str())).count();
    let mut per_container = Vec::new();
    let (mut c_size, mut c_reclaimable, mut running) = (0, 0, 0);
    for c in &containers {
        let size = disk_usage(&store.container_dirs(&c.id).upper);
        let is_running = c.state == ContainerState::Running;
        c_size += size;
        if is_running {
            running += 1;
        } else {
            c_reclaimable += size;
        }
        per_container.push((c.id.clone(), size, is_running));
    }
    Ok((
        Usage {
            images: (
                images.len(),
                active,
                image_size,
                image_size - size_of(&active_layers),
            ),
            containers: (containers.len(), running, c_size, c_reclaimable),
        },
        per_container,
    ))
}

/// Volumes: (total, in use, bytes, bytes of the unused ones).
fn volume_usage(store: &burrow_storage::Store) -> Result<(usize, usize, u64, u64)> {
    let (mut total, mut active, mut size, mut reclaimable) = (0, 0, 0, 0);
    for v in store.volumes()? {
        let bytes = disk_usage(&store.volume_data(&v.name));
        total += 1;
        size += bytes;
        if store.volume_users(&v.name)?.is_empty() {
            reclaimable += bytes;
        } else {
            active += 1;
        }
    }
    Ok((total, active, size, reclaimable))
}

fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        0
    } else {
        (part as f64 * 100.0 / whole as f64).round() as u64
    }
}

pub fn df(args: DfArgs, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let (u, per_container) = usage(store)?;
    if args.verbose && args.format.is_none() {
        return verbose(store, &per_container);
    }
    let rows: Vec<serde_json::Value> = [
        ("Images", u.images),
        ("Containers", u.containers),
        ("Local Volumes", volume_usage(store)?),
    ]
    .into_iter()
    .map(|(kind, (total, active, size, reclaimable))| {
        json!({
            "Type": kind,
            "Total": total,
            "Active": active,
            "RawSize": size,
            "RawReclaimable": reclaimable,
            "TotalCount": total,
            "Size": human_size(size),
            "Reclaimable": format!("{} ({}%)", human_size(reclaimable), percent(reclaimable, size)),
        })
    })
    .collect();
    let template = args
        .format
        .unwrap_or_else(|| "table {{.Type}}\t{{.Total}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}".into());
    if template == "json" {
        println!("{}", format::json_pretty(&rows));
        return Ok(0);
    }
    format::print(&Format::parse(&template)?, &rows, &[])?;
    Ok(0)
}

fn verbose(store: &Store, per_container: &[(String, u64, bool)]) -> Result<i32> {
    let images = store.images()?;
    let sizes = store.layer_sizes()?;
    let containers = store.containers()?;
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for i in &images {
        for l in &i.layers {
            *uses.entry(l.as_str()).or_default() += 1;
        }
    }
    println!("Images space usage:\n");
    let mut rows = Vec::new();
    for i in &images {
        let size: u64 = i.layers.iter().filter_map(|l| sizes.get(l)).sum();
        let shared: u64 = i
            .layers
            .iter()
            .filter(|l| uses.get(l.as_str()).is_some_and(|n| *n > 1))
            .filter_map(|l| sizes.get(l))
            .sum();
        let (repo, tag) = i
            .names
            .first()
            .map_or(("<none>".to_string(), "<none>".to_string()), |n| {
                super::imageutil::repo_tag(n)
            });
        let created = super::imageutil::created(i);
        rows.push(json!({
            "Repository": repo, "Tag": tag, "ImageID": &i.id[..12],
            "Created": format::since(created), "Size": human_size(size),
            "SharedSize": human_size(shared), "UniqueSize": human_size(size - shared),
            "Containers": containers.iter().filter(|c| c.image_id.as_deref() == Some(i.id.as_str())).count(),
        }));
    }
    let t = "table {{.Repository}}\t{{.Tag}}\t{{.ImageID}}\t{{.Created}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}";
    format::print(
        &Format::parse(t)?,
        &rows,
        &[
            ("ImageID", "IMAGE ID"),
            ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"),
        ],
    )?;
    println!("\nContainers space usage:\n");
    let mut rows = Vec::new();
    for c in &containers {
        let (size, running) = per_container
            .iter()
            .find(|(id, _, _)| id == &c.id)
            .map_or((0, false), |(_, s, r)| (*s, *r));
        let image = c
            .image_id
            .as_deref()
            .and_then(|id| images.iter().find(|i| i.id == id))
            .and_then(|i| i.names.first().cloned())
            .unwrap_or_default();
        rows.push(json!({
            "ContainerID": &c.id[..12], "Image": image, "Command": "",
            "LocalVolumes": 0, "Size": human_size(size), "Created": format::since(c.created),
            "Status": if running { "running" } else { c.state.as_str() }, "Names": c.name,
        }));
    }
    let t = "table {{.ContainerID}}\t{{.Image}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.Created}}\t{{.Status}}\t{{.Names}}";
    format::print(
        &Format::parse(t)?,
        &rows,
        &[("ContainerID", "CONTAINER ID"), ("LocalVolumes", "LOCAL VOLUMES")],
    )?;
    println!("\nLocal Volumes space usage:\n");
    format::print(
        &Format::parse("table {{.VolumeName}}\t{{.Links}}\t{{.Size}}")?,
        &[],
        &[("VolumeName", "VOLUME NAME")],
    )?;
    Ok(0)
}
