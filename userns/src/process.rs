//! Starting a container: clone into new namespaces, set the child up, exec.
//!
//! Process model: the burrow process (already inside the user's user namespace) clones the
//! container's first process straight into new mount, pid, uts, ipc and (unless the host
//! network is used) net namespaces, plus a nested user namespace for `--userns=keep-id` or
//! `--uidmap`. They talk over three one-way channels made before the clone:
//! - `sync` (parent → child): the nested id maps are written; only with a nested namespace.
//! - `pty` (child → parent): the terminal's master end, over SCM_RIGHTS; only with `-t`.
//! - `report` (child → parent, close-on-exec): a setup error as JSON; EOF means exec worked.

use std::ffi::CString;
use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::idmap::{self, IdMapping};
use crate::mount::{self, RootfsSource};
use crate::seccomp::Program;
use crate::{capabilities, RuntimeError, SetupError};

/// Exit code when the command could not be invoked (permission, not executable).
pub const EXIT_CANNOT_INVOKE: i32 = 126;
/// Exit code when the command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Default PATH when neither the image nor the user sets one (Podman's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the child reports when setting up or exec fails.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildFailure {
    pub message: String,
    /// 125, 126 or 127, as Podman would exit.
    pub exit_code: i32,
}

/// See [`LaunchOptions::before_exec`]: gets the container's pid and its tap, if any.
pub type BeforeExec<'a> = &'a dyn Fn(Pid, Option<OwnedFd>) -> Result<(), String>;
/// See [`LaunchOptions::after_clone`].
pub type AfterClone<'a> = &'a dyn Fn();
/// See [`LaunchOptions::mount_sources`].
pub type MountSources<'a> = &'a dyn Fn() -> Result<(), String>;

/// How a container is to be started.
pub struct LaunchOptions<'a> {
    pub spec: &'a Spec,
    pub rootfs_source: &'a RootfsSource,
    /// Compiled seccomp filter, if the spec has one.
    pub seccomp: Option<&'a Program>,
    /// Run the built-in init as PID 1 (`--init`).
    pub init: bool,
    /// Give the container our stdin (`-i` without `-t`); otherwise /dev/null.
    pub keep_stdin: bool,
    /// Where the container's stdout and stderr go instead of ours (without `-t`), e.g. the
    /// pipes a monitor logs from.
    pub output: Option<(RawFd, RawFd)>,
    /// A tap device for the userspace network, made by the container in its network
    /// namespace and handed to `before_exec`.
    pub tap: Option<crate::network::TapConfig>,
    /// Called with the container's pid (and its tap) once its namespaces exist (the tap is
    /// made first: the hook runs while the container mounts its filesystems) and before its
    /// command runs: to start its network stack, so that the network is up from the start.
    pub before_exec: Option<BeforeExec<'a>>,
    /// Called once the container's first process exists, while it sets itself up: work that
    /// `before_exec` needs and that can run beside the set-up (starting the network stack).
    pub after_clone: Option<AfterClone<'a>>,
    /// Called right after the clone (a nested child's id maps written), before `after_clone`:
    /// writes the files the container binds (its /etc files), beside its network and root
    /// set-up. The child opens its mounts' sources only once this returned.
    pub mount_sources: Option<MountSources<'a>>,
}

/// A started container's first process and our ends of its channels.
pub struct Launched {
    pub pid: Pid,
    /// The terminal's master end (with `-t`).
    pub pty_master: Option<OwnedFd>,
    /// Our mount of the root filesystem, if we made one; unmounted when dropped.
    pub rootfs_mount: Option<mount::MountGuard>,
}

/// Signals the parent takes over in a signalfd while a foreground container runs; blocked
/// before clone so none is lost, unblocked in the child before exec.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in Signal::iterator() {
        if !matches!(
            sig,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
                | Signal::SIGABRT
                | Signal::SIGSYS
        ) {
            set.add(sig);
        }
    }
    set
}

fn clone_flag(typ: LinuxNamespaceType) -> libc::c_int {
    match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => 0,
    }
}

fn spec_namespaces(spec: &Spec) -> impl Iterator<Item = &oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
}

/// The namespaces the container gets new (entries without a path).
fn namespace_flags(spec: &Spec) -> libc::c_int {
    spec_namespaces(spec)
        .filter(|ns| ns.path().is_none())
        .fold(0, |flags, ns| flags | clone_flag(ns.typ()))
}

