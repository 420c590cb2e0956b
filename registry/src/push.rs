//! `push`: a stored image to a registry. Each layer's tar is rebuilt from the store,
//! compressed and uploaded as one stream (chunked PATCH), hashed on the way, and then
//! committed with its digest. A layer the destination has already, or can mount from
//! another repository of the same registry, is not uploaded.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use burrow_storage::{Image, LayerDir, Store};
use sha2::{Digest, Sha256};

use crate::client::{status_error, Body, Client, ClientOptions};
use crate::conf::RegistriesConf;
use crate::manifest::*;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::{sha256_digest, RegistryError, Result};

const PARALLEL: usize = 3;

/// A layer's blob at the destination: (digest, size).
type Pushed = Result<(String, u64)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    V2s2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

pub struct PushOptions {
    pub client: ClientOptions,
    pub format: Format,
    pub compression: LayerCompression,
}

fn layer_media_type(format: Format, c: LayerCompression) -> Result<&'static str> {
    match (format, c) {
        (Format::Oci, LayerCompression::Gzip) => Ok(MT_OCI_LAYER_GZIP),
        (Format::Oci, LayerCompression::Zstd) => Ok(MT_OCI_LAYER_ZSTD),
        (Format::V2s2, LayerCompression::Gzip) => Ok(MT_DOCKER_LAYER_GZIP),
        (Format::V2s2, LayerCompression::Zstd) => Err(RegistryError::Config(
            "zstd compression is not supported with the v2s2 format: use --format oci".into(),
        )),
    }
}

/// Hashes and counts what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Whether `repo` of the registry has blob `digest`.
fn has_blob(client: &Client, repo: &str, digest: &str, scope: &str) -> Result<bool> {
    let resp = client.send(
        "HEAD",
        &format!("/v2/{repo}/blobs/{digest}"),
        scope,
        &[],
        Body::Empty,
    )?;
    Ok(resp.status().as_u16() == 200)
}

/// Starts an upload session (or mounts `mount` = (digest, from-repo)): the Location to
/// send the data to, or `None` when the mount succeeded.
fn start_upload(
    client: &Client,
    repo: &str,
    scope: &str,
    mount: Option<(&str, &str)>,
) -> Result<Option<String>> {
    let path = match mount {
        Some((d, from)) => format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"),
        None => format!("/v2/{repo}/blobs/uploads/"),
    };
    let resp = client.send("POST", &path, scope, &[], Body::Empty)?;
    match resp.status().as_u16() {
        201 if mount.is_some() => Ok(None),
        202 => location(&resp).map(Some),
        _ => Err(status_error(
            &format!("starting an upload to {}/{repo}", client.registry),
            resp,
        )),
    }
}

fn location(resp: &ureq::http::Response<ureq::Body>) -> Result<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| RegistryError::Other("the registry's upload response has no Location".into()))
}

fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// Uploads a small blob in one request.
fn upload_bytes(client: &Client, repo: &str, scope: &str, data: &[u8]) -> Result<String> {
    let digest = sha256_digest(data);
    if has_blob(client, repo, &digest, scope)? {
        return Ok(digest);
    }
    let loc = start_upload(client, repo, scope, None)?.expect("no mount was asked");
    let len = data.len().to_string();
    let resp = client.send(
        "PUT",
        &with_digest(&loc, &digest),
        scope,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", &len),
        ],
        Body::Bytes(data),
    )?;
    if resp.status().as_u16() != 201 {
        return Err(status_error(&format!("uploading blob {digest}"), resp));
    }
    Ok(digest)
}

/// Compresses layer `id` on a helper thread and streams it up; returns (digest, size).
fn upload_layer(
    client: &Client,
    repo: &str,
    scope: &str,
    layers: &LayerDir,
    id: &str,
    compression: LayerCompression,
    progress: &crate::progress::Item,
) -> Result<(String, u64)> {
    let loc = start_upload(client, repo, scope, None)?.expect("no mount was asked");
    let (reader, writer) = std::io::pipe().map_err(|e| RegistryError::Io(format!("pipe: {e}")))?;
    let mut body = Hashing {
        inner: progress.reader(reader),
        hasher: Sha256::new(),
        size: 0,
    };
    let (sent, produced) = std::thread::scope(|s| {
        let producer = s.spawn(move || -> Result<()> {
            let w = std::io::BufWriter::with_capacity(1 << 17, writer);
            let err = |e: std::io::Error| RegistryError::Io(format!("compressing layer {id}: {e}"));
            match compression {
                LayerCompression::Gzip => {
                    let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
                    layers.write_tar(id, &mut gz)?;
                    gz.finish().map_err(err)?.flush().map_err(err)?;
                }
                LayerCompression::Zstd => {
                    let mut z = zstd::stream::write::Encoder::new(w, 3).map_err(err)?;
                    layers.write_tar(id, &mut z)?;
                    z.finish().map_err(err)?.flush().map_err(err)?;
                }
            }
            Ok(())
        });
        let sent = client.send(
            "PATCH",
            &loc,
            scope,
            &[("Content-Type", "application/octet-stream")],
            Body::Reader(&mut body),
        );
        // Unblock the producer if the upload stopped reading.
        let mut rest = std::io::sink();
        let _ = std::io::copy(&mut body, &mut rest);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(RegistryError::Other("compression thread panicked".into())));
        (sent, produced)
    });
    produced?;
    let resp = sent?;
    if resp.status().as_u16() != 202 {
        return Err(status_error(&format!("uploading layer {id}"), resp));
    }
    let loc = location(&resp)?;
    let digest = format!("sha256:{}", burrow_storage::layers::hex(&body.hasher.finalize()));
    let resp = client.send(
        "PUT",
        &with_digest(&loc, &digest),
        scope,
        &[("Content-Length", "0")],
        Body::Empty,
    )?;
    if resp.status().as_u16() != 201 {
        return Err(status_error(&format!("committing layer {id}"), resp));
    }
    Ok((digest, body.size))
}

