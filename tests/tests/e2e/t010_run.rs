//! `burrow run`: commands, exit codes, environment, `--rm` cleanup.

use burrow_tests::TestEnv;

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

#[test]
fn run_prints_uid_0_inside() {
    let env = env_with_busybox();
    let out = env.run(&["run", "--rm", "bb", "id"]);
    out.success();
    assert_eq!(
        out.stdout_trimmed(),
        "uid=0(root) gid=0(root) groups=0(root)",
        "{out}"
    );
}

#[test]
fn exit_codes_follow_podman() {
    let env = env_with_busybox();
    for (args, want) in [
        (vec!["run", "--rm", "bb", "true"], 0),
        (vec!["run", "--rm", "bb", "false"], 1),
        (vec!["run", "--rm", "bb", "sh", "-c", "exit 42"], 42),
        (vec!["run", "--rm", "bb", "no-such-command"], 127),
        (vec!["run", "--rm", "bb", "/no/such/path"], 127),
        (vec!["run", "--rm", "bb", "/etc"], 126),
        (vec!["run", "--rm", "bb", "/etc/passwd"], 126),
        (vec!["run", "--rm", "--no-such-flag", "bb", "true"], 125),
        (vec!["run", "--rm", "no-such-image", "true"], 125),
        // The kernel ignores SIGKILL sent to a namespace's PID 1 from inside: hence --init.
        (vec!["run", "--rm", "--init", "bb", "sh", "-c", "kill -9 $$"], 137),
    ] {
        let out = env.run(&args);
        assert_eq!(out.code, want, "{out}");
        if (125..=127).contains(&want) {
            assert!(
                out.stderr.starts_with("Error: "),
                "one clear error line expected\n{out}"
            );
        }
    }
    let missing = env.run(&["run", "--rm", "bb", "no-such-command"]);
    assert!(
        missing.stderr.contains("`no-such-command` not found in $PATH"),
        "{missing}"
    );
    let image = env.run(&["run", "--rm", "--pull=never", "no-such-image", "true"]);
    assert!(image.stderr.contains("no-such-image: image not known"), "{image}");
    // With the default --pull=missing it is pulled first (here from the harness's blocked
    // registry, see TestEnv::new): one error naming the image.
    let pulled = env.run(&["run", "--rm", "no-such-image", "true"]);
    assert_eq!(pulled.code, 125, "{pulled}");
    assert!(pulled.stderr.contains("no-such-image"), "{pulled}");
    assert_eq!(pulled.stderr.lines().count(), 1, "{pulled}");
}

#[test]
fn environment_workdir_user_and_entrypoint() {
    let env = env_with_busybox();
    let dir = tempfile::tempdir_in(env.home()).unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\nOVERRIDDEN=file\n").unwrap();
    let out = env.run(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "OVERRIDDEN=flag",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/tmp/newdir",
        "--hostname",
        "box",
        "bb",
        "sh",
        "-c",
        "echo $A $FROM_FILE $OVERRIDDEN $HOSTNAME; pwd; hostname",
    ]);
    out.success();
    assert_eq!(out.stdout_trimmed(), "1 yes flag box\n/tmp/newdir\nbox", "{out}");

    let user = env.run(&[
        "run",
        "--rm",
        "-u",
        "user",
        "bb",
        "sh",
        "-c",
        "id -u; id -g; echo $HOME",
    ]);
    user.success();
    assert_eq!(user.stdout_trimmed(), "1000\n1000\n/home/user", "{user}");
    let numeric = env.run(&["run", "--rm", "-u", "4242:4343", "bb", "sh", "-c", "id -u; id -g"]);
    assert_eq!(numeric.success().stdout_trimmed(), "4242\n4343", "{numeric}");
    let unknown = env.run(&["run", "--rm", "-u", "nosuchuser", "bb", "true"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("unable to find user nosuchuser"),
        "{unknown}"
    );

    let ep = env.run(&["run", "--rm", "--entrypoint", "echo", "bb", "from", "entrypoint"]);
    assert_eq!(ep.success().stdout_trimmed(), "from entrypoint", "{ep}");
    let none = env.run(&["run", "--rm", "bb"]);
    assert_eq!(none.code, 125, "{none}");
    assert!(
        none.stderr.contains("no command or entrypoint provided"),
        "{none}"
    );
}