/// Joins the namespaces the spec names by path (`--network ns:PATH`, `container:NAME`) for the
/// clone's sake, and goes back to our own when dropped. The clone inherits them, so the child
/// needs no capability over them, not even in a nested user namespace. Mount and user
/// namespaces cannot be joined this way (they would change this process' view for good).
struct JoinedForClone {
    restore: Vec<(File, CloneFlags)>,
}

impl JoinedForClone {
    fn enter(spec: &Spec) -> Result<JoinedForClone, RuntimeError> {
        let mut joined = JoinedForClone { restore: vec![] };
        for ns in spec_namespaces(spec) {
            let Some(path) = ns.path() else { continue };
            let flag = CloneFlags::from_bits_truncate(clone_flag(ns.typ()));
            let join_error = |errno| RuntimeError::JoinNamespace {
                path: path.clone(),
                errno,
            };
            if matches!(ns.typ(), LinuxNamespaceType::Mount | LinuxNamespaceType::User) || flag.is_empty() {
                return Err(join_error(Errno::EINVAL));
            }
            let target = File::open(path).map_err(|e| join_error(io_errno(&e)))?;
            let proc_name = match ns.typ() {
                LinuxNamespaceType::Network => "net",
                LinuxNamespaceType::Pid => "pid_for_children",
                LinuxNamespaceType::Uts => "uts",
                LinuxNamespaceType::Ipc => "ipc",
                _ => "cgroup",
            };
            let own =
                File::open(format!("/proc/self/ns/{proc_name}")).map_err(|e| join_error(io_errno(&e)))?;
            nix::sched::setns(&target, flag).map_err(join_error)?;
            joined.restore.push((own, flag));
        }
        Ok(joined)
    }
}

impl Drop for JoinedForClone {
    fn drop(&mut self) {
        for (own, flag) in self.restore.drain(..).rev() {
            // Going back where we were cannot fail: we were there, with the same credentials.
            let _ = nix::sched::setns(&own, flag);
        }
    }
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn maps_of(spec: &Spec) -> Option<(Vec<IdMapping>, Vec<IdMapping>)> {
    let linux = spec.linux().as_ref()?;
    let conv = |maps: &Vec<oci_spec::runtime::LinuxIdMapping>| -> Vec<IdMapping> {
        maps.iter()
            .map(|m| IdMapping {
                inside: m.container_id(),
                outside: m.host_id(),
                count: m.size(),
            })
            .collect()
    };
    Some((
        conv(linux.uid_mappings().as_ref()?),
        conv(linux.gid_mappings().as_ref()?),
    ))
}

fn process_terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// Whether burrow mounts the root filesystem before the clone instead of the child.
///
/// The child mounts it, except in a nested user namespace that does not map our own id
/// (`--uidmap 0:1:N`): overlayfs refuses such a mounter, so burrow mounts it in a private
/// mount namespace of its own and the container's starts as a copy. Not always so:
/// unmounting it again costs an RCU grace period, milliseconds of every `run`.
fn rootfs_mounted_by_parent(spec: &Spec) -> bool {
    maps_of(spec).is_some_and(|(uids, _)| idmap::map_to_inside(&uids, 0).is_none())
}

/// Starts the container's first process. The caller must be single-threaded and have
/// blocked `forwarded_signals()`.
pub fn launch(opts: &LaunchOptions) -> Result<Launched, RuntimeError> {
    let spec = opts.spec;
    let flags = namespace_flags(spec);
    let nested = flags & libc::CLONE_NEWUSER != 0;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);

    let rootfs: PathBuf = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
    let rootfs_mount = if rootfs_mounted_by_parent(spec) {
        Some(mount::mount_rootfs_private(opts.rootfs_source, &rootfs).map_err(RuntimeError::Rootfs)?)
    } else {
        None
    };

