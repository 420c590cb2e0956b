//! `burrow systemd`: quadlet files as units, through systemd's generator directory (as
//! root installs it) or, for a user without root, `install-generator`, which writes the
//! units into the user's unit dir and a path unit that redoes it when a quadlet file changes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use burrow_systemd::quadlet;
use sha2::{Digest, Sha256};

use crate::exit::ExitError;
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum SystemdCommand {
    /// Turn your quadlet files into units now, and again whenever one changes (no root needed)
    ///
    /// Reads ~/.config/containers/systemd/ and ~/.config/burrow/systemd/, writes the units into
    /// the user manager's unit dir, adds a path unit that regenerates them when a file there
    /// changes, and reloads the manager. Root can instead install burrow as a systemd user
    /// generator (a link /usr/lib/systemd/user-generators/burrow-user-generator -> burrow).
    InstallGenerator(InstallArgs),
    /// Print the units your quadlet files become
    Quadlet,
    /// Run as a systemd user generator (internal): NORMAL_DIR [EARLY_DIR LATE_DIR]
    #[command(hide = true)]
    Generator { dirs: Vec<PathBuf> },
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The unit dir to write to (default: ~/.config/systemd/user)
    #[arg(long, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
    /// Remove what an earlier install-generator wrote, and its path unit
    #[arg(long)]
    remove: bool,
}

pub fn systemd(cmd: SystemdCommand, global: &GlobalOptions) -> anyhow::Result<i32> {
    match cmd {
        SystemdCommand::InstallGenerator(args) => install(args, global),
        SystemdCommand::Quadlet => {
            let units = convert_or_fail(global)?;
            for u in units {
                println!("---{}---\n{}", u.service, u.text);
            }
            Ok(0)
        }
        SystemdCommand::Generator { dirs } => Ok(generator(&dirs, global)),
    }
}

/// systemd runs generators early and logs their stderr; a bad file is skipped (and
/// named), the others still become units, and the exit is 0 so that nothing else is held up.
pub fn generator(dirs: &[PathBuf], global: &GlobalOptions) -> i32 {
    let Some(out) = dirs.first() else {
        eprintln!("burrow-user-generator: expected the generator output dirs as arguments");
        return 1;
    };
    let (units, errors) = quadlet::convert_all(&quadlet::user_dirs(), &unit_burrow(global));
    for e in &errors {
        eprintln!("burrow-user-generator: {e}");
    }
    if let Err(e) = quadlet::write_units(&units, out) {
        eprintln!("burrow-user-generator: {e}");
        return 1;
    }
    0
}

fn unit_burrow(global: &GlobalOptions) -> Vec<String> {
    let uid = nix::unistd::getuid().as_raw();
    match crate::context::store_paths(global, uid) {
        Ok((paths, _)) => crate::sdunits::unit_burrow(&paths, uid, global),
        Err(_) => vec![std::env::current_exe().map_or_else(|_| "burrow".into(), |p| p.display().to_string())],
    }
}

/// All quadlet files as units, or an error listing every bad one (file and line).
fn convert_or_fail(global: &GlobalOptions) -> anyhow::Result<Vec<quadlet::Generated>> {
    let (units, errors) = quadlet::convert_all(&quadlet::user_dirs(), &unit_burrow(global));
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        return Err(ExitError { code: 125, message }.into());
    }
    Ok(units)
}

fn default_unit_dir() -> anyhow::Result<PathBuf> {
    let uid = nix::unistd::getuid();
    let home = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .context("no passwd entry for the current user")?
        .dir;
    // The manager's own config dir: it runs with the login environment, not ours.
    Ok(home.join(".config/systemd/user"))
}

