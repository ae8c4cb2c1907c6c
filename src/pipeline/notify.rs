//! systemd service notifications: readiness and the watchdog heartbeat.
//!
//! A unit with `Type=notify` waits for [`ready`] before it counts the service as started, and
//! one with `WatchdogSec=` restarts the service when [`watchdog`] has not been called for that
//! long. Both send one datagram (the `sd_notify` protocol: `READY=1`, `WATCHDOG=1`,
//! `STOPPING=1`) to the socket systemd names in `$NOTIFY_SOCKET`, a path or an abstract
//! address (`@name`). Without that variable (a run from a shell, the tests) every call does
//! nothing. A notification that cannot be sent is logged once and otherwise ignored: it never
//! stops the pipeline.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The environment variable through which systemd passes its notification socket.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells systemd the service has started (`READY=1`). Returns whether a message was sent.
pub fn ready() -> bool {
    notify("READY=1")
}

/// Pets the systemd watchdog (`WATCHDOG=1`). Returns whether a message was sent.
pub fn watchdog() -> bool {
    notify("WATCHDOG=1")
}

/// Tells systemd the service is shutting down (`STOPPING=1`).
pub fn stopping() -> bool {
    notify("STOPPING=1")
}

/// Whether the process runs under a supervisor that listens for notifications.
pub fn enabled() -> bool {
    target().is_some()
}

fn target() -> Option<&'static String> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var(NOTIFY_SOCKET).ok().filter(|s| !s.is_empty()))
        .as_ref()
}

/// Sends `state` to `$NOTIFY_SOCKET`; false when unset or on failure (logged once).
fn notify(state: &str) -> bool {
    let Some(addr) = target() else {
        return false;
    };
    match send(addr, state) {
        Ok(()) => true,
        Err(e) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!("cannot notify systemd at {addr}: {e}");
            }
            false
        }
    }
}

/// Sends one datagram to a socket path, or to an abstract address written `@name`.
pub fn send(addr: &str, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = addr.strip_prefix('@') {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &address)?;
            return Ok(());
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract socket addresses exist only on Linux",
            ));
        }
    }
    socket.send_to(state.as_bytes(), addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_reaches_an_abstract_address() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("clipsight-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(&format!("@{name}"), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        assert!(send("/nonexistent/clipsight/notify.sock", "READY=1").is_err());
    }
}
