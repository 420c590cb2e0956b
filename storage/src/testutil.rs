//! What the unit tests of several modules share.

use crate::{Store, StorePaths};

/// A store in a fresh temporary directory (dropped with the directory).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let paths = StorePaths {
        graph_root: dir.path().join("g"),
        run_root: dir.path().join("r"),
    };
    paths.create().unwrap();
    let store = Store::open(paths).unwrap();
    (dir, store)
}
