//! Containers' records and files: a row in the database, a writable layer under the graph
//! root (`containers/<id>/{upper,work}`) and a bundle under the run root.

use std::fs;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension, Row};

use crate::names::{random_digit, random_name};
use crate::{now, random_id, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
        }
    }

    fn parse(s: &str) -> ContainerState {
        match s {
            "running" => ContainerState::Running,
            "exited" => ContainerState::Exited,
            _ => ContainerState::Created,
        }
    }
}

pub struct NewContainer<'a> {
    pub name: Option<&'a str>,
    pub image_id: Option<&'a str>,
    pub auto_remove: bool,
    /// JSON of whatever the caller needs to start the container again.
    pub config: &'a str,
}

#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub image_id: Option<String>,
    pub created: i64,
    pub state: ContainerState,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub auto_remove: bool,
    pub config: String,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    /// The monitor of a detached container.
    pub monitor_pid: Option<i32>,
    /// `stop` or `kill` asked for the end: the monitor does not restart it.
    pub stop_requested: bool,
    pub restarts: i64,
    /// `pause` stopped its processes (the state stays running: see [`ContainerRecord::status`]).
    pub paused: bool,
}

impl ContainerRecord {
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ContainerRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            image_id: r.get(2)?,
            created: r.get(3)?,
            state: ContainerState::parse(&r.get::<_, String>(4)?),
            pid: r.get(5)?,
            exit_code: r.get(6)?,
            auto_remove: r.get(7)?,
            config: r.get(8)?,
            started: r.get(9)?,
            finished: r.get(10)?,
            monitor_pid: r.get(11)?,
            stop_requested: r.get(12)?,
            restarts: r.get(13)?,
            paused: r.get(14)?,
        })
    }

    /// The state as Podman names it: `created`, `running`, `paused` or `exited`. A paused
    /// container is running as far as stop, kill, rm and wait are concerned (its processes
    /// exist; SIGKILL ends stopped processes too), so the state column stays `running`.
    pub fn status(&self) -> &'static str {
        if self.paused && self.state == ContainerState::Running {
            "paused"
        } else {
            self.state.as_str()
        }
    }
}

const COLUMNS: &str = "id, name, image_id, created, state, pid, exit_code, auto_remove, config, \
                       started, finished, monitor_pid, stop_requested, restarts, paused";
const INSERT_COLUMNS: &str = "id, name, image_id, created, state, pid, exit_code, auto_remove, config";

/// Whether `pid` is a live process (a zombie is not: an orphan whose reaper never came,
/// as under an init that does not reap, is dead all the same).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => false,
    }
}

/// A container's writable layer.
#[derive(Debug, Clone)]
pub struct ContainerDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub bundle: PathBuf,
}

impl Store {
    /// Records a new container and makes its directories.
    pub fn create_container(&self, new: &NewContainer) -> Result<ContainerRecord, StoreError> {
        self.create_container_with_id(&Store::new_container_id(), new)
    }

    /// A fresh container id, for a caller that needs it before the record exists (`run -d`
    /// starts the monitor while it makes the record).
    pub fn new_container_id() -> String {
        random_id()
    }

