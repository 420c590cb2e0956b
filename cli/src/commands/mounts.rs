//! The mounts a container is created with: `-v`/`--volume`, `--mount`, `--tmpfs`,
//! `--volumes-from`, the image's `VOLUME`s and `--read-only-tmpfs`, parsed as Podman parses
//! them, then resolved against the store (named volumes made on first use, bind sources
//! checked, `:U` owners set, image content copied up into new volumes) into OCI mounts that
//! the runtime sets up inside the container's root (`burrow_userns::mount`, which resolves
//! every destination with openat2(RESOLVE_IN_ROOT)).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use burrow_storage::{valid_volume_name, NewVolume, Store, StoreError};
use burrow_userns::exec::{spawn_in_root, View};
use burrow_userns::mount::RootfsSource;
use oci_spec::runtime::{Mount, MountBuilder};
use serde::{Deserialize, Serialize};

/// What kind of mount the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named (or anonymous) volume of the store.
    Volume,
    Tmpfs,
    /// A host directory under a throw-away overlay (`-v SRC:DST:O`).
    Overlay,
    /// An image's root filesystem, read-only (`--mount type=image`).
    Image,
    Devpts,
}

/// One mount as the user gave it, kept with the container (for `inspect` and
/// `--volumes-from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMount {
    pub kind: MountKind,
    /// The host path (bind, overlay), the volume's name (volume; empty for a new anonymous
    /// one), the image (image); empty otherwise.
    pub source: String,
    pub destination: String,
    /// Mount options in fstab spelling (`ro`, `nosuid`, `rslave`, `size=1m`, ...).
    pub options: Vec<String>,
    /// `:U`: give the source to the container's user.
    #[serde(default)]
    pub chown: bool,
    /// `nocopy`: no copy-up of the image's files into a new volume.
    #[serde(default)]
    pub nocopy: bool,
}

impl UserMount {
    pub fn read_only(&self) -> bool {
        let mut ro = false;
        for o in &self.options {
            match o.as_str() {
                "ro" => ro = true,
                "rw" => ro = false,
                _ => {}
            }
        }
        ro
    }
}

/// Flags that only pass through to the mount (validated, then kept as given).
const FLAG_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "bind",
    "rbind",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "unbindable",
    "runbindable",
];

fn is_propagation(o: &str) -> bool {
    o.ends_with("shared") || o.ends_with("slave") || o.ends_with("private") || o.ends_with("unbindable")
}

fn check_destination(dest: &str) -> Result<()> {
    if !dest.starts_with('/') {
        bail!("invalid container path {dest:?}, must be an absolute path");
    }
    if Path::new(dest).components().any(|c| c == Component::ParentDir) {
        bail!("invalid container path {dest:?}: must not contain \"..\"");
    }
    Ok(())
}

/// Podman's checks on a volume's option list: each known, at most one of ro/rw, of the
/// propagations, of z/Z.
fn check_options(options: &[String], spec: &str) -> Result<()> {
    let (mut rw, mut prop, mut label) = (0, 0, 0);
    for o in options {
        match o.as_str() {
            "ro" | "rw" => rw += 1,
            "z" | "Z" => label += 1,
            p if is_propagation(p) => prop += 1,
            _ => {}
        }
    }
    if rw > 1 {
        bail!("{spec}: cannot set ro or rw options more than once");
    }
    if prop > 1 {
        bail!("{spec}: cannot set more than one mount propagation option");
    }
    if label > 1 {
        bail!("{spec}: cannot set :z more than once in mount options");
    }
    Ok(())
}

