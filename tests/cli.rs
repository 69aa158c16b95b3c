//! The command line and the daemon's operation as a user sees them: argument errors,
//! checks before daemonizing, where logs go, signals. Tests named `offline_*` need no S3
//! server (their mounts fail on purpose before or at the first request); the others
//! mount over the test server.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, Bucket, Mount};

/// A mount command that fails at its first S3 request if it gets that far: nothing
/// listens on port 1.
fn offline_mount(target: &str, dir: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args(["mount", target])
        .arg(dir)
        .args([
            "--endpoint-url",
            "http://127.0.0.1:1",
            "--region",
            "us-east-1",
        ])
        .args(["--retry-window", "0"])
        .args(extra)
        // Never the real ~/.cache/bucketfs.
        .env("XDG_CACHE_HOME", dir.with_extension("cache"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Exit 1 or 2 (never a panic's 101) with exactly one line on stderr containing `want`.
fn assert_one_line_error(o: &Output, want: &str) {
    let err = stderr(o);
    let code = o.status.code();
    assert!(matches!(code, Some(1 | 2)), "exit {code:?}: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.contains(want), "{want:?} not in {err:?}");
}

#[test]
fn offline_extreme_option_values_are_one_line_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for (opt, v, want) in [
        ("--metadata-ttl", "1e20", "between 0 and 31536000 seconds"),
        ("--metadata-ttl", "1e11", "between 0 and 31536000 seconds"),
        ("--metadata-ttl", "NaN", "not a number of seconds"),
        ("--part-size", "0", "5..=5120"),
        ("--max-concurrency", "0", "1..=64"),
        (
            "--retry-window",
            "-1",
            "unexpected argument '-1' found; tip:",
        ),
    ] {
        let o = offline_mount("bkt", dir.path(), &[opt, v]);
        assert_eq!(o.status.code(), Some(2), "{opt} {v}: {}", stderr(&o));
        assert_one_line_error(&o, want);
        assert!(stderr(&o).starts_with("bucketfs: "), "{}", stderr(&o));
    }
}

#[test]
fn offline_a_non_empty_mountpoint_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let o = offline_mount("bkt", dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_one_line_error(&o, "is not empty");
    assert!(stderr(&o).contains("--allow-non-empty"), "{}", stderr(&o));
    // With the flag the check passes: the mount goes on and fails at the endpoint.
    let o = offline_mount("bkt", dir.path(), &["--allow-non-empty"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("not empty"), "{}", stderr(&o));
}

#[test]
fn offline_the_cache_dir_must_be_a_writable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let o = offline_mount("bkt", &mnt, &["--cache-dir", "/proc/version"]);
    assert_one_line_error(&o, "cache directory /proc/version is not a directory");
    let o = offline_mount("bkt", &mnt, &["--cache-dir", "/proc"]);
    assert_one_line_error(&o, "cache directory /proc is not writable");
    // A missing one is made (then the mount fails at the endpoint, later).
    let made = dir.path().join("new/cache");
    let o = offline_mount("bkt", &mnt, &["--cache-dir", made.to_str().unwrap()]);
    assert!(made.is_dir(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("cache directory"), "{}", stderr(&o));
}

#[test]
fn offline_an_upper_case_scheme_names_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let o = offline_mount(
        "S3://demo",
        dir.path(),
        &["--cache-dir", dir.path().to_str().unwrap()],
    );
    // The daemon's error names the bucket it tried: demo, not "S3:".
    let err = stderr(&o);
    assert!(err.contains("s3://demo/"), "{err}");
    assert!(!err.contains("S3:"), "{err}");
}

/// Wait until `dir` is a mount point (true) or `secs` passed (false).
fn wait_mounted(dir: &Path, secs: u64) -> bool {
    let want = dir.to_str().unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if info.lines().any(|l| l.split(' ').nth(4) == Some(want)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Wait for process `pid` to exit.
fn wait_exit(pid: u32, secs: u64) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie nobody reaps yet.
        if stat.is_empty() || stat.split(' ').nth(2) == Some("Z") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn unmount(dir: &Path) {
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "fusermount3 -u {}", dir.display());
}

#[test]
fn a_non_empty_mountpoint_mounts_with_allow_non_empty() {
    let b = Bucket::new("nonempty");
    b.put("in-bucket.txt", "s3");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("under.txt"), b"hidden").unwrap();
    let log = dir.path().with_extension("log");
    let o = common::mount_cmd(&b.name, dir.path(), &log, &["--allow-non-empty"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    unmount(dir.path());
    assert_eq!(seen, ["in-bucket.txt"]);
    assert_eq!(
        std::fs::read(dir.path().join("under.txt")).unwrap(),
        b"hidden"
    );
}

#[test]
fn the_foreground_log_on_a_pipe_has_no_colours() {
    let b = Bucket::new("nocolour");
    let dir = tempfile::tempdir().unwrap();
    let errlog = dir.path().with_extension("stderr");
    let mut child = Command::new(bin())
        .args(["mount", &b.name])
        .arg(dir.path())
        .args(["--endpoint-url", &common::endpoint(), "--force-path-style"])
        .args(["--region", "us-east-1", "--foreground"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .stderr(std::fs::File::create(&errlog).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mounted = wait_mounted(dir.path(), 30);
    if mounted {
        unmount(dir.path());
    } else {
        let _ = child.kill();
    }
    child.wait().unwrap();
    let err = std::fs::read_to_string(&errlog).unwrap();
    assert!(mounted, "did not mount: {err}");
    assert!(err.contains("mounted"), "{err}");
    assert!(!err.contains('\x1b'), "ANSI codes in a piped log: {err:?}");
}

#[test]
fn sighup_reopens_the_log_file_and_the_mount_stays() {
    let b = Bucket::new("hup");
    b.put("f.txt", "still here");
    let m = Mount::new(&b.name, &[]);
    let pid = m.daemon_pid();
    let rotated = m.log.with_extension("log.1");
    std::fs::rename(&m.log, &rotated).unwrap();
    let kill = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    kill("-HUP");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(m.p("f.txt")).unwrap(),
        "still here",
        "the mount is gone after SIGHUP"
    );
    // SIGUSR1 logs a line: it goes to the file under the old name.
    kill("-USR1");
    let until = Instant::now() + Duration::from_secs(10);
    while !m.log_text().contains("SIGUSR1") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        m.log_text().contains("SIGUSR1"),
        "new log: {}",
        m.log_text()
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("mounted") && !old.contains("SIGUSR1"), "{old}");
}

#[test]
fn the_unmount_stats_line_is_logged_once() {
    let b = Bucket::new("statsonce");
    let m = Mount::new(&b.name, &[]);
    std::fs::write(m.p("a.txt"), b"x").unwrap();
    let pid = m.daemon_pid();
    unmount(m.path());
    assert!(wait_exit(pid, 30), "the daemon did not exit");
    let log = m.log_text();
    let n = log
        .lines()
        .filter(|l| l.contains("S3 requests:") && l.contains("unmount"))
        .count();
    assert_eq!(n, 1, "{log}");
}

#[test]
fn in_the_background_without_log_file_logs_go_to_the_default_file() {
    if Path::new("/dev/log").exists() {
        eprintln!("skipped: /dev/log exists, logs go to syslog (unit-tested in logging.rs)");
        return;
    }
    let b = Bucket::new("deflog");
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["mount", &b.name])
        .arg(dir.path())
        .args(["--endpoint-url", &common::endpoint(), "--force-path-style"])
        .args(["--region", "us-east-1", "--cache-dir"])
        .arg(cache.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    unmount(dir.path());
    let file = cache.path().join(&b.name).join("bucketfs.log");
    let until = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&file).unwrap_or_default();
        if t.contains("S3 requests:") || Instant::now() > until {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("mounted"), "{}: {text:?}", file.display());
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn offline_all_buckets_takes_only_a_mountpoint_and_fails_on_listbuckets() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ["--cache-dir", dir.path().to_str().unwrap()];
    // A bucket and --all-buckets together: one line, before any request.
    let mut extra = cache.to_vec();
    extra.push("--all-buckets");
    let o = offline_mount("demo", dir.path(), &extra);
    assert_one_line_error(&o, "--all-buckets mounts every bucket");
    // --version-at needs one bucket.
    let mut extra = cache.to_vec();
    extra.extend(["--version-at", "2026-01-01T00:00:00Z"]);
    let o = offline_mount("s3://", dir.path(), &extra);
    assert_one_line_error(&o, "--version-at needs one bucket");
    // s3:// is the whole account: the mount fails on ListBuckets, naming the endpoint.
    let o = offline_mount("S3://", dir.path(), &cache);
    assert_one_line_error(&o, "cannot reach the S3 endpoint http://127.0.0.1:1");
    // --all-buckets MOUNTPOINT: the one positional is the mountpoint.
    let o = Command::new(bin())
        .args(["mount", "--all-buckets"])
        .arg(dir.path().join("missing"))
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .unwrap();
    assert_one_line_error(&o, "missing");
    assert!(stderr(&o).contains("mountpoint"), "{}", stderr(&o));
}

/// The mountinfo line of the mount at `dir`: (source, fs type, per-mount options).
fn mount_entry(dir: &Path) -> Option<(String, String, String)> {
    let want = dir.to_str().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(4) != Some(&want) {
            return None;
        }
        let sep = f.iter().position(|x| *x == "-")?;
        Some((
            f[sep + 2].to_string(),
            f[sep + 1].to_string(),
            f[5].to_string(),
        ))
    })
}

/// A directory holding `name`, a symlink to the bucketfs binary.
fn link_dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let link = d.path().join(name);
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    (d, link)
}

#[test]
fn the_mount_helper_takes_o_options_as_mount_8_passes_them() {
    let b = Bucket::new("helper");
    b.put("dir/f.txt", "via fstab");
    let (_links, helper) = link_dir("mount.fuse.bucketfs");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().with_extension("log");
    let opts = format!(
        "rw,_netdev,nofail,noauto,user,x-systemd.automount,x-systemd.mount-timeout=30,\
         allow_other,endpoint_url={},force_path_style,region=us-east-1,log_file={},\
         metadata_ttl=0.5,ro",
        common::endpoint(),
        log.display()
    );
    let o = common::loopback_env(
        Command::new(&helper)
            .arg(format!("{}/dir", b.name))
            .arg(dir.path())
            .args(["-n", "-o", &opts]),
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let entry = mount_entry(dir.path());
    let read = std::fs::read_to_string(dir.path().join("f.txt"));
    let write = std::fs::write(dir.path().join("new.txt"), b"x");
    unmount(dir.path());
    let (source, fstype, mopts) = entry.expect("not mounted");
    assert_eq!(fstype, "fuse.bucketfs");
    assert_eq!(source, format!("{}/dir", b.name));
    assert!(mopts.split(',').any(|o| o == "ro"), "{mopts}");
    assert_eq!(read.unwrap(), "via fstab");
    assert_eq!(write.unwrap_err().raw_os_error(), Some(libc::EROFS));

    // -f (fake) mounts nothing and succeeds; a bad option fails as one line.
    let o = Command::new(&helper)
        .arg(&b.name)
        .arg(dir.path())
        .args(["-f", "-o", "region=us-east-1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(mount_entry(dir.path()).is_none());
    let o = Command::new(&helper)
        .arg(&b.name)
        .arg(dir.path())
        .args(["-o", "endpoint=http://x"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "unknown mount option \"endpoint\"");
}

#[test]
fn fuse3_mount_helper_runs_bucketfs_source_mountpoint_o() {
    // fuse3's own helper, as `mount -t fuse.bucketfs` runs it when no
    // mount.fuse.bucketfs is installed: it finds `bucketfs` on PATH.
    let b = Bucket::new("fuse3helper");
    b.put("g.txt", "via mount.fuse3");
    let (links, _) = link_dir("bucketfs");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().with_extension("log");
    let path = format!(
        "{}:{}",
        links.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut fuse3 = Command::new("mount.fuse3");
    fuse3
        .arg(&b.name)
        .arg(dir.path())
        .args(["-t", "fuse.bucketfs", "-o"])
        .arg(format!(
            "_netdev,endpoint_url={},force_path_style,region=us-east-1,log_file={}",
            common::endpoint(),
            log.display()
        ))
        .env("PATH", path);
    let o = common::loopback_env(&mut fuse3).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let entry = mount_entry(dir.path());
    let read = std::fs::read_to_string(dir.path().join("g.txt"));
    unmount(dir.path());
    let (source, fstype, _) = entry.expect("not mounted");
    assert_eq!(
        (source.as_str(), fstype.as_str()),
        (b.name.as_str(), "fuse.bucketfs")
    );
    assert_eq!(read.unwrap(), "via mount.fuse3");
}

/// Receive one notification datagram (a hang guard, not a synchronisation: recv
/// returns as soon as the daemon sends).
fn recv_notice(sock: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("no notification within 60 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn systemd_hears_ready_once_the_mount_is_live_and_stopping_at_unmount() {
    let b = Bucket::new("notify");
    b.put("n.txt", "ready");
    let sockdir = tempfile::tempdir().unwrap();
    let sock_path = sockdir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();

    // In the foreground, as a Type=notify unit runs it.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().with_extension("log");
    let mut child = common::mount_cmd(&b.name, dir.path(), &log, &["--foreground"])
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = recv_notice(&sock);
    // At READY=1 the files are there already.
    let read = std::fs::read_to_string(dir.path().join("n.txt"));
    unmount(dir.path());
    let stopping = recv_notice(&sock);
    let status = child.wait().unwrap();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("MAINPID={}", child.id())),
        "{ready:?}"
    );
    assert_eq!(read.unwrap(), "ready");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(status.success());

    // Daemonized: READY=1 names the daemon, not the parent that exits.
    let dir = tempfile::tempdir().unwrap();
    let parent = common::mount_cmd(&b.name, dir.path(), &log, &[])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let parent_pid = parent.id();
    let o = parent.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ready = recv_notice(&sock);
    let pid: u32 = ready
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .and_then(|p| p.parse().ok())
        .expect("MAINPID");
    let m_dir = dir.path().to_path_buf();
    let live = mount_entry(&m_dir).is_some();
    let daemon_alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    unmount(&m_dir);
    let stopping = recv_notice(&sock);
    assert!(live);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert_ne!(pid, parent_pid);
    assert!(daemon_alive, "MAINPID {pid} is not running while mounted");
    assert!(
        wait_exit(pid, 30),
        "the daemon {pid} did not exit at unmount"
    );
    assert!(stopping.contains("STOPPING=1"), "{stopping:?}");
}

/// A command of the binary with an environment of nothing but `env`: no AWS_* from
/// the caller, HOME and the AWS config files in a temporary directory (so the
/// machine's own configuration is never read), the instance metadata disabled.
fn clean(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("XDG_CACHE_HOME", home.join("cache"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Static credentials, for the cases that are about something else.
const CREDS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "bucketfs-test"),
    ("AWS_SECRET_ACCESS_KEY", "bucketfs-test-secret"),
];

/// A temporary HOME with an empty mountpoint in it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        Home { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn mnt(&self) -> String {
        self.dir.path().join("mnt").to_str().unwrap().to_string()
    }
    /// `bucketfs mount TARGET MNT ARGS...` in this home.
    fn mount(&self, target: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mnt = self.mnt();
        let mut all = vec!["mount", target, mnt.as_str()];
        all.extend(args);
        clean(self.path(), &all, env)
    }
}

/// A message meant for a user has no Debug dump of an SDK error in it.
fn assert_no_debug(text: &str) {
    for bad in ["{ ", "}", "Some(", "DispatchFailure", "ConnectorError"] {
        assert!(!text.contains(bad), "{bad:?} in {text:?}");
    }
}

/// Exit 1, one line, `want` in it, no Debug text; the line.
fn assert_mount_error(o: &Output, want: &str) -> String {
    assert_one_line_error(o, want);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let err = stderr(o);
    assert_no_debug(&err);
    err
}

/// A port on 127.0.0.1 that nothing listens on: bound, then let go.
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A listener that accepts connections and never answers; they stay open until the
/// test process ends.
fn silent_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
    url
}

/// A listener that never accepts, its backlog filled: a connection to it gets no
/// answer at all. The listener and the connection that fills it are returned, to
/// be kept alive.
fn full_endpoint() -> (String, std::net::TcpListener, Vec<std::net::TcpStream>) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen again on the listener's own socket, with a backlog of 0.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().unwrap();
    let mut fill = Vec::new();
    while let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        fill.push(c);
        assert!(fill.len() < 64, "the backlog never fills");
    }
    (format!("http://{addr}"), l, fill)
}

/// A one-shot HTTP server on 127.0.0.1 that answers every request with `reply`.
fn canned_endpoint(reply: String) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let reply = reply.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if c.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                        continue;
                    }
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    url
}

/// A plain-HTTP server on 127.0.0.1 that answers whatever arrives first (a TLS
/// ClientHello too) with `reply`, then closes.
fn eager_endpoint(reply: &'static str) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(reply.as_bytes());
        }
    });
    url
}

