//! `burrow port`: the ports a container publishes (`-p`), as its network stack bound them.

use anyhow::{bail, Result};

use super::ctrinspect::{published_ports, Published};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// Display port information for all containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    /// CONTAINER [PRIVATE_PORT[/PROTO]]
    args: Vec<String>,
}

fn line(p: &Published) -> String {
    format!(
        "{}/{} -> {}:{}",
        p.container_port, p.protocol, p.host_ip, p.host_port
    )
}

pub fn port(args: PortArgs, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    if args.all {
        if !args.args.is_empty() {
            bail!("the --all option cannot be used with a container name");
        }
        for c in store.containers()? {
            for p in published_ports(store, &c) {
                println!("{}\t{}", &c.id[..12], line(&p));
            }
        }
        return Ok(0);
    }
    let (record, filter) = match (args.latest, args.args.as_slice()) {
        (true, rest) => (
            store
                .containers()?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("no containers"))?,
            rest.first().cloned(),
        ),
        (false, [name, rest @ ..]) => (store.container(name)?, rest.first().cloned()),
        (false, []) => bail!("you must supply a running container name or id"),
    };
    let ports = published_ports(store, &record);
    if let Some(wanted) = filter {
        let (num, proto) = wanted.split_once('/').unwrap_or((&wanted, "tcp"));
        let num: u16 = num
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid port {wanted:?}"))?;
        let found: Vec<&Published> = ports
            .iter()
            .filter(|p| p.container_port == num && p.protocol == proto)
            .collect();
        if found.is_empty() {
            bail!("failed to find published port \"{num}/{proto}\"");
        }
        for p in found {
            println!("{}:{}", p.host_ip, p.host_port);
        }
        return Ok(0);
    }
    if ports.is_empty() {
        // Podman prints nothing; say why on stderr, where scripts do not look.
        eprintln!(
            "container {} publishes no ports (ports are published with -p on burrow's userspace network)",
            record.name
        );
    }
    for p in &ports {
        println!("{}", line(p));
    }
    Ok(0)
}
