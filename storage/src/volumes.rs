//! Volumes: directories under the graph root (`burrow-volumes/NAME/_data`) that outlive the
//! containers using them, with a row each in the database, and the links from containers to
//! the volumes they mount (so that a volume in use cannot be removed, and `rm -v` knows a
//! container's anonymous volumes).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension, Row};

use crate::events::Event;
use crate::{now, random_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub name: String,
    /// Always `local`: the only driver burrow has.
    pub driver: String,
    /// Unix seconds.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// `--opt` of `volume create`: `type`, `device`, `o` make the volume a mount of its own.
    pub options: BTreeMap<String, String>,
    /// Made for an image's `VOLUME` or a `-v /path` without a name; `rm -v` removes it.
    pub anonymous: bool,
    /// Not mounted yet: the first container copies the image's files into it (or gives it
    /// to its user), as Docker and Podman do.
    pub needs_init: bool,
}

/// What a new volume is created with.
#[derive(Debug, Clone, Default)]
pub struct NewVolume<'a> {
    /// None: a random 64-hex name.
    pub name: Option<&'a str>,
    /// For one container (an image's `VOLUME`, `-v /path`): `rm -v` removes it with it.
    pub anonymous: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// Podman's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

const COLUMNS: &str = "name, driver, created, labels, options, anonymous, needs_init";

impl VolumeRecord {
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        let map = |i: usize| -> rusqlite::Result<BTreeMap<String, String>> {
            Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default())
        };
        Ok(VolumeRecord {
            name: r.get(0)?,
            driver: r.get(1)?,
            created: r.get(2)?,
            labels: map(3)?,
            options: map(4)?,
            anonymous: r.get(5)?,
            needs_init: r.get(6)?,
        })
    }
}

