//! `--user NAME|UID[:GROUP|GID]`, resolved against the image's /etc/passwd and /etc/group.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: Option<String>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6).then_some(())?;
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

/// (name, gid, members) of each /etc/group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4).then_some(())?;
        Some((
            f[0],
            f[2].parse().ok()?,
            f[3].split(',').filter(|m| !m.is_empty()).collect(),
        ))
    })
}

/// A group's id: a number as it is, a name from the image's group file (`--user U:G`,
/// `--group-add`).
pub fn group_id(spec: &str, group: &str) -> Result<u32, String> {
    match spec.parse::<u32>() {
        Ok(gid) => Ok(gid),
        Err(_) => group_entries(group)
            .find(|(name, _, _)| *name == spec)
            .map(|(_, gid, _)| gid)
            .ok_or_else(|| format!("unable to find group {spec}: no matching entries in group file")),
    }
}

/// Resolves `spec` (empty = root) with the image's passwd and group files, as Podman does:
/// numeric ids need no entry; names must exist.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| {
                    format!("unable to find user {user_part}: no matching entries in passwd file")
                })?,
        ),
    };
    let uid = user_part
        .parse::<u32>()
        .ok()
        .or(entry.as_ref().map(|e| e.uid))
        .unwrap_or(0);
    let gid = match group_part {
        Some(g) => group_id(g, group)?,
        None => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    // The primary group comes first among the supplementary ones, as runc and Docker do.
    let mut additional_gids = vec![gid];
    if let (Some(e), None) = (&entry, group_part) {
        additional_gids.extend(
            group_entries(group)
                .filter(|(_, g, members)| *g != gid && members.contains(&e.name))
                .map(|(_, g, _)| g),
        );
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:user\nuser:x:1000:\n";

    #[test]
    fn resolves_names_ids_and_groups() {
        assert_eq!(resolve("", PASSWD, GROUP).unwrap().uid, 0);
        let u = resolve("user", PASSWD, GROUP).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1000, vec![1000, 10])
        );
        assert_eq!(u.home.as_deref(), Some("/home/user"));
        let n = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid), (4242, 0));
        let g = resolve("1000:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((g.uid, g.gid), (1000, 10));
        assert!(resolve("nobody", PASSWD, GROUP)
            .unwrap_err()
            .contains("unable to find user nobody"));
        assert!(resolve("0:nogroup", PASSWD, GROUP)
            .unwrap_err()
            .contains("unable to find group"));
    }
}
