//! The container's filesystem view, set up by its first process inside its new mount
//! namespace: the root, the spec's mounts, devices, pivot_root, masked and read-only paths.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use crate::spec::DEFAULT_DEVICES;
use crate::SetupError;

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RootfsSource {
    /// Kernel overlayfs: image layers (top first) under the container's own upper dir.
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// An exploded root directory used as it is (`--rootfs`).
    Directory(PathBuf),
}

fn err(what: impl std::fmt::Display, e: Errno) -> SetupError {
    SetupError::new(format!("{what}: {}", e.desc()), e as i32)
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Mounts the root filesystem at `target` (a directory that exists).
pub fn mount_rootfs(source: &RootfsSource, target: &Path) -> Result<(), SetupError> {
    match source {
        RootfsSource::Overlay { lower, upper, work } => {
            let lowers: Vec<String> = lower.iter().map(|p| path_str(p)).collect();
            // userxattr: inside a user namespace overlay keeps its metadata in user.* xattrs,
            // since trusted.* needs CAP_SYS_ADMIN in the initial namespace.
            let data = format!(
                "lowerdir={},upperdir={},workdir={},userxattr",
                lowers.join(":"),
                path_str(upper),
                path_str(work)
            );
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .map_err(|e| {
                err(
                    format_args!("mounting the overlay root at {}", target.display()),
                    e,
                )
            })
        }
        RootfsSource::Directory(dir) => mount(
            Some(dir.as_path()),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| err(format_args!("bind-mounting the root {}", dir.display()), e)),
    }
}

/// A mount of burrow's own, detached when dropped.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = umount2(&self.target, MntFlags::MNT_DETACH);
    }
}

/// Moves the calling process into a private mount namespace of its own (once) and mounts
/// the root filesystem at `target` there, out of sight of every other process.
pub fn mount_rootfs_private(source: &RootfsSource, target: &Path) -> Result<MountGuard, SetupError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| err("creating a mount namespace", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("making the mount namespace private", e))?;
    mount_rootfs(source, target)?;
    Ok(MountGuard {
        target: target.to_path_buf(),
    })
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// Opens `path` inside the tree of `root` as if `root` were `/`: symlinks in an image
/// (absolute or `..`) cannot lead outside it (CVE-class: mount destination symlink escapes,
/// e.g. runc CVE-2021-30465).
pub fn open_in_root(root: RawFd, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid pointers for the duration of the call; the kernel checks the size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens (creating it and its parents when missing) the mount destination `dest` inside
/// `root`, as a directory or as an empty file. A dangling symlink on the way is created at
/// its target, resolved inside the root too.
pub fn prepare_destination(root: RawFd, dest: &Path, directory: bool) -> Result<OwnedFd, SetupError> {
    prepare_destination_depth(root, dest, directory, 0)
}

fn prepare_destination_depth(
    root: RawFd,
    dest: &Path,
    directory: bool,
    depth: u32,
) -> Result<OwnedFd, SetupError> {
    let flags = libc::O_PATH | if directory { libc::O_DIRECTORY } else { 0 };
    let open_err = |e| err(format_args!("opening mount destination {}", dest.display()), e);
    match open_in_root(root, dest, flags) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(open_err(e)),
    }
    if depth > 40 {
        return Err(open_err(Errno::ELOOP));
    }
    let components: Vec<Component> = dest
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let mut so_far = PathBuf::from("/");
    for (i, comp) in components.iter().enumerate() {
        let parent = open_in_root(root, &so_far, libc::O_PATH | libc::O_DIRECTORY).map_err(open_err)?;
        let name = CString::new(comp.as_os_str().as_bytes()).map_err(|_| open_err(Errno::EINVAL))?;
        let last = i + 1 == components.len();
        let (want_dir, want_flags) = if last {
            (directory, flags)
        } else {
            (true, libc::O_PATH | libc::O_DIRECTORY)
        };
        so_far.push(comp);
        if open_in_root(root, &so_far, want_flags).is_ok() {
            continue;
        }
        // SAFETY: parent is a directory fd; name is a valid C string.
        let r = unsafe {
            if want_dir {
                libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755)
            } else {
                let fd = libc::openat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd
            }
        };
        if r < 0 && Errno::last() != Errno::EEXIST {
            return Err(err(
                format_args!("creating mount destination {}", dest.display()),
                Errno::last(),
            ));
        }
        if r < 0 {
            // It exists yet does not open: a dangling symlink. Make its target, inside the root.
            let link = nix::fcntl::readlinkat(&parent, name.as_c_str()).map_err(open_err)?;
            let link = PathBuf::from(link);
            let target = if link.is_absolute() {
                link
            } else {
                so_far.parent().unwrap_or(Path::new("/")).join(link)
            };
            prepare_destination_depth(root, &target, want_dir, depth + 1)?;
        }
    }
    open_in_root(root, dest, flags).map_err(open_err)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Splits fstab-style options into mount flags, propagation flags and filesystem data.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        match opt.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags -= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags -= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags -= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags -= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "async" => flags -= MsFlags::MS_SYNCHRONOUS,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" => propagation |= MsFlags::MS_PRIVATE,
            "rprivate" => propagation |= MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "slave" => propagation |= MsFlags::MS_SLAVE,
            "rslave" => propagation |= MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "shared" => propagation |= MsFlags::MS_SHARED,
            "rshared" => propagation |= MsFlags::MS_SHARED | MsFlags::MS_REC,
            "unbindable" => propagation |= MsFlags::MS_UNBINDABLE,
            "runbindable" => propagation |= MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            // Accepted for compatibility; SELinux relabelling does not apply here.
            "z" | "Z" => {}
            other => data.push(other),
        }
    }
    (flags, propagation, data.join(","))
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Makes the mount at `path` (and every mount below it) read-only. mount_setattr(2) leaves
/// the other flags alone, so the nosuid/nodev/noexec flags a user namespace may not clear
/// are kept (a plain MS_REMOUNT would have to repeat them).
pub fn make_readonly(path: &Path) -> Result<(), Errno> {
    set_mount_attrs(path, MsFlags::MS_RDONLY, true)
}

