//! The monitor of a detached container (Podman's conmon, as part of burrow): `burrow
//! __monitor ID`, started by `run -d` and `start`, in a session of its own. It is the
//! parent of the container's first process (which dies with it), writes the container's
//! output to its log, records its exit, removes it with --rm and restarts it by policy.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::SystemTime;

use anyhow::Context as _;
use burrow_storage::{ContainerRecord, Store};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{pipe2, Pid};
use serde::{Deserialize, Serialize};

use crate::commands::attach::{AttachServer, ATTACH_FD, STDERR, STDOUT};
use crate::context::Engine;
use crate::exit::ExitError;
use crate::launch;
use crate::GlobalOptions;

/// The descriptor on which the monitor reports to whoever started it.
const READY_FD: i32 = 3;

/// What the monitor tells `run -d` / `start` once the container runs (or could not).
#[derive(Debug, Serialize, Deserialize)]
enum Ready {
    Running { pid: i32 },
    Failed { message: String, exit_code: i32 },
}

/// The container's log, in Podman's k8s-file format.
pub fn log_path(store: &Store, id: &str) -> std::path::PathBuf {
    store.paths.container_dir(id).join("ctr.log")
}

/// Starts the monitor of a created (or exited) container and returns once the container
/// runs; a failure to start is reported as `run` would. With `attach`, the monitor gets
/// that client (one end of a socket pair) before the container starts (`start -a`).
pub fn start_detached(
    engine: &Engine,
    global: &GlobalOptions,
    record: &ContainerRecord,
    attach: Option<OwnedFd>,
) -> anyhow::Result<()> {
    start_detached_with(engine, global, record, attach, true)
}

/// [`start_detached`]; with `systemd`, the monitor runs as a transient service of the user's
/// manager when one is reachable (and this is not already part of a unit). An attached
/// client (`start -a`) needs the plain monitor: its socket goes to the monitor directly.
pub fn start_detached_with(
    engine: &Engine,
    global: &GlobalOptions,
    record: &ContainerRecord,
    attach: Option<OwnedFd>,
    systemd: bool,
) -> anyhow::Result<()> {
    // A write less for a new container: it was never stopped.
    if record.stop_requested {
        engine.store.set_stop_requested(&record.id, false)?;
    }
    let stop_timeout = launch::summary(record).map_or(10, |l| l.stop_timeout);
    PendingMonitor::spawn(engine, global, &record.id, attach, systemd, stop_timeout, None)?.go()
}

/// `burrow [--root R] [--runroot R] __monitor`: the monitor's command line, without its flags
/// and container id.
fn monitor_command(global: &GlobalOptions) -> Vec<String> {
    let mut args: Vec<String> = vec!["burrow".into()];
    if let Some(root) = &global.root {
        args.extend(["--root".into(), root.display().to_string()]);
    }
    if let Some(runroot) = &global.runroot {
        args.extend(["--runroot".into(), runroot.display().to_string()]);
    }
    args.push("__monitor".into());
    args
}

/// A container's monitor, started (exec, user namespace joined, store open) but waiting
/// for the word to start the container: `run -d` starts it as soon as it has chosen the id,
/// so that the manager's and the monitor's start-up overlap with making the container's
/// record and spec. The word is "go" on the monitor's stdin (a pipe); the pipe closing
/// without it makes the monitor exit at once, having touched nothing.
pub struct PendingMonitor {
    id: String,
    go: File,
    ready: File,
    monitor_log: std::path::PathBuf,
    /// Whether to say, once it runs, that no manager could take the container.
    notice: bool,
    /// A transient unit asked for, until the manager answers; with what a plain monitor
    /// needs if it refuses.
    unit: Option<(String, burrow_systemd::scope::StartingService, PlainMonitor)>,
}

/// What starting a plain monitor takes: its command line and descriptors.
struct PlainMonitor {
    args: Vec<String>,
    go: OwnedFd,
    ready: OwnedFd,
    stderr: File,
    attach: Option<OwnedFd>,
}

impl PlainMonitor {
    /// Forks and execs the monitor, in a session of its own.
    fn spawn(self) -> anyhow::Result<()> {
        let PlainMonitor {
            args,
            go,
            ready,
            stderr,
            attach,
        } = self;
        let mut spawn = crate::spawn::Spawn::new(std::path::Path::new("/proc/self/exe"), &args)?
            .fd(&go, 0)?
            .null(1)
            .fd(&stderr, 2)?
            .fd(&ready, READY_FD)?
            .setsid();
        if let Some(attach) = &attach {
            spawn = spawn.fd(attach, ATTACH_FD)?;
        }
        spawn.spawn().context("starting the container's monitor")?;
        Ok(())
    }
}

