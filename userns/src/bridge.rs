//! User-defined networks' plumbing: a Linux bridge in a network namespace of its own (owned by
//! the user's user namespace, so no privilege beyond it is needed), and one veth pair per
//! attached container, its bridge end enslaved there, its other end (`eth0`, ...) in the
//! container's namespace with the container's address on the network.
//!
//! Links are made with rtnetlink (`RTM_NEWLINK`): neither a bridge with a master set at
//! creation nor a veth pair has an ioctl. The three messages needed are built by hand (as
//! the rest of this crate configures interfaces with plain ioctls) rather than pulling in an
//! async netlink stack. Addresses and flags reuse [`crate::network`]'s ioctls.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, CloneFlags};

use crate::network::{dgram_socket, ifreq, ioctl, set_up, sockaddr_v4, NetworkError};

/// The bridge's name inside each network's namespace (one bridge per namespace).
pub const BRIDGE_NAME: &str = "burrow0";

const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;

/// A netlink message under construction: a header, a body and attributes, nested ones
/// patched with their length when closed.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Message {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        Message { buf }
    }

    /// `struct ifinfomsg`, all zero (AF_UNSPEC, no index, no flags).
    fn ifinfomsg(&mut self) {
        self.buf.extend_from_slice(&[0u8; 16]);
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn attr_str(&mut self, kind: u16, text: &str) {
        let mut data = text.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data);
    }

    /// Opens a nested attribute; returns where its length goes.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn netlink_error(step: &'static str, name: &str, errno: Errno) -> NetworkError {
    NetworkError::Ioctl {
        step,
        name: name.to_string(),
        errno,
    }
}

/// Sends one request on a new rtnetlink socket (in the calling thread's network namespace)
/// and waits for its acknowledgement.
fn request(message: Vec<u8>, step: &'static str, name: &str) -> Result<(), NetworkError> {
    // SAFETY: socket() with constant arguments; the result is checked before it is owned.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(netlink_error(step, name, Errno::last()));
    }
    // SAFETY: raw was just returned by socket() and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: message is a live buffer of the given length.
    let sent = unsafe { libc::send(sock.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
    if sent < 0 {
        return Err(netlink_error(step, name, Errno::last()));
    }
    let mut reply = [0u8; 4096];
    // SAFETY: reply is a live, writable buffer of its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(netlink_error(step, name, Errno::last()));
    }
    // NLMSG_ERROR (2) with error 0 is the acknowledgement; a negative errno is the failure.
    if n as usize >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        if code != 0 {
            return Err(netlink_error(step, name, Errno::from_raw(-code)));
        }
        return Ok(());
    }
    Err(netlink_error(step, name, Errno::EPROTO))
}

const CREATE: u16 = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;

fn index_of(name: &str) -> Result<i32, NetworkError> {
    let sock = dgram_socket(libc::AF_INET).map_err(|e| netlink_error("opening a socket for", name, e))?;
    let mut req = ifreq(name)?;
    ioctl(
        sock.as_raw_fd(),
        libc::SIOCGIFINDEX,
        &mut req,
        "finding the index of",
        name,
    )?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex })
}

/// Gives `name` (in the current network namespace) `address`/`netmask` and brings it up.
pub fn configure(name: &str, address: Ipv4Addr, netmask: Ipv4Addr) -> Result<(), NetworkError> {
    let sock =
        dgram_socket(libc::AF_INET).map_err(|e| netlink_error("opening a socket to configure", name, e))?;
    let s = sock.as_raw_fd();
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_v4(address);
    ioctl(s, libc::SIOCSIFADDR, &mut req, "setting the address of", name)?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr_v4(netmask);
    ioctl(s, libc::SIOCSIFNETMASK, &mut req, "setting the netmask of", name)?;
    set_up(s, name)
}

