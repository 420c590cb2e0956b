//! Published ports: listening sockets on the host. TCP connections are spliced into the container
//! ([`crate::splice`]) when the client is on the loopback, and otherwise handed to the TCP relay
//! ([`crate::tcp::TcpRelay::accept_inbound`]); UDP datagrams go to the container from the
//! client's address, and the container's replies go back out of the published socket.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Registry};

use crate::config::{PortForward, Protocol};
use crate::splice::Splicer;
use crate::stack::{Ctx, Kind};
use crate::tcp::TcpRelay;
use crate::udp;

/// A UDP client of a published port is forgotten after this long without traffic.
const UDP_IDLE: Duration = Duration::from_secs(240);

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(
        "cannot listen on {addr}/{proto}: ports below {start} are privileged for unprivileged users \
         (net.ipv4.ip_unprivileged_port_start = {start}); publish a port >= {start}, or as root run \
         `sysctl -w net.ipv4.ip_unprivileged_port_start={port}`"
    )]
    Privileged {
        addr: SocketAddr,
        proto: Protocol,
        start: u32,
        port: u16,
    },
    /// As Podman words it: `listen tcp 0.0.0.0:8080: bind: address already in use`.
    #[error("listen {proto} {addr}: bind: {}", errno_text(.error))]
    Bind {
        addr: SocketAddr,
        proto: Protocol,
        error: io::Error,
    },
    #[error("registering {addr}/{proto} with the event loop: {source}")]
    Register {
        addr: SocketAddr,
        proto: Protocol,
        #[source]
        source: io::Error,
    },
}

/// An OS error as Go prints it: strerror in lower case, without "(os error N)".
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = nix::errno::Errno::from_raw(n).desc();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text.to_string(),
            }
        }
        None => e.to_string(),
    }
}

struct UdpClient {
    real: SocketAddr,
    last_active: Instant,
}

enum Listener {
    Tcp(TcpListener),
    Udp {
        socket: UdpSocket,
        /// Source the container sees → the real client.
        clients: HashMap<SocketAddr, UdpClient>,
        by_real: HashMap<SocketAddr, SocketAddr>,
    },
}

struct Published {
    forward: PortForward,
    listener: Listener,
}

#[derive(Default)]
pub struct Forwards {
    published: Vec<Published>,
    scratch: Vec<u8>,
}

/// `net.ipv4.ip_unprivileged_port_start` (1024 when it cannot be read).
pub fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Whether a socket bound to [::] also takes IPv4 clients (as Podman's listeners on every
/// address do): the host has IPv6 and `net.ipv6.bindv6only` is 0.
fn dual_stack() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "0")
        && std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).is_ok()
}

