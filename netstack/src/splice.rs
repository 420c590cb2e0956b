//! Published TCP ports' clients on the host's loopback, spliced.
//!
//! Through the tap, such a client cannot keep its address (Linux drops 127/8 sources on a
//! non-loopback interface, so the container would see the gateway), and every byte is copied into
//! this process and out again. Instead, as pasta's spliced path does, the stack connects to the
//! container from the loopback of the container's own network namespace, with the client's
//! address and port, and moves the bytes between the two kernel sockets with splice(2), through a
//! pipe each way: the container sees its real client, and no byte passes through this process.
//! Clients from elsewhere keep taking the tap, which keeps their addresses.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use mio::net::TcpStream;
use mio::{Interest, Registry};
use nix::errno::Errno;
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use nix::sys::socket::{bind, connect, setsockopt, sockopt, SockaddrStorage};

use crate::nat::Nat;
use crate::netns::NetnsSockets;
use crate::slab::Slab;
use crate::stack::Kind;
use crate::tcp::{connect_result, reset};

/// Asked of each splice call: the pipe's free space bounds what it moves.
const SPLICE_MAX: usize = 1 << 20;
/// The most one direction of a connection moves per turn of the event loop, so that a fast
/// connection does not hold the loop (and every other flow) for as long as its peers keep up.
const STEP_BUDGET: usize = 4 << 20;
/// The size of the first connections' pipes: fewer, larger moves (iperf3 through a published
/// port here: about 15 Gbit/s with the default 64 KiB, 19 with 512 KiB).
const LARGE_PIPE: usize = 512 * 1024;
/// How many large pipes there may be at once (16 MiB). Every pipe counts against the user's
/// `fs.pipe-user-pages-soft` (64 MiB by default), past which the kernel gives every new pipe of
/// the user, in any process, two pages only.
const LARGE_PIPES_MAX: usize = 32;
/// The size of the others: many connections at once are mostly small exchanges.
const SMALL_PIPE: usize = 16 * 1024;

/// The spliced connections of one stack.
pub struct Splicer {
    netns: OwnedFd,
    /// Started at the first loopback client; `Err` once it failed (the tap path is used then).
    sockets: Option<Result<NetnsSockets, ()>>,
    conns: Slab<Spliced>,
    max: usize,
    large_pipes: usize,
    /// Connections that stopped at their budget with more to move: stepped again next turn
    /// (their sockets, edge-triggered, will not say so again).
    ready: Vec<usize>,
}

struct Spliced {
    host: TcpStream,
    container: TcpStream,
    connected: bool,
    large_pipes: bool,
    /// host → container
    up: Pipe,
    /// container → host
    down: Pipe,
}

/// One direction: a pipe between the reading and the writing socket.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe.
    len: usize,
    /// The reading socket's end of stream has been read.
    eof: bool,
    /// ...and passed on: the writing socket's sending side is shut.
    shut: bool,
}

/// Why a pump stopped.
#[derive(Debug, PartialEq, Eq)]
enum Pump {
    /// A socket would block: it says when it is ready.
    Blocked,
    /// The budget is spent; there may be more.
    Budget,
}

enum Verdict {
    /// Waiting for a socket to be ready.
    Open,
    /// Stopped at its budget, with more to move.
    More,
    Done,
    Reset,
}

impl Splicer {
    /// `netns`: the container's network namespace; `max`: the most connections at once.
    pub fn new(netns: OwnedFd, max: usize) -> Splicer {
        Splicer {
            netns,
            sockets: None,
            conns: Slab::default(),
            max,
            large_pipes: 0,
            ready: Vec::new(),
        }
    }

    /// A connection accepted on a published port: spliced to the container when the client is on
    /// the host's loopback; otherwise (or when it cannot be) handed back for the tap path.
    pub fn accept(
        &mut self,
        registry: &Registry,
        nat: &Nat,
        mut host: TcpStream,
        client: SocketAddr,
        container_port: u16,
    ) -> Result<(), TcpStream> {
        let Some(source) = loopback_source(nat, client) else {
            return Err(host);
        };
        if self.conns.len() >= self.max {
            reset(&host);
            return Ok(());
        }
        let target = SocketAddr::new(nat.container_address_for(source.ip()), container_port);
        let Ok(mut container) = self.connect(source, target) else {
            return Err(host);
        };
        let large_pipes = self.large_pipes + 2 <= LARGE_PIPES_MAX;
        let size = if large_pipes { LARGE_PIPE } else { SMALL_PIPE };
        let (Ok(up), Ok(down)) = (Pipe::new(size), Pipe::new(size)) else {
            return Err(host);
        };
        let token = Kind::Splice.token(self.conns.vacant());
        let both = Interest::READABLE | Interest::WRITABLE;
        if registry.register(&mut host, token, both).is_err()
            || registry.register(&mut container, token, both).is_err()
        {
            let _ = registry.deregister(&mut host);
            reset(&host);
            return Ok(());
        }
        let _ = host.set_nodelay(true);
        let _ = container.set_nodelay(true);
        self.large_pipes += 2 * usize::from(large_pipes);
        self.conns.insert(Spliced {
            host,
            container,
            connected: false,
            large_pipes,
            up,
            down,
        });
        Ok(())
    }

