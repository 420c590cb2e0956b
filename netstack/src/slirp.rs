//! The `slirp4netns[:opt=val,...]` network mode and the addresses it implies.

use std::net::Ipv4Addr;

/// Configuration of a slirp4netns-compatible network, with slirp4netns' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlirpConfig {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
    pub allow_host_loopback: bool,
    pub enable_ipv6: bool,
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
        }
    }
}

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
                }
                "mtu" => {
                    config.mtu = value.parse().map_err(|_| bad())?;
                    if !(68..=65521).contains(&config.mtu) {
                        return Err(bad());
                    }
                }
                "allow_host_loopback" => config.allow_host_loopback = parse_bool(value).ok_or_else(bad)?,
                "enable_ipv6" => config.enable_ipv6 = parse_bool(value).ok_or_else(bad)?,
                _ => return Err(SlirpConfigError::UnknownOption(key.to_string())),
            }
        }
        Ok(config)
    }

    fn host_offset(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
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
        assert_eq!(c.mtu, 65520);
    }

    #[test]
    fn parses_options() {
        let c = SlirpConfig::parse_options("cidr=10.5.0.0/16,mtu=1500,allow_host_loopback=true").unwrap();
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 5, 0, 2));
        assert_eq!(c.mtu, 1500);
        assert!(c.allow_host_loopback);
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
    }
}
