//! Healthchecks: `healthcheck run`, status in `ps` and `inspect`, `--health-on-failure`, and the
//! checks run by a transient systemd timer (under the user manager) or by the monitor.

use std::time::Duration;

use burrow_tests::TestEnv;

use crate::t400_systemd::{env_with_busybox, systemctl, wait_for};

fn inspect(env: &TestEnv, name: &str, format: &str) -> String {
    env.run(&["inspect", "--format", format, name])
        .stdout_trimmed()
        .to_string()
}

/// Makes the next check of container `name` (`test -e /tmp/ok`) fail, then waits until the
/// container was restarted once and is healthy again.
fn fail_check_and_await_restart(env: &TestEnv, name: &str) {
    let first_pid = inspect(env, name, "{{.State.Pid}}");
    env.run(&["exec", name, "rm", "/tmp/ok"]).success();
    let restarted = wait_for(Duration::from_secs(60), || {
        let pid = inspect(env, name, "{{.State.Pid}}");
        pid != first_pid && pid != "0" && inspect(env, name, "{{.State.Health.Status}}") == "healthy"
    });
    assert!(restarted, "not restarted (pid still {first_pid})");
    assert_eq!(inspect(env, name, "{{.RestartCount}}"), "1");
}

/// `run -d --name NAME OPTIONS` of a container whose check (every second, one failure
/// allowed) passes once it has touched /tmp/ok; returns the id.
fn run_touch_checked(env: &TestEnv, name: &str, options: &[&str]) -> String {
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
    ];
    args.extend_from_slice(options);
    args.extend_from_slice(&["bb", "sh", "-c", "touch /tmp/ok; exec sleep 1000"]);
    env.run(&args).success().stdout_trimmed().to_string()
}

fn await_healthy(env: &TestEnv, name: &str) {
    assert!(
        wait_for(Duration::from_secs(30), || inspect(
            env,
            name,
            "{{.State.Health.Status}}"
        ) == "healthy"),
        "never healthy"
    );
}

#[test]
fn healthcheck_run_records_status_and_kills_on_failure() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    // interval=disable: only `healthcheck run` checks, so every step below is ours.
    env.run(&[
        "run",
        "-d",
        "--systemd=false",
        "--name",
        "h",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "disable",
        "--health-retries",
        "2",
        "--health-on-failure",
        "kill",
        "bb",
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 1000",
    ])
    .success();
    assert_eq!(inspect(&env, "h", "{{.State.Health.Status}}"), "starting");
    let ok = env.run(&["healthcheck", "run", "h"]);
    assert_eq!(ok.code, 0, "{ok}");
    let ps = env.run(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.success().stdout.contains("(healthy)"), "{ps}");
    env.run(&["exec", "h", "rm", "/tmp/ok"]).success();
    // One failure of two allowed: still healthy, streak 1.
    assert_eq!(env.run(&["healthcheck", "run", "h"]).code, 0);
    assert_eq!(inspect(&env, "h", "{{.State.Health.FailingStreak}}"), "1");
    let bad = env.run(&["healthcheck", "run", "h"]);
    assert_eq!((bad.code, bad.stdout_trimmed()), (1, "unhealthy"), "{bad}");
    // --health-on-failure=kill: the container is gone.
    assert!(
        wait_for(Duration::from_secs(20), || inspect(
            &env,
            "h",
            "{{.State.Status}}"
        ) == "exited"),
        "not killed after turning unhealthy"
    );
    let none = env.run(&["healthcheck", "run", "h"]);
    assert_eq!(none.code, 125, "{none}");
    let bad_flag = env.run(&[
        "create",
        "--health-on-failure",
        "explode",
        "--health-cmd",
        "true",
        "bb",
    ]);
    assert_eq!(bad_flag.code, 125, "{bad_flag}");
}

#[test]
fn failing_healthcheck_restarts_the_unit() {
    let Some(env) = env_with_busybox() else { return };
    // No failure counts before `touch` could have run.
    let options = [
        "--init",
        "--health-start-period",
        "3s",
        "--health-on-failure",
        "restart",
    ];
    let id = run_touch_checked(&env, "hr", &options);
    // A transient timer runs the checks.
    let timer = format!("burrow-{id}-healthcheck.timer");
    let timers = systemctl(&env, &["list-units", "--plain", "--no-legend", "--all", &timer]);
    assert!(timers.stdout.contains(&timer), "{timers}");
    await_healthy(&env, "hr");
    // The next check fails: the unit restarts, and the new container is healthy again.
    fail_check_and_await_restart(&env, "hr");
    env.run(&["rm", "-f", "hr"]).success();
}

/// Without systemd the monitor runs the checks and restarts the container itself: the
/// restart is counted as one by policy is.
#[test]
fn monitor_restarts_unhealthy_container_and_counts_it() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    // The start period keeps a check that comes before `touch` from failing a fresh start.
    let options = [
        "--systemd=false",
        "--health-start-period",
        "3s",
        "--health-on-failure",
        "restart",
    ];
    run_touch_checked(&env, "hm", &options);
    await_healthy(&env, "hm");
    assert_eq!(inspect(&env, "hm", "{{.RestartCount}}"), "0");
    fail_check_and_await_restart(&env, "hm");
    assert_eq!(inspect(&env, "hm", "{{.State.Status}}"), "running");
    env.run(&["rm", "-f", "hm"]).success();
}

/// `--health-on-failure=stop` without systemd: stopped for good, even with a restart policy.
#[test]
fn monitor_stops_unhealthy_container_despite_restart_policy() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let options = [
        "--systemd=false",
        "--restart",
        "always",
        "--health-on-failure",
        "stop",
    ];
    run_touch_checked(&env, "hs", &options);
    await_healthy(&env, "hs");
    let monitor = inspect(&env, "hs", "{{.State.ConmonPid}}");
    assert_ne!(monitor, "0");
    env.run(&["exec", "hs", "rm", "/tmp/ok"]).success();
    assert!(
        wait_for(Duration::from_secs(30), || inspect(
            &env,
            "hs",
            "{{.State.Status}}"
        ) == "exited"),
        "not stopped after turning unhealthy"
    );
    // Its monitor ends instead of starting it again.
    assert!(
        wait_for(Duration::from_secs(30), || !std::path::Path::new(&format!(
            "/proc/{monitor}"
        ))
        .exists()),
        "the monitor {monitor} still runs"
    );
    assert_eq!(inspect(&env, "hs", "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&env, "hs", "{{.RestartCount}}"), "0");
    env.run(&["rm", "-f", "hs"]).success();
}
