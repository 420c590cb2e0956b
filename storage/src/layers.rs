//! Layers: tar streams extracted once into `layers/<diff_id>/diff`, inside the user
//! namespace so that owners land mapped through the user's id range.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{tarsplit, StoreError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Passes bytes through while hashing and counting them (and recording the tar-split).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    split: Option<tarsplit::Shared>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if let Some(split) = &self.split {
            split.borrow_mut().consume(&buf[..n])?;
        }
        Ok(n)
    }
}

/// The ids that exist in the namespace the extraction runs in (uids, gids).
#[derive(Debug, Clone, Copy)]
pub struct IdLimits {
    pub uids: u32,
    pub gids: u32,
}

/// What an extraction produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Hex sha256 of the uncompressed tar.
    pub diff_id: String,
    pub size: u64,
}

/// Extracts the uncompressed tar `reader` into the empty directory `dest`.
///
/// Hostile input is expected: entries that would land outside `dest` (`..`, absolute
/// paths, writes through a symlink, hardlinks to outside) are refused (CVE-class: tar
/// path traversal, e.g. CVE-2019-14271 / CVE-2018-15664), and owners the namespace cannot
/// represent fail with an error that names the file and /etc/subuid.
pub fn extract(reader: impl Read, dest: &Path, limits: IdLimits) -> Result<Extracted, StoreError> {
    extract_recorded(reader, dest, limits, None)
}

/// [`extract`], also recording the stream's tar-split (see [`tarsplit`]) when given one.
pub fn extract_recorded(
    reader: impl Read,
    dest: &Path,
    limits: IdLimits,
    split: Option<tarsplit::Shared>,
) -> Result<Extracted, StoreError> {
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
        size: 0,
        split: split.clone(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        let bad = |e: io::Error| StoreError::BadLayer(e.to_string());
        let mut dirs = Vec::new();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.into_owned();
            let header = entry.header();
            let (uid, gid) = (header.uid().map_err(bad)?, header.gid().map_err(bad)?);
            if uid >= u64::from(limits.uids) || gid >= u64::from(limits.gids) {
                return Err(StoreError::UnmappedOwner { path, uid, gid });
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let rel = relative(&path);
            if let (Some(split), Some(rel)) = (&split, &rel) {
                let replaced = match name.strip_prefix(WHITEOUT_PREFIX) {
                    Some(hidden) => rel.with_file_name(hidden),
                    None => rel.clone(),
                };
                split.borrow_mut().before_replace(&replaced)?;
            }
            if name.starts_with(WHITEOUT_PREFIX) {
                whiteout(dest, &path, &name, uid as u32, gid as u32)?;
                continue;
            }
            let kind = entry.header().entry_type();
            if let (Some(split), Some(rel), true) = (
                &split,
                &rel,
                matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) && entry.size() > 0,
            ) {
                split
                    .borrow_mut()
                    .begin_content(rel, entry.size())
                    .map_err(|e| StoreError::io("recording", dest, e))?;
            }
            if kind == tar::EntryType::Fifo {
                // tar's unpack would make a regular file of it.
                let mode = entry.header().mode().map_err(bad)?;
                let mtime = entry.header().mtime().unwrap_or(0);
                fifo(dest, &path, mode, uid as u32, gid as u32, mtime as i64)?;
                continue;
            }
            let is_dir = kind.is_dir();
            let unpacked = entry
                .unpack_in(dest)
                .map_err(|e| StoreError::BadLayer(format!("{}: {e}", path.display())))?;
            if !unpacked {
                return Err(StoreError::BadLayer(format!(
                    "{}: path escapes the layer",
                    path.display()
                )));
            }
            if is_dir {
                dirs.push((path, entry.header().mtime().unwrap_or(0)));
            }
        }
        // Children were written into these directories after their own entry set the
        // mtime: set it again, deepest first.
        dirs.reverse();
        for (dir, mtime) in dirs {
            let _ = set_mtime(&dest.join(&dir), mtime as i64);
        }
    }
    // Trailing padding after the end-of-archive blocks belongs to the digest too.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| StoreError::BadLayer(e.to_string()))?;
    if let Some(split) = &split {
        split
            .borrow_mut()
            .finish()
            .map_err(|e| StoreError::io("recording", dest, e))?;
    }
    Ok(Extracted {
        diff_id: hex(&hashing.hasher.finalize()),
        size: hashing.size,
    })
}

