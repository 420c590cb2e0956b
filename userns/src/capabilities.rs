//! Capabilities: Podman's default set, `--cap-add`/`--cap-drop`/`--privileged` resolution, the
//! OCI `process.capabilities` block, and applying it in the container's init process.
//!
//! The `apply*` functions run in the forked child right before exec. They make raw
//! `prctl`/`capset` calls over fixed tables: no allocation, no panics.
//! The runtime calls them in runc's order:
//! [`apply_bounding`] → [`set_keep_caps`]`(true)` → setresuid/setresgid → [`set_keep_caps`]`(false)`
//! → [`apply`].

use std::collections::HashSet;
use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Podman's `default_capabilities` (containers.conf since Podman 4.0); CapEff 00000000800405fb.
const DEFAULT_CAPABILITIES: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Every capability we can name, indexed by its kernel bit number.
const CAPS: [(&str, Capability); 41] = [
    ("CAP_CHOWN", Capability::Chown),
    ("CAP_DAC_OVERRIDE", Capability::DacOverride),
    ("CAP_DAC_READ_SEARCH", Capability::DacReadSearch),
    ("CAP_FOWNER", Capability::Fowner),
    ("CAP_FSETID", Capability::Fsetid),
    ("CAP_KILL", Capability::Kill),
    ("CAP_SETGID", Capability::Setgid),
    ("CAP_SETUID", Capability::Setuid),
    ("CAP_SETPCAP", Capability::Setpcap),
    ("CAP_LINUX_IMMUTABLE", Capability::LinuxImmutable),
    ("CAP_NET_BIND_SERVICE", Capability::NetBindService),
    ("CAP_NET_BROADCAST", Capability::NetBroadcast),
    ("CAP_NET_ADMIN", Capability::NetAdmin),
    ("CAP_NET_RAW", Capability::NetRaw),
    ("CAP_IPC_LOCK", Capability::IpcLock),
    ("CAP_IPC_OWNER", Capability::IpcOwner),
    ("CAP_SYS_MODULE", Capability::SysModule),
    ("CAP_SYS_RAWIO", Capability::SysRawio),
    ("CAP_SYS_CHROOT", Capability::SysChroot),
    ("CAP_SYS_PTRACE", Capability::SysPtrace),
    ("CAP_SYS_PACCT", Capability::SysPacct),
    ("CAP_SYS_ADMIN", Capability::SysAdmin),
    ("CAP_SYS_BOOT", Capability::SysBoot),
    ("CAP_SYS_NICE", Capability::SysNice),
    ("CAP_SYS_RESOURCE", Capability::SysResource),
    ("CAP_SYS_TIME", Capability::SysTime),
    ("CAP_SYS_TTY_CONFIG", Capability::SysTtyConfig),
    ("CAP_MKNOD", Capability::Mknod),
    ("CAP_LEASE", Capability::Lease),
    ("CAP_AUDIT_WRITE", Capability::AuditWrite),
    ("CAP_AUDIT_CONTROL", Capability::AuditControl),
    ("CAP_SETFCAP", Capability::Setfcap),
    ("CAP_MAC_OVERRIDE", Capability::MacOverride),
    ("CAP_MAC_ADMIN", Capability::MacAdmin),
    ("CAP_SYSLOG", Capability::Syslog),
    ("CAP_WAKE_ALARM", Capability::WakeAlarm),
    ("CAP_BLOCK_SUSPEND", Capability::BlockSuspend),
    ("CAP_AUDIT_READ", Capability::AuditRead),
    ("CAP_PERFMON", Capability::Perfmon),
    ("CAP_BPF", Capability::Bpf),
    ("CAP_CHECKPOINT_RESTORE", Capability::CheckpointRestore),
];

