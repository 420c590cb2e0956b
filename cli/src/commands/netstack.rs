//! `burrow __netstack` (hidden): the userspace network stack of one container, in a process of
//! its own, single-threaded, in the host's network namespace.
//!
//! ```text
//! burrow __netstack (--tap-fd N | --netns-pid PID [--tap-name tap0])
//!                   [--ready-fd R] [--exit-fd E] [--exit-with-pid PID]
//!                   [--config JSON]   (else the JSON on stdin)
//! ```
//! - `--tap-fd`: a tap fd the container's first process created in its network namespace
//!   (`userns::network::create_tap`). `--tap-socket`: the same, arriving over SCM_RIGHTS once the
//!   container made it, with the namespace's fd after it. `--netns-pid`: as slirp4netns, the stack
//!   creates the tap itself in PID's network namespace (joining its user namespace).
//! - Knowing the namespace (not with `--tap-fd`), the stack splices published TCP ports' loopback
//!   clients into it (`burrow_netstack`'s `splice`).
//! - Ready protocol: the stack writes `1\n` and a JSON line with the published ports as bound
//!   (`[{"host_ip":..,"host_port":..,"container_port":..,"proto":"tcp"}]`) to R once every port
//!   is listening, then closes R. On a failure before that it writes the error message (not
//!   starting with `1`) there instead (not on stderr), and exits 1.
//! - Exit: on SIGTERM/SIGINT/SIGHUP, when E becomes readable or hangs up (its writer closed), or
//!   when the process of `--exit-with-pid` (by default the `--netns-pid` one) exits; every relayed
//!   connection is reset and every listening port freed before the process exits. The tap fd keeps
//!   the container's network namespace alive, so one of these must say when the container is gone.
//!
//! [`spawn`] starts it from burrow and waits until it is ready.

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::{bail, Context};
use burrow_netstack::{PortForward, SlirpConfig, Stack, StackConfig, StopOn};
use burrow_userns::network::{TapConfig, TapIpv6};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};

/// The name of the tap device in the container.
pub const TAP_NAME: &str = "tap0";

#[derive(Debug, clap::Args)]
pub struct NetstackArgs {
    /// The tap device's fd, inherited
    #[arg(
        long,
        value_name = "FD",
        conflicts_with_all = ["netns_pid", "tap_socket"],
        required_unless_present_any = ["netns_pid", "tap_socket"]
    )]
    tap_fd: Option<RawFd>,
    /// A socket on which the tap device's fd (and the network namespace's) arrives (SCM_RIGHTS)
    /// once the container made it
    #[arg(long, value_name = "FD", conflicts_with = "netns_pid")]
    tap_socket: Option<RawFd>,
    /// Create the tap in this process' network namespace (joining its user namespace)
    #[arg(long, value_name = "PID")]
    netns_pid: Option<i32>,
    /// Name of the tap device created with --netns-pid
    #[arg(long, value_name = "NAME", default_value = TAP_NAME)]
    tap_name: String,
    /// Write "1" here once ready (or the error), then close it
    #[arg(long, value_name = "FD")]
    ready_fd: Option<RawFd>,
    /// Exit when this fd becomes readable or hangs up
    #[arg(long, value_name = "FD")]
    exit_fd: Option<RawFd>,
    /// Exit when this process exits (default with --netns-pid: that process)
    #[arg(long, value_name = "PID")]
    exit_with_pid: Option<i32>,
    /// The stack's configuration (netstack::StackConfig as JSON); read from stdin when absent
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
}

/// The tap configuration for a slirp4netns network; `persist` when the network namespace dies
/// with the container (see `TapConfig::persist`).
pub fn tap_config(slirp: &SlirpConfig, persist: bool) -> TapConfig {
    TapConfig {
        mtu: slirp.mtu,
        mac: slirp.container_mac().0,
        address: slirp.container_address(),
        netmask: slirp.netmask(),
        gateway: slirp.gateway(),
        ipv6: slirp.enable_ipv6.then(|| TapIpv6 {
            address: slirp.container_address6(),
            prefix_len: slirp.prefix_len6(),
            gateway: slirp.gateway6(),
        }),
        persist,
    }
}

/// Takes ownership of an inherited fd, checking that it is open.
fn inherited(fd: RawFd, what: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("{what} {fd} is not an open file descriptor");
    }
    // SAFETY: the fd was given to this process for it to own (checked open above).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Not for the children this process never has, but keep it tidy.
    // SAFETY: fcntl with integer arguments on an fd we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(fd)
}

