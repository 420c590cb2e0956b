//! `burrow ps`: list containers.

use anyhow::bail;
use burrow_storage::{ContainerRecord, ContainerState};
use serde_json::{json, Value};

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
    /// Filter output based on conditions given (status=, name=, id=, exited=, ancestor=, label=)
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
}

const HEADERS: &[(&str, &str)] = &[("ID", "CONTAINER ID"), ("CreatedHuman", "CREATED")];

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

fn row(c: &ContainerRecord, no_trunc: bool) -> Value {
    let launch = crate::launch::summary(c).ok();
    let command: Vec<String> = launch.as_ref().map(|l| l.command.clone()).unwrap_or_default();
    let image = launch.as_ref().map(|l| l.image.clone()).unwrap_or_default();
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
        "Command": if no_trunc { command.join(" ") } else { truncate(&command.join(" "), 17) },
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
        "Ports": "",
        "Restarts": c.restarts,
    })
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
        "name" => c.name.contains(value),
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
        _ => bail!("invalid filter {key:?}: burrow supports status, name, id, exited, ancestor, label"),
    })
}

pub fn ps(args: PsArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let mut list = engine.store.containers()?;
    for c in &mut list {
        engine.store.refresh_state(c)?;
    }
    let all = args.all || args.latest || args.last.is_some() || !args.filter.is_empty();
    let mut rows = Vec::new();
    let mut kept = Vec::new();
    for c in &list {
        if !all && c.state != ContainerState::Running {
            continue;
        }
        let mut r = row(c, args.no_trunc);
        crate::health::annotate_status(&engine.store, c, &mut r);
        let mut keep = true;
        for f in &args.filter {
            keep &= matches(c, &r, f)?;
        }
        if keep {
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
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
                .into()
        }
    };
    let mut format = Format::parse(&template)?;
    if let (Format::Template(t), true) = (&mut format, args.noheading) {
        t.table = false;
    }
    format::print(&format, &rows, HEADERS)?;
    Ok(0)
}
