//! burrow's runtime: turns an OCI runtime spec and a root filesystem into a running,
//! isolated, rootless container.
//!
//! - [`pause`]: the user's user namespace, created once with the subordinate id ranges
//!   ([`idmap`]) and joined by every later call.
//! - [`spec`]: the OCI spec with Podman's defaults.
//! - [`process`]: clone into new namespaces; the child sets up [`mount`]s, pivots, drops
//!   [`capabilities`], loads [`seccomp`], sets [`rlimits`], and execs (or runs the built-in
//!   init).
//! - [`foreground`]: waiting for a container in the foreground, with its terminal.

pub mod bridge;
pub mod capabilities;
pub mod exec;
pub mod foreground;
pub mod idmap;
mod init;
pub mod mount;
pub mod mountns;
pub mod network;
pub mod pause;
pub mod process;
pub mod rlimits;
pub mod seccomp;
pub mod spec;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use process::ChildFailure;

/// A failed step of the container's setup, with the errno behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SetupError {
    pub message: String,
    pub errno: i32,
}

impl SetupError {
    pub fn new(message: String, errno: i32) -> Self {
        SetupError { message, errno }
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("creating a channel to the container: {}", .0.desc())]
    Channel(nix::Error),
    #[error("creating the container's namespaces: {}", .0.desc())]
    Clone(nix::Error),
    #[error(transparent)]
    IdMap(#[from] idmap::IdMapError),
    #[error("{}", .0.message)]
    Child(ChildFailure),
    #[error("terminal: {0}")]
    Terminal(String),
    #[error("{0}")]
    Rootfs(SetupError),
    #[error("waiting for the container: {}", .0.desc())]
    Wait(nix::Error),
    #[error("joining the namespace {path}: {}", .errno.desc())]
    JoinNamespace { path: PathBuf, errno: nix::Error },
}

impl RuntimeError {
    /// The exit code Podman gives for this failure: 126 or 127 when the command could not
    /// be run, 125 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Child(f) => f.exit_code,
            _ => 125,
        }
    }
}