    let (report_r, report_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::Channel)?;
    let sync = if nested || opts.before_exec.is_some() || opts.mount_sources.is_some() {
        Some(pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::Channel)?)
    } else {
        None
    };
    // One socket carries the descriptors the child makes for us: its tap, then its terminal.
    let pty_channel = if terminal || opts.tap.is_some() {
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

    let joined = JoinedForClone::enter(spec)?;
    // A fork-like clone (no new stack: the child continues on a copy of ours), so the child
    // is PID 1 of its new pid namespace without an intermediate process.
    // SAFETY: the caller is single-threaded; the child never returns from child_main.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    let clone_errno = Errno::last();
    if ret != 0 {
        drop(joined);
    }
    if ret < 0 {
        return Err(RuntimeError::Clone(clone_errno));
    }
    if ret == 0 {
        // Child: close the parent's ends right away so EOFs mean what they say.
        drop(report_r);
        let sync_r = sync.map(|(r, w)| {
            drop(w);
            r
        });
        let pty_w = pty_channel.map(|(r, w)| {
            drop(r);
            w
        });
        child_main(opts, report_w, sync_r, pty_w);
    }
    let pid = Pid::from_raw(ret as i32);
    // Parent: close the child's ends.
    drop(report_w);
    let sync_w = sync.map(|(r, w)| {
        drop(r);
        w
    });
    let pty_r = pty_channel.map(|(r, w)| {
        drop(w);
        r
    });

    let kill_child = |e: RuntimeError| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        e
    };

    let mut sync_w = sync_w.map(File::from);
    if let (true, Some(sync)) = (nested, sync_w.as_mut()) {
        let (uid_map, gid_map) = maps_of(spec).unwrap_or_default();
        // We are root in burrow's namespace, so the nested maps are written directly.
        let written = idmap::write_proc(pid, "uid_map", &idmap::format_map(&uid_map))
            .and_then(|()| idmap::write_proc(pid, "gid_map", &idmap::format_map(&gid_map)));
        if let Err(e) = written {
            return Err(kill_child(RuntimeError::IdMap(e)));
        }
        let _ = sync.write_all(b"m");
    }
    // The child is on its own now (a nested one has its id maps).
    if let (Some(write), Some(sync)) = (opts.mount_sources, sync_w.as_mut()) {
        if let Err(message) = write() {
            return Err(kill_child(RuntimeError::Child(ChildFailure {
                message,
                exit_code: 125,
            })));
        }
        let _ = sync.write_all(b"f");
    }
    if let Some(after_clone) = opts.after_clone {
        after_clone();
    }

    let tap = match (&pty_r, &opts.tap) {
        (Some(sock), Some(_)) => receive_fd(sock),
        _ => None,
    };
    // The hook runs while the child mounts (it sends the tap before): "go" only after both.
    let mut go = false;
    if opts.tap.is_some() && tap.is_none() {
        // The child failed before making it: its report says why.
    } else if let (Some(hook), Some(_)) = (opts.before_exec, sync_w.as_ref()) {
        if let Err(message) = hook(pid, tap) {
            return Err(kill_child(RuntimeError::Child(ChildFailure {
                message,
                exit_code: 125,
            })));
        }
        go = true;
    }
    let pty_master = match (&pty_r, terminal) {
        (Some(sock), true) => {
            let master = receive_fd(sock);
            if let Some(master) = &master {
                // Size the terminal before the command starts, then let the child go on.
                crate::foreground::copy_window_size(master.as_raw_fd());
                let _ = nix::unistd::write(sock, b"1");
            }
            master
        }
        _ => None,
    };
    drop(pty_r);
    if let (true, Some(sync)) = (go, sync_w.as_mut()) {
        let _ = sync.write_all(b"g");
    }
    drop(sync_w);

    if let Some(failure) = read_report(report_r, "container") {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(RuntimeError::Child(failure));
    }
    if terminal && pty_master.is_none() {
        return Err(kill_child(RuntimeError::Terminal(
            "the container did not send its terminal".into(),
        )));
    }
    Ok(Launched {
        pid,
        pty_master,
        rootfs_mount,
    })
}

pub(crate) fn receive_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for cmsg in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel installed these descriptors for us.
            return fds.first().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    None
}

/// Reads the child's report pipe to its end (it closes on exec): a failure it reported before
/// exec, if any. `what` names the process in a report that is not the expected JSON.
pub(crate) fn read_report(report_r: OwnedFd, what: &str) -> Option<ChildFailure> {
    let mut report = String::new();
    let _ = File::from(report_r).read_to_string(&mut report);
    if report.is_empty() {
        return None;
    }
    Some(serde_json::from_str(&report).unwrap_or(ChildFailure {
        message: format!("{what} setup failed: {report}"),
        exit_code: 125,
    }))
}

pub(crate) fn send_fd(sock: &OwnedFd, fd: RawFd) -> Result<(), SetupError> {
    let fds = [fd];
    let iov = [IoSlice::new(b"t")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| SetupError::new(format!("sending the terminal: {}", e.desc()), e as i32))?;
    Ok(())
}