impl PendingMonitor {
    /// Starts the monitor of container `id`, whose directory is made if it does not exist
    /// yet (the monitor's log is there). `stop_timeout` is the container's (the unit's
    /// timeout follows it); `bus`, a connection to the manager made already, if any.
    pub fn spawn(
        engine: &Engine,
        global: &GlobalOptions,
        id: &str,
        attach: Option<OwnedFd>,
        systemd: bool,
        stop_timeout: u32,
        bus: Option<burrow_systemd::bus::Connection>,
    ) -> anyhow::Result<PendingMonitor> {
        let unit = crate::sdunits::monitor_unit(id, systemd && attach.is_none());
        let notice = systemd && attach.is_none() && unit.is_none();
        let store = &engine.store;
        // The monitor checkpoints once the container runs: no fsync before we return.
        store.defer_checkpoints()?;
        let dir = store.paths.container_dir(id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC)?;
        let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC)?;
        let monitor_log = dir.join("monitor.log");
        let stderr = OpenOptions::new().create(true).append(true).open(&monitor_log)?;
        let mut args = monitor_command(global);
        args.push("--go-on-stdin".into());
        let mut pending = PendingMonitor {
            id: id.to_string(),
            go: File::from(go_w),
            ready: File::from(ready_r),
            monitor_log,
            notice,
            unit: None,
        };
        let mut plain_args = args.clone();
        plain_args.push(id.to_string());
        let plain = PlainMonitor {
            args: plain_args,
            go: go_r,
            ready: ready_w,
            stderr,
            attach,
        };
        let Some(unit) = unit else {
            plain.spawn()?;
            return Ok(pending);
        };
        // The manager starts it: the go pipe is its stdin, the ready pipe its stdout, the log
        // its stderr.
        let mut unit_args = args;
        unit_args.push("--ready-on-stdout".into());
        unit_args.push(id.to_string());
        let exe = std::fs::read_link("/proc/self/exe").context("finding the burrow binary")?;
        unit_args[0] = exe.display().to_string();
        match crate::sdunits::start_monitor_service(
            bus,
            &unit,
            id,
            &unit_args,
            &crate::sdunits::MonitorStdio {
                go: plain.go.as_raw_fd(),
                ready: plain.ready.as_raw_fd(),
                log: plain.stderr.as_raw_fd(),
            },
            stop_timeout,
        ) {
            Ok(starting) => pending.unit = Some((unit, starting, plain)),
            Err(e) => {
                eprintln!("WARN: starting the monitor as systemd unit {unit}: {e}; using a plain monitor");
                plain.spawn()?;
            }
        }
        Ok(pending)
    }

    /// Once the manager has answered: a plain monitor instead if it refused the unit.
    fn confirm_unit(&mut self) -> anyhow::Result<()> {
        let Some((unit, starting, plain)) = self.unit.take() else {
            return Ok(());
        };
        if let Err(e) = starting.wait() {
            eprintln!("WARN: starting the monitor as systemd unit {unit}: {e}; using a plain monitor");
            plain.spawn()?;
        }
        Ok(())
    }

    /// Tells the monitor to start the container (its record and spec are written) and
    /// returns once it runs; a failure to start is reported as `run` would.
    pub fn go(mut self) -> anyhow::Result<()> {
        self.confirm_unit()?;
        let PendingMonitor {
            id,
            mut go,
            ready,
            monitor_log,
            notice,
            unit: _,
        } = self;
        // A monitor that died already makes this fail (EPIPE): its report, or its log, says why.
        let _ = go.write_all(b"go\n");
        drop(go);
        // One line: under systemd the manager keeps a copy of the pipe while the unit runs, so
        // there is no end of file to wait for (but there is one if the unit fails to start).
        let mut report = String::new();
        std::io::BufReader::new(ready).read_line(&mut report)?;
        match serde_json::from_str::<Ready>(&report) {
            Ok(Ready::Running { .. }) => {
                if let Some(notice) = crate::sdunits::notice_no_manager(&id, notice) {
                    eprintln!("{notice}");
                }
                Ok(())
            }
            Ok(Ready::Failed { message, exit_code }) => Err(ExitError {
                code: exit_code,
                message,
            }
            .into()),
            Err(_) => {
                let detail = std::fs::read_to_string(&monitor_log).unwrap_or_default();
                let detail = detail.lines().last().unwrap_or("see its monitor.log").to_string();
                Err(anyhow::anyhow!("the monitor of container {id} failed: {detail}"))
            }
        }
    }

    /// The container will not be made after all: the monitor exits without a word, and is
    /// gone (its unit too) when this returns, or after 10 s at most.
    pub fn cancel(mut self) {
        // Our copies of its ends first; then whether the manager took the unit or not, the
        // ready pipe's end of file says that all is gone.
        if let Some((_, starting, plain)) = self.unit.take() {
            drop(plain);
            let _ = starting.wait();
        }
        drop(self.go);
        // Its end of the ready pipe closes when it exits; a unit's copy, once the manager has
        // let go of the unit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut buf = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let timeout =
                PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::ZERO);
            let mut fds = [PollFd::new(self.ready.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => return,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
            match nix::unistd::read(&self.ready, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// RFC 3339 with nanoseconds, as k8s-file log lines have.
pub fn log_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs =
        crate::commands::rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs()));
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), since.subsec_nanos())
}

