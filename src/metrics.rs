//! The Prometheus endpoint (`--metrics-addr`): S3 requests, errors, bytes and latency
//! by operation, requests in flight, cache hits and misses, open handles and bytes
//! pending upload, in the Prometheus text format (or OpenMetrics, when the scraper asks
//! for it), encoded by prometheus-client. [`Metrics`] hears requests and cache lookups
//! as an [`Observer`] of the mount's request counters; the gauges are read from the
//! filesystem at each scrape. The HTTP side is a small responder of its own: one GET
//! per connection, nothing else served.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::fs::Gauges;
use crate::store::counting::{Cache, Observer, Op};

/// One label, a static name and value: `op="GetObject"`.
type Label = [(&'static str, &'static str); 1];
type Histograms = Family<Label, Histogram, fn() -> Histogram>;

/// The upper bounds of the latency buckets: 1 ms to about 33 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric of a mount.
pub struct Metrics {
    registry: Registry,
    requests: Family<Label, Counter>,
    errors: Family<Label, Counter>,
    bytes: Family<Label, Counter>,
    latency: Histograms,
    in_flight: Family<Label, Gauge>,
    hits: Family<Label, Counter>,
    misses: Family<Label, Counter>,
    open: Family<Label, Gauge>,
    dirty_files: Gauge,
    pending: Gauge<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bucketfs");
        let requests = Family::<Label, Counter>::default();
        let errors = Family::<Label, Counter>::default();
        let bytes = Family::<Label, Counter>::default();
        let latency: Histograms = Family::new_with_constructor(latency_buckets);
        let in_flight = Family::<Label, Gauge>::default();
        let hits = Family::<Label, Counter>::default();
        let misses = Family::<Label, Counter>::default();
        let open = Family::<Label, Gauge>::default();
        let dirty_files = Gauge::default();
        let pending = Gauge::<u64, AtomicU64>::default();
        // Every operation and cache from the start, so rates begin at zero.
        for op in Op::ALL {
            let l = [("op", op.name())];
            let _ = requests.get_or_create(&l);
            let _ = errors.get_or_create(&l);
            let _ = bytes.get_or_create(&l);
        }
        for c in [Cache::Metadata, Cache::Data] {
            let _ = hits.get_or_create(&[("cache", c.name())]);
            let _ = misses.get_or_create(&[("cache", c.name())]);
        }
        registry.register(
            "s3_requests",
            "S3 requests sent, by operation",
            requests.clone(),
        );
        registry.register(
            "s3_request_errors",
            "S3 requests that failed (each attempt counts), by operation",
            errors.clone(),
        );
        registry.register_with_unit(
            "s3_body",
            "Object bytes moved by S3 requests (read by GetObject, sent by PutObject and UploadPart), by operation",
            Unit::Bytes,
            bytes.clone(),
        );
        registry.register_with_unit(
            "s3_request_duration",
            "Time from sending an S3 request to its answer, by operation",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "s3_requests_in_flight",
            "S3 requests sent and not yet answered, by operation",
            in_flight.clone(),
        );
        registry.register(
            "cache_hits",
            "Lookups answered without a request: metadata (HeadObject results) and data (blocks of random reads)",
            hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Lookups that sent a request: metadata (HeadObject) and data (ranged GetObject of a block)",
            misses.clone(),
        );
        registry.register(
            "open_handles",
            "Open handles, by kind (file, dir)",
            open.clone(),
        );
        registry.register(
            "dirty_files",
            "Files written and not yet durably in S3",
            dirty_files.clone(),
        );
        registry.register_with_unit(
            "pending_upload",
            "Size of the files written and not yet durably in S3: what close and fsync still have to upload",
            Unit::Bytes,
            pending.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            bytes,
            latency,
            in_flight,
            hits,
            misses,
            open,
            dirty_files,
            pending,
        }
    }

    /// Every metric as text, with the gauges at `g`: the Prometheus text format, or
    /// OpenMetrics.
    pub fn render(&self, g: Gauges, openmetrics: bool) -> String {
        self.open
            .get_or_create(&[("kind", "file")])
            .set(g.open_files as i64);
        self.open
            .get_or_create(&[("kind", "dir")])
            .set(g.open_dirs as i64);
        self.dirty_files.set(g.dirty_files as i64);
        self.pending.set(g.pending_upload_bytes);
        let mut out = String::new();
        let r = if openmetrics {
            text::encode(&mut out, &self.registry)
        } else {
            prometheus_text::encode(&mut out, &self.registry)
        };
        // Writing to a String does not fail.
        debug_assert!(r.is_ok());
        out
    }
}

