//! Images: an OCI image configuration plus its ordered layers and names.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::layers::{self, IdLimits};
use crate::lock::{self, WorkDir};
use crate::{now, random_id, tarsplit, Store, StoreError};

#[derive(Debug, Clone)]
pub struct Image {
    /// Hex sha256 of the configuration.
    pub id: String,
    pub names: Vec<String>,
    /// Layer ids (diff_ids), bottom first.
    pub layers: Vec<String>,
    pub config: ImageConfiguration,
    /// The configuration as stored (its sha256 is the id).
    pub config_json: String,
    /// `sha256:<hex>` of the image's manifest, when it has one.
    pub digest: Option<String>,
    /// `sha256:<hex>` of the manifest list (index) it was pulled through, if any.
    pub index_digest: Option<String>,
    /// When the image was stored (seconds since the epoch).
    pub created: i64,
}

/// Inserts an image row, its layer list and names in `tx`; the layers must have rows.
/// Returns the id. `manifest` is `(digest, json)`.
pub(crate) fn insert_image(
    tx: &rusqlite::Transaction,
    layers: &[String],
    config: &str,
    names: &[String],
    manifest: Option<(&str, &str)>,
) -> Result<String, StoreError> {
    let parsed = ImageConfiguration::from_reader(config.as_bytes())
        .map_err(|e| StoreError::BadConfig(e.to_string()))?;
    if parsed.rootfs().diff_ids().len() != layers.len() && !parsed.rootfs().diff_ids().is_empty() {
        return Err(StoreError::BadConfig(format!(
            "the configuration lists {} layers, the image has {}",
            parsed.rootfs().diff_ids().len(),
            layers.len()
        )));
    }
    let id = layers::hex(&Sha256::digest(config.as_bytes()));
    tx.execute(
        "INSERT OR IGNORE INTO images (id, config, created) VALUES (?1, ?2, ?3)",
        params![id, config, now()],
    )?;
    if let Some((digest, json)) = manifest {
        tx.execute(
            "UPDATE images SET digest = ?2, manifest = ?3 WHERE id = ?1",
            params![id, digest, json],
        )?;
    }
    for (position, layer) in layers.iter().enumerate() {
        tx.execute(
            "INSERT OR IGNORE INTO image_layers (image_id, position, layer_id) VALUES (?1, ?2, ?3)",
            params![id, position as i64, layer],
        )?;
    }
    for name in names {
        // Deleting first moves the name to the end of this image's list (rowid order).
        tx.execute("DELETE FROM image_names WHERE name = ?1", [name])?;
        tx.execute(
            "INSERT INTO image_names (name, image_id) VALUES (?1, ?2)",
            params![name, id],
        )?;
    }
    Ok(id)
}

/// Podman's normalisation of an image name: a name without a registry is local
/// (`busybox` → `localhost/busybox:latest`), `docker.io` names get `library/`, and a name
/// without tag or digest gets `:latest`. Follows the distribution reference grammar.
pub fn normalize_name(name: &str) -> Result<String, StoreError> {
    let bad = || StoreError::BadReference(name.to_string());
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (name, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':').ok_or_else(bad)?;
        let valid_algo = !algo.is_empty()
            && algo
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        if !valid_algo || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let valid = (1..=128).contains(&t.len())
            && t.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(bad());
        }
    }
    let mut components: Vec<&str> = repo.split('/').collect();
    let has_domain = components.len() > 1
        && (components[0].contains('.') || components[0].contains(':') || components[0] == "localhost");
    let domain = if has_domain {
        Some(components.remove(0))
    } else {
        None
    };
    if let Some(d) = domain {
        let (host, port) = d.split_once(':').map_or((d, None), |(h, p)| (h, Some(p)));
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
        let valid_port = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !valid_host || !valid_port {
            return Err(bad());
        }
    }
    // Path components: lowercase alphanumerics joined by one separator (`.`, `_`, `__`, `-`s).
    let valid_component = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && !c.contains("..")
            && !c.contains("___")
    };
    if components.is_empty() || !components.iter().all(|c| valid_component(c)) {
        return Err(bad());
    }
    let domain = domain.unwrap_or("localhost");
    if domain == "docker.io" && components.len() == 1 {
        components.insert(0, "library");
    }
    let mut full = format!("{domain}/{}", components.join("/"));
    match (tag, digest) {
        (Some(t), _) => full.push_str(&format!(":{t}")),
        (None, None) => full.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        full.push_str(&format!("@{d}"));
    }
    Ok(full)
}

