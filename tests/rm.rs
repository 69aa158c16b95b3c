//! End-to-end tests of `bucketfs rm`: the real binary against the real S3 server on
//! 127.0.0.1, by s3:// URL and by paths inside a real FUSE mount, checked with the S3
//! API and the request counts `--stats` prints.

mod common;

use std::process::{Command, Output};

use common::*;

/// `bucketfs rm ARGS...` with the test server's credentials and no proxy.
fn rm(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("rm")
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap()
}

/// `rm` of an s3:// URL on the test server.
fn rm_s3(args: &[&str]) -> Output {
    let ep = endpoint();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--endpoint-url",
        &ep,
        "--force-path-style",
        "--region",
        "us-east-1",
    ]);
    rm(&all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The requests of `op` in the `requests:` line `--stats` prints (0 when absent).
fn requests(err: &str, op: &str) -> u64 {
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("bucketfs rm: requests: "))
        .unwrap_or_else(|| panic!("no requests line in {err:?}"));
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{op}=")))
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn rm_r_deletes_5000_keys_in_5_delete_objects_of_keys_and_keeps_the_siblings() {
    // Five DeleteObjects of 1,000 keys and one listing to see whether `tree/` is gone;
    // SeaweedFS keeps an emptied directory as a folder until its marker is deleted,
    // which is one DeleteObjects more there (none on AWS or MinIO).
    let b = Bucket::new("rm-many");
    let keys: Vec<String> = (0..5_000).map(|i| format!("tree/{i:05}")).collect();
    b.put_many(keys, b"x");
    for k in ["treehouse", "tree.txt", "tree", "other/tree/x"] {
        b.put(k, "sibling");
    }
    let out = rm_s3(&["-r", &format!("s3://{}/tree", b.name), "--stats"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("bucketfs rm: deleted 5000 objects\n"), "{err}");
    let batches = requests(&err, "DeleteObjects");
    assert!(batches == 5 || batches == 6, "{err}");
    assert_eq!(requests(&err, "ListObjectsV2"), 6, "{err}");
    assert_eq!(requests(&err, "DeleteObject"), 0, "{err}");
    // stderr is not a terminal: no progress line.
    assert!(!err.contains('\r'), "{err:?}");
    assert_eq!(b.keys("tree/"), Vec::<String>::new());
    assert_eq!(
        b.keys(""),
        ["other/tree/x", "tree", "tree.txt", "treehouse"]
    );
}

#[test]
fn rm_of_one_key_a_directory_and_a_missing_key() {
    let b = Bucket::new("rm-one");
    b.put("d/f", "x");
    b.put("d/g", "x");
    b.put("file", "x");
    let url = |k: &str| format!("s3://{}/{k}", b.name);

    let out = rm_s3(&[&url("file"), "--stats"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("bucketfs rm: deleted 1 object\n"), "{err}");
    assert_eq!(requests(&err, "DeleteObjects"), 1, "{err}");
    assert!(!b.exists("file"));

    let out = rm_s3(&[&url("d")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(
        err,
        format!("bucketfs rm: {}: is a directory, use -r\n", url("d"))
    );
    assert!(b.exists("d/f"));

    let out = rm_s3(&[&url("nothing")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("bucketfs rm: {}: no such object\n", url("nothing"))
    );
    let out = rm_s3(&["-f", "-q", &url("nothing")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    // -R, and a plain object under -r.
    let out = rm_s3(&["-R", "-q", &url("d/f")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(b.keys(""), ["d/g"]);
}

#[test]
fn a_refused_request_is_one_line_and_exit_1() {
    let b = Bucket::new("rm-refused");
    b.put("d/f", "x");
    let ep = endpoint();
    let out = Command::new(bin())
        .args(["rm", "-r", &format!("s3://{}/d", b.name)])
        .args(["--endpoint-url", &ep, "--force-path-style", "--region"])
        .arg("us-east-1")
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("bucketfs rm: list s3://{}/d/: ", b.name)),
        "{err}"
    );
    assert!(
        err.contains("SignatureDoesNotMatch") || err.contains("AccessDenied"),
        "{err}"
    );
    assert!(!err.contains('{'), "a Debug dump: {err}");
    assert!(b.exists("d/f"));
}

#[test]
fn rm_r_of_a_path_in_a_mount_and_the_mount_sees_it_gone() {
    let b = Bucket::new("rm-mount");
    b.put("dir/a", "x");
    b.put("dir/sub/b", "x");
    b.put("keep/c", "x");
    b.put("dirt", "x");
    let m = Mount::new(&b.name, &["--metadata-ttl", "0"]);
    // The mount has seen the directory.
    assert_eq!(sh(m.path(), "ls dir | sort"), "a\nsub\n");
    let dir = m.p("dir");
    let dir = dir.to_str().unwrap();

    let out = rm(&[dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("bucketfs rm: s3://{}/dir: is a directory, use -r\n", b.name)
    );

    let out = rm(&["-r", dir, "--stats"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("deleted 2 objects"), "{err}");
    // The keys, then the markers `dir/sub/` and `dir/`.
    assert_eq!(requests(&err, "DeleteObjects"), 2, "{err}");
    assert_eq!(b.keys(""), ["dirt", "keep/c"]);
    // With a metadata TTL of 0 the mount asks S3 again: the directory is gone.
    assert_eq!(sh(m.path(), "ls | sort"), "dirt\nkeep\n");
    assert!(!m.p("dir").exists());

    // One file by its path, from inside the mount.
    let out = rm(&[m.p("keep/c").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(b.keys(""), ["dirt"]);

    // The root of a mount of a prefix: everything under the prefix, nothing else.
    b.put("p/x", "x");
    b.put("p/y/z", "x");
    b.put("px", "x");
    let pm = Mount::new(&format!("{}/p", b.name), &["--metadata-ttl", "0"]);
    assert_eq!(sh(pm.path(), "ls | sort"), "x\ny\n");
    let root = pm.path().to_str().unwrap();
    let out = rm(&[root]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a directory, use -r"));
    let out = rm(&["-r", root]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(b.keys(""), ["dirt", "px"]);
    assert_eq!(sh(pm.path(), "ls"), "");
}

/// In the mount, `rm -r` of trees in different directories deletes concurrently: the
/// kernel serialises unlinks within one directory (it locks the directory), never the
/// daemon. Through a proxy adding latency, eight `rm -r` at once overlap their
/// DeleteObject requests.
#[test]
fn unlinks_in_the_mount_do_not_wait_on_each_other() {
    let b = Bucket::new("rm-par");
    let keys: Vec<String> = (0..8)
        .flat_map(|d| (0..20).map(move |f| format!("d{d}/f{f:02}")))
        .collect();
    b.put_many(keys.clone(), b"x");
    let proxy = Proxy::start(20, 0);
    let m = Mount::new_at(&proxy.endpoint, &b.name, &[]);
    sh(m.path(), "ls -lR > /dev/null");
    m.reset_stats();
    sh(
        m.path(),
        "for d in d0 d1 d2 d3 d4 d5 d6 d7; do rm -r $d & done; wait",
    );
    let s = m.stats();
    let deletes = &s["DeleteObject"];
    assert!(
        deletes["requests"].as_u64().unwrap() >= keys.len() as u64,
        "{s}"
    );
    assert!(
        deletes["max_in_flight"].as_u64().unwrap() > 1,
        "unlinks of different directories overlap: {s}"
    );
    assert!(b.keys("").is_empty(), "{:?}", b.keys(""));
}
