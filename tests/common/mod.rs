//! Integration-test harness: a real S3-compatible server on 127.0.0.1 (started once per
//! run by scripts/test.sh, which exports BUCKETFS_TEST_ENDPOINT), a bucket per test, and
//! real FUSE mounts of the bucketfs binary that are always unmounted (Drop guard).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub fn endpoint() -> String {
    std::env::var("BUCKETFS_TEST_ENDPOINT").expect(
        "BUCKETFS_TEST_ENDPOINT is not set: run the integration tests through scripts/test.sh, \
         which starts the local S3 server",
    )
}

pub fn client() -> Client {
    static C: OnceLock<Client> = OnceLock::new();
    C.get_or_init(|| client_at(&endpoint())).clone()
}

/// The second server, moto's, for S3 features SeaweedFS lacks (storage classes, SSE-KMS,
/// tags, restore); scripts/test.sh starts it and exports BUCKETFS_TEST_MOTO_ENDPOINT.
pub fn moto_endpoint() -> String {
    std::env::var("BUCKETFS_TEST_MOTO_ENDPOINT").expect(
        "BUCKETFS_TEST_MOTO_ENDPOINT is not set: run the integration tests through \
         scripts/test.sh, which starts moto's server",
    )
}

/// An S3 client of the server at `endpoint`.
pub fn client_at(endpoint: &str) -> Client {
    let creds = aws_sdk_s3::config::Credentials::new(
        std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        None,
        None,
        "test",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .credentials_provider(creds)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// A fresh bucket for one test.
pub struct Bucket {
    pub name: String,
    client: Client,
}

impl Bucket {
    pub fn new(hint: &str) -> Bucket {
        Bucket::new_at(&endpoint(), hint)
    }

    /// A fresh bucket on the server at `endpoint`.
    pub fn new_at(endpoint: &str, hint: &str) -> Bucket {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t-{hint}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
        .to_lowercase()
        .replace('_', "-");
        let client = client_at(endpoint);
        rt().block_on(client.create_bucket().bucket(&name).send())
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        Bucket { name, client }
    }

    pub fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.put_meta(key, body, &[]);
    }

    pub fn put_meta(&self, key: &str, body: impl Into<Vec<u8>>, meta: &[(&str, &str)]) {
        let mut req = self
            .client()
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(ByteStream::from(body.into()));
        for (k, v) in meta {
            req = req.metadata(*k, *v);
        }
        rt().block_on(req.send())
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    /// Put many small objects concurrently.
    pub fn put_many(&self, keys: Vec<String>, body: &[u8]) {
        use futures::StreamExt;
        let body = body.to_vec();
        rt().block_on(async {
            futures::stream::iter(keys)
                .for_each_concurrent(32, |k| {
                    let body = body.clone();
                    async move {
                        self.client()
                            .put_object()
                            .bucket(&self.name)
                            .key(&k)
                            .body(ByteStream::from(body))
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("put {k}: {e:?}"));
                    }
                })
                .await
        });
    }

    pub fn head(&self, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        rt().block_on(
            self.client()
                .head_object()
                .bucket(&self.name)
                .key(key)
                .send(),
        )
        .unwrap_or_else(|e| panic!("head {key}: {e:?}"))
    }

    /// HeadObject, `None` when the key does not exist (any other error panics).
    pub fn try_head(
        &self,
        key: &str,
    ) -> Option<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
        match rt().block_on(
            self.client()
                .head_object()
                .bucket(&self.name)
                .key(key)
                .send(),
        ) {
            Ok(h) => Some(h),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => None,
            Err(e) => panic!("head {key}: {e:?}"),
        }
    }

    /// Whether `key` exists (HeadObject).
    pub fn exists(&self, key: &str) -> bool {
        self.try_head(key).is_some()
    }

    /// The whole body of `key`.
    pub fn get(&self, key: &str) -> Vec<u8> {
        rt().block_on(async {
            let out = self
                .client()
                .get_object()
                .bucket(&self.name)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
            out.body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("get {key} body: {e:?}"))
                .into_bytes()
                .to_vec()
        })
    }

    /// Length and SHA-256 (hex) of `key`'s body, streamed: the body is never held whole.
    pub fn sha256(&self, key: &str) -> (u64, String) {
        use sha2::Digest;
        rt().block_on(async {
            let mut out = self
                .client()
                .get_object()
                .bucket(&self.name)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
            let mut h = sha2::Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = out
                .body
                .try_next()
                .await
                .unwrap_or_else(|e| panic!("get {key} body: {e:?}"))
            {
                n += chunk.len() as u64;
                h.update(&chunk);
            }
            (n, format!("{:x}", h.finalize()))
        })
    }

    /// Every key under `prefix` (no delimiter, all pages), sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        rt().block_on(async {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client()
                    .list_objects_v2()
                    .bucket(&self.name)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("list {prefix:?}: {e:?}"));
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            keys.sort();
            keys
        })
    }

    /// Whether the server keeps user metadata on `dir/` marker objects. SeaweedFS turns
    /// such keys into real directories and drops their metadata, so directory modes and
    /// times cannot persist there; AWS, MinIO and Ceph keep them. Asked of the server
    /// directly, not through bucketfs.
    pub fn markers_keep_metadata(&self) -> bool {
        let key = "bucketfs-probe-marker/";
        rt().block_on(
            self.client()
                .put_object()
                .bucket(&self.name)
                .key(key)
                .metadata("mode", "16832")
                .body(ByteStream::from(Vec::new()))
                .send(),
        )
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        let kept = self
            .head(key)
            .metadata()
            .is_some_and(|m| m.get("mode").map(String::as_str) == Some("16832"));
        rt().block_on(
            self.client()
                .delete_object()
                .bucket(&self.name)
                .key(key)
                .send(),
        )
        .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
        kept
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn pending_uploads(&self) -> usize {
        rt().block_on(
            self.client()
                .list_multipart_uploads()
                .bucket(&self.name)
                .send(),
        )
        .unwrap_or_else(|e| panic!("list multipart uploads: {e:?}"))
        .uploads()
        .len()
    }

    /// The S3 client of this bucket's server.
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

/// A live bucketfs mount, unmounted on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    /// What `new` was given, for `remount`.
    pub target: String,
    pub extra: Vec<String>,
    pub endpoint: String,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bucketfs")
}

