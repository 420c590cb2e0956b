//! Quadlet `.volume` and `.image` files as services of the real user manager (through
//! `burrow systemd install-generator`), used by `.container` files; every generated unit
//! passes `systemd-analyze --user verify`. Helpers are t400's.

use std::path::{Path, PathBuf};

use burrow_tests::TestEnv;

use crate::t400_systemd::{env_with_busybox, manager_runtime_dir, systemctl, unique, verify, UnitFileGuard};

/// Runs `install-generator` into the manager's runtime unit dir for this test's quadlet dir;
/// removes what it wrote (and its path unit) when dropped.
struct Installed<'a> {
    env: &'a TestEnv,
    unit_dir: PathBuf,
}

impl<'a> Installed<'a> {
    fn new(env: &'a TestEnv) -> Installed<'a> {
        let unit_dir = manager_runtime_dir().join("systemd/user");
        let out = env.run(&[
            "systemd",
            "install-generator",
            "--unit-dir",
            &unit_dir.to_string_lossy(),
        ]);
        out.success();
        systemctl(env, &["daemon-reload"]).success();
        Installed { env, unit_dir }
    }

    fn unit(&self, service: &str) -> PathBuf {
        self.unit_dir.join(service)
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = self.env.run(&[
            "systemd",
            "install-generator",
            "--unit-dir",
            &self.unit_dir.to_string_lossy(),
            "--remove",
        ]);
    }
}

fn quadlet_dir(env: &TestEnv) -> PathBuf {
    let dir = env.config_dir().join("containers/systemd");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_verifies(env: &TestEnv, unit: &Path) {
    let text = std::fs::read_to_string(unit).unwrap_or_default();
    let out = verify(env, unit);
    assert_eq!(
        out.code,
        0,
        "systemd-analyze verify {}\n{out}\n{text}",
        unit.display()
    );
}

/// The output of `exec NAME CMD...` once the container runs.
fn exec_out(env: &TestEnv, name: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", name];
    args.extend_from_slice(cmd);
    env.run(&args).success().stdout.clone()
}

#[test]
fn volume_file_gives_a_container_its_labelled_volume() {
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t460v", &env);
    let dir = quadlet_dir(&env);
    std::fs::write(
        dir.join(format!("{name}d.volume")),
        "[Volume]\nLabel=purpose=quadlet-test \"note=two words\"\n",
    )
    .unwrap();
    // A volume that is a mount: a tmpfs of its own for each container.
    std::fs::write(
        dir.join(format!("{name}t.volume")),
        format!("[Volume]\nVolumeName={name}scratch\nDevice=tmpfs\nType=tmpfs\nOptions=size=2m\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.container")),
        format!(
            "[Container]\nImage=bb\nContainerName={name}\nVolume={name}d.volume:/data\nVolume={name}t.volume:/scratch\n\
             Exec=sh -c 'echo run >> /data/runs; exec sleep 1000'\n\n[Service]\nTimeoutStopSec=30\n"
        ),
    )
    .unwrap();
    let service = format!("{name}.service");
    let volume_service = format!("{name}d-volume.service");
    let tmpfs_service = format!("{name}t-volume.service");
    let mut guard = UnitFileGuard::new(&env);
    guard.adopt(PathBuf::new(), Some(&service));
    guard.adopt(PathBuf::new(), Some(&volume_service));
    guard.adopt(PathBuf::new(), Some(&tmpfs_service));
    let installed = Installed::new(&env);
    for unit in [&service, &volume_service, &tmpfs_service] {
        assert_verifies(&env, &installed.unit(unit));
    }

    // Starting the container's unit starts the volumes' first (Requires=, After=).
    systemctl(&env, &["start", &service]).success();
    let volume = format!("systemd-{name}d");
    let runs = exec_out(&env, &name, &["cat", "/data/runs"]);
    assert_eq!(runs, "run\n");
    let mounts = exec_out(&env, &name, &["cat", "/proc/mounts"]);
    assert!(
        mounts.lines().any(|l| l.contains(" /scratch tmpfs ")),
        "/scratch is no tmpfs\n{mounts}"
    );
    let labels = env.run(&["volume", "inspect", "--format", "{{json .Labels}}", &volume]);
    let labels: serde_json::Value = serde_json::from_str(labels.success().stdout_trimmed()).unwrap();
    assert_eq!(
        labels,
        serde_json::json!({"purpose": "quadlet-test", "note": "two words"})
    );
    let opts = env.run(&[
        "volume",
        "inspect",
        "--format",
        "{{json .Options}}",
        &format!("{name}scratch"),
    ]);
    let opts: serde_json::Value = serde_json::from_str(opts.success().stdout_trimmed()).unwrap();
    assert_eq!(opts["type"], "tmpfs", "{opts}");
    assert_eq!(opts["o"], "size=2m", "{opts}");
    let state = systemctl(&env, &["show", "-p", "ActiveState", "--value", &volume_service]);
    assert_eq!(
        state.stdout_trimmed(),
        "active",
        "the volume's oneshot does not remain"
    );

    // A second start (a new container: --rm) finds what the first wrote.
    systemctl(&env, &["stop", &service]).success();
    systemctl(&env, &["restart", &volume_service]).success();
    systemctl(&env, &["start", &service]).success();
    let runs = exec_out(&env, &name, &["cat", "/data/runs"]);
    assert_eq!(runs, "run\nrun\n");
    systemctl(&env, &["stop", &service]).success();
    drop(installed);
    env.run(&["volume", "rm", &volume, &format!("{name}scratch")])
        .success();
}

#[test]
fn image_file_pulls_what_a_container_runs() {
    let Some(env) = env_with_busybox() else { return };
    let registry = burrow_tests::registry::TestRegistry::plain();
    let name = unique("t460i", &env);
    let remote = format!("{}/t460/{name}:v1", registry.addr());
    // The image in the registry has a file the local one does not: the container shows it.
    let tmp = format!("{name}tmp");
    env.run(&[
        "create",
        "--name",
        &tmp,
        "bb",
        "sh",
        "-c",
        "echo from-registry > /etc/origin",
    ])
    .success();
    env.run(&["start", "-a", &tmp]).success();
    env.run(&["commit", &tmp, &remote]).success();
    env.run(&["rm", &tmp]).success();
    env.run(&["push", "--tls-verify=false", &remote]).success();
    env.run(&["rmi", &remote]).success();
    assert_ne!(env.run(&["image", "exists", &remote]).code, 0);

    let dir = quadlet_dir(&env);
    // The units run with the manager's environment, not this test's registries.conf.
    std::fs::write(
        dir.join(format!("{name}.image")),
        format!("[Image]\nImage={remote}\nTLSVerify=false\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.container")),
        format!(
            "[Container]\nImage={name}.image\nContainerName={name}\nExec=sleep 1000\n\n[Service]\nTimeoutStopSec=30\n"
        ),
    )
    .unwrap();
    let service = format!("{name}.service");
    let image_service = format!("{name}-image.service");
    let mut guard = UnitFileGuard::new(&env);
    guard.adopt(PathBuf::new(), Some(&service));
    guard.adopt(PathBuf::new(), Some(&image_service));
    let installed = Installed::new(&env);
    for unit in [&service, &image_service] {
        assert_verifies(&env, &installed.unit(unit));
    }
    let start = systemctl(&env, &["start", &service]);
    assert_eq!(start.code, 0, "{start}\n{}", registry.log());
    assert_eq!(env.run(&["image", "exists", &remote]).code, 0, "not pulled");
    let origin = exec_out(&env, &name, &["cat", "/etc/origin"]);
    assert_eq!(origin, "from-registry\n");
    let image = env.run(&["inspect", "--format", "{{.ImageName}}", &name]);
    assert_eq!(image.success().stdout_trimmed(), remote);
    systemctl(&env, &["stop", &service]).success();
    drop(installed);
}
