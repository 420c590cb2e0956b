//! The rest of the container commands: `inspect` (containers), `rename`, the `container` noun
//! and `container prune`, `top`, `pause`/`unpause`, `diff`, `commit`, `cp`, `events`,
//! `stats --no-stream`, `port`.

use std::time::{Duration, Instant};

use burrow_tests::{burrow_bin, run_bounded, shell_quote, TestEnv};

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

/// Runs `sh -c SCRIPT` with `$B` set to the burrow binary, in the env.
fn sh(env: &TestEnv, script: &str) -> burrow_tests::Outcome {
    let full = format!("B={}; {script}", shell_quote(&burrow_bin().to_string_lossy()));
    run_bounded(env.command("sh", &["-c", &full]), None, Duration::from_secs(120)).unwrap()
}

fn inspect(env: &TestEnv, name: &str, format: &str) -> String {
    env.run(&["inspect", "--format", format, name])
        .success()
        .stdout_trimmed()
        .to_string()
}

#[test]
fn inspect_shows_podmans_fields_for_containers() {
    let env = env_with_busybox();
    let id = env
        .run(&[
            "run",
            "-d",
            "--name",
            "i1",
            "--restart",
            "on-failure:3",
            "bb",
            "sleep",
            "300",
        ])
        .success()
        .stdout_trimmed()
        .to_string();
    let out = env.run(&["inspect", "i1"]);
    let json: serde_json::Value = serde_json::from_str(&out.success().stdout).unwrap();
    let c = &json[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "i1");
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"], serde_json::json!(["300"]));
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    assert!(c["State"]["Pid"].as_i64().unwrap() > 0, "{out}");
    assert_eq!(c["ImageName"], "localhost/bb:latest");
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["sleep", "300"]));
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
    assert!(c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "container=burrow"));
    assert_eq!(
        inspect(
            &env,
            "i1",
            "{{.State.Status}} {{.RestartCount}} {{.Config.StopSignal}}"
        ),
        "running 0 SIGTERM"
    );
    // `container inspect` and --type.
    let out = env.run(&["container", "inspect", "--format", "{{.Name}}", "i1"]);
    assert_eq!(out.success().stdout_trimmed(), "i1");
    let wrong = env.run(&["container", "inspect", "bb"]);
    assert_eq!(wrong.code, 125, "{wrong}");
    assert!(wrong.stderr.contains("no such container bb"), "{wrong}");
    let image = env.run(&["inspect", "--type", "image", "--format", "{{.Id}}", "bb"]);
    assert_eq!(image.success().stdout_trimmed().len(), 64);
    let none = env.run(&["inspect", "nothing"]);
    assert_eq!(none.code, 125);
    assert!(none.stderr.contains("no such object: \"nothing\""), "{none}");
    env.run(&["stop", "-t", "0", "i1"]).success();
    assert_eq!(
        inspect(
            &env,
            "i1",
            "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}}"
        ),
        "exited false 137"
    );
}

#[test]
fn rename_and_the_container_noun() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "old", "bb", "true"]).success();
    env.run(&["container", "create", "--name", "other", "bb", "true"])
        .success();
    env.run(&["rename", "old", "new"]).success();
    let names = env.run(&["container", "ls", "-a", "--format", "{{.Names}}"]);
    assert_eq!(names.success().stdout, "other\nnew\n");
    let taken = env.run(&["rename", "new", "other"]);
    assert_eq!(taken.code, 125);
    assert!(taken.stderr.contains("already in use"), "{taken}");
    let bad = env.run(&["container", "rename", "new", "no spaces"]);
    assert_eq!(bad.code, 125);
    assert!(bad.stderr.contains("names must match"), "{bad}");
    assert_eq!(env.run(&["container", "exists", "new"]).code, 0);
    assert_eq!(env.run(&["container", "exists", "old"]).code, 1);
    // prune removes what does not run, and keeps what does.
    env.run(&["container", "run", "-d", "--name", "up", "bb", "sleep", "300"])
        .success();
    let pruned = env.run(&["container", "prune", "-f"]);
    assert_eq!(pruned.success().stdout.lines().count(), 2, "{pruned}");
    let left = env.run(&["container", "list", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left.success().stdout, "up\n");
    env.run(&["container", "rm", "-f", "up"]).success();
}

