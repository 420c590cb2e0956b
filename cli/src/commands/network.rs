//! `burrow network SUBCOMMAND`: user-defined networks, as `podman network` (create, ls,
//! inspect, rm, prune, exists, connect, disconnect), and their use by containers.
//!
//! A network is a row in the store (`burrow_storage` networks) and, while a container on it
//! runs, a Linux bridge in a network namespace of its own, kept by a holder process
//! (`burrow-net`, started by `burrow __network-holder`; see `burrow_userns::bridge`). Each
//! running container on it gets a veth pair to that bridge (`eth0`, `eth1`, ... in the
//! container) with the address allocated when it was attached; it keeps its own userspace
//! stack (tap0, default route via 10.0.2.2) for the internet, the host and published ports,
//! except on `--internal` networks only. The holder exits once no container is attached.
//!
//! Names resolve through /etc/hosts: each member's hosts file ends with a block listing every
//! container on its networks (name and aliases), rewritten in place (the file is bind-mounted)
//! whenever a member starts or goes, so containers started later are seen by the earlier ones.
//! The container's stack also answers DNS queries for the names of that file (so `nslookup`
//! works too); an `--internal` network has no stack, and there /etc/hosts alone serves.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use burrow_storage::{Attachment, ContainerRecord, NetworkRecord, NewNetwork, Store, StoreError, Subnet};
use serde::Serialize;
use serde_json::Value;

