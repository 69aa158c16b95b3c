//! Request accounting: [`CountingStore`] wraps any store and counts every request by S3
//! operation, with bytes moved, errors, and the peak number in flight at once. The counts
//! are what tests and benchmarks assert on (they are deterministic, unlike timings), and
//! what a user sees through the `user.bucketfs.stats` xattr, SIGUSR1 and the unmount log.
//! An [`Observer`] (the Prometheus exporter) hears every request and cache lookup as
//! it happens, with its latency, unaffected by [`RequestStats::reset`].

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tracing::{debug, trace};

use super::{
    CompletedPart, DeleteFailure, ListPage, ObjectMeta, ObjectStore, PutOptions, StoreResult,
};

/// The S3 operations bucketfs issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ListObjectsV2,
    HeadObject,
    GetObject,
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    CopyObject,
    DeleteObject,
    DeleteObjects,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    RestoreObject,
    ListMultipartUploads,
    ListObjectVersions,
    ListBuckets,
    HeadBucket,
    CreateBucket,
    DeleteBucket,
}

impl Op {
    pub const ALL: [Op; 22] = [
        Op::ListObjectsV2,
        Op::HeadObject,
        Op::GetObject,
        Op::PutObject,
        Op::CreateMultipartUpload,
        Op::UploadPart,
        Op::UploadPartCopy,
        Op::CompleteMultipartUpload,
        Op::AbortMultipartUpload,
        Op::CopyObject,
        Op::DeleteObject,
        Op::DeleteObjects,
        Op::GetObjectTagging,
        Op::PutObjectTagging,
        Op::DeleteObjectTagging,
        Op::RestoreObject,
        Op::ListMultipartUploads,
        Op::ListObjectVersions,
        Op::ListBuckets,
        Op::HeadBucket,
        Op::CreateBucket,
        Op::DeleteBucket,
    ];

    /// The S3 API name.
    pub fn name(self) -> &'static str {
        match self {
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::HeadObject => "HeadObject",
            Op::GetObject => "GetObject",
            Op::PutObject => "PutObject",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::CopyObject => "CopyObject",
            Op::DeleteObject => "DeleteObject",
            Op::DeleteObjects => "DeleteObjects",
            Op::GetObjectTagging => "GetObjectTagging",
            Op::PutObjectTagging => "PutObjectTagging",
            Op::DeleteObjectTagging => "DeleteObjectTagging",
            Op::RestoreObject => "RestoreObject",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::ListObjectVersions => "ListObjectVersions",
            Op::ListBuckets => "ListBuckets",
            Op::HeadBucket => "HeadBucket",
            Op::CreateBucket => "CreateBucket",
            Op::DeleteBucket => "DeleteBucket",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
struct OpCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// A snapshot of one operation's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpSnapshot {
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub max_in_flight: u64,
}

/// The caches whose lookups are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// HeadObject results (attributes), for the metadata TTL.
    Metadata,
    /// Blocks of object data read at random offsets.
    Data,
}

impl Cache {
    pub fn name(self) -> &'static str {
        match self {
            Cache::Metadata => "metadata",
            Cache::Data => "data",
        }
    }
}

/// Hears every request and cache lookup as it happens.
pub trait Observer: Send + Sync {
    /// A request of `op` was sent.
    fn started(&self, op: Op);
    /// It was answered, failed or not, after `took`, having moved `bytes` of body.
    fn finished(&self, op: Op, failed: bool, bytes: u64, took: Duration);
    /// It is no longer in flight: answered, or dropped unanswered (its caller gave up).
    fn ended(&self, op: Op);
    /// A lookup in `cache` found what it looked for (`hit`) or had to ask S3.
    fn lookup(&self, cache: Cache, hit: bool);
}

/// Counters for every operation; shared by the store wrapper and whoever reports them.
#[derive(Default)]
pub struct RequestStats {
    ops: [OpCounters; Op::ALL.len()],
    observer: OnceLock<Arc<dyn Observer>>,
}

impl std::fmt::Debug for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStats")
            .field("ops", &self.ops)
            .finish_non_exhaustive()
    }
}

