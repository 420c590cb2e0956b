//! A foreground container: burrow stays its parent, forwards signals to it, carries the
//! terminal (with `-t`) between the user's terminal and the container's, and returns the
//! container's exit code.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{isatty, read, write, Pid};

use crate::process::{forwarded_signals, Launched};
use crate::RuntimeError;

/// Copies the window size of our terminal (stdin) to the container's terminal.
pub fn copy_window_size(master: RawFd) {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ take a pointer to winsize; failures leave it alone.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut size) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &size);
        }
    }
}

/// Puts our terminal in raw mode for as long as it lives, so every key (Ctrl-C too) goes
/// to the container's terminal, which does the line discipline.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !isatty(stdin.as_fd()).unwrap_or(false) {
            return None;
        }
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The exit code burrow reports for a wait status: the code, or 128 + the signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

fn reap(pid: Pid) -> Result<Option<i32>, RuntimeError> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => Ok(exit_code(status)),
        Err(Errno::ECHILD) => Ok(Some(125)),
        Err(e) => Err(RuntimeError::Wait(e)),
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads what is left in the terminal once the container is gone.
fn drain(master: &OwnedFd) {
    let flags = fcntl(master, FcntlArg::F_GETFL).unwrap_or(0);
    let _ = fcntl(
        master,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 16384];
    while let Ok(n @ 1..) = read(master, &mut buf) {
        write_all(std::io::stdout().as_fd(), &buf[..n]);
    }
}

/// Runs the container to its end. The caller has blocked `forwarded_signals()`.
pub fn wait(launched: Launched, interactive: bool) -> Result<i32, RuntimeError> {
    let Launched {
        pid,
        pty_master,
        rootfs_mount: _rootfs_mount,
    } = launched;
    let sfd = SignalFd::with_flags(
        &forwarded_signals(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(RuntimeError::Wait)?;
    let _raw = pty_master.as_ref().and_then(|_| RawMode::enable());
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = interactive && pty_master.is_some();
    let mut master_open = pty_master.is_some();
    let mut buf = [0u8; 16384];

    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let master_index = fds.len();
        if let (Some(m), true) = (&pty_master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        let stdin_index = fds.len();
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(RuntimeError::Wait(e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (
            ready(0),
            master_open && ready(master_index),
            stdin_open && ready(stdin_index),
        );
        drop(fds);

        if master_ready {
            if let Some(m) = &pty_master {
                match read(m, &mut buf) {
                    Ok(0) | Err(Errno::EIO) => master_open = false,
                    Ok(n) => {
                        write_all(stdout.as_fd(), &buf[..n]);
                    }
                    Err(Errno::EINTR | Errno::EAGAIN) => {}
                    Err(_) => master_open = false,
                }
            }
        }
        if stdin_ready {
            match read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if let Some(m) = &pty_master {
                        write_all(m.as_fd(), &buf[..n]);
                    }
                }
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => {
                        if let Some(code) = reap(pid)? {
                            if let Some(m) = &pty_master {
                                drain(m);
                            }
                            return Ok(code);
                        }
                    }
                    Signal::SIGWINCH => {
                        if let Some(m) = &pty_master {
                            copy_window_size(m.as_raw_fd());
                        }
                    }
                    // Podman's sig-proxy: what burrow receives, the container receives.
                    other => {
                        let _ = kill(pid, other);
                    }
                }
            }
        }
    }
}
