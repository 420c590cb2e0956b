//! Image archives: `docker save` archives (manifest.json, config and layer tars), OCI
//! archives (an OCI image layout in a tar) and OCI layouts (a directory), read by `load`
//! and written by `save`.
//!
//! Loading verifies every blob against its digest while it is read (manifests, configs,
//! compressed layers by their descriptor digest, uncompressed layers by their diff_id),
//! extracts new layers into temporary directories, and only then stores everything in one
//! transaction: a bad archive leaves the store as it was. Layers already in the store are
//! not read again.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::images::{insert_image, Compression, StagedLayer};
use crate::ingest::{stage_checked, BlobCheck};
use crate::layers::{hex, IdLimits};
use crate::{normalize_name, now, random_id, tarsplit, Image, Store, StoreError};

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Manifests, indexes and configs larger than this are refused (they are JSON of a few KB).
const JSON_LIMIT: u64 = 32 << 20;

/// The formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    DockerArchive,
    OciArchive,
    OciDir,
}

/// An image `load` stored: its id and the names it was given.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: String,
    pub names: Vec<String>,
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::BadArchive(msg.into())
}

/// Where archive members come from: a tar file (indexed once, read at offsets) or a dir.
enum Source {
    Tar {
        file: File,
        /// member name -> (data offset, size)
        members: HashMap<String, (u64, u64)>,
    },
    Dir(PathBuf),
}

fn clean_name(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl Source {
    /// Indexes a plain tar file. Symlinked members (Podman's `<id>/layer.tar`) resolve to
    /// their targets.
    fn tar(mut file: File) -> Result<Source, StoreError> {
        let mut members = HashMap::new();
        let mut links = Vec::new();
        {
            let mut archive = tar::Archive::new(&mut file);
            let entries = archive
                .entries_with_seek()
                .map_err(|e| bad(format!("not a tar archive: {e}")))?;
            for entry in entries {
                let entry = entry.map_err(|e| bad(format!("not a tar archive, or a damaged one: {e}")))?;
                let name = clean_name(&entry.path().map_err(|e| bad(e.to_string()))?.to_string_lossy());
                let kind = entry.header().entry_type();
                if kind.is_symlink() || kind.is_hard_link() {
                    if let Ok(Some(target)) = entry.link_name() {
                        let target = target.to_string_lossy().into_owned();
                        let resolved = if kind.is_symlink() {
                            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                            clean_name(&format!("{dir}/{target}"))
                        } else {
                            clean_name(&target)
                        };
                        links.push((name, resolved));
                    }
                } else if kind.is_file() {
                    members.insert(name, (entry.raw_file_position(), entry.size()));
                }
            }
        }
        for (name, target) in links {
            if let Some(&m) = members.get(&target) {
                members.insert(name, m);
            }
        }
        if members.is_empty() {
            return Err(bad("not a tar archive, or an empty one"));
        }
        Ok(Source::Tar { file, members })
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Tar { members, .. } => members.contains_key(name),
            Source::Dir(dir) => dir.join(name).is_file(),
        }
    }

    fn open(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64), StoreError> {
        let missing = || bad(format!("{name} is missing from the archive"));
        match self {
            Source::Tar { file, members } => {
                let &(offset, size) = members.get(name).ok_or_else(missing)?;
                Ok((
                    Box::new(At {
                        file,
                        pos: offset,
                        end: offset + size,
                    }),
                    size,
                ))
            }
            Source::Dir(dir) => {
                let path = dir.join(name);
                let f = File::open(&path).map_err(|_| missing())?;
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                Ok((Box::new(io::BufReader::with_capacity(1 << 16, f)), size))
            }
        }
    }

    fn read_json(&self, name: &str) -> Result<(Vec<u8>, Value), StoreError> {
        let (reader, size) = self.open(name)?;
        if size > JSON_LIMIT {
            return Err(bad(format!("{name} is too large ({size} bytes)")));
        }
        let mut data = Vec::new();
        reader
            .take(JSON_LIMIT)
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("reading {name}: {e}")))?;
        let value = serde_json::from_slice(&data).map_err(|e| bad(format!("{name}: invalid JSON: {e}")))?;
        Ok((data, value))
    }

    /// A blob of an OCI layout, checked against `digest` (and `size` when known).
    fn read_blob_json(&self, digest: &str, size: Option<u64>) -> Result<(Vec<u8>, Value), StoreError> {
        let name = blob_path(digest)?;
        let (data, value) = self.read_json(&name)?;
        check_digest(&data, digest)?;
        if size.is_some_and(|s| s != data.len() as u64) {
            return Err(bad(format!(
                "blob {digest}: size {} does not match its descriptor",
                data.len()
            )));
        }
        Ok((data, value))
    }
}

