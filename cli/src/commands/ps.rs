//! `burrow ps`: list containers.

use anyhow::bail;
use burrow_storage::{ContainerRecord, ContainerState};
use serde_json::{json, Value};

use super::ctrinspect::{published_ports, Published};
use super::format::{self, since, Format};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all the containers, default is only running containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Print the numeric IDs of the containers only
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Display the extended information
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Show the latest container created (all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Print the n last created containers (all states)
    #[arg(short = 'n', long)]
    last: Option<usize>,
    /// Filter output based on conditions given (status=, name=, id=, exited=, ancestor=, label=, volume=)
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Pretty-print containers to JSON or using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Do not print headers
    #[arg(long)]
    noheading: bool,
    /// Sort output by: command, created, id, image, names, runningfor, status
    #[arg(long, default_value = "created")]
    sort: String,
    /// Display the total file sizes
    #[arg(short = 's', long)]
    size: bool,
}

const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("CreatedHuman", "CREATED"),
    ("SizeText", "SIZE"),
];

/// `ps -s`: what the container wrote (its upper dir) and that plus its image, as Podman's
/// `12 B (virtual 4.27 MB)`.
struct Sizes {
    image_sizes: std::collections::HashMap<String, u64>,
}

impl Sizes {
    fn new(store: &burrow_storage::Store) -> anyhow::Result<Sizes> {
        let layers = store.layer_sizes()?;
        let image_sizes = store
            .images()?
            .iter()
            .map(|i| (i.id.clone(), super::imageutil::size(i, &layers)))
            .collect();
        Ok(Sizes { image_sizes })
    }

    fn of(&self, store: &burrow_storage::Store, c: &ContainerRecord) -> Value {
        let rw = super::system_df::disk_usage(&store.container_dirs(&c.id).upper);
        let image = c
            .image_id
            .as_ref()
            .and_then(|i| self.image_sizes.get(i))
            .copied()
            .unwrap_or(0);
        json!({"RwSize": rw, "RootFsSize": rw + image})
    }
}

fn size_text(size: &Value) -> String {
    format!(
        "{} (virtual {})",
        format::human_size(size["RwSize"].as_u64().unwrap_or(0)),
        format::human_size(size["RootFsSize"].as_u64().unwrap_or(0))
    )
}

fn status(c: &ContainerRecord) -> String {
    match c.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running if c.paused => "Paused".into(),
        ContainerState::Running => format!("Up {}", since(c.started.unwrap_or(c.created))),
        ContainerState::Exited => {
            format!(
                "Exited ({}) {}",
                c.exit_code.unwrap_or(-1),
                since(c.finished.unwrap_or(c.created))
            )
        }
    }
}

