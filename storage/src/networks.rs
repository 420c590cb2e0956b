//! User-defined networks (`burrow network`): a row each in the database, with the
//! containers attached to them and the address each got. The runtime side (the bridge's
//! namespace, veth pairs) is in the CLI; this is only the bookkeeping, so that addresses are
//! handed out once and a network in use cannot be removed.
//!
//! IPv4 only; addresses are allocated when a container is created on a network and freed
//! when it is removed, so a container keeps its address across restarts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use rusqlite::{params, OptionalExtension, Row};

use crate::events::Event;
use crate::{now, random_id, Store, StoreError};

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// `10.89.0.0/24`; the address is reduced to the network's (as Podman does).
    pub fn parse(text: &str) -> Option<Subnet> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        let s = Subnet { addr, prefix };
        Some(Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & s.mask()),
            prefix,
        })
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `n`th address of the network (1: the first host).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRecord {
    pub name: String,
    /// 64 hex digits, random (as netavark's).
    pub id: String,
    /// Always `bridge`.
    pub driver: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// `--ip-range`: addresses are allocated from it only.
    pub ip_range: Option<Subnet>,
    /// No route out: only the other containers of the network are reachable.
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewNetwork<'a> {
    pub name: Option<&'a str>,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Subnet>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A container's place on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub network: String,
    pub ip: Ipv4Addr,
    /// `--network-alias`: more names the other members resolve to this container.
    pub aliases: Vec<String>,
}

/// Names that select a network mode, not a network (Podman refuses them too); `burrow` is
/// burrow's name for its own stack.
pub const RESERVED_NETWORK_NAMES: &[&str] = &[
    "none",
    "host",
    "bridge",
    "private",
    "slirp4netns",
    "container",
    "ns",
    "burrow",
    "pasta",
];

const COLUMNS: &str = "name, id, driver, subnet, gateway, ip_range, internal, labels, options, created";

impl NetworkRecord {
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        let map = |i: usize| -> rusqlite::Result<BTreeMap<String, String>> {
            Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default())
        };
        let subnet: String = r.get(3)?;
        let gateway: String = r.get(4)?;
        let ip_range: Option<String> = r.get(5)?;
        Ok(NetworkRecord {
            name: r.get(0)?,
            id: r.get(1)?,
            driver: r.get(2)?,
            subnet: Subnet::parse(&subnet).unwrap_or(Subnet {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix: 32,
            }),
            gateway: gateway.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            ip_range: ip_range.as_deref().and_then(Subnet::parse),
            internal: r.get(6)?,
            labels: map(7)?,
            options: map(8)?,
            created: r.get(9)?,
        })
    }
}

fn attachment_from_row(r: &Row) -> rusqlite::Result<Attachment> {
    let ip: String = r.get(2)?;
    let aliases: String = r.get(3)?;
    Ok(Attachment {
        container_id: r.get(0)?,
        network: r.get(1)?,
        ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
    })
}

/// The first free `10.89.N.0/24` (N from 0), as Podman picks user networks' subnets.
fn free_subnet(taken: &[Subnet]) -> Option<Subnet> {
    (0..=255u8)
        .map(|n| Subnet {
            addr: Ipv4Addr::new(10, 89, n, 0),
            prefix: 24,
        })
        .find(|s| !taken.iter().any(|t| t.overlaps(s)))
}

impl Store {
    fn network_event(&self, name: &str, status: &str) {
        let mut event = Event::now("network", status);
        event.name = name.to_string();
        self.record_event(&event);
    }

