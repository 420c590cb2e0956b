//! The whole stack on an in-memory link: a datagram socket pair stands in for the tap (each
//! message is one frame), the test writes the container's frames into one end and reads what
//! the stack answers from it. Host-side peers are servers on 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket, UdpRepr,
};

use crate::config::{PortForward, Protocol, StackConfig};
use crate::slirp::SlirpConfig;
use crate::stack::{Stack, StopOn};

const CONTAINER_MAC: EthernetAddress = EthernetAddress([0x52, 0x56, 10, 0, 2, 100]);
const CONTAINER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

struct Link {
    peer: OwnedFd,
    exit: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    gateway_mac: EthernetAddress,
}

impl Link {
    fn start(config: StackConfig) -> (Link, Vec<PortForward>) {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (exit_r, exit_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let gateway_mac = config.slirp.gateway_mac();
        let stack = Stack::new(theirs, &config).unwrap();
        let published = stack.published();
        let thread = std::thread::spawn(move || {
            stack
                .run(StopOn {
                    exit_fd: Some(exit_r),
                    pid_fd: None,
                    signal_fd: None,
                })
                .unwrap()
        });
        let link = Link {
            peer: ours,
            exit: Some(exit_w),
            thread: Some(thread),
            gateway_mac,
        };
        (link, published)
    }

    fn send(&self, frame: &[u8]) {
        nix::unistd::write(&self.peer, frame).unwrap();
    }

    /// The next frame from the stack that `pick` accepts (others are skipped), within 5 s.
    fn expect<T>(&self, mut pick: impl FnMut(&[u8]) -> Option<T>) -> T {
        self.wait_for(Duration::from_secs(5), &mut pick)
            .expect("an expected frame from the stack")
    }

    fn wait_for<T>(&self, timeout: Duration, pick: &mut impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 70000];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut fds = [libc::pollfd {
                fd: self.peer.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: fds is a valid array of one pollfd.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis() as i32) };
            if r <= 0 {
                continue;
            }
            let n = nix::unistd::read(&self.peer, &mut buf).unwrap();
            if let Some(t) = pick(&buf[..n]) {
                return Some(t);
            }
        }
    }

    fn eth(&self, ethertype: EthernetProtocol, payload_len: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut f = vec![0u8; 14 + payload_len];
        EthernetRepr {
            src_addr: CONTAINER_MAC,
            dst_addr: self.gateway_mac,
            ethertype,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        fill(&mut f[14..]);
        f
    }

    fn ipv4(&self, dst: Ipv4Addr, proto: IpProtocol, l4_len: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: CONTAINER,
            dst_addr: dst,
            next_header: proto,
            payload_len: l4_len,
            hop_limit: 64,
        };
        self.eth(EthernetProtocol::Ipv4, 20 + l4_len, |ip| {
            let mut packet = Ipv4Packet::new_unchecked(&mut ip[..]);
            repr.emit(&mut packet, &ChecksumCapabilities::default());
            fill(packet.payload_mut());
        })
    }

    /// A segment with `payload`; a SYN offers window scaling (so windows above 64 KiB work).
    fn tcp(
        &self,
        dst: SocketAddr,
        src_port: u16,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let SocketAddr::V4(dst) = dst else { panic!() };
        let repr = TcpRepr {
            src_port,
            dst_port: dst.port(),
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 64000,
            window_scale: (control == TcpControl::Syn).then_some(7),
            max_seg_size: Some(1460),
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload,
        };
        let (s, d) = (IpAddress::from(CONTAINER), IpAddress::from(*dst.ip()));
        self.ipv4(*dst.ip(), IpProtocol::Tcp, repr.buffer_len(), |l4| {
            repr.emit(
                &mut TcpPacket::new_unchecked(l4),
                &s,
                &d,
                &ChecksumCapabilities::default(),
            );
        })
    }

    fn udp(&self, dst: SocketAddr, src_port: u16, payload: &[u8]) -> Vec<u8> {
        let SocketAddr::V4(dst) = dst else { panic!() };
        let repr = UdpRepr {
            src_port,
            dst_port: dst.port(),
        };
        let (s, d) = (IpAddress::from(CONTAINER), IpAddress::from(*dst.ip()));
        self.ipv4(*dst.ip(), IpProtocol::Udp, 8 + payload.len(), |l4| {
            repr.emit(
                &mut UdpPacket::new_unchecked(l4),
                &s,
                &d,
                payload.len(),
                |p| p.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            );
        })
    }

    fn arp_request(&self, target: Ipv4Addr) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: CONTAINER_MAC,
            source_protocol_addr: CONTAINER,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let mut f = self.eth(EthernetProtocol::Arp, repr.buffer_len(), |a| {
            repr.emit(&mut ArpPacket::new_unchecked(a));
        });
        f[..6].copy_from_slice(&[0xff; 6]);
        f
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.exit.take();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A TCP segment from the stack to the container: (src, dst port, control, ack).
fn tcp_segment(frame: &[u8]) -> Option<(SocketAddr, u16, TcpControl, Option<u32>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != CONTAINER {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let (s, d) = (IpAddress::from(ip.src_addr()), IpAddress::from(ip.dst_addr()));
    assert!(tcp.verify_checksum(&s, &d), "bad TCP checksum from the stack");
    let repr = TcpRepr::parse(&tcp, &s, &d, &ChecksumCapabilities::default()).ok()?;
    Some((
        SocketAddr::new(ip.src_addr().into(), repr.src_port),
        repr.dst_port,
        repr.control,
        repr.ack_number.map(|a| a.0 as u32),
    ))
}

/// The sequence number of a SYN-ACK from the stack to the container.
fn syn_ack_seq(frame: &[u8]) -> Option<u32> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 || ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    (tcp.syn() && tcp.ack()).then(|| tcp.seq_number().0 as u32)
}

