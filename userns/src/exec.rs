//! Entering a container that exists already: `exec` (a new process in a running container)
//! and helpers that work on a container's files from inside its view (`cp`, `mount`).
//!
//! Process model of `exec` (as runc's nsexec): the burrow process stays where it is and forks
//! an intermediate, which joins the container's namespaces through `/proc/PID/ns/*` (its user
//! namespace first when the container has a nested one, then mnt, pid, uts, ipc, net, cgroup).
//! Joining a pid namespace only moves the *children* of the caller, so the intermediate clones
//! once more with `CLONE_PARENT`: the final process is in every namespace of the container and
//! is burrow's own child (burrow waits for it and carries its terminal), while the intermediate
//! exits at once. Channels, made before the fork:
//! - `pid` (intermediate → burrow): the final process' pid, as burrow sees it.
//! - `pty` (final → burrow): the terminal's master end, over SCM_RIGHTS; only with `-t`.
//! - `report` (both → burrow, close-on-exec): a failure as JSON; EOF means exec worked.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::Process;

use crate::mount::{self, RootfsSource};
use crate::process::{find_executable, set_user};
use crate::process::{ChildFailure, Launched, Never, DEFAULT_PATH, EXIT_NOT_FOUND};
use crate::seccomp::Program;
use crate::{capabilities, RuntimeError};

/// The namespaces an exec joins, in the order it joins them (see the module comment).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// What to run in a running container.
pub struct ExecOptions<'a> {
    /// The container's first process, as burrow sees it.
    pub pid: i32,
    /// The process: args, env, cwd, user, capabilities, terminal, no_new_privileges.
    pub process: &'a Process,
    /// The container's compiled seccomp filter, if it has one.
    pub seccomp: Option<&'a Program>,
    /// Give the process our stdin (`-i`); otherwise /dev/null.
    pub keep_stdin: bool,
    /// Pass our descriptors 3 .. 3+N on, as they are (`--preserve-fds N`).
    pub preserve_fds: u32,
    /// `-d`: no standard streams of ours, and the process outlives burrow.
    pub detach: bool,
}

/// A container's namespaces, opened (from `/proc/PID/ns/*`) while its pid still means it.
pub struct Namespaces {
    /// Each namespace that differs from ours, in joining order.
    fds: Vec<(CloneFlags, OwnedFd)>,
}

fn ns_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Namespaces {
    /// Opens the namespaces of process `pid` that are not ours already (joining one's own user
    /// namespace fails with EINVAL; the others would be no-ops).
    pub fn open(pid: i32) -> Result<Namespaces, RuntimeError> {
        let mut fds = Vec::new();
        for (name, flag) in NAMESPACES {
            let theirs = format!("/proc/{pid}/ns/{name}");
            let file = File::open(&theirs).map_err(|e| {
                RuntimeError::Child(failure(
                    format!("opening the container's namespace {theirs}: {e}"),
                    125,
                ))
            })?;
            let id = file.metadata().ok().map(|m| (m.dev(), m.ino()));
            if id.is_none() || id == ns_id(&format!("/proc/self/ns/{name}")) {
                continue;
            }
            fds.push((*flag, OwnedFd::from(file)));
        }
        Ok(Namespaces { fds })
    }

    /// Joins them all (the caller must be single-threaded). Only children go into a pid
    /// namespace: fork after this.
    pub fn join(&self) -> Result<(), SetupFailure> {
        for (flag, fd) in &self.fds {
            nix::sched::setns(fd, *flag)
                .map_err(|e| SetupFailure(format!("joining the container's {flag:?}: {}", e.desc())))?;
        }
        Ok(())
    }
}

/// A failure inside a helper process, as text for the user.
#[derive(Debug)]
pub struct SetupFailure(pub String);

fn failure(message: impl Into<String>, exit_code: i32) -> ChildFailure {
    ChildFailure {
        message: message.into(),
        exit_code,
    }
}

fn fail(what: &str, e: Errno) -> ChildFailure {
    failure(format!("{what}: {}", e.desc()), 125)
}

