//! Where the mount daemon's logs go. In the foreground: stderr (colours only on a
//! terminal), or `--log-file`. In the background: `--log-file`, else syslog or the journal
//! when the `/dev/log` socket exists (one datagram per event, in the format glibc's
//! `syslog(3)` sends, with the event's level as the priority), else a default file in the
//! cache directory. SIGHUP never stops the daemon: it makes the next event reopen the log
//! file, so `logrotate` can move it away.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The syslog socket (journald's too, where systemd runs).
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Name of the default log file, in the bucket's cache directory.
pub const DEFAULT_FILE: &str = "bucketfs.log";

/// Where the logs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    File(PathBuf),
    Syslog(PathBuf),
}

/// The destination for a daemon started with `log_file` (`--log-file`), in the
/// background or not; `syslog` is the socket to use when it exists, `default_file`
/// the file otherwise.
pub fn destination(
    log_file: Option<&Path>,
    background: bool,
    syslog: &Path,
    default_file: &Path,
) -> Destination {
    use std::os::unix::fs::FileTypeExt;
    match log_file {
        Some(p) => Destination::File(p.to_path_buf()),
        None if !background => Destination::Stderr,
        None if std::fs::metadata(syslog).is_ok_and(|m| m.file_type().is_socket()) => {
            Destination::Syslog(syslog.to_path_buf())
        }
        None => Destination::File(default_file.to_path_buf()),
    }
}

/// Set when SIGHUP arrives; the next event written to a log file reopens it.
static REOPEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    REOPEN.store(true, Ordering::Relaxed);
}

/// SIGHUP asks for the log file to be reopened instead of killing the process. Installed
/// before any S3 request, so a SIGHUP during the mount's checks does not kill it either.
fn catch_hangup() -> Result<(), nix::Error> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_hangup),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGHUP, &action) }.map(|_| ())
}

/// Install the global subscriber (a second call does nothing) and the SIGHUP handler.
pub fn init(debug: bool, dest: &Destination) {
    let default = if debug {
        "info,bucketfs=debug"
    } else {
        "warn,bucketfs=info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let hangup = catch_hangup();
    let installed = match dest {
        Destination::Stderr => tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt.with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        Destination::File(p) => match ReopeningFile::open(p) {
            Ok(f) => tracing_subscriber::registry()
                .with(filter)
                .with(fmt.with_ansi(false).with_writer(f))
                .try_init(),
            // Checked before forking; if it fails now there is nowhere to say so.
            Err(_) => return,
        },
        Destination::Syslog(sock) => tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt.with_ansi(false)
                    .without_time()
                    .with_level(false)
                    .with_writer(Syslog::new(sock, "bucketfs")),
            )
            .try_init(),
    };
    if installed.is_ok() {
        if let Err(e) = hangup {
            tracing::warn!("cannot catch SIGHUP (it would stop the daemon): {e}");
        }
    }
}

/// Open `path` for appending, creating it.
fn open_append(path: &Path) -> std::io::Result<File> {
    File::options().create(true).append(true).open(path)
}

/// A log file that is reopened (by name) on the first event after a SIGHUP.
pub struct ReopeningFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopeningFile {
    pub fn open(path: &Path) -> std::io::Result<ReopeningFile> {
        Ok(ReopeningFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        })
    }

    /// Reopen the file by its name; on failure the old one stays in use.
    pub fn reopen(&self) {
        if let Ok(f) = open_append(&self.path) {
            *self.file.lock() = f;
        }
    }
}

/// One event's write into the file, under its lock.
pub struct FileWriter<'a>(parking_lot::MutexGuard<'a, File>);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for ReopeningFile {
    type Writer = FileWriter<'a>;
    fn make_writer(&'a self) -> FileWriter<'a> {
        if REOPEN.swap(false, Ordering::Relaxed) {
            self.reopen();
        }
        FileWriter(self.file.lock())
    }
}

/// Syslog over a datagram socket: each event is one datagram
/// `<PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE`, facility daemon.
pub struct Syslog {
    path: PathBuf,
    ident: &'static str,
    socket: Mutex<Option<UnixDatagram>>,
}

impl Syslog {
    pub fn new(path: &Path, ident: &'static str) -> Syslog {
        Syslog {
            path: path.to_path_buf(),
            ident,
            socket: Mutex::new(None),
        }
    }

