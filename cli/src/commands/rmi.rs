//! `burrow rmi` / `burrow image rm`: untag, then remove images no name holds any more.
//! Exit codes as Podman's: 1 when an image is not known, 2 when one is in use.

use anyhow::{anyhow, Result};
use burrow_storage::{Image, Store, StoreError};

use super::imageutil::{containers_of, matched_name};
use crate::context::Engine;
use crate::exit::ExitError;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Remove all images
    #[arg(short, long)]
    all: bool,
    /// Force removal: also remove the containers using the image
    #[arg(short, long)]
    force: bool,
    /// Ignore errors when a specified image does not exist
    #[arg(short, long)]
    ignore: bool,
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn rmi(args: RmiArgs, global: &GlobalOptions) -> Result<i32> {
    match (args.all, args.images.is_empty()) {
        (true, false) => {
            anyhow::bail!("when using the --all switch, you may not pass any images names or IDs")
        }
        (false, true) => anyhow::bail!("image name or ID must be specified"),
        _ => {}
    }
    let mut engine = Engine::open(global)?;
    let store = &mut engine.store;
    let targets: Vec<String> = if args.all {
        store.images()?.into_iter().map(|i| i.id).collect()
    } else {
        args.images.clone()
    };
    let mut errors: Vec<(i32, String)> = Vec::new();
    for reference in &targets {
        let image = match store.image(reference) {
            Ok(i) => i,
            Err(e @ StoreError::ImageNotKnown(_)) => {
                // Podman's -f passes over a missing image too; Docker's does not.
                let ignored = args.ignore || (args.force && !crate::docker::active());
                if !ignored {
                    errors.push((1, e.to_string()));
                }
                continue;
            }
            Err(e) => {
                errors.push((125, e.to_string()));
                continue;
            }
        };
        if let Err(e) = remove_one(store, &image, reference, args.force) {
            let code = e.downcast_ref::<ExitError>().map_or(125, |x| x.code);
            errors.push((code, crate::exit::message(&e)));
        }
    }
    let Some((_, last)) = errors.last().cloned() else {
        return Ok(0);
    };
    for (_, e) in &errors[..errors.len() - 1] {
        eprintln!("Error: {e}");
    }
    // Podman: in use wins over not known.
    let code = if errors.iter().any(|(c, _)| *c == 2) {
        2
    } else if errors.iter().any(|(c, _)| *c == 1) {
        1
    } else {
        125
    };
    Err(anyhow!(ExitError { code, message: last }))
}

fn remove_one(store: &mut Store, image: &Image, reference: &str, force: bool) -> Result<()> {
    let by_name = matched_name(image, reference);
    if let Some(name) = &by_name {
        if image.names.len() > 1 {
            store.untag_image(&image.id, name)?;
            println!("Untagged: {name}");
            return Ok(());
        }
    } else if image.names.len() > 1 && !force {
        anyhow::bail!(
            "unable to delete image {:?} by ID with more than one tag ([{}]): please force removal",
            image.id,
            image.names.join(" ")
        );
    }
    let users = containers_of(store, &image.id)?;
    if let Some(first) = users.first() {
        if !force {
            return Err(anyhow!(ExitError {
                code: 2,
                message: format!(
                    "image used by {first}: image is in use by a container: consider listing external containers and force-removing image"
                ),
            }));
        }
        for id in &users {
            super::network::remove_container(store, id, false)?;
        }
    }
    match store.remove_image(&image.id) {
        Ok(()) => {}
        // A container was made from it meanwhile.
        Err(StoreError::ImageInUse(_)) => {
            return Err(anyhow!(ExitError {
                code: 2,
                message: format!(
                    "image used by a container: image is in use by a container: consider listing external containers and force-removing image {}",
                    image.id
                ),
            }))
        }
        // Removed meanwhile by another burrow.
        Err(e @ StoreError::ImageNotKnown(_)) => {
            return Err(anyhow!(ExitError {
                code: 1,
                message: e.to_string(),
            }))
        }
        Err(e) => return Err(e.into()),
    }
    for name in &image.names {
        println!("Untagged: {name}");
    }
    println!("Deleted: {}", image.id);
    Ok(())
}