/// The container's first process. Never returns: execs or exits reporting why not.
fn child_main(opts: &LaunchOptions, report: OwnedFd, sync: Option<OwnedFd>, pty: Option<OwnedFd>) -> ! {
    let failure = match setup_and_exec(opts, &report, sync, pty) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let json = serde_json::to_string(&failure).unwrap_or_default();
    let _ = File::from(report).write_all(json.as_bytes());
    // SAFETY: _exit skips the parent's atexit handlers and buffers, which are not ours.
    unsafe { libc::_exit(failure.exit_code) }
}

/// The type of a function that execs or exits.
pub(crate) enum Never {}

/// Sends the terminal's master (from the container's own devpts) to burrow over `pty`, waits
/// until burrow has sized it, and makes its peer this process' controlling terminal (a session
/// of its own, so Ctrl-C on it reaches the foreground process) and standard streams.
pub(crate) fn take_terminal(master: OwnedFd, pty: OwnedFd) -> Result<(), ChildFailure> {
    let fail = |what: &str, e: Errno| ChildFailure {
        message: format!("{what}: {}", e.desc()),
        exit_code: 125,
    };
    let peer = mount::open_pty_peer(master.as_raw_fd()).map_err(setup_failure)?;
    send_fd(&pty, master.as_raw_fd()).map_err(setup_failure)?;
    let mut ack = [0u8; 1];
    let _ = nix::unistd::read(&pty, &mut ack);
    drop(master);
    drop(pty);
    nix::unistd::setsid().map_err(|e| fail("setsid", e))?;
    // SAFETY: TIOCSCTTY on the terminal we opened: it becomes our controlling terminal.
    if unsafe { libc::ioctl(peer.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(fail("setting the controlling terminal", Errno::last()));
    }
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe { libc::dup2(peer.as_raw_fd(), fd) };
    }
    Ok(())
}

fn setup_failure(e: SetupError) -> ChildFailure {
    ChildFailure {
        message: e.message,
        exit_code: 125,
    }
}

