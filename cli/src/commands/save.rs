//! `burrow save`: images to a docker archive, an OCI archive or an OCI layout directory.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};
use burrow_storage::{normalize_name, ArchiveFormat};

use super::imageutil::matched_name;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Write to a specified file (default: stdout, which must be redirected)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Save image to docker-archive, oci-archive (see containers-transports(5)) or oci-dir
    #[arg(long, default_value = "docker-archive", value_name = "FORMAT")]
    format: String,
    /// Interpret additional arguments as images not tags and create a multi-image-archive (only for docker-archive)
    #[arg(short, long = "multi-image-archive")]
    multi_image_archive: bool,
    /// Suppress the output
    #[arg(short, long)]
    quiet: bool,
    /// Compress tarball image layers when saving to a directory (accepted; layers are written uncompressed)
    #[arg(long)]
    compress: bool,
    /// Images to save (without -m: one image, then more names to record for it)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn save(args: SaveArgs, global: &GlobalOptions) -> Result<i32> {
    let format = match args.format.as_str() {
        "docker-archive" => ArchiveFormat::DockerArchive,
        "oci-archive" => ArchiveFormat::OciArchive,
        "oci-dir" => ArchiveFormat::OciDir,
        "docker-dir" => {
            bail!("unsupported format \"docker-dir\": burrow writes docker-archive, oci-archive and oci-dir")
        }
        other => bail!("unknown format option {other:?}"),
    };
    if args.multi_image_archive && format != ArchiveFormat::DockerArchive {
        bail!(
            "unsupported format {:?} for saving multiple images (only docker-archive)",
            args.format
        );
    }
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to save to terminal. Use -o flag or redirect");
    }
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let mut images = Vec::new();
    if args.multi_image_archive {
        for reference in &args.images {
            let image = store.image(reference)?;
            let names = matched_name(&image, reference).into_iter().collect();
            images.push((image, names));
        }
    } else {
        let image = store.image(&args.images[0])?;
        let mut names: Vec<String> = matched_name(&image, &args.images[0]).into_iter().collect();
        for extra in &args.images[1..] {
            names.push(normalize_name(extra)?);
        }
        images.push((image, names));
    }
    let _ = (args.quiet, args.compress);
    store.save(&images, format, args.output.as_deref())?;
    Ok(0)
}