#[test]
fn top_lists_the_containers_processes() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "-d",
        "--name",
        "t",
        "bb",
        "sh",
        "-c",
        "sleep 300 & exec sleep 301",
    ])
    .success();
    // Until the shell has started `sleep 300` and become `sleep 301` (its own command line
    // names both from the start, so only the processes' names tell).
    let words = |out: &burrow_tests::Outcome| -> Vec<String> {
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let both_sleep = |lines: &[String]| {
        lines.contains(&"1 0 sleep".to_string())
            && lines
                .iter()
                .any(|l| l.ends_with(" 1 sleep") && !l.starts_with("1 "))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let custom = loop {
        let out = env.run(&["top", "t", "pid,ppid", "comm"]);
        if both_sleep(&words(&out)) || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = words(custom.success());
    assert_eq!(lines[0], "PID PPID COMMAND");
    assert!(both_sleep(&lines), "{custom}");
    let out = env.run(&["top", "t"]);
    let text = out.success().stdout.clone();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"],
        "{out}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("root") && l.contains(" 1 ") && l.ends_with("sleep 301")),
        "{out}"
    );
    // Anything else is ps(1) inside the container.
    let ps = env.run(&["top", "t", "-o", "pid,comm"]);
    assert!(ps.success().stdout.contains("sleep"), "{ps}");
    assert_eq!(env.run(&["top", "nothere"]).code, 125);
}

#[test]
fn pause_stops_every_process_and_unpause_continues_them() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "-d",
        "--name",
        "p",
        "bb",
        "sh",
        "-c",
        "sleep 300 & exec sleep 301",
    ])
    .success();
    // Both sleeps exist before the pause (the shell starts them a moment after run -d returns).
    let states_are = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = env.run(&["top", "p", "args", "state"]);
            let lines: Vec<String> = out.stdout.lines().skip(1).map(str::to_string).collect();
            let sleeps = lines.iter().filter(|l| l.contains("sleep 30")).count();
            if sleeps == 2 && lines.iter().all(|l| l.trim_end().ends_with(want)) {
                return;
            }
            assert!(Instant::now() < deadline, "never all {want}: {out}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    states_are("S");
    env.run(&["pause", "p"]).success();
    let ps = env.run(&["ps", "--format", "{{.Names}} {{.Status}} {{.State}}"]);
    assert_eq!(ps.success().stdout, "p Paused paused\n");
    assert_eq!(
        inspect(&env, "p", "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    states_are("T");
    let refused = env.run(&["exec", "p", "true"]);
    assert_eq!(refused.code, 125, "{refused}");
    assert_eq!(env.run(&["pause", "p"]).code, 125);
    env.run(&["unpause", "p"]).success();
    states_are("S");
    assert_eq!(env.run(&["unpause", "p"]).code, 125);
    // A paused container still goes with rm -f.
    env.run(&["pause", "p"]).success();
    env.run(&["rm", "-f", "p"]).success();
}

#[test]
fn diff_shows_added_changed_and_deleted() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "d", "bb", "sleep", "300"])
        .success();
    env.run(&[
        "exec",
        "d",
        "sh",
        "-c",
        "echo x > /tmp/new; rm /srv/file; echo y >> /etc/os-release; mkdir /root/dir",
    ])
    .success();
    let out = env.run(&["diff", "d"]);
    assert_eq!(
        out.success().stdout,
        "C /etc\nC /etc/os-release\nC /root\nA /root/dir\nC /srv\nD /srv/file\nC /tmp\nA /tmp/new\n",
        "burrow's own mount points are no changes\n{out}"
    );
    let json = env.run(&["container", "diff", "--format", "json", "d"]);
    let v: serde_json::Value = serde_json::from_str(&json.success().stdout).unwrap();
    assert_eq!(v["deleted"], serde_json::json!(["/srv/file"]));
    assert_eq!(v["added"], serde_json::json!(["/root/dir", "/tmp/new"]));
}

/// The files burrow binds (/etc/hosts, /etc/hostname, /etc/resolv.conf, /run/.containerenv)
/// come from a layer of its own under the image's: a start makes nothing in the container's
/// writable layer (no copy-up of /etc, no create on the start's path), so a container that
/// changed nothing has nothing to show, not even `C /etc`.
#[test]
fn a_start_makes_no_mount_points_in_the_writable_layer() {
    let env = env_with_busybox();
    let id = env.run(&["run", "-d", "bb", "sleep", "300"]);
    let id = id.success().stdout_trimmed().to_string();
    let files = env.run(&["exec", &id, "cat", "/etc/hostname", "/run/.containerenv"]);
    assert!(files.success().stdout.contains(&id[..12]), "{files}");
    let diff = env.run(&["diff", &id]);
    assert_eq!(diff.success().stdout, "", "{diff}");
    let upper = env
        .data_dir()
        .join("burrow/storage/containers")
        .join(&id)
        .join("upper");
    let made = env.run(&["unshare", "ls", "-A", &upper.to_string_lossy()]);
    assert_eq!(made.success().stdout, "", "{made}");
    env.run(&["rm", "-f", "-t", "0", &id]).success();
}

