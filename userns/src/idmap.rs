//! Id mappings: the user's subordinate ranges from /etc/subuid and /etc/subgid, and writing
//! them into a child's user namespace with the setuid `newuidmap`/`newgidmap` helpers.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("running {helper}: {source} (install the uidmap package)")]
    Spawn { helper: &'static str, source: io::Error },
    #[error("{helper} failed ({status}): {stderr}")]
    Helper {
        helper: &'static str,
        status: String,
        stderr: String,
    },
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("invalid id mapping {0:?}: expected CONTAINER_ID:HOST_ID:SIZE")]
    Malformed(String),
    #[error("id mapping {0:?} maps ids outside the {1} ids of burrow's user namespace")]
    OutOfRange(String, u32),
}

/// One `inside outside count` line of a uid_map or gid_map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

impl IdMapping {
    /// Parses Podman's `--uidmap CONTAINER_ID:HOST_ID:SIZE` syntax.
    pub fn parse(spec: &str) -> Result<Self, IdMapError> {
        let parts: Vec<&str> = spec.split(':').collect();
        let malformed = || IdMapError::Malformed(spec.to_string());
        if parts.len() != 3 {
            return Err(malformed());
        }
        let n = |s: &str| s.parse::<u32>().map_err(|_| malformed());
        let mapping = IdMapping {
            inside: n(parts[0])?,
            outside: n(parts[1])?,
            count: n(parts[2])?,
        };
        if mapping.count == 0 {
            return Err(malformed());
        }
        Ok(mapping)
    }

    /// Maps an id from outside to inside, if this mapping covers it.
    pub fn to_inside(&self, id: u32) -> Option<u32> {
        (id >= self.outside && id - self.outside < self.count).then(|| self.inside + (id - self.outside))
    }
}

/// Maps `id` (as seen in the parent namespace) through `mappings` to the id inside.
pub fn map_to_inside(mappings: &[IdMapping], id: u32) -> Option<u32> {
    mappings.iter().find_map(|m| m.to_inside(id))
}

/// Total number of ids covered by `mappings`.
pub fn id_count(mappings: &[IdMapping]) -> u32 {
    mappings.iter().map(|m| m.count).sum()
}

