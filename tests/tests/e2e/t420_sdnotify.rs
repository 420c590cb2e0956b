//! `--sdnotify=container`: a unit whose container says READY=1 late is activating until then.
//! The container's notifier is a tiny static C program (gcc, from the test packages).

use std::time::Duration;

use burrow_tests::{run_bounded, TestEnv};

use crate::t400_systemd::{env_with_busybox, systemctl, unique, wait_for, UnitFileGuard};

const NOTIFY_C: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
  const char *p = getenv("NOTIFY_SOCKET");
  if (!p || argc < 2) return 2;
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, p, sizeof a.sun_path - 1);
  if (a.sun_path[0] == '@') a.sun_path[0] = 0;
  return sendto(fd, argv[1], strlen(argv[1]), 0, (struct sockaddr *)&a, sizeof a) < 0;
}
"#;

/// Image `bbnotify`: busybox plus /notify, which sends its argument to $NOTIFY_SOCKET.
fn notify_image(env: &TestEnv) -> bool {
    let src = env.root().join("notify.c");
    let bin = env.root().join("notify");
    std::fs::write(&src, NOTIFY_C).unwrap();
    let gcc = run_bounded(
        env.command(
            "gcc",
            &[
                "-static",
                "-Os",
                "-o",
                &bin.to_string_lossy(),
                &src.to_string_lossy(),
            ],
        ),
        None,
        Duration::from_secs(120),
    );
    match gcc {
        Ok(o) if o.code == 0 => {}
        other => {
            eprintln!("skipped: cannot build a static notifier with gcc: {other:?}");
            return false;
        }
    }
    env.run(&["create", "--name", "nb", "bb", "true"]).success();
    env.run(&["cp", &bin.to_string_lossy(), "nb:/notify"]).success();
    env.run(&["commit", "nb", "bbnotify"]).success();
    env.run(&["rm", "nb"]).success();
    true
}

#[test]
fn late_ready_delays_activation() {
    let Some(env) = env_with_busybox() else { return };
    if !notify_image(&env) {
        return;
    }
    let name = unique("t420late", &env);
    env.run(&[
        "create",
        "--name",
        &name,
        "--sdnotify=container",
        "--stop-signal",
        "KILL",
        "bbnotify",
        "sh",
        "-c",
        "until [ -e /tmp/go ]; do sleep 0.1; done; /notify READY=1; exec sleep 1000",
    ])
    .success();
    let unit = env.run(&["generate", "systemd", "--new", "--name", &name]);
    assert!(unit.success().stdout.contains("--sdnotify=container"), "{unit}");
    env.run(&["rm", &name]).success();
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("container-{name}.service");
    guard.write(&service, &unit.stdout);
    systemctl(&env, &["daemon-reload"]).success();
    systemctl(&env, &["start", "--no-block", &service]).success();
    let state = || {
        systemctl(&env, &["show", "-p", "ActiveState", "--value", &service])
            .stdout_trimmed()
            .to_string()
    };
    // The container runs, but has not said it is ready: the unit is still activating.
    let running = wait_for(Duration::from_secs(30), || {
        env.run(&["ps", "--format", "{{.Names}}"])
            .stdout
            .lines()
            .any(|l| l == name)
    });
    assert!(running, "the unit's container never ran");
    assert_eq!(state(), "activating", "active before the container sent READY=1");
    env.run(&["exec", &name, "touch", "/tmp/go"]).success();
    assert!(
        wait_for(Duration::from_secs(30), || state() == "active"),
        "still {} after the container sent READY=1",
        state()
    );
    // The unit's main process is the monitor, not the `run -d` that started it.
    let main_pid = systemctl(&env, &["show", "-p", "MainPID", "--value", &service]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", main_pid.stdout_trimmed())).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("__monitor"),
        "{main_pid}"
    );
}

/// A container restarted in place by its monitor (restart policy) still has the notify socket:
/// what it sends after the restart reaches the unit. A unit made by hand around `burrow start`
/// (Type=notify, the monitor its main process), as `--new` units cannot have a restart policy
/// (they remove the container: `--rm`).
#[test]
fn notify_socket_survives_an_in_place_restart() {
    let Some(env) = env_with_busybox() else { return };
    if !notify_image(&env) {
        return;
    }
    let name = unique("t420again", &env);
    // First run: ready, then fails when told to. Second run (its rootfs has /ran): a status.
    env.run(&[
        "create",
        "--name",
        &name,
        "--sdnotify=container",
        "--restart=on-failure",
        "--stop-signal",
        "KILL",
        "bbnotify",
        "sh",
        "-c",
        "if [ -e /ran ]; then /notify STATUS=second-run || echo no notify socket; exec sleep 1000; fi; \
         touch /ran; /notify READY=1; until [ -e /tmp/go ]; do sleep 0.1; done; exit 3",
    ])
    .success();
    let generated = env.run(&["generate", "systemd", "--name", &name]);
    let text: String = generated
        .success()
        .stdout
        .lines()
        .filter(|l| !l.starts_with("PIDFile="))
        .map(|l| match l {
            "Type=forking" => "Type=notify\nNotifyAccess=all\n".to_string(),
            l => format!("{l}\n"),
        })
        .collect();
    assert!(text.contains("Type=notify"), "{generated}");
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("container-{name}.service");
    guard.write(&service, &text);
    systemctl(&env, &["daemon-reload"]).success();
    // Returns once the container said READY=1 through the socket.
    systemctl(&env, &["start", &service]).success();
    let first_pid = env.run(&["inspect", "--format", "{{.State.Pid}}", &name]);
    let first_pid = first_pid.success().stdout_trimmed().to_string();
    env.run(&["exec", &name, "touch", "/tmp/go"]).success();
    let status = || {
        systemctl(&env, &["show", "-p", "StatusText", "--value", &service])
            .stdout_trimmed()
            .to_string()
    };
    assert!(
        wait_for(Duration::from_secs(30), || status() == "second-run"),
        "status {:?} after the restart\n{}",
        status(),
        env.run(&["logs", &name])
    );
    let again = env.run(&["inspect", "--format", "{{.State.Pid}} {{.RestartCount}}", &name]);
    let again = again.success().stdout_trimmed().to_string();
    assert!(
        !again.starts_with(&format!("{first_pid} ")) && again.ends_with(" 1"),
        "{again}"
    );
    let state = systemctl(&env, &["show", "-p", "ActiveState", "--value", &service]);
    assert_eq!(state.stdout_trimmed(), "active");
    systemctl(&env, &["stop", &service]).success();
}