pub fn netstack(args: NetstackArgs) -> anyhow::Result<i32> {
    // First, so that a SIGTERM right after the ready message finds the signalfd, not the default
    // action.
    let signal_fd = burrow_netstack::stop_signals()?;
    raise_fd_limit();
    let mut ready = args
        .ready_fd
        .map(|fd| inherited(fd, "--ready-fd"))
        .transpose()?
        .map(std::fs::File::from);
    match setup(&args) {
        Ok((stack, exit_fd, pid_fd)) => {
            if let Some(mut r) = ready.take() {
                let ports = serde_json::to_string(&stack.published())?;
                // The reader may be gone already (it gave up): run anyway, the exit fd says when to stop.
                let _ = r.write_all(format!("1\n{ports}\n").as_bytes());
            }
            stack.run(StopOn {
                exit_fd,
                pid_fd,
                signal_fd: Some(signal_fd),
            })?;
            Ok(0)
        }
        Err(e) => match ready.take() {
            // Whoever waits on the ready fd reports the error: say it there only.
            Some(mut r) => {
                let _ = r.write_all(crate::exit::message(&e).as_bytes());
                Ok(1)
            }
            None => Err(e),
        },
    }
}

/// Every relayed connection holds a host socket: raise the soft fd limit to the hard one (1024 is
/// a common soft limit; published ports should take thousands of connections).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The stack, bound and ready to run, and the fds that say when to stop it.
fn setup(args: &NetstackArgs) -> anyhow::Result<(Stack, Option<OwnedFd>, Option<OwnedFd>)> {
    let exit_fd = args.exit_fd.map(|fd| inherited(fd, "--exit-fd")).transpose()?;
    // The namespace's process holds the network namespace: when it is gone, so is the container
    // (the stack's tap fd would keep the namespace alive otherwise).
    let pid_fd = match args.exit_with_pid.or(args.netns_pid) {
        Some(pid) => Some(burrow_netstack::pid_fd(pid).with_context(|| format!("watching process {pid}"))?),
        None => None,
    };
    let text = match &args.config {
        Some(text) => text.clone(),
        None => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .context("reading the configuration from stdin")?;
            text
        }
    };
    let config: StackConfig = serde_json::from_str(&text).context("parsing the network configuration")?;
    // The tap, and the container's network namespace when known (for spliced loopback clients).
    let (tap, netns) = match (args.tap_fd, args.netns_pid, args.tap_socket) {
        (Some(fd), _, _) => (inherited(fd, "--tap-fd")?, None),
        (None, Some(pid), _) => {
            let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .with_context(|| format!("opening the network namespace of {pid}"))?;
            let tap = tap_in_namespace_of(pid, &netns, &args.tap_name, &tap_config(&config.slirp, false))?;
            (tap, Some(OwnedFd::from(netns)))
        }
        (None, None, Some(fd)) => {
            let mut fds = recv_fds(&inherited(fd, "--tap-socket")?).0.into_iter();
            match fds.next() {
                Some(tap) => (tap, fds.next()),
                None => bail!("no tap device came on --tap-socket (the container did not start)"),
            }
        }
        (None, None, None) => bail!("--tap-fd, --tap-socket or --netns-pid is required"),
    };
    let mut stack = Stack::new(tap, &config)?;
    if let Some(netns) = netns {
        stack.set_container_netns(netns);
    }
    Ok((stack, exit_fd, pid_fd))
}

/// Creates the tap in `pid`'s network namespace from a forked child that joins it (and its user
/// namespace, when it is not ours), as slirp4netns does, and receives its fd.
fn tap_in_namespace_of(
    pid: i32,
    netns: &std::fs::File,
    name: &str,
    config: &TapConfig,
) -> anyhow::Result<OwnedFd> {
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .with_context(|| format!("opening the user namespace of {pid}"))?;
    let same_userns = std::fs::metadata("/proc/self/ns/user")?.ino() == userns.metadata()?.ino();
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("creating a socket pair")?;
    // SAFETY: this process is single-threaded here (a fresh helper, before the stack starts); the
    // child only makes system calls and exits with _exit.
    match unsafe { nix::unistd::fork() }.context("forking to create the tap")? {
        nix::unistd::ForkResult::Child => {
            drop(parent_sock);
            let result = (|| -> Result<OwnedFd, String> {
                use nix::sched::{setns, CloneFlags};
                if !same_userns {
                    setns(&userns, CloneFlags::CLONE_NEWUSER)
                        .map_err(|e| format!("joining the user namespace of {pid}: {}", e.desc()))?;
                }
                setns(netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("joining the network namespace of {pid}: {}", e.desc()))?;
                burrow_userns::network::loopback_up().map_err(|e| e.to_string())?;
                burrow_userns::network::create_tap(name, config).map_err(|e| e.to_string())
            })();
            let code = match result {
                Ok(tap) => i32::from(send_fds(&child_sock, &[&tap]).is_err()),
                Err(message) => {
                    let _ = nix::unistd::write(&child_sock, message.as_bytes());
                    1
                }
            };
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(child_sock);
            let (fds, text) = recv_fds(&parent_sock);
            let _ = nix::sys::wait::waitpid(child, None);
            match fds.into_iter().next() {
                Some(tap) => Ok(tap),
                None if !text.is_empty() => bail!("{text}"),
                None => bail!("creating the tap device in the network namespace of {pid} failed"),
            }
        }
    }
}

