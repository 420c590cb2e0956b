//! `burrow rename`: give a container a new name.

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    /// The container (name or id)
    container: String,
    /// Its new name
    name: String,
}

/// Podman's rule for container names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub fn rename(args: RenameArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    if !valid_name(&args.name) {
        anyhow::bail!("names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument");
    }
    let engine = Engine::open(global)?;
    let c = engine.store.container(&args.container)?;
    engine
        .store
        .rename_container(&c.id, &args.name)
        .map_err(|e| anyhow::anyhow!("renaming container {}: {e}", c.id))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_as_podman_allows() {
        for ok in ["web", "a.b-c_d", "9lives"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", "_x", "a b", "a/b"] {
            assert!(!super::valid_name(bad), "{bad}");
        }
    }
}