#[test]
fn import_changes_set_the_default_command() {
    let env = TestEnv::new();
    let tar = burrow_tests::image_gen::busybox_rootfs_once();
    env.run(&[
        "import",
        "--change",
        "CMD [\"echo\", \"default cmd\"]",
        "--change",
        "ENV=GREETING=hi",
        tar.to_str().unwrap(),
        "withcmd",
    ])
    .success();
    let out = env.run(&["run", "--rm", "withcmd"]);
    assert_eq!(out.success().stdout_trimmed(), "default cmd", "{out}");
    let greet = env.run(&["run", "--rm", "withcmd", "sh", "-c", "echo $GREETING"]);
    assert_eq!(greet.success().stdout_trimmed(), "hi", "{greet}");
    let bad = env.run(&["import", "--change", "BOGUS x", tar.to_str().unwrap(), "bad"]);
    assert_eq!(bad.code, 125, "{bad}");
}

#[test]
fn container_changes_stay_out_of_the_image() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "echo changed > /etc/os-release; rm /bin/ls",
    ])
    .success();
    let out = env.run(&["run", "--rm", "bb", "sh", "-c", "cat /etc/os-release; ls /bin/ls"]);
    out.success();
    assert!(out.stdout.contains("burrow test busybox"), "{out}");
}

#[test]
fn rootfs_directory_runs_directly() {
    let env = TestEnv::new();
    let root = env.home().join("exploded");
    std::fs::create_dir(&root).unwrap();
    let tar = burrow_tests::image_gen::busybox_rootfs_once();
    // Unpack without owners (as a user would with plain tar).
    let status = std::process::Command::new("tar")
        .args([
            "-xf",
            tar.to_str().unwrap(),
            "-C",
            root.to_str().unwrap(),
            "--no-same-owner",
            "--exclude=srv/fifo",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = env.run(&[
        "run",
        "--rm",
        "--rootfs",
        root.to_str().unwrap(),
        "sh",
        "-c",
        "echo hi > /written; cat /etc/os-release",
    ]);
    out.success();
    assert!(out.stdout.contains("burrow test busybox"), "{out}");
    assert!(
        root.join("written").exists(),
        "--rootfs writes into the directory itself, as Podman"
    );
}

/// Lists what is left in the store's container dirs and bundles.
fn leftovers(env: &TestEnv) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [
        env.data_dir().join("burrow/storage/containers"),
        env.runtime_dir().join("burrow/containers"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            found.extend(entries.flatten().map(|e| e.path().display().to_string()));
        }
    }
    found
}

#[test]
fn rm_leaves_no_files_and_no_mounts() {
    let env = env_with_busybox();
    for (args, code) in [
        (
            vec![
                "run",
                "--rm",
                "bb",
                "sh",
                "-c",
                "echo x > /newfile; mkdir -p /a/b/c",
            ],
            0,
        ),
        (vec!["run", "--rm", "bb", "false"], 1),
        (vec!["run", "--rm", "bb", "no-such-command"], 127),
        (
            vec![
                "run",
                "--rm",
                "--init",
                "-u",
                "user",
                "bb",
                "sh",
                "-c",
                "kill -9 $$",
            ],
            137,
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.code, code, "{out}");
        assert_eq!(leftovers(&env), Vec::<String>::new(), "files left after {args:?}");
    }
    // No mount of the store is visible in a fresh namespace of the user's.
    let mounts = env.run(&["unshare", "cat", "/proc/self/mountinfo"]);
    mounts.success();
    let store = env.data_dir().join("burrow");
    assert!(
        !mounts.stdout.contains(store.to_str().unwrap()),
        "a mount of the store remained:\n{}",
        mounts.stdout
    );
    // Without --rm the container's files stay.
    env.run(&["run", "--name", "kept", "bb", "true"]).success();
    assert_eq!(
        leftovers(&env).len(),
        2,
        "a container without --rm keeps its dirs"
    );
}

/// Starts `burrow ARGS` (a container that prints `ready` first) and returns once it has.
fn spawn_until_ready(env: &TestEnv, args: &[&str]) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = env
        .cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    // The command may print before burrow records that it runs (right after its exec): a
    // burrow killed in between leaves a "created" container, which only `rm` removes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while env
        .run(&["ps", "-q", "--filter", "status=running"])
        .stdout_trimmed()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "never recorded as running");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

#[test]
fn rm_cleans_up_when_burrow_is_terminated() {
    let env = env_with_busybox();
    let mut child = spawn_until_ready(
        &env,
        &[
            "run",
            "--rm",
            "--init",
            "bb",
            "sh",
            "-c",
            "echo ready; exec sleep 300",
        ],
    );
    // SIGTERM to burrow reaches the container (sig-proxy), whose init passes it on.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "the container's exit from SIGTERM");
    assert_eq!(leftovers(&env), Vec::<String>::new());
}