/// Sets the read-only, nosuid, nodev and noexec flags among `flags` on the mount at `path`
/// (and the mounts below it with `recursive`), leaving its other flags alone.
fn set_mount_attrs(path: &Path, flags: MsFlags, recursive: bool) -> Result<(), Errno> {
    let mut attr_set = 0;
    for (flag, attr) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(flag) {
            attr_set |= attr;
        }
    }
    if attr_set == 0 {
        return Ok(());
    }
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let at_flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: valid pointers for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            at_flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

fn do_mount(root: RawFd, m: &Mount, bind_source: Option<&OwnedFd>) -> Result<(), SetupError> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("bind");
    let options = m.options().clone().unwrap_or_default();
    let (flags, propagation, data) = parse_options(&options);
    let named_source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let context = || format!("mounting {} on {}", named_source.display(), dest.display());
    let (source, directory) = match bind_source {
        Some(fd) => {
            let path = fd_path(fd);
            let is_dir = std::fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
            (path, is_dir)
        }
        None => (named_source.clone(), true),
    };
    let target_fd = prepare_destination(root, dest, directory)?;
    let target = fd_path(&target_fd);
    let data = (!data.is_empty()).then_some(data.as_str());
    if bind_source.is_some() {
        let bind_flags = MsFlags::MS_BIND | (flags & MsFlags::MS_REC);
        mount(
            Some(source.as_path()),
            &target,
            None::<&str>,
            bind_flags,
            None::<&str>,
        )
        .map_err(|e| err(context(), e))?;
        let attrs = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if flags.intersects(attrs) {
            // Reopen: the fd still names the directory under the new mount, not the mount.
            let mounted = prepare_destination(root, dest, directory)?;
            set_mount_attrs(&fd_path(&mounted), flags & attrs, true).map_err(|e| err(context(), e))?;
        }
    } else {
        let fs_flags = flags - MsFlags::MS_BIND - MsFlags::MS_REC;
        mount(Some(source.as_path()), &target, Some(typ), fs_flags, data).map_err(|e| err(context(), e))?;
    }
    if !propagation.is_empty() {
        let mounted = prepare_destination(root, dest, directory)?;
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(|e| err(context(), e))?;
    }
    Ok(())
}

