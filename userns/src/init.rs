//! `--init`: a minimal PID 1 (like catatonit or tini) built into burrow. It forks the
//! command, forwards every signal it gets to it, reaps every orphan, and exits as the
//! command exits.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sys::signal::{kill, SigSet, SigmaskHow};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::process::{exec, ChildFailure};

/// Becomes the init of the container. Only returns an error if the fork fails.
pub(crate) fn run_as_init(
    executable: &Path,
    args: &[String],
    env: &[String],
    report: &OwnedFd,
) -> Result<crate::process::Never, ChildFailure> {
    // Block everything first: signals wait in the queue until sigwait picks them up, so
    // none arrives between the fork and the loop.
    let all = SigSet::all();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None);
    // Not its starter's name (the monitor's), in `ps` inside and outside.
    let _ = nix::sys::prctl::set_name(c"init");
    // This process never execs: its memory, environment and /proc/1/exe are its starter's
    // (burrow's binary, the user's environment). Not for the container's processes to read or
    // open (the command's exec makes it dumpable again): only CAP_SYS_PTRACE where burrow runs
    // gets past.
    let _ = nix::sys::prctl::set_dumpable(false);
    // SAFETY: single-threaded; the child execs or _exits.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            crate::process::reset_signals();
            let failure = exec(executable, args, env);
            let json = serde_json::to_string(&failure).unwrap_or_default();
            // The report pipe is still open in this process; it closes on a successful exec.
            if let Ok(dup) = report.try_clone() {
                let _ = File::from(dup).write_all(json.as_bytes());
            }
            // SAFETY: leaving the forked child without running the parent's handlers.
            unsafe { libc::_exit(failure.exit_code) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            return Err(ChildFailure {
                message: format!("init: fork: {}", e.desc()),
                exit_code: 125,
            });
        }
    };
    // This process never execs, so it still holds every descriptor its starter had when it
    // cloned us (close-on-exec or not): the monitor's, and through a `run -d` that became the
    // monitor, the user's terminal or pipe. It needs none of them. The report pipe among them:
    // the parent sees EOF once the command has exec'd.
    // SAFETY: closes descriptors this process does not use again (close_range since 5.9; on
    // older kernels only the report pipe is closed).
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } != 0 {
        unsafe { libc::close(std::os::fd::AsRawFd::as_raw_fd(report)) };
    }
    init_loop(child)
}

fn init_loop(child: Pid) -> ! {
    let all = SigSet::all();
    loop {
        let Ok(sig) = all.wait() else { continue };
        if sig == nix::sys::signal::Signal::SIGCHLD {
            // Reap everything that has exited; leave when the command has.
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => exit_now(code),
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => exit_now(128 + sig as i32),
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        } else {
            let _ = kill(child, sig);
        }
    }
}

fn exit_now(code: i32) -> ! {
    // SAFETY: the process has nothing to flush.
    unsafe { libc::_exit(code) }
}