/// `bucketfs mount bkt` at `url` with `args` fails within `within`, with the one line
/// that the endpoint did not answer within `waited`; the line.
fn assert_no_answer(
    home: &Home,
    url: &str,
    args: &[&str],
    waited: &str,
    within: Duration,
) -> String {
    let mut all = vec!["--endpoint-url", url];
    all.extend(args);
    let start = Instant::now();
    let o = home.mount("bkt", &all, CREDS);
    let took = start.elapsed();
    let err = assert_mount_error(
        &o,
        &format!("the S3 endpoint {url} did not answer within {waited}"),
    );
    assert!(took < within, "{took:?}: {err}");
    err
}

#[test]
fn offline_an_endpoint_that_accepts_and_never_answers_fails_the_mount_within_15_s() {
    let home = Home::new();
    let url = silent_endpoint();
    // No --region: the region lookup (HeadBucket) is the request that waits.
    let err = assert_no_answer(&home, &url, &[], "10 s", Duration::from_secs(15));
    assert!(err.contains("--request-timeout"), "{err}");
    // --connect-timeout and --request-timeout shorten the wait, and the line says so.
    let args = ["--region", "us-east-1", "--request-timeout", "2"];
    assert_no_answer(&home, &url, &args, "2 s", Duration::from_secs(8));
}

