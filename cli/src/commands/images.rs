//! `burrow images` / `burrow image list`: one row per name, as Podman's table.

use anyhow::{bail, Result};
use burrow_storage::{Image, Store};
use serde_json::{json, Value};

use super::format::{self, go_time, human_size, since, Format};
use super::imageutil::{self, created, repo_tag};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (default [])
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Change the output format to JSON or a Go template
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Do not print column headings
    #[arg(short, long = "noheading")]
    noheading: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Display only image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Sort by created, id, repository, size or tag
    #[arg(long, default_value = "created")]
    sort: String,
    /// Show images matching this reference
    image: Option<String>,
}

const HEADERS: &[(&str, &str)] = &[("ID", "IMAGE ID"), ("ReadOnly", "R/O")];

pub fn images(args: ImagesArgs, global: &GlobalOptions) -> Result<i32> {
    let mut filters = args.filter.clone();
    if let Some(r) = &args.image {
        filters.push(format!("reference={r}"));
    }
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let mut list = store.images()?;
    for f in &filters {
        list = apply_filter(store, list, f)?;
    }
    // Newest first; names of one image in order.
    list.sort_by(|a, b| created(b).cmp(&created(a)).then_with(|| a.id.cmp(&b.id)));
    let sizes = store.layer_sizes()?;
    let containers = store.containers()?;
    let count = |id: &str| {
        containers
            .iter()
            .filter(|c| c.image_id.as_deref() == Some(id))
            .count()
    };
    let _ = args.all; // burrow keeps no intermediate images: -a shows the same list.

    // Newest first already; the others ascending, as Podman's (a stable sort keeps the newest
    // first among equals).
    let key = match args.sort.as_str() {
        "created" => None,
        "id" => Some("Id"),
        "repository" => Some("Repository"),
        "size" => Some("VirtualSize"),
        "tag" => Some("Tag"),
        other => bail!("invalid option for --sort {other:?}: created, id, repository, size, tag"),
    };

    if args.format.as_deref() == Some("json") {
        let summaries: Vec<imageutil::Summary> = list
            .iter()
            .map(|i| summary(i, imageutil::size(i, &sizes), count(&i.id)))
            .collect();
        println!("{}", format::json_pretty(&summaries));
        return Ok(0);
    }
    let mut rows = Vec::new();
    for image in &list {
        let names: Vec<Option<&String>> = if image.names.is_empty() {
            vec![None]
        } else {
            image.names.iter().map(Some).collect()
        };
        for name in names {
            rows.push(row(
                image,
                name.map(String::as_str),
                &args,
                imageutil::size(image, &sizes),
                count(&image.id),
            ));
        }
    }
    if let Some(key) = key {
        rows.sort_by(|a, b| match (&a[key], &b[key]) {
            (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
            (x, y) => x.as_str().unwrap_or_default().cmp(y.as_str().unwrap_or_default()),
        });
    }
    let template = match (&args.format, args.quiet) {
        (Some(f), _) => f.clone(),
        (None, true) => "{{.ID}}".into(),
        (None, false) if args.digests => {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.Created}}\t{{.Size}}".into()
        }
        (None, false) => "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Created}}\t{{.Size}}".into(),
    };
    if args.quiet && args.format.is_none() {
        // One line per image, as Podman's -q.
        rows.dedup_by(|a, b| a["Id"] == b["Id"]);
    }
    let mut format = Format::parse(&template)?;
    if let (Format::Template(t), true) = (&mut format, args.noheading) {
        t.table = false;
    }
    format::print(&format, &rows, HEADERS)?;
    Ok(0)
}

fn summary(image: &Image, size: u64, containers: usize) -> imageutil::Summary {
    let created = created(image);
    imageutil::Summary {
        id: image.id.clone(),
        parent_id: String::new(),
        repo_tags: None,
        repo_digests: imageutil::repo_digests(image),
        size,
        shared_size: 0,
        virtual_size: size,
        labels: imageutil::labels(image),
        containers,
        names: image.names.clone(),
        digest: imageutil::digest(image),
        history: image.names.iter().rev().cloned().collect(),
        created,
        created_at: imageutil::rfc3339(created),
    }
}