/// Appends `data` from `stream` to the log: complete lines as `F`, a trailing partial
/// line as `P` (k8s-file).
struct LogWriter {
    sink: LogSink,
    id: String,
    name: String,
}

enum LogSink {
    /// k8s-file, emptied when it would grow past the size (as conmon does).
    File {
        file: File,
        max_size: Option<u64>,
        written: u64,
    },
    /// The journal's native protocol: one datagram of `KEY=VALUE` lines per line.
    Journald {
        socket: std::os::unix::net::UnixDatagram,
        tag: String,
    },
    None,
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

impl LogWriter {
    fn open(
        store: &Store,
        record: &ContainerRecord,
        options: &launch::LogOptions,
    ) -> anyhow::Result<LogWriter> {
        let sink = match options.driver {
            launch::LogDriver::K8sFile => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_path(store, &record.id))
                    .context("opening the log")?;
                let written = file.metadata().map(|m| m.len()).unwrap_or(0);
                LogSink::File {
                    file,
                    max_size: options.max_size,
                    written,
                }
            }
            launch::LogDriver::Journald => {
                let socket = std::os::unix::net::UnixDatagram::unbound()?;
                socket.connect(JOURNAL_SOCKET).with_context(|| {
                    format!("log driver journald: cannot reach the journal at {JOURNAL_SOCKET} (is systemd-journald running?)")
                })?;
                let tag = options.tag.clone().unwrap_or_else(|| record.id[..12].to_string());
                LogSink::Journald { socket, tag }
            }
            launch::LogDriver::None => LogSink::None,
        };
        Ok(LogWriter {
            sink,
            id: record.id.clone(),
            name: record.name.clone(),
        })
    }

    fn write(&mut self, stream: &str, data: &[u8]) {
        match &mut self.sink {
            LogSink::None => {}
            LogSink::Journald { socket, tag } => {
                for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let priority = if stream == "stderr" { 3 } else { 6 };
                    let mut msg = format!(
                        "CONTAINER_ID_FULL={}\nCONTAINER_ID={}\nCONTAINER_NAME={}\nSYSLOG_IDENTIFIER={tag}\nPRIORITY={priority}\nMESSAGE=",
                        self.id,
                        &self.id[..12],
                        self.name
                    )
                    .into_bytes();
                    msg.extend_from_slice(line);
                    msg.push(b'\n');
                    let _ = socket.send(&msg);
                }
            }
            LogSink::File {
                file,
                max_size,
                written,
            } => {
                let ts = log_timestamp(SystemTime::now());
                let mut out = Vec::with_capacity(data.len() + 64);
                for piece in data.split_inclusive(|&b| b == b'\n') {
                    let (content, tag) = match piece.strip_suffix(b"\n") {
                        Some(line) => (line, "F"),
                        None => (piece, "P"),
                    };
                    out.extend_from_slice(format!("{ts} {stream} {tag} ").as_bytes());
                    out.extend_from_slice(content);
                    out.push(b'\n');
                }
                if let Some(max) = *max_size {
                    if *written + out.len() as u64 > max {
                        let _ = file.set_len(0);
                        *written = 0;
                    }
                    // More than fits at all: keep the whole lines at its end that do.
                    while out.len() as u64 > max {
                        match out.iter().position(|&b| b == b'\n') {
                            Some(p) if p + 1 < out.len() => {
                                out.drain(..=p);
                            }
                            _ => {
                                out.clear();
                            }
                        }
                    }
                }
                // A full disk must not kill the container: drop the output.
                if file.write_all(&out).is_ok() {
                    *written += out.len() as u64;
                }
            }
        }
    }
}

