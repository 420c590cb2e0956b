//! `run -d` starts the container's monitor (as a transient unit, or plain) before it has made
//! the container, and the monitor waits for the word to go. When making the container fails
//! after that (an image that is not there, a flag value only checked then, a name in use),
//! the error is the one `create` gives, and nothing is left: no unit, no monitor process, no
//! record, no files.

use std::path::Path;
use std::time::Duration;

use burrow_tests::{Outcome, TestEnv};

use crate::t400_systemd::{env_with_busybox, systemctl, unique, wait_for};

/// The `burrow-*` units of `env`'s store: those whose environment names its private root
/// (none without a manager).
fn units_of(env: &TestEnv) -> Vec<String> {
    if !burrow_tests::systemd_available() {
        return Vec::new();
    }
    let list = systemctl(
        env,
        &["list-units", "--all", "--plain", "--no-legend", "burrow-*"],
    );
    let names: Vec<&str> = list
        .success()
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["show", "-p", "Id", "-p", "Environment"];
    args.extend(names);
    let root = env.root().to_string_lossy().to_string();
    systemctl(env, &args)
        .stdout
        .split("\n\n")
        .filter(|block| block.contains(&root))
        .filter_map(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("Id="))
                .map(str::to_string)
        })
        .collect()
}

/// The monitor processes of `env`'s store (by their environment, which names its root): those
/// exec'd as `__monitor`, and `run -d` processes that became one (named `burrow-monitor`).
fn monitors_of(env: &TestEnv) -> Vec<i32> {
    let root = env.root().to_string_lossy().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("__monitor") && comm.trim_end() != "burrow-monitor" {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if String::from_utf8_lossy(&environ).contains(&root) {
            out.push(pid);
        }
    }
    out
}

/// The containers' directories in `env`'s store.
fn container_dirs(env: &TestEnv) -> Vec<String> {
    let dir = env.data_dir().join("burrow/storage/containers");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What must hold after a `run -d` that failed: `create` with the same arguments fails alike,
/// and the store, the manager and the process table are as before.
fn assert_failed_cleanly(env: &TestEnv, out: &Outcome, create_args: &[&str], before: &State) {
    assert_eq!(out.code, 125, "{out}");
    assert!(
        out.stdout.is_empty(),
        "an id printed for a container not made: {out}"
    );
    let create = env.run(create_args);
    assert_eq!(create.code, 125, "{create}");
    assert_eq!(
        out.stderr, create.stderr,
        "run -d says something else than create"
    );
    assert_eq!(&State::of(env), before, "left behind after: {out}");
}

#[derive(Debug, PartialEq)]
struct State {
    units: Vec<String>,
    monitors: Vec<i32>,
    dirs: Vec<String>,
    containers: String,
}

impl State {
    fn of(env: &TestEnv) -> State {
        let mut units = units_of(env);
        units.sort();
        let mut monitors = monitors_of(env);
        monitors.sort();
        let ps = env.run(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
        State {
            units,
            monitors,
            dirs: container_dirs(env),
            containers: ps.success().stdout.clone(),
        }
    }
}

fn run_detached_failures_leave_nothing(env: TestEnv, systemd: bool) {
    let flag = if systemd {
        "--systemd=true"
    } else {
        "--systemd=false"
    };
    let name = unique("t470", &env);
    let first = env.run(&["run", "-d", flag, "--name", &name, "bb", "sleep", "1000"]);
    let first = first.success().stdout_trimmed().to_string();
    let before = State::of(&env);
    assert_eq!(before.dirs, vec![first.clone()], "{before:?}");
    assert_eq!(before.monitors.len(), 1, "{before:?}");
    assert_eq!(before.units.len(), usize::from(systemd), "{before:?}");

    // A name in use: Podman's text and exit code.
    let out = env.run(&["run", "-d", flag, "--name", &name, "bb", "true"]);
    assert!(
        out.stderr.contains(&format!(
            "the container name \"{name}\" is already in use by {first}"
        )),
        "{out}"
    );
    assert_failed_cleanly(&env, &out, &["create", "--name", &name, "bb", "true"], &before);

    // An image that is not there (and is not pulled).
    let out = env.run(&["run", "-d", flag, "--pull=never", "t470-no-such-image", "true"]);
    assert_failed_cleanly(
        &env,
        &out,
        &["create", "--pull=never", "t470-no-such-image", "true"],
        &before,
    );

    // Flag values that only making the container checks.
    for bad in [
        &["--restart", "sometimes"][..],
        &["--stop-signal", "SIGNOPE"],
        &["--health-cmd", "true", "--health-on-failure", "explode"],
        &["--rm", "--restart", "always"],
    ] {
        let mut args = vec!["run", "-d", flag];
        args.extend_from_slice(bad);
        args.extend(["bb", "true"]);
        let out = env.run(&args);
        let mut create = vec!["create"];
        create.extend_from_slice(bad);
        create.extend(["bb", "true"]);
        assert_failed_cleanly(&env, &out, &create, &before);
    }

    // And the next one starts as ever.
    let next = env.run(&["run", "-d", flag, "bb", "sleep", "1000"]);
    let next = next.success().stdout_trimmed().to_string();
    env.run(&["exec", &next, "true"]).success();
    env.run(&["rm", "-f", "-t", "0", &first, &next]).success();
    assert!(
        !Path::new(&env.data_dir().join("burrow/storage/containers").join(&next)).exists(),
        "{next} left after rm"
    );
}

#[test]
fn run_detached_failures_leave_no_unit_monitor_or_files() {
    let Some(env) = env_with_busybox() else { return };
    run_detached_failures_leave_nothing(env, true);
}

#[test]
fn run_detached_plain_failures_leave_no_monitor_or_files() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    run_detached_failures_leave_nothing(env, false);
}

#[test]
fn a_unit_restarted_by_its_manager_starts_the_container_again() {
    // The unit's stdin is the first start's go pipe, closed since: a restart must not read
    // that as `run -d` giving up.
    let Some(env) = env_with_busybox() else { return };
    let id = env.run(&["run", "-d", "bb", "sleep", "1000"]);
    let id = id.success().stdout_trimmed().to_string();
    let pid = |env: &TestEnv| {
        let out = env.run(&["inspect", "--format", "{{.State.Status}} {{.State.Pid}}", &id]);
        out.success().stdout_trimmed().to_string()
    };
    let first = pid(&env);
    assert!(first.starts_with("running "), "{first}");
    systemctl(&env, &["restart", &format!("burrow-{id}.service")]).success();
    assert!(
        wait_for(Duration::from_secs(30), || {
            let now = pid(&env);
            now.starts_with("running ") && now != first
        }),
        "not running again after the unit's restart: {}",
        pid(&env)
    );
    env.run(&["exec", &id, "true"]).success();
    env.run(&["rm", "-f", "-t", "0", &id]).success();
}

/// `/proc/PID/stat` fields after the command name: (session, tty_nr).
fn session_and_tty(pid: &str) -> (String, String) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (fields[3].to_string(), fields[4].to_string())
}

