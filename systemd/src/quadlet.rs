//! Quadlet: `.container`, `.volume`, `.network` and `.image` files turned into service units,
//! with Podman 4.4's keys (and `BurrowArgs=` beside `PodmanArgs=`). `[Unit]`, `[Service]` and
//! `[Install]` pass through; an unknown key is an error naming its file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::unit::{exec_line, Entry, ParseError, UnitFile};

#[derive(Debug, thiserror::Error)]
pub enum QuadletError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{file}:{line}: {message}")]
    Key {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The kinds of quadlet file, by extension.
pub const EXTENSIONS: &[&str] = &["container", "volume", "network", "image"];

/// A unit made from a quadlet file.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `web.service`, `data-volume.service`, ...
    pub service: String,
    pub text: String,
    /// Targets from `[Install] WantedBy=`/`RequiredBy=`: `(target, "wants" | "requires")`.
    pub install: Vec<(String, &'static str)>,
}

/// Splits a value into words as systemd does for `Exec=`: whitespace, with single and
/// double quotes and backslash escapes.
pub fn split_words(value: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let next = chars.next().ok_or("trailing backslash")?;
                cur.push(next);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unbalanced quotes in {value:?}"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn key_err(file: &str, e: &Entry, message: String) -> QuadletError {
    QuadletError::Key {
        file: file.to_string(),
        line: e.line,
        message,
    }
}

fn words(file: &str, e: &Entry) -> Result<Vec<String>, QuadletError> {
    split_words(&e.value).map_err(|m| key_err(file, e, format!("{}: {m}", e.key)))
}

fn boolean(file: &str, e: &Entry) -> Result<bool, QuadletError> {
    match e.value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(key_err(
            file,
            e,
            format!("{}: {:?} is not a boolean", e.key, e.value),
        )),
    }
}

/// The sections every quadlet file may have besides its own, passed through to the unit.
const PASS_THROUGH: &[&str] = &["Unit", "Service", "Install"];

/// What `.image` and `.volume` files name, by file name: `web.image` → its `ImageTag=` or
/// `Image=`, `data.volume` → its `VolumeName=` or `systemd-data`. A `.container`'s
/// `Image=web.image` runs that image, `Volume=data.volume:/d` mounts that volume.
pub type Names = BTreeMap<String, String>;

/// Turns one quadlet file into its unit. `burrow` is the binary and its global options.
pub fn convert(path: &Path, text: &str, burrow: &[String], names: &Names) -> Result<Generated, QuadletError> {
    let file = path.display().to_string();
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| QuadletError::File {
            file: file.clone(),
            message: "not a valid file name".into(),
        })?
        .to_string();
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or_default();
    let parsed = UnitFile::parse(text, &file)?;
    let own = match ext {
        "container" => "Container",
        "volume" => "Volume",
        "network" => "Network",
        "image" => "Image",
        _ => {
            return Err(QuadletError::File {
                file,
                message: format!(
                    "not a quadlet file: the extension must be one of {}",
                    EXTENSIONS.join(", ")
                ),
            })
        }
    };
    for (section, entries) in &parsed.sections {
        if section != own && !PASS_THROUGH.contains(&section.as_str()) {
            let line = entries.first().map_or(1, |e| e.line.saturating_sub(1).max(1));
            return Err(QuadletError::Key {
                file,
                line,
                message: format!("unknown section [{section}] in a .{ext} file"),
            });
        }
    }
    let entries = parsed.section(own).unwrap_or_default();
    let mut out = UnitFile::default();
    for (section, list) in &parsed.sections {
        if section == "Unit" {
            for e in list {
                out.add("Unit", &e.key, e.value.clone());
            }
        }
    }
    out.add("Unit", "SourcePath", file.clone());
    if !out
        .section("Unit")
        .is_some_and(|s| s.iter().any(|e| e.key == "Description"))
    {
        out.add(
            "Unit",
            "Description",
            format!(
                "burrow quadlet {}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
        );
    }
    let service = match ext {
        "container" => {
            container(&file, &name, entries, burrow, names, &mut out)?;
            format!("{name}.service")
        }
        "volume" => {
            volume(&file, &name, entries, burrow, &mut out)?;
            format!("{name}-volume.service")
        }
        "network" => {
            network(&file, &name, entries, burrow, &mut out)?;
            format!("{name}-network.service")
        }
        _ => {
            image(&file, entries, burrow, &mut out)?;
            format!("{name}-image.service")
        }
    };
    let mut install = Vec::new();
    for (section, list) in &parsed.sections {
        if section == "Service" {
            for e in list {
                out.add("Service", &e.key, e.value.clone());
            }
        }
        if section == "Install" {
            for e in list {
                let kind = match e.key.as_str() {
                    "WantedBy" => "wants",
                    "RequiredBy" => "requires",
                    // Alias= and Also= need `systemctl enable`, which generated units cannot have.
                    _ => {
                        return Err(key_err(
                            &file,
                            e,
                            format!(
                            "[Install] {} is not supported in quadlet files (WantedBy= and RequiredBy= are)",
                            e.key
                        ),
                        ))
                    }
                };
                for target in words(&file, e)? {
                    install.push((target, kind));
                }
            }
        }
    }
    Ok(Generated {
        service,
        text: format!(
            "# Automatically generated by burrow's quadlet generator from {file}\n#\n{}",
            out.render()
        ),
        install,
    })
}