    /// Whether connections wait for another turn (the loop must not sleep).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Steps the connections that stopped at their budget last turn.
    pub fn step_ready(&mut self, registry: &Registry) {
        for index in std::mem::take(&mut self.ready) {
            self.on_event(registry, index);
        }
    }

    /// A socket of connection `index` is ready: move what can be moved; drop it when done.
    pub fn on_event(&mut self, registry: &Registry, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let verdict = conn.step();
        match verdict {
            Verdict::Open => return,
            Verdict::More => {
                if !self.ready.contains(&index) {
                    self.ready.push(index);
                }
                return;
            }
            Verdict::Done | Verdict::Reset => {}
        }
        let mut conn = self.conns.remove(index).expect("connection exists");
        self.large_pipes -= 2 * usize::from(conn.large_pipes);
        let _ = registry.deregister(&mut conn.host);
        let _ = registry.deregister(&mut conn.container);
        if matches!(verdict, Verdict::Reset) {
            reset(&conn.host);
            reset(&conn.container);
        }
    }

    /// Resets every connection (the stack is stopping).
    pub fn abort_all(&mut self, registry: &Registry) {
        for index in self.conns.indices() {
            if let Some(mut conn) = self.conns.remove(index) {
                let _ = registry.deregister(&mut conn.host);
                let _ = registry.deregister(&mut conn.container);
                reset(&conn.host);
                reset(&conn.container);
            }
        }
        self.large_pipes = 0;
        self.ready.clear();
    }

    /// A socket in the container's namespace, bound to `source` (its port if free, else any),
    /// connecting to `target`.
    fn connect(&mut self, source: SocketAddr, target: SocketAddr) -> io::Result<TcpStream> {
        let sockets = match self
            .sockets
            .get_or_insert_with(|| NetnsSockets::start(&self.netns).map_err(drop))
        {
            Ok(s) => s,
            Err(()) => return Err(io::ErrorKind::Unsupported.into()),
        };
        let family = if source.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        let fd = match sockets.tcp_socket(family) {
            Ok(fd) => fd,
            Err(e) => {
                // The helper could not join the namespace, or is gone: stop trying.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    self.sockets = Some(Err(()));
                }
                return Err(e);
            }
        };
        // The client's port may be in TIME_WAIT in the namespace from an earlier connection.
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        if bind(fd.as_raw_fd(), &SockaddrStorage::from(source)).is_err() {
            bind(
                fd.as_raw_fd(),
                &SockaddrStorage::from(SocketAddr::new(source.ip(), 0)),
            )?;
        }
        match connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
    }
}

/// The address a client of the host's loopback connects from inside the container: itself, as
/// IPv4 when the container has no IPv6. `None` for a client that is not on the loopback.
fn loopback_source(nat: &Nat, client: SocketAddr) -> Option<SocketAddr> {
    let ip = match client.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if !v6.is_loopback() => return None,
            None if nat.slirp.enable_ipv6 => IpAddr::V6(v6),
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
        v4 => v4,
    };
    ip.is_loopback().then(|| SocketAddr::new(ip, client.port()))
}

impl Spliced {
    fn step(&mut self) -> Verdict {
        if !self.connected {
            match connect_result(&self.container) {
                None => return Verdict::Open,
                Some(Err(_)) => return Verdict::Reset,
                Some(Ok(())) => self.connected = true,
            }
        }
        let (up, down) = match (
            self.up.pump(&self.host, &self.container),
            self.down.pump(&self.container, &self.host),
        ) {
            (Ok(up), Ok(down)) => (up, down),
            _ => return Verdict::Reset,
        };
        if self.up.finished() && self.down.finished() {
            Verdict::Done
        } else if up == Pump::Budget || down == Pump::Budget {
            Verdict::More
        } else {
            Verdict::Open
        }
    }
}

