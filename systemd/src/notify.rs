//! The sd_notify protocol: one datagram of newline-separated `KEY=VALUE` to `$NOTIFY_SOCKET`.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {0:?} is not an absolute path or abstract socket name")]
    BadSocket(String),
    #[error("sending to NOTIFY_SOCKET {socket:?}: {source}")]
    Send { socket: String, source: std::io::Error },
}

/// Sends `state` (for example `READY=1\nMAINPID=42`) to the socket named by `socket`, which
/// is the value of `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
pub fn notify(socket: &str, state: &str) -> Result<(), NotifyError> {
    let send_err = |source| NotifyError::Send {
        socket: socket.to_string(),
        source,
    };
    let addr = if let Some(name) = socket.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(send_err)?
    } else if socket.starts_with('/') {
        SocketAddr::from_pathname(socket).map_err(send_err)?
    } else {
        return Err(NotifyError::BadSocket(socket.to_string()));
    };
    let sock = UnixDatagram::unbound().map_err(send_err)?;
    sock.send_to_addr(state.as_bytes(), &addr).map_err(send_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_state_to_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify(path.to_str().unwrap(), "READY=1\nMAINPID=7").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nMAINPID=7");
    }

    #[test]
    fn rejects_relative_socket() {
        assert!(matches!(
            notify("relative", "READY=1"),
            Err(NotifyError::BadSocket(_))
        ));
    }
}
