//! `burrow inspect`, `burrow container inspect` and `burrow image inspect`: Podman's JSON for
//! each container (see `ctrinspect`) or image.

use anyhow::{anyhow, bail, Result};
use burrow_storage::{Image, Store};
use serde::Serialize;
use serde_json::{json, Value};

use super::ctrinspect::{self, ContainerData};
use super::format::{self, Format};
use super::imageutil;
use crate::context::Engine;
use crate::exit::ExitError;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Format the output using the given Go template, or json
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<String>,
    /// Specify inspect-object type: container, image or all
    #[arg(short, long = "type", default_value = "all", value_name = "TYPE")]
    kind: String,
    /// Display the total file size (accepted; sizes are always shown)
    #[arg(short, long)]
    size: bool,
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    #[arg(required_unless_present = "latest", value_name = "NAME")]
    names: Vec<String>,
}

/// One inspected object: the array `inspect` prints mixes them, as Podman's does.
#[derive(Serialize)]
#[serde(untagged)]
enum Inspected {
    Container(Box<ContainerData>),
    Image(Box<ImageData>),
}

/// Podman's `ImageData`, the fields burrow has.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageData {
    id: String,
    digest: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: String,
    comment: String,
    created: String,
    config: Value,
    version: String,
    author: String,
    architecture: String,
    os: String,
    size: u64,
    virtual_size: u64,
    graph_driver: Value,
    #[serde(rename = "RootFS")]
    root_fs: Value,
    labels: Value,
    annotations: Value,
    manifest_type: String,
    user: String,
    history: Value,
    names_history: Vec<String>,
}

/// The image's config with every field of the OCI image config, empty where the image has
/// none, as Podman's Go struct always has them: `{{.Config.Cmd}}` of an image without a
/// command prints `[]` instead of failing.
fn with_every_config_field(config: Value) -> Value {
    let mut config = match config {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let empty = [
        ("User", json!("")),
        ("ExposedPorts", json!({})),
        ("Env", json!([])),
        ("Entrypoint", json!([])),
        ("Cmd", json!([])),
        ("Volumes", json!({})),
        ("WorkingDir", json!("")),
        ("Labels", json!({})),
        ("StopSignal", json!("")),
    ];
    for (field, value) in empty {
        let slot = config.entry(field).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
    Value::Object(config)
}

fn image_data(
    store: &Store,
    image: &Image,
    sizes: &std::collections::HashMap<String, u64>,
) -> Result<ImageData> {
    let raw: Value = serde_json::from_str(&image.config_json)?;
    let size = imageutil::size(image, sizes);
    let manifest_type = store
        .image_manifest(&image.id)?
        .and_then(|m| serde_json::from_str::<Value>(&m).ok())
        .and_then(|m| m["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    let lower: Vec<String> = image
        .layers
        .iter()
        .rev()
        .map(|l| store.layer_dir(l).display().to_string())
        .collect();
    Ok(ImageData {
        id: image.id.clone(),
        digest: imageutil::digest(image),
        repo_tags: image.names.clone(),
        repo_digests: imageutil::repo_digests(image),
        parent: String::new(),
        comment: raw["comment"].as_str().unwrap_or_default().into(),
        created: imageutil::rfc3339(imageutil::created(image)),
        config: with_every_config_field(raw.get("config").cloned().unwrap_or(Value::Null)),
        version: raw["docker_version"].as_str().unwrap_or_default().into(),
        author: raw["author"].as_str().unwrap_or_default().into(),
        architecture: raw["architecture"].as_str().unwrap_or_default().into(),
        os: raw["os"].as_str().unwrap_or_default().into(),
        size,
        virtual_size: size,
        graph_driver: json!({"Name": "overlay", "Data": {"LowerDir": lower.join(":")}}),
        root_fs: json!({
            "Type": "layers",
            "Layers": image.layers.iter().map(|l| format!("sha256:{l}")).collect::<Vec<_>>(),
        }),
        labels: imageutil::labels(image),
        annotations: json!({}),
        manifest_type,
        user: raw["config"]["User"].as_str().unwrap_or_default().into(),
        history: raw
            .get("history")
            .cloned()
            .filter(|h| !h.is_null())
            .unwrap_or_else(|| json!([])),
        names_history: Vec::new(),
    })
}

/// `image inspect` (`top_level` false) or `inspect` (its error text differs, as Podman's).
pub fn inspect(args: InspectArgs, global: &GlobalOptions, top_level: bool) -> Result<i32> {
    let kind = match (top_level, args.kind.as_str()) {
        (false, _) => "image",
        (true, "all") => "all",
        (true, "container") => "container",
        (true, "image") => "image",
        (true, other) => bail!(
            "invalid type {other:?}: must be one of container, image, all (burrow has no volumes, networks or pods)"
        ),
    };
    inspect_kind(args, global, kind)
}

/// `container inspect`.
pub fn inspect_containers(args: InspectArgs, global: &GlobalOptions) -> Result<i32> {
    inspect_kind(args, global, "container")
}

fn inspect_kind(args: InspectArgs, global: &GlobalOptions, kind: &str) -> Result<i32> {
    let format = args.format.as_deref().map(Format::parse).transpose()?;
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let sizes = store.layer_sizes()?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut names = args.names.clone();
    if args.latest {
        if let Some(c) = store.containers()?.pop() {
            names.push(c.id);
        }
    }
    for name in &names {
        if kind != "image" {
            if let Ok(mut c) = store.container(name) {
                store.refresh_state(&mut c)?;
                found.push(Inspected::Container(Box::new(ctrinspect::container_data(
                    store, &c,
                )?)));
                continue;
            }
        }
        match (kind, store.image(name)) {
            ("container", _) => errors.push(format!("no such container {name}")),
            (_, Ok(image)) => found.push(Inspected::Image(Box::new(image_data(store, &image, &sizes)?))),
            ("all", Err(_)) => errors.push(format!("no such object: {name:?}")),
            (_, Err(e)) => errors.push(e.to_string()),
        }
    }
    match &format {
        None | Some(Format::Json) => println!("{}", format::json_pretty(&found)),
        Some(f) => {
            let rows: Vec<Value> = found.iter().map(serde_json::to_value).collect::<Result<_, _>>()?;
            format::print(f, &rows, &[])?;
        }
    }
    match errors.pop() {
        None => Ok(0),
        Some(last) => {
            for e in errors {
                eprintln!("Error: inspecting object: {e}");
            }
            Err(anyhow!(ExitError {
                code: 125,
                message: format!("inspecting object: {last}"),
            }))
        }
    }
}