#[test]
fn rm_cleans_up_after_burrow_is_killed() {
    let env = env_with_busybox();
    let mut child = spawn_until_ready(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb",
            "sh",
            "-c",
            "echo ready; exec sleep 300",
        ],
    );
    // The container's first process is burrow's only child (no network stack beside it).
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let container = std::path::PathBuf::from(format!("/proc/{}", children.trim()));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // The container dies with burrow (no process outlives its run): bounded wait until it is
    // gone or a zombie (this VM's init does not reap orphans).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alive = || {
        std::fs::read_to_string(container.join("stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
    };
    while alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container outlived burrow"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        leftovers(&env).len(),
        2,
        "a killed burrow leaves its container's files"
    );
    // The next run removes what the killed one left.
    env.run(&["run", "--rm", "bb", "true"]).success();
    assert_eq!(leftovers(&env), Vec::<String>::new());
}

#[test]
fn name_conflicts_are_refused() {
    let env = env_with_busybox();
    env.run(&["run", "--name", "one", "bb", "true"]).success();
    let again = env.run(&["run", "--name", "one", "bb", "true"]);
    assert_eq!(again.code, 125, "{again}");
    assert!(
        again
            .stderr
            .contains("the container name \"one\" is already in use"),
        "{again}"
    );
}

#[test]
fn ulimits_are_set_and_open_files_raised_to_the_hard_limit() {
    let env = env_with_busybox();
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let show = "echo $(ulimit -Sn) $(ulimit -Hn)";
    // No --ulimit nofile: the soft limit is raised to the hard one, as Podman does.
    let default = env.run(&["run", "--rm", "bb", "sh", "-c", show]);
    let want = if hard == nix::libc::RLIM_INFINITY {
        "unlimited unlimited".to_string()
    } else {
        format!("{hard} {hard}")
    };
    assert_eq!(default.success().stdout_trimmed(), want, "{default}");
    env.run(&[
        "run",
        "-d",
        "--name",
        "limited",
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "nproc=50",
        "bb",
        "sleep",
        "300",
    ])
    .success();
    let out = env.run(&[
        "exec",
        "limited",
        "sh",
        "-c",
        "echo $(ulimit -Sn) $(ulimit -Hn) $(ulimit -u)",
    ]);
    assert_eq!(
        out.success().stdout_trimmed(),
        "100 200 50",
        "exec gets them too: {out}"
    );
    env.run(&["rm", "-f", "-t", "0", "limited"]).success();
    // Bad ones are refused before anything is made.
    for bad in ["nofile", "bogus=1", "nofile=x", "nofile=10:5"] {
        let out = env.run(&["run", "--rm", "--ulimit", bad, "bb", "true"]);
        assert_eq!(out.code, 125, "{out}");
        assert!(out.stderr.contains(&format!("invalid --ulimit {bad:?}")), "{out}");
    }
    if hard != nix::libc::RLIM_INFINITY {
        let above = format!("nofile=1:{}", hard + 1);
        let out = env.run(&["run", "--rm", "--ulimit", &above, "bb", "true"]);
        assert_eq!(out.code, 125, "{out}");
        assert!(out.stderr.contains("cannot raise"), "{out}");
    }
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "", "nothing half-made");
}

#[test]
fn bad_names_are_refused_before_anything_is_made() {
    let env = env_with_busybox();
    for bad in ["bad name", "a/b", "_x"] {
        let out = env.run(&["run", "--rm", "--name", bad, "bb", "true"]);
        assert_eq!(out.code, 125, "{out}");
        assert!(out.stderr.contains("names must match"), "{out}");
    }
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "", "nothing half-made");
}

#[test]
fn group_add_and_shm_size() {
    let env = env_with_busybox();
    let out = env.run(&[
        "run",
        "--rm",
        "--group-add",
        "10",
        "--group-add",
        "root",
        "-u",
        "1000",
        "bb",
        "id",
        "-G",
    ]);
    // The kernel keeps the supplementary groups sorted.
    assert_eq!(out.success().stdout_trimmed(), "1000 0 10", "{out}");
    let missing = env.run(&["run", "--rm", "--group-add", "nosuch", "bb", "true"]);
    assert_eq!(missing.code, 126, "{missing}");
    assert!(
        missing.stderr.contains("unable to find group nosuch"),
        "{missing}"
    );
    let shm = env.run(&[
        "run",
        "--rm",
        "--shm-size",
        "1m",
        "bb",
        "sh",
        "-c",
        "grep ' /dev/shm ' /proc/self/mountinfo",
    ]);
    assert!(shm.success().stdout.contains("size=1024k"), "{shm}");
    let default = env.run(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "grep ' /dev/shm ' /proc/self/mountinfo",
    ]);
    assert!(default.success().stdout.contains("size=65536k"), "{default}");
    let bad = env.run(&["run", "--rm", "--shm-size", "bogus", "bb", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "", "nothing half-made");
}
