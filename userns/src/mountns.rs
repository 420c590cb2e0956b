//! A persistent mount namespace for `burrow mount`, kept by a holder process.
//!
//! burrow's calls join the user's user namespace (the pause process's) but stay in the
//! host's mount namespace, where that namespace may not mount anything; and the pause
//! process has no mount namespace of its own. A container root mounted by one call must
//! outlive it, so a tiny holder (`burrow-mounts`, a sibling of the pause process) unshares a
//! mount namespace owned by the user namespace and sleeps; `mount` and `umount` join it with
//! one `setns`. Host mounts still propagate into it (shared mounts become slaves in a
//! namespace of a less privileged user namespace); its mounts never propagate out. They are
//! seen by processes that join it (`burrow unshare`), and from the host under
//! `/proc/HOLDER/root`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{fork, pipe, setsid, ForkResult};

const HOLDER_NAME: &str = "burrow-mounts";

#[derive(Debug, thiserror::Error)]
pub enum MountNsError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the mount namespace holder: {0}")]
    Create(nix::Error),
    #[error("joining the mount namespace of holder process {pid}: {source}")]
    Join { pid: i32, source: nix::Error },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MountNsError + 'a {
    move |source| MountNsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The holder's pid file under the runtime directory.
pub fn pid_file(run_dir: &Path) -> PathBuf {
    run_dir.join("mounts.pid")
}

/// The live holder named in the pid file, if any, and its mount namespace.
pub fn existing(run_dir: &Path) -> Option<(i32, OwnedFd)> {
    let pid: i32 = fs::read_to_string(pid_file(run_dir)).ok()?.trim().parse().ok()?;
    let ns = File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
    // A recycled pid could be anyone's: it must be our holder.
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim_end() == HOLDER_NAME).then(|| (pid, ns.into()))
}

/// Joins the holder's mount namespace, starting the holder first if there is none (with
/// `create`). Returns its pid, or None when there is none and `create` is false. The caller
/// must be single-threaded and inside the user's user namespace.
pub fn join(run_dir: &Path, create: bool) -> Result<Option<i32>, MountNsError> {
    let lock_path = run_dir.join("mounts.lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("opening", &lock_path))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| MountNsError::Io {
        what: "locking",
        path: lock_path.clone(),
        source: e.into(),
    })?;
    let (pid, ns) = match existing(run_dir) {
        Some(found) => found,
        None if create => start(run_dir)?,
        None => return Ok(None),
    };
    setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|source| MountNsError::Join { pid, source })?;
    Ok(Some(pid))
}

fn start(run_dir: &Path) -> Result<(i32, OwnedFd), MountNsError> {
    let (ready_r, ready_w) = pipe().map_err(MountNsError::Create)?;
    // SAFETY: the caller is single-threaded; the child only makes syscalls and never returns.
    match unsafe { fork() }.map_err(MountNsError::Create)? {
        ForkResult::Child => {
            drop(ready_r);
            holder_main(ready_w)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            // The child forks the holder and exits; the holder reports its pid once its
            // namespace exists.
            let mut bytes = [0u8; 4];
            let ok = File::from(ready_r).read_exact(&mut bytes).is_ok();
            let _ = nix::sys::wait::waitpid(child, None);
            if !ok {
                return Err(MountNsError::Create(nix::Error::EPERM));
            }
            let holder = i32::from_ne_bytes(bytes);
            let ns_path = PathBuf::from(format!("/proc/{holder}/ns/mnt"));
            let ns = File::open(&ns_path).map_err(io("opening", &ns_path))?;
            let pid_path = pid_file(run_dir);
            let tmp = pid_path.with_extension("pid.tmp");
            fs::write(&tmp, holder.to_string())
                .and_then(|()| fs::rename(&tmp, &pid_path))
                .map_err(io("writing", &pid_path))?;
            Ok((holder, ns.into()))
        }
    }
}

fn holder_main(ready: OwnedFd) -> ! {
    let _ = setsid();
    let _ = nix::sys::prctl::set_name(c"burrow-mounts");
    // A second fork: the holder is nobody's child but init's (or a subreaper's).
    // SAFETY: single-threaded child.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // SAFETY: leaving the intermediate without running anything of the parent's.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => {}
        Err(_) => {
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
    }
    if unshare(CloneFlags::CLONE_NEWNS).is_err() {
        // SAFETY: as above.
        unsafe { libc::_exit(1) }
    }
    let _ = File::from(ready).write_all(&std::process::id().to_ne_bytes());
    crate::pause::hold_forever()
}

/// Whether `target` is a mount point in the calling process' mount namespace.
pub fn is_mounted(target: &Path) -> bool {
    let wanted = target.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(wanted.as_ref())))
        .unwrap_or(false)
}