fn config(allow_host_loopback: bool) -> StackConfig {
    StackConfig {
        slirp: SlirpConfig {
            allow_host_loopback,
            ..SlirpConfig::default()
        },
        dns_servers: vec!["127.0.0.1".parse().unwrap()],
        dns_port: 53,
        port_forwards: vec![],
        max_tcp_flows: crate::tcp::MAX_FLOWS,
    }
}

#[test]
fn answers_arp_for_the_gateway_only() {
    let (link, _) = Link::start(config(false));
    link.send(&link.arp_request(CONTAINER));
    link.send(&link.arp_request(GATEWAY));
    let (mac, ip) = link.expect(|f| {
        let eth = EthernetFrame::new_checked(f).ok()?;
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
        match arp {
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr,
                source_protocol_addr,
                ..
            } => Some((source_hardware_addr, source_protocol_addr)),
            _ => None,
        }
    });
    // The first request (duplicate address detection for the container's own address) got no
    // answer: the first reply is the gateway's.
    assert_eq!((mac, ip), (SlirpConfig::default().gateway_mac(), GATEWAY));
}

#[test]
fn answers_pings_to_the_gateway() {
    let (link, _) = Link::start(config(false));
    let echo = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: b"ping-data",
    };
    let frame = link.ipv4(GATEWAY, IpProtocol::Icmp, echo.buffer_len(), |l4| {
        echo.emit(
            &mut Icmpv4Packet::new_unchecked(l4),
            &ChecksumCapabilities::default(),
        );
    });
    link.send(&frame);
    let (ident, seq, data) = link.expect(|f| {
        let eth = EthernetFrame::new_checked(f).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
        assert!(icmp.verify_checksum());
        match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).ok()? {
            Icmpv4Repr::EchoReply { ident, seq_no, data } if ip.src_addr() == GATEWAY => {
                Some((ident, seq_no, data.to_vec()))
            }
            _ => None,
        }
    });
    assert_eq!((ident, seq, data.as_slice()), (0x1234, 7, &b"ping-data"[..]));
}

