//! TCP flows: each connection of the container is a smoltcp socket spliced to a host socket.
//!
//! - Outbound (the container connects): on the container's SYN a smoltcp socket listens on
//!   exactly that destination with its SYN-ACK paused, and a non-blocking host connect starts; the
//!   SYN-ACK goes out when the host connect succeeds, a RST when it fails (so the container sees
//!   "connection refused" as it would directly).
//! - Inbound (a published port): the host connection is accepted, and the smoltcp socket connects
//!   to the container from the client's address ([`crate::nat::Nat::inbound_source`]).
//!
//! Data moves without intermediate buffers: host reads go straight into the smoltcp transmit
//! buffer, host writes straight from its receive buffer; and large in-order segments from the
//! container skip the receive buffer while it is empty (the receive sink, our addition to
//! smoltcp: see `vendor/smoltcp/BURROW.md`), written to the host from the frame itself, which
//! saves a copy of every byte in bulk transfers. Backpressure is the buffers themselves:
//! the host is read only while the container's window has room and the container is given window
//! only as fast as the host takes the data. FIN and RST are carried across in both directions.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Interest;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::IpEndpoint;

use crate::slab::Slab;
use crate::stack::{Ctx, Kind};

/// Receive and transmit buffer of each smoltcp socket (the receive size sets the window scale).
/// Every byte is copied into one and out again soon after, so a buffer that stays in the CPU's
/// cache makes both copies cheaper: with 4 MiB, `perf` put a quarter of the stack's time in
/// those copies, with 256 KiB the window was too small to keep 20 Gbit/s flowing. 1 MiB moved
/// the most per CPU second of the sizes tried (256 KiB to 4 MiB, iperf3 both ways).
pub const BUFFER_SIZE: usize = 1 << 20;
/// Flows beyond this are refused (RST), so a container cannot exhaust the stack's memory or fds
/// (the default of `StackConfig::max_tcp_flows`).
pub const MAX_FLOWS: usize = 16384;
/// How long the container has to answer a published port's connection.
const INBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a finished smoltcp socket may linger to send its last RST or ACK.
const LINGER: Duration = Duration::from_secs(2);
/// Smaller segments go through the receive buffer, where the pump writes many of them to the
/// host in one call; the sink costs one call per segment.
const SINK_MIN_SEGMENT: usize = 16 * 1024;

/// (container endpoint, peer endpoint as the container sees it).
type Tuple = (SocketAddr, SocketAddr);

struct Flow {
    handle: SocketHandle,
    host: TcpStream,
    tuple: Tuple,
    /// Outbound, host connect in progress, SYN-ACK paused.
    connecting: bool,
    /// The paused socket has taken the container's SYN.
    syn_taken: bool,
    /// Inbound, waiting for the container's SYN-ACK (a connect timeout is set).
    inbound_pending: bool,
    readable: bool,
    writable: bool,
    /// The host socket reported end of input or an error: read until the read says so, even
    /// after a short read.
    read_closed: bool,
    /// The host sent FIN; the smoltcp socket was closed (its FIN follows the data).
    host_eof: bool,
    /// The container sent FIN.
    container_fin: bool,
    /// The host's write half was shut down (after the container's FIN and all its data).
    host_shut: bool,
    /// Shared with the receive sink smoltcp holds for this flow.
    sink: Arc<SinkCell>,
}

/// What a flow's receive sink may do (set by the pump) or what its last write met.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Sink {
    /// The host may not be written now (not connected, blocked, shut down).
    Off,
    On,
    /// The host socket's buffer is full: wait for its writable event.
    Blocked,
    /// The host write failed: the flow ends with a RST.
    Failed,
}

/// A [`Sink`] shared between the flow and the sink (an atomic only because smoltcp wants the
/// sink `Send`; both run on the stack's one thread).
#[derive(Default)]
struct SinkCell(AtomicU8);

impl SinkCell {
    fn get(&self) -> Sink {
        match self.0.load(Ordering::Relaxed) {
            1 => Sink::On,
            2 => Sink::Blocked,
            3 => Sink::Failed,
            _ => Sink::Off,
        }
    }

    fn set(&self, state: Sink) {
        self.0.store(state as u8, Ordering::Relaxed);
    }
}

