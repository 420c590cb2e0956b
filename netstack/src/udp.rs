//! UDP relay, outside smoltcp: one host socket per container source endpoint (and address
//! family), sending to any destination and taking replies from any (endpoint-independent mapping,
//! as slirp4netns). Idle flows expire: 240 s, 10 s for DNS queries, as libslirp.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use mio::Interest;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};

use crate::packet::{self, ETH_HEADER, IPV4_HEADER, IPV6_HEADER, UDP_HEADER};
use crate::slab::Slab;
use crate::stack::{Ctx, Kind};

const IDLE: Duration = Duration::from_secs(240);
const IDLE_DNS: Duration = Duration::from_secs(10);
pub const MAX_FLOWS: usize = 4096;
/// Remembered destinations per flow, for translating replies back.
const MAX_PEERS: usize = 32;

struct Flow {
    socket: UdpSocket,
    container: SocketAddr,
    v6: bool,
    /// (host address, address the container sent to): replies from the first appear to come
    /// from the second.
    peers: Vec<(SocketAddr, SocketAddr)>,
    last_active: Instant,
    dns: bool,
}

#[derive(Default)]
pub struct UdpRelay {
    flows: Slab<Flow>,
    by_source: HashMap<(SocketAddr, bool), usize>,
    scratch: Vec<u8>,
    /// Names answered here rather than relayed (`SlirpConfig::names_file`).
    names: crate::dns::LocalNames,
}

impl UdpRelay {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// A datagram from the container.
    pub fn on_datagram(&mut self, ctx: &mut Ctx, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        if !ctx.nat.is_container(src.ip()) {
            return;
        }
        if let (53, Some(path)) = (dst.port(), &ctx.nat.slirp.names_file) {
            if ctx.nat.is_dns(dst.ip()) {
                if let Some(reply) = self.names.answer(path, payload) {
                    send_to_container(ctx, dst, src, &reply);
                    return;
                }
            }
        }
        let Some(target) = ctx.nat.outbound(dst) else {
            return;
        };
        let v6 = target.is_ipv6();
        let index = match self.by_source.get(&(src, v6)) {
            Some(&i) => i,
            None => {
                if self.flows.len() >= MAX_FLOWS {
                    return;
                }
                let bind: SocketAddr = if v6 {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                };
                let Ok(mut socket) = UdpSocket::bind(bind) else {
                    return;
                };
                // ICMP errors for the datagrams it sends (a closed port answers "port
                // unreachable"), queued with their destination: passed on to the container.
                let _ = if v6 {
                    setsockopt(&socket, sockopt::Ipv6RecvErr, &true)
                } else {
                    setsockopt(&socket, sockopt::Ipv4RecvErr, &true)
                };
                let index = self.flows.vacant();
                if ctx
                    .registry
                    .register(&mut socket, Kind::UdpFlow.token(index), Interest::READABLE)
                    .is_err()
                {
                    return;
                }
                let dns = dst.port() == 53 && ctx.nat.is_dns(dst.ip());
                self.flows.insert(Flow {
                    socket,
                    container: src,
                    v6,
                    peers: Vec::new(),
                    last_active: ctx.now,
                    dns,
                });
                self.by_source.insert((src, v6), index);
                index
            }
        };
        let flow = self.flows.get_mut(index).expect("flow exists");
        flow.last_active = ctx.now;
        if !flow.peers.iter().any(|&(h, d)| h == target && d == dst) {
            if flow.peers.len() >= MAX_PEERS {
                flow.peers.remove(0);
            }
            flow.peers.push((target, dst));
        }
        // A full socket buffer drops the datagram, as a congested link would.
        let _ = flow.socket.send_to(payload, target);
    }

    /// Replies on a flow's host socket: each becomes a datagram to the container.
    pub fn on_readable(&mut self, ctx: &mut Ctx, index: usize) {
        let Some(flow) = self.flows.get_mut(index) else {
            return;
        };
        if self.scratch.len() < 65536 {
            self.scratch.resize(65536, 0);
        }
        loop {
            let (n, from) = match flow.socket.recv_from(&mut self.scratch) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    pass_on_port_unreachable(ctx, flow);
                    continue;
                }
                Err(_) => {
                    // An error queued after the last read reports no error on recv: drain it.
                    pass_on_port_unreachable(ctx, flow);
                    return;
                }
            };
            flow.last_active = ctx.now;
            let visible = match flow.peers.iter().find(|(h, _)| *h == from) {
                Some(&(_, d)) => d,
                None => match reply_source(ctx, from) {
                    Some(s) => s,
                    None => continue,
                },
            };
            if visible.is_ipv4() != flow.container.is_ipv4() {
                continue;
            }
            send_to_container(ctx, visible, flow.container, &self.scratch[..n]);
        }
    }

    /// Expires idle flows.
    pub fn sweep(&mut self, ctx: &mut Ctx) {
        for index in self.flows.indices() {
            let flow = self.flows.get(index).expect("flow exists");
            let idle = if flow.dns { IDLE_DNS } else { IDLE };
            if ctx.now.duration_since(flow.last_active) >= idle {
                let mut flow = self.flows.remove(index).expect("flow exists");
                let _ = ctx.registry.deregister(&mut flow.socket);
                self.by_source.remove(&(flow.container, flow.v6));
            }
        }
    }
}

