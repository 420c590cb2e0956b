//! File locks that keep layer directories and their database rows in step while many
//! burrow processes work on one store, and the clean-up of what killed ones left.
//!
//! - `layers.lock` (store-wide, `flock`): held while layer directories appear under their
//!   final name or go away, together with the database transaction that records it. So,
//!   while it is held, every `layers/<id>` has a row, and every row an image.
//! - Each staging (`layers/.tmp-*`) and doomed (`layers/.rm-*`) directory is `flock`ed by
//!   the process working in it, from its creation (made under `layers.lock`) on. A
//!   directory whose lock can be taken belongs to a dead process: the kernel drops
//!   `flock`s when a process dies, even by `kill -9`.
//! - A staged layer that passed every check is parked as `layers/.part-<id>-<size>` (still
//!   locked) until its image is recorded. One whose process died (a pull killed with -9) is
//!   complete and verified: the next pull of it claims it instead of fetching it again.
//!   Unclaimed ones are removed after [`PARKED_MAX_AGE`].

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{random_id, Store, StoreError};

pub(crate) const STAGING_PREFIX: &str = ".tmp-";
pub(crate) const DOOMED_PREFIX: &str = ".rm-";
pub(crate) const PARKED_PREFIX: &str = ".part-";
/// How long a parked layer nobody claimed is kept for a later pull.
const PARKED_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A held `flock`; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Flock {
    _file: File,
}

fn flock(file: &File, nonblocking: bool) -> io::Result<()> {
    let op = libc::LOCK_EX | if nonblocking { libc::LOCK_NB } else { 0 };
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Flock {
    /// Waits for an exclusive lock on the file `path` (created if missing).
    pub(crate) fn file(path: &Path) -> Result<Flock, StoreError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io("opening", path, e))?;
        flock(&file, false).map_err(|e| StoreError::io("locking", path, e))?;
        Ok(Flock { _file: file })
    }

    /// An exclusive lock on the directory `path`; `None` if another process holds it.
    pub(crate) fn try_dir(path: &Path) -> Result<Option<Flock>, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
        match flock(&file, true) {
            Ok(()) => Ok(Some(Flock { _file: file })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(StoreError::io("locking", path, e)),
        }
    }
}

/// A directory of `layers/` this process works in (staging or removal), locked.
#[derive(Debug)]
pub(crate) struct WorkDir {
    pub path: PathBuf,
    _lock: Flock,
}

impl WorkDir {
    /// Removes the directory (it stays locked until then).
    pub(crate) fn remove(self) -> Result<(), StoreError> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("removing", &self.path, e)),
        }
    }
}

/// Renames a verified staging directory to `.part-<id>-<size>`, keeping its lock; if that
/// name is taken (another process parked the same layer), it stays where it is.
pub(crate) fn park(layers_dir: &Path, dir: &mut WorkDir, id: &str, size: u64) {
    let parked = layers_dir.join(format!("{PARKED_PREFIX}{id}-{size}"));
    if fs::rename(&dir.path, &parked).is_ok() {
        dir.path = parked;
    }
}

/// A parked layer `id` left by a dead process, locked for us, with its size.
pub(crate) fn claim_parked(layers_dir: &Path, id: &str) -> Result<Option<(WorkDir, u64)>, StoreError> {
    let prefix = format!("{PARKED_PREFIX}{id}-");
    let entries = match fs::read_dir(layers_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("reading", layers_dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(size) = name.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let path = entry.path();
        // Held: its process is alive, still pulling it; else it is ours now.
        if let Ok(Some(lock)) = Flock::try_dir(&path) {
            if path.exists() {
                return Ok(Some((WorkDir { path, _lock: lock }, size)));
            }
        }
    }
    Ok(None)
}

/// The store-wide lock for making and removing layer directories.
pub(crate) fn layers_lock(layers_dir: &Path) -> Result<Flock, StoreError> {
    fs::create_dir_all(layers_dir).map_err(|e| StoreError::io("creating", layers_dir, e))?;
    let graph_root = layers_dir.parent().unwrap_or(layers_dir);
    Flock::file(&graph_root.join("layers.lock"))
}

/// A new, locked, empty staging directory `layers/.tmp-*` (made under the store-wide
/// lock, so the clean-up never sees it unlocked). `held`: the caller holds that lock
/// already (a second `flock` of the same file by this process would wait for itself).
pub(crate) fn staging_dir(layers_dir: &Path, held: bool) -> Result<WorkDir, StoreError> {
    let _guard = if held {
        None
    } else {
        Some(layers_lock(layers_dir)?)
    };
    let path = layers_dir.join(format!("{STAGING_PREFIX}{}", &random_id()[..16]));
    fs::create_dir(&path).map_err(|e| StoreError::io("creating", &path, e))?;
    let lock = Flock::try_dir(&path)?
        .ok_or_else(|| StoreError::io("locking", &path, io::Error::other("locked by another process")))?;
    Ok(WorkDir { path, _lock: lock })
}

/// Renames `dir` (under `layers/`) to a locked `.rm-*` directory, to be removed at
/// leisure; the caller holds the store-wide lock. `None` if `dir` does not exist.
pub(crate) fn doom(layers_dir: &Path, dir: &Path) -> Result<Option<WorkDir>, StoreError> {
    let lock = match File::open(dir) {
        Ok(file) => {
            flock(&file, false).map_err(|e| StoreError::io("locking", dir, e))?;
            Flock { _file: file }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("opening", dir, e)),
    };
    let path = layers_dir.join(format!("{DOOMED_PREFIX}{}", &random_id()[..16]));
    fs::rename(dir, &path).map_err(|e| StoreError::io("removing", dir, e))?;
    Ok(Some(WorkDir { path, _lock: lock }))
}

fn is_layer_id(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Store {
    /// Takes the store-wide layers lock, then removes what dead processes left: staging
    /// and doomed directories nobody holds, layer directories without a row (a load
    /// killed between placing and recording them), and layers no image uses.
    pub(crate) fn lock_layers(&self) -> Result<Flock, StoreError> {
        let layers_dir = self.paths.layers_dir();
        let lock = layers_lock(&layers_dir)?;
        let unused: Vec<String> = {
            let mut stmt = self.conn().prepare_cached(
                "SELECT id FROM layers WHERE NOT EXISTS (SELECT 1 FROM image_layers WHERE layer_id = layers.id)",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if !unused.is_empty() {
            let tx = self.conn().unchecked_transaction()?;
            for id in &unused {
                tx.execute(
                    "DELETE FROM layers WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM image_layers WHERE layer_id = ?1)",
                    [id],
                )?;
            }
            tx.commit()?;
        }
        let known: HashSet<String> = {
            let mut stmt = self.conn().prepare_cached("SELECT id FROM layers")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let entries = match fs::read_dir(&layers_dir) {
            Ok(e) => e,
            Err(e) => return Err(StoreError::io("reading", &layers_dir, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(STAGING_PREFIX) || name.starts_with(DOOMED_PREFIX) {
                if let Ok(Some(held)) = Flock::try_dir(&path) {
                    let _ = (WorkDir { path, _lock: held }).remove();
                }
            } else if name.starts_with(PARKED_PREFIX) {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > PARKED_MAX_AGE);
                if old {
                    if let Ok(Some(held)) = Flock::try_dir(&path) {
                        let _ = (WorkDir { path, _lock: held }).remove();
                    }
                }
            } else if is_layer_id(&name) && !known.contains(&name) {
                if let Ok(Some(doomed)) = doom(&layers_dir, &path) {
                    let _ = doomed.remove();
                }
            }
        }
        Ok(lock)
    }
}
