//! Image bookkeeping beyond creation: listing, names, removal.

use std::collections::HashMap;

use oci_spec::image::ImageConfiguration;
use rusqlite::{params, OptionalExtension};

use crate::{lock, Image, Store, StoreError};

impl Store {
    /// Every image, with names and layers, in no particular order. Three queries in all,
    /// so that listing many images stays fast.
    pub fn images(&self) -> Result<Vec<Image>, StoreError> {
        // One read transaction: a consistent snapshot while other processes write.
        let _snapshot = self.conn().unchecked_transaction()?;
        let mut names: HashMap<String, Vec<String>> = HashMap::new();
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT image_id, name FROM image_names ORDER BY rowid")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (id, name) = row?;
            names.entry(id).or_default().push(name);
        }
        let mut layers: HashMap<String, Vec<String>> = HashMap::new();
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT image_id, layer_id FROM image_layers ORDER BY image_id, position")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (id, layer) = row?;
            layers.entry(id).or_default().push(layer);
        }
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT id, config, created, digest, index_digest FROM images")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, config_json, created, digest, index_digest) = row?;
            let config = ImageConfiguration::from_reader(config_json.as_bytes())
                .map_err(|e| StoreError::BadConfig(format!("image {id}: {e}")))?;
            out.push(Image {
                names: names.remove(&id).unwrap_or_default(),
                layers: layers.remove(&id).unwrap_or_default(),
                id,
                config,
                config_json,
                digest,
                index_digest,
                created,
            });
        }
        Ok(out)
    }

    /// The size in bytes of every layer's uncompressed tar.
    pub fn layer_sizes(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut stmt = self.conn().prepare_cached("SELECT id, size FROM layers")?;
        let sizes = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        Ok(sizes)
    }

    /// Whether a layer is in the store (its row is written only once its files are).
    pub fn has_layer(&self, id: &str) -> Result<bool, StoreError> {
        let found = self
            .conn()
            .query_row("SELECT 1 FROM layers WHERE id = ?1", [id], |_| Ok(()))
            .optional()?;
        Ok(found.is_some() && self.layer_dir(id).exists())
    }

    /// The manifest stored with an image, as JSON.
    pub fn image_manifest(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT manifest FROM images WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Records the digest of the manifest list image `id` was pulled through (or none).
    pub fn set_index_digest(&self, id: &str, digest: Option<&str>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE images SET index_digest = ?2 WHERE id = ?1",
            params![id, digest],
        )?;
        Ok(())
    }

    /// Gives image `id` the (normalized) `name`, taking it from any other image.
    pub fn tag_image(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let tx = self.conn().unchecked_transaction()?;
        tx.execute("DELETE FROM image_names WHERE name = ?1", [name])?;
        tx.execute(
            "INSERT INTO image_names (name, image_id) VALUES (?1, ?2)",
            params![name, id],
        )
        .map_err(|e| not_known_if_gone(e, id))?;
        tx.commit()?;
        Ok(())
    }

    /// Takes `name` away from image `id`; false if the image did not have it.
    pub fn untag_image(&self, id: &str, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM image_names WHERE name = ?1 AND image_id = ?2",
            params![name, id],
        )?;
        Ok(n > 0)
    }

    /// Removes an image and the layers no other image uses. Containers made from it
    /// must be gone (else [`StoreError::ImageInUse`]). With the layers lock held, the
    /// records go in one transaction, then the layer directories are renamed away;
    /// they are deleted after the lock is released.
    pub fn remove_image(&mut self, id: &str) -> Result<(), StoreError> {
        let lock = self.lock_layers()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let layers: Vec<String> = {
            let mut stmt = tx.prepare("SELECT layer_id FROM image_layers WHERE image_id = ?1")?;
            let rows = stmt.query_map([id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let deleted = tx
            .execute("DELETE FROM images WHERE id = ?1", [id])
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::ImageInUse(id.to_string())
                }
                e => e.into(),
            })?;
        if deleted == 0 {
            return Err(StoreError::ImageNotKnown(id.to_string()));
        }
        let mut unused = Vec::new();
        for layer in layers {
            let used: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM image_layers WHERE layer_id = ?1)",
                [&layer],
                |r| r.get(0),
            )?;
            if !used && !unused.contains(&layer) {
                tx.execute("DELETE FROM layers WHERE id = ?1", [&layer])?;
                unused.push(layer);
            }
        }
        tx.commit()?;
        let layers_dir = self.paths.layers_dir();
        let mut doomed = Vec::new();
        for layer in unused {
            if let Some(d) = lock::doom(&layers_dir, &layers_dir.join(&layer))? {
                doomed.push(d);
            }
        }
        drop(lock);
        for d in doomed {
            d.remove()?;
        }
        Ok(())
    }
}

/// A foreign-key failure on an image id means the image went away meanwhile.
fn not_known_if_gone(e: rusqlite::Error, id: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::ImageNotKnown(id.to_string())
        }
        e => e.into(),
    }
}
