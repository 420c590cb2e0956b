//! `burrow commit`: a new image from a container's changes: its image's layers plus one
//! layer made of its overlay upper dir (deleted files as OCI `.wh.` whiteouts), with the
//! container's configuration (environment, command, working dir) and `--change`s.

use std::fs::{self, File};
use std::io::BufWriter;

use anyhow::{bail, Context as _, Result};
use burrow_storage::{normalize_name, ContainerState};
use burrow_userns::mount::RootfsSource;
use serde_json::{json, Map, Value};

use super::{changes, ctrutil, diff, pause, procs};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// Set the author for the image committed
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Apply the following possible instructions to the created image: CMD | ENTRYPOINT | ENV | EXPOSE | LABEL | STOPSIGNAL | USER | VOLUME | WORKDIR
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long)]
    pause: bool,
    /// Suppress output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Format of the image manifest and metadata (oci or docker; both store the same here)
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// The container (name or id)
    container: String,
    /// Name of the new image
    image: Option<String>,
}

/// An id on disk as the image must record it: through the inverse of the container's nested
/// map, if it has one (ids the map lacks stay as they are, as create stores them).
fn image_id(maps: &[burrow_userns::idmap::IdMapping], id: u32) -> u32 {
    maps.iter()
        .find(|m| id >= m.outside && id - m.outside < m.count)
        .map_or(id, |m| m.inside + (id - m.outside))
}

pub fn commit(args: CommitArgs, global: &GlobalOptions) -> Result<i32> {
    if let Some(f) = args.format.as_deref().filter(|f| !matches!(*f, "oci" | "docker")) {
        bail!("unrecognized image type {f:?}");
    }
    let name = args.image.as_deref().map(normalize_name).transpose()?;
    let mut engine = Engine::open(global)?;
    let record = ctrutil::find(&engine.store, &args.container)?;
    let launch = crate::launch::load(&engine.store, &record)?;
    let RootfsSource::Overlay { lower, upper, .. } = &launch.rootfs else {
        bail!(
            "container {} runs on a root directory of its own (--rootfs): there is no image to commit onto",
            record.id
        );
    };
    let parent = match &record.image_id {
        Some(id) => engine.store.image(id)?,
        None => bail!("container {} has no image", record.id),
    };
    let (uid_map, gid_map) = procs::nested_maps(&launch.spec);
    let owner = |u: u32, g: u32| (image_id(&uid_map, u), image_id(&gid_map, g));
    let skip = changes::mount_points(upper, lower, &diff::mount_destinations(&launch));

    // The layer, written to a file of the store first (a running container keeps writing to
    // its upper dir; with --pause it cannot meanwhile).
    let tmp =
        engine
            .store
            .paths
            .graph_root
            .join(format!("commit-{}-{}.tar", std::process::id(), &record.id[..12]));
    let pause_now = args.pause && record.state == ContainerState::Running && !record.paused;
    if pause_now {
        pause::signal_container(&record, true)?;
    }
    let written = File::create(&tmp)
        .map(BufWriter::new)
        .and_then(|out| changes::write_layer(upper, out, &owner, &skip))
        .and_then(|out| out.into_inner().map_err(|e| e.into_error()))
        .with_context(|| format!("writing the layer of container {}", record.id));
    if pause_now {
        pause::signal_container(&record, false)?;
    }
    let result = written.and_then(|_| {
        let config = image_config(&parent.config_json, &launch, &record, &args)?;
        store_image(&mut engine, &tmp, &parent.layers, config, name.as_slice())
    });
    let _ = fs::remove_file(&tmp);
    let image = result?;
    engine.store.container_event(&record, "commit", None);
    let _ = args.quiet;
    println!("{}", image.id);
    Ok(0)
}