const ALL: &str = "ALL";

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("capability {0:?} cannot be dropped and added")]
    AddedAndDropped(String),
    #[error("adding all caps and removing all caps not allowed")]
    AddAllDropAll,
    #[error("dropping {cap} from the bounding set: {errno}")]
    Bounding { cap: &'static str, errno: Errno },
    #[error("reading the bounding set: {0}")]
    ReadBounding(Errno),
    #[error("setting capabilities: {0}")]
    Capset(Errno),
    #[error("raising ambient capability {cap}: {errno}")]
    Ambient { cap: &'static str, errno: Errno },
    #[error("setting PR_SET_KEEPCAPS: {0}")]
    KeepCaps(Errno),
}

/// Podman's default capability set, sorted, as "CAP_XXX" names.
pub fn default_capabilities() -> Vec<String> {
    DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
}

/// Resolves `--cap-add`, `--cap-drop` and `--privileged` against the default set, as Podman's
/// `MergeCapabilities` does. Names are case-insensitive with or without `CAP_`; `ALL` works in
/// either list. Returns a sorted, deduplicated list.
///
/// `--privileged` gives every capability the running kernel knows and, as in Podman and Docker,
/// ignores add/drop (the names are still checked). `--cap-add=ALL` gives the same set: Podman
/// uses its own bounding set there, which inside its rootless user namespace is the full set.
pub fn resolve(
    cap_add: &[String],
    cap_drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, CapabilityError> {
    let known = kernel_capabilities();
    let add = normalize(cap_add, &known)?;
    let drop = normalize(cap_drop, &known)?;
    if privileged {
        return Ok(known);
    }
    let base = default_capabilities();
    if add.is_empty() && drop.is_empty() {
        return Ok(base);
    }
    if drop.iter().any(|c| c == ALL) {
        if add.iter().any(|c| c == ALL) {
            return Err(CapabilityError::AddAllDropAll);
        }
        return Ok(sorted(add));
    }
    let (base, add) = if add.iter().any(|c| c == ALL) {
        (known, Vec::new())
    } else {
        (base, add)
    };
    if let Some(c) = add.iter().find(|c| drop.contains(c)) {
        return Err(CapabilityError::AddedAndDropped(c.clone()));
    }
    let merged = base
        .into_iter()
        .filter(|c| !drop.contains(c))
        .chain(add)
        .collect();
    Ok(sorted(merged))
}

fn sorted(mut caps: Vec<String>) -> Vec<String> {
    caps.sort();
    caps.dedup();
    caps
}

/// Uppercases, adds `CAP_`, and checks each name against what the kernel knows.
fn normalize(names: &[String], known: &[String]) -> Result<Vec<String>, CapabilityError> {
    names
        .iter()
        .map(|n| {
            let upper = n.trim().to_ascii_uppercase();
            if upper == ALL {
                return Ok(upper);
            }
            let name = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            if known.contains(&name) {
                Ok(name)
            } else {
                Err(CapabilityError::Unknown(name))
            }
        })
        .collect()
}

/// Every capability the running kernel supports (up to `cap_last_cap`) that we can name, sorted.
fn kernel_capabilities() -> Vec<String> {
    let supported = caps::runtime::thread_all_supported();
    let mut names: Vec<String> = CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| supported.is_empty() || supported.iter().any(|c| usize::from(c.index()) == *bit))
        .map(|(_, (name, _))| name.to_string())
        .collect();
    names.sort();
    names
}

/// The OCI capability block for a container process, as Podman builds it.
///
/// Root (user unset, "root" or "0"): bounding = effective = permitted = `names`; inheritable and
/// ambient empty. A non-empty inheritable set lets a program with inheritable file capabilities
/// gain them on exec (CVE-2022-24769, fixed in runc/moby/Podman by emptying it). Anyone else:
/// bounding = `names` and nothing else; see [`to_oci_user`] for Podman's `--cap-add` handling.
/// Names that are not capabilities are left out.
pub fn to_oci(names: &[String], root: bool) -> LinuxCapabilities {
    let set: Capabilities = names.iter().filter_map(|n| oci_capability(n)).collect();
    let empty = Capabilities::new();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_inheritable(Some(empty.clone()));
    caps.set_ambient(Some(empty.clone()));
    if root {
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
    } else {
        caps.set_effective(Some(empty.clone()));
        caps.set_permitted(Some(empty));
    }
    caps
}

/// The OCI capability block for a non-root user. Podman gives such a process exactly the
/// capabilities named with `--cap-add` (ALL = everything), in effective, permitted, inheritable
/// and ambient, so they survive the exec of a non-setuid binary; `names` stays the bounding set.
pub fn to_oci_user(names: &[String], cap_add: &[String]) -> Result<LinuxCapabilities, CapabilityError> {
    let known = kernel_capabilities();
    let added = normalize(cap_add, &known)?;
    let all = added.iter().any(|c| c == ALL);
    let user: Capabilities = names
        .iter()
        .filter(|n| all || added.contains(n))
        .filter_map(|n| oci_capability(n))
        .collect();
    let mut caps = to_oci(names, false);
    caps.set_effective(Some(user.clone()));
    caps.set_permitted(Some(user.clone()));
    caps.set_inheritable(Some(user.clone()));
    caps.set_ambient(Some(user));
    Ok(caps)
}

fn oci_capability(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).ok()
}