/// `-v [SRC:]DST[:OPTS]`.
pub fn parse_volume(spec: &str) -> Result<UserMount> {
    if spec.is_empty() {
        bail!("invalid volume specification: volume cannot be empty");
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, dest, opts) = match parts.as_slice() {
        [dest] => ("", *dest, ""),
        [source, dest] => (*source, *dest, ""),
        [source, dest, opts] => (*source, *dest, *opts),
        _ => bail!("invalid volume specification {spec:?}: expected [SOURCE:]DESTINATION[:OPTIONS]"),
    };
    let all_options = |text: &str| {
        text.split(',')
            .all(|o| FLAG_OPTIONS.contains(&o) || matches!(o, "z" | "Z" | "U" | "O" | "copy" | "nocopy"))
    };
    if parts.len() == 2 && !dest.starts_with('/') && source.starts_with('/') && all_options(dest) {
        // `-v /dst:ro`: an anonymous volume with options, as Podman reads it.
        return parse_volume(&format!(":{source}:{dest}"));
    }
    check_destination(dest)?;
    let is_path = source.starts_with('/') || source.starts_with('.');
    let mut mount = UserMount {
        kind: if is_path {
            MountKind::Bind
        } else {
            MountKind::Volume
        },
        source: source.to_string(),
        destination: dest.to_string(),
        options: Vec::new(),
        chown: false,
        nocopy: false,
    };
    if !source.is_empty() && !is_path && !valid_volume_name(source) {
        bail!(
            "invalid volume name {source:?} in {spec:?}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (host paths must be absolute)"
        );
    }
    let options: Vec<String> = opts
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    check_options(&options, spec)?;
    for o in options {
        match o.as_str() {
            "z" | "Z" => crate::log::debug(format_args!(
                "-v {spec}: option {o} accepted, no relabelling: burrow does not apply SELinux labels"
            )),
            "U" => mount.chown = true,
            "O" if is_path => mount.kind = MountKind::Overlay,
            "O" => bail!(
                "invalid option \"O\" in {spec:?}: overlay mounts need a host directory, not a named volume"
            ),
            "copy" => mount.nocopy = false,
            "nocopy" => mount.nocopy = true,
            "idmap" => bail!("{spec}: the idmap option is not supported by burrow"),
            f if FLAG_OPTIONS.contains(&f) => mount.options.push(o),
            other => bail!("invalid option type {other:?} in {spec:?}: invalid mount option"),
        }
    }
    Ok(mount)
}

/// `--tmpfs PATH[:OPTIONS]`.
pub fn parse_tmpfs(spec: &str) -> Result<UserMount> {
    let (dest, opts) = spec.split_once(':').unwrap_or((spec, ""));
    check_destination(dest)?;
    // Podman's defaults; the user's options come after, so `exec` wins over `noexec`.
    let mut options: Vec<String> = ["rw", "noexec", "nosuid", "nodev"].map(String::from).to_vec();
    options.extend(opts.split(',').filter(|o| !o.is_empty()).map(str::to_string));
    Ok(UserMount {
        kind: MountKind::Tmpfs,
        source: String::new(),
        destination: dest.to_string(),
        options,
        chown: false,
        nocopy: false,
    })
}

fn truthy(key: &str, value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => bail!("invalid value {v:?} for mount option {key}: expected true or false"),
    }
}

