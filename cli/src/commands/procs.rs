//! A running container's processes as `/proc` shows them, for `top`, `stats` and `pause`:
//! every process in the pid namespace of its first process, with its ids as the container
//! sees them (pids through `NSpid`, uids through the container's nested id map if it has one).

use std::fs;

use burrow_userns::idmap::IdMapping;

/// One process of a container.
#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub host_pid: i32,
    /// The pid inside the container.
    pub pid: i32,
    /// The parent's pid inside the container (0 for the first process).
    pub ppid: i32,
    pub pgid: i32,
    /// Effective and real ids as the container sees them; `host_uid`/`host_gid` as burrow's
    /// namespace sees them.
    pub uid: u32,
    pub ruid: u32,
    pub gid: u32,
    pub rgid: u32,
    pub host_uid: u32,
    pub host_gid: u32,
    pub state: String,
    pub nice: i64,
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start, in clock ticks after boot.
    pub start_ticks: u64,
    pub vsize: u64,
    /// Resident pages.
    pub rss_pages: u64,
    pub tty_nr: u32,
    pub comm: String,
    pub args: Vec<String>,
    /// 0 disabled, 1 strict, 2 filter.
    pub seccomp: u32,
    /// Bytes read from and written to storage (`/proc/PID/io`), when readable.
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub threads: u64,
}

/// The kernel's clock ticks per second.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// Seconds since boot.
pub fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn status_field<'a>(status: &'a str, key: &str) -> Vec<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|rest| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// An id as the container sees it: through its nested map (burrow's id → container id).
fn inside(maps: &[IdMapping], id: u32) -> u32 {
    if maps.is_empty() {
        return id;
    }
    maps.iter()
        .find(|m| id >= m.outside && id - m.outside < m.count)
        .map_or(65534, |m| m.inside + (id - m.outside))
}

fn read_one(host_pid: i32, uid_map: &[IdMapping], gid_map: &[IdMapping]) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{host_pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{host_pid}/status")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(').map(|x| x.1).unwrap_or_default().to_string();
    // Fields after the command name, numbered from 3 (state) as in proc(5).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).copied().unwrap_or("0");
    let num = |n: usize| field(n).parse::<u64>().unwrap_or(0);
    let last = |key: &str| {
        status_field(&status, key)
            .last()
            .and_then(|v| v.parse::<i32>().ok())
    };
    let ids = |key: &str| -> Vec<u32> {
        status_field(&status, key)
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let uids = ids("Uid:");
    let gids = ids("Gid:");
    let args: Vec<String> = fs::read(format!("/proc/{host_pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let io = fs::read_to_string(format!("/proc/{host_pid}/io")).unwrap_or_default();
    let io_field = |key: &str| {
        status_field(&io, key)
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcInfo {
        host_pid,
        pid: last("NSpid:").unwrap_or(host_pid),
        ppid: num(4) as i32, // host pid for now; made the container's in `list`
        pgid: last("NSpgid:").unwrap_or(0),
        uid: inside(uid_map, uids.get(1).copied().unwrap_or(0)),
        ruid: inside(uid_map, uids.first().copied().unwrap_or(0)),
        gid: inside(gid_map, gids.get(1).copied().unwrap_or(0)),
        rgid: inside(gid_map, gids.first().copied().unwrap_or(0)),
        host_uid: uids.get(1).copied().unwrap_or(0),
        host_gid: gids.get(1).copied().unwrap_or(0),
        state: field(3).to_string(),
        nice: field(19).parse().unwrap_or(0),
        cpu_ticks: num(14) + num(15),
        start_ticks: num(22),
        vsize: num(23),
        rss_pages: num(24),
        tty_nr: num(7) as u32,
        comm,
        args,
        seccomp: status_field(&status, "Seccomp:")
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        read_bytes: io_field("read_bytes:"),
        write_bytes: io_field("write_bytes:"),
        threads: status_field(&status, "Threads:")
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
    })
}

/// The processes of the container whose first process is `init` (host pid), sorted by
/// their pid inside it. `uid_map`/`gid_map`: the container's nested maps, if any.
pub fn list(init: i32, uid_map: &[IdMapping], gid_map: &[IdMapping]) -> Vec<ProcInfo> {
    let mut procs: Vec<ProcInfo> = burrow_userns::exec::container_pids(init)
        .into_iter()
        .filter_map(|p| read_one(p, uid_map, gid_map))
        .collect();
    let ns_pid_of: std::collections::HashMap<i32, i32> = procs.iter().map(|p| (p.host_pid, p.pid)).collect();
    for p in &mut procs {
        p.ppid = ns_pid_of.get(&p.ppid).copied().unwrap_or(0);
    }
    procs.sort_by_key(|p| p.pid);
    procs
}

/// The terminal of a `tty_nr` as ps names it, or `?`.
pub fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => "?".into(),
    }
}

/// Go's `time.Duration.String()` of `secs` (`1.41s`, `2m3.5s`, `1h0m0s`, `0s`).
pub fn go_duration(secs: f64) -> String {
    if secs <= 0.0 {
        return "0s".into();
    }
    let total_ms = (secs * 1000.0).round() as u64;
    let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, ms) = (rem / 60_000, rem % 60_000);
    let mut s = format!("{}.{:03}", ms / 1000, ms % 1000);
    s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    if secs < 1.0 {
        return format!("{}ms", total_ms);
    }
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// The container's nested id maps from its spec (empty without a nested user namespace).
pub fn nested_maps(spec: &oci_spec::runtime::Spec) -> (Vec<IdMapping>, Vec<IdMapping>) {
    let conv = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<IdMapping> {
        maps.into_iter()
            .flatten()
            .map(|m| IdMapping {
                inside: m.container_id(),
                outside: m.host_id(),
                count: m.size(),
            })
            .collect()
    };
    let linux = spec.linux().as_ref();
    (
        conv(linux.and_then(|l| l.uid_mappings().as_ref())),
        conv(linux.and_then(|l| l.gid_mappings().as_ref())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(0.0), "0s");
        assert_eq!(go_duration(1.41), "1.41s");
        assert_eq!(go_duration(61.0), "1m1s");
        assert_eq!(go_duration(3600.0), "1h0m0s");
        assert_eq!(go_duration(0.25), "250ms");
    }

    #[test]
    fn terminals_by_number() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(136 << 8 | 3), "pts/3");
    }

    #[test]
    fn ids_through_a_nested_map() {
        let keep = burrow_userns::idmap::keep_id_map(1000, 65537);
        assert_eq!(inside(&keep, 0), 1000);
        assert_eq!(inside(&[], 7), 7);
    }
}