fn setup_and_exec(
    opts: &LaunchOptions,
    report: &OwnedFd,
    sync: Option<OwnedFd>,
    pty: Option<OwnedFd>,
) -> Result<Never, ChildFailure> {
    let spec = opts.spec;
    let fail = |what: &str, e: Errno| ChildFailure {
        message: format!("{what}: {}", e.desc()),
        exit_code: 125,
    };
    // Die with the burrow process that started us: nothing may outlive a foreground run.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| fail("prctl", e))?;

    // In a nested user namespace nothing else may happen before the id maps are written:
    // until then our own id is unmapped there, and overlayfs refuses such a mounter.
    let mut sync = sync.map(File::from);
    let mut wait_for = |what: &str| -> Result<(), ChildFailure> {
        let mut byte = [0u8; 1];
        match sync.as_mut().map(|s| s.read(&mut byte)) {
            Some(Ok(1)) => Ok(()),
            _ => Err(ChildFailure {
                message: format!("burrow did not {what}"),
                exit_code: 125,
            }),
        }
    };
    if namespace_flags(spec) & libc::CLONE_NEWUSER != 0 {
        wait_for("write the id maps")?;
    }

    // Our mounts must never propagate anywhere else.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| fail("making / private", e))?;
    if namespace_flags(spec) & libc::CLONE_NEWNET != 0 {
        // First, before the mounts: with the tap in hand our starter sets up the network
        // (and records the container) while we mount.
        let net_failure = |e: crate::network::NetworkError| ChildFailure {
            message: e.to_string(),
            exit_code: 125,
        };
        // A new network namespace starts with lo down; Podman's containers have it up.
        crate::network::loopback_up().map_err(net_failure)?;
        // Podman's default sysctl: unprivileged ICMP sockets for the container's root, so
        // `ping` works without CAP_NET_RAW. Per network namespace, so ours to set.
        let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0");
        if let (Some(config), Some(sock)) = (&opts.tap, &pty) {
            let tap = crate::network::create_tap("tap0", config).map_err(net_failure)?;
            send_fd(sock, tap.as_raw_fd()).map_err(setup_failure)?;
        }
    }
    let rootfs: PathBuf = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
    if !rootfs_mounted_by_parent(spec) {
        mount::mount_rootfs(opts.rootfs_source, &rootfs).map_err(setup_failure)?;
    }
    if opts.mount_sources.is_some() {
        wait_for("write the files the container binds")?;
    }
    let prepared = mount::prepare(spec, &rootfs).map_err(setup_failure)?;

    if namespace_flags(spec) & libc::CLONE_NEWUSER != 0 {
        // Root of the nested namespace from here on (files it creates need a mapped owner);
        // what lies in the user's private directories was opened above.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(|e| fail("setresgid", e))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|e| fail("setresuid", e))?;
    }

    mount::setup_mounts(spec, &prepared).map_err(setup_failure)?;
    let terminal = process_terminal(spec);
    let master = match (&pty, terminal) {
        (Some(_), true) => Some(mount::open_pty_master(&prepared.root).map_err(setup_failure)?),
        _ => None,
    };

    if let Some(hostname) = spec.hostname() {
        if namespace_flags(spec) & libc::CLONE_NEWUTS != 0 {
            nix::unistd::sethostname(hostname).map_err(|e| fail("sethostname", e))?;
        }
    }
    mount::pivot_to(&prepared.root).map_err(setup_failure)?;
    drop(prepared);
    mount::finish_rootfs(spec).map_err(setup_failure)?;

    let process = spec.process().as_ref().ok_or_else(|| ChildFailure {
        message: "the spec has no process".into(),
        exit_code: 125,
    })?;

    // Standard streams: the terminal, or ours (stdin only with -i).
    if let (Some(master), Some(pty)) = (master, pty) {
        take_terminal(master, pty)?;
    } else {
        if let Some((out, err)) = opts.output {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe {
                libc::dup2(out, 1);
                libc::dup2(err, 2);
            }
        }
        if !opts.keep_stdin {
            let null = File::open("/dev/null").map_err(|e| {
                fail(
                    "opening /dev/null",
                    Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                )
            })?;
            // SAFETY: dup2 onto stdin.
            unsafe { libc::dup2(null.as_raw_fd(), 0) };
        }
    }

    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(ChildFailure {
            message: "no command specified".into(),
            exit_code: 125,
        });
    };
    let cwd = process.cwd();
    if !cwd.is_dir() {
        // Podman creates a missing working directory.
        std::fs::create_dir_all(cwd).map_err(|e| ChildFailure {
            message: format!("creating the working directory {}: {e}", cwd.display()),
            exit_code: 125,
        })?;
    }
    let path_env = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let executable = find_executable(arg0, path_env)?;

    let user = process.user();
    crate::rlimits::apply(process.rlimits().as_deref().unwrap_or(&[])).map_err(|(what, e)| fail(&what, e))?;
    let caps = process.capabilities().clone().unwrap_or_default();
    capabilities::apply_bounding(&caps).map_err(|e| ChildFailure {
        message: e.to_string(),
        exit_code: 125,
    })?;
    if process.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().map_err(|e| fail("setting no_new_privs", e))?;
    }
    // Seccomp before giving up root: without no_new_privs, loading a filter needs
    // CAP_SYS_ADMIN, which the container's user may not have. The default profile allows
    // the few calls that follow.
    if let Some(program) = opts.seccomp {
        crate::seccomp::install(program).map_err(|e| ChildFailure {
            message: e.to_string(),
            exit_code: 125,
        })?;
    }
    // Before our credentials change: until then our starter's hook may open our namespaces
    // (/proc/PID/ns), as its owner. After, only with CAP_SYS_PTRACE where our memory was
    // made, which a `run -d` that forked to become the monitor does not have.
    if opts.before_exec.is_some() {
        wait_for("set up the container's network")?;
    }
    set_user(
        user.uid(),
        user.gid(),
        user.additional_gids().as_deref().unwrap_or(&[]),
    )?;
    capabilities::apply(&caps).map_err(|e| ChildFailure {
        message: e.to_string(),
        exit_code: 125,
    })?;
    // As the container's user, so its permissions apply.
    nix::unistd::chdir(cwd)
        .map_err(|e| fail(&format!("entering the working directory {}", cwd.display()), e))?;
    // Credential changes clear the parent-death signal: set it again, and make sure our
    // parent did not die in between. (getppid() is 0 for PID 1 of a new pid namespace, so
    // ask the report pipe instead: with its reader gone, its write end polls POLLERR.)
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| fail("prctl", e))?;
    if parent_gone(report) {
        return Err(ChildFailure {
            message: "burrow exited during setup".into(),
            exit_code: 125,
        });
    }

    // SAFETY: marks every inherited descriptor above stderr close-on-exec (the report pipe
    // must stay open until exec, and is close-on-exec already).
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    reset_signals();

    if opts.init {
        return crate::init::run_as_init(&executable, &args, &env, report);
    }
    Err(exec(&executable, &args, &env))
}

