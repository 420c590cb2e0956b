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
    for name in &names {
        let found = store.container(name).map_err(anyhow::Error::from);
        if args.ignore && found.as_ref().is_err_and(crate::sdunits::is_no_such_container) {
            continue;
        }
        let result = found.and_then(|mut c| {
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
            store.remove_container(&c.id)?;
            Ok(c.id)
        });
        match result {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::message(&e));
                code = e.downcast_ref::<ExitError>().map_or(1, |x| x.code);
            }
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
