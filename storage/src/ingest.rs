//! Ingesting layer blobs from a stream (a registry's response, an archive member): each is
//! hashed while it is decompressed and extracted into a staging directory, and checked
//! against its descriptor's digest and size and its diff_id; nothing of a bad blob stays.
//! Staged layers are recorded with their image by [`Store::commit_image`], in one
//! transaction, so an interrupted pull leaves the store as it was (the staging
//! directories of a killed process are removed the next time the layers lock is taken).
//!
//! Durability: the rename of a complete layer directory to its final name (then its row)
//! is the commit point, so a killed process never leaves a half-written layer visible.
//! Layer files are not fsynced, as Podman's containers/storage does not sync them either:
//! a `syncfs` before recording the image made the benchmark pull (bench/pull.sh, fresh
//! ext4) 2.5 s (~40 %) longer. After a power loss right after a pull, a layer may need
//! `rmi` and a new pull, as with Podman.

use std::io::{self, Read};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::images::{insert_image, stage_layer_in, StagedLayer};
use crate::layers::{hex, IdLimits};
use crate::{now, Image, Store, StoreError};

/// What a layer blob must be: its (compressed) digest and size as a manifest gives them,
/// and the digest of its uncompressed tar (the diff_id), all `sha256:<hex>`.
#[derive(Debug, Clone)]
pub struct BlobCheck {
    /// How errors name the blob.
    pub what: String,
    pub digest: Option<String>,
    pub size: Option<u64>,
    pub diff_id: String,
}

/// A layer extracted into the store's staging area and verified, not yet recorded.
/// Dropping it removes it.
pub struct IngestedLayer(StagedLayer);

impl IngestedLayer {
    /// The layer's id (hex diff_id).
    pub fn id(&self) -> &str {
        &self.0.diff_id
    }
}

/// Reads and stages layers of a store; owns only a path, so threads can each have one.
#[derive(Debug, Clone)]
pub struct LayerDir {
    layers_dir: PathBuf,
}

impl LayerDir {
    /// Reads `reader` to its end, extracting the (plain, gzip or zstd) layer tar while
    /// checking it against `check`.
    pub fn stage(
        &self,
        reader: impl Read,
        check: &BlobCheck,
        limits: IdLimits,
    ) -> Result<IngestedLayer, StoreError> {
        let mut staged = stage_checked(&self.layers_dir, reader, check, limits, false)?;
        // Verified: kept for a later pull should this process die before the image is recorded.
        if let Some(dir) = staged.dir.as_mut() {
            crate::lock::park(&self.layers_dir, dir, &staged.diff_id, staged.size);
        }
        Ok(IngestedLayer(staged))
    }

    /// Layer `id` (hex diff_id) as a pull that died after verifying it left it (see
    /// [`crate::lock`]), now staged for this process; `None` if there is none to take.
    pub fn claim_parked(&self, id: &str) -> Result<Option<IngestedLayer>, StoreError> {
        Ok(
            crate::lock::claim_parked(&self.layers_dir, id)?.map(|(dir, size)| {
                IngestedLayer(StagedLayer {
                    dir: Some(dir),
                    diff_id: id.to_string(),
                    size,
                })
            }),
        )
    }

    /// Writes the uncompressed tar of layer `id` (hex diff_id) to `out`, checked
    /// against its diff_id; returns its size.
    pub fn write_tar(&self, id: &str, out: &mut dyn io::Write) -> Result<u64, StoreError> {
        crate::tarsplit::rebuild(&self.layers_dir.join(id), id, out)
    }
}

/// Hashes what passes through it.
pub(crate) struct Hasher<R> {
    pub inner: R,
    pub hasher: Sha256,
    pub size: u64,
}

