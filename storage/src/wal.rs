//! When the write-ahead log is copied back into the database. A checkpoint costs two fsyncs,
//! which on a busy disk take tens of milliseconds (100 ms was seen): a command whose latency
//! counts (`run -d`, `start`) defers them to a process that no longer keeps anyone waiting.

use crate::{Store, StoreError};

/// The WAL size (pages) at which a commit checkpoints, as set in `db::open`.
const AUTOCHECKPOINT_PAGES: i64 = 64;

impl Store {
    /// No checkpoint on this connection's commits until [`Store::checkpoint`].
    pub fn defer_checkpoints(&self) -> Result<(), StoreError> {
        self.conn().pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }

    /// Checkpoints what the log holds now (PASSIVE: never waits on other connections) and
    /// lets commits checkpoint again.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        self.conn()
            .pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn autocheckpoint(store: &Store) -> i64 {
        store
            .conn()
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn deferred_then_restored() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::StorePaths {
            graph_root: dir.path().join("graph"),
            run_root: dir.path().join("run"),
        };
        paths.create().unwrap();
        let store = Store::open(paths).unwrap();
        assert_eq!(autocheckpoint(&store), AUTOCHECKPOINT_PAGES);
        store.defer_checkpoints().unwrap();
        assert_eq!(autocheckpoint(&store), 0);
        store.checkpoint().unwrap();
        assert_eq!(autocheckpoint(&store), AUTOCHECKPOINT_PAGES);
    }
}