/// Layer and archive compressions, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// `reader` decompressed. Multi-member gzip and multi-frame zstd (with skippable
    /// frames, as zstd:chunked writes them) are read whole.
    pub(crate) fn reader<'a>(self, reader: impl io::BufRead + 'a) -> Result<Box<dyn Read + 'a>, StoreError> {
        Ok(match self {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(Named {
                inner: flate2::bufread::MultiGzDecoder::new(reader),
                what: "gzip",
            }),
            Compression::Zstd => Box::new(Named {
                inner: zstd::stream::read::Decoder::with_buffer(reader)
                    .map_err(|e| StoreError::BadLayer(format!("zstd: {e}")))?,
                what: "zstd",
            }),
        })
    }
}

/// Names the decompressor in its errors ("truncated gzip stream: ...").
struct Named<R> {
    inner: R,
    what: &'static str,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = if e.kind() == io::ErrorKind::UnexpectedEof {
                "truncated"
            } else {
                "corrupt"
            };
            io::Error::new(e.kind(), format!("{kind} {} stream: {e}", self.what))
        })
    }
}

/// Wraps `reader` in a decompressor when its first bytes say gzip or zstd.
pub(crate) fn decompressed<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, StoreError> {
    let mut buffered = BufReader::with_capacity(1 << 17, reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| StoreError::BadLayer(e.to_string()))?;
    Compression::detect(head).reader(buffered)
}

/// A layer extracted into a staging directory of the store (locked: see
/// [`crate::lock`]), not yet in the store; dropping it removes the directory.
pub(crate) struct StagedLayer {
    pub(crate) dir: Option<WorkDir>,
    pub diff_id: String,
    pub size: u64,
}

impl Drop for StagedLayer {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

/// Extracts a layer tar (plain, gzip or zstd) into a new staging directory of
/// `layers_dir`, with its tar-split (see [`crate::tarsplit`]). Needs no database, so many
/// can run at once in threads.
/// `locked`: the caller holds the layers lock.
pub(crate) fn stage_layer_in(
    layers_dir: &Path,
    reader: impl Read,
    limits: IdLimits,
    locked: bool,
) -> Result<StagedLayer, StoreError> {
    let dir = lock::staging_dir(layers_dir, locked)?;
    let diff = dir.path.join("diff");
    fs::create_dir(&diff).map_err(|e| StoreError::io("creating", &diff, e))?;
    let split = tarsplit::Recorder::create(&dir.path)?;
    let mut staged = StagedLayer {
        dir: Some(dir),
        diff_id: String::new(),
        size: 0,
    };
    let extracted =
        decompressed(reader).and_then(|r| layers::extract_recorded(r, &diff, limits, Some(split)))?;
    staged.diff_id = extracted.diff_id;
    staged.size = extracted.size;
    Ok(staged)
}

impl Store {
    /// Extracts a layer tar (plain, gzip or zstd) and records an image of it alone, with
    /// the config `make_config` writes for the layer's id (hex diff_id), named `names`.
    /// A failed extraction leaves nothing behind.
    pub fn import_image(
        &mut self,
        reader: impl Read,
        limits: IdLimits,
        make_config: impl FnOnce(&str) -> String,
        names: &[String],
    ) -> Result<Image, StoreError> {
        self.import_image_on(&[], reader, limits, make_config, names)
    }

