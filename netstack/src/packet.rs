//! Reading the container's frames before smoltcp sees them, and writing the frames that the
//! stack sends outside smoltcp (UDP, ICMP echo replies).
//!
//! Only TCP, ARP and NDP go through smoltcp; UDP and ICMP echo are relayed by our own code
//! (smoltcp's sockets need a bound local port, and any-IP would make it answer for every host).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::wire::{checksum, EthernetAddress};

use crate::slirp::SlirpConfig;

pub const ETH_HEADER: usize = 14;
pub const IPV4_HEADER: usize = 20;
pub const IPV6_HEADER: usize = 40;
pub const UDP_HEADER: usize = 8;
pub const ICMP_HEADER: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;

/// What to do with a frame from the container.
#[derive(Debug, PartialEq, Eq)]
pub enum Ingress<'a> {
    /// Hand it to smoltcp (ARP and NDP for the gateway's addresses, TCP segments).
    Stack,
    /// A TCP SYN (without ACK): the flow may need a socket before smoltcp sees it. Also goes to
    /// smoltcp afterwards.
    TcpSyn {
        src: SocketAddr,
        dst: SocketAddr,
    },
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: &'a [u8],
    },
    /// An ICMP (or ICMPv6) echo request; `message` is the whole ICMP message.
    Echo {
        src: IpAddr,
        dst: IpAddr,
        message: &'a [u8],
    },
    Drop,
}

/// The Ethernet source of a frame and the IP source it carries, for learning the container's MAC.
pub fn source(frame: &[u8]) -> Option<(EthernetAddress, IpAddr)> {
    if frame.len() < ETH_HEADER + IPV4_HEADER {
        return None;
    }
    let mac = EthernetAddress::from_bytes(&frame[6..12]);
    let ip = &frame[ETH_HEADER..];
    match ethertype(frame) {
        ETHERTYPE_IPV4 => Some((mac, IpAddr::V4(v4(&ip[12..16])))),
        ETHERTYPE_IPV6 if ip.len() >= IPV6_HEADER => Some((mac, IpAddr::V6(v6(&ip[8..24])))),
        ETHERTYPE_ARP if ip.len() >= 28 => Some((mac, IpAddr::V4(v4(&ip[14..18])))),
        _ => None,
    }
}

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

fn port(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Classifies a frame from the container.
pub fn classify<'a>(frame: &'a [u8], cfg: &SlirpConfig) -> Ingress<'a> {
    if frame.len() < ETH_HEADER {
        return Ingress::Drop;
    }
    let l3 = &frame[ETH_HEADER..];
    match ethertype(frame) {
        ETHERTYPE_ARP => classify_arp(l3, cfg),
        ETHERTYPE_IPV4 => classify_ipv4(l3),
        ETHERTYPE_IPV6 if cfg.enable_ipv6 => classify_ipv6(l3, cfg),
        _ => Ingress::Drop,
    }
}

/// ARP requests are answered only for the gateway and the DNS address. With any-IP smoltcp would
/// answer for every address, including the container's own, which breaks duplicate address
/// detection (and arping) in the container.
fn classify_arp(arp: &[u8], cfg: &SlirpConfig) -> Ingress<'static> {
    if arp.len() < 28 {
        return Ingress::Drop;
    }
    let operation = port(&arp[6..8]);
    let target = v4(&arp[24..28]);
    match operation {
        1 if target == cfg.gateway() || target == cfg.dns() => Ingress::Stack,
        2 => Ingress::Stack,
        _ => Ingress::Drop,
    }
}

