//! `burrow events`: the store's events log (see `burrow_storage::events`), as Podman's file
//! logger shows it: past events with `--since`/`--until`, then new ones as they come (unless
//! `--stream=false`), filtered and formatted.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use burrow_storage::events::{self, Event};
use serde_json::{json, Value};

use super::format::{self, Format};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Filter output (container=, event=, image=, type=, label=, since=, until=)
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Format the output using a Go template, or json
    #[arg(long)]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    no_trunc: bool,
    /// Show all events created since timestamp (RFC 3339, unix seconds, or a duration such as 10m)
    #[arg(long)]
    since: Option<String>,
    /// Show all events created until timestamp
    #[arg(long)]
    until: Option<String>,
    /// Stream new events as they come (the default); false prints what is logged and exits
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    stream: bool,
}

/// Go's `time.Time.String()` in UTC with nanoseconds: `2026-11-24 13:33:05.529419722 +0000 UTC`.
fn go_time(t: SystemTime) -> String {
    let rfc = events::format_time(t);
    let (date, rest) = rfc.split_once('T').unwrap_or((&rfc, ""));
    format!("{date} {} +0000 UTC", rest.trim_end_matches('Z'))
}

/// A point in time given as RFC 3339, a date, Unix seconds or a duration before now (`10m`),
/// as Podman's `--since`/`--until` (events, logs).
pub(crate) fn time_arg(text: &str) -> Result<SystemTime> {
    if let Some(t) = events::parse_time(text) {
        return Ok(t);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let secs = super::container::parse_until(text, now)?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// `--filter`s: the same key given twice matches either value; different keys must all match.
struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    fn parse(list: &[String]) -> Result<Filters> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in list {
            let Some((k, v)) = f.split_once('=') else {
                bail!("invalid filter {f:?}: expected KEY=VALUE");
            };
            if !matches!(
                k,
                "container" | "event" | "image" | "type" | "label" | "since" | "until"
            ) {
                bail!("invalid filter {k:?}: burrow filters events by container, event, image, type, label, since, until");
            }
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filters(map))
    }

    fn matches(&self, e: &Event) -> bool {
        self.0.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "container" => {
                    e.kind == "container" && (e.name == *v || (v.len() >= 3 && e.id.starts_with(v.as_str())))
                }
                "event" => e.status == *v || (v == "exited" && e.status == "died"),
                "image" => {
                    e.image == *v
                        || e.image.starts_with(&format!("{v}:"))
                        || e.image.contains(&format!("/{v}:"))
                }
                "type" => e.kind == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.attributes.get(lk).is_some_and(|x| x == lv),
                    None => e.attributes.contains_key(v.as_str()),
                },
                // since/until are applied as bounds.
                _ => true,
            })
        })
    }
}

/// Podman's default line.
fn text(e: &Event, no_trunc: bool) -> String {
    let id = if no_trunc || e.id.len() <= 12 {
        e.id.clone()
    } else {
        e.id[..12].to_string()
    };
    let time = go_time(e.when());
    if e.kind == "container" || e.kind == "pod" {
        let attrs: String = e.attributes.iter().map(|(k, v)| format!(", {k}={v}")).collect();
        format!(
            "{time} {} {} {id} (image={}, name={}{attrs})",
            e.kind, e.status, e.image, e.name
        )
    } else {
        format!("{time} {} {} {id} {}", e.kind, e.status, e.name)
    }
}

/// The data a template sees: the event's fields, `Time` as Go prints it.
fn row(e: &Event) -> Value {
    json!({
        "ID": e.id,
        "Image": e.image,
        "Name": e.name,
        "Status": e.status,
        "Time": go_time(e.when()),
        "TimeNano": e.when().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
        "Type": e.kind,
        "Attributes": e.attributes,
        "ContainerExitCode": e.exit_code.unwrap_or(0),
    })
}

pub fn events(args: EventsArgs, global: &GlobalOptions) -> Result<i32> {
    let filters = Filters::parse(&args.filter)?;
    let mut since = args.since.as_deref().map(time_arg).transpose()?;
    let mut until = args.until.as_deref().map(time_arg).transpose()?;
    for (k, values) in &filters.0 {
        for v in values {
            match k.as_str() {
                "since" => since = Some(time_arg(v)?),
                "until" => until = Some(time_arg(v)?),
                _ => {}
            }
        }
    }
    let format = match args.format.as_deref() {
        None => None,
        Some(f) => Some(Format::parse(f)?),
    };
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let show = |e: &Event| -> Result<bool> {
        let when = e.when();
        if since.is_some_and(|s| when < s) || until.is_some_and(|u| when > u) || !filters.matches(e) {
            return Ok(false);
        }
        match &format {
            None => println!("{}", text(e, args.no_trunc)),
            Some(Format::Json) => println!("{}", serde_json::to_string(e)?),
            Some(f @ Format::Template(_)) => format::print(f, &[row(e)], &[])?,
        }
        Ok(true)
    };
    let (past, mut offset) = store.events()?;
    for e in &past {
        show(e)?;
    }
    if !args.stream {
        return Ok(0);
    }
    use std::io::Write;
    loop {
        let _ = std::io::stdout().flush();
        if until.is_some_and(|u| SystemTime::now() > u) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
        let (new, end) = store.events_after(offset)?;
        offset = end;
        for e in &new {
            show(e)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_podman_prints_them() {
        let mut e = Event::now("container", "start");
        e.time = "2026-11-24T13:33:05.529419722Z".into();
        e.id = "7a1c41c8ae7f11926c1a8f5d13aa46e916e7abd57e19f53c5b8fc420c2c61e15".into();
        e.image = "localhost/bb:latest".into();
        e.name = "web".into();
        assert_eq!(
            text(&e, true),
            "2026-11-24 13:33:05.529419722 +0000 UTC container start 7a1c41c8ae7f11926c1a8f5d13aa46e916e7abd57e19f53c5b8fc420c2c61e15 (image=localhost/bb:latest, name=web)"
        );
        let f = Filters::parse(&["container=web".into(), "event=start".into(), "event=died".into()]).unwrap();
        assert!(f.matches(&e));
        e.status = "remove".into();
        assert!(!f.matches(&e));
    }
}
