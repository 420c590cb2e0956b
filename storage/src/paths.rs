//! Where a user's store lives: the graph root (images, layers, containers' files and the
//! database) under the XDG data dir, and the run root (bundles, pause process) under
//! `$XDG_RUNTIME_DIR`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePaths {
    /// `~/.local/share/burrow/storage` by default.
    pub graph_root: PathBuf,
    /// `$XDG_RUNTIME_DIR/burrow` by default.
    pub run_root: PathBuf,
}

/// A notice for the user about how the paths were chosen (shown once per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathNotice {
    RuntimeDirFallback { used: PathBuf },
}

impl StorePaths {
    /// The default paths for the user with host uid `uid` (0: root, the system store), from
    /// the environment.
    pub fn for_user(
        uid: u32,
        graph_root: Option<PathBuf>,
        run_root: Option<PathBuf>,
    ) -> Result<(StorePaths, Option<PathNotice>), StoreError> {
        let graph_root = match graph_root {
            Some(p) => p,
            None if uid == 0 => PathBuf::from("/var/lib/burrow/storage"),
            None => directories::BaseDirs::new()
                .ok_or(StoreError::NoHome)?
                .data_dir()
                .join("burrow/storage"),
        };
        let mut notice = None;
        let run_root = match run_root {
            Some(p) => p,
            None if uid == 0 => PathBuf::from("/run/burrow"),
            None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir).join("burrow"),
                None => {
                    // After `su` or under cron there is no XDG_RUNTIME_DIR: use the user's
                    // /run/user dir if it is really theirs, else a private dir in /tmp.
                    let run_user = PathBuf::from(format!("/run/user/{uid}"));
                    let base = if owned_private_dir(&run_user, uid) {
                        run_user
                    } else {
                        std::env::temp_dir().join(format!("burrow-run-{uid}"))
                    };
                    let used = base.join("burrow");
                    notice = Some(PathNotice::RuntimeDirFallback { used: used.clone() });
                    used
                }
            },
        };
        Ok((StorePaths { graph_root, run_root }, notice))
    }

    /// Creates both roots, private to the user (0700), refusing a directory that someone
    /// else owns (CVE-class: pre-created /tmp directories hijacking another user's state).
    pub fn create(&self) -> Result<(), StoreError> {
        let uid = nix::unistd::geteuid().as_raw();
        for dir in [&self.graph_root, &self.run_root] {
            if let Some(parent) = dir.parent() {
                if parent.starts_with(std::env::temp_dir()) {
                    create_private(parent, uid)?;
                } else {
                    fs::create_dir_all(parent).map_err(|e| StoreError::io("creating", parent, e))?;
                }
            }
            create_private(dir, uid)?;
        }
        Ok(())
    }

    pub fn database(&self) -> PathBuf {
        self.graph_root.join("burrow.db")
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.graph_root.join("layers")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.graph_root.join("containers").join(id)
    }

    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.run_root.join("containers").join(id)
    }

    /// Cache of things derived from the store (compiled seccomp filters, ...).
    pub fn cache_dir(&self) -> PathBuf {
        self.graph_root.join("cache")
    }
}

fn owned_private_dir(dir: &Path, uid: u32) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

fn create_private(dir: &Path, uid: u32) -> Result<(), StoreError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError::io("creating", dir, e))?;
            return Ok(());
        }
        Err(e) => return Err(StoreError::io("creating", dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| StoreError::io("checking", dir, e))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(StoreError::NotOurs(dir.to_path_buf()));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io("securing", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_dirs_and_tightens_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = StorePaths {
            graph_root: tmp.path().join("a/b/storage"),
            run_root: tmp.path().join("run/burrow"),
        };
        paths.create().unwrap();
        for dir in [&paths.graph_root, &paths.run_root] {
            assert_eq!(fs::metadata(dir).unwrap().mode() & 0o777, 0o700);
        }
        fs::set_permissions(&paths.graph_root, fs::Permissions::from_mode(0o755)).unwrap();
        paths.create().unwrap();
        assert_eq!(fs::metadata(&paths.graph_root).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn refuses_a_symlink_in_place_of_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("link")).unwrap();
        let paths = StorePaths {
            graph_root: tmp.path().join("link"),
            run_root: tmp.path().join("run"),
        };
        assert!(matches!(paths.create(), Err(StoreError::NotOurs(_))));
    }
}