/// `--mount type=TYPE,KEY=VALUE,...`, with Docker's and Podman's keys.
pub fn parse_mount(spec: &str) -> Result<UserMount> {
    let mut kind = None;
    let (mut source, mut dest) = (String::new(), None::<String>);
    let mut options: Vec<String> = Vec::new();
    let (mut chown, mut nocopy, mut recursive) = (false, false, true);
    let mut fields = Vec::new();
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        fields.push((key, value));
    }
    for (key, value) in &fields {
        if *key == "type" {
            kind = Some(match value.unwrap_or_default() {
                "bind" => MountKind::Bind,
                "volume" => MountKind::Volume,
                "tmpfs" => MountKind::Tmpfs,
                "image" => MountKind::Image,
                "devpts" => MountKind::Devpts,
                other => bail!(
                    "invalid mount type {other:?} in --mount {spec:?}: must be bind, volume, tmpfs, image or devpts"
                ),
            });
        }
    }
    // Docker's default.
    let kind = kind.unwrap_or(MountKind::Volume);
    let need_value = |key: &str, value: Option<&str>| -> Result<String> {
        match value {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => bail!("mount option {key} in --mount {spec:?} needs a value"),
        }
    };
    for (key, value) in fields {
        match key {
            "type" => {}
            "source" | "src" => source = need_value(key, value)?,
            "target" | "destination" | "dst" => dest = Some(need_value(key, value)?),
            "readonly" | "ro" => {
                options.retain(|o| o != "ro" && o != "rw");
                if truthy(key, value)? {
                    options.push("ro".into());
                }
            }
            "rw" => {
                options.retain(|o| o != "ro" && o != "rw");
                if !truthy(key, value)? {
                    options.push("ro".into());
                }
            }
            "relabel" | "consistency" | "z" | "Z" => {}
            "bind-propagation" => {
                let p = need_value(key, value)?;
                if !is_propagation(&p) {
                    bail!("invalid bind-propagation {p:?} in --mount {spec:?}");
                }
                options.retain(|o| !is_propagation(o));
                options.push(p);
            }
            "bind-nonrecursive" => recursive = !truthy(key, value)?,
            "U" | "chown" => chown = truthy(key, value)?,
            "volume-nocopy" | "nocopy" => nocopy = truthy(key, value)?,
            "copy" => nocopy = !truthy(key, value)?,
            "tmpfs-size" => options.push(format!("size={}", need_value(key, value)?)),
            "tmpfs-mode" => options.push(format!("mode={}", need_value(key, value)?)),
            "tmpcopyup" | "notmpcopyup" => {}
            "uid" | "gid" | "mode" | "max" if kind == MountKind::Devpts => {
                options.push(format!("{key}={}", need_value(key, value)?))
            }
            "nosuid" | "suid" | "nodev" | "dev" | "noexec" | "exec" => options.push(key.to_string()),
            "idmap" => bail!("--mount {spec}: the idmap option is not supported by burrow"),
            other => bail!("unknown mount option {other:?} in --mount {spec:?}: invalid mount option"),
        }
    }
    let Some(dest) = dest else {
        bail!("--mount {spec:?}: target is required");
    };
    check_destination(&dest)?;
    match kind {
        MountKind::Bind if source.is_empty() => bail!("--mount {spec:?}: source is required for bind mounts"),
        MountKind::Image if source.is_empty() => {
            bail!("--mount {spec:?}: source is required for image mounts")
        }
        MountKind::Volume if !source.is_empty() && !valid_volume_name(&source) => {
            bail!("invalid volume name {source:?} in --mount {spec:?}")
        }
        _ => {}
    }
    let mut mount = match kind {
        MountKind::Tmpfs => parse_tmpfs(&dest)?,
        _ => UserMount {
            kind,
            source,
            destination: dest,
            options: Vec::new(),
            chown,
            nocopy,
        },
    };
    if kind == MountKind::Bind && !recursive {
        mount.options.push("bind".into());
    }
    mount.options.extend(options);
    Ok(mount)
}

/// `--volumes-from CTR[:OPTIONS]`: the container's name and whether to force ro (Some(true))
/// or rw (Some(false)).
/// `--device HOST[:CONTAINER][:PERMISSIONS]`: the host's device node bound into the container,
/// as rootless Podman does it (a user namespace cannot make device nodes). PERMISSIONS (`rwm`)
/// are cgroup device rules, which need a device controller: checked, not enforced.
pub fn parse_device(spec: &str) -> Result<UserMount> {
    let bad = |why: &str| anyhow::anyhow!("invalid --device {spec:?}: {why}");
    let fields: Vec<&str> = spec.split(':').collect();
    let is_permissions = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (host, container, permissions) = match fields.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, p] if is_permissions(p) => (*host, *host, *p),
        [host, container] => (*host, *container, "rwm"),
        [host, container, p] => (*host, *container, *p),
        _ => return Err(bad("expected HOST[:CONTAINER][:PERMISSIONS]")),
    };
    if !is_permissions(permissions) {
        return Err(bad("the permissions are a combination of r, w and m"));
    }
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(bad("both paths must be absolute"));
    }
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(host)
        .map_err(|e| bad(&format!("{host}: {e}")))?
        .file_type();
    if !kind.is_char_device() && !kind.is_block_device() {
        return Err(bad(&format!("{host} is not a device")));
    }
    parse_volume(&format!("{host}:{container}"))
}

