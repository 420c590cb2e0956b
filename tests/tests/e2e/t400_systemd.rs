//! systemd: `generate systemd`, `run -d` as a transient unit, quadlet, sd_notify, healthchecks.
//! Every test goes through the real user manager that `hack/test.sh` runs (and skips without
//! one). Units are written to the manager's runtime unit dir (`/run/user/UID/systemd/user`)
//! with names unique to the test, and removed at the end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burrow_tests::{current_uid, run_bounded, Outcome, TestEnv};

pub(crate) fn manager_runtime_dir() -> PathBuf {
    PathBuf::from(format!("/run/user/{}", current_uid()))
}

/// `systemctl --user ARGS` against the real manager.
pub(crate) fn systemctl(env: &TestEnv, args: &[&str]) -> Outcome {
    let mut all = vec!["--user", "--no-pager"];
    all.extend_from_slice(args);
    let mut c = env.command("systemctl", &all);
    c.env("XDG_RUNTIME_DIR", manager_runtime_dir());
    run_bounded(c, None, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"))
}

/// A name no other test (or run) uses: units live in the one manager all tests share.
pub(crate) fn unique(prefix: &str, env: &TestEnv) -> String {
    let tail = env
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    format!("{prefix}{}", tail.trim_start_matches('e'))
}

/// A unit file in the manager's runtime unit dir, removed (and the manager reloaded) on drop.
pub(crate) struct UnitFileGuard<'a> {
    env: &'a TestEnv,
    paths: Vec<PathBuf>,
    units: Vec<String>,
}

impl<'a> UnitFileGuard<'a> {
    pub(crate) fn new(env: &'a TestEnv) -> Self {
        UnitFileGuard {
            env,
            paths: Vec::new(),
            units: Vec::new(),
        }
    }

    pub(crate) fn write(&mut self, name: &str, text: &str) -> PathBuf {
        let dir = manager_runtime_dir().join("systemd/user");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        self.paths.push(path.clone());
        self.units.push(name.to_string());
        path
    }
}

impl UnitFileGuard<'_> {
    /// Also removes `path` on drop, and stops `unit` first.
    pub(crate) fn adopt(&mut self, path: PathBuf, unit: Option<&str>) {
        self.paths.push(path);
        self.units.extend(unit.map(str::to_string));
    }
}

impl Drop for UnitFileGuard<'_> {
    fn drop(&mut self) {
        for u in &self.units {
            let _ = systemctl(self.env, &["stop", u]);
        }
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
        let _ = systemctl(self.env, &["daemon-reload"]);
    }
}

/// Polls `check` until it holds or `limit` passes.
pub(crate) fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// GET `path` from 127.0.0.1:`port`; the body, or None if nothing answers.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// A port the kernel says is free now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn env_with_busybox() -> Option<TestEnv> {
    let env = TestEnv::new_with_systemd()?;
    env.import_busybox("bb");
    Some(env)
}

pub(crate) fn verify(env: &TestEnv, unit: &Path) -> Outcome {
    let mut c = env.command("systemd-analyze", &["--user", "verify", &unit.to_string_lossy()]);
    c.env("XDG_RUNTIME_DIR", manager_runtime_dir());
    run_bounded(c, None, Duration::from_secs(60)).unwrap()
}

#[test]
fn generate_new_unit_serves_and_cleans_up() {
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t400web", &env);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    // The page the server gives: its hostname file, which is the container's name.
    env.run(&[
        "create",
        "--name",
        &name,
        "--hostname",
        &name,
        "-p",
        &publish,
        "bb",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ])
    .success();
    let unit = env.run(&["generate", "systemd", "--new", "--name", "-t", "2", &name]);
    unit.success();
    assert!(unit.stdout.contains("Type=notify"), "{unit}");
    // --new units make their own container: the one it was generated from can go.
    env.run(&["rm", &name]).success();
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("container-{name}.service");
    let path = guard.write(&service, &unit.stdout);
    let verified = verify(&env, &path);
    assert_eq!(verified.code, 0, "systemd-analyze verify failed\n{verified}");
    systemctl(&env, &["daemon-reload"]).success();
    systemctl(&env, &["start", &service]).success();
    // Type=notify: `start` returned once the container ran; httpd listens a moment later.
    let mut body = None;
    wait_for(Duration::from_secs(20), || {
        body = http_get(port, "/hostname");
        body.is_some()
    });
    if body.is_none() {
        let status = systemctl(&env, &["status", &service]);
        let ps = env.run(&["ps", "-a"]);
        panic!("no answer from the unit's web server on port {port}\n{status}\n{ps}");
    }
    assert_eq!(body.as_deref().map(str::trim), Some(name.as_str()));
    let ps = env.run(&["ps", "--format", "{{.Names}}"]);
    assert!(ps.success().stdout.lines().any(|l| l == name), "{ps}");
    systemctl(&env, &["stop", &service]).success();
    // A clean stop: the monitor (MAINPID=) was gone when ExecStop= returned, not killed.
    let result = systemctl(&env, &["show", "-p", "Result", "--value", &service]);
    assert_eq!(result.stdout_trimmed(), "success", "{result}");
    let all = env.run(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !all.success().stdout.contains(&name),
        "--new container left after stop\n{all}"
    );
    assert!(http_get(port, "/hostname").is_none(), "still served after stop");
}

