//! Layers: tar streams extracted once into `layers/<diff_id>/diff`, inside the user
//! namespace so that owners land mapped through the user's id range.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{tarscan, tarsplit, StoreError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Passes bytes through while hashing and counting them (and recording the tar-split),
/// following the tar structure to refuse truncated streams and oversized metadata.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    split: Option<tarsplit::Shared>,
    scan: tarscan::Scanner,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.scan.finish()?;
        }
        self.scan.consume(&buf[..n])?;
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
/// Hostile input is expected: entries that would land outside `dest` (`..`, writes
/// through a symlink, hardlinks to outside) are refused (CVE-class: tar path traversal,
/// e.g. CVE-2019-14271 / CVE-2018-15664), and owners the namespace cannot represent fail
/// with an error that names the file and /etc/subuid. A leading `/` is dropped, as GNU
/// tar, Docker and Podman do: `/etc/x` lands at `etc/x` of the layer.
pub fn extract(reader: impl Read, dest: &Path, limits: IdLimits) -> Result<Extracted, StoreError> {
    extract_recorded(reader, dest, limits, None)
}

/// The directories of a layer being extracted that are known to be real directories
/// (checked with lstat, or made by us), relative to its root: every entry's parent must
/// be one, so no entry is written through a symlink. Checking each new parent once, not
/// resolving every path, keeps extraction of many small files cheap.
struct Tree<'a> {
    root: &'a Path,
    dirs: HashSet<PathBuf>,
}

fn escapes(path: &Path, why: &str) -> StoreError {
    StoreError::BadLayer(format!("{}: {why}", path.display()))
}

impl Tree<'_> {
    /// Makes sure `rel` is a real directory of the layer, creating what is missing.
    fn ensure_dir(&mut self, rel: &Path, entry: &Path) -> Result<(), StoreError> {
        if rel.as_os_str().is_empty() || self.dirs.contains(rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent, entry)?;
        }
        let full = self.root.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(escapes(
                    entry,
                    "path goes through a symlink of the layer; refused, as it could lead outside the layer",
                ))
            }
            Ok(_) => return Err(escapes(entry, "a parent is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&full).map_err(|e| StoreError::io("creating", &full, e))?
            }
            Err(e) => return Err(StoreError::io("checking", &full, e)),
        }
        self.dirs.insert(rel.to_path_buf());
        Ok(())
    }

    /// The full path of entry `rel` (normal components), its parent made sure of.
    fn place(&mut self, rel: &Path, entry: &Path) -> Result<PathBuf, StoreError> {
        self.ensure_dir(rel.parent().unwrap_or(Path::new("")), entry)?;
        Ok(self.root.join(rel))
    }
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
        scan: tarscan::Scanner::default(),
    };
    let mut tree = Tree {
        root: dest,
        dirs: HashSet::new(),
    };
    let mut writer = FileWriter::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        let bad = |e: io::Error| StoreError::BadLayer(chain(&e));
        let mut dirs = Vec::new();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.into_owned();
            let header = entry.header();
            let (uid, gid) = (header.uid().map_err(bad)?, header.gid().map_err(bad)?);
            if uid >= u64::from(limits.uids) || gid >= u64::from(limits.gids) {
                return Err(StoreError::UnmappedOwner { path, uid, gid });
            }
            let Some(rel) = relative(&path)? else {
                // The root itself ("./"): its owner and mode are the container's business.
                continue;
            };
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(split) = &split {
                let replaced = match name.strip_prefix(WHITEOUT_PREFIX) {
                    Some(hidden) => rel.with_file_name(hidden),
                    None => rel.clone(),
                };
                split.borrow_mut().before_replace(&replaced)?;
            }
            if name.starts_with(WHITEOUT_PREFIX) {
                whiteout(&mut tree, &rel, &name, uid as u32, gid as u32)?;
                continue;
            }
            let kind = entry.header().entry_type();
            if let (Some(split), true) = (
                &split,
                matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) && entry.size() > 0,
            ) {
                split
                    .borrow_mut()
                    .begin_content(&rel, entry.size())
                    .map_err(|e| StoreError::io("recording", dest, e))?;
            }
            let target = tree.place(&rel, &path)?;
            match kind {
                tar::EntryType::Fifo => {
                    // tar's unpack would make a regular file of it.
                    let mode = entry.header().mode().map_err(bad)?;
                    let mtime = entry.header().mtime().unwrap_or(0);
                    fifo(&target, mode, uid as u32, gid as u32, mtime as i64)?;
                    continue;
                }
                tar::EntryType::Link => {
                    let link = entry
                        .link_name()
                        .map_err(bad)?
                        .ok_or_else(|| escapes(&path, "hard link without a target"))?;
                    hard_link(&mut tree, &link, &target, &path)?;
                    continue;
                }
                _ => {}
            }
            let plain_file = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
                && !has_xattrs(&mut entry);
            if plain_file {
                let (mode, mtime) = (
                    entry.header().mode().map_err(bad)?,
                    entry.header().mtime().unwrap_or(0),
                );
                let meta = FileMeta {
                    mode,
                    uid: uid as u32,
                    gid: gid as u32,
                    mtime: mtime as i64,
                };
                write_file(&mut entry, &target, &meta, &mut writer)
                    .map_err(|e| StoreError::BadLayer(format!("{}: {}", path.display(), chain(&e))))?;
                continue;
            }
            entry
                .unpack(&target)
                .map_err(|e| StoreError::BadLayer(format!("{}: {}", path.display(), chain(&e))))?;
            if kind.is_dir() {
                tree.dirs.insert(rel.clone());
                dirs.push((rel, entry.header().mtime().unwrap_or(0)));
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
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| StoreError::BadLayer(chain(&e)))?;
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

