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