/// The compressed blobs the image was pulled or loaded with, per layer, when they are
/// compressed as asked: they may already be at the destination (or mountable).
fn known_blobs(store: &Store, image: &Image, compression: LayerCompression) -> Vec<Option<(String, u64)>> {
    let want = match compression {
        LayerCompression::Gzip => "gzip",
        LayerCompression::Zstd => "zstd",
    };
    let manifest = store
        .image_manifest(&image.id)
        .ok()
        .flatten()
        .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok());
    let layers = manifest
        .as_ref()
        .and_then(|m| m["layers"].as_array().cloned())
        .unwrap_or_default();
    if layers.len() != image.layers.len() {
        return vec![None; image.layers.len()];
    }
    layers
        .iter()
        .map(|l| {
            let mt = l["mediaType"].as_str().unwrap_or("");
            let d = l["digest"].as_str()?;
            let size = l["size"].as_u64()?;
            mt.ends_with(want).then(|| (d.to_string(), size))
        })
        .collect()
}

/// Pushes `image` to `dest`; returns the manifest's digest.
pub fn push(
    store: &Store,
    conf: &RegistriesConf,
    image: &Image,
    dest: &Reference,
    opts: &PushOptions,
    progress: &Progress,
) -> Result<String> {
    let media_type = layer_media_type(opts.format, opts.compression)?;
    let endpoint = conf
        .endpoints(dest, opts.client.tls_verify, true)?
        .pop()
        .expect("one endpoint for a push");
    let client = Client::connect(
        &endpoint.registry,
        endpoint.insecure,
        &opts.client,
        &format!("{}/{}", endpoint.registry, endpoint.repository),
    )?;
    let repo = &endpoint.repository;
    let scope = format!("repository:{repo}:pull,push");
    client.authorize(&scope)?;
    progress.say("Getting image source signatures");
    let known = known_blobs(store, image, opts.compression);
    // Repositories of the same registry the image came from: mount sources.
    let mount_from: Vec<String> = image
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .filter(|r| r.registry == endpoint.registry && &r.repository != repo)
        .map(|r| r.repository)
        .collect();
    let layers = store.layer_dir_handle();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Pushed>>> = image.layers.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= image.layers.len() {
            break;
        }
        let id = &image.layers[i];
        let result = (|| -> Result<(String, u64)> {
            if let Some((digest, size)) = &known[i] {
                if has_blob(&client, repo, digest, &scope)? {
                    progress
                        .item("blob", digest, None)
                        .done("skipped: already exists");
                    return Ok((digest.clone(), *size));
                }
                for from in &mount_from {
                    if start_upload(&client, repo, &scope, Some((digest, from)))?.is_none() {
                        progress.item("blob", digest, None).done("skipped: mounted");
                        return Ok((digest.clone(), *size));
                    }
                }
            }
            let item = progress.item("blob", id, None);
            let r = upload_layer(&client, repo, &scope, &layers, id, opts.compression, &item);
            item.done(if r.is_ok() { "done" } else { "failed" });
            r
        })();
        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    };
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(image.layers.len()).max(1) {
            s.spawn(work);
        }
    });
    let mut descriptors = Vec::new();
    for slot in results {
        let (digest, size) = slot
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every layer ran")?;
        descriptors.push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
    }
    let config = image.config_json.as_bytes();
    let config_digest = upload_bytes(&client, repo, &scope, config)?;
    progress.item("config", &config_digest, None).done("done");
    progress.say("Writing manifest to image destination");
    let (manifest_type, config_type) = match opts.format {
        Format::Oci => (MT_OCI_MANIFEST, MT_OCI_CONFIG),
        Format::V2s2 => (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG),
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    });
    let raw = serde_json::to_vec(&manifest).expect("JSON values serialize");
    let digest = sha256_digest(&raw);
    let tag = dest.tag.clone().unwrap_or_else(|| "latest".into());
    let resp = client.send(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &scope,
        &[("Content-Type", manifest_type)],
        Body::Bytes(&raw),
    )?;
    if resp.status().as_u16() != 201 {
        return Err(status_error(&format!("writing manifest to {dest}"), resp));
    }
    Ok(digest)
}