/// The command line to mount `target` (a bucket or bucket/prefix) at `dir`.
pub fn mount_cmd(target: &str, dir: &Path, log: &Path, extra: &[&str]) -> Command {
    mount_cmd_at(&endpoint(), target, dir, log, extra)
}

/// `mount_cmd` against another endpoint.
pub fn mount_cmd_at(
    endpoint: &str,
    target: &str,
    dir: &Path,
    log: &Path,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(bin());
    c.arg("mount")
        .arg(target)
        .arg(dir)
        .arg("--endpoint-url")
        .arg(endpoint)
        .arg("--force-path-style")
        .arg("--region")
        .arg("us-east-1")
        .arg("--log-file")
        .arg(log)
        .args(extra);
    loopback_env(&mut c);
    c
}

/// The environment of a bucketfs process that must talk to 127.0.0.1 only: no
/// instance-metadata lookups, no proxies.
pub fn loopback_env(c: &mut Command) -> &mut Command {
    c.env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
}

impl Mount {
    pub fn new(target: &str, extra: &[&str]) -> Mount {
        Mount::new_at(&endpoint(), target, extra)
    }

    /// A mount of `target` through another endpoint (a proxy in front of the server).
    pub fn new_at(endpoint: &str, target: &str, extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().with_extension("log");
        let out = mount_cmd_at(endpoint, target, dir.path(), &log, extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount {target} failed: {}\nlog: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Mount {
            dir,
            log,
            target: target.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            endpoint: endpoint.to_string(),
        }
    }

    /// Unmount, then mount the same target with the same options at a new directory.
    pub fn remount(self) -> Mount {
        let target = self.target.clone();
        let extra = self.extra.clone();
        let endpoint = self.endpoint.clone();
        drop(self);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Mount::new_at(&endpoint, &target, &extra)
    }

    /// The pid of the daemon serving this mount: the one process whose command line is
    /// `bucketfs mount ... <this mount's directory> ...` (the foreground parent has exited
    /// by the time `new` returns).
    pub fn daemon_pid(&self) -> u32 {
        let dir = self.dir.path().to_str().unwrap();
        let me = std::process::id();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            // Processes may exit while we look: skip what cannot be read.
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_bucketfs = args.first().is_some_and(|a| a.ends_with(b"bucketfs"));
            if is_bucketfs && args.get(1) == Some(&&b"mount"[..]) && args.contains(&dir.as_bytes())
            {
                found.push(pid);
            }
        }
        assert_eq!(
            found.len(),
            1,
            "expected one bucketfs daemon for {dir}, found {found:?}"
        );
        found[0]
    }

    /// The daemon's peak resident set size (VmHWM), in bytes.
    pub fn daemon_peak_rss(&self) -> u64 {
        let pid = self.daemon_pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
        let kib: u64 = line
            .trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        kib * 1024
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The request counters, as JSON.
    pub fn stats(&self) -> serde_json::Value {
        self.root_json("user.bucketfs.stats")
    }

    /// The JSON value of xattr `name` of the mount's root (the daemon's reports).
    pub fn root_json(&self, name: &str) -> serde_json::Value {
        let out = Command::new("getfattr")
            .args(["--only-values", "-n", name])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "getfattr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn requests(&self, op: &str) -> u64 {
        self.stats()[op]["requests"].as_u64().unwrap()
    }

    pub fn reset_stats(&self) {
        let out = Command::new("setfattr")
            .args(["-n", "user.bucketfs.stats", "-v", "reset"])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "setfattr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(self.dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Run a shell command in `dir`, asserting success; returns stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out: Output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(data))
}

/// The project's TCP proxy (`bucketfs-bench proxy`) in front of the test server, for
/// fault injection; stopped on drop.
pub struct Proxy {
    child: std::process::Child,
    pub endpoint: String,
    pub port: u16,
}

impl Proxy {
    /// A proxy that resets each connection once it carried `cut_after` bytes from the
    /// server (0: never), adding `latency_ms` before each request.
    pub fn start(latency_ms: u64, cut_after: u64) -> Proxy {
        Proxy::start_on(latency_ms, cut_after, "127.0.0.1:0")
    }

    /// A plain proxy listening on `listen` (to bring one back on the port of another).
    pub fn start_on(latency_ms: u64, cut_after: u64, listen: &str) -> Proxy {
        use std::io::BufRead;
        let upstream = endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bucketfs-bench"))
            .args(["proxy", "--upstream", &upstream])
            .args(["--latency-ms", &latency_ms.to_string()])
            .args(["--cut-after", &cut_after.to_string()])
            .args(["--listen", listen])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start bucketfs-bench proxy");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("proxy said {line:?}: {e}"));
        let port = v["port"].as_u64().unwrap();
        Proxy {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port: port as u16,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
