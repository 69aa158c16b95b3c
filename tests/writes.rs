//! End-to-end tests of the write side: a real FUSE mount of the bucketfs binary over a real
//! S3-compatible server on 127.0.0.1, driven with std::fs and real tools (dd, tar, rsync,
//! git, sqlite through python3, getfattr/setfattr), and checked against the S3 API.

mod common;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

const MIB: u64 = 1024 * 1024;

/// One counter of one operation from the stats JSON; the operation must be reported.
fn op(s: &serde_json::Value, name: &str, field: &str) -> u64 {
    s[name][field]
        .as_u64()
        .unwrap_or_else(|| panic!("stats have no {name}.{field}: {s}"))
}

/// Requests of every kind in a stats snapshot.
fn all_requests(s: &serde_json::Value) -> u64 {
    s.as_object()
        .expect("stats are a JSON object")
        .keys()
        .map(|k| op(s, k, "requests"))
        .sum()
}

/// Equal byte strings, reported by length and first difference rather than dumped.
fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: {} bytes, expected {} bytes; first difference at offset {first}",
        actual.len(),
        expected.len()
    );
}

/// Run a command, returning its output whatever the status.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run a command, asserting success; returns its output.
fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tool the test needs; fails (never skips) when it is missing.
fn require_tool(name: &str) {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "`{name}` is not installed: scripts/test.sh installs it (apt-get install {name})"
    );
}

/// Permission bits from an `x-amz-meta-mode` value: decimal `st_mode`, or octal with a
/// leading 0.
fn meta_mode(v: &str) -> u32 {
    let parsed = if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(&v[1..], 8)
    } else {
        v.parse()
    };
    parsed.unwrap_or_else(|e| panic!("x-amz-meta-mode {v:?}: {e}"))
}