/// Reads `file` from `pos` to `end` with pread, so many readers can share one file.
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.end - self.pos) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn blob_path(digest: &str) -> Result<String, StoreError> {
    match digest.split_once(':') {
        Some(("sha256", h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("blobs/sha256/{h}"))
        }
        _ => Err(bad(format!("unsupported digest {digest:?}"))),
    }
}

fn check_digest(data: &[u8], digest: &str) -> Result<(), StoreError> {
    let got = format!("sha256:{}", hex(&Sha256::digest(data)));
    if got != digest {
        return Err(StoreError::DigestMismatch {
            what: "blob".into(),
            expected: digest.into(),
            got,
        });
    }
    Ok(())
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// One image found in an archive, before its layers are read.
struct Found {
    config: Vec<u8>,
    diff_ids: Vec<String>,
    /// Per layer: where its blob is, and the blob's digest and size when a manifest says.
    blobs: Vec<(String, Option<String>, Option<u64>)>,
    names: Vec<String>,
    /// (digest, JSON); `None` for a docker archive: made once layer sizes are known.
    manifest: Option<(String, String)>,
}

/// One layer to extract: its diff_id, where its blob is, and the blob's digest and
/// size when a manifest gives them.
#[derive(Clone)]
struct LayerJob {
    diff_id: String,
    blob: String,
    digest: Option<String>,
    size: Option<u64>,
}

/// Extracts `jobs` into staging directories, several at once: layers are independent
/// until recorded. Threads are fine here: the CLI forks only to run containers, never
/// while loading. The first error (in layer order) wins; the other jobs then stop early.
fn stage_all(
    source: &Source,
    layers_dir: &Path,
    jobs: &[LayerJob],
    limits: IdLimits,
) -> Result<HashMap<String, StagedLayer>, StoreError> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<StagedLayer, StoreError>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= jobs.len() || failed.load(Ordering::Relaxed) {
            break;
        }
        let result = stage_blob(source, layers_dir, &jobs[i], limits, false);
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    };
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    let mut staged = HashMap::new();
    for (job, slot) in jobs.iter().zip(results) {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(layer)) => {
                staged.insert(job.diff_id.clone(), layer);
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(staged)
}

/// Extracts one layer blob of the archive (see [`stage_checked`]).
fn stage_blob(
    source: &Source,
    layers_dir: &Path,
    job: &LayerJob,
    limits: IdLimits,
    locked: bool,
) -> Result<StagedLayer, StoreError> {
    let (reader, _) = source.open(&job.blob)?;
    let check = BlobCheck {
        what: format!("layer {}", job.blob),
        digest: job.digest.clone(),
        size: job.size,
        diff_id: job.diff_id.clone(),
    };
    stage_checked(layers_dir, reader, &check, limits, locked)
}

