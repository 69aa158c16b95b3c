//! The Prometheus endpoint of a mount (`--metrics-addr`), scraped over HTTP as
//! Prometheus would while real file operations run through the mount.

mod common;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, Bucket, Mount};

/// An address on 127.0.0.1 that nothing listens on now.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// One scrape of `addr`: every sample, by its name with labels as written.
fn scrape(addr: &str) -> HashMap<String, f64> {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: bucketfs\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, v) = l.rsplit_once(' ').unwrap();
            (name.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn get(s: &HashMap<String, f64>, name: &str) -> f64 {
    *s.get(name)
        .unwrap_or_else(|| panic!("{name} not among {:?}", s.keys()))
}

fn op(metric: &str, op: &str) -> String {
    format!("{metric}{{op=\"{op}\"}}")
}

/// Scrape until `ok` holds of a scrape (what the kernel sends after a call returns,
/// RELEASE, comes on its own time), for at most 10 s; the last scrape.
fn scrape_until(addr: &str, ok: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(addr);
        if ok(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::yield_now();
    }
}

#[test]
fn the_metrics_endpoint_counts_requests_handles_caches_and_pending_uploads() {
    let b = Bucket::new("metrics");
    let big = vec![7u8; 2 << 20];
    b.put("big.bin", big.clone());
    let addr = free_addr();
    let m = Mount::new(&b.name, &["--metrics-addr", &addr]);

    let s = scrape(&addr);
    for o in ["GetObject", "PutObject", "HeadObject", "UploadPart"] {
        assert!(s.contains_key(&op("bucketfs_s3_requests_total", o)), "{o}");
    }
    assert_eq!(get(&s, "bucketfs_open_handles{kind=\"file\"}"), 0.0);
    assert_eq!(get(&s, "bucketfs_pending_upload_bytes"), 0.0);

    // A file written and still open: one handle, its bytes pending upload.
    let mut f = std::fs::File::create(m.p("new.bin")).unwrap();
    f.write_all(&vec![1u8; 3 << 20]).unwrap();
    let s = scrape(&addr);
    assert_eq!(get(&s, "bucketfs_open_handles{kind=\"file\"}"), 1.0);
    assert_eq!(get(&s, "bucketfs_dirty_files"), 1.0);
    assert_eq!(
        get(&s, "bucketfs_pending_upload_bytes"),
        (3u64 << 20) as f64
    );
    // Closed: durably in S3, nothing pending (close returned after the upload).
    drop(f);
    let s = scrape(&addr);
    assert_eq!(get(&s, "bucketfs_pending_upload_bytes"), 0.0);
    assert_eq!(get(&s, "bucketfs_dirty_files"), 0.0);
    assert_eq!(b.get("new.bin").len(), 3 << 20);
    let s = scrape_until(&addr, |s| {
        s.get("bucketfs_open_handles{kind=\"file\"}") == Some(&0.0)
    });
    assert_eq!(get(&s, "bucketfs_open_handles{kind=\"file\"}"), 0.0);
    let sent = get(&s, &op("bucketfs_s3_body_bytes_total", "PutObject"))
        + get(&s, &op("bucketfs_s3_body_bytes_total", "UploadPart"));
    assert_eq!(sent, (3u64 << 20) as f64);

    // A random read of the object put by the SDK: a data cache miss, and its bytes.
    let mut r = std::fs::File::open(m.p("big.bin")).unwrap();
    r.seek(SeekFrom::Start(1 << 20)).unwrap();
    let mut buf = [0u8; 4096];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [7u8; 4096]);
    let s = scrape(&addr);
    assert!(get(&s, "bucketfs_cache_misses_total{cache=\"data\"}") >= 1.0);
    assert!(get(&s, "bucketfs_cache_misses_total{cache=\"metadata\"}") >= 1.0);
    assert!(get(&s, &op("bucketfs_s3_body_bytes_total", "GetObject")) >= 4096.0);
    drop(r);

    // The metrics count what the stats xattr counts, and nothing is left in flight.
    let before = m.stats();
    let s = scrape_until(&addr, |s| {
        s.iter()
            .filter(|(k, _)| k.starts_with("bucketfs_s3_requests_in_flight"))
            .all(|(_, v)| *v == 0.0)
    });
    let after = m.stats();
    for (name, counts) in after.as_object().unwrap() {
        let n = get(&s, &op("bucketfs_s3_requests_total", name));
        let (lo, hi) = (
            before[name]["requests"].as_f64().unwrap(),
            counts["requests"].as_f64().unwrap(),
        );
        assert!(lo <= n && n <= hi, "{name}: {lo} <= {n} <= {hi}");
        if n > 0.0 {
            let answered = get(&s, &op("bucketfs_s3_request_duration_seconds_count", name));
            assert!(
                answered >= 1.0 && answered <= n,
                "{name}: {answered} of {n}"
            );
        }
    }
    for (k, v) in &s {
        if k.starts_with("bucketfs_s3_requests_in_flight") {
            assert_eq!(*v, 0.0, "{k}");
        }
    }
    // The xattr's reset leaves the metrics' counters as they are (they only grow).
    let puts = get(&s, &op("bucketfs_s3_requests_total", "PutObject"))
        + get(
            &s,
            &op("bucketfs_s3_requests_total", "CompleteMultipartUpload"),
        );
    assert!(puts >= 1.0);
    m.reset_stats();
    let s = scrape(&addr);
    let again = get(&s, &op("bucketfs_s3_requests_total", "PutObject"))
        + get(
            &s,
            &op("bucketfs_s3_requests_total", "CompleteMultipartUpload"),
        );
    assert_eq!(again, puts);
}

#[test]
fn an_address_in_use_fails_the_mount_with_one_line() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = |addr: &str| {
        let mut c = Command::new(bin());
        c.args(["mount", "some-bucket"])
            .arg(dir.path())
            .args([
                "--endpoint-url",
                "http://127.0.0.1:1",
                "--region",
                "us-east-1",
            ])
            .args(["--metrics-addr", addr])
            .env("XDG_CACHE_HOME", dir.path().with_extension("cache"))
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "y");
        common::loopback_env(&mut c);
        c.output().unwrap()
    };
    let o = run(&addr);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "bucketfs: --metrics-addr {addr}: cannot listen there: "
        )),
        "{err}"
    );
    let o = run("nonsense");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--metrics-addr nonsense: "), "{err}");
    drop(held);
}
