//! `burrow unshare`: run a command inside the user's user namespace, as `podman unshare`,
//! for example to inspect or remove files owned by subordinate ids.

use std::os::unix::process::CommandExt;

use crate::context::Engine;
use crate::exit::ExitError;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct UnshareArgs {
    /// Command to run (default: $SHELL)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn unshare(args: UnshareArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let engine = Engine::open(global)?;
    // Join the namespace that `burrow mount` mounts in, so its mounts are visible here too.
    let _ = burrow_userns::mountns::join(&engine.store.paths.run_root, false);
    let mut argv = args.command;
    if argv.is_empty() {
        argv.push(std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into()));
    }
    let err = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("CONTAINERS_GRAPHROOT", &engine.store.paths.graph_root)
        .env("CONTAINERS_RUNROOT", &engine.store.paths.run_root)
        .exec();
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        std::io::ErrorKind::PermissionDenied => 126,
        _ => 125,
    };
    Err(ExitError {
        code,
        message: format!("{}: {err}", argv[0]),
    }
    .into())
}