    /// Send one message; reconnects once if the socket went away (the syslog daemon
    /// restarted). A message that cannot be sent is dropped: there is nowhere else to
    /// report it.
    fn send(&self, level: Level, message: &[u8]) {
        let line = syslog_line(level, self.ident, std::process::id(), &timestamp(), message);
        let mut sock = self.socket.lock();
        for _ in 0..2 {
            if sock.is_none() {
                *sock = UnixDatagram::unbound()
                    .and_then(|s| s.connect(&self.path).map(|()| s))
                    .ok();
            }
            match sock.as_ref().map(|s| s.send(&line)) {
                Some(Ok(_)) => return,
                _ => *sock = None,
            }
        }
    }
}

/// The syslog severity of a tracing level.
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// LOG_DAEMON.
const FACILITY: u8 = 3;

/// One syslog datagram (RFC 3164, as glibc writes them to /dev/log).
fn syslog_line(level: Level, ident: &str, pid: u32, time: &str, message: &[u8]) -> Vec<u8> {
    let pri = FACILITY * 8 + severity(level);
    let mut line = format!("<{pri}>{time} {ident}[{pid}]: ").into_bytes();
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    line.extend_from_slice(message);
    line
}

/// The local time as syslog writes it: `Dec  7 09:05:01`.
fn timestamp() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = libc::time_t::try_from(now).unwrap_or(0);
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return "Jan  1 00:00:00".to_string();
        }
        tm
    };
    let month = MONTHS
        .get(usize::try_from(tm.tm_mon).unwrap_or(0))
        .unwrap_or(&"Jan");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

/// One event, sent as one datagram when the formatter is done with it.
pub struct SyslogEvent<'a> {
    owner: &'a Syslog,
    level: Level,
    buf: Vec<u8>,
}

impl Write for SyslogEvent<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogEvent<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.owner.send(self.level, &self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogEvent<'a>;
    fn make_writer(&'a self) -> SyslogEvent<'a> {
        SyslogEvent {
            owner: self,
            level: Level::INFO,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogEvent<'a> {
        SyslogEvent {
            owner: self,
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_follows_the_options_and_the_syslog_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("log.sock");
        let file = dir.path().join("default.log");
        let given = dir.path().join("given.log");
        let d = |log: Option<&Path>, bg| destination(log, bg, &sock, &file);
        assert_eq!(d(None, false), Destination::Stderr);
        assert_eq!(d(Some(&given), false), Destination::File(given.clone()));
        assert_eq!(d(Some(&given), true), Destination::File(given.clone()));
        // No socket: the default file.
        assert_eq!(d(None, true), Destination::File(file.clone()));
        // A plain file at the socket's path is no socket.
        std::fs::write(&sock, b"").unwrap();
        assert_eq!(d(None, true), Destination::File(file.clone()));
        std::fs::remove_file(&sock).unwrap();
        let _server = UnixDatagram::bind(&sock).unwrap();
        assert_eq!(d(None, true), Destination::Syslog(sock.clone()));
        assert_eq!(d(Some(&given), true), Destination::File(given));
    }

    #[test]
    fn each_event_is_one_datagram_with_its_priority() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&sock).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let syslog = Syslog::new(&sock, "bucketfs");
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_writer(syslog),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(n = 3, "three failed");
            tracing::info!("mounted");
        });
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).to_string();
        let n = server.recv(&mut buf).unwrap();
        let second = String::from_utf8_lossy(&buf[..n]).to_string();
        let pid = std::process::id();
        // <28> = daemon.warning, <30> = daemon.info; a timestamp, then IDENT[PID]: MSG.
        assert!(first.starts_with("<28>"), "{first:?}");
        assert!(
            first.ends_with(&format!(" bucketfs[{pid}]: three failed n=3")),
            "{first:?}"
        );
        assert!(second.starts_with("<30>"), "{second:?}");
        assert!(
            second.ends_with(&format!(" bucketfs[{pid}]: mounted")),
            "{second:?}"
        );
        assert!(!first.contains('\x1b') && !first.contains('\n'));
        // "<28>Dec  7 09:05:01 bucketfs": the timestamp is 15 characters.
        assert_eq!(first.as_bytes()[4 + 15], b' ', "{first:?}");
    }

    #[test]
    fn syslog_lines() {
        let l = syslog_line(Level::ERROR, "bucketfs", 7, "Dec  7 09:05:01", b"boom\n");
        assert_eq!(l, b"<27>Dec  7 09:05:01 bucketfs[7]: boom");
        let l = syslog_line(Level::DEBUG, "x", 1, "Jan  1 00:00:00", b"d");
        assert_eq!(l, b"<31>Jan  1 00:00:00 x[1]: d");
    }

    #[test]
    fn a_hangup_makes_the_next_event_write_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.log");
        let f = ReopeningFile::open(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(f),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before");
            std::fs::rename(&path, dir.path().join("b.log.1")).unwrap();
            tracing::info!("still the old file");
            on_hangup(libc::SIGHUP);
            tracing::info!("after");
        });
        let old = std::fs::read_to_string(dir.path().join("b.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.contains("before") && old.contains("still the old file"),
            "{old}"
        );
        assert!(new.contains("after") && !new.contains("before"), "{new}");
    }
}