/// A plain `run -d` becomes the container's monitor itself (it forks before parsing its command
/// line; the parent exits once the child has printed the id): the monitor's command line is the
/// `run -d`, its name `burrow-monitor`. Run on a terminal, the container must not get that
/// terminal: it is in the monitor's session, with no controlling terminal. Captured through a
/// pipe, nothing keeps the pipe open after the id (the harness fails a command whose output stays
/// open). With `--init` the monitor is exec'd (`__monitor`), and its init, which never execs,
/// keeps nothing of the caller's either, and is named `init`.
#[test]
fn a_plain_run_detached_becomes_the_monitor_and_lets_go_of_the_terminal() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let pids = |name: &str| -> (String, String) {
        let inspect = env.run(&["inspect", "--format", "{{.State.Pid}} {{.State.ConmonPid}}", name]);
        let text = inspect.success().stdout_trimmed().to_string();
        let (pid, monitor) = text.split_once(' ').unwrap();
        (pid.to_string(), monitor.to_string())
    };
    let proc_file = |pid: &str, file: &str| -> String {
        let text = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        String::from_utf8_lossy(&text)
            .replace('\0', " ")
            .trim_end()
            .to_string()
    };

    let name = unique("t470t", &env);
    let run = [
        "run",
        "-d",
        "--systemd=false",
        "--name",
        &name,
        "bb",
        "sleep",
        "1000",
    ];
    let out = env.run_in_pty(&run, b"", Duration::from_secs(60));
    assert_eq!(out.success().stdout.trim().len(), 64, "{out}");
    let (pid, monitor) = pids(&name);
    assert_eq!(proc_file(&monitor, "comm"), "burrow-monitor");
    let cmdline = proc_file(&monitor, "cmdline");
    assert!(
        cmdline.contains(&format!("run -d --systemd=false --name {name}")),
        "{cmdline}"
    );
    for pid in [&monitor, &pid] {
        assert_eq!(session_and_tty(pid), (monitor.clone(), "0".to_string()), "{pid}");
    }
    // Through a pipe, as `$(burrow run -d ...)`.
    let piped = env.run(&["run", "-d", "--systemd=false", "bb", "sleep", "1000"]);
    assert_eq!(piped.success().stdout_trimmed().len(), 64, "{piped}");

    let name = unique("t470i", &env);
    let piped = env.run(&[
        "run",
        "-d",
        "--systemd=false",
        "--init",
        "--name",
        &name,
        "bb",
        "sleep",
        "1000",
    ]);
    assert_eq!(piped.success().stdout_trimmed().len(), 64, "{piped}");
    let (init, monitor) = pids(&name);
    assert!(proc_file(&monitor, "cmdline").contains("__monitor"));
    assert_eq!(proc_file(&init, "comm"), "init");
    env.run(&["rm", "-af", "-t", "0"]).success();
}