/// The ready pipe at READY_FD, if our starter gave us one (a systemd unit running the
/// monitor as its main process gives none: then there is nobody to tell), or on stdout
/// when `run -d` started the monitor as a transient unit.
fn ready_pipe(on_stdout: bool) -> Option<File> {
    if on_stdout {
        // SAFETY: dup of our stdout; stdout itself then goes to /dev/null, so that the pipe
        // closes on our side once the report is written (and is not passed on).
        let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
        if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: dup2 onto our own stdout.
            unsafe { libc::dup2(null.as_raw_fd(), 1) };
        }
        // SAFETY: a new descriptor we own.
        return (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) });
    }
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor number; fails harmlessly when it is not open.
    let is_fifo =
        unsafe { libc::fstat(READY_FD, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO;
    // SAFETY: the starter placed our end of the ready pipe there, and only that is a FIFO.
    is_fifo.then(|| unsafe { File::from_raw_fd(READY_FD) })
}

/// The client `start -a` connected before the container started, at ATTACH_FD, if any.
fn early_client() -> Option<OwnedFd> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor number; fails harmlessly when it is not open.
    let is_socket =
        unsafe { libc::fstat(ATTACH_FD, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
    if !is_socket {
        return None;
    }
    // SAFETY: our starter placed the socket there for us alone; not for the container.
    unsafe { libc::fcntl(ATTACH_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(unsafe { OwnedFd::from_raw_fd(ATTACH_FD) })
}

/// With `-i` and no terminal, the container's stdin is a pipe the monitor keeps open (as
/// conmon does), so that attached clients can write to it. Puts the read end at our fd 0,
/// which the container inherits; returns the write end.
fn stdin_pipe() -> anyhow::Result<OwnedFd> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: dup2 onto stdin, which we own.
    if unsafe { libc::dup2(r.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(w)
}

/// Our fd 0 back to /dev/null once the container has its stdin.
fn stdin_null() {
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2 onto stdin, which we own.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
}

/// With `--go-on-stdin`: waits for "go" on stdin, then points stdin at /dev/null. False when
/// the pipe closed without it: whoever started the monitor gave up on the container.
fn wait_for_go() -> bool {
    let mut line = String::new();
    // SAFETY: our stdin, borrowed for this read; ManuallyDrop keeps it open.
    let stdin = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    let go = std::io::BufReader::new(&*stdin).read_line(&mut line).is_ok() && line == "go\n";
    stdin_null();
    go
}

/// Whom the monitor tells that the container runs, or could not start.
enum Report {
    /// A started monitor: a `Ready` line on the ready pipe (none when nobody waits, as for a
    /// unit started again by its manager).
    Pipe(Option<File>),
    /// `run -d` itself, forked early (see [`fork_early`]): the user hears from it directly.
    Forked(Option<Forked>),
}

/// What a forked `run -d` still holds of the command: the parent waiting for the word, and
/// copies of the standard output and error it had (its own now point elsewhere).
struct Forked {
    parent: File,
    stdout: File,
    stderr: File,
    id: String,
    /// Whether to say that no manager could take the container.
    notice: bool,
}

impl Report {
    /// Only the first word counts: later starts (restarts) have nobody waiting.
    fn say(&mut self, message: Ready) {
        match self {
            Report::Pipe(ready) => {
                if let Some(mut f) = ready.take() {
                    let mut line = serde_json::to_string(&message).unwrap_or_default();
                    line.push('\n');
                    let _ = f.write_all(line.as_bytes());
                }
            }
            Report::Forked(forked) => {
                let Some(mut f) = forked.take() else { return };
                match message {
                    // The id, as `run -d` prints it, then the parent exits 0: the command is
                    // done and the user's terminal or pipe is let go of.
                    Ready::Running { .. } => {
                        let _ = writeln!(f.stdout, "{}", f.id);
                        if let Some(notice) = crate::sdunits::notice_no_manager(&f.id, f.notice) {
                            let _ = writeln!(f.stderr, "{notice}");
                        }
                        drop((f.stdout, f.stderr));
                        let _ = f.parent.write_all(b"ok\n");
                    }
                    // As `run` reports a failure; the parent then exits as this process does.
                    Ready::Failed { message, .. } => {
                        let _ = writeln!(f.stderr, "Error: {message}");
                    }
                }
            }
        }
    }
}

/// The end of the pipe on which a `run -d` forked early waits for its child's word.
static FORKED_PARENT: std::sync::Mutex<Option<File>> = std::sync::Mutex::new(None);

/// `run -d` with a plain monitor (no systemd unit), before its command line is parsed: forks,
/// and the child goes on as the command and then becomes the container's monitor, so that no
/// monitor is exec'd and no store opened twice, nor the container's record read back (2-3 ms
/// of a 15 ms start). The parent only waits: once the container runs, the child prints its id,
/// lets go of the terminal and tells the parent to exit 0; if the child ends first (an error,
/// --help, a guess that was wrong and a container run in the foreground), the parent ends as
/// it did. Must run single-threaded; a failed fork leaves one process, which spawns a monitor.
pub fn fork_early() {
    let Ok((read, write)) = pipe2(OFlag::O_CLOEXEC) else {
        return;
    };
    // SAFETY: called before any thread exists; the child goes on with the command as usual.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read);
            *FORKED_PARENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(write));
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(write);
            wait_for_forked(File::from(read), child)
        }
        Err(_) => {}
    }
}

/// The parent of [`fork_early`]: exits 0 on the child's word, else as the child did.
fn wait_for_forked(word: File, child: Pid) -> ! {
    use nix::sys::signal::{signal, SigHandler};
    use nix::sys::wait::WaitStatus;
    // The terminal's interrupt reaches the child too, while it is still the command (in our
    // process group): it decides, and we follow.
    // SAFETY: SIG_IGN handlers; nothing else runs here.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGQUIT, SigHandler::SigIgn);
    }
    let mut line = String::new();
    if std::io::BufReader::new(word).read_line(&mut line).is_ok() && line == "ok\n" {
        std::process::exit(0);
    }
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                // SAFETY: back to the default action, then die of the same signal.
                unsafe {
                    let _ = signal(sig, SigHandler::SigDfl);
                }
                let _ = nix::sys::signal::raise(sig);
                std::process::exit(128 + sig as i32);
            }
            Err(nix::errno::Errno::EINTR) => {}
            _ => std::process::exit(125),
        }
    }
}

