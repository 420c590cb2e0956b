//! Manifests: OCI image manifests and indexes, Docker v2 schema 2 manifests and
//! manifest lists; schema 1 is refused.

use serde_json::Value;

use crate::client::{read_small, status_error, Body, Client};
use crate::{sha256_digest, RegistryError, Result};

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const MANIFEST_LIMIT: u64 = 4 << 20;

/// One layer (or config) of a manifest.
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A single-platform image manifest, as fetched.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    pub digest: String,
    pub raw: Vec<u8>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// `os/arch[/variant]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(RegistryError::Config(format!(
                "invalid platform {s:?}: expected OS/ARCH[/VARIANT]"
            ))),
        }
    }

    /// This machine's.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            arch: crate::go_arch().into(),
            variant: None,
        }
    }
}

fn descriptor(v: &Value, what: &str) -> Result<Descriptor> {
    let digest = v["digest"].as_str().unwrap_or_default();
    if !digest.starts_with("sha256:")
        || digest.len() != 71
        || !digest[7..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(RegistryError::Manifest(format!(
            "{what}: unsupported or invalid digest {digest:?}"
        )));
    }
    Ok(Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: digest.to_string(),
        size: v["size"]
            .as_u64()
            .ok_or_else(|| RegistryError::Manifest(format!("{what}: descriptor without a size")))?,
    })
}

/// The digest of manifest `reference` (tag or digest) of `repo` as the registry gives it
/// to a HEAD request (the index's for a multi-platform image): nothing is downloaded.
pub fn head_digest(client: &Client, repo: &str, reference: &str) -> Result<String> {
    if reference.starts_with("sha256:") {
        return Ok(reference.to_string());
    }
    let resp = request(client, "HEAD", repo, reference)?;
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_string)
        .ok_or_else(|| {
            RegistryError::Manifest(format!(
                "{}/{repo}:{reference}: the registry gave no Docker-Content-Digest",
                client.registry
            ))
        })
}

/// Asks for manifest `reference` of `repo` (`method`: HEAD or GET) in any of the formats we
/// read; a missing manifest and any other failure are errors.
fn request(
    client: &Client,
    method: &str,
    repo: &str,
    reference: &str,
) -> Result<ureq::http::Response<ureq::Body>> {
    let accept = [MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST].join(", ");
    let resp = client.send(
        method,
        &format!("/v2/{repo}/manifests/{reference}"),
        &format!("repository:{repo}:pull"),
        &[("Accept", &accept)],
        Body::Empty,
    )?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Err(RegistryError::ManifestUnknown {
            what: format!("{}/{repo}:{reference}", client.registry),
            reference: reference.to_string(),
            repository: format!("{}/{repo}", client.registry),
        });
    }
    if !(200..300).contains(&status) {
        let verb = if method == "HEAD" { "checking" } else { "fetching" };
        return Err(status_error(
            &format!("{verb} manifest {}/{repo}:{reference}", client.registry),
            resp,
        ));
    }
    Ok(resp)
}

/// Fetches the manifest `reference` (tag or digest) of `repo`, checking its digest
/// when the reference or the registry gives one. Returns (media type, digest, bytes).
pub fn fetch_raw(client: &Client, repo: &str, reference: &str) -> Result<(String, String, Vec<u8>)> {
    let resp = request(client, "GET", repo, reference)?;
    let header_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let header_digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let raw = read_small(resp, MANIFEST_LIMIT)
        .map_err(|e| RegistryError::Io(format!("reading manifest {repo}:{reference}: {e}")))?;
    let digest = sha256_digest(&raw);
    let expected = if reference.starts_with("sha256:") {
        Some(reference.to_string())
    } else {
        header_digest.filter(|d| d.starts_with("sha256:"))
    };
    if let Some(e) = expected {
        if e != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {}/{repo}:{reference}", client.registry),
                expected: e,
                got: digest,
            });
        }
    }
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| RegistryError::Manifest(format!("manifest {repo}:{reference}: invalid JSON: {e}")))?;
    let media_type = v["mediaType"].as_str().map(str::to_string).unwrap_or(header_type);
    if v["schemaVersion"].as_u64() == Some(1)
        || media_type.starts_with("application/vnd.docker.distribution.manifest.v1")
    {
        return Err(RegistryError::Manifest(format!(
            "{}/{repo}:{reference} is a Docker schema 1 image, which burrow does not support: \
             push it again with a current tool (schema 2 or OCI)",
            client.registry
        )));
    }
    // Without a media type, tell an index by its `manifests`.
    let media_type = if media_type.is_empty() {
        if v.get("manifests").is_some() {
            MT_OCI_INDEX.to_string()
        } else {
            MT_OCI_MANIFEST.to_string()
        }
    } else {
        media_type
    };
    Ok((media_type, digest, raw))
}