#[test]
fn generate_unit_for_existing_container_forking() {
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t400fork", &env);
    env.run(&[
        "create",
        "--name",
        &name,
        "--stop-signal",
        "KILL",
        "bb",
        "sleep",
        "1000",
    ])
    .success();
    let unit = env.run(&[
        "generate",
        "systemd",
        "--name",
        "--restart-policy",
        "always",
        &name,
    ]);
    unit.success();
    assert!(
        unit.stdout.contains("Type=forking") && unit.stdout.contains("Restart=always"),
        "{unit}"
    );
    let bad = env.run(&["generate", "systemd", "--restart-policy", "sometimes", &name]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("sometimes"), "{bad}");
    let mut guard = UnitFileGuard::new(&env);
    let service = format!("container-{name}.service");
    let path = guard.write(&service, &unit.stdout);
    assert_eq!(verify(&env, &path).code, 0);
    systemctl(&env, &["daemon-reload"]).success();
    systemctl(&env, &["start", &service]).success();
    let state = env.run(&["inspect", "--format", "{{.State.Status}}", &name]);
    assert_eq!(state.success().stdout_trimmed(), "running", "{state}");
    // The unit's main process is the container's monitor (PIDFile=).
    let show = systemctl(&env, &["show", "-p", "MainPID", "--value", &service]);
    let main_pid = show.success().stdout_trimmed().to_string();
    let cmdline = std::fs::read(format!("/proc/{main_pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("__monitor"),
        "MainPID {main_pid} is not the monitor"
    );
    // `burrow stop` of a unit's container stops the unit: Restart=always does not bring it back.
    env.run(&["stop", &name]).success();
    let state = env.run(&["inspect", "--format", "{{.State.Status}}", &name]);
    assert_eq!(state.success().stdout_trimmed(), "exited", "{state}");
    assert!(
        wait_for(Duration::from_secs(30), || {
            systemctl(&env, &["show", "-p", "ActiveState", "--value", &service]).stdout_trimmed()
                == "inactive"
        }),
        "unit {service} not inactive after burrow stop"
    );
    let state = env.run(&["inspect", "--format", "{{.State.Status}}", &name]);
    assert_eq!(
        state.success().stdout_trimmed(),
        "exited",
        "restarted after stop: {state}"
    );
}

#[test]
fn run_detached_is_a_transient_unit() {
    let Some(env) = env_with_busybox() else { return };
    let id = env.run(&["run", "-d", "bb", "sleep", "1000"]);
    let id = id.success().stdout_trimmed().to_string();
    let unit = format!("burrow-{id}.service");
    let units = systemctl(&env, &["list-units", "--plain", "--no-legend", "burrow-*"]);
    assert!(units.success().stdout.contains(&unit), "{units}");
    // Its processes are the unit's: the monitor is its main process.
    let show = systemctl(&env, &["show", "-p", "ActiveState", "--value", &unit]);
    assert_eq!(show.success().stdout_trimmed(), "active");
    // --systemd=false: a plain monitor, no unit.
    let plain = env.run(&["run", "-d", "--systemd=false", "bb", "sleep", "1000"]);
    let plain = plain.success().stdout_trimmed().to_string();
    let units = systemctl(&env, &["list-units", "--plain", "--no-legend", "burrow-*"]);
    assert!(!units.stdout.contains(&plain), "{units}");
    // Stopping the container ends its unit.
    env.run(&["stop", "-t", "0", &id]).success();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s = systemctl(&env, &["show", "-p", "ActiveState", "--value", &unit]);
            s.stdout_trimmed() != "active"
        }),
        "unit {unit} still active after stop"
    );
    env.run(&["rm", "-f", &plain]).success();
    // A start failure is reported as without systemd (exit 127 for a missing command).
    let missing = env.run(&["run", "-d", "bb", "no-such-command"]);
    assert_eq!(missing.code, 127, "{missing}");
}

#[test]
fn run_detached_through_the_managers_private_socket() {
    // A login session has XDG_RUNTIME_DIR=/run/user/UID and finds the manager's own socket
    // there (no bus daemon): the store stays this test's through --runroot.
    let Some(env) = env_with_busybox() else { return };
    let runroot = env.runtime_dir().join("burrow");
    let runroot = runroot.to_string_lossy();
    for _ in 0..5 {
        let mut c = env.cmd(&["--runroot", &runroot, "run", "-d", "bb", "sleep", "1000"]);
        c.env("XDG_RUNTIME_DIR", manager_runtime_dir())
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        // Bounded well below the default: a call the manager never answers must fail here.
        let out = run_bounded(c, None, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
        let id = out.success().stdout_trimmed().to_string();
        assert!(!out.stderr.contains("WARN"), "{out}");
        let unit = format!("burrow-{id}.service");
        let units = systemctl(&env, &["list-units", "--plain", "--no-legend", &unit]);
        assert!(units.success().stdout.contains(&unit), "{units}");
        let mut rm = env.cmd(&["--runroot", &runroot, "rm", "-f", &id]);
        rm.env("XDG_RUNTIME_DIR", manager_runtime_dir());
        run_bounded(rm, None, Duration::from_secs(60)).unwrap().success();
    }
}

#[test]
fn run_detached_without_a_manager_says_so() {
    // A plain TestEnv has a private XDG_RUNTIME_DIR and no bus: no manager to reach.
    let env = TestEnv::new();
    if Path::new("/var/lib/systemd/linger")
        .join(burrow_tests::current_user_name())
        .exists()
    {
        eprintln!("skipped: this user lingers, so burrow has no reason to warn");
        return;
    }
    env.import_busybox("bb");
    let out = env.run(&["run", "-d", "bb", "true"]);
    out.success();
    assert!(out.stderr.contains("enable-linger"), "{out}");
}