impl Store {
    /// Loads every image of the archive or OCI layout at `input` (`None`: standard
    /// input). Gzip- and zstd-compressed archives and layers are accepted.
    pub fn load(&mut self, input: Option<&Path>, limits: IdLimits) -> Result<Vec<LoadedImage>, StoreError> {
        let source = self.open_source(input)?;
        let found = if source.has("manifest.json") {
            docker_images(&source)?
        } else if source.has("index.json") {
            oci_images(&source)?
        } else {
            return Err(bad(
                "neither a docker archive (no manifest.json) nor an OCI layout (no index.json)",
            ));
        };
        if found.is_empty() {
            return Err(bad("the archive holds no image"));
        }
        // Extract what is new, once per layer; nothing is stored until all are good.
        let mut jobs: Vec<LayerJob> = Vec::new();
        for image in &found {
            for (diff_id, (blob, digest, size)) in image.diff_ids.iter().zip(&image.blobs) {
                if jobs.iter().any(|j| &j.diff_id == diff_id) || self.has_layer(hex_part(diff_id))? {
                    continue;
                }
                jobs.push(LayerJob {
                    diff_id: diff_id.clone(),
                    blob: blob.clone(),
                    digest: digest.clone(),
                    size: *size,
                });
            }
        }
        let staged = stage_all(&source, &self.paths.layers_dir(), &jobs, limits)?;
        self.commit_load(&source, found, staged, limits)
    }

    fn open_source(&self, input: Option<&Path>) -> Result<Source, StoreError> {
        if let Some(dir) = input.filter(|p| p.is_dir()) {
            return Ok(Source::Dir(dir.to_path_buf()));
        }
        let mut reader: Box<dyn Read> = match input {
            Some(p) => Box::new(File::open(p).map_err(|e| StoreError::io("opening", p, e))?),
            None => Box::new(io::stdin().lock()),
        };
        let mut head = [0u8; 4];
        let got = read_up_to(&mut reader, &mut head).map_err(|e| bad(e.to_string()))?;
        let compression = Compression::detect(&head[..got]);
        if let (Some(p), Compression::None) = (input, compression) {
            let mut file = File::open(p).map_err(|e| StoreError::io("opening", p, e))?;
            if file.metadata().is_ok_and(|m| m.is_file()) && file.rewind().is_ok() {
                return Source::tar(file);
            }
        }
        // Compressed or not seekable: copy (decompressed) into an unnamed file of the store.
        let tmp_dir = self.paths.graph_root.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(|e| StoreError::io("creating", &tmp_dir, e))?;
        let mut spool =
            tempfile::tempfile_in(&tmp_dir).map_err(|e| StoreError::io("creating a file in", &tmp_dir, e))?;
        let whole = io::Cursor::new(head[..got].to_vec()).chain(reader);
        let mut stream = compression.reader(io::BufReader::with_capacity(1 << 17, whole))?;
        io::copy(&mut stream, &mut spool).map_err(|e| bad(format!("reading the archive: {e}")))?;
        spool
            .rewind()
            .map_err(|e| StoreError::io("reading", &tmp_dir, e))?;
        Source::tar(spool)
    }

    /// Records the loaded images, with the layers lock held: places the staged layers
    /// (extracting, there and then, any layer that a concurrent `rmi` removed since it was
    /// found present), then writes every row in one transaction. A failure takes the
    /// placed layers back out.
    fn commit_load(
        &mut self,
        source: &Source,
        found: Vec<Found>,
        mut staged: HashMap<String, StagedLayer>,
        limits: IdLimits,
    ) -> Result<Vec<LoadedImage>, StoreError> {
        let lock = self.lock_layers()?;
        for image in &found {
            for (diff_id, (blob, digest, size)) in image.diff_ids.iter().zip(&image.blobs) {
                if staged.contains_key(diff_id) || self.has_layer(hex_part(diff_id))? {
                    continue;
                }
                let job = LayerJob {
                    diff_id: diff_id.clone(),
                    blob: blob.clone(),
                    digest: digest.clone(),
                    size: *size,
                };
                let layer = stage_blob(source, &self.paths.layers_dir(), &job, limits, true)?;
                staged.insert(diff_id.clone(), layer);
            }
        }
        let mut all_sizes = self.layer_sizes()?;
        let mut sizes = Vec::new();
        let mut placed = Vec::new();
        let mut result = Ok(());
        for (diff_id, layer) in staged {
            let id = hex_part(&diff_id).to_string();
            sizes.push((id.clone(), layer.size));
            all_sizes.insert(id.clone(), layer.size);
            if result.is_ok() {
                match self.place_layer(layer) {
                    Ok(true) => placed.push(id),
                    Ok(false) => {}
                    Err(e) => result = Err(e),
                }
            }
        }
        let result = result.and_then(|()| self.record_load(found, &sizes, &all_sizes));
        if result.is_err() {
            for id in &placed {
                self.unplace_layer(id);
            }
        }
        drop(lock);
        result
    }