/// Starts a process in the running container whose first process is `opts.pid`. The caller
/// must be single-threaded and have blocked `process::forwarded_signals()`; it then waits
/// for the process with [`crate::foreground::wait`] (or not, with `detach`).
pub fn exec(opts: &ExecOptions) -> Result<Launched, RuntimeError> {
    let namespaces = Namespaces::open(opts.pid)?;
    let terminal = opts.process.terminal().unwrap_or(false) && !opts.detach;
    let (report_r, report_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::Channel)?;
    let (pid_r, pid_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::Channel)?;
    let pty_channel = if terminal {
        Some(
            socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(RuntimeError::Channel)?,
        )
    } else {
        None
    };
    // Output written before the fork would otherwise be flushed twice.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();

    // SAFETY: the caller is single-threaded; the child never returns from intermediate().
    match unsafe { nix::unistd::fork() }.map_err(RuntimeError::Clone)? {
        nix::unistd::ForkResult::Child => {
            drop(report_r);
            drop(pid_r);
            let pty_w = pty_channel.map(|(r, w)| {
                drop(r);
                w
            });
            intermediate(opts, &namespaces, report_w, pid_w, pty_w)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(report_w);
            drop(pid_w);
            drop(namespaces);
            let pty_r = pty_channel.map(|(r, w)| {
                drop(w);
                r
            });
            let mut bytes = [0u8; 4];
            let got_pid = File::from(pid_r).read_exact(&mut bytes).is_ok();
            let _ = nix::sys::wait::waitpid(child, None);
            let pid = Pid::from_raw(i32::from_ne_bytes(bytes));
            let kill_child = |e: RuntimeError| {
                if got_pid {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(pid, None);
                }
                e
            };
            let pty_master = match (pty_r, got_pid) {
                (Some(sock), true) => {
                    let master = crate::process::receive_fd(&sock);
                    if let Some(master) = &master {
                        crate::foreground::copy_window_size(master.as_raw_fd());
                        let _ = nix::unistd::write(&sock, b"1");
                    }
                    master
                }
                _ => None,
            };
            let report = crate::process::read_report(report_r, "exec");
            if report.is_some() || !got_pid {
                if got_pid {
                    let _ = nix::sys::wait::waitpid(pid, None);
                }
                return Err(RuntimeError::Child(report.unwrap_or(ChildFailure {
                    message: "exec setup failed before the process started".into(),
                    exit_code: 125,
                })));
            }
            if terminal && pty_master.is_none() {
                return Err(kill_child(RuntimeError::Terminal(
                    "the process did not send its terminal".into(),
                )));
            }
            Ok(Launched {
                pid,
                pty_master,
                rootfs_mount: None,
            })
        }
    }
}

/// Writes `failure` to the report pipe and exits with its code.
fn report_and_exit(report: &OwnedFd, failure: &ChildFailure) -> ! {
    let json = serde_json::to_string(failure).unwrap_or_default();
    if let Ok(dup) = report.try_clone() {
        let _ = File::from(dup).write_all(json.as_bytes());
    }
    // SAFETY: _exit skips the parent's atexit handlers and buffers, which are not ours.
    unsafe { libc::_exit(failure.exit_code) }
}

/// The intermediate process: joins the namespaces, clones the final process as burrow's
/// child, tells burrow its pid, and exits.
fn intermediate(
    opts: &ExecOptions,
    namespaces: &Namespaces,
    report: OwnedFd,
    pid_w: OwnedFd,
    pty: Option<OwnedFd>,
) -> ! {
    if let Err(SetupFailure(message)) = namespaces.join() {
        report_and_exit(&report, &failure(message, 125));
    }
    // SAFETY: single-threaded; a fork-like clone (no new stack). CLONE_PARENT makes the new
    // process burrow's child; it lands in the pid namespace joined above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        report_and_exit(&report, &fail("clone", Errno::last()));
    }
    if ret == 0 {
        drop(pid_w);
        let failure = match final_setup(opts, &report, pty) {
            Ok(never) => match never {},
            Err(f) => f,
        };
        report_and_exit(&report, &failure);
    }
    let _ = File::from(pid_w).write_all(&(ret as i32).to_ne_bytes());
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

