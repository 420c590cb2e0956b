//! `auto-update` with the `local` policy: a `generate systemd --new` unit moves to the image its
//! name now points to, and back when the new one does not start.

use std::time::Duration;

use burrow_tests::{run_bounded, TestEnv};

use crate::t400_systemd::{
    env_with_busybox, free_port, http_get, systemctl, unique, wait_for, UnitFileGuard,
};

fn image_id(env: &TestEnv, image: &str) -> String {
    env.run(&["image", "inspect", "--format", "{{.Id}}", image])
        .success()
        .stdout_trimmed()
        .to_string()
}

fn container_image(env: &TestEnv, name: &str) -> String {
    env.run(&["inspect", "--format", "{{.Image}}", name])
        .success()
        .stdout_trimmed()
        .to_string()
}

fn serves(port: u16, want: &str) -> bool {
    wait_for(Duration::from_secs(20), || {
        http_get(port, "/version").is_some_and(|b| b.trim() == want)
    })
}

#[test]
fn local_policy_updates_and_rolls_back() {
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t440web", &env);
    let image = format!("{name}img");
    env.run(&["tag", "bb", &image]).success();
    // Version 1 of the image: /etc/version says v1.
    let make_version = |v: &str| {
        let tmp = format!("{name}tmp");
        env.run(&[
            "create",
            "--name",
            &tmp,
            &image,
            "sh",
            "-c",
            &format!("echo {v} > /etc/version"),
        ])
        .success();
        env.run(&["start", &tmp]).success();
        env.run(&["wait", &tmp]).success();
        env.run(&["commit", &tmp, &image]).success();
        env.run(&["rm", &tmp]).success();
    };
    make_version("v1");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    env.run(&[
        "create",
        "--name",
        &name,
        "--label",
        "io.containers.autoupdate=local",
        "--stop-signal",
        "KILL",
        "-p",
        &publish,
        &image,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ])
    .success();
    // RestartSec=0: the broken version below restarts until it hits the unit's start limit,
    // which the rollback's restart must get past (and not mistake for its own start).
    let unit = env.run(&[
        "generate",
        "systemd",
        "--new",
        "--name",
        "--restart-sec",
        "0",
        &name,
    ]);
    unit.success();
    env.run(&["rm", &name]).success();
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("container-{name}.service");
    guard.write(&service, &unit.stdout);
    systemctl(&env, &["daemon-reload"]).success();
    systemctl(&env, &["start", &service]).success();
    assert!(serves(port, "v1"), "the unit does not serve v1");
    let v1 = image_id(&env, &image);
    assert_eq!(container_image(&env, &name), v1);

    // Nothing newer: nothing to do.
    let idle = env.run(&["auto-update", "--format", "{{.Unit}} {{.Updated}}"]);
    assert!(
        idle.success().stdout.contains(&format!("{service} false")),
        "{idle}"
    );

    make_version("v2");
    let v2 = image_id(&env, &image);
    assert_ne!(v1, v2);
    let dry = env.run(&["auto-update", "--dry-run", "--format", "{{.Unit}} {{.Updated}}"]);
    assert!(
        dry.success().stdout.contains(&format!("{service} pending")),
        "{dry}"
    );
    assert_eq!(
        container_image(&env, &name),
        v1,
        "--dry-run changed the container"
    );

    let update = env.run(&["auto-update", "--format", "{{.Unit}} {{.Updated}}"]);
    assert!(
        update.success().stdout.contains(&format!("{service} true")),
        "{update}"
    );
    assert_eq!(container_image(&env, &name), v2);
    assert!(serves(port, "v2"), "the unit does not serve v2 after the update");

    // A broken version (no httpd in it): the unit fails to start and is rolled back to v2.
    let dir = env.root().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("version"), "broken\n").unwrap();
    let tar = env.root().join("broken.tar");
    let made = run_bounded(
        env.command(
            "tar",
            &[
                "-C",
                &dir.to_string_lossy(),
                "-cf",
                &tar.to_string_lossy(),
                "version",
            ],
        ),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(made.code, 0, "{made}");
    env.run(&["import", &tar.to_string_lossy(), &image]).success();
    assert_ne!(image_id(&env, &image), v2);
    let failed = env.run(&["auto-update", "--format", "{{.Unit}} {{.Updated}}"]);
    assert_ne!(failed.code, 0, "{failed}");
    assert!(
        failed.stdout.contains(&format!("{service} rolled back")),
        "{failed}"
    );
    assert_eq!(image_id(&env, &image), v2, "the image name was not rolled back");
    assert_eq!(container_image(&env, &name), v2);
    assert!(serves(port, "v2"), "not serving v2 after the rollback");
    let state = systemctl(&env, &["show", "-p", "ActiveState", "--value", &service]);
    assert_eq!(state.stdout_trimmed(), "active");
}

/// The `registry` policy: the unit's container moves to what a newer push to its tag in a
/// registry (a real one on 127.0.0.1) holds.
#[test]
fn registry_policy_pulls_the_newer_push() {
    let Some(env) = env_with_busybox() else { return };
    let registry = burrow_tests::registry::TestRegistry::plain();
    let addr = registry.addr();
    std::fs::write(
        env.config_dir().join("containers/registries.conf"),
        format!("[[registry]]\nlocation = \"{addr}\"\ninsecure = true\n"),
    )
    .unwrap();
    let name = unique("t441web", &env);
    let remote = format!("{addr}/t441/{name}:latest");
    // Pushes a version of the image (/etc/version says `v`) to the registry.
    let push_version = |v: &str| {
        let tmp = format!("{name}tmp");
        env.run(&[
            "create",
            "--name",
            &tmp,
            "bb",
            "sh",
            "-c",
            &format!("echo {v} > /etc/version"),
        ])
        .success();
        env.run(&["start", &tmp]).success();
        env.run(&["wait", &tmp]).success();
        env.run(&["commit", &tmp, &remote]).success();
        env.run(&["rm", &tmp]).success();
        env.run(&["push", &remote]).success();
        image_id(&env, &remote)
    };
    let v1 = push_version("v1");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    env.run(&[
        "create",
        "--name",
        &name,
        "--label",
        "io.containers.autoupdate=registry",
        "--stop-signal",
        "KILL",
        "-p",
        &publish,
        &remote,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ])
    .success();
    let unit = env.run(&["generate", "systemd", "--new", "--name", &name]);
    unit.success();
    env.run(&["rm", &name]).success();
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("container-{name}.service");
    guard.write(&service, &unit.stdout);
    systemctl(&env, &["daemon-reload"]).success();
    systemctl(&env, &["start", &service]).success();
    assert!(serves(port, "v1"), "the unit does not serve v1");
    assert_eq!(container_image(&env, &name), v1);

    // A newer push; the local name is put back on v1, so only the registry knows of v2.
    let v2 = push_version("v2");
    assert_ne!(v1, v2);
    env.run(&["tag", &v1, &remote]).success();
    let update = env.run(&["auto-update", "--format", "{{.Unit}} {{.Updated}}"]);
    assert!(
        update.success().stdout.contains(&format!("{service} true")),
        "{update}\n{}",
        registry.log()
    );
    assert_eq!(container_image(&env, &name), v2);
    assert!(serves(port, "v2"), "the unit does not serve v2 after the update");
    systemctl(&env, &["stop", &service]).success();
}
