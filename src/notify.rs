//! systemd's service notification protocol (sd_notify(3)): one datagram of `KEY=VALUE`
//! lines to the socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket). With `Type=notify` the unit is started only once READY=1 arrives, which
//! bucketfs sends when the mount is live; STOPPING=1 when it starts to unmount. Without
//! the variable nothing is sent.

use std::os::unix::net::UnixDatagram;

use tracing::warn;

/// Send `state` (newline-separated assignments) if `$NOTIFY_SOCKET` is set. A failure
/// is logged, never fatal: the mount works without its supervisor's bookkeeping.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        warn!(
            socket = %path.to_string_lossy(),
            "cannot notify systemd ({}): {e}",
            state.lines().next().unwrap_or_default()
        );
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// READY=1 for a mount that is live, with the serving process as the main PID (the
/// daemon's, when it forked).
pub fn ready(status: &str) {
    notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS={status}",
        std::process::id()
    ));
}

/// STOPPING=1: unmounting, pending uploads finishing.
pub fn stopping(status: &str) {
    notify(&format!("STOPPING=1\nSTATUS={status}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        send(p.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("bucketfs-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        // Nobody listening: an error, which notify() only logs.
        assert!(send(dir.path().join("none").as_os_str(), "READY=1").is_err());
    }
}
