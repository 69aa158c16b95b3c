//! The one retry policy of bucketfs: a store wrapper that retries every operation that
//! failed for a transient reason (the endpoint unreachable or timing out, 5xx, throttling,
//! a response cut off) with exponential backoff and jitter, for as long as a retry window
//! (default 2 minutes) allows. An outage shorter than the window costs waiting, never an
//! error; past it, the last error is returned. Errors S3 means (404, 403, 412, other
//! 4xx) are never retried. The SDK client under it makes one attempt per call, so
//! retries do not multiply.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    CompletedPart, DeleteFailure, ListPage, ObjectMeta, ObjectStore, PutOptions, StoreErrorKind,
    StoreResult,
};

/// First wait after a failure; each later one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The default retry window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);

/// Whether a failure of this kind may go away by itself.
pub fn is_transient(kind: StoreErrorKind) -> bool {
    matches!(
        kind,
        StoreErrorKind::Transient | StoreErrorKind::Unreachable | StoreErrorKind::TimedOut
    )
}

/// Wraps a store; retries transient failures within `window`.
pub struct RetryingStore<S> {
    inner: S,
    window: Duration,
    /// At most this many attempts per operation (`--max-attempts`), within the window.
    max_attempts: u32,
    /// Requests are failing now: logged once when it starts and once when it ends.
    outage: AtomicBool,
}

impl<S> RetryingStore<S> {
    pub fn new(inner: S, window: Duration) -> Self {
        RetryingStore {
            inner,
            window,
            max_attempts: u32::MAX,
            outage: AtomicBool::new(false),
        }
    }

