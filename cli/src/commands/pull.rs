//! `burrow pull` and the implicit pull of `run`/`create` (`--pull=missing|always|never|newer`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use burrow_registry::auth::Credentials;
use burrow_registry::conf::RegistriesConf;
use burrow_registry::pull::{pull, PullOptions};
use burrow_registry::{ClientOptions, Progress};
use burrow_storage::{Image, Store, StoreError};

use crate::context::Engine;
use crate::GlobalOptions;

// Flags shared by every command that talks to a registry. (Not a doc comment: clap would
// take it for the about of the commands that flatten it.)
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryFlags {
    /// Require HTTPS and verify certificates when contacting registries
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: Option<bool>,
    /// Path of the authentication file
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
    /// Use certificates at the specified path to access the registry
    #[arg(long = "cert-dir", value_name = "PATH")]
    pub cert_dir: Option<PathBuf>,
    /// Credentials (USERNAME:PASSWORD) to use for authenticating to a registry
    #[arg(long, value_name = "[USERNAME[:PASSWORD]]")]
    pub creds: Option<String>,
}

impl RegistryFlags {
    pub fn client_options(&self) -> Result<ClientOptions> {
        if let Some(p) = &self.authfile {
            if !p.exists() {
                bail!(
                    "credential file is not accessible: stat {}: no such file or directory",
                    p.display()
                );
            }
        }
        Ok(ClientOptions {
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
            creds: self.creds.as_deref().map(Credentials::from_flag).transpose()?,
            authfile: self.authfile.clone(),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Image to pull
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
    /// Pull all tagged images in the repository
    #[arg(short, long = "all-tags")]
    all_tags: bool,
    /// Suppress output information when pulling images
    #[arg(short, long)]
    quiet: bool,
    /// Specify the platform for selecting the image (OS/ARCH[/VARIANT])
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Override the architecture of the image to pull
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// Override the OS of the image to pull
    #[arg(long, value_name = "OS")]
    os: Option<String>,
    /// Override the variant of the image to pull
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    /// Pull image policy: always, missing, never, newer
    #[arg(long, value_name = "POLICY", default_value = "always")]
    policy: String,
    #[command(flatten)]
    registry: RegistryFlags,
}

fn platform(
    platform: Option<&str>,
    os: Option<&str>,
    arch: Option<&str>,
    variant: Option<&str>,
) -> Result<Option<burrow_registry::pull::Platform>> {
    if platform.is_some() && (os.is_some() || arch.is_some() || variant.is_some()) {
        bail!("--platform option can not be specified with --arch or --os or --variant");
    }
    if let Some(p) = platform {
        return Ok(Some(burrow_registry::pull::Platform::parse(p)?));
    }
    if os.is_none() && arch.is_none() && variant.is_none() {
        return Ok(None);
    }
    let host = burrow_registry::pull::Platform::host();
    Ok(Some(burrow_registry::pull::Platform {
        os: os.map_or(host.os, str::to_string),
        arch: arch.map_or(host.arch, str::to_string),
        variant: variant.map(str::to_string),
    }))
}

pub fn pull_cmd(args: PullArgs, global: &GlobalOptions) -> Result<i32> {
    let client = args.registry.client_options()?;
    let platform = platform(
        args.platform.as_deref(),
        args.os.as_deref(),
        args.arch.as_deref(),
        args.variant.as_deref(),
    )?;
    let conf = RegistriesConf::load()?;
    let mut engine = Engine::open(global)?;
    let opts = PullOptions {
        client,
        platform,
        all_tags: args.all_tags,
        limits: engine.id_limits(),
        newer_than: None,
    };
    let progress = Progress::new(args.quiet);
    check_policy(&args.policy)?;
    for name in &args.images {
        let local = engine.store.image(name);
        let missing = matches!(local, Err(StoreError::ImageNotKnown(_)));
        match (args.policy.as_str(), local) {
            ("missing", Ok(image)) => println!("{}", image.id),
            ("never", local) => println!("{}", local?.id),
            (policy, local) => {
                let opts = PullOptions {
                    newer_than: if policy == "newer" && !missing {
                        local.ok().map(|l| newer_than(&l))
                    } else {
                        None
                    },
                    ..opts.clone()
                };
                for image in pull(&mut engine.store, &conf, name, &opts, &progress)? {
                    println!("{}", image.id);
                }
            }
        }
    }
    Ok(0)
}

fn check_policy(policy: &str) -> Result<()> {
    match policy {
        "always" | "missing" | "never" | "newer" => Ok(()),
        other => bail!("invalid pull policy {other:?}: valid policies are always, missing, never, newer"),
    }
}

/// What `--pull=newer` compares the registry's digest with: the local image's digests.
fn newer_than(local: &Image) -> (String, Vec<String>) {
    let digests = local.index_digest.iter().chain(&local.digest).cloned().collect();
    (local.id.clone(), digests)
}

/// `auto-update`'s registry policy: pulls `reference` (quietly, with the registries.conf and
/// auth.json settings) and returns the id of the image it now names.
pub fn pull_for_update(engine: &Engine, reference: &str) -> Result<String> {
    let conf = RegistriesConf::load()?;
    let mut store = Store::open(engine.store.paths.clone())?;
    let opts = PullOptions {
        client: RegistryFlags::default().client_options()?,
        platform: platform(None, None, None, None)?,
        all_tags: false,
        limits: engine.id_limits(),
        newer_than: None,
    };
    let mut images = pull(&mut store, &conf, reference, &opts, &Progress::new(true))?;
    Ok(images.remove(0).id)
}

// `--pull` and the registry flags of `run` and `create` (not a doc comment: see above).
#[derive(Debug, Clone, clap::Args)]
pub struct RunPullArgs {
    /// Pull image policy: missing, always, never, newer
    #[arg(long = "pull", value_name = "POLICY", default_value = "missing", num_args = 0..=1, default_missing_value = "always")]
    pub policy: String,
    /// Suppress output information when pulling images
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Specify the platform for selecting the image (OS/ARCH[/VARIANT])
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// The image `run`/`create` use: the local one, pulled first as `--pull` says.
pub fn image_for_run(engine: &Engine, name: &str, args: &RunPullArgs) -> Result<Image> {
    let local = engine.store.image(name);
    let missing = matches!(local, Err(StoreError::ImageNotKnown(_)));
    check_policy(&args.policy)?;
    let pull_it = match args.policy.as_str() {
        "missing" => missing,
        "never" => false,
        _ => true,
    };
    // A name given by id can only be local.
    let by_id = name.len() >= 12
        && name
            .trim_start_matches("sha256:")
            .bytes()
            .all(|b| b.is_ascii_hexdigit());
    if !pull_it || (by_id && missing) {
        return Ok(local?);
    }
    let conf = RegistriesConf::load()?;
    // A store handle of our own: the engine's is shared and read-only here.
    let mut store = Store::open(engine.store.paths.clone())?;
    let opts = PullOptions {
        client: args.registry.client_options()?,
        platform: platform(args.platform.as_deref(), None, None, None)?,
        all_tags: false,
        limits: engine.id_limits(),
        newer_than: match (&local, args.policy.as_str()) {
            (Ok(l), "newer") => Some(newer_than(l)),
            _ => None,
        },
    };
    let progress = Progress::new(args.quiet);
    match pull(&mut store, &conf, name, &opts, &progress) {
        Ok(mut images) => Ok(images.remove(0)),
        Err(e) if args.policy == "newer" && !missing => {
            eprintln!("WARN: checking for a newer {name}: {e}; using the local image");
            Ok(local?)
        }
        Err(e) => Err(e.into()),
    }
}