    /// [`Store::import_image`] for a layer on top of `parent_layers` (bottom first, in the
    /// store): one transaction records the layer and the image of all of them (`commit`).
    pub fn import_image_on(
        &mut self,
        parent_layers: &[String],
        reader: impl Read,
        limits: IdLimits,
        make_config: impl FnOnce(&str) -> String,
        names: &[String],
    ) -> Result<Image, StoreError> {
        let staged = self.stage_layer(reader, limits)?;
        let layer = staged.diff_id.clone();
        let size = staged.size;
        let config = make_config(&layer);
        let lock = self.lock_layers()?;
        for parent in parent_layers {
            if !self.has_layer(parent)? {
                return Err(StoreError::BadLayer(format!(
                    "layer {parent} is no longer in the store (its image was removed meanwhile)"
                )));
            }
        }
        let placed = self.place_layer(staged)?;
        let mut layers = parent_layers.to_vec();
        layers.push(layer.clone());
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT OR IGNORE INTO layers (id, size, created) VALUES (?1, ?2, ?3)",
                params![layer, size as i64, now()],
            )?;
            let id = insert_image(&tx, &layers, &config, names, None)?;
            tx.commit()?;
            Ok(id)
        })();
        let id = match result {
            Ok(id) => id,
            Err(e) => {
                if placed {
                    self.unplace_layer(&layer);
                }
                return Err(e);
            }
        };
        drop(lock);
        self.image_by_id(&id)?
            .ok_or_else(|| StoreError::ImageNotKnown(id))
    }

    /// Extracts a layer tar (plain, gzip or zstd) into a staging directory of the store.
    pub(crate) fn stage_layer(&self, reader: impl Read, limits: IdLimits) -> Result<StagedLayer, StoreError> {
        stage_layer_in(&self.paths.layers_dir(), reader, limits, false)
    }

    /// Moves a staged layer to its place (`layers/<diff_id>`), unless a copy is there
    /// already (with the layers lock held, one with a row: a complete copy). Returns
    /// whether it was moved.
    pub(crate) fn place_layer(&self, mut staged: StagedLayer) -> Result<bool, StoreError> {
        let final_dir = self.paths.layers_dir().join(&staged.diff_id);
        let dir = staged.dir.take().expect("a staged layer is placed once");
        if final_dir.exists() {
            dir.remove()?;
            return Ok(false);
        }
        if let Err(e) = fs::rename(&dir.path, &final_dir) {
            let _ = dir.remove();
            return Err(StoreError::io("storing layer", &final_dir, e));
        }
        Ok(true)
    }

    /// Takes back a layer placed by a transaction that failed (layers lock held).
    pub(crate) fn unplace_layer(&self, id: &str) {
        let layers_dir = self.paths.layers_dir();
        if let Ok(Some(doomed)) = lock::doom(&layers_dir, &layers_dir.join(id)) {
            let _ = doomed.remove();
        }
    }

    /// The extracted tree of a layer.
    pub fn layer_dir(&self, layer_id: &str) -> PathBuf {
        self.paths.layers_dir().join(layer_id).join("diff")
    }

    /// The tree of a layer as seen through a nested id mapping (see
    /// [`layers::shifted_copy`]), made on first use and kept. `key` names the mapping.
    pub fn shifted_layer_dir(
        &self,
        layer_id: &str,
        key: &str,
        map_uid: &dyn Fn(u32) -> Option<u32>,
        map_gid: &dyn Fn(u32) -> Option<u32>,
    ) -> Result<PathBuf, StoreError> {
        let mapped = self.paths.layers_dir().join(layer_id).join("mapped");
        let dir = mapped.join(key);
        if dir.exists() {
            return Ok(dir);
        }
        fs::create_dir_all(&mapped).map_err(|e| StoreError::io("creating", &mapped, e))?;
        let tmp = mapped.join(format!(".tmp-{}", &random_id()[..16]));
        if let Err(e) = layers::shifted_copy(&self.layer_dir(layer_id), &tmp, map_uid, map_gid) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if fs::rename(&tmp, &dir).is_err() {
            // Another process made it meanwhile.
            let _ = fs::remove_dir_all(&tmp);
        }
        Ok(dir)
    }

    /// Records an image made of `layers` (bottom first, already in the store) with
    /// `config`, and gives it `names` (taken away from any image that had them).
    pub fn create_image(
        &mut self,
        layers: &[String],
        config: &str,
        names: &[String],
    ) -> Result<Image, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id = insert_image(&tx, layers, config, names, None)?;
        tx.commit()?;
        self.image_by_id(&id)?
            .ok_or_else(|| StoreError::ImageNotKnown(id))
    }

    pub(crate) fn image_by_id(&self, id: &str) -> Result<Option<Image>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT config, created, digest, index_digest FROM images WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((config_json, created, digest, index_digest)) = row else {
            return Ok(None);
        };
        let config = ImageConfiguration::from_reader(config_json.as_bytes())
            .map_err(|e| StoreError::BadConfig(e.to_string()))?;
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT layer_id FROM image_layers WHERE image_id = ?1 ORDER BY position")?;
        let layers = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT name FROM image_names WHERE image_id = ?1 ORDER BY rowid")?;
        let names = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(Image {
            id: id.to_string(),
            names,
            layers,
            config,
            config_json,
            digest,
            index_digest,
            created,
        }))
    }

    /// Finds an image by full or short name, by id, or by a unique id prefix.
    pub fn image(&self, reference: &str) -> Result<Image, StoreError> {
        let not_known = || StoreError::ImageNotKnown(reference.to_string());
        let reference_id = reference.strip_prefix("sha256:").unwrap_or(reference);
        if reference_id.len() >= 3
            && reference_id
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            let mut stmt = self
                .conn()
                .prepare_cached("SELECT id FROM images WHERE id >= ?1 AND id < ?1 || 'g' LIMIT 2")?;
            let ids = stmt
                .query_map([reference_id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            if ids.len() == 1 {
                return self.image_by_id(&ids[0])?.ok_or_else(not_known);
            }
        }
        let full = normalize_name(reference)?;
        let mut id: Option<String> = self
            .conn()
            .query_row("SELECT image_id FROM image_names WHERE name = ?1", [&full], |r| {
                r.get(0)
            })
            .optional()?;
        if id.is_none() && full.starts_with("localhost/") && !reference.starts_with("localhost/") {
            // A short name also matches the same repository:tag in any registry.
            let short = &full["localhost".len()..];
            id = self
                .conn()
                .query_row(
                    "SELECT image_id FROM image_names WHERE substr(name, -length(?1)) = ?1 ORDER BY name LIMIT 1",
                    [short],
                    |r| r.get(0),
                )
                .optional()?;
        }
        let id = id.ok_or_else(not_known)?;
        self.image_by_id(&id)?.ok_or_else(not_known)
    }

    /// Reads `path` (absolute, inside the image) from the top-most layer that has it, as
    /// the container would see it, without following symlinks out of the layers.
    pub fn image_file(&self, image: &Image, path: &str) -> Option<Vec<u8>> {
        let rel = Path::new(path.trim_start_matches('/'));
        for layer in image.layers.iter().rev() {
            let candidate = self.layer_dir(layer).join(rel);
            let Ok(meta) = fs::symlink_metadata(&candidate) else {
                continue;
            };
            if meta.is_file() {
                return fs::read(&candidate).ok();
            }
            // A whiteout, a directory or a symlink: not followed here.
            return None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_podman() {
        for (input, want) in [
            ("busybox", "localhost/busybox:latest"),
            ("busybox:1.36", "localhost/busybox:1.36"),
            ("user/app", "localhost/user/app:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("127.0.0.1:5000/bb", "127.0.0.1:5000/bb:latest"),
            (
                "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef",
                "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef",
            ),
            ("localhost/x:1", "localhost/x:1"),
        ] {
            assert_eq!(normalize_name(input).unwrap(), want, "{input}");
        }
        for bad in [
            "",
            "a b",
            "/x",
            "x/",
            "x:",
            "Upper",
            "a//b",
            "x@sha256:zz",
            "-x",
            "host:port/x",
            "x:-tag",
        ] {
            assert!(normalize_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
