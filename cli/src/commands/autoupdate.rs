//! `burrow auto-update`: containers labelled `io.containers.autoupdate=registry|local` that a
//! systemd unit runs move to their image's newer version: the unit restarts (its `run
//! --replace` makes the container anew from the image name), and if it does not come up, the
//! image name goes back to the old image and the unit restarts again (`--rollback`).
//!
//! `local` compares the image the name points to in the store with the container's.
//! `registry` pulls the container's image name ([`Pull`]: reference in, image id of what the
//! name now points to out).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use burrow_storage::{ContainerState, Store};
use burrow_systemd::bus::Value;
use serde::Serialize;

use crate::context::Engine;
use crate::GlobalOptions;

const LABEL: &str = "io.containers.autoupdate";

#[derive(Debug, clap::Args)]
pub struct AutoUpdateArgs {
    /// Check for pending updates, change nothing
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Roll back to the previous image if the update fails
    #[arg(long, default_value = "true", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    rollback: String,
    /// Format the output: json, or a Go template over Unit, Container, Image, Policy, Updated
    #[arg(long)]
    format: Option<String>,
}

/// Pulls `reference` and returns the id of the image it now names (the `registry` policy).
pub type Pull<'a> = dyn Fn(&Store, &str) -> anyhow::Result<String> + 'a;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    unit: String,
    container: String,
    image: String,
    policy: String,
    updated: String,
}

pub fn auto_update(args: AutoUpdateArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let rollback = match args.rollback.as_str() {
        "true" => true,
        "false" => false,
        other => bail!("invalid --rollback {other:?}: must be true or false"),
    };
    let engine = Engine::open(global)?;
    let (reports, errors) = update_all(
        &engine.store,
        args.dry_run,
        rollback,
        &|_: &Store, reference: &str| super::pull::pull_for_update(&engine, reference),
    )?;
    print_reports(&reports, args.format.as_deref())?;
    for e in &errors {
        eprintln!("Error: {e:#}");
    }
    Ok(if errors.is_empty() { 0 } else { 125 })
}