/// Where tar's `unpack_in` puts `path` inside the layer: normal components only.
fn relative(path: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => rel.push(c),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    (!rel.as_os_str().is_empty()).then_some(rel)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let times = [
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid path and a two-element timespec array.
    if unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The directory `parent` of an entry, inside `dest`, created if missing; refuses any
/// path that resolves (through symlinks already extracted) outside `dest`.
fn parent_inside(dest: &Path, entry: &Path) -> Result<PathBuf, StoreError> {
    let mut rel = PathBuf::new();
    for comp in entry.parent().unwrap_or(Path::new("")).components() {
        match comp {
            Component::Normal(c) => rel.push(c),
            Component::CurDir | Component::RootDir => {}
            _ => {
                return Err(StoreError::BadLayer(format!(
                    "{}: path escapes the layer",
                    entry.display()
                )))
            }
        }
    }
    let dir = dest.join(&rel);
    fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
    let canon = dir
        .canonicalize()
        .map_err(|e| StoreError::io("resolving", &dir, e))?;
    let root = dest
        .canonicalize()
        .map_err(|e| StoreError::io("resolving", dest, e))?;
    if !canon.starts_with(&root) {
        return Err(StoreError::BadLayer(format!(
            "{}: path escapes the layer",
            entry.display()
        )));
    }
    Ok(canon)
}

/// OCI whiteouts become what kernel overlayfs understands: a 0/0 character device hides a
/// lower file; the `user.overlay.opaque` xattr (we mount with `userxattr`) hides a lower
/// directory's contents.
fn whiteout(dest: &Path, path: &Path, name: &str, uid: u32, gid: u32) -> Result<(), StoreError> {
    let parent = parent_inside(dest, path)?;
    if name == OPAQUE_MARKER {
        xattr_set(&parent, "user.overlay.opaque", b"y")
            .map_err(|e| StoreError::io("marking opaque", &parent, e))?;
        return Ok(());
    }
    let hidden = &name[WHITEOUT_PREFIX.len()..];
    if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
        return Err(StoreError::BadLayer(format!(
            "{}: invalid whiteout",
            path.display()
        )));
    }
    let target = parent.join(hidden);
    let _ = fs::remove_file(&target);
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| StoreError::BadLayer(path.display().to_string()))?;
    // SAFETY: valid path; a 0/0 character device is the only node a user namespace may make.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) } < 0 {
        return Err(StoreError::io(
            "creating whiteout",
            &target,
            io::Error::last_os_error(),
        ));
    }
    std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
        .map_err(|e| StoreError::io("chown", &target, e))?;
    Ok(())
}

/// A FIFO at `path` inside `dest`, with its owner, mode and mtime.
fn fifo(dest: &Path, path: &Path, mode: u32, uid: u32, gid: u32, mtime: i64) -> Result<(), StoreError> {
    let parent = parent_inside(dest, path)?;
    let name = path
        .file_name()
        .ok_or_else(|| StoreError::BadLayer(format!("{}: invalid name", path.display())))?;
    let target = parent.join(name);
    let _ = fs::remove_file(&target);
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| StoreError::BadLayer(path.display().to_string()))?;
    // SAFETY: valid path; FIFOs need no privilege.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | 0o600, 0) } < 0 {
        return Err(StoreError::io(
            "creating fifo",
            &target,
            io::Error::last_os_error(),
        ));
    }
    std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
        .map_err(|e| StoreError::io("chown", &target, e))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| StoreError::io("chmod", &target, e))?;
    let _ = set_mtime(&target, mtime);
    Ok(())
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: valid C strings and buffer.
    if unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn xattrs(path: &Path) -> Vec<(CString, Vec<u8>)> {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer of the given size.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    names
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|name| {
            let name = CString::new(name).ok()?;
            let mut value = vec![0u8; 65536];
            // SAFETY: as above.
            let len =
                unsafe { libc::lgetxattr(p.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
            (len >= 0).then(|| {
                value.truncate(len as usize);
                (name, value)
            })
        })
        .collect()
}

/// Copies the layer tree `src` to `dst` with every owner passed through `map_uid` and
/// `map_gid`: a layer as a nested id mapping (`--userns=keep-id`, `--uidmap`) must see
/// it. Kernel overlayfs cannot shift ids in a user namespace (idmapped mounts need
/// CAP_SYS_ADMIN over the filesystem), so the shifted copy is made once and cached.
pub fn shifted_copy(
    src: &Path,
    dst: &Path,
    map_uid: &dyn Fn(u32) -> Option<u32>,
    map_gid: &dyn Fn(u32) -> Option<u32>,
) -> Result<(), StoreError> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    copy_node(src, dst, map_uid, map_gid, &mut links)
}

