//! `burrow load`: images from a docker or OCI archive (or OCI layout directory).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Load image from specified file (or OCI layout directory) instead of standard input
    #[arg(short, long, value_name = "PATH")]
    input: Option<PathBuf>,
    /// Suppress the output
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(args: LoadArgs, global: &GlobalOptions) -> Result<i32> {
    if args.input.is_none() && std::io::stdin().is_terminal() {
        bail!("cannot read from terminal, use command-line redirection or the --input flag");
    }
    if let Some(p) = &args.input {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
    }
    let mut engine = Engine::open(global)?;
    let limits = engine.id_limits();
    let loaded = engine.store.load(args.input.as_deref(), limits)?;
    // Podman prints this even with -q (which only silences progress).
    let _ = args.quiet;
    for image in loaded {
        if image.names.is_empty() {
            println!("Loaded image: sha256:{}", image.id);
        }
        for name in image.names {
            println!("Loaded image: {name}");
        }
    }
    Ok(0)
}
