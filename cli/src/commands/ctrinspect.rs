//! `inspect` of containers: Podman's `InspectContainerData` (its main fields), built from the
//! container's record and its stored launch description. Field names and order mirror the
//! Go JSON so that `--format` templates written for Podman or Docker keep working.

use std::collections::BTreeMap;

use burrow_storage::{ContainerRecord, ContainerState, Store};
use burrow_userns::capabilities;
use burrow_userns::mount::RootfsSource;
use oci_spec::runtime::LinuxNamespaceType;
use serde::Serialize;
use serde_json::{json, Value};

use super::imageutil;
use crate::launch::{self, Launch, RestartPolicy};

/// Go's zero time, as Podman shows a time that never was.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerData {
    id: String,
    created: String,
    path: String,
    args: Vec<String>,
    state: StateData,
    image: String,
    image_digest: String,
    image_name: String,
    rootfs: String,
    pod: String,
    resolv_conf_path: String,
    hostname_path: String,
    hosts_path: String,
    static_dir: String,
    #[serde(rename = "OCIConfigPath")]
    oci_config_path: String,
    #[serde(rename = "OCIRuntime")]
    oci_runtime: String,
    name: String,
    restart_count: i64,
    driver: String,
    mount_label: String,
    process_label: String,
    app_armor_profile: String,
    effective_caps: Vec<String>,
    bounding_caps: Vec<String>,
    #[serde(rename = "ExecIDs")]
    exec_ids: Vec<String>,
    graph_driver: Value,
    mounts: Vec<MountData>,
    dependencies: Vec<String>,
    network_settings: NetworkSettings,
    namespace: String,
    is_infra: bool,
    config: ConfigData,
    host_config: HostConfigData,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateData {
    oci_version: String,
    status: String,
    running: bool,
    paused: bool,
    restarting: bool,
    #[serde(rename = "OOMKilled")]
    oom_killed: bool,
    dead: bool,
    pid: i32,
    conmon_pid: i32,
    exit_code: i32,
    error: String,
    started_at: String,
    finished_at: String,
    /// With a healthcheck: its status, failing streak and last results; empty without one
    /// (always there, as Podman's, so that `{{.State.Health.Status}}` prints "").
    health: crate::health::HealthState,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MountData {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    source: String,
    destination: String,
    driver: String,
    mode: String,
    options: Vec<String>,
    #[serde(rename = "RW")]
    rw: bool,
    propagation: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettings {
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    gateway: String,
    #[serde(rename = "IPAddress")]
    ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    ip_prefix_len: u32,
    mac_address: String,
    ports: BTreeMap<String, Vec<Value>>,
    /// The user networks it is on (`burrow network`), by name, as Podman's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    networks: BTreeMap<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigData {
    hostname: String,
    domainname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Vec<String>,
    cmd: Vec<String>,
    image: String,
    volumes: Option<Value>,
    working_dir: String,
    entrypoint: Vec<String>,
    on_build: Option<Value>,
    labels: Value,
    annotations: BTreeMap<String, String>,
    stop_signal: String,
    stop_timeout: u32,
    umask: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfigData {
    auto_remove: bool,
    restart_policy: RestartPolicyData,
    network_mode: String,
    port_bindings: BTreeMap<String, Vec<Value>>,
    readonly_rootfs: bool,
    log_config: Value,
    pid_mode: String,
    ipc_mode: String,
    #[serde(rename = "UTSMode")]
    uts_mode: String,
    userns_mode: String,
    /// `SOURCE:DEST:OPTIONS` of each volume and bind mount (a volume by its name).
    binds: Vec<String>,
    /// tmpfs mounts: destination -> options.
    tmpfs: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RestartPolicyData {
    name: String,
    maximum_retry_count: u32,
}

/// A published port, as `port` and `inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// The ports a container publishes: those its network stack reported as bound when it
/// started (`ports.json` in its bundle, the stack's own JSON), else those it was created
/// with (the launch description's `network.port_forwards`). Read as JSON, so that this
/// works with any launch description that has these fields.
pub fn published_ports(store: &Store, record: &ContainerRecord) -> Vec<Published> {
    let configured = serde_json::from_str::<Value>(&record.config)
        .ok()
        .and_then(|v| v.get("network")?.get("port_forwards").cloned())
        .unwrap_or(Value::Null);
    // Only a running container that publishes something has the file (`ps` asks for every
    // container).
    let publishes = configured.as_array().is_some_and(|a| !a.is_empty());
    let bound = (publishes && record.state == ContainerState::Running)
        .then(|| std::fs::read_to_string(store.container_dirs(&record.id).bundle.join("ports.json")).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let list = bound.unwrap_or(configured);
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(Published {
                host_ip: p
                    .get("host_ip")
                    .and_then(Value::as_str)
                    .unwrap_or("0.0.0.0")
                    .to_string(),
                host_port: p.get("host_port")?.as_u64()? as u16,
                container_port: p.get("container_port")?.as_u64()? as u16,
                protocol: p
                    .get("proto")
                    .or_else(|| p.get("protocol"))
                    .and_then(Value::as_str)
                    .unwrap_or("tcp")
                    .to_string(),
            })
        })
        .collect()
}

fn time_or_zero(secs: Option<i64>) -> String {
    secs.map(imageutil::rfc3339)
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

/// Splits the stored command into the image's entrypoint (when it starts with it) and the rest.
fn split_command(image_entrypoint: &[String], command: &[String]) -> (Vec<String>, Vec<String>) {
    if !image_entrypoint.is_empty() && command.starts_with(image_entrypoint) {
        (
            image_entrypoint.to_vec(),
            command[image_entrypoint.len()..].to_vec(),
        )
    } else {
        (Vec::new(), command.to_vec())
    }
}

fn has_namespace(l: &Launch, kind: LinuxNamespaceType) -> bool {
    l.spec
        .linux()
        .as_ref()
        .and_then(|x| x.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == kind))
}

pub fn container_data(store: &Store, c: &ContainerRecord) -> anyhow::Result<ContainerData> {
    let l = launch::load(store, c)?;
    let image = c.image_id.as_deref().and_then(|id| store.image(id).ok());
    let image_entrypoint = image
        .as_ref()
        .and_then(|i| i.config.config().as_ref())
        .and_then(|cfg| cfg.entrypoint().clone())
        .unwrap_or_default();
    let (entrypoint, cmd) = split_command(&image_entrypoint, &l.command);
    let process = l.spec.process().clone().unwrap_or_default();
    let caps = process.capabilities().clone().unwrap_or_default();
    let dirs = store.container_dirs(&c.id);
    let container_dir = store.paths.container_dir(&c.id);
    let running = c.state == ContainerState::Running;
    let (graph_driver, rootfs) = match &l.rootfs {
        RootfsSource::Overlay { lower, upper, work } => (
            json!({"Name": "overlay", "Data": {
                "LowerDir": lower.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
                "MergedDir": dirs.bundle.join("rootfs").display().to_string(),
                "UpperDir": upper.display().to_string(),
                "WorkDir": work.display().to_string(),
            }}),
            String::new(),
        ),
        RootfsSource::Directory(dir) => (json!({"Name": "", "Data": null}), dir.display().to_string()),
    };
    let mut ports: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in published_ports(store, c) {
        ports
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_default()
            .push(json!({"HostIp": if p.host_ip == "0.0.0.0" { String::new() } else { p.host_ip.clone() }, "HostPort": p.host_port.to_string()}));
    }
    // An empty map rather than null: `{{.Config.Labels}}` prints `map[]`, as Podman's.
    let labels = serde_json::from_str::<Value>(&c.config)
        .ok()
        .and_then(|v| v.get("labels").cloned())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let user = process.user();
    let user_text = if user.uid() == 0 && user.gid() == 0 {
        String::new()
    } else {
        format!("{}:{}", user.uid(), user.gid())
    };
    let bundle_file = |f: &str| dirs.bundle.join(f).display().to_string();
    let network_mode = if let Some(join) = &l.join_network {
        match join {
            crate::launch::JoinNetwork::Path(p) => format!("ns:{}", p.display()),
            crate::launch::JoinNetwork::Container(id) => format!("container:{id}"),
        }
    } else if !has_namespace(&l, LinuxNamespaceType::Network) {
        "host".to_string()
    } else if !store.container_networks(&c.id).unwrap_or_default().is_empty() {
        "bridge".to_string()
    } else if serde_json::from_str::<Value>(&c.config)
        .ok()
        .is_some_and(|v| v.get("network").is_some_and(|n| !n.is_null()))
    {
        "slirp4netns".to_string()
    } else {
        "none".to_string()
    };
    let (policy, retries) = match l.restart {
        RestartPolicy::No => ("", 0),
        RestartPolicy::Always => ("always", 0),
        RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        RestartPolicy::OnFailure(n) => ("on-failure", n.unwrap_or(0)),
    };
    Ok(ContainerData {
        id: c.id.clone(),
        created: imageutil::rfc3339(c.created),
        path: l.command.first().cloned().unwrap_or_default(),
        args: l.command.iter().skip(1).cloned().collect(),
        state: StateData {
            oci_version: l.spec.version().clone(),
            status: c.status().to_string(),
            running: running && !c.paused,
            paused: c.paused,
            restarting: false,
            oom_killed: false,
            dead: false,
            pid: c.pid.unwrap_or(0),
            conmon_pid: c.monitor_pid.unwrap_or(0),
            exit_code: c.exit_code.unwrap_or(0),
            error: String::new(),
            started_at: time_or_zero(c.started),
            finished_at: time_or_zero(c.finished),
            health: crate::health::state(store, c).unwrap_or_default(),
        },
        image: c.image_id.clone().unwrap_or_default(),
        image_digest: image.as_ref().and_then(|i| i.digest.clone()).unwrap_or_default(),
        image_name: l.image.clone(),
        rootfs,
        pod: String::new(),
        resolv_conf_path: bundle_file("resolv.conf"),
        hostname_path: bundle_file("hostname"),
        hosts_path: bundle_file("hosts"),
        static_dir: container_dir.display().to_string(),
        oci_config_path: bundle_file("config.json"),
        oci_runtime: "burrow".into(),
        name: crate::docker::inspect_name(&c.name),
        restart_count: c.restarts,
        driver: "overlay".into(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        effective_caps: capabilities::names(caps.effective()),
        bounding_caps: capabilities::names(caps.bounding()),
        exec_ids: Vec::new(),
        graph_driver,
        mounts: user_mounts(store, &l, &dirs.bundle),
        dependencies: Vec::new(),
        network_settings: NetworkSettings {
            endpoint_id: String::new(),
            gateway: String::new(),
            ip_address: String::new(),
            ip_prefix_len: 0,
            mac_address: String::new(),
            ports: ports.clone(),
            networks: super::network::inspect_entries(store, &c.id),
        },
        namespace: String::new(),
        is_infra: false,
        config: ConfigData {
            hostname: l.spec.hostname().clone().unwrap_or_default(),
            domainname: String::new(),
            user: user_text,
            attach_stdin: l.interactive,
            attach_stdout: false,
            attach_stderr: false,
            tty: process.terminal().unwrap_or(false),
            open_stdin: l.interactive,
            stdin_once: false,
            env: process.env().clone().unwrap_or_default(),
            cmd,
            image: l.image.clone(),
            volumes: None,
            working_dir: process.cwd().display().to_string(),
            entrypoint,
            on_build: None,
            labels,
            annotations: l
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            stop_signal: l.stop_signal.clone(),
            stop_timeout: l.stop_timeout,
            umask: "0022".into(),
        },
        host_config: HostConfigData {
            auto_remove: c.auto_remove,
            restart_policy: RestartPolicyData {
                name: policy.into(),
                maximum_retry_count: retries,
            },
            network_mode,
            port_bindings: ports,
            readonly_rootfs: l.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            log_config: json!({
                "Type": "k8s-file",
                "Path": crate::monitor::log_path(store, &c.id).display().to_string(),
            }),
            pid_mode: "private".into(),
            ipc_mode: "private".into(),
            uts_mode: "private".into(),
            userns_mode: if has_namespace(&l, LinuxNamespaceType::User) {
                "private".into()
            } else {
                String::new()
            },
            binds: binds(&l),
            tmpfs: l
                .mounts
                .iter()
                .filter(|m| m.kind == super::mounts::MountKind::Tmpfs)
                .map(|m| (m.destination.clone(), m.options.join(",")))
                .collect(),
        },
    })
}

/// HostConfig.Binds: volumes and bind mounts as `-v` would give them.
fn binds(l: &Launch) -> Vec<String> {
    use super::mounts::MountKind;
    l.mounts
        .iter()
        .filter(|m| matches!(m.kind, MountKind::Bind | MountKind::Volume | MountKind::Overlay))
        .map(|m| {
            let mut options = vec![if m.read_only() { "ro" } else { "rw" }.to_string()];
            options.extend(m.options.iter().filter(|o| *o != "ro" && *o != "rw").cloned());
            if m.kind == MountKind::Overlay {
                options.push("O".into());
            }
            format!("{}:{}:{}", m.source, m.destination, options.join(","))
        })
        .collect()
}

/// The volumes and bind mounts the user asked for, as Podman lists them (not burrow's own
/// /etc files, nor tmpfs mounts).
fn user_mounts(store: &Store, l: &Launch, bundle: &std::path::Path) -> Vec<MountData> {
    use super::mounts::MountKind;
    if !l.mounts.is_empty() {
        let oci: Vec<_> = l.spec.mounts().iter().flatten().collect();
        return l
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Bind | MountKind::Volume | MountKind::Overlay))
            .map(|m| {
                let spec_options = oci
                    .iter()
                    .find(|o| o.destination() == std::path::Path::new(&m.destination))
                    .and_then(|o| o.options().clone())
                    .unwrap_or_default();
                let volume = m.kind == MountKind::Volume;
                MountData {
                    kind: if volume { "volume".into() } else { "bind".into() },
                    name: volume.then(|| m.source.clone()),
                    source: if volume {
                        store.volume_data(&m.source).display().to_string()
                    } else {
                        m.source.clone()
                    },
                    destination: m.destination.clone(),
                    driver: if volume { "local".into() } else { String::new() },
                    mode: String::new(),
                    rw: !m.read_only(),
                    propagation: spec_options
                        .iter()
                        .find(|o| o.ends_with("private") || o.ends_with("shared") || o.ends_with("slave"))
                        .cloned()
                        .unwrap_or_else(|| "rprivate".into()),
                    options: spec_options
                        .into_iter()
                        .filter(|o| matches!(o.as_str(), "bind" | "rbind" | "nosuid" | "nodev" | "noexec"))
                        .collect(),
                }
            })
            .collect();
    }
    l.spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| {
            let options = m.options().clone().unwrap_or_default();
            let bind =
                m.typ().as_deref() == Some("bind") || options.iter().any(|o| o == "bind" || o == "rbind");
            bind && m.source().as_ref().is_some_and(|s| !s.starts_with(bundle))
        })
        .map(|m| {
            let options = m.options().clone().unwrap_or_default();
            MountData {
                kind: "bind".into(),
                name: None,
                source: m
                    .source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_default(),
                destination: m.destination().display().to_string(),
                driver: String::new(),
                mode: String::new(),
                rw: !options.iter().any(|o| o == "ro"),
                propagation: options
                    .iter()
                    .find(|o| o.ends_with("private") || o.ends_with("shared") || o.ends_with("slave"))
                    .cloned()
                    .unwrap_or_else(|| "rprivate".into()),
                options: options
                    .into_iter()
                    .filter(|o| o == "bind" || o == "rbind")
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoint_is_split_off_the_command() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split_command(&s(&["/init"]), &s(&["/init", "serve"])),
            (s(&["/init"]), s(&["serve"]))
        );
        assert_eq!(split_command(&s(&["/init"]), &s(&["sh"])), (vec![], s(&["sh"])));
        assert_eq!(
            split_command(&[], &s(&["sleep", "1"])),
            (vec![], s(&["sleep", "1"]))
        );
    }
}
