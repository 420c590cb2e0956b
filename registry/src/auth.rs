//! Credentials in `auth.json`, the file Podman, Buildah and skopeo share:
//! `{"auths": {"registry[/repo]": {"auth": base64("user:password")}}}`.
//! Written to `--authfile`, else `$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`; read from that file, then from
//! `~/.config/containers/auth.json` and Docker's `~/.docker/config.json`.
//! A file's `credHelpers` (`{"registry": "NAME"}`) win over its `auths` for that registry:
//! `docker-credential-NAME get` is asked, as containers/image does.
//! Credentials are never printed or logged.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::{RegistryError, Result};

/// A user name and password (or identity token as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

// Never show the password, even in debug output.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <hidden>)", self.username)
    }
}

impl Credentials {
    /// Parses `--creds USER[:PASSWORD]`.
    pub fn from_flag(creds: &str) -> Result<Credentials> {
        let (u, p) = creds.split_once(':').unwrap_or((creds, ""));
        if u.is_empty() {
            return Err(RegistryError::Config("--creds: the user name is empty".into()));
        }
        Ok(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    fn encode(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password))
    }

    fn decode(auth: &str) -> Option<Credentials> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    /// The `Authorization: Basic` value.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", self.encode())
    }
}

/// The file `login` writes and `logout` edits.
pub fn auth_file(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
        return p.into();
    }
    if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return Path::new(&r).join("containers/auth.json");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/run/containers/{uid}/auth.json"))
}

/// The files credentials are looked up in, in order.
fn read_files(flag: Option<&Path>) -> Vec<PathBuf> {
    let mut files = vec![auth_file(flag)];
    if flag.is_none() && std::env::var_os("REGISTRY_AUTH_FILE").is_none() {
        if let Some(d) = crate::conf::user_containers_dir() {
            files.push(d.join("auth.json"));
        }
        if let Some(h) = std::env::var_os("HOME") {
            files.push(Path::new(&h).join(".docker/config.json"));
        }
    }
    files
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    match std::fs::read(path) {
        Ok(data) if data.iter().all(|b| b.is_ascii_whitespace()) => Ok(Some(Map::new())),
        Ok(data) => match serde_json::from_slice(&data) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            _ => Err(RegistryError::Config(format!(
                "{}: not a valid auth file (JSON object expected)",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Config(format!("reading {}: {e}", path.display()))),
    }
}

/// `https://index.docker.io/v1/` and alike as the registry name Podman uses.
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k.strip_suffix("/v1").or(k.strip_suffix("/v2")).unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        k => k.into(),
    }
}

/// The credentials for `repo_path` (`registry/repository`): the most specific key of the
/// first file that has one (`registry/ns/repo`, `registry/ns`, `registry`).
pub fn lookup(repo_path: &str, flag: Option<&Path>) -> Result<Option<Credentials>> {
    let registry = repo_path.split('/').next().unwrap_or(repo_path);
    for file in read_files(flag) {
        let Some(json) = read_json(&file)? else { continue };
        if let Some(helper) = json
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.iter().find(|(k, _)| normalize_key(k) == registry))
            .and_then(|(_, v)| v.as_str())
        {
            return cred_helper(helper, registry);
        }
        let Some(Value::Object(auths)) = json.get("auths") else {
            continue;
        };
        let mut key = repo_path.to_string();
        loop {
            let found = auths
                .iter()
                .find(|(k, _)| normalize_key(k) == key)
                .and_then(|(_, v)| v.get("auth")?.as_str())
                .and_then(Credentials::decode);
            if found.is_some() {
                return Ok(found);
            }
            match key.rsplit_once('/') {
                Some((parent, _)) => key = parent.to_string(),
                None => break,
            }
        }
    }
    Ok(None)
}

/// Asks `docker-credential-HELPER get` (from PATH) for `registry`'s credentials, with the
/// registry on stdin, as the Docker credential-helper protocol says; `None` when the helper
/// has none. Its output (which holds the secret) never goes into an error.
fn cred_helper(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let fail =
        |why: String| RegistryError::Config(format!("credential helper {program} for {registry}: {why}"));
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        // The protocol's "not found" answer, on stdout.
        if String::from_utf8_lossy(&out.stdout).contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("get failed ({})", out.status)));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| fail("invalid JSON answer".into()))?;
    let username = v["Username"].as_str().unwrap_or_default();
    let secret = v["Secret"].as_str().unwrap_or_default();
    if username.is_empty() && secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: username.into(),
        password: secret.into(),
    }))
}

/// Writes `json` to `path` atomically, mode 0600, making its directory (0700).
fn write_json(path: &Path, json: &Map<String, Value>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| RegistryError::Config(format!("creating {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut text = serde_json::to_vec_pretty(json).expect("JSON values serialize");
        text.push(b'\n');
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RegistryError::Config(format!("writing {}: {e}", path.display()))
    })
}

/// Stores `creds` for `key` (a registry, or `registry/repo`) in the auth file.
pub fn store(key: &str, creds: &Credentials, flag: Option<&Path>) -> Result<PathBuf> {
    let path = auth_file(flag);
    let mut json = read_json(&path)?.unwrap_or_default();
    let auths = json.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("made an object above");
    auths.retain(|k, _| normalize_key(k) != key);
    auths.insert(key.to_string(), serde_json::json!({ "auth": creds.encode() }));
    write_json(&path, &json)?;
    Ok(path)
}

/// Removes the credentials for `key` (`None`: all). False if there were none.
pub fn remove(key: Option<&str>, flag: Option<&Path>) -> Result<bool> {
    let path = auth_file(flag);
    let Some(mut json) = read_json(&path)? else {
        return Ok(false);
    };
    let Some(Value::Object(auths)) = json.get_mut("auths") else {
        return Ok(false);
    };
    let before = auths.len();
    match key {
        Some(key) => auths.retain(|k, _| normalize_key(k) != key),
        None => auths.clear(),
    }
    let removed = auths.len() != before;
    if removed {
        write_json(&path, &json)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_looks_up_and_removes_in_podmans_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/auth.json");
        let f = Some(file.as_path());
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store("reg.io:5000", &c, f).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["auths"]["reg.io:5000"]["auth"], "dTpwOnc=");
        assert_eq!(lookup("reg.io:5000/a/b", f).unwrap(), Some(c.clone()));
        assert_eq!(lookup("other.io/a", f).unwrap(), None);
        assert!(remove(Some("reg.io:5000"), f).unwrap());
        assert!(!remove(Some("reg.io:5000"), f).unwrap());
        assert_eq!(lookup("reg.io:5000/a", f).unwrap(), None);
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert!(!format!("{c:?}").contains("p:w"));
    }
}