fn print_reports(reports: &[Report], format: Option<&str>) -> anyhow::Result<()> {
    match format {
        Some("json") => println!("{}", serde_json::to_string_pretty(reports)?),
        Some(template) => {
            let tpl = super::format::Template::parse(template)?;
            for r in reports {
                println!("{}", tpl.render(&serde_json::to_value(r)?)?);
            }
        }
        None => {
            let mut out = tabwriter::TabWriter::new(std::io::stdout()).padding(2);
            use std::io::Write as _;
            writeln!(out, "UNIT\tCONTAINER\tIMAGE\tPOLICY\tUPDATED")?;
            for r in reports {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    r.unit, r.container, r.image, r.policy, r.updated
                )?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// One container to look at: its unit, image name, policy and current image.
struct Candidate {
    unit: String,
    id: String,
    name: String,
    image: String,
    image_id: String,
    policy: String,
}

fn candidates(store: &Store) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for mut c in store.containers()? {
        store.refresh_state(&mut c)?;
        if c.state != ContainerState::Running {
            continue;
        }
        let Ok(launch) = crate::launch::summary(&c) else {
            continue;
        };
        let Some(policy) = launch.labels.get(LABEL).cloned() else {
            continue;
        };
        let unit = c
            .monitor_pid
            .and_then(burrow_systemd::scope::unit_of_pid)
            .filter(|u| u.ends_with(".service"));
        let Some(unit) = unit else {
            eprintln!(
                "WARN: container {} has {LABEL}={policy} but no systemd unit runs it: skipped (run it from `burrow generate systemd --new` or a quadlet file)",
                c.name
            );
            continue;
        };
        out.push(Candidate {
            unit,
            id: c.id.clone(),
            name: c.name.clone(),
            image: launch.image.clone(),
            image_id: c.image_id.clone().unwrap_or_default(),
            policy,
        });
    }
    Ok(out)
}

fn update_all(
    store: &Store,
    dry_run: bool,
    rollback: bool,
    pull: &Pull<'_>,
) -> anyhow::Result<(Vec<Report>, Vec<anyhow::Error>)> {
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for c in candidates(store)? {
        let mut report = Report {
            unit: c.unit.clone(),
            container: format!("{} ({})", &c.id[..12], c.name),
            image: c.image.clone(),
            policy: c.policy.clone(),
            updated: "false".into(),
        };
        let newest = match c.policy.as_str() {
            "local" => store.image(&c.image).map(|i| i.id).map_err(anyhow::Error::from),
            "registry" | "image" if dry_run => Ok(c.image_id.clone()), // no pull in a dry run
            "registry" | "image" => pull(store, &c.image),
            other => Err(anyhow::anyhow!(
                "container {}: invalid {LABEL} policy {other:?}: must be registry or local",
                c.name
            )),
        };
        let newest = match newest {
            Ok(id) => id,
            Err(e) => {
                report.updated = "failed".into();
                errors.push(e.context(format!("auto-updating container {}", c.name)));
                reports.push(report);
                continue;
            }
        };
        if newest == c.image_id {
            reports.push(report);
            continue;
        }
        if dry_run {
            report.updated = "pending".into();
            reports.push(report);
            continue;
        }
        match restart_and_check(store, &c, &newest) {
            Ok(()) => report.updated = "true".into(),
            Err(e) if rollback => {
                // The name goes back to the image that ran, and the unit with it.
                let back = store
                    .tag_image(&c.image_id, &burrow_storage::normalize_name(&c.image)?)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| restart_and_check(store, &c, &c.image_id));
                report.updated = match back {
                    Ok(()) => "rolled back".into(),
                    Err(e2) => {
                        errors.push(e2.context(format!("rolling back container {}", c.name)));
                        "failed".into()
                    }
                };
                errors.push(e.context(format!("auto-updating container {}", c.name)));
            }
            Err(e) => {
                report.updated = "failed".into();
                errors.push(e.context(format!("auto-updating container {}", c.name)));
            }
        }
        reports.push(report);
    }
    Ok((reports, errors))
}

/// One instant of a unit's state (see `Connection::unit_properties`).
struct Snapshot {
    state: String,
    sub: String,
    invocation: String,
    job_pending: bool,
}

/// Restarts the unit and waits until it runs again with a container of image `image_id`.
fn restart_and_check(store: &Store, c: &Candidate, image_id: &str) -> anyhow::Result<()> {
    let mut bus = burrow_systemd::bus::Connection::user().context("reaching the user's systemd manager")?;
    // State and run from one snapshot: read apart, a restart's short `inactive` between its
    // stop and its start, seen next to the new run's id, looked like a failed start.
    let snapshot = |bus: &mut burrow_systemd::bus::Connection| -> anyhow::Result<Snapshot> {
        let p = bus.unit_properties(&c.unit)?;
        let text = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        Ok(Snapshot {
            state: text("ActiveState"),
            sub: text("SubState"),
            invocation: p
                .get("InvocationID")
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            // Job=(id, path): id 0 once no job is pending for the unit.
            job_pending: matches!(p.get("Job"), Some(Value::Struct(f)) if f.first() != Some(&Value::U32(0))),
        })
    };
    let first = snapshot(&mut bus)?;
    // A rollback follows a failed start, whose automatic restarts may use up the unit's start
    // limit at any moment (then systemd refuses our restart too): a deliberate restart starts
    // the count anew.
    bus.reset_failed_unit(&c.unit)?;
    bus.restart_unit(&c.unit)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = snapshot(&mut bus)?;
        // The restart job stays pending through the stop, the moment the unit is inactive
        // between stop and start, and the start, until the new run is active or has failed:
        // only then does the state say how the start went. (Judged earlier, the old run's
        // state, or an automatic restart of a failing run, looked like our start's.)
        if !now.job_pending {
            if now.invocation != first.invocation && now.state == "active" {
                break;
            }
            bail!(
                "unit {} failed to start after the update (state {}/{})",
                c.unit,
                now.state,
                now.sub
            );
        }
        if Instant::now() > deadline {
            bail!(
                "unit {} did not come back within 120 s (state {}/{})",
                c.unit,
                now.state,
                now.sub
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = store.container(&c.name)?;
    if now.image_id.as_deref() != Some(image_id) {
        bail!(
            "unit {} runs container {} of image {}, not {image_id}",
            c.unit,
            now.name,
            now.image_id.unwrap_or_default()
        );
    }
    Ok(())
}
