//! `--log-level`: burrow's own diagnostics on stderr, in the logrus text format Podman's
//! `--log-level=debug` prints (`time="..." level=debug msg="..."`).

use std::sync::atomic::{AtomicU8, Ordering};

/// Podman's levels, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Trace,
    Debug,
    Info,
    #[value(alias = "warning")]
    Warn,
    Error,
    Fatal,
    Panic,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Prints `msg` when `--log-level` is debug or trace.
pub fn debug(msg: impl std::fmt::Display) {
    if LEVEL.load(Ordering::Relaxed) <= Level::Debug as u8 {
        let now = crate::commands::rfc3339(std::time::SystemTime::now());
        let text = msg.to_string().replace('\\', "\\\\").replace('"', "\\\"");
        eprintln!("time=\"{now}\" level=debug msg=\"{text}\"");
    }
}
