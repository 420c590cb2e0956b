//! `alias docker=burrow`: the Docker spellings of the commands burrow has.

use burrow_tests::TestEnv;

#[test]
fn docker_spellings_work() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let id = env
        .run(&["run", "-d", "--name", "web", "bb", "sleep", "300"])
        .success()
        .stdout_trimmed()
        .to_string();
    env.run(&["create", "--name", "idle", "bb", "true"]).success();
    // docker ps --format '{{.Names}}' and docker container ls.
    assert_eq!(
        env.run(&["ps", "--format", "{{.Names}}"]).success().stdout,
        "web\n"
    );
    assert_eq!(
        env.run(&["container", "ls", "-a", "--format", "{{.Names}}"])
            .success()
            .stdout,
        "idle\nweb\n"
    );
    let table = env.run(&["ps", "--format", "table {{.Names}}\t{{.Status}}"]);
    let first: Vec<&str> = table
        .success()
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(first, ["NAMES", "STATUS"]);
    assert!(env
        .run(&["container", "ls", "-q"])
        .success()
        .stdout
        .starts_with(&id[..12]));
    // docker inspect -f, docker container inspect, docker exec, docker top, docker image ls.
    assert_eq!(
        env.run(&["inspect", "-f", "{{.State.Status}}", "web"])
            .success()
            .stdout_trimmed(),
        "running"
    );
    assert_eq!(
        env.run(&["container", "inspect", "-f", "{{.Id}}", "web"])
            .success()
            .stdout_trimmed(),
        id
    );
    assert_eq!(env.run(&["exec", "web", "echo", "hi"]).success().stdout, "hi\n");
    env.run(&["top", "web"]).success();
    assert!(env
        .run(&["image", "ls"])
        .success()
        .stdout
        .contains("localhost/bb"));
    // docker stop / start / logs / rename / container prune -f / rm -f.
    env.run(&["container", "stop", "-t", "0", "web"]).success();
    env.run(&["container", "start", "web"]).success();
    env.run(&["rename", "web", "web2"]).success();
    let pruned = env.run(&["container", "prune", "-f"]);
    assert_eq!(pruned.success().stdout.lines().count(), 1, "{pruned}");
    env.run(&["rm", "-f", "web2"]).success();
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "");
}

#[test]
fn invoked_as_docker_it_speaks_dockers_exit_codes() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let docker = env.root().join("docker");
    std::os::unix::fs::symlink(burrow_tests::burrow_bin(), &docker).unwrap();
    let run = |args: &[&str]| {
        burrow_tests::run_bounded(
            env.command(&docker, args),
            None,
            std::time::Duration::from_secs(120),
        )
        .unwrap()
    };
    let bad = run(&["ps", "--bogus"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("See 'docker --help'"), "{bad}");
    // A flag given twice is no error (the last counts); a list flag collects each.
    let twice = run(&[
        "run",
        "--rm",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "B=2",
        "--name",
        "x",
        "--name",
        "y",
        "bb",
        "sh",
        "-c",
        "echo $A$B",
    ]);
    assert_eq!(twice.success().stdout_trimmed(), "12", "{twice}");
    // A boolean flag spelled with its value, as Podman and Docker take it.
    let no_tty = run(&["run", "--rm", "--tty=false", "bb", "tty"]);
    assert_eq!(
        (no_tty.code, no_tty.stdout_trimmed()),
        (1, "not a tty"),
        "{no_tty}"
    );
    run(&["run", "--rm", "--rm=false", "--name", "kept", "bb", "true"]).success();
    assert_eq!(
        run(&["ps", "-a", "--format", "{{.Names}}"])
            .success()
            .stdout_trimmed(),
        "kept"
    );
    run(&["rm", "kept"]).success();
    let bad = run(&["run", "--rm", "--tty=maybe", "bb", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
    run(&["run", "-d", "--name", "web", "bb", "sleep", "300"]).success();
    // Podman ends these with 2 and 125; the docker CLI with 1.
    let running = run(&["rm", "web"]);
    assert_eq!(running.code, 1, "{running}");
    assert_eq!(env.run(&["rm", "web"]).code, 2, "burrow keeps Podman's code");
    let missing = run(&["inspect", "nosuch"]);
    assert_eq!(missing.code, 1, "{missing}");
    assert_eq!(env.run(&["inspect", "nosuch"]).code, 125);
    // Container exit codes, and run's own 125/126/127, are Docker's too.
    assert_eq!(run(&["run", "--rm", "bb", "sh", "-c", "exit 3"]).code, 3);
    assert_eq!(run(&["run", "--rm", "bb", "no-such-command"]).code, 127);
    assert_eq!(run(&["exec", "web", "sh", "-c", "exit 4"]).code, 4);
    // Docker's inspect names a container with a leading slash.
    let name = run(&["inspect", "-f", "{{.Name}}", "web"]);
    assert_eq!(name.success().stdout_trimmed(), "/web");
    let table = run(&["container", "ls", "--format", "table {{.Names}}\t{{.Status}}"]);
    let lines: Vec<&str> = table.success().stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[1].starts_with("web") && lines[1].contains("Up "), "{table}");
    // Scripts ask the "server" for its version.
    let version = run(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(version.success().stdout_trimmed(), env!("CARGO_PKG_VERSION"));
    let command = run(&["ps", "--format", "{{.Command}}"]);
    assert_eq!(command.success().stdout, "\"sleep 300\"\n", "Docker quotes it");
    run(&["rm", "-f", "web"]).success();
    // Docker's {{.Labels}} is a k=v list; the PORTS column is Docker's (and Podman's).
    run(&[
        "create",
        "--name",
        "labelled",
        "--label",
        "b=2",
        "--label",
        "a=1",
        "-p",
        "127.0.0.1:18081-18082:80-81",
        "-p",
        "18083:90/udp",
        "bb",
        "true",
    ])
    .success();
    let row = run(&["ps", "-a", "--format", "{{.Labels}} {{.Ports}}"]);
    assert_eq!(
        row.success().stdout_trimmed(),
        "a=1,b=2 127.0.0.1:18081-18082->80-81/tcp, 0.0.0.0:18083->90/udp"
    );
}
