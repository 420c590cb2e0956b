//! Builds a container's OCI runtime spec with Podman's rootless defaults.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxSeccomp, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::idmap::IdMapping;

/// `/dev/shm`'s size without `--shm-size`: 64 MiB, as Podman's.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Podman's default masked paths (containers/common `DefaultMaskedPaths`): kernel data a
/// container has no business reading (CVE-class: host information leaks through procfs).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
];

/// Podman's default read-only paths (containers/common `DefaultReadOnlyPaths`).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host devices bind-mounted into the container's /dev (rootless cannot mknod them).
pub const DEFAULT_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace.
    Host,
    /// A new network namespace of the container's own.
    Private,
    /// Another one (`--network ns:PATH`, `container:NAME`): [`join_namespace`] names it when the
    /// container starts.
    Joined,
}

/// Everything the spec is made from; the CLI fills it from the image and the flags.
#[derive(Debug, Clone)]
pub struct SpecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub terminal: bool,
    pub capabilities: Vec<String>,
    pub seccomp: Option<LinuxSeccomp>,
    pub no_new_privileges: bool,
    /// `--ulimit`s (see [`crate::rlimits`]).
    pub rlimits: Vec<oci_spec::runtime::PosixRlimit>,
    /// Bytes of `/dev/shm` ([`DEFAULT_SHM_SIZE`] unless `--shm-size`).
    pub shm_size: u64,
    pub read_only: bool,
    pub network: NetworkMode,
    /// A nested user namespace (`--userns=keep-id`, `--uidmap`): maps into burrow's namespace.
    pub nested_uid_map: Option<Vec<IdMapping>>,
    pub nested_gid_map: Option<Vec<IdMapping>>,
    /// Whether gid 5 (tty) exists in the container's namespace, for devpts' `gid=5`.
    pub tty_gid_mapped: bool,
    /// Files in the bundle that become /etc/hosts, /etc/hostname, /etc/resolv.conf, and
    /// /run/.containerenv.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    pub privileged: bool,
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount fields are all set")
}

fn to_oci_maps(maps: &[IdMapping]) -> Vec<LinuxIdMapping> {
    maps.iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.inside)
                .host_id(m.outside)
                .size(m.count)
                .build()
                .expect("id mapping fields are all set")
        })
        .collect()
}

/// The mounts Podman gives a rootless container, in order.
fn default_mounts(opts: &SpecOptions) -> Vec<Mount> {
    let mut pts_options = vec!["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"];
    if opts.tty_gid_mapped {
        pts_options.push("gid=5");
    }
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount("/dev/pts", "devpts", "devpts", &pts_options),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "mode=1777",
                &format!("size={}", opts.shm_size),
            ],
        ),
    ];
    // sysfs may only be mounted by the owner of the network namespace (a joined one belongs to
    // burrow's user namespace, where a nested one has no say).
    let owns_netns = match opts.network {
        NetworkMode::Private => true,
        NetworkMode::Joined => opts.nested_uid_map.is_none(),
        NetworkMode::Host => false,
    };
    mounts.push(match owns_netns {
        true => mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        false => mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        ),
    });
    for (source, dest) in &opts.etc_files {
        mounts.push(
            MountBuilder::default()
                .destination(*dest)
                .typ("bind")
                .source(source.clone())
                .options(vec!["bind".to_string(), "rprivate".to_string()])
                .build()
                .expect("mount fields are all set"),
        );
    }
    mounts
}

/// Makes the container join the namespace at `path` (for example `/proc/PID/ns/net`) instead of
/// getting a new one of that type.
pub fn join_namespace(spec: &mut Spec, typ: LinuxNamespaceType, path: &Path) {
    let Some(linux) = spec.linux_mut().as_mut() else {
        return;
    };
    let mut namespaces: Vec<oci_spec::runtime::LinuxNamespace> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| ns.typ() != typ)
        .collect();
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .path(path.to_path_buf())
            .build()
            .expect("namespace type is set"),
    );
    linux.set_namespaces(Some(namespaces));
}

