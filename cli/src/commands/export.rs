//! `burrow export`: a container's filesystem as a tar archive (its image's layers under its
//! own changes, whiteouts applied), to a file (`-o`) or standard output.
//!
//! The kernel does the merge: the layers and the container's upper dir are mounted as one
//! read-only overlay (the upper dir as its top lower layer, so a running container's mount
//! is not disturbed) in a mount namespace of this process's own, and the tree is walked.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use burrow_userns::mount::RootfsSource;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to a specified file (default: stdout, which must be redirected)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The container (name or id)
    container: String,
}

pub fn export(args: ExportArgs, global: &GlobalOptions) -> Result<i32> {
    if args.output.is_none() && io::stdout().is_terminal() {
        bail!("refusing to export to terminal. Use -o flag or redirect");
    }
    let engine = Engine::open(global)?;
    let record = engine.store.container(&args.container)?;
    let launch = crate::launch::load(&engine.store, &record)?;
    let root = match &launch.rootfs {
        RootfsSource::Directory(dir) => dir.clone(),
        RootfsSource::Overlay { lower, upper, .. } => {
            let target = engine
                .store
                .paths
                .run_root
                .join(format!("export-{}", std::process::id()));
            fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            let mounted = mount_merged(lower, upper, &target);
            if mounted.is_err() {
                let _ = fs::remove_dir(&target);
            }
            mounted?;
            target
        }
    };
    let result = match &args.output {
        None => {
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
            burrow_storage::export::tree_tar(&root, &mut out)
                .map_err(anyhow::Error::from)
                .and_then(|()| Ok(out.flush()?))
        }
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
            let written = (|| {
                let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
                burrow_storage::export::tree_tar(&root, &mut out)?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                fs::rename(&tmp, path)?;
                Ok::<_, anyhow::Error>(())
            })()
            .with_context(|| format!("writing {}", path.display()));
            if written.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            written
        }
    };
    if matches!(launch.rootfs, RootfsSource::Overlay { .. }) {
        let _ = umount2(&root, MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&root);
    }
    result?;
    Ok(0)
}

/// Mounts `upper` over `lower` (top first) read-only at `target`, in a new private mount
/// namespace of this process (single-threaded here, as unshare needs).
fn mount_merged(lower: &[PathBuf], upper: &Path, target: &Path) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("creating a mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making the mount namespace private")?;
    let mut layers = vec![upper.display().to_string()];
    layers.extend(lower.iter().map(|p| p.display().to_string()));
    // userxattr: whiteouts and opaque markers live in user.* xattrs inside a user namespace.
    let data = format!("lowerdir={},userxattr", layers.join(":"));
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .with_context(|| format!("mounting the container's filesystem at {}", target.display()))?;
    Ok(())
}
