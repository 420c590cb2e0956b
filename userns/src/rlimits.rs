//! A container process's resource limits (`--ulimit`), set just before it execs.
//!
//! Rootless, a limit can be lowered, and a soft limit raised up to its hard one, but no hard
//! limit raised: that takes CAP_SYS_RESOURCE in the initial user namespace. Without a
//! `nofile` of its own, the process gets its soft open-files limit raised to the hard one, as
//! Podman and Docker give containers (1024 is too few for many servers); decided at each
//! start, so that a container created in a shell and started by a unit with other limits
//! still starts.

use nix::errno::Errno;
use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// Podman's and Docker's names for the limits (`--ulimit NAME=SOFT[:HARD]`).
const NAMES: &[(&str, PosixRlimitType)] = &[
    ("as", PosixRlimitType::RlimitAs),
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
];

fn resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    match typ {
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
    }
}

fn name(typ: PosixRlimitType) -> &'static str {
    NAMES.iter().find(|(_, t)| *t == typ).map_or("?", |(n, _)| n)
}

/// The limit's (soft, hard) for this process now.
fn current(typ: PosixRlimitType) -> (u64, u64) {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(resource(typ), &mut now) };
    (now.rlim_cur, now.rlim_max)
}

fn value(text: &str) -> Option<u64> {
    match text {
        "-1" | "unlimited" => Some(libc::RLIM_INFINITY),
        n => n.parse().ok(),
    }
}

/// Parses one `--ulimit NAME=SOFT[:HARD]` (-1 or `unlimited` for no limit; HARD defaults to
/// SOFT), checked against this process's hard limit, which a rootless container cannot
/// exceed. The error names the option and says what is wrong.
pub fn parse(option: &str) -> Result<PosixRlimit, String> {
    let bad = |why: String| format!("invalid --ulimit {option:?}: {why}");
    let (name, values) = option
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]".into()))?;
    let typ = NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            bad(format!("no limit named {name:?} (one of {})", names.join(", ")))
        })?;
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    let (Some(soft), Some(hard)) = (value(soft), value(hard)) else {
        return Err(bad("the limits must be numbers, -1 or unlimited".into()));
    };
    if soft > hard {
        return Err(bad(format!(
            "the soft limit {soft} is above the hard limit {hard}"
        )));
    }
    let (_, allowed) = current(typ);
    if hard > allowed {
        return Err(bad(format!(
            "the hard limit is above yours ({allowed}), which a rootless container cannot raise"
        )));
    }
    Ok(PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .expect("rlimit fields are all set"))
}

/// Sets `limits`, and raises the soft open-files limit to the hard one unless `limits` has
/// one. The error names the limit the kernel refused.
pub fn apply(limits: &[PosixRlimit]) -> Result<(), (String, Errno)> {
    let set = |typ: PosixRlimitType, soft: u64, hard: u64| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we own.
        match unsafe { libc::setrlimit(resource(typ), &limit) } {
            0 => Ok(()),
            _ => Err((
                format!("setting the {} limit to {soft}:{hard}", name(typ)),
                Errno::last(),
            )),
        }
    };
    for l in limits {
        set(l.typ(), l.soft(), l.hard())?;
    }
    if !limits.iter().any(|l| l.typ() == PosixRlimitType::RlimitNofile) {
        let (_, hard) = current(PosixRlimitType::RlimitNofile);
        set(PosixRlimitType::RlimitNofile, hard, hard)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_podmans_spelling() {
        let l = parse("nofile=100:200").unwrap();
        assert_eq!(
            (l.typ(), l.soft(), l.hard()),
            (PosixRlimitType::RlimitNofile, 100, 200)
        );
        let l = parse("nproc=50").unwrap();
        assert_eq!((l.soft(), l.hard()), (50, 50));
        let (_, core_hard) = current(PosixRlimitType::RlimitCore);
        if core_hard == libc::RLIM_INFINITY {
            assert_eq!(parse("core=-1").unwrap().hard(), libc::RLIM_INFINITY);
        }
        for bad in ["nofile", "bogus=1", "nofile=x", "nofile=10:5", "nofile=1:x"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        let (_, hard) = current(PosixRlimitType::RlimitNofile);
        if hard != libc::RLIM_INFINITY {
            let e = parse(&format!("nofile=1:{}", hard + 1)).unwrap_err();
            assert!(e.contains("cannot raise"), "{e}");
        }
    }

    #[test]
    fn every_name_has_a_resource() {
        for (n, t) in NAMES {
            assert_eq!(name(*t), *n);
            let _ = resource(*t);
        }
    }
}
