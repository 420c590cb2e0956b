//! Reassembly of fragmented IPv4 and IPv6 datagrams from the container (UDP and ICMP; TCP is
//! never fragmented by Linux, which follows the MTU). With the default MTU of 65520 fragments are
//! rare; with `mtu=1500` any datagram above it arrives in pieces.
//!
//! Bounded: at most [`MAX_BYTES`] held across all datagrams, each complete within [`TIMEOUT`];
//! overlapping fragments drop the whole datagram (RFC 5722), as an attacker's overlap could
//! otherwise make what the relay sends differ from what a firewall in the container checked.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::packet::{ETH_HEADER, IPV4_HEADER, IPV6_HEADER};

/// How long the pieces of one datagram may take to arrive (Linux's ipfrag_time).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes held for incomplete datagrams, all together.
pub const MAX_BYTES: usize = 4 << 20;
/// The largest datagram payload that can be put together (an IP length field's worth).
const MAX_PAYLOAD: usize = 65535;
const FRAGMENT_HEADER: usize = 8;
const PROTO_FRAGMENT_V6: u8 = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    /// The upper-layer protocol.
    proto: u8,
}

/// One fragment, parsed out of a frame.
#[derive(Debug, PartialEq, Eq)]
struct Fragment<'a> {
    key: Key,
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// Ethernet and IP header to rebuild the whole datagram with (taken from the first piece).
    header: &'a [u8],
}

struct Partial {
    started: Instant,
    /// Offset -> data.
    parts: BTreeMap<usize, Vec<u8>>,
    /// Known once the last piece (no "more fragments") arrived.
    total: Option<usize>,
    header: Option<Vec<u8>>,
    v6: bool,
}

#[derive(Default)]
pub struct Reassembler {
    pending: HashMap<Key, Partial>,
    bytes: usize,
}

/// Whether the frame carries a fragment (which [`Reassembler::offer`] wants) rather than a whole
/// datagram.
pub fn is_fragment(frame: &[u8]) -> bool {
    parse(frame).is_some()
}

fn parse(frame: &[u8]) -> Option<Fragment<'_>> {
    let fragment = parse_any(frame)?;
    // UDP, ICMP, ICMPv6 only: a fragmented TCP segment is dropped (see the module's comment).
    matches!(fragment.key.proto, 17 | 1 | 58).then_some(fragment)
}

fn parse_any(frame: &[u8]) -> Option<Fragment<'_>> {
    if frame.len() < ETH_HEADER + IPV4_HEADER {
        return None;
    }
    let ip = &frame[ETH_HEADER..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let field = u16::from_be_bytes([ip[6], ip[7]]);
            let (offset, more) = (usize::from(field & 0x1fff) * 8, field & 0x2000 != 0);
            if (offset == 0 && !more) || header_len < IPV4_HEADER || total < header_len || total > ip.len() {
                return None;
            }
            let src = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?);
            Some(Fragment {
                key: Key {
                    src,
                    dst,
                    ident: u32::from(u16::from_be_bytes([ip[4], ip[5]])),
                    proto: ip[9],
                },
                offset,
                more,
                data: &ip[header_len..total],
                header: &frame[..ETH_HEADER + header_len],
            })
        }
        0x86dd => {
            // Only a fragment header right after the fixed header (what Linux sends).
            if ip.len() < IPV6_HEADER + FRAGMENT_HEADER || ip[6] != PROTO_FRAGMENT_V6 {
                return None;
            }
            let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if payload_len < FRAGMENT_HEADER || IPV6_HEADER + payload_len > ip.len() {
                return None;
            }
            let f = &ip[IPV6_HEADER..];
            let field = u16::from_be_bytes([f[2], f[3]]);
            let (offset, more) = (usize::from(field >> 3) * 8, field & 1 != 0);
            let src = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
            Some(Fragment {
                key: Key {
                    src,
                    dst,
                    ident: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                    proto: f[0],
                },
                offset,
                more,
                data: &ip[IPV6_HEADER + FRAGMENT_HEADER..IPV6_HEADER + payload_len],
                header: &frame[..ETH_HEADER + IPV6_HEADER],
            })
        }
        _ => None,
    }
}

impl Reassembler {
    /// Takes a fragment; returns the whole datagram's frame once its last piece is in.
    pub fn offer(&mut self, frame: &[u8], now: Instant) -> Option<Vec<u8>> {
        let fragment = parse(frame)?;
        let v6 = frame[12] == 0x86;
        let end = fragment.offset + fragment.data.len();
        // Every piece but the last carries a multiple of 8 bytes.
        if end > MAX_PAYLOAD || (fragment.more && fragment.data.len() % 8 != 0) {
            self.discard(&fragment.key);
            return None;
        }
        if self.bytes + fragment.data.len() > MAX_BYTES {
            return None;
        }
        let partial = self.pending.entry(fragment.key).or_insert_with(|| Partial {
            started: now,
            parts: BTreeMap::new(),
            total: None,
            header: None,
            v6,
        });
        let overlaps = partial
            .parts
            .range(..end)
            .next_back()
            .is_some_and(|(&o, d)| o + d.len() > fragment.offset);
        let bad_total = match (fragment.more, partial.total) {
            (false, Some(t)) => t != end,
            (true, Some(t)) => end > t,
            (false, None) => partial.parts.keys().next_back().is_some_and(|&o| o >= end),
            (true, None) => false,
        };
        if overlaps || bad_total {
            self.discard(&fragment.key);
            return None;
        }
        if !fragment.more {
            partial.total = Some(end);
        }
        if fragment.offset == 0 {
            partial.header = Some(fragment.header.to_vec());
        }
        partial.parts.insert(fragment.offset, fragment.data.to_vec());
        self.bytes += fragment.data.len();

        let total = partial.total?;
        let mut at = 0;
        for (&o, d) in &partial.parts {
            if o != at {
                return None;
            }
            at += d.len();
        }
        if at != total || partial.header.is_none() {
            return None;
        }
        let partial = self.pending.remove(&fragment.key).expect("present");
        self.bytes -= total;
        Some(rebuild(partial, fragment.key.proto, total))
    }

