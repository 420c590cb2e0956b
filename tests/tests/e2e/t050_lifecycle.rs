//! Containers without a daemon: `run -d` under a per-container monitor, `ps`, `logs`,
//! `stop`, `start`, `kill`, `wait`, `rm`, restart policies.

use std::time::{Duration, Instant};

use burrow_tests::TestEnv;

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

/// Polls `burrow ps -a --format FORMAT` for NAME until `want(line)` holds (bounded).
fn wait_for(env: &TestEnv, name: &str, format: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = env.run(&[
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            format,
        ]);
        out.success();
        let line = out.stdout_trimmed().to_string();
        if want(&line) {
            return line;
        }
        assert!(Instant::now() < deadline, "{name}: still {line:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn detached_container_runs_logs_stops_and_is_removed() {
    let env = env_with_busybox();
    let out = env.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "bb",
        "sh",
        "-c",
        "echo hello; echo oops >&2; exec sleep 300",
    ]);
    out.success();
    let id = out.stdout_trimmed().to_string();
    assert_eq!(id.len(), 64, "run -d prints the full id\n{out}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let ps = env.run(&["ps"]);
    assert!(ps.success().stdout.contains(&id[..12]), "{ps}");
    assert!(ps.stdout.starts_with("CONTAINER ID"), "{ps}");
    wait_for(&env, "web", "{{.Status}}", |s| s.starts_with("Up "));
    // The output reaches the log (bounded wait: the monitor writes it as it comes).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = env.run(&["logs", "web"]);
        if logs.stdout.contains("hello") && logs.stderr.contains("oops") {
            break;
        }
        assert!(Instant::now() < deadline, "logs never showed the output\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // sh as PID 1 ignores SIGTERM: stop escalates to SIGKILL after the timeout.
    env.run(&["stop", "-t", "1", "web"]).success();
    let status = wait_for(&env, "web", "{{.Status}}", |s| s.starts_with("Exited"));
    assert!(status.starts_with("Exited (137)"), "{status}");
    // Running containers need -f to go.
    env.run(&["start", "web"]).success();
    wait_for(&env, "web", "{{.Status}}", |s| s.starts_with("Up "));
    let refused = env.run(&["rm", "web"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("cannot remove container"), "{refused}");
    env.run(&["rm", "-f", "web"]).success();
    assert_eq!(env.run(&["ps", "-a", "-q"]).success().stdout_trimmed(), "");
    let missing = env.run(&["rm", "web"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .contains("no container with name or ID \"web\" found"),
        "{missing}"
    );
}

#[test]
fn wait_prints_the_exit_code_and_create_start_work() {
    let env = env_with_busybox();
    let created = env.run(&["create", "--name", "c", "bb", "sh", "-c", "exit 7"]);
    created.success();
    assert_eq!(wait_for(&env, "c", "{{.Status}}", |_| true), "Created");
    env.run(&["start", "c"]).success();
    let waited = env.run(&["wait", "c"]);
    assert_eq!(waited.success().stdout_trimmed(), "7", "{waited}");
    let status = wait_for(&env, "c", "{{.Status}}", |s| s.starts_with("Exited"));
    assert!(status.starts_with("Exited (7)"), "{status}");
}

#[test]
fn detached_errors_exit_like_foreground() {
    let env = env_with_busybox();
    let out = env.run(&["run", "-d", "bb", "no-such-command"]);
    assert_eq!(out.code, 127, "{out}");
    assert!(out.stderr.contains("not found in $PATH"), "{out}");
}

#[test]
fn rm_container_removes_itself_when_detached() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--rm", "--name", "gone", "bb", "true"])
        .success();
    wait_for(&env, "gone", "{{.Names}}", |s| s.is_empty());
    let data = env.data_dir().join("burrow/storage/containers");
    assert_eq!(
        std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0),
        0,
        "files left"
    );
}

#[test]
fn restart_on_failure_retries_then_gives_up() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "bb",
        "sh",
        "-c",
        "exit 3",
    ])
    .success();
    let done = wait_for(&env, "flaky", "{{.Restarts}} {{.Status}}", |s| {
        s.starts_with("2 Exited")
    });
    assert!(done.starts_with("2 Exited (3)"), "{done}");
    let bad = env.run(&["run", "--rm", "--restart", "always", "bb", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
}

#[test]
fn a_killed_monitor_takes_its_container_and_rm_cleans_up() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "orphan", "bb", "sleep", "300"])
        .success();
    let pid: i32 = wait_for(&env, "orphan", "{{.Pid}}", |s| s != "0")
        .parse()
        .unwrap();
    // The monitor is the container's parent.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let monitor: i32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    // The container dies with it; burrow finds out from the kernel.
    let status = wait_for(&env, "orphan", "{{.Status}}", |s| s.starts_with("Exited"));
    assert!(status.starts_with("Exited (-1)"), "{status}");
    env.run(&["rm", "-f", "orphan"]).success();
    assert_eq!(env.run(&["ps", "-a", "-q"]).success().stdout_trimmed(), "");
}

#[test]
fn logs_follow_ends_with_the_container() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "-d",
        "--name",
        "talker",
        "bb",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.1; done",
    ])
    .success();
    let out = env.run(&["logs", "-f", "talker"]);
    assert_eq!(out.success().stdout, "line 1\nline 2\nline 3\n", "{out}");
    let tail = env.run(&["logs", "--tail", "1", "talker"]);
    assert_eq!(tail.success().stdout, "line 3\n");
    // --since/--until take Podman's forms: a duration means that long ago.
    let since = |bound: &str| {
        env.run(&["logs", "--since", bound, "talker"])
            .success()
            .stdout
            .clone()
    };
    assert_eq!(since("1h"), "line 1\nline 2\nline 3\n");
    assert_eq!(since("2099-01-01T00:00:00Z"), "");
    assert_eq!(since("2000-01-01"), "line 1\nline 2\nline 3\n");
    let until = env.run(&["logs", "--until", "1h", "talker"]);
    assert_eq!(until.success().stdout, "", "{until}");
    let bad = env.run(&["logs", "--since", "bogus", "talker"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("parsing --since \"bogus\""), "{bad}");
}