fn bit_of(cap: Capability) -> Option<u32> {
    CAPS.iter().position(|(_, c)| *c == cap).map(|i| i as u32)
}

fn mask(set: &Option<Capabilities>) -> u64 {
    set.iter()
        .flatten()
        .filter_map(|c| bit_of(*c))
        .fold(0, |m, bit| m | 1 << bit)
}

fn name_of(bit: u32) -> &'static str {
    CAPS.get(bit as usize).map_or("CAP_?", |(name, _)| name)
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<libc::c_int, Errno> {
    // SAFETY: the prctl options used here take integer arguments only.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Errno::result(rc)
}

/// Drops every capability not in `caps.bounding` from the bounding set (needs CAP_SETPCAP, so
/// call it first). A capability outside the bounding set can never come back in this user
/// namespace, not through setuid-root binaries nor file capabilities: without this, a container
/// started with `--cap-drop` could regain the dropped caps by exec'ing such a binary.
pub fn apply_bounding(caps: &LinuxCapabilities) -> Result<(), CapabilityError> {
    let keep = mask(caps.bounding());
    for bit in 0..64u32 {
        // PR_CAPBSET_READ fails with EINVAL past cap_last_cap: that is the end of the kernel's list,
        // so caps newer than our table are dropped too.
        match prctl(libc::PR_CAPBSET_READ, bit.into(), 0) {
            Err(Errno::EINVAL) => break,
            Err(errno) => return Err(CapabilityError::ReadBounding(errno)),
            Ok(0) => continue,
            Ok(_) => {}
        }
        if keep & (1 << bit) == 0 {
            prctl(libc::PR_CAPBSET_DROP, bit.into(), 0).map_err(|errno| CapabilityError::Bounding {
                cap: name_of(bit),
                errno,
            })?;
        }
    }
    Ok(())
}