/// For `run -d` in the child of [`fork_early`]: the pipe to its waiting parent, once.
pub fn take_forked_parent() -> Option<File> {
    FORKED_PARENT.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// `run -d` forked early, its container made (`record`, `launch`): becomes the container's
/// monitor, in a session of its own with its standard streams on /dev/null and its
/// monitor.log (the command's are kept to report on), and serves until the container is
/// done. `systemd`: whether a unit was wanted (to say that none could be had).
pub fn serve_forked(
    engine: &Engine,
    global: &GlobalOptions,
    record: ContainerRecord,
    launch: launch::Launch,
    parent: File,
    systemd: bool,
) -> anyhow::Result<i32> {
    let id = record.id.clone();
    let monitor_log = engine.store.paths.container_dir(&id).join("monitor.log");
    let keep = |fd: i32| -> anyhow::Result<File> {
        // SAFETY: F_DUPFD_CLOEXEC of our own descriptor; the result is checked before use.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: a new descriptor we own.
        Ok(unsafe { File::from_raw_fd(copy) })
    };
    let (stdout, stderr) = (keep(1)?, keep(2)?);
    let null = OpenOptions::new().read(true).write(true).open("/dev/null")?;
    let log = OpenOptions::new().create(true).append(true).open(&monitor_log)?;
    // SAFETY: dup2 onto our own standard descriptors.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    // Before the container is cloned: neither it nor we may keep the user's terminal, and the
    // terminal's signals are no longer ours.
    nix::unistd::setsid()?;
    let mut report = Report::Forked(Some(Forked {
        parent,
        stdout,
        stderr,
        id: id.clone(),
        notice: systemd,
    }));
    let served = serve(engine, global, &id, &mut report, None, Some((record, launch)));
    if let Err(e) = &served {
        // Said only if the container never ran: the user hears of it as from any command.
        report.say(Ready::Failed {
            message: crate::exit::message(e),
            exit_code: 125,
        });
    }
    served
}

/// `burrow __monitor ID`.
pub fn monitor_main(
    global: &GlobalOptions,
    id: &str,
    ready_on_stdout: bool,
    go_on_stdin: bool,
) -> anyhow::Result<i32> {
    let early = early_client();
    let mut report = Report::Pipe(ready_pipe(ready_on_stdout));
    // Exec'd by a systemd manager, outside burrow's user namespace (joined below).
    let exec_outside = burrow_userns::pause::in_initial_namespace();
    let engine = match Engine::open(global) {
        Ok(e) => e,
        Err(e) => {
            report.say(Ready::Failed {
                message: crate::exit::message(&e),
                exit_code: 125,
            });
            return Err(e);
        }
    };
    let store = &engine.store;
    // Checkpoints (fsyncs) wait until the container runs and whoever started it is told.
    let _ = store.defer_checkpoints();
    // No word: whoever started us gave up on the container. Unless this is the unit started
    // again by its manager (`systemctl restart`, a healthcheck's restart), whose stdin is the
    // first start's pipe, long closed: the container ran before then.
    if go_on_stdin && !wait_for_go() && store.container(id).map_or(true, |r| r.started.is_none()) {
        return Ok(0);
    }
    // Read once here, when it decides whether to exec again; else by serve.
    let mut first = None;
    if exec_outside {
        let record = store.container(id)?;
        let launch = launch::load(store, &record)?;
        if launch.init {
            let e = exec_inside(global, id, ready_on_stdout, &mut report);
            report.say(Ready::Failed {
                message: crate::exit::message(&e),
                exit_code: 125,
            });
            return Err(e);
        }
        first = Some((record, launch));
    }
    serve(&engine, global, id, &mut report, early, first)
}

/// Execs this monitor again, now that it is in burrow's user namespace, without waiting for a
/// go (it came), its ready pipe where it was; returns only on failure. For `--init`, whose PID
/// 1 never execs: a process's memory belongs to the user namespace it was exec'd in, and
/// only CAP_SYS_PTRACE there opens a non-dumpable process's /proc/PID/ns (`exec`, checks),
/// which burrow has in its own namespace, not in the initial one.
fn exec_inside(
    global: &GlobalOptions,
    id: &str,
    ready_on_stdout: bool,
    report: &mut Report,
) -> anyhow::Error {
    let target = if ready_on_stdout { 1 } else { READY_FD };
    if let Report::Pipe(Some(ready)) = report {
        // SAFETY: dup2 onto a descriptor we own; dup2 leaves it open across exec.
        if unsafe { libc::dup2(ready.as_raw_fd(), target) } < 0 {
            return std::io::Error::last_os_error().into();
        }
    }
    let mut args = monitor_command(global);
    if ready_on_stdout {
        args.push("--ready-on-stdout".into());
    }
    args.push(id.into());
    let args = match args
        .into_iter()
        .map(std::ffi::CString::new)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(args) => args,
        Err(e) => return e.into(),
    };
    let err = nix::unistd::execv(c"/proc/self/exe", &args).unwrap_err();
    anyhow::anyhow!(
        "executing the monitor again in burrow's user namespace: {}",
        err.desc()
    )
}