pub(crate) fn parent_gone(report: &OwnedFd) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        report.as_fd(),
        nix::poll::PollFlags::POLLOUT,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLERR))
}

pub(crate) fn set_user(uid: u32, gid: u32, groups: &[u32]) -> Result<(), ChildFailure> {
    let fail = |what: &str, e: Errno| ChildFailure {
        message: format!("{what}: {}", e.desc()),
        exit_code: 125,
    };
    // A single-id namespace has setgroups denied; the process keeps no supplementary group.
    let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "allow")
        .unwrap_or(false);
    if setgroups_allowed {
        let gids: Vec<nix::unistd::Gid> = groups.iter().map(|&g| g.into()).collect();
        nix::unistd::setgroups(&gids).map_err(|e| fail("setgroups", e))?;
    }
    // Keep the permitted set across the uid change; capabilities::apply sets it afterwards.
    nix::sys::prctl::set_keepcaps(true).map_err(|e| fail("prctl", e))?;
    nix::unistd::setresgid(gid.into(), gid.into(), gid.into())
        .map_err(|e| fail(&format!("setting gid {gid} (is it mapped? see /etc/subgid)"), e))?;
    nix::unistd::setresuid(uid.into(), uid.into(), uid.into())
        .map_err(|e| fail(&format!("setting uid {uid} (is it mapped? see /etc/subuid)"), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| fail("prctl", e))?;
    Ok(())
}

/// Restores what exec would otherwise inherit from burrow: the blocked signals, and the
/// SIGPIPE that Rust's runtime ignores (a container's `yes | head` must end).
pub(crate) fn reset_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: restoring default dispositions before exec.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Resolves the command as execvp would, with the container's PATH.
pub(crate) fn find_executable(arg0: &str, path_env: &str) -> Result<PathBuf, ChildFailure> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    for dir in path_env.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(ChildFailure {
        message: format!(
            "executable file `{arg0}` not found in $PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found"
        ),
        exit_code: EXIT_NOT_FOUND,
    })
}

/// Execs the command; returns only on failure, with Podman's exit code for it.
pub(crate) fn exec(executable: &Path, args: &[String], env: &[String]) -> ChildFailure {
    let to_c = |s: &[u8]| CString::new(s).unwrap_or_default();
    let path = to_c(executable.as_os_str().as_bytes());
    let argv: Vec<CString> = args.iter().map(|a| to_c(a.as_bytes())).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e.as_bytes())).collect();
    let e = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    let shown = executable.display();
    match e {
        Errno::ENOENT => ChildFailure {
            message: format!("{shown}: No such file or directory: OCI runtime attempted to invoke a command that was not found"),
            exit_code: EXIT_NOT_FOUND,
        },
        Errno::EACCES | Errno::EPERM | Errno::ENOEXEC | Errno::EISDIR | Errno::ENOTDIR | Errno::ELIBBAD => ChildFailure {
            message: format!("{shown}: {}: OCI permission denied", e.desc()),
            exit_code: EXIT_CANNOT_INVOKE,
        },
        other => ChildFailure { message: format!("executing {shown}: {}", other.desc()), exit_code: EXIT_CANNOT_INVOKE },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_path_like_execvp() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("tool"), "").unwrap();
        std::fs::create_dir(bin.join("adir")).unwrap();
        let path = format!("/nonexistent:{}", bin.display());
        assert_eq!(find_executable("tool", &path).unwrap(), bin.join("tool"));
        assert_eq!(find_executable("./x", &path).unwrap(), PathBuf::from("./x"));
        let missing = find_executable("nope", &path).unwrap_err();
        assert_eq!(missing.exit_code, EXIT_NOT_FOUND);
        assert!(missing.message.contains("`nope` not found in $PATH"));
        // A directory named like the command is skipped, as execvp does.
        assert_eq!(
            find_executable("adir", &path).unwrap_err().exit_code,
            EXIT_NOT_FOUND
        );
    }
}
