//! The user's rootless user namespace, kept alive by a pause process between calls.
//!
//! Creating a namespace costs two setuid helper runs (`newuidmap`, `newgidmap`: milliseconds);
//! joining one is a single `setns`. As Podman does, the first call creates the namespace
//! with a tiny process that only sleeps in it, and every later call joins that process'
//! namespace, so storage (files owned by subordinate ids) and containers all live in it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, getuid, pipe, setsid, ForkResult, Pid};

use crate::idmap::{self, IdMapError, IdMapping, UserMappings};

const PAUSE_NAME: &str = "burrow-pause";

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("creating the user namespace: {0}")]
    Create(#[source] nix::Error),
    #[error("joining the user namespace of pause process {pid}: {source}")]
    Join { pid: i32, source: nix::Error },
    #[error(transparent)]
    IdMap(#[from] IdMapError),
}

/// What the caller learns about the namespace it is now in.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The namespace's uid map as seen from inside it (inside 0 = the user).
    pub uid_map: Vec<IdMapping>,
    pub gid_map: Vec<IdMapping>,
    /// True when this call created the namespace (and the pause process).
    pub created: bool,
}

impl Joined {
    pub fn is_single_id(&self) -> bool {
        idmap::id_count(&self.uid_map) <= 1 || idmap::id_count(&self.gid_map) <= 1
    }
}

/// True when this process runs in the initial user namespace.
pub fn in_initial_namespace() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

/// The pid file of the pause process under the runtime directory.
pub fn pid_file(run_dir: &Path) -> PathBuf {
    run_dir.join("pause.pid")
}

/// Joins the user's namespace, creating it and its pause process first if needed; the id
/// mappings are looked up only then (they cost a passwd lookup).
/// Must be called while the process is single-threaded (setns(2) into a user namespace
/// refuses multithreaded callers).
pub fn join_or_create(
    run_dir: &Path,
    mappings: impl FnOnce() -> Result<UserMappings, IdMapError>,
) -> Result<Joined, PauseError> {
    if !in_initial_namespace() {
        // Already inside (for example under `burrow unshare`): nothing to join.
        return Ok(Joined {
            uid_map: idmap::current_map("uid_map")?,
            gid_map: idmap::current_map("gid_map")?,
            created: false,
        });
    }
    let lock_path = run_dir.join("pause.lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| PauseError::Io {
            what: "opening",
            path: lock_path.clone(),
            source,
        })?;
    // Two calls racing to create the namespace would make two of them.
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| PauseError::Io {
        what: "locking",
        path: lock_path.clone(),
        source: e.into(),
    })?;

    let pid_path = pid_file(run_dir);
    let (ns, created) = match existing_pause(&pid_path) {
        Some(ns) => (ns, false),
        None => (create_pause(&pid_path, &mappings()?)?, true),
    };
    setns(&ns.fd, CloneFlags::CLONE_NEWUSER).map_err(|source| PauseError::Join { pid: ns.pid, source })?;
    Ok(Joined {
        uid_map: idmap::current_map("uid_map")?,
        gid_map: idmap::current_map("gid_map")?,
        created,
    })
}

struct PauseNs {
    pid: i32,
    fd: OwnedFd,
}

/// The namespace of a live pause process of ours named in the pid file, if there is one.
fn existing_pause(pid_path: &Path) -> Option<PauseNs> {
    let pid: i32 = fs::read_to_string(pid_path).ok()?.trim().parse().ok()?;
    let ns = File::open(format!("/proc/{pid}/ns/user")).ok()?;
    // A recycled pid could belong to another process: check it is our pause process.
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim_end() != PAUSE_NAME || !owned_by_us(pid) {
        return None;
    }
    Some(PauseNs { pid, fd: ns.into() })
}

fn owned_by_us(pid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let uid = getuid().as_raw().to_string();
    status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(uid.as_str()))
}

fn create_pause(pid_path: &Path, mappings: &UserMappings) -> Result<PauseNs, PauseError> {
    let (ready_r, ready_w) = pipe().map_err(PauseError::Create)?;
    // SAFETY: the caller is single-threaded (documented on join_or_create); the child only
    // makes syscalls and never returns.
    match unsafe { fork() }.map_err(PauseError::Create)? {
        ForkResult::Child => {
            drop(ready_r);
            pause_main(ready_w)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            let mut byte = [0u8; 1];
            let unshared = File::from(ready_r)
                .read(&mut byte)
                .map(|n| n == 1)
                .unwrap_or(false);
            let result = if unshared {
                mappings.write(child).map_err(PauseError::from).and_then(|()| {
                    let ns =
                        File::open(format!("/proc/{child}/ns/user")).map_err(|source| PauseError::Io {
                            what: "opening the namespace of",
                            path: format!("/proc/{child}").into(),
                            source,
                        })?;
                    write_pid_file(pid_path, child)?;
                    Ok(PauseNs {
                        pid: child.as_raw(),
                        fd: ns.into(),
                    })
                })
            } else {
                Err(PauseError::Create(nix::Error::EPERM))
            };
            if result.is_err() {
                let _ = kill(child, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
            }
            result
        }
    }
}

fn write_pid_file(pid_path: &Path, pid: Pid) -> Result<(), PauseError> {
    let tmp = pid_path.with_extension("pid.tmp");
    fs::write(&tmp, pid.to_string())
        .and_then(|()| fs::rename(&tmp, pid_path))
        .map_err(|source| PauseError::Io {
            what: "writing",
            path: pid_path.to_path_buf(),
            source,
        })
}

/// The pause process: unshares the user namespace, reports, then sleeps forever.
fn pause_main(ready: OwnedFd) -> ! {
    let _ = setsid();
    let _ = nix::sys::prctl::set_name(c"burrow-pause");
    let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
    if ok {
        let _ = File::from(ready).write_all(b"1");
    }
    if !ok {
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(1) };
    }
    hold_forever()
}

/// The rest of a holder process' life (the pause process, the mount namespace holder): it holds
/// no file of its starter's open (a test harness reading the starter's stdout would otherwise
/// wait for it forever), no directory busy, and sleeps until killed.
pub(crate) fn hold_forever() -> ! {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // SAFETY: close_range on everything above stderr; nothing else uses them in this process.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let _ = nix::unistd::chdir("/");
    loop {
        nix::unistd::pause();
    }
}

/// Stops the pause process (as `podman system migrate` does), so that the next call makes a
/// new namespace, for example after /etc/subuid changed. Returns whether one was running.
pub fn stop(run_dir: &Path) -> bool {
    let pid_path = pid_file(run_dir);
    let Some(ns) = existing_pause(&pid_path) else {
        return false;
    };
    let _ = fs::remove_file(&pid_path);
    kill(Pid::from_raw(ns.pid), Signal::SIGKILL).is_ok()
}
