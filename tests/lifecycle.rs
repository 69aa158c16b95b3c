//! End-to-end tests of lifecycle defects found by review and fault runs (issue 11): a
//! real FUSE mount of the bucketfs binary over the real S3 server on 127.0.0.1, driven
//! with std::fs, real tools and python3, checked against the S3 API and the mount's
//! request counters.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// `user.bucketfs.inodes` of the mount: (inodes in the table, idle ones).
fn inodes(m: &Mount) -> (u64, u64) {
    let v = m.root_json("user.bucketfs.inodes");
    (v["inodes"].as_u64().unwrap(), v["idle"].as_u64().unwrap())
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn a_readers_close_does_not_publish_a_file_being_written() {
    let b = Bucket::new("readclose");
    let m = Mount::new(&b.name, &[]);
    let data = pattern(12 * MIB + 5, 1);
    let mut w = std::fs::File::create(m.p("half.bin")).unwrap();
    w.write_all(&data[..12 * MIB]).unwrap();
    // `cat` (or a backup tool) opens the file read-only, reads and closes it. The
    // kernel's page cache may still hold what was written (then cat gets those bytes);
    // bytes the daemon already uploaded cannot be read before the writer closes (EIO).
    // Either way, no partial object is published.
    let out = Command::new("cat").arg(m.p("half.bin")).output().unwrap();
    if out.status.success() {
        assert!(out.stdout == data[..12 * MIB], "cat read wrong bytes");
    } else {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !b.exists("half.bin"),
        "a reader's close made the partial object visible"
    );
    w.write_all(&data[12 * MIB..]).unwrap();
    drop(w);
    assert_eq!(b.get("half.bin"), data);
}

#[test]
fn head_reads_from_python_fetch_one_request_per_file() {
    let b = Bucket::new("headreads");
    b.put_many(
        (0..100).map(|i| format!("h/f{i:03}")).collect(),
        &pattern(MIB, 2),
    );
    let m = Mount::new(&b.name, &[]);
    assert_eq!(names(&m.p("h")).len(), 100);
    m.reset_stats();
    sh(
        m.path(),
        "python3 -c '
import os
for n in sorted(os.listdir(\"h\")):
    with open(\"h/\" + n, \"rb\") as f:
        assert len(f.read(4096)) == 4096
'",
    );
    let s = m.stats();
    let gets = s["GetObject"]["requests"].as_u64().unwrap();
    let bytes = s["GetObject"]["bytes"].as_u64().unwrap();
    // The whole files are 100 MiB; a stream's first request is 256 KiB.
    assert!(gets <= 100, "{gets} GetObject for 100 head reads");
    assert!(
        bytes <= 100 * 256 * 1024,
        "{bytes} bytes fetched for 100 reads of 4 KiB"
    );
}

#[test]
fn partly_read_directories_leave_a_bounded_inode_table_and_entries_keep_their_inodes() {
    let b = Bucket::new("inodes");
    b.put_many(
        (0..5_000).map(|i| format!("d/f{i:05}")).collect(),
        b"twelve bytes",
    );
    let m = Mount::new(&b.name, &["--max-idle-inodes", "100"]);
    // Like `ls | head`: read a few entries and close the directory.
    let out = sh(
        m.path(),
        "python3 -c '
import os
it = os.scandir(\"d\")
print(\"\\n\".join(next(it).name for _ in range(3)))
it.close()
'",
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let (all, idle) = inodes(&m);
    assert!(idle <= 100, "{idle} idle inodes kept");
    // The kernel holds the entries it received; the rest of the listing is not kept.
    assert!(all < 1_000, "{all} inodes after ls | head");

    // `ls -l` of the whole directory through READDIRPLUS, whose buffer overflows many
    // times: every entry has its real attributes and a live inode.
    let out = sh(m.path(), "ls -li d");
    let mut n = 0;
    for line in out.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[5], "12", "wrong size in {line:?}");
        let ino: u64 = f[0].parse().unwrap();
        let st = std::fs::metadata(m.p("d").join(f[9])).unwrap();
        assert_eq!(st.ino(), ino, "{line:?}");
        n += 1;
    }
    assert_eq!(n, 5_000);
}

#[test]
fn a_large_directory_lists_twice_with_the_requests_of_two_listings() {
    let b = Bucket::new("relist");
    let n = 50_000;
    b.put_many((0..n).map(|i| format!("big/k{i:06}")).collect(), b"");
    let m = Mount::new(&b.name, &["--metadata-ttl", "3600"]);
    assert!(std::fs::metadata(m.p("big")).unwrap().is_dir());
    m.reset_stats();
    for pass in 0..2 {
        let out = sh(m.path(), "ls -f big | wc -l");
        assert_eq!(out.trim(), (n + 2).to_string(), "pass {pass}");
    }
    // Each pass costs at most one listing of 50 pages; the second may reuse the first.
    let lists = m.requests("ListObjectsV2");
    assert!(lists <= 2 * 51, "{lists} ListObjectsV2 for two listings");
    assert_eq!(m.requests("HeadObject"), 0);
}

#[test]
fn a_closed_file_is_in_every_later_listing_while_others_list() {
    let b = Bucket::new("listclose");
    b.put_many((0..300).map(|i| format!("d/old{i:03}")).collect(), b"x");
    let m = Mount::new(&b.name, &[]);
    let dir = m.p("d");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Listers keep listing the directory while files are created in it.
    let listers: Vec<_> = (0..3)
        .map(|_| {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut passes = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert!(names(&dir).len() >= 300);
                    passes += 1;
                }
                passes
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut missing = Vec::new();
                for i in 0..40 {
                    let name = format!("new-{t}-{i}");
                    std::fs::write(dir.join(&name), name.as_bytes()).unwrap();
                    // Closed: every later listing and lookup shows it.
                    if !names(&dir).contains(&name) {
                        missing.push(format!("{name} not listed"));
                    }
                    if let Err(e) = std::fs::metadata(dir.join(&name)) {
                        missing.push(format!("{name}: {e}"));
                    }
                }
                missing
            })
        })
        .collect();
    let missing: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes: usize = listers.into_iter().map(|l| l.join().unwrap()).sum();
    assert!(missing.is_empty(), "{} misses: {missing:?}", missing.len());
    assert!(passes > 0);
    assert_eq!(b.keys("d/").len(), 460);
}

#[test]
fn downloads_cut_off_part_way_are_resumed() {
    let b = Bucket::new("cutget");
    let data = pattern(40 * MIB + 123, 3);
    b.put("big.bin", data.clone());
    // Every connection is reset after 3 MiB from the server: most GETs of 8 MiB parts
    // are cut off part-way, some more than once.
    let proxy = Proxy::start(0, 3 * MIB as u64);
    let m = Mount::new_at(&proxy.endpoint, &b.name, &[]);
    let mut got = Vec::new();
    std::fs::File::open(m.p("big.bin"))
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == data, "the bytes read differ from the object");
    let gets = m.requests("GetObject");
    assert!(gets > 8, "only {gets} GetObject: nothing was cut off");
}

#[test]
fn sizes_beyond_s3s_limit_fail_at_once_with_efbig() {
    let b = Bucket::new("efbig");
    let m = Mount::new(&b.name, &[]);
    std::fs::write(m.p("f"), b"data").unwrap();
    let t = Instant::now();
    let out = Command::new("truncate")
        .args(["-s", "999999999999999"])
        .arg(m.p("f"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a timing assertion: a request that uploaded zeros would take minutes.
    assert!(t.elapsed() < Duration::from_secs(60));
    assert_eq!(b.get("f"), b"data");
    assert_eq!(std::fs::metadata(m.p("f")).unwrap().len(), 4);
}

#[test]
fn oversized_xattr_on_an_open_file_fails_at_set_and_the_file_is_kept() {
    let b = Bucket::new("bigxattr");
    let m = Mount::new(&b.name, &[]);
    let mut f = std::fs::File::create(m.p("f")).unwrap();
    f.write_all(b"payload").unwrap();
    let big = "v".repeat(64 * 1024);
    let out = Command::new("setfattr")
        .args(["-n", "user.big", "-v", &big])
        .arg(m.p("f"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a 64 KiB xattr was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Argument list too long"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(b.get("f"), b"payload");
}

#[test]
fn growing_a_file_by_truncate_or_a_far_write_sends_no_zeros() {
    let b = Bucket::new("sparse");
    let m = Mount::new(&b.name, &[]);
    std::fs::write(m.p("f"), b"data").unwrap();
    m.reset_stats();
    let ok = Command::new("truncate")
        .args(["-s", "1G"])
        .arg(m.p("f"))
        .status()
        .unwrap();
    assert!(ok.success());
    // 1 GiB in 8 MiB parts: the first carries "data", the other 127 are holes copied
    // from one zero object of one part; about 16 MiB cross the network, not 1 GiB.
    let sent = m.stats()["UploadPart"]["bytes"].as_u64().unwrap()
        + m.stats()["PutObject"]["bytes"].as_u64().unwrap();
    assert!(
        sent <= 16 * MIB as u64,
        "{sent} bytes sent to grow a file to 1 GiB"
    );
    assert_eq!(m.requests("UploadPartCopy"), 127);
    assert_eq!(b.head("f").content_length(), Some(1 << 30));
    assert_eq!(std::fs::metadata(m.p("f")).unwrap().len(), 1 << 30);
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(m.p("f")).unwrap();
    file.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"data\0\0\0\0");
    // dd writing one block 200 MiB in.
    m.reset_stats();
    sh(
        m.path(),
        "dd if=/dev/urandom of=g bs=4096 count=1 seek=51200 status=none",
    );
    assert_eq!(b.head("g").content_length(), Some(200 * MIB as i64 + 4096));
    let sent = m.stats()["UploadPart"]["bytes"].as_u64().unwrap()
        + m.stats()["PutObject"]["bytes"].as_u64().unwrap();
    assert!(
        sent <= 24 * MIB as u64,
        "{sent} bytes sent for one 4 KiB block"
    );
    // No temporary object is left behind or shown.
    assert_eq!(b.keys(""), vec!["f".to_string(), "g".to_string()]);
    assert_eq!(names(m.path()), ["f", "g"].map(String::from).into());
}

#[test]
fn a_shell_redirection_is_one_put_and_an_empty_create_is_still_durable() {
    let b = Bucket::new("redirect");
    let m = Mount::new(&b.name, &[]);
    m.reset_stats();
    // bash opens f, dup2()s it onto stdout and closes the original before writing.
    sh(m.path(), "echo x > f");
    assert_eq!(b.get("f"), b"x\n");
    assert_eq!(
        m.requests("PutObject"),
        1,
        "echo x > f sent an empty object first"
    );
    sh(m.path(), "/bin/echo y > g");
    assert_eq!(b.get("g"), b"y\n");
    assert_eq!(m.requests("PutObject"), 2);
    // A file created and closed without a write is in S3 when close returns.
    sh(m.path(), "touch empty && exec 3> empty3 && exec 3>&-");
    assert_eq!(b.get("empty"), b"");
    assert_eq!(b.get("empty3"), b"");
    // Truncating redirection of an existing file: the old content stays until the new
    // one replaces it (no empty version in between).
    sh(m.path(), "echo second > f");
    assert_eq!(b.get("f"), b"second\n");
    assert_eq!(m.requests("PutObject"), 5);
}

#[test]
fn an_outage_shorter_than_the_retry_window_costs_waiting_not_errors() {
    let b = Bucket::new("outage");
    let data = pattern(3 * MIB, 7);
    b.put("d/cached.bin", data.clone());
    b.put("d/other", "x");
    let proxy = Proxy::start(0, 0);
    let port = proxy.port;
    let m = Mount::new_at(&proxy.endpoint, &b.name, &["--metadata-ttl", "0.2"]);
    assert!(std::fs::read(m.p("d/cached.bin")).unwrap() == data);
    // The server becomes unreachable: connections are refused.
    drop(proxy);
    let dir = m.p("d");
    let ops: Vec<std::thread::JoinHandle<Result<(), String>>> = vec![
        {
            let (p, data) = (dir.join("cached.bin"), data.clone());
            std::thread::spawn(move || {
                let got = std::fs::read(&p).map_err(|e| format!("read: {e}"))?;
                (got == data)
                    .then_some(())
                    .ok_or("read: wrong bytes".into())
            })
        },
        {
            let p = dir.clone();
            std::thread::spawn(move || {
                let n = std::fs::read_dir(&p)
                    .map_err(|e| format!("ls: {e}"))?
                    .count();
                (n >= 2).then_some(()).ok_or(format!("ls: {n} entries"))
            })
        },
        {
            let p = dir.join("new.bin");
            std::thread::spawn(move || {
                std::fs::write(&p, pattern(MIB, 8)).map_err(|e| format!("write: {e}"))
            })
        },
        {
            let p = dir.join("other");
            std::thread::spawn(move || {
                std::fs::metadata(&p)
                    .map(|_| ())
                    .map_err(|e| format!("stat: {e}"))
            })
        },
    ];
    // The outage lasts a few seconds (this wait is the outage, not a synchronisation),
    // then the server is reachable again at the same address.
    std::thread::sleep(Duration::from_secs(4));
    let _back = Proxy::start_on(0, 0, &format!("127.0.0.1:{port}"));
    let results: Vec<Result<(), String>> = ops.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(b.get("d/new.bin"), pattern(MIB, 8));
    let log = m.log_text();
    assert!(log.contains("S3 requests are failing"), "{log}");
    assert!(log.contains("S3 answers again"), "{log}");
}

#[test]
fn staging_files_of_a_killed_daemon_are_removed_at_the_next_mount() {
    use std::os::unix::fs::FileExt;
    let b = Bucket::new("leftovers");
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap().to_string();
    let m = Mount::new(&b.name, &["--cache-dir", &cache_arg]);
    // Written out of order: the file is staged locally.
    let f = std::fs::File::create(m.p("staged.bin")).unwrap();
    f.write_all_at(&pattern(2 * MIB, 9), MIB as u64).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    let staging = cache.path().join(&b.name).join("staging");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 1);
    let pid = m.daemon_pid();
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    drop(f);
    let m = m.remount();
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "the dead daemon's staging file is still there"
    );
    assert!(
        m.log_text().contains("removed 1 staging files"),
        "{}",
        m.log_text()
    );
}

/// A daemon killed with -9 in the middle of a multipart upload leaves the upload in the
/// bucket; the next mount of the same cache directory knows it as its own (the upload
/// journal) and aborts it once older than `--abort-incomplete-after`.
#[test]
fn uploads_of_a_killed_daemon_are_aborted_by_the_next_mount() {
    let b = Bucket::new("orphans");
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap().to_string();
    // Someone else's upload in the same bucket is never ours to abort.
    rt().block_on(
        b.client()
            .create_multipart_upload()
            .bucket(&b.name)
            .key("theirs.bin")
            .send(),
    )
    .expect("create a foreign upload");
    let m = Mount::new(&b.name, &["--cache-dir", &cache_arg]);
    let mut f = std::fs::File::create(m.p("big.bin")).unwrap();
    // Past one part: a multipart upload is under way while the file is still open.
    f.write_all(&pattern(20 * MIB, 4)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while b.pending_uploads() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no multipart upload began"
        );
        std::thread::yield_now();
    }
    let pid = m.daemon_pid();
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    drop(f);
    drop(m);
    assert_eq!(b.pending_uploads(), 2, "the killed daemon's upload is left");

    // The default keeps uploads for 24 hours: this one is young.
    let m = Mount::new(&b.name, &["--cache-dir", &cache_arg]);
    assert_eq!(b.pending_uploads(), 2);
    drop(m);
    let m = Mount::new(
        &b.name,
        &["--cache-dir", &cache_arg, "--abort-incomplete-after", "0"],
    );
    assert_eq!(b.pending_uploads(), 1, "only the foreign upload is left");
    assert!(
        m.log_text()
            .contains("aborted 1 incomplete multipart uploads"),
        "{}",
        m.log_text()
    );
    assert_eq!(m.requests("AbortMultipartUpload"), 1);
    assert!(!b.exists("big.bin"));
}
