//! ICMP echo: the gateway and DNS addresses answer themselves; echoes to other hosts go out
//! through unprivileged ping sockets (`SOCK_DGRAM, IPPROTO_ICMP`), which the host allows only to
//! groups in `net.ipv4.ping_group_range`. Without them, those echoes are dropped, as slirp4netns.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::Interest;

use crate::packet;
use crate::slab::Slab;
use crate::stack::{Ctx, Kind};

const IDLE: Duration = Duration::from_secs(30);
const MAX_FLOWS: usize = 256;

struct PingFlow {
    fd: OwnedFd,
    key: (IpAddr, u16, bool),
    /// (host address, address the container pinged).
    peers: Vec<(IpAddr, IpAddr)>,
    last_active: Instant,
}

#[derive(Default)]
pub struct EchoRelay {
    flows: Slab<PingFlow>,
    by_key: HashMap<(IpAddr, u16, bool), usize>,
    /// Ping sockets were refused once: do not try again.
    unavailable: bool,
    scratch: Vec<u8>,
}

impl EchoRelay {
    /// An echo request from the container; `message` is the whole ICMP message.
    pub fn on_echo(&mut self, ctx: &mut Ctx, src: IpAddr, dst: IpAddr, message: &[u8]) {
        if !ctx.nat.is_container(src) {
            return;
        }
        if ctx.nat.answers_echo(dst) {
            reply(ctx, dst, src, message, None);
            return;
        }
        if self.unavailable {
            return;
        }
        let Some(target) = ctx.nat.outbound(SocketAddr::new(dst, 1)).map(|a| a.ip()) else {
            return;
        };
        let ident = u16::from_be_bytes([message[4], message[5]]);
        let key = (src, ident, target.is_ipv6());
        let index = match self.by_key.get(&key) {
            Some(&i) => i,
            None => {
                if self.flows.len() >= MAX_FLOWS {
                    return;
                }
                let fd = match ping_socket(target.is_ipv6()) {
                    Ok(fd) => fd,
                    Err(_) => {
                        self.unavailable = true;
                        return;
                    }
                };
                let index = self.flows.vacant();
                let raw = fd.as_raw_fd();
                if ctx
                    .registry
                    .register(&mut SourceFd(&raw), Kind::Ping.token(index), Interest::READABLE)
                    .is_err()
                {
                    return;
                }
                self.flows.insert(PingFlow {
                    fd,
                    key,
                    peers: Vec::new(),
                    last_active: ctx.now,
                });
                self.by_key.insert(key, index);
                index
            }
        };
        let flow = self.flows.get_mut(index).expect("flow exists");
        flow.last_active = ctx.now;
        if !flow.peers.contains(&(target, dst)) {
            if flow.peers.len() >= 16 {
                flow.peers.remove(0);
            }
            flow.peers.push((target, dst));
        }
        let _ = send_to(&flow.fd, message, target);
    }

    /// Echo replies on a ping socket: back to the container with its own identifier.
    pub fn on_readable(&mut self, ctx: &mut Ctx, index: usize) {
        let Some(flow) = self.flows.get_mut(index) else {
            return;
        };
        self.scratch.resize(65536, 0);
        while let Ok((n, from)) = recv_from(&flow.fd, &mut self.scratch) {
            flow.last_active = ctx.now;
            let Some(&(_, visible)) = flow.peers.iter().find(|(h, _)| *h == from) else {
                continue;
            };
            let (container, ident, _) = flow.key;
            if n >= packet::ICMP_HEADER {
                reply(ctx, visible, container, &self.scratch[..n], Some(ident));
            }
        }
    }

    pub fn sweep(&mut self, ctx: &mut Ctx) {
        for index in self.flows.indices() {
            let flow = self.flows.get(index).expect("flow exists");
            if ctx.now.duration_since(flow.last_active) >= IDLE {
                let flow = self.flows.remove(index).expect("flow exists");
                let _ = ctx.registry.deregister(&mut SourceFd(&flow.fd.as_raw_fd()));
                self.by_key.remove(&flow.key);
            }
        }
    }
}

/// Sends an echo reply from `src` to `dst` carrying `message`'s identifier (or `ident`),
/// sequence number and data.
fn reply(ctx: &mut Ctx, src: IpAddr, dst: IpAddr, message: &[u8], ident: Option<u16>) {
    let Some(macs) = ctx.link.macs() else {
        return;
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return;
    }
    let offset = packet::icmp_offset(src.is_ipv6());
    if offset + message.len() > ctx.device.frame_mtu() {
        return;
    }
    let ip_ident = ctx.link.next_ident();
    ctx.device.send_with(offset + message.len(), |buf| {
        buf[offset..].copy_from_slice(message);
        if let Some(id) = ident {
            buf[offset + 4..offset + 6].copy_from_slice(&id.to_be_bytes());
        }
        packet::write_echo_reply(buf, macs, src, dst, message.len(), ip_ident)
    });
}

fn ping_socket(v6: bool) -> io::Result<OwnedFd> {
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: socket() with constant arguments; the result is checked before it is owned.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_to(fd: &OwnedFd, message: &[u8], to: IpAddr) -> io::Result<()> {
    let addr = nix::sys::socket::SockaddrStorage::from(SocketAddr::new(to, 0));
    nix::sys::socket::sendto(
        fd.as_raw_fd(),
        message,
        &addr,
        nix::sys::socket::MsgFlags::empty(),
    )?;
    Ok(())
}

fn recv_from(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, IpAddr)> {
    let (n, addr) = nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd(), buf)?;
    let ip = addr
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((n, ip))
}