pub fn parse_volumes_from(spec: &str) -> Result<(String, Option<bool>)> {
    let (name, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let mut force = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => force = Some(true),
            "rw" => force = Some(false),
            "z" | "Z" => {}
            other => bail!("invalid option {other:?} in --volumes-from {spec:?}: must be ro, rw or z"),
        }
    }
    if name.is_empty() {
        bail!("invalid --volumes-from {spec:?}: a container is required");
    }
    Ok((name.to_string(), force))
}

/// Everything mount-related of `create`, parsed.
#[derive(Debug, Default)]
pub struct MountRequest {
    pub mounts: Vec<UserMount>,
    pub volumes_from: Vec<(String, Option<bool>)>,
}

impl MountRequest {
    pub fn parse(
        volumes: &[String],
        mounts: &[String],
        tmpfs: &[String],
        devices: &[String],
        from: &[String],
    ) -> Result<Self> {
        let mut list = Vec::new();
        for v in volumes {
            list.push(parse_volume(v)?);
        }
        for d in devices {
            list.push(parse_device(d)?);
        }
        for m in mounts {
            list.push(parse_mount(m)?);
        }
        for t in tmpfs {
            list.push(parse_tmpfs(t)?);
        }
        let clean = |d: &str| -> PathBuf { Path::new(d).components().collect() };
        for (i, m) in list.iter().enumerate() {
            if list[..i]
                .iter()
                .any(|o| clean(&o.destination) == clean(&m.destination))
            {
                bail!("{}: duplicate mount destination", m.destination);
            }
        }
        Ok(MountRequest {
            mounts: list,
            volumes_from: from
                .iter()
                .map(|f| parse_volumes_from(f))
                .collect::<Result<_>>()?,
        })
    }
}

/// What resolving needs to know about the container being created.
pub struct Target<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a RootfsSource,
    /// The container user's owner on disk (in burrow's namespace): `:U` and new volumes.
    pub owner: (u32, u32),
    /// The image's `VOLUME`s.
    pub image_volumes: Vec<String>,
    /// `--read-only` with `--read-only-tmpfs`: tmpfs on /tmp, /var/tmp and /run.
    pub read_only_tmpfs: bool,
    /// A nested user namespace (keep-id, --uidmap) cannot reach the user's private dirs
    /// when it mounts an overlay.
    pub nested: bool,
}

fn oci_mount(dest: &str, typ: &str, source: &str, options: Vec<String>) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options)
        .build()
        .expect("mount fields are all set")
}

fn with_default_propagation(mut options: Vec<String>) -> Vec<String> {
    if !options.iter().any(|o| is_propagation(o)) {
        options.push("rprivate".into());
    }
    options
}

