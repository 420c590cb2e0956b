//! burrow's userspace network stack: a slirp4netns-compatible network for rootless containers,
//! on smoltcp, run by `burrow __netstack` in the host's network namespace on a tap fd created in
//! the container's.
//!
//! - [`slirp`]: the addresses and options (one source of truth for the tap, the stack and
//!   resolv.conf); [`config`]: the stack's JSON configuration and `-p` parsing; [`dns`]: the host's
//!   resolvers.
//! - [`Stack`] ([`stack`]): the event loop over the tap ([`device`]), smoltcp's interface (any-IP,
//!   TCP only), and the relays: [`tcp`] flows, [`udp`] NAT, [`icmp`] echo, published ports
//!   ([`portfwd`]), whose loopback clients are [`splice`]d straight into the container's
//!   namespace (sockets made there by [`netns`]); [`packet`] reads and writes the frames outside
//!   smoltcp, [`nat`] decides where traffic goes.

pub mod config;
mod device;
pub mod dns;
mod icmp;
pub mod nat;
mod netns;
mod packet;
mod portfwd;
mod reassembly;
mod slab;
pub mod slirp;
mod splice;
mod stack;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;

pub use config::{PortForward, Protocol, PublishError, StackConfig};
pub use portfwd::PortError;
pub use slirp::{SlirpConfig, SlirpConfigError};
pub use stack::{pid_fd, stop_signals, Stack, StackError, StopOn};