/// Bind-mounts the host's basic devices into the container's /dev (a tmpfs) and adds the
/// usual symlinks; rootless cannot mknod.
fn setup_dev(root: RawFd) -> Result<(), SetupError> {
    for dev in DEFAULT_DEVICES {
        let host = PathBuf::from(format!("/dev/{dev}"));
        if !host.exists() {
            continue;
        }
        let target = prepare_destination(root, &Path::new("/dev").join(dev), false)?;
        mount(
            Some(host.as_path()),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err(format_args!("bind-mounting {}", host.display()), e))?;
    }
    let dev = open_in_root(root, Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| err("opening /dev", e))?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let (l, t) = (
            CString::new(link).unwrap_or_default(),
            CString::new(target).unwrap_or_default(),
        );
        // SAFETY: valid C strings and a directory fd.
        let r = unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), l.as_ptr()) };
        if r < 0 && Errno::last() != Errno::EEXIST {
            return Err(err(format_args!("creating /dev/{link}"), Errno::last()));
        }
    }
    Ok(())
}

/// What the container's first process opens before it takes the container's ids: after
/// that, a nested user namespace's root may not reach the user's private directories.
pub struct Prepared {
    /// The root filesystem (our own bind mount of it).
    pub root: OwnedFd,
    /// For each spec mount, its bind source, opened.
    bind_sources: Vec<Option<OwnedFd>>,
}

fn open_path(path: &Path, what: &str) -> Result<OwnedFd, SetupError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| err(path.display(), Errno::EINVAL))?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err(
            format_args!("opening {what} {}", path.display()),
            Errno::last(),
        ));
    }
    // SAFETY: new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind") || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
}

/// Binds the root (mounted by burrow at `rootfs`) onto itself, so that it is a mount of
/// this namespace's own that pivot_root accepts (an inherited copy is locked), and opens it
/// and every bind source.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<Prepared, SetupError> {
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err(format_args!("binding the root {}", rootfs.display()), e))?;
    let root = File::open(rootfs)
        .map_err(|e| {
            SetupError::new(
                format!("opening {}: {e}", rootfs.display()),
                e.raw_os_error().unwrap_or(0),
            )
        })?
        .into();
    let mut bind_sources = Vec::new();
    for m in spec.mounts().iter().flatten() {
        bind_sources.push(match (is_bind(m), m.source()) {
            (true, Some(source)) => Some(open_path(source, "bind source")?),
            _ => None,
        });
    }
    Ok(Prepared { root, bind_sources })
}

/// Sets up everything below the root.
pub fn setup_mounts(spec: &Spec, prepared: &Prepared) -> Result<(), SetupError> {
    let root_fd = prepared.root.as_raw_fd();
    let mut dev_done = false;
    for (m, source) in spec.mounts().iter().flatten().zip(&prepared.bind_sources) {
        do_mount(root_fd, m, source.as_ref())?;
        // Only on burrow's own /dev tmpfs: a user's bind of a host dir there must not get
        // device nodes and links made in it.
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") && !dev_done {
            setup_dev(root_fd)?;
            dev_done = true;
        }
    }
    Ok(())
}

