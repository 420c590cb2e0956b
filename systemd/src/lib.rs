//! Where burrow meets the user's systemd manager. This crate starts with sd_notify, which
//! the monitor and `--sdnotify` use; units and quadlet build on it.

mod notify;

pub use notify::{notify, NotifyError};
