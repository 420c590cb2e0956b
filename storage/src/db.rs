//! The store's SQLite database: opened in WAL mode so that many burrow processes (CLI
//! calls, monitors) read while one writes, with a versioned schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// Each entry moves the schema one version up; never edit an entry once released.
const MIGRATIONS: &[&str] = &[
    // 1: images, layers, names, containers.
    "CREATE TABLE layers (
        id TEXT PRIMARY KEY,              -- hex sha256 of the uncompressed tar (the diff_id)
        size INTEGER NOT NULL,            -- bytes of the uncompressed tar
        created INTEGER NOT NULL
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY,              -- hex sha256 of the config
        config TEXT NOT NULL,             -- the OCI image configuration, as stored
        created INTEGER NOT NULL
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,        -- 0 is the bottom layer
        layer_id TEXT NOT NULL REFERENCES layers(id),
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_by_layer ON image_layers(layer_id);
    CREATE TABLE image_names (
        name TEXT PRIMARY KEY,            -- fully qualified: localhost/busybox:latest
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX image_names_by_image ON image_names(image_id);
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT REFERENCES images(id),
        created INTEGER NOT NULL,
        state TEXT NOT NULL,              -- created, running, exited
        pid INTEGER,
        exit_code INTEGER CHECK (exit_code BETWEEN -1 AND 255),
        auto_remove INTEGER NOT NULL DEFAULT 0,
        config TEXT NOT NULL              -- JSON: what the container was created with
    );
    CREATE INDEX containers_by_image ON containers(image_id);",
    // 2: the manifest an image came with (or one made for it), for Digest and `save`.
    "ALTER TABLE images ADD COLUMN digest TEXT;   -- sha256:<hex> of manifest
    ALTER TABLE images ADD COLUMN manifest TEXT;  -- JSON, as received or made at load",
    // 3: what detached containers and their monitors need.
    "ALTER TABLE containers ADD COLUMN started INTEGER;              -- unix seconds
    ALTER TABLE containers ADD COLUMN finished INTEGER;
    ALTER TABLE containers ADD COLUMN monitor_pid INTEGER;
    ALTER TABLE containers ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0; -- no restart
    ALTER TABLE containers ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;",
    // 4: `pause` without a cgroup freezer: the processes are stopped, the state stays running.
    "ALTER TABLE containers ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;",
    "-- 5: volumes, and which containers mount them (a volume in use cannot be removed).
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL DEFAULT 'local',
        created INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',    -- JSON object
        options TEXT NOT NULL DEFAULT '{}',   -- JSON object: volume create --opt
        anonymous INTEGER NOT NULL DEFAULT 0, -- an image VOLUME or -v /path: rm -v removes it
        needs_init INTEGER NOT NULL DEFAULT 1 -- never mounted: copy-up pending
    );
    CREATE TABLE container_volumes (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        volume TEXT NOT NULL REFERENCES volumes(name),
        destination TEXT NOT NULL,
        PRIMARY KEY (container_id, destination)
    );
    CREATE INDEX container_volumes_by_volume ON container_volumes(volume);",
    "-- 6: user-defined networks, and the address each attached container has on them.
    CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,              -- 64 hex digits
        driver TEXT NOT NULL DEFAULT 'bridge',
        subnet TEXT NOT NULL,                 -- IPv4 CIDR
        gateway TEXT NOT NULL,
        ip_range TEXT,                        -- CIDR inside subnet: allocate from it only
        internal INTEGER NOT NULL DEFAULT 0,  -- no route out
        labels TEXT NOT NULL DEFAULT '{}',    -- JSON object
        options TEXT NOT NULL DEFAULT '{}',   -- JSON object
        created INTEGER NOT NULL
    );
    CREATE TABLE container_networks (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network TEXT NOT NULL REFERENCES networks(name),
        ip TEXT NOT NULL,
        aliases TEXT NOT NULL DEFAULT '[]',   -- JSON array: --network-alias
        PRIMARY KEY (container_id, network),
        UNIQUE (network, ip)
    );",
    // 7: the digest of the manifest list / index an image was pulled through (RepoDigests).
    "ALTER TABLE images ADD COLUMN index_digest TEXT; -- sha256:<hex>",
];

pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Podman waits up to 100 s for the lock too: a busy store is slow, not an error.
    conn.busy_timeout(Duration::from_secs(100))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode NORMAL is still crash-safe (a commit may be lost on power loss, never
    // corrupted) and saves an fsync per transaction, which is most of a `run`'s DB cost.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every burrow call opens and closes the store. A checkpoint on each close costs two
    // fsyncs per call; without it the WAL must be kept short instead, because the first
    // connection rebuilds its index by reading it whole (2.4 MB took 2.6 ms). Measured on
    // `run --rm`: 64 pages beat both the default 1000 and checkpoint-on-close.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.pragma_update(None, "wal_autocheckpoint", 64)?;
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if version == MIGRATIONS.len() {
        return Ok(());
    }
    if version > MIGRATIONS.len() {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let version = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    let result = (|| {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        Ok::<_, rusqlite::Error>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = open(&path).unwrap();
        let v = conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .unwrap() as usize;
        assert_eq!(v, MIGRATIONS.len());
        drop(conn);
        open(&path).unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            open(&path),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }
}