fn row(image: &Image, name: Option<&str>, args: &ImagesArgs, size: u64, containers: usize) -> Value {
    let (repository, tag) = name.map_or(("<none>".into(), "<none>".into()), repo_tag);
    let id = if args.no_trunc {
        format!("sha256:{}", image.id)
    } else {
        image.id[..12].to_string()
    };
    let created = created(image);
    let mut history: Vec<&str> = image.names.iter().rev().map(String::as_str).collect();
    history.dedup();
    json!({
        "ID": id,
        "Id": image.id,
        "ParentId": "",
        "Repository": repository,
        "Tag": tag,
        "Digest": imageutil::digest(image),
        "RepoDigests": imageutil::repo_digests(image),
        "Created": since(created),
        "CreatedSince": since(created),
        "CreatedAt": go_time(created),
        "CreatedTime": go_time(created),
        "Size": human_size(size),
        "VirtualSize": size,
        "SharedSize": 0,
        "Containers": containers,
        "Labels": imageutil::labels(image),
        "Names": image.names,
        "History": history.join(", "),
        "Dangling": image.names.is_empty(),
        "ReadOnly": false,
    })
}

/// Keeps the images that pass one `--filter KEY=VALUE`.
fn apply_filter(store: &Store, list: Vec<Image>, filter: &str) -> Result<Vec<Image>> {
    let (key, value) = filter.split_once('=').unwrap_or((filter, ""));
    let keep: Box<dyn Fn(&Image) -> bool> = match key {
        "reference" => {
            let pattern = value.to_string();
            Box::new(move |i: &Image| i.names.iter().any(|n| reference_matches(&pattern, n)))
        }
        "dangling" => {
            let want = match value {
                "true" => true,
                "false" => false,
                _ => bail!("invalid filter: {filter:?}: dangling must be true or false"),
            };
            Box::new(move |i: &Image| i.names.is_empty() == want)
        }
        "label" => {
            let (k, v) = match value.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (value.to_string(), None),
            };
            Box::new(move |i: &Image| {
                let labels = imageutil::labels(i);
                match (&labels[&k], &v) {
                    (Value::String(have), Some(want)) => have == want,
                    (Value::String(_), None) => true,
                    _ => false,
                }
            })
        }
        "before" | "since" => {
            let other = store.image(value).map_err(|e| {
                anyhow::anyhow!("could not find local image for filter filter {key:?}={value:?}: {e}")
            })?;
            let at = created(&other);
            let before = key == "before";
            Box::new(move |i: &Image| if before { created(i) < at } else { created(i) > at })
        }
        "id" => {
            let prefix = value.trim_start_matches("sha256:").to_string();
            Box::new(move |i: &Image| i.id.starts_with(&prefix))
        }
        _ => bail!("unsupported image filter {key:?}"),
    };
    Ok(list.into_iter().filter(|i| keep(i)).collect())
}

/// Whether `name` (fully qualified) matches a `reference=` pattern: a glob against the
/// full name, or against the name without `localhost/` or `docker.io/library/`; a
/// pattern without a tag matches every tag.
pub fn reference_matches(pattern: &str, name: &str) -> bool {
    let short = name
        .strip_prefix("localhost/")
        .or_else(|| name.strip_prefix("docker.io/library/"))
        .unwrap_or(name);
    let mut candidates = vec![name.to_string(), short.to_string()];
    let pattern_has_tag = pattern.rsplit('/').next().is_some_and(|last| last.contains(':'));
    if !pattern_has_tag {
        candidates.push(repo_tag(name).0);
        candidates.push(repo_tag(short).0);
    }
    candidates.iter().any(|c| glob(pattern.as_bytes(), c.as_bytes()))
}

/// `*` and `?` glob (as Go's path.Match, without classes).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && glob(p, &s[1..])),
        (Some(b'?'), Some(&c)) => c != b'/' && glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) => a == b && glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filters_like_podman() {
        assert!(reference_matches("sample", "localhost/sample:v1"));
        assert!(reference_matches("*sample*", "localhost/sample:v1"));
        assert!(reference_matches("localhost/other:x", "localhost/other:x"));
        assert!(reference_matches("sample:v1", "localhost/sample:v1"));
        assert!(!reference_matches("sample:v2", "localhost/sample:v1"));
        assert!(!reference_matches("samp", "localhost/sample:v1"));
        assert!(reference_matches("busybox", "docker.io/library/busybox:latest"));
    }
}
