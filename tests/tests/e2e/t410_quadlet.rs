//! Quadlet files as services of the real user manager: through `burrow systemd
//! install-generator` (no root), and through the system generator when `hack/test.sh` installed
//! it. Helpers are t400's.

use std::path::PathBuf;
use std::time::Duration;

use crate::t400_systemd::{
    env_with_busybox, free_port, http_get, manager_runtime_dir, systemctl, unique, wait_for, UnitFileGuard,
};

fn quadlet(image_args: &str, port: u16, name: &str) -> String {
    format!(
        "[Unit]\nDescription=quadlet test {name}\n\n[Container]\nImage=bb\nContainerName={name}\nExec={image_args}\nPublishPort=127.0.0.1:{port}:80\n\n[Service]\nTimeoutStopSec=30\n"
    )
}

/// Starts `service`, then expects the container `name` to serve its hostname on `port`, and
/// to be gone after a stop.
fn start_serve_stop(env: &burrow_tests::TestEnv, service: &str, name: &str, port: u16) {
    systemctl(env, &["start", service]).success();
    let mut body = None;
    wait_for(Duration::from_secs(20), || {
        body = http_get(port, "/hostname");
        body.is_some()
    });
    assert!(body.is_some(), "{service}: nothing answers on port {port}");
    let ps = env.run(&["ps", "--format", "{{.Names}}"]);
    assert!(ps.success().stdout.lines().any(|l| l == name), "{ps}");
    systemctl(env, &["stop", service]).success();
    let all = env.run(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !all.success().stdout.contains(name),
        "container left after stop\n{all}"
    );
}

#[test]
fn install_generator_turns_quadlet_files_into_services() {
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t410q", &env);
    let dir = env.config_dir().join("containers/systemd");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let file = dir.join(format!("{name}.container"));
    std::fs::write(&file, quadlet("httpd -f -p 80 -h /etc", port, &name)).unwrap();
    let unit_dir = manager_runtime_dir().join("systemd/user");
    let unit_dir_s = unit_dir.to_string_lossy().to_string();
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("{name}.service");
    guard.adopt(unit_dir.join(&service), Some(&service));
    // Whatever happens, the path unit and its files go at the end.
    struct Uninstall<'a>(&'a burrow_tests::TestEnv, String);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .run(&["systemd", "install-generator", "--unit-dir", &self.1, "--remove"]);
        }
    }
    let _uninstall = Uninstall(&env, unit_dir_s.clone());

    // An unknown key: an error naming file and line, and nothing written.
    let bad = dir.join(format!("{name}bad.container"));
    std::fs::write(&bad, "[Container]\nImage=bb\nColour=red\n").unwrap();
    let refused = env.run(&["systemd", "install-generator", "--unit-dir", &unit_dir_s]);
    assert_eq!(refused.code, 125, "{refused}");
    assert!(
        refused
            .stderr
            .contains(&format!("{}:3: unknown key Colour", bad.display())),
        "{refused}"
    );
    assert!(
        !unit_dir.join(&service).exists(),
        "a unit was written despite the bad file"
    );
    std::fs::remove_file(&bad).unwrap();

    let out = env.run(&["systemd", "install-generator", "--unit-dir", &unit_dir_s]);
    assert!(out.success().stdout.contains(&service), "{out}");
    systemctl(&env, &["daemon-reload"]).success();
    start_serve_stop(&env, &service, &name, port);

    // The path unit regenerates the unit when the quadlet file changes.
    let new_port = free_port();
    std::fs::write(&file, quadlet("httpd -f -p 80 -h /etc", new_port, &name)).unwrap();
    let unit_file = unit_dir.join(&service);
    let regenerated = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&unit_file).is_ok_and(|t| t.contains(&format!("127.0.0.1:{new_port}:80")))
    });
    assert!(regenerated, "{} was not regenerated", unit_file.display());
    // Let the regeneration finish before taking everything away.
    let services: Vec<String> = std::fs::read_dir(&unit_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("burrow-quadlet-") && n.ends_with(".service"))
        .collect();
    wait_for(Duration::from_secs(20), || {
        services.iter().all(|s| {
            let state = systemctl(&env, &["show", "-p", "ActiveState", "--value", s]);
            state.stdout_trimmed() != "activating"
        })
    });
    systemctl(&env, &["start", &service]).success();
    assert!(
        wait_for(Duration::from_secs(20), || http_get(new_port, "/hostname")
            .is_some()),
        "the regenerated unit does not serve on {new_port}"
    );
    systemctl(&env, &["stop", &service]).success();
    env.run(&[
        "systemd",
        "install-generator",
        "--unit-dir",
        &unit_dir_s,
        "--remove",
    ])
    .success();
    assert!(!unit_file.exists(), "--remove left {}", unit_file.display());
}

#[test]
fn system_generator_after_daemon_reload() {
    let generator = PathBuf::from("/usr/lib/systemd/user-generators/burrow-user-generator");
    if !generator.exists() {
        eprintln!(
            "skipped: {} is not installed (hack/test.sh installs it)",
            generator.display()
        );
        return;
    }
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t410s", &env);
    // The generator reads the manager's HOME, the user's real one, not this test's.
    let home = PathBuf::from(
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 5 && f[2] == burrow_tests::current_uid().to_string()).then(|| f[5].to_string())
            })
            .unwrap(),
    );
    let dir = home.join(".config/containers/systemd");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let store = env.data_dir().join("burrow/storage");
    let run = env.runtime_dir().join("burrow");
    // The unit runs with the manager's environment: GlobalArgs= points it at this test's store.
    let text = format!(
        "[Container]\nImage=bb\nContainerName={name}\nExec=httpd -f -p 80 -h /etc\nPublishPort=127.0.0.1:{port}:80\nGlobalArgs=--root {} --runroot {}\n",
        store.display(),
        run.display()
    );
    let file = dir.join(format!("{name}.container"));
    std::fs::write(&file, &text).unwrap();
    let service = format!("{name}.service");
    let mut guard = UnitFileGuard::new(&env);
    guard.adopt(file.clone(), Some(&service));
    systemctl(&env, &["daemon-reload"]).success();
    start_serve_stop(&env, &service, &name, port);
}