    fn record_load(
        &mut self,
        found: Vec<Found>,
        sizes: &[(String, u64)],
        all_sizes: &HashMap<String, u64>,
    ) -> Result<Vec<LoadedImage>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (id, size) in sizes {
            tx.execute(
                "INSERT OR IGNORE INTO layers (id, size, created) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, *size as i64, now()],
            )?;
        }
        let mut loaded = Vec::new();
        for image in found {
            let layers: Vec<String> = image.diff_ids.iter().map(|d| hex_part(d).to_string()).collect();
            let config = String::from_utf8(image.config).map_err(|_| bad("the image config is not UTF-8"))?;
            let (digest, manifest) = match image.manifest {
                Some(m) => m,
                None => {
                    let sizes: Vec<u64> = layers
                        .iter()
                        .map(|l| all_sizes.get(l).copied().unwrap_or(0))
                        .collect();
                    docker_manifest(config.as_bytes(), &image.diff_ids, &sizes)
                }
            };
            let id = insert_image(&tx, &layers, &config, &image.names, Some((&digest, &manifest)))?;
            loaded.push(LoadedImage {
                id,
                names: image.names,
            });
        }
        tx.commit()?;
        Ok(loaded)
    }

    /// Writes `images` (each with the names to record for it) as `format` to `out`, a
    /// file or (for [`ArchiveFormat::OciDir`]) a directory; `None` writes an archive to
    /// standard output. Layers are rebuilt from the store and checked against their
    /// diff_ids; the output appears only when complete.
    pub fn save(
        &self,
        images: &[(Image, Vec<String>)],
        format: ArchiveFormat,
        out: Option<&Path>,
    ) -> Result<(), StoreError> {
        let sizes = self.layer_sizes()?;
        let plan = SavePlan {
            store: self,
            images,
            sizes,
        };
        match (format, out) {
            (ArchiveFormat::OciDir, None) => Err(bad("oci-dir needs an output directory (-o)")),
            (ArchiveFormat::OciDir, Some(dir)) => plan.write_oci_dir(dir),
            (_, None) => {
                let stdout = io::stdout();
                let mut lock = stdout.lock();
                plan.write_archive(format, &mut lock)?;
                lock.flush()
                    .map_err(|e| StoreError::io("writing", Path::new("stdout"), e))
            }
            (_, Some(path)) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let tmp = path.with_file_name(format!(".{name}.tmp-{}", &random_id()[..8]));
                let result = (|| {
                    let file = File::create(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
                    let mut w = io::BufWriter::with_capacity(1 << 20, file);
                    plan.write_archive(format, &mut w)?;
                    let file = w
                        .into_inner()
                        .map_err(|e| StoreError::io("writing", &tmp, e.into_error()))?;
                    file.sync_all().map_err(|e| StoreError::io("writing", &tmp, e))?;
                    fs::rename(&tmp, path).map_err(|e| StoreError::io("writing", path, e))
                })();
                if result.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                result
            }
        }
    }
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn hex_part(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn diff_ids(config: &Value, what: &str) -> Result<Vec<String>, StoreError> {
    let ids = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| bad(format!("{what}: the config has no rootfs.diff_ids")))?;
    ids.iter()
        .map(|d| {
            let d = d.as_str().unwrap_or_default();
            blob_path(d).map(|_| d.to_string())
        })
        .collect()
}