    /// [`Store::create_container`] with an id from [`Store::new_container_id`].
    pub fn create_container_with_id(
        &self,
        id: &str,
        new: &NewContainer,
    ) -> Result<ContainerRecord, StoreError> {
        let id = id.to_string();
        let mut attempts = 0;
        let name = loop {
            // Past a few collisions (1560 names: a store with hundreds of containers), a
            // number is added, as Docker's name generator does.
            let name = match new.name {
                Some(n) => n.to_string(),
                None if attempts < 5 => random_name(),
                None => format!("{}{}", random_name(), attempts * 10 + random_digit()),
            };
            let inserted = self.conn().execute(
                &format!("INSERT INTO containers ({INSERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, 'created', NULL, NULL, ?5, ?6)"),
                params![id, name, new.image_id, now(), new.auto_remove, new.config],
            );
            match inserted {
                Ok(_) => break name,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    attempts += 1;
                    if new.name.is_some() || attempts > 100 {
                        let owner: String = self
                            .conn()
                            .query_row("SELECT id FROM containers WHERE name = ?1", [&name], |r| r.get(0))
                            .unwrap_or_default();
                        return Err(StoreError::NameInUse { name, id: owner });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let dirs = self.container_dirs(&id);
        let made = [&dirs.upper, &dirs.work, &dirs.bundle]
            .into_iter()
            .try_for_each(|d| fs::create_dir_all(d).map_err(|e| StoreError::io("creating", d, e)));
        if let Err(e) = made {
            let _ = self.remove_container(&id);
            return Err(e);
        }
        debug_assert!(!name.is_empty());
        let record = self.container(&id)?;
        self.container_event(&record, "create", None);
        Ok(record)
    }

    pub fn container_dirs(&self, id: &str) -> ContainerDirs {
        let dir = self.paths.container_dir(id);
        ContainerDirs {
            upper: dir.join("upper"),
            work: dir.join("work"),
            bundle: self.paths.bundle_dir(id),
        }
    }

    /// Finds a container by name, full id or unique id prefix.
    pub fn container(&self, name_or_id: &str) -> Result<ContainerRecord, StoreError> {
        let by_name = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1 OR id = ?1"),
                [name_or_id],
                ContainerRecord::from_row,
            )
            .optional()?;
        if let Some(c) = by_name {
            return Ok(c);
        }
        if name_or_id.len() >= 3 && name_or_id.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut stmt = self.conn().prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers WHERE id >= ?1 AND id < ?1 || 'g' LIMIT 2"
            ))?;
            let found = stmt
                .query_map([name_or_id], ContainerRecord::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            match found.as_slice() {
                [one] => return Ok(one.clone()),
                [_, _, ..] => return Err(StoreError::AmbiguousContainer(name_or_id.to_string())),
                [] => {}
            }
        }
        Err(StoreError::NoSuchContainer(name_or_id.to_string()))
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM containers ORDER BY created"))?;
        let all = stmt
            .query_map([], ContainerRecord::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(all)
    }

    /// Records that the container runs as `pid`, watched by `monitor_pid` when detached.
    pub fn set_running(&self, id: &str, pid: i32, monitor_pid: Option<i32>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE containers SET state = 'running', pid = ?2, monitor_pid = ?3, exit_code = NULL, \
             started = ?4, finished = NULL, paused = 0 WHERE id = ?1",
            params![id, pid, monitor_pid, now()],
        )?;
        if let Ok(record) = self.container(id) {
            self.container_event(&record, "start", None);
        }
        Ok(())
    }

