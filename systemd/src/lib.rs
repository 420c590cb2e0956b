//! Where burrow meets the user's systemd manager, instead of a daemon of its own: sd_notify,
//! a small D-Bus client for transient units, unit files (`generate systemd`) and quadlet.

pub mod bus;
mod notify;
pub mod quadlet;
pub mod scope;
pub mod unit;
pub mod warm;

pub use notify::{notify, NotifyError};
