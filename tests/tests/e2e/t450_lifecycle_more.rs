//! More of the daemonless lifecycle: `start -a`/`-i`, `restart`, `--requires` and `--link`
//! with `rm --depend`, `ps -s`, restart counts, `run -d` outliving its terminal, and many
//! CLIs at once.

use std::time::{Duration, Instant};

use burrow_tests::TestEnv;

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

/// Polls `burrow ps -a --format FORMAT` for NAME until `want(line)` holds (bounded).
fn wait_for(env: &TestEnv, name: &str, format: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let filter = format!("name=^{name}$");
        let out = env.run(&["ps", "-a", "--filter", &filter, "--format", format]);
        out.success();
        let line = out.stdout_trimmed().to_string();
        if want(&line) {
            return line;
        }
        assert!(Instant::now() < deadline, "{name}: still {line:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until the events log has `runs` container deaths: a restart count shows
/// already between a run's end and the next run's start, so counting deaths is what tells
/// that the last run is over.
fn wait_for_deaths(env: &TestEnv, runs: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let died = env.run(&[
            "events",
            "--stream=false",
            "--filter",
            "event=died",
            "--format",
            "{{.Name}}",
        ]);
        if died.success().stdout.lines().count() >= runs {
            return;
        }
        assert!(Instant::now() < deadline, "fewer than {runs} runs ended: {died}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn inspect(env: &TestEnv, name: &str, format: &str) -> String {
    env.run(&["inspect", "--format", format, name])
        .success()
        .stdout_trimmed()
        .to_string()
}

#[test]
fn start_attach_streams_output_and_returns_the_exit_code() {
    let env = env_with_busybox();
    env.run(&[
        "create",
        "--name",
        "c",
        "bb",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ])
    .success();
    let out = env.run(&["start", "-a", "c"]);
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
    // Again, from exited: the whole output again, none of it missed.
    let again = env.run(&["container", "start", "--attach", "c"]);
    assert_eq!((again.code, again.stdout.as_str()), (3, "out\n"), "{again}");
    let many = env.run(&["start", "-a", "c", "c"]);
    assert_eq!(many.code, 125, "{many}");
    assert!(many.stderr.contains("multiple containers"), "{many}");
}

#[test]
fn start_attach_returns_after_the_first_run_and_the_policy_restarts_it() {
    // As Podman 4.3: `start -a` follows the first run only and returns its exit code; the
    // monitor then applies the restart policy in the background.
    let env = env_with_busybox();
    env.run(&[
        "create",
        "--name",
        "again",
        "--restart",
        "on-failure:2",
        "bb",
        "sh",
        "-c",
        "echo run; exit 3",
    ])
    .success();
    let out = env.run(&["start", "-a", "again"]);
    assert_eq!((out.code, out.stdout.as_str()), (3, "run\n"), "{out}");
    wait_for_deaths(&env, 3);
    let done = wait_for(&env, "again", "{{.Restarts}} {{.Status}}", |s| {
        s.starts_with("2 Exited")
    });
    assert!(done.starts_with("2 Exited (3)"), "{done}");
    let logs = env.run(&["logs", "again"]);
    assert_eq!(logs.success().stdout, "run\n".repeat(3), "one run and 2 restarts");
}

#[test]
fn start_interactive_feeds_stdin_until_it_ends() {
    let env = env_with_busybox();
    env.run(&[
        "create",
        "-i",
        "--name",
        "cat",
        "bb",
        "sh",
        "-c",
        "cat; echo done",
    ])
    .success();
    let out = env.run_with_stdin(&["start", "-ai", "cat"], b"one\ntwo\n");
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "one\ntwo\ndone\n", "{out}");
    // Without -i the container's stdin is empty, not ours.
    env.run(&["create", "--name", "deaf", "bb", "sh", "-c", "cat; echo done"])
        .success();
    let out = env.run_with_stdin(&["start", "-a", "deaf"], b"ignored\n");
    assert_eq!(out.success().stdout, "done\n");
}

#[test]
fn restart_runs_the_container_again() {
    let env = env_with_busybox();
    env.run(&["run", "-d", "--name", "r", "bb", "sleep", "300"])
        .success();
    let first = wait_for(&env, "r", "{{.Pid}}", |p| p != "0");
    let out = env.run(&["restart", "-t", "0", "r"]);
    assert_eq!(out.success().stdout_trimmed(), "r");
    let second = wait_for(&env, "r", "{{.Pid}}", |p| p != "0");
    assert_ne!(first, second, "a new process");
    assert_eq!(inspect(&env, "r", "{{.State.Status}}"), "running");
    // An exited container is started again too.
    env.run(&["stop", "-t", "0", "r"]).success();
    env.run(&["container", "restart", "r"]).success();
    assert_eq!(inspect(&env, "r", "{{.State.Status}}"), "running");
    let missing = env.run(&["restart", "nosuch"]);
    assert_eq!(missing.code, 125, "{missing}");
    env.run(&["rm", "-f", "r"]).success();
}

#[test]
fn requires_starts_first_and_rm_depend_removes_dependents() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "db", "bb", "sleep", "300"])
        .success();
    env.run(&[
        "create",
        "--name",
        "app",
        "--requires",
        "db",
        "bb",
        "sleep",
        "300",
    ])
    .success();
    env.run(&["start", "app"]).success();
    assert_eq!(inspect(&env, "db", "{{.State.Status}}"), "running");
    let refused = env.run(&["rm", "-f", "db"]);
    assert_eq!(refused.code, 125, "{refused}");
    assert!(refused.stderr.contains("has dependent containers"), "{refused}");
    assert!(refused.stderr.contains("app"), "{refused}");
    assert_eq!(
        inspect(&env, "db", "{{.State.Status}}"),
        "running",
        "nothing removed"
    );
    let out = env.run(&["rm", "-f", "--depend", "db"]);
    assert_eq!(out.success().stdout.lines().count(), 2, "{out}");
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "");
    let bad = env.run(&["create", "--requires", "nosuch", "bb", "true"]);
    assert_ne!(bad.code, 0, "{bad}");
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "", "nothing half-made");
}

