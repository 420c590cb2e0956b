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

/// Docker's legacy link variables for each `--link NAME[:ALIAS]` of the container `ours`
/// (its name), with `gateway` the address the links name: `ALIAS_NAME=/ours/alias`; per
/// published port of NAME, `ALIAS_PORT_80_TCP=tcp://GATEWAY:HOSTPORT` with `_ADDR`, `_PORT`,
/// `_PROTO`, and `ALIAS_PORT` for its lowest container port; `ALIAS_ENV_K=V` for NAME's
/// environment but HOME and PATH. Ports are the host's: where burrow's links lead.
pub fn env(store: &Store, links: &[String], ours: &str, gateway: &str) -> anyhow::Result<Vec<String>> {
    let mut env = Vec::new();
    for link in links {
        let (name, alias) = link.split_once(':').unwrap_or((link, link));
        let c = store
            .container(name)
            .map_err(|_| anyhow::anyhow!("could not get container for {name}: no such container"))?;
        let launch = crate::launch::load(store, &c)?;
        let prefix = alias.to_uppercase().replace('-', "_");
        env.push(format!("{prefix}_NAME=/{ours}/{alias}"));
        let mut ports: Vec<_> = launch
            .network
            .iter()
            .flat_map(|n| n.port_forwards.iter())
            // A port the kernel chooses (-P) is known only once the container runs.
            .filter(|p| p.host_port != 0)
            .collect();
        ports.sort_by_key(|p| (p.container_port, p.proto.to_string()));
        for (i, p) in ports.iter().enumerate() {
            let url = format!("{}://{gateway}:{}", p.proto, p.host_port);
            if i == 0 {
                env.push(format!("{prefix}_PORT={url}"));
            }
            let var = format!(
                "{prefix}_PORT_{}_{}",
                p.container_port,
                p.proto.to_string().to_uppercase()
            );
            env.push(format!("{var}={url}"));
            env.push(format!("{var}_ADDR={gateway}"));
            env.push(format!("{var}_PORT={}", p.host_port));
            env.push(format!("{var}_PROTO={}", p.proto));
        }
        let theirs = launch
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default();
        for kv in theirs {
            match kv.split_once('=') {
                Some(("HOME" | "PATH", _)) | None => {}
                Some((k, v)) => env.push(format!("{prefix}_ENV_{k}={v}")),
            }
        }
    }
    Ok(env)
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