#[test]
fn commit_then_run_sees_the_change() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "c", "bb", "sleep", "300"])
        .success();
    env.run(&[
        "exec",
        "c",
        "sh",
        "-c",
        "echo committed > /srv/new; rm /srv/file; mkdir -p /opt/d; chown 1000:1000 /opt/d",
    ])
    .success();
    let id = env
        .run(&[
            "commit",
            "--pause",
            "-c",
            "CMD [\"cat\", \"/srv/new\"]",
            "-m",
            "a message",
            "--author",
            "tester",
            "c",
            "snapshot",
        ])
        .success()
        .stdout_trimmed()
        .to_string();
    assert_eq!(id.len(), 64);
    // The container runs on after --pause.
    assert_eq!(inspect(&env, "c", "{{.State.Status}}"), "running");
    let run = env.run(&["run", "--rm", "snapshot"]);
    assert_eq!(run.success().stdout, "committed\n");
    let gone = env.run(&[
        "run",
        "--rm",
        "snapshot",
        "sh",
        "-c",
        "ls /srv; stat -c '%u:%g' /opt/d",
    ]);
    let text = gone.success().stdout.clone();
    assert!(
        !text.lines().any(|l| l == "file"),
        "the whiteout hides /srv/file\n{gone}"
    );
    assert!(text.contains("1000:1000"), "{gone}");
    let meta = env.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Author}}|{{.Comment}}|{{len .RootFS.Layers}}",
        "snapshot",
    ]);
    assert_eq!(meta.success().stdout_trimmed(), "tester|a message|2");
    // Only the named image remains: no staging image is left behind.
    let images = env.run(&["images", "-a", "-q"]);
    assert_eq!(images.success().stdout.lines().count(), 2, "{images}");
}

#[test]
fn cp_round_trips_a_tree_with_owners_and_modes() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "src", "bb", "sleep", "300"])
        .success();
    env.run(&["run", "-d", "--name", "dst", "bb", "sleep", "300"])
        .success();
    env.run(&[
        "exec",
        "src",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && chown 1000:2000 /data/a && chmod 640 /data/a && chmod 700 /data/sub && ln -s a /data/link",
    ])
    .success();
    let listing = "cd /data && find . | sort | while read f; do stat -c '%n %u:%g %a %F' \"$f\"; done";
    let before = env.run(&["exec", "src", "sh", "-c", listing]);
    // Through a tar stream, both ways (Podman's `-`).
    let piped = sh(&env, "$B cp src:/data - | $B cp - dst:/srv");
    piped.success();
    let after = env.run(&["exec", "dst", "sh", "-c", &listing.replace("/data", "/srv/data")]);
    assert_eq!(before.success().stdout, after.success().stdout);
    // To the host: the files are the user's; and back in as a new name.
    let host = env.home().join("copy");
    env.run(&["cp", "src:/data", &host.to_string_lossy()]).success();
    assert_eq!(std::fs::read_to_string(host.join("sub/b")).unwrap(), "b\n");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(host.join("a")).unwrap();
    assert_eq!(meta.uid(), burrow_tests::current_uid());
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    env.run(&["cp", &host.to_string_lossy(), "dst:/srv/again"])
        .success();
    let again = env.run(&[
        "exec",
        "dst",
        "sh",
        "-c",
        "cat /srv/again/sub/b; stat -c '%u:%g %a' /srv/again/a",
    ]);
    assert_eq!(
        again.success().stdout,
        "b\n0:0 640\n",
        "-a: the container's user owns them"
    );
    // A single file into a directory, and a stopped container's files.
    env.run(&["cp", &host.join("a").to_string_lossy(), "dst:/tmp"])
        .success();
    env.run(&["stop", "-t", "0", "dst"]).success();
    let out = env.run(&["cp", "dst:/tmp/a", "-"]);
    assert!(out.success().stdout.contains("a\n"), "{out}");
    let missing = env.run(&["cp", "src:/nope", &host.to_string_lossy()]);
    assert_eq!(missing.code, 125);
    assert!(
        missing
            .stderr
            .contains("\"/nope\" could not be found on container src"),
        "{missing}"
    );
    let unknown = env.run(&["cp", "nosuch:/etc", &host.to_string_lossy()]);
    assert_eq!(unknown.code, 125);
    assert!(
        unknown.stderr.contains("container \"nosuch\" does not exist"),
        "{unknown}"
    );
}

