//! Support for burrow's end-to-end tests, which drive the real `burrow` binary as an unprivileged user
//! (`sudo hack/test.sh` runs them as `burrowtest`, and the `norange_` ones as `burrownorange`).
//!
//! ```no_run
//! use burrow_tests::TestEnv;
//! let env = TestEnv::new();                    // private store: its own HOME and XDG dirs
//! env.import_busybox("bb");                    // `burrow import <busybox rootfs tar> bb`
//! let out = env.run(&["run", "--rm", "bb", "echo", "hi"]);
//! assert_eq!(out.success().stdout_trimmed(), "hi");
//! ```
//!
//! Environment read by the tests (all optional):
//! - `BURROW_BIN`: the binary under test (default `<workspace>/target/debug/burrow`).
//! - `BURROW_TEST_TMPDIR`: where private dirs and the test rootfs go (default the system temp dir).
//! - `BURROW_TEST_TIMEOUT`: seconds one `burrow` command may take in [`TestEnv::run`] (default 120).
//! - `BURROW_TEST_SYSTEMD=1`: a systemd user manager runs for this user ([`systemd_available`]).

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub mod image_gen;
pub mod registry;

/// `PATH` given to burrow when the test process has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
/// How long a process left behind may keep burrow's stdout/stderr open after burrow exited.
const DRAIN: Duration = Duration::from_secs(5);

/// The burrow binary under test: `$BURROW_BIN`, else `target/debug/burrow` of this workspace.
pub fn burrow_bin() -> PathBuf {
    match std::env::var_os("BURROW_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/burrow"),
    }
}

/// True when `hack/test.sh` started a systemd user manager for this user (`BURROW_TEST_SYSTEMD=1`).
/// Its runtime dir is `/run/user/UID`, not the private one of a [`TestEnv`].
pub fn systemd_available() -> bool {
    std::env::var_os("BURROW_TEST_SYSTEMD").is_some_and(|v| v == "1")
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The name of the current user from `/etc/passwd` (falls back to `$USER`, then to the uid).
pub fn current_user_name() -> String {
    let uid = current_uid().to_string();
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or(uid)
}

/// Whether `/etc/subuid` gives the current user (by name or by uid) a non-empty range.
pub fn current_user_has_subuid_range() -> bool {
    let (name, uid) = (current_user_name(), current_uid().to_string());
    let Ok(text) = fs::read_to_string("/etc/subuid") else {
        return false;
    };
    text.lines().any(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        f.len() == 3 && (f[0] == name || f[0] == uid) && f[2].parse::<u64>().is_ok_and(|n| n > 0)
    })
}

/// What a finished command did. `code` is the exit code, or 128+N if it was killed by signal N.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl Outcome {
    /// Panics, showing the command, code, stdout and stderr, unless the command exited 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        if self.code != 0 {
            panic!("expected success, got exit code {}\n{self}", self.code);
        }
        self
    }

    /// Panics, showing the command, stdout and stderr, if the command exited 0.
    #[track_caller]
    pub fn failure(&self) -> &Self {
        if self.code == 0 {
            panic!("expected failure, got exit code 0\n{self}");
        }
        self
    }

    /// stdout without leading and trailing whitespace (including a pty's `\r`).
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// A private burrow environment: a 0700 temp dir holding HOME, XDG_DATA_HOME, XDG_CONFIG_HOME,
/// XDG_CACHE_HOME and XDG_RUNTIME_DIR (all 0700), so parallel tests never share a store.
/// Dropping it removes the store (inside the user namespace) and stops burrow's pause process.
pub struct TestEnv {
    root: PathBuf,
    home: PathBuf,
    data: PathBuf,
    config: PathBuf,
    cache: PathBuf,
    runtime: PathBuf,
    /// `DBUS_SESSION_BUS_ADDRESS` of the user's systemd manager, for [`TestEnv::new_with_systemd`].
    systemd_bus: Option<String>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Creates the private dirs under `$BURROW_TEST_TMPDIR` (or the system temp dir).
    /// Names are short because the runtime dir holds unix sockets (108-byte path limit).
    pub fn new() -> TestEnv {
        let base = std::env::var_os("BURROW_TEST_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let root = tempfile::Builder::new()
            .prefix("e")
            .rand_bytes(6)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("cannot create a test dir in {}: {e}", base.display()))
            .keep();
        let sub = |name: &str| {
            let p = root.join(name);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
            p
        };
        let config = sub("config");
        // Short names never send a test to the internet (tests reach loopback only): they
        // resolve to a blocked registry, so a missing image fails at once, here. Tests of
        // registries write their own file.
        fs::create_dir_all(config.join("containers")).expect("creating config/containers");
        fs::write(
            config.join("containers/registries.conf"),
            "unqualified-search-registries = [\"127.0.0.1:1\"]\n\n[[registry]]\nlocation = \"127.0.0.1:1\"\nblocked = true\n",
        )
        .expect("writing registries.conf");
        TestEnv {
            home: sub("home"),
            data: sub("data"),
            config,
            cache: sub("cache"),
            runtime: sub("run"),
            root,
            systemd_bus: None,
        }
    }