impl Pipe {
    fn new(size: usize) -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Past the user's soft limit the kernel refuses; the pipe keeps its size then.
        let _ = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32));
        Ok(Pipe {
            read,
            write,
            len: 0,
            eof: false,
            shut: false,
        })
    }

    fn finished(&self) -> bool {
        self.shut && self.len == 0
    }

    /// Moves what it can from `from` to `to`, until one of them would block (each then says
    /// when it is ready: the sockets are edge-triggered) or [`STEP_BUDGET`] bytes went. An
    /// error is a reset or a failure: the connection is reset both ways.
    fn pump(&mut self, from: &TcpStream, to: &TcpStream) -> io::Result<Pump> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        let mut moved = 0;
        loop {
            if self.len > 0 {
                match splice(&self.read, None, to, None, self.len, flags) {
                    Ok(n) => {
                        self.len -= n;
                        moved += n;
                    }
                    Err(Errno::EAGAIN) => return Ok(Pump::Blocked),
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            if self.eof {
                if !self.shut {
                    self.shut = true;
                    let _ = to.shutdown(std::net::Shutdown::Write);
                }
                return Ok(Pump::Blocked);
            }
            if moved >= STEP_BUDGET {
                return Ok(Pump::Budget);
            }
            // Only read into an empty pipe, so that EAGAIN means the socket has nothing.
            match splice(from, None, &self.write, None, SPLICE_MAX, flags) {
                Ok(0) => {
                    // A reset after the FIN reads as the end of the stream too: tell them apart.
                    if let Some(e) = from.take_error()? {
                        return Err(e);
                    }
                    self.eof = true;
                }
                Ok(n) => self.len = n,
                Err(Errno::EAGAIN) => return Ok(Pump::Blocked),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::time::{Duration, Instant};

    /// A connected pair on 127.0.0.1: (a plain client, the accepted end as the stack holds it).
    fn pair() -> (std::net::TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        (client, TcpStream::from_std(accepted))
    }

    /// A client ⇄ [host | splice | container] ⇄ server chain, the two middle sockets spliced.
    fn chain() -> (std::net::TcpStream, Spliced, std::net::TcpStream) {
        let (client, host) = pair();
        let (server, container) = pair();
        let spliced = Spliced {
            host,
            container,
            connected: true,
            large_pipes: false,
            up: Pipe::new(SMALL_PIPE).unwrap(),
            down: Pipe::new(SMALL_PIPE).unwrap(),
        };
        (client, spliced, server)
    }

    /// Steps the splice until it is no longer open (or fails the test after a while).
    fn run_to_end(spliced: &mut Spliced) -> Verdict {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spliced.step() {
                Verdict::Open | Verdict::More => {
                    assert!(Instant::now() < deadline, "the splice never ended")
                }
                verdict => return verdict,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn moves_data_and_half_closes_both_ways() {
        let (mut client, mut spliced, mut server) = chain();
        // More than a pipe holds, so that the pump must wait on the writing side.
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            // After the client's FIN, the other half still works.
            server.write_all(b"reply after eof").unwrap();
            got
        });
        let writer = std::thread::spawn(move || {
            client.write_all(&data).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut reply = String::new();
            client.read_to_string(&mut reply).unwrap();
            reply
        });
        assert!(matches!(run_to_end(&mut spliced), Verdict::Done));
        assert_eq!(reader.join().unwrap(), expected);
        assert_eq!(writer.join().unwrap(), "reply after eof");
    }

    #[test]
    fn a_reset_resets_the_connection() {
        let (client, mut spliced, _server) = chain();
        (&client).write_all(b"x").unwrap();
        reset_std(&client);
        drop(client);
        assert!(matches!(run_to_end(&mut spliced), Verdict::Reset));
    }

    fn reset_std(s: &std::net::TcpStream) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        setsockopt(s, sockopt::Linger, &linger).unwrap();
    }

    #[test]
    fn only_loopback_clients_are_spliced() {
        let nat = Nat::new(crate::slirp::SlirpConfig::default(), Vec::new());
        let source = |client: &str| loopback_source(&nat, client.parse().unwrap());
        assert_eq!(source("127.0.0.1:5000"), Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(
            source("[::ffff:127.0.0.2]:5000"),
            Some("127.0.0.2:5000".parse().unwrap())
        );
        // Without IPv6 in the container, an IPv6 loopback client comes in over IPv4.
        assert_eq!(source("[::1]:5000"), Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(source("192.0.2.2:5000"), None);
        assert_eq!(source("[2001:db8::1]:5000"), None);
    }
}