impl Store {
    /// `burrow-volumes/NAME`: Podman's own store has `volumes/` at this level, and a
    /// storage.conf may point both engines at one graph root.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.paths.volumes_dir().join(name)
    }

    /// Where a volume's files are: `burrow-volumes/NAME/_data`, as Podman lays it out.
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    fn volume_event(&self, name: &str, status: &str) {
        let mut event = Event::now("volume", status);
        event.name = name.to_string();
        self.record_event(&event);
    }

    /// Records a volume and makes its directory, owned by the namespace's root (the user),
    /// so that the container's root can write it.
    pub fn create_volume(&self, new: &NewVolume) -> Result<VolumeRecord, StoreError> {
        let name = match new.name {
            Some(n) if !valid_volume_name(n) => return Err(StoreError::BadVolumeName(n.to_string())),
            Some(n) => n.to_string(),
            None => random_id(),
        };
        let inserted = self.conn().execute(
            &format!("INSERT INTO volumes ({COLUMNS}) VALUES (?1, 'local', ?2, ?3, ?4, ?5, 1)"),
            params![
                name,
                now(),
                serde_json::to_string(&new.labels).unwrap_or_default(),
                serde_json::to_string(&new.options).unwrap_or_default(),
                new.anonymous,
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::VolumeExists(name))
            }
            Err(e) => return Err(e.into()),
        }
        let data = self.volume_data(&name);
        // The name is ours now: a directory left by a removal that failed half-way goes.
        let _ = fs::remove_dir_all(self.volume_dir(&name));
        let made = fs::create_dir_all(self.paths.volumes_dir())
            .and_then(|()| fs::DirBuilder::new().mode(0o700).create(self.volume_dir(&name)))
            .and_then(|()| fs::DirBuilder::new().mode(0o755).create(&data));
        if let Err(e) = made {
            let _ = self
                .conn()
                .execute("DELETE FROM volumes WHERE name = ?1", [&name]);
            let _ = fs::remove_dir_all(self.volume_dir(&name));
            return Err(StoreError::io("creating", &data, e));
        }
        self.volume_event(&name, "create");
        self.volume(&name)
    }

    pub fn volume(&self, name: &str) -> Result<VolumeRecord, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1"),
                [name],
                VolumeRecord::from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NoSuchVolume(name.to_string()))
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM volumes ORDER BY created, name"))?;
        let all = stmt
            .query_map([], VolumeRecord::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(all)
    }

    /// The ids of the containers that mount `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT DISTINCT container_id FROM container_volumes WHERE volume = ?1")?;
        let ids = stmt
            .query_map([name], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Records that container `id` mounts volume `name` at `destination`.
    pub fn link_volume(&self, id: &str, name: &str, destination: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO container_volumes (container_id, volume, destination) VALUES (?1, ?2, ?3)",
            params![id, name, destination],
        )?;
        Ok(())
    }

    /// The first mount of a volume is done: no copy-up from then on.
    pub fn volume_initialized(&self, name: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("UPDATE volumes SET needs_init = 0 WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Removes a volume that no container uses (its files, then its row).
    pub fn remove_volume(&self, name: &str) -> Result<(), StoreError> {
        self.volume(name)?;
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(StoreError::VolumeInUse {
                name: name.to_string(),
                containers: users,
            });
        }
        // The row first: the foreign key refuses it atomically if a container started using
        // the volume since the check above, and then no file of it is gone.
        match self.conn().execute("DELETE FROM volumes WHERE name = ?1", [name]) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::VolumeInUse {
                    name: name.to_string(),
                    containers: self.volume_users(name)?,
                })
            }
            Err(e) => return Err(e.into()),
        }
        let dir = self.volume_dir(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("removing", &dir, e)),
        }
        self.volume_event(name, "remove");
        Ok(())
    }

    /// The anonymous volumes container `id` mounts.
    pub(crate) fn anonymous_volumes(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT v.name FROM container_volumes c JOIN volumes v ON v.name = c.volume \
             WHERE c.container_id = ?1 AND v.anonymous = 1",
        )?;
        let names = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names)
    }

    /// Removes those of `names` that no container uses any more.
    pub(crate) fn remove_unused_volumes(&self, names: &[String]) -> Result<(), StoreError> {
        for name in names {
            if self.volume_users(name)?.is_empty() {
                self.remove_volume(name)?;
            }
        }
        Ok(())
    }

    /// Removes a container and, with it, its anonymous volumes that no other container
    /// uses (`rm -v`; `run --rm` containers always do, see [`Store::remove_container`]).
    pub fn remove_container_and_volumes(&self, id: &str) -> Result<(), StoreError> {
        let anonymous = self.anonymous_volumes(id)?;
        self.remove_container(id)?;
        self.remove_unused_volumes(&anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewContainer;

    use crate::testutil::temp_store as store;

    #[test]
    fn names_follow_podmans_rule() {
        assert!(valid_volume_name("data.1_x-y"));
        assert!(!valid_volume_name("-data"));
        assert!(!valid_volume_name("a/b"));
        assert!(!valid_volume_name(""));
        assert!(!valid_volume_name(".."));
    }

    #[test]
    fn a_volume_in_use_stays_until_its_container_goes() {
        let (_dir, store) = store();
        let v = store
            .create_volume(&NewVolume {
                name: Some("data"),
                ..NewVolume::default()
            })
            .unwrap();
        assert!(store.volume_data("data").is_dir());
        assert!(v.needs_init && !v.anonymous);
        assert!(matches!(
            store.create_volume(&NewVolume {
                name: Some("data"),
                ..NewVolume::default()
            }),
            Err(StoreError::VolumeExists(_))
        ));
        let c = store
            .create_container(&NewContainer {
                name: None,
                image_id: None,
                auto_remove: false,
                config: "{}",
            })
            .unwrap();
        store.link_volume(&c.id, "data", "/data").unwrap();
        assert!(matches!(
            store.remove_volume("data"),
            Err(StoreError::VolumeInUse { .. })
        ));
        assert!(store.volume_data("data").is_dir(), "nothing removed");
        store.remove_container(&c.id).unwrap();
        store.remove_volume("data").unwrap();
        assert!(!store.volume_dir("data").exists());
        assert!(matches!(store.volume("data"), Err(StoreError::NoSuchVolume(_))));
    }

    #[test]
    fn rm_v_takes_only_unshared_anonymous_volumes() {
        let (_dir, store) = store();
        let new = || NewContainer {
            name: None,
            image_id: None,
            auto_remove: false,
            config: "{}",
        };
        let (a, b) = (
            store.create_container(&new()).unwrap(),
            store.create_container(&new()).unwrap(),
        );
        let anonymous = || NewVolume {
            anonymous: true,
            ..NewVolume::default()
        };
        let anon = store.create_volume(&anonymous()).unwrap();
        let shared = store.create_volume(&anonymous()).unwrap();
        store
            .create_volume(&NewVolume {
                name: Some("named"),
                ..NewVolume::default()
            })
            .unwrap();
        assert!(anon.anonymous && anon.name.len() == 64);
        store.link_volume(&a.id, &anon.name, "/a").unwrap();
        store.link_volume(&a.id, &shared.name, "/s").unwrap();
        store.link_volume(&b.id, &shared.name, "/s").unwrap();
        store.link_volume(&a.id, "named", "/n").unwrap();
        store.remove_container_and_volumes(&a.id).unwrap();
        let left: Vec<String> = store.volumes().unwrap().into_iter().map(|v| v.name).collect();
        assert!(!left.contains(&anon.name));
        assert!(left.contains(&shared.name) && left.contains(&"named".to_string()));
    }
}
