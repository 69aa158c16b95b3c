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
        let o = offline_mount("b", dir.path(), &[opt, v]);
        assert_eq!(o.status.code(), Some(2), "{opt} {v}: {}", stderr(&o));
        assert_one_line_error(&o, want);
        assert!(stderr(&o).starts_with("bucketfs: "), "{}", stderr(&o));
    }
}

#[test]
fn offline_a_non_empty_mountpoint_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let o = offline_mount("b", dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_one_line_error(&o, "is not empty");
    assert!(stderr(&o).contains("--allow-non-empty"), "{}", stderr(&o));
    // With the flag the check passes: the mount goes on and fails at the endpoint.
    let o = offline_mount("b", dir.path(), &["--allow-non-empty"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("not empty"), "{}", stderr(&o));
}

#[test]
fn offline_the_cache_dir_must_be_a_writable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let o = offline_mount("b", &mnt, &["--cache-dir", "/proc/version"]);
    assert_one_line_error(&o, "cache directory /proc/version is not a directory");
    let o = offline_mount("b", &mnt, &["--cache-dir", "/proc"]);
    assert_one_line_error(&o, "cache directory /proc is not writable");
    // A missing one is made (then the mount fails at the endpoint, later).
    let made = dir.path().join("new/cache");
    let o = offline_mount("b", &mnt, &["--cache-dir", made.to_str().unwrap()]);
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