    /// A [`TestEnv`] whose commands also reach the user's real systemd manager (through
    /// `DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/UID/bus`; `systemctl --user` needs that because
    /// `XDG_RUNTIME_DIR` stays private), or `None` when `hack/test.sh` did not start one: the test
    /// should then return early, saying it skipped. Units run with the manager's environment, not
    /// this one (their HOME and XDG dirs are the user's real ones).
    pub fn new_with_systemd() -> Option<TestEnv> {
        if !systemd_available() {
            eprintln!("skipped: no systemd user manager (BURROW_TEST_SYSTEMD is not 1)");
            return None;
        }
        let mut env = TestEnv::new();
        env.systemd_bus = Some(format!("unix:path=/run/user/{}/bus", current_uid()));
        Some(env)
    }

    /// The private temp dir holding everything else.
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn home(&self) -> &Path {
        &self.home
    }
    /// `XDG_DATA_HOME`: the image and container store lives below it.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
    pub fn config_dir(&self) -> &Path {
        &self.config
    }
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }
    /// `XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime
    }

    /// The environment burrow gets, and nothing else: PATH, HOME, USER, LOGNAME, the XDG dirs, LANG
    /// (and DBUS_SESSION_BUS_ADDRESS for [`TestEnv::new_with_systemd`]).
    pub fn envs(&self) -> Vec<(&'static str, OsString)> {
        let path = std::env::var_os("PATH")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let user = current_user_name();
        let mut v = vec![
            ("PATH", path),
            ("HOME", self.home.clone().into()),
            ("USER", user.clone().into()),
            ("LOGNAME", user.into()),
            ("XDG_DATA_HOME", self.data.clone().into()),
            ("XDG_CONFIG_HOME", self.config.clone().into()),
            ("XDG_CACHE_HOME", self.cache.clone().into()),
            ("XDG_RUNTIME_DIR", self.runtime.clone().into()),
            ("LANG", "C.UTF-8".into()),
        ];
        if let Some(bus) = &self.systemd_bus {
            v.push(("DBUS_SESSION_BUS_ADDRESS", bus.into()));
        }
        v
    }

    /// `burrow ARGS...` with a clean environment ([`TestEnv::envs`]), run in the private HOME.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.command(burrow_bin(), args)
    }

    /// Any `PROGRAM ARGS...` (skopeo, systemctl, ...) with the same environment and directory as burrow.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args).env_clear().envs(self.envs()).current_dir(&self.home);
        c
    }

    /// Runs `burrow ARGS...` with stdin from /dev/null and waits for it (at most `$BURROW_TEST_TIMEOUT`
    /// seconds, default 120; past that it is killed and the test fails).
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Outcome {
        or_fail(run_bounded(self.cmd(args), None, default_timeout()))
    }

    /// Like [`TestEnv::run`], feeding `input` to stdin (then closing it).
    #[track_caller]
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Outcome {
        or_fail(run_bounded(self.cmd(args), Some(input), default_timeout()))
    }

    /// Runs `burrow ARGS...` on a pseudo-terminal (`script -qec CMD /dev/null`, same environment), with
    /// `input` typed into it, then end-of-file (script types ^D). stdout is what the terminal
    /// showed: `\r\n` line ends, and the input echoed unless burrow turned echo off. The exit code is
    /// burrow's. Past `timeout` everything is killed and the test fails.
    #[track_caller]
    pub fn run_in_pty(&self, args: &[&str], input: &[u8], timeout: Duration) -> Outcome {
        self.run_in_pty_steps(args, &[("", input)], timeout)
    }

    /// [`TestEnv::run_in_pty`] typing in steps: for each `(expect, send)`, waits until the terminal has
    /// shown `expect` (after the previous match), then types `send`; so input such as `\x03` (Ctrl-C)
    /// arrives once the container is ready for it, without sleeping. E.g.
    /// `&[("READY", b"\x03")]` with a container running `echo READY; sleep 300`.
    #[track_caller]
    pub fn run_in_pty_steps(&self, args: &[&str], steps: &[(&str, &[u8])], timeout: Duration) -> Outcome {
        let mut c = pty_command(&burrow_bin().to_string_lossy(), args);
        c.env_clear().envs(self.envs()).current_dir(&self.home);
        or_fail(run_bounded_steps(c, steps, timeout))
    }

    /// Imports the busybox test rootfs ([`image_gen::busybox_rootfs_once`]) as image `name`.
    #[track_caller]
    pub fn import_busybox(&self, name: &str) {
        let tar = image_gen::busybox_rootfs_once();
        self.run(&["import", &tar.to_string_lossy(), name]).success();
    }

    fn pause_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.runtime.join("burrow/pause.pid")).ok()?;
        text.trim().parse().ok().filter(|&p| p > 1)
    }

    /// Kills burrow's pause process `pid` if it still is one of ours running the burrow binary.
    fn kill_pause(&self, pid: i32) {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let exe_matches = match (fs::read_link(proc.join("exe")), fs::canonicalize(burrow_bin())) {
            (Ok(exe), Ok(bin)) => exe == bin,
            _ => false,
        };
        let comm = fs::read_to_string(proc.join("comm")).unwrap_or_default();
        if !exe_matches && !comm.trim().starts_with("burrow") {
            if proc.exists() {
                eprintln!(
                    "TestEnv cleanup: pid {pid} of pause.pid is not burrow ({}); not killing it",
                    comm.trim()
                );
            }
            return;
        }
        kill(pid);
    }

    /// Kills every process of ours still running with this env's `XDG_RUNTIME_DIR` in its environment:
    /// what burrow left behind (pause processes, monitors of containers a test did not remove).
    fn kill_leftovers(&self) {
        let mut needle = b"XDG_RUNTIME_DIR=".to_vec();
        needle.extend(self.runtime.as_os_str().as_encoded_bytes());
        let me = std::process::id() as i32;
        let Ok(dir) = fs::read_dir("/proc") else { return };
        for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            // environ is readable only for our own (dumpable) processes; others fail and are skipped.
            let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if pid != me && environ.split(|&b| b == 0).any(|var| var == needle.as_slice()) {
                kill(pid);
            }
        }
    }
}

