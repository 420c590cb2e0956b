//! Address translation between what the container sees and the host: where a connection or
//! datagram to a virtual address really goes, and which source a published port's client gets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::slirp::SlirpConfig;

/// The translation rules of one stack, as slirp4netns has them.
#[derive(Debug, Clone)]
pub struct Nat {
    pub slirp: SlirpConfig,
    pub dns_servers: Vec<IpAddr>,
    pub dns_port: u16,
}

impl Nat {
    pub fn new(slirp: SlirpConfig, dns_servers: Vec<IpAddr>) -> Nat {
        Nat {
            slirp,
            dns_servers,
            dns_port: 53,
        }
    }

    /// Where traffic from the container to `dst` goes on the host, or `None` when it is refused:
    /// - the gateway is the host's loopback only with `allow_host_loopback` (slirp4netns'
    ///   `--disable-host-loopback` is Podman's default);
    /// - the DNS address, port 53, is the first of the host's resolvers;
    /// - other virtual addresses, loopback, multicast and broadcast destinations are refused;
    /// - anything else is reached as it is.
    pub fn outbound(&self, dst: SocketAddr) -> Option<SocketAddr> {
        match dst.ip() {
            IpAddr::V4(ip) => {
                let s = &self.slirp;
                if ip == s.gateway() {
                    return s
                        .allow_host_loopback
                        .then(|| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), dst.port()));
                }
                if ip == s.dns() {
                    return self.dns_target(dst.port());
                }
                if s.contains(ip)
                    || ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    || ip.is_broadcast()
                {
                    return None;
                }
                Some(dst)
            }
            IpAddr::V6(ip) => {
                let s = &self.slirp;
                if ip == s.gateway6() {
                    return s
                        .allow_host_loopback
                        .then(|| SocketAddr::new(Ipv6Addr::LOCALHOST.into(), dst.port()));
                }
                if ip == s.dns6() {
                    return self.dns_target(dst.port());
                }
                if s.contains6(ip)
                    || ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    || ip.segments()[0] & 0xffc0 == 0xfe80
                {
                    return None;
                }
                if let Some(v4) = ip.to_ipv4_mapped() {
                    return self.outbound(SocketAddr::new(v4.into(), dst.port()));
                }
                Some(dst)
            }
        }
    }

    fn dns_target(&self, port: u16) -> Option<SocketAddr> {
        if port != 53 {
            return None;
        }
        self.dns_servers
            .first()
            .map(|ip| SocketAddr::new(*ip, self.dns_port))
    }

    /// The source address a published port's client gets inside the container: its own address
    /// when the container can route back to it, otherwise the gateway (Linux drops packets from
    /// 127.0.0.0/8 arriving on a non-loopback interface, as pasta maps them too). The port is kept.
    pub fn inbound_source(&self, client: SocketAddr) -> IpAddr {
        let s = &self.slirp;
        let ip = match client.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                if v4.is_loopback() || v4.is_unspecified() || s.contains(v4) {
                    IpAddr::V4(s.gateway())
                } else {
                    IpAddr::V4(v4)
                }
            }
            IpAddr::V6(v6) => {
                if !s.enable_ipv6 {
                    // An IPv6 client of a container without IPv6 still gets in, from the gateway.
                    IpAddr::V4(s.gateway())
                } else if v6.is_loopback()
                    || v6.is_unspecified()
                    || s.contains6(v6)
                    || v6.segments()[0] & 0xffc0 == 0xfe80
                {
                    IpAddr::V6(s.gateway6())
                } else {
                    IpAddr::V6(v6)
                }
            }
        }
    }

    /// The container's address in the family of `peer`.
    pub fn container_address_for(&self, peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V4(_) => IpAddr::V4(self.slirp.container_address()),
            IpAddr::V6(_) => IpAddr::V6(self.slirp.container_address6()),
        }
    }

    /// Whether `ip` is one of the container's addresses.
    pub fn is_container(&self, ip: IpAddr) -> bool {
        ip == IpAddr::V4(self.slirp.container_address()) || ip == IpAddr::V6(self.slirp.container_address6())
    }

    /// Whether `ip` is the DNS address (10.0.2.3 or fd00::3).
    pub fn is_dns(&self, ip: IpAddr) -> bool {
        ip == IpAddr::V4(self.slirp.dns()) || ip == IpAddr::V6(self.slirp.dns6())
    }

    /// Whether an ICMP echo to `ip` is answered by the stack itself (the gateway and DNS
    /// addresses), as slirp4netns does.
    pub fn answers_echo(&self, ip: IpAddr) -> bool {
        let s = &self.slirp;
        ip == IpAddr::V4(s.gateway())
            || ip == IpAddr::V4(s.dns())
            || ip == IpAddr::V6(s.gateway6())
            || ip == IpAddr::V6(s.dns6())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat(allow_loopback: bool) -> Nat {
        let slirp = SlirpConfig {
            allow_host_loopback: allow_loopback,
            enable_ipv6: true,
            ..SlirpConfig::default()
        };
        Nat::new(slirp, vec!["127.0.0.53".parse().unwrap()])
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_is_host_loopback_only_when_allowed() {
        assert_eq!(
            nat(true).outbound(sa("10.0.2.2:8080")),
            Some(sa("127.0.0.1:8080"))
        );
        assert_eq!(nat(false).outbound(sa("10.0.2.2:8080")), None);
        assert_eq!(nat(true).outbound(sa("[fd00::2]:80")), Some(sa("[::1]:80")));
        assert_eq!(nat(false).outbound(sa("[fd00::2]:80")), None);
    }

    #[test]
    fn dns_goes_to_the_host_resolver() {
        // A local resolver (systemd-resolved's stub) works: the stack runs in the host netns.
        assert_eq!(nat(false).outbound(sa("10.0.2.3:53")), Some(sa("127.0.0.53:53")));
        assert_eq!(nat(false).outbound(sa("[fd00::3]:53")), Some(sa("127.0.0.53:53")));
        assert_eq!(nat(false).outbound(sa("10.0.2.3:80")), None);
        let none = Nat::new(SlirpConfig::default(), vec![]);
        assert_eq!(none.outbound(sa("10.0.2.3:53")), None);
    }

    #[test]
    fn refuses_virtual_and_special_destinations() {
        let n = nat(true);
        for dst in [
            "10.0.2.50:1",
            "127.0.0.1:1",
            "0.0.0.0:1",
            "224.0.0.1:1",
            "255.255.255.255:1",
            "[::1]:1",
            "[fe80::1]:1",
            "[fd00::9]:1",
        ] {
            assert_eq!(n.outbound(sa(dst)), None, "{dst}");
        }
        assert_eq!(n.outbound(sa("192.0.2.7:443")), Some(sa("192.0.2.7:443")));
        assert_eq!(
            n.outbound(sa("[::ffff:192.0.2.7]:443")),
            Some(sa("192.0.2.7:443"))
        );
    }

    #[test]
    fn inbound_keeps_routable_clients() {
        let n = nat(false);
        assert_eq!(
            n.inbound_source(sa("192.0.2.2:5000")),
            "192.0.2.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            n.inbound_source(sa("127.0.0.1:5000")),
            "10.0.2.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            n.inbound_source(sa("[::ffff:127.0.0.1]:5000")),
            "10.0.2.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            n.inbound_source(sa("[::1]:5000")),
            "fd00::2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            n.inbound_source(sa("[2001:db8::1]:5000")),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            n.inbound_source(sa("10.0.2.77:5000")),
            "10.0.2.2".parse::<IpAddr>().unwrap()
        );
        let v4only = Nat::new(SlirpConfig::default(), vec![]);
        assert_eq!(
            v4only.inbound_source(sa("[2001:db8::1]:5000")),
            "10.0.2.2".parse::<IpAddr>().unwrap()
        );
    }
}
