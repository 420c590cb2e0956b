//! What every command that touches the store needs: the store's paths, the user's user
//! namespace (joined), and the open store.

use anyhow::Context as _;
use burrow_storage::{IdLimits, PathNotice, Store, StorePaths};
use burrow_userns::{idmap::UserMappings, pause};

use crate::GlobalOptions;

pub struct Engine {
    pub store: Store,
    pub userns: pause::Joined,
    /// The calling user's uid and gid on the host.
    pub host_uid: u32,
    pub host_gid: u32,
}

impl Engine {
    /// Resolves the paths, joins (or creates) the user namespace, and opens the store.
    /// Must run before any thread exists.
    pub fn open(global: &GlobalOptions) -> anyhow::Result<Engine> {
        let (host_uid, host_gid, inside) = host_ids()?;
        let (paths, notice) = store_paths(global, host_uid)?;
        if let Some(PathNotice::RuntimeDirFallback { used }) = notice {
            eprintln!(
                "WARN: XDG_RUNTIME_DIR is not set (as after `su` or under cron); using {} for runtime state. \
                 Log in directly or set XDG_RUNTIME_DIR=/run/user/$(id -u) to share state with your login sessions",
                used.display()
            );
        }
        paths.create()?;
        let userns = if host_uid == 0 && !inside {
            // Root needs no user namespace of its own.
            pause::Joined {
                uid_map: vec![],
                gid_map: vec![],
                created: false,
            }
        } else {
            let user_name = || {
                nix::unistd::User::from_uid(host_uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| host_uid.to_string())
            };
            let joined = pause::join_or_create(&paths.run_root, || {
                UserMappings::for_user(&user_name(), host_uid, host_gid)
            })
            .context("setting up the user namespace")?;
            if joined.created && joined.is_single_id() {
                eprintln!(
                    "WARN: no subordinate id range for user {:?} in /etc/subuid and /etc/subgid: \
                     using a single id mapping, so images with files owned by other users will not work",
                    user_name()
                );
            }
            joined
        };
        let store = Store::open(paths)?;
        Ok(Engine {
            store,
            userns,
            host_uid,
            host_gid,
        })
    }

    /// How many uids and gids exist in the namespace we run in.
    pub fn id_limits(&self) -> IdLimits {
        if self.userns.uid_map.is_empty() {
            return IdLimits {
                uids: u32::MAX,
                gids: u32::MAX,
            };
        }
        IdLimits {
            uids: burrow_userns::idmap::id_count(&self.userns.uid_map),
            gids: burrow_userns::idmap::id_count(&self.userns.gid_map),
        }
    }
}

/// The store's paths for the user with host uid `uid`, with --root/--runroot applied.
pub fn store_paths(global: &GlobalOptions, uid: u32) -> anyhow::Result<(StorePaths, Option<PathNotice>)> {
    Ok(StorePaths::for_user(
        uid,
        global.root.clone(),
        global.runroot.clone(),
    )?)
}

/// The caller's uid and gid on the host, and whether it already runs inside burrow's user
/// namespace (a monitor, or `burrow unshare burrow ...`), where it is uid 0.
pub fn host_ids() -> anyhow::Result<(u32, u32, bool)> {
    if pause::in_initial_namespace() {
        return Ok((
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
            false,
        ));
    }
    let outside_of_root = |file: &str| -> anyhow::Result<u32> {
        let maps = burrow_userns::idmap::current_map(file)?;
        maps.iter()
            .find(|m| m.inside == 0)
            .map(|m| m.outside)
            .ok_or_else(|| anyhow::anyhow!("this user namespace maps no root: run burrow outside of it"))
    };
    Ok((outside_of_root("uid_map")?, outside_of_root("gid_map")?, true))
}