#[test]
fn tcp_to_the_gateway_reaches_host_loopback_when_allowed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dst = SocketAddr::from((GATEWAY, port));
    let (link, _) = Link::start(config(true));
    link.send(&link.tcp(dst, 40000, TcpControl::Syn, 1000, None, &[]));
    // The SYN-ACK comes from the gateway once the host connection is made.
    let (src, dport, control, ack) = link.expect(tcp_segment);
    assert_eq!(
        (src, dport, control, ack),
        (dst, 40000, TcpControl::Syn, Some(1001))
    );
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), Ipv4Addr::LOCALHOST);
}

#[test]
fn container_data_reaches_the_host_whole_and_in_order() {
    // Segments large enough for the receive sink (which writes them to the host from the frame)
    // while the host reads nothing and has a small buffer: the sink fills it, the rest waits in
    // the ring, and two segments arrive swapped (the later one waits in the assembler). The
    // host must still read every byte once, in order.
    const SEGMENT: usize = 32 * 1024;
    const SEGMENTS: usize = 16;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    let dst = SocketAddr::from((GATEWAY, listener.local_addr().unwrap().port()));
    let (link, _) = Link::start(config(true));
    link.send(&link.tcp(dst, 40002, TcpControl::Syn, 1000, None, &[]));
    let server_seq = link.expect(syn_ack_seq);
    link.send(&link.tcp(dst, 40002, TcpControl::None, 1001, Some(server_seq + 1), &[]));
    let (mut host, _) = listener.accept().unwrap();

    let data: Vec<u8> = (0..SEGMENT * SEGMENTS)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect();
    let mut order: Vec<usize> = (0..SEGMENTS).collect();
    order.swap(9, 10);
    for k in order {
        let payload = &data[k * SEGMENT..(k + 1) * SEGMENT];
        let seq = 1001 + (k * SEGMENT) as u32;
        link.send(&link.tcp(dst, 40002, TcpControl::Psh, seq, Some(server_seq + 1), payload));
    }

    host.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = vec![0u8; data.len()];
    std::io::Read::read_exact(&mut host, &mut got).expect("all the container's data");
    assert!(
        got == data,
        "the host read the container's bytes out of order or altered"
    );
}

#[test]
fn tcp_is_refused_where_slirp4netns_refuses() {
    // A closed host port, the gateway without allow_host_loopback, and the DNS address on a
    // port other than 53: each SYN gets a RST|ACK.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (allow, dst) in [
        (true, SocketAddr::from((GATEWAY, closed))),
        (false, SocketAddr::from((GATEWAY, 22))),
        (true, SocketAddr::from(([10, 0, 2, 3], 80))),
    ] {
        let (link, _) = Link::start(config(allow));
        link.send(&link.tcp(dst, 40001, TcpControl::Syn, 5000, None, &[]));
        let (src, _, control, ack) = link.expect(tcp_segment);
        assert_eq!((src, control, ack), (dst, TcpControl::Rst, Some(5001)), "{dst}");
    }
}

#[test]
fn udp_round_trip_through_the_nat() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = server.local_addr().unwrap().port();
    let (link, _) = Link::start(config(true));
    link.send(&link.udp(SocketAddr::from((GATEWAY, port)), 5353, b"question"));
    let mut buf = [0u8; 100];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"question");
    assert_eq!(from.ip(), Ipv4Addr::LOCALHOST);
    server.send_to(b"answer", from).unwrap();
    let (src, dport, payload) = link.expect(|f| {
        let eth = EthernetFrame::new_checked(f).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        (ip.next_header() == IpProtocol::Udp).then(|| {
            (
                SocketAddr::new(ip.src_addr().into(), udp.src_port()),
                udp.dst_port(),
                udp.payload().to_vec(),
            )
        })
    });
    assert_eq!(
        (src, dport, payload.as_slice()),
        (SocketAddr::from((GATEWAY, port)), 5353, &b"answer"[..])
    );
}

