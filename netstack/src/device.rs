//! The tap fd as a smoltcp [`Device`]: frames read by the event loop (in batches, into reused
//! buffers) wait in a queue for smoltcp; frames smoltcp or the relays send are written at once,
//! and queued only when the tap pushes back (then smoltcp is told the device is busy).
//!
//! Checksum offload: when the tap was made with `IFF_VNET_HDR` (as `userns::network::create_tap`
//! does, with `TUN_F_CSUM`), every frame carries a virtio-net header. The container's kernel then
//! leaves TCP/UDP checksums to us (we do not need them), and our TCP segments go with only the
//! pseudo-header sum and `NEEDS_CSUM`: the container's kernel trusts them for local delivery and
//! completes the checksum only if it forwards the packet. That saves two passes over each segment.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames written but refused with EAGAIN, kept at most this many before dropping.
const MAX_PENDING: usize = 256;

/// `struct virtio_net_hdr` (the legacy one, 10 bytes), in front of every frame with IFF_VNET_HDR.
const VNET_HDR: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

/// A frame buffer: `buf` is always full length (reused without re-zeroing); the frame is
/// `buf[start..start + len]`.
pub struct Frame {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Frame {
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

pub struct TapDevice {
    fd: OwnedFd,
    /// The tap has IFF_VNET_HDR: frames carry a virtio-net header.
    vnet: bool,
    /// Largest frame: the IP MTU plus the Ethernet header.
    frame_mtu: usize,
    rx: VecDeque<Frame>,
    pool: RefCell<Vec<Vec<u8>>>,
    tx: RefCell<Tx>,
}

struct Tx {
    fd: RawFd,
    /// Bytes before the frame in `buf` (the virtio-net header, or none).
    offset: usize,
    buf: Vec<u8>,
    pending: VecDeque<Vec<u8>>,
    dropped: u64,
    error: Option<io::Error>,
}

impl Tx {
    /// Writes the frame whose first `len` bytes are at `buf[offset..]` (with its virtio-net
    /// header, if any) and whose rest is `tail` (a TCP payload left out of `buf`, or nothing).
    fn write(&mut self, len: usize, tail: &[u8]) {
        let len = self.offset + len;
        if self.offset > 0 {
            fill_vnet_header(&mut self.buf[..len], len - self.offset + tail.len());
        }
        if tracing() {
            // (Never with a tail: tracing turns gathering off.)
            trace("out", &self.buf[self.offset..len]);
        }
        if !self.pending.is_empty() {
            self.queue(len, tail);
            return;
        }
        let iov = [
            libc::iovec {
                iov_base: self.buf.as_mut_ptr().cast(),
                iov_len: len,
            },
            libc::iovec {
                iov_base: tail.as_ptr().cast_mut().cast(),
                iov_len: tail.len(),
            },
        ];
        let parts = if tail.is_empty() { 1 } else { 2 };
        // SAFETY: both iovecs describe valid readable buffers; the tap only reads them. fd is
        // the tap, owned by the device for its whole life.
        let written = unsafe { libc::writev(self.fd, iov.as_ptr(), parts) };
        if written >= 0 {
            return;
        }
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::WouldBlock => self.queue(len, tail),
            e if e.kind() == io::ErrorKind::Interrupted => self.queue(len, tail),
            e => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
    }