impl Observer for Metrics {
    fn started(&self, op: Op) {
        let l = [("op", op.name())];
        self.requests.get_or_create(&l).inc();
        self.in_flight.get_or_create(&l).inc();
    }

    fn finished(&self, op: Op, failed: bool, bytes: u64, took: Duration) {
        let l = [("op", op.name())];
        if failed {
            self.errors.get_or_create(&l).inc();
        }
        if bytes > 0 {
            self.bytes.get_or_create(&l).inc_by(bytes);
        }
        self.latency.get_or_create(&l).observe(took.as_secs_f64());
    }

    fn ended(&self, op: Op) {
        self.in_flight.get_or_create(&[("op", op.name())]).dec();
    }

    fn lookup(&self, cache: Cache, hit: bool) {
        let l = [("cache", cache.name())];
        if hit {
            self.hits.get_or_create(&l).inc();
        } else {
            self.misses.get_or_create(&l).inc();
        }
    }
}

/// Bind `--metrics-addr` (before the mount, so a bad or busy address is a mount-time
/// error).
pub fn bind(addr: &str) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("--metrics-addr {addr}: cannot listen there: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    Ok(l)
}

/// The longest a scraper may take to send its request.
const REQUEST_WITHIN: Duration = Duration::from_secs(10);
/// The largest request head read.
const MAX_REQUEST: usize = 16 * 1024;

/// Serve `metrics` on `listener` until the runtime stops, with the gauges of
/// `gauges` at each scrape. Must be called within a tokio runtime.
pub fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    gauges: Arc<dyn Fn() -> Gauges + Send + Sync>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "serving Prometheus metrics at http://{a}/metrics");
    }
    tokio::spawn(async move {
        loop {
            let (conn, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait, not spin.
                    warn!("metrics endpoint: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (m, g) = (metrics.clone(), gauges.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(conn, &m, &*g).await {
                    debug!(%peer, "metrics request failed: {e}");
                }
            });
        }
    });
    Ok(())
}

/// Read one request from `conn` and answer it.
async fn answer(
    mut conn: tokio::net::TcpStream,
    m: &Metrics,
    gauges: &(dyn Fn() -> Gauges + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(REQUEST_WITHIN, async {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok::<_, std::io::Error>(Some(end));
            }
            if buf.len() > MAX_REQUEST {
                return Ok(None);
            }
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request in time"))??;
    let Some(end) = head else {
        return respond(
            &mut conn,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
            true,
        )
        .await;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut conn,
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n",
            true,
        )
        .await;
    }
    if path != "/metrics" && path != "/" {
        return respond(
            &mut conn,
            "404 Not Found",
            "text/plain",
            "the metrics are at /metrics\n",
            method == "GET",
        )
        .await;
    }
    let openmetrics = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("accept:") && l.contains("application/openmetrics-text")
    });
    let body = m.render(gauges(), openmetrics);
    let kind = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_text::CONTENT_TYPE
    };
    respond(&mut conn, "200 OK", kind, &body, method == "GET").await
}

