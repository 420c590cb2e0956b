//! burrow's registry client: pull and push by the OCI distribution spec, with the
//! anonymous, bearer-token and basic auth flows, TLS with the system roots plus
//! per-registry `certs.d`, and the configuration files Podman and skopeo share
//! (`registries.conf`, `auth.json`), so credentials and settings are the same for all.
//!
//! Blobs stream from the network into the store's ingest path ([`burrow_storage::LayerStager`]):
//! hashed, decompressed and extracted on the fly, never kept whole in memory or on disk.

pub mod auth;
mod client;
pub mod conf;
mod manifest;
mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod search;

pub use client::{Client, ClientOptions};
pub use progress::Progress;
pub use reference::Reference;

use burrow_storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("invalid reference format: {0:?}")]
    BadReference(String),
    #[error("pinging container registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("{url}: {detail}")]
    Http { url: String, detail: String },
    #[error("{what}: unexpected HTTP status {status}{}", body_text(body))]
    Status { what: String, status: u16, body: String },
    #[error("{registry}: authentication required")]
    Unauthorized { registry: String },
    #[error("logging into {0:?}: invalid username/password")]
    BadCredentials(String),
    #[error("{what}: reading manifest {reference} in {repository}: manifest unknown")]
    ManifestUnknown {
        what: String,
        reference: String,
        repository: String,
    },
    #[error("{0}")]
    Manifest(String),
    #[error("{what}: digest mismatch: expected {expected}, got {got}")]
    DigestMismatch {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Other(String),
}

fn body_text(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(" ({})", t.chars().take(200).collect::<String>())
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// `linux/<arch>` of this machine in Go's names, as image platforms use them.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        burrow_storage::layers::hex(&sha2::Sha256::digest(data))
    )
}