    fn queue(&mut self, len: usize, tail: &[u8]) {
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        let mut frame = Vec::with_capacity(len + tail.len());
        frame.extend_from_slice(&self.buf[..len]);
        frame.extend_from_slice(tail);
        self.pending.push_back(frame);
    }
}

/// Fills the virtio-net header in front of a frame of `frame_len` bytes (of which `buf` holds
/// at least the headers): for a TCP segment, `NEEDS_CSUM` and the pseudo-header sum in its
/// checksum field (smoltcp left it out); for anything else, no offload.
fn fill_vnet_header(buf: &mut [u8], frame_len: usize) {
    use smoltcp::wire::{checksum, IpProtocol};
    buf[..VNET_HDR].fill(0);
    let frame = &mut buf[VNET_HDR..];
    if frame.len() < 14 + 20 || frame_len < frame.len() {
        return;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (l4_start, pseudo) = match ethertype {
        0x0800 => {
            let ip = &frame[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            if ip[9] != 6 || fragmented || total < ihl + 20 || total > frame_len - 14 {
                return;
            }
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (
                14 + ihl,
                checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, (total - ihl) as u32),
            )
        }
        0x86dd => {
            let ip = &frame[14..];
            if ip.len() < 40 + 20 || ip[6] != 6 {
                return;
            }
            let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let src = std::net::Ipv6Addr::from(a);
            a.copy_from_slice(&ip[24..40]);
            let dst = std::net::Ipv6Addr::from(a);
            (
                14 + 40,
                checksum::pseudo_header_v6(&src, &dst, IpProtocol::Tcp, len as u32),
            )
        }
        _ => return,
    };
    frame[l4_start + 16..l4_start + 18].copy_from_slice(&pseudo.to_be_bytes());
    buf[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    buf[6..8].copy_from_slice(&(l4_start as u16).to_ne_bytes()); // csum_start
    buf[8..10].copy_from_slice(&16u16.to_ne_bytes()); // csum_offset: the TCP checksum
}

/// Whether a tap fd was made with IFF_VNET_HDR (false for anything that is not a tap).
fn has_vnet_header(fd: RawFd) -> bool {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF fills an ifreq; on a non-tap fd it fails without touching it.
    let r = unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, &mut req as *mut libc::ifreq) };
    // SAFETY: TUNGETIFF set the flags member of the union.
    r == 0 && (i32::from(unsafe { req.ifr_ifru.ifru_flags }) & libc::IFF_VNET_HDR) != 0
}

/// `BURROW_NETSTACK_DEBUG=1`: every frame in and out, decoded, on stderr.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("BURROW_NETSTACK_DEBUG").is_some_and(|v| v == "1"))
}

fn trace(direction: &str, frame: &[u8]) {
    eprintln!("netstack: {direction} {}", crate::packet::summary(frame));
}

fn write_fd(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: data is a valid readable buffer of data.len() bytes; fd is the tap, owned by the
    // device for its whole life.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl TapDevice {
    /// Wraps a tap fd (`IFF_TAP | IFF_NO_PI`); makes it non-blocking.
    pub fn new(fd: OwnedFd, ip_mtu: usize) -> io::Result<TapDevice> {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on an fd we own, with integer arguments.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let frame_mtu = ip_mtu + crate::packet::ETH_HEADER;
        let vnet = has_vnet_header(raw);
        let offset = if vnet { VNET_HDR } else { 0 };
        Ok(TapDevice {
            fd,
            vnet,
            frame_mtu,
            rx: VecDeque::new(),
            pool: RefCell::new(Vec::new()),
            tx: RefCell::new(Tx {
                fd: raw,
                offset,
                buf: vec![0; offset + frame_mtu],
                pending: VecDeque::new(),
                dropped: 0,
                error: None,
            }),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn buffer(&self) -> Vec<u8> {
        // Room for a frame a little over the MTU, so that an oversized frame is seen as such.
        self.pool
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; VNET_HDR + self.frame_mtu + 64])
    }

    /// Reads one frame; `None` when the tap has nothing more (EAGAIN).
    pub fn read_frame(&self) -> io::Result<Option<Frame>> {
        let mut buf = self.buffer();
        loop {
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                let n = n as usize;
                if tracing() {
                    let start = if self.vnet { VNET_HDR.min(n) } else { 0 };
                    trace("in ", &buf[start..n]);
                }
                if !self.vnet {
                    return Ok(Some(Frame {
                        buf,
                        start: 0,
                        len: n,
                    }));
                }
                // gso_type must be none: no segmentation offload was offered.
                if n < VNET_HDR || buf[1] != 0 {
                    continue;
                }
                return Ok(Some(Frame {
                    buf,
                    start: VNET_HDR,
                    len: n - VNET_HDR,
                }));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    self.recycle(Frame {
                        buf,
                        start: 0,
                        len: 0,
                    });
                    return Ok(None);
                }
                _ => return Err(e),
            }
        }
    }

