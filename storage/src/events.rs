//! The events log, as Podman's file logger keeps it: an append-only file in the store
//! (`events.log` under the graph root), one JSON object per line, in Podman's field names so
//! that `events --format` templates written for Podman work. Every writer (CLI calls,
//! monitors) appends whole lines with a single `write` on an `O_APPEND` descriptor, so lines
//! from concurrent processes never interleave. Logging is best effort: a full disk must not
//! fail a container's start or stop.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use crate::{ContainerRecord, Store, StoreError};

/// One event, as Podman writes it to its events.log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(
        rename = "ContainerExitCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exit_code: Option<i32>,
    #[serde(rename = "ID", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "Image", default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// create, start, died, remove, exec, exec_died, rename, pause, unpause, commit, ...
    #[serde(rename = "Status")]
    pub status: String,
    /// RFC 3339 with nanoseconds, UTC.
    #[serde(rename = "Time")]
    pub time: String,
    /// container or image.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Attributes", default, deserialize_with = "null_as_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// Podman writes `"Attributes":null` for image events.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

impl Event {
    /// An event of `kind` and `status` that happens now.
    pub fn now(kind: &str, status: &str) -> Event {
        Event {
            exit_code: None,
            id: String::new(),
            image: String::new(),
            name: String::new(),
            status: status.to_string(),
            time: format_time(SystemTime::now()),
            kind: kind.to_string(),
            attributes: BTreeMap::new(),
        }
    }

    /// When it happened.
    pub fn when(&self) -> SystemTime {
        parse_time(&self.time).unwrap_or(UNIX_EPOCH)
    }
}

impl Store {
    /// The events log.
    pub fn events_path(&self) -> PathBuf {
        self.paths.graph_root.join("events.log")
    }

    /// Appends `event` to the log (best effort).
    pub fn record_event(&self, event: &Event) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        let path = self.events_path();
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&path) {
            let _ = file.write_all(&line);
        }
    }

    /// Records a container event: `status` for `record`, named by its image (as the user
    /// gave it) and its name, with its exit code for `died`.
    pub fn container_event(&self, record: &ContainerRecord, status: &str, exit_code: Option<i32>) {
        let mut event = Event::now("container", status);
        event.id = record.id.clone();
        event.name = record.name.clone();
        event.image = self.container_image_name(record);
        event.exit_code = exit_code;
        self.record_event(&event);
    }

    /// The image a container was made from, as its stored configuration names it (the CLI's
    /// `image` field), else the image's first name.
    pub fn container_image_name(&self, record: &ContainerRecord) -> String {
        let from_config = serde_json::from_str::<serde_json::Value>(&record.config)
            .ok()
            .and_then(|v| v.get("image")?.as_str().map(str::to_string));
        if let Some(name) = from_config {
            return name;
        }
        let Some(image_id) = &record.image_id else {
            return String::new();
        };
        self.conn()
            .query_row(
                "SELECT name FROM image_names WHERE image_id = ?1 ORDER BY rowid LIMIT 1",
                [image_id],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Every event logged so far, oldest first, and the log's length in bytes (to follow it
    /// from there with [`Store::events_after`]). Lines that do not parse are skipped.
    pub fn events(&self) -> Result<(Vec<Event>, u64), StoreError> {
        self.events_after(0)
    }

    /// The events logged after byte `offset` of the log, and the new end (only whole lines).
    pub fn events_after(&self, offset: u64) -> Result<(Vec<Event>, u64), StoreError> {
        let path = self.events_path();
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(StoreError::io("reading", &path, e)),
        };
        let start = (offset as usize).min(data.len());
        let end = data[start..]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(start, |i| start + i + 1);
        let events = data[start..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect();
        Ok((events, end as u64))
    }
}

/// `2026-11-24T13:33:14.331506479Z` (Go's RFC3339Nano, UTC, without trailing zeros as Go
/// trims them).
pub fn format_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (year, month, day) = civil_from_days(days);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if since.subsec_nanos() != 0 {
        let frac = format!("{:09}", since.subsec_nanos());
        text.push('.');
        text.push_str(frac.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Parses what [`format_time`] writes (and any RFC 3339 time in UTC or with an offset).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        rest = &frac[digits.len()..];
        let padded = format!("{digits:0<9}");
        nanos = padded[..9].parse().ok()?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_from_civil(y: i64, mo: i64, d: i64) -> i64 {
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 331_506_479);
        assert_eq!(format_time(t), "2026-11-18T11:06:40.331506479Z");
        assert_eq!(parse_time(&format_time(t)), Some(t));
        let whole = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(format_time(whole), "2026-11-18T11:06:40Z");
        assert_eq!(
            parse_time("2026-11-18T12:06:40.5+01:00"),
            Some(UNIX_EPOCH + Duration::new(1_795_000_000, 500_000_000))
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn events_are_podman_json_lines() {
        let mut e = Event::now("container", "died");
        e.id = "abc".into();
        e.exit_code = Some(3);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.starts_with(r#"{"ContainerExitCode":3,"ID":"abc","Status":"died","Time":""#),
            "{json}"
        );
        assert!(
            json.ends_with(r#","Type":"container","Attributes":{}}"#),
            "{json}"
        );
        // Podman's own lines parse too.
        let podman = r#"{"Name":"bb","Status":"pull","Time":"2026-11-24T13:33:17.759220826Z","Type":"image","Attributes":null}"#;
        let parsed: Event = serde_json::from_str(podman).unwrap();
        assert_eq!((parsed.kind.as_str(), parsed.name.as_str()), ("image", "bb"));
    }
}
