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
    /// Containers (names or ids)
    containers: Vec<String>,
}

pub fn rm(args: RmArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let names: Vec<String> = if args.all {
        store.containers()?.into_iter().map(|c| c.id).collect()
    } else {
        args.containers.clone()
    };
    if names.is_empty() && !args.all {
        anyhow::bail!("you must provide at least one name or id");
    }
    let mut code = 0;
    for name in &names {
        let result = store.container(name).map_err(anyhow::Error::from).and_then(|mut c| {
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
            if args.volumes {
                store.remove_container_and_volumes(&c.id)?;
            } else {
                store.remove_container(&c.id)?;
            }
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
    Ok(code)
}
