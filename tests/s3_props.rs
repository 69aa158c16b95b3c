//! End-to-end tests of the S3 properties bucketfs keeps and shows, over moto's server on
//! 127.0.0.1 (SeaweedFS does not keep storage classes or SSE-KMS keys): a rewrite keeps
//! the storage class, the KMS key and the headers, and `user.s3.*` xattrs read and change
//! them with one CopyObject.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use common::*;

const KEY_ID: &str = "arn:aws:kms:us-east-1:123456789012:key/bucketfs-test";

/// Storage class, encryption, key id and Cache-Control of `key`.
fn props(b: &Bucket, key: &str) -> [Option<String>; 4] {
    let h = b.head(key);
    [
        h.storage_class().map(|c| c.as_str().to_string()),
        h.server_side_encryption().map(|e| e.as_str().to_string()),
        h.ssekms_key_id().map(str::to_string),
        h.cache_control().map(str::to_string),
    ]
}

fn xattr(path: &std::path::Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "getfattr -n {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn setfattr(path: &std::path::Path, name: &str, value: &str) {
    let out = Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setfattr -n {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rewrites_keep_storage_class_kms_key_and_headers_and_xattrs_change_them() {
    let b = Bucket::new_at(&moto_endpoint(), "props");
    rt().block_on(
        b.client()
            .put_object()
            .bucket(&b.name)
            .key("f")
            .storage_class(StorageClass::StandardIa)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(KEY_ID)
            .cache_control("max-age=60")
            .body(ByteStream::from(b"0123456789".to_vec()))
            .send(),
    )
    .expect("put f");
    let want = [
        Some("STANDARD_IA".to_string()),
        Some("aws:kms".to_string()),
        Some(KEY_ID.to_string()),
        Some("max-age=60".to_string()),
    ];
    assert_eq!(props(&b, "f"), want, "the server keeps what was put");

    let m = Mount::new_at(&moto_endpoint(), &b.name, &[]);
    let f = m.p("f");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(props(&b, "f"), want, "after chmod");
    let mut h = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
    h.write_all(b"+").unwrap();
    drop(h);
    assert_eq!(b.get("f"), b"0123456789+");
    assert_eq!(props(&b, "f"), want, "after an append");
    std::fs::rename(&f, m.p("g")).unwrap();
    assert_eq!(props(&b, "g"), want, "after rename");
    let g = m.p("g");

    assert_eq!(xattr(&g, "user.s3.storage_class"), "STANDARD_IA");
    assert_eq!(xattr(&g, "user.s3.sse"), "aws:kms");
    assert_eq!(xattr(&g, "user.s3.sse_kms_key_id"), KEY_ID);
    assert_eq!(xattr(&g, "user.s3.cache_control"), "max-age=60");

    // Changing the class or a header in place: one CopyObject, nothing downloaded.
    m.reset_stats();
    setfattr(&g, "user.s3.storage_class", "GLACIER_IR");
    assert_eq!(m.requests("CopyObject"), 1);
    setfattr(&g, "user.s3.cache_control", "no-store");
    assert_eq!(m.requests("CopyObject"), 2);
    assert_eq!(m.requests("GetObject"), 0);
    assert_eq!(
        props(&b, "g"),
        [
            Some("GLACIER_IR".to_string()),
            Some("aws:kms".to_string()),
            Some(KEY_ID.to_string()),
            Some("no-store".to_string()),
        ]
    );
    assert_eq!(b.get("g"), b"0123456789+");
}

#[test]
fn mount_options_set_class_and_encryption_of_new_objects() {
    let b = Bucket::new_at(&moto_endpoint(), "newprops");
    let m = Mount::new_at(
        &moto_endpoint(),
        &b.name,
        &[
            "--storage-class",
            "STANDARD_IA",
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            KEY_ID,
        ],
    );
    std::fs::write(m.p("small"), b"hello").unwrap();
    // Over one part: a streamed multipart upload.
    std::fs::write(m.p("big"), pattern(12 << 20, 3)).unwrap();
    std::fs::create_dir(m.p("d")).unwrap();
    let enc = |key: &str| {
        let h = b.head(key);
        (
            h.server_side_encryption().map(|e| e.as_str().to_string()),
            h.ssekms_key_id().map(str::to_string),
        )
    };
    let kms = (Some("aws:kms".to_string()), Some(KEY_ID.to_string()));
    for key in ["small", "big"] {
        assert_eq!(props(&b, key)[0].as_deref(), Some("STANDARD_IA"), "{key}");
        assert_eq!(enc(key), kms, "{key}");
    }
    assert_eq!(b.get("big"), pattern(12 << 20, 3));
    // A directory marker is encrypted too, but keeps the bucket's class (an IA object
    // is billed as at least 128 KiB).
    assert_eq!(enc("d/"), kms);
    assert_ne!(props(&b, "d/")[0].as_deref(), Some("STANDARD_IA"));
}

#[test]
fn a_bad_storage_class_or_encryption_option_is_refused_before_mounting() {
    let b = Bucket::new_at(&moto_endpoint(), "badopts");
    for extra in [
        &["--storage-class", "fast"][..],
        &["--sse", "rot13"],
        &["--sse-kms-key-id", KEY_ID],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().with_extension("log");
        let out = mount_cmd_at(&moto_endpoint(), &b.name, dir.path(), &log, extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} mounted");
        let err = String::from_utf8_lossy(&out.stderr);
        // One readable line, exit 1 or 2 (clap's usage error), never a panic's 101.
        assert!(matches!(out.status.code(), Some(1 | 2)), "{extra:?}: {err}");
        assert!(
            err.starts_with("bucketfs: ") && err.trim_end().lines().count() == 1,
            "{extra:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
    }
}

/// GET `url` with a plain HTTP client (no credentials, no proxy): status and body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let script = r#"
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    r = opener.open(sys.argv[1], timeout=30)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
sys.stdout.write(str(code) + "\n")
sys.stdout.flush()
sys.stdout.buffer.write(body)
"#;
    let out = Command::new("python3")
        .args(["-c", script, url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nl = out.stdout.iter().position(|b| *b == b'\n').unwrap();
    let code = std::str::from_utf8(&out.stdout[..nl])
        .unwrap()
        .parse()
        .unwrap();
    (code, out.stdout[nl + 1..].to_vec())
}

#[test]
fn a_presigned_url_from_the_xattr_fetches_the_bytes_and_expires() {
    for endpoint in [moto_endpoint(), endpoint()] {
        let b = Bucket::new_at(&endpoint, "presign");
        let data = pattern(300_000, 5);
        b.put("dir/f.bin", data.clone());
        let m = Mount::new_at(&endpoint, &b.name, &["--presign-expires", "2"]);
        m.reset_stats();
        let url = xattr(&m.p("dir/f.bin"), "user.s3.presigned_url");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert_eq!(m.requests("GetObject"), 0, "the mount signs locally");
        let (code, body) = http_get(&url);
        assert_eq!(code, 200, "{endpoint}: {}", String::from_utf8_lossy(&body));
        assert!(
            body == data,
            "{endpoint}: {} bytes, not the object",
            body.len()
        );
        // Past its expiry the server refuses it. moto serves expired URLs, so this part
        // runs on SeaweedFS, which checks. Waiting out the clock is the point here.
        if endpoint == moto_endpoint() {
            continue;
        }
        std::thread::sleep(std::time::Duration::from_millis(3_100));
        let (code, _) = http_get(&url);
        assert_eq!(code, 403, "{endpoint}: an expired URL was served");
    }
}

/// `bucketfs presign ARGS...`: the URL it prints (it must succeed).
fn presign(args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("presign")
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bucketfs presign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// PUT `body` to `url` with a plain HTTP client: the status.
fn http_put(url: &str, body: &[u8]) -> u16 {
    let script = r#"
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
req = urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(), method="PUT")
try:
    print(opener.open(req, timeout=30).status)
except urllib.error.HTTPError as e:
    print(e.code)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn bucketfs_presign_signs_get_and_put_urls_for_mount_paths_and_s3_urls() {
    let ep = endpoint();
    let b = Bucket::new_at(&ep, "presign-cli");
    let data = pattern(70_000, 9);
    b.put("dir/f.bin", data.clone());
    let m = Mount::new_at(&ep, &b.name, &[]);
    let f = m.p("dir/f.bin");
    let get = presign(&[f.to_str().unwrap(), "--expires", "60"]);
    assert!(get.contains("X-Amz-Expires=60"), "{get}");
    assert_eq!(http_get(&get), (200, data.clone()));
    // A PUT URL for a file that does not exist yet.
    let new = m.p("dir/new.txt");
    let put = presign(&["--method", "put", new.to_str().unwrap()]);
    assert_eq!(http_put(&put, b"uploaded by URL"), 200);
    assert_eq!(b.get("dir/new.txt"), b"uploaded by URL");
    // s3://bucket/key, with the endpoint given.
    let s3 = presign(&[
        &format!("s3://{}/dir/f.bin", b.name),
        "--endpoint-url",
        &ep,
        "--force-path-style",
        "--region",
        "us-east-1",
    ]);
    assert_eq!(http_get(&s3), (200, data.clone()));
    // A mount of a prefix: the key is the prefix and the path.
    let pm = Mount::new_at(&ep, &format!("{}/dir", b.name), &[]);
    let url = presign(&[pm.p("f.bin").to_str().unwrap()]);
    assert_eq!(http_get(&url), (200, data));
    // Outside any mount: one line, non-zero.
    let out = Command::new(bin())
        .args(["presign", "/tmp/not-a-bucketfs-file"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not inside a bucketfs mount"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The tags of `key`, sorted, as `name=value` strings.
fn tags(b: &Bucket, key: &str) -> Vec<String> {
    let out = rt()
        .block_on(
            b.client()
                .get_object_tagging()
                .bucket(&b.name)
                .key(key)
                .send(),
        )
        .expect("get tags");
    let mut v: Vec<String> = out
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    v.sort();
    v
}

fn removexattr(path: &std::path::Path, name: &str) {
    let out = Command::new("setfattr")
        .args(["-x", name])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setfattr -x {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tags_are_xattrs_fetched_only_when_asked_for_and_kept_by_rewrites() {
    // Both servers keep tags.
    for endpoint in [moto_endpoint(), endpoint()] {
        let b = Bucket::new_at(&endpoint, "tags");
        rt().block_on(
            b.client()
                .put_object()
                .bucket(&b.name)
                .key("d/t.csv")
                .tagging("team=data&stage=raw%20input")
                .body(ByteStream::from(b"a,b\n".to_vec()))
                .send(),
        )
        .expect("put d/t.csv");
        b.put("d/plain", "x");
        let m = Mount::new_at(&endpoint, &b.name, &[]);
        let f = m.p("d/t.csv");

        // `ls -l` costs no tagging call.
        m.reset_stats();
        sh(m.path(), "ls -l d >/dev/null");
        assert_eq!(m.requests("GetObjectTagging"), 0, "{endpoint}: ls -l");

        // One tag read is one GetObjectTagging.
        m.reset_stats();
        assert_eq!(xattr(&f, "user.s3.tag.stage"), "raw input");
        assert_eq!(m.requests("GetObjectTagging"), 1, "{endpoint}: getfattr -n");

        // getfattr -d names them; a file with no tags costs no tagging call.
        let dump = sh(m.path(), "getfattr -d d/t.csv");
        assert!(dump.contains("user.s3.tag.team=\"data\""), "{dump}");
        m.reset_stats();
        sh(m.path(), "getfattr -d d/plain >/dev/null");
        assert_eq!(m.requests("GetObjectTagging"), 0, "{endpoint}: untagged");

        // Set and remove: the object's bytes are not touched.
        m.reset_stats();
        setfattr(&f, "user.s3.tag.stage", "clean");
        assert_eq!(m.requests("PutObjectTagging"), 1);
        assert_eq!(m.requests("GetObject") + m.requests("CopyObject"), 0);
        removexattr(&f, "user.s3.tag.team");
        assert_eq!(tags(&b, "d/t.csv"), ["stage=clean"], "{endpoint}");
        setfattr(&f, "user.s3.tag.team", "ops");

        // Rewrites keep them: chmod, append, overwrite, rename.
        let want = ["stage=clean", "team=ops"];
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(tags(&b, "d/t.csv"), want, "{endpoint}: after chmod");
        let mut h = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        h.write_all(b"c,d\n").unwrap();
        drop(h);
        assert_eq!(tags(&b, "d/t.csv"), want, "{endpoint}: after an append");
        std::fs::write(&f, b"new\n").unwrap();
        assert_eq!(tags(&b, "d/t.csv"), want, "{endpoint}: after an overwrite");
        std::fs::rename(&f, m.p("d/u.csv")).unwrap();
        assert_eq!(tags(&b, "d/u.csv"), want, "{endpoint}: after a rename");
        std::fs::rename(m.p("d"), m.p("e")).unwrap();
        assert_eq!(
            tags(&b, "e/u.csv"),
            want,
            "{endpoint}: after a directory rename"
        );
        assert_eq!(b.get("e/u.csv"), b"new\n");
    }
}

#[test]
fn acl_requester_pays_and_owner_options_write_and_anonymous_mounts_only_read() {
    let b = Bucket::new_at(&moto_endpoint(), "acl");
    // A public bucket: anyone may list it and read pub/r.txt.
    let c = b.client();
    rt().block_on(async {
        c.put_bucket_acl()
            .bucket(&b.name)
            .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
            .send()
            .await
            .expect("bucket acl");
        c.put_object()
            .bucket(&b.name)
            .key("pub/r.txt")
            .acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead)
            .body(ByteStream::from_static(b"public"))
            .send()
            .await
            .expect("put pub/r.txt");
    });
    let m = Mount::new_at(
        &moto_endpoint(),
        &b.name,
        &[
            "--acl",
            "public-read",
            "--requester-pays",
            "--expected-bucket-owner",
            "123456789012",
        ],
    );
    std::fs::write(m.p("w.txt"), b"written").unwrap();
    assert_eq!(std::fs::read(m.p("pub/r.txt")).unwrap(), b"public");
    assert_eq!(b.get("w.txt"), b"written");
    let acl = rt()
        .block_on(
            b.client()
                .get_object_acl()
                .bucket(&b.name)
                .key("w.txt")
                .send(),
        )
        .expect("get acl");
    let public_read = acl.grants().iter().any(|g| {
        g.permission().map(|p| p.as_str()) == Some("READ")
            && g.grantee().and_then(|x| x.uri())
                == Some("http://acs.amazonaws.com/groups/global/AllUsers")
    });
    assert!(public_read, "{:?}", acl.grants());
    drop(m);

    // Anonymous: a public bucket reads (moto refuses anonymous reads of private
    // objects, so this is unsigned for real). What a refused anonymous upload does is
    // tested over the memory store (moto does not refuse anonymous writes).
    let anon = Mount::new_at(&moto_endpoint(), &b.name, &["--no-sign-request"]);
    assert_eq!(std::fs::read(anon.p("pub/r.txt")).unwrap(), b"public");
    drop(anon);

    // A bucket that takes anonymous writes is written anonymously.
    rt().block_on(
        b.client()
            .put_bucket_acl()
            .bucket(&b.name)
            .acl(aws_sdk_s3::types::BucketCannedAcl::PublicReadWrite)
            .send(),
    )
    .expect("bucket acl");
    let anon = Mount::new_at(&moto_endpoint(), &b.name, &["--no-sign-request"]);
    std::fs::write(anon.p("open-drop"), b"anyone").unwrap();
    assert_eq!(b.get("open-drop"), b"anyone");
}

#[test]
fn without_region_the_mount_asks_the_bucket_for_its_own() {
    let endpoint = moto_endpoint();
    let name = format!("t-region-{}", std::process::id());
    rt().block_on(
        client_at(&endpoint)
            .create_bucket()
            .bucket(&name)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest2)
                    .build(),
            )
            .send(),
    )
    .expect("create bucket in eu-west-2");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().with_extension("log");
    let out = Command::new(bin())
        .args(["mount", &name])
        .arg(dir.path())
        .args([
            "--endpoint-url",
            &endpoint,
            "--force-path-style",
            "--log-file",
        ])
        .arg(&log)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.path().join("f"), b"here").unwrap();
    let target = Command::new("getfattr")
        .args(["--only-values", "-n", "user.bucketfs.target"])
        .arg(dir.path())
        .output()
        .unwrap();
    let unmounted = Command::new("fusermount3")
        .arg("-u")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(unmounted.success());
    let t: serde_json::Value = serde_json::from_slice(&target.stdout).unwrap();
    assert_eq!(t["region"], "eu-west-2", "{t}");
    let got = rt()
        .block_on(
            client_at(&endpoint)
                .get_object()
                .bucket(&name)
                .key("f")
                .send(),
        )
        .expect("get f");
    let body = rt().block_on(got.body.collect()).unwrap().into_bytes();
    assert_eq!(&body[..], b"here");
}

/// A TLS front for the test server: a certificate for 127.0.0.1 signed by a CA made
/// for the test (`ca`), served by a small Python forwarder; killed on drop.
struct TlsFront {
    url: String,
    ca: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    fn start(upstream: &str) -> TlsFront {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let subj_ca = "/CN=bucketfs test CA";
        run(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", subj_ca,
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.path().join("ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        let script = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
up = int(sys.argv[3])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(64)
print(ls.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError):
        c.close()
        return
    u = socket.create_connection(("127.0.0.1", up))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
        let port = upstream.rsplit(':').next().unwrap().trim_end_matches('/');
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir.path().join("leaf.pem"))
            .arg(dir.path().join("leaf.key"))
            .arg(port)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        TlsFront {
            url: format!("https://127.0.0.1:{}", line.trim()),
            ca: dir.path().join("ca.pem"),
            child,
            _dir: dir,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_https_endpoint_with_its_own_ca_mounts_with_ca_bundle_only() {
    let b = Bucket::new("tls");
    b.put("r.txt", "over tls");
    let front = TlsFront::start(&endpoint());
    let ca = front.ca.to_str().unwrap();
    let try_mount = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().with_extension("log");
        let out = mount_cmd_at(&front.url, &b.name, dir.path(), &log, extra)
            .output()
            .unwrap();
        (out, dir)
    };
    // Without the CA the certificate is not trusted: one line, no mount.
    let (out, _d) = try_mount(&[]);
    assert!(!out.status.success(), "mounted without trusting the CA");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Not a PEM file: refused before connecting.
    let (out, _d) = try_mount(&["--ca-bundle", "/etc/hostname"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CA bundle"));

    let m = Mount::new_at(&front.url, &b.name, &["--ca-bundle", ca]);
    assert_eq!(std::fs::read(m.p("r.txt")).unwrap(), b"over tls");
    std::fs::write(m.p("w.txt"), pattern(3 << 20, 9)).unwrap();
    assert_eq!(b.get("w.txt"), pattern(3 << 20, 9));
}

#[test]
fn an_archived_file_restored_through_its_xattr_is_read_without_a_remount() {
    let b = Bucket::new_at(&moto_endpoint(), "restore");
    rt().block_on(
        b.client()
            .put_object()
            .bucket(&b.name)
            .key("cold.bin")
            .storage_class(StorageClass::Glacier)
            .body(ByteStream::from_static(b"frozen bytes"))
            .send(),
    )
    .expect("put cold.bin");
    let m = Mount::new_at(&moto_endpoint(), &b.name, &[]);
    let f = m.p("cold.bin");
    let e = std::fs::read(&f).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    assert!(
        m.log_text().contains("setfattr -n user.s3.restore"),
        "the log says how to restore: {}",
        m.log_text()
    );
    // A listing after the restore shows the same ETag, size and time.
    sh(m.path(), "ls -l >/dev/null");
    m.reset_stats();
    setfattr(&f, "user.s3.restore", "1,Bulk");
    assert_eq!(m.requests("RestoreObject"), 1);
    // moto restores at once; S3 takes hours and says `ongoing` meanwhile.
    let status = xattr(&f, "user.s3.restore");
    assert!(status.starts_with("expires "), "{status}");
    sh(m.path(), "ls -l >/dev/null");
    assert_eq!(std::fs::read(&f).unwrap(), b"frozen bytes");
}

#[test]
fn an_sse_c_mount_encrypts_every_write_with_its_key_and_reads_it_back() {
    // SeaweedFS enforces SSE-C (moto ignores the key).
    let b = Bucket::new("ssec");
    let dir = tempfile::tempdir().unwrap();
    let key: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, &key).unwrap();
    let m = Mount::new_at(
        &endpoint(),
        &b.name,
        &["--sse-c-key-file", key_file.to_str().unwrap()],
    );
    let big = pattern(12 << 20, 8);
    std::fs::write(m.p("small"), b"secret").unwrap();
    std::fs::write(m.p("big"), &big).unwrap();
    // A server-side copy (rename) and a staged edit (parts copied server-side).
    std::fs::rename(m.p("small"), m.p("moved")).unwrap();
    let mut h = std::fs::OpenOptions::new()
        .write(true)
        .open(m.p("big"))
        .unwrap();
    use std::io::{Seek, SeekFrom};
    h.seek(SeekFrom::Start(6 << 20)).unwrap();
    h.write_all(b"EDIT").unwrap();
    drop(h);
    let mut want = big.clone();
    want[6 << 20..(6 << 20) + 4].copy_from_slice(b"EDIT");
    assert_eq!(std::fs::read(m.p("moved")).unwrap(), b"secret");
    assert_eq!(std::fs::read(m.p("big")).unwrap(), want);
    // Without the key the server refuses: the objects are encrypted with it.
    let c = b.client();
    assert!(rt()
        .block_on(c.get_object().bucket(&b.name).key("moved").send())
        .is_err());
    drop(m);
    // A mount without the key cannot read them: EACCES (or EIO), never wrong bytes.
    let plain = Mount::new_at(&endpoint(), &b.name, &[]);
    match std::fs::read(plain.p("moved")) {
        Ok(bytes) => assert_ne!(bytes, b"secret", "read without the key"),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EIO)),
            "{e}"
        ),
    }
}

fn enable_versioning(b: &Bucket) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    rt().block_on(
        b.client()
            .put_bucket_versioning()
            .bucket(&b.name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send(),
    )
    .expect("enable versioning");
}

/// On a versioned bucket (moto; SeaweedFS keeps no versions), the earlier versions of
/// a file are read-only files under the hidden `.versions/PATH/`, named by time and
/// version id, and `cp` of one restores it; `--version-at` mounts the bucket as it was.
#[test]
fn versions_are_files_and_a_past_time_is_a_mount() {
    let b = Bucket::new_at(&moto_endpoint(), "versions");
    enable_versioning(&b);
    b.put("docs/report.txt", "first draft");
    b.put("docs/gone.txt", "soon deleted");
    // Whole seconds apart: versions are named and picked by LastModified.
    let first = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    b.put("docs/report.txt", "second draft");
    rt().block_on(
        b.client()
            .delete_object()
            .bucket(&b.name)
            .key("docs/gone.txt")
            .send(),
    )
    .expect("delete");
    b.put("docs/new.txt", "added later");

    let m = Mount::new_at(&moto_endpoint(), &b.name, &[]);
    // Hidden from the root, reached by name.
    let root: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(root, vec!["docs".to_string()]);
    let vdir = m.p(".versions/docs/report.txt");
    let mut names: Vec<String> = std::fs::read_dir(&vdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.contains("Z_")), "{names:?}");
    assert_eq!(std::fs::read(vdir.join(&names[0])).unwrap(), b"first draft");
    assert_eq!(
        std::fs::read(vdir.join(&names[1])).unwrap(),
        b"second draft"
    );
    // The mirror shows the directory's files, the deleted one's versions too.
    assert!(m.p(".versions/docs/gone.txt").is_dir());
    assert_eq!(
        std::fs::read_dir(m.p(".versions/docs/gone.txt"))
            .unwrap()
            .count(),
        1
    );
    // Read-only.
    assert!(std::fs::write(vdir.join("x"), b"no").is_err());
    assert!(std::fs::remove_file(vdir.join(&names[0])).is_err());
    // Restore the first draft with cp.
    let out = Command::new("cp")
        .arg(vdir.join(&names[0]))
        .arg(m.p("docs/report.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b.get("docs/report.txt"), b"first draft");
    let version = Command::new("getfattr")
        .args(["--only-values", "-n", "user.s3.version_id"])
        .arg(m.p("docs/report.txt"))
        .output()
        .unwrap();
    assert!(version.status.success() && !version.stdout.is_empty());
    drop(m);

    // The bucket as it was before the second draft.
    let at = bucketfs_time(first);
    let m = Mount::new_at(&moto_endpoint(), &b.name, &["--version-at", &at]);
    let mut docs: Vec<String> = std::fs::read_dir(m.p("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    docs.sort();
    assert_eq!(docs, vec!["gone.txt".to_string(), "report.txt".to_string()]);
    assert_eq!(
        std::fs::read(m.p("docs/report.txt")).unwrap(),
        b"first draft"
    );
    assert_eq!(
        std::fs::read(m.p("docs/gone.txt")).unwrap(),
        b"soon deleted"
    );
    assert!(!m.p("docs/new.txt").exists());
    let e = std::fs::write(m.p("docs/x"), b"no").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

/// `t` as RFC 3339, whole seconds rounded up (so objects of second `t` are in).
fn bucketfs_time(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