use super::ctrutil::{self, PruneArgs};
use super::format::{self, Format};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum NetworkCommand {
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Create a network
    Create(CreateArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Check if a network exists
    Exists {
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Display the network configuration for one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove unused networks
    Prune(PruneArgs),
    /// Remove networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Driver to manage the network (only bridge)
    #[arg(short = 'd', long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format (default: the first free 10.89.N.0/24)
    #[arg(long, value_name = "CIDR")]
    subnet: Option<String>,
    /// IPv4 gateway for the subnet (default: its first address)
    #[arg(long, value_name = "IP")]
    gateway: Option<String>,
    /// Allocate container addresses from this range only (CIDR inside the subnet)
    #[arg(long = "ip-range", visible_alias = "iprange", value_name = "CIDR")]
    ip_range: Option<String>,
    /// Restrict external access from this network: no route out of it
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Set driver specific options (KEY=VALUE; recorded only)
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    opt: Vec<String>,
    /// Do not fail if the network already exists
    #[arg(long)]
    ignore: bool,
    /// Disable name resolution for this network (names are then not written to /etc/hosts)
    #[arg(long = "disable-dns")]
    disable_dns: bool,
    /// Enable IPv6 (not supported: burrow's networks are IPv4)
    #[arg(long)]
    ipv6: bool,
    /// Name of the network (default: burrowN)
    name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Pretty-print networks to JSON or using a Go template
    #[arg(short = 'f', long)]
    format: Option<String>,
    #[arg(value_name = "NETWORK", required = true)]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Provide filter values (name=, id=, label=KEY[=VALUE], driver=)
    #[arg(long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// Pretty-print networks to JSON or using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Do not print headers
    #[arg(short = 'n', long)]
    noheading: bool,
    /// Do not truncate the network ID
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Display only network names
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Remove the containers using the network too
    #[arg(short = 'f', long)]
    force: bool,
    /// Seconds to wait for a container to stop before killing it (with -f)
    #[arg(short = 't', long = "time")]
    time: Option<u32>,
    #[arg(value_name = "NETWORK", required = true)]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Network scoped alias for the container
    #[arg(long = "alias", value_name = "NAME")]
    alias: Vec<String>,
    /// IPv4 address for the container on the network
    #[arg(long)]
    ip: Option<String>,
    #[arg(value_name = "NETWORK")]
    network: String,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Debug, clap::Args)]
pub struct DisconnectArgs {
    /// Accepted for compatibility
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(value_name = "NETWORK")]
    network: String,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// `burrow __network-holder`: starts a network's namespace holder (internal).
#[derive(Debug, clap::Args)]
pub struct HolderArgs {
    #[arg(long)]
    gateway: Ipv4Addr,
    #[arg(long)]
    netmask: Ipv4Addr,
    #[arg(long = "pid-file")]
    pid_file: PathBuf,
    #[arg(long = "lock-file")]
    lock_file: PathBuf,
    /// Be the holder (a unit's main process), joining the user namespace of process PID
    #[arg(long = "foreground-in-userns-of", value_name = "PID")]
    foreground_in_userns_of: Option<i32>,
}

pub fn network(cmd: NetworkCommand, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    match cmd {
        NetworkCommand::Connect(a) => connect(store, a),
        NetworkCommand::Create(a) => create(store, a),
        NetworkCommand::Disconnect(a) => disconnect(store, a),
        NetworkCommand::Exists { name } => match store.network(&name) {
            Ok(_) => Ok(0),
            Err(StoreError::NoSuchNetwork(_)) => Ok(1),
            Err(e) => Err(e.into()),
        },
        NetworkCommand::Inspect(a) => inspect(store, a),
        NetworkCommand::Ls(a) => ls(store, a),
        NetworkCommand::Prune(a) => prune(store, a),
        NetworkCommand::Rm(a) => rm(store, a),
    }
}

/// The hidden holder command: prints the holder's pid once its bridge exists.
pub fn holder(args: HolderArgs) -> Result<i32> {
    if let Some(pid) = args.foreground_in_userns_of {
        let ns = fs::File::open(format!("/proc/{pid}/ns/user"))
            .with_context(|| format!("opening the user namespace of process {pid}"))?;
        let result = burrow_userns::bridge::holder_foreground(
            Some(ns),
            args.gateway,
            args.netmask,
            &args.pid_file,
            &args.lock_file,
        );
        // Only a failure returns: say it where the starter reads.
        let message = match result {
            Ok(never) => match never {},
            Err(message) => message,
        };
        println!("{message}");
        return Ok(1);
    }
    match burrow_userns::bridge::holder_main(args.gateway, args.netmask, &args.pid_file, &args.lock_file) {
        Ok(pid) => {
            println!("{pid}");
            Ok(0)
        }
        Err(message) => bail!("{message}"),
    }
}

fn key_values(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for kv in items {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => map.insert(k.to_string(), v.to_string()),
            None if !kv.is_empty() => map.insert(kv.clone(), String::new()),
            _ => bail!("invalid {flag} {kv:?}: expected KEY=VALUE"),
        };
    }
    Ok(map)
}

fn parse_subnet(flag: &str, text: &str) -> Result<Subnet> {
    Subnet::parse(text)
        .with_context(|| format!("invalid {flag} {text:?}: expected an IPv4 CIDR such as 10.89.0.0/24"))
}

