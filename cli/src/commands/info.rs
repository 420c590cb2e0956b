//! `burrow info` (also `system info`): what this engine is and holds, as Podman's `info`
//! (`{{.Host.Security.Rootless}}`, `{{.Store.GraphRoot}}`, YAML by default) and, invoked as
//! `docker`, Docker's (`{{.ServerVersion}}`, `{{.Containers}}`): scripts ask it to tell
//! whether an engine works at all.

use burrow_storage::ContainerState;
use serde_json::{json, Value};

use super::format::{self, Format};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Change the output format to JSON or a Go template
    #[arg(short, long)]
    format: Option<String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A value of /etc/os-release, unquoted.
fn os_release(key: &str) -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// A /proc/meminfo figure in bytes.
fn meminfo(key: &str) -> u64 {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn id_mappings(maps: &[burrow_userns::idmap::IdMapping]) -> Value {
    maps.iter()
        .map(|m| json!({"ContainerID": m.inside, "HostID": m.outside, "Size": m.count}))
        .collect()
}

/// Podman's YAML keys: the template's field names with a lower-case start (an acronym in
/// front too: `IDMappings` -> `idMappings`, `CPUs` -> `cpus`).
fn yaml_key(field: &str) -> String {
    let upper = field.chars().take_while(char::is_ascii_uppercase).count();
    let keep_last = upper > 1 && upper < field.len() && field[upper..] != *"s";
    let lowered = if keep_last { upper - 1 } else { upper.max(1) };
    format!("{}{}", field[..lowered].to_lowercase(), &field[lowered..])
}

fn print_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", yaml_key(k)));
                        print_yaml(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", yaml_key(k)));
                        for item in a {
                            // "- " at the key's indent, the item's lines two further in.
                            let mut inner = String::new();
                            print_yaml(item, indent + 2, &mut inner);
                            let inner = inner.trim_start().to_string();
                            out.push_str(&format!("{pad}- {inner}"));
                            if !inner.ends_with('\n') {
                                out.push('\n');
                            }
                        }
                    }
                    Value::Object(_) => out.push_str(&format!("{pad}{}: {{}}\n", yaml_key(k))),
                    Value::Array(_) => out.push_str(&format!("{pad}{}: []\n", yaml_key(k))),
                    other => out.push_str(&format!("{pad}{}: {}\n", yaml_key(k), format::go_string(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", format::go_string(other))),
    }
}

pub fn info(args: InfoArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let mut containers = store.containers()?;
    for c in &mut containers {
        store.refresh_state(c)?;
    }
    let running = containers
        .iter()
        .filter(|c| c.state == ContainerState::Running && !c.paused)
        .count();
    let paused = containers.iter().filter(|c| c.paused).count();
    let stopped = containers.len() - running - paused;
    let images = store.images()?.len();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    };
    let cgroup_manager = match crate::sdunits::monitor_unit("", true) {
        Some(_) => "systemd",
        None => "cgroupfs",
    };
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = if crate::docker::active() {
        json!({
            "ID": "",
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": stopped,
            "Images": images,
            "Driver": "overlay",
            "DockerRootDir": store.paths.graph_root.display().to_string(),
            "CgroupDriver": cgroup_manager,
            "CgroupVersion": cgroup_version.trim_start_matches('v'),
            "KernelVersion": kernel,
            "OperatingSystem": os_release("PRETTY_NAME"),
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "NCPU": cpus,
            "MemTotal": meminfo("MemTotal"),
            "Name": hostname,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless"],
        })
    } else {
        json!({
            "Host": {
                "Arch": arch,
                "CgroupManager": cgroup_manager,
                "CgroupVersion": cgroup_version,
                "CPUs": cpus,
                "Distribution": {
                    "Distribution": os_release("ID"),
                    "Version": os_release("VERSION_ID"),
                },
                "Hostname": hostname,
                "IDMappings": {
                    "UIDMap": id_mappings(&engine.userns.uid_map),
                    "GIDMap": id_mappings(&engine.userns.gid_map),
                },
                "Kernel": kernel,
                "MemFree": meminfo("MemAvailable"),
                "MemTotal": meminfo("MemTotal"),
                "OS": "linux",
                "Security": {
                    "Rootless": true,
                    "SeccompEnabled": true,
                    "SeccompProfilePath": "",
                    "SELinuxEnabled": false,
                    "AppArmorEnabled": false,
                },
            },
            "Store": {
                "ContainerStore": {
                    "Number": containers.len(),
                    "Paused": paused,
                    "Running": running,
                    "Stopped": stopped,
                },
                "GraphDriverName": "overlay",
                "GraphRoot": store.paths.graph_root.display().to_string(),
                "ImageStore": {"Number": images},
                "RunRoot": store.paths.run_root.display().to_string(),
            },
            "Version": {
                "APIVersion": env!("CARGO_PKG_VERSION"),
                "OsArch": format!("linux/{arch}"),
                "Version": env!("CARGO_PKG_VERSION"),
            },
        })
    };
    match args.format.as_deref().map(Format::parse).transpose()? {
        Some(Format::Json) => println!("{}", serde_json::to_string_pretty(&data)?),
        Some(format) => format::print(&format, &[data], &[])?,
        None => {
            let mut out = String::new();
            print_yaml(&data, 0, &mut out);
            print!("{out}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_as_podman_writes_them() {
        for (field, key) in [
            ("Host", "host"),
            ("GraphRoot", "graphRoot"),
            ("IDMappings", "idMappings"),
            ("UIDMap", "uidMap"),
            ("CPUs", "cpus"),
            ("OS", "os"),
        ] {
            assert_eq!(yaml_key(field), key);
        }
    }

    #[test]
    fn yaml_nests_maps_and_lists() {
        let mut out = String::new();
        print_yaml(
            &json!({"Host": {"Arch": "amd64", "Maps": [{"A": 1, "B": 2}]}, "Empty": {}}),
            0,
            &mut out,
        );
        assert_eq!(
            out,
            "empty: {}\nhost:\n  arch: amd64\n  maps:\n  - a: 1\n    b: 2\n"
        );
    }
}