#[test]
fn offline_an_endpoint_that_never_accepts_fails_the_mount_within_15_s() {
    let home = Home::new();
    let (url, _listener, _fill) = full_endpoint();
    let args = ["--region", "us-east-1"];
    assert_no_answer(&home, &url, &args, "10 s", Duration::from_secs(15));
    let args = ["--region", "us-east-1", "--connect-timeout", "1"];
    let err = assert_no_answer(&home, &url, &args, "1 s", Duration::from_secs(6));
    assert!(err.contains("--connect-timeout"), "{err}");
}

#[test]
fn offline_no_credentials_names_the_sources_tried() {
    let home = Home::new();
    let url = format!("http://127.0.0.1:{}", refused_port());
    let args = ["--endpoint-url", url.as_str(), "--region", "us-east-1"];
    let o = home.mount("bkt", &args, &[]);
    let err = assert_mount_error(&o, "no AWS credentials found");
    for source in [
        "environment",
        "config and credentials files",
        "SSO",
        "web identity",
        "container and instance metadata",
        "--no-sign-request",
    ] {
        assert!(err.contains(source), "{source:?} not in {err}");
    }
    assert!(!err.contains("cannot reach"), "{err}");
    // rm and presign say the same before any request.
    let target = "s3://bkt/k";
    let o = clean(
        home.path(),
        &["rm", target, "--retry-window", "0"]
            .iter()
            .chain(&args)
            .copied()
            .collect::<Vec<_>>(),
        &[],
    );
    let err = assert_mount_error(&o, "no AWS credentials found");
    assert!(err.starts_with("bucketfs rm: "), "{err}");
    let o = clean(
        home.path(),
        &["presign", target]
            .iter()
            .chain(&args)
            .copied()
            .collect::<Vec<_>>(),
        &[],
    );
    let err = assert_mount_error(&o, "no AWS credentials found");
    assert!(err.starts_with("bucketfs presign: "), "{err}");
    // Unsigned requests need none: the mount goes on to the endpoint.
    let o = home.mount("bkt", &[&args[..], &["--no-sign-request"]].concat(), &[]);
    assert_mount_error(&o, "connection refused");
}