/// Sends `fds` over the unix socket `sock` (SCM_RIGHTS, with a 2-byte message).
fn send_fds(sock: &OwnedFd, fds: &[&OwnedFd]) -> nix::Result<usize> {
    let fds: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"ok")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
}

/// Receives one message on `sock`: the fds it carries (from [`send_fds`]), and its text (an
/// error message when there is no fd; empty when the sender closed its end).
fn recv_fds(sock: &OwnedFd) -> (Vec<OwnedFd>, String) {
    let mut buf = vec![0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let (fds, n) = match recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) {
        Ok(msg) => {
            let mut owned = Vec::new();
            for cmsg in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    // SAFETY: the kernel installed these descriptors for us.
                    owned.extend(fds.iter().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
            (owned, msg.bytes)
        }
        Err(_) => (Vec::new(), 0),
    };
    (fds, String::from_utf8_lossy(&buf[..n]).into_owned())
}

// `spawn` and `NetstackProcess` are for `burrow run`, which calls them once the
// network is wired in; until then they are unused.
/// A running `burrow __netstack`. Dropping it (or [`NetstackProcess::stop`]) stops the stack:
/// its exit fd hangs up, it resets its connections, frees its ports and exits.
#[allow(dead_code)]
pub struct NetstackProcess {
    child: StackChild,
    exit: Option<OwnedFd>,
    /// The published ports as bound.
    pub published: Vec<PortForward>,
}

#[allow(dead_code)]
impl NetstackProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The write end of the exit pipe, for a process that must keep the stack alive (the
    /// container's monitor) after this handle is gone: the stack runs until every copy closes.
    pub fn exit_fd(&self) -> Option<&OwnedFd> {
        self.exit.as_ref()
    }

    /// Stops the stack and waits for it (at most 5 s, then SIGKILL).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.exit.take();
        // Its ports are free once it has exited: wait for that on a pidfd (no polling
        // interval on every run's critical path), at most 5 s, then kill it.
        if !super::stop::wait_exit(self.child.id() as i32, Duration::from_secs(5)) {
            self.child.kill();
        }
        self.child.wait();
    }
}

impl Drop for NetstackProcess {
    fn drop(&mut self) {
        if self.exit.is_some() {
            self.stop_inner();
        }
    }
}

/// Starts `burrow __netstack` on `tap` (the container's tap fd) and waits until its published
/// ports listen. A port that cannot be bound fails here, before the container starts, with the
/// stack's message (for example naming `net.ipv4.ip_unprivileged_port_start`).
#[allow(dead_code)]
pub fn spawn(tap: OwnedFd, config: &StackConfig) -> anyhow::Result<NetstackProcess> {
    spawn_binary(std::path::Path::new("/proc/self/exe"), tap, config)
}

/// [`spawn`] with another burrow binary (for tests).
#[allow(dead_code)]
fn spawn_binary(
    burrow: &std::path::Path,
    tap: OwnedFd,
    config: &StackConfig,
) -> anyhow::Result<NetstackProcess> {
    let (child, ready, exit) = start_binary(burrow, tap, "--tap-fd", config)?;
    wait_ready(child, ready, exit)
}

/// A `burrow __netstack` started before its container's tap exists, so that its start (a new
/// process, the binary loaded) runs beside the container's own set-up instead of after it.
/// Dropped before [`PendingNetstack::attach`], it exits (its socket hangs up).
pub struct PendingNetstack(Option<Pending>);

struct Pending {
    socket: OwnedFd,
    child: StackChild,
    ready: OwnedFd,
    exit: OwnedFd,
}

/// Starts the stack of a container that is still being set up; see [`PendingNetstack`].
pub fn spawn_early(config: &StackConfig) -> anyhow::Result<PendingNetstack> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("creating a socket pair")?;
    let (child, ready, exit) = start_binary(
        std::path::Path::new("/proc/self/exe"),
        theirs,
        "--tap-socket",
        config,
    )?;
    Ok(PendingNetstack(Some(Pending {
        socket: ours,
        child,
        ready,
        exit,
    })))
}

