//! End-to-end tests: a real FUSE mount of the bucketfs binary over a real S3-compatible
//! server on 127.0.0.1, driven with std::fs and real tools, checked against the S3 API.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::UNIX_EPOCH;

use common::*;

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn browse_tree_matches_bucket() {
    let b = Bucket::new("browse");
    b.put("top.txt", "hello\n");
    b.put("a/b/c/deep.json", "{\"k\": 1}");
    b.put("a/one", "1");
    b.put("empty-dir/", "");
    b.put_meta(
        "meta.bin",
        vec![1u8, 2, 3],
        &[
            ("mode", "33152"),
            ("uid", "4242"),
            ("gid", "4343"),
            ("mtime", "1500000000"),
        ],
    );
    b.put("clash", "hidden object");
    b.put("clash/child", "visible");
    let m = Mount::new(&b.name, &[]);

    assert_eq!(
        names(m.path()),
        ["a", "clash", "empty-dir", "meta.bin", "top.txt"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(m.p("empty-dir").is_dir());
    assert!(
        m.p("clash").is_dir(),
        "a directory shadows the object of the same name"
    );
    assert_eq!(
        std::fs::read_to_string(m.p("clash/child")).unwrap(),
        "visible"
    );
    assert_eq!(
        std::fs::read_to_string(m.p("a/b/c/deep.json")).unwrap(),
        "{\"k\": 1}"
    );

    let md = std::fs::metadata(m.p("meta.bin")).unwrap();
    assert_eq!(md.len(), 3);
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!((md.uid(), md.gid()), (4242, 4343));
    assert_eq!(md.mtime(), 1_500_000_000);

    // Without metadata: the mount defaults and LastModified.
    let top = std::fs::metadata(m.p("top.txt")).unwrap();
    assert_eq!(top.permissions().mode() & 0o7777, 0o644);
    let lm = b.head("top.txt").last_modified.unwrap().secs();
    assert_eq!(top.mtime(), lm);

    // find, du and tree see the same tree.
    let found = sh(m.path(), "find . | sort");
    assert_eq!(
        found,
        ".\n./a\n./a/b\n./a/b/c\n./a/b/c/deep.json\n./a/one\n./clash\n./clash/child\n./empty-dir\n./meta.bin\n./top.txt\n"
    );
    let du = sh(m.path(), "du -b -s --apparent-size . | cut -f1");
    assert_eq!(du.trim().parse::<u64>().unwrap(), 6 + 8 + 1 + 3 + 7);
    if Command::new("tree").arg("--version").output().is_ok() {
        let t = sh(m.path(), "tree -a --noreport .");
        assert!(t.contains("deep.json"), "{t}");
    }
}

#[test]
fn large_directory_lists_each_entry_once() {
    let b = Bucket::new("big");
    let keys: Vec<String> = (0..2600).map(|i| format!("many/f{i:05}")).collect();
    b.put_many(keys, b"x");
    let m = Mount::new(&b.name, &[]);
    let listed: Vec<String> = std::fs::read_dir(m.p("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed.len(), 2600);
    let uniq: BTreeSet<_> = listed.iter().collect();
    assert_eq!(uniq.len(), 2600);
    assert!(m.requests("ListObjectsV2") <= 5, "{}", m.stats());
}

#[test]
fn ls_request_costs() {
    let b = Bucket::new("lsl");
    let keys: Vec<String> = (0..2000).map(|i| format!("d/f{i:04}")).collect();
    b.put_many(keys, b"0123456789");

    // Default (posix) mode.
    let m = Mount::new(&b.name, &[]);
    std::fs::metadata(m.p("d")).unwrap();
    m.reset_stats();
    let plain = sh(m.path(), "ls d | wc -l");
    assert_eq!(plain.trim(), "2000");
    let s = m.stats();
    assert_eq!(
        s["HeadObject"]["requests"], 0,
        "plain ls makes no HEAD: {s}"
    );
    assert!(s["ListObjectsV2"]["requests"].as_u64().unwrap() <= 3, "{s}");
    sh(m.path(), "find . -name 'f00*' > /dev/null");
    // At most the one directory's marker: never a HEAD per file.
    let heads = m.stats()["HeadObject"]["requests"].as_u64().unwrap();
    assert!(heads <= 1, "find -name made {heads} HEAD requests");
    drop(m);

    let m = Mount::new(&b.name, &[]);
    std::fs::metadata(m.p("d")).unwrap();
    m.reset_stats();
    let long = sh(m.path(), "ls -l d | grep -c '^-rw-r--r--'");
    assert_eq!(long.trim(), "2000");
    let s = m.stats();
    assert!(s["ListObjectsV2"]["requests"].as_u64().unwrap() <= 3, "{s}");
    let heads = &s["HeadObject"];
    assert!(heads["requests"].as_u64().unwrap() <= 2000 + 10, "{s}");
    assert!(
        heads["max_in_flight"].as_u64().unwrap() > 1,
        "HEADs overlap: {s}"
    );
    drop(m);

    // Listing mode: no HEAD at all.
    let m = Mount::new(&b.name, &["--metadata-source", "listing"]);
    std::fs::metadata(m.p("d")).unwrap();
    m.reset_stats();
    let long = sh(m.path(), "ls -l d | grep -c '^-rw-r--r--'");
    assert_eq!(long.trim(), "2000");
    let s = m.stats();
    assert!(s["ListObjectsV2"]["requests"].as_u64().unwrap() <= 3, "{s}");
    assert_eq!(s["HeadObject"]["requests"], 0, "{s}");
}

#[test]
fn large_object_reads_exact_bytes() {
    let b = Bucket::new("large");
    let size = 112 * 1024 * 1024 + 4321;
    let data = pattern(size, 7);
    b.put("big.bin", data.clone());
    let m = Mount::new(&b.name, &[]);

    // sha256 through a real tool, sequential.
    let out = sh(m.path(), "sha256sum big.bin | cut -d' ' -f1");
    assert_eq!(out.trim(), sha256_hex(&data));
    let s = m.stats();
    // Sequential: large ranged GETs, nothing fetched twice over.
    assert!(s["GetObject"]["requests"].as_u64().unwrap() < 60, "{s}");
    assert!(
        s["GetObject"]["bytes"].as_u64().unwrap() <= size as u64 + 64 * 1024 * 1024,
        "{s}"
    );

    // dd skip= and tail -c.
    let dd = sh(
        m.path(),
        "dd if=big.bin bs=1M skip=100 count=3 status=none | sha256sum | cut -d' ' -f1",
    );
    assert_eq!(dd.trim(), sha256_hex(&data[100 << 20..103 << 20]));
    let tail = sh(m.path(), "tail -c 5000 big.bin | sha256sum | cut -d' ' -f1");
    assert_eq!(tail.trim(), sha256_hex(&data[size - 5000..]));

    // 1,000 random reads compared with the source, through a fresh open.
    m.reset_stats();
    let f = std::fs::File::open(m.p("big.bin")).unwrap();
    let mut x: u64 = 99;
    let mut buf = vec![0u8; 4096];
    for _ in 0..1000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (x >> 16) % (size as u64 - 4096);
        f.read_exact_at(&mut buf, off).unwrap();
        assert_eq!(
            &buf[..],
            &data[off as usize..off as usize + 4096],
            "offset {off}"
        );
    }
    let s = m.stats();
    let bytes = s["GetObject"]["bytes"].as_u64().unwrap();
    // Small aligned ranges, never whole-object downloads.
    assert!(
        bytes < 1000 * 512 * 1024,
        "random reads fetched {bytes} bytes: {s}"
    );
}

/// Pages of `f` in `[off, off + len)` that are in the kernel's page cache (mincore).
fn resident(f: &std::fs::File, off: u64, len: usize) -> usize {
    use std::os::fd::AsRawFd;
    let page = 4096;
    assert_eq!(off % page as u64, 0);
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a shared read-only mapping of an open file, unmapped before returning;
    // mincore only reads the mapping's residency into `vec`, which holds one byte per page.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            off as libc::off_t,
        );
        assert_ne!(addr, libc::MAP_FAILED, "mmap");
        let r = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        assert_eq!(r, 0, "mincore");
    }
    vec.iter().filter(|b| **b & 1 == 1).count()
}

/// Wait (bounded) until the 64 KiB block of `f` at `off` is all in the page cache: it
/// is pushed by the daemon's page thread just after the read that fetched it.
fn wait_resident(f: &std::fs::File, off: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while resident(f, off, 64 << 10) < 16 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(resident(f, off, 64 << 10), 16, "block at {off} not pushed");
}

#[test]
fn random_reads_fill_the_page_cache_and_never_go_stale() {
    let b = Bucket::new("pagecache");
    let v1 = pattern(8 << 20, 11);
    b.put("r.bin", v1.clone());
    b.put("other.bin", pattern(1 << 20, 13));
    let m = Mount::new(&b.name, &["--metadata-ttl", "0"]);
    let f = std::fs::File::open(m.p("r.bin")).unwrap();
    // SAFETY: plain fadvise on an open descriptor.
    unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            libc::POSIX_FADV_RANDOM,
        )
    };
    let block = 3u64 << 20;
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, block + 8192).unwrap();
    assert_eq!(&buf[..], &v1[block as usize + 8192..block as usize + 12288]);
    // The whole 64 KiB block the read fetched reaches the page cache (pushed just after
    // the reply, so wait for it, bounded), and nothing else does.
    wait_resident(&f, block);
    assert_eq!(resident(&f, block + (64 << 10), 64 << 10), 0);
    // Reads anywhere in that block are then served by the kernel: no request at all.
    m.reset_stats();
    for i in 0..16u64 {
        f.read_exact_at(&mut buf, block + i * 4096).unwrap();
        let o = (block + i * 4096) as usize;
        assert_eq!(&buf[..], &v1[o..o + 4096]);
    }
    assert_eq!(m.requests("GetObject"), 0);

    // A write through the mount over pushed pages: every reader sees the new bytes.
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(m.p("r.bin"))
        .unwrap();
    w.write_all_at(&[0xAB; 4096], block + 16384).unwrap();
    f.read_exact_at(&mut buf, block + 16384).unwrap();
    assert_eq!(buf, vec![0xAB; 4096]);
    // Random reads while the file is open for writing are never pushed. Pushes are
    // made in the order of the reads: once a later read's block is in, this one's
    // would have been.
    f.read_exact_at(&mut buf, 6 << 20).unwrap();
    let other = std::fs::File::open(m.p("other.bin")).unwrap();
    other.read_exact_at(&mut buf, (1 << 16) + 100).unwrap();
    wait_resident(&other, 1 << 16);
    assert_eq!(resident(&f, 6 << 20, 64 << 10), 1);
    drop(w);
    let mut v2 = v1.clone();
    v2[block as usize + 16384..block as usize + 20480].fill(0xAB);
    assert_eq!(b.get("r.bin"), v2);
    let f2 = std::fs::File::open(m.p("r.bin")).unwrap();
    f2.read_exact_at(&mut buf, block + 16384).unwrap();
    assert_eq!(buf, vec![0xAB; 4096]);
    drop((f, f2));

    // Replaced elsewhere: the next open clears what was pushed; reads give the new bytes.
    let v3 = pattern(8 << 20, 12);
    b.put("r.bin", v3.clone());
    let f3 = std::fs::File::open(m.p("r.bin")).unwrap();
    for off in [block, block + 8192, block + 16384, 6 << 20] {
        f3.read_exact_at(&mut buf, off).unwrap();
        assert_eq!(
            &buf[..],
            &v3[off as usize..off as usize + 4096],
            "offset {off}"
        );
    }
}

