//! Where a user's store lives: the graph root (images, layers, containers' files and the
//! database) under the XDG data dir, and the run root (bundles, pause process) under
//! `$XDG_RUNTIME_DIR`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePaths {
    /// `~/.local/share/burrow/storage` by default.
    pub graph_root: PathBuf,
    /// `$XDG_RUNTIME_DIR/burrow` by default.
    pub run_root: PathBuf,
}

/// A notice for the user about how the paths were chosen (shown once per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathNotice {
    RuntimeDirFallback { used: PathBuf },
}

impl StorePaths {
    /// The default paths for the user with host uid `uid` (0: root, the system store), from
    /// the environment.
    pub fn for_user(
        uid: u32,
        graph_root: Option<PathBuf>,
        run_root: Option<PathBuf>,
    ) -> Result<(StorePaths, Option<PathNotice>), StoreError> {
        let conf = if graph_root.is_none() || run_root.is_none() {
            StorageConf::for_user(uid)?
        } else {
            StorageConf::default()
        };
        let graph_root = graph_root.or(conf.graph_root);
        let run_root = run_root.or(conf.run_root);
        let graph_root = match graph_root {
            Some(p) => p,
            None if uid == 0 => PathBuf::from("/var/lib/burrow/storage"),
            None => directories::BaseDirs::new()
                .ok_or(StoreError::NoHome)?
                .data_dir()
                .join("burrow/storage"),
        };
        let mut notice = None;
        let run_root = match run_root {
            Some(p) => p,
            None if uid == 0 => PathBuf::from("/run/burrow"),
            None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir).join("burrow"),
                None => {
                    // After `su` or under cron there is no XDG_RUNTIME_DIR: use the user's
                    // /run/user dir if it is really theirs, else a private dir in /tmp.
                    let run_user = PathBuf::from(format!("/run/user/{uid}"));
                    let base = if owned_private_dir(&run_user, uid) {
                        run_user
                    } else {
                        std::env::temp_dir().join(format!("burrow-run-{uid}"))
                    };
                    let used = base.join("burrow");
                    notice = Some(PathNotice::RuntimeDirFallback { used: used.clone() });
                    used
                }
            },
        };
        Ok((StorePaths { graph_root, run_root }, notice))
    }

    /// Creates both roots, private to the user (0700), refusing a directory that someone
    /// else owns (CVE-class: pre-created /tmp directories hijacking another user's state).
    pub fn create(&self) -> Result<(), StoreError> {
        let uid = nix::unistd::geteuid().as_raw();
        for dir in [&self.graph_root, &self.run_root] {
            if let Some(parent) = dir.parent() {
                if parent.starts_with(std::env::temp_dir()) {
                    create_private(parent, uid)?;
                } else {
                    fs::create_dir_all(parent).map_err(|e| StoreError::io("creating", parent, e))?;
                }
            }
            create_private(dir, uid)?;
        }
        Ok(())
    }

    pub fn database(&self) -> PathBuf {
        self.graph_root.join("burrow.db")
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.graph_root.join("layers")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.graph_root.join("containers").join(id)
    }

    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.run_root.join("containers").join(id)
    }

    /// Named and anonymous volumes (see `Store::volume_dir`).
    pub fn volumes_dir(&self) -> PathBuf {
        self.graph_root.join("burrow-volumes")
    }

    /// Cache of things derived from the store (compiled seccomp filters, ...).
    pub fn cache_dir(&self) -> PathBuf {
        self.graph_root.join("cache")
    }
}

/// `[storage]` settings of `storage.conf` files, as containers/storage reads them:
/// `graphroot` and `runroot`. burrow's own file (`$XDG_CONFIG_HOME/burrow/storage.conf`)
/// wins over the one it shares with Podman (`$XDG_CONFIG_HOME/containers/storage.conf`),
/// setting by setting; a missing file is no error. `$HOME`, `$UID`, `$USER` (any
/// environment variable, `${NAME}` too) and a leading `~/` are expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageConf {
    pub graph_root: Option<PathBuf>,
    pub run_root: Option<PathBuf>,
}