impl PendingNetstack {
    /// Hands the stack the container's tap and network namespace, and waits until its published
    /// ports listen (see [`spawn`]).
    pub fn attach(mut self, tap: OwnedFd, netns: Option<OwnedFd>) -> anyhow::Result<NetstackProcess> {
        let Some(Pending {
            socket,
            child,
            ready,
            exit,
        }) = self.0.take()
        else {
            bail!("the network stack was already given its tap");
        };
        // A failed send shows as the stack's own message on the ready pipe.
        let fds: Vec<&OwnedFd> = std::iter::once(&tap).chain(&netns).collect();
        let _ = send_fds(&socket, &fds);
        drop((socket, tap, netns));
        wait_ready(child, ready, exit)
    }
}

impl Drop for PendingNetstack {
    fn drop(&mut self) {
        if let Some(Pending {
            socket, mut child, ..
        }) = self.0.take()
        {
            // Its socket hanging up, the stack gives up waiting for the tap and exits.
            drop(socket);
            child.wait();
        }
    }
}

/// Starts `burrow __netstack FLAG 3` with `first` at fd 3; returns it, the ready pipe's read end
/// and the exit pipe's write end.
fn start_binary(
    burrow: &std::path::Path,
    first: OwnedFd,
    flag: &str,
    config: &StackConfig,
) -> anyhow::Result<(StackChild, OwnedFd, OwnedFd)> {
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating the ready pipe")?;
    let (exit_r, exit_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating the exit pipe")?;
    let config = serde_json::to_string(config)?;
    let argv = [
        "burrow",
        "__netstack",
        flag,
        "3",
        "--ready-fd",
        "4",
        "--exit-fd",
        "5",
        "--config",
        &config,
    ];
    let pid = crate::spawn::Spawn::new(burrow, argv)
        .and_then(|s| s.fd(&first, 3)?.fd(&ready_w, 4)?.fd(&exit_r, 5))
        .and_then(|s| s.null(0).null(1).spawn())
        .context("starting the network stack (burrow __netstack)")?;
    Ok((StackChild(pid), ready_r, exit_w))
}

/// A started `burrow __netstack`.
struct StackChild(Pid);

impl StackChild {
    fn id(&self) -> u32 {
        self.0.as_raw() as u32
    }

    fn kill(&self) {
        let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
    }

    fn wait(&mut self) {
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}

/// Waits for the stack's ready message: its published ports as bound, or its error.
fn wait_ready(mut child: StackChild, ready: OwnedFd, exit: OwnedFd) -> anyhow::Result<NetstackProcess> {
    let mut text = String::new();
    let read = std::fs::File::from(ready).read_to_string(&mut text);
    let mut lines = text.lines();
    if read.is_ok() && lines.next() == Some("1") {
        let published =
            serde_json::from_str(lines.next().unwrap_or("[]")).context("reading the published ports")?;
        return Ok(NetstackProcess {
            child,
            exit: Some(exit),
            published,
        });
    }
    child.wait();
    if text.trim().is_empty() {
        bail!("the network stack exited before it was ready");
    }
    bail!("{}", text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The burrow binary next to this test binary (target/debug/burrow), when cargo built it.
    fn burrow_binary() -> Option<std::path::PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let bin = exe.parent()?.parent()?.join("burrow");
        bin.exists().then_some(bin)
    }

    #[test]
    fn spawn_reports_ports_and_frees_them_on_stop() {
        let Some(burrow) = burrow_binary() else {
            eprintln!("no target/debug/burrow: skipped");
            return;
        };
        // A datagram socket pair stands in for the tap: the stack only reads and writes frames.
        let (_ours, tap) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let config: StackConfig = serde_json::from_str(
            r#"{"dns_servers":[],"port_forwards":[{"host_ip":"127.0.0.1","host_port":0,"container_port":80}]}"#,
        )
        .unwrap();
        let stack = spawn_binary(&burrow, tap, &config).unwrap();
        assert_eq!(stack.published.len(), 1);
        let port = stack.published[0].host_port;
        assert_ne!(port, 0);
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
            "the stack listens"
        );
        stack.stop();
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("free once stopped");

        let (_ours, tap) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = config;
        config.port_forwards[0].host_port = taken.local_addr().unwrap().port();
        let err = spawn_binary(&burrow, tap, &config)
            .err()
            .expect("the port is taken")
            .to_string();
        assert!(err.contains("address already in use"), "{err}");
    }
}
