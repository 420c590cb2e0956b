//! `registries.conf` (version 2, TOML) as Podman reads it: the user's
//! `$XDG_CONFIG_HOME/containers/registries.conf` (else `~/.config/...`) instead of
//! `/etc/containers/registries.conf`, then the drop-ins of `registries.conf.d/` (system,
//! then user) over it; `CONTAINERS_REGISTRIES_CONF` names the one file to read instead.
//! Also where per-registry certificates live (`certs.d`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::{is_qualified, Reference};
use crate::{RegistryError, Result};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    registry: Vec<RegistryEntry>,
}

/// One `[[registry]]` table.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RegistryEntry {
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Mirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

/// The merged configuration.
#[derive(Debug, Default, Clone)]
pub struct RegistriesConf {
    pub search: Vec<String>,
    pub aliases: BTreeMap<String, String>,
    pub registries: Vec<RegistryEntry>,
}

/// Where to reach a repository: `host[:port]/path` and whether plain HTTP or an
/// unverified certificate is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub registry: String,
    pub repository: String,
    pub insecure: bool,
}

fn config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
}

/// The user's `containers` config directory.
pub fn user_containers_dir() -> Option<PathBuf> {
    config_home().map(|c| c.join("containers"))
}

impl RegistriesConf {
    /// Reads the files Podman reads.
    pub fn load() -> Result<RegistriesConf> {
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|v| !v.is_empty()) {
            files.push(p.into());
        } else {
            let user = user_containers_dir();
            match user.as_ref().map(|d| d.join("registries.conf")) {
                Some(u) if u.exists() => files.push(u),
                _ => files.push("/etc/containers/registries.conf".into()),
            }
            for dir in [Some(PathBuf::from("/etc/containers")), user]
                .into_iter()
                .flatten()
                .map(|d| d.join("registries.conf.d"))
            {
                let mut dropins: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                            .collect()
                    })
                    .unwrap_or_default();
                dropins.sort();
                files.extend(dropins);
            }
        }
        let mut conf = RegistriesConf::default();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(RegistryError::Config(format!("reading {}: {e}", path.display()))),
            };
            conf.merge(&text)
                .map_err(|e| RegistryError::Config(format!("{}: {e}", path.display())))?;
        }
        Ok(conf)
    }

    /// Applies one file over what was read so far (later files win, key by key).
    pub fn merge(&mut self, text: &str) -> Result<(), String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
        if let Some(s) = file.unqualified_search_registries {
            self.search = s;
        }
        self.aliases.extend(file.aliases);
        for mut entry in file.registry {
            if entry.prefix.is_empty() {
                entry.prefix = entry.location.clone();
            }
            if entry.location.is_empty() {
                entry.location = entry.prefix.clone();
            }
            if entry.prefix.is_empty() {
                return Err("a [[registry]] needs a location or a prefix".into());
            }
            self.registries.retain(|r| r.prefix != entry.prefix);
            self.registries.push(entry);
        }
        Ok(())
    }

    /// The fully qualified names a name stands for, in the order to try: the name itself
    /// if qualified; an alias; else the name in each unqualified-search registry
    /// (`docker.io` when none is configured).
    pub fn resolve(&self, name: &str) -> Result<Vec<Reference>> {
        let name = name.strip_prefix("docker://").unwrap_or(name);
        if is_qualified(name) {
            return Ok(vec![Reference::parse(name)?]);
        }
        // The alias key is the name without tag or digest.
        let (base, suffix) = match name.find(['@', ':']) {
            Some(i) => (&name[..i], &name[i..]),
            None => (name, ""),
        };
        if let Some(target) = self.aliases.get(base) {
            return Ok(vec![Reference::parse(&format!("{target}{suffix}"))?]);
        }
        let search: Vec<String> = if self.search.is_empty() {
            vec!["docker.io".into()]
        } else {
            self.search.clone()
        };
        search
            .iter()
            .map(|r| Reference::parse(&format!("{r}/{name}")))
            .collect()
    }

    /// The `[[registry]]` whose prefix matches `reference` best (longest prefix).
    fn entry_for(&self, repo_path: &str) -> Option<&RegistryEntry> {
        self.registries
            .iter()
            .filter(|r| {
                let p = r.prefix.trim_end_matches('/');
                repo_path == p
                    || repo_path
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('/'))
                    || (p.starts_with("*.")
                        && repo_path.split('/').next().is_some_and(|h| h.ends_with(&p[1..])))
            })
            .max_by_key(|r| r.prefix.len())
    }

    /// Where to pull `reference` from, in order (mirrors first), or an error when the
    /// registry is blocked. `tls_verify`: the command's `--tls-verify`, if given.
    pub fn endpoints(
        &self,
        reference: &Reference,
        tls_verify: Option<bool>,
        for_push: bool,
    ) -> Result<Vec<Endpoint>> {
        let repo_path = reference.repo_path();
        let insecure_flag = tls_verify.map(|v| !v);
        let Some(entry) = self.entry_for(&repo_path) else {
            return Ok(vec![Endpoint {
                registry: reference.registry.clone(),
                repository: reference.repository.clone(),
                insecure: insecure_flag.unwrap_or(false),
            }]);
        };
        if entry.blocked {
            // As Podman's, naming the image too.
            return Err(RegistryError::Config(format!(
                "initializing source docker://{reference}: registry {} is blocked in registries.conf",
                reference.registry
            )));
        }
        let rewrite = |location: &str| -> Endpoint {
            let prefix = entry.prefix.trim_end_matches('/');
            let rest = if prefix.starts_with("*.") {
                repo_path.split_once('/').map_or("", |(_, r)| r).to_string()
            } else {
                repo_path[prefix.len()..].trim_start_matches('/').to_string()
            };
            let full = if rest.is_empty() {
                location.to_string()
            } else {
                format!("{}/{rest}", location.trim_end_matches('/'))
            };
            let (registry, repository) = full.split_once('/').unwrap_or((&full, ""));
            Endpoint {
                registry: registry.to_string(),
                repository: repository.to_string(),
                insecure: false,
            }
        };
        let mut out = Vec::new();
        if !for_push {
            for m in &entry.mirror {
                let mut e = rewrite(&m.location);
                e.insecure = insecure_flag.unwrap_or(m.insecure);
                out.push(e);
            }
        }
        let mut primary = if entry.prefix.starts_with("*.") {
            Endpoint {
                registry: reference.registry.clone(),
                repository: reference.repository.clone(),
                insecure: false,
            }
        } else {
            rewrite(&entry.location)
        };
        primary.insecure = insecure_flag.unwrap_or(entry.insecure);
        out.push(primary);
        Ok(out)
    }

    /// Whether `registry` (a host) is marked insecure.
    pub fn insecure(&self, registry: &str) -> bool {
        self.entry_for(registry).is_some_and(|e| e.insecure)
    }
}