    /// Drops datagrams whose pieces did not all arrive in time.
    pub fn sweep(&mut self, now: Instant) {
        let expired: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.started) >= TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.discard(&key);
        }
    }

    fn discard(&mut self, key: &Key) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes -= p.parts.values().map(Vec::len).sum::<usize>();
        }
    }
}

/// The whole datagram as one frame: the first piece's headers, made unfragmented.
fn rebuild(partial: Partial, proto: u8, total: usize) -> Vec<u8> {
    let mut frame = partial.header.expect("checked");
    let header_len = frame.len() - ETH_HEADER;
    frame.reserve(total);
    for d in partial.parts.values() {
        frame.extend_from_slice(d);
    }
    let ip = &mut frame[ETH_HEADER..];
    if partial.v6 {
        ip[4..6].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = proto;
    } else {
        ip[2..4].copy_from_slice(&((header_len + total) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&[0, 0]);
        ip[10..12].copy_from_slice(&[0, 0]);
        let sum = !smoltcp::wire::checksum::data(&ip[..header_len]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 UDP fragment frame: `data` at `offset` of a datagram with ident 7.
    fn v4_fragment(offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HEADER + IPV4_HEADER];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[ETH_HEADER..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((IPV4_HEADER + data.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&7u16.to_be_bytes());
        let field = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&field.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 2, 100]);
        ip[16..20].copy_from_slice(&[10, 0, 2, 2]);
        f.extend_from_slice(data);
        f
    }

    fn v6_fragment(offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HEADER + IPV6_HEADER + FRAGMENT_HEADER];
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        let ip = &mut f[ETH_HEADER..];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((FRAGMENT_HEADER + data.len()) as u16).to_be_bytes());
        ip[6] = PROTO_FRAGMENT_V6;
        ip[7] = 64;
        ip[8] = 0xfd;
        ip[23] = 0x64;
        ip[24] = 0xfd;
        ip[39] = 2;
        let frag = &mut ip[IPV6_HEADER..];
        frag[0] = 17;
        let field = ((offset / 8) as u16) << 3 | u16::from(more);
        frag[2..4].copy_from_slice(&field.to_be_bytes());
        frag[4..8].copy_from_slice(&99u32.to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn puts_ipv4_pieces_together_in_any_order() {
        let data = payload(3000);
        let now = Instant::now();
        let mut r = Reassembler::default();
        assert!(r.offer(&v4_fragment(2400, false, &data[2400..]), now).is_none());
        assert!(r.offer(&v4_fragment(0, true, &data[..1200]), now).is_none());
        let whole = r
            .offer(&v4_fragment(1200, true, &data[1200..2400]), now)
            .expect("complete");
        let ip = &whole[ETH_HEADER..];
        assert_eq!(&ip[IPV4_HEADER..], &data[..]);
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            IPV4_HEADER + 3000
        );
        assert_eq!(&ip[6..8], &[0, 0], "no longer a fragment");
        assert_eq!(
            smoltcp::wire::checksum::data(&ip[..IPV4_HEADER]),
            !0,
            "header checksum"
        );
        assert!(!is_fragment(&whole));
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn puts_ipv6_pieces_together() {
        let data = payload(2000);
        let now = Instant::now();
        let mut r = Reassembler::default();
        assert!(r.offer(&v6_fragment(0, true, &data[..1232]), now).is_none());
        let whole = r
            .offer(&v6_fragment(1232, false, &data[1232..]), now)
            .expect("complete");
        let ip = &whole[ETH_HEADER..];
        assert_eq!(ip[6], 17, "the upper-layer protocol again");
        assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), 2000);
        assert_eq!(&ip[IPV6_HEADER..], &data[..]);
    }

    #[test]
    fn overlaps_and_stale_pieces_are_dropped() {
        let data = payload(3000);
        let now = Instant::now();
        let mut r = Reassembler::default();
        r.offer(&v4_fragment(0, true, &data[..1200]), now);
        // Overlapping the first piece: the whole datagram goes.
        assert!(r.offer(&v4_fragment(800, false, &data[800..]), now).is_none());
        assert!(r.pending.is_empty());
        assert_eq!(r.bytes, 0);
        // A datagram that never completes is swept after the timeout.
        r.offer(&v4_fragment(0, true, &data[..1200]), now);
        r.sweep(now + TIMEOUT / 2);
        assert_eq!(r.pending.len(), 1);
        r.sweep(now + TIMEOUT);
        assert!(r.pending.is_empty());
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn holds_at_most_max_bytes() {
        let data = payload(1200);
        let now = Instant::now();
        let mut r = Reassembler::default();
        let mut frame = v4_fragment(0, true, &data);
        for ident in 0..u16::MAX {
            frame[ETH_HEADER + 4..ETH_HEADER + 6].copy_from_slice(&ident.to_be_bytes());
            r.offer(&frame, now);
        }
        assert!(r.bytes <= MAX_BYTES, "{} bytes held", r.bytes);
    }
}