    pub fn set_exited(&self, id: &str, exit_code: i32) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE containers SET state = 'exited', pid = NULL, monitor_pid = NULL, exit_code = ?2, \
             finished = ?3, paused = 0 WHERE id = ?1",
            params![id, exit_code.clamp(-1, 255), now()],
        )?;
        if let Ok(record) = self.container(id) {
            self.container_event(&record, "died", Some(exit_code));
        }
        Ok(())
    }

    /// Replaces what the container was created with.
    pub fn set_config(&self, id: &str, config: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE containers SET config = ?2 WHERE id = ?1",
            params![id, config],
        )?;
        Ok(())
    }

    /// Marks that the user stopped the container (its restart policy no longer applies), or
    /// clears the mark when it is started again.
    pub fn set_stop_requested(&self, id: &str, requested: bool) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE containers SET stop_requested = ?2 WHERE id = ?1",
            params![id, requested],
        )?;
        Ok(())
    }

    pub fn count_restart(&self, id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE containers SET restarts = restarts + 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Finds out the truth about a container whose record says it runs: if its process is
    /// gone (its monitor was killed, say), the record says exited from now on.
    pub fn refresh_state(&self, c: &mut ContainerRecord) -> Result<(), StoreError> {
        // While the process that watches it (its monitor, or the foreground burrow) lives, it
        // records the exit: a zombie waiting for it to reap is no news.
        if c.state != ContainerState::Running
            || c.pid.is_some_and(process_alive)
            || c.monitor_pid.is_some_and(process_alive)
        {
            return Ok(());
        }
        // Only if no monitor recorded the real exit meanwhile: -1 says the code is unknown.
        let changed = self.conn().execute(
            "UPDATE containers SET state = 'exited', pid = NULL, monitor_pid = NULL, exit_code = -1, \
             finished = ?3, paused = 0 WHERE id = ?1 AND state = 'running' AND pid IS ?2",
            params![c.id, c.pid, now()],
        )?;
        *c = self.container(&c.id)?;
        if changed > 0 {
            self.container_event(c, "died", Some(-1));
        }
        Ok(())
    }

    /// `--rm` containers whose burrow process was killed (`kill -9` leaves no chance to clean
    /// up; the container itself died with it): the record says running, the process is gone.
    pub fn orphaned_auto_remove(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, pid, monitor_pid FROM containers WHERE auto_remove = 1 AND state = 'running'",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i32>>(1)?,
                    r.get::<_, Option<i32>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter(|(_, pid, watcher)| {
                !pid.is_some_and(process_alive) && !watcher.is_some_and(process_alive)
            })
            .map(|(id, _, _)| id)
            .collect())
    }

    /// Removes a container's files and record. Every step is tried; the first error is
    /// returned after all of them ran, so a half-removed container is finished next time.
    pub fn remove_container(&self, id: &str) -> Result<(), StoreError> {
        let record = self.container(id).ok();
        // A --rm container takes its anonymous volumes with it, as Podman's.
        let anonymous = match &record {
            Some(r) if r.auto_remove => self.anonymous_volumes(id)?,
            _ => Vec::new(),
        };
        let mut first_error = None;
        for dir in [self.paths.bundle_dir(id), self.paths.container_dir(id)] {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(StoreError::io("removing", &dir, e));
                }
            }
        }
        if first_error.is_none() {
            self.conn()
                .execute("DELETE FROM containers WHERE id = ?1", [id])?;
            if let Some(record) = &record {
                self.container_event(record, "remove", None);
            }
            self.remove_unused_volumes(&anonymous)?;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Gives a container a new name (`rename`); names stay unique.
    pub fn rename_container(&self, id: &str, name: &str) -> Result<ContainerRecord, StoreError> {
        match self
            .conn()
            .execute("UPDATE containers SET name = ?2 WHERE id = ?1", params![id, name])
        {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let owner: String = self
                    .conn()
                    .query_row("SELECT id FROM containers WHERE name = ?1", [name], |r| r.get(0))
                    .unwrap_or_default();
                return Err(StoreError::NameInUse {
                    name: name.to_string(),
                    id: owner,
                });
            }
            Err(e) => return Err(e.into()),
        }
        let record = self.container(id)?;
        self.container_event(&record, "rename", None);
        Ok(record)
    }

    /// Records that `pause` stopped (or `unpause` continued) the container's processes; only
    /// a running container can be either.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE containers SET paused = ?2 WHERE id = ?1 AND state = 'running'",
            params![id, paused],
        )?;
        if let Ok(record) = self.container(id) {
            self.container_event(&record, if paused { "pause" } else { "unpause" }, None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorePaths;

    #[test]
    fn generated_names_stay_unique_past_the_word_list() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StorePaths {
            graph_root: dir.path().join("graph"),
            run_root: dir.path().join("run"),
        };
        paths.create().unwrap();
        let store = Store::open(paths).unwrap();
        // More than the 40 x 39 adjective_noun pairs: collisions must get a number, not fail.
        let mut names = std::collections::HashSet::new();
        for _ in 0..1600 {
            let c = store
                .create_container(&NewContainer {
                    name: None,
                    image_id: None,
                    auto_remove: false,
                    config: "{}",
                })
                .unwrap();
            assert!(c.name.contains('_'), "{}", c.name);
            assert!(names.insert(c.name));
        }
    }

    #[test]
    fn an_id_prefix_two_containers_share_is_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StorePaths {
            graph_root: dir.path().join("graph"),
            run_root: dir.path().join("run"),
        };
        paths.create().unwrap();
        let store = Store::open(paths).unwrap();
        let new = NewContainer {
            name: None,
            image_id: None,
            auto_remove: false,
            config: "{}",
        };
        let a = store.create_container(&new).unwrap();
        let b = store.create_container(&new).unwrap();
        // Give them ids that share "abc" and differ after it.
        for (c, id) in [(&a, "abc1"), (&b, "abc2")] {
            let full = format!("{id}{}", &c.id[4..]);
            store
                .conn()
                .execute("UPDATE containers SET id = ?2 WHERE id = ?1", [&c.id, &full])
                .unwrap();
        }
        let err = store.container("abc").unwrap_err();
        assert!(matches!(err, StoreError::AmbiguousContainer(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "more than one result for container ID abc: container already exists"
        );
        assert!(store.container("abc1").unwrap().id.starts_with("abc1"));
        assert!(matches!(
            store.container("abd"),
            Err(StoreError::NoSuchContainer(_))
        ));
    }
}
