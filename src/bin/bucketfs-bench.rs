//! Helper for `scripts/bench.sh`: the raw-client ceiling (the same aws-sdk-s3 the mount
//! uses, driven directly), bucket filling, a wait for visibility, and a latency proxy.
//!
//! Every subcommand prints one JSON object on stdout, so the script can collect results
//! without parsing prose. Not installed with the package: it exists for the benchmark.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bucketfs::store::s3::{S3Config, S3Store};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "bucketfs benchmark helper: raw S3 client, bucket fill, latency proxy")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Target {
    /// Endpoint URL (default: $BUCKETFS_TEST_ENDPOINT / $AWS_ENDPOINT_URL).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    #[arg(long)]
    bucket: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the bucket if it does not exist.
    MakeBucket(Target),
    /// Upload one object of SIZE pseudo-random bytes (multipart).
    PutBig {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        key: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// Upload COUNT small objects named PREFIX<fanout dirs>/fNNNNNN (parallel PutObject).
    PutMany {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, value_parser = parse_size, default_value = "1024")]
        size: u64,
        /// Spread the objects over directories: DEPTH levels of FANOUT subdirectories.
        #[arg(long, default_value = "0")]
        depth: u32,
        #[arg(long, default_value = "10")]
        fanout: usize,
    },
    /// Raw ceiling: read one object with parallel ranged GETs, discarding the bytes.
    Read {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        key: String,
        #[arg(long, value_parser = parse_size, default_value = "8MiB")]
        part: u64,
        #[arg(long, default_value = "8")]
        concurrency: usize,
    },
    /// Raw ceiling: multipart upload of SIZE bytes, until CompleteMultipartUpload returns.
    Write {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        key: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
        #[arg(long, value_parser = parse_size, default_value = "8MiB")]
        part: u64,
        #[arg(long, default_value = "8")]
        concurrency: usize,
    },
    /// Raw ceiling: random ranged GETs of BS bytes by JOBS workers, one request each at a time.
    RandRead {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        key: String,
        #[arg(long, value_parser = parse_size, default_value = "4KiB")]
        bs: u64,
        #[arg(long, default_value = "1")]
        jobs: usize,
        #[arg(long, default_value = "20")]
        seconds: u64,
    },
    /// Raw ceiling: list a prefix (ListObjectsV2 pages of 1,000, delimiter "/").
    List {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        prefix: String,
    },
    /// Raw ceiling for `ls -l` with POSIX metadata: list PREFIX, then HeadObject every
    /// object, CONCURRENCY at a time (what statahead does).
    HeadAll {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value = "256")]
        concurrency: usize,
    },
    /// Raw ceiling: COUNT PutObject of SIZE bytes, one after another (like a shell loop).
    Create {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, value_parser = parse_size, default_value = "4KiB")]
        size: u64,
    },
    /// Wait until KEY exists with SIZE bytes (HEAD every 20 ms, up to TIMEOUT seconds).
    WaitVisible {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        key: String,
        #[arg(long)]
        size: u64,
        #[arg(long, default_value = "600")]
        timeout: u64,
    },
    /// Wait until PREFIX holds COUNT objects (listing every 50 ms, up to TIMEOUT seconds).
    WaitCount {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value = "600")]
        timeout: u64,
    },
    /// Delete every object under PREFIX (batch DeleteObjects).
    DeletePrefix {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        prefix: String,
    },
    /// TCP proxy that holds back each request by LATENCY_MS: the first bytes the client
    /// sends after the server has answered (or on a new connection) wait that long. Bytes
    /// pass untouched, so SigV4 signatures still verify. Prints the listening port.
    Proxy {
        #[arg(long)]
        upstream: SocketAddr,
        #[arg(long, default_value = "10")]
        latency_ms: u64,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Fault injection: reset every connection (TCP RST, both sides) once it has
        /// carried this many bytes from the server, so a large response is cut off
        /// part-way. 0: never.
        #[arg(long, default_value = "0")]
        cut_after: u64,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
    };
    Ok(n * mult)
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn client(t: &Target) -> Client {
    let endpoint = t
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("BUCKETFS_TEST_ENDPOINT").ok());
    let cfg = S3Config {
        bucket: t.bucket.clone(),
        force_path_style: endpoint.is_some(),
        endpoint_url: endpoint,
        max_attempts: 3,
        ..Default::default()
    };
    S3Store::connect(&cfg).await.client().clone()
}