/// An error with its causes, on one line (the tar crate wraps the cause in its own).
fn chain(e: &io::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

/// Where `path` lands inside the layer: its normal components (a leading `/` and `.`
/// dropped); `None` for the root itself. `..` anywhere is refused.
fn relative(path: &Path) -> Result<Option<PathBuf>, StoreError> {
    let mut rel = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => rel.push(c),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(escapes(path, "path escapes the layer (..)")),
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// A hard link at `target` to `link`, an earlier entry of the same layer: the link's
/// path must stay inside (no `..`, no symlinked parent) and name an existing non-directory.
fn hard_link(tree: &mut Tree, link: &Path, target: &Path, entry: &Path) -> Result<(), StoreError> {
    let src_rel = relative(link)
        .map_err(|_| escapes(entry, "hard link to outside the layer"))?
        .ok_or_else(|| escapes(entry, "hard link to the layer's root"))?;
    let parent = src_rel.parent().unwrap_or(Path::new(""));
    let mut dir = PathBuf::new();
    for comp in parent.components() {
        dir.push(comp);
        if !tree.dirs.contains(&dir) {
            match fs::symlink_metadata(tree.root.join(&dir)) {
                Ok(m) if m.is_dir() => {
                    tree.dirs.insert(dir.clone());
                }
                _ => {
                    return Err(escapes(
                        entry,
                        "hard link through a symlink or to a missing file; refused, as it could lead outside the layer",
                    ))
                }
            }
        }
    }
    let src = tree.root.join(&src_rel);
    match fs::symlink_metadata(&src) {
        Ok(m) if !m.is_dir() => {}
        Ok(_) => return Err(escapes(entry, "hard link to a directory")),
        Err(_) => return Err(escapes(entry, "hard link to a file not in the layer")),
    }
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => return Err(escapes(entry, "a directory is in the way of the hard link")),
        Ok(_) => fs::remove_file(target).map_err(|e| StoreError::io("replacing", target, e))?,
        Err(_) => {}
    }
    // linkat without AT_SYMLINK_FOLLOW: a symlink is linked itself, never followed.
    fs::hard_link(&src, target).map_err(|e| StoreError::io("linking", target, e))
}

/// Whether a tar entry carries extended attributes (PAX `SCHILY.xattr.*`).
fn has_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> bool {
    match entry.pax_extensions() {
        Ok(Some(exts)) => exts
            .flatten()
            .any(|e| e.key_bytes().starts_with(b"SCHILY.xattr.")),
        Ok(None) => false,
        // Let the tar crate's unpack report it.
        Err(_) => true,
    }
}

/// What a regular file gets besides its content.
struct FileMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// Writes layers' regular files with the fewest system calls (most of a layer is small
/// files, and ext4's create is the cost): `open` with the mode, then only the `fchown`
/// and `fchmod` that change something, `futimens` on the descriptor, one large buffer.
struct FileWriter {
    buf: Vec<u8>,
    umask: u32,
    euid: u32,
    egid: u32,
}

impl FileWriter {
    fn new() -> FileWriter {
        // umask(2) can only be read by setting it, which would race with other threads:
        // the kernel shows it in /proc (since 4.7); 0o777 (always fchmod) if not.
        let umask = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o777);
        // SAFETY: geteuid/getegid have no preconditions and cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        FileWriter {
            buf: vec![0; 256 << 10],
            umask,
            euid,
            egid,
        }
    }
}

