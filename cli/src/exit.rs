//! Exit codes, as Podman's: the container's own, 125 when burrow fails, 126 when the
//! command cannot be invoked, 127 when it is not found.

use std::fmt;

/// An error that carries the exit code burrow must end with.
#[derive(Debug)]
pub struct ExitError {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

impl From<burrow_userns::RuntimeError> for ExitError {
    fn from(e: burrow_userns::RuntimeError) -> Self {
        ExitError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// The one-line message for an error: its context chain, outermost first.
pub fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        // Errors that already show their source (ours do) would repeat it.
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}