    /// Gives a frame's buffer back for the next read.
    pub fn recycle(&self, frame: Frame) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < 256 {
            pool.push(frame.buf);
        }
    }

    /// Queues a frame for smoltcp's next poll.
    pub fn push_rx(&mut self, frame: Frame) {
        self.rx.push_back(frame);
    }

    /// Queues a frame (built by us, not read from the tap) for smoltcp's next poll.
    pub fn push_rx_bytes(&mut self, bytes: &[u8]) {
        let mut buf = self.buffer();
        let len = bytes.len().min(buf.len());
        buf[..len].copy_from_slice(&bytes[..len]);
        self.rx.push_back(Frame { buf, start: 0, len });
    }

    /// Builds a frame of at most `max_len` bytes in the transmit buffer with `f` (which returns
    /// the frame's length, 0 for none) and sends it.
    pub fn send_with(&self, max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) {
        let mut tx = self.tx.borrow_mut();
        let offset = tx.offset;
        let max_len = max_len.min(tx.buf.len() - offset);
        let len = f(&mut tx.buf[offset..offset + max_len]);
        if len > 0 {
            tx.write(len, &[]);
        }
    }

    /// The largest frame the tap takes.
    pub fn frame_mtu(&self) -> usize {
        self.frame_mtu
    }

    /// Retries frames the tap refused; true when none is left.
    pub fn flush(&self) -> bool {
        let mut tx = self.tx.borrow_mut();
        while let Some(frame) = tx.pending.front() {
            match write_fd(tx.fd, frame) {
                Ok(_) => {
                    tx.pending.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tx.pending.clear();
                    tx.error.get_or_insert(e);
                }
            }
        }
        true
    }

    pub fn has_pending(&self) -> bool {
        !self.tx.borrow().pending.is_empty()
    }

    /// A write error other than EAGAIN (the container's network is gone).
    pub fn take_error(&self) -> Option<io::Error> {
        self.tx.borrow_mut().error.take()
    }

    pub fn rx_queued(&self) -> usize {
        self.rx.len()
    }
}

pub struct RxToken<'a> {
    frame: Frame,
    pool: &'a RefCell<Vec<Vec<u8>>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(self.frame.data());
        let mut pool = self.pool.borrow_mut();
        if pool.len() < 256 {
            pool.push(self.frame.buf);
        }
        r
    }
}

pub struct TxToken<'a> {
    tx: &'a RefCell<Tx>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut tx = self.tx.borrow_mut();
        let offset = tx.offset;
        if tx.buf.len() < offset + len {
            tx.buf.resize(offset + len, 0);
        }
        // With a virtio-net header no TCP checksum is computed over the payload, so the tap can
        // take it from the socket's transmit buffer (a gathering write) instead of smoltcp
        // copying it into the frame: one copy less per byte to the container.
        if offset == 0 || tracing() {
            let r = f(&mut tx.buf[offset..offset + len]);
            tx.write(len, &[]);
            return r;
        }
        let frame = &mut tx.buf[offset..offset + len];
        let (r, left_out) = smoltcp::wire::tcp_payload_gather::emit_without_payload(|| f(frame));
        match left_out {
            Some((ptr, payload_len)) if payload_len <= len => {
                // SAFETY: smoltcp's payload points into a socket's transmit buffer, which stays
                // borrowed, unchanged, until this consume returns.
                let payload = unsafe { std::slice::from_raw_parts(ptr, payload_len) };
                tx.write(len - payload_len, payload);
            }
            _ => tx.write(len, &[]),
        }
        r
    }
}