#[test]
fn offline_a_profile_that_is_not_there_is_named_with_the_files() {
    let home = Home::new();
    let url = format!("http://127.0.0.1:{}", refused_port());
    let args = [
        "--endpoint-url",
        url.as_str(),
        "--region",
        "us-east-1",
        "--profile",
        "nope",
    ];
    let config = home.path().join("aws-config");
    let creds = home.path().join("aws-credentials");
    // No config files at all.
    let o = home.mount("bkt", &args, &[]);
    let err = assert_mount_error(&o, "AWS profile \"nope\" not found in ");
    assert!(
        err.contains(&format!("{} (missing)", config.display()))
            && err.contains(&format!("{} (missing)", creds.display())),
        "{err}"
    );
    // Files with other profiles; environment credentials do not stand in for it.
    std::fs::write(
        &config,
        "[default]\nregion = us-east-1\n[profile work]\nregion = eu-west-1\n",
    )
    .unwrap();
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = a\naws_secret_access_key = b\n",
    )
    .unwrap();
    let o = home.mount("bkt", &args, CREDS);
    let err = assert_mount_error(&o, "AWS profile \"nope\" not found in ");
    assert!(err.contains("profiles there: default, work"), "{err}");
    assert!(!err.contains("(missing)"), "{err}");
    let o = clean(
        home.path(),
        &["presign", "s3://bkt/k"]
            .iter()
            .chain(&args)
            .copied()
            .collect::<Vec<_>>(),
        &[],
    );
    let err = assert_mount_error(&o, "AWS profile \"nope\" not found in ");
    assert!(err.starts_with("bucketfs presign: "), "{err}");
    // The profile that is there passes the check (and the mount fails further on).
    let mut work = args.to_vec();
    work[5] = "default";
    let o = home.mount("bkt", &work, &[]);
    assert_mount_error(&o, "connection refused");
}

