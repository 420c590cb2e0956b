//! `burrow attach`, and the attach socket a detached container's monitor offers.
//!
//! Protocol (as conmon's attach socket, simplified): the monitor listens on a SOCK_SEQPACKET
//! socket `attach` in the container's bundle directory (the run root is 0700). Each message
//! is one packet whose first byte says what it is:
//! - monitor → client: `1` stdout data, `2` stderr data (a terminal's output is stdout);
//! - client → monitor: `0` data for the container's input (its terminal, or with `-i` and no
//!   terminal its stdin pipe), `3` a window size (rows, cols: two little-endian u16) for the
//!   terminal, `4` end of input (the client's stdin ended: the stdin pipe is closed).
//!
//! Any number of clients may attach; output goes to all of them. The monitor closes them when
//! the container exits; the client then takes the exit code from the store. Detaching
//! (`--detach-keys`, default ctrl-p,ctrl-q) is the client's business: it just disconnects.
//! Input needs the container's terminal (`-t`) or `-i`: the monitor then keeps a pipe open on
//! the container's stdin; otherwise the container's stdin is /dev/null.
//!
//! `start -a` hands the monitor one end of a socket pair at [`ATTACH_FD`]: a client attached
//! before the container starts, so that none of its output is missed.
//!
//! The monitor's part (`cli/src/monitor.rs`): bind an [`AttachServer`] before `pump` and pass
//! it in; `pump` keeps a clone of the pty master, adds [`AttachServer::fds`] to its poll set,
//! calls [`AttachServer::broadcast`] with every chunk it logs and [`AttachServer::handle`]
//! with the poll results; dropping the server at the container's end hangs up the clients.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use burrow_storage::Store;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, connect, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag, SockType,
    UnixAddr,
};

use super::ctrutil;
use crate::context::Engine;
use crate::GlobalOptions;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 3;
pub const CLOSE_STDIN: u8 = 4;

/// Where `start -a` gives the monitor its already connected client.
pub const ATTACH_FD: RawFd = 4;

/// The attach socket of container `id`.
pub fn socket_path(store: &Store, id: &str) -> PathBuf {
    store.container_dirs(id).bundle.join("attach")
}

/// A Unix socket address for `path`, through `/proc/self/fd` when the path is longer than
/// `sun_path` allows (108 bytes; a long `$XDG_RUNTIME_DIR` gets there). Returns the
/// directory descriptor that must stay open while the address is used.
fn address(path: &Path) -> Result<(UnixAddr, Option<OwnedFd>)> {
    if path.as_os_str().len() < 100 {
        return Ok((UnixAddr::new(path)?, None));
    }
    let dir = path.parent().context("socket path without a directory")?;
    let name = path.file_name().context("socket path without a name")?;
    let fd: OwnedFd = std::fs::File::open(dir)?.into();
    let short = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
    Ok((UnixAddr::new(&short)?, Some(fd)))
}

/// The monitor's side: the listening socket and the attached clients.
// Unused until the monitor's pump offers the socket (its few lines are with the lead).
pub struct AttachServer {
    listener: OwnedFd,
    clients: Vec<OwnedFd>,
    path: PathBuf,
}

impl AttachServer {
    /// Listens on the container's attach socket (replacing a stale one).
    pub fn bind(store: &Store, id: &str) -> Result<AttachServer> {
        let path = socket_path(store, id);
        let _ = std::fs::remove_file(&path);
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        let (addr, _dir) = address(&path)?;
        bind(listener.as_raw_fd(), &addr).with_context(|| format!("binding {}", path.display()))?;
        listen(&listener, Backlog::new(8)?)?;
        Ok(AttachServer {
            listener,
            clients: Vec::new(),
            path,
        })
    }