/// The monitor's work once it may start the container: starts it (`first`: its record and
/// launch description as just made, else read from the store), reports, then logs, waits,
/// records the exit, restarts by policy, removes it with --rm. Returns the monitor's exit code.
fn serve(
    engine: &Engine,
    global: &GlobalOptions,
    id: &str,
    report: &mut Report,
    mut early: Option<OwnedFd>,
    mut first: Option<(ContainerRecord, launch::Launch)>,
) -> anyhow::Result<i32> {
    let store = &engine.store;
    // What `ps` and `top` show, whether exec'd as `__monitor` or a `run -d` that became one.
    let _ = nix::sys::prctl::set_name(c"burrow-monitor");
    // A unit's notify socket, if the monitor runs as (part of) a Type=notify service; taken
    // from the environment so that nothing started later sends to it by mistake.
    let notify_socket = std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty());
    std::env::remove_var("NOTIFY_SOCKET");
    let mut notified = false;
    // The monitor takes over these signals: SIGCHLD for the exit; SIGTERM and SIGINT stop
    // the container (systemd stopping a unit signals its main process, the monitor); the
    // others are passed on to the container.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        signals.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)?;
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    // For a systemd unit's PIDFile= (Type=forking, as Podman's units with conmon): written
    // once, beside the container's first set-up.
    let pid_file = std::cell::Cell::new(Some(store.container_dirs(id).bundle.join("monitor.pid")));
    // --sdnotify=container: made at the first start, mounted into every start after it.
    let mut proxy: Option<crate::sdunits::NotifyProxy> = None;
    loop {
        let (record, mut launch) = match first.take() {
            Some(made) => made,
            None => {
                let record = store.container(id)?;
                let launch = launch::load(store, &record)?;
                (record, launch)
            }
        };
        let sdnotify = launch.systemd.sdnotify;
        if let (Some(socket), crate::sdunits::SdNotify::Container) = (&notify_socket, sdnotify) {
            if proxy.is_none() {
                let bundle = store.container_dirs(id).bundle;
                match crate::sdunits::NotifyProxy::bind(&bundle, socket) {
                    Ok(p) => proxy = Some(p),
                    Err(e) => eprintln!("WARN: --sdnotify=container: {e:#}"),
                }
            }
            if let Some(Err(e)) = proxy.as_ref().map(|p| p.mount_into(&mut launch.spec)) {
                eprintln!("WARN: --sdnotify=container: {e:#}");
            }
        }
        // Opened while the container sets itself up: its output waits in the pipes meanwhile.
        let log_opened = std::cell::RefCell::new(None);
        let attach_bound = std::cell::RefCell::new(None);
        let beside = || {
            *log_opened.borrow_mut() = Some(LogWriter::open(store, &record, &launch.log));
            // Listening before `run -d` returns: an `attach` right after it finds the socket.
            *attach_bound.borrow_mut() = Some(AttachServer::bind(store, id));
            if let Some(path) = pid_file.take() {
                let _ = std::fs::write(path, std::process::id().to_string());
            }
        };
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
        let stdin_w = if launch.interactive && !crate::commands::attach::has_terminal(&launch) {
            Some(stdin_pipe()?)
        } else {
            None
        };
        let started = launch::start(
            store,
            &record,
            &launch,
            Some((out_w.as_raw_fd(), err_w.as_raw_fd())),
            stdin_w.is_some(),
            Some(std::process::id() as i32),
            Some(&beside),
        );
        stdin_null();
        let log = log_opened.into_inner();
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                let exit_code = e.downcast_ref::<ExitError>().map_or(125, |x| x.code);
                report.say(Ready::Failed {
                    message: crate::exit::message(&e),
                    exit_code,
                });
                if record.auto_remove {
                    let _ = crate::commands::network::remove_container(store, id, false);
                }
                return Ok(exit_code);
            }
        };
        let log = log.unwrap_or_else(|| Err(anyhow::anyhow!("the container's log was not opened")));
        let mut log = match log {
            Ok(log) => log,
            Err(e) => {
                // No log, no container: it goes before anyone sees it run.
                let _ = kill(started.launched.pid, Signal::SIGKILL);
                let _ = waitpid(started.launched.pid, None);
                let _ = store.set_exited(id, 125);
                report.say(Ready::Failed {
                    message: crate::exit::message(&e),
                    exit_code: 125,
                });
                return Err(e);
            }
        };
        drop((out_w, err_w));
        let launch::Started { launched, network } = started;
        let pid = launched.pid;
        if let (Some(socket), false) = (&notify_socket, notified) {
            // Before `run -d` (the unit's first main process) exits: the monitor is the
            // unit's main process from here on.
            crate::sdunits::notify_started(socket, sdnotify);
            notified = true;
        }
        if let Some(Err(e)) = proxy.as_mut().map(|p| p.spawn_once()) {
            eprintln!("WARN: --sdnotify=container: {e:#}");
        }
        crate::health::reset(store, id);
        // Stopped (a timer) when dropped, once the container has exited.
        let _health = launch
            .systemd
            .health
            .as_ref()
            .map(|h| crate::health::start_driver(store, global, id, h));
        let mut attach = attach_bound
            .into_inner()
            .and_then(|bound| bound.map_err(|e| eprintln!("WARN: no attach socket: {e:#}")).ok());
        report.say(Ready::Running { pid: pid.as_raw() });
        let _ = store.checkpoint();
        if let (Some(server), Some(client)) = (attach.as_mut(), early.take()) {
            server.adopt(client);
        }
        let streams = Streams {
            out: out_r,
            err: err_r,
            pty: launched.pty_master,
            stdin: stdin_w,
        };
        let stop = StopOnSignal {
            store,
            id,
            signal: launch::parse_signal(&launch.stop_signal).unwrap_or(Signal::SIGTERM),
            timeout: std::time::Duration::from_secs(launch.stop_timeout.into()),
        };
        let code = pump(&sfd, pid, streams, &mut log, attach, &stop)?;
        drop(launched.rootfs_mount);
        drop(network);
        store.set_exited(id, code)?;
        let now = store.container(id)?;
        // As the main process of a unit (Type=notify: `generate systemd --new`, quadlet), the
        // monitor ends as its container did, so that the unit's Restart=on-failure sees a
        // failure (as conmon does); a stop asked for is a clean end.
        let unit_result = if notify_socket.is_some() && !now.stop_requested {
            code
        } else {
            0
        };
        if now.auto_remove {
            crate::commands::network::remove_container(store, id, false)?;
            return Ok(unit_result);
        }
        // A healthcheck with --health-on-failure=restart killed it to be started again.
        let health_restart = crate::health::restart_flag(store, id);
        if std::fs::remove_file(&health_restart).is_ok() {
            store.count_restart(id)?;
            continue;
        }
        if !launch.restart.restarts(code, now.restarts, now.stop_requested) {
            return Ok(unit_result);
        }
        store.count_restart(id)?;
    }
}

