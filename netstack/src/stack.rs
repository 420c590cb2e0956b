//! The stack and its event loop: one thread, one epoll (mio) over the tap, the host sockets, the
//! published ports, a signalfd and the exit fd; smoltcp's timers give the poll timeout.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

use crate::config::{PortForward, StackConfig};
use crate::device::{Frame, TapDevice};
use crate::icmp::EchoRelay;
use crate::nat::Nat;
use crate::packet::{self, Ingress, Macs};
use crate::portfwd::{Forwards, PortError};
use crate::reassembly::{self, Reassembler};
use crate::splice::Splicer;
use crate::tcp::TcpRelay;
use crate::udp::UdpRelay;

/// Frames read from the tap per loop turn before smoltcp runs.
const RX_BATCH: usize = 64;
/// Idle flows are swept this often.
const SWEEP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("the tap device: {0}")]
    Tap(#[source] io::Error),
    #[error("the event loop: {0}")]
    Poll(#[source] io::Error),
    #[error("signals: {0}")]
    Signals(#[source] nix::Error),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// What the token of a host-side socket stands for; the low 32 bits are its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Kind {
    TcpFlow = 1,
    UdpFlow = 2,
    Ping = 3,
    Listener = 4,
    Splice = 5,
}

impl Kind {
    pub fn token(self, index: usize) -> Token {
        Token(((self as usize) << 32) | index)
    }

    fn of(token: Token) -> (usize, usize) {
        (token.0 >> 32, token.0 & 0xffff_ffff)
    }
}

const TAP: Token = Token(0);
const SIGNALS: Token = Token(1);
const EXIT: Token = Token(2);

/// Link-layer facts: our MAC, the container's (learnt from its frames), IPv4 identifiers.
pub struct Link {
    gateway_mac: EthernetAddress,
    container_mac: Option<EthernetAddress>,
    ident: u16,
}

impl Link {
    pub fn macs(&self) -> Option<Macs> {
        Some(Macs {
            src: self.gateway_mac,
            dst: self.container_mac?,
        })
    }

    pub fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }
}

/// What the relays work on during one step of the loop.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub iface: &'a mut Interface,
    pub sockets: &'a mut SocketSet<'static>,
    pub device: &'a mut TapDevice,
    pub nat: &'a Nat,
    pub link: &'a mut Link,
    pub now: Instant,
}

/// How [`Stack::run`] learns that it must stop (besides the tap failing).
#[derive(Default)]
pub struct StopOn {
    /// Stop when this fd becomes readable or hangs up (the other end closed), as slirp4netns'
    /// `--exit-fd`.
    pub exit_fd: Option<OwnedFd>,
    /// Stop when this process exits (a pidfd, readable once it has): the container's first
    /// process, whose end is the end of the network namespace.
    pub pid_fd: Option<OwnedFd>,
    /// Stop when a signal arrives on this signalfd (from [`stop_signals`], called before the
    /// process says it is ready, so that no SIGTERM can find the default action).
    pub signal_fd: Option<OwnedFd>,
}

/// The context the relays work in, borrowing the stack's fields one by one (so that a relay,
/// another field, can take it).
macro_rules! ctx {
    ($stack:ident, $registry:expr, $now:expr) => {
        Ctx {
            registry: $registry,
            iface: &mut $stack.iface,
            sockets: &mut $stack.sockets,
            device: &mut $stack.device,
            nat: &$stack.nat,
            link: &mut $stack.link,
            now: $now,
        }
    };
}

pub struct Stack {
    poll: Poll,
    device: TapDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    nat: Nat,
    link: Link,
    tcp: TcpRelay,
    udp: UdpRelay,
    echo: EchoRelay,
    forwards: Forwards,
    splicer: Option<Splicer>,
    fragments: Reassembler,
    epoch: Instant,
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    u64::from_ne_bytes(b)
}