#[test]
fn a_joined_network_is_a_dependency_and_rm_prints_what_it_was_given() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "base", "bb", "sleep", "300"])
        .success();
    let base_id = inspect(&env, "base", "{{.Id}}");
    env.run(&[
        "create",
        "--name",
        "joined",
        "--network",
        "container:base",
        "bb",
        "sleep",
        "300",
    ])
    .success();
    let joined_id = inspect(&env, "joined", "{{.Id}}");
    // Starting it starts the container whose network it joins, as Podman does.
    env.run(&["start", "joined"]).success();
    assert_eq!(inspect(&env, "base", "{{.State.Status}}"), "running");
    let refused = env.run(&["rm", "-f", "base"]);
    assert_eq!(refused.code, 125, "{refused}");
    assert!(refused.stderr.contains("has dependent containers"), "{refused}");
    assert_eq!(
        inspect(&env, "base", "{{.State.Status}}"),
        "running",
        "nothing removed"
    );
    // --depend prints ids, the dependent first.
    let out = env.run(&["rm", "-f", "--depend", "base"]);
    assert_eq!(out.success().stdout, format!("{joined_id}\n{base_id}\n"), "{out}");
    // A name or an id prefix comes back as given (Podman and Docker), -a gives ids.
    env.run(&["create", "--name", "named", "bb", "true"]).success();
    let prefixed = env
        .run(&["create", "bb", "true"])
        .success()
        .stdout_trimmed()
        .to_string();
    env.run(&["create", "--name", "rest", "bb", "true"]).success();
    let rest_id = inspect(&env, "rest", "{{.Id}}");
    assert_eq!(env.run(&["rm", "named"]).success().stdout, "named\n");
    assert_eq!(
        env.run(&["rm", &prefixed[..8]]).success().stdout,
        format!("{}\n", &prefixed[..8])
    );
    assert_eq!(env.run(&["rm", "-a"]).success().stdout, format!("{rest_id}\n"));
}

