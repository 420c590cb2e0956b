//! `burrow create`: a container from an image (or `--rootfs DIR`), with everything it needs
//! to start recorded in the store. `run` is `create` plus starting it.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use burrow_netstack::{PortForward, SlirpConfig, StackConfig};
use burrow_storage::{ContainerRecord, Image, NewContainer, Store};
use burrow_userns::idmap::{self, IdMapping};
use burrow_userns::mount::RootfsSource;
use burrow_userns::process;
use burrow_userns::spec::{self, NetworkMode, SpecOptions};
use burrow_userns::{capabilities, seccomp};
use sha2::{Digest, Sha256};

use crate::context::Engine;
use crate::exit::ExitError;
use crate::launch::{JoinNetwork, Launch, RestartPolicy};
use crate::userspec;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Set environment variables in container
    #[arg(short = 'e', long = "env", value_name = "ENV")]
    pub(crate) env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub(crate) env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub(crate) workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    pub(crate) user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "CMD")]
    pub(crate) entrypoint: Option<String>,
    /// Set container hostname
    #[arg(short = 'h', long)]
    pub(crate) hostname: Option<String>,
    /// Assign a name to the container
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Allocate a pseudo-TTY for container
    #[arg(short = 't', long)]
    pub(crate) tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,
    /// Remove container (and pod if created) after exit
    #[arg(long)]
    pub(crate) rm: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub(crate) init: bool,
    /// User namespace to use: "" (default), keep-id
    #[arg(long, value_name = "MODE")]
    pub(crate) userns: Option<String>,
    /// UID map to use for the user namespace (CONTAINER_ID:HOST_ID:SIZE)
    #[arg(long, value_name = "MAPPING")]
    pub(crate) uidmap: Vec<String>,
    /// GID map to use for the user namespace (CONTAINER_ID:HOST_ID:SIZE)
    #[arg(long, value_name = "MAPPING")]
    pub(crate) gidmap: Vec<String>,
    /// Add capabilities to the container
    #[arg(long = "cap-add", value_name = "CAP")]
    pub(crate) cap_add: Vec<String>,
    /// Drop capabilities from the container
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub(crate) cap_drop: Vec<String>,
    /// Give extended privileges to container
    #[arg(long)]
    pub(crate) privileged: bool,
    /// Security options: seccomp=unconfined|PROFILE.json, no-new-privileges, label=disable, mask=PATHS, unmask=PATHS|ALL
    #[arg(long = "security-opt", value_name = "OPT")]
    pub(crate) security_opt: Vec<String>,
    /// Add additional groups (a gid, or a group name of the image's /etc/group) to the container's process
    #[arg(long = "group-add", value_name = "GROUP")]
    pub(crate) group_add: Vec<String>,
    /// Size of /dev/shm (a number with b, k, m or g; 64m by default)
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub(crate) shm_size: Option<String>,
    /// Resource limit NAME=SOFT[:HARD] (nofile, nproc, core, memlock, stack, ...; -1 for none); the open-files soft limit is raised to the hard one otherwise
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub(crate) ulimit: Vec<String>,
    /// Make the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub(crate) read_only: bool,
    /// Network mode: slirp4netns[:OPTIONS] (default; burrow's own userspace stack, also as `burrow`), none, host, ns:PATH (join that network namespace), container:NAME (join that container's)
    #[arg(long = "network", visible_alias = "net", value_name = "MODE")]
    pub(crate) network: Option<String>,
    /// Add a network-scoped alias for the container (with --network NAME of a user network)
    #[arg(long = "network-alias", value_name = "ALIAS")]
    pub(crate) network_alias: Vec<String>,
    /// Specify a static IPv4 address for the container on its user network
    #[arg(long = "ip", value_name = "IPV4")]
    pub(crate) ip: Option<String>,
    /// Publish a container's port, or a range of ports, to the host
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[[IP:][HOSTPORT]:]CONTAINERPORT[/PROTO]"
    )]
    pub(crate) publish: Vec<String>,
    /// Publish all exposed ports to random ports on the host interfaces
    #[arg(short = 'P', long = "publish-all")]
    pub(crate) publish_all: bool,
    /// Set custom DNS servers
    #[arg(long = "dns", value_name = "IP")]
    pub(crate) dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub(crate) dns_search: Vec<String>,
    /// Set custom DNS options
    #[arg(long = "dns-option", value_name = "OPTION")]
    pub(crate) dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub(crate) add_host: Vec<String>,
    /// The first argument is not an image but the root filesystem to use
    #[arg(long)]
    pub(crate) rootfs: bool,
    /// Memory limit (cannot be applied: no cgroup is delegated to users here)
    #[arg(short = 'm', long)]
    pub(crate) memory: Option<String>,
    /// Number of CPUs (cannot be applied: no cgroup is delegated to users here)
    #[arg(long)]
    pub(crate) cpus: Option<String>,
    /// Tune container pids limit (cannot be applied: no cgroup is delegated to users here)
    #[arg(long = "pids-limit")]
    pub(crate) pids_limit: Option<String>,
    /// Restart policy to apply when a container exits: no, on-failure[:max_retries], always, unless-stopped
    #[arg(long, value_name = "POLICY")]
    pub(crate) restart: Option<String>,
    /// Signal to stop a container (default: the image's, else SIGTERM)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub(crate) stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container before it is killed
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub(crate) stop_timeout: Option<u32>,
    /// Set metadata on the container (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub(crate) label: Vec<String>,
    /// Add an annotation to the container (KEY=VALUE), passed to the OCI spec
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub(crate) annotation: Vec<String>,
    /// Logging driver for the container: k8s-file (default; json-file is its alias), journald, none
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub(crate) log_driver: Option<String>,
    /// Logging driver options: max-size=SIZE (k8s-file), tag=NAME (journald)
    #[arg(long = "log-opt", value_name = "OPT")]
    pub(crate) log_opt: Vec<String>,
    /// Write the container ID to the file
    #[arg(long, value_name = "FILE")]
    pub(crate) cidfile: Option<PathBuf>,
    /// Bind mount a volume into the container: [SOURCE:]DEST[:OPTIONS], SOURCE a host path or a
    /// volume name; options ro, rw, U, O, z, Z (accepted; no SELinux), nosuid, nodev, noexec,
    /// [r]bind, [r]shared, [r]slave, [r]private, nocopy
    #[arg(short = 'v', long = "volume", value_name = "[SOURCE:]DEST[:OPTIONS]")]
    pub(crate) volume: Vec<String>,
    /// Attach a filesystem mount to the container: type=bind|volume|tmpfs|image|devpts,source=,target=,...
    #[arg(long = "mount", value_name = "type=TYPE,KEY=VALUE")]
    pub(crate) mount: Vec<String>,
    /// Mount a temporary filesystem (tmpfs) into a container
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub(crate) tmpfs: Vec<String>,
    /// Add a host device to the container: HOST[:CONTAINER][:PERMISSIONS] (bound in, as rootless Podman does)
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:PERMISSIONS]")]
    pub(crate) device: Vec<String>,
    /// Mount volumes from the specified container(s): CONTAINER[:ro|rw]
    #[arg(long = "volumes-from", value_name = "CONTAINER[:OPTIONS]")]
    pub(crate) volumes_from: Vec<String>,
    /// When running --read-only, mount read-write tmpfs on /run, /tmp and /var/tmp
    #[arg(long = "read-only-tmpfs", value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) read_only_tmpfs: bool,
    /// Containers to start before this one (comma-separated names or ids)
    #[arg(long, value_name = "CONTAINER[,CONTAINER]")]
    pub(crate) requires: Vec<String>,
    /// Docker's link: NAME[:ALIAS] in /etc/hosts (at the host, where its published ports are), and required
    #[arg(long, value_name = "NAME[:ALIAS]")]
    pub(crate) link: Vec<String>,
    #[command(flatten)]
    pub(crate) systemd: crate::sdunits::SystemdArgs,
    #[command(flatten)]
    pub(crate) pull: super::pull::RunPullArgs,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub(crate) help: Option<bool>,
    /// Image to run (or root filesystem with --rootfs)
    pub(crate) image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

