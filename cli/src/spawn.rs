//! Starting burrow's helper processes (the container's monitor, its network stack) with
//! `posix_spawn`.
//!
//! Not `fork`: glibc's `posix_spawn` runs the child on our memory until its exec (as vfork),
//! so neither process pays a copy-on-write fault for every page it touches afterwards. On a
//! container's start, where both run, a forked child took 1-4 ms to reach its exec.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::Pid;

/// glibc's `POSIX_SPAWN_SETSID` (since 2.26), which neither libc nor nix names.
const POSIX_SPAWN_SETSID: libc::c_int = 0x80;

/// A program to start, its arguments, and the descriptors it gets.
pub struct Spawn {
    program: CString,
    argv: Vec<CString>,
    /// (source, target): each source a copy numbered 10 or above, so that no dup2 onto a
    /// target overwrites a source still to be placed.
    fds: Vec<(OwnedFd, RawFd)>,
    /// Targets opened on /dev/null.
    null: Vec<RawFd>,
    setsid: bool,
}

impl Spawn {
    /// `program` with `argv` (argv[0] included), this process's environment, and the
    /// descriptors 0-2 inherited unless set otherwise.
    pub fn new<A: AsRef<OsStr>>(program: &Path, argv: impl IntoIterator<Item = A>) -> io::Result<Spawn> {
        let program = CString::new(program.as_os_str().as_bytes())?;
        let argv = argv
            .into_iter()
            .map(|a| CString::new(a.as_ref().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Spawn {
            program,
            argv,
            fds: Vec::new(),
            null: Vec::new(),
            setsid: false,
        })
    }

    /// Gives the child `source` as its descriptor `target`.
    pub fn fd(mut self, source: &impl AsRawFd, target: RawFd) -> io::Result<Spawn> {
        // SAFETY: F_DUPFD_CLOEXEC duplicates a valid fd; the result is checked before it is owned.
        let n = unsafe { libc::fcntl(source.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: n is a new descriptor owned by nobody else.
        self.fds.push((unsafe { OwnedFd::from_raw_fd(n) }, target));
        Ok(self)
    }

    /// Opens the child's descriptor `target` on /dev/null.
    pub fn null(mut self, target: RawFd) -> Spawn {
        self.null.push(target);
        self
    }

    /// Starts the child in a session of its own: the user's terminal closing does not end it.
    pub fn setsid(mut self) -> Spawn {
        self.setsid = true;
        self
    }

    /// Starts the child and returns its pid once it has been exec'd (an exec that fails is
    /// an error here).
    pub fn spawn(&self) -> io::Result<Pid> {
        use nix::fcntl::OFlag;
        use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
        use nix::sys::signal::{SigSet, Signal};
        let env: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut pair = k.as_bytes().to_vec();
                pair.push(b'=');
                pair.extend_from_slice(v.as_bytes());
                CString::new(pair).ok()
            })
            .collect();
        let mut actions = PosixSpawnFileActions::init()?;
        for &target in &self.null {
            let flags = if target == 0 {
                OFlag::O_RDONLY
            } else {
                OFlag::O_WRONLY
            };
            actions.add_open(target, c"/dev/null", flags, nix::sys::stat::Mode::empty())?;
        }
        for (source, target) in &self.fds {
            // dup2 leaves the target inheritable.
            actions.add_dup2(source.as_raw_fd(), *target)?;
        }
        // As std's Command: no signal blocked (the monitor blocks those its signalfd reads),
        // and SIGPIPE (which Rust ignores) back to its default.
        let mut attr = PosixSpawnAttr::init()?;
        attr.set_sigmask(&SigSet::empty())?;
        attr.set_sigdefault(&SigSet::from(Signal::SIGPIPE))?;
        let mut flags = PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF;
        if self.setsid {
            flags |= PosixSpawnFlags::from_bits_retain(POSIX_SPAWN_SETSID);
        }
        attr.set_flags(flags)?;
        Ok(nix::spawn::posix_spawn(
            self.program.as_c_str(),
            &actions,
            &attr,
            &self.argv,
            &env,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_child_gets_its_arguments_descriptors_and_a_session() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let pid = Spawn::new(
            Path::new("/bin/sh"),
            [
                "sh",
                "-c",
                "echo \"$1 $(cut -d' ' -f6 /proc/$$/stat) $$\" >&7; cat <&0 >&7",
                "sh",
                "hello",
            ],
        )
        .unwrap()
        .fd(&w, 7)
        .unwrap()
        .null(0)
        .setsid()
        .spawn()
        .unwrap();
        drop(w);
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"hello"), "{out:?}");
        // A session of its own: its session id is its pid.
        assert_eq!(words.get(1), words.get(2), "{out:?}");
        assert_eq!(words.len(), 3, "stdin was not /dev/null: {out:?}");
    }

    #[test]
    fn a_missing_program_is_an_error_here() {
        let err = Spawn::new(Path::new("/nonexistent/burrow"), ["burrow"])
            .unwrap()
            .spawn()
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
