//! A container's changes to its image, read from its overlay upper dir: the list `diff`
//! shows, and the layer `commit` stores. In the upper dir a deleted file is a 0/0 character
//! device and a replaced directory carries `user.overlay.opaque=y`; in a layer (OCI) they are
//! `.wh.NAME` and `DIR/.wh..wh..opq` entries.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::treetar::{is_opaque, is_whiteout, OwnerMap, TarWriter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// Whether `rel` exists in the image: the topmost layer that has an entry there decides (a
/// whiteout says no), and an opaque directory above hides what lies under it.
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    for lower in lowers {
        let path = lower.join(rel);
        if let Ok(meta) = fs::symlink_metadata(&path) {
            return !is_whiteout(&meta);
        }
        // An opaque ancestor in this layer hides the layers below.
        let mut ancestor = rel.parent();
        while let Some(a) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
            if is_opaque(&lower.join(a)) {
                return false;
            }
            ancestor = a.parent();
        }
    }
    false
}

/// What the layers hold under directory `rel` (names, across layers, as merged).
fn lower_children(lowers: &[PathBuf], rel: &Path) -> BTreeSet<std::ffi::OsString> {
    let mut names = BTreeSet::new();
    for lower in lowers {
        let dir = lower.join(rel);
        if let Ok(entries) = fs::read_dir(&dir) {
            names.extend(entries.flatten().map(|e| e.file_name()));
        }
        if is_opaque(&dir) {
            break;
        }
    }
    names
        .into_iter()
        .filter(|n| in_lowers(lowers, &rel.join(n)))
        .collect()
}

/// Where burrow mounts things over a container's root (as Podman's `initInodes`): the
/// mount points it leaves in the upper dir are not the container's changes, and `diff`
/// never lists these paths (as Podman's).
pub const MOUNT_POINTS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "run/.containerenv",
    "run/secrets",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

/// The mount points burrow made in `upper` (not in the image, and empty: files, or
/// directories holding only other such mount points), given the spec's mount destinations.
pub fn mount_points(upper: &Path, lowers: &[PathBuf], destinations: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut candidates: Vec<PathBuf> = MOUNT_POINTS.iter().map(PathBuf::from).collect();
    candidates.extend(
        destinations
            .iter()
            .map(|d| d.strip_prefix("/").unwrap_or(d).to_path_buf()),
    );
    // Deepest first, so a directory sees whether its children are placeholders.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.components().count()));
    candidates.dedup();
    let mut found = BTreeSet::new();
    for rel in candidates {
        let path = upper.join(&rel);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if in_lowers(lowers, &rel) {
            continue;
        }
        let empty = if meta.is_dir() {
            fs::read_dir(&path).is_ok_and(|entries| {
                entries
                    .flatten()
                    .all(|e| found.contains(&rel.join(e.file_name())))
            })
        } else {
            meta.is_file() && meta.len() == 0
        };
        if empty {
            found.insert(rel);
        }
    }
    found
}

/// The changes in `upper` over `lowers` (topmost first), sorted by path, paths absolute;
/// the paths in `skip` (relative) are left out.
pub fn changes(
    upper: &Path,
    lowers: &[PathBuf],
    skip: &BTreeSet<PathBuf>,
) -> io::Result<Vec<(Kind, String)>> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lowers, skip, &mut out)?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    skip: &BTreeSet<PathBuf>,
    out: &mut Vec<(Kind, String)>,
) -> io::Result<()> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?.flatten().map(|e| e.file_name()).collect();
    names.sort();
    if !rel.as_os_str().is_empty() && is_opaque(&dir) {
        // Everything the image had here is gone, except what the upper dir has again.
        for gone in lower_children(lowers, rel) {
            if !names.contains(&gone) {
                out.push((Kind::Deleted, format!("/{}", rel.join(&gone).display())));
            }
        }
    }
    for name in names {
        let child = rel.join(&name);
        if skip.contains(&child) {
            continue;
        }
        let meta = fs::symlink_metadata(upper.join(&child))?;
        let shown = format!("/{}", child.display());
        if is_whiteout(&meta) {
            if in_lowers(lowers, &child) {
                out.push((Kind::Deleted, shown));
            }
            continue;
        }
        let existed = in_lowers(lowers, &child);
        out.push((if existed { Kind::Changed } else { Kind::Added }, shown));
        if meta.is_dir() {
            walk(upper, &child, lowers, skip, out)?;
        }
    }
    Ok(())
}

/// Writes `upper` as an OCI layer tar to `out`, owners through `owner`, without the paths
/// in `skip`.
pub fn write_layer<W: Write>(
    upper: &Path,
    out: W,
    owner: OwnerMap,
    skip: &BTreeSet<PathBuf>,
) -> io::Result<W> {
    let mut tar = TarWriter::new(out);
    layer_dir(&mut tar, upper, Path::new(""), owner, skip)?;
    tar.finish()
}

fn layer_dir<W: Write>(
    tar: &mut TarWriter<W>,
    upper: &Path,
    rel: &Path,
    owner: OwnerMap,
    skip: &BTreeSet<PathBuf>,
) -> io::Result<()> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let child = rel.join(&name);
        if skip.contains(&child) {
            continue;
        }
        let path = upper.join(&child);
        let meta = fs::symlink_metadata(&path)?;
        if is_whiteout(&meta) {
            let mut marker = std::ffi::OsString::from(".wh.");
            marker.push(&name);
            tar.append_marker(&rel.join(marker))?;
            continue;
        }
        tar.append_node(&path, &child, &meta, owner)?;
        if meta.is_dir() {
            if is_opaque(&path) {
                tar.append_marker(&child.join(".wh..wh..opq"))?;
            }
            layer_dir(tar, upper, &child, owner, skip)?;
        }
    }
    Ok(())
}