/// A subordinate id range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// Ranges for the user named `user` (or given by numeric `id`) in a subid file's contents.
pub fn parse_subid(contents: &str, user: &str, id: u32) -> Vec<SubIdRange> {
    let id = id.to_string();
    contents
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if owner != user && owner != id {
                return None;
            }
            Some(SubIdRange {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .filter(|r| r.count > 0)
        .collect()
}

fn read_subid(path: &str, user: &str, id: u32) -> Result<Vec<SubIdRange>, IdMapError> {
    match fs::read_to_string(path) {
        Ok(contents) => Ok(parse_subid(&contents, user, id)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(IdMapError::Read {
            path: path.to_string(),
            source,
        }),
    }
}

/// The mappings of the user's rootless namespace, as Podman makes them: container root is
/// the user, ids 1..N are the subordinate ranges in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMappings {
    pub uid_map: Vec<IdMapping>,
    pub gid_map: Vec<IdMapping>,
}

impl UserMappings {
    pub fn for_user(user: &str, uid: u32, gid: u32) -> Result<Self, IdMapError> {
        let subuids = read_subid("/etc/subuid", user, uid)?;
        let subgids = read_subid("/etc/subgid", user, uid)?;
        Ok(UserMappings {
            uid_map: with_ranges(uid, &subuids),
            gid_map: with_ranges(gid, &subgids),
        })
    }

    /// True when the user has no subordinate range: only its own id exists inside.
    pub fn is_single_id(&self) -> bool {
        self.uid_map.len() == 1 || self.gid_map.len() == 1
    }

    /// Writes both maps for `pid`, which has just unshared its user namespace.
    pub fn write(&self, pid: Pid) -> Result<(), IdMapError> {
        if self.is_single_id() {
            // An unprivileged process may map its own id without the setuid helpers, once
            // setgroups is denied (user_namespaces(7)).
            write_proc(pid, "setgroups", "deny")?;
            write_proc(pid, "uid_map", &format_map(&self.uid_map[..1]))?;
            write_proc(pid, "gid_map", &format_map(&self.gid_map[..1]))?;
            return Ok(());
        }
        run_helper("newuidmap", pid, &self.uid_map)?;
        run_helper("newgidmap", pid, &self.gid_map)?;
        Ok(())
    }
}

fn with_ranges(own: u32, ranges: &[SubIdRange]) -> Vec<IdMapping> {
    let mut maps = vec![IdMapping {
        inside: 0,
        outside: own,
        count: 1,
    }];
    let mut next_inside = 1u32;
    for r in ranges {
        maps.push(IdMapping {
            inside: next_inside,
            outside: r.start,
            count: r.count,
        });
        next_inside = next_inside.saturating_add(r.count);
    }
    maps
}

/// The text of a /proc/PID/uid_map.
pub fn format_map(maps: &[IdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
        .collect()
}

/// Writes a map file of a child namespace directly; allowed when the writer is privileged in
/// the parent namespace (nested namespaces of burrow's own) or maps only its own id.
pub fn write_proc(pid: Pid, file: &str, contents: &str) -> Result<(), IdMapError> {
    let path = format!("/proc/{pid}/{file}");
    fs::write(Path::new(&path), contents).map_err(|source| IdMapError::Write { path, source })
}

fn run_helper(helper: &'static str, pid: Pid, maps: &[IdMapping]) -> Result<(), IdMapError> {
    let mut cmd = Command::new(helper);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([m.inside.to_string(), m.outside.to_string(), m.count.to_string()]);
    }
    let out = cmd
        .output()
        .map_err(|source| IdMapError::Spawn { helper, source })?;
    if !out.status.success() {
        return Err(IdMapError::Helper {
            helper,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Reads the uid_map or gid_map ("uid_map"/"gid_map") of the current process.
pub fn current_map(file: &str) -> Result<Vec<IdMapping>, IdMapError> {
    let path = format!("/proc/self/{file}");
    let text = fs::read_to_string(&path).map_err(|source| IdMapError::Read { path, source })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u32>());
            Some(IdMapping {
                inside: f.next()?.ok()?,
                outside: f.next()?.ok()?,
                count: f.next()?.ok()?,
            })
        })
        .collect())
}

/// Podman's `--userns=keep-id`: the user's own uid inside is the user (id 0 of burrow's
/// namespace); ids below it are shifted up by one, ids above it stay where they are.
/// `ns_size` is the number of ids in burrow's namespace.
pub fn keep_id_map(own: u32, ns_size: u32) -> Vec<IdMapping> {
    let mut maps = vec![IdMapping {
        inside: own,
        outside: 0,
        count: 1,
    }];
    let below = own.min(ns_size.saturating_sub(1));
    if below > 0 {
        maps.push(IdMapping {
            inside: 0,
            outside: 1,
            count: below,
        });
    }
    if ns_size > own + 1 {
        maps.push(IdMapping {
            inside: own + 1,
            outside: own + 1,
            count: ns_size - own - 1,
        });
    }
    maps
}

/// Checks that a user-given nested mapping stays inside burrow's namespace of `ns_size` ids.
pub fn check_nested(maps: &[IdMapping], ns_size: u32, spec: &str) -> Result<(), IdMapError> {
    for m in maps {
        if m.outside.checked_add(m.count).is_none_or(|end| end > ns_size) {
            return Err(IdMapError::OutOfRange(spec.to_string(), ns_size));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subid_by_name_and_id() {
        let text = "alice:100000:65536\n1001:300000:10\nbob:200000:65536\n";
        assert_eq!(
            parse_subid(text, "alice", 1000),
            vec![SubIdRange {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            parse_subid(text, "carol", 1001),
            vec![SubIdRange {
                start: 300000,
                count: 10
            }],
            "numeric owner entries count"
        );
        assert!(parse_subid(text, "dave", 1002).is_empty());
    }

    #[test]
    fn rootless_map_puts_ranges_after_root() {
        let maps = with_ranges(
            1000,
            &[
                SubIdRange {
                    start: 100000,
                    count: 65536,
                },
                SubIdRange {
                    start: 500000,
                    count: 10,
                },
            ],
        );
        assert_eq!(format_map(&maps), "0 1000 1\n1 100000 65536\n65537 500000 10\n");
        assert_eq!(map_to_inside(&maps, 100999), Some(1000));
        assert_eq!(map_to_inside(&maps, 5), None);
    }

    #[test]
    fn keep_id_keeps_own_uid_and_every_other_id() {
        let maps = keep_id_map(1001, 65537);
        assert_eq!(format_map(&maps), "1001 0 1\n0 1 1001\n1002 1002 64535\n");
        assert_eq!(id_count(&maps), 65537);
        // Single-id namespace: only the user itself.
        assert_eq!(format_map(&keep_id_map(1001, 1)), "1001 0 1\n");
    }

    #[test]
    fn parses_and_checks_uidmap_option() {
        let m = IdMapping::parse("0:1:4000").unwrap();
        assert_eq!(
            m,
            IdMapping {
                inside: 0,
                outside: 1,
                count: 4000
            }
        );
        assert!(IdMapping::parse("0:1").is_err());
        assert!(IdMapping::parse("0:x:1").is_err());
        assert!(check_nested(&[m], 65537, "0:1:4000").is_ok());
        assert!(check_nested(
            &[IdMapping {
                inside: 0,
                outside: 65000,
                count: 1000
            }],
            65537,
            "x"
        )
        .is_err());
    }
}