fn classify_ipv4(ip: &[u8]) -> Ingress<'_> {
    if ip.len() < IPV4_HEADER || ip[0] >> 4 != 4 {
        return Ingress::Drop;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(port(&ip[2..4]));
    if header_len < IPV4_HEADER || total_len < header_len || total_len > ip.len() {
        return Ingress::Drop;
    }
    let fragmented = port(&ip[6..8]) & 0x3fff != 0;
    let (src, dst) = (IpAddr::V4(v4(&ip[12..16])), IpAddr::V4(v4(&ip[16..20])));
    let payload = &ip[header_len..total_len];
    match ip[9] {
        // smoltcp is built without reassembly: a fragment would pass for a whole segment. Linux
        // never fragments TCP (it sets DF and follows the MTU).
        PROTO_TCP if fragmented => Ingress::Drop,
        PROTO_TCP => classify_tcp(src, dst, payload),
        // Fragmented datagrams are not reassembled (MTU 65520 makes them rare).
        PROTO_UDP if !fragmented => classify_udp(src, dst, payload),
        PROTO_ICMP if !fragmented && payload.len() >= ICMP_HEADER && payload[0] == 8 && payload[1] == 0 => {
            Ingress::Echo {
                src,
                dst,
                message: payload,
            }
        }
        _ => Ingress::Drop,
    }
}

fn classify_ipv6<'a>(ip: &'a [u8], cfg: &SlirpConfig) -> Ingress<'a> {
    if ip.len() < IPV6_HEADER || ip[0] >> 4 != 6 {
        return Ingress::Drop;
    }
    let payload_len = usize::from(port(&ip[4..6]));
    if IPV6_HEADER + payload_len > ip.len() {
        return Ingress::Drop;
    }
    let (src, dst) = (IpAddr::V6(v6(&ip[8..24])), IpAddr::V6(v6(&ip[24..40])));
    let payload = &ip[IPV6_HEADER..IPV6_HEADER + payload_len];
    match ip[6] {
        PROTO_TCP => classify_tcp(src, dst, payload),
        PROTO_UDP => classify_udp(src, dst, payload),
        PROTO_ICMPV6 if payload.len() >= ICMP_HEADER => match payload[0] {
            ICMPV6_ECHO_REQUEST => Ingress::Echo {
                src,
                dst,
                message: payload,
            },
            // Neighbour solicitations only for the gateway's addresses (see classify_arp).
            ICMPV6_NEIGHBOR_SOLICIT if payload.len() >= 24 => {
                let target = v6(&payload[8..24]);
                if target == cfg.gateway6() || target == cfg.dns6() || target == gateway_link_local(cfg) {
                    Ingress::Stack
                } else {
                    Ingress::Drop
                }
            }
            // Neighbour advertisements; router solicitations and MLD are not answered.
            136 => Ingress::Stack,
            _ => Ingress::Drop,
        },
        _ => Ingress::Drop,
    }
}

/// The gateway's IPv6 link-local address (fe80::2).
pub fn gateway_link_local(_cfg: &SlirpConfig) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)
}

fn classify_tcp(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Ingress<'_> {
    if tcp.len() < 20 {
        return Ingress::Drop;
    }
    let flags = tcp[13];
    let (syn, ack, rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x04 != 0);
    if syn && !ack && !rst {
        Ingress::TcpSyn {
            src: SocketAddr::new(src, port(&tcp[0..2])),
            dst: SocketAddr::new(dst, port(&tcp[2..4])),
        }
    } else {
        Ingress::Stack
    }
}

fn classify_udp(src: IpAddr, dst: IpAddr, udp: &[u8]) -> Ingress<'_> {
    if udp.len() < UDP_HEADER {
        return Ingress::Drop;
    }
    let len = usize::from(port(&udp[4..6]));
    if len < UDP_HEADER || len > udp.len() {
        return Ingress::Drop;
    }
    Ingress::Udp {
        src: SocketAddr::new(src, port(&udp[0..2])),
        dst: SocketAddr::new(dst, port(&udp[2..4])),
        payload: &udp[UDP_HEADER..len],
    }
}