fn final_setup(opts: &ExecOptions, report: &OwnedFd, pty: Option<OwnedFd>) -> Result<Never, ChildFailure> {
    let process = opts.process;
    if !opts.detach {
        // A foreground exec ends with burrow, as `run` does.
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| fail("prctl", e))?;
    }
    // Standard streams: the terminal (from the container's own devpts), ours, or nothing.
    if let Some(pty) = pty {
        let root = File::open("/").map_err(|e| failure(format!("opening the container's root: {e}"), 125))?;
        let master = mount::open_pty_master(&OwnedFd::from(root)).map_err(|e| failure(e.message, 125))?;
        crate::process::take_terminal(master, pty)?;
    } else if opts.detach || !opts.keep_stdin {
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| failure(format!("opening /dev/null: {e}"), 125))?;
        let targets: &[RawFd] = if opts.detach { &[0, 1, 2] } else { &[0] };
        for &fd in targets {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
        if opts.detach {
            // Not in burrow's session: the user's terminal closing must not end it.
            let _ = nix::unistd::setsid();
        }
    }

    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(failure("no command specified", 125));
    };
    let path_env = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let executable = find_executable(arg0, path_env)?;

    let user = process.user();
    crate::rlimits::apply(process.rlimits().as_deref().unwrap_or(&[])).map_err(|(what, e)| fail(&what, e))?;
    let caps = process.capabilities().clone().unwrap_or_default();
    capabilities::apply_bounding(&caps).map_err(|e| failure(e.to_string(), 125))?;
    if process.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().map_err(|e| fail("setting no_new_privs", e))?;
    }
    // Seccomp while we still have CAP_SYS_ADMIN (see seccomp::install).
    if let Some(program) = opts.seccomp {
        crate::seccomp::install(program).map_err(|e| failure(e.to_string(), 125))?;
    }
    set_user(
        user.uid(),
        user.gid(),
        user.additional_gids().as_deref().unwrap_or(&[]),
    )?;
    capabilities::apply(&caps).map_err(|e| failure(e.to_string(), 125))?;
    let cwd = process.cwd();
    // As the process' user, so its permissions apply; runc exits 127 here too (Podman's
    // "chdir to cwd ... set in config.json failed").
    nix::unistd::chdir(cwd).map_err(|e| {
        failure(
            format!(
                "chdir to cwd ({:?}) set in config.json failed: {}",
                cwd.display().to_string(),
                e.desc()
            ),
            EXIT_NOT_FOUND,
        )
    })?;
    if !opts.detach {
        // Credential changes clear the parent-death signal: set it again, and make sure
        // burrow did not exit in between (the report pipe has no reader then).
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| fail("prctl", e))?;
        if crate::process::parent_gone(report) {
            return Err(failure("burrow exited during setup", 125));
        }
    }
    keep_only_preserved_fds(opts.preserve_fds);
    crate::process::reset_signals();
    Err(crate::process::exec(&executable, &args, &env))
}

/// Marks every descriptor above stderr close-on-exec except `3 .. 3+n`, which lose the flag.
fn keep_only_preserved_fds(n: u32) {
    for fd in 3..3 + n as RawFd {
        // SAFETY: F_SETFD on a descriptor number; harmless when it is not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe { libc::syscall(libc::SYS_close_range, 3 + n, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
}

// The two helpers below repeat process.rs's private ones (exec needs the same rules).

/// Where a helper process works on a container's files.
pub enum View<'a> {
    /// A running container: join its user (if nested) and mount namespaces, whose root is the
    /// container's root, with all its mounts (volumes, /dev, /proc).
    Running { pid: i32 },
    /// A container that does not run: mount its root filesystem at `mountpoint` in a private
    /// mount namespace of the helper, then chroot into it.
    Stopped {
        rootfs: &'a RootfsSource,
        mountpoint: &'a Path,
    },
}

