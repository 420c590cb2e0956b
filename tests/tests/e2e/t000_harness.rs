//! The harness itself: who runs the tests, and that each TestEnv is private.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use burrow_tests::{current_uid, current_user_has_subuid_range, run_bounded, TestEnv};

#[test]
fn harness_runs_as_unprivileged_user() {
    assert_ne!(
        current_uid(),
        0,
        "the e2e tests must run as an unprivileged user; `sudo hack/test.sh` runs them as burrowtest"
    );
}

#[test]
fn harness_env_is_private() {
    let (a, b) = (TestEnv::new(), TestEnv::new());
    assert_ne!(a.root(), b.root());
    for env in [&a, &b] {
        for dir in [
            env.root(),
            env.home(),
            env.data_dir(),
            env.config_dir(),
            env.cache_dir(),
            env.runtime_dir(),
        ] {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{} must be 0700", dir.display());
        }
        let cmd = env.cmd(&["--version"]);
        let keys: BTreeSet<String> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        let want: BTreeSet<String> = [
            "PATH",
            "HOME",
            "USER",
            "LOGNAME",
            "XDG_DATA_HOME",
            "XDG_CONFIG_HOME",
            "XDG_CACHE_HOME",
            "XDG_RUNTIME_DIR",
            "LANG",
        ]
        .map(String::from)
        .into();
        assert_eq!(keys, want);
        let get = |k: &str| {
            cmd.get_envs()
                .find(|(n, _)| *n == k)
                .and_then(|(_, v)| v)
                .unwrap()
                .to_owned()
        };
        assert_eq!(get("XDG_RUNTIME_DIR"), env.runtime_dir().as_os_str());
        assert_eq!(get("HOME"), env.home().as_os_str());
    }
    let root = a.root().to_path_buf();
    drop(a);
    assert!(!root.exists(), "dropping a TestEnv removes {}", root.display());
}

#[test]
fn burrow_binary_runs() {
    let env = TestEnv::new();
    let out = env.run(&["--version"]);
    assert!(out.success().stdout.contains("burrow version"), "{out}");
}

#[test]
fn burrow_binary_runs_on_a_pty() {
    let env = TestEnv::new();
    let out = env.run_in_pty(&["--version"], b"", Duration::from_secs(60));
    assert!(out.success().stdout.contains("burrow version"), "{out}");
}

/// Runs only in the `norange_` pass, as burrownorange.
#[test]
fn norange_user_has_no_subuid_range() {
    assert!(
        !current_user_has_subuid_range(),
        "user {} must have no /etc/subuid entry for the norange_ tests",
        burrow_tests::current_user_name()
    );
}

/// With BURROW_TEST_SYSTEMD=1 (hack/test.sh started the manager) the systemd env must reach it.
#[test]
fn systemd_env_reaches_the_user_manager() {
    let Some(env) = TestEnv::new_with_systemd() else {
        return;
    };
    let out = run_bounded(
        env.command("systemctl", &["--user", "is-system-running"]),
        None,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(out.stdout_trimmed(), "running" | "degraded"), "{out}");
}
