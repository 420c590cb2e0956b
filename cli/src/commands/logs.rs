//! `burrow logs`: a container's output from its k8s-file log.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::time::Duration;

use burrow_storage::ContainerState;

use crate::context::Engine;
use crate::monitor::log_path;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Output the specified number of lines at the end of the logs
    #[arg(short = 'n', long, allow_negative_numbers = true)]
    tail: Option<i64>,
    /// Output the timestamps in the log
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Show logs since TIMESTAMP (RFC 3339, a date, Unix seconds, or a duration before now such as 10m)
    #[arg(long)]
    since: Option<String>,
    /// Show logs until TIMESTAMP (RFC 3339, a date, Unix seconds, or a duration before now such as 10m)
    #[arg(long)]
    until: Option<String>,
    /// Container (name or id)
    container: String,
}

/// One k8s-file line: `TIMESTAMP STREAM F|P CONTENT`.
struct Entry<'a> {
    time: &'a str,
    stderr: bool,
    partial: bool,
    content: &'a str,
}

fn parse(line: &str) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    Some(Entry {
        time,
        stderr: stream == "stderr",
        partial: tag == "P",
        content: parts.next().unwrap_or(""),
    })
}

/// `--since`/`--until` as the log's own timestamps (RFC 3339 with nanoseconds, which compare
/// as strings); any form Podman takes (a duration: that long ago).
fn bound(text: &Option<String>, flag: &str) -> anyhow::Result<Option<String>> {
    text.as_deref()
        .map(|t| match super::events::time_arg(t) {
            Ok(at) => Ok(crate::monitor::log_timestamp(at)),
            Err(_) => Err(anyhow::anyhow!(
                "parsing {flag} {t:?}: unable to interpret time value"
            )),
        })
        .transpose()
}

fn emit(entry: &Entry, args: &LogsArgs) {
    let mut text = String::new();
    if args.timestamps {
        text.push_str(entry.time);
        text.push(' ');
    }
    text.push_str(entry.content);
    if !entry.partial {
        text.push('\n');
    }
    if entry.stderr {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
}

pub fn logs(args: LogsArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let container = store.container(&args.container)?;
    match crate::launch::summary(&container).map(|l| l.log.driver) {
        Ok(crate::launch::LogDriver::None) => anyhow::bail!(
            "this container is using the 'none' log driver, cannot read logs: this container is not logging output"
        ),
        Ok(crate::launch::LogDriver::Journald) => anyhow::bail!(
            "container {} logs to the journal: read them with journalctl CONTAINER_ID_FULL={}",
            container.name,
            container.id
        ),
        _ => {}
    }
    let path = log_path(store, &container.id);
    let (since, until) = (bound(&args.since, "--since")?, bound(&args.until, "--until")?);
    let in_range = |e: &Entry| {
        since.as_ref().is_none_or(|s| e.time >= s.as_str())
            && until.as_ref().is_none_or(|u| e.time <= u.as_str())
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = match args.tail {
        Some(n) if n >= 0 => lines.len().saturating_sub(n as usize),
        _ => 0,
    };
    for line in &lines[start..] {
        if let Some(e) = parse(line).filter(|e| in_range(e)) {
            emit(&e, &args);
        }
    }
    let _ = std::io::stdout().flush();
    if !args.follow {
        return Ok(0);
    }
    // Follow: read what is appended until the container has stopped and all is read.
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(_) => return Ok(0),
    };
    file.seek(SeekFrom::Start(text.len() as u64))?;
    let mut reader = BufReader::new(file);
    let mut pending = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n > 0 {
            pending.push_str(&line);
            if pending.ends_with('\n') {
                if let Some(e) = parse(pending.trim_end_matches('\n')).filter(|e| in_range(e)) {
                    emit(&e, &args);
                    let _ = std::io::stdout().flush();
                }
                pending.clear();
            }
            continue;
        }
        let mut c = match store.container(&container.id) {
            Ok(c) => c,
            Err(_) => return Ok(0), // removed (--rm)
        };
        store.refresh_state(&mut c)?;
        if c.state != ContainerState::Running {
            // One last read: the monitor wrote everything before recording the exit.
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut reader, &mut rest)?;
            for line in rest.lines() {
                if let Some(e) = parse(line).filter(|e| in_range(e)) {
                    emit(&e, &args);
                }
            }
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