/// Resolves the request for a new container: volumes are made (and linked to it), sources
/// checked, owners changed, image files copied up. Returns the mounts as recorded and as the
/// OCI spec gets them.
pub fn resolve(
    store: &Store,
    request: &MountRequest,
    target: &Target,
) -> Result<(Vec<UserMount>, Vec<Mount>)> {
    let mut mounts = request.mounts.clone();
    let clean = |d: &str| -> PathBuf { Path::new(d).components().collect() };
    let taken =
        |mounts: &[UserMount], dest: &str| mounts.iter().any(|m| clean(&m.destination) == clean(dest));
    for (name, force) in &request.volumes_from {
        let other = store.container(name)?;
        let launch = crate::launch::summary(&other)?;
        for m in launch.mounts {
            if !matches!(m.kind, MountKind::Bind | MountKind::Volume) || taken(&mounts, &m.destination) {
                continue;
            }
            let mut m = m;
            if let Some(ro) = force {
                m.options.retain(|o| o != "ro" && o != "rw");
                if *ro {
                    m.options.push("ro".into());
                }
            }
            m.chown = false;
            mounts.push(m);
        }
    }
    for dest in &target.image_volumes {
        if !taken(&mounts, dest) {
            mounts.push(UserMount {
                kind: MountKind::Volume,
                source: String::new(),
                destination: dest.clone(),
                options: Vec::new(),
                chown: false,
                nocopy: false,
            });
        }
    }
    if target.read_only_tmpfs {
        for dest in ["/tmp", "/var/tmp", "/run"] {
            if !taken(&mounts, dest) {
                let mut m = parse_tmpfs(dest)?;
                m.options = ["rw", "nosuid", "nodev"].map(String::from).to_vec();
                mounts.push(m);
            }
        }
    }
    // What can fail on bad input (a missing source, an unknown image) first, so that no
    // volume is made and no owner changed for a container that is not created; volumes last.
    let mut oci = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter_mut().enumerate() {
        if m.kind != MountKind::Volume {
            oci.push(resolve_one(store, m, i, target)?);
        }
    }
    for m in mounts.iter().filter(|m| m.kind == MountKind::Bind && m.chown) {
        chown_tree(Path::new(&m.source), target.owner)?;
    }
    for (i, m) in mounts.iter_mut().enumerate() {
        if m.kind == MountKind::Volume {
            oci.push(resolve_one(store, m, i, target)?);
        }
    }
    Ok((mounts, oci))
}