impl StorageConf {
    pub fn for_user(uid: u32) -> Result<StorageConf, StoreError> {
        let Some(dirs) = directories::BaseDirs::new() else {
            return Ok(StorageConf::default());
        };
        let mut conf = StorageConf::default();
        for file in ["burrow/storage.conf", "containers/storage.conf"] {
            let path = dirs.config_dir().join(file);
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("reading", &path, e)),
            };
            let found = StorageConf::parse(&text, uid)
                .map_err(|msg| StoreError::Settings(format!("{}: {msg}", path.display())))?;
            conf.graph_root = conf.graph_root.or(found.graph_root);
            conf.run_root = conf.run_root.or(found.run_root);
        }
        Ok(conf)
    }

    /// Reads the `[storage]` table's `graphroot` and `runroot` (TOML basic or literal
    /// strings); everything else is left to the tools that own it.
    pub fn parse(text: &str, uid: u32) -> Result<StorageConf, String> {
        let mut conf = StorageConf::default();
        let mut table = String::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                table = name.split(']').next().unwrap_or_default().trim().to_string();
                continue;
            }
            if table != "storage" {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim().trim_matches('"');
            if key != "graphroot" && key != "runroot" {
                continue;
            }
            let bad = |what: &str| format!("line {}: {key}: {what}", n + 1);
            let value = toml_string(value.trim()).ok_or_else(|| bad("expected a quoted string"))?;
            let path = PathBuf::from(expand(&value, uid));
            if value.is_empty() {
                continue;
            }
            if !path.is_absolute() {
                return Err(bad("must be an absolute path"));
            }
            match key {
                "graphroot" => conf.graph_root = Some(path),
                _ => conf.run_root = Some(path),
            }
        }
        Ok(conf)
    }
}

/// A TOML basic (`"..."`, with escapes) or literal (`'...'`) string, then an optional comment.
fn toml_string(v: &str) -> Option<String> {
    if let Some(rest) = v.strip_prefix('\'') {
        let (s, after) = rest.split_once('\'')?;
        return (after.trim().is_empty() || after.trim().starts_with('#')).then(|| s.to_string());
    }
    let mut chars = v.strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => break,
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    let after = chars.as_str().trim();
    (after.is_empty() || after.starts_with('#')).then_some(out)
}

/// `$NAME`, `${NAME}` from the environment (`$UID` is the user's uid), and `~/`.
fn expand(value: &str, uid: u32) -> String {
    let var = |name: &str| match name {
        "UID" => uid.to_string(),
        _ => std::env::var(name).unwrap_or_default(),
    };
    let mut out = String::new();
    let mut rest = value;
    if let Some(r) = rest.strip_prefix("~/") {
        out.push_str(&var("HOME"));
        out.push('/');
        rest = r;
    }
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, next) = if let Some(braced) = after.strip_prefix('{') {
            match braced.split_once('}') {
                Some((n, r)) => (n, r),
                None => (braced, ""),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&var(name));
        }
        rest = next;
    }
    out.push_str(rest);
    out
}

fn owned_private_dir(dir: &Path, uid: u32) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

fn create_private(dir: &Path, uid: u32) -> Result<(), StoreError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError::io("creating", dir, e))?;
            return Ok(());
        }
        Err(e) => return Err(StoreError::io("creating", dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| StoreError::io("checking", dir, e))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(StoreError::NotOurs(dir.to_path_buf()));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io("securing", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_dirs_and_tightens_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = StorePaths {
            graph_root: tmp.path().join("a/b/storage"),
            run_root: tmp.path().join("run/burrow"),
        };
        paths.create().unwrap();
        for dir in [&paths.graph_root, &paths.run_root] {
            assert_eq!(fs::metadata(dir).unwrap().mode() & 0o777, 0o700);
        }
        fs::set_permissions(&paths.graph_root, fs::Permissions::from_mode(0o755)).unwrap();
        paths.create().unwrap();
        assert_eq!(fs::metadata(&paths.graph_root).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn reads_storage_conf_like_containers_storage() {
        let conf = StorageConf::parse(
            "# comment\n[storage]\ndriver = \"overlay\"\ngraphroot = \"/data/$UID/store\" # why\nrunroot='/run/x'\n[storage.options]\ngraphroot = \"/ignored\"\n",
            1000,
        )
        .unwrap();
        assert_eq!(conf.graph_root, Some(PathBuf::from("/data/1000/store")));
        assert_eq!(conf.run_root, Some(PathBuf::from("/run/x")));
        assert!(StorageConf::parse("[storage]\ngraphroot = relative\n", 1).is_err());
        assert!(StorageConf::parse("[storage]\ngraphroot = \"relative\"\n", 1).is_err());
        assert_eq!(
            StorageConf::parse("[other]\ngraphroot = 1\n", 1).unwrap(),
            StorageConf::default()
        );
    }

    #[test]
    fn refuses_a_symlink_in_place_of_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("link")).unwrap();
        let paths = StorePaths {
            graph_root: tmp.path().join("link"),
            run_root: tmp.path().join("run"),
        };
        assert!(matches!(paths.create(), Err(StoreError::NotOurs(_))));
    }
}