#[test]
fn zip_archive_reads_through_python() {
    let b = Bucket::new("zip");
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("a.zip");
    let script = format!(
        "import zipfile, os\nz = zipfile.ZipFile({:?}, 'w', zipfile.ZIP_STORED)\n\
         for i in range(40):\n    z.writestr('m%02d.bin' % i, os.urandom(512 * 1024))\nz.close()",
        zip
    );
    sh(
        tmp.path(),
        &format!("python3 -c \"{}\"", script.replace('"', "\\\"")),
    );
    let bytes = std::fs::read(&zip).unwrap();
    b.put("archive.zip", bytes);
    let m = Mount::new(&b.name, &[]);
    let out = sh(
        m.path(),
        "python3 -c \"import zipfile; z = zipfile.ZipFile('archive.zip'); print(z.testzip(), len(z.namelist()))\"",
    );
    assert_eq!(out.trim(), "None 40");
    // Python asks each file it opens whether it is a terminal (an ioctl): a plain "not
    // a tty", never an unimplemented-operation warning per file in the user's log.
    sh(
        m.path(),
        "python3 -c \"import sys; print(open('archive.zip', 'rb').isatty())\"",
    );
    let log = m.log_text();
    assert!(!log.contains("Not Implemented"), "{log}");
}

#[test]
fn xattrs_match_s3_metadata() {
    let b = Bucket::new("xattr");
    b.put_meta(
        "doc.json",
        "{}",
        &[("color", "blue"), ("owner-team", "storage")],
    );
    let m = Mount::new(&b.name, &[]);
    let head = b.head("doc.json");
    let dump = sh(m.path(), "getfattr -d -m - doc.json");
    assert!(dump.contains("user.color=\"blue\""), "{dump}");
    assert!(dump.contains("user.owner-team=\"storage\""), "{dump}");
    let etag = sh(m.path(), "getfattr --only-values -n user.s3.etag doc.json");
    assert_eq!(etag, head.e_tag().unwrap().trim_matches('"'));
    let ct = sh(
        m.path(),
        "getfattr --only-values -n user.s3.content_type doc.json",
    );
    assert_eq!(ct, head.content_type().unwrap());
    let sc = sh(
        m.path(),
        "getfattr --only-values -n user.s3.storage_class doc.json",
    );
    assert_eq!(
        sc,
        head.storage_class()
            .map(|c| c.as_str())
            .unwrap_or("STANDARD")
    );
    let lm = sh(
        m.path(),
        "getfattr --only-values -n user.s3.last_modified doc.json",
    );
    assert!(lm.starts_with("20") && lm.ends_with('Z'), "{lm}");
    let missing = Command::new("getfattr")
        .args(["-n", "user.nope"])
        .arg(m.p("doc.json"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn s3fs_style_symlink() {
    let b = Bucket::new("symlink");
    b.put("target.txt", "pointed at");
    b.put_meta(
        "link",
        "target.txt",
        &[("mode", &(0o120777u32).to_string())],
    );
    let m = Mount::new(&b.name, &[]);
    let md = std::fs::symlink_metadata(m.p("link")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(m.p("link")).unwrap().to_str().unwrap(),
        "target.txt"
    );
    assert_eq!(std::fs::read_to_string(m.p("link")).unwrap(), "pointed at");
}

#[test]
fn prefix_mount_shows_only_the_prefix() {
    let b = Bucket::new("prefix");
    b.put("team/a.txt", "a");
    b.put("team/sub/b.txt", "b");
    b.put("other/c.txt", "c");
    b.put("teamwork.txt", "not inside");
    let m = Mount::new(&format!("s3://{}/team/", b.name), &[]);
    assert_eq!(
        names(m.path()),
        ["a.txt", "sub"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(std::fs::read_to_string(m.p("sub/b.txt")).unwrap(), "b");
    assert!(!m.p("other").exists());
    let m2 = Mount::new(&format!("{}/team", b.name), &["--read-only"]);
    assert_eq!(names(m2.path()).len(), 2);
}

#[test]
fn replaced_object_under_open_reader_is_eio_not_mixed() {
    let b = Bucket::new("etag");
    let v1 = pattern(4 << 20, 1);
    b.put("f.bin", v1.clone());
    let m = Mount::new(&b.name, &[]);
    let mut f = std::fs::File::open(m.p("f.bin")).unwrap();
    let mut head = vec![0u8; 4096];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head[..], &v1[..4096]);
    b.put("f.bin", pattern(4 << 20, 2));
    // A read far from what was fetched must fail, not return bytes of the new version.
    let mut buf = vec![0u8; 4096];
    match f.read_exact_at(&mut buf, 3 << 20) {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        Ok(()) => assert_eq!(&buf[..], &v1[3 << 20..(3 << 20) + 4096], "old bytes or EIO"),
    }
    drop(f);
    // A reopen sees the new version: the failed read invalidated the cached metadata.
    assert_eq!(std::fs::read(m.p("f.bin")).unwrap(), pattern(4 << 20, 2));
}

#[test]
fn mount_errors_are_one_line_and_leave_nothing_mounted() {
    let b = Bucket::new("errors");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().with_extension("log");
    let check = |cmd: &mut Command, want: &str| {
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "should fail: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(err.contains(want), "{want:?} not in {err:?}");
        assert!(!err.contains("panicked"), "{err}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(dir.path().to_str().unwrap()),
            "left mounted"
        );
    };
    check(
        &mut mount_cmd("no-such-bucket-here", dir.path(), &log, &[]),
        "no-such-bucket-here",
    );
    check(
        mount_cmd(&b.name, dir.path(), &log, &[]).env("AWS_SECRET_ACCESS_KEY", "wrong"),
        "access denied",
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    check(
        &mut mount_cmd_at(
            &format!("http://127.0.0.1:{port}"),
            &b.name,
            dir.path(),
            &log,
            &[],
        ),
        "cannot reach",
    );
    check(
        &mut mount_cmd(&b.name, &dir.path().join("missing"), &log, &[]),
        "missing",
    );
    let m = Mount::new(&b.name, &[]);
    let out = mount_cmd(&b.name, m.path(), &log, &[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already mounted"), "{err}");
    // The first mount still works.
    assert!(m.path().read_dir().is_ok());
}

#[test]
fn read_only_and_unsupported_writes_fail_cleanly() {
    let b = Bucket::new("ro");
    b.put("f", "x");
    let m = Mount::new(&b.name, &["--read-only"]);
    let e = std::fs::write(m.p("f"), "y").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert_eq!(std::fs::read_to_string(m.p("f")).unwrap(), "x");
    let mtime = std::fs::metadata(m.p("f")).unwrap().modified().unwrap();
    assert!(mtime > UNIX_EPOCH);
}

#[test]
fn sigterm_unmounts_and_logs_request_counts() {
    let b = Bucket::new("sigterm");
    b.put("f.txt", "bye");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().with_extension("log");
    // Path style is chosen automatically for an IP endpoint: no --force-path-style here.
    let mut child = Command::new(bin())
        .args(["mount", &b.name])
        .arg(dir.path())
        .args(["--endpoint-url", &endpoint(), "--foreground", "--log-file"])
        .arg(&log)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mp = dir.path().to_str().unwrap().to_string();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {mp} "))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !mounted() {
        assert!(std::time::Instant::now() < deadline, "mount did not appear");
        assert!(child.try_wait().unwrap().is_none(), "bucketfs exited early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("f.txt")).unwrap(),
        "bye"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!mounted(), "still mounted after SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("S3 requests: ListObjectsV2="), "{text}");
    assert!(text.contains("GetObject=1"), "{text}");
}

#[test]
fn no_xattr_mount_refuses_xattrs_and_still_lists() {
    let b = Bucket::new("noxattr");
    b.put_meta("a.txt", "hello", &[("color", "blue")]);
    b.put("d/b.txt", "x");
    let m = Mount::new(&b.name, &["--no-xattr", "--metadata-source", "listing"]);
    let err = xattr_get(&m.p("a.txt"), "user.color").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{err}");
    // The kernel remembers: a second ask fails the same way.
    let err = xattr_get(&m.p("a.txt"), "user.color").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{err}");
    let listing = sh(m.path(), "ls -l");
    assert!(
        listing.contains("a.txt") && listing.contains(" d"),
        "{listing}"
    );
    assert_eq!(std::fs::read(m.p("a.txt")).unwrap(), b"hello");
    assert_eq!(std::fs::metadata(m.p("a.txt")).unwrap().len(), 5);
}

/// getxattr(2) of `name` on `path`.
fn xattr_get(path: &std::path::Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and buf is valid for its length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

#[test]
fn hostile_key_names_list_and_read() {
    // Names S3 allows that XML 1.0 or URLs make awkward: control characters, a newline,
    // `+`, `%`, spaces, quotes, non-ASCII. One of them must never break the listing of
    // the others (the listing is asked for URL-encoded), and each reads back its bytes.
    let b = Bucket::new("hostile");
    let names_in: Vec<&str> = vec![
        "ctrl\u{1}char.txt",
        "new\nline.txt",
        "tab\tname",
        "plus+sign",
        "pct%20x",
        "with space ",
        "quote\"s'",
        "q?mark#hash&amp",
        "caf\u{e9}-\u{65e5}\u{672c}",
    ];
    for (i, n) in names_in.iter().enumerate() {
        b.put(n, format!("body {i}"));
        b.put(&format!("sub/{n}"), format!("sub body {i}"));
    }
    let m = Mount::new(&b.name, &[]);
    let want: BTreeSet<String> = names_in.iter().map(|s| s.to_string()).collect();
    let mut top = names(m.path());
    assert!(top.remove("sub"), "{top:?}");
    assert_eq!(top, want);
    assert_eq!(names(&m.p("sub")), want);
    for (i, n) in names_in.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(m.p(n)).unwrap(),
            format!("body {i}")
        );
        let sub = m.p("sub").join(n);
        assert_eq!(
            std::fs::read_to_string(sub).unwrap(),
            format!("sub body {i}")
        );
    }
    // Real tools agree: find sees every file once.
    let found = sh(m.path(), "find . -type f -print0 | tr -cd '\\0' | wc -c");
    assert_eq!(found.trim(), (2 * names_in.len()).to_string());
}
