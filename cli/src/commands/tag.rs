//! `burrow tag` and `burrow untag`: add or remove names of an image.

use anyhow::Result;
use burrow_storage::normalize_name;

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    #[arg(value_name = "IMAGE")]
    image: String,
    /// New names for the image
    #[arg(required = true, value_name = "TARGET_NAME")]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UntagArgs {
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Names to remove (default: all of the image's names)
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

pub fn tag(args: TagArgs, global: &GlobalOptions) -> Result<i32> {
    let names = args
        .names
        .iter()
        .map(|n| normalize_name(n).map_err(|e| anyhow::anyhow!("normalizing name {n:?}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let engine = Engine::open(global)?;
    let image = engine.store.image(&args.image)?;
    for name in names {
        engine.store.tag_image(&image.id, &name)?;
    }
    Ok(0)
}

pub fn untag(args: UntagArgs, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let image = engine.store.image(&args.image)?;
    let names = if args.names.is_empty() {
        image.names.clone()
    } else {
        args.names
            .iter()
            .map(|n| match super::imageutil::matched_name(&image, n) {
                Some(name) => Ok(name),
                None => normalize_name(n).map_err(|e| anyhow::anyhow!("normalizing name {n:?}: {e}")),
            })
            .collect::<Result<Vec<_>>>()?
    };
    for name in names {
        if !engine.store.untag_image(&image.id, &name)? {
            anyhow::bail!("{name}: tag not known");
        }
    }
    Ok(0)
}
