//! Dependencies between containers: `--requires` (Podman's) and `--link` (Docker's). A
//! required container is started before the one that requires it, and `rm` refuses to
//! remove it while another depends on it (`rm --depend` removes the dependents first).
//!
//! burrow gives each container a network of its own, so a link cannot point at the other
//! container's address as on Docker's bridge: `--link NAME:ALIAS` maps ALIAS and NAME in
//! /etc/hosts to the host as the container sees it (the gateway, with host loopback
//! allowed), where NAME's published ports are; with `--network host`, to 127.0.0.1.

use anyhow::bail;
use burrow_netstack::SlirpConfig;
use burrow_storage::{ContainerRecord, Store};
use burrow_userns::spec::NetworkMode;

/// The `--add-host` value that stands for the host (as Podman's and Docker's).
pub const HOST_GATEWAY: &str = "host-gateway";

/// The ids `--requires` and `--link` name, and the host names the links add.
pub fn resolve(
    store: &Store,
    requires: &[String],
    links: &[String],
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut ids: Vec<String> = Vec::new();
    let mut add = |c: ContainerRecord| {
        if !ids.contains(&c.id) {
            ids.push(c.id);
        }
    };
    for name in requires
        .iter()
        .flat_map(|r| r.split(','))
        .filter(|n| !n.is_empty())
    {
        add(store.container(name)?);
    }
    let mut hosts = Vec::new();
    for link in links {
        let (name, alias) = link.split_once(':').unwrap_or((link, link));
        if name.is_empty() || alias.is_empty() {
            bail!("invalid --link {link:?}: expected NAME[:ALIAS]");
        }
        let c = store
            .container(name)
            .map_err(|_| anyhow::anyhow!("could not get container for {name}: no such container"))?;
        for host in [alias, c.name.as_str()] {
            let entry = format!("{host}:{HOST_GATEWAY}");
            if !hosts.contains(&entry) {
                hosts.push(entry);
            }
        }
        add(c);
    }
    Ok((ids, hosts))
}

/// The address `host-gateway` stands for in this container: none without a network.
pub fn gateway(
    network: NetworkMode,
    slirp: Option<&SlirpConfig>,
    links: &[String],
) -> anyhow::Result<Option<String>> {
    Ok(match (network, slirp) {
        (NetworkMode::Host, _) => Some("127.0.0.1".into()),
        (_, Some(s)) => Some(s.gateway().to_string()),
        (_, None) if !links.is_empty() => {
            bail!("conflicting options: --network=none can't be used with links")
        }
        (_, None) => None,
    })
}

/// `--add-host` entries with `host-gateway` replaced by the host's address.
pub fn host_gateway(entries: Vec<String>, gateway: &Option<String>) -> anyhow::Result<Vec<String>> {
    entries
        .into_iter()
        .map(|e| match e.split_once(':') {
            Some((host, HOST_GATEWAY)) => match gateway {
                Some(ip) => Ok(format!("{host}:{ip}")),
                None => bail!("--add-host {e:?}: host-gateway needs a network (not --network none)"),
            },
            _ => Ok(e),
        })
        .collect()
}

/// The containers that require `id` (directly).
pub fn dependents(store: &Store, id: &str) -> anyhow::Result<Vec<ContainerRecord>> {
    Ok(store
        .containers()?
        .into_iter()
        .filter(|c| {
            crate::launch::summary(c)
                .map(|l| l.requires.iter().any(|r| r == id))
                .unwrap_or(false)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_gateway_is_replaced() {
        let gw = Some("10.0.2.2".to_string());
        assert_eq!(
            host_gateway(vec!["db:host-gateway".into(), "x:1.2.3.4".into()], &gw).unwrap(),
            ["db:10.0.2.2", "x:1.2.3.4"]
        );
        assert!(host_gateway(vec!["db:host-gateway".into()], &None).is_err());
        assert!(gateway(NetworkMode::Private, None, &["db".into()]).is_err());
        assert_eq!(
            gateway(NetworkMode::Host, None, &[]).unwrap().as_deref(),
            Some("127.0.0.1")
        );
    }
}