/// The new image's configuration: the parent's, with the container's settings, the new
/// layer added by the caller, history, author, message and `--change`s.
fn image_config(
    parent_json: &str,
    launch: &crate::launch::Launch,
    record: &burrow_storage::ContainerRecord,
    args: &CommitArgs,
) -> Result<Value> {
    let mut config: Value = serde_json::from_str(parent_json)?;
    let created = crate::commands::rfc3339(std::time::SystemTime::now());
    let process = launch.spec.process().clone().unwrap_or_default();
    let mut inner: Map<String, Value> = config
        .get("config")
        .and_then(|c| c.as_object().cloned())
        .unwrap_or_default();
    // The container's command as it ran: the image's entrypoint stays, the rest is Cmd.
    let entrypoint: Vec<String> = inner
        .get("Entrypoint")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    let cmd = if !entrypoint.is_empty() && launch.command.starts_with(&entrypoint) {
        launch.command[entrypoint.len()..].to_vec()
    } else {
        if !entrypoint.is_empty() {
            inner.remove("Entrypoint");
        }
        launch.command.clone()
    };
    inner.insert("Cmd".into(), json!(cmd));
    // Without burrow's own HOSTNAME (the container's id), as Podman does.
    let env: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.starts_with("HOSTNAME="))
        .collect();
    inner.insert("Env".into(), json!(env));
    inner.insert("WorkingDir".into(), json!(process.cwd().display().to_string()));
    if let Some(labels) = serde_json::from_str::<Value>(&record.config)
        .ok()
        .and_then(|v| v.get("labels").cloned())
        .filter(|l| l.as_object().is_some_and(|o| !o.is_empty()))
    {
        let merged = inner.entry("Labels").or_insert_with(|| json!({}));
        if let (Some(m), Some(add)) = (merged.as_object_mut(), labels.as_object()) {
            m.extend(add.clone());
        }
    }
    for change in &args.change {
        super::import::apply_change(&mut inner, change)?;
    }
    config["config"] = Value::Object(inner);
    config["created"] = json!(created);
    if let Some(a) = &args.author {
        config["author"] = json!(a);
    }
    if let Some(m) = &args.message {
        config["comment"] = json!(m);
    }
    let mut entry = json!({"created": created, "created_by": launch.command.join(" ")});
    if let Some(a) = &args.author {
        entry["author"] = json!(a);
    }
    if let Some(m) = &args.message {
        entry["comment"] = json!(m);
    }
    let history = config
        .get_mut("history")
        .and_then(|h| h.as_array_mut().map(std::mem::take))
        .unwrap_or_default();
    config["history"] = json!(history.into_iter().chain([entry]).collect::<Vec<_>>());
    Ok(config)
}

/// Stores the layer in `tar` and records the image: `parent_layers` plus the new one.
///
/// TODO(storage): the store's public API has no "import one layer" now (`import_layer` went
/// into `import_image`), so the layer comes in as a staging image of its own, which goes
/// again once the real image holds the layer. A `Store::import_image` that takes the parent
/// layers would do this in one transaction.
fn store_image(
    engine: &mut Engine,
    tar: &std::path::Path,
    parent_layers: &[String],
    mut config: Value,
    names: &[String],
) -> Result<burrow_storage::Image> {
    let limits = engine.id_limits();
    let nonce = ctrutil::random_id();
    let staging = engine.store.import_image(
        File::open(tar)?,
        limits,
        |layer| {
            json!({
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "os": "linux",
                "config": {"Labels": {"io.burrow.commit-staging": nonce}},
                "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer}")]},
            })
            .to_string()
        },
        &[],
    )?;
    let layer = staging.layers[0].clone();
    let mut layers = parent_layers.to_vec();
    layers.push(layer.clone());
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| format!("sha256:{l}")).collect::<Vec<_>>(),
    });
    let image = engine.store.create_image(&layers, &config.to_string(), names);
    let _ = engine.store.remove_image(&staging.id);
    Ok(image?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn owners_go_back_through_the_nested_map() {
        let keep = burrow_userns::idmap::keep_id_map(1000, 65537);
        // Stored as burrow's id 1, the file is root's in the container (and the image).
        assert_eq!(super::image_id(&keep, 1), 0);
        assert_eq!(super::image_id(&keep, 0), 1000);
        assert_eq!(super::image_id(&[], 5), 5);
    }
}
