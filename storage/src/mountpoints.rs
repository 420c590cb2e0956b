//! The lowest layer of every container's overlay (under its image's): the files and
//! directories the runtime mounts over, so that a start finds its mount points instead of
//! making them in the container's upper layer. Each made there is a copy-up of its directory
//! and a create, 0.1-0.4 ms apiece on an ordinary disk, on the start's critical path. An image
//! that has them hides these: in an overlay the upper layers win.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::{Store, StoreError};

/// (path, is a directory), parents first: what the runtime binds into every container
/// (Podman's and burrow's /etc files, and .containerenv).
const MOUNT_POINTS: [(&str, bool); 6] = [
    ("etc", true),
    ("etc/hosts", false),
    ("etc/hostname", false),
    ("etc/resolv.conf", false),
    ("run", true),
    ("run/.containerenv", false),
];

impl Store {
    /// The mount-point layer's directory, made (whole, or not at all) on first use.
    pub fn mount_points_layer(&self) -> Result<PathBuf, StoreError> {
        let dir = self.paths.graph_root.join("mountpoints");
        if dir.is_dir() {
            return Ok(dir);
        }
        // Made aside and renamed into place: a layer is never seen half-made, and of two
        // processes making it at once, one wins and the other's copy goes.
        let aside = self
            .paths
            .graph_root
            .join(format!("mountpoints.{}.tmp", std::process::id()));
        let _ = fs::remove_dir_all(&aside);
        let made = (|| -> std::io::Result<()> {
            fs::DirBuilder::new().mode(0o755).create(&aside)?;
            for (path, directory) in MOUNT_POINTS {
                let path = aside.join(path);
                if directory {
                    fs::DirBuilder::new().mode(0o755).create(&path)?;
                } else {
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o644)
                        .open(&path)?;
                }
            }
            Ok(())
        })();
        let placed = made.and_then(|()| fs::rename(&aside, &dir));
        if placed.is_err() {
            let _ = fs::remove_dir_all(&aside);
        }
        match placed {
            Ok(()) => Ok(dir),
            Err(_) if dir.is_dir() => Ok(dir),
            Err(e) => Err(StoreError::io("making", &dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_with_every_mount_point() {
        let (dir, store) = crate::testutil::temp_store();
        let layer = store.mount_points_layer().unwrap();
        for (path, directory) in MOUNT_POINTS {
            let meta = fs::metadata(layer.join(path)).unwrap();
            assert_eq!(meta.is_dir(), directory, "{path}");
        }
        assert_eq!(store.mount_points_layer().unwrap(), layer);
        let left: Vec<_> = fs::read_dir(dir.path().join("g"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
