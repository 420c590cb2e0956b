//! burrow's userspace network stack. This crate starts with the slirp4netns-compatible
//! network configuration (addresses, MTU, options) that the runtime and the CLI share;
//! the smoltcp stack and port forwarding build on it.

mod slirp;

pub use slirp::{SlirpConfig, SlirpConfigError};
