//! Labels, annotations, log drivers and options, `ps --sort`, and the monitor's pid file.

use burrow_tests::TestEnv;

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

#[test]
fn labels_and_annotations() {
    let env = env_with_busybox();
    env.run(&[
        "create",
        "--name",
        "l",
        "--label",
        "tier=web",
        "-l",
        "flag",
        "--annotation",
        "org.example/a=1",
        "bb",
        "true",
    ])
    .success();
    env.run(&["create", "--name", "m", "bb", "true"]).success();
    let filtered = env.run(&["ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}}"]);
    assert_eq!(filtered.success().stdout_trimmed(), "l", "{filtered}");
    let by_key = env.run(&["ps", "-a", "--filter", "label=flag", "--format", "{{.Names}}"]);
    assert_eq!(by_key.success().stdout_trimmed(), "l", "{by_key}");
    // Podman's {{.Labels}} is the map.
    let labels = env.run(&["ps", "-a", "--filter", "name=^l$", "--format", "{{.Labels}}"]);
    assert_eq!(
        labels.success().stdout_trimmed(),
        "map[flag: tier:web]",
        "{labels}"
    );
    let label = env.run(&["inspect", "--format", "{{index .Config.Labels \"tier\"}}", "l"]);
    assert_eq!(label.success().stdout_trimmed(), "web", "{label}");
    // No labels, no healthcheck: both still there, empty, as Podman's.
    let none = env.run(&[
        "inspect",
        "--format",
        "{{.Config.Labels}}|{{.State.Health.Status}}|",
        "m",
    ]);
    assert_eq!(none.success().stdout_trimmed(), "map[]||", "{none}");
    let label = env.run(&["inspect", "--format", "{{.Config.Labels.tier}}", "l"]);
    assert_eq!(label.success().stdout_trimmed(), "web", "{label}");
    // Annotations reach the OCI spec (config.json) when the container starts.
    env.run(&["start", "l"]).success();
    env.run(&["wait", "l"]).success();
    let id = env
        .run(&["inspect", "--format", "{{.Id}}", "l"])
        .success()
        .stdout_trimmed()
        .to_string();
    let config = env
        .runtime_dir()
        .join(format!("burrow/containers/{id}/config.json"));
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(spec["annotations"]["org.example/a"], "1", "{spec}");
    let bad = env.run(&["create", "--label", "=x", "bb", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
}

#[test]
fn log_drivers_and_max_size() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "-d",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "bb",
        "echo",
        "hello",
    ])
    .success();
    env.run(&["wait", "quiet"]).success();
    let none = env.run(&["logs", "quiet"]);
    assert_eq!(none.code, 125, "{none}");
    assert!(none.stderr.contains("'none' log driver"), "{none}");
    // 200 lines of ~60 bytes with the log capped at 2 KiB: the start is gone, the end stays.
    let script = "i=0; while [ $i -lt 200 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done";
    env.run(&[
        "run",
        "-d",
        "--name",
        "capped",
        "--log-opt",
        "max-size=2k",
        "bb",
        "sh",
        "-c",
        script,
    ])
    .success();
    env.run(&["wait", "capped"]).success();
    let logs = env.run(&["logs", "capped"]);
    logs.success();
    assert!(logs.stdout.contains("line-199-"), "{logs}");
    assert!(
        !logs.stdout.contains("line-0-"),
        "the log was emptied at its size\n{logs}"
    );
    let bad = env.run(&["run", "--rm", "--log-driver", "syslog", "bb", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("syslog"), "{bad}");
}

#[test]
fn ps_sorts_and_the_monitor_leaves_its_pid() {
    let env = env_with_busybox();
    for name in ["bravo", "alpha", "charlie"] {
        env.run(&["create", "--name", name, "bb", "true"]).success();
    }
    let sorted = env.run(&["ps", "-a", "--sort", "names", "--format", "{{.Names}}"]);
    assert_eq!(
        sorted.success().stdout_trimmed(),
        "alpha\nbravo\ncharlie",
        "{sorted}"
    );
    assert_eq!(env.run(&["ps", "-a", "--sort", "bogus"]).code, 125);
    // A systemd unit can follow the monitor through its pid file (Type=forking, PIDFile=).
    let out = env.run(&["run", "-d", "--name", "watched", "bb", "sleep", "300"]);
    let id = out.success().stdout_trimmed().to_string();
    let pid_file = env
        .runtime_dir()
        .join(format!("burrow/containers/{id}/monitor.pid"));
    let monitor: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let container: i32 = env
        .run(&["inspect", "--format", "{{.State.Pid}}", "watched"])
        .success()
        .stdout_trimmed()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{container}/stat")).unwrap();
    let parent: i32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        parent, monitor,
        "the monitor in monitor.pid is the container's parent"
    );
    env.run(&["rm", "-f", "watched"]).success();
}
