//! The `slirp4netns[:opt=val,...]` network mode and the addresses it implies.
//!
//! One source of truth for the addresses: the tap set-up inside the container (userns), the stack
//! (this crate) and the generated `/etc/resolv.conf` (cli) all derive them from [`SlirpConfig`].

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use smoltcp::wire::EthernetAddress;

/// Configuration of a slirp4netns-compatible network, with slirp4netns' defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlirpConfig {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
    pub allow_host_loopback: bool,
    pub enable_ipv6: bool,
    /// A hosts-format file whose names the DNS address answers itself (A records), re-read
    /// when it changes: the members of the container's user networks (see [`crate::dns`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlirpConfigError {
    #[error("invalid slirp4netns option {0:?}: expected KEY=VALUE")]
    Malformed(String),
    #[error("unknown slirp4netns option {0:?}")]
    UnknownOption(String),
    #[error("invalid value {value:?} for slirp4netns option {key}")]
    BadValue { key: String, value: String },
}

impl Default for SlirpConfig {
    fn default() -> Self {
        SlirpConfig {
            network: Ipv4Addr::new(10, 0, 2, 0),
            prefix_len: 24,
            // Podman passes --mtu=65520 to slirp4netns.
            mtu: 65520,
            allow_host_loopback: false,
            enable_ipv6: false,
            names_file: None,
        }
    }
}

/// slirp4netns' IPv6 prefix (fixed, as in slirp4netns): fd00::/64.
const NETWORK6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0);

impl SlirpConfig {
    /// Parses the options after `slirp4netns:` (comma separated `key=value`).
    pub fn parse_options(options: &str) -> Result<Self, SlirpConfigError> {
        let mut config = SlirpConfig::default();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| SlirpConfigError::Malformed(option.to_string()))?;
            let bad = || SlirpConfigError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
            };
            match key {
                "cidr" => {
                    let (addr, len) = value.split_once('/').ok_or_else(bad)?;
                    config.network = addr.parse().map_err(|_| bad())?;
                    config.prefix_len = len.parse().map_err(|_| bad())?;
                    if config.prefix_len > 25 {
                        return Err(bad());
                    }
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(config.prefix_len))
                        .unwrap_or(0);
                    config.network = Ipv4Addr::from(u32::from(config.network) & mask);
                }
                "mtu" => {
                    config.mtu = value.parse().map_err(|_| bad())?;
                    if !(68..=65521).contains(&config.mtu) {
                        return Err(bad());
                    }
                }
                "allow_host_loopback" => config.allow_host_loopback = parse_bool(value).ok_or_else(bad)?,
                "enable_ipv6" => config.enable_ipv6 = parse_bool(value).ok_or_else(bad)?,
                // Podman's choice between rootlesskit and slirp4netns for published ports. burrow
                // has one port handler, which keeps the client's address, so both names select it.
                "port_handler" => match value {
                    "rootlesskit" | "slirp4netns" => {}
                    _ => return Err(bad()),
                },
                _ => return Err(SlirpConfigError::UnknownOption(key.to_string())),
            }
        }
        Ok(config)
    }

    fn host_offset(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    /// The netmask of the network (255.255.255.0 for /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0))
    }

    /// Whether `addr` lies in the virtual network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & u32::from(self.netmask()) == u32::from(self.network)
    }

    /// The gateway, which is also the host's loopback when `allow_host_loopback` is set.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host_offset(2)
    }

    pub fn dns(&self) -> Ipv4Addr {
        self.host_offset(3)
    }

    pub fn container_address(&self) -> Ipv4Addr {
        self.host_offset(100)
    }

    /// The IPv6 prefix length (64, fixed as in slirp4netns).
    pub fn prefix_len6(&self) -> u8 {
        64
    }

    /// Whether `addr` lies in the virtual IPv6 network fd00::/64.
    pub fn contains6(&self, addr: Ipv6Addr) -> bool {
        addr.segments()[..4] == NETWORK6.segments()[..4]
    }

    /// fd00::2, the IPv6 gateway (the host's ::1 when `allow_host_loopback` is set).
    pub fn gateway6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)
    }

    /// fd00::3, the IPv6 DNS forwarder.
    pub fn dns6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)
    }

    /// fd00::100, the container's IPv6 address.
    pub fn container_address6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100)
    }

    /// The gateway's MAC address: libslirp's `52:55:` followed by the gateway's IPv4 address.
    pub fn gateway_mac(&self) -> EthernetAddress {
        let [a, b, c, d] = self.gateway().octets();
        EthernetAddress([0x52, 0x55, a, b, c, d])
    }

    /// The container's MAC address, which the tap is given so that the stack knows it before the
    /// container sends anything: libslirp's `52:56:00:00:00:01` style, locally administered.
    pub fn container_mac(&self) -> EthernetAddress {
        let [a, b, c, d] = self.container_address().octets();
        EthernetAddress([0x52, 0x56, a, b, c, d])
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_slirp4netns() {
        let c = SlirpConfig::default();
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(c.dns(), Ipv4Addr::new(10, 0, 2, 3));
        assert_eq!(c.container_address(), Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.mtu, 65520);
        assert_eq!(c.gateway6().to_string(), "fd00::2");
        assert_eq!(c.dns6().to_string(), "fd00::3");
        assert_eq!(c.container_address6().to_string(), "fd00::100");
        assert_eq!(c.gateway_mac().to_string(), "52-55-0a-00-02-02");
        assert!(c.contains(Ipv4Addr::new(10, 0, 2, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 3, 1)));
        assert!(c.contains6("fd00::5".parse().unwrap()));
        assert!(!c.contains6("fd01::5".parse().unwrap()));
    }

    #[test]
    fn parses_options() {
        let c = SlirpConfig::parse_options("cidr=10.5.0.0/16,mtu=1500,allow_host_loopback=true").unwrap();
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 5, 0, 2));
        assert_eq!(c.mtu, 1500);
        assert!(c.allow_host_loopback);
        let c = SlirpConfig::parse_options("cidr=10.5.0.7/24,port_handler=rootlesskit").unwrap();
        assert_eq!(c.network, Ipv4Addr::new(10, 5, 0, 0));
    }

    #[test]
    fn rejects_bad_options() {
        assert!(matches!(
            SlirpConfig::parse_options("bogus=1"),
            Err(SlirpConfigError::UnknownOption(_))
        ));
        assert!(matches!(
            SlirpConfig::parse_options("mtu"),
            Err(SlirpConfigError::Malformed(_))
        ));
        assert!(matches!(
            SlirpConfig::parse_options("mtu=12"),
            Err(SlirpConfigError::BadValue { .. })
        ));
        assert!(matches!(
            SlirpConfig::parse_options("port_handler=pasta"),
            Err(SlirpConfigError::BadValue { .. })
        ));
    }

    #[test]
    fn round_trips_through_json() {
        let c = SlirpConfig::parse_options("mtu=1500,enable_ipv6=true").unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SlirpConfig>(&text).unwrap(), c);
        let partial: SlirpConfig = serde_json::from_str(r#"{"allow_host_loopback":true}"#).unwrap();
        assert_eq!(partial.mtu, 65520);
        assert!(partial.allow_host_loopback);
    }
}