#[test]
fn link_names_the_host_in_etc_hosts_and_reaches_published_ports() {
    let env = env_with_busybox();
    let serve = "while true; do echo linked | nc -l -p 80; done";
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let publish = format!("127.0.0.1:{port}:80");
    env.run(&[
        "run", "-d", "--name", "web", "-p", &publish, "bb", "sh", "-c", serve,
    ])
    .success();
    let hosts = env.run(&["run", "--rm", "--link", "web:site", "bb", "cat", "/etc/hosts"]);
    let text = hosts.success().stdout.clone();
    assert!(text.contains("10.0.2.2\tsite\n"), "{hosts}");
    assert!(text.contains("10.0.2.2\tweb\n"), "{hosts}");
    // Docker's link variables; the address and port are the host's (where the link leads).
    let vars = env.run(&[
        "run",
        "--rm",
        "--name",
        "probe",
        "--link",
        "web:my-site",
        "-e",
        "MY_SITE_PORT_80_TCP_PROTO=mine",
        "bb",
        "env",
    ]);
    let vars = vars.success().stdout.clone();
    let url = format!("tcp://10.0.2.2:{port}");
    for expected in [
        "MY_SITE_NAME=/probe/my-site".to_string(),
        format!("MY_SITE_PORT={url}"),
        format!("MY_SITE_PORT_80_TCP={url}"),
        "MY_SITE_PORT_80_TCP_ADDR=10.0.2.2".to_string(),
        format!("MY_SITE_PORT_80_TCP_PORT={port}"),
        // The user's variables win over the link's.
        "MY_SITE_PORT_80_TCP_PROTO=mine".to_string(),
        "MY_SITE_ENV_container=burrow".to_string(),
    ] {
        assert!(vars.lines().any(|l| l == expected), "no {expected} in\n{vars}");
    }
    assert!(!vars.contains("MY_SITE_ENV_PATH="), "{vars}");
    // The address the link names reaches the published port on the host. (The static
    // busybox of the test image cannot resolve names, nor run wget: glibc's NSS.)
    let fetch = format!("nc -w 5 $(awk '$2 == \"site\" {{ print $1 }}' /etc/hosts) {port} </dev/null");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = env.run(&["run", "--rm", "--link", "web:site", "bb", "sh", "-c", &fetch]);
        if got.code == 0 {
            assert_eq!(got.stdout, "linked\n", "{got}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the linked server never answered\n{got}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let gw = env.run(&[
        "run",
        "--rm",
        "--add-host",
        "h:host-gateway",
        "bb",
        "cat",
        "/etc/hosts",
    ]);
    assert!(gw.success().stdout.contains("10.0.2.2\th\n"), "{gw}");
    let none = env.run(&["run", "--rm", "--network", "none", "--link", "web", "bb", "true"]);
    assert_eq!(none.code, 125, "{none}");
    let missing = env.run(&["run", "--rm", "--link", "nosuch:x", "bb", "true"]);
    assert_eq!(missing.code, 125, "{missing}");
    assert!(missing.stderr.contains("nosuch"), "{missing}");
    env.run(&["rm", "-f", "web"]).success();
}

#[test]
fn ps_size_shows_what_the_container_wrote() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "--name",
        "w",
        "bb",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big",
    ])
    .success();
    let out = env.run(&["ps", "-a", "-s"]);
    let header = out.success().stdout.lines().next().unwrap().to_string();
    assert!(header.ends_with("SIZE"), "{out}");
    let rw: u64 = wait_for(&env, "w", "{{.Size.RwSize}}", |_| true).parse().unwrap();
    let root: u64 = wait_for(&env, "w", "{{.Size.RootFsSize}}", |_| true)
        .parse()
        .unwrap();
    assert!(rw >= 300_000, "upper dir holds the file: {rw}");
    assert!(root > rw, "plus the image: {root}");
    assert!(out.stdout.contains("(virtual "), "{out}");
}