/// The directories holding per-registry certificates for `registry` (`host:port`), most
/// specific first: the user's `certs.d`, then the system's. `cert_dir` (`--cert-dir`)
/// replaces them.
pub fn cert_dirs(registry: &str, cert_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = cert_dir {
        return vec![d.to_path_buf()];
    }
    let mut dirs = Vec::new();
    if let Some(u) = user_containers_dir() {
        dirs.push(u.join("certs.d").join(registry));
    }
    dirs.push(Path::new("/etc/containers/certs.d").join(registry));
    dirs.push(Path::new("/etc/docker/certs.d").join(registry));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_short_names_like_podman() {
        let mut c = RegistriesConf::default();
        let names = |c: &RegistriesConf, n: &str| -> Vec<String> {
            c.resolve(n).unwrap().iter().map(|r| r.store_name()).collect()
        };
        assert_eq!(names(&c, "busybox"), ["docker.io/library/busybox:latest"]);
        c.merge(
            r#"unqualified-search-registries = ["a.io", "b.io:5000"]
[aliases]
"bb" = "c.io/tools/busybox"
"#,
        )
        .unwrap();
        assert_eq!(names(&c, "x/y:1"), ["a.io/x/y:1", "b.io:5000/x/y:1"]);
        assert_eq!(names(&c, "bb:2"), ["c.io/tools/busybox:2"]);
        assert_eq!(names(&c, "q.io/z"), ["q.io/z:latest"]);
        assert!(c.merge("unqualified-search-registries = 3").is_err());
    }

    #[test]
    fn registry_tables_rewrite_block_and_mirror() {
        let mut c = RegistriesConf::default();
        c.merge(
            r#"
[[registry]]
prefix = "example.com/foo"
location = "127.0.0.1:5000/bar"
insecure = true
[[registry.mirror]]
location = "127.0.0.1:6000/m"

[[registry]]
location = "bad.io"
blocked = true
"#,
        )
        .unwrap();
        let r = Reference::parse("example.com/foo/img:1").unwrap();
        let e = c.endpoints(&r, None, false).unwrap();
        assert_eq!(
            e,
            [
                Endpoint {
                    registry: "127.0.0.1:6000".into(),
                    repository: "m/img".into(),
                    insecure: false
                },
                Endpoint {
                    registry: "127.0.0.1:5000".into(),
                    repository: "bar/img".into(),
                    insecure: true
                }
            ]
        );
        assert_eq!(c.endpoints(&r, None, true).unwrap().len(), 1);
        let blocked = Reference::parse("bad.io/x").unwrap();
        assert!(c
            .endpoints(&blocked, None, false)
            .unwrap_err()
            .to_string()
            .contains("blocked"));
        let other = Reference::parse("example.com/foobar/x").unwrap();
        assert_eq!(
            c.endpoints(&other, Some(false), false).unwrap()[0].registry,
            "example.com"
        );
        assert!(c.endpoints(&other, Some(false), false).unwrap()[0].insecure);
    }
}