/// Seconds from an `x-amz-meta-mtime` value (fraction allowed).
fn meta_secs(v: &str) -> i64 {
    v.parse::<f64>()
        .unwrap_or_else(|e| panic!("time {v:?}: {e}"))
        .floor() as i64
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

const FILE_MODES: [u32; 5] = [0o600, 0o640, 0o644, 0o700, 0o755];

/// A generated tree under `root`: `nfiles` regular files spread over nested directories
/// (three levels), sizes 0..=200 KiB, modes cycling through FILE_MODES, directory modes
/// 0755/0700, a third of the files with past mtimes, relative symlinks to files and
/// directories (one dangling). Returns the files' paths relative to `root`.
fn make_tree(root: &Path, nfiles: usize, seed: u64) -> Vec<String> {
    let mut dirs = vec![String::new()];
    for a in 0..4 {
        dirs.push(format!("d{a}"));
        for b in 0..3 {
            dirs.push(format!("d{a}/s{b}"));
            for c in 0..2 {
                dirs.push(format!("d{a}/s{b}/t{c}"));
            }
        }
    }
    for d in &dirs[1..] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut files = Vec::new();
    let mut touch = String::new();
    for i in 0..nfiles {
        let dir = &dirs[i % dirs.len()];
        let name = match i {
            1 => "name with spaces.txt".to_string(),
            2 => "ünïcödé-€.txt".to_string(),
            _ => format!("f{i:03}.dat"),
        };
        let rel = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let size = if i % 10 == 0 {
            0
        } else {
            (i * 2_654_435_761) % (200 * 1024 + 1)
        };
        let p = root.join(&rel);
        std::fs::write(&p, pattern(size, seed + i as u64)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(FILE_MODES[i % 5])).unwrap();
        if i % 3 == 0 {
            let t = 1_000_000_000 + i as u64 * 86_400;
            touch.push_str(&format!("touch -d @{t} '{}'\n", p.display()));
        }
        files.push(rel);
    }
    let link = |at: &str, target: &str| {
        std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    };
    link("link-to-file", &files[5]);
    link("d1/link-to-dir", "../d0");
    link("d2/s1/link-up-file", &format!("../../{}", files[7]));
    link("d3/s0/t1/dangling", "nowhere/at/all");
    // Directory modes last (the tree is written as its owner either way).
    for (j, d) in dirs[1..].iter().enumerate() {
        let mode = if j % 2 == 0 { 0o755 } else { 0o700 };
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    touch.push_str(&format!(
        "touch -d @1300000000 '{}/d0/s1' '{}/d2'\n",
        root.display(),
        root.display()
    ));
    sh(root, &touch);
    files
}

#[test]
fn sequential_1gib_write_is_multipart_and_bounded() {
    use sha2::Digest;
    let b = Bucket::new("seqwrite");
    let m = Mount::new(&b.name, &[]);
    m.reset_stats();

    // dd reads a deterministic 1 GiB stream from this process (no 1 GiB source on disk).
    let mut dd = Command::new("dd")
        .args(["of=big", "bs=1M", "iflag=fullblock", "status=none"])
        .current_dir(m.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = dd.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || -> std::io::Result<String> {
        let mut h = sha2::Sha256::new();
        for i in 0..1024u64 {
            let chunk = pattern(MIB as usize, 1000 + i);
            h.update(&chunk);
            input.write_all(&chunk)?;
        }
        Ok(format!("{:x}", h.finalize()))
    });
    let fed = feeder.join().unwrap();
    let out = dd.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dd failed ({}): {}\nlog: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
    let want = fed.expect("feeding dd");

    // Right after dd exits: the object is complete in S3.
    let head = b.head("big");
    assert_eq!(head.content_length(), Some(1 << 30));
    let (n, got) = b.sha256("big");
    assert_eq!(n, 1 << 30);
    assert_eq!(got, want, "object body differs from what dd wrote");
    assert_eq!(b.pending_uploads(), 0, "no multipart upload left behind");

    let s = m.stats();
    assert!(
        op(&s, "CreateMultipartUpload", "requests") >= 1,
        "a 1 GiB file is a multipart upload: {s}"
    );
    assert!(
        op(&s, "UploadPart", "max_in_flight") > 1,
        "parts upload in parallel: {s}"
    );
    assert_eq!(op(&s, "CompleteMultipartUpload", "requests"), 1, "{s}");
    let rss = m.daemon_peak_rss();
    assert!(
        rss < 400 * MIB,
        "daemon peak RSS (VmHWM) {} MiB, limit 400 MiB (write budget 128 MiB + prefetch)",
        rss / MIB
    );

    // And the mount reads it back.
    let through = sh(m.path(), "sha256sum big | cut -d' ' -f1");
    assert_eq!(through.trim(), want);
}

#[test]
fn random_overwrite_append_truncate_match_reference() {
    let b = Bucket::new("overwrite");
    let mut reference = pattern(64 << 20, 3);
    b.put("f.bin", reference.clone());
    let m = Mount::new(&b.name, &[]);
    let path = m.p("f.bin");
    let check = |reference: &[u8], step: &str| {
        assert_same(&b.get("f.bin"), reference, &format!("{step}: S3 object"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            reference.len() as u64,
            "{step}: size through the mount"
        );
        assert_same(
            &std::fs::read(&path).unwrap(),
            reference,
            &format!("{step}: read through the mount"),
        );
    };

    // A: overwrite 1 MiB in the middle, no truncation.
    let patch = pattern(MIB as usize, 77);
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(30 * MIB)).unwrap();
        f.write_all(&patch).unwrap();
    }
    reference[30 << 20..31 << 20].copy_from_slice(&patch);
    check(&reference, "A (overwrite at 30 MiB)");

    // B: append.
    let tail = pattern(123_457, 78);
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&tail).unwrap();
    }
    reference.extend_from_slice(&tail);
    check(&reference, "B (append)");

    // C: truncate down.
    let down = (10 * MIB + 5) as usize;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(down as u64)
        .unwrap();
    reference.truncate(down);
    check(&reference, "C (truncate to 10 MiB + 5)");

    // D: extend with zeros.
    let up = (12 * MIB) as usize;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(up as u64)
        .unwrap();
    reference.resize(up, 0);
    check(&reference, "D (extend to 12 MiB)");
    assert_eq!(b.pending_uploads(), 0);
}

