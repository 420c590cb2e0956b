//! Restart policies under systemd: a container's `--restart` becomes its `--new` unit's
//! Restart= (not a `run --rm --restart`, which burrow refuses), and a container that fails
//! makes its unit fail, so that systemd restarts it. Helpers are t400's.

use std::time::Duration;

use crate::t400_systemd::{env_with_busybox, systemctl, unique, verify, wait_for, UnitFileGuard};

#[test]
fn new_unit_restarts_a_failed_container_by_its_policy() {
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t461r", &env);
    let volume = format!("{name}v");
    // First run fails (exit 3); the run after it finds its mark in the volume and stays.
    env.run(&[
        "create",
        "--name",
        &name,
        "--restart=on-failure",
        "--stop-signal",
        "KILL",
        "-v",
        &format!("{volume}:/v"),
        "bb",
        "sh",
        "-c",
        "if [ -e /v/ran ]; then exec sleep 1000; fi; touch /v/ran; sleep 1; exit 3",
    ])
    .success();
    let unit = env.run(&[
        "generate",
        "systemd",
        "--new",
        "--name",
        "--restart-sec",
        "1",
        &name,
    ]);
    let text = unit.success().stdout.clone();
    assert!(text.contains("Restart=on-failure\n"), "{unit}");
    let exec_start = text
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap_or_default();
    assert!(!exec_start.contains("--restart"), "{exec_start}");
    env.run(&["rm", &name]).success();
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("container-{name}.service");
    let path = guard.write(&service, &text);
    let verified = verify(&env, &path);
    assert_eq!(verified.code, 0, "{verified}");
    systemctl(&env, &["daemon-reload"]).success();
    systemctl(&env, &["start", &service]).success();
    let show = |p: &str| {
        systemctl(&env, &["show", "-p", p, "--value", &service])
            .stdout_trimmed()
            .to_string()
    };
    let restarted = wait_for(Duration::from_secs(60), || {
        show("NRestarts") == "1"
            && show("ActiveState") == "active"
            && env
                .run(&["inspect", "--format", "{{.State.Status}}", &name])
                .stdout_trimmed()
                == "running"
    });
    assert!(
        restarted,
        "not restarted by systemd: NRestarts={} {}\n{}",
        show("NRestarts"),
        show("ActiveState"),
        systemctl(&env, &["status", &service])
    );
    // `burrow stop` of the unit's container stops the unit (else systemd would start it
    // again); a stop is no failure: the unit ends clean, its --rm container gone.
    env.run(&["stop", &name]).success();
    assert!(
        wait_for(Duration::from_secs(30), || show("ActiveState") == "inactive"),
        "unit {} after burrow stop",
        show("ActiveState")
    );
    assert_eq!(show("Result"), "success");
    let all = env.run(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!all.success().stdout.contains(&name), "{all}");
    env.run(&["volume", "rm", &volume]).success();
}