/// SIGKILL `pid`, reporting (not failing on) errors other than "already gone".
fn kill(pid: i32) {
    // SAFETY: plain kill(2) of a single pid (> 1, checked by the callers' parsing).
    if pid > 1 && unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            eprintln!("TestEnv cleanup: kill {pid}: {e}");
        }
    }
}

impl Drop for TestEnv {
    /// Never panics; problems are printed (shown with the output of a failed test).
    ///
    /// The store holds files owned by subordinate ids, which only the user namespace can delete:
    /// `burrow unshare rm -rf` removes them, then burrow's pause process (pid in
    /// `$XDG_RUNTIME_DIR/burrow/pause.pid`) and any other process left with this env are killed, then
    /// the rest is removed. Pass 1 keeps the runtime dir until the pause pid is read; `--one-file-system`
    /// keeps rm off mounts that containers left. If anything remains (it was under such a mount, or in
    /// the runtime dir), pass 2 repeats with everything in a fresh namespace.
    fn drop(&mut self) {
        for pass in 1..=2 {
            let mut parts = vec![&self.data, &self.cache, &self.home, &self.config];
            if pass == 2 {
                parts.push(&self.runtime);
                // burrow needs its runtime dir; pass 1 may have removed it.
                let _ = fs::DirBuilder::new().mode(0o700).create(&self.runtime);
            }
            let parts: Vec<String> = parts
                .iter()
                .filter(|p| p.exists())
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if !parts.is_empty() {
                let mut args = vec!["unshare", "rm", "-rf", "--one-file-system", "--"];
                args.extend(parts.iter().map(String::as_str));
                let mut rm = self.cmd(&args);
                rm.current_dir(&self.root); // not HOME: it is being removed
                match run_bounded(rm, None, Duration::from_secs(120)) {
                    Ok(o) if o.code == 0 => {}
                    Ok(o) => eprintln!("TestEnv cleanup (pass {pass}): burrow unshare rm failed\n{o}"),
                    Err(e) => eprintln!("TestEnv cleanup (pass {pass}): {e}"),
                }
            }
            if let Some(pid) = self.pause_pid() {
                self.kill_pause(pid);
            }
            self.kill_leftovers();
            match remove_tree(&self.root) {
                Ok(()) => return,
                Err(e) if pass == 2 => {
                    eprintln!("TestEnv cleanup: cannot remove {}: {e}", self.root.display())
                }
                Err(_) => {}
            }
        }
    }
}