fn resolve_one(store: &Store, m: &mut UserMount, index: usize, target: &Target) -> Result<Mount> {
    let dest = m.destination.clone();
    match m.kind {
        MountKind::Bind => {
            let source = host_source(&m.source)?;
            m.source = source.display().to_string();
            let mut options = m.options.clone();
            if !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.insert(0, "rbind".into());
            }
            Ok(oci_mount(
                &dest,
                "bind",
                &m.source,
                with_default_propagation(options),
            ))
        }
        MountKind::Overlay => {
            if target.nested {
                bail!(
                    "-v {}:{}:O cannot be combined with --userns or --uidmap",
                    m.source,
                    dest
                );
            }
            let source = host_source(&m.source)?;
            if !source.is_dir() {
                bail!("-v {}:{dest}:O: the source must be a directory", source.display());
            }
            m.source = source.display().to_string();
            let dir = target.bundle.join("overlay").join(index.to_string());
            for p in [&source, &dir] {
                if p.to_string_lossy().contains([',', ':']) {
                    bail!("{}: overlay paths cannot contain ',' or ':'", p.display());
                }
            }
            let mut options = vec![
                format!("lowerdir={}", source.display()),
                format!("upperdir={}", dir.join("upper").display()),
                format!("workdir={}", dir.join("work").display()),
                "userxattr".into(),
            ];
            options.extend(
                m.options
                    .iter()
                    .filter(|o| !is_propagation(o) && *o != "rbind" && *o != "bind")
                    .cloned(),
            );
            Ok(oci_mount(&dest, "overlay", "overlay", options))
        }
        MountKind::Tmpfs => Ok(oci_mount(&dest, "tmpfs", "tmpfs", m.options.clone())),
        MountKind::Devpts => {
            let mut options: Vec<String> = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
                .map(String::from)
                .to_vec();
            options.extend(m.options.iter().cloned());
            Ok(oci_mount(&dest, "devpts", "devpts", options))
        }
        MountKind::Image => {
            let image = store.image(&m.source)?;
            let lower: Vec<PathBuf> = image.layers.iter().rev().map(|l| store.layer_dir(l)).collect();
            let mut options = vec!["ro".to_string()];
            if m.options.iter().any(|o| o == "rw") {
                bail!(
                    "--mount type=image,source={}: burrow mounts images read-only",
                    m.source
                );
            }
            match lower.as_slice() {
                // Overlay needs two lower layers when it has no upper one.
                [one] => {
                    options.insert(0, "rbind".into());
                    Ok(oci_mount(
                        &dest,
                        "bind",
                        &one.display().to_string(),
                        with_default_propagation(options),
                    ))
                }
                _ => {
                    let list: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
                    options.push(format!("lowerdir={}", list.join(":")));
                    options.push("userxattr".into());
                    Ok(oci_mount(&dest, "overlay", "overlay", options))
                }
            }
        }
        MountKind::Volume => {
            let volume = if m.source.is_empty() {
                store.create_volume(&NewVolume {
                    anonymous: true,
                    ..NewVolume::default()
                })?
            } else {
                match store.volume(&m.source) {
                    Ok(v) => v,
                    // `-v NAME:/dst` makes the volume, as Podman's.
                    Err(StoreError::NoSuchVolume(_)) => store.create_volume(&NewVolume {
                        name: Some(&m.source),
                        ..NewVolume::default()
                    })?,
                    Err(e) => return Err(e.into()),
                }
            };
            m.source = volume.name.clone();
            store.link_volume(target.id, &volume.name, &dest)?;
            if let Some(typ) = volume.options.get("type") {
                // `volume create --opt type=tmpfs,device=tmpfs,o=size=1m`: a mount of its own.
                let device = volume
                    .options
                    .get("device")
                    .cloned()
                    .unwrap_or_else(|| typ.clone());
                let mut options: Vec<String> = volume
                    .options
                    .get("o")
                    .map(|o| {
                        o.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                options.extend(m.options.iter().cloned());
                let typ = if typ == "none" { "bind" } else { typ.as_str() };
                if typ == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
                    options.insert(0, "rbind".into());
                }
                return Ok(oci_mount(&dest, typ, &device, options));
            }
            let data = store.volume_data(&volume.name);
            if volume.needs_init {
                init_volume(store, &data, m, target)?;
                store.volume_initialized(&volume.name)?;
            }
            if m.chown {
                chown_tree(&data, target.owner)?;
            }
            let mut options = vec!["rbind".to_string(), "nosuid".into(), "nodev".into()];
            options.extend(m.options.iter().cloned());
            Ok(oci_mount(
                &dest,
                "bind",
                &data.display().to_string(),
                with_default_propagation(options),
            ))
        }
    }
}

/// A bind source: absolute (relative ones are taken from the current directory), existing.
/// Docker creates a missing one; Podman refuses, and so does burrow.
fn host_source(source: &str) -> Result<PathBuf> {
    let path = Path::new(source);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    fs::canonicalize(&path).map_err(|e| {
        anyhow!(
            "bind source {:?}: {} (burrow, as Podman, does not create a missing one; Docker would)",
            path.display().to_string(),
            super::cp::io_text(&e)
        )
    })
}

/// A new volume's first mount: the image's files at the destination are copied into it
/// (with their owners and the directory's mode, as Docker does), else it is given to the
/// container's user.
fn init_volume(store: &Store, data: &Path, m: &UserMount, target: &Target) -> Result<()> {
    let empty = fs::read_dir(data)
        .with_context(|| format!("reading {}", data.display()))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let copied = !m.nocopy && copy_up(store, data, &m.destination, target)?;
    if !copied {
        std::os::unix::fs::lchown(data, Some(target.owner.0), Some(target.owner.1))
            .with_context(|| format!("giving {} to the container's user", data.display()))?;
    }
    Ok(())
}

