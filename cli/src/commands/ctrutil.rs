//! What several container commands share: finding a container and its launch description,
//! requiring it to run, and reading files from inside a running one.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::Result;
use burrow_storage::{ContainerRecord, ContainerState, Store};

use crate::exit::ExitError;
use crate::launch::{self, Launch};

/// The container named `name` (name, id or id prefix), its state checked against the kernel.
pub fn find(store: &Store, name: &str) -> Result<ContainerRecord> {
    let mut c = store.container(name)?;
    store.refresh_state(&mut c)?;
    Ok(c)
}

/// The container and its launch description; it must be running (and not paused). `what`
/// completes Podman's message: "can only {what} on running containers".
pub fn running(store: &Store, name: &str, what: &str) -> Result<(ContainerRecord, Launch, i32)> {
    running_or(store, name, what, false)
}

/// [`running`], paused containers accepted too (their processes can be read).
pub fn running_or_paused(store: &Store, name: &str, what: &str) -> Result<(ContainerRecord, Launch, i32)> {
    running_or(store, name, what, true)
}

fn running_or(
    store: &Store,
    name: &str,
    what: &str,
    paused_ok: bool,
) -> Result<(ContainerRecord, Launch, i32)> {
    let c = find(store, name)?;
    if c.state != ContainerState::Running || (c.paused && !paused_ok) {
        return Err(ExitError {
            code: 125,
            message: format!(
                "can only {what} on running containers: {} is in state {}: container state improper",
                c.id,
                c.status()
            ),
        }
        .into());
    }
    let pid = c
        .pid
        .ok_or_else(|| anyhow::anyhow!("container {} runs but has no pid", c.id))?;
    let l = launch::load(store, &c)?;
    Ok((c, l, pid))
}

/// Reads `path` as the running container whose first process is `pid` sees it (through
/// `/proc/PID/root`, resolved with RESOLVE_IN_ROOT: no symlink leads out of it).
pub fn read_container_file(pid: i32, path: &str) -> Option<Vec<u8>> {
    let root: OwnedFd = std::fs::File::open(format!("/proc/{pid}/root")).ok()?.into();
    let fd = burrow_userns::mount::open_in_root(root.as_raw_fd(), Path::new(path), libc::O_RDONLY).ok()?;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).ok()?;
    Some(data)
}

/// 64 random hex digits (exec session ids).
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The last line of Podman's prompts before it removes things.
pub const ARE_YOU_SURE: &str = "Are you sure you want to continue? [y/N] ";

/// `volume inspect` and `network inspect`: prints what was `found` (JSON, or `format`), then
/// the `errors` as Podman does: all but the last on stderr, the last as the command's error.
pub fn print_inspected<T: serde::Serialize>(
    found: &[T],
    errors: &[String],
    format: Option<&str>,
) -> Result<i32> {
    use super::format::{self, Format};
    match format.map(Format::parse).transpose()? {
        None | Some(Format::Json) => println!("{}", format::json_pretty(&found)),
        Some(f) => {
            let rows = found
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<serde_json::Value>, _>>()?;
            format::print(&f, &rows, &[])?
        }
    }
    for e in &errors[..errors.len().saturating_sub(1)] {
        eprintln!("Error: {e}");
    }
    match errors.last() {
        Some(last) => Err(ExitError {
            code: 125,
            message: format!("inspecting object: {last}"),
        }
        .into()),
        None => Ok(0),
    }
}

// The flags of `volume prune` and `network prune` (a plain comment: a doc comment would
// replace their own about once their flags are deferred).
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (label=KEY[=VALUE], name=)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `volume prune` and `network prune`: asks first (unless `force`), then removes each of the
/// `unused` objects of `kind` ("volumes", "networks") and prints its name. `remove` answers
/// `Ok(false)` for one taken into use meanwhile, which is then left alone.
pub fn prune_unused(
    kind: &str,
    unused: Vec<String>,
    force: bool,
    remove: impl Fn(&str) -> Result<bool, burrow_storage::StoreError>,
) -> Result<i32> {
    if !force {
        let mut question = format!(
            "WARNING! This will remove all {kind} not used by at least one container. The following {kind} will be removed:\n"
        );
        for name in &unused {
            question.push_str(name);
            question.push('\n');
        }
        question.push_str(ARE_YOU_SURE);
        if !confirm(&question)? {
            return Ok(0);
        }
    }
    let mut code = 0;
    for name in unused {
        match remove(&name) {
            Ok(true) => println!("{name}"),
            Ok(false) => {}
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
            }
        }
    }
    Ok(code)
}

/// Prints `prompt` (ending in [`ARE_YOU_SURE`]) and reads the answer: true for y/yes. EOF is an
/// error (125), as Podman's.
pub fn confirm(prompt: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer)? == 0 {
        return Err(ExitError {
            code: 125,
            message: "EOF".into(),
        }
        .into());
    }
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