/// Keys Podman 4.4 knows that burrow cannot honour yet: named in the error, apart from
/// unknown ones.
const NOT_SUPPORTED: &[&str] = &[
    "Device",
    "Tmpfs",
    "Timezone",
    "SecurityLabelDisable",
    "SecurityLabelType",
    "SecurityLabelFileType",
    "SecurityLabelLevel",
    "Rootfs",
    "Pod",
    "Mount",
    "Secret",
    "Sysctl",
    "Ulimit",
    "Mask",
    "Unmask",
];

fn container(
    file: &str,
    name: &str,
    entries: &[Entry],
    burrow: &[String],
    names: &Names,
    out: &mut UnitFile,
) -> Result<(), QuadletError> {
    let mut image = None;
    let mut exec: Vec<String> = Vec::new();
    let mut container_name = format!("systemd-{name}");
    let mut args: Vec<String> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    let mut global: Vec<String> = Vec::new();
    let mut notify = false;
    let mut user: Option<String> = None;
    let mut group: Option<String> = None;
    let mut requires: Vec<String> = Vec::new();
    let flag_each = |args: &mut Vec<String>, flag: &str, e: &Entry| -> Result<(), QuadletError> {
        for w in words(file, e)? {
            args.push(format!("{flag}={w}"));
        }
        Ok(())
    };
    for e in entries {
        match e.key.as_str() {
            "Image" => match e.value.strip_suffix(".image") {
                // The image a .image file pulls, once its service has run.
                Some(stem) => {
                    let named = names
                        .get(&e.value)
                        .ok_or_else(|| key_err(file, e, format!("Image={}: no such .image file", e.value)))?;
                    requires.push(format!("{stem}-image.service"));
                    image = Some(named.clone());
                }
                None => image = Some(e.value.clone()),
            },
            "Exec" => exec = words(file, e)?,
            "ContainerName" => container_name = e.value.clone(),
            "PublishPort" => flag_each(&mut args, "--publish", e)?,
            "ExposeHostPort" => flag_each(&mut args, "--expose", e)?,
            "Environment" => flag_each(&mut args, "--env", e)?,
            "EnvironmentFile" => flag_each(&mut args, "--env-file", e)?,
            "Label" => flag_each(&mut args, "--label", e)?,
            "Annotation" => flag_each(&mut args, "--annotation", e)?,
            "AddCapability" => flag_each(&mut args, "--cap-add", e)?,
            "DropCapability" => flag_each(&mut args, "--cap-drop", e)?,
            "Volume" => {
                for w in words(file, e)? {
                    // `name.volume:/dest` is the volume a .volume file makes.
                    let (src, rest) = w.split_once(':').unwrap_or((w.as_str(), ""));
                    let w = match src.strip_suffix(".volume") {
                        Some(v) => {
                            let named = names.get(src).ok_or_else(|| {
                                key_err(file, e, format!("Volume={w}: no such .volume file"))
                            })?;
                            requires.push(format!("{v}-volume.service"));
                            format!("{named}:{rest}")
                        }
                        None => w.clone(),
                    };
                    args.push(format!("--volume={w}"));
                }
            }
            "Network" => {
                for w in words(file, e)? {
                    let w = match w.strip_suffix(".network") {
                        Some(n) => {
                            let named = names.get(&w).ok_or_else(|| {
                                key_err(file, e, format!("Network={w}: no such .network file"))
                            })?;
                            requires.push(format!("{n}-network.service"));
                            named.clone()
                        }
                        None => w,
                    };
                    args.push(format!("--network={w}"));
                }
            }
            "User" => user = Some(e.value.clone()),
            "Group" => group = Some(e.value.clone()),
            "UserNS" => args.push(format!("--userns={}", e.value)),
            "HostName" => args.push(format!("--hostname={}", e.value)),
            "DNS" => flag_each(&mut args, "--dns", e)?,
            "LogDriver" => args.push(format!("--log-driver={}", e.value)),
            "ReadOnly" => {
                if boolean(file, e)? {
                    args.push("--read-only".into());
                }
            }
            "RunInit" => {
                if boolean(file, e)? {
                    args.push("--init".into());
                }
            }
            "NoNewPrivileges" => {
                if boolean(file, e)? {
                    args.push("--security-opt=no-new-privileges".into());
                }
            }
            "SeccompProfile" => args.push(format!("--security-opt=seccomp={}", e.value)),
            "Notify" => notify = boolean(file, e)?,
            "HealthCmd" => args.push(format!("--health-cmd={}", e.value)),
            "HealthInterval" => args.push(format!("--health-interval={}", e.value)),
            "HealthRetries" => args.push(format!("--health-retries={}", e.value)),
            "HealthStartPeriod" => args.push(format!("--health-start-period={}", e.value)),
            "HealthTimeout" => args.push(format!("--health-timeout={}", e.value)),
            "HealthOnFailure" => args.push(format!("--health-on-failure={}", e.value)),
            "AutoUpdate" => args.push(format!("--label=io.containers.autoupdate={}", e.value)),
            "PodmanArgs" | "BurrowArgs" => extra.extend(words(file, e)?),
            "GlobalArgs" => global.extend(words(file, e)?),
            k if NOT_SUPPORTED.contains(&k) => {
                return Err(key_err(
                    file,
                    e,
                    format!("key {k} is not supported by burrow yet"),
                ))
            }
            k => return Err(key_err(file, e, format!("unknown key {k} in [Container]"))),
        }
    }
    let image = image.ok_or_else(|| QuadletError::File {
        file: file.to_string(),
        message: "no Image= key in [Container]".into(),
    })?;
    if let Some(u) = user {
        args.push(match group {
            Some(g) => format!("--user={u}:{g}"),
            None => format!("--user={u}"),
        });
    } else if group.is_some() {
        return Err(QuadletError::File {
            file: file.to_string(),
            message: "Group= needs User=".into(),
        });
    }
    for r in &requires {
        out.add("Unit", "Requires", r.clone());
        out.add("Unit", "After", r.clone());
    }
    let cidfile = "--cidfile=%t/%N.cid".to_string();
    let base = merge_globals(burrow, &global);
    let with = |rest: &[&str]| -> String {
        exec_line(
            &base
                .iter()
                .cloned()
                .chain(rest.iter().map(|s| s.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    let mut start: Vec<String> = base.clone();
    start.extend([
        "run".into(),
        format!("--name={container_name}"),
        cidfile.clone(),
        "--replace".into(),
        "--rm".into(),
        format!("--sdnotify={}", if notify { "container" } else { "conmon" }),
        "-d".into(),
    ]);
    start.extend(args);
    start.extend(extra);
    start.push(image);
    start.extend(exec);
    out.add("Service", "Environment", "BURROW_SYSTEMD_UNIT=%n");
    out.add("Service", "KillMode", "mixed");
    out.add("Service", "ExecStop", with(&["rm", "-f", "-i", &cidfile]));
    out.add(
        "Service",
        "ExecStopPost",
        format!("-{}", with(&["rm", "-f", "-i", &cidfile])),
    );
    out.add("Service", "Type", "notify");
    out.add("Service", "NotifyAccess", "all");
    out.add("Service", "SyslogIdentifier", "%N");
    out.add("Service", "ExecStartPre", "-/bin/rm -f %t/%N.cid");
    out.add("Service", "ExecStart", exec_line(&start));
    Ok(())
}

/// burrow's binary and global options with `GlobalArgs=` after them; an option given in
/// `GlobalArgs=` (`--root`, `--runroot`) replaces the generator's own.
fn merge_globals(burrow: &[String], global: &[String]) -> Vec<String> {
    let named = |a: &str| a.split('=').next().unwrap_or_default().to_string();
    let overridden: Vec<String> = global
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| named(a))
        .collect();
    let mut out = Vec::new();
    let mut items = burrow.iter();
    if let Some(exe) = items.next() {
        out.push(exe.clone());
    }
    while let Some(a) = items.next() {
        if overridden.contains(&named(a)) {
            if !a.contains('=') {
                items.next(); // its value
            }
            continue;
        }
        out.push(a.clone());
    }
    out.extend(global.iter().cloned());
    out
}

fn oneshot(out: &mut UnitFile, exec: String) {
    out.add("Service", "Type", "oneshot");
    out.add("Service", "RemainAfterExit", "yes");
    out.add("Service", "ExecStart", exec);
    out.add("Service", "SyslogIdentifier", "%N");
}

fn volume(
    file: &str,
    name: &str,
    entries: &[Entry],
    burrow: &[String],
    out: &mut UnitFile,
) -> Result<(), QuadletError> {
    let mut args: Vec<String> = Vec::new();
    let mut global: Vec<String> = Vec::new();
    let mut volume_name = format!("systemd-{name}");
    let (mut device, mut typ, mut options) = (None, None, None);
    for e in entries {
        match e.key.as_str() {
            "VolumeName" => volume_name = e.value.clone(),
            "Label" => {
                for w in words(file, e)? {
                    args.push(format!("--label={w}"));
                }
            }
            "Driver" => args.push(format!("--driver={}", e.value)),
            "Device" => device = Some(e.value.clone()),
            "Type" => typ = Some(e),
            "Options" => options = Some(e),
            // Copying the image's files into a new volume is what burrow does anyway.
            "Copy" if boolean(file, e)? => {}
            "Copy" | "User" | "Group" | "Image" => {
                return Err(key_err(
                    file,
                    e,
                    format!("key {}={} is not supported by burrow yet", e.key, e.value),
                ))
            }
            "PodmanArgs" | "BurrowArgs" => args.extend(words(file, e)?),
            "GlobalArgs" => global.extend(words(file, e)?),
            k => return Err(key_err(file, e, format!("unknown key {k} in [Volume]"))),
        }
    }
    // As Podman's quadlet: the mount's type and options go with a device.
    for e in [typ, options].into_iter().flatten() {
        if device.is_none() {
            return Err(key_err(
                file,
                e,
                format!("key {} can't be used without Device", e.key),
            ));
        }
    }
    if let Some(d) = device {
        args.push(format!("--opt=device={d}"));
    }
    if let Some(t) = typ {
        args.push(format!("--opt=type={}", t.value));
    }
    if let Some(o) = options {
        args.push(format!("--opt=o={}", o.value));
    }
    let mut line = merge_globals(burrow, &global);
    line.extend(["volume".into(), "create".into(), "--ignore".into()]);
    line.extend(args);
    line.push(volume_name);
    oneshot(out, exec_line(&line));
    Ok(())
}

fn network(
    file: &str,
    name: &str,
    entries: &[Entry],
    burrow: &[String],
    out: &mut UnitFile,
) -> Result<(), QuadletError> {
    let mut args: Vec<String> = burrow.to_vec();
    args.extend(["network".into(), "create".into(), "--ignore".into()]);
    let mut network_name = format!("systemd-{name}");
    for e in entries {
        match e.key.as_str() {
            "NetworkName" => network_name = e.value.clone(),
            "Label" => {
                for w in words(file, e)? {
                    args.push(format!("--label={w}"));
                }
            }
            "Subnet" | "Gateway" | "Driver" => {
                args.push(format!("--{}={}", e.key.to_ascii_lowercase(), e.value))
            }
            "IPRange" => args.push(format!("--ip-range={}", e.value)),
            "IPv6" | "Internal" | "DisableDNS" => {
                if boolean(file, e)? {
                    args.push(format!("--{}", e.key.to_ascii_lowercase()));
                }
            }
            "PodmanArgs" | "BurrowArgs" => args.extend(words(file, e)?),
            k => return Err(key_err(file, e, format!("unknown key {k} in [Network]"))),
        }
    }
    args.push(network_name);
    oneshot(out, exec_line(&args));
    Ok(())
}

fn image(file: &str, entries: &[Entry], burrow: &[String], out: &mut UnitFile) -> Result<(), QuadletError> {
    let mut args: Vec<String> = Vec::new();
    let mut global: Vec<String> = Vec::new();
    let mut image = None;
    for e in entries {
        match e.key.as_str() {
            "Image" => image = Some(e.value.clone()),
            // What containers call it (`image_name`); nothing to pass to the pull.
            "ImageTag" => {}
            "AllTags" => {
                if boolean(file, e)? {
                    args.push("--all-tags".into());
                }
            }
            "TLSVerify" => args.push(format!("--tls-verify={}", boolean(file, e)?)),
            "Arch" | "OS" | "Variant" | "Creds" => {
                args.push(format!("--{}={}", e.key.to_ascii_lowercase(), e.value))
            }
            "CertDir" => args.push(format!("--cert-dir={}", e.value)),
            "AuthFile" => args.push(format!("--authfile={}", e.value)),
            "PodmanArgs" | "BurrowArgs" => args.extend(words(file, e)?),
            "GlobalArgs" => global.extend(words(file, e)?),
            k => return Err(key_err(file, e, format!("unknown key {k} in [Image]"))),
        }
    }
    let mut line = merge_globals(burrow, &global);
    line.extend(["image".into(), "pull".into()]);
    line.extend(args);
    line.push(image.ok_or_else(|| QuadletError::File {
        file: file.to_string(),
        message: "no Image= key in [Image]".into(),
    })?);
    oneshot(out, exec_line(&line));
    Ok(())
}

/// What a `.image`, `.volume` or `.network` file names for the containers that use it: the
/// image (`ImageTag=`, else `Image=`), the volume or network (`VolumeName=`/`NetworkName=`, else
/// `systemd-NAME`).
fn named_by(path: &Path, text: &str) -> Option<String> {
    let parsed = UnitFile::parse(text, &path.display().to_string()).ok()?;
    let get = |section: &str, k: &str| {
        parsed
            .section(section)
            .and_then(|entries| entries.iter().rev().find(|e| e.key == k).map(|e| e.value.clone()))
    };
    match path.extension()?.to_str()? {
        "image" => get("Image", "ImageTag").or_else(|| get("Image", "Image")),
        "volume" => {
            get("Volume", "VolumeName").or_else(|| Some(format!("systemd-{}", path.file_stem()?.to_str()?)))
        }
        "network" => {
            get("Network", "NetworkName").or_else(|| Some(format!("systemd-{}", path.file_stem()?.to_str()?)))
        }
        _ => None,
    }
}

/// The quadlet files in `dirs`, a later dir's file replacing an earlier one of the same name.
pub fn find_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, QuadletError> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(QuadletError::Io {
                    path: dir.display().to_string(),
                    source,
                })
            }
        };
        for entry in read.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if EXTENSIONS.contains(&ext) {
                by_name.insert(entry.file_name().to_string_lossy().into_owned(), path);
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// Converts every quadlet file in `dirs`: the units, and the errors of the files that
/// could not be converted.
pub fn convert_all(dirs: &[PathBuf], burrow: &[String]) -> (Vec<Generated>, Vec<QuadletError>) {
    let files = match find_files(dirs) {
        Ok(f) => f,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let texts: Vec<(PathBuf, std::io::Result<String>)> = files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f);
            (f, text)
        })
        .collect();
    let names: Names = texts
        .iter()
        .filter_map(|(f, text)| {
            let name = f.file_name()?.to_string_lossy().into_owned();
            Some((name, named_by(f, text.as_ref().ok()?)?))
        })
        .collect();
    let mut units = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in texts {
        let converted = text
            .map_err(|source| QuadletError::Io {
                path: file.display().to_string(),
                source,
            })
            .and_then(|text| convert(&file, &text, burrow, &names));
        match converted {
            Ok(u) => units.push(u),
            Err(e) => errors.push(e),
        }
    }
    (units, errors)
}