fn install(args: InstallArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let unit_dir = match args.unit_dir {
        Some(d) => d,
        None => default_unit_dir()?,
    };
    let dirs = quadlet::user_dirs();
    if dirs.is_empty() {
        bail!("neither XDG_CONFIG_HOME nor HOME is set: no quadlet dirs to read");
    }
    // One set of units per set of quadlet dirs, so several can share a unit dir.
    let tag: String = Sha256::digest(
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    )
    .iter()
    .take(6)
    .map(|b| format!("{b:02x}"))
    .collect();
    let list = unit_dir.join(format!(".burrow-quadlet-{tag}.list"));
    let path_unit = format!("burrow-quadlet-{tag}.path");
    // What the last run wrote goes first (a removed quadlet file's unit with it).
    let previous: Vec<PathBuf> = std::fs::read_to_string(&list)
        .unwrap_or_default()
        .lines()
        .map(PathBuf::from)
        .collect();
    let mut bus = burrow_systemd::bus::Connection::user().ok();
    if args.remove {
        if let Some(bus) = bus.as_mut() {
            // The watch first, then a regeneration it may have started.
            let _ = bus.stop_unit(&path_unit);
            let _ = bus.stop_unit(&format!("burrow-quadlet-{tag}.service"));
        }
        for p in &previous {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&list);
        if let Some(bus) = bus.as_mut() {
            bus.reload()?;
        }
        return Ok(0);
    }
    // Convert everything before writing anything: a bad file changes nothing.
    let units = convert_or_fail(global)?;
    for d in &dirs {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    for p in &previous {
        let _ = std::fs::remove_file(p);
    }
    let mut written = quadlet::write_units(&units, &unit_dir)?;
    written.extend(write_path_unit(&unit_dir, &tag, &dirs, global)?);
    let text: String = written.iter().map(|p| format!("{}\n", p.display())).collect();
    std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    for u in &units {
        println!("{}", unit_dir.join(&u.service).display());
    }
    match bus.as_mut() {
        Some(bus) => {
            bus.reload().context("reloading the user manager")?;
            bus.start_unit(&path_unit)
                .with_context(|| format!("starting {path_unit}"))?;
        }
        None => eprintln!(
            "WARN: no systemd user manager reachable: run `systemctl --user daemon-reload` and `systemctl --user enable --now {path_unit}` in your session"
        ),
    }
    Ok(0)
}

/// The path unit (and its service) that runs install-generator again when a quadlet file
/// changes, enabled for default.target.
fn write_path_unit(
    unit_dir: &Path,
    tag: &str,
    dirs: &[PathBuf],
    global: &GlobalOptions,
) -> anyhow::Result<Vec<PathBuf>> {
    use burrow_systemd::unit::{exec_line, quote_word, UnitFile};
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mut path = UnitFile::default();
    path.add(
        "Unit",
        "Description",
        format!("burrow: watch quadlet files in {}", shown.join(" ")),
    );
    for d in &shown {
        path.add("Path", "PathModified", d.clone());
    }
    path.add("Path", "Unit", format!("burrow-quadlet-{tag}.service"));
    path.add("Install", "WantedBy", "default.target");
    let mut service = UnitFile::default();
    service.add("Unit", "Description", "burrow: regenerate quadlet units");
    service.add("Service", "Type", "oneshot");
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        service.add(
            "Service",
            "Environment",
            quote_word(&format!("XDG_CONFIG_HOME={}", config.to_string_lossy())),
        );
    }
    let mut exec = unit_burrow(global);
    exec.extend([
        "systemd".into(),
        "install-generator".into(),
        "--unit-dir".into(),
        unit_dir.display().to_string(),
    ]);
    service.add("Service", "ExecStart", exec_line(&exec));
    let path_file = unit_dir.join(format!("burrow-quadlet-{tag}.path"));
    let service_file = unit_dir.join(format!("burrow-quadlet-{tag}.service"));
    std::fs::write(&path_file, path.render()).with_context(|| format!("writing {}", path_file.display()))?;
    std::fs::write(&service_file, service.render())
        .with_context(|| format!("writing {}", service_file.display()))?;
    let wants = unit_dir.join("default.target.wants");
    std::fs::create_dir_all(&wants)?;
    let link = wants.join(format!("burrow-quadlet-{tag}.path"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&path_file, &link)?;
    Ok(vec![path_file, service_file, link])
}