#[test]
fn cp_never_follows_a_symlink_out_of_the_container() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "evil", "bb", "sleep", "300"])
        .success();
    let outside = env.home().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = outside.to_string_lossy().to_string();
    env.run(&[
        "exec",
        "evil",
        "sh",
        "-c",
        &format!("ln -s {target} /abs; ln -s ../../../../../../../../..{target} /rel"),
    ])
    .success();
    let file = env.home().join("payload");
    std::fs::write(&file, "x").unwrap();
    for dest in ["evil:/abs/p1", "evil:/rel/p2"] {
        let _ = env.run(&["cp", &file.to_string_lossy(), dest]);
    }
    env.run(&["stop", "-t", "0", "evil"]).success();
    let _ = env.run(&["cp", &file.to_string_lossy(), "evil:/abs/p3"]);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "cp wrote through a symlink to the host"
    );
    // Reading through them reads the container's own tree.
    let out = env.run(&["cp", "evil:/rel", "-"]);
    assert!(!out.stdout.contains("payload"));
}

#[test]
fn events_log_the_lifecycle() {
    let env = env_with_busybox();
    assert_eq!(
        env.run(&["run", "--name", "ev", "bb", "sh", "-c", "exit 3"]).code,
        3
    );
    env.run(&["rename", "ev", "ev2"]).success();
    env.run(&["rm", "ev2"]).success();
    let out = env.run(&[
        "events",
        "--stream=false",
        "--format",
        "{{.Status}} {{.Name}} {{.ContainerExitCode}}",
    ]);
    assert_eq!(
        out.success().stdout,
        "create ev 0\nstart ev 0\ndied ev 3\nrename ev2 0\nremove ev2 0\n"
    );
    let text = env.run(&["events", "--stream=false", "--filter", "event=died"]);
    let line = text.success().stdout_trimmed().to_string();
    assert!(line.contains(" +0000 UTC container died "), "{line}");
    assert!(line.ends_with("(image=localhost/bb:latest, name=ev)"), "{line}");
    let json = env.run(&[
        "events",
        "--stream=false",
        "--format",
        "json",
        "--filter",
        "event=create",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.success().stdout_trimmed()).unwrap();
    assert_eq!(v["Type"], "container");
    let none = env.run(&[
        "events",
        "--stream=false",
        "--since",
        "1970-01-01T00:00:00Z",
        "--until",
        "1970-01-02T00:00:00Z",
    ]);
    assert_eq!(none.success().stdout, "");
}

#[test]
fn stats_reads_proc_and_says_so() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "s", "bb", "sleep", "300"])
        .success();
    let out = env.run(&["stats", "--no-stream"]);
    let text = out.success().stdout.clone();
    assert!(text.starts_with("ID"), "{out}");
    assert!(text.contains("MEM USAGE / LIMIT"), "{out}");
    assert!(text.lines().nth(1).is_some_and(|l| l.contains(" s ")), "{out}");
    assert!(out.stderr.contains("no cgroup is delegated"), "{out}");
    let pids = env.run(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "s"]);
    assert_eq!(pids.success().stdout, "s 1\n");
}

#[test]
fn port_without_published_ports_prints_nothing() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "np", "bb", "sleep", "300"])
        .success();
    let out = env.run(&["port", "np"]);
    assert_eq!(out.success().stdout, "");
    assert!(out.stderr.contains("publishes no ports"), "{out}");
    let one = env.run(&["port", "np", "80"]);
    assert_eq!(one.code, 125);
    assert!(
        one.stderr.contains("failed to find published port \"80/tcp\""),
        "{one}"
    );
}

#[test]
fn mount_lives_in_a_persistent_mount_namespace() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "m", "bb", "true"]).success();
    let path = env.run(&["mount", "m"]).success().stdout_trimmed().to_string();
    assert!(path.ends_with("/merged"), "{path}");
    // Mounted in the holder's namespace, not the host's; readable through its /proc root.
    let holder: i32 = std::fs::read_to_string(env.runtime_dir().join("burrow/mounts.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let seen = std::path::PathBuf::from(format!("/proc/{holder}/root{path}/srv/file"));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        burrow_tests::image_gen::SRV_FILE
    );
    assert!(
        !std::path::Path::new(&path).join("srv").exists(),
        "not in the host's namespace"
    );
    let list = env.run(&["mount"]);
    assert!(list.success().stdout.contains(&path), "{list}");
    // Mounting again is harmless; umount takes it away.
    assert_eq!(env.run(&["mount", "m"]).success().stdout_trimmed(), path);
    env.run(&["umount", "m"]).success();
    assert_eq!(env.run(&["mount"]).success().stdout, "");
    assert!(!seen.exists());
}