/// Creates the bridge [`BRIDGE_NAME`] in the current network namespace with the network's
/// gateway address, and brings it and `lo` up.
pub fn create_bridge(gateway: Ipv4Addr, netmask: Ipv4Addr) -> Result<(), NetworkError> {
    crate::network::loopback_up()?;
    let mut m = Message::new(libc::RTM_NEWLINK, CREATE);
    m.ifinfomsg();
    m.attr_str(IFLA_IFNAME, BRIDGE_NAME);
    let info = m.begin(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "bridge");
    m.end(info);
    request(m.finish(), "creating the bridge", BRIDGE_NAME)?;
    configure(BRIDGE_NAME, gateway, netmask)
}

/// In the bridge's network namespace (the calling thread's): creates the veth pair `host` /
/// `peer`, `host` enslaved to the bridge and up, `peer` moved into the namespace `peer_netns`.
pub fn add_veth(host: &str, peer: &str, peer_netns: BorrowedFd) -> Result<(), NetworkError> {
    ifreq(host)?;
    ifreq(peer)?;
    let bridge = index_of(BRIDGE_NAME)?;
    let mut m = Message::new(libc::RTM_NEWLINK, CREATE);
    m.ifinfomsg();
    m.attr_str(IFLA_IFNAME, host);
    m.attr(IFLA_MASTER, &(bridge as u32).to_ne_bytes());
    let info = m.begin(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "veth");
    let data = m.begin(IFLA_INFO_DATA);
    let peer_attr = m.begin(VETH_INFO_PEER);
    m.ifinfomsg();
    m.attr_str(IFLA_IFNAME, peer);
    m.attr(IFLA_NET_NS_FD, &(peer_netns.as_raw_fd() as u32).to_ne_bytes());
    m.end(peer_attr);
    m.end(data);
    m.end(info);
    request(m.finish(), "creating the veth pair", host)?;
    let sock =
        dgram_socket(libc::AF_INET).map_err(|e| netlink_error("opening a socket to configure", host, e))?;
    set_up(sock.as_raw_fd(), host)
}

/// The veth ends on the bridge of the calling thread's network namespace, read from
/// `/proc/thread-self/net/dev` (which follows the thread's namespace, whatever is mounted).
pub fn veth_count() -> usize {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(name, _)| name.trim().starts_with("veth"))
                .count()
        })
        .unwrap_or(0)
}

/// The name of every network's holder process (checked before its pid is trusted).
pub const HOLDER_NAME: &str = "burrow-net";

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the namespace of network {network}: {message}")]
    Holder { network: String, message: String },
    #[error("attaching to network {network}: {source}")]
    Attach { network: String, source: NetworkError },
    #[error("attaching to network {network}: joining a network namespace: {}", .errno.desc())]
    Join { network: String, errno: Errno },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BridgeError + 'a {
    move |source| BridgeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A network's namespace, found or started, and the network's lock, held while this lives:
/// the holder does not exit while a container is being attached.
pub struct Holder {
    pub pid: i32,
    netns: File,
    network: String,
    _lock: Flock<File>,
}

/// The pid file and lock file of network `network`'s holder, under `dir`.
pub fn holder_files(dir: &Path, network: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{network}.pid")),
        dir.join(format!("{network}.lock")),
    )
}

/// The live holder of `network` named in its pid file, if any.
pub fn existing_holder(dir: &Path, network: &str) -> Option<i32> {
    let (pid_path, _) = holder_files(dir, network);
    let pid: i32 = fs::read_to_string(pid_path).ok()?.trim().parse().ok()?;
    // A recycled pid could be anyone's: it must be a holder.
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim_end() == HOLDER_NAME).then_some(pid)
}