impl Forwards {
    /// Binds every published port; fails on the first that cannot be bound (nothing stays bound).
    pub fn bind(forwards: &[PortForward], registry: &Registry) -> Result<Forwards, PortError> {
        let mut out = Forwards::default();
        for forward in forwards {
            // Named as Podman names it in messages: 0.0.0.0 for "every address".
            let addr = SocketAddr::new(
                forward.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                forward.host_port,
            );
            let bind_addr = match forward.host_ip {
                None if dual_stack() => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), forward.host_port),
                _ => addr,
            };
            let proto = forward.proto;
            let bind_error = |source: io::Error| {
                let start = unprivileged_port_start();
                if source.kind() == io::ErrorKind::PermissionDenied && u32::from(addr.port()) < start {
                    PortError::Privileged {
                        addr,
                        proto,
                        start,
                        port: addr.port(),
                    }
                } else {
                    PortError::Bind {
                        addr,
                        proto,
                        error: source,
                    }
                }
            };
            let index = out.published.len();
            let token = Kind::Listener.token(index);
            let register_error = |source| PortError::Register { addr, proto, source };
            let (listener, bound) = match proto {
                Protocol::Tcp => {
                    let mut l = TcpListener::bind(bind_addr).map_err(bind_error)?;
                    registry
                        .register(&mut l, token, Interest::READABLE)
                        .map_err(register_error)?;
                    let bound = l.local_addr().map_err(bind_error)?;
                    (Listener::Tcp(l), bound)
                }
                Protocol::Udp => {
                    let mut s = UdpSocket::bind(bind_addr).map_err(bind_error)?;
                    registry
                        .register(&mut s, token, Interest::READABLE)
                        .map_err(register_error)?;
                    let bound = s.local_addr().map_err(bind_error)?;
                    (
                        Listener::Udp {
                            socket: s,
                            clients: HashMap::new(),
                            by_real: HashMap::new(),
                        },
                        bound,
                    )
                }
            };
            let mut forward = forward.clone();
            forward.host_port = bound.port();
            out.published.push(Published { forward, listener });
        }
        Ok(out)
    }

    /// The published ports, with the ports the kernel chose for `host_port: 0`.
    pub fn published(&self) -> Vec<PortForward> {
        self.published.iter().map(|p| p.forward.clone()).collect()
    }

    /// A published socket is readable: accept connections, or relay datagrams.
    pub fn on_readable(
        &mut self,
        ctx: &mut Ctx,
        tcp: &mut TcpRelay,
        mut splicer: Option<&mut Splicer>,
        index: usize,
    ) {
        let Some(p) = self.published.get_mut(index) else {
            return;
        };
        let container_port = p.forward.container_port;
        match &mut p.listener {
            Listener::Tcp(listener) => loop {
                match listener.accept() {
                    Ok((stream, client)) => {
                        let stream = match splicer.as_deref_mut() {
                            Some(splicer) => {
                                match splicer.accept(ctx.registry, ctx.nat, stream, client, container_port) {
                                    Ok(()) => continue,
                                    Err(stream) => stream,
                                }
                            }
                            None => stream,
                        };
                        tcp.accept_inbound(ctx, stream, client, container_port)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // WouldBlock, or a transient error (EMFILE, ECONNABORTED): wait for the next event.
                    Err(_) => break,
                }
            },
            Listener::Udp {
                socket,
                clients,
                by_real,
            } => {
                if self.scratch.len() < 65536 {
                    self.scratch.resize(65536, 0);
                }
                loop {
                    let (n, real) = match socket.recv_from(&mut self.scratch) {
                        Ok(r) => r,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    };
                    let visible = match by_real.get(&real) {
                        Some(v) => *v,
                        None => {
                            let ip = ctx.nat.inbound_source(real);
                            let mut port = real.port();
                            let mut tries = 0;
                            while clients.contains_key(&SocketAddr::new(ip, port)) && tries < 64 {
                                port = 32768 + ((u32::from(port) * 7 + 1) % 28232) as u16;
                                tries += 1;
                            }
                            let v = SocketAddr::new(ip, port);
                            by_real.insert(real, v);
                            v
                        }
                    };
                    clients.insert(
                        visible,
                        UdpClient {
                            real,
                            last_active: ctx.now,
                        },
                    );
                    let container =
                        SocketAddr::new(ctx.nat.container_address_for(visible.ip()), container_port);
                    udp::send_to_container(ctx, visible, container, &self.scratch[..n]);
                }
            }
        }
    }

    /// A datagram from the container: if it answers a published UDP port's client, sends it
    /// back out of that port and returns true.
    pub fn udp_reply(&mut self, ctx: &Ctx, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> bool {
        for p in &mut self.published {
            if p.forward.container_port != src.port() {
                continue;
            }
            if let Listener::Udp { socket, clients, .. } = &mut p.listener {
                if let Some(client) = clients.get_mut(&dst) {
                    client.last_active = ctx.now;
                    let _ = socket.send_to(payload, client.real);
                    return true;
                }
            }
        }
        false
    }

    /// Forgets idle UDP clients.
    pub fn sweep(&mut self, now: Instant) {
        for p in &mut self.published {
            if let Listener::Udp { clients, by_real, .. } = &mut p.listener {
                clients.retain(|_, c| now.duration_since(c.last_active) < UDP_IDLE);
                by_real.retain(|_, v| clients.contains_key(v));
            }
        }
    }
}