    /// What the monitor's poll must watch for it: the listener, then each client.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd())
            .chain(self.clients.iter().map(|c| c.as_fd()))
            .collect()
    }

    /// Takes a client that connected before the server existed (see [`ATTACH_FD`]).
    pub fn adopt(&mut self, client: OwnedFd) {
        self.clients.push(client);
    }

    /// Handles what poll reported for [`AttachServer::fds`] (`ready`, in that order):
    /// accepts clients, and passes their input to `input` and window sizes to `terminal`.
    /// Returns true when a client's input ended (the caller closes a stdin pipe).
    pub fn handle(
        &mut self,
        ready: &[bool],
        input: Option<BorrowedFd>,
        terminal: Option<BorrowedFd>,
    ) -> bool {
        if ready.first() == Some(&true) {
            while let Ok(fd) = accept4(self.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                // SAFETY: accept4 returned a new descriptor that we now own.
                self.clients.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        let mut gone = Vec::new();
        let mut input_ended = false;
        let mut buf = vec![0u8; 65537];
        for (i, client) in self.clients.iter().enumerate() {
            if ready.get(i + 1) != Some(&true) {
                continue;
            }
            match recv(client.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => gone.push(i),
                Ok(n) => match (buf[0], terminal) {
                    (STDIN, _) => {
                        if let Some(i) = input {
                            write_all(i, &buf[1..n]);
                        }
                    }
                    (CLOSE_STDIN, _) => input_ended = true,
                    (RESIZE, Some(t)) if n >= 5 => {
                        let size = libc::winsize {
                            ws_row: u16::from_le_bytes([buf[1], buf[2]]),
                            ws_col: u16::from_le_bytes([buf[3], buf[4]]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ takes a pointer to a winsize.
                        unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                    }
                    _ => {}
                },
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
        input_ended
    }

    /// Sends the container's output to every client; a client that cannot take it is dropped.
    pub fn broadcast(&mut self, stream: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let mut packet = Vec::with_capacity(data.len() + 1);
        packet.push(stream);
        packet.extend_from_slice(data);
        self.clients.retain(|c| {
            send(
                c.as_raw_fd(),
                &packet,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            )
            .is_ok()
        });
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Select the key sequence for detaching a container (e.g. ctrl-p,ctrl-q; empty: none)
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q", value_name = "KEYS")]
    detach_keys: String,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy received signals to the container (accepted; signals go with `kill`)
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    /// The container (name or id)
    #[arg(required_unless_present = "latest")]
    container: Option<String>,
}

/// Docker's detach key syntax: `ctrl-X` and single characters, comma-separated.
pub fn parse_detach_keys(text: &str) -> Result<Vec<u8>> {
    let mut keys = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => {
                let c = k.as_bytes()[0].to_ascii_lowercase();
                keys.push(match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => bail!("invalid detach keys {text:?}: unknown character {k:?}"),
                });
            }
            Some(_) => bail!("invalid detach keys {text:?}"),
            None if part.len() == 1 => keys.push(part.as_bytes()[0]),
            None => bail!("invalid detach keys {text:?}"),
        }
    }
    Ok(keys)
}

/// Finds the detach sequence in typed input: how much of `data` to send on, and whether the
/// sequence was completed. `matched` carries a partial match between reads.
fn scan_detach(keys: &[u8], matched: &mut usize, data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(data.len());
    for &b in data {
        if keys.is_empty() {
            out.push(b);
            continue;
        }
        if b == keys[*matched] {
            *matched += 1;
            if *matched == keys.len() {
                return (out, true);
            }
            continue;
        }
        // Not the sequence after all: what was held back goes on.
        out.extend_from_slice(&keys[..*matched]);
        *matched = 0;
        if b == keys[0] {
            *matched = 1;
        } else {
            out.push(b);
        }
    }
    (out, false)
}

struct RawTerminal(nix::sys::termios::Termios);

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin().as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

fn send_window_size(sock: &OwnedFd) {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize.
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) } == 0 {
        let mut packet = vec![RESIZE];
        packet.extend_from_slice(&size.ws_row.to_le_bytes());
        packet.extend_from_slice(&size.ws_col.to_le_bytes());
        let _ = send(sock.as_raw_fd(), &packet, MsgFlags::MSG_NOSIGNAL);
    }
}

pub fn attach(args: AttachArgs, global: &GlobalOptions) -> Result<i32> {
    let _ = args.sig_proxy;
    let keys = parse_detach_keys(&args.detach_keys)?;
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let name = match (&args.container, args.latest) {
        (Some(n), _) => n.clone(),
        (None, _) => store
            .containers()?
            .pop()
            .map(|c| c.id)
            .ok_or_else(|| anyhow::anyhow!("no containers"))?,
    };
    let (record, launch, _pid) = ctrutil::running(store, &name, "attach to")?;
    let stdin = (has_terminal(&launch) || launch.interactive) && !args.no_stdin;
    connect_client(store, &record, &launch, stdin, &keys)
}

/// Attaches to a running container (`start -a` of one that runs already).
pub fn attach_to(
    engine: &Engine,
    record: &burrow_storage::ContainerRecord,
    stdin: bool,
    keys: &[u8],
) -> Result<i32> {
    let launch = crate::launch::load(&engine.store, record)?;
    connect_client(&engine.store, record, &launch, stdin, keys)
}

fn connect_client(
    store: &Store,
    record: &burrow_storage::ContainerRecord,
    launch: &crate::launch::Launch,
    stdin: bool,
    keys: &[u8],
) -> Result<i32> {
    let path = socket_path(store, &record.id);
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let (addr, _dir) = address(&path)?;
    connect(sock.as_raw_fd(), &addr).map_err(|e| {
        anyhow::anyhow!(
            "container {} offers no attach socket ({}): it runs in the foreground of another burrow, or under a monitor without one",
            record.id,
            e.desc()
        )
    })?;
    client(store, &record.id, launch, &sock, stdin, keys)
}

/// Whether the container has a terminal (`-t`).
pub fn has_terminal(launch: &crate::launch::Launch) -> bool {
    launch
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// The client's side on a connected socket: the container's output to ours, our stdin (if
/// `forward_stdin`) to the container, until it ends (its exit code) or `keys` detach (0).
pub fn client(
    store: &Store,
    id: &str,
    launch: &crate::launch::Launch,
    sock: &OwnedFd,
    forward_stdin: bool,
    keys: &[u8],
) -> Result<i32> {
    let tty = has_terminal(launch);
    let stdin = std::io::stdin();
    let stdin_is_tty = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false);
    let _raw = if tty && stdin_is_tty && forward_stdin {
        let saved = nix::sys::termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw)?;
        send_window_size(sock);
        Some(RawTerminal(saved))
    } else {
        None
    };
    let mut stdin_open = forward_stdin;
    let mut matched = 0usize;
    let mut buf = vec![0u8; 65537];
    loop {
        let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(500u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if stdin_open && ready.get(1) == Some(&true) {
            match nix::unistd::read(stdin.as_fd(), &mut buf[1..]) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    // A terminal stays open (as Podman's); a stdin pipe ends with ours.
                    if !tty {
                        let _ = send(sock.as_raw_fd(), &[CLOSE_STDIN], MsgFlags::MSG_NOSIGNAL);
                    }
                }
                Ok(n) => {
                    let (pass, detach) = scan_detach(keys, &mut matched, &buf[1..1 + n]);
                    if !pass.is_empty() {
                        let mut packet = vec![STDIN];
                        packet.extend_from_slice(&pass);
                        let _ = send(sock.as_raw_fd(), &packet, MsgFlags::MSG_NOSIGNAL);
                    }
                    if detach {
                        return Ok(0);
                    }
                }
            }
        }
        if ready[0] {
            match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let out: RawFd = if buf[0] == STDERR { 2 } else { 1 };
                    // SAFETY: the standard descriptors live as long as the process.
                    write_all(unsafe { BorrowedFd::borrow_raw(out) }, &buf[1..n]);
                }
            }
        }
    }
    drop(_raw);
    // The container ended: its exit code, once its monitor has recorded it.
    let c = super::stop::wait_recorded(store, id)?;
    Ok(c.exit_code.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_does() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert!(parse_detach_keys("").unwrap().is_empty());
        assert!(parse_detach_keys("ctrl-pp").is_err());
    }

    #[test]
    fn detach_sequence_is_found_across_reads() {
        let keys = [16u8, 17];
        let mut m = 0;
        assert_eq!(scan_detach(&keys, &mut m, b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(scan_detach(&keys, &mut m, b"\x11rest"), (vec![], true));
        let mut m = 0;
        // A lone ctrl-p goes on once the next key is not ctrl-q.
        assert_eq!(scan_detach(&keys, &mut m, b"\x10x"), (b"\x10x".to_vec(), false));
    }

    #[test]
    fn server_and_client_talk_over_seqpacket() {
        let (a, b) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (listener, _) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let mut server = AttachServer {
            listener,
            clients: vec![a],
            path: std::env::temp_dir().join("burrow-attach-test-unused"),
        };
        server.broadcast(STDOUT, b"hello");
        let mut buf = [0u8; 16];
        let n = recv(b.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..n], b"\x01hello");
        // Input reaches the terminal (a pipe stands in for it).
        let (r, w) = nix::unistd::pipe().unwrap();
        send(b.as_raw_fd(), b"\x00typed", MsgFlags::empty()).unwrap();
        assert!(!server.handle(&[false, true], Some(w.as_fd()), None));
        let n = nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"typed");
        send(b.as_raw_fd(), &[CLOSE_STDIN], MsgFlags::empty()).unwrap();
        assert!(
            server.handle(&[false, true], Some(w.as_fd()), None),
            "end of input is passed on"
        );
        drop(b);
        server.handle(&[false, true], None, None);
        assert!(server.clients.is_empty(), "a closed client is dropped");
    }
}
