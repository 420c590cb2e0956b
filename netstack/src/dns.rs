//! The host's resolvers. Queries to the container's DNS address (10.0.2.3, fd00::3) are relayed
//! to the first of them by the UDP and TCP relays ([`crate::nat::Nat::outbound`]); since the stack
//! runs in the host's network namespace, a local stub such as systemd-resolved's 127.0.0.53 works.
//!
//! [`LocalNames`]: UDP queries for the names of a hosts-format file (the containers on the
//! container's user networks, as aardvark-dns serves them for Podman) are answered here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::SystemTime;

/// The names of a hosts file, re-read whenever its modification time or size changes (the
/// CLI rewrites it when a member of a network starts or goes).
#[derive(Default)]
pub struct LocalNames {
    stamp: Option<(SystemTime, u64)>,
    names: HashMap<String, Vec<Ipv4Addr>>,
}

impl LocalNames {
    /// The reply to `query` if it asks for a name of `path`; None to relay it.
    pub fn answer(&mut self, path: &Path, query: &[u8]) -> Option<Vec<u8>> {
        let meta = std::fs::metadata(path).ok()?;
        let stamp = (meta.modified().ok()?, meta.len());
        if self.stamp != Some(stamp) {
            self.names = parse_hosts(&std::fs::read_to_string(path).ok()?);
            self.stamp = Some(stamp);
        }
        answer_query(query, &self.names)
    }
}

/// Name (lower case) to IPv4 addresses, from hosts-file lines.
pub fn parse_hosts(text: &str) -> HashMap<String, Vec<Ipv4Addr>> {
    let mut names: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<Ipv4Addr>) else {
            continue;
        };
        for name in words {
            let list = names.entry(name.to_ascii_lowercase()).or_default();
            if !list.contains(&ip) {
                list.push(ip);
            }
        }
    }
    names
}

/// A DNS reply to a standard one-question query for a name of `names`: its A records (none
/// for other types, so that an AAAA query gets a quick empty answer rather than a relay).
pub fn answer_query(query: &[u8], names: &HashMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([query[2], query[3]]);
    let count = |i: usize| u16::from_be_bytes([query[i], query[i + 1]]);
    // A query (QR 0), standard (opcode 0), with one question.
    if flags & 0x8000 != 0 || flags & 0x7800 != 0 || count(4) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let qclass = u16::from_be_bytes([*query.get(at + 2)?, *query.get(at + 3)?]);
    let question_end = at + 4;
    let addresses = names.get(&labels.join("."))?;
    if qclass != 1 {
        return None;
    }
    let records: &[Ipv4Addr] = match qtype {
        1 | 255 => addresses,
        _ => &[],
    };
    let mut reply = Vec::with_capacity(question_end + 16 * records.len());
    reply.extend_from_slice(&query[..2]);
    // QR, AA, the query's RD, RA; NOERROR.
    reply.extend_from_slice(&(0x8480 | (flags & 0x0100)).to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&(records.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..question_end]);
    for ip in records {
        // The name by pointer to the question's, type A, class IN, a short TTL (members come
        // and go), 4 bytes of address.
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// The nameservers of the host's `/etc/resolv.conf` (none when it cannot be read).
pub fn host_nameservers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|text| parse_resolv_conf(&text))
        .unwrap_or_default()
}

/// The `nameserver` addresses of a resolv.conf, in order. Link-local IPv6 servers need a scope
/// (`fe80::1%eth0`) that a relayed query cannot carry; they are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            if addr.contains('%') {
                return None;
            }
            addr.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn answers_names_of_the_hosts_file_only() {
        let names = parse_hosts("127.0.0.1\tlocalhost\n# burrow networks\n10.89.0.2\tsrv web\n::1 v6only\n");
        let q = query("Web", 1);
        let reply = answer_query(&q, &names).unwrap();
        assert_eq!(&reply[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 0x8580);
        assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 1, "one answer");
        assert_eq!(&reply[reply.len() - 4..], &[10, 89, 0, 2]);
        let aaaa = answer_query(&query("srv", 28), &names).unwrap();
        assert_eq!(
            u16::from_be_bytes([aaaa[6], aaaa[7]]),
            0,
            "no AAAA, but an answer"
        );
        assert!(
            answer_query(&query("example.org", 1), &names).is_none(),
            "relayed"
        );
        assert!(answer_query(&query("v6only", 1), &names).is_none());
        assert!(answer_query(&q[..10], &names).is_none());
    }

    #[test]
    fn parses_nameservers() {
        let text = "# generated\nsearch example.org\nnameserver 127.0.0.53\nnameserver  ::1 \n\
                    nameserver fe80::1%eth0\noptions edns0\nnameserver bogus\n";
        let want: Vec<IpAddr> = vec!["127.0.0.53".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(parse_resolv_conf(text), want);
    }
}