impl Stack {
    /// Sets the stack up on a tap fd (`IFF_TAP | IFF_NO_PI`, created in the container's network
    /// namespace) and binds the published ports. Errors here (a port taken, a privileged port)
    /// come before the container starts.
    pub fn new(tap: OwnedFd, config: &StackConfig) -> Result<Stack, StackError> {
        // Socket buffers are large and allocated zeroed: keep them mmap-backed, so that their
        // untouched pages cost nothing (glibc would otherwise raise the threshold after frees
        // and zero them by hand).
        // SAFETY: mallopt only tunes the allocator.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        }
        let slirp = config.slirp.clone();
        let mut device = TapDevice::new(tap, slirp.mtu as usize).map_err(StackError::Tap)?;
        let poll = Poll::new().map_err(StackError::Poll)?;
        let epoch = Instant::now();
        let mut iface_config = Config::new(HardwareAddress::Ethernet(slirp.gateway_mac()));
        iface_config.random_seed = random_seed();
        let mut iface = Interface::new(iface_config, &mut device, SmolInstant::from_micros(0));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(slirp.gateway().into(), slirp.prefix_len));
            if slirp.enable_ipv6 {
                let _ = addrs.push(IpCidr::new(slirp.gateway6().into(), 64));
                let _ = addrs.push(IpCidr::new(slirp.dns6().into(), 64));
                let _ = addrs.push(IpCidr::new(packet::gateway_link_local(&slirp).into(), 64));
            }
        });
        let _ = iface.routes_mut().add_default_ipv4_route(slirp.gateway());
        // Any-IP: accept traffic to every destination; a socket per flow decides what is taken.
        iface.set_any_ip(true);
        // Teach smoltcp the container's MAC (set on the tap by userns::network::create_tap), so
        // that a published port's first connection needs no ARP round trip.
        let container_mac = slirp.container_mac();
        device.push_rx_bytes(&packet::synthetic_arp_reply(&slirp, container_mac));
        let forwards = Forwards::bind(&config.port_forwards, poll.registry())?;
        Ok(Stack {
            poll,
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            nat: Nat {
                dns_port: config.dns_port,
                ..Nat::new(slirp.clone(), config.dns_servers.clone())
            },
            link: Link {
                gateway_mac: slirp.gateway_mac(),
                container_mac: Some(container_mac),
                ident: random_seed() as u16,
            },
            tcp: TcpRelay::new(config.max_tcp_flows),
            splicer: None,
            fragments: Reassembler::default(),
            udp: UdpRelay::default(),
            echo: EchoRelay::default(),
            forwards,
            epoch,
        })
    }

    /// The container's network namespace: published TCP ports then splice their clients on the
    /// host's loopback into it (see [`crate::splice`]) instead of taking the tap.
    pub fn set_container_netns(&mut self, netns: OwnedFd) {
        self.splicer = Some(Splicer::new(netns, self.tcp.max_flows()));
    }

    /// The published ports as bound (a requested port 0 shows the port the kernel chose).
    pub fn published(&self) -> Vec<PortForward> {
        self.forwards.published()
    }

    fn smol_now(&self) -> SmolInstant {
        SmolInstant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Runs until told to stop; then resets every relayed connection and closes every host
    /// socket (the published ports are free again when this returns).
    pub fn run(mut self, stop: StopOn) -> Result<(), StackError> {
        let registry = self.poll.registry().try_clone().map_err(StackError::Poll)?;
        let tap_fd = self.device.raw_fd();
        registry
            .register(
                &mut SourceFd(&tap_fd),
                TAP,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(StackError::Poll)?;
        if let Some(fd) = &stop.signal_fd {
            registry
                .register(&mut SourceFd(&fd.as_raw_fd()), SIGNALS, Interest::READABLE)
                .map_err(StackError::Poll)?;
        }
        for fd in stop.exit_fd.iter().chain(&stop.pid_fd) {
            registry
                .register(&mut SourceFd(&fd.as_raw_fd()), EXIT, Interest::READABLE)
                .map_err(StackError::Poll)?;
        }
        let result = self.event_loop(&registry);
        self.shutdown(&registry);
        result
    }

    fn event_loop(&mut self, registry: &Registry) -> Result<(), StackError> {
        let mut events = Events::with_capacity(1024);
        let mut tap_readable = true;
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            // Frames the tap refused are retried every turn (a tap rarely refuses, and its
            // writability is not reliably signalled), soon if they stay.
            let blocked = self.device.has_pending() && !self.device.flush();
            let splices_ready = self.splicer.as_ref().is_some_and(Splicer::has_ready);
            let timeout = if tap_readable || self.device.rx_queued() > 0 || splices_ready {
                Some(Duration::ZERO)
            } else if blocked {
                Some(Duration::from_millis(1))
            } else {
                let now = self.smol_now();
                let smol = self
                    .iface
                    .poll_delay(now, &self.sockets)
                    .map(|d| Duration::from_micros(d.total_micros()));
                let sweep = next_sweep.saturating_duration_since(Instant::now());
                Some(smol.map_or(sweep, |d| d.min(sweep)))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StackError::Poll(e)),
            }
            let now = Instant::now();
            // Before this turn's events: what stopped at its budget last turn.
            if let Some(splicer) = &mut self.splicer {
                splicer.step_ready(registry);
            }
            for event in events.iter() {
                match event.token() {
                    TAP => {
                        if event.is_readable() || event.is_error() {
                            tap_readable = true;
                        }
                        if event.is_writable() && self.device.has_pending() {
                            self.device.flush();
                        }
                    }
                    SIGNALS | EXIT => return Ok(()),
                    token => {
                        let (kind, index) = Kind::of(token);
                        let mut ctx = ctx!(self, registry, now);
                        match kind {
                            k if k == Kind::TcpFlow as usize => self.tcp.on_event(index, event),
                            k if k == Kind::UdpFlow as usize => self.udp.on_readable(&mut ctx, index),
                            k if k == Kind::Ping as usize => self.echo.on_readable(&mut ctx, index),
                            k if k == Kind::Listener as usize => self.forwards.on_readable(
                                &mut ctx,
                                &mut self.tcp,
                                self.splicer.as_mut(),
                                index,
                            ),
                            k if k == Kind::Splice as usize => {
                                if let Some(splicer) = &mut self.splicer {
                                    splicer.on_event(registry, index);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            if tap_readable {
                tap_readable = self.read_tap(registry, now)?;
            }
            let smol_now = self.smol_now();
            self.iface.poll(smol_now, &mut self.device, &mut self.sockets);
            {
                let mut ctx = ctx!(self, registry, now);
                self.tcp.pump(&mut ctx);
            }
            self.iface.poll(smol_now, &mut self.device, &mut self.sockets);
            if now >= next_sweep {
                next_sweep = now + SWEEP;
                let mut ctx = ctx!(self, registry, now);
                self.udp.sweep(&mut ctx);
                self.echo.sweep(&mut ctx);
                self.forwards.sweep(now);
                self.fragments.sweep(now);
            }
            if let Some(e) = self.device.take_error() {
                return Err(StackError::Tap(e));
            }
        }
    }

    /// Reads up to a batch of frames from the tap; true when the batch was full (more may wait).
    fn read_tap(&mut self, registry: &Registry, now: Instant) -> Result<bool, StackError> {
        for _ in 0..RX_BATCH {
            let frame = match self.device.read_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(false),
                Err(e) => return Err(StackError::Tap(e)),
            };
            self.ingress(registry, now, frame);
        }
        Ok(true)
    }

    fn ingress(&mut self, registry: &Registry, now: Instant, frame: Frame) {
        if let Some((mac, ip)) = packet::source(frame.data()) {
            if self.nat.is_container(ip) && self.link.container_mac != Some(mac) && mac.is_unicast() {
                // The tap was made elsewhere (not by create_tap): learn the container's MAC.
                self.link.container_mac = Some(mac);
                let arp = packet::synthetic_arp_reply(&self.nat.slirp, mac);
                self.device.push_rx_bytes(&arp);
            }
        }
        if reassembly::is_fragment(frame.data()) {
            // Datagrams in pieces are relayed whole; TCP never comes fragmented (see classify).
            let whole = self.fragments.offer(frame.data(), now);
            self.device.recycle(frame);
            if let Some(whole) = whole {
                self.relay(registry, now, &whole);
            }
            return;
        }
        if self.relay(registry, now, frame.data()) {
            self.device.push_rx(frame);
        } else {
            self.device.recycle(frame);
        }
    }

    /// Relays what the frame carries; true when smoltcp must see it too.
    fn relay(&mut self, registry: &Registry, now: Instant, data: &[u8]) -> bool {
        let mut ctx = ctx!(self, registry, now);
        match packet::classify(data, &self.nat.slirp) {
            Ingress::Stack => true,
            Ingress::TcpSyn { src, dst } => {
                if ctx.device.rx_queued() > 0 && self.tcp.is_new(src, dst) {
                    // Let smoltcp take the frames before this SYN first: a listening socket
                    // made for an earlier SYN to the same destination must get that SYN, not
                    // this one.
                    let now = SmolInstant::from_micros(self.epoch.elapsed().as_micros() as i64);
                    ctx.iface.poll(now, ctx.device, ctx.sockets);
                }
                self.tcp.on_syn(&mut ctx, src, dst);
                true
            }
            Ingress::Udp { src, dst, payload } => {
                if !self.forwards.udp_reply(&ctx, src, dst, payload) {
                    self.udp.on_datagram(&mut ctx, src, dst, payload);
                }
                false
            }
            Ingress::Echo { src, dst, message } => {
                self.echo.on_echo(&mut ctx, src, dst, message);
                false
            }
            Ingress::Drop => false,
        }
    }

    fn shutdown(&mut self, registry: &Registry) {
        if let Some(splicer) = &mut self.splicer {
            splicer.abort_all(registry);
        }
        let mut ctx = ctx!(self, registry, Instant::now());
        self.tcp.abort_all(&mut ctx);
        // Send the container its RSTs, best effort.
        let now = self.smol_now();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
    }

    /// Counts of live relays (for tests and diagnostics): TCP flows, UDP flows.
    pub fn flow_counts(&self) -> (usize, usize) {
        (self.tcp.len(), self.udp.len())
    }

    /// The tap fd (for tests).
    pub fn tap_fd(&self) -> RawFd {
        self.device.raw_fd()
    }

    /// The DNS servers queries are relayed to.
    pub fn dns_servers(&self) -> &[IpAddr] {
        &self.nat.dns_servers
    }
}

/// A pidfd for `pid` (for [`StopOn::pid_fd`]).
pub fn pid_fd(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked before it is owned.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (for the helper process: its only
/// thread) and returns a signalfd that reads them, for [`StopOn::signal_fd`].
pub fn stop_signals() -> Result<OwnedFd, StackError> {
    signal_fd().map_err(StackError::Signals)
}

fn signal_fd() -> Result<OwnedFd, nix::Error> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    Ok(sfd.into())
}