/// A one-line description of a frame, for `BURROW_NETSTACK_DEBUG`.
pub fn summary(frame: &[u8]) -> String {
    if frame.len() < ETH_HEADER {
        return format!("runt frame of {} bytes", frame.len());
    }
    let l3 = &frame[ETH_HEADER..];
    let (src, dst, proto, l4) = match ethertype(frame) {
        ETHERTYPE_ARP if l3.len() >= 28 => {
            return format!(
                "ARP op {} {} asks/tells {}",
                port(&l3[6..8]),
                v4(&l3[14..18]),
                v4(&l3[24..28])
            )
        }
        ETHERTYPE_IPV4 if l3.len() >= IPV4_HEADER => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let end = usize::from(port(&l3[2..4])).min(l3.len());
            let l4 = l3.get(ihl.min(end)..end).unwrap_or_default();
            (
                IpAddr::V4(v4(&l3[12..16])),
                IpAddr::V4(v4(&l3[16..20])),
                l3[9],
                l4,
            )
        }
        ETHERTYPE_IPV6 if l3.len() >= IPV6_HEADER => {
            let end = (IPV6_HEADER + usize::from(port(&l3[4..6]))).min(l3.len());
            (
                IpAddr::V6(v6(&l3[8..24])),
                IpAddr::V6(v6(&l3[24..40])),
                l3[6],
                &l3[IPV6_HEADER..end],
            )
        }
        t => return format!("ethertype {t:#06x}, {} bytes", frame.len()),
    };
    match proto {
        PROTO_TCP if l4.len() >= 20 => {
            let flags = l4[13];
            let names: String = [(0x02, 'S'), (0x10, '.'), (0x01, 'F'), (0x04, 'R'), (0x08, 'P')]
                .iter()
                .filter(|(bit, _)| flags & bit != 0)
                .map(|(_, c)| *c)
                .collect();
            let header = (usize::from(l4[12] >> 4) * 4).clamp(20, l4.len());
            let data = l4.len() - header;
            // The window scale option, shown on SYNs (it gives the meaning of every window).
            let mut options = &l4[20..header];
            let mut wscale = String::new();
            while let [kind, rest @ ..] = options {
                match (*kind, rest) {
                    (0, _) => break,
                    (1, _) => options = rest,
                    (3, [3, shift, ..]) => {
                        wscale = format!(" wscale {shift}");
                        break;
                    }
                    (_, [len, ..]) if *len >= 2 && usize::from(*len) <= options.len() => {
                        options = &options[usize::from(*len)..]
                    }
                    _ => break,
                }
            }
            format!(
                "TCP {src}:{} > {dst}:{} [{names}] seq {} ack {} win {}{wscale} len {data}",
                port(&l4[0..2]),
                port(&l4[2..4]),
                u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                port(&l4[14..16]),
            )
        }
        PROTO_UDP if l4.len() >= 8 => format!(
            "UDP {src}:{} > {dst}:{} len {}",
            port(&l4[0..2]),
            port(&l4[2..4]),
            l4.len() - 8
        ),
        PROTO_ICMP | PROTO_ICMPV6 if l4.len() >= 4 => {
            let target = if proto == PROTO_ICMPV6 && matches!(l4[0], 135 | 136) && l4.len() >= 24 {
                format!(" target {}", v6(&l4[8..24]))
            } else {
                String::new()
            };
            format!("ICMP {src} > {dst} type {} code {}{target}", l4[0], l4[1])
        }
        p => format!("IP {src} > {dst} protocol {p}, {} bytes", l4.len()),
    }
}

/// Where the UDP payload starts in a frame carrying a datagram of this family.
pub fn udp_payload_offset(v6: bool) -> usize {
    ETH_HEADER + if v6 { IPV6_HEADER } else { IPV4_HEADER } + UDP_HEADER
}

/// Where the ICMP message starts in a frame of this family.
pub fn icmp_offset(v6: bool) -> usize {
    ETH_HEADER + if v6 { IPV6_HEADER } else { IPV4_HEADER }
}

/// The MACs of a frame towards the container.
#[derive(Debug, Clone, Copy)]
pub struct Macs {
    pub src: EthernetAddress,
    pub dst: EthernetAddress,
}