/// Deterministic incompressible-looking bytes (xorshift), so servers that compress or
/// deduplicate see realistic data.
fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn print(v: serde_json::Value) {
    // The one place this tool writes to stdout: its result for the script.
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, format!("{v}\n").as_bytes());
}

async fn multipart(
    c: &Client,
    bucket: &str,
    key: &str,
    size: u64,
    part: u64,
    concurrency: usize,
) -> Res<()> {
    let up = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(err("CreateMultipartUpload"))?;
    let id = up.upload_id().unwrap_or_default().to_string();
    let n = size.div_ceil(part).max(1);
    let parts: Vec<CompletedPart> = stream::iter(1..=n)
        .map(|i| {
            let (c, id) = (c.clone(), id.clone());
            let len = part.min(size - (i - 1) * part) as usize;
            async move {
                let body = pattern(len, i);
                let r = c
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(i as i32)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .map_err(err("UploadPart"))?;
                Ok::<_, String>(
                    CompletedPart::builder()
                        .part_number(i as i32)
                        .set_e_tag(r.e_tag().map(str::to_string))
                        .build(),
                )
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(err("CompleteMultipartUpload"))?;
    Ok(())
}

/// Run the futures `n` at a time; the first error stops the rest.
async fn run_all<St, F, T>(futs: St, n: usize) -> Res<()>
where
    St: futures::Stream<Item = F>,
    F: std::future::Future<Output = Res<T>>,
{
    futs.buffer_unordered(n)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// One ranged GET of bytes `off..=end`, its body drained; the bytes received.
async fn get_range(c: &Client, bucket: &str, key: &str, off: u64, end: u64) -> Res<u64> {
    let r = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes={off}-{end}"))
        .send()
        .await
        .map_err(err("GetObject"))?;
    let mut body = r.body;
    let mut n = 0;
    while let Some(chunk) = body.try_next().await.map_err(err("body"))? {
        n += chunk.len() as u64;
    }
    Ok(n)
}

async fn object_size(c: &Client, bucket: &str, key: &str) -> Res<u64> {
    let h = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(err("HeadObject"))?;
    Ok(h.content_length().unwrap_or(0) as u64)
}

async fn list_keys(c: &Client, bucket: &str, prefix: &str) -> Res<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let r = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(err("ListObjectsV2"))?;
        keys.extend(
            r.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = r.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return Ok(keys);
        }
    }
}

/// Call `check` every `every` until it finds nothing missing (`None`), for at most
/// `timeout` seconds; the seconds waited, or what was still missing.
async fn wait_until<F, Fut>(timeout: u64, every: Duration, mut check: F) -> Res<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<Option<String>>>,
{
    let start = Instant::now();
    loop {
        match check().await? {
            None => return Ok(start.elapsed().as_secs_f64()),
            Some(missing) if start.elapsed() > Duration::from_secs(timeout) => {
                return Err(format!("{missing} after {timeout} s"))
            }
            Some(_) => tokio::time::sleep(every).await,
        }
    }
}

async fn run(cmd: Cmd) -> Res<()> {
    match cmd {
        Cmd::MakeBucket(t) => {
            let c = client(&t).await;
            if c.head_bucket().bucket(&t.bucket).send().await.is_err() {
                c.create_bucket()
                    .bucket(&t.bucket)
                    .send()
                    .await
                    .map_err(err("CreateBucket"))?;
            }
            print(serde_json::json!({"bucket": t.bucket}));
        }
        Cmd::PutBig { t, key, size } => {
            let c = client(&t).await;
            let start = Instant::now();
            multipart(&c, &t.bucket, &key, size, 8 << 20, 8).await?;
            print(
                serde_json::json!({"key": key, "bytes": size, "seconds": start.elapsed().as_secs_f64()}),
            );
        }
        Cmd::PutMany {
            t,
            prefix,
            count,
            size,
            depth,
            fanout,
        } => {
            let c = client(&t).await;
            let start = Instant::now();
            run_all(
                stream::iter(0..count).map(|i| {
                    let c = c.clone();
                    let mut key = prefix.clone();
                    let mut rest = i;
                    for _ in 0..depth {
                        key.push_str(&format!("d{}/", rest % fanout));
                        rest /= fanout;
                    }
                    key.push_str(&format!("f{i:06}"));
                    let bucket = t.bucket.clone();
                    async move {
                        c.put_object()
                            .bucket(bucket)
                            .key(&key)
                            .body(ByteStream::from(pattern(size as usize, i as u64)))
                            .send()
                            .await
                            .map_err(|e| format!("PutObject {key}: {e}"))
                    }
                }),
                64,
            )
            .await?;
            print(
                serde_json::json!({"prefix": prefix, "count": count, "seconds": start.elapsed().as_secs_f64()}),
            );
        }
        Cmd::Read {
            t,
            key,
            part,
            concurrency,
        } => {
            let c = client(&t).await;
            let start = Instant::now();
            let size = object_size(&c, &t.bucket, &key).await?;
            let total = AtomicU64::new(0);
            run_all(
                stream::iter((0..size).step_by(part as usize)).map(|off| {
                    let (c, bucket, key, total) = (c.clone(), &t.bucket, &key, &total);
                    async move {
                        let end = (off + part).min(size) - 1;
                        let n = get_range(&c, bucket, key, off, end).await?;
                        total.fetch_add(n, Ordering::Relaxed);
                        Ok::<_, String>(())
                    }
                }),
                concurrency,
            )
            .await?;
            let secs = start.elapsed().as_secs_f64();
            let bytes = total.load(Ordering::Relaxed);
            if bytes != size {
                return Err(format!("read {bytes} bytes of {size}"));
            }
            print(
                serde_json::json!({"bytes": bytes, "seconds": secs, "mb_s": bytes as f64 / secs / 1e6}),
            );
        }
        Cmd::Write {
            t,
            key,
            size,
            part,
            concurrency,
        } => {
            let c = client(&t).await;
            let start = Instant::now();
            multipart(&c, &t.bucket, &key, size, part, concurrency).await?;
            let secs = start.elapsed().as_secs_f64();
            print(
                serde_json::json!({"bytes": size, "seconds": secs, "mb_s": size as f64 / secs / 1e6}),
            );
        }
        Cmd::RandRead {
            t,
            key,
            bs,
            jobs,
            seconds,
        } => {
            let c = client(&t).await;
            let size = object_size(&c, &t.bucket, &key).await?;
            let blocks = (size / bs).max(1);
            let ops = AtomicU64::new(0);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let start = Instant::now();
            run_all(
                stream::iter(0..jobs).map(|j| {
                    let (c, bucket, key, ops) = (c.clone(), &t.bucket, &key, &ops);
                    async move {
                        let mut x = 0x2545_F491_4F6C_DD1D_u64 ^ (j as u64 + 1);
                        while Instant::now() < deadline {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let off = (x % blocks) * bs;
                            get_range(&c, bucket, key, off, off + bs - 1).await?;
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<_, String>(())
                    }
                }),
                jobs,
            )
            .await?;
            let secs = start.elapsed().as_secs_f64();
            let n = ops.load(Ordering::Relaxed);
            print(serde_json::json!({"ops": n, "seconds": secs, "iops": n as f64 / secs}));
        }
        Cmd::List { t, prefix } => {
            let c = client(&t).await;
            let start = Instant::now();
            let mut n = 0usize;
            let mut token = None;
            loop {
                let r = c
                    .list_objects_v2()
                    .bucket(&t.bucket)
                    .prefix(&prefix)
                    .delimiter("/")
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(err("ListObjectsV2"))?;
                n += r.contents().len() + r.common_prefixes().len();
                token = r.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            print(serde_json::json!({"entries": n, "seconds": start.elapsed().as_secs_f64()}));
        }
        Cmd::HeadAll {
            t,
            prefix,
            concurrency,
        } => {
            let c = client(&t).await;
            let start = Instant::now();
            let keys = list_keys(&c, &t.bucket, &prefix).await?;
            let listed = start.elapsed().as_secs_f64();
            run_all(
                stream::iter(keys.iter()).map(|k| object_size(&c, &t.bucket, k)),
                concurrency,
            )
            .await?;
            print(
                serde_json::json!({"objects": keys.len(), "list_seconds": listed,
                "seconds": start.elapsed().as_secs_f64()}),
            );
        }
        Cmd::Create {
            t,
            prefix,
            count,
            size,
        } => {
            let c = client(&t).await;
            let body = pattern(size as usize, 7);
            let start = Instant::now();
            for i in 0..count {
                c.put_object()
                    .bucket(&t.bucket)
                    .key(format!("{prefix}f{i:06}"))
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await
                    .map_err(err("PutObject"))?;
            }
            let secs = start.elapsed().as_secs_f64();
            print(
                serde_json::json!({"count": count, "seconds": secs, "files_s": count as f64 / secs}),
            );
        }
        Cmd::WaitVisible {
            t,
            key,
            size,
            timeout,
        } => {
            let c = client(&t).await;
            let waited = wait_until(timeout, Duration::from_millis(20), || async {
                let now = object_size(&c, &t.bucket, &key).await.ok();
                Ok((now != Some(size)).then(|| format!("{key} not visible with {size} bytes")))
            })
            .await?;
            print(serde_json::json!({ "waited": waited }));
        }
        Cmd::WaitCount {
            t,
            prefix,
            count,
            timeout,
        } => {
            let c = client(&t).await;
            let waited = wait_until(timeout, Duration::from_millis(50), || async {
                let n = list_keys(&c, &t.bucket, &prefix).await?.len();
                Ok((n < count).then(|| format!("{prefix}: {n} of {count} objects")))
            })
            .await?;
            print(serde_json::json!({ "waited": waited }));
        }
        Cmd::DeletePrefix { t, prefix } => {
            let c = client(&t).await;
            let keys = list_keys(&c, &t.bucket, &prefix).await?;
            for chunk in keys.chunks(1000) {
                let objects = chunk
                    .iter()
                    .map(|k| {
                        aws_sdk_s3::types::ObjectIdentifier::builder()
                            .key(k)
                            .build()
                            .map_err(err("ObjectIdentifier"))
                    })
                    .collect::<Res<Vec<_>>>()?;
                let del = aws_sdk_s3::types::Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
                    .map_err(err("Delete"))?;
                c.delete_objects()
                    .bucket(&t.bucket)
                    .delete(del)
                    .send()
                    .await
                    .map_err(err("DeleteObjects"))?;
            }
            print(serde_json::json!({"deleted": keys.len()}));
        }
        Cmd::Proxy {
            upstream,
            latency_ms,
            listen,
            cut_after,
        } => {
            let l = TcpListener::bind(listen).await.map_err(err("bind"))?;
            let port = l.local_addr().map_err(err("local_addr"))?.port();
            print(serde_json::json!({"port": port}));
            let delay = Duration::from_millis(latency_ms);
            loop {
                let (client, _) = l.accept().await.map_err(err("accept"))?;
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = splice_delayed(client, server, delay, cut_after).await;
                    }
                });
            }
        }
    }
    Ok(())
}

/// Forward both directions; the client's first bytes after each server reply wait `delay`.
/// With `cut_after` > 0, the connection is reset once that many bytes came from the server.
async fn splice_delayed(
    client: TcpStream,
    server: TcpStream,
    delay: Duration,
    cut_after: u64,
) -> Res<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if cut_after > 0 {
        // Closing a socket with a zero linger sends RST: the client sees a reset. (The
        // deprecation is about a positive linger blocking in drop; zero never blocks.)
        #[allow(deprecated)]
        let _ = client.set_linger(Some(Duration::ZERO));
        #[allow(deprecated)]
        let _ = server.set_linger(Some(Duration::ZERO));
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let replied = Arc::new(AtomicBool::new(true));
    let up = {
        let replied = replied.clone();
        async move {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = cr.read(&mut buf).await?;
                if n == 0 {
                    return sw.shutdown().await;
                }
                if replied.swap(false, Ordering::AcqRel) {
                    tokio::time::sleep(delay).await;
                }
                sw.write_all(&buf[..n]).await?;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                return cw.shutdown().await;
            }
            replied.store(true, Ordering::Release);
            let n = if cut_after > 0 {
                (n as u64).min(cut_after - sent) as usize
            } else {
                n
            };
            cw.write_all(&buf[..n]).await?;
            sent += n as u64;
            if cut_after > 0 && sent >= cut_after {
                return Err(std::io::Error::other("cut"));
            }
        }
    };
    let r: std::io::Result<()> = if cut_after == 0 {
        let (a, b) = tokio::join!(up, down);
        a.and(b)
    } else {
        // The cut ends the connection: the dropped sockets reset both sides.
        tokio::select! {
            r = up => r,
            r = down => r,
        }
    };
    r.map_err(err("proxy"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.cmd).await {
        eprintln!("bucketfs-bench: {e}");
        std::process::exit(1);
    }
}