    /// Records a network; the subnet defaults to the first free 10.89.N.0/24 and the
    /// gateway to its first address.
    pub fn create_network(&self, new: &NewNetwork) -> Result<NetworkRecord, StoreError> {
        let name = match new.name {
            Some(n) if RESERVED_NETWORK_NAMES.contains(&n) => {
                return Err(StoreError::NetworkNameReserved(n.to_string()))
            }
            Some(n) if !crate::valid_volume_name(n) => return Err(StoreError::BadNetworkName(n.to_string())),
            Some(n) => n.to_string(),
            None => self.free_network_name()?,
        };
        if let Ok(existing) = self.network(&name) {
            if existing.name == name {
                return Err(StoreError::NetworkExists(name));
            }
        }
        let taken: Vec<Subnet> = self.networks()?.iter().map(|n| n.subnet).collect();
        let subnet = match new.subnet {
            Some(s) => {
                if s.prefix > 30 {
                    return Err(StoreError::BadSubnet(format!(
                        "subnet {s} is too small: it needs room for a gateway and containers"
                    )));
                }
                if taken.iter().any(|t| t.overlaps(&s)) {
                    return Err(StoreError::BadSubnet(format!(
                        "subnet {s} is already used on the host or by another config"
                    )));
                }
                s
            }
            None => free_subnet(&taken)
                .ok_or_else(|| StoreError::BadSubnet("no free 10.89.N.0/24 subnet left".into()))?,
        };
        let gateway = new.gateway.unwrap_or_else(|| subnet.host(1));
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(StoreError::BadSubnet(format!(
                "gateway {gateway} not in subnet {subnet}"
            )));
        }
        if let Some(range) = new.ip_range {
            if !subnet.contains(range.addr) || range.prefix < subnet.prefix {
                return Err(StoreError::BadSubnet(format!(
                    "ip-range {range} is not inside subnet {subnet}"
                )));
            }
        }
        let inserted = self.conn().execute(
            &format!(
                "INSERT INTO networks ({COLUMNS}) VALUES (?1, ?2, 'bridge', ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                name,
                random_id(),
                subnet.to_string(),
                gateway.to_string(),
                new.ip_range.map(|r| r.to_string()),
                new.internal,
                serde_json::to_string(&new.labels).unwrap_or_default(),
                serde_json::to_string(&new.options).unwrap_or_default(),
                now(),
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::NetworkExists(name))
            }
            Err(e) => return Err(e.into()),
        }
        self.network_event(&name, "create");
        self.network(&name)
    }

    /// `podman1`-style names, as Podman names networks created without one.
    fn free_network_name(&self) -> Result<String, StoreError> {
        let names: Vec<String> = self.networks()?.into_iter().map(|n| n.name).collect();
        Ok((1..)
            .map(|n| format!("burrow{n}"))
            .find(|n| !names.contains(n))
            .expect("an unused name"))
    }

    /// A network by name, full id or unique id prefix.
    pub fn network(&self, name_or_id: &str) -> Result<NetworkRecord, StoreError> {
        let not_found = || StoreError::NoSuchNetwork(name_or_id.to_string());
        if let Some(n) = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM networks WHERE name = ?1"),
                [name_or_id],
                NetworkRecord::from_row,
            )
            .optional()?
        {
            return Ok(n);
        }
        if name_or_id.is_empty() || !name_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM networks WHERE id LIKE ?1 || '%'"))?;
        let mut found = stmt
            .query_map([name_or_id.to_ascii_lowercase()], NetworkRecord::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        match found.len() {
            1 => Ok(found.remove(0)),
            _ => Err(not_found()),
        }
    }

    pub fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM networks ORDER BY name"))?;
        let all = stmt
            .query_map([], NetworkRecord::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(all)
    }

    /// The containers attached to `network`, oldest attachment first.
    pub fn network_members(&self, network: &str) -> Result<Vec<Attachment>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT container_id, network, ip, aliases FROM container_networks WHERE network = ?1 ORDER BY rowid",
        )?;
        let all = stmt
            .query_map([network], attachment_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(all)
    }

    /// The networks container `id` is attached to, in the order it was attached.
    pub fn container_networks(&self, id: &str) -> Result<Vec<Attachment>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT container_id, network, ip, aliases FROM container_networks WHERE container_id = ?1 ORDER BY rowid",
        )?;
        let all = stmt
            .query_map([id], attachment_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(all)
    }

    /// Attaches container `id` to `network` with `ip` (checked), or the lowest free address
    /// from the second of the subnet (or of its ip range) up. One transaction: two containers
    /// created at once never get one address.
    pub fn attach_network(
        &self,
        id: &str,
        network: &str,
        ip: Option<Ipv4Addr>,
        aliases: &[String],
    ) -> Result<Attachment, StoreError> {
        let net = self.network(network)?;
        // Immediate: the write lock from the start, so the free address found is still free.
        let tx = rusqlite::Transaction::new_unchecked(self.conn(), rusqlite::TransactionBehavior::Immediate)?;
        let taken: Vec<Ipv4Addr> = self.network_members(&net.name)?.iter().map(|a| a.ip).collect();
        let range = net.ip_range.unwrap_or(net.subnet);
        let usable = |candidate: Ipv4Addr| {
            net.subnet.contains(candidate)
                && candidate != net.subnet.addr
                && candidate != net.subnet.broadcast()
                && candidate != net.gateway
        };
        let ip = match ip {
            Some(ip) => {
                if !usable(ip) {
                    return Err(StoreError::BadAddress(format!(
                        "requested static ip {ip} not in any subnet on network {}",
                        net.name
                    )));
                }
                if taken.contains(&ip) {
                    return Err(StoreError::BadAddress(format!(
                        "requested ip address {ip} is already allocated on network {}",
                        net.name
                    )));
                }
                ip
            }
            None => {
                let size = 1u64 << (32 - range.prefix);
                (1..size)
                    .map(|n| range.host(n as u32))
                    .find(|c| range.contains(*c) && usable(*c) && !taken.contains(c))
                    .ok_or_else(|| {
                        StoreError::BadAddress(format!("no free address left on network {}", net.name))
                    })?
            }
        };
        tx.execute(
            "INSERT INTO container_networks (container_id, network, ip, aliases) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                net.name,
                ip.to_string(),
                serde_json::to_string(aliases).unwrap_or_default()
            ],
        )?;
        tx.commit()?;
        Ok(Attachment {
            container_id: id.to_string(),
            network: net.name,
            ip,
            aliases: aliases.to_vec(),
        })
    }

    /// Detaches container `id` from `network` (its address is free again).
    pub fn detach_network(&self, id: &str, network: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM container_networks WHERE container_id = ?1 AND network = ?2",
            params![id, network],
        )?;
        Ok(n > 0)
    }

    /// Removes a network no container is attached to.
    pub fn remove_network(&self, name: &str) -> Result<(), StoreError> {
        let net = self.network(name)?;
        let users = self.network_members(&net.name)?;
        if !users.is_empty() {
            return Err(StoreError::NetworkInUse {
                name: net.name,
                containers: users.into_iter().map(|a| a.container_id).collect(),
            });
        }
        match self
            .conn()
            .execute("DELETE FROM networks WHERE name = ?1", [&net.name])
        {
            Ok(_) => {}
            // A container was attached since the check above: the foreign key refuses.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::NetworkInUse {
                    containers: self
                        .network_members(&net.name)?
                        .into_iter()
                        .map(|a| a.container_id)
                        .collect(),
                    name: net.name,
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.network_event(&net.name, "remove");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewContainer;

    use crate::testutil::temp_store as store;

    fn container(store: &Store) -> String {
        store
            .create_container(&NewContainer {
                name: None,
                image_id: None,
                auto_remove: false,
                config: "{}",
            })
            .unwrap()
            .id
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.89.3.7/24").unwrap();
        assert_eq!(s.to_string(), "10.89.3.0/24");
        assert!(s.contains("10.89.3.255".parse().unwrap()));
        assert!(!s.contains("10.89.4.1".parse().unwrap()));
        assert_eq!(s.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(Subnet::parse("10.0.0.0/33").is_none());
        assert!(Subnet::parse("10.0.0.0").is_none());
        assert!(Subnet::parse("10.89.0.0/16").unwrap().overlaps(&s));
    }

    #[test]
    fn creates_with_free_subnets_and_refuses_duplicates() {
        let (_d, store) = store();
        let a = store
            .create_network(&NewNetwork {
                name: Some("a"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.subnet.to_string(), "10.89.0.0/24");
        assert_eq!(a.gateway, Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(a.id.len(), 64);
        let b = store.create_network(&NewNetwork::default()).unwrap();
        assert_eq!(
            (b.name.as_str(), b.subnet.to_string()),
            ("burrow1", "10.89.1.0/24".into())
        );
        assert!(matches!(
            store.create_network(&NewNetwork {
                name: Some("a"),
                ..Default::default()
            }),
            Err(StoreError::NetworkExists(_))
        ));
        assert!(matches!(
            store.create_network(&NewNetwork {
                name: Some("host"),
                ..Default::default()
            }),
            Err(StoreError::NetworkNameReserved(_))
        ));
        assert!(matches!(
            store.create_network(&NewNetwork {
                name: Some("c"),
                subnet: Subnet::parse("10.89.0.0/16"),
                ..Default::default()
            }),
            Err(StoreError::BadSubnet(_))
        ));
        assert_eq!(store.network(&a.id[..12]).unwrap().name, "a");
    }

    #[test]
    fn allocates_the_lowest_free_address_and_frees_it() {
        let (_d, store) = store();
        store
            .create_network(&NewNetwork {
                name: Some("n"),
                ..Default::default()
            })
            .unwrap();
        let (c1, c2, c3) = (container(&store), container(&store), container(&store));
        assert_eq!(
            store.attach_network(&c1, "n", None, &[]).unwrap().ip,
            Ipv4Addr::new(10, 89, 0, 2)
        );
        assert_eq!(
            store.attach_network(&c2, "n", None, &[]).unwrap().ip,
            Ipv4Addr::new(10, 89, 0, 3)
        );
        assert!(matches!(
            store.attach_network(&c3, "n", Some(Ipv4Addr::new(10, 89, 0, 3)), &[]),
            Err(StoreError::BadAddress(_))
        ));
        assert!(matches!(
            store.remove_network("n"),
            Err(StoreError::NetworkInUse { .. })
        ));
        store.remove_container(&c1).unwrap();
        assert_eq!(
            store.attach_network(&c3, "n", None, &["web".into()]).unwrap().ip,
            Ipv4Addr::new(10, 89, 0, 2)
        );
        assert_eq!(
            store.container_networks(&c3).unwrap()[0].aliases,
            vec!["web".to_string()]
        );
        store.remove_container(&c2).unwrap();
        store.remove_container(&c3).unwrap();
        store.remove_network("n").unwrap();
        assert!(matches!(store.network("n"), Err(StoreError::NoSuchNetwork(_))));
    }
}