#[test]
fn offline_a_refused_connection_names_the_url() {
    let home = Home::new();
    let url = format!("http://127.0.0.1:{}", refused_port());
    let o = home.mount(
        "bkt",
        &["--endpoint-url", &url, "--region", "us-east-1"],
        CREDS,
    );
    let err = assert_mount_error(&o, &format!("cannot reach the S3 endpoint {url}: "));
    assert!(
        err.trim_end()
            .ends_with("list s3://bkt/: connection refused"),
        "{err}"
    );
    // Without --region the region lookup is the first request: the same words.
    let o = home.mount("bkt", &["--endpoint-url", &url], CREDS);
    let err = assert_mount_error(&o, &format!("cannot reach the S3 endpoint {url}: "));
    assert!(err.trim_end().ends_with("connection refused"), "{err}");
    // rm says it the same way.
    let o = clean(
        home.path(),
        &[
            "rm",
            "s3://bkt/k",
            "--endpoint-url",
            &url,
            "--region",
            "us-east-1",
            "--retry-window",
            "0",
        ],
        CREDS,
    );
    let err = assert_mount_error(
        &o,
        &format!("bucketfs rm: cannot reach the S3 endpoint {url}: "),
    );
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn offline_https_to_a_plain_http_server_is_a_tls_failure_with_the_ca_bundle_hint() {
    let home = Home::new();
    let http = eager_endpoint(
        "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    let url = http.replace("http://", "https://");
    let o = home.mount(
        "bkt",
        &["--endpoint-url", &url, "--region", "us-east-1"],
        CREDS,
    );
    let err = assert_mount_error(&o, &format!("cannot reach the S3 endpoint {url}: "));
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.contains("--ca-bundle"), "{err}");
}

#[test]
fn offline_malformed_endpoint_urls_are_refused_at_parse_time() {
    let home = Home::new();
    let o = home.mount("bkt", &["--endpoint-url", "ht!tp://x"], CREDS);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_one_line_error(&o, "--endpoint-url");
    assert!(
        stderr(&o).contains("the scheme must be http:// or https://"),
        "{}",
        stderr(&o)
    );
    // No scheme: bucketfs does not guess between http and https.
    let o = home.mount("bkt", &["--endpoint-url", "localhost:9000"], CREDS);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_one_line_error(
        &o,
        "no scheme: write http://localhost:9000 or https://localhost:9000",
    );
    // AWS_ENDPOINT_URL is checked the same way.
    let env = [CREDS, &[("AWS_ENDPOINT_URL", "localhost:9000")]].concat();
    let o = home.mount("bkt", &[], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_one_line_error(&o, "no scheme: write http://localhost:9000");
    let o = clean(
        home.path(),
        &["rm", "s3://bkt/k", "--endpoint-url", "http://a b"],
        CREDS,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_one_line_error(&o, "not a valid URL");
}

#[test]
fn offline_an_invalid_bucket_name_is_refused_before_any_request() {
    let home = Home::new();
    let url = format!("http://127.0.0.1:{}", refused_port());
    for name in ["Bad_Name!", "ab", "bucket-"] {
        let o = home.mount(
            name,
            &["--endpoint-url", &url, "--region", "us-east-1"],
            CREDS,
        );
        let err = assert_mount_error(&o, &format!("invalid bucket name {name:?}"));
        assert!(!err.contains("cannot reach"), "{err}");
    }
    let o = clean(
        home.path(),
        &["rm", "s3://a!b/k", "--endpoint-url", &url],
        CREDS,
    );
    assert_mount_error(&o, "bucketfs rm: invalid bucket name \"a!b\"");
    let o = clean(
        home.path(),
        &["presign", "s3://a!b/k", "--endpoint-url", &url],
        CREDS,
    );
    assert_mount_error(&o, "bucketfs presign: invalid bucket name \"a!b\"");
}

#[test]
fn offline_a_bucket_in_another_region_is_named_with_its_region() {
    // S3's real answer to a request signed for the wrong region (canned: neither test
    // server sends it): 301 PermanentRedirect with x-amz-bucket-region.
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message><Endpoint>bkt.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>bkt</Bucket><RequestId>1X2Y3Z</RequestId><HostId>h</HostId></Error>";
    let url = canned_endpoint(format!(
        "HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    let home = Home::new();
    let o = home.mount(
        "bkt",
        &["--endpoint-url", &url, "--region", "us-east-1"],
        CREDS,
    );
    assert_mount_error(
        &o,
        "bucket \"bkt\" is in region eu-west-1, not us-east-1: give --region eu-west-1",
    );
}

#[test]
fn a_missing_bucket_is_said_so_naming_the_endpoint() {
    let home = Home::new();
    let url = common::endpoint();
    let name = format!("t-missing-{}", std::process::id());
    let o = home.mount(
        &name,
        &["--endpoint-url", &url, "--region", "us-east-1"],
        CREDS,
    );
    assert_mount_error(&o, &format!("bucket {name:?} does not exist at {url}"));
}

#[test]
fn refused_credentials_are_access_denied_naming_the_bucket() {
    let b = Bucket::new("denied");
    let home = Home::new();
    let url = common::endpoint();
    let wrong = [
        ("AWS_ACCESS_KEY_ID", "nobody-knows-me"),
        ("AWS_SECRET_ACCESS_KEY", "wrong-secret"),
    ];
    let o = home.mount(
        &b.name,
        &["--endpoint-url", &url, "--region", "us-east-1"],
        &wrong,
    );
    let err = assert_mount_error(
        &o,
        &format!(
            "access denied to bucket {:?} at {url}: check the credentials",
            b.name
        ),
    );
    assert!(err.contains("InvalidAccessKeyId"), "{err}");
}
