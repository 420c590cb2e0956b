//! `burrow image SUBCOMMAND`: the image commands under one noun (Podman's `podman image`),
//! plus `exists` and `prune`, which live only here.

use anyhow::Result;

use super::ctrutil;
use super::imageutil::containers_of;
use super::{history, images, import, inspect, load, pull, push, rmi, save, tag};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum ImageCommand {
    /// Check if an image exists in local storage
    Exists {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// Show history of a specified image
    History(history::HistoryArgs),
    /// Import a tarball to create a filesystem image
    Import(import::ImportArgs),
    /// Display the configuration of an image
    Inspect(inspect::InspectArgs),
    /// List images in local storage
    #[command(visible_alias = "ls")]
    List(images::ImagesArgs),
    /// Load image(s) from a tar archive
    Load(load::LoadArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Remove one or more images from local storage
    Rm(rmi::RmiArgs),
    /// Save image(s) to an archive
    Save(save::SaveArgs),
    /// Add an additional name to a local image
    Tag(tag::TagArgs),
    /// Remove a name from a local image
    Untag(tag::UntagArgs),
    /// Pull an image from a registry
    Pull(pull::PullArgs),
    /// Push an image to a specified destination
    Push(push::PushArgs),
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all images not in use by containers, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn image(cmd: ImageCommand, global: &GlobalOptions) -> Result<i32> {
    match cmd {
        ImageCommand::Exists { image } => exists(&image, global),
        ImageCommand::History(a) => history::history(a, global),
        ImageCommand::Import(a) => import::import(a, global),
        ImageCommand::Inspect(a) => inspect::inspect(a, global, false),
        ImageCommand::List(a) => images::images(a, global),
        ImageCommand::Load(a) => load::load(a, global),
        ImageCommand::Prune(a) => prune(a, global),
        ImageCommand::Rm(a) => rmi::rmi(a, global),
        ImageCommand::Save(a) => save::save(a, global),
        ImageCommand::Tag(a) => tag::tag(a, global),
        ImageCommand::Untag(a) => tag::untag(a, global),
        ImageCommand::Pull(a) => pull::pull_cmd(a, global),
        ImageCommand::Push(a) => push::push_cmd(a, global),
    }
}

fn exists(reference: &str, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    match engine.store.image(reference) {
        Ok(_) => Ok(0),
        Err(burrow_storage::StoreError::ImageNotKnown(_)) => Ok(1),
        Err(e) => Err(e.into()),
    }
}

fn prune(args: PruneArgs, global: &GlobalOptions) -> Result<i32> {
    if !args.force {
        let what = if args.all {
            "all images without at least one container associated with them"
        } else {
            "all dangling images"
        };
        let prompt = format!("WARNING! This command removes {what}.\n{}", ctrutil::ARE_YOU_SURE);
        if !ctrutil::confirm(&prompt)? {
            return Ok(0);
        }
    }
    let mut engine = Engine::open(global)?;
    let store = &mut engine.store;
    let mut removed = Vec::new();
    for image in store.images()? {
        if (!args.all && !image.names.is_empty()) || !containers_of(store, &image.id)?.is_empty() {
            continue;
        }
        store.remove_image(&image.id)?;
        removed.push(image.id);
    }
    for id in removed {
        println!("{id}");
    }
    Ok(0)
}