#[test]
fn published_port_connects_from_the_client_port() {
    let mut cfg = config(false);
    cfg.port_forwards = vec![PortForward {
        host_ip: Some("127.0.0.1".parse().unwrap()),
        host_port: 0,
        container_port: 8080,
        proto: Protocol::Tcp,
    }];
    let (link, published) = Link::start(cfg);
    let port = published[0].host_port;
    assert_ne!(port, 0, "the kernel's port is reported");
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    let (src, dport, control, _) = link.expect(tcp_segment);
    assert_eq!(control, TcpControl::Syn);
    assert_eq!(dport, 8080);
    assert_eq!(
        src,
        SocketAddr::from((GATEWAY, client_port)),
        "a loopback client appears as the gateway, port kept"
    );
    drop(client);
}

#[test]
fn published_port_errors_name_the_cause() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(false);
    cfg.port_forwards = vec![PortForward {
        host_ip: Some("127.0.0.1".parse().unwrap()),
        host_port: taken.local_addr().unwrap().port(),
        container_port: 80,
        proto: Protocol::Tcp,
    }];
    let (_ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let err = Stack::new(theirs, &cfg)
        .err()
        .expect("the port is taken")
        .to_string();
    assert!(err.ends_with("bind: address already in use"), "{err}");
    drop(taken);
}

#[test]
fn a_syn_flood_is_capped_at_max_tcp_flows() {
    // A host listener that never accepts: every flow the flood opens stays, holding a socket.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dst = SocketAddr::from((GATEWAY, listener.local_addr().unwrap().port()));
    const CAP: usize = 20;
    let (link, _) = Link::start(StackConfig {
        max_tcp_flows: CAP,
        ..config(true)
    });
    for port in 0..(2 * CAP as u16) {
        link.send(&link.tcp(dst, 30000 + port, TcpControl::Syn, 100, None, &[]));
    }
    // Each SYN gets an answer: SYN-ACK for the first CAP, RST for the rest.
    let (mut accepted, mut refused) = (0, 0);
    while accepted + refused < 2 * CAP {
        match link.expect(tcp_segment) {
            (_, _, TcpControl::Syn, _) => accepted += 1,
            (_, _, TcpControl::Rst, _) => refused += 1,
            other => panic!("unexpected segment {other:?}"),
        }
    }
    assert_eq!((accepted, refused), (CAP, CAP));
}

#[test]
fn udp_to_a_closed_port_gets_port_unreachable() {
    // A port just freed: the host answers the relayed datagram with ICMP port unreachable.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dst = SocketAddr::from((GATEWAY, closed));
    let (link, _) = Link::start(config(true));
    link.send(&link.udp(dst, 5454, b"anyone?"));
    let (from, icmp_type, icmp_code, quoted_ports) = link.expect(|f| {
        let eth = EthernetFrame::new_checked(f).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if ip.next_header() != IpProtocol::Icmp || ip.dst_addr() != CONTAINER {
            return None;
        }
        let icmp = ip.payload();
        assert_eq!(smoltcp::wire::checksum::data(icmp), !0, "bad ICMP checksum");
        // Only the headers are quoted: the quoted packet is shorter than its total length says.
        let quoted = Ipv4Packet::new_unchecked(&icmp[8..]);
        assert_eq!((quoted.src_addr(), quoted.dst_addr()), (CONTAINER, GATEWAY));
        let q = &icmp[8 + 20..];
        let ports = (u16::from_be_bytes([q[0], q[1]]), u16::from_be_bytes([q[2], q[3]]));
        Some((ip.src_addr(), icmp[0], icmp[1], ports))
    });
    assert_eq!(
        (from, icmp_type, icmp_code, quoted_ports),
        (GATEWAY, 3, 3, (5454, closed))
    );
}