/// Locks network `network` and returns its holder, started with `start` (which returns the
/// new holder's pid) when none runs. Parallel starts of containers on one network serialise
/// on the lock: one holder per network.
pub fn holder(
    dir: &Path,
    network: &str,
    start: impl FnOnce(&Path, &Path) -> Result<i32, String>,
) -> Result<Holder, BridgeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("creating", dir))?;
    let (pid_path, lock_path) = holder_files(dir, network);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error("opening", &lock_path))?;
    let lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| BridgeError::Io {
        what: "locking",
        path: lock_path.clone(),
        source: e.into(),
    })?;
    let pid = match existing_holder(dir, network) {
        Some(pid) => pid,
        None => {
            let pid = start(&pid_path, &lock_path).map_err(|message| BridgeError::Holder {
                network: network.to_string(),
                message,
            })?;
            let tmp = pid_path.with_extension("pid.tmp");
            fs::write(&tmp, pid.to_string())
                .and_then(|()| fs::rename(&tmp, &pid_path))
                .map_err(io_error("writing", &pid_path))?;
            pid
        }
    };
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let netns = File::open(&ns_path).map_err(io_error("opening", &ns_path))?;
    Ok(Holder {
        pid,
        netns,
        network: network.to_string(),
        _lock: lock,
    })
}

impl Holder {
    /// Connects the running process `container_pid`'s network namespace to the bridge: a veth
    /// pair, `interface` on the container's side with `address`/`netmask`. Done on a thread
    /// of its own, which alone moves between namespaces.
    pub fn attach(
        &self,
        container_pid: i32,
        interface: &str,
        address: Ipv4Addr,
        netmask: Ipv4Addr,
    ) -> Result<(), BridgeError> {
        let ns_path = PathBuf::from(format!("/proc/{container_pid}/ns/net"));
        let container = File::open(&ns_path).map_err(io_error("opening", &ns_path))?;
        let network = self.network.clone();
        let bridge_ns = &self.netns;
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<(), BridgeError> {
                    let join = |ns: &File| {
                        setns(ns, CloneFlags::CLONE_NEWNET).map_err(|errno| BridgeError::Join {
                            network: network.clone(),
                            errno,
                        })
                    };
                    let attach = |source| BridgeError::Attach {
                        network: network.clone(),
                        source,
                    };
                    join(bridge_ns)?;
                    // Random: a restarted container's old pair may still be going away.
                    let mut bytes = [0u8; 6];
                    // SAFETY: bytes is a live, writable buffer of its length.
                    if unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) } != 6 {
                        return Err(BridgeError::Join {
                            network: network.clone(),
                            errno: Errno::last(),
                        });
                    }
                    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    let host = format!("veth{}", &suffix[..11]);
                    add_veth(&host, interface, container.as_fd()).map_err(attach)?;
                    join(&container)?;
                    configure(interface, address, netmask).map_err(attach)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(BridgeError::Holder {
                        network: network.clone(),
                        message: "the attaching thread panicked".into(),
                    })
                })
        })
    }
}

/// The holder (`burrow __network-holder`, a fresh single-threaded process): forks the
/// holder proper, which makes the network namespace with its bridge and reports its pid, to
/// be printed; the holder then lives until no container is attached (no veth left on the
/// bridge), checking every 2 s, and exits under the network's lock (so never while a
/// container is being attached), removing its pid file.
pub fn holder_main(
    gateway: Ipv4Addr,
    netmask: Ipv4Addr,
    pid_path: &Path,
    lock_path: &Path,
) -> Result<i32, String> {
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| e.desc().to_string())?;
    // SAFETY: the caller is a fresh single-threaded process; the child never returns.
    match unsafe { nix::unistd::fork() }.map_err(|e| e.desc().to_string())? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut text = String::new();
            let _ = File::from(ready_r).read_to_string(&mut text);
            match text.strip_prefix("ok ") {
                Some(pid) => pid
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad holder reply {text:?}")),
                None if text.is_empty() => Err("the network namespace holder exited".into()),
                None => Err(text),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let _ = nix::unistd::setsid();
            let made = make_namespace(gateway, netmask);
            let mut ready = File::from(ready_w);
            if let Err(message) = made {
                let _ = ready.write_all(message.as_bytes());
                // SAFETY: leaving without running anything of the parent's.
                unsafe { libc::_exit(1) }
            }
            let _ = ready.write_all(format!("ok {}", std::process::id()).as_bytes());
            drop(ready);
            holder_loop(pid_path, lock_path)
        }
    }
}