/// The Docker v2 schema 2 manifest containers/image makes for an image of a docker
/// archive (which has none), byte for byte, so the image gets the digest Podman and
/// skopeo give it, and keeps it across save and load. `sizes` are uncompressed.
fn docker_manifest(config: &[u8], diff_ids: &[String], sizes: &[u64]) -> (String, String) {
    let layers: Vec<String> = diff_ids
        .iter()
        .zip(sizes)
        .map(|(d, s)| format!(r#"{{"mediaType":"{MT_DOCKER_LAYER_GZIP}","size":{s},"digest":"{d}"}}"#))
        .collect();
    let text = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MT_DOCKER_MANIFEST}","config":{{"mediaType":"{MT_DOCKER_CONFIG}","size":{},"digest":"sha256:{}"}},"layers":[{}]}}"#,
        config.len(),
        hex(&Sha256::digest(config)),
        layers.join(",")
    );
    (format!("sha256:{}", hex(&Sha256::digest(text.as_bytes()))), text)
}

fn docker_images(source: &Source) -> Result<Vec<Found>, StoreError> {
    let (_, manifest) = source.read_json("manifest.json")?;
    let entries = manifest
        .as_array()
        .ok_or_else(|| bad("manifest.json: expected a list of images"))?;
    // `repositories` (legacy) names top layer ids: used for images without RepoTags.
    let repositories = source.read_json("repositories").map(|(_, v)| v).ok();
    let mut found = Vec::new();
    for entry in entries {
        let config_name = entry["Config"]
            .as_str()
            .ok_or_else(|| bad("manifest.json: an image has no Config"))?;
        let (config, config_value) = source.read_json(&clean_name(config_name))?;
        if let Some(want) = config_name.strip_suffix(".json").filter(|h| h.len() == 64) {
            check_digest(
                &config,
                &format!("sha256:{}", want.rsplit('/').next().unwrap_or(want)),
            )?;
        }
        let diff_ids = diff_ids(&config_value, config_name)?;
        let layers: Vec<String> = entry["Layers"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|x| clean_name(x.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        if layers.len() != diff_ids.len() {
            return Err(bad(format!(
                "manifest.json lists {} layers, the config {}",
                layers.len(),
                diff_ids.len()
            )));
        }
        let mut tags: Vec<String> = entry["RepoTags"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if tags.is_empty() {
            let top = layers
                .last()
                .and_then(|l| l.split('/').next())
                .unwrap_or_default();
            if let Some(Value::Object(repos)) = &repositories {
                for (repo, tags_of) in repos {
                    for (tag, id) in tags_of.as_object().into_iter().flatten() {
                        if id.as_str() == Some(top) {
                            tags.push(format!("{repo}:{tag}"));
                        }
                    }
                }
            }
        }
        let mut names: Vec<String> = Vec::new();
        for t in &tags {
            let n = normalize_name(t)?;
            if !names.contains(&n) {
                names.push(n);
            }
        }
        found.push(Found {
            manifest: None,
            config,
            diff_ids,
            blobs: layers.into_iter().map(|l| (l, None, None)).collect(),
            names,
        });
    }
    Ok(found)
}

fn oci_images(source: &Source) -> Result<Vec<Found>, StoreError> {
    let (_, index) = source.read_json("index.json")?;
    let mut found = Vec::new();
    for desc in index["manifests"].as_array().into_iter().flatten() {
        let name = desc["annotations"][CONTAINERD_NAME]
            .as_str()
            .or_else(|| desc["annotations"][REF_NAME].as_str())
            .and_then(|n| normalize_name(n).ok());
        let mut desc = desc.clone();
        // An index inside: take the manifest for this machine.
        for _ in 0..4 {
            let mt = desc["mediaType"].as_str().unwrap_or_default();
            if mt != MT_OCI_INDEX && mt != MT_DOCKER_LIST {
                break;
            }
            let (_, nested) =
                source.read_blob_json(desc["digest"].as_str().unwrap_or_default(), desc["size"].as_u64())?;
            let pick = nested["manifests"].as_array().into_iter().flatten().find(|m| {
                let p = &m["platform"];
                (p["os"].as_str() == Some("linux") || p.is_null())
                    && (p["architecture"].as_str() == Some(go_arch()) || p.is_null())
            });
            desc = pick
                .cloned()
                .ok_or_else(|| bad(format!("no image for linux/{} in the index", go_arch())))?;
        }
        let digest = desc["digest"].as_str().unwrap_or_default().to_string();
        let (manifest_bytes, manifest) = source.read_blob_json(&digest, desc["size"].as_u64())?;
        let config_desc = &manifest["config"];
        let (config, config_value) = source.read_blob_json(
            config_desc["digest"].as_str().unwrap_or_default(),
            config_desc["size"].as_u64(),
        )?;
        let diff_ids = diff_ids(&config_value, &digest)?;
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layers.len() != diff_ids.len() {
            return Err(bad(format!(
                "manifest {digest} lists {} layers, its config {}",
                layers.len(),
                diff_ids.len()
            )));
        }
        let blobs = layers
            .iter()
            .map(|l| {
                let d = l["digest"].as_str().unwrap_or_default();
                Ok((blob_path(d)?, Some(d.to_string()), l["size"].as_u64()))
            })
            .collect::<Result<_, StoreError>>()?;
        let manifest_text =
            String::from_utf8(manifest_bytes).map_err(|_| bad("the manifest is not UTF-8"))?;
        found.push(Found {
            config,
            diff_ids,
            blobs,
            names: name.into_iter().collect(),
            manifest: Some((digest, manifest_text)),
        });
    }
    Ok(found)
}

/// Small files of an archive as (path, bytes), and the layers (diff_id hex) to add.
type Layout = (Vec<(String, Vec<u8>)>, Vec<String>);

/// What `save` writes, and how.
struct SavePlan<'a> {
    store: &'a Store,
    images: &'a [(Image, Vec<String>)],
    sizes: HashMap<String, u64>,
}

impl SavePlan<'_> {
    fn layer_size(&self, layer: &str) -> Result<u64, StoreError> {
        self.sizes
            .get(layer)
            .copied()
            .ok_or_else(|| StoreError::BadLayer(format!("layer {layer} is not in the store")))
    }

    /// The OCI manifest written for `image`: the stored one when it already describes
    /// uncompressed layers (so the digest stays), else a new one.
    fn oci_manifest(&self, image: &Image) -> Result<Vec<u8>, StoreError> {
        if let Some(stored) = self.store.image_manifest(&image.id)? {
            if let Ok(m) = serde_json::from_str::<Value>(&stored) {
                let same_layers = m["layers"].as_array().is_some_and(|ls| {
                    ls.len() == image.layers.len()
                        && ls
                            .iter()
                            .zip(&image.layers)
                            .all(|(l, id)| l["digest"].as_str() == Some(&format!("sha256:{id}")))
                });
                if m["mediaType"].as_str() == Some(MT_OCI_MANIFEST)
                    && m["config"]["digest"].as_str() == Some(&format!("sha256:{}", image.id))
                    && same_layers
                {
                    return Ok(stored.into_bytes());
                }
            }
        }
        let layers = image
            .layers
            .iter()
            .map(|l| Ok(json!({"mediaType": MT_OCI_LAYER, "digest": format!("sha256:{l}"), "size": self.layer_size(l)?})))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": format!("sha256:{}", image.id), "size": image.config_json.len()},
            "layers": layers,
        });
        Ok(m.to_string().into_bytes())
    }

    /// The OCI layout's small files: (path, bytes), and the layers to add as blobs.
    fn oci_files(&self) -> Result<Layout, StoreError> {
        let mut files = vec![(
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        )];
        let mut descriptors = Vec::new();
        let mut layers = Vec::new();
        for (image, names) in self.images {
            let manifest = self.oci_manifest(image)?;
            let digest = hex(&Sha256::digest(&manifest));
            let mut desc = json!({"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{digest}"), "size": manifest.len()});
            if let Some(name) = names.first() {
                desc["annotations"] = json!({ REF_NAME: name });
            }
            descriptors.push(desc);
            files.push((format!("blobs/sha256/{digest}"), manifest));
            files.push((
                format!("blobs/sha256/{}", image.id),
                image.config_json.clone().into_bytes(),
            ));
            for l in &image.layers {
                if !layers.contains(l) {
                    layers.push(l.clone());
                }
            }
        }
        let index = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": descriptors});
        files.push(("index.json".to_string(), index.to_string().into_bytes()));
        Ok((files, layers))
    }

    fn write_oci_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| StoreError::io("creating", &blobs, e))?;
        let (files, layers) = self.oci_files()?;
        for l in &layers {
            let path = blobs.join(l);
            let tmp = blobs.join(format!(".{l}.tmp"));
            let result = (|| {
                let mut w =
                    io::BufWriter::new(File::create(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?);
                tarsplit::rebuild(&self.store.paths.layers_dir().join(l), l, &mut w)?;
                w.flush().map_err(|e| StoreError::io("writing", &tmp, e))?;
                fs::rename(&tmp, &path).map_err(|e| StoreError::io("writing", &path, e))
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result?;
        }
        // index.json last: the layout is valid only once every blob is there.
        for (name, data) in files {
            let path = dir.join(&name);
            fs::write(&path, data).map_err(|e| StoreError::io("writing", &path, e))?;
        }
        Ok(())
    }

    fn write_archive(&self, format: ArchiveFormat, out: &mut dyn Write) -> Result<(), StoreError> {
        let mut tar = tar::Builder::new(out);
        let werr = |e: io::Error| StoreError::io("writing", Path::new("the archive"), e);
        let ((files, layers), layer_name): (Layout, fn(&str) -> String) = match format {
            ArchiveFormat::DockerArchive => (self.docker_files()?, |l| format!("{l}.tar")),
            _ => {
                for d in ["blobs/", "blobs/sha256/"] {
                    let mut h = header(tar::EntryType::Directory, 0);
                    tar.append_data(&mut h, d, io::empty()).map_err(werr)?;
                }
                (self.oci_files()?, |l| format!("blobs/sha256/{l}"))
            }
        };
        for l in &layers {
            let size = self.layer_size(l)?;
            let mut h = header(tar::EntryType::Regular, size);
            h.set_path(layer_name(l)).map_err(werr)?;
            h.set_cksum();
            tar.get_mut().write_all(h.as_bytes()).map_err(werr)?;
            let written = tarsplit::rebuild(&self.store.paths.layers_dir().join(l), l, tar.get_mut())?;
            if written != size {
                return Err(StoreError::BadLayer(format!(
                    "layer {l}: size {written}, expected {size}"
                )));
            }
            let pad = (512 - size % 512) % 512;
            tar.get_mut().write_all(&vec![0u8; pad as usize]).map_err(werr)?;
        }
        for (name, data) in files {
            let mut h = header(tar::EntryType::Regular, data.len() as u64);
            tar.append_data(&mut h, &name, data.as_slice()).map_err(werr)?;
        }
        tar.finish().map_err(werr)?;
        Ok(())
    }

    /// `docker save`'s layout without the legacy per-layer directories: `<diff>.tar`,
    /// `<id>.json`, and manifest.json (one entry per image, names merged).
    fn docker_files(&self) -> Result<Layout, StoreError> {
        let mut files = Vec::new();
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut layers = Vec::new();
        for (image, names) in self.images {
            if let Some((_, entry)) = entries.iter_mut().find(|(id, _)| id == &image.id) {
                if let Some(tags) = entry["RepoTags"].as_array_mut() {
                    for n in names {
                        if !tags.contains(&json!(n)) {
                            tags.push(json!(n));
                        }
                    }
                }
                continue;
            }
            files.push((
                format!("{}.json", image.id),
                image.config_json.clone().into_bytes(),
            ));
            let entry = json!({
                "Config": format!("{}.json", image.id),
                "RepoTags": names,
                "Layers": image.layers.iter().map(|l| format!("{l}.tar")).collect::<Vec<_>>(),
            });
            entries.push((image.id.clone(), entry));
            for l in &image.layers {
                if !layers.contains(l) {
                    layers.push(l.clone());
                }
            }
        }
        let manifest: Vec<Value> = entries.into_iter().map(|(_, e)| e).collect();
        files.push((
            "manifest.json".to_string(),
            Value::from(manifest).to_string().into_bytes(),
        ));
        Ok((files, layers))
    }
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}