/// Podman's and Docker's PORTS column: `HOST_IP:HOST_PORT->PORT/PROTO`, runs of consecutive
/// ports as ranges (`0.0.0.0:8080-8081->80-81/tcp`), joined by ", ".
fn ports_column(ports: &[Published]) -> String {
    let mut runs: Vec<(&Published, u16)> = Vec::new(); // first port of a run, its length
    for p in ports {
        if let Some((first, len)) = runs.last_mut() {
            let follows = first.host_ip == p.host_ip
                && first.protocol == p.protocol
                && u32::from(first.host_port) + u32::from(*len) == u32::from(p.host_port)
                && u32::from(first.container_port) + u32::from(*len) == u32::from(p.container_port);
            if follows {
                *len += 1;
                continue;
            }
        }
        runs.push((p, 1));
    }
    let range = |start: u16, len: u16| match len {
        1 => start.to_string(),
        _ => format!("{start}-{}", u32::from(start) + u32::from(len) - 1),
    };
    runs.iter()
        .map(|(p, len)| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip,
                range(p.host_port, *len),
                range(p.container_port, *len),
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Podman's `{{.Labels}}` is the map; Docker's a `k=v,k2=v2` string.
fn labels_value(labels: &std::collections::BTreeMap<String, String>) -> Value {
    if crate::docker::active() {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Value::String(pairs.join(","));
    }
    json!(labels)
}

fn row(store: &burrow_storage::Store, c: &ContainerRecord, no_trunc: bool) -> Value {
    let launch = crate::launch::summary(c).ok();
    let command: Vec<String> = launch.as_ref().map(|l| l.command.clone()).unwrap_or_default();
    let image = launch.as_ref().map(|l| l.image.clone()).unwrap_or_default();
    // Read again (as JSON, with the bound ports) only for a container that publishes some.
    let publishes = launch
        .as_ref()
        .and_then(|l| l.network.as_ref())
        .is_some_and(|n| !n.port_forwards.is_empty());
    let ports = if publishes {
        published_ports(store, c)
    } else {
        Vec::new()
    };
    let id = if no_trunc {
        c.id.clone()
    } else {
        c.id[..12].to_string()
    };
    json!({
        "ID": id,
        "Id": c.id,
        "Image": image,
        "ImageID": c.image_id,
        "Command": command_column(&command.join(" "), no_trunc),
        "Created": c.created,
        "CreatedAt": format::go_time(c.created),
        "CreatedHuman": since(c.created),
        "Status": status(c),
        "State": c.status(),
        "ExitCode": c.exit_code.unwrap_or(0),
        "Exited": c.state == ContainerState::Exited,
        "Pid": c.pid.unwrap_or(0),
        "AutoRemove": c.auto_remove,
        "Names": c.name,
        "Ports": ports_column(&ports),
        "Labels": labels_value(&launch.as_ref().map(|l| l.labels.clone()).unwrap_or_default()),
        "Restarts": c.restarts,
    })
}

/// Podman's COMMAND column; Docker's (quoted, cut at 20 with an ellipsis) as `docker`.
fn command_column(command: &str, no_trunc: bool) -> String {
    if !crate::docker::active() {
        return if no_trunc {
            command.to_string()
        } else {
            truncate(command, 17)
        };
    }
    let quoted = format!("{command:?}");
    if no_trunc || quoted.chars().count() <= 20 {
        return quoted;
    }
    let cut: String = quoted.chars().take(19).collect();
    format!("{cut}…")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max - 3).collect();
    format!("{cut}...")
}

fn matches(c: &ContainerRecord, row: &Value, filter: &str) -> anyhow::Result<bool> {
    let (key, value) = filter
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("invalid filter {filter:?}: expected KEY=VALUE"))?;
    Ok(match key {
        "status" => c.status() == value,
        // A regular expression, as Podman's and Docker's (`name=^web$`).
        "name" => regex::Regex::new(value)
            .map_err(|e| anyhow::anyhow!("invalid filter name={value:?}: {e}"))?
            .is_match(&c.name),
        "id" => c.id.starts_with(value),
        "exited" => {
            c.state == ContainerState::Exited && c.exit_code.map(|e| e.to_string()) == Some(value.to_string())
        }
        "ancestor" => {
            row["Image"]
                .as_str()
                .is_some_and(|i| i == value || i.contains(value))
                || c.image_id.as_deref().is_some_and(|i| i.starts_with(value))
        }
        "label" => {
            let labels = crate::launch::summary(c).map(|l| l.labels).unwrap_or_default();
            match value.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(value),
            }
        }
        // A volume's name or a mount's destination, as Podman's.
        "volume" => crate::launch::summary(c)
            .map(|l| l.mounts)
            .unwrap_or_default()
            .iter()
            .any(|m| m.source == value || m.destination == value),
        _ => {
            bail!("invalid filter {key:?}: burrow supports status, name, id, exited, ancestor, label, volume")
        }
    })
}

