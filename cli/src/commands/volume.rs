//! `burrow volume SUBCOMMAND`: named volumes, as `podman volume` (create, ls, inspect, rm,
//! prune, export, import, exists). The store keeps them (`burrow_storage` volumes); the
//! mounts themselves are made by `create` (see `mounts.rs`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use burrow_storage::{NewVolume, Store, StoreError, VolumeRecord};

use super::ctrutil::{self, PruneArgs};
use super::format::{self, Format};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum VolumeCommand {
    /// Create a new volume
    Create(CreateArgs),
    /// Check if a volume exists
    Exists {
        #[arg(value_name = "VOLUME")]
        name: String,
    },
    /// Export volumes as a tar archive
    Export(ExportArgs),
    /// Import a tarball into a volume
    Import {
        #[arg(value_name = "VOLUME")]
        name: String,
        /// The tarball, or - for stdin
        #[arg(value_name = "SOURCE")]
        source: String,
    },
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove all unused volumes
    Prune(PruneArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Volume driver (only local)
    #[arg(short = 'd', long, default_value = "local")]
    driver: String,
    /// Driver options: type=tmpfs|none, device=DEVICE, o=MOUNT-OPTIONS (the volume is then
    /// that mount, made for each container)
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    opt: Vec<String>,
    /// Set metadata for a volume (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Do not fail if the volume already exists
    #[arg(long = "ignore")]
    ignore: bool,
    /// Name of the volume (default: a random one)
    name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to a file instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    #[arg(value_name = "VOLUME")]
    name: String,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Inspect all volumes
    #[arg(short = 'a', long)]
    all: bool,
    /// Format the output as JSON or a Go template
    #[arg(short = 'f', long)]
    format: Option<String>,
    #[arg(value_name = "VOLUME")]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Filter output: name=, label=KEY[=VALUE], driver=, dangling=true|false
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// Format volume output using a Go template or json
    #[arg(long)]
    format: Option<String>,
    /// Do not print headers
    #[arg(short = 'n', long)]
    noheading: bool,
    /// Print volume names only
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Remove all volumes
    #[arg(short = 'a', long)]
    all: bool,
    /// Remove a volume in use too: the containers using it are removed first
    #[arg(short = 'f', long)]
    force: bool,
    /// Seconds to wait for a container to stop before killing it (with -f)
    #[arg(short = 't', long = "time")]
    time: Option<u32>,
    #[arg(value_name = "VOLUME")]
    names: Vec<String>,
}

pub fn volume(cmd: VolumeCommand, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    match cmd {
        VolumeCommand::Create(a) => create(store, a),
        VolumeCommand::Exists { name } => match store.volume(&name) {
            Ok(_) => Ok(0),
            Err(StoreError::NoSuchVolume(_)) => Ok(1),
            Err(e) => Err(e.into()),
        },
        VolumeCommand::Export(a) => export(store, a),
        VolumeCommand::Import { name, source } => import(store, &engine, &name, &source),
        VolumeCommand::Inspect(a) => inspect(store, a),
        VolumeCommand::Ls(a) => ls(store, a),
        VolumeCommand::Prune(a) => prune(store, a),
        VolumeCommand::Rm(a) => rm(store, a),
    }
}

fn key_values(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for kv in items {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => map.insert(k.to_string(), v.to_string()),
            None if !kv.is_empty() => map.insert(kv.clone(), String::new()),
            _ => bail!("invalid {flag} {kv:?}: expected KEY=VALUE"),
        };
    }
    Ok(map)
}

fn create(store: &Store, args: CreateArgs) -> Result<i32> {
    if args.driver != "local" {
        bail!(
            "volume driver {:?} is not supported: burrow has only the local driver",
            args.driver
        );
    }
    let options = key_values("--opt", &args.opt)?;
    for key in options.keys() {
        if !matches!(key.as_str(), "type" | "device" | "o") {
            bail!("invalid mount option {key:?} for the local driver: valid are type, device and o");
        }
    }
    if options.contains_key("device") && !options.contains_key("type") {
        bail!("--opt device needs --opt type (tmpfs, or none with o=bind)");
    }
    if let (Some("none"), Some(device)) = (options.get("type").map(String::as_str), options.get("device")) {
        if !std::path::Path::new(device).is_dir() {
            bail!("--opt device={device}: not a directory");
        }
    }
    let new = NewVolume {
        name: args.name.as_deref(),
        labels: key_values("--label", &args.label)?,
        options,
        anonymous: false,
    };
    match store.create_volume(&new) {
        Ok(v) => println!("{}", v.name),
        Err(StoreError::VolumeExists(name)) if args.ignore => println!("{name}"),
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}

/// Podman's `volume inspect` object, its fields in Podman's order.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeData {
    name: String,
    driver: String,
    mountpoint: String,
    created_at: String,
    labels: BTreeMap<String, String>,
    scope: &'static str,
    options: BTreeMap<String, String>,
    mount_count: u32,
    needs_copy_up: bool,
    needs_chown: bool,
    /// burrow's own: made for one container (`rm -v` removes it).
    anonymous: bool,
    /// burrow's own: the ids of the containers that mount it.
    containers: Vec<String>,
}

fn describe(store: &Store, v: &VolumeRecord) -> Result<VolumeData> {
    Ok(VolumeData {
        name: v.name.clone(),
        driver: v.driver.clone(),
        mountpoint: store.volume_data(&v.name).display().to_string(),
        created_at: go_rfc3339(v.created),
        labels: v.labels.clone(),
        scope: "local",
        options: v.options.clone(),
        mount_count: 0,
        needs_copy_up: v.needs_init,
        needs_chown: v.needs_init,
        anonymous: v.anonymous,
        containers: store.volume_users(&v.name)?,
    })
}