/// The monitor's ends of the container's standard streams.
struct Streams {
    out: OwnedFd,
    err: OwnedFd,
    /// The terminal's master (with -t).
    pty: Option<OwnedFd>,
    /// The stdin pipe's write end (with -i and no terminal).
    stdin: Option<OwnedFd>,
}

/// What SIGTERM or SIGINT to the monitor means (systemd stopping the unit whose main
/// process it is): stop the container as `burrow stop` would, its stop signal, then SIGKILL
/// after its stop timeout, and no restart.
struct StopOnSignal<'a> {
    store: &'a Store,
    id: &'a str,
    signal: Signal,
    timeout: std::time::Duration,
}

/// Carries the container's output to the log until it exits; returns its exit code.
fn pump(
    sfd: &SignalFd,
    pid: Pid,
    Streams {
        out,
        err,
        pty,
        mut stdin,
    }: Streams,
    log: &mut LogWriter,
    mut attach: Option<AttachServer>,
    stop: &StopOnSignal,
) -> anyhow::Result<i32> {
    // When a stop asked for by signal escalates to SIGKILL.
    let mut kill_at: Option<std::time::Instant> = None;
    // What attached clients type goes to the terminal (with -t), or the stdin pipe (-i).
    let terminal = pty.as_ref().and_then(|m| m.try_clone().ok());
    // With -t the terminal carries both streams; the pipes stay silent.
    let mut streams: Vec<(OwnedFd, &str)> = vec![(out, "stdout"), (err, "stderr")];
    if let Some(master) = pty {
        streams.push((master, "stdout"));
    }
    let mut exit_code = None;
    let mut buf = vec![0u8; 65536];
    loop {
        if exit_code.is_some() && streams.is_empty() {
            return Ok(exit_code.unwrap_or(-1));
        }
        let mut fds: Vec<PollFd> = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            streams
                .iter()
                .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
        );
        let attach_at = fds.len();
        if let Some(a) = &attach {
            fds.extend(a.fds().into_iter().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        }
        // Once the container is gone, what is left in the pipes is read without waiting.
        let timeout = match (exit_code, kill_at) {
            (Some(_), _) => PollTimeout::ZERO,
            (None, Some(at)) => {
                let left = at.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    let _ = kill(pid, Signal::SIGKILL);
                    kill_at = None;
                    PollTimeout::NONE
                } else {
                    PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                }
            }
            (None, None) => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut closed = Vec::new();
        for (i, (fd, name)) in streams.iter().enumerate() {
            if !ready[i + 1] && exit_code.is_none() {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => closed.push(i),
                Ok(n) => {
                    log.write(name, &buf[..n]);
                    if let Some(a) = attach.as_mut() {
                        a.broadcast(if *name == "stderr" { STDERR } else { STDOUT }, &buf[..n]);
                    }
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(_) => closed.push(i),
            }
            if exit_code.is_some() && ready.get(i + 1) == Some(&false) {
                closed.push(i);
            }
        }
        closed.sort_unstable();
        closed.dedup();
        for i in closed.into_iter().rev() {
            streams.remove(i);
        }
        if let Some(a) = attach.as_mut() {
            let input = terminal.as_ref().or(stdin.as_ref()).map(|t| t.as_fd());
            if a.handle(&ready[attach_at..], input, terminal.as_ref().map(|t| t.as_fd())) {
                stdin = None;
            }
        }
        if ready[0] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                if matches!(sig, Signal::SIGTERM | Signal::SIGINT) && exit_code.is_none() {
                    let _ = stop.store.set_stop_requested(stop.id, true);
                    let _ = kill(pid, stop.signal);
                    kill_at.get_or_insert(std::time::Instant::now() + stop.timeout);
                    continue;
                }
                if sig != Signal::SIGCHLD {
                    let _ = kill(pid, sig);
                    continue;
                }
                if exit_code.is_none() {
                    if let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                        exit_code = burrow_userns::foreground::exit_code(status);
                    }
                }
            }
        }
    }
}