impl RequestStats {
    /// Tell `o` of every request and cache lookup from now on (once: a second observer
    /// is refused, and handed back).
    pub fn observe(&self, o: Arc<dyn Observer>) -> Result<(), Arc<dyn Observer>> {
        self.observer.set(o)
    }

    /// Count one lookup in `cache`.
    pub fn lookup(&self, cache: Cache, hit: bool) {
        if let Some(o) = self.observer.get() {
            o.lookup(cache, hit);
        }
    }

    fn counters(&self, op: Op) -> &OpCounters {
        &self.ops[op.index()]
    }

    pub fn snapshot(&self, op: Op) -> OpSnapshot {
        let c = self.counters(op);
        OpSnapshot {
            requests: c.requests.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            max_in_flight: c.max_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Requests of every kind since the last reset.
    pub fn total_requests(&self) -> u64 {
        Op::ALL.iter().map(|op| self.snapshot(*op).requests).sum()
    }

    /// Zero every counter (requests still in flight stay counted as in flight).
    pub fn reset(&self) {
        for c in &self.ops {
            c.requests.store(0, Ordering::Relaxed);
            c.errors.store(0, Ordering::Relaxed);
            c.bytes.store(0, Ordering::Relaxed);
            c.max_in_flight
                .store(c.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// All counters as one JSON object: `{"HeadObject":{"requests":..}, ...}`.
    pub fn to_json(&self) -> String {
        let parts: Vec<String> = Op::ALL
            .iter()
            .map(|op| {
                let s = self.snapshot(*op);
                format!(
                    "\"{}\":{{\"requests\":{},\"errors\":{},\"bytes\":{},\"max_in_flight\":{}}}",
                    op.name(),
                    s.requests,
                    s.errors,
                    s.bytes,
                    s.max_in_flight
                )
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// One human line for logs: `ListObjectsV2=3 HeadObject=2000 GetObject=12 (48.0 MiB)`.
    pub fn summary(&self) -> String {
        Op::ALL
            .iter()
            .map(|op| {
                let s = self.snapshot(*op);
                if s.bytes > 0 {
                    format!(
                        "{}={} ({:.1} MiB)",
                        op.name(),
                        s.requests,
                        s.bytes as f64 / 1048576.0
                    )
                } else {
                    format!("{}={}", op.name(), s.requests)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Count `request` as one `op` about `key` (for requests sent outside a store).
    pub async fn count<T, E: HasMessage>(
        &self,
        op: Op,
        key: &str,
        request: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let t = self.begin(op);
        let r = request.await;
        t.finish_with(r.as_ref().err().map(|e| e.message()), 0, key);
        r
    }

    fn begin(&self, op: Op) -> InFlight<'_> {
        let c = self.counters(op);
        c.requests.fetch_add(1, Ordering::Relaxed);
        let now = c.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        c.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let observer = self.observer.get().map(Arc::as_ref);
        if let Some(o) = observer {
            o.started(op);
        }
        InFlight {
            c,
            op,
            started: Instant::now(),
            observer,
        }
    }
}

/// An error that says what failed in words.
pub trait HasMessage {
    fn message(&self) -> &str;
}

impl HasMessage for super::StoreError {
    fn message(&self) -> &str {
        &self.message
    }
}

impl<X> HasMessage for (X, super::StoreError) {
    fn message(&self) -> &str {
        &self.1.message
    }
}

struct InFlight<'a> {
    c: &'a OpCounters,
    op: Op,
    started: Instant,
    observer: Option<&'a dyn Observer>,
}

impl InFlight<'_> {
    /// Count the outcome; every request is logged at trace level, failures at debug
    /// (the caller decides what reaches the user).
    fn finish<T>(self, r: &StoreResult<T>, bytes: u64, key: &str) {
        self.finish_with(r.as_ref().err().map(|e| e.message.as_str()), bytes, key)
    }

    fn finish_with(self, failure: Option<&str>, bytes: u64, key: &str) {
        let took = self.started.elapsed();
        if let Some(o) = self.observer {
            o.finished(self.op, failure.is_some(), bytes, took);
        }
        let us = took.as_micros() as u64;
        match failure {
            None => trace!(op = self.op.name(), key, bytes, us, "request"),
            Some(message) => {
                self.c.errors.fetch_add(1, Ordering::Relaxed);
                debug!(op = self.op.name(), key, us, "request failed: {message}");
            }
        }
        self.c.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(o) = self.observer {
            o.ended(self.op);
        }
        self.c.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Wraps a store and counts its requests into a shared [`RequestStats`].
pub struct CountingStore<S> {
    inner: S,
    stats: Arc<RequestStats>,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            stats: Arc::new(RequestStats::default()),
        }
    }

    /// Counting into `stats`, shared with other stores (one per bucket, say).
    pub fn with_stats(inner: S, stats: Arc<RequestStats>) -> Self {
        CountingStore { inner, stats }
    }

    pub fn stats(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for CountingStore<S> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        let t = self.stats.begin(Op::ListObjectsV2);
        let r = self
            .inner
            .list(prefix, delimiter, continuation, max_keys)
            .await;
        t.finish(&r, 0, prefix);
        r
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let t = self.stats.begin(Op::HeadObject);
        let r = self.inner.head(key).await;
        t.finish(&r, 0, key);
        r
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        let t = self.stats.begin(Op::GetObject);
        let r = self.inner.get_range(key, range, if_match).await;
        let n = r.as_ref().map(|b| b.len() as u64).unwrap_or(0);
        t.finish(&r, n, key);
        r
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        let t = self.stats.begin(Op::PutObject);
        let n = body.len() as u64;
        let r = self.inner.put(key, body, opts).await;
        t.finish(&r, n, key);
        r
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let t = self.stats.begin(Op::CreateMultipartUpload);
        let r = self.inner.create_multipart(key, opts).await;
        t.finish(&r, 0, key);
        r
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        let t = self.stats.begin(Op::UploadPart);
        let n = body.len() as u64;
        let r = self.inner.upload_part(key, upload_id, number, body).await;
        t.finish(&r, n, key);
        r
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> StoreResult<String> {
        // No bytes: the copy happens inside the store, none cross the network.
        let t = self.stats.begin(Op::UploadPartCopy);
        let r = self
            .inner
            .upload_part_copy(key, upload_id, number, source, source_etag, range)
            .await;
        t.finish(&r, 0, key);
        r
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        let t = self.stats.begin(Op::CompleteMultipartUpload);
        let r = self.inner.complete_multipart(key, upload_id, parts).await;
        t.finish(&r, 0, key);
        r
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let t = self.stats.begin(Op::AbortMultipartUpload);
        let r = self.inner.abort_multipart(key, upload_id).await;
        t.finish(&r, 0, key);
        r
    }

    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<super::VersionPage> {
        let t = self.stats.begin(Op::ListObjectVersions);
        let r = self.inner.list_versions(prefix, marker).await;
        t.finish(&r, 0, prefix);
        r
    }

    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        let t = self.stats.begin(Op::HeadObject);
        let r = self.inner.head_version(key, version_id).await;
        t.finish(&r, 0, key);
        r
    }

    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        let t = self.stats.begin(Op::GetObject);
        let r = self.inner.get_version_range(key, version_id, range).await;
        let n = r.as_ref().map_or(0, |b| b.len() as u64);
        t.finish(&r, n, key);
        r
    }

    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        let t = self.stats.begin(Op::ListMultipartUploads);
        let r = self.inner.list_uploads(prefix).await;
        t.finish(&r, 0, prefix);
        r
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        let t = self.stats.begin(Op::CopyObject);
        let r = self.inner.copy(source, dest, source_etag, opts).await;
        t.finish(&r, 0, dest);
        r
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let t = self.stats.begin(Op::DeleteObject);
        let r = self.inner.delete(key).await;
        t.finish(&r, 0, key);
        r
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>> {
        // One request, counted once; keys it could not delete are not request errors.
        let t = self.stats.begin(Op::DeleteObjects);
        let r = self.inner.delete_many(keys).await;
        t.finish(&r, 0, keys.first().map(String::as_str).unwrap_or_default());
        r
    }

    async fn get_tags(&self, key: &str) -> StoreResult<super::Tags> {
        let t = self.stats.begin(Op::GetObjectTagging);
        let r = self.inner.get_tags(key).await;
        t.finish(&r, 0, key);
        r
    }

    async fn set_tags(&self, key: &str, tags: &super::Tags) -> StoreResult<()> {
        let op = if tags.is_empty() {
            Op::DeleteObjectTagging
        } else {
            Op::PutObjectTagging
        };
        let t = self.stats.begin(op);
        let r = self.inner.set_tags(key, tags).await;
        t.finish(&r, 0, key);
        r
    }

    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
        let t = self.stats.begin(Op::RestoreObject);
        let r = self.inner.restore(key, days, tier).await;
        t.finish(&r, 0, key);
        r
    }

    async fn presign(
        &self,
        key: &str,
        method: super::PresignMethod,
        expires: std::time::Duration,
    ) -> StoreResult<String> {
        self.inner.presign(key, method, expires).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn counts_requests_bytes_and_errors() {
        let mem = MemoryStore::new();
        mem.put("a", vec![7u8; 100]);
        let store = CountingStore::new(mem);
        store.get_range("a", 0..40, None).await.unwrap();
        assert!(store.head("missing").await.is_err());
        store.list("", Some("/"), None, None).await.unwrap();
        let stats = store.stats();
        assert_eq!(stats.snapshot(Op::GetObject).bytes, 40);
        assert_eq!(stats.snapshot(Op::HeadObject).errors, 1);
        assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 1);
        assert!(stats.to_json().contains("\"GetObject\":{\"requests\":1,"));
        stats.reset();
        assert_eq!(stats.snapshot(Op::GetObject).requests, 0);
    }

    #[tokio::test]
    async fn counts_write_requests() {
        let store = CountingStore::new(MemoryStore::new().with_min_part_size(1));
        let o = PutOptions::default();
        store
            .put("p", Bytes::from(vec![1u8; 10]), &o)
            .await
            .unwrap();
        let id = store.create_multipart("m", &o).await.unwrap();
        let e1 = store
            .upload_part("m", &id, 1, Bytes::from(vec![2u8; 7]))
            .await
            .unwrap();
        let tag = store.head("p").await.unwrap().etag;
        let e2 = store
            .upload_part_copy("m", &id, 2, "p", &tag, 0..5)
            .await
            .unwrap();
        let parts = [
            CompletedPart {
                number: 1,
                etag: e1,
            },
            CompletedPart {
                number: 2,
                etag: e2,
            },
        ];
        store.complete_multipart("m", &id, &parts).await.unwrap();
        assert!(store.abort_multipart("m", &id).await.is_err());
        store.copy("m", "c", None, None).await.unwrap();
        store.delete("c").await.unwrap();
        let gone = store
            .delete_many(&["m".to_string(), "never".to_string()])
            .await
            .unwrap();
        assert!(gone.is_empty());
        assert!(store.inner().keys() == vec!["p".to_string()]);
        let stats = store.stats();
        assert_eq!(stats.snapshot(Op::PutObject).bytes, 10);
        assert_eq!(stats.snapshot(Op::UploadPart).bytes, 7);
        assert_eq!(stats.snapshot(Op::UploadPartCopy).requests, 1);
        assert_eq!(stats.snapshot(Op::CompleteMultipartUpload).requests, 1);
        assert_eq!(stats.snapshot(Op::AbortMultipartUpload).errors, 1);
        assert_eq!(stats.snapshot(Op::CopyObject).requests, 1);
        assert_eq!(stats.snapshot(Op::DeleteObject).requests, 1);
        assert_eq!(stats.snapshot(Op::DeleteObjects).requests, 1);
        assert_eq!(stats.snapshot(Op::CreateMultipartUpload).requests, 1);
        for op in Op::ALL {
            assert_eq!(Op::ALL[op.index()], op);
        }
        let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
        assert_eq!(json["PutObject"]["bytes"], 10);
        assert_eq!(json["DeleteObject"]["requests"], 1);
        assert_eq!(json.as_object().unwrap().len(), Op::ALL.len());
        assert!(stats.summary().contains("PutObject=1 (0.0 MiB)"));
    }
}
