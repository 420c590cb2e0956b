//! What the stack process is told: the network ([`SlirpConfig`]), the DNS servers to forward to
//! and the published ports. It travels as JSON from burrow to `burrow __netstack`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::dns;
use crate::slirp::SlirpConfig;

/// The whole configuration of one stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    #[serde(default)]
    pub slirp: SlirpConfig,
    /// Where queries to the DNS address (10.0.2.3) go, on the host. Defaults to the host's
    /// `/etc/resolv.conf` nameservers; local resolvers such as systemd-resolved's 127.0.0.53 work,
    /// because the stack runs in the host's network namespace.
    #[serde(default = "dns::host_nameservers")]
    pub dns_servers: Vec<IpAddr>,
    /// The resolvers' port: 53 (another only for tests, whose stub resolver cannot bind 53).
    #[serde(default = "default_dns_port")]
    pub dns_port: u16,
    #[serde(default)]
    pub port_forwards: Vec<PortForward>,
    /// TCP flows beyond this are refused (RST): one container's flood of connections costs its
    /// own stack a bounded number of host sockets and no more. Lower only in tests.
    #[serde(default = "default_max_tcp_flows")]
    pub max_tcp_flows: usize,
}

fn default_dns_port() -> u16 {
    53
}

fn default_max_tcp_flows() -> usize {
    crate::tcp::MAX_FLOWS
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            slirp: SlirpConfig::default(),
            dns_servers: dns::host_nameservers(),
            dns_port: 53,
            port_forwards: Vec::new(),
            max_tcp_flows: default_max_tcp_flows(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A published port: the stack listens on `host_ip:host_port` and carries each connection (or
/// datagram) to the container's `container_port`, from the client's own address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// `None` listens on every IPv4 address (0.0.0.0), as Podman's `-p 8080:80`.
    #[serde(default)]
    pub host_ip: Option<IpAddr>,
    /// 0 lets the kernel choose; the ready message reports the port it chose.
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default = "default_proto")]
    pub proto: Protocol,
}

fn default_proto() -> Protocol {
    Protocol::Tcp
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("invalid port format {0:?}: expected [[ip:][hostPort]:]containerPort[/protocol]")]
    Format(String),
    #[error("invalid IP address {0:?} in port mapping")]
    Address(String),
    #[error("invalid port {0:?}: must be 1-65535")]
    Port(String),
    #[error("invalid protocol {0:?}: expected tcp or udp")]
    Protocol(String),
    #[error("host and container port ranges have different lengths in {0:?}")]
    RangeMismatch(String),
}

impl PortForward {
    /// Parses one `-p`/`--publish` value as Podman does: `[[ip:][hostPort]:]containerPort[/protocol]`,
    /// with ranges (`8000-8002:80-82`), IPv6 host addresses in brackets (`[::1]:8080:80`) and
    /// `tcp,udp` for both protocols. A missing host port gives `host_port: 0` (the kernel picks).
    pub fn parse_publish(spec: &str) -> Result<Vec<PortForward>, PublishError> {
        let format = || PublishError::Format(spec.to_string());
        let (addr_ports, protos) = match spec.rsplit_once('/') {
            Some((a, p)) => (a, p),
            None => (spec, "tcp"),
        };
        let protos = protos
            .split(',')
            .map(|p| match p {
                "tcp" => Ok(Protocol::Tcp),
                "udp" => Ok(Protocol::Udp),
                _ => Err(PublishError::Protocol(p.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Split off a bracketed IPv6 address first; otherwise fields are colon-separated.
        let (host_ip, rest) = if let Some(after) = addr_ports.strip_prefix('[') {
            let (ip, rest) = after.split_once(']').ok_or_else(format)?;
            let rest = rest.strip_prefix(':').ok_or_else(format)?;
            let ip: IpAddr = ip.parse().map_err(|_| PublishError::Address(ip.to_string()))?;
            (Some(ip), rest.to_string())
        } else {
            let fields: Vec<&str> = addr_ports.split(':').collect();
            match fields.len() {
                1 | 2 => (None, addr_ports.to_string()),
                3 => {
                    let ip = match fields[0] {
                        "" => None,
                        s => Some(s.parse().map_err(|_| PublishError::Address(s.to_string()))?),
                    };
                    (ip, format!("{}:{}", fields[1], fields[2]))
                }
                _ => return Err(format()),
            }
        };
        let (host, container) = match rest.split_once(':') {
            Some((h, c)) => (h, c),
            None => ("", rest.as_str()),
        };
        let container = parse_range(container)?;
        let host = if host.is_empty() {
            vec![0; container.len()]
        } else {
            parse_range(host)?
        };
        if host.len() != container.len() {
            return Err(PublishError::RangeMismatch(spec.to_string()));
        }
        let mut out = Vec::new();
        for proto in protos {
            for (h, c) in host.iter().zip(&container) {
                out.push(PortForward {
                    host_ip,
                    host_port: *h,
                    container_port: *c,
                    proto,
                });
            }
        }
        Ok(out)
    }
}

fn parse_range(s: &str) -> Result<Vec<u16>, PublishError> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PublishError::Port(p.to_string())),
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(PublishError::Port(s.to_string()));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![port(s)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(ip: Option<&str>, h: u16, c: u16, proto: Protocol) -> PortForward {
        PortForward {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: h,
            container_port: c,
            proto,
        }
    }

    #[test]
    fn parses_podman_publish_forms() {
        use Protocol::*;
        let p = PortForward::parse_publish;
        assert_eq!(p("8080:80").unwrap(), vec![fwd(None, 8080, 80, Tcp)]);
        assert_eq!(p("80").unwrap(), vec![fwd(None, 0, 80, Tcp)]);
        assert_eq!(
            p("127.0.0.1:8080:80/udp").unwrap(),
            vec![fwd(Some("127.0.0.1"), 8080, 80, Udp)]
        );
        assert_eq!(
            p("127.0.0.1::80").unwrap(),
            vec![fwd(Some("127.0.0.1"), 0, 80, Tcp)]
        );
        assert_eq!(p("[::1]:8080:80").unwrap(), vec![fwd(Some("::1"), 8080, 80, Tcp)]);
        assert_eq!(
            p("8000-8001:90-91/tcp,udp").unwrap(),
            vec![
                fwd(None, 8000, 90, Tcp),
                fwd(None, 8001, 91, Tcp),
                fwd(None, 8000, 90, Udp),
                fwd(None, 8001, 91, Udp)
            ]
        );
        assert!(matches!(
            p("8000-8002:90-91"),
            Err(PublishError::RangeMismatch(_))
        ));
        assert!(matches!(p("0:80"), Err(PublishError::Port(_))));
        assert!(matches!(p("80/sctp"), Err(PublishError::Protocol(_))));
        assert!(matches!(p("x.y:1:2"), Err(PublishError::Address(_))));
        assert!(matches!(p("1:2:3:4"), Err(PublishError::Format(_))));
    }

    #[test]
    fn config_json_has_defaults() {
        let c: StackConfig = serde_json::from_str(
            r#"{"dns_servers":["127.0.0.53"],"port_forwards":[{"host_port":8080,"container_port":80}]}"#,
        )
        .unwrap();
        assert_eq!(c.slirp, SlirpConfig::default());
        assert_eq!(c.dns_servers, vec!["127.0.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.port_forwards, vec![fwd(None, 8080, 80, Protocol::Tcp)]);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<StackConfig>(&text).unwrap(), c);
        assert!(serde_json::from_str::<StackConfig>(r#"{"bogus":1}"#).is_err());
    }
}