pub fn ps(args: PsArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let mut list = engine.store.containers()?;
    for c in &mut list {
        engine.store.refresh_state(c)?;
    }
    let all = args.all || args.latest || args.last.is_some() || !args.filter.is_empty();
    // As Podman: a format that shows sizes computes them.
    let want_sizes = args.size || args.format.as_deref().is_some_and(|f| f.contains(".Size"));
    let sizes = if want_sizes {
        Some(Sizes::new(&engine.store)?)
    } else {
        None
    };
    let mut rows = Vec::new();
    let mut kept = Vec::new();
    for c in &list {
        if !all && c.state != ContainerState::Running {
            continue;
        }
        let mut r = row(&engine.store, c, args.no_trunc);
        crate::health::annotate_status(&engine.store, c, &mut r);
        if let Some(sizes) = &sizes {
            let size = sizes.of(&engine.store, c);
            r["SizeText"] = Value::String(size_text(&size));
            r["Size"] = size;
        }
        // As Podman and Docker: filters with the same key are alternatives, different keys
        // must all hold (`-f status=exited -f status=created -f name=web`).
        let mut by_key: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
        for f in &args.filter {
            let key = f.split_once('=').map_or(f.as_str(), |(k, _)| k);
            let hit = matches(c, &r, f)?;
            *by_key.entry(key).or_insert(false) |= hit;
        }
        if by_key.values().all(|&hit| hit) {
            kept.push(c.created);
            rows.push(r);
        }
    }
    let limit = if args.latest { Some(1) } else { args.last };
    if let Some(n) = limit {
        // The newest n, still listed oldest first.
        let skip = rows.len().saturating_sub(n);
        rows.drain(..skip);
    }
    rows.reverse(); // newest first, as Podman lists
    let key = match args.sort.as_str() {
        "created" => None,
        "command" => Some("Command"),
        "id" => Some("Id"),
        "image" => Some("Image"),
        "names" => Some("Names"),
        "status" => Some("Status"),
        // Running longest first: oldest start first.
        "runningfor" => Some("Created"),
        other => bail!(
            "invalid option for --sort {other:?}: command, created, id, image, names, runningfor, status"
        ),
    };
    if let Some(key) = key {
        // A stable sort keeps the newest-first order among equals.
        rows.sort_by(|a, b| match (&a[key], &b[key]) {
            (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
            (x, y) => x.as_str().unwrap_or_default().cmp(y.as_str().unwrap_or_default()),
        });
    }
    let template = match (&args.format, args.quiet) {
        (Some(f), _) => f.clone(),
        (None, true) => "{{.ID}}".into(),
        (None, false) => {
            let mut t = String::from(
                "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
            );
            if args.size {
                t.push_str("\t{{.SizeText}}");
            }
            t
        }
    };
    let mut format = Format::parse(&template)?;
    if let (Format::Template(t), true) = (&mut format, args.noheading) {
        t.table = false;
    }
    format::print(&format, &rows, HEADERS)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(host_ip: &str, host_port: u16, container_port: u16, protocol: &str) -> Published {
        Published {
            host_ip: host_ip.into(),
            host_port,
            container_port,
            protocol: protocol.into(),
        }
    }

    #[test]
    fn ports_column_joins_runs_into_ranges() {
        assert_eq!(ports_column(&[]), "");
        assert_eq!(
            ports_column(&[published("127.0.0.1", 8080, 80, "tcp")]),
            "127.0.0.1:8080->80/tcp"
        );
        let ports = [
            published("0.0.0.0", 8080, 80, "tcp"),
            published("0.0.0.0", 8081, 81, "tcp"),
            published("0.0.0.0", 8082, 82, "tcp"),
            published("0.0.0.0", 8083, 82, "udp"),
            published("0.0.0.0", 9000, 90, "tcp"),
        ];
        assert_eq!(
            ports_column(&ports),
            "0.0.0.0:8080-8082->80-82/tcp, 0.0.0.0:8083->82/udp, 0.0.0.0:9000->90/tcp"
        );
    }
}