/// Builds the spec for a container whose root filesystem will be mounted at `rootfs`.
pub fn build(opts: &SpecOptions, rootfs: &Path) -> Spec {
    let user = UserBuilder::default()
        .uid(opts.uid)
        .gid(opts.gid)
        .additional_gids(opts.additional_gids.clone())
        .build()
        .expect("user fields are all set");
    let process = ProcessBuilder::default()
        .terminal(opts.terminal)
        .user(user)
        .args(opts.args.clone())
        .env(opts.env.clone())
        .cwd(opts.cwd.clone())
        .capabilities(crate::capabilities::to_oci(&opts.capabilities, opts.uid == 0))
        .no_new_privileges(opts.no_new_privileges)
        .rlimits(opts.rlimits.clone())
        .build()
        .expect("process fields are all set");

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if opts.network == NetworkMode::Private {
        namespaces.push(LinuxNamespaceType::Network);
    }
    if opts.nested_uid_map.is_some() {
        namespaces.push(LinuxNamespaceType::User);
    }
    let namespaces: Vec<_> = namespaces
        .into_iter()
        .map(|typ| {
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .expect("namespace type is set")
        })
        .collect();

    // Set every list explicitly: the builder would fill the rest from oci-spec's defaults.
    let (masked, readonly): (Vec<String>, Vec<String>) = if opts.privileged {
        (vec![], vec![])
    } else {
        (
            MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
        )
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(readonly);
    if let (Some(u), Some(g)) = (&opts.nested_uid_map, &opts.nested_gid_map) {
        linux = linux.uid_mappings(to_oci_maps(u)).gid_mappings(to_oci_maps(g));
    }
    if let Some(seccomp) = &opts.seccomp {
        linux = linux.seccomp(seccomp.clone());
    }
    let linux = linux.build().expect("linux fields are all set");

    SpecBuilder::default()
        .version("1.0.0")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(opts.read_only)
                .build()
                .expect("root is set"),
        )
        .hostname(opts.hostname.clone())
        .process(process)
        .mounts(default_mounts(opts))
        .linux(linux)
        .build()
        .expect("spec fields are all set")
}

/// Adds the user's mounts (volumes, binds, tmpfs) to `spec`: each replaces a default mount
/// with the same destination (`--tmpfs /dev/shm`, `-v ./hosts:/etc/hosts`), and all are
/// ordered by depth, parents first, so that `/a/b` lands inside `/a`, not under it.
pub fn add_mounts(spec: &mut Spec, user: &[Mount]) {
    let clean = |p: &Path| -> PathBuf { p.components().collect() };
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|m| {
        !user
            .iter()
            .any(|u| clean(u.destination()) == clean(m.destination()))
    });
    mounts.extend(user.iter().cloned());
    // Stable: defaults keep their order (/dev before /dev/pts) among equal depths.
    mounts.sort_by_key(|m| clean(m.destination()).components().count());
    spec.set_mounts(Some(mounts));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SpecOptions {
        SpecOptions {
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "abc".into(),
            terminal: false,
            capabilities: crate::capabilities::default_capabilities(),
            seccomp: None,
            no_new_privileges: false,
            rlimits: vec![],
            shm_size: DEFAULT_SHM_SIZE,
            read_only: false,
            network: NetworkMode::Private,
            nested_uid_map: None,
            nested_gid_map: None,
            tty_gid_mapped: true,
            etc_files: vec![("/b/hosts".into(), "/etc/hosts")],
            privileged: false,
        }
    }

    #[test]
    fn default_spec_has_podman_mounts_and_masks() {
        let spec = build(&options(), Path::new("/b/rootfs"));
        let mounts = spec.mounts().as_ref().unwrap();
        let dests: Vec<_> = mounts.iter().map(|m| m.destination().to_str().unwrap()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/dev/shm",
                "/sys",
                "/etc/hosts"
            ]
        );
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        let ns = linux.namespaces().as_ref().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    }

    #[test]
    fn host_network_binds_sys_and_keeps_netns() {
        let mut o = options();
        o.network = NetworkMode::Host;
        o.tty_gid_mapped = false;
        let spec = build(&o, Path::new("/r"));
        let mounts = spec.mounts().as_ref().unwrap();
        let sys = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        let pts = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/dev/pts"))
            .unwrap();
        assert!(!pts.options().as_ref().unwrap().contains(&"gid=5".to_string()));
        let ns = spec.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    }

    #[test]
    fn user_mounts_replace_defaults_and_come_parents_first() {
        let mut spec = build(&options(), Path::new("/r"));
        add_mounts(
            &mut spec,
            &[
                mount("/data/sub", "bind", "/h/sub", &["rbind"]),
                mount("/data", "bind", "/h", &["rbind"]),
                mount("/dev/shm/", "tmpfs", "tmpfs", &["size=1k"]),
            ],
        );
        let mounts = spec.mounts().as_ref().unwrap();
        let dests: Vec<_> = mounts.iter().map(|m| m.destination().to_str().unwrap()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/sys",
                "/data",
                "/dev/pts",
                "/dev/mqueue",
                "/etc/hosts",
                "/data/sub",
                "/dev/shm/"
            ]
        );
        let shm: Vec<_> = mounts
            .iter()
            .filter(|m| m.destination().starts_with("/dev/shm"))
            .collect();
        assert_eq!(shm.len(), 1, "the default /dev/shm is replaced");
    }

    #[test]
    fn privileged_has_no_masks() {
        let mut o = options();
        o.privileged = true;
        let spec = build(&o, Path::new("/r"));
        assert_eq!(
            spec.linux().as_ref().unwrap().masked_paths().as_deref(),
            Some(&[][..])
        );
    }
}