impl Flow {
    /// Lets the sink write while the host can take data and nothing else stands in the way.
    fn arm_sink(&self) {
        let on = self.writable && !self.connecting && !self.container_fin && !self.host_shut;
        self.sink.set(if on { Sink::On } else { Sink::Off });
    }
}

/// Gives `socket` a receive sink that writes to `host`'s fd, controlled through the returned
/// cell. The sink must be removed ([`tcp::Socket::set_rx_sink`] with `None`) before `host` is
/// closed: it holds the raw fd.
fn install_sink(socket: &mut tcp::Socket<'static>, host: &TcpStream) -> Arc<SinkCell> {
    let state = Arc::new(SinkCell::default());
    let shared = Arc::clone(&state);
    let fd = host.as_raw_fd();
    socket.set_rx_sink(Some(Box::new(move |data: &[u8]| {
        if shared.get() != Sink::On || data.len() < SINK_MIN_SEGMENT {
            return 0;
        }
        // SAFETY: `data` is a valid slice; `fd` is the flow's open host socket (the sink is
        // removed before the socket is closed).
        let n = unsafe {
            libc::send(
                fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            let n = n as usize;
            if n < data.len() {
                // A short write means a full buffer; its writable event will follow.
                shared.set(Sink::Blocked);
            }
            return n;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock => shared.set(Sink::Blocked),
            io::ErrorKind::Interrupted => {}
            _ => shared.set(Sink::Failed),
        }
        0
    })));
    state
}

enum Verdict {
    Keep,
    /// The flow is over; `reset` closes the host socket with a RST instead of a FIN.
    Remove {
        reset: bool,
    },
}

pub struct TcpRelay {
    max_flows: usize,
    flows: Slab<Flow>,
    tuples: HashMap<Tuple, usize>,
    /// Sockets whose host side is gone, kept until their last segment is out.
    dying: Vec<(SocketHandle, Instant)>,
}

fn endpoint(a: SocketAddr) -> IpEndpoint {
    a.into()
}

fn new_socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER_SIZE]),
        tcp::SocketBuffer::new(vec![0; BUFFER_SIZE]),
    );
    // The host application did its own coalescing: send what it wrote at once.
    s.set_nagle_enabled(false);
    s
}