/// A helper process working inside a container's root (see [`spawn_in_root`]).
pub struct RootHelper {
    pid: Pid,
    report: File,
}

impl RootHelper {
    /// Waits for the helper; its failure, if any, as text.
    pub fn wait(mut self) -> Result<(), String> {
        let mut text = String::new();
        let _ = self.report.read_to_string(&mut text);
        let status = nix::sys::wait::waitpid(self.pid, None);
        if !text.is_empty() {
            return Err(text);
        }
        match status {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(other) => Err(format!("the helper process ended with {other:?}")),
            Err(e) => Err(format!("waiting for the helper process: {}", e.desc())),
        }
    }
}

/// Forks a process that enters `view` (its `/` is then the container's root, so no path it
/// resolves, symlinks included, can lead out of the container: CVE-class docker cp
/// CVE-2019-14271 / CVE-2018-15664) and runs `work` there, then exits. The helper's ends of
/// any channels are moved into `work` (the caller's copies close when it is dropped here);
/// the caller's own ends are listed in `close_in_child`, so that EOFs reach both sides. The
/// caller must be single-threaded.
pub fn spawn_in_root(
    view: &View,
    close_in_child: &[RawFd],
    work: impl FnOnce() -> Result<(), String>,
) -> Result<RootHelper, RuntimeError> {
    let namespaces = match view {
        View::Running { pid } => Some(Namespaces::open(*pid)?),
        View::Stopped { .. } => None,
    };
    let (report_r, report_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::Channel)?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the caller is single-threaded; the child _exits.
    match unsafe { nix::unistd::fork() }.map_err(RuntimeError::Clone)? {
        nix::unistd::ForkResult::Child => {
            drop(report_r);
            for &fd in close_in_child {
                // SAFETY: the caller's ends of its channels; this process never uses them.
                unsafe { libc::close(fd) };
            }
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                enter_view(view, namespaces.as_ref())?;
                work()
            }))
            .unwrap_or_else(|_| Err("the helper process panicked".into()));
            let code = match result {
                Ok(()) => 0,
                Err(message) => {
                    let _ = File::from(report_w).write_all(message.as_bytes());
                    1
                }
            };
            // SAFETY: leaving the forked child without the parent's handlers and buffers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(RootHelper {
            pid: child,
            report: File::from(report_r),
        }),
    }
}

fn enter_view(view: &View, namespaces: Option<&Namespaces>) -> Result<(), String> {
    match view {
        View::Running { .. } => {
            // Only user and mount: the helper needs no other, and a pid namespace would need
            // one more fork.
            if let Some(ns) = namespaces {
                for (flag, fd) in &ns.fds {
                    if flag.intersects(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
                        nix::sched::setns(fd, *flag)
                            .map_err(|e| format!("joining the container's {flag:?}: {}", e.desc()))?;
                    }
                }
            }
            // setns(CLONE_NEWNS) put our root and cwd at the namespace's root.
            Ok(())
        }
        View::Stopped { rootfs, mountpoint } => {
            std::fs::create_dir_all(mountpoint)
                .map_err(|e| format!("creating {}: {e}", mountpoint.display()))?;
            let guard = mount::mount_rootfs_private(rootfs, mountpoint).map_err(|e| e.message)?;
            // The mount dies with this process' namespace.
            std::mem::forget(guard);
            nix::unistd::chroot(*mountpoint).map_err(|e| format!("chroot: {}", e.desc()))?;
            nix::unistd::chdir("/").map_err(|e| format!("chdir: {}", e.desc()))?;
            Ok(())
        }
    }
}

/// Every process of the container whose first process is `pid` (host pids, that one first):
/// the processes in its pid namespace. Others' processes cannot be read and are skipped.
pub fn container_pids(pid: i32) -> Vec<i32> {
    let Some(ns) = ns_id(&format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    let mut pids = vec![pid];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // Processes of other users cannot be read: they are not the container's anyway.
        if p != pid && ns_id(&format!("/proc/{p}/ns/pid")) == Some(ns) {
            pids.push(p);
        }
    }
    pids
}