/// Writes units into `out_dir`, with `.wants`/`.requires` links for `[Install]`; returns
/// every path written.
pub fn write_units(units: &[Generated], out_dir: &Path) -> Result<Vec<PathBuf>, QuadletError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| QuadletError::Io { path, source }
    };
    let mut written = Vec::new();
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    for unit in units {
        let target = out_dir.join(&unit.service);
        std::fs::write(&target, &unit.text).map_err(io(&target))?;
        written.push(target.clone());
        for (on, kind) in &unit.install {
            let dir = out_dir.join(format!("{on}.{kind}"));
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let link = dir.join(&unit.service);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).map_err(io(&link))?;
            written.push(link);
        }
    }
    Ok(written)
}

/// The quadlet dirs of a user: `~/.config/containers/systemd` (Podman's) then
/// `~/.config/burrow/systemd`, under `$XDG_CONFIG_HOME` if set.
pub fn user_dirs() -> Vec<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    match config {
        Some(c) => vec![c.join("containers/systemd"), c.join("burrow/systemd")],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burrow() -> Vec<String> {
        vec!["/usr/bin/burrow".into()]
    }

    #[test]
    fn container_file_becomes_a_notify_service() {
        let text = "[Unit]\nDescription=web\n[Container]\nImage=bb\nExec=httpd -f -p 80\nPublishPort=127.0.0.1:8080:80\nEnvironment=A=1 \"B=two words\"\nAutoUpdate=local\nBurrowArgs=--init\n[Service]\nRestart=always\n[Install]\nWantedBy=default.target\n";
        let g = convert(Path::new("/q/web.container"), text, &burrow(), &Names::new()).unwrap();
        assert_eq!(g.service, "web.service");
        assert_eq!(g.install, vec![("default.target".to_string(), "wants")]);
        assert!(g.text.contains("Description=web\n"), "{}", g.text);
        assert!(g.text.contains("Restart=always\n"), "{}", g.text);
        assert!(g.text.contains(
            "ExecStart=/usr/bin/burrow run --name=systemd-web --cidfile=%t/%N.cid --replace --rm --sdnotify=conmon -d --publish=127.0.0.1:8080:80 --env=A=1 \"--env=B=two words\" --label=io.containers.autoupdate=local --init bb httpd -f -p 80\n"
        ), "{}", g.text);
    }

    #[test]
    fn unknown_keys_name_file_and_line() {
        let e = convert(
            Path::new("/q/a.container"),
            "[Container]\nImage=bb\nColour=red\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/q/a.container:3: unknown key Colour in [Container]"
        );
        let e = convert(
            Path::new("/q/a.container"),
            "[Container]\nExec=true\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no Image="), "{e}");
        let e = convert(
            Path::new("/q/a.container"),
            "[Bogus]\nX=1\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown section [Bogus]"), "{e}");
    }

    #[test]
    fn volume_and_network_references() {
        let g = convert(
            Path::new("/q/app.container"),
            "[Container]\nImage=bb\nVolume=data.volume:/data\nVolume=named.volume:/n:ro\nNetwork=net.network\n",
            &burrow(),
            &Names::from([
                ("data.volume".to_string(), "systemd-data".to_string()),
                ("named.volume".to_string(), "mine".to_string()),
                ("net.network".to_string(), "systemd-net".to_string()),
            ]),
        )
        .unwrap();
        assert!(g.text.contains("Requires=data-volume.service\n"), "{}", g.text);
        assert!(g.text.contains("--volume=systemd-data:/data"), "{}", g.text);
        assert!(g.text.contains("--volume=mine:/n:ro"), "{}", g.text);
        assert_eq!(
            named_by(Path::new("/q/d.volume"), "[Volume]\nLabel=a=b\n").as_deref(),
            Some("systemd-d")
        );
        assert_eq!(
            named_by(Path::new("/q/d.volume"), "[Volume]\nVolumeName=mine\n").as_deref(),
            Some("mine")
        );
        let e = convert(
            Path::new("/q/app.container"),
            "[Container]\nImage=bb\nVolume=gone.volume:/g\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/q/app.container:3: Volume=gone.volume:/g: no such .volume file"
        );
        assert!(g.text.contains("--network=systemd-net"), "{}", g.text);
        let v = convert(
            Path::new("/q/data.volume"),
            "[Volume]\nLabel=a=b\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap();
        assert_eq!(v.service, "data-volume.service");
        assert!(v
            .text
            .contains("ExecStart=/usr/bin/burrow volume create --ignore --label=a=b systemd-data\n"));
    }

    #[test]
    fn network_files_and_their_names() {
        let n = convert(
            Path::new("/q/net.network"),
            "[Network]\nSubnet=10.90.0.0/24\nGateway=10.90.0.1\nIPRange=10.90.0.16/28\nInternal=yes\nLabel=a=b\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap();
        assert!(n.text.contains(
            "ExecStart=/usr/bin/burrow network create --ignore --subnet=10.90.0.0/24 --gateway=10.90.0.1 \
             --ip-range=10.90.0.16/28 --internal --label=a=b systemd-net\n"
        ), "{}", n.text);
        assert_eq!(
            named_by(Path::new("/q/named.network"), "[Network]\nNetworkName=backend\n").as_deref(),
            Some("backend")
        );
        let names = Names::from([("named.network".to_string(), "backend".to_string())]);
        let c = convert(
            Path::new("/q/app.container"),
            "[Container]\nImage=bb\nNetwork=named.network\n",
            &burrow(),
            &names,
        )
        .unwrap();
        assert!(c.text.contains("--network=backend"), "{}", c.text);
        assert!(c.text.contains("Requires=named-network.service\n"), "{}", c.text);
        assert!(c.text.contains("After=named-network.service\n"), "{}", c.text);
    }

    #[test]
    fn volume_keys_as_podmans() {
        let v = convert(
            Path::new("/q/d.volume"),
            "[Volume]\nVolumeName=dv\nDevice=tmpfs\nType=tmpfs\nOptions=size=1m\nCopy=yes\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap();
        assert!(
            v.text.contains(
                "ExecStart=/usr/bin/burrow volume create --ignore --opt=device=tmpfs --opt=type=tmpfs --opt=o=size=1m dv\n"
            ),
            "{}",
            v.text
        );
        let e = convert(
            Path::new("/q/d.volume"),
            "[Volume]\nLabel=a=b\nOptions=size=1m\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/q/d.volume:3: key Options can't be used without Device"
        );
        let e = convert(
            Path::new("/q/d.volume"),
            "[Volume]\nUser=1\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/q/d.volume:2: key User=1 is not supported"),
            "{e}"
        );
        let e = convert(
            Path::new("/q/d.volume"),
            "[Volume]\n\nSize=1\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/q/d.volume:3: unknown key Size in [Volume]");
    }

    #[test]
    fn image_files_and_the_containers_that_use_them() {
        let i = convert(
            Path::new("/q/app.image"),
            "[Image]\nImage=127.0.0.1:5000/app:1\nTLSVerify=false\nAllTags=no\n",
            &burrow(),
            &Names::new(),
        )
        .unwrap();
        assert_eq!(i.service, "app-image.service");
        assert!(i
            .text
            .contains("ExecStart=/usr/bin/burrow image pull --tls-verify=false 127.0.0.1:5000/app:1\n"));
        assert!(
            i.text.contains("Type=oneshot\nRemainAfterExit=yes\n"),
            "{}",
            i.text
        );
        let names = Names::from([("app.image".to_string(), "127.0.0.1:5000/app:1".to_string())]);
        assert_eq!(
            named_by(Path::new("/q/x.image"), "[Image]\nImage=a\nImageTag=b\n").as_deref(),
            Some("b")
        );
        let c = convert(
            Path::new("/q/web.container"),
            "[Container]\nImage=app.image\n",
            &burrow(),
            &names,
        )
        .unwrap();
        assert!(
            c.text
                .contains("Requires=app-image.service\nAfter=app-image.service\n"),
            "{}",
            c.text
        );
        assert!(c.text.contains(" 127.0.0.1:5000/app:1\n"), "{}", c.text);
        let e = convert(
            Path::new("/q/web.container"),
            "[Container]\nImage=other.image\n",
            &burrow(),
            &names,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/q/web.container:2: Image=other.image: no such .image file"
        );
        let e = convert(
            Path::new("/q/app.image"),
            "[Image]\nImage=a\nPull=always\n",
            &burrow(),
            &names,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/q/app.image:3: unknown key Pull in [Image]");
    }

    #[test]
    fn global_args_replace_the_generators() {
        let burrow = vec![
            "/b".to_string(),
            "--root".into(),
            "/r1".into(),
            "--runroot".into(),
            "/rr".into(),
        ];
        let merged = merge_globals(&burrow, &["--root=/r2".to_string()]);
        assert_eq!(merged, vec!["/b", "--runroot", "/rr", "--root=/r2"]);
    }

    #[test]
    fn words_split_like_systemd() {
        assert_eq!(
            split_words("a 'b c' \"d\\\"e\"").unwrap(),
            vec!["a", "b c", "d\"e"]
        );
        assert!(split_words("'open").is_err());
    }
}