/// Closes a host socket with a RST (SO_LINGER 0) rather than a FIN.
pub(crate) fn reset(host: &TcpStream) {
    let _ = nix::sys::socket::setsockopt(
        &host.as_fd(),
        nix::sys::socket::sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
}

/// `None` while a non-blocking connect is in progress.
pub(crate) fn connect_result(s: &TcpStream) -> Option<io::Result<()>> {
    match s.take_error() {
        Ok(Some(e)) | Err(e) => return Some(Err(e)),
        Ok(None) => {}
    }
    match s.peer_addr() {
        Ok(_) => Some(Ok(())),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
        Err(e) => Some(Err(e)),
    }
}

impl TcpRelay {
    pub fn new(max_flows: usize) -> TcpRelay {
        TcpRelay {
            max_flows,
            flows: Slab::default(),
            tuples: HashMap::new(),
            dying: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// The most flows at once.
    pub fn max_flows(&self) -> usize {
        self.max_flows
    }

    /// Whether a SYN from `src` to `dst` starts a flow not seen yet.
    pub fn is_new(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        !self.tuples.contains_key(&(src, dst))
    }

    /// The container sent a SYN from `src` to `dst`. Unless the flow exists (a retransmitted SYN)
    /// or is refused, creates the paused listening socket and starts the host connect. A refused
    /// flow gets no socket, so smoltcp answers the SYN with a RST.
    pub fn on_syn(&mut self, ctx: &mut Ctx, src: SocketAddr, dst: SocketAddr) {
        let tuple = (src, dst);
        if self.tuples.contains_key(&tuple) || !ctx.nat.is_container(src.ip()) {
            return;
        }
        let Some(target) = ctx.nat.outbound(dst) else {
            return;
        };
        if self.flows.len() >= self.max_flows {
            return;
        }
        let Ok(mut host) = TcpStream::connect(target) else {
            return;
        };
        let _ = host.set_nodelay(true);
        let mut socket = new_socket();
        if socket.listen(endpoint(dst)).is_err() {
            return;
        }
        socket.pause_synack(true);
        let index = self.flows.vacant();
        if ctx
            .registry
            .register(
                &mut host,
                Kind::TcpFlow.token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        let sink = install_sink(&mut socket, &host);
        let handle = ctx.sockets.add(socket);
        self.flows.insert(Flow {
            handle,
            host,
            tuple,
            connecting: true,
            syn_taken: false,
            inbound_pending: false,
            readable: false,
            writable: false,
            read_closed: false,
            host_eof: false,
            container_fin: false,
            host_shut: false,
            sink,
        });
        self.tuples.insert(tuple, index);
    }

    /// A connection accepted on a published port: connect to the container's `container_port`
    /// from the client's address (or the gateway, see [`crate::nat::Nat::inbound_source`]).
    pub fn accept_inbound(
        &mut self,
        ctx: &mut Ctx,
        mut host: TcpStream,
        client: SocketAddr,
        container_port: u16,
    ) {
        if self.flows.len() >= self.max_flows {
            reset(&host);
            return;
        }
        let source_ip = ctx.nat.inbound_source(client);
        let container = SocketAddr::new(ctx.nat.container_address_for(source_ip), container_port);
        // Keep the client's port unless that tuple is taken (two loopback clients can share a
        // port on different 127/8 addresses, and both become the gateway).
        let mut port = client.port();
        let mut tries = 0;
        while port == 0
            || self
                .tuples
                .contains_key(&(container, SocketAddr::new(source_ip, port)))
        {
            port = 32768 + ((u32::from(port) * 7 + 1) % 28232) as u16;
            tries += 1;
            if tries > 64 {
                reset(&host);
                return;
            }
        }
        let peer = SocketAddr::new(source_ip, port);
        let mut socket = new_socket();
        if socket
            .connect(ctx.iface.context(), endpoint(container), endpoint(peer))
            .is_err()
        {
            reset(&host);
            return;
        }
        socket.set_timeout(Some(smoltcp::time::Duration::from_millis(
            INBOUND_CONNECT_TIMEOUT.as_millis() as u64,
        )));
        let _ = host.set_nodelay(true);
        let index = self.flows.vacant();
        if ctx
            .registry
            .register(
                &mut host,
                Kind::TcpFlow.token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            reset(&host);
            return;
        }
        let sink = install_sink(&mut socket, &host);
        let handle = ctx.sockets.add(socket);
        let tuple = (container, peer);
        self.flows.insert(Flow {
            handle,
            host,
            tuple,
            connecting: false,
            syn_taken: true,
            inbound_pending: true,
            readable: true,
            writable: true,
            read_closed: false,
            host_eof: false,
            container_fin: false,
            host_shut: false,
            sink,
        });
        self.tuples.insert(tuple, index);
    }

    /// Readiness of a flow's host socket.
    pub fn on_event(&mut self, index: usize, event: &mio::event::Event) {
        if let Some(flow) = self.flows.get_mut(index) {
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                flow.readable = true;
            }
            if event.is_read_closed() || event.is_error() {
                flow.read_closed = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                flow.writable = true;
                // The event came after the sink's full write: the pump may arm it again.
                if flow.sink.get() == Sink::Blocked {
                    flow.sink.set(Sink::Off);
                }
            }
        }
    }

    /// Moves data and FIN/RST between every flow's two sides; drops finished flows.
    pub fn pump(&mut self, ctx: &mut Ctx) {
        for index in self.flows.indices() {
            let Some(flow) = self.flows.get_mut(index) else {
                continue;
            };
            let socket = ctx.sockets.get_mut::<tcp::Socket>(flow.handle);
            if let Verdict::Remove { reset: rst } = pump_flow(flow, socket) {
                socket.set_rx_sink(None);
                let flow = self.flows.remove(index).expect("flow exists");
                self.tuples.remove(&flow.tuple);
                let mut host = flow.host;
                if rst {
                    reset(&host);
                }
                let _ = ctx.registry.deregister(&mut host);
                drop(host);
                self.dying.push((flow.handle, ctx.now + LINGER));
            }
        }
        self.reap(ctx);
    }

    /// Removes finished smoltcp sockets once their last segment (RST, ACK) is out.
    fn reap(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        self.dying.retain(|&(handle, deadline)| {
            let socket = ctx.sockets.get::<tcp::Socket>(handle);
            let done = socket.state() == State::Closed && socket.remote_endpoint().is_none();
            if done || now >= deadline {
                ctx.sockets.remove(handle);
                false
            } else {
                true
            }
        });
    }

    /// Ends every flow at once (the stack is stopping): RST on both sides.
    pub fn abort_all(&mut self, ctx: &mut Ctx) {
        for index in self.flows.indices() {
            let flow = self.flows.remove(index).expect("flow exists");
            reset(&flow.host);
            let socket = ctx.sockets.get_mut::<tcp::Socket>(flow.handle);
            socket.set_rx_sink(None);
            socket.abort();
        }
        self.tuples.clear();
    }
}

fn pump_flow(flow: &mut Flow, socket: &mut tcp::Socket) -> Verdict {
    let verdict = pump_flow_data(flow, socket);
    if matches!(verdict, Verdict::Keep) {
        flow.arm_sink();
    }
    verdict
}

fn pump_flow_data(flow: &mut Flow, socket: &mut tcp::Socket) -> Verdict {
    match flow.sink.get() {
        Sink::Blocked => flow.writable = false,
        Sink::Failed => {
            socket.abort();
            return Verdict::Remove { reset: true };
        }
        Sink::On | Sink::Off => {}
    }
    if flow.connecting {
        match socket.state() {
            State::Listen if flow.syn_taken => {
                // The container reset its half-open connection.
                return Verdict::Remove { reset: true };
            }
            State::Listen => {}
            _ => flow.syn_taken = true,
        }
        if !flow.writable {
            return Verdict::Keep;
        }
        match connect_result(&flow.host) {
            None => {
                flow.writable = false;
                return Verdict::Keep;
            }
            Some(Ok(())) => {
                flow.connecting = false;
                socket.pause_synack(false);
            }
            Some(Err(_)) => {
                // RST to the container, as a refused connect gives.
                socket.abort();
                return Verdict::Remove { reset: false };
            }
        }
    }
    if flow.inbound_pending && socket.state() == State::Established {
        flow.inbound_pending = false;
        socket.set_timeout(None);
    }

    // Container → host.
    while flow.writable && socket.can_recv() {
        let host = &mut flow.host;
        match socket.recv(|buf| match host.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => flow.writable = false,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => {
                socket.abort();
                return Verdict::Remove { reset: true };
            }
            Err(_) => break,
        }
    }
    if matches!(
        socket.state(),
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    ) {
        flow.container_fin = true;
    }
    if flow.container_fin && !flow.host_shut && socket.recv_queue() == 0 {
        let _ = flow.host.shutdown(Shutdown::Write);
        flow.host_shut = true;
    }

    // Host → container.
    while flow.readable && !flow.host_eof && socket.can_send() {
        let host = &mut flow.host;
        match socket.send(|buf| match host.read(buf) {
            Ok(n) => (n, Ok((n, buf.len()))),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok((0, _))) => {
                flow.host_eof = true;
                socket.close();
            }
            // A short read drained the socket: skip the read that would only say EAGAIN (one
            // syscall in each request/response). Epoll is edge-triggered, so data arriving
            // later still wakes the flow; an EOF that came with the data (read_closed) does not.
            Ok(Ok((n, offered))) if n < offered && !flow.read_closed => flow.readable = false,
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => flow.readable = false,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => {
                socket.abort();
                return Verdict::Remove { reset: true };
            }
            Err(_) => break,
        }
    }

    match socket.state() {
        State::Listen if !flow.connecting => Verdict::Remove { reset: true },
        State::Closed | State::TimeWait => {
            let graceful = flow.container_fin && flow.host_eof;
            if graceful && !flow.host_shut {
                // Data the container sent before its FIN is still on its way to the host.
                return Verdict::Keep;
            }
            Verdict::Remove { reset: !graceful }
        }
        _ => Verdict::Keep,
    }
}