async fn respond(
    conn: &mut tokio::net::TcpStream,
    status: &str,
    kind: &str,
    body: &str,
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if with_body {
        conn.write_all(body.as_bytes()).await?;
    }
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::counting::RequestStats;

    /// The value of the sample `name` (with its labels, as written) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn requests_lookups_and_gauges_are_rendered_as_prometheus_text() {
        let m = Metrics::new();
        m.started(Op::GetObject);
        m.finished(Op::GetObject, false, 1000, Duration::from_millis(3));
        m.ended(Op::GetObject);
        m.started(Op::GetObject);
        m.finished(Op::GetObject, true, 0, Duration::from_millis(40));
        m.ended(Op::GetObject);
        m.started(Op::PutObject);
        m.lookup(Cache::Metadata, true);
        m.lookup(Cache::Metadata, true);
        m.lookup(Cache::Metadata, false);
        m.lookup(Cache::Data, false);
        let t = m.render(
            Gauges {
                open_files: 3,
                open_dirs: 1,
                dirty_files: 2,
                pending_upload_bytes: 12345,
            },
            false,
        );
        let v = |n: &str| sample(&t, n).unwrap_or_else(|| panic!("{n} not in\n{t}"));
        assert_eq!(v("bucketfs_s3_requests_total{op=\"GetObject\"}"), 2.0);
        assert_eq!(v("bucketfs_s3_request_errors_total{op=\"GetObject\"}"), 1.0);
        assert_eq!(v("bucketfs_s3_body_bytes_total{op=\"GetObject\"}"), 1000.0);
        assert_eq!(v("bucketfs_s3_requests_total{op=\"HeadBucket\"}"), 0.0);
        assert_eq!(v("bucketfs_s3_requests_in_flight{op=\"PutObject\"}"), 1.0);
        assert_eq!(v("bucketfs_s3_requests_in_flight{op=\"GetObject\"}"), 0.0);
        assert_eq!(
            v("bucketfs_s3_request_duration_seconds_count{op=\"GetObject\"}"),
            2.0
        );
        // 3 ms is within the 4 ms bucket, 40 ms is not; both within 64 ms.
        assert_eq!(
            v("bucketfs_s3_request_duration_seconds_bucket{op=\"GetObject\",le=\"0.004\"}"),
            1.0
        );
        assert_eq!(
            v("bucketfs_s3_request_duration_seconds_bucket{op=\"GetObject\",le=\"0.064\"}"),
            2.0
        );
        assert_eq!(v("bucketfs_cache_hits_total{cache=\"metadata\"}"), 2.0);
        assert_eq!(v("bucketfs_cache_misses_total{cache=\"metadata\"}"), 1.0);
        assert_eq!(v("bucketfs_cache_hits_total{cache=\"data\"}"), 0.0);
        assert_eq!(v("bucketfs_cache_misses_total{cache=\"data\"}"), 1.0);
        assert_eq!(v("bucketfs_open_handles{kind=\"file\"}"), 3.0);
        assert_eq!(v("bucketfs_open_handles{kind=\"dir\"}"), 1.0);
        assert_eq!(v("bucketfs_dirty_files"), 2.0);
        assert_eq!(v("bucketfs_pending_upload_bytes"), 12345.0);
        assert!(t.contains("# TYPE bucketfs_s3_request_duration_seconds histogram"));
        // OpenMetrics on request: the same samples, and its end marker.
        let om = m.render(Gauges::default(), true);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert_eq!(
            sample(&om, "bucketfs_s3_requests_total{op=\"GetObject\"}"),
            Some(2.0)
        );
    }

    #[test]
    fn the_counters_stay_monotonic_when_the_request_stats_are_reset() {
        let stats = RequestStats::default();
        let m = Arc::new(Metrics::new());
        assert!(stats.observe(m.clone()).is_ok());
        assert!(stats.observe(m.clone()).is_err(), "a second observer");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ok = || async { Ok::<_, crate::store::StoreError>(()) };
        rt.block_on(stats.count(Op::HeadObject, "k", ok())).unwrap();
        stats.reset();
        rt.block_on(stats.count(Op::HeadObject, "k", ok())).unwrap();
        stats.lookup(Cache::Data, true);
        assert_eq!(stats.snapshot(Op::HeadObject).requests, 1);
        let t = m.render(Gauges::default(), false);
        assert_eq!(
            sample(&t, "bucketfs_s3_requests_total{op=\"HeadObject\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&t, "bucketfs_s3_requests_in_flight{op=\"HeadObject\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&t, "bucketfs_cache_hits_total{cache=\"data\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn the_endpoint_answers_get_metrics_and_nothing_else() {
        use std::io::{Read, Write};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let l = bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        m.started(Op::ListObjectsV2);
        let g: Arc<dyn Fn() -> Gauges + Send + Sync> = Arc::new(|| Gauges {
            open_files: 7,
            ..Gauges::default()
        });
        rt.block_on(async { serve(l, m, g) }).unwrap();
        let get = |req: &str| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
        assert_eq!(
            sample(body, "bucketfs_s3_requests_total{op=\"ListObjectsV2\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(body, "bucketfs_open_handles{kind=\"file\"}"),
            Some(7.0)
        );
        let len: usize = r
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let r = get(
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        );
        assert!(
            r.contains("Content-Type: application/openmetrics-text"),
            "{r}"
        );
        assert!(r.ends_with("# EOF\n"), "{r}");
        let r = get("GET /other HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = get("POST /metrics HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = get("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        // A busy address is refused in words.
        let e = bind(&addr.to_string()).unwrap_err();
        assert!(
            e.starts_with(&format!("--metrics-addr {addr}: cannot listen there: ")),
            "{e}"
        );
    }
}