fn create(store: &Store, args: CreateArgs) -> Result<i32> {
    if args.driver != "bridge" {
        bail!(
            "unsupported driver {}: burrow has only the bridge driver",
            args.driver
        );
    }
    if args.ipv6 {
        bail!("--ipv6 is not supported: burrow's networks are IPv4 only");
    }
    let subnet = args
        .subnet
        .as_deref()
        .map(|s| parse_subnet("--subnet", s))
        .transpose()?;
    if subnet.is_none() && (args.gateway.is_some() || args.ip_range.is_some()) {
        bail!("cannot set gateway or range without subnet");
    }
    let gateway = args
        .gateway
        .as_deref()
        .map(|g| {
            g.parse::<Ipv4Addr>()
                .with_context(|| format!("invalid --gateway {g:?}"))
        })
        .transpose()?;
    let mut options = key_values("--opt", &args.opt)?;
    if args.disable_dns {
        options.insert("dns_enabled".into(), "false".into());
    }
    let new = NewNetwork {
        name: args.name.as_deref(),
        subnet,
        gateway,
        ip_range: args
            .ip_range
            .as_deref()
            .map(|r| parse_subnet("--ip-range", r))
            .transpose()?,
        internal: args.internal,
        labels: key_values("--label", &args.label)?,
        options,
    };
    match store.create_network(&new) {
        Ok(n) => println!("{}", n.name),
        Err(StoreError::NetworkExists(name)) if args.ignore => println!("{name}"),
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}

fn dns_enabled(n: &NetworkRecord) -> bool {
    n.options.get("dns_enabled").is_none_or(|v| v != "false")
}

/// Podman's `network inspect` object (netavark's JSON), its fields in Podman's order.
#[derive(Serialize)]
struct NetworkData {
    name: String,
    id: String,
    driver: String,
    network_interface: &'static str,
    created: String,
    subnets: Vec<SubnetData>,
    ipv6_enabled: bool,
    internal: bool,
    dns_enabled: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    options: BTreeMap<String, String>,
    ipam_options: BTreeMap<&'static str, &'static str>,
    /// As Podman 5: the containers on the network, by id.
    containers: BTreeMap<String, ContainerOnNetwork>,
}

#[derive(Serialize)]
struct SubnetData {
    subnet: String,
    gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_range: Option<LeaseRange>,
}

#[derive(Serialize)]
struct LeaseRange {
    start_ip: String,
    end_ip: String,
}

#[derive(Serialize)]
struct ContainerOnNetwork {
    name: String,
    ip: String,
    aliases: Vec<String>,
}

fn describe(store: &Store, n: &NetworkRecord) -> Result<NetworkData> {
    let mut containers = BTreeMap::new();
    for a in store.network_members(&n.name)? {
        let name = store
            .container(&a.container_id)
            .map(|c| c.name)
            .unwrap_or_default();
        containers.insert(
            a.container_id,
            ContainerOnNetwork {
                name,
                ip: a.ip.to_string(),
                aliases: a.aliases,
            },
        );
    }
    Ok(NetworkData {
        name: n.name.clone(),
        id: n.id.clone(),
        driver: n.driver.clone(),
        network_interface: burrow_userns::bridge::BRIDGE_NAME,
        created: super::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(n.created.max(0) as u64),
        ),
        subnets: vec![SubnetData {
            subnet: n.subnet.to_string(),
            gateway: n.gateway.to_string(),
            lease_range: n.ip_range.map(|r| LeaseRange {
                start_ip: r.host(1).to_string(),
                end_ip: r.host((1u32 << (32 - r.prefix)).saturating_sub(2)).to_string(),
            }),
        }],
        ipv6_enabled: false,
        internal: n.internal,
        dns_enabled: dns_enabled(n),
        labels: n.labels.clone(),
        options: n
            .options
            .iter()
            .filter(|(k, _)| *k != "dns_enabled")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ipam_options: BTreeMap::from([("driver", "host-local")]),
        containers,
    })
}

fn inspect(store: &Store, args: InspectArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.names {
        match store.network(name) {
            Ok(n) => found.push(describe(store, &n)?),
            Err(StoreError::NoSuchNetwork(_)) => errors.push(format!("no such network {name}")),
            Err(e) => return Err(e.into()),
        }
    }
    ctrutil::print_inspected(&found, &errors, args.format.as_deref())
}