/// What `--security-opt` asked for.
#[derive(Debug, Default)]
struct SecurityOptions {
    seccomp_profile: Option<PathBuf>,
    seccomp_unconfined: bool,
    no_new_privileges: bool,
    mask: Vec<String>,
    unmask: Vec<String>,
}

fn parse_security_opts(opts: &[String]) -> anyhow::Result<SecurityOptions> {
    let mut parsed = SecurityOptions::default();
    for opt in opts {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        match (key, value) {
            ("seccomp", "unconfined") => parsed.seccomp_unconfined = true,
            ("seccomp", path) if !path.is_empty() => parsed.seccomp_profile = Some(PathBuf::from(path)),
            ("no-new-privileges", "" | "true") => parsed.no_new_privileges = true,
            ("no-new-privileges", "false") => parsed.no_new_privileges = false,
            // No SELinux or AppArmor here: accepted so scripts written for Podman run.
            ("label" | "apparmor", _) => {}
            ("mask", paths) => parsed.mask.extend(paths.split(':').map(str::to_string)),
            ("unmask", paths) => parsed.unmask.extend(paths.split(':').map(str::to_string)),
            _ => bail!("invalid --security-opt {opt:?}"),
        }
    }
    Ok(parsed)
}

/// The environment: image, then defaults, then --env-file, then -e, later ones winning.
fn build_env(
    image_env: &[String],
    args: &CreateArgs,
    hostname: &str,
    home: Option<&str>,
    link_env: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut env: Vec<(String, String)> = Vec::new();
    fn set_in(env: &mut Vec<(String, String)>, kv: &str) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    let set = set_in;
    set(&mut env, &format!("PATH={}", process::DEFAULT_PATH));
    if args.tty {
        set(&mut env, "TERM=xterm");
    }
    set(&mut env, "container=burrow");
    // Docker's link variables: the image's and the user's win over them.
    for e in link_env {
        set(&mut env, e);
    }
    for e in image_env {
        set(&mut env, e);
    }
    for e in user_env(&args.env_file, &args.env)? {
        set(&mut env, &e);
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        set(&mut env, &format!("HOSTNAME={hostname}"));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        set(&mut env, &format!("HOME={}", home.unwrap_or("/root")));
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// `--env-file` then `-e` entries as `KEY=VALUE`: a bare `-e NAME` takes the value from
/// burrow's own environment, and is dropped when that has none (as Podman).
pub(crate) fn user_env(env_files: &[PathBuf], env: &[String]) -> anyhow::Result<Vec<String>> {
    let mut entries = Vec::new();
    for file in env_files {
        let text =
            fs::read_to_string(file).with_context(|| format!("reading env file {}", file.display()))?;
        entries.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    entries.extend(env.iter().cloned());
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                std::env::var(&e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect())
}

/// Entrypoint and command, as Docker combines them.
fn build_args(image: Option<&Image>, args: &CreateArgs) -> anyhow::Result<Vec<String>> {
    let config = image.and_then(|i| i.config.config().as_ref());
    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => serde_json::from_str::<Vec<String>>(e).unwrap_or_else(|_| vec![e.clone()]),
        None => config.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    let command = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        vec![]
    } else {
        config.and_then(|c| c.cmd().clone()).unwrap_or_default()
    };
    let all: Vec<String> = entrypoint.into_iter().chain(command).collect();
    if all.is_empty() {
        bail!("no command or entrypoint provided, and no CMD or ENTRYPOINT from image");
    }
    Ok(all)
}

/// The nested maps for `--userns=keep-id` / `--uidmap` / `--gidmap`, if any.
fn nested_maps(
    args: &CreateArgs,
    engine: &Engine,
) -> anyhow::Result<Option<(Vec<IdMapping>, Vec<IdMapping>)>> {
    let uid_count = idmap::id_count(&engine.userns.uid_map);
    let gid_count = idmap::id_count(&engine.userns.gid_map);
    match args.userns.as_deref() {
        None | Some("") | Some("host") => {}
        Some("keep-id") => {
            if !args.uidmap.is_empty() || !args.gidmap.is_empty() {
                bail!("--userns=keep-id and --uidmap/--gidmap cannot be used together");
            }
            return Ok(Some((
                idmap::keep_id_map(engine.host_uid, uid_count),
                idmap::keep_id_map(engine.host_gid, gid_count),
            )));
        }
        Some(other) => bail!("invalid --userns {other:?}: burrow supports keep-id (and the default)"),
    }
    if args.uidmap.is_empty() && args.gidmap.is_empty() {
        return Ok(None);
    }
    let parse = |specs: &[String], count: u32| -> anyhow::Result<Vec<IdMapping>> {
        let maps = specs
            .iter()
            .map(|s| IdMapping::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        idmap::check_nested(&maps, count, &specs.join(","))?;
        Ok(maps)
    };
    // As Podman: one of the two given alone serves for both.
    let uids = if args.uidmap.is_empty() {
        &args.gidmap
    } else {
        &args.uidmap
    };
    let gids = if args.gidmap.is_empty() {
        &args.uidmap
    } else {
        &args.gidmap
    };
    Ok(Some((parse(uids, uid_count)?, parse(gids, gid_count)?)))
}

/// Where a file owned by `id` in burrow's namespace must be stored for a nested namespace
/// to see it as `id` too; ids the nested namespace lacks keep their owner (and show as
/// the overflow id, as the kernel shows them).
fn to_nested_storage(maps: &[IdMapping], id: u32) -> Option<u32> {
    Some(
        maps.iter()
            .find_map(|m| (id >= m.inside && id - m.inside < m.count).then(|| m.outside + (id - m.inside)))
            .unwrap_or(id),
    )
}

fn warn_unenforceable_limits(args: &CreateArgs) {
    for (flag, value) in [
        ("--memory", &args.memory),
        ("--cpus", &args.cpus),
        ("--pids-limit", &args.pids_limit),
    ] {
        if value.is_some() {
            // Podman on cgroup v1 rootless warns and goes on; say exactly why.
            eprintln!(
                "WARN: {flag} is ignored: resource limits need a cgroup v2 controller delegated to your user, \
                 and this system has none (cgroup v1, or no systemd delegation)"
            );
        }
    }
}

/// `burrow create`: prints the new container's id.
pub fn create(args: CreateArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let (record, _) = prepare(&engine, &args)?;
    println!("{}", record.id);
    Ok(0)
}

/// Creates the container: checks the flags, resolves the image, user, command and security
/// settings, builds the OCI spec, and records all of it (a [`Launch`]) with the container.
pub fn prepare(engine: &Engine, args: &CreateArgs) -> anyhow::Result<(ContainerRecord, Launch)> {
    prepare_with_id(engine, args, &Store::new_container_id())
}

/// [`prepare`] with the container's id chosen by the caller (`run -d`, whose monitor starts
/// before the record exists).
pub fn prepare_with_id(
    engine: &Engine,
    args: &CreateArgs,
    id: &str,
) -> anyhow::Result<(ContainerRecord, Launch)> {
    if let Some(name) = args.name.as_deref().filter(|n| !super::rename::valid_name(n)) {
        bail!("running container create option: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument (--name {name:?})");
    }
    let security = parse_security_opts(&args.security_opt)?;
    let shm_size = match args.shm_size.as_deref() {
        None => spec::DEFAULT_SHM_SIZE,
        // 0 is the default, as with Podman and Docker.
        Some(text) => match crate::launch::parse_size(text) {
            Ok(0) => spec::DEFAULT_SHM_SIZE,
            Ok(n) => n,
            Err(_) => bail!("invalid --shm-size {text:?}: a number with b, k, m or g"),
        },
    };
    let rlimits = args
        .ulimit
        .iter()
        .map(|u| burrow_userns::rlimits::parse(u).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(p) = &args.cidfile {
        if p.exists() {
            bail!(
                "container id file exists. Ensure another container is not using it or delete {}",
                p.display()
            );
        }
    }
    // `--network NAME` of a user network (`burrow network create`).
    let mut user_net = None;
    let (network, slirp, join_network) = match args.network.as_deref() {
        None | Some("slirp4netns") | Some("burrow") | Some("private") => {
            (NetworkMode::Private, Some(SlirpConfig::default()), None)
        }
        Some(mode) if mode.starts_with("slirp4netns:") || mode.starts_with("burrow:") => {
            let options = mode.split_once(':').map(|(_, o)| o).unwrap_or_default();
            (
                NetworkMode::Private,
                Some(SlirpConfig::parse_options(options)?),
                None,
            )
        }
        Some("none") => (NetworkMode::Private, None, None),
        Some("host") => (NetworkMode::Host, None, None),
        Some(mode) if mode.starts_with("ns:") => {
            let path = PathBuf::from(&mode[3..]);
            if !path.is_absolute() {
                bail!("invalid --network {mode:?}: the namespace path must be absolute");
            }
            if !path.exists() {
                bail!("invalid --network {mode:?}: {} does not exist", path.display());
            }
            (NetworkMode::Joined, None, Some(JoinNetwork::Path(path)))
        }
        Some(mode) if mode.starts_with("container:") => {
            let other = engine
                .store
                .container(&mode["container:".len()..])
                .with_context(|| format!("invalid --network {mode:?}"))?;
            (NetworkMode::Joined, None, Some(JoinNetwork::Container(other.id)))
        }
        Some(other) => {
            let net =
                super::network::for_create(&engine.store, other, args.ip.as_deref(), &args.network_alias)?;
            // The container keeps its own stack for the way out, unless the network is internal.
            let slirp = match net.network.internal {
                true => None,
                false => Some(SlirpConfig::parse_options(&net.stack_options)?),
            };
            user_net = Some(net);
            (NetworkMode::Private, slirp, None)
        }
    };
    if user_net.is_none() && (args.ip.is_some() || !args.network_alias.is_empty()) {
        bail!("--ip and --network-alias need --network NAME of a network made with `burrow network create`");
    }
    let (mut requires, link_hosts) = super::links::resolve(&engine.store, &args.requires, &args.link)?;
    // The container whose network this one joins is a dependency, as Podman has it: it starts
    // first, and cannot be removed while this one exists (but with `rm --depend`).
    if let Some(JoinNetwork::Container(other)) = &join_network {
        if !requires.contains(other) {
            requires.push(other.clone());
        }
    }
    let mut add_hosts = args.add_host.clone();
    add_hosts.extend(link_hosts);
    let gateway = super::links::gateway(network, slirp.as_ref(), &args.link)?;
    let add_hosts = super::links::host_gateway(add_hosts, &gateway)?;
    let slirp = slirp.map(|s| SlirpConfig {
        // A link reaches the other container's published ports on the host's loopback.
        allow_host_loopback: s.allow_host_loopback || !args.link.is_empty(),
        ..s
    });
    for host in &add_hosts {
        let valid = host
            .split_once(':')
            .is_some_and(|(h, ip)| !h.is_empty() && ip.parse::<std::net::IpAddr>().is_ok());
        if !valid {
            bail!("invalid --add-host {host:?}: expected HOST:IP");
        }
    }
    for server in &args.dns {
        server
            .parse::<std::net::IpAddr>()
            .map_err(|_| anyhow::anyhow!("invalid --dns {server:?}: not an IP address"))?;
    }
    let restart = args
        .restart
        .as_deref()
        .map(RestartPolicy::parse)
        .transpose()?
        .unwrap_or_default();
    if args.rm && restart != RestartPolicy::No {
        bail!("the --rm option conflicts with --restart, when the restartPolicy is not \"\" and \"no\"");
    }
    warn_unenforceable_limits(args);
    let mount_request = super::mounts::MountRequest::parse(
        &args.volume,
        &args.mount,
        &args.tmpfs,
        &args.device,
        &args.volumes_from,
    )?;
    if args.rootfs && args.userns.is_some() {
        bail!("--rootfs cannot be combined with --userns");
    }

    let store = &engine.store;
    for id in store.orphaned_auto_remove()? {
        if let Err(e) = super::network::remove_container(store, &id, false) {
            eprintln!("WARN: removing container {id} left by a killed burrow: {e}");
        }
    }
    let image = if args.rootfs {
        None
    } else {
        Some(super::pull::image_for_run(engine, &args.image, &args.pull)?)
    };
    let rootfs_dir = if args.rootfs {
        let dir = fs::canonicalize(&args.image).with_context(|| format!("--rootfs {}", args.image))?;
        if !dir.is_dir() {
            bail!("--rootfs {}: not a directory", args.image);
        }
        Some(dir)
    } else {
        None
    };
    let read_image_file = |path: &str| -> String {
        match (&image, &rootfs_dir) {
            (Some(img), _) => store.image_file(img, path),
            (None, Some(dir)) => fs::read(dir.join(path.trim_start_matches('/'))).ok(),
            _ => None,
        }
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
    };

    let nested = nested_maps(args, engine)?;
    let config = image.as_ref().and_then(|i| i.config.config().as_ref());
    let user_spec = match (&args.user, &nested, args.userns.as_deref()) {
        (Some(u), _, _) => u.clone(),
        // keep-id runs as the user's own ids, as Podman does.
        (None, Some(_), Some("keep-id")) => format!("{}:{}", engine.host_uid, engine.host_gid),
        _ => config.and_then(|c| c.user().clone()).unwrap_or_default(),
    };
    let group_file = read_image_file("/etc/group");
    let mut user = userspec::resolve(&user_spec, &read_image_file("/etc/passwd"), &group_file)
        .map_err(|message| ExitError { code: 126, message })?;
    for group in &args.group_add {
        let gid =
            userspec::group_id(group, &group_file).map_err(|message| ExitError { code: 126, message })?;
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }

    let command = build_args(image.as_ref(), args)?;
    let capabilities = capabilities::resolve(&args.cap_add, &args.cap_drop, args.privileged)?;
    let seccomp = if args.privileged || security.seccomp_unconfined {
        None
    } else {
        let json = match &security.seccomp_profile {
            Some(path) => fs::read_to_string(path)
                .with_context(|| format!("reading seccomp profile {}", path.display()))?,
            None => seccomp::default_profile_json().to_string(),
        };
        Some(seccomp::profile_from_json(&json, &capabilities)?)
    };
    let cwd = args
        .workdir
        .clone()
        .or_else(|| {
            config
                .and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("invalid --workdir {cwd:?}: must be an absolute path");
    }
    let mut port_forwards = Vec::new();
    for spec in &args.publish {
        port_forwards.extend(PortForward::parse_publish(spec)?);
    }
    if args.publish_all {
        // -P: every port the image EXPOSEs, on a port the kernel picks.
        for port in config.and_then(|c| c.exposed_ports().clone()).unwrap_or_default() {
            port_forwards.extend(PortForward::parse_publish(&port)?);
        }
    }
    let stack = match slirp {
        Some(slirp) => Some(StackConfig {
            slirp,
            port_forwards,
            ..StackConfig::default()
        }),
        None if !port_forwards.is_empty() && join_network.is_some() => {
            bail!(
                "cannot set port bindings on an existing network namespace (--network {})",
                args.network.as_deref().unwrap_or_default()
            )
        }
        None if !port_forwards.is_empty() => {
            bail!(
                "publishing ports needs the slirp4netns network (burrow's own stack), not --network {}",
                args.network.as_deref().unwrap_or_default()
            )
        }
        None => None,
    };
    let key_values =
        |flag: &str, items: &[String]| -> anyhow::Result<std::collections::BTreeMap<String, String>> {
            items
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    None if !kv.is_empty() => Ok((kv.clone(), String::new())),
                    _ => bail!("invalid {flag} {kv:?}: expected KEY=VALUE"),
                })
                .collect()
        };
    // The image's labels, then ours, as Podman merges them.
    let mut labels: std::collections::BTreeMap<String, String> = config
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(key_values("--label", &args.label)?);
    let annotations = key_values("--annotation", &args.annotation)?;
    let log = crate::launch::LogOptions::parse(args.log_driver.as_deref(), &args.log_opt)?;
    let stop_signal = args
        .stop_signal
        .clone()
        .or_else(|| config.and_then(|c| c.stop_signal().clone()))
        .unwrap_or_else(|| "SIGTERM".into());
    crate::launch::parse_signal(&stop_signal)?;

    let systemd_options = crate::sdunits::prepare(
        engine,
        &args.systemd,
        args.name.as_deref(),
        image.as_ref().map(|i| i.config_json.as_str()),
    )?;
    let record = store.create_container_with_id(
        id,
        &NewContainer {
            name: args.name.as_deref(),
            image_id: image.as_ref().map(|i| i.id.as_str()),
            auto_remove: args.rm,
            config: "{}",
        },
    )?;
    let result = (|| -> anyhow::Result<Launch> {
        if let Some(u) = &user_net {
            store.attach_network(&record.id, &u.network.name, u.ip, &u.aliases)?;
        }
        let dirs = store.container_dirs(&record.id);
        let hostname = args
            .hostname
            .clone()
            .unwrap_or_else(|| record.id[..12].to_string());
        let image_name = image
            .as_ref()
            .and_then(|i| i.names.first().cloned())
            .unwrap_or_else(|| args.image.clone());
        let image_env = config.and_then(|c| c.env().clone()).unwrap_or_default();
        let link_env = match &gateway {
            Some(gw) => super::links::env(store, &args.link, &record.name, gw)?,
            None => Vec::new(),
        };
        let env = build_env(&image_env, args, &hostname, user.home.as_deref(), &link_env)?;
        let rootfs_source = match (&rootfs_dir, &image) {
            (Some(dir), _) => RootfsSource::Directory(dir.clone()),
            (None, Some(image)) => {
                let mut lower = Vec::with_capacity(image.layers.len());
                for layer in image.layers.iter().rev() {
                    lower.push(match &nested {
                        None => store.layer_dir(layer),
                        Some((uids, gids)) => {
                            let key = hex_digest(&format!(
                                "{}|{}",
                                idmap::format_map(uids),
                                idmap::format_map(gids)
                            ));
                            store.shifted_layer_dir(
                                layer,
                                &key[..16],
                                &|u| to_nested_storage(uids, u),
                                &|g| to_nested_storage(gids, g),
                            )?
                        }
                    });
                }
                // Lowest: the runtime's mount points (not through a nested mapping, whose
                // layers are shifted copies; those containers make them as they start).
                if nested.is_none() {
                    lower.push(store.mount_points_layer()?);
                }
                RootfsSource::Overlay {
                    lower,
                    upper: dirs.upper.clone(),
                    work: dirs.work.clone(),
                }
            }
            (None, None) => unreachable!("a container has an image or a rootfs"),
        };
        if let (Some((uids, gids)), RootfsSource::Overlay { upper, .. }) = (&nested, &rootfs_source) {
            // The upper dir's owner is the root's: the nested root's, as in the image, so that
            // it can make mount points there even when burrow's root is not mapped (--uidmap).
            std::os::unix::fs::lchown(upper, to_nested_storage(uids, 0), to_nested_storage(gids, 0))
                .with_context(|| format!("giving {} to the container's root", upper.display()))?;
        }
        let tty_gid_mapped = match &nested {
            Some((_, gids)) => gids.iter().any(|m| m.inside <= 5 && 5 - m.inside < m.count),
            None => engine.userns.gid_map.is_empty() || idmap::id_count(&engine.userns.gid_map) > 5,
        };
        let options = SpecOptions {
            args: command.clone(),
            env,
            cwd,
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids.clone(),
            hostname,
            terminal: args.tty,
            capabilities,
            seccomp,
            no_new_privileges: security.no_new_privileges,
            rlimits,
            shm_size,
            read_only: args.read_only,
            network,
            nested_uid_map: nested.as_ref().map(|(u, _)| u.clone()),
            nested_gid_map: nested.as_ref().map(|(_, g)| g.clone()),
            tty_gid_mapped,
            etc_files: crate::launch::etc_files(&dirs.bundle),
            privileged: args.privileged,
        };
        let mut spec = spec::build(&options, &dirs.bundle.join("rootfs"));
        apply_mask_options(&mut spec, &security);
        let owner = match &nested {
            Some((uids, gids)) => (
                to_nested_storage(uids, user.uid).unwrap_or(user.uid),
                to_nested_storage(gids, user.gid).unwrap_or(user.gid),
            ),
            None => (user.uid, user.gid),
        };
        let (user_mounts, oci_mounts) = super::mounts::resolve(
            store,
            &mount_request,
            &super::mounts::Target {
                id: &record.id,
                bundle: &dirs.bundle,
                rootfs: &rootfs_source,
                owner,
                image_volumes: config.and_then(|c| c.volumes().clone()).unwrap_or_default(),
                read_only_tmpfs: args.read_only && args.read_only_tmpfs,
                nested: nested.is_some(),
            },
        )?;
        spec::add_mounts(&mut spec, &oci_mounts);
        if !annotations.is_empty() {
            spec.set_annotations(Some(annotations.clone().into_iter().collect()));
        }
        let launch = Launch {
            spec,
            rootfs: rootfs_source,
            init: args.init,
            interactive: args.interactive,
            image: image_name,
            command,
            restart,
            stop_signal,
            stop_timeout: args.stop_timeout.unwrap_or(10),
            network: stack,
            dns: crate::launch::Dns {
                servers: args.dns.clone(),
                search: args.dns_search.clone(),
                options: args.dns_option.clone(),
            },
            add_hosts,
            requires,
            labels: labels.clone(),
            log: log.clone(),
            mounts: user_mounts,
            join_network: join_network.clone(),
            systemd: systemd_options.clone(),
        };
        crate::launch::save(store, &record.id, &launch)?;
        if let Some(p) = &args.cidfile {
            fs::write(p, &record.id).with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(launch)
    })();
    match result {
        Ok(launch) => Ok((record, launch)),
        Err(e) => {
            // Nothing half-made stays behind (anonymous volumes made for it included).
            let _ = super::network::remove_container(store, &record.id, true);
            Err(e)
        }
    }
}

fn apply_mask_options(spec: &mut oci_spec::runtime::Spec, security: &SecurityOptions) {
    let Some(linux) = spec.linux_mut().as_mut() else {
        return;
    };
    let mut masked = linux.masked_paths().clone().unwrap_or_default();
    let mut readonly = linux.readonly_paths().clone().unwrap_or_default();
    if security.unmask.iter().any(|p| p == "ALL") {
        masked.clear();
        readonly.clear();
    } else {
        masked.retain(|p| !security.unmask.contains(p));
        readonly.retain(|p| !security.unmask.contains(p));
    }
    masked.extend(security.mask.iter().cloned());
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
}

fn hex_digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_storage_ids_follow_the_map() {
        let keep = idmap::keep_id_map(1000, 65537);
        // Root of the image must be stored as burrow-namespace id 1 to show as 0 inside.
        assert_eq!(to_nested_storage(&keep, 0), Some(1));
        assert_eq!(to_nested_storage(&keep, 1000), Some(0));
        assert_eq!(to_nested_storage(&keep, 2000), Some(2000));
    }

    #[test]
    fn security_options_parse() {
        let s = parse_security_opts(&[
            "seccomp=unconfined".into(),
            "no-new-privileges".into(),
            "label=disable".into(),
        ])
        .unwrap();
        assert!(s.seccomp_unconfined && s.no_new_privileges);
        assert!(parse_security_opts(&["bogus=1".into()])
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }
}