#[test]
fn restart_on_failure_3_restarts_exactly_3_times() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "bb",
        "sh",
        "-c",
        "echo run; exit 1",
    ])
    .success();
    // "3 Exited" shows already between the third run's end and the fourth's start (the count
    // goes up before the restart): wait for the fourth run's end, then for the final state.
    wait_for_deaths(&env, 4);
    let done = wait_for(&env, "flaky", "{{.Restarts}} {{.Status}}", |s| {
        s.starts_with("3 Exited")
    });
    assert!(done.starts_with("3 Exited (1)"), "{done}");
    let waited = env.run(&["wait", "flaky"]);
    assert_eq!(waited.success().stdout_trimmed(), "1");
    let logs = env.run(&["logs", "flaky"]);
    assert_eq!(
        logs.success().stdout,
        "run\nrun\nrun\nrun\n",
        "one run and 3 restarts"
    );
    let starts = env.run(&[
        "events",
        "--stream=false",
        "--filter",
        "event=start",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(starts.success().stdout, "flaky\n".repeat(4), "{starts}");
    assert_eq!(inspect(&env, "flaky", "{{.RestartCount}}"), "3");
}

#[test]
fn run_detached_outlives_its_terminal_and_session() {
    let env = env_with_busybox();
    // On a terminal that is gone (hung up) as soon as burrow returns.
    let out = env.run_in_pty(
        &["run", "-d", "--name", "bg", "bb", "sleep", "300"],
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 0, "{out}");
    let pid: i32 = wait_for(&env, "bg", "{{.Pid}}", |p| p != "0").parse().unwrap();
    assert_eq!(inspect(&env, "bg", "{{.State.Status}}"), "running");
    env.run(&["exec", "bg", "true"]).success();
    // Its monitor (the container's parent) leads a session of its own, apart from the terminal's.
    let field = |pid: i32, n: usize| -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(n)
            .unwrap()
            .parse()
            .unwrap()
    };
    let monitor = field(pid, 1);
    assert_eq!(field(monitor, 3), monitor, "the monitor is a session leader");
    assert_eq!(field(monitor, 4), 0, "and has no controlling terminal");
    env.run(&["rm", "-f", "bg"]).success();
}