/// Drains the flow's error queue; each "port unreachable" for a datagram the container sent
/// becomes one for the container, from the address it sent to.
fn pass_on_port_unreachable(ctx: &mut Ctx, flow: &Flow) {
    loop {
        let mut quoted = [0u8; 64];
        let mut iov = [io::IoSliceMut::new(&mut quoted)];
        let mut space = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let Ok(msg) = recvmsg::<SockaddrStorage>(
            flow.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) else {
            return;
        };
        let unreachable = msg.cmsgs().into_iter().flatten().any(|c| match c {
            ControlMessageOwned::Ipv4RecvErr(e, _) => {
                e.ee_origin == libc::SO_EE_ORIGIN_ICMP && e.ee_type == 3 && e.ee_code == 3
            }
            ControlMessageOwned::Ipv6RecvErr(e, _) => {
                e.ee_origin == libc::SO_EE_ORIGIN_ICMP6 && e.ee_type == 1 && e.ee_code == 4
            }
            _ => false,
        });
        let host_dst = msg.address.and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                })
        });
        let (Some(host_dst), true) = (host_dst, unreachable) else {
            continue;
        };
        let Some(&(_, visible)) = flow.peers.iter().find(|(h, _)| *h == host_dst) else {
            continue;
        };
        let Some(macs) = ctx.link.macs() else {
            return;
        };
        if visible.is_ipv4() != flow.container.is_ipv4() {
            continue;
        }
        // The quoted UDP length: what the kernel returns is the offending datagram's payload.
        let udp_len = UDP_HEADER + msg.bytes;
        let ident = ctx.link.next_ident();
        let container = flow.container;
        ctx.device.send_with(packet::PORT_UNREACHABLE_LEN, |buf| {
            packet::write_port_unreachable(buf, macs, container, visible, udp_len, ident)
        });
    }
}

/// The source a datagram from host address `from` gets in the container when the container
/// did not send to `from` itself: the host's loopback appears as the gateway (when the container
/// may reach it), anything else as itself.
fn reply_source(ctx: &Ctx, from: SocketAddr) -> Option<SocketAddr> {
    let s = &ctx.nat.slirp;
    match from.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => s
            .allow_host_loopback
            .then(|| SocketAddr::new(s.gateway().into(), from.port())),
        IpAddr::V6(ip) if ip.is_loopback() => s
            .allow_host_loopback
            .then(|| SocketAddr::new(s.gateway6().into(), from.port())),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) if !v4.is_loopback() => Some(SocketAddr::new(v4.into(), from.port())),
            Some(_) => None,
            None => Some(from),
        },
        IpAddr::V4(_) => Some(from),
    }
}

/// Sends a datagram to the container, in fragments when it is larger than the MTU.
pub fn send_to_container(ctx: &mut Ctx, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let Some(macs) = ctx.link.macs() else {
        return;
    };
    let v6 = src.is_ipv6();
    let offset = packet::udp_payload_offset(v6);
    let frame_mtu = ctx.device.frame_mtu();
    if offset + payload.len() <= frame_mtu {
        let ident = ctx.link.next_ident();
        ctx.device.send_with(offset + payload.len(), |buf| {
            buf[offset..].copy_from_slice(payload);
            packet::write_udp(buf, macs, src, dst, payload.len(), ident)
        });
        return;
    }
    if let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) {
        // IPv6 fragments (the stack is the datagram's source, so it may fragment): the UDP
        // checksum covers the whole datagram, so build it whole first.
        let mut whole = vec![0u8; offset + payload.len()];
        whole[offset..].copy_from_slice(payload);
        packet::write_udp(&mut whole, macs, src, dst, payload.len(), 0);
        let datagram = &whole[ETH_HEADER + IPV6_HEADER..];
        let ident = u32::from(ctx.link.next_ident());
        let chunk = (frame_mtu - ETH_HEADER - IPV6_HEADER - 8) & !7;
        for (i, part) in datagram.chunks(chunk).enumerate() {
            let at = i * chunk;
            let more = at + part.len() < datagram.len();
            ctx.device
                .send_with(ETH_HEADER + IPV6_HEADER + 8 + part.len(), |buf| {
                    packet::write_ipv6_fragment(buf, macs, s, d, 17, ident, at, more, part)
                });
        }
        return;
    }
    // IPv4 fragments: the first carries the UDP header; all but the last carry a multiple of 8.
    let ident = ctx.link.next_ident();
    let mut datagram = Vec::with_capacity(UDP_HEADER + payload.len());
    datagram.extend_from_slice(&[0; UDP_HEADER]);
    datagram.extend_from_slice(payload);
    let mut header = [0u8; ETH_HEADER + IPV4_HEADER + UDP_HEADER];
    packet::write_udp(&mut header, macs, src, dst, payload.len(), ident);
    datagram[..UDP_HEADER].copy_from_slice(&header[ETH_HEADER + IPV4_HEADER..]);
    let chunk = (frame_mtu - ETH_HEADER - IPV4_HEADER) & !7;
    let mut at = 0;
    while at < datagram.len() {
        let part = &datagram[at..(at + chunk).min(datagram.len())];
        let more = at + part.len() < datagram.len();
        ctx.device
            .send_with(ETH_HEADER + IPV4_HEADER + part.len(), |buf| {
                buf[..ETH_HEADER + IPV4_HEADER].copy_from_slice(&header[..ETH_HEADER + IPV4_HEADER]);
                buf[ETH_HEADER + IPV4_HEADER..].copy_from_slice(part);
                packet::set_fragment(&mut buf[ETH_HEADER..], at, more, part.len());
                ETH_HEADER + IPV4_HEADER + part.len()
            });
        at += part.len();
    }
}
