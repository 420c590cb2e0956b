//! burrow's store: content-addressed layers and images, and containers' state, under the
//! user's home, with metadata in SQLite.
//!
//! Every function that writes layer or container files expects to run inside the user's
//! user namespace (files owned by subordinate ids are created and removed there).

mod archive;
mod containers;
mod db;
pub mod events;
pub mod export;
mod image_ops;
mod images;
mod ingest;
pub mod layers;
mod lock;
mod mountpoints;
mod names;
mod networks;
mod paths;
mod tarscan;
pub mod tarsplit;
#[cfg(test)]
mod testutil;
mod volumes;
mod wal;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use archive::{ArchiveFormat, LoadedImage};
pub use containers::{process_alive, ContainerDirs, ContainerRecord, ContainerState, NewContainer};
pub use images::{normalize_name, Image};
pub use ingest::{BlobCheck, IngestedLayer, LayerDir};
pub use layers::IdLimits;
pub use networks::{Attachment, NetworkRecord, NewNetwork, Subnet, RESERVED_NETWORK_NAMES};
pub use paths::{PathNotice, StorageConf, StorePaths};
pub use volumes::{valid_volume_name, NewVolume, VolumeRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot find the home directory: set HOME")]
    NoHome,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} exists but is not a directory owned by you: refusing to use it")]
    NotOurs(PathBuf),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the store's database has schema version {found}, newer than this burrow knows ({known}): upgrade burrow")]
    SchemaTooNew { found: usize, known: usize },
    #[error("invalid layer: {0}")]
    BadLayer(String),
    #[error(
        "{} is owned by {uid}:{gid}, which is not mapped in burrow's user namespace: \
         add a subordinate id range for your user to /etc/subuid and /etc/subgid \
         (then run `burrow system migrate`)",
        path.display()
    )]
    UnmappedOwner { path: PathBuf, uid: u64, gid: u64 },
    #[error("{0}: image not known")]
    ImageNotKnown(String),
    #[error("image used by a container: image is in use by a container: {0}")]
    ImageInUse(String),
    #[error("invalid reference format: {0:?}")]
    BadReference(String),
    #[error("no container with name or ID {0:?} found: no such container")]
    NoSuchContainer(String),
    /// An id prefix that more than one container's id starts with (Podman 4.3's words).
    #[error("more than one result for container ID {0}: container already exists")]
    AmbiguousContainer(String),
    #[error(
        "the container name {name:?} is already in use by {id}. You have to remove that container to be able to reuse that name: that name is already in use"
    )]
    NameInUse { name: String, id: String },
    #[error("{0}")]
    Settings(String),
    #[error("invalid image configuration: {0}")]
    BadConfig(String),
    #[error("invalid image archive: {0}")]
    BadArchive(String),
    #[error("layer {0} left the store meanwhile (its image was removed)")]
    LayerGone(String),
    #[error("{what}: digest mismatch: expected {expected}, got {got}")]
    DigestMismatch {
        what: String,
        expected: String,
        got: String,
    },
    #[error("no volume with name {0:?} found: no such volume")]
    NoSuchVolume(String),
    #[error("volume with name {0} already exists: volume already exists")]
    VolumeExists(String),
    #[error("invalid volume name {0:?}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadVolumeName(String),
    #[error("volume {name} is being used by the following container(s): {}: volume is being used", containers.join(", "))]
    VolumeInUse { name: String, containers: Vec<String> },
    #[error("unable to find network with name or ID {0}: network not found")]
    NoSuchNetwork(String),
    #[error("network name {0} already used: network already exists")]
    NetworkExists(String),
    #[error("cannot create network with name {0:?} because it conflicts with a valid network mode")]
    NetworkNameReserved(String),
    #[error("network name {0} invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument")]
    BadNetworkName(String),
    #[error("{0}")]
    BadSubnet(String),
    #[error("{0}")]
    BadAddress(String),
    #[error("{name:?} has associated containers with it. Use -f to forcibly delete containers and pods: network is being used")]
    NetworkInUse { name: String, containers: Vec<String> },
}

impl StoreError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A user's store: paths plus an open database.
pub struct Store {
    pub paths: StorePaths,
    conn: Connection,
}

impl Store {
    /// Opens (creating on first use) the store at `paths`; the directories must exist.
    pub fn open(paths: StorePaths) -> Result<Store, StoreError> {
        let conn = db::open(&paths.database())?;
        Ok(Store { paths, conn })
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// 64 random hex digits, as container ids are.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the kernel's random source is available");
    layers::hex(&bytes)
}