/// The image manifest for `platform`: `reference` itself, or its entry in an index.
/// Returns the manifest and, for an index, the index's digest.
pub fn fetch_image(
    client: &Client,
    repo: &str,
    reference: &str,
    platform: &Platform,
) -> Result<(ImageManifest, Option<String>)> {
    let (media_type, digest, raw) = fetch_raw(client, repo, reference)?;
    if media_type == MT_OCI_INDEX || media_type == MT_DOCKER_LIST {
        let v: Value = serde_json::from_slice(&raw).expect("parsed before");
        let chosen = select_platform(&v, platform)?;
        let (mt, d, raw) = fetch_raw(client, repo, &chosen)?;
        if mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST {
            return Err(RegistryError::Manifest(format!(
                "{repo}@{d}: an index inside an index"
            )));
        }
        return Ok((parse_image(mt, d, raw)?, Some(digest)));
    }
    Ok((parse_image(media_type, digest, raw)?, None))
}

fn parse_image(media_type: String, digest: String, raw: Vec<u8>) -> Result<ImageManifest> {
    if media_type != MT_OCI_MANIFEST && media_type != MT_DOCKER_MANIFEST {
        return Err(RegistryError::Manifest(format!(
            "manifest {digest}: unsupported media type {media_type:?}"
        )));
    }
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| RegistryError::Manifest(format!("manifest {digest}: invalid JSON: {e}")))?;
    let config = descriptor(&v["config"], "config")?;
    if !config.media_type.is_empty()
        && config.media_type != MT_OCI_CONFIG
        && config.media_type != MT_DOCKER_CONFIG
    {
        return Err(RegistryError::Manifest(format!(
            "manifest {digest} is not a container image (its config is {:?})",
            config.media_type
        )));
    }
    let layers = v["layers"]
        .as_array()
        .ok_or_else(|| RegistryError::Manifest(format!("manifest {digest}: no layers")))?
        .iter()
        .enumerate()
        .map(|(i, l)| descriptor(l, &format!("layer {i}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(ImageManifest {
        digest,
        raw,
        config,
        layers,
    })
}

/// The digest of the index entry for `platform` (variant matched when given).
fn select_platform(index: &Value, platform: &Platform) -> Result<String> {
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    for m in &entries {
        let p = &m["platform"];
        let os = p["os"].as_str().unwrap_or("");
        let arch = p["architecture"].as_str().unwrap_or("");
        let variant = p["variant"].as_str();
        if os == platform.os
            && arch == platform.arch
            && platform.variant.as_deref().is_none_or(|v| Some(v) == variant)
        {
            return Ok(descriptor(m, "index entry")?.digest);
        }
    }
    Err(RegistryError::Manifest(format!(
        "choosing image instance: no image found in manifest list for architecture {:?}, variant {:?}, OS {:?}",
        platform.arch,
        platform.variant.as_deref().unwrap_or(""),
        platform.os
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_the_platform() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({"manifests": [
            {"digest": d('a'), "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": d('b'), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        assert_eq!(
            select_platform(&index, &Platform::parse("linux/amd64").unwrap()).unwrap(),
            d('b')
        );
        assert_eq!(
            select_platform(&index, &Platform::parse("linux/arm64/v8").unwrap()).unwrap(),
            d('a')
        );
        let e = select_platform(&index, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"s390x\""), "{e}");
        assert!(Platform::parse("linux").is_err());
    }
}

#[cfg(test)]
mod wire_tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::client::ClientOptions;

    /// A one-connection-per-request HTTP server answering `/v2/` and one manifest.
    fn serve(manifest: &'static str, media_type: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            // The client tries TLS first (insecure: then plain HTTP): skip what is not HTTP.
            for conn in listener.incoming().take(6).flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() || !first.starts_with("GET ") {
                    continue;
                }
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).map_or(true, |n| n == 0) || l == "\r\n" {
                        break;
                    }
                }
                let body = if first.contains("/manifests/") {
                    manifest
                } else {
                    "{}"
                };
                let mut out = conn;
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        port
    }

    #[test]
    fn refuses_schema1_with_a_clear_error() {
        let port = serve(
            r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[],"history":[]}"#,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        );
        let client =
            Client::connect(&format!("127.0.0.1:{port}"), true, &ClientOptions::default(), "x").unwrap();
        let e = fetch_image(&client, "x", "1", &Platform::host()).unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
    }
}