/// `2026-11-24T15:39:50Z`-style time with Podman's numeric zone.
fn go_rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    crate::commands::rfc3339(t).replace('Z', "+00:00")
}

fn inspect(store: &Store, args: InspectArgs) -> Result<i32> {
    let names: Vec<String> = if args.all {
        store.volumes()?.into_iter().map(|v| v.name).collect()
    } else if args.names.is_empty() {
        bail!("provide one or more volume names or use --all");
    } else {
        args.names.clone()
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        match store.volume(name) {
            Ok(v) => found.push(describe(store, &v)?),
            Err(StoreError::NoSuchVolume(_)) => errors.push(format!("no such volume {name}")),
            Err(e) => return Err(e.into()),
        }
    }
    ctrutil::print_inspected(&found, &errors, args.format.as_deref())
}

/// Whether `v` passes every filter (Podman's keys; several values of one key: any of them).
fn matches(store: &Store, v: &VolumeRecord, filters: &[String]) -> Result<bool> {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in filters {
        let Some((k, val)) = f.split_once('=') else {
            bail!("invalid filter {f:?}: expected KEY=VALUE");
        };
        by_key.entry(k).or_default().push(val);
    }
    for (key, values) in by_key {
        let ok = match key {
            "name" => values.iter().any(|n| v.name.contains(n)),
            "driver" => values.iter().any(|d| *d == v.driver),
            "label" => values.iter().any(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(*l),
            }),
            "label!" => !values.iter().any(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(*l),
            }),
            "dangling" => {
                let unused = store.volume_users(&v.name)?.is_empty();
                values.iter().any(|d| match *d {
                    "true" | "1" => unused,
                    _ => !unused,
                })
            }
            "anonymous" => values.iter().any(|d| (*d == "true" || *d == "1") == v.anonymous),
            other => bail!("invalid filter {other:?}: burrow filters volumes by name, label, driver, dangling, anonymous"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ls(store: &Store, args: LsArgs) -> Result<i32> {
    let mut rows = Vec::new();
    for v in store.volumes()? {
        if matches(store, &v, &args.filter)? {
            rows.push(serde_json::to_value(describe(store, &v)?)?);
        }
    }
    let template = match (&args.format, args.quiet) {
        (Some(f), _) => f.clone(),
        (None, true) => "{{.Name}}".into(),
        (None, false) => "table {{.Driver}}\t{{.Name}}".into(),
    };
    let mut format = Format::parse(&template)?;
    if let (Format::Template(t), true) = (&mut format, args.noheading) {
        t.table = false;
    }
    format::print(&format, &rows, &[("Name", "VOLUME NAME")])?;
    Ok(0)
}

fn prune(store: &Store, args: PruneArgs) -> Result<i32> {
    let mut unused = Vec::new();
    for v in store.volumes()? {
        if store.volume_users(&v.name)?.is_empty() && matches(store, &v, &args.filter)? {
            unused.push(v.name);
        }
    }
    ctrutil::prune_unused("volumes", unused, args.force, |name| {
        match store.remove_volume(name) {
            Ok(()) => Ok(true),
            // Taken into use meanwhile: not unused any more.
            Err(StoreError::VolumeInUse { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

fn rm(store: &Store, args: RmArgs) -> Result<i32> {
    let names: Vec<String> = if args.all {
        store.volumes()?.into_iter().map(|v| v.name).collect()
    } else if args.names.is_empty() {
        bail!("choose either one or more volumes or all");
    } else {
        args.names.clone()
    };
    let mut code = 0;
    for name in &names {
        let result = (|| -> Result<()> {
            let users = store.volume_users(name)?;
            if !users.is_empty() && args.force {
                // As Podman: -f removes the containers that use it first.
                for id in users {
                    let mut c = store.container(&id)?;
                    store.refresh_state(&mut c)?;
                    if c.state == burrow_storage::ContainerState::Running {
                        super::stop::stop_container(store, &mut c, Some(args.time.unwrap_or(10)))?;
                    }
                    super::network::remove_container(store, &c.id, false)?;
                }
            }
            store.remove_volume(name)?;
            Ok(())
        })();
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::message(&e));
                code = match e.downcast_ref::<StoreError>() {
                    Some(StoreError::VolumeInUse { .. }) => 2,
                    Some(StoreError::NoSuchVolume(_)) => 1,
                    _ => 125,
                };
            }
        }
    }
    Ok(code)
}

fn export(store: &Store, args: ExportArgs) -> Result<i32> {
    let volume = store.volume(&args.name)?;
    if volume.options.contains_key("type") {
        bail!(
            "volume {} is a {} mount, not a directory of the store: nothing to export",
            volume.name,
            volume.options["type"]
        );
    }
    let data = store.volume_data(&volume.name);
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cannot write to terminal, use command-line redirection or the --output flag");
            }
            Box::new(std::io::stdout().lock())
        }
    };
    burrow_storage::export::tree_tar(&data, &mut out)?;
    out.flush()?;
    Ok(0)
}

fn import(store: &Store, engine: &Engine, name: &str, source: &str) -> Result<i32> {
    let volume = store.volume(name)?;
    if volume.options.contains_key("type") {
        bail!(
            "volume {name} is a {} mount, not a directory of the store: cannot import into it",
            volume.options["type"]
        );
    }
    let input: Box<dyn Read> = if source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(source).with_context(|| format!("opening {source}"))?)
    };
    // The layer extractor refuses entries that would land outside the volume (`..`,
    // through a symlink in the volume or the archive), as for image layers.
    burrow_storage::layers::extract(input, &store.volume_data(name), engine.id_limits())
        .with_context(|| format!("importing into volume {name}"))?;
    store.volume_initialized(name)?;
    Ok(0)
}
