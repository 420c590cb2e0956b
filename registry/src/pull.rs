//! `pull`: resolve the name (registries.conf), fetch the manifest for the platform, then
//! the config, then the layers the store lacks, several at once, each streamed from the
//! network through its digest check into extraction. The image is recorded only when
//! every layer is good.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use burrow_storage::{BlobCheck, IdLimits, Image, IngestedLayer, Store, StoreError};

use crate::client::{read_small, status_error, Body, Client, ClientOptions};
use crate::conf::{Endpoint, RegistriesConf};
pub use crate::manifest::Platform;
use crate::manifest::{self, Descriptor, ImageManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::{sha256_digest, RegistryError, Result};

/// Layers fetched at once. Podman uses 6; with 2 cores decompression is the limit.
const PARALLEL: usize = 4;
const CONFIG_LIMIT: u64 = 32 << 20;

#[derive(Clone)]
pub struct PullOptions {
    pub client: ClientOptions,
    pub platform: Option<Platform>,
    pub all_tags: bool,
    pub limits: IdLimits,
    /// `--pull=newer`: a local image (id) and its digests. When the registry's digest for
    /// the name (asked with a HEAD request) is one of them, nothing is downloaded and that
    /// image is the result.
    pub newer_than: Option<(String, Vec<String>)>,
}

/// Pulls `name`; returns the images stored (one, or one per tag with `all_tags`).
pub fn pull(
    store: &mut Store,
    conf: &RegistriesConf,
    name: &str,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Vec<Image>> {
    let candidates = conf.resolve(name)?;
    let mut errors: Vec<RegistryError> = Vec::new();
    for reference in &candidates {
        let tagged = name.rsplit('/').next().is_some_and(|last| last.contains(':'));
        if opts.all_tags && (reference.digest.is_some() || tagged) {
            return Err(RegistryError::Config(
                "tag can't be used with --all-tags/-a".into(),
            ));
        }
        match pull_reference(store, conf, reference, opts, progress) {
            Ok(images) => return Ok(images),
            Err(e) => errors.push(e),
        }
    }
    if errors.len() == 1 {
        return Err(errors.remove(0));
    }
    Err(RegistryError::Other(format!(
        "{name}: pulling from every candidate failed: {}",
        candidates
            .iter()
            .zip(&errors)
            .map(|(r, e)| format!("{r}: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

fn pull_reference(
    store: &mut Store,
    conf: &RegistriesConf,
    reference: &Reference,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Vec<Image>> {
    let endpoints = conf.endpoints(reference, opts.client.tls_verify, false)?;
    let mut last = None;
    for endpoint in &endpoints {
        let result = (|| {
            let client = Client::connect(
                &endpoint.registry,
                endpoint.insecure,
                &opts.client,
                &format!("{}/{}", endpoint.registry, endpoint.repository),
            )?;
            if opts.all_tags {
                let tags = list_tags(&client, &endpoint.repository)?;
                let mut images = Vec::new();
                for tag in tags {
                    let r = reference.with_tag(&tag);
                    progress.say(&format!("Trying to pull {r}..."));
                    images.push(pull_one(store, &client, endpoint, &r, opts, progress)?);
                }
                return Ok(images);
            }
            progress.say(&format!("Trying to pull {reference}..."));
            Ok(vec![pull_one(
                store, &client, endpoint, reference, opts, progress,
            )?])
        })();
        match result {
            Ok(images) => return Ok(images),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("there is at least one endpoint"))
}

/// The tags of `repo`.
pub fn list_tags(client: &Client, repo: &str) -> Result<Vec<String>> {
    let resp = client.send(
        "GET",
        &format!("/v2/{repo}/tags/list"),
        &format!("repository:{repo}:pull"),
        &[],
        Body::Empty,
    )?;
    if resp.status().as_u16() != 200 {
        return Err(status_error(
            &format!("listing the tags of {}/{repo}", client.registry),
            resp,
        ));
    }
    let body = read_small(resp, 16 << 20).map_err(|e| RegistryError::Io(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| RegistryError::Other(format!("tags of {repo}: {e}")))?;
    Ok(v["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default())
}

/// A blob's body, once its status is checked.
pub(crate) fn blob_reader(client: &Client, repo: &str, digest: &str) -> Result<impl Read + Send + 'static> {
    let resp = client.send(
        "GET",
        &format!("/v2/{repo}/blobs/{digest}"),
        &format!("repository:{repo}:pull"),
        &[],
        Body::Empty,
    )?;
    if resp.status().as_u16() != 200 {
        return Err(status_error(
            &format!("fetching blob {digest} of {}/{repo}", client.registry),
            resp,
        ));
    }
    Ok(resp.into_body().into_reader())
}

fn fetch_config(client: &Client, repo: &str, config: &Descriptor) -> Result<Vec<u8>> {
    if config.size > CONFIG_LIMIT {
        return Err(RegistryError::Manifest(format!(
            "config {} is too large ({} bytes)",
            config.digest, config.size
        )));
    }
    let mut data = Vec::new();
    blob_reader(client, repo, &config.digest)?
        .take(CONFIG_LIMIT + 1)
        .read_to_end(&mut data)
        .map_err(|e| RegistryError::Io(format!("reading config {}: {e}", config.digest)))?;
    let got = sha256_digest(&data);
    if got != config.digest {
        return Err(RegistryError::DigestMismatch {
            what: format!("config {}", config.digest),
            expected: config.digest.clone(),
            got,
        });
    }
    Ok(data)
}

/// Stops a transfer when another one failed.
struct Abortable<'a, R> {
    inner: R,
    failed: &'a AtomicBool,
}

impl<R: Read> Read for Abortable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("cancelled: another layer failed"));
        }
        self.inner.read(buf)
    }
}

fn pull_one(
    store: &mut Store,
    client: &Client,
    endpoint: &Endpoint,
    reference: &Reference,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Image> {
    let repo = &endpoint.repository;
    if let Some((local, digests)) = &opts.newer_than {
        let remote = manifest::head_digest(client, repo, reference.manifest_ref())?;
        if digests.contains(&remote) {
            return Ok(store.image(local)?);
        }
    }
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let (manifest, index) = manifest::fetch_image(client, repo, reference.manifest_ref(), &platform)?;
    progress.say("Getting image source signatures");
    let config = fetch_config(client, repo, &manifest.config)?;
    let config_text = String::from_utf8(config).map_err(|_| {
        RegistryError::Manifest(format!("config {} is not UTF-8 JSON", manifest.config.digest))
    })?;
    let diff_ids = diff_ids(&config_text, &manifest)?;
    // A layer is fetched once even if the image lists it twice, and never if stored.
    let mut jobs: Vec<(usize, &Descriptor)> = Vec::new();
    let mut claimed = Vec::new();
    for (i, layer) in manifest.layers.iter().enumerate() {
        let id = diff_ids[i].trim_start_matches("sha256:");
        let seen = |j: &usize| diff_ids[*j] == diff_ids[i];
        if jobs.iter().any(|(j, _)| seen(j)) || claimed.iter().any(|(j, _)| seen(j)) {
            continue;
        }
        if store.has_layer(id)? {
            progress
                .item("blob", &layer.digest, Some(layer.size))
                .done("skipped: already exists");
            continue;
        }
        // Verified by a pull that was killed before recording the image.
        if let Some(layer_files) = store.layer_dir_handle().claim_parked(id)? {
            progress
                .item("blob", &layer.digest, Some(layer.size))
                .done("skipped: already exists");
            claimed.push((i, layer_files));
            continue;
        }
        jobs.push((i, layer));
    }
    let mut staged = fetch_layers(store, client, repo, &jobs, &diff_ids, opts.limits, progress)?;
    staged.extend(claimed.into_iter().map(|(_, l)| l));
    progress
        .item("config", &manifest.config.digest, Some(manifest.config.size))
        .done("done");
    progress.say("Writing manifest to image destination");
    let raw = String::from_utf8(manifest.raw.clone())
        .map_err(|_| RegistryError::Manifest(format!("manifest {} is not UTF-8", manifest.digest)))?;
    let names = [reference.store_name()];
    let image = commit(
        store,
        client,
        repo,
        &manifest,
        staged,
        &diff_ids,
        &config_text,
        &names,
        &raw,
        opts,
        progress,
    )?;
    if let Some(index) = &index {
        store.set_index_digest(&image.id, Some(index))?;
    }
    Ok(store.image(&image.id)?)
}

/// Records the image, fetching again what an `rmi` took meanwhile.
#[allow(clippy::too_many_arguments)]
fn commit(
    store: &mut Store,
    client: &Client,
    repo: &str,
    manifest: &ImageManifest,
    staged: Vec<IngestedLayer>,
    diff_ids: &[String],
    config_text: &str,
    names: &[String],
    raw: &str,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Image> {
    match store.commit_image(staged, diff_ids, config_text, names, (&manifest.digest, raw)) {
        Ok(image) => Ok(image),
        // An `rmi` took a layer we found present: fetch what is missing now.
        Err(StoreError::LayerGone(_)) => {
            let jobs: Vec<(usize, &Descriptor)> = manifest
                .layers
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    !store
                        .has_layer(diff_ids[*i].trim_start_matches("sha256:"))
                        .unwrap_or(false)
                })
                .collect();
            let staged = fetch_layers(store, client, repo, &jobs, diff_ids, opts.limits, progress)?;
            Ok(store.commit_image(staged, diff_ids, config_text, names, (&manifest.digest, raw))?)
        }
        Err(e) => Err(e.into()),
    }
}

fn diff_ids(config: &str, manifest: &ImageManifest) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(config).map_err(|e| {
        RegistryError::Manifest(format!("config {}: invalid JSON: {e}", manifest.config.digest))
    })?;
    let ids: Vec<String> = v["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if ids.len() != manifest.layers.len() {
        return Err(RegistryError::Manifest(format!(
            "image {}: the config lists {} layers, the manifest {}",
            manifest.digest,
            ids.len(),
            manifest.layers.len()
        )));
    }
    if let Some(bad) = ids.iter().find(|d| !d.starts_with("sha256:") || d.len() != 71) {
        return Err(RegistryError::Manifest(format!(
            "config {}: invalid diff_id {bad:?}",
            manifest.config.digest
        )));
    }
    Ok(ids)
}

/// Downloads and stages `jobs` (index into the manifest's layers), `PARALLEL` at once.
/// The first failure (in layer order) is returned; the other transfers stop early.
fn fetch_layers(
    store: &Store,
    client: &Client,
    repo: &str,
    jobs: &[(usize, &Descriptor)],
    diff_ids: &[String],
    limits: IdLimits,
    progress: &Progress,
) -> Result<Vec<IngestedLayer>> {
    let layers = store.layer_dir_handle();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<IngestedLayer>>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let items: Vec<_> = jobs
        .iter()
        .map(|(_, d)| Mutex::new(Some(progress.item("blob", &d.digest, Some(d.size)))))
        .collect();
    let work = || loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= jobs.len() || failed.load(Ordering::Relaxed) {
            break;
        }
        let (i, desc) = jobs[k];
        let item = items[k]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("each job runs once");
        let result = blob_reader(client, repo, &desc.digest).and_then(|body| {
            let check = BlobCheck {
                what: format!("blob {}", desc.digest),
                digest: Some(desc.digest.clone()),
                size: Some(desc.size),
                diff_id: diff_ids[i].clone(),
            };
            let reader = Abortable {
                inner: item.reader(body),
                failed: &failed,
            };
            layers.stage(reader, &check, limits).map_err(|e| match e {
                StoreError::DigestMismatch { what, expected, got } => {
                    RegistryError::DigestMismatch { what, expected, got }
                }
                e => e.into(),
            })
        });
        match &result {
            Ok(_) => item.done("done"),
            Err(_) => {
                failed.store(true, Ordering::Relaxed);
                item.done("failed");
            }
        }
        *results[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    };
    let threads = PARALLEL.min(jobs.len());
    if threads <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    let mut staged = Vec::new();
    let mut first_err = None;
    for slot in results {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(l)) => staged.push(l),
            // A cancelled transfer only echoes the real failure.
            Some(Err(e))
                if first_err.is_none() && !e.to_string().contains("cancelled: another layer failed") =>
            {
                first_err = Some(e)
            }
            _ => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None if staged.len() == jobs.len() => Ok(staged),
        None => Err(RegistryError::Other("a layer transfer was cancelled".into())),
    }
}