    /// Stop after `n` attempts (at least one) even when the window allows more.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Run `op` until it succeeds, fails for good, or the window is over.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> StoreResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let start = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1u32;
        loop {
            let e = match op().await {
                Ok(v) => {
                    if attempt > 1 && self.outage.swap(false, Ordering::Relaxed) {
                        info!(
                            "S3 answers again ({what} succeeded after {attempt} attempts, {:.1} s)",
                            start.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            if !is_transient(e.kind) {
                return Err(e);
            }
            // Full jitter over the second half of the backoff: concurrent requests
            // do not retry in lockstep.
            let wait = backoff / 2 + backoff.mul_f64(jitter() / 2.0);
            let left = self.window.saturating_sub(start.elapsed());
            if wait >= left || attempt >= self.max_attempts {
                if attempt > 1 {
                    warn!(
                        "{what}: giving up after {attempt} attempts in {:.1} s: {}",
                        start.elapsed().as_secs_f64(),
                        e.message
                    );
                }
                return Err(e);
            }
            if !self.outage.swap(true, Ordering::Relaxed) {
                warn!(
                    window_s = self.window.as_secs(),
                    "S3 requests are failing ({}); retrying", e.message
                );
            }
            debug!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "{what}: retrying: {}",
                e.message
            );
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }
}

/// A number in [0, 1) that differs between calls (no random source needed for jitter).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for RetryingStore<S> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        self.run("list", || {
            self.inner
                .list(prefix, delimiter, continuation.clone(), max_keys)
        })
        .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.run("head", || self.inner.head(key)).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        self.run("get", || self.inner.get_range(key, range.clone(), if_match))
            .await
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        self.run("put", || self.inner.put(key, body.clone(), opts))
            .await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.run("create multipart upload", || {
            self.inner.create_multipart(key, opts)
        })
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        self.run("upload part", || {
            self.inner.upload_part(key, upload_id, number, body.clone())
        })
        .await
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
        self.run("upload part copy", || {
            self.inner
                .upload_part_copy(key, upload_id, number, source, source_etag, range.clone())
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        self.run("complete multipart upload", || {
            self.inner.complete_multipart(key, upload_id, parts)
        })
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.run("abort multipart upload", || {
            self.inner.abort_multipart(key, upload_id)
        })
        .await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<super::VersionPage> {
        self.run("list object versions", || {
            self.inner.list_versions(prefix, marker.clone())
        })
        .await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        self.run("head", || self.inner.head_version(key, version_id))
            .await
    }

    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        self.run("get", || {
            self.inner.get_version_range(key, version_id, range.clone())
        })
        .await
    }

    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        self.run("list multipart uploads", || self.inner.list_uploads(prefix))
            .await
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        self.run("copy", || self.inner.copy(source, dest, source_etag, opts))
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.run("delete", || self.inner.delete(key)).await
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>> {
        // Deleting twice is harmless: a retried batch may repeat keys already gone.
        self.run("delete many", || self.inner.delete_many(keys))
            .await
    }

    async fn get_tags(&self, key: &str) -> StoreResult<super::Tags> {
        self.run("get tags", || self.inner.get_tags(key)).await
    }

    async fn set_tags(&self, key: &str, tags: &super::Tags) -> StoreResult<()> {
        self.run("set tags", || self.inner.set_tags(key, tags))
            .await
    }

    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
        self.run("restore", || self.inner.restore(key, days, tier))
            .await
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
    use crate::store::counting::{CountingStore, Op};
    use crate::store::faulty::{FaultTarget, FaultyStore};
    use crate::store::memory::MemoryStore;

    type Stack = RetryingStore<CountingStore<FaultyStore<MemoryStore>>>;

    fn stack(target: FaultTarget, kind: StoreErrorKind, failures: u64) -> Stack {
        let mem = MemoryStore::new().with_min_part_size(1);
        mem.put("k", "body");
        let faulty = FaultyStore::new(mem, target, kind, failures);
        RetryingStore::new(CountingStore::new(faulty), DEFAULT_WINDOW)
    }

    /// Run the store operation that `target` names once, on a store holding "k".
    async fn call(s: &Stack, target: FaultTarget) -> StoreResult<()> {
        let opts = PutOptions::default();
        match target {
            FaultTarget::List => s.list("", Some("/"), None, None).await.map(|_| ()),
            FaultTarget::Head => s.head("k").await.map(|_| ()),
            FaultTarget::Get => s.get_range("k", 0..4, None).await.map(|_| ()),
            FaultTarget::Put => s.put("n", Bytes::from("x"), &opts).await.map(|_| ()),
            FaultTarget::CreateMultipart => s.create_multipart("m", &opts).await.map(|_| ()),
            FaultTarget::UploadPart => {
                let id = s.inner.inner().inner().create_multipart("m", &opts).await?;
                s.upload_part("m", &id, 1, Bytes::from("p"))
                    .await
                    .map(|_| ())
            }
            FaultTarget::UploadPartCopy => {
                let id = s.inner.inner().inner().create_multipart("m", &opts).await?;
                let etag = s.inner.inner().inner().head_etag("k");
                s.upload_part_copy("m", &id, 1, "k", &etag, 0..4)
                    .await
                    .map(|_| ())
            }
            FaultTarget::Abort => {
                let id = s.inner.inner().inner().create_multipart("m", &opts).await?;
                s.abort_multipart("m", &id).await
            }
            FaultTarget::Complete => {
                let id = s.inner.inner().inner().create_multipart("m", &opts).await?;
                let inner = s.inner.inner().inner();
                let etag = inner.upload_part("m", &id, 1, Bytes::from("p")).await?;
                let parts = [CompletedPart { number: 1, etag }];
                s.complete_multipart("m", &id, &parts).await.map(|_| ())
            }
            FaultTarget::Copy => s.copy("k", "c", None, None).await.map(|_| ()),
            FaultTarget::Delete => s.delete("k").await,
            FaultTarget::DeleteMany => {
                let failed = s.delete_many(&["k".to_string()]).await?;
                assert!(failed.is_empty());
                assert!(s.inner.inner().inner().get("k").is_none());
                Ok(())
            }
            FaultTarget::GetTags => s.get_tags("k").await.map(|_| ()),
            FaultTarget::SetTags => {
                let tags = [("a".to_string(), "b".to_string())].into_iter().collect();
                s.set_tags("k", &tags).await
            }
            FaultTarget::Restore => {
                s.inner.inner().inner().set_storage_class("k", "GLACIER");
                s.restore("k", 1, None).await
            }
            FaultTarget::ListUploads => s.list_uploads("").await.map(|_| ()),
            FaultTarget::ListVersions => s.list_versions("", None).await.map(|_| ()),
        }
    }

    const TARGETS: [FaultTarget; 17] = FaultTarget::ALL;

    #[tokio::test(start_paused = true)]
    async fn every_operation_rides_out_transient_failures() {
        for target in TARGETS {
            for kind in [StoreErrorKind::Unreachable, StoreErrorKind::Transient] {
                let s = stack(target, kind, 5);
                let t = Instant::now();
                call(&s, target)
                    .await
                    .unwrap_or_else(|e| panic!("{target:?} {kind:?}: {e}"));
                // Five failures cost waiting: 50-100 ms, doubling.
                assert!(t.elapsed() >= Duration::from_millis(50 + 100 + 200 + 400 + 800));
                assert!(t.elapsed() < DEFAULT_WINDOW);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn errors_that_s3_means_are_not_retried() {
        for target in TARGETS {
            for kind in [
                StoreErrorKind::NotFound,
                StoreErrorKind::AccessDenied,
                StoreErrorKind::PreconditionFailed,
                StoreErrorKind::Other,
            ] {
                let s = stack(target, kind, 1);
                let t = Instant::now();
                let e = call(&s, target).await.unwrap_err();
                assert_eq!(e.kind, kind, "{target:?}");
                assert_eq!(t.elapsed(), Duration::ZERO, "{target:?} {kind:?} waited");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_attempts_caps_the_retries_inside_the_window() {
        let mem = MemoryStore::new();
        let faulty = FaultyStore::always(mem, FaultTarget::Head, StoreErrorKind::Unreachable);
        let s = RetryingStore::new(CountingStore::new(faulty), Duration::from_secs(3600))
            .with_max_attempts(3);
        let stats = s.inner().stats();
        let e = s.head("k").await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Unreachable);
        assert_eq!(stats.snapshot(Op::HeadObject).requests, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_window_fails_once_the_window_is_over() {
        let mem = MemoryStore::new();
        let faulty = FaultyStore::always(mem, FaultTarget::Head, StoreErrorKind::Unreachable);
        let s = RetryingStore::new(CountingStore::new(faulty), Duration::from_secs(30));
        let stats = s.inner().stats();
        let t = Instant::now();
        let e = s.head("k").await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Unreachable);
        assert!(t.elapsed() <= Duration::from_secs(30), "{:?}", t.elapsed());
        assert!(t.elapsed() >= Duration::from_secs(20), "{:?}", t.elapsed());
        // Backoff grows to 5 s: a bounded number of attempts, not a tight loop.
        let n = stats.snapshot(Op::HeadObject).requests;
        assert!((6..=16).contains(&n), "{n} attempts in 30 s");
    }
}