impl Device for TapDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((
            RxToken {
                frame,
                pool: &self.pool,
            },
            TxToken { tx: &self.tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        // While the tap pushes back, tell smoltcp the device is busy: its sockets keep their
        // data and retry, instead of losing segments.
        if self.tx.borrow().pending.is_empty() {
            Some(TxToken { tx: &self.tx })
        } else {
            None
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_mtu;
        // Frames from the container's kernel cross no wire: skip verifying their checksums, but
        // compute ours (the container's kernel checks them).
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        // With a virtio-net header the TCP checksum is offloaded (see fill_vnet_header).
        checksum.tcp = if self.vnet { Checksum::None } else { Checksum::Tx };
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        checksum.icmpv6 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::{ipv4_frame, tcp_header};
    use smoltcp::wire::{EthernetFrame, IpAddress, Ipv4Packet, TcpPacket};

    /// What the container's kernel does with a NEEDS_CSUM frame: checksum from csum_start to the
    /// end (the field holding the pseudo-header sum), complemented, at csum_start + csum_offset.
    fn complete_checksum(buf: &mut [u8]) {
        assert_eq!(buf[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        let start = usize::from(u16::from_ne_bytes([buf[6], buf[7]]));
        let offset = usize::from(u16::from_ne_bytes([buf[8], buf[9]]));
        let frame = &mut buf[VNET_HDR..];
        let sum = !smoltcp::wire::checksum::data(&frame[start..]);
        frame[start + offset..start + offset + 2].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn offloaded_tcp_checksums_complete_to_valid_ones() {
        let mut tcp = tcp_header(80, 40000, 0x18);
        tcp.extend_from_slice(b"some payload, odd length");
        let frame = ipv4_frame([10, 0, 2, 2].into(), [10, 0, 2, 100].into(), 6, &tcp);
        let mut buf = vec![0xaa; VNET_HDR];
        buf.extend_from_slice(&frame);
        let frame_len = buf.len() - VNET_HDR;
        fill_vnet_header(&mut buf, frame_len);
        complete_checksum(&mut buf);
        let eth = EthernetFrame::new_checked(&buf[VNET_HDR..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let (s, d) = (IpAddress::from(ip.src_addr()), IpAddress::from(ip.dst_addr()));
        assert!(tcp.verify_checksum(&s, &d));
    }

    #[test]
    fn other_frames_get_an_empty_header() {
        let frame = ipv4_frame(
            [10, 0, 2, 2].into(),
            [10, 0, 2, 100].into(),
            17,
            &[0, 53, 0, 53, 0, 8, 0, 0],
        );
        let mut buf = vec![0xaa; VNET_HDR];
        buf.extend_from_slice(&frame);
        fill_vnet_header(&mut buf, frame.len());
        assert_eq!(&buf[..VNET_HDR], &[0; VNET_HDR]);
        assert_eq!(&buf[VNET_HDR..], &frame[..]);
    }

    /// Stands in for a tap: each message is one frame.
    fn datagram_pair() -> (OwnedFd, OwnedFd) {
        nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Datagram,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn a_gathered_tcp_payload_reaches_the_tap_whole() {
        use smoltcp::phy::TxToken as _;
        use smoltcp::wire::{
            EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
        };
        let (ours, tap) = datagram_pair();
        let tx = RefCell::new(Tx {
            fd: ours.as_raw_fd(),
            offset: VNET_HDR,
            buf: vec![0; VNET_HDR + 1514],
            pending: VecDeque::new(),
            dropped: 0,
            error: None,
        });
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        let (s, d) = ([10, 0, 2, 2].into(), [10, 0, 2, 100].into());
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(1),
            ack_number: Some(TcpSeqNumber(1)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &payload,
        };
        let ip = Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let len = 14 + 20 + tcp.buffer_len();
        // As smoltcp's interface emits a segment, with the TCP checksum offloaded.
        let mut caps = ChecksumCapabilities::default();
        caps.tcp = Checksum::None;
        TxToken { tx: &tx }.consume(len, |frame| {
            let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
            EthernetRepr {
                src_addr: smoltcp::wire::EthernetAddress([2, 0, 0, 0, 0, 2]),
                dst_addr: smoltcp::wire::EthernetAddress([2, 0, 0, 0, 0, 100]),
                ethertype: EthernetProtocol::Ipv4,
            }
            .emit(&mut eth);
            let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
            ip.emit(&mut ipp, &caps);
            let mut tcpp = TcpPacket::new_unchecked(ipp.payload_mut());
            tcp.emit(&mut tcpp, &s.into(), &d.into(), &caps);
        });
        assert!(
            tx.borrow().buf[VNET_HDR + len - payload.len()..VNET_HDR + len]
                .iter()
                .all(|&b| b == 0),
            "the payload was gathered, not copied into the frame"
        );

        let mut got = vec![0u8; 4096];
        let n = nix::unistd::read(&tap, &mut got).unwrap();
        let mut got = got[..n].to_vec();
        assert_eq!(n, VNET_HDR + len, "one frame: header, headers and payload");
        complete_checksum(&mut got);
        let eth = EthernetFrame::new_checked(&got[VNET_HDR..]).unwrap();
        let ipp = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let tcpp = TcpPacket::new_checked(ipp.payload()).unwrap();
        assert_eq!(tcpp.payload(), &payload[..]);
        assert!(tcpp.verify_checksum(&s.into(), &d.into()));
    }

    #[test]
    fn a_socket_is_not_a_vnet_tap() {
        let (a, _b) = datagram_pair();
        assert!(!has_vnet_header(a.as_raw_fd()));
    }
}
