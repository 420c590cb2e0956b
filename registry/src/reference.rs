//! Image references: `registry/repository[:tag][@digest]`, and whether a name names its
//! registry (Podman's rule: the first component has a `.` or `:`, or is `localhost`).

use crate::{RegistryError, Result};

/// A fully qualified reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// `library/busybox`
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Whether `name` starts with a registry.
pub fn is_qualified(name: &str) -> bool {
    let name = name.strip_prefix("docker://").unwrap_or(name);
    match name.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

impl Reference {
    /// Parses a qualified name (`docker://` prefix allowed), normalised as Podman does
    /// (`library/` for Docker Hub, `:latest` when neither tag nor digest is given).
    pub fn parse(name: &str) -> Result<Reference> {
        let name = name.strip_prefix("docker://").unwrap_or(name);
        if !is_qualified(name) {
            return Err(RegistryError::BadReference(name.to_string()));
        }
        let full = burrow_storage::normalize_name(name)
            .map_err(|_| RegistryError::BadReference(name.to_string()))?;
        let (rest, digest) = match full.split_once('@') {
            Some((r, d)) => (r.to_string(), Some(d.to_string())),
            None => (full.clone(), None),
        };
        let (registry, path) = rest.split_once('/').expect("a qualified name has a registry");
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) => (r.to_string(), Some(t.to_string())),
            None => (path.to_string(), None),
        };
        if let Some(d) = &digest {
            if !d.starts_with("sha256:") || d.len() != 71 {
                return Err(RegistryError::BadReference(format!(
                    "{name}: only sha256 digests are supported"
                )));
            }
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest if there is one, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The name the store records: `registry/repository:tag` (or `@digest` when untagged).
    pub fn store_name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}/{}:{t}", self.registry, self.repository),
            (None, Some(d)) => format!("{}/{}@{d}", self.registry, self.repository),
            (None, None) => format!("{}/{}:latest", self.registry, self.repository),
        }
    }

    /// `registry/repository`, the key registries.conf and auth.json match on.
    pub fn repo_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// A copy with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.store_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qualified_names() {
        let r = Reference::parse("127.0.0.1:5000/a/b:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("1"))
        );
        let r = Reference::parse("docker://docker.io/busybox").unwrap();
        assert_eq!(r.store_name(), "docker.io/library/busybox:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost/x@{d}")).unwrap();
        assert_eq!((r.tag.clone(), r.manifest_ref()), (None, d.as_str()));
        assert!(Reference::parse("busybox").is_err());
        assert!(Reference::parse("Host.io/X").is_err());
        assert!(is_qualified("localhost/x") && is_qualified("a.b/c") && !is_qualified("user/app"));
    }
}
