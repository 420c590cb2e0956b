//! `exec`: a new process in every namespace of a running container, with its capabilities,
//! seccomp filter, environment and user; `-it`, `-d`, `-u`, `-w`, `-e`, `--env-file`,
//! `--privileged`, `--preserve-fds`; Podman's exit codes.

use std::time::Duration;

use burrow_tests::{current_uid, shell_quote, TestEnv};

/// A TestEnv with the busybox image and a running container `name`.
fn with_running(name: &str, extra: &[&str]) -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["bb", "sleep", "300"]);
    env.run(&args).success();
    env
}

#[test]
fn exec_joins_every_namespace_of_the_container() {
    let env = with_running("ns", &["--hostname", "inside"]);
    let out = env.run(&[
        "exec",
        "ns",
        "sh",
        "-c",
        "for n in mnt pid uts ipc net user; do [ \"$(readlink /proc/1/ns/$n)\" = \"$(readlink /proc/self/ns/$n)\" ] || echo differs:$n; done; hostname; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    let text = out.success().stdout.clone();
    assert!(!text.contains("differs"), "{out}");
    assert!(text.contains("inside\n"), "{out}");
    // PID 1 is the container's first process: the exec is in its pid namespace.
    assert!(text.contains("sleep 300"), "{out}");
}

#[test]
fn exec_has_the_containers_capabilities_and_seccomp() {
    let env = with_running("caps", &[]);
    let out = env.run(&[
        "exec",
        "caps",
        "sh",
        "-c",
        "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/1/status; echo --; grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status",
    ]);
    let text = out.success().stdout.clone();
    let (init, exec) = text.split_once("--\n").unwrap();
    assert_eq!(init, exec, "{out}");
    assert!(exec.contains("CapEff:\t00000000800405fb"), "{out}");
    assert!(exec.contains("Seccomp:\t2"), "{out}");
    let privileged = env.run(&[
        "exec",
        "--privileged",
        "caps",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(
        !privileged.success().stdout.contains("00000000800405fb"),
        "--privileged gives every capability\n{privileged}"
    );
}

#[test]
fn exec_exit_codes_are_podmans() {
    let env = with_running("codes", &[]);
    assert_eq!(env.run(&["exec", "codes", "sh", "-c", "exit 42"]).code, 42);
    let missing = env.run(&["exec", "codes", "no-such-command"]);
    assert_eq!(missing.code, 127, "{missing}");
    assert!(missing.stderr.contains("not found in $PATH"), "{missing}");
    let not_exec = env.run(&["exec", "codes", "/etc/passwd"]);
    assert_eq!(not_exec.code, 126, "{not_exec}");
    let nobody = env.run(&["exec", "no-such-container", "true"]);
    assert_eq!(nobody.code, 125, "{nobody}");
    assert!(nobody.stderr.contains("no such container"), "{nobody}");
    env.run(&["create", "--name", "created", "bb", "true"]).success();
    let stopped = env.run(&["exec", "created", "true"]);
    assert_eq!(stopped.code, 125, "{stopped}");
    assert!(stopped.stderr.contains("container state improper"), "{stopped}");
}

#[test]
fn exec_user_workdir_and_environment() {
    let env = with_running("ue", &["-e", "FROM_RUN=1"]);
    let out = env.run(&["exec", "-u", "nobody", "ue", "id"]);
    assert!(
        out.success()
            .stdout
            .starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{out}"
    );
    let out = env.run(&[
        "exec",
        "-u",
        "1000:1000",
        "-w",
        "/home/user",
        "ue",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(out.success().stdout, "1000\n/home/user\n");
    let envfile = env.home().join("exec.env");
    std::fs::write(&envfile, "# a comment\nFROM_FILE=2\n").unwrap();
    let out = env.run(&[
        "exec",
        "-e",
        "FROM_FLAG=3",
        "--env-file",
        &envfile.to_string_lossy(),
        "ue",
        "sh",
        "-c",
        "echo $FROM_RUN $FROM_FILE $FROM_FLAG",
    ]);
    assert_eq!(out.success().stdout, "1 2 3\n");
    let bad = env.run(&["exec", "-u", "nosuchuser", "ue", "true"]);
    assert_eq!(bad.code, 126, "{bad}");
}

#[test]
fn exec_it_gets_a_terminal_of_the_container() {
    let env = with_running("tty", &[]);
    let out = env.run_in_pty(
        &["exec", "-it", "tty", "sh", "-c", "tty; exit 3"],
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    // Without -t there is no terminal.
    let plain = env.run(&["exec", "tty", "sh", "-c", "tty || true"]);
    assert!(plain.success().stdout.contains("not a tty"), "{plain}");
}

#[test]
fn exec_detached_prints_a_session_id_and_runs_on() {
    let env = with_running("bg", &[]);
    let out = env.run(&[
        "exec",
        "-d",
        "bg",
        "sh",
        "-c",
        "echo done > /tmp/bg-done; sleep 30",
    ]);
    let id = out.success().stdout_trimmed().to_string();
    assert_eq!(id.len(), 64, "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ps = env.run(&["exec", "bg", "cat", "/tmp/bg-done"]);
        if ps.code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the detached exec never ran\n{ps}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let top = env.run(&["top", "bg", "args"]);
    assert!(top.success().stdout.contains("sleep 30"), "{top}");
}

#[test]
fn exec_preserve_fds_passes_descriptors_on() {
    let env = with_running("fds", &[]);
    let file = env.home().join("passed");
    std::fs::write(&file, "through fd 3\n").unwrap();
    let bin = burrow_tests::burrow_bin();
    let script = format!(
        "{} exec --preserve-fds 1 fds cat /proc/self/fd/3 3<{}",
        shell_quote(&bin.to_string_lossy()),
        shell_quote(&file.to_string_lossy())
    );
    let out = burrow_tests::run_bounded(env.command("sh", &["-c", &script]), None, Duration::from_secs(60))
        .unwrap();
    assert_eq!(out.success().stdout, "through fd 3\n");
    // Without it, the descriptor stays out.
    let script = format!(
        "{} exec fds ls /proc/self/fd/3 3<{}",
        shell_quote(&bin.to_string_lossy()),
        shell_quote(&file.to_string_lossy())
    );
    let out = burrow_tests::run_bounded(env.command("sh", &["-c", &script]), None, Duration::from_secs(60))
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
}

#[test]
fn exec_in_a_keep_id_container_enters_its_user_namespace() {
    let env = with_running("kid", &["--userns", "keep-id"]);
    let out = env.run(&["exec", "kid", "id", "-u"]);
    assert_eq!(out.success().stdout_trimmed(), current_uid().to_string());
    let root = env.run(&[
        "exec",
        "-u",
        "0",
        "kid",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    let text = root.success().stdout.clone();
    assert!(text.starts_with("0\n"), "{root}");
    // The nested map, not burrow's: the exec is in the container's user namespace.
    assert!(text.lines().count() > 2, "{root}");
}
