//! `burrow rm`: remove containers.

use burrow_storage::ContainerState;

use super::stop::stop_container;
use crate::context::Engine;
use crate::exit::ExitError;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Remove all containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Force removal of a running container (it is killed first)
    #[arg(short = 'f', long)]
    force: bool,
    /// Seconds to wait for stop before killing the container (with -f)
    #[arg(short = 't', long = "time")]
    time: Option<u32>,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Remove the containers that depend on the container first (recursively)
    #[arg(long)]
    depend: bool,
    /// Ignore errors when a specified container is missing
    #[arg(short = 'i', long)]
    ignore: bool,
    /// Read the container ID from the file
    #[arg(long, value_name = "FILE")]
    cidfile: Vec<std::path::PathBuf>,
    /// Containers (names or ids)
    containers: Vec<String>,
}

pub fn rm(args: RmArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let mut names: Vec<String> = if args.all {
        store.containers()?.into_iter().map(|c| c.id).collect()
    } else {
        args.containers.clone()
    };
    let from_files = crate::sdunits::read_cidfiles(&args.cidfile, args.ignore)?;
    if !args.cidfile.is_empty() && from_files.is_empty() {
        return Ok(0); // --ignore and no file: nothing to remove
    }
    names.extend(from_files);
    if names.is_empty() && !args.all {
        anyhow::bail!("you must provide at least one name or id");
    }
    let mut code = 0;
    let mut removed = Vec::new();
    for name in &names {
        let found = store.container(name).map_err(anyhow::Error::from);
        if args.ignore && found.as_ref().is_err_and(crate::sdunits::is_no_such_container) {
            continue;
        }
        // rm -a removes every container anyway: dependents go first.
        // Printed as given, as Podman and Docker do; `rm -a` and `rm --depend` print ids.
        let shown = (!args.depend).then_some(name.as_str());
        let result =
            found.and_then(|c| remove(store, &args, args.depend || args.all, c, shown, &mut removed, 0));
        if let Err(e) = result {
            // Already gone, as a dependent of an earlier one or by its own --rm monitor since
            // the listing: not an error under -a (as Podman).
            if args.all
                && (removed.iter().any(|id: &String| id.starts_with(name.as_str()))
                    || crate::sdunits::is_no_such_container(&e))
            {
                continue;
            }
            eprintln!("Error: {}", crate::exit::message(&e));
            code = e.downcast_ref::<ExitError>().map_or(1, |x| x.code);
        }
    }
    // As Podman: a container's id file goes with it (a unit's next start writes it anew).
    if code == 0 {
        for file in &args.cidfile {
            let _ = std::fs::remove_file(file);
        }
    }
    Ok(code)
}

/// Removes `c`, after its dependents with `depend` (else they make it an error); prints
/// each container removed: `c` as `shown`, if given, the others by id.
fn remove(
    store: &burrow_storage::Store,
    args: &RmArgs,
    depend: bool,
    mut c: burrow_storage::ContainerRecord,
    shown: Option<&str>,
    removed: &mut Vec<String>,
    depth: usize,
) -> anyhow::Result<()> {
    if depth > 64 {
        anyhow::bail!("container {}: its dependents nest too deep", c.id);
    }
    let dependents = super::links::dependents(store, &c.id)?;
    if !dependents.is_empty() && !depend {
        let names: Vec<&str> = dependents.iter().map(|d| d.name.as_str()).collect();
        return Err(ExitError {
            code: 125,
            message: format!(
                "container {} has dependent containers which must be removed before it: {}: container already exists",
                c.id,
                names.join(",")
            ),
        }
        .into());
    }
    for d in dependents {
        remove(store, args, depend, d, None, removed, depth + 1)?;
    }
    store.refresh_state(&mut c)?;
    if c.state == ContainerState::Running {
        if !args.force {
            return Err(ExitError {
                code: 2,
                message: format!(
                    "cannot remove container {} as it is running - running or paused containers cannot be removed without force: container state improper",
                    c.id
                ),
            }
            .into());
        }
        // -f kills right away, as Podman (-t raises the grace period).
        stop_container(store, &mut c, Some(args.time.unwrap_or(0)))?;
    }
    // A `burrow mount` of it would keep its overlay in the mount holder's namespace.
    super::mount::release(store, &c);
    super::network::remove_container(store, &c.id, args.volumes)?;
    println!("{}", shown.unwrap_or(&c.id));
    removed.push(c.id);
    Ok(())
}