/// Copies the tree at `dest` of the container's root (resolved inside it: a helper chrooted
/// there packs it) into the volume dir `data`. False when the image has no directory there.
fn copy_up(store: &Store, data: &Path, dest: &str, target: &Target) -> Result<bool> {
    let _ = store;
    let (data_r, data_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (data_r, data_w) = (fs::File::from(data_r), fs::File::from(data_w));
    let mountpoint = target.bundle.join("rootfs");
    let view = View::Stopped {
        rootfs: target.rootfs,
        mountpoint: &mountpoint,
    };
    let source = dest.to_string();
    let helper = spawn_in_root(&view, &[data_r.as_raw_fd()], move || {
        let data_w = std::io::BufWriter::new(data_w);
        // chroot resolves symlinks inside the root: an image's `/data -> /etc` gives its own
        // /etc, as the mount will (openat2 with RESOLVE_IN_ROOT).
        let resolved = match fs::canonicalize(&source) {
            Ok(p) if p.is_dir() => p,
            _ => return Ok(()),
        };
        let resolved = resolved.to_string_lossy().into_owned();
        super::cp::pack(&resolved, "_data", None, data_w).map_err(|e| format!("reading {source}: {e}"))
    })
    .map_err(crate::exit::ExitError::from)?;
    let volume_dir = data.parent().unwrap_or(data);
    let mut reader = BufReader::new(data_r);
    // The helper writes nothing when the image has no directory there.
    let found = reader.fill_buf().map(|b| !b.is_empty()).unwrap_or(false);
    let unpacked = if found {
        super::cp::unpack(&mut reader, volume_dir, true)
    } else {
        Ok(())
    };
    drop(reader);
    helper
        .wait()
        .map_err(|e| anyhow!("copying {dest} of the image into its volume: {e}"))?;
    unpacked.with_context(|| format!("copying {dest} of the image into {}", data.display()))?;
    Ok(found)
}

/// `:U`: gives the tree at `path` to `owner`, never following a symlink (each directory is
/// opened with O_NOFOLLOW from its parent, so a link swapped in cannot redirect the walk).
fn chown_tree(path: &Path, owner: (u32, u32)) -> Result<()> {
    let top = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    chown_dir(OwnedFd::from(top), owner).with_context(|| format!("changing the owner of {}", path.display()))
}

fn chown_dir(dir: OwnedFd, (uid, gid): (u32, u32)) -> Result<()> {
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::Mode;
    nix::unistd::fchown(dir.as_fd(), Some(uid.into()), Some(gid.into()))?;
    let listing = nix::dir::Dir::from_fd(nix::unistd::dup(dir.as_fd())?)?;
    let mut subdirs = Vec::new();
    for entry in listing.into_iter() {
        let entry = entry?;
        let name = entry.file_name().to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        nix::unistd::fchownat(
            dir.as_fd(),
            name.as_c_str(),
            Some(uid.into()),
            Some(gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if entry.file_type() == Some(nix::dir::Type::Directory) {
            subdirs.push(name);
        }
    }
    for name in subdirs {
        match nix::fcntl::openat(
            dir.as_fd(),
            name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(sub) => chown_dir(sub, (uid, gid))?,
            // Replaced by something else meanwhile: not ours to follow.
            Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Makes the empty upper and work dirs of the container's `:O` mounts at each start, so that
/// what the container wrote there last time is gone.
pub fn reset_overlays(spec: &oci_spec::runtime::Spec, bundle: &Path) -> Result<()> {
    for m in spec.mounts().iter().flatten() {
        if m.typ().as_deref() != Some("overlay") {
            continue;
        }
        for o in m.options().iter().flatten() {
            let Some(dir) = o.strip_prefix("upperdir=").or_else(|| o.strip_prefix("workdir=")) else {
                continue;
            };
            let dir = Path::new(dir);
            if !dir.starts_with(bundle) {
                continue;
            }
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("emptying {}", dir.display()))
                }
                _ => {}
            }
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_binds_of_device_nodes() {
        let m = parse_device("/dev/null").unwrap();
        assert_eq!(
            (m.source.as_str(), m.destination.as_str()),
            ("/dev/null", "/dev/null")
        );
        let m = parse_device("/dev/null:/dev/xnull:rw").unwrap();
        assert_eq!(m.destination, "/dev/xnull");
        assert_eq!(parse_device("/dev/null:r").unwrap().destination, "/dev/null");
        for bad in [
            "/dev/nosuch",
            "/etc/passwd",
            "dev/null",
            "/dev/null:/x:rwx",
            "/dev/null:/x:r:w",
        ] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn volume_specs_parse_as_podmans() {
        let m = parse_volume("data:/srv:ro,Z,nosuid").unwrap();
        assert_eq!(m.kind, MountKind::Volume);
        assert_eq!((m.source.as_str(), m.destination.as_str()), ("data", "/srv"));
        assert_eq!(m.options, ["ro", "nosuid"]);
        assert!(m.read_only());
        let b = parse_volume("/host/dir:/d:U,rslave").unwrap();
        assert_eq!(b.kind, MountKind::Bind);
        assert!(b.chown);
        assert_eq!(parse_volume("/h:/d:O").unwrap().kind, MountKind::Overlay);
        let anon = parse_volume("/only").unwrap();
        assert_eq!((anon.kind, anon.source.as_str()), (MountKind::Volume, ""));
        assert!(parse_volume("/a:/b:ro,rw")
            .unwrap_err()
            .to_string()
            .contains("more than once"));
        let bad = parse_volume("/a:/b:frob").unwrap_err().to_string();
        assert!(bad.contains("invalid option type \"frob\""), "{bad}");
        let anon_ro = parse_volume("/d:ro").unwrap();
        assert_eq!(
            (anon_ro.source.as_str(), anon_ro.destination.as_str()),
            ("", "/d")
        );
        let rel = parse_volume("/a:b").unwrap_err().to_string();
        assert!(rel.contains("must be an absolute path"), "{rel}");
        assert!(parse_volume("vol:/d:O").is_err());
        assert!(parse_volume("bad/name:/d").is_err());
    }

    #[test]
    fn mount_specs_take_dockers_and_podmans_keys() {
        let m = parse_mount("type=bind,src=/h,dst=/d,readonly,bind-propagation=rslave").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert_eq!(m.options, ["ro", "rslave"]);
        let v = parse_mount("type=volume,source=v,target=/d,ro=false,volume-nocopy").unwrap();
        assert!(v.nocopy && !v.read_only());
        let t = parse_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1777").unwrap();
        assert_eq!(t.kind, MountKind::Tmpfs);
        assert!(t.options.contains(&"size=1m".to_string()) && t.options.contains(&"mode=1777".to_string()));
        assert!(parse_mount("type=bind,src=/h")
            .unwrap_err()
            .to_string()
            .contains("target"));
        assert!(parse_mount("type=nfs,dst=/x").is_err());
        assert!(parse_mount("type=bind,src=/h,dst=/x,colour=red")
            .unwrap_err()
            .to_string()
            .contains("unknown mount option"));
        assert_eq!(parse_mount("dst=/x").unwrap().kind, MountKind::Volume);
    }

    #[test]
    fn tmpfs_defaults_come_first() {
        let t = parse_tmpfs("/run:exec,size=1k").unwrap();
        assert_eq!(t.options, ["rw", "noexec", "nosuid", "nodev", "exec", "size=1k"]);
        assert!(parse_tmpfs("run").is_err());
    }

    #[test]
    fn duplicate_destinations_are_refused() {
        let err = MountRequest::parse(&["/a:/d".into()], &[], &["/d/".into()], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("duplicate mount destination"), "{err}");
        let (name, ro) = parse_volumes_from("c1:ro").unwrap();
        assert_eq!((name.as_str(), ro), ("c1", Some(true)));
    }
}