#[test]
fn tar_extract_then_diff_after_remount() {
    let b = Bucket::new("tar");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files = make_tree(&src, 300, 500);
    let archive = tmp.path().join("tree.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );

    let markers_keep_metadata = b.markers_keep_metadata();
    let m = Mount::new(&b.name, &[]);
    std::fs::create_dir(m.p("dest")).unwrap();
    run_ok(
        Command::new("tar")
            .args(["-x", "-p", "--no-same-owner", "-f"])
            .arg(&archive)
            .arg("-C")
            .arg(m.p("dest")),
    );
    let m = m.remount();

    let out = run(Command::new("tar")
        .arg("-df")
        .arg(&archive)
        .arg("-C")
        .arg(m.p("dest")));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // On a server that drops marker metadata (see `markers_keep_metadata`) the only
    // difference allowed is a directory's mode; every file must match exactly.
    let unexplained: Vec<&str> = text
        .lines()
        .filter(|l| {
            let dir_mode = l
                .strip_suffix(": Mode differs")
                .is_some_and(|p| src.join(p).is_dir());
            markers_keep_metadata || !dir_mode
        })
        .collect();
    assert!(
        (out.status.success() || !markers_keep_metadata) && unexplained.is_empty(),
        "tar -d after remount ({}):\n{text}",
        out.status
    );

    // The bucket holds POSIX metadata for what tar extracted.
    for i in [3usize, 4, 11] {
        let key = format!("dest/{}", files[i]);
        let head = b.head(&key);
        let meta = head.metadata().cloned().unwrap_or_default();
        let mode = meta
            .get("mode")
            .unwrap_or_else(|| panic!("{key} has no x-amz-meta-mode: {meta:?}"));
        assert_eq!(
            meta_mode(mode) & 0o7777,
            FILE_MODES[i % 5],
            "{key}: {meta:?}"
        );
    }
    let link = b.head("dest/d1/link-to-dir");
    let mode = link
        .metadata()
        .and_then(|m| m.get("mode"))
        .expect("symlink has x-amz-meta-mode");
    assert_eq!(meta_mode(mode) & 0o170000, 0o120000, "S_IFLNK: {mode}");
    assert_eq!(b.get("dest/d1/link-to-dir"), b"../d0");
}

#[test]
fn rsync_roundtrip_after_remount() {
    require_tool("rsync");
    let b = Bucket::new("rsync");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files = make_tree(&src, 100, 900);
    let m = Mount::new(&b.name, &[]);
    let mut src_arg = src.clone().into_os_string();
    src_arg.push("/");
    let mut dst_arg = m.p("dst").into_os_string();
    dst_arg.push("/");
    run_ok(Command::new("rsync").arg("-a").arg(&src_arg).arg(&dst_arg));
    let m = m.remount();
    let mut dst_arg = m.p("dst").into_os_string();
    dst_arg.push("/");
    let out = run_ok(
        Command::new("rsync")
            .args(["-a", "--dry-run", "--itemize-changes"])
            .arg(&src_arg)
            .arg(&dst_arg),
    );
    // On a server that drops marker metadata (see `markers_keep_metadata`) a directory's
    // time and mode may differ (`.d..t......`, `.d...p.....`); nothing else may.
    let keep = b.markers_keep_metadata();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let unexplained: Vec<&str> = text
        .lines()
        .filter(|l| keep || !l.starts_with(".d") || l.contains('+'))
        .collect();
    assert!(
        unexplained.is_empty(),
        "rsync sees differences after remount:\n{text}"
    );

    // The bucket has every file with its bytes, and no rsync temporary left.
    let keys = b.keys("dst/");
    let want: BTreeSet<String> = files.iter().map(|f| format!("dst/{f}")).collect();
    let got_files: BTreeSet<String> = keys
        .iter()
        .filter(|k| !k.ends_with('/') && !k.contains("link-") && !k.ends_with("dangling"))
        .cloned()
        .collect();
    assert_eq!(got_files, want, "regular-file keys under dst/");
    for i in [9usize, 42, 99] {
        assert_same(
            &b.get(&format!("dst/{}", files[i])),
            &std::fs::read(src.join(&files[i])).unwrap(),
            &files[i],
        );
    }
}

#[test]
fn git_clone_fsck_status_clean() {
    require_tool("git");
    let b = Bucket::new("git");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let git = |dir: &Path| {
        let mut c = Command::new("git");
        c.current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        c
    };
    run_ok(git(tmp.path()).args(["init", "-q"]).arg(&src));
    for (k, v) in [
        ("user.name", "Test"),
        ("user.email", "test@example.com"),
        ("commit.gpgsign", "false"),
    ] {
        run_ok(git(&src).args(["config", k, v]));
    }
    std::fs::create_dir(src.join("sub")).unwrap();
    std::fs::write(src.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for i in 1..=20u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(src.join("a.txt"))
            .unwrap();
        writeln!(f, "line {i}").unwrap();
        std::fs::write(src.join(format!("sub/b{}.txt", i % 3)), format!("{i}\n")).unwrap();
        if i % 5 == 0 {
            std::fs::write(src.join("sub/blob.bin"), pattern(300_000, i)).unwrap();
        }
        run_ok(git(&src).args(["add", "-A"]));
        run_ok(git(&src).args(["commit", "-q", "-m", &format!("commit {i}")]));
    }

    let m = Mount::new(&b.name, &[]);
    run_ok(
        git(tmp.path())
            .args(["clone", "-q"])
            .arg(&src)
            .arg(m.p("repo")),
    );
    run_ok(git(&m.p("repo")).args(["fsck"]));
    let status = run_ok(git(&m.p("repo")).args(["status", "--porcelain"]));
    assert!(
        status.stdout.is_empty(),
        "git status after clone:\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let count = run_ok(git(&m.p("repo")).args(["rev-list", "--count", "HEAD"]));
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "20");

    // The bucket: worktree bytes, the executable bit, no lock file left.
    assert_same(
        &b.get("repo/a.txt"),
        &std::fs::read(src.join("a.txt")).unwrap(),
        "repo/a.txt",
    );
    assert_same(
        &b.get("repo/sub/blob.bin"),
        &pattern(300_000, 20),
        "repo/sub/blob.bin",
    );
    let mode = b
        .head("repo/run.sh")
        .metadata()
        .and_then(|m| m.get("mode").cloned())
        .expect("run.sh has x-amz-meta-mode");
    assert_ne!(meta_mode(&mode) & 0o100, 0, "run.sh is executable: {mode}");
    let keys = b.keys("repo/");
    assert!(keys.iter().any(|k| k == "repo/.git/HEAD"), "{keys:?}");
    let locks: Vec<&String> = keys.iter().filter(|k| k.ends_with(".lock")).collect();
    assert!(locks.is_empty(), "lock files left: {locks:?}");
}

#[test]
fn sqlite_survives_remount() {
    let b = Bucket::new("sqlite");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("db.py");
    std::fs::write(
        &script,
        r#"import sqlite3, sys
path, mode = sys.argv[1], sys.argv[2]
c = sqlite3.connect(path)
if mode == "write":
    c.execute("create table t (id integer primary key, name text, payload blob)")
    c.commit()
    for tx in range(10):
        with c:
            for i in range(100):
                n = tx * 100 + i
                c.execute("insert into t values (?, ?, ?)", (n, "row %d" % n, bytes([n % 256]) * 300))
else:
    print(c.execute("select count(*) from t").fetchone()[0])
    print(c.execute("pragma integrity_check").fetchone()[0])
    print(c.execute("select sum(id) from t").fetchone()[0])
c.close()
"#,
    )
    .unwrap();
    let m = Mount::new(&b.name, &[]);
    run_ok(
        Command::new("python3")
            .arg(&script)
            .arg(m.p("db.sqlite"))
            .arg("write"),
    );
    let size = std::fs::metadata(m.p("db.sqlite")).unwrap().len();
    let m = m.remount();
    let out = run_ok(
        Command::new("python3")
            .arg(&script)
            .arg(m.p("db.sqlite"))
            .arg("read"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\nok\n499500\n");
    assert_eq!(b.head("db.sqlite").content_length(), Some(size as i64));
    assert!(!b.exists("db.sqlite-journal"), "rollback journal left");
}

#[test]
fn editor_style_save() {
    let b = Bucket::new("editor");
    b.put("notes.txt", "original text\n");
    let m = Mount::new(&b.name, &[]);
    assert_eq!(
        std::fs::read_to_string(m.p("notes.txt")).unwrap(),
        "original text\n"
    );
    let new = "edited text, longer than before\n".repeat(100);
    {
        let mut f = std::fs::File::create(m.p(".notes.txt.swp")).unwrap();
        f.write_all(new.as_bytes()).unwrap();
        f.sync_all().unwrap();
    }
    std::fs::rename(m.p(".notes.txt.swp"), m.p("notes.txt")).unwrap();
    assert_eq!(b.get("notes.txt"), new.as_bytes());
    assert!(
        !b.exists(".notes.txt.swp"),
        "temporary key left in the bucket"
    );
    assert_eq!(std::fs::read_to_string(m.p("notes.txt")).unwrap(), new);
    assert!(!m.p(".notes.txt.swp").exists());
}

#[test]
fn rename_dir_of_200_files_and_rmdir_rules() {
    let b = Bucket::new("renamedir");
    let m = Mount::new(&b.name, &[]);
    let body = |i: usize| format!("file number {i}\n").repeat(i % 5 + 1);
    std::fs::create_dir(m.p("a")).unwrap();
    for i in 0..200 {
        std::fs::write(m.p(&format!("a/f{i:03}")), body(i)).unwrap();
    }
    std::fs::create_dir(m.p("a/sub")).unwrap();
    std::fs::write(m.p("a/sub/x"), "x in sub").unwrap();
    std::fs::write(m.p("a/sub/y"), "y in sub").unwrap();

    std::fs::rename(m.p("a"), m.p("b")).unwrap();

    let left = b.keys("a/");
    assert!(left.is_empty(), "keys left under a/: {left:?}");
    let keys = b.keys("b/");
    let files: BTreeSet<String> = keys.iter().filter(|k| !k.ends_with('/')).cloned().collect();
    let mut want: BTreeSet<String> = (0..200).map(|i| format!("b/f{i:03}")).collect();
    want.insert("b/sub/x".into());
    want.insert("b/sub/y".into());
    assert_eq!(files, want);
    let markers: Vec<&String> = keys.iter().filter(|k| k.ends_with('/')).collect();
    assert!(
        markers.iter().all(|k| *k == "b/" || *k == "b/sub/"),
        "unexpected markers: {markers:?}"
    );
    for i in [0usize, 57, 199] {
        assert_eq!(b.get(&format!("b/f{i:03}")), body(i).as_bytes());
    }
    assert_eq!(b.get("b/sub/y"), b"y in sub");
    assert!(!m.p("a").exists());
    assert_eq!(std::fs::read_dir(m.p("b")).unwrap().count(), 201);
    assert_eq!(std::fs::read_to_string(m.p("b/sub/x")).unwrap(), "x in sub");

    let e = std::fs::remove_dir(m.p("b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");
    let e = std::fs::remove_dir(m.p("b/sub")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");
    assert_eq!(
        b.keys("b/").len(),
        keys.len(),
        "a failed rmdir deletes nothing"
    );

    std::fs::create_dir(m.p("empty")).unwrap();
    assert!(b.exists("empty/"), "mkdir writes the marker empty/");
    std::fs::remove_dir(m.p("empty")).unwrap();
    assert!(!b.exists("empty/"), "rmdir deletes the marker");
    assert!(!m.p("empty").exists());

    std::fs::create_dir(m.p("empty2")).unwrap();
    assert!(b.exists("empty2/"), "mkdir persists as empty2/");
    assert!(m.p("empty2").is_dir());
}

#[test]
fn posix_metadata_persists() {
    let b = Bucket::new("posixmeta");
    let m = Mount::new(&b.name, &[]);
    std::fs::write(m.p("file"), "some content\n").unwrap();
    std::fs::set_permissions(m.p("file"), std::fs::Permissions::from_mode(0o640)).unwrap();
    sh(
        m.path(),
        "touch -d @981173106 file && ln -s target link && \
         setfattr -n user.color -v blue file && \
         setfattr -n user.s3.content_type -v text/x-special file",
    );
    std::fs::write(m.p("x.json"), "{\"a\": 1}").unwrap();

    let m = m.remount();
    let md = std::fs::metadata(m.p("file")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o640);
    assert_eq!(md.mtime(), 981_173_106);
    assert_eq!(md.len(), 13);
    let lmd = std::fs::symlink_metadata(m.p("link")).unwrap();
    assert!(lmd.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(m.p("link")).unwrap(),
        PathBuf::from("target")
    );
    let color = sh(m.path(), "getfattr --only-values -n user.color file");
    assert_eq!(color, "blue");
    assert_eq!(
        std::fs::read_to_string(m.p("file")).unwrap(),
        "some content\n"
    );

    let head = b.head("file");
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(
        meta.get("mode").map(|v| meta_mode(v) & 0o7777),
        Some(0o640),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("mtime").map(|v| meta_secs(v)),
        Some(981_173_106),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("color").map(String::as_str),
        Some("blue"),
        "{meta:?}"
    );
    assert_eq!(head.content_type(), Some("text/x-special"));
    assert_eq!(b.get("file"), b"some content\n");

    let link = b.head("link");
    let lmode = link
        .metadata()
        .and_then(|m| m.get("mode").cloned())
        .expect("symlink has x-amz-meta-mode");
    assert_eq!(meta_mode(&lmode) & 0o170000, 0o120000, "S_IFLNK: {lmode}");
    assert_eq!(b.get("link"), b"target");

    assert_eq!(b.head("x.json").content_type(), Some("application/json"));
}

#[test]
fn names_and_links() {
    let b = Bucket::new("names");
    let m = Mount::new(&b.name, &[]);

    let long = "n".repeat(256);
    let e = std::fs::File::create(m.p(&long)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{e}");
    let max = "m".repeat(255);
    std::fs::write(m.p(&max), "longest name").unwrap();
    assert_eq!(b.get(&max), b"longest name");
    assert!(names(m.path()).contains(&max));

    std::fs::write(m.p("f1"), "one").unwrap();
    let e = std::fs::hard_link(m.p("f1"), m.p("f1-link")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    assert!(!b.exists("f1-link"));

    std::fs::write(m.p("src.txt"), "source").unwrap();
    std::fs::write(m.p("dst.txt"), "destination").unwrap();
    let rename2 = |from: &Path, to: &Path| -> std::io::Result<()> {
        let (from, to) = (cstr(from), cstr(to));
        // SAFETY: two NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let e = rename2(&m.p("src.txt"), &m.p("dst.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{e}");
    assert_eq!(b.get("src.txt"), b"source");
    assert_eq!(b.get("dst.txt"), b"destination");

    // RENAME_NOREPLACE onto a free name works.
    std::fs::write(m.p("other.txt"), "other").unwrap();
    rename2(&m.p("other.txt"), &m.p("fresh.txt")).unwrap();
    assert_eq!(b.get("fresh.txt"), b"other");
    assert!(!b.exists("other.txt"));

    // A plain rename replaces.
    std::fs::rename(m.p("src.txt"), m.p("dst.txt")).unwrap();
    assert_eq!(b.get("dst.txt"), b"source");
    assert!(!b.exists("src.txt"));
    assert_eq!(std::fs::read_to_string(m.p("dst.txt")).unwrap(), "source");
    assert!(!m.p("src.txt").exists());
}

#[test]
fn two_handles_and_close_to_open() {
    let b = Bucket::new("handles");
    let m = Mount::new(&b.name, &[]);
    let mut w = std::fs::File::create(m.p("h.txt")).unwrap();
    w.write_all(b"hello").unwrap();

    // The same mount sees writes not yet closed.
    let mut r = std::fs::File::open(m.p("h.txt")).unwrap();
    let mut seen = String::new();
    r.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "hello");

    w.write_all(b", world").unwrap();
    drop(w);
    // Durable when close returns: no waiting.
    assert_eq!(b.get("h.txt"), b"hello, world");
    assert_eq!(
        std::fs::read_to_string(m.p("h.txt")).unwrap(),
        "hello, world"
    );
    drop(r);
    assert_eq!(b.get("h.txt"), b"hello, world");
}

#[test]
fn small_create_costs_one_put() {
    let b = Bucket::new("smallput");
    let m = Mount::new(&b.name, &[]);
    m.reset_stats();
    for i in 0..20u64 {
        std::fs::write(m.p(&format!("s{i:02}.bin")), pattern(4096, i)).unwrap();
    }
    let s = m.stats();
    assert_eq!(op(&s, "PutObject", "requests"), 20, "one PUT per file: {s}");
    assert_eq!(op(&s, "CreateMultipartUpload", "requests"), 0, "{s}");
    // The kernel's lookup of each new name costs one listing at most.
    let total = all_requests(&s);
    assert!(
        total <= 40,
        "{total} requests for 20 creates, over 2 each: {s}"
    );
    for i in 0..20u64 {
        assert_same(
            &b.get(&format!("s{i:02}.bin")),
            &pattern(4096, i),
            &format!("s{i:02}.bin"),
        );
    }
    // In a directory made through the mount, lookups need no request at all.
    std::fs::create_dir(m.p("fresh")).unwrap();
    m.reset_stats();
    for i in 0..20u64 {
        std::fs::write(m.p(&format!("fresh/f{i:02}")), pattern(100, i)).unwrap();
    }
    let s = m.stats();
    let total = all_requests(&s);
    assert_eq!(
        total, 20,
        "one PutObject per create in a new directory: {s}"
    );
    let mut names: Vec<String> = std::fs::read_dir(m.p("fresh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 20, "{names:?}");
    assert_eq!(b.get("fresh/f07"), pattern(100, 7));
}

#[test]
fn mmap_writes_reach_s3_at_close() {
    let b = Bucket::new("mmap");
    let mut reference = pattern(3 * 1024 * 1024 + 17, 77);
    b.put("m.bin", reference.clone());
    let m = Mount::new(&b.name, &[]);
    // Change bytes through a shared writable mapping, as databases and old tools do.
    let script = "import mmap,sys\n\
                  f=open(sys.argv[1],'r+b')\n\
                  mm=mmap.mmap(f.fileno(),0)\n\
                  mm[100:105]=b'MMAP!'\n\
                  mm[2*1024*1024:2*1024*1024+3]=b'xyz'\n\
                  mm.flush(); mm.close(); f.close()\n";
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(m.p("m.bin")),
    );
    reference[100..105].copy_from_slice(b"MMAP!");
    reference[2 * 1024 * 1024..2 * 1024 * 1024 + 3].copy_from_slice(b"xyz");
    assert_same(&b.get("m.bin"), &reference, "mmap write");
}

/// Directory reads hand the kernel attributes (READDIRPLUS): listing a directory while a
/// file in it is being written, or read, must not change what the kernel thinks its size
/// is, in either metadata mode.
#[test]
fn listing_during_writes_and_reads_keeps_sizes_and_bytes() {
    for mode in ["posix", "listing"] {
        let b = Bucket::new(&format!("rdplus-{mode}"));
        let existing = pattern(3 * 1024 * 1024 + 5, 9);
        b.put("d/old.bin", existing.clone());
        for i in 0..50 {
            b.put(&format!("d/f{i:02}"), vec![b'x'; i]);
        }
        let m = Mount::new(&b.name, &["--metadata-source", mode]);
        let mut w = std::fs::File::create(m.p("d/new.bin")).unwrap();
        let first = pattern(1024 * 1024, 1);
        w.write_all(&first).unwrap();
        let mut r = std::fs::File::open(m.p("d/old.bin")).unwrap();
        let mut head = vec![0u8; 1024 * 1024];
        r.read_exact(&mut head).unwrap();
        // ls -l in the middle of both.
        let listing = sh(m.path(), "ls -l d");
        assert!(
            listing.contains("new.bin") && listing.contains("f49"),
            "{listing}"
        );
        assert_eq!(
            std::fs::metadata(m.p("d/new.bin")).unwrap().len(),
            first.len() as u64,
            "{mode}: size of the file being written"
        );
        assert_eq!(
            std::fs::metadata(m.p("d/old.bin")).unwrap().len(),
            existing.len() as u64,
            "{mode}: size of the file being read"
        );
        let second = pattern(512 * 1024, 2);
        w.write_all(&second).unwrap();
        drop(w);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        head.extend_from_slice(&rest);
        assert_same(
            &head,
            &existing,
            &format!("{mode}: old.bin read across ls -l"),
        );
        let mut whole = first.clone();
        whole.extend_from_slice(&second);
        assert_same(
            &b.get("d/new.bin"),
            &whole,
            &format!("{mode}: new.bin in S3"),
        );
        sh(m.path(), "ls -l d > /dev/null");
        assert_same(
            &std::fs::read(m.p("d/new.bin")).unwrap(),
            &whole,
            &format!("{mode}: new.bin through the mount"),
        );
        for i in [0usize, 7, 49] {
            assert_eq!(
                std::fs::metadata(m.p(&format!("d/f{i:02}"))).unwrap().len(),
                i as u64
            );
        }
    }
}

/// Requests are first polled on the FUSE threads and finished on the runtime when they
/// must wait: many readers and writers at once must all finish (no lost wake-up, no
/// hang) with the right bytes.
#[test]
fn parallel_readers_and_writers_finish_with_right_bytes() {
    use std::os::unix::fs::FileExt;
    use std::sync::mpsc;
    let b = Bucket::new("parallel");
    let objects: Vec<Vec<u8>> = (0..6)
        .map(|i| pattern(12 * 1024 * 1024 + i, i as u64))
        .collect();
    for (i, o) in objects.iter().enumerate() {
        b.put(&format!("in/o{i}"), o.clone());
    }
    let m = Mount::new(&b.name, &[]);
    std::fs::create_dir(m.p("out")).unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let mut jobs = 0;
    for (i, o) in objects.iter().enumerate() {
        let (tx, path, o) = (tx.clone(), m.p(&format!("in/o{i}")), o.clone());
        jobs += 1;
        std::thread::spawn(move || {
            // Sequential, twice, then 100 random 4 KiB reads.
            for _ in 0..2 {
                assert!(std::fs::read(&path).unwrap() == o, "o{i} sequential");
            }
            let f = std::fs::File::open(&path).unwrap();
            let mut buf = vec![0u8; 4096];
            for k in 0..100u64 {
                let off = (k * 7_919 * 4096 + i as u64 * 13) % (o.len() as u64 - 4096);
                f.read_exact_at(&mut buf, off).unwrap();
                assert!(
                    buf[..] == o[off as usize..off as usize + 4096],
                    "o{i} at {off}"
                );
            }
            tx.send(format!("reader {i}")).unwrap();
        });
    }
    for w in 0..4u64 {
        let (tx, path) = (tx.clone(), m.p(&format!("out/w{w}")));
        jobs += 1;
        std::thread::spawn(move || {
            let data = pattern(6 * 1024 * 1024 + 3, 100 + w);
            let mut f = std::fs::File::create(&path).unwrap();
            for chunk in data.chunks(64 * 1024) {
                f.write_all(chunk).unwrap();
            }
            drop(f);
            tx.send(format!("writer {w}")).unwrap();
        });
    }
    drop(tx);
    for _ in 0..jobs {
        match rx.recv_timeout(std::time::Duration::from_secs(180)) {
            Ok(_) => {}
            Err(e) => panic!("a reader or writer did not finish (hang or panic): {e}"),
        }
    }
    for w in 0..4u64 {
        assert_same(
            &b.get(&format!("out/w{w}")),
            &pattern(6 * 1024 * 1024 + 3, 100 + w),
            &format!("out/w{w}"),
        );
    }
}

/// A 1 MiB tmpfs, unmounted on drop: a cache directory that fills up.
struct TinyDisk(tempfile::TempDir);

impl TinyDisk {
    fn new() -> TinyDisk {
        let d = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mounting a tmpfs needs root, as FUSE mounts here do"
        );
        TinyDisk(d)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn full_cache_disk_fails_fsync_and_close_and_keeps_the_object() {
    // A random write staged on a disk with no room: fsync and close report the failure
    // (EIO, logged with the key and ENOSPC), the object in S3 stays what it was, and the
    // mount goes on serving it.
    let b = Bucket::new("fulldisk");
    let orig = pattern(4 << 20, 31);
    b.put("f.bin", orig.clone());
    let disk = TinyDisk::new();
    let m = Mount::new(&b.name, &["--cache-dir", disk.0.path().to_str().unwrap()]);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("f.bin"))
        .unwrap();
    // Short writes are allowed; what matters is that nothing claims durability.
    let _ = f.write_at(&vec![7u8; 2 << 20], 1 << 20);
    let e = f.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    drop(f);
    let log = m.log_text();
    assert!(
        log.contains("f.bin") && log.contains("No space left on device"),
        "{log}"
    );
    assert_same(&b.get("f.bin"), &orig, "f.bin in S3");
    assert_same(
        &std::fs::read(m.p("f.bin")).unwrap(),
        &orig,
        "f.bin read back",
    );
}

/// The headers of `key` a rewrite must keep, as the server reports them.
fn kept_headers(b: &Bucket, key: &str) -> [Option<String>; 3] {
    let h = b.head(key);
    [
        h.cache_control().map(str::to_string),
        h.content_disposition().map(str::to_string),
        h.content_language().map(str::to_string),
    ]
}

#[test]
fn chmod_edit_truncate_and_rename_keep_an_objects_headers() {
    let b = Bucket::new("keep-headers");
    rt().block_on(
        client()
            .put_object()
            .bucket(&b.name)
            .key("f")
            .cache_control("max-age=60")
            .content_disposition("attachment; filename=\"f.txt\"")
            .content_language("fr")
            .body(aws_sdk_s3::primitives::ByteStream::from(
                b"0123456789".to_vec(),
            ))
            .send(),
    )
    .expect("put f");
    let want = kept_headers(&b, "f");
    assert_eq!(
        want[0].as_deref(),
        Some("max-age=60"),
        "the server keeps Cache-Control"
    );
    let m = Mount::new(&b.name, &[]);
    std::fs::set_permissions(m.p("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(kept_headers(&b, "f"), want, "after chmod");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.p("f"))
        .unwrap();
    f.write_all(b"+more").unwrap();
    drop(f);
    assert_eq!(b.get("f"), b"0123456789+more");
    assert_eq!(kept_headers(&b, "f"), want, "after an append");
    run_ok(Command::new("truncate").args(["-s", "4"]).arg(m.p("f")));
    assert_eq!(b.get("f"), b"0123");
    assert_eq!(kept_headers(&b, "f"), want, "after truncate");
    std::fs::rename(m.p("f"), m.p("g")).unwrap();
    assert_eq!(kept_headers(&b, "g"), want, "after rename");
}

/// `cp` inside the mount copies server-side: a 64 MiB file is one CopyObject (or a part
/// copy) and not one data byte through the daemon; the copy keeps the source's content
/// type and user metadata, and reads back byte for byte. `cp` out of the mount and a
/// partial `dd` still copy through reads and writes.
#[test]
fn cp_inside_the_mount_is_a_server_side_copy() {
    let b = Bucket::new("srvcopy");
    let data = pattern(64 * MIB as usize, 77);
    b.put_meta("big.dat", data.clone(), &[("origin", "lab-7")]);
    let m = Mount::new(&b.name, &[]);
    let src_head = b.head("big.dat");
    m.reset_stats();
    run_ok(Command::new("cp").arg(m.p("big.dat")).arg(m.p("copy.dat")));
    let s = m.stats();
    let copies = op(&s, "CopyObject", "requests") + op(&s, "UploadPartCopy", "requests");
    assert!(copies >= 1, "no server-side copy: {s}");
    for name in ["GetObject", "UploadPart", "PutObject"] {
        assert_eq!(op(&s, name, "requests"), 0, "{name} during cp: {s}");
    }
    assert_same(&b.get("copy.dat"), &data, "the copy in S3");
    let h = b.head("copy.dat");
    assert_eq!(h.content_type(), src_head.content_type());
    assert_eq!(
        h.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("lab-7")
    );
    assert_eq!(std::fs::metadata(m.p("copy.dat")).unwrap().len(), 64 * MIB);
    assert_same(&std::fs::read(m.p("copy.dat")).unwrap(), &data, "read back");

    // Out of the mount: the bytes come through reads (copy_file_range across
    // filesystems is the kernel's to refuse).
    let out = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("cp")
            .arg(m.p("copy.dat"))
            .arg(out.path().join("x")),
    );
    assert_same(
        &std::fs::read(out.path().join("x")).unwrap(),
        &data,
        "copied out",
    );
    // A part of a file: dd's ranges are reads and writes, and the result is right.
    m.reset_stats();
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", m.p("big.dat").display()))
            .arg(format!("of={}", m.p("part.dat").display()))
            .args(["bs=1M", "skip=3", "count=2", "status=none"]),
    );
    assert_same(
        &b.get("part.dat"),
        &data[3 * MIB as usize..5 * MIB as usize],
        "dd of a range",
    );
}