fn copy_node(
    src: &Path,
    dst: &Path,
    map_uid: &dyn Fn(u32) -> Option<u32>,
    map_gid: &dyn Fn(u32) -> Option<u32>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(src).map_err(|e| StoreError::io("reading", src, e))?;
    let ft = meta.file_type();
    let uid = map_uid(meta.uid()).ok_or(StoreError::UnmappedOwner {
        path: src.into(),
        uid: meta.uid().into(),
        gid: meta.gid().into(),
    })?;
    let gid = map_gid(meta.gid()).ok_or(StoreError::UnmappedOwner {
        path: src.into(),
        uid: meta.uid().into(),
        gid: meta.gid().into(),
    })?;
    let io = |what, e| StoreError::io(what, dst, e);
    if ft.is_dir() {
        fs::create_dir(dst).map_err(|e| io("creating", e))?;
        for entry in fs::read_dir(src).map_err(|e| StoreError::io("reading", src, e))? {
            let entry = entry.map_err(|e| StoreError::io("reading", src, e))?;
            copy_node(
                &entry.path(),
                &dst.join(entry.file_name()),
                map_uid,
                map_gid,
                links,
            )?;
        }
    } else if meta.nlink() > 1 && !ft.is_symlink() && links.contains_key(&(meta.dev(), meta.ino())) {
        fs::hard_link(&links[&(meta.dev(), meta.ino())], dst).map_err(|e| io("linking", e))?;
        return Ok(());
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(|e| StoreError::io("reading", src, e))?;
        std::os::unix::fs::symlink(target, dst).map_err(|e| io("creating", e))?;
    } else if ft.is_file() {
        fs::copy(src, dst).map_err(|e| io("copying to", e))?;
    } else {
        let c = CString::new(dst.as_os_str().as_bytes())
            .map_err(|_| StoreError::BadLayer(dst.display().to_string()))?;
        // SAFETY: valid path; fifos, sockets and 0/0 whiteouts are all a namespace allows.
        if unsafe {
            libc::mknod(
                c.as_ptr(),
                meta.mode() as libc::mode_t,
                meta.rdev() as libc::dev_t,
            )
        } < 0
        {
            return Err(io("creating", io::Error::last_os_error()));
        }
    }
    if meta.nlink() > 1 && !ft.is_dir() {
        links.insert((meta.dev(), meta.ino()), dst.to_path_buf());
    }
    std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(|e| io("chown", e))?;
    for (name, value) in xattrs(src) {
        let n = name.to_string_lossy();
        if n.starts_with("user.") || n == "security.capability" {
            let _ = xattr_set(dst, &n, &value);
        }
    }
    if !ft.is_symlink() {
        // After chown, which clears setuid/setgid bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| io("chmod", e))?;
    }
    let _ = set_mtime(dst, meta.mtime());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> IdLimits {
        IdLimits {
            uids: u32::MAX,
            gids: u32::MAX,
        }
    }

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(nix::unistd::getuid().as_raw().into());
            h.set_gid(nix::unistd::getgid().as_raw().into());
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Write the raw name so tests can use names the builder would refuse.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extracts_and_digests() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tar_with(&[
            ("d", tar::EntryType::Directory, b"", None),
            ("d/f", tar::EntryType::Regular, b"hi", None),
        ]);
        let out = extract(&data[..], tmp.path(), limits()).unwrap();
        assert_eq!(fs::read(tmp.path().join("d/f")).unwrap(), b"hi");
        assert_eq!(out.diff_id, hex(&Sha256::digest(&data)));
        assert_eq!(out.size, data.len() as u64);
    }

    #[test]
    fn refuses_entries_outside_the_layer() {
        for (name, entries) in [
            (
                "dotdot",
                vec![("../escape", tar::EntryType::Regular, &b"x"[..], None)],
            ),
            (
                "symlink-then-write",
                vec![
                    ("link", tar::EntryType::Symlink, &b""[..], Some("/tmp")),
                    ("link/escape", tar::EntryType::Regular, &b"x"[..], None),
                ],
            ),
            (
                "hardlink-outside",
                vec![("h", tar::EntryType::Link, &b""[..], Some("../../../etc/passwd"))],
            ),
            (
                "whiteout-through-symlink",
                vec![
                    ("link", tar::EntryType::Symlink, &b""[..], Some("/tmp")),
                    ("link/.wh.x", tar::EntryType::Regular, &b""[..], None),
                ],
            ),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let layer = tmp.path().join("layer");
            fs::create_dir(&layer).unwrap();
            let result = extract(&tar_with(&entries)[..], &layer, limits());
            assert!(result.is_err(), "{name} was accepted");
            assert!(!tmp.path().join("escape").exists(), "{name} wrote outside");
        }
    }

    #[test]
    fn names_the_file_whose_owner_is_unmapped() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tar_with(&[("f", tar::EntryType::Regular, b"", None)]);
        let owner = nix::unistd::getuid().as_raw();
        let err = extract(
            &data[..],
            tmp.path(),
            IdLimits {
                uids: owner,
                gids: u32::MAX,
            },
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::UnmappedOwner { .. }), "{err}");
        assert!(err.to_string().contains("/etc/subuid"), "{err}");
    }
}