#[test]
fn twenty_parallel_clis_get_unique_names() {
    let env = env_with_busybox();
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.cmd(&["run", "-d", "bb", "sleep", "300"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    let names = env.run(&["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.success().stdout.lines().collect();
    assert_eq!(names.len(), 20, "all 20 run");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 20, "unique names: {names:?}");
    assert!(names.iter().all(|n| n.contains('_')), "adjective_noun: {names:?}");
    let gone = env.run(&["rm", "-af"]);
    assert_eq!(gone.success().stdout.lines().count(), 20);
}

#[test]
fn logs_follow_streams_while_the_container_runs() {
    use std::io::{BufRead, BufReader, Read};
    let env = env_with_busybox();
    let script = "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo last";
    env.run(&["run", "-d", "--name", "s", "bb", "sh", "-c", script])
        .success();
    let mut follow = env
        .cmd(&["logs", "-f", "s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // The container still waits for /tmp/go: this line came while it runs.
    assert_eq!(line, "first\n");
    assert_eq!(inspect(&env, "s", "{{.State.Status}}"), "running");
    env.run(&["exec", "s", "touch", "/tmp/go"]).success();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(follow.wait().unwrap().success());
    assert_eq!(rest, "last\n", "and ends with the container");
}

#[test]
fn stop_sends_the_stop_signal_first() {
    let env = env_with_busybox();
    // The trap is only set after "ready" is printed: wait for it, then stop.
    let script = "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 0.1; done";
    env.run(&[
        "run",
        "-d",
        "--name",
        "polite",
        "--stop-signal",
        "SIGUSR1",
        "bb",
        "sh",
        "-c",
        script,
    ])
    .success();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.run(&["logs", "polite"]).stdout.contains("ready") {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    env.run(&["stop", "-t", "30", "polite"]).success();
    assert_eq!(
        inspect(&env, "polite", "{{.State.ExitCode}}"),
        "0",
        "ended by its trap, not SIGKILL"
    );
    assert!(env.run(&["logs", "polite"]).stdout.contains("got-usr1"));
}

#[test]
fn wait_for_other_conditions() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "w", "bb", "sleep", "300"])
        .success();
    let waiter = env
        .cmd(&["wait", "--condition", "running", "--interval", "20ms", "w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.run(&["start", "w"]).success();
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(inspect(&env, "w", "{{.State.Status}}"), "running");
    env.run(&["pause", "w"]).success();
    let paused = env.run(&["wait", "--condition", "paused", "w"]);
    paused.success();
    env.run(&["unpause", "w"]).success();
    let bad = env.run(&["wait", "--condition", "healthy", "w"]);
    assert_eq!(bad.code, 125, "{bad}");
    env.run(&["kill", "w"]).success();
    let code = env.run(&["wait", "--condition", "exited", "w"]);
    assert_eq!(code.success().stdout_trimmed(), "137");
    let missing = env.run(&["wait", "--ignore", "nosuch"]);
    assert_eq!(missing.success().stdout_trimmed(), "-1");
}

#[test]
fn the_monitor_runs_in_the_foreground_as_a_units_main_process() {
    let env = env_with_busybox();
    let script = "trap 'exit 7' TERM; echo ready; while true; do sleep 0.1; done";
    let id = env
        .run(&[
            "create",
            "--name",
            "unit",
            "--restart",
            "always",
            "bb",
            "sh",
            "-c",
            script,
        ])
        .success()
        .stdout_trimmed()
        .to_string();
    // As systemd would start it: no ready pipe, the monitor is the main process.
    let mut monitor = env.cmd(&["__monitor", &id]).spawn().unwrap();
    let pid: i32 = wait_for(&env, "unit", "{{.Pid}}", |p| p != "0").parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let parent: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(parent, monitor.id(), "the monitor is the container's parent");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.run(&["logs", "unit"]).stdout.contains("ready") {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // `systemctl stop` signals the main process: the monitor stops the container with its
    // stop signal, and does not restart it whatever its policy.
    unsafe { libc::kill(monitor.id() as i32, libc::SIGTERM) };
    let status = monitor.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(inspect(&env, "unit", "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&env, "unit", "{{.State.ExitCode}}"), "7");
    assert_eq!(inspect(&env, "unit", "{{.RestartCount}}"), "0");
    // A container that ignores its stop signal (sleep as PID 1) is killed after its timeout.
    let id = env
        .run(&[
            "create",
            "--name",
            "stubborn",
            "--stop-timeout",
            "1",
            "bb",
            "sleep",
            "300",
        ])
        .success()
        .stdout_trimmed()
        .to_string();
    let mut monitor = env.cmd(&["__monitor", &id]).spawn().unwrap();
    wait_for(&env, "stubborn", "{{.Pid}}", |p| p != "0");
    unsafe { libc::kill(monitor.id() as i32, libc::SIGTERM) };
    assert!(monitor.wait().unwrap().success());
    assert_eq!(inspect(&env, "stubborn", "{{.State.ExitCode}}"), "137");
}

#[test]
fn ps_filters_of_one_key_are_alternatives() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "made", "bb", "true"]).success();
    env.run(&["run", "--name", "done", "bb", "true"]).success();
    env.run(&["run", "-d", "--name", "up", "bb", "sleep", "300"])
        .success();
    let names = |filters: &[&str]| {
        let mut args = vec!["ps", "-a", "--format", "{{.Names}}", "--sort", "names"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        env.run(&args).success().stdout.clone()
    };
    assert_eq!(names(&["status=created", "status=exited"]), "done\nmade\n");
    assert_eq!(names(&["status=created", "status=exited", "name=^d"]), "done\n");
    assert_eq!(names(&["status=running"]), "up\n");
    env.run(&["rm", "-f", "up"]).success();
}
