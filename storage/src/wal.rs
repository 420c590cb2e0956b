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
        let (busy, frames, copied): (i64, i64, i64) =
            self.conn().query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if busy == 0 && frames > 0 && frames == copied {
            // The log is all copied back, so the next write starts it over, and the header of
            // a restarted log is synced: an fsync (0.7 ms) on the next command's critical path.
            // Start it over now, with a write that changes nothing.
            let version: i64 = self
                .conn()
                .pragma_query_value(None, "user_version", |r| r.get(0))?;
            self.conn().pragma_update(None, "user_version", version)?;
        }
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
        let (_dir, store) = crate::testutil::temp_store();
        assert_eq!(autocheckpoint(&store), AUTOCHECKPOINT_PAGES);
        store.defer_checkpoints().unwrap();
        assert_eq!(autocheckpoint(&store), 0);
        store.checkpoint().unwrap();
        assert_eq!(autocheckpoint(&store), AUTOCHECKPOINT_PAGES);
    }

    /// The WAL header's checkpoint sequence number: it grows each time the log starts over.
    fn log_restarts(dir: &std::path::Path) -> u32 {
        let wal = std::fs::read(dir.join("g/burrow.db-wal")).unwrap();
        u32::from_be_bytes(wal[12..16].try_into().unwrap())
    }

    #[test]
    fn a_complete_checkpoint_starts_the_log_over_at_once() {
        let (dir, store) = crate::testutil::temp_store();
        store.defer_checkpoints().unwrap();
        store
            .conn()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let before = log_restarts(dir.path());
        store.checkpoint().unwrap();
        // Restarted by the checkpoint, not left for the next writer (whose commit would sync).
        assert_eq!(log_restarts(dir.path()), before + 1);
        store.conn().execute_batch("INSERT INTO t VALUES (2);").unwrap();
        assert_eq!(log_restarts(dir.path()), before + 1);
    }
}