impl<R: Read> Read for Hasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Extracts one layer blob, checking the compressed digest and size (when known) and
/// the uncompressed digest (the diff_id). `locked`: the caller holds the layers lock.
pub(crate) fn stage_checked(
    layers_dir: &std::path::Path,
    reader: impl Read,
    check: &BlobCheck,
    limits: IdLimits,
    locked: bool,
) -> Result<StagedLayer, StoreError> {
    let what = &check.what;
    let bad = |msg: String| StoreError::BadArchive(msg);
    let mut raw = Hasher {
        inner: reader,
        hasher: Sha256::new(),
        size: 0,
    };
    let staged = stage_layer_in(layers_dir, &mut raw, limits, locked);
    let drained = io::copy(&mut raw, &mut io::sink());
    let mismatch = |got: String, expected: &String| StoreError::DigestMismatch {
        what: what.clone(),
        expected: expected.clone(),
        got,
    };
    let layer = match (staged, drained) {
        (Ok(layer), Ok(_)) => layer,
        (_, Err(e)) => return Err(bad(format!("{what}: {e}"))),
        (Err(e), Ok(_)) => {
            // A corrupt blob often fails to decompress before its digest can be
            // checked: when the digest is wrong too, that is the cause to report.
            if let Some(digest) = &check.digest {
                let got = format!("sha256:{}", hex(&raw.hasher.finalize()));
                if &got != digest {
                    return Err(mismatch(got, digest));
                }
            }
            return Err(bad(format!("{what}: {e}")));
        }
    };
    if let Some(digest) = &check.digest {
        let got = format!("sha256:{}", hex(&raw.hasher.finalize()));
        if &got != digest {
            return Err(mismatch(got, digest));
        }
    }
    if check.size.is_some_and(|s| s != raw.size) {
        return Err(bad(format!(
            "{what}: size {} does not match its descriptor",
            raw.size
        )));
    }
    let got = format!("sha256:{}", layer.diff_id);
    if got != check.diff_id {
        return Err(StoreError::DigestMismatch {
            what: format!("{what} (uncompressed)"),
            expected: check.diff_id.clone(),
            got,
        });
    }
    Ok(layer)
}

impl Store {
    /// Access to this store's layer files from other threads: staging for
    /// [`Store::commit_image`], and reading layers back.
    pub fn layer_dir_handle(&self) -> LayerDir {
        LayerDir {
            layers_dir: self.paths.layers_dir(),
        }
    }

    /// Records an image of `diff_ids` (bottom first, `sha256:<hex>`) with `config`, named
    /// `names`, with its manifest `(digest, json)`: the `staged` layers are placed, the
    /// others must be in the store (else [`StoreError::LayerGone`]: fetch them and retry).
    /// One transaction; on failure the placed layers are taken back out.
    pub fn commit_image(
        &mut self,
        staged: Vec<IngestedLayer>,
        diff_ids: &[String],
        config: &str,
        names: &[String],
        manifest: (&str, &str),
    ) -> Result<Image, StoreError> {
        let lock = self.lock_layers()?;
        let layers: Vec<String> = diff_ids
            .iter()
            .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_string())
            .collect();
        for layer in &layers {
            if !staged.iter().any(|s| s.id() == layer) && !self.has_layer(layer)? {
                return Err(StoreError::LayerGone(layer.clone()));
            }
        }
        let mut sizes = Vec::new();
        let mut placed = Vec::new();
        let mut result = Ok(());
        for IngestedLayer(layer) in staged {
            let id = layer.diff_id.clone();
            sizes.push((id.clone(), layer.size));
            if result.is_ok() {
                match self.place_layer(layer) {
                    Ok(true) => placed.push(id),
                    Ok(false) => {}
                    Err(e) => result = Err(e),
                }
            }
        }
        let result = result.and_then(|()| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (id, size) in &sizes {
                tx.execute(
                    "INSERT OR IGNORE INTO layers (id, size, created) VALUES (?1, ?2, ?3)",
                    rusqlite::params![id, *size as i64, now()],
                )?;
            }
            let id = insert_image(&tx, &layers, config, names, Some(manifest))?;
            tx.commit()?;
            Ok(id)
        });
        if result.is_err() {
            for id in &placed {
                self.unplace_layer(id);
            }
        }
        drop(lock);
        let id = result?;
        self.image_by_id(&id)?
            .ok_or_else(|| StoreError::ImageNotKnown(id))
    }
}