/// Whether `n` passes every filter (Podman's keys; several values of one key: any of them).
fn matches(n: &NetworkRecord, filters: &[String]) -> Result<bool> {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in filters {
        let Some((k, val)) = f.split_once('=') else {
            bail!("invalid filter {f:?}: expected KEY=VALUE");
        };
        by_key.entry(k).or_default().push(val);
    }
    let label = |l: &&str| match l.split_once('=') {
        Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
        None => n.labels.contains_key(*l),
    };
    for (key, values) in by_key {
        let ok = match key {
            "name" => values.iter().any(|v| n.name.contains(v)),
            "id" => values.iter().any(|v| n.id.starts_with(v)),
            "driver" => values.iter().any(|v| *v == n.driver),
            "label" => values.iter().any(label),
            "label!" => !values.iter().any(label),
            other => bail!("invalid filter {other:?}: burrow filters networks by name, id, label, driver"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ls(store: &Store, args: LsArgs) -> Result<i32> {
    let mut rows = Vec::new();
    for n in store.networks()? {
        if !matches(&n, &args.filter)? {
            continue;
        }
        let id = if args.no_trunc {
            n.id.clone()
        } else {
            n.id[..12].to_string()
        };
        let labels = n
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(serde_json::json!({
            "Name": n.name,
            "ID": id,
            "Driver": n.driver,
            "Labels": labels,
            "Internal": n.internal,
            "Subnets": n.subnet.to_string(),
        }));
    }
    let template = match (&args.format, args.quiet) {
        (Some(f), _) => f.clone(),
        (None, true) => "{{.Name}}".into(),
        (None, false) => "table {{.ID}}\t{{.Name}}\t{{.Driver}}".into(),
    };
    let mut format = Format::parse(&template)?;
    if let (Format::Template(t), true) = (&mut format, args.noheading) {
        t.table = false;
    }
    format::print(
        &format,
        &rows,
        &[("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER")],
    )?;
    Ok(0)
}

fn prune(store: &Store, args: PruneArgs) -> Result<i32> {
    let mut unused = Vec::new();
    for n in store.networks()? {
        if store.network_members(&n.name)?.is_empty() && matches(&n, &args.filter)? {
            unused.push(n.name);
        }
    }
    ctrutil::prune_unused("networks", unused, args.force, |name| {
        match store.remove_network(name) {
            Ok(()) => Ok(true),
            // Taken into use meanwhile: not unused any more.
            Err(StoreError::NetworkInUse { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

fn rm(store: &Store, args: RmArgs) -> Result<i32> {
    let mut code = 0;
    for name in &args.names {
        let result = (|| -> Result<String> {
            let net = store.network(name)?;
            if args.force {
                // As Podman: -f removes the containers on it first.
                for a in store.network_members(&net.name)? {
                    let mut c = store.container(&a.container_id)?;
                    store.refresh_state(&mut c)?;
                    if c.state == burrow_storage::ContainerState::Running {
                        super::stop::stop_container(store, &mut c, Some(args.time.unwrap_or(10)))?;
                    }
                    remove_container(store, &c.id, false)?;
                }
            }
            store.remove_network(&net.name)?;
            Ok(net.name)
        })();
        match result {
            Ok(removed) => println!("{removed}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::message(&e));
                code = match e.downcast_ref::<StoreError>() {
                    Some(StoreError::NetworkInUse { .. }) => 2,
                    Some(StoreError::NoSuchNetwork(_)) => 1,
                    _ => 125,
                };
            }
        }
    }
    Ok(code)
}

fn parse_ip(text: Option<&str>) -> Result<Option<Ipv4Addr>> {
    text.map(|ip| {
        ip.parse::<Ipv4Addr>()
            .with_context(|| format!("invalid IP address {ip:?}: burrow's networks are IPv4"))
    })
    .transpose()
}

fn connect(store: &Store, args: ConnectArgs) -> Result<i32> {
    let mut c = store.container(&args.container)?;
    let net = store.network(&args.network)?;
    store.refresh_state(&mut c)?;
    if store
        .container_networks(&c.id)?
        .iter()
        .any(|a| a.network == net.name)
    {
        bail!("container {} is already connected to network {}", c.id, net.name);
    }
    if crate::launch::summary(&c)?.join_network.is_some() {
        bail!(
            "container {} uses another network namespace: it cannot be connected to {}",
            c.name,
            net.name
        );
    }
    check_aliases(&args.alias)?;
    let attachment = store.attach_network(&c.id, &net.name, parse_ip(args.ip.as_deref())?, &args.alias)?;
    if let (burrow_storage::ContainerState::Running, Some(pid)) = (c.state, c.pid) {
        let index = store.container_networks(&c.id)?.len() - 1;
        let attached = attach_one(store, &net, &attachment, pid, index);
        if let Err(e) = attached {
            let _ = store.detach_network(&c.id, &net.name);
            return Err(e);
        }
        refresh_hosts(store, &c.id);
    }
    Ok(0)
}

fn disconnect(store: &Store, args: DisconnectArgs) -> Result<i32> {
    let mut c = store.container(&args.container)?;
    let net = store.network(&args.network)?;
    store.refresh_state(&mut c)?;
    if c.state == burrow_storage::ContainerState::Running {
        bail!(
            "container {} is running: burrow disconnects stopped containers only (stop it first)",
            c.name
        );
    }
    if !store.detach_network(&c.id, &net.name)? {
        bail!("container {} is not connected to network {}", c.id, net.name);
    }
    Ok(0)
}

/// What `--network NAME[:OPTIONS]` on `create`/`run` asks for, when NAME is a network.
pub struct UserNetwork {
    pub network: NetworkRecord,
    pub ip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// The options that are not the network's (`ip=`, `alias=`): for the container's own
    /// stack (`allow_host_loopback=true`, ...).
    pub stack_options: String,
}

/// Resolves `--network MODE` as a user network, with `--ip` and `--network-alias`; None when
/// MODE names no network (the caller reports it). Podman's per-network options `ip=` and
/// `alias=` are accepted after a colon, as are the options of burrow's own stack.
pub fn for_create(store: &Store, mode: &str, ip: Option<&str>, aliases: &[String]) -> Result<UserNetwork> {
    let (name, options) = mode.split_once(':').unwrap_or((mode, ""));
    let network = store.network(name)?;
    let mut ip = parse_ip(ip)?;
    let mut aliases = aliases.to_vec();
    let mut stack = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("ip", v)) => ip = parse_ip(Some(v))?,
            Some(("alias", v)) => aliases.push(v.to_string()),
            _ => stack.push(opt),
        }
    }
    check_aliases(&aliases)?;
    if network.internal && !stack.is_empty() {
        bail!(
            "invalid --network {mode:?}: {} is an internal network, with no stack to take {}",
            network.name,
            stack.join(",")
        );
    }
    Ok(UserNetwork {
        network,
        ip,
        aliases,
        stack_options: stack.join(","),
    })
}

/// Aliases become hosts-file and DNS names: container names' rule.
fn check_aliases(aliases: &[String]) -> Result<()> {
    for alias in aliases {
        if !burrow_storage::valid_volume_name(alias) {
            bail!("invalid network alias {alias:?}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*");
        }
    }
    Ok(())
}

/// The directory of the networks' holders' pid and lock files.
fn holders_dir(store: &Store) -> PathBuf {
    store.paths.run_root.join("networks")
}

/// Starts `argv` (a foreground holder) as a transient service of the user's manager and
/// returns its pid, read from its first line of output (at most 10 s).
fn start_holder_unit(net: &NetworkRecord, mut argv: Vec<String>) -> Result<i32, String> {
    use std::io::BufRead as _;
    argv.push(format!("--foreground-in-userns-of={}", std::process::id()));
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.desc().to_string())?;
    // A previous holder's unit may still be going away: a name of this start's own.
    let unit = format!("burrow-network-{}-{}.service", &net.id[..12], std::process::id());
    {
        use std::os::fd::AsRawFd as _;
        burrow_systemd::scope::start_service(&burrow_systemd::scope::TransientService {
            name: &unit,
            description: &format!("burrow network {} namespace holder", net.name),
            argv: &argv,
            environment: Vec::new(),
            stdout: write.as_raw_fd(),
            stderr: write.as_raw_fd(),
            stop_timeout: std::time::Duration::from_secs(5),
        })
        .map_err(|e| format!("starting {unit}: {e}"))?;
    }
    drop(write);
    // The manager keeps a copy of the write end while the unit lives: no end of file to wait
    // for, a line with a deadline instead.
    let ready = nix::poll::poll(
        &mut [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&read),
            nix::poll::PollFlags::POLLIN,
        )],
        nix::poll::PollTimeout::from(10_000u16),
    )
    .map_err(|e| e.desc().to_string())?;
    if ready == 0 {
        return Err(format!("{unit} did not report within 10 s"));
    }
    let mut line = String::new();
    std::io::BufReader::new(fs::File::from(read))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    match line.trim().strip_prefix("ok ").map(str::parse) {
        Some(Ok(pid)) => Ok(pid),
        _ => Err(line.trim().to_string()),
    }
}

fn attach_one(store: &Store, net: &NetworkRecord, a: &Attachment, pid: i32, index: usize) -> Result<()> {
    let holder = burrow_userns::bridge::holder(&holders_dir(store), &net.name, |pid_file, lock_file| {
        let exe = std::env::current_exe().map_err(|e| format!("finding burrow's binary: {e}"))?;
        let argv: Vec<String> = vec![
            exe.to_string_lossy().into_owned(),
            "__network-holder".into(),
            format!("--gateway={}", net.gateway),
            format!("--netmask={}", net.subnet.netmask()),
            format!("--pid-file={}", pid_file.display()),
            format!("--lock-file={}", lock_file.display()),
        ];
        // Under a unit, a forked holder would be in the unit's cgroup and end with it, taking
        // the network from its other containers: a unit of its own instead.
        if burrow_systemd::scope::in_service_unit() && burrow_systemd::scope::user_manager_reachable() {
            return start_holder_unit(net, argv);
        }
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running burrow __network-holder: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().parse() {
            Ok(pid) if out.status.success() => Ok(pid),
            _ => Err(String::from_utf8_lossy(&out.stderr)
                .trim()
                .trim_start_matches("Error: ")
                .to_string()),
        }
    })?;
    holder.attach(pid, &format!("eth{index}"), a.ip, net.subnet.netmask())?;
    Ok(())
}

/// At a container's start, before its command runs: connects its namespace (process `pid`)
/// to each of its networks, then lists it in its peers' /etc/hosts.
pub fn attach_all(
    store: &Store,
    record: &ContainerRecord,
    attachments: &[Attachment],
    pid: i32,
) -> Result<()> {
    if attachments.is_empty() {
        return Ok(());
    }
    for (index, a) in attachments.iter().enumerate() {
        let net = store.network(&a.network)?;
        attach_one(store, &net, a, pid, index)?;
    }
    refresh_hosts(store, &record.id);
    Ok(())
}

/// The stack's configuration for a container: on a user network (`on_networks`), its DNS
/// address also answers for the names in the container's hosts file (the network block that
/// [`refresh_hosts`] keeps current), as aardvark-dns does for Podman.
pub fn with_names<'a>(
    on_networks: bool,
    bundle: &Path,
    config: &'a burrow_netstack::StackConfig,
) -> std::borrow::Cow<'a, burrow_netstack::StackConfig> {
    if !on_networks {
        return std::borrow::Cow::Borrowed(config);
    }
    let mut config = config.clone();
    config.slirp.names_file = Some(bundle.join("hosts"));
    std::borrow::Cow::Owned(config)
}

/// `NetworkSettings.Networks` of container `id` for `inspect`: its user networks by name.
pub fn inspect_entries(store: &Store, id: &str) -> BTreeMap<String, Value> {
    let mut entries = BTreeMap::new();
    for a in store.container_networks(id).unwrap_or_default() {
        let Ok(net) = store.network(&a.network) else {
            continue;
        };
        entries.insert(
            net.name.clone(),
            serde_json::json!({
                "EndpointID": "",
                "Gateway": net.gateway.to_string(),
                "IPAddress": a.ip.to_string(),
                "IPPrefixLen": net.subnet.prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": "",
                "NetworkID": net.id,
                "DriverOpts": null,
                "IPAMConfig": null,
                "Links": null,
                "Aliases": a.aliases,
            }),
        );
    }
    entries
}

/// Marks where the network block of a container's hosts file starts.
const HOSTS_MARKER: &str = "# burrow networks\n";

/// The hosts block of container `id`: every container on its networks (with name resolution
/// on), by address.
pub fn hosts_block(store: &Store, id: &str) -> String {
    let mut block = String::new();
    let Ok(mine) = store.container_networks(id) else {
        return block;
    };
    for a in &mine {
        let Ok(net) = store.network(&a.network) else {
            continue;
        };
        if !dns_enabled(&net) {
            continue;
        }
        for m in store.network_members(&net.name).unwrap_or_default() {
            let Ok(c) = store.container(&m.container_id) else {
                continue;
            };
            let mut names = vec![c.name.clone()];
            names.extend(m.aliases.iter().cloned());
            block.push_str(&format!("{}\t{}\n", m.ip, names.join(" ")));
        }
    }
    if block.is_empty() {
        block
    } else {
        format!("{HOSTS_MARKER}{block}")
    }
}

/// Removes a container (`with_volumes`: its anonymous volumes too, as `rm -v`), then drops it
/// from the hosts files of the containers it shared a user network with. Every removal goes
/// through here, so no peer keeps a stale name.
pub fn remove_container(store: &Store, id: &str, with_volumes: bool) -> Result<(), StoreError> {
    let peers = peers_of(store, id);
    if with_volumes {
        store.remove_container_and_volumes(id)?;
    } else {
        store.remove_container(id)?;
    }
    refresh_hosts_of(store, &peers);
    Ok(())
}

/// Rewrites the network block of the hosts file of every container that shares a network
/// with `id` (and its own), in place: the file is bind-mounted into running containers, so a
/// rename would not be seen.
pub fn refresh_hosts(store: &Store, id: &str) {
    refresh_hosts_of(store, &peers_of(store, id));
}

/// The containers sharing a network with `id`, itself included.
fn peers_of(store: &Store, id: &str) -> std::collections::BTreeSet<String> {
    let mut peers = std::collections::BTreeSet::new();
    for a in store.container_networks(id).unwrap_or_default() {
        for m in store.network_members(&a.network).unwrap_or_default() {
            peers.insert(m.container_id);
        }
    }
    peers
}

/// Rewrites the hosts files of `peers` (those that still exist and have one).
fn refresh_hosts_of(store: &Store, peers: &std::collections::BTreeSet<String>) {
    for peer in peers {
        let path = store.container_dirs(peer).bundle.join("hosts");
        let _ = rewrite_block(&path, &hosts_block(store, peer));
    }
}

/// Writes over the file from its start, then cuts it to length: a reader never sees it empty
/// (no truncation first), at worst a stale tail for a moment when the block shrank.
fn rewrite_block(path: &Path, block: &str) -> std::io::Result<()> {
    let text = fs::read_to_string(path)?;
    let base = text.split(HOSTS_MARKER).next().unwrap_or_default();
    let new = format!("{base}{block}");
    if new == text {
        return Ok(());
    }
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(new.as_bytes())?;
    file.set_len(new.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_network_block() {
        let path = std::env::temp_dir().join(format!("burrow-hosts-test-{}", std::process::id()));
        fs::write(&path, "127.0.0.1\tlocalhost\n").unwrap();
        rewrite_block(&path, &format!("{HOSTS_MARKER}10.89.0.2\ta\n")).unwrap();
        rewrite_block(&path, &format!("{HOSTS_MARKER}10.89.0.2\ta\n10.89.0.3\tb web\n")).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("127.0.0.1\tlocalhost\n{HOSTS_MARKER}10.89.0.2\ta\n10.89.0.3\tb web\n")
        );
        let _ = fs::remove_file(&path);
    }
}
