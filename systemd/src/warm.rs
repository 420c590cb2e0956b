//! Getting the kernel ready for a unit's start before the manager asks it.
//!
//! The manager forks a service's process and the child moves itself into the unit's cgroup.
//! Every cgroup migration takes the kernel's global `cgroup_threadgroup_rwsem` for writing,
//! and the first one after a quiet spell waits a whole RCU grace period for it (the
//! semaphore's rcu_sync turning readers onto the slow path): 8-20 ms on a 2-core VM, more
//! than everything else of `run -d`. Migrations a grace period apart or closer share that
//! state and are quick. So a migration asked for as soon as burrow knows it will start a
//! unit, in a child of its own, runs that wait beside burrow's own work, and the manager's
//! child finds the semaphore ready.
//!
//! The migration asked for changes nothing: the manager's own process into the cgroup it is
//! already in (the kernel takes the semaphore before it looks at permissions or places, and
//! moving a process where it is moves nothing). Its pid comes from the manager's socket (or
//! the user bus's), as the peer's credentials; its cgroup from /proc. Whatever fails,
//! nothing happens but the start being as slow as without.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

/// The child [`warm_cgroup_migration`] started, until [`reap`] waits for it.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Starts the wait in a child process and returns at once. Call it while single-threaded
/// (it forks), and [`reap`] before exiting (the child is done by the time the manager has
/// started the unit: it waits for the same grace period).
pub fn warm_cgroup_migration() {
    let Some((socket, _)) = crate::bus::user_bus_path() else {
        return;
    };
    // SAFETY: single-threaded (the caller's promise); the child only makes system calls
    // and leaves with _exit, running no destructor or atexit handler of the parent's.
    match unsafe { libc::fork() } {
        0 => {
            no_op_migration(&socket);
            // SAFETY: ends the child without unwinding into the parent's code.
            unsafe { libc::_exit(0) }
        }
        pid if pid > 0 => CHILD.store(pid, Ordering::Relaxed),
        _ => {}
    }
}

/// Waits for the child of [`warm_cgroup_migration`], if any: not left a zombie (under an init
/// that does not reap, for good).
pub fn reap() {
    let pid = CHILD.swap(0, Ordering::Relaxed);
    if pid > 0 {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
}

/// Asks the kernel to move the process at the other end of `socket` (the manager, or the
/// user's bus daemon: both live in the user's manager's cgroups) into its own cgroup.
fn no_op_migration(socket: &std::path::Path) {
    let Ok(stream) = UnixStream::connect(socket) else {
        return;
    };
    let Ok(cred) = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) else {
        return;
    };
    drop(stream);
    let pid = cred.pid();
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return;
    };
    for procs in procs_files(&cgroups, |p| p.exists()) {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&procs) {
            let _ = f.write_all(pid.to_string().as_bytes());
            return;
        }
    }
}

/// The `cgroup.procs` files (those that `exists`) of the cgroups a `/proc/PID/cgroup` text
/// names: the unified hierarchy's (mounted alone or beside v1), and v1's name=systemd.
fn procs_files(cgroups: &str, exists: impl Fn(&std::path::Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            continue;
        }
        let mounts: &[&str] = match controllers {
            "" => &["/sys/fs/cgroup/unified", "/sys/fs/cgroup"],
            "name=systemd" => &["/sys/fs/cgroup/systemd"],
            _ => &[],
        };
        for mount in mounts {
            let procs = PathBuf::from(mount).join(path).join("cgroup.procs");
            if exists(&procs) {
                out.push(procs);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_procs_files_of_a_cgroup_file() {
        let hybrid = "9:name=systemd:/user.slice/user-1001.slice/user@1001.service/init.scope\n\
                      8:pids:/\n0::/user.slice/user-1001.slice/user@1001.service/init.scope\n";
        let on_hybrid = |p: &std::path::Path| !p.starts_with("/sys/fs/cgroup/user.slice");
        assert_eq!(
            procs_files(hybrid, on_hybrid),
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd/user.slice/user-1001.slice/user@1001.service/init.scope/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/unified/user.slice/user-1001.slice/user@1001.service/init.scope/cgroup.procs"),
            ]
        );
        let unified = "0::/user.slice/user-1000.slice/user@1000.service/init.scope\n";
        let on_unified = |p: &std::path::Path| !p.starts_with("/sys/fs/cgroup/unified");
        assert_eq!(
            procs_files(unified, on_unified),
            vec![PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/init.scope/cgroup.procs"
            )]
        );
        // The root cgroup is never named (and nobody may write there).
        assert!(procs_files("0::/\n1:name=systemd:/\n", |_| true).is_empty());
    }
}