/// Creates `target` (a path whose parents are checked: see [`Tree`]) with `reader`'s
/// content. `O_EXCL|O_NOFOLLOW`: never opens what is there, even a symlink; an earlier
/// entry of the same path (not a directory) is replaced, as `set_overwrite` does.
fn write_file(reader: &mut impl Read, target: &Path, meta: &FileMeta, w: &mut FileWriter) -> io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let perms = meta.mode & 0o7777;
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(perms)
            .custom_flags(libc::O_NOFOLLOW)
            .open(target)
    };
    let mut file = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(target)?;
            open()?
        }
        r => r?,
    };
    loop {
        let n = match reader.read(&mut w.buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&w.buf[..n])?;
    }
    let fd = file.as_raw_fd();
    let chowned = meta.uid != w.euid || meta.gid != w.egid;
    if chowned {
        // SAFETY: fchown on a descriptor we own.
        if unsafe { libc::fchown(fd, meta.uid, meta.gid) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // open() applied the umask (and may drop setgid); chown clears setuid/setgid: set them.
    if perms & w.umask != 0 || perms & 0o7000 != 0 {
        file.set_permissions(fs::Permissions::from_mode(perms))?;
    }
    let times = [
        libc::timespec {
            tv_sec: meta.mtime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: meta.mtime,
            tv_nsec: 0,
        },
    ];
    // SAFETY: a descriptor we own and a two-element timespec array.
    if unsafe { libc::futimens(fd, times.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// OCI whiteouts become what kernel overlayfs understands: a 0/0 character device hides a
/// lower file; the `user.overlay.opaque` xattr (we mount with `userxattr`) hides a lower
/// directory's contents.
fn whiteout(tree: &mut Tree, rel: &Path, name: &str, uid: u32, gid: u32) -> Result<(), StoreError> {
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    tree.ensure_dir(parent_rel, rel)?;
    let parent = tree.root.join(parent_rel);
    if name == OPAQUE_MARKER {
        xattr_set(&parent, "user.overlay.opaque", b"y")
            .map_err(|e| StoreError::io("marking opaque", &parent, e))?;
        return Ok(());
    }
    let hidden = &name[WHITEOUT_PREFIX.len()..];
    if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
        return Err(StoreError::BadLayer(format!(
            "{}: invalid whiteout",
            rel.display()
        )));
    }
    let target = parent.join(hidden);
    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(&target).map_err(|e| StoreError::io("whiting out", &target, e))?;
        tree.dirs.retain(|d| !d.starts_with(parent_rel.join(hidden)));
    } else {
        let _ = fs::remove_file(&target);
    }
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| StoreError::BadLayer(rel.display().to_string()))?;
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

/// A FIFO at `target` (its parent checked), with its owner, mode and mtime.
fn fifo(target: &Path, mode: u32, uid: u32, gid: u32, mtime: i64) -> Result<(), StoreError> {
    if fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
        return Err(StoreError::BadLayer(format!(
            "{}: a directory is in the way of a FIFO",
            target.display()
        )));
    }
    let _ = fs::remove_file(target);
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| StoreError::BadLayer(target.display().to_string()))?;
    // SAFETY: valid path; FIFOs need no privilege.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | 0o600, 0) } < 0 {
        return Err(StoreError::io(
            "creating fifo",
            target,
            io::Error::last_os_error(),
        ));
    }
    std::os::unix::fs::lchown(target, Some(uid), Some(gid))
        .map_err(|e| StoreError::io("chown", target, e))?;
    fs::set_permissions(target, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| StoreError::io("chmod", target, e))?;
    let _ = set_mtime(target, mtime);
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
        use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};
        let tmp = tempfile::tempdir().unwrap();
        let canary = tmp.path().join("canary");
        fs::create_dir(&canary).unwrap();
        fs::write(canary.join("file"), "canary").unwrap();
        let c = canary.to_str().unwrap().to_string();
        let cf = format!("{c}/file");
        type Entries<'a> = Vec<(&'a str, tar::EntryType, &'a [u8], Option<&'a str>)>;
        let cases: Vec<(&str, Entries)> = vec![
            ("dotdot", vec![("../escape", F, b"x", None)]),
            ("inner dotdot", vec![("a/../../escape", F, b"x", None)]),
            (
                "symlink-then-write",
                vec![("link", S, b"", Some(&c)), ("link/escape", F, b"x", None)],
            ),
            (
                "relative symlink-then-write",
                vec![
                    ("link", S, b"", Some("../canary")),
                    ("link/escape", F, b"x", None),
                ],
            ),
            (
                "symlink-then-dir",
                vec![("link", S, b"", Some(&c)), ("link/sub/", D, b"", None)],
            ),
            (
                "symlink-then-same-dir",
                vec![("link", S, b"", Some(&c)), ("link/", D, b"", None)],
            ),
            (
                "hardlink-outside",
                vec![("h", H, b"", Some("../../../etc/passwd"))],
            ),
            ("hardlink-absolute", vec![("h", H, b"", Some(&cf))]),
            (
                "symlink-dir-then-hardlink",
                vec![("link", S, b"", Some(&c)), ("h", H, b"", Some("link/file"))],
            ),
            ("hardlink-to-missing", vec![("h", H, b"", Some("nothing"))]),
            (
                "whiteout-through-symlink",
                vec![("link", S, b"", Some(&c)), ("link/.wh.file", F, b"", None)],
            ),
            ("whiteout-of-dotdot", vec![(".wh..", F, b"", None)]),
            ("whiteout-of-dot", vec![(".wh..", F, b"", None)]),
            ("whiteout-in-dotdot", vec![("../.wh.file", F, b"", None)]),
        ];
        for (name, entries) in cases {
            let layer = tmp.path().join(format!("layer-{}", name.replace(' ', "-")));
            fs::create_dir(&layer).unwrap();
            let result = extract(&tar_with(&entries)[..], &layer, limits());
            let err = result.expect_err(name).to_string();
            assert!(!err.contains('\n'), "{name}: {err}");
            assert!(!tmp.path().join("escape").exists(), "{name} wrote outside");
            let mut left: Vec<_> = fs::read_dir(&canary)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            left.sort();
            assert_eq!(left, ["file"], "{name} wrote into the canary");
            assert_eq!(fs::read(canary.join("file")).unwrap(), b"canary", "{name}");
        }
    }

    #[test]
    fn absolute_paths_land_inside_and_replacing_a_symlink_is_safe() {
        let tmp = tempfile::tempdir().unwrap();
        let canary = tmp.path().join("canary");
        fs::create_dir(&canary).unwrap();
        let layer = tmp.path().join("layer");
        fs::create_dir(&layer).unwrap();
        let c = format!("{}/x", canary.display());
        let data = tar_with(&[
            ("/abs", tar::EntryType::Regular, b"inside", None),
            ("link", tar::EntryType::Symlink, b"", Some(&c)),
            ("link", tar::EntryType::Regular, b"replaced", None),
        ]);
        extract(&data[..], &layer, limits()).unwrap();
        assert_eq!(fs::read(layer.join("abs")).unwrap(), b"inside");
        assert_eq!(fs::read(layer.join("link")).unwrap(), b"replaced");
        assert_eq!(fs::read_dir(&canary).unwrap().count(), 0);
    }

    #[test]
    fn refuses_truncated_and_oversized_streams() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tar_with(&[("f", tar::EntryType::Regular, &[7u8; 3000], None)]);
        fs::create_dir(tmp.path().join("a")).unwrap();
        let err = extract(&data[..1500], &tmp.path().join("a"), limits()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("huge").unwrap();
        h.set_mode(0o644);
        h.set_uid(nix::unistd::getuid().as_raw().into());
        h.set_gid(nix::unistd::getgid().as_raw().into());
        h.set_size(1 << 50);
        h.set_cksum();
        let mut huge = h.as_bytes().to_vec();
        huge.extend_from_slice(&[0u8; 4096]);
        fs::create_dir(tmp.path().join("b")).unwrap();
        let err = extract(&huge[..], &tmp.path().join("b"), limits()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_path("././@LongLink").unwrap();
        h.set_size(1 << 40);
        h.set_cksum();
        fs::create_dir(tmp.path().join("c")).unwrap();
        let err = extract(&h.as_bytes()[..], &tmp.path().join("c"), limits()).unwrap_err();
        assert!(err.to_string().contains("long name"), "{err}");
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
