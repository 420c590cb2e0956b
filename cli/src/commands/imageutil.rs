//! What several image commands share: names split as Podman shows them, creation times,
//! the summary `images --format json` prints, and name resolution.

use burrow_storage::{normalize_name, Image, Store};
use serde::Serialize;

/// `localhost/busybox:1.36` → (`localhost/busybox`, `1.36`); digests give `<none>` tags.
pub fn repo_tag(name: &str) -> (String, String) {
    let name = name.split('@').next().unwrap_or(name);
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (name[..slash + i].to_string(), name[slash + i + 1..].to_string()),
        None => (name.to_string(), "<none>".to_string()),
    }
}

/// When the image was made: its config's `created`, else when it was stored.
pub fn created(image: &Image) -> i64 {
    image
        .config
        .created()
        .as_deref()
        .and_then(parse_rfc3339)
        .unwrap_or(image.created)
}

/// Seconds since the epoch of an RFC 3339 time (`2023-11-14T22:13:20.5+01:00`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

pub fn rfc3339(secs: i64) -> String {
    crate::commands::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64))
}

/// The sum of the image's layer sizes (uncompressed).
pub fn size(image: &Image, sizes: &std::collections::HashMap<String, u64>) -> u64 {
    image.layers.iter().filter_map(|l| sizes.get(l)).sum()
}

/// The image's `Digest`: that of the manifest list it was pulled through, as Podman shows,
/// else its manifest's.
pub fn digest(image: &Image) -> String {
    image
        .index_digest
        .clone()
        .or_else(|| image.digest.clone())
        .unwrap_or_default()
}

/// `repo@digest` for each repository the image has a name in, and each of its digests (the
/// manifest list's and the manifest's, as Podman lists them).
pub fn repo_digests(image: &Image) -> Vec<String> {
    let digests: Vec<&String> = image.index_digest.iter().chain(&image.digest).collect();
    let mut repos: Vec<String> = image.names.iter().map(|n| repo_tag(n).0).collect();
    repos.sort();
    repos.dedup();
    repos
        .iter()
        .flat_map(|r| digests.iter().map(move |d| format!("{r}@{d}")))
        .collect()
}

/// The labels of the image config.
pub fn labels(image: &Image) -> serde_json::Value {
    let labels = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    serde_json::to_value(labels).unwrap_or_default()
}

/// One entry of `images --format json`, as Podman's `ImageSummary`.
#[derive(Serialize)]
pub struct Summary {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "ParentId")]
    pub parent_id: String,
    #[serde(rename = "RepoTags")]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "RepoDigests")]
    pub repo_digests: Vec<String>,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "SharedSize")]
    pub shared_size: u64,
    #[serde(rename = "VirtualSize")]
    pub virtual_size: u64,
    #[serde(rename = "Labels")]
    pub labels: serde_json::Value,
    #[serde(rename = "Containers")]
    pub containers: usize,
    #[serde(rename = "Names", skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "History", skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
    #[serde(rename = "Created")]
    pub created: i64,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
}

/// The name of `image` that `reference` designates, if it was given by name (not id).
pub fn matched_name(image: &Image, reference: &str) -> Option<String> {
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    if hex.len() >= 3 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && image.id.starts_with(hex) {
        return None;
    }
    let full = normalize_name(reference).ok()?;
    if image.names.contains(&full) {
        return Some(full);
    }
    let short = full.strip_prefix("localhost")?;
    image.names.iter().find(|n| n.ends_with(short)).cloned()
}

/// Ids of the containers made from image `id`.
pub fn containers_of(store: &Store, id: &str) -> anyhow::Result<Vec<String>> {
    Ok(store
        .containers()?
        .into_iter()
        .filter(|c| c.image_id.as_deref() == Some(id))
        .map(|c| c.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_and_parses_times() {
        assert_eq!(repo_tag("localhost/a:1"), ("localhost/a".into(), "1".into()));
        assert_eq!(
            repo_tag("127.0.0.1:5000/a"),
            ("127.0.0.1:5000/a".into(), "<none>".into())
        );
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