/// The holder as the main process of a unit of the user's manager (started there when the
/// container starting it runs in a unit itself, whose stop would end a forked holder with
/// it): joins `userns` (the user namespace of the starter, which the manager's processes are
/// not in), makes the namespace, reports `ok PID` on stdout, and holds it.
pub fn holder_foreground(
    userns: Option<File>,
    gateway: Ipv4Addr,
    netmask: Ipv4Addr,
    pid_path: &Path,
    lock_path: &Path,
) -> Result<std::convert::Infallible, String> {
    if let Some(ns) = userns {
        setns(&ns, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("joining the user namespace: {}", e.desc()))?;
    }
    make_namespace(gateway, netmask)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ok {}", std::process::id());
    let _ = out.flush();
    holder_loop(pid_path, lock_path)
}

/// The holder's own network namespace with the bridge in it.
fn make_namespace(gateway: Ipv4Addr, netmask: Ipv4Addr) -> Result<(), String> {
    let _ = nix::sys::prctl::set_name(c"burrow-net");
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("creating a network namespace: {}", e.desc()))?;
    create_bridge(gateway, netmask).map_err(|e| e.to_string())
}

fn holder_loop(pid_path: &Path, lock_path: &Path) -> ! {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = nix::unistd::chdir("/");
    let me = std::process::id().to_string();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        if veth_count() > 0 {
            continue;
        }
        let Ok(file) = OpenOptions::new().write(true).open(lock_path) else {
            // SAFETY: _exit ends the holder.
            unsafe { libc::_exit(0) }
        };
        let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusive) else {
            continue;
        };
        if veth_count() == 0 {
            if fs::read_to_string(pid_path).is_ok_and(|p| p.trim() == me) {
                let _ = fs::remove_file(pid_path);
            }
            // SAFETY: _exit ends the holder; the lock goes with it.
            unsafe { libc::_exit(0) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_nested_attributes() {
        let mut m = Message::new(libc::RTM_NEWLINK, CREATE);
        m.ifinfomsg();
        let info = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        m.end(info);
        let bytes = m.finish();
        assert_eq!(
            u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        // Header 16 + ifinfomsg 16, then LINKINFO (4) holding INFO_KIND (4 + "veth\0" padded to 8).
        assert_eq!(bytes.len(), 16 + 16 + 4 + 12);
        assert_eq!(u16::from_ne_bytes([bytes[32], bytes[33]]), 16);
        assert_eq!(
            u16::from_ne_bytes([bytes[34], bytes[35]]),
            IFLA_LINKINFO | NLA_F_NESTED
        );
        assert_eq!(u16::from_ne_bytes([bytes[36], bytes[37]]), 9);
    }

    /// As root (unit tests run as root): a bridge in one new network namespace, a veth pair
    /// from it into another, the container's end configured. Skipped for other users.
    #[test]
    fn bridge_and_veth_in_new_namespaces() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let result = std::thread::spawn(|| -> Result<(usize, String), String> {
            use nix::sched::{unshare, CloneFlags};
            // The "container": a namespace of its own, kept by an fd.
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            let container = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
            // The bridge's namespace.
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            let mask = Ipv4Addr::new(255, 255, 255, 0);
            create_bridge(Ipv4Addr::new(10, 89, 0, 1), mask).map_err(|e| e.to_string())?;
            add_veth("vethtest", "eth0", container.as_fd()).map_err(|e| e.to_string())?;
            let count = veth_count();
            nix::sched::setns(&container, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            configure("eth0", Ipv4Addr::new(10, 89, 0, 2), mask).map_err(|e| e.to_string())?;
            let route = std::fs::read_to_string("/proc/thread-self/net/route").map_err(|e| e.to_string())?;
            Ok((count, route))
        })
        .join()
        .unwrap();
        let (count, route) = result.unwrap();
        assert_eq!(count, 1);
        // The connected route of 10.89.0.0/24 (little-endian 0059000A) on eth0.
        assert!(route.lines().any(|l| l.starts_with("eth0\t0000590A")), "{route}");
    }
}