/// Opens a new pseudo-terminal in the container's own devpts (mounted at rootfs/dev/pts),
/// so that the terminal is a device of the container's, as runc's console socket does.
pub fn open_pty_master(root: &OwnedFd) -> Result<OwnedFd, SetupError> {
    let master = open_in_root(
        root.as_raw_fd(),
        Path::new("/dev/pts/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY,
    )
    .map_err(|e| err("opening the container's /dev/pts/ptmx", e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(err("unlocking the pseudo-terminal", Errno::last()));
    }
    Ok(master)
}

/// Opens the terminal end that belongs to `master` (TIOCGPTPEER: no path lookup, so it
/// cannot be swapped for another file).
pub fn open_pty_peer(master: RawFd) -> Result<OwnedFd, SetupError> {
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let fd = unsafe { libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(err("opening the terminal", Errno::last()));
    }
    // SAFETY: new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Makes `rootfs` the root and detaches the old one (youki/runc's sequence: no directory
/// for the old root is needed, so the image cannot interfere with it).
pub fn pivot_to(root: &OwnedFd) -> Result<(), SetupError> {
    nix::unistd::fchdir(root).map_err(|e| err("entering the root", e))?;
    pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    // The old root is stacked under the new one: keep unmount events from propagating.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err("making the old root a slave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detaching the old root", e))?;
    chdir("/").map_err(|e| err("entering /", e))?;
    Ok(())
}

/// Masks and read-only-binds the spec's paths, then makes the root read-only if asked.
/// Runs after pivot_root, on the container's own /proc and /sys.
pub fn finish_rootfs(spec: &Spec) -> Result<(), SetupError> {
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(Path::new(path))?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(Path::new(path))?;
    }
    reapply_propagation(spec)?;
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        // Only the root itself: /dev, /proc, /dev/shm and the like stay writable, as Podman.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| err("making the root read-only", e))?;
    }
    Ok(())
}

/// pivot_to makes every mount of the new root a slave (the "." it changes is the new root's
/// top, not the old root stacked on it), which leaves a shared mount private: set `shared`
/// and `unbindable` again. A slave stays without a master either way: the namespace's mounts
/// were made private before any of them, so nothing outside propagates into it.
fn reapply_propagation(spec: &Spec) -> Result<(), SetupError> {
    let wanted: Vec<_> = spec
        .mounts()
        .iter()
        .flatten()
        .filter_map(|m| {
            let (_, propagation, _) = parse_options(&m.options().clone().unwrap_or_default());
            propagation
                .intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE)
                .then(|| (m.destination().clone(), propagation))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let root = File::open("/")
        .map_err(|e| SetupError::new(format!("opening /: {e}"), e.raw_os_error().unwrap_or(0)))?;
    for (dest, propagation) in wanted {
        let target = open_in_root(root.as_raw_fd(), &dest, libc::O_PATH)
            .map_err(|e| err(format_args!("opening {}", dest.display()), e))?;
        mount(
            None::<&str>,
            &fd_path(&target),
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(|e| err(format_args!("setting the propagation of {}", dest.display()), e))?;
    }
    Ok(())
}

fn open_nofollow(path: &Path) -> Result<Option<OwnedFd>, SetupError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| err(path.display(), Errno::EINVAL))?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return match Errno::last() {
            Errno::ENOENT => Ok(None),
            e => Err(err(format_args!("opening {}", path.display()), e)),
        };
    }
    // SAFETY: new descriptor we own.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn mask_path(path: &Path) -> Result<(), SetupError> {
    let Some(fd) = open_nofollow(path)? else {
        return Ok(());
    };
    let target = fd_path(&fd);
    let is_dir = std::fs::metadata(&target).map(|m| m.is_dir()).unwrap_or(false);
    let result = if is_dir {
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0"),
        )
    } else {
        mount(
            Some("/dev/null"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| err(format_args!("masking {}", path.display()), e))
}

fn readonly_path(path: &Path) -> Result<(), SetupError> {
    let Some(fd) = open_nofollow(path)? else {
        return Ok(());
    };
    let target = fd_path(&fd);
    mount(
        Some(&target),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err(format_args!("binding {} read-only", path.display()), e))?;
    make_readonly(path).map_err(|e| err(format_args!("making {} read-only", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_flags_propagation_and_data() {
        let (flags, prop, data) = parse_options(&opts(&[
            "nosuid", "ro", "rbind", "rprivate", "mode=755", "size=1k",
        ]));
        assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC));
        assert_eq!(prop, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(data, "mode=755,size=1k");
        let (flags, _, _) = parse_options(&opts(&["ro", "rw"]));
        assert!(!flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn open_in_root_keeps_symlinks_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside").unwrap();
        // An absolute symlink to the host's /etc resolves to the root's own /etc.
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc", root.join("dotdot")).unwrap();
        let root_fd = File::open(&root).unwrap();
        for link in ["evil/passwd", "dotdot/passwd"] {
            let fd = open_in_root(root_fd.as_raw_fd(), Path::new(link), libc::O_RDONLY).unwrap();
            let content = std::io::read_to_string(File::from(fd)).unwrap();
            assert_eq!(content, "inside", "{link} escaped the root");
        }
    }

    #[test]
    fn prepare_destination_creates_inside_root_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("data")).unwrap();
        let root_fd = File::open(&root).unwrap();
        prepare_destination(root_fd.as_raw_fd(), Path::new("/data/sub/file"), false).unwrap();
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "created outside the root"
        );
        // The absolute link target was followed inside the root instead.
        let inside = root.join(outside.strip_prefix("/").unwrap()).join("sub/file");
        assert!(inside.is_file());
    }
}
