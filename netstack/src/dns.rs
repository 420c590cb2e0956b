//! The host's resolvers. Queries to the container's DNS address (10.0.2.3, fd00::3) are relayed
//! to the first of them by the UDP and TCP relays ([`crate::nat::Nat::outbound`]); since the stack
//! runs in the host's network namespace, a local stub such as systemd-resolved's 127.0.0.53 works.

use std::net::IpAddr;

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

    #[test]
    fn parses_nameservers() {
        let text = "# generated\nsearch example.org\nnameserver 127.0.0.53\nnameserver  ::1 \n\
                    nameserver fe80::1%eth0\noptions edns0\nnameserver bogus\n";
        let want: Vec<IpAddr> = vec!["127.0.0.53".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(parse_resolv_conf(text), want);
    }
}
