//! `burrow push IMAGE [DESTINATION]`: a local image to a registry.

use anyhow::{bail, Result};
use burrow_registry::conf::RegistriesConf;
use burrow_registry::push::{push, Format, LayerCompression, PushOptions};
use burrow_registry::{Progress, Reference};

use super::pull::RegistryFlags;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Image to push
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to push it (`[docker://]REGISTRY/REPOSITORY[:TAG]`); default: IMAGE's name
    #[arg(value_name = "DESTINATION")]
    destination: Option<String>,
    /// Manifest type (oci or v2s2) to use in the destination
    #[arg(short, long, value_name = "FORMAT", default_value = "oci")]
    format: String,
    /// Compression format to use (gzip or zstd)
    #[arg(long = "compression-format", value_name = "FORMAT", default_value = "gzip")]
    compression_format: String,
    /// Suppress output information when pushing images
    #[arg(short, long)]
    quiet: bool,
    /// Write the digest of the pushed image to the specified file
    #[arg(long, value_name = "PATH")]
    digestfile: Option<std::path::PathBuf>,
    #[command(flatten)]
    registry: RegistryFlags,
}

pub fn push_cmd(args: PushArgs, global: &GlobalOptions) -> Result<i32> {
    let format = match args.format.as_str() {
        "oci" => Format::Oci,
        "v2s2" | "docker" => Format::V2s2,
        other => bail!("unsupported manifest type {other:?}: use oci or v2s2"),
    };
    let compression = match args.compression_format.as_str() {
        "gzip" => LayerCompression::Gzip,
        "zstd" => LayerCompression::Zstd,
        other => bail!("unsupported compression format {other:?}: use gzip or zstd"),
    };
    let opts = PushOptions {
        client: args.registry.client_options()?,
        format,
        compression,
    };
    let conf = RegistriesConf::load()?;
    let engine = Engine::open(global)?;
    let image = engine.store.image(&args.image)?;
    let dest_name = match &args.destination {
        Some(d) => d.strip_prefix("docker://").unwrap_or(d).to_string(),
        // A short name or id: push under the name the image has.
        None if !burrow_registry::reference::is_qualified(&args.image) => image
            .names
            .iter()
            .find(|n| burrow_registry::reference::is_qualified(n))
            .cloned()
            .unwrap_or_else(|| args.image.clone()),
        None => args.image.clone(),
    };
    let dest = Reference::parse(&dest_name).map_err(|_| {
        anyhow::anyhow!("{dest_name}: a destination must name a registry (REGISTRY/REPOSITORY[:TAG])")
    })?;
    if dest.digest.is_some() && dest.tag.is_none() {
        bail!("{dest_name}: cannot push to a digest; give a tag");
    }
    let progress = Progress::new(args.quiet);
    let digest = push(&engine.store, &conf, &image, &dest, &opts, &progress)?;
    if let Some(p) = &args.digestfile {
        std::fs::write(p, &digest).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    Ok(0)
}