/// `rm -rf` for files we own: makes directories writable first. Never follows symlinks.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)
}

#[track_caller]
fn or_fail(r: Result<Outcome, String>) -> Outcome {
    match r {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    }
}

fn default_timeout() -> Duration {
    let secs = std::env::var("BURROW_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// `script -qec "PROGRAM ARGS..." /dev/null`: runs PROGRAM on a new pseudo-terminal; script relays its
/// own stdin to the terminal and the terminal's output to its stdout, and exits with PROGRAM's code.
pub fn pty_command(program: &str, args: &[&str]) -> Command {
    let line = std::iter::once(program)
        .chain(args.iter().copied())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"]);
    c
}

/// Single-quotes `s` for `sh`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

enum Event {
    Out(usize, Vec<u8>),
    Eof,
    Exited(std::io::Result<ExitStatus>),
}

/// Runs `cmd` in its own process group with piped stdout/stderr, `input` (if any) on stdin, and waits
/// at most `timeout`. On expiry the group is killed and an error with the output so far is returned.
/// Also an error: output pipes still held open [`DRAIN`] after the command exited (a process it left
/// behind kept them, which would hang any script that captures burrow's output).
pub fn run_bounded(cmd: Command, input: Option<&[u8]>, timeout: Duration) -> Result<Outcome, String> {
    match input {
        None => run_plan(cmd, None, timeout),
        Some(data) => run_plan(cmd, Some(&[("", data)]), timeout),
    }
}

/// Like [`run_bounded`], but stdin is fed in steps: for each `(expect, send)`, waits until `expect`
/// appears in stdout (after where the previous one matched), then writes `send`. Closes stdin after
/// the last step. A step still waiting at the deadline is named in the error.
pub fn run_bounded_steps(
    cmd: Command,
    steps: &[(&str, &[u8])],
    timeout: Duration,
) -> Result<Outcome, String> {
    run_plan(cmd, Some(steps), timeout)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn run_plan(mut cmd: Command, steps: Option<&[(&str, &[u8])]>, timeout: Duration) -> Result<Outcome, String> {
    let command = describe(&cmd);
    cmd.stdin(if steps.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{command}`: {e}"))?;
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let mut stdin = child.stdin.take();
    let readers: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for (i, mut r) in readers.into_iter().enumerate() {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drop(tx.send(Event::Out(i, buf[..n].to_vec()))),
                }
            }
            drop(tx.send(Event::Eof));
        });
    }
    thread::spawn(move || drop(tx.send(Event::Exited(child.wait()))));

    let deadline = Instant::now() + timeout;
    let mut out: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut pending = steps.unwrap_or(&[]).iter();
    let mut next_step = pending.next();
    let mut search_from = 0;
    let mut eofs = 0;
    let mut status = None;
    let mut drain_deadline = None;
    let mut problem = None;
    loop {
        // Feed stdin as far as stdout allows. A failed write (the command stopped reading) is not
        // our error; the outcome shows what happened.
        while let Some((expect, send)) = next_step {
            let Some(at) = find(&out[0][search_from..], expect.as_bytes()) else {
                break;
            };
            search_from += at + expect.len();
            if let Some(w) = stdin.as_mut() {
                let _ = w.write_all(send).and_then(|()| w.flush());
            }
            next_step = pending.next();
        }
        if next_step.is_none() {
            stdin = None; // closes it: EOF
        }
        if status.is_some() && eofs == 2 {
            break;
        }
        let limit = drain_deadline.unwrap_or(deadline).min(deadline);
        match rx.recv_timeout(limit.saturating_duration_since(Instant::now())) {
            Ok(Event::Out(i, data)) => out[i].extend(data),
            Ok(Event::Eof) => eofs += 1,
            Ok(Event::Exited(s)) => {
                status = Some(s.map_err(|e| format!("waiting for `{command}`: {e}"))?);
                drain_deadline = Some(Instant::now() + DRAIN);
            }
            Err(_) if status.is_none() => {
                // SAFETY: the child is not reaped yet (the waiter thread has not returned), so `pid`
                // still names its process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let waiting = next_step.map_or(String::new(), |(e, _)| {
                    format!(" (still waiting for {e:?} in stdout)")
                });
                problem = Some(format!("timed out after {timeout:?}{waiting}; killed it"));
                break;
            }
            Err(_) => {
                problem = Some(format!(
                    "exited, but a process it left behind still held its stdout/stderr open {DRAIN:?} later"
                ));
                break;
            }
        }
    }
    let outcome = Outcome {
        code: status.map_or(-1, |s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))),
        stdout: String::from_utf8_lossy(&out[0]).into_owned(),
        stderr: String::from_utf8_lossy(&out[1]).into_owned(),
        command,
    };
    match problem {
        None => Ok(outcome),
        Some(p) => Err(format!("`{}` {p}\n{outcome}", outcome.command)),
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("run"), "run");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn run_bounded_captures_output_code_and_stdin() {
        let mut c = Command::new("sh");
        c.args(["-c", "cat; echo err >&2; exit 3"]);
        let o = run_bounded(c, Some(b"in\n"), Duration::from_secs(30)).unwrap();
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (3, "in\n", "err\n")
        );
    }

    #[test]
    fn run_bounded_kills_on_timeout() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo started; exec sleep 30"]);
        let t = Instant::now();
        let e = run_bounded(c, None, Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "{e}");
        assert!(e.contains("timed out") && e.contains("started"), "{e}");
    }

    #[test]
    fn run_bounded_reports_leaked_stdout() {
        let mut c = Command::new("sh");
        // The background sleep keeps stdout open after sh exits, and is in its own group so the
        // kill of the (already gone) group does not reach it: kill it ourselves at the end.
        c.args(["-c", "setsid sleep 20 & echo $!"]);
        let e = run_bounded(c, None, Duration::from_secs(30)).unwrap_err();
        assert!(e.contains("held its stdout"), "{e}");
        if let Some(pid) = e.lines().find_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) on the sleep we started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    #[test]
    fn run_bounded_steps_waits_for_output_before_typing() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo ready; read a; echo got:$a; read b; echo got:$b"]);
        let steps: &[(&str, &[u8])] = &[("ready", b"one\n"), ("got:one", b"two\n")];
        let o = run_bounded_steps(c, steps, Duration::from_secs(30)).unwrap();
        assert_eq!(o.stdout, "ready\ngot:one\ngot:two\n");
        let mut c = Command::new("sh");
        c.args(["-c", "echo nope; exec sleep 30"]);
        let e = run_bounded_steps(c, &[("ready", b"x")], Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("still waiting for \"ready\""), "{e}");
    }

    #[test]
    fn pty_steps_type_into_a_terminal() {
        let c = pty_command(
            "sh",
            &["-c", "test -t 0 && echo ready; read x; echo got:$x; exit 4"],
        );
        let o = run_bounded_steps(c, &[("ready", b"typed\n")], Duration::from_secs(30)).unwrap();
        assert_eq!(o.code, 4, "{o}");
        assert!(
            o.stdout.contains("ready\r\n") && o.stdout.contains("got:typed\r\n"),
            "{o}"
        );
    }

    #[test]
    fn signal_exit_code() {
        let mut c = Command::new("sh");
        c.args(["-c", "kill -TERM $$"]);
        assert_eq!(
            run_bounded(c, None, Duration::from_secs(30)).unwrap().code,
            128 + 15
        );
    }
}