/// `PR_SET_KEEPCAPS`: keep permitted capabilities across the setresuid away from uid 0.
pub fn set_keep_caps(keep: bool) -> Result<(), CapabilityError> {
    prctl(libc::PR_SET_KEEPCAPS, keep.into(), 0)
        .map(drop)
        .map_err(CapabilityError::KeepCaps)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets effective, permitted and inheritable in one `capset` (the kernel checks the new sets
/// against the old ones as a whole, so doing them one by one can fail depending on order), then
/// the ambient set: only caps also in permitted and inheritable, as the kernel requires. Kernels
/// without ambient capabilities (< 4.3) are tolerated.
pub fn apply(caps: &LinuxCapabilities) -> Result<(), CapabilityError> {
    let (eff, perm, inh) = (
        mask(caps.effective()),
        mask(caps.permitted()),
        mask(caps.inheritable()),
    );
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: eff as u32,
            permitted: perm as u32,
            inheritable: inh as u32,
        },
        CapData {
            effective: (eff >> 32) as u32,
            permitted: (perm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: header and data match the kernel's v3 layout (two data elements) and outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) };
    Errno::result(rc).map_err(CapabilityError::Capset)?;

    let ambient = mask(caps.ambient()) & perm & inh;
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    ) {
        Err(Errno::EINVAL) => return Ok(()),
        Err(errno) => {
            return Err(CapabilityError::Ambient {
                cap: "(clear all)",
                errno,
            })
        }
        Ok(_) => {}
    }
    for bit in (0..64u32).filter(|b| ambient & (1 << b) != 0) {
        match prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            bit.into(),
        ) {
            Ok(_) | Err(Errno::EINVAL) => {}
            Err(errno) => {
                return Err(CapabilityError::Ambient {
                    cap: name_of(bit),
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// Names in `caps` as a sorted list, for display and tests.
pub fn names(caps: &Option<Capabilities>) -> Vec<String> {
    let set: HashSet<&str> = caps
        .iter()
        .flatten()
        .filter_map(|c| bit_of(*c))
        .map(name_of)
        .collect();
    let mut v: Vec<String> = set.into_iter().map(String::from).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    fn bits(names: &[String]) -> u64 {
        names
            .iter()
            .map(|n| CAPS.iter().position(|(c, _)| c == n).unwrap())
            .fold(0, |m, b| m | 1 << b)
    }

    #[test]
    fn table_matches_kernel_numbering() {
        for (bit, (name, oci)) in CAPS.iter().enumerate() {
            let c = caps::Capability::from_str(name).unwrap();
            assert_eq!(usize::from(c.index()), bit, "{name}");
            assert_eq!(serde_json::to_value(oci).unwrap(), *name);
        }
    }

    #[test]
    fn default_set_is_podmans() {
        let d = default_capabilities();
        assert_eq!(bits(&d), 0x8004_05fb);
        assert_eq!(d, sorted(d.clone()));
        assert_eq!(resolve(&[], &[], false).unwrap(), d);
    }

    #[test]
    fn names_are_case_insensitive_and_prefix_optional() {
        let got = resolve(
            &s(&["net_admin", "CAP_sys_ptrace", "Net_Admin", " cap_net_raw"]),
            &s(&["chown"]),
            false,
        )
        .unwrap();
        let mut want = default_capabilities();
        want.retain(|c| c != "CAP_CHOWN");
        want.extend(s(&["CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_RAW"]));
        assert_eq!(got, sorted(want));
    }

    #[test]
    fn unknown_and_conflicting_names() {
        assert_eq!(
            resolve(&s(&["foo"]), &[], false).unwrap_err().to_string(),
            r#"unknown capability "CAP_FOO""#
        );
        assert_eq!(
            resolve(&[], &s(&["CAP_FOO"]), true).unwrap_err().to_string(),
            r#"unknown capability "CAP_FOO""#
        );
        assert_eq!(
            resolve(&s(&["net_raw"]), &s(&["NET_RAW"]), false)
                .unwrap_err()
                .to_string(),
            r#"capability "CAP_NET_RAW" cannot be dropped and added"#
        );
        assert_eq!(
            resolve(&s(&["all"]), &s(&["ALL"]), false)
                .unwrap_err()
                .to_string(),
            "adding all caps and removing all caps not allowed"
        );
    }

    #[test]
    fn all_and_privileged() {
        let all = kernel_capabilities();
        assert!(all.len() >= 38, "{all:?}"); // cap_last_cap is 37+ on any kernel we support
        assert_eq!(resolve(&s(&["ALL"]), &[], false).unwrap(), all);
        let mut no_chown = all.clone();
        no_chown.retain(|c| c != "CAP_CHOWN");
        assert_eq!(resolve(&s(&["all"]), &s(&["chown"]), false).unwrap(), no_chown);
        assert_eq!(resolve(&[], &s(&["ALL"]), false).unwrap(), Vec::<String>::new());
        assert_eq!(
            resolve(&s(&["net_raw", "kill"]), &s(&["all"]), false).unwrap(),
            s(&["CAP_KILL", "CAP_NET_RAW"])
        );
        assert_eq!(resolve(&[], &[], true).unwrap(), all);
        assert_eq!(resolve(&s(&["net_raw"]), &s(&["chown"]), true).unwrap(), all);
        if let Ok(last) = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap") {
            let last: usize = last.trim().parse().unwrap();
            assert_eq!(all.len(), (last + 1).min(CAPS.len()));
        }
    }

    #[test]
    fn oci_blocks_match_podman() {
        let d = default_capabilities();
        let root = to_oci(&d, true);
        assert_eq!(names(root.bounding()), d);
        assert_eq!(names(root.effective()), d);
        assert_eq!(names(root.permitted()), d);
        assert_eq!(root.inheritable().as_ref().map(|c| c.len()), Some(0));
        assert_eq!(root.ambient().as_ref().map(|c| c.len()), Some(0));

        let user = to_oci(&d, false);
        assert_eq!(names(user.bounding()), d);
        for set in [
            user.effective(),
            user.permitted(),
            user.inheritable(),
            user.ambient(),
        ] {
            assert_eq!(set.as_ref().map(|c| c.len()), Some(0));
        }
        assert_eq!(to_oci_user(&d, &[]).unwrap(), user);

        let mut with_raw = d.clone();
        with_raw.push("CAP_NET_RAW".into());
        let user = to_oci_user(&sorted(with_raw), &s(&["net_raw"])).unwrap();
        for set in [
            user.effective(),
            user.permitted(),
            user.inheritable(),
            user.ambient(),
        ] {
            assert_eq!(names(set), s(&["CAP_NET_RAW"]));
        }
        assert_eq!(names(to_oci_user(&d, &s(&["all"])).unwrap().ambient()), d);
        assert!(to_oci_user(&d, &s(&["bogus"])).is_err());

        // What goes into config.json.
        let json = serde_json::to_value(to_oci(&s(&["CAP_KILL"]), true)).unwrap();
        assert_eq!(json["effective"], serde_json::json!(["CAP_KILL"]));
    }

    /// Reads one hex field ("CapEff") from /proc/self/status without allocating.
    fn status_hex(field: &[u8]) -> Option<u64> {
        let mut buf = [0u8; 8192];
        // SAFETY: plain syscalls on stack memory.
        let len = unsafe {
            let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return None;
            }
            let mut len = 0;
            while len < buf.len() {
                let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
                if n <= 0 {
                    break;
                }
                len += n as usize;
            }
            libc::close(fd);
            len
        };
        let text = &buf[..len];
        let start = text
            .windows(field.len() + 2)
            .position(|w| w[0] == b'\n' && &w[1..=field.len()] == field)?;
        let digits = text[start + field.len() + 1..]
            .iter()
            .skip_while(|b| **b == b'\t');
        let digits = digits.map_while(|b| (*b as char).to_digit(16)).take(16);
        Some(digits.fold(0u64, |v, d| v << 4 | u64::from(d)))
    }

    fn status(field: &[u8]) -> u64 {
        status_hex(field).unwrap_or(u64::MAX)
    }

    fn run_in_child(body: impl FnOnce() -> i32) {
        // SAFETY: the children below only make raw syscalls, then _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = body();
                // SAFETY: leave without running the parent's destructors or atexit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                assert_eq!(
                    waitpid(child, None).unwrap(),
                    WaitStatus::Exited(child, 0),
                    "child check failed"
                );
            }
        }
    }

    /// Unprivileged runs get their capabilities from a new user namespace.
    fn enter_userns_unless_root(root: bool) -> bool {
        // SAFETY: raw syscall in a single-threaded child.
        root || unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0
    }

    #[test]
    fn apply_root_container_caps() {
        let caps = to_oci(&default_capabilities(), true);
        let root =
            caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false);
        run_in_child(|| {
            if !enter_userns_unless_root(root) {
                return 0; // no way to get capabilities here; nothing to test
            }
            if apply_bounding(&caps).is_err() {
                return 10;
            }
            if apply(&caps).is_err() {
                return 11;
            }
            let want = 0x8004_05fb;
            if status(b"CapEff:") != want || status(b"CapPrm:") != want || status(b"CapBnd:") != want {
                return 12;
            }
            if status(b"CapInh:") != 0 || status(b"CapAmb:") != 0 {
                return 13;
            }
            0
        });
    }

    #[test]
    fn apply_non_root_user_with_ambient() {
        // Changing uid needs a mapped target uid: only possible when running as real root.
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let bounding = sorted([default_capabilities(), s(&["CAP_NET_RAW"])].concat());
        let caps = to_oci_user(&bounding, &s(&["NET_BIND_SERVICE"])).unwrap();
        run_in_child(|| {
            if apply_bounding(&caps).is_err() || set_keep_caps(true).is_err() {
                return 10;
            }
            // SAFETY: raw syscalls in the child.
            if unsafe { libc::setresgid(1000, 1000, 1000) } != 0
                || unsafe { libc::setresuid(1000, 1000, 1000) } != 0
            {
                return 11;
            }
            if set_keep_caps(false).is_err() || apply(&caps).is_err() {
                return 12;
            }
            let nbs = 1 << 10;
            if status(b"CapEff:") != nbs || status(b"CapPrm:") != nbs || status(b"CapInh:") != nbs {
                return 13;
            }
            if status(b"CapAmb:") != nbs || status(b"CapBnd:") != (0x8004_05fb | 1 << 13) {
                return 14;
            }
            0
        });
    }
}