fn write_eth(buf: &mut [u8], macs: Macs, ethertype: u16) {
    buf[0..6].copy_from_slice(macs.dst.as_bytes());
    buf[6..12].copy_from_slice(macs.src.as_bytes());
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

fn write_ipv4(ip: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize, ident: u16) {
    let total = (IPV4_HEADER + payload_len) as u16;
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&ident.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    ip[8] = 64;
    ip[9] = proto;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = !checksum::data(&ip[..IPV4_HEADER]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

fn write_ipv6(ip: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, proto: u8, payload_len: usize) {
    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    ip[6] = proto;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
}

/// Writes the Ethernet, IP and UDP headers in front of a payload of `payload_len` bytes that is
/// already at [`udp_payload_offset`]; returns the frame length. `src` and `dst` must be of the
/// same family. IPv4 datagrams go without a UDP checksum (allowed, and the tap cannot corrupt).
pub fn write_udp(
    buf: &mut [u8],
    macs: Macs,
    src: SocketAddr,
    dst: SocketAddr,
    payload_len: usize,
    ident: u16,
) -> usize {
    let udp_len = UDP_HEADER + payload_len;
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            write_eth(buf, macs, ETHERTYPE_IPV4);
            write_ipv4(&mut buf[ETH_HEADER..], s, d, PROTO_UDP, udp_len, ident);
            let udp = &mut buf[ETH_HEADER + IPV4_HEADER..];
            write_udp_header(udp, src.port(), dst.port(), udp_len);
            ETH_HEADER + IPV4_HEADER + udp_len
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            write_eth(buf, macs, ETHERTYPE_IPV6);
            write_ipv6(&mut buf[ETH_HEADER..], s, d, PROTO_UDP, udp_len);
            let udp = &mut buf[ETH_HEADER + IPV6_HEADER..ETH_HEADER + IPV6_HEADER + udp_len];
            write_udp_header(udp, src.port(), dst.port(), udp_len);
            let sum = l4_checksum_v6(s, d, PROTO_UDP, udp);
            udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
            ETH_HEADER + IPV6_HEADER + udp_len
        }
        _ => 0,
    }
}

/// Writes one IPv6 fragment of a datagram (upper-layer protocol `proto`, identification
/// `ident`): `part` is the datagram's bytes from `offset`; returns the frame length.
#[allow(clippy::too_many_arguments)]
pub fn write_ipv6_fragment(
    buf: &mut [u8],
    macs: Macs,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    ident: u32,
    offset: usize,
    more: bool,
    part: &[u8],
) -> usize {
    const FRAGMENT_HEADER: usize = 8;
    write_eth(buf, macs, ETHERTYPE_IPV6);
    write_ipv6(&mut buf[ETH_HEADER..], src, dst, 44, FRAGMENT_HEADER + part.len());
    let f = &mut buf[ETH_HEADER + IPV6_HEADER..];
    f[0] = proto;
    f[1] = 0;
    let field = ((offset / 8) as u16) << 3 | u16::from(more);
    f[2..4].copy_from_slice(&field.to_be_bytes());
    f[4..8].copy_from_slice(&ident.to_be_bytes());
    f[FRAGMENT_HEADER..FRAGMENT_HEADER + part.len()].copy_from_slice(part);
    ETH_HEADER + IPV6_HEADER + FRAGMENT_HEADER + part.len()
}

/// Turns a full IPv4 header (written for the whole datagram) into a fragment's: `offset` bytes
/// into the datagram, `len` bytes long, more fragments following or not.
pub fn set_fragment(ip: &mut [u8], offset: usize, more: bool, len: usize) {
    let total = (IPV4_HEADER + len) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let field = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
    ip[6..8].copy_from_slice(&field.to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let sum = !checksum::data(&ip[..IPV4_HEADER]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

fn write_udp_header(udp: &mut [u8], src: u16, dst: u16, len: usize) {
    udp[0..2].copy_from_slice(&src.to_be_bytes());
    udp[2..4].copy_from_slice(&dst.to_be_bytes());
    udp[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
}

fn l4_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> u16 {
    let pseudo = checksum::pseudo_header_v6(&src, &dst, proto.into(), l4.len() as u32);
    !checksum::combine(&[pseudo, checksum::data(l4)])
}

/// Writes the headers in front of an ICMP echo reply whose message (type, code, checksum, id,
/// sequence, data; `message_len` bytes) is already at [`icmp_offset`], fixing its type and
/// checksum; returns the frame length.
pub fn write_echo_reply(
    buf: &mut [u8],
    macs: Macs,
    src: IpAddr,
    dst: IpAddr,
    message_len: usize,
    ident: u16,
) -> usize {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            write_eth(buf, macs, ETHERTYPE_IPV4);
            write_ipv4(&mut buf[ETH_HEADER..], s, d, PROTO_ICMP, message_len, ident);
            let icmp = &mut buf[ETH_HEADER + IPV4_HEADER..ETH_HEADER + IPV4_HEADER + message_len];
            icmp[0] = 0;
            icmp[1] = 0;
            icmp[2..4].copy_from_slice(&[0, 0]);
            let sum = !checksum::data(icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            ETH_HEADER + IPV4_HEADER + message_len
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            write_eth(buf, macs, ETHERTYPE_IPV6);
            write_ipv6(&mut buf[ETH_HEADER..], s, d, PROTO_ICMPV6, message_len);
            let icmp = &mut buf[ETH_HEADER + IPV6_HEADER..ETH_HEADER + IPV6_HEADER + message_len];
            icmp[0] = ICMPV6_ECHO_REPLY;
            icmp[1] = 0;
            icmp[2..4].copy_from_slice(&[0, 0]);
            let sum = l4_checksum_v6(s, d, PROTO_ICMPV6, icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            ETH_HEADER + IPV6_HEADER + message_len
        }
        _ => 0,
    }
}

/// Writes an ICMP "port unreachable" from `peer` to `container` about a UDP datagram the
/// container sent from `container` to `peer` (`udp_len` bytes, UDP header included), quoting its
/// IP and UDP headers as the container's kernel needs to find the socket; returns the frame
/// length. `buf` must hold [`PORT_UNREACHABLE_LEN`] bytes of the family.
pub fn write_port_unreachable(
    buf: &mut [u8],
    macs: Macs,
    container: SocketAddr,
    peer: SocketAddr,
    udp_len: usize,
    ident: u16,
) -> usize {
    // type, code, checksum, 4 unused bytes; then the quoted headers.
    const ICMP_HEADER_LEN: usize = 8;
    match (container.ip(), peer.ip()) {
        (IpAddr::V4(c), IpAddr::V4(p)) => {
            let message_len = ICMP_HEADER_LEN + IPV4_HEADER + UDP_HEADER;
            write_eth(buf, macs, ETHERTYPE_IPV4);
            write_ipv4(&mut buf[ETH_HEADER..], p, c, PROTO_ICMP, message_len, ident);
            let icmp = &mut buf[ETH_HEADER + IPV4_HEADER..ETH_HEADER + IPV4_HEADER + message_len];
            icmp[..ICMP_HEADER_LEN].copy_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
            let quoted = &mut icmp[ICMP_HEADER_LEN..];
            write_ipv4(quoted, c, p, PROTO_UDP, udp_len, 0);
            write_udp_header(&mut quoted[IPV4_HEADER..], container.port(), peer.port(), udp_len);
            let sum = !checksum::data(icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            ETH_HEADER + IPV4_HEADER + message_len
        }
        (IpAddr::V6(c), IpAddr::V6(p)) => {
            let message_len = ICMP_HEADER_LEN + IPV6_HEADER + UDP_HEADER;
            write_eth(buf, macs, ETHERTYPE_IPV6);
            write_ipv6(&mut buf[ETH_HEADER..], p, c, PROTO_ICMPV6, message_len);
            let icmp = &mut buf[ETH_HEADER + IPV6_HEADER..ETH_HEADER + IPV6_HEADER + message_len];
            icmp[..ICMP_HEADER_LEN].copy_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
            let quoted = &mut icmp[ICMP_HEADER_LEN..];
            write_ipv6(quoted, c, p, PROTO_UDP, udp_len);
            write_udp_header(&mut quoted[IPV6_HEADER..], container.port(), peer.port(), udp_len);
            let sum = l4_checksum_v6(p, c, PROTO_ICMPV6, icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            ETH_HEADER + IPV6_HEADER + message_len
        }
        _ => 0,
    }
}

/// The largest frame [`write_port_unreachable`] writes.
pub const PORT_UNREACHABLE_LEN: usize = ETH_HEADER + IPV6_HEADER + 8 + IPV6_HEADER + UDP_HEADER;

/// An ARP reply from the container to the gateway, as if the container had answered: fed to
/// smoltcp at start so that its neighbour cache knows the container's MAC before the first
/// connection to a published port (smoltcp learns neighbours only from ARP).
pub fn synthetic_arp_reply(cfg: &SlirpConfig, container_mac: EthernetAddress) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HEADER + 28];
    write_eth(
        &mut f,
        Macs {
            src: container_mac,
            dst: cfg.gateway_mac(),
        },
        ETHERTYPE_ARP,
    );
    let arp = &mut f[ETH_HEADER..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&2u16.to_be_bytes()); // reply
    arp[8..14].copy_from_slice(container_mac.as_bytes());
    arp[14..18].copy_from_slice(&cfg.container_address().octets());
    arp[18..24].copy_from_slice(cfg.gateway_mac().as_bytes());
    arp[24..28].copy_from_slice(&cfg.gateway().octets());
    f
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smoltcp::wire::IpAddress;

    pub const CONTAINER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x64]);

    /// A frame from the container: Ethernet + IPv4 + the given L4 bytes.
    pub fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let cfg = SlirpConfig::default();
        let mut f = vec![0u8; ETH_HEADER + IPV4_HEADER + l4.len()];
        write_eth(
            &mut f,
            Macs {
                src: CONTAINER_MAC,
                dst: cfg.gateway_mac(),
            },
            ETHERTYPE_IPV4,
        );
        write_ipv4(&mut f[ETH_HEADER..], src, dst, proto, l4.len(), 1);
        f[ETH_HEADER + IPV4_HEADER..].copy_from_slice(l4);
        f
    }

    pub fn tcp_header(src: u16, dst: u16, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&src.to_be_bytes());
        t[2..4].copy_from_slice(&dst.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let cfg = SlirpConfig::default();
        let mut f = synthetic_arp_reply(&cfg, CONTAINER_MAC);
        f[ETH_HEADER + 6..ETH_HEADER + 8].copy_from_slice(&1u16.to_be_bytes());
        f[ETH_HEADER + 24..ETH_HEADER + 28].copy_from_slice(&target.octets());
        f
    }

    #[test]
    fn arp_only_for_the_gateway_addresses() {
        let cfg = SlirpConfig::default();
        assert_eq!(classify(&arp_request(cfg.gateway()), &cfg), Ingress::Stack);
        assert_eq!(classify(&arp_request(cfg.dns()), &cfg), Ingress::Stack);
        // Duplicate address detection for the container's own address must get no answer.
        assert_eq!(
            classify(&arp_request(cfg.container_address()), &cfg),
            Ingress::Drop
        );
        assert_eq!(
            classify(&arp_request(Ipv4Addr::new(10, 0, 2, 50)), &cfg),
            Ingress::Drop
        );
        assert_eq!(
            classify(&synthetic_arp_reply(&cfg, CONTAINER_MAC), &cfg),
            Ingress::Stack
        );
    }

    #[test]
    fn classifies_tcp_udp_icmp() {
        let cfg = SlirpConfig::default();
        let (c, g) = (cfg.container_address(), cfg.gateway());
        let syn = ipv4_frame(c, g, PROTO_TCP, &tcp_header(40000, 80, 0x02));
        assert_eq!(
            classify(&syn, &cfg),
            Ingress::TcpSyn {
                src: "10.0.2.100:40000".parse().unwrap(),
                dst: "10.0.2.2:80".parse().unwrap()
            }
        );
        let ack = ipv4_frame(c, g, PROTO_TCP, &tcp_header(40000, 80, 0x10));
        assert_eq!(classify(&ack, &cfg), Ingress::Stack);
        let udp = ipv4_frame(
            c,
            cfg.dns(),
            PROTO_UDP,
            &[0x9c, 0x40, 0, 53, 0, 11, 0, 0, b'a', b'b', b'c'],
        );
        assert_eq!(
            classify(&udp, &cfg),
            Ingress::Udp {
                src: "10.0.2.100:40000".parse().unwrap(),
                dst: "10.0.2.3:53".parse().unwrap(),
                payload: b"abc"
            }
        );
        let bad_len = ipv4_frame(c, cfg.dns(), PROTO_UDP, &[0, 1, 0, 53, 0, 99, 0, 0]);
        assert_eq!(classify(&bad_len, &cfg), Ingress::Drop);
        let echo = ipv4_frame(c, g, PROTO_ICMP, &[8, 0, 0, 0, 0, 7, 0, 1, b'x']);
        assert!(matches!(classify(&echo, &cfg), Ingress::Echo { message, .. } if message.len() == 9));
        let reply = ipv4_frame(c, g, PROTO_ICMP, &[0, 0, 0, 0, 0, 7, 0, 1]);
        assert_eq!(classify(&reply, &cfg), Ingress::Drop);
        assert_eq!(classify(&[0u8; 10], &cfg), Ingress::Drop);
    }

    #[test]
    fn writes_valid_udp_and_echo_frames() {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{EthernetFrame, Icmpv4Packet, Ipv4Packet, Ipv6Packet, UdpPacket};
        let cfg = SlirpConfig::default();
        let macs = Macs {
            src: cfg.gateway_mac(),
            dst: CONTAINER_MAC,
        };
        let mut buf = vec![0u8; 200];
        let off = udp_payload_offset(false);
        buf[off..off + 5].copy_from_slice(b"hello");
        let (src, dst): (SocketAddr, SocketAddr) =
            ("10.0.2.3:53".parse().unwrap(), "10.0.2.100:5353".parse().unwrap());
        let n = write_udp(&mut buf, macs, src, dst, 5, 9);
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (udp.src_port(), udp.dst_port(), udp.payload()),
            (53, 5353, &b"hello"[..])
        );
        // The classifier reads back what the writer wrote.
        assert!(matches!(
            classify(&buf[..n], &cfg),
            Ingress::Udp {
                payload: b"hello",
                ..
            }
        ));

        let off6 = udp_payload_offset(true);
        buf[off6..off6 + 3].copy_from_slice(b"six");
        let (s6, d6): (SocketAddr, SocketAddr) = (
            "[fd00::3]:53".parse().unwrap(),
            "[fd00::100]:999".parse().unwrap(),
        );
        let n = write_udp(&mut buf, macs, s6, d6, 3, 0);
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let (s, d) = (IpAddress::from(s6.ip()), IpAddress::from(d6.ip()));
        assert!(udp.verify_checksum(&s, &d));
        let _ = ChecksumCapabilities::default();

        let off = icmp_offset(false);
        buf[off..off + 9].copy_from_slice(&[8, 0, 0xaa, 0xbb, 0, 7, 0, 1, b'x']);
        let n = write_echo_reply(
            &mut buf,
            macs,
            IpAddr::V4(cfg.gateway()),
            IpAddr::V4(cfg.container_address()),
            9,
            3,
        );
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(
            (icmp.msg_type().into(), icmp.echo_ident(), icmp.echo_seq_no()),
            (0u8, 7, 1)
        );
    }

    #[test]
    fn summarizes_frames_for_the_debug_trace() {
        let cfg = SlirpConfig::default();
        let mut syn = tcp_header(40000, 80, 0x02);
        syn[12] = 6 << 4;
        syn.extend_from_slice(&[3, 3, 7, 0]); // window scale 7, end of options
        let f = ipv4_frame(cfg.container_address(), cfg.gateway(), PROTO_TCP, &syn);
        assert_eq!(
            summary(&f),
            "TCP 10.0.2.100:40000 > 10.0.2.2:80 [S] seq 0 ack 0 win 0 wscale 7 len 0"
        );
        assert_eq!(
            summary(&arp_request(cfg.gateway())),
            "ARP op 1 10.0.2.100 asks/tells 10.0.2.2"
        );
        assert_eq!(summary(&[0u8; 3]), "runt frame of 3 bytes");
    }

    #[test]
    fn learns_the_source() {
        let cfg = SlirpConfig::default();
        let f = ipv4_frame(
            cfg.container_address(),
            cfg.gateway(),
            PROTO_TCP,
            &tcp_header(1, 2, 0x10),
        );
        assert_eq!(
            source(&f),
            Some((CONTAINER_MAC, IpAddr::V4(cfg.container_address())))
        );
    }
}
