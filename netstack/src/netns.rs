//! Sockets made in the container's network namespace, from the stack's process in the host's.
//!
//! A socket belongs to the network namespace it was made in, whoever uses it afterwards. The
//! stack cannot enter the container's namespace and come back (the host's is owned by the initial
//! user namespace, where it has no capabilities), and the container's may belong to a user
//! namespace that only a single-threaded process can join. So a forked helper joins it once and
//! makes sockets on request, passing each back over a unix socket (SCM_RIGHTS). The helper exits
//! when that socket hangs up, and with the stack (PR_SET_PDEATHSIG).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use nix::unistd::Pid;

/// `ioctl(NS_GET_USERNS)` on a namespace fd: the user namespace that owns it.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// A request is answered at once; a helper that does not answer in this many seconds is taken
/// as gone.
const ANSWER_TIMEOUT_SECS: i64 = 2;

/// The helper in a network namespace; see the module's documentation.
pub struct NetnsSockets {
    socket: OwnedFd,
    helper: Pid,
}

impl NetnsSockets {
    /// Forks the helper into `netns`. Whether it could join shows at the first [`Self::socket`].
    pub fn start(netns: &OwnedFd) -> io::Result<NetnsSockets> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        setsockopt(
            &ours,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(ANSWER_TIMEOUT_SECS, 0),
        )?;
        let parent = std::process::id();
        // SAFETY: the stack's process is single-threaded (and glibc's fork leaves malloc usable
        // in the child of a threaded one, as in tests); the child ends with _exit.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                drop(ours);
                // SAFETY: prctl and getppid take plain integers.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() as u32 != parent {
                        libc::_exit(0);
                    }
                }
                // Copies of the stack's listening sockets and connections must not outlive it.
                close_all_but(&mut [theirs.as_raw_fd(), netns.as_raw_fd()]);
                if join(netns).is_ok() {
                    serve(&theirs);
                }
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => Ok(NetnsSockets {
                socket: ours,
                helper: child,
            }),
        }
    }

    /// A new non-blocking TCP socket of `family` (`AF_INET` or `AF_INET6`) in the namespace.
    /// The helper's own failure comes as its errno; a helper that is gone (or never joined the
    /// namespace) as an error of kind `BrokenPipe` without one.
    pub fn tcp_socket(&self, family: libc::c_int) -> io::Result<OwnedFd> {
        let gone = || {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the helper in the container's network namespace is gone",
            )
        };
        let request = [if family == libc::AF_INET6 { b'6' } else { b'4' }];
        nix::sys::socket::send(self.socket.as_raw_fd(), &request, MsgFlags::MSG_NOSIGNAL)
            .map_err(|_| gone())?;
        let mut answer = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut answer)];
        let mut space = nix::cmsg_space!(RawFd);
        let msg = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|_| gone())?;
        let bytes = msg.bytes;
        for cmsg in msg.cmsgs().map_err(|_| gone())? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel installed this descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        match bytes {
            4 => Err(io::Error::from_raw_os_error(i32::from_ne_bytes(answer))),
            _ => Err(gone()),
        }
    }
}

impl Drop for NetnsSockets {
    fn drop(&mut self) {
        // Hung up, the helper exits.
        let _ = nix::sys::socket::shutdown(self.socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = nix::sys::wait::waitpid(self.helper, None);
    }
}

/// Closes every descriptor above stderr except `keep`.
fn close_all_but(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut from = 3u32;
    for &fd in keep.iter() {
        let fd = fd as u32;
        if fd > from {
            // SAFETY: close_range on descriptors this process no longer needs.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0u32) };
        }
        from = from.max(fd + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32) };
}

/// Joins `netns`, and first the user namespace that owns it when that is not ours.
fn join(netns: &OwnedFd) -> nix::Result<()> {
    use nix::sched::{setns, CloneFlags};
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor.
    let owner = unsafe { libc::ioctl(netns.as_raw_fd(), NS_GET_USERNS) };
    if owner >= 0 {
        // SAFETY: a new descriptor owned by nobody else.
        let owner = unsafe { OwnedFd::from_raw_fd(owner) };
        let ours = nix::sys::stat::stat("/proc/self/ns/user").map(|s| s.st_ino);
        let theirs = nix::sys::stat::fstat(&owner).map(|s| s.st_ino);
        if ours.ok() != theirs.ok() {
            setns(&owner, CloneFlags::CLONE_NEWUSER)?;
        }
    }
    setns(netns, CloneFlags::CLONE_NEWNET)
}

/// Answers requests until the stack hangs up: one socket each, or its errno.
fn serve(socket: &OwnedFd) {
    loop {
        let mut request = [0u8; 1];
        match nix::sys::socket::recv(socket.as_raw_fd(), &mut request, MsgFlags::empty()) {
            Ok(0) => return,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let family = if request[0] == b'6' {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        // SAFETY: socket takes plain integers; the result is checked.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        let sent = if fd < 0 {
            let errno = nix::errno::Errno::last_raw().to_ne_bytes();
            nix::sys::socket::send(socket.as_raw_fd(), &errno, MsgFlags::MSG_NOSIGNAL).map(drop)
        } else {
            // SAFETY: a new descriptor owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let fds = [fd.as_raw_fd()];
            sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(b"s")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map(drop)
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::getsockopt;

    #[test]
    fn makes_tcp_sockets_in_the_namespace() {
        // Our own network namespace (unit tests run as root, who may join it).
        let netns = OwnedFd::from(std::fs::File::open("/proc/self/ns/net").unwrap());
        let sockets = NetnsSockets::start(&netns).unwrap();
        for family in [libc::AF_INET, libc::AF_INET6] {
            let fd = sockets.tcp_socket(family).unwrap();
            assert_eq!(getsockopt(&fd, sockopt::SockType).unwrap(), SockType::Stream);
            let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            assert_ne!(flags & libc::O_NONBLOCK, 0, "non-blocking");
        }
    }

    #[test]
    fn a_namespace_it_cannot_join_is_an_error() {
        let not_a_namespace = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let sockets = NetnsSockets::start(&not_a_namespace).unwrap();
        let error = sockets.tcp_socket(libc::AF_INET).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe, "{error}");
    }
}
