//! A fault-injecting [`ObjectStore`] wrapper for unit tests. It fails a chosen operation a
//! set number of times or always, fails every operation at random with a seeded
//! probability, holds a chosen operation at a gate until the test opens it, or returns
//! short bodies, or refuses the deletion of some keys (per-key failures of a
//! DeleteObjects), so tests can prove that the core surfaces errors cleanly, never returns
//! wrong bytes, and does not block on an in-flight request.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};

use super::{
    CompletedPart, DeleteFailure, ListPage, ObjectMeta, ObjectStore, PutOptions, StoreError,
    StoreErrorKind, StoreResult,
};

/// Which requests to fail: one per store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    List,
    Head,
    Get,
    Put,
    CreateMultipart,
    UploadPart,
    UploadPartCopy,
    Complete,
    Abort,
    Copy,
    Delete,
    DeleteMany,
    GetTags,
    SetTags,
    Restore,
    ListUploads,
    ListVersions,
}

impl FaultTarget {
    /// Every store operation.
    pub const ALL: [FaultTarget; 17] = [
        FaultTarget::List,
        FaultTarget::Head,
        FaultTarget::Get,
        FaultTarget::Put,
        FaultTarget::CreateMultipart,
        FaultTarget::UploadPart,
        FaultTarget::UploadPartCopy,
        FaultTarget::Complete,
        FaultTarget::Abort,
        FaultTarget::Copy,
        FaultTarget::Delete,
        FaultTarget::DeleteMany,
        FaultTarget::GetTags,
        FaultTarget::SetTags,
        FaultTarget::Restore,
        FaultTarget::ListUploads,
        FaultTarget::ListVersions,
    ];
}

/// Random faults: each request fails with probability `per_mille / 1000`, drawn from a
/// seeded generator so a failing case can be replayed.
struct Random {
    per_mille: AtomicU64,
    state: AtomicU64,
}

impl Random {
    /// One draw of splitmix64, in 0..1000.
    fn draw(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 1000
    }
}

/// Requests of one kind wait here until the test lets them through.
struct Gate {
    target: FaultTarget,
    permits: Semaphore,
    entered: Notify,
}

/// Wraps a store and fails (or holds) some of its requests.
pub struct FaultyStore<S> {
    inner: S,
    target: Option<FaultTarget>,
    kind: StoreErrorKind,
    remaining: AtomicU64,
    short_reads: bool,
    random: Option<Random>,
    gate: Option<Gate>,
    /// Keys under this prefix are not deleted: AccessDenied.
    refused_deletes: Option<String>,
    injected: AtomicU64,
}

impl<S> FaultyStore<S> {
    fn plain(inner: S, kind: StoreErrorKind) -> Self {
        FaultyStore {
            inner,
            target: None,
            kind,
            remaining: AtomicU64::new(0),
            short_reads: false,
            random: None,
            gate: None,
            refused_deletes: None,
            injected: AtomicU64::new(0),
        }
    }

    /// The next `failures` requests of the `target` kind fail with `kind`.
    pub fn new(inner: S, target: FaultTarget, kind: StoreErrorKind, failures: u64) -> Self {
        let mut s = Self::plain(inner, kind);
        s.target = Some(target);
        s.remaining = AtomicU64::new(failures);
        s
    }

    /// Every request of the target kind fails with `kind`, forever.
    pub fn always(inner: S, target: FaultTarget, kind: StoreErrorKind) -> Self {
        Self::new(inner, target, kind, u64::MAX)
    }

    /// Every request of any kind fails with `kind` with probability `per_mille / 1000`,
    /// drawn from a generator seeded with `seed`.
    pub fn random(inner: S, seed: u64, per_mille: u64, kind: StoreErrorKind) -> Self {
        let mut s = Self::plain(inner, kind);
        s.random = Some(Random {
            per_mille: AtomicU64::new(per_mille.min(1000)),
            state: AtomicU64::new(seed),
        });
        s
    }

    /// Requests of the `target` kind wait until [`FaultyStore::open_gate`] lets them
    /// through; each one that arrives wakes [`FaultyStore::entered`].
    pub fn gated(inner: S, target: FaultTarget) -> Self {
        let mut s = Self::plain(inner, StoreErrorKind::Other);
        s.gate = Some(Gate {
            target,
            permits: Semaphore::new(0),
            entered: Notify::new(),
        });
        s
    }

    /// From now on the next `n` requests of the target kind fail.
    pub fn arm(&self, n: u64) {
        self.remaining.store(n, Ordering::SeqCst);
    }

    /// Random mode: change the probability (0 stops the faults).
    pub fn set_per_mille(&self, per_mille: u64) {
        if let Some(r) = &self.random {
            r.per_mille.store(per_mille.min(1000), Ordering::SeqCst);
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Gated mode: let `n` more requests through.
    pub fn open_gate(&self, n: usize) {
        if let Some(g) = &self.gate {
            g.permits.add_permits(n);
        }
    }

    /// Gated mode: notified each time a request reaches the gate (a notification sent
    /// while nobody waits is kept for the next waiter).
    pub fn entered(&self) -> &Notify {
        &self.gate.as_ref().expect("a gated FaultyStore").entered
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Keys under `prefix` cannot be deleted: a DeleteObjects deletes the others and
    /// reports each of these as an `AccessDenied` failure (as S3 does when a policy
    /// denies some keys), and a DeleteObject of one fails with AccessDenied.
    pub fn refusing_deletes_under(inner: S, prefix: &str) -> Self {
        let mut s = Self::plain(inner, StoreErrorKind::AccessDenied);
        s.refused_deletes = Some(prefix.to_string());
        s
    }

    fn refused(&self, key: &str) -> bool {
        self.refused_deletes
            .as_deref()
            .is_some_and(|p| key.starts_with(p))
    }

    /// GETs return one byte less than asked for (a truncated body).
    pub fn short_reads(inner: S) -> Self {
        let mut s = Self::plain(inner, StoreErrorKind::Other);
        s.short_reads = true;
        s
    }

    async fn inject(&self, target: FaultTarget, key: &str) -> StoreResult<()> {
        if let Some(g) = self.gate.as_ref().filter(|g| g.target == target) {
            g.entered.notify_one();
            // The semaphore is never closed, so acquire cannot fail.
            if let Ok(p) = g.permits.acquire().await {
                p.forget();
            }
        }
        let fail = match &self.random {
            Some(r) => r.draw() < r.per_mille.load(Ordering::SeqCst),
            None => {
                self.target == Some(target)
                    && self
                        .remaining
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
            }
        };
        if !fail {
            return Ok(());
        }
        self.injected.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::new(
            self.kind,
            format!("{key}: injected fault ({:?} on {target:?})", self.kind),
        ))
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        self.inject(FaultTarget::List, prefix).await?;
        self.inner
            .list(prefix, delimiter, continuation, max_keys)
            .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inject(FaultTarget::Head, key).await?;
        self.inner.head(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        self.inject(FaultTarget::Get, key).await?;
        let b = self.inner.get_range(key, range, if_match).await?;
        if self.short_reads && !b.is_empty() {
            return Ok(b.slice(..b.len() - 1));
        }
        Ok(b)
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        self.inject(FaultTarget::Put, key).await?;
        self.inner.put(key, body, opts).await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.inject(FaultTarget::CreateMultipart, key).await?;
        self.inner.create_multipart(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        self.inject(FaultTarget::UploadPart, key).await?;
        self.inner.upload_part(key, upload_id, number, body).await
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
        self.inject(FaultTarget::UploadPartCopy, key).await?;
        self.inner
            .upload_part_copy(key, upload_id, number, source, source_etag, range)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        self.inject(FaultTarget::Complete, key).await?;
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.inject(FaultTarget::Abort, key).await?;
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<super::VersionPage> {
        self.inject(FaultTarget::ListVersions, prefix).await?;
        self.inner.list_versions(prefix, marker).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        self.inject(FaultTarget::Head, key).await?;
        self.inner.head_version(key, version_id).await
    }

    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        self.inject(FaultTarget::Get, key).await?;
        self.inner.get_version_range(key, version_id, range).await
    }

    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        self.inject(FaultTarget::ListUploads, prefix).await?;
        self.inner.list_uploads(prefix).await
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        self.inject(FaultTarget::Copy, dest).await?;
        self.inner.copy(source, dest, source_etag, opts).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inject(FaultTarget::Delete, key).await?;
        if self.refused(key) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::new(
                StoreErrorKind::AccessDenied,
                format!("{key}: AccessDenied: injected refusal"),
            ));
        }
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>> {
        let first = keys.first().map(String::as_str).unwrap_or_default();
        self.inject(FaultTarget::DeleteMany, first).await?;
        let (refused, allowed): (Vec<String>, Vec<String>) =
            keys.iter().cloned().partition(|k| self.refused(k));
        let mut failures = if allowed.is_empty() {
            Vec::new()
        } else {
            self.inner.delete_many(&allowed).await?
        };
        self.injected
            .fetch_add(refused.len() as u64, Ordering::SeqCst);
        failures.extend(refused.into_iter().map(|key| DeleteFailure {
            key,
            code: "AccessDenied".to_string(),
            message: "Access Denied".to_string(),
        }));
        Ok(failures)
    }

    async fn get_tags(&self, key: &str) -> StoreResult<super::Tags> {
        self.inject(FaultTarget::GetTags, key).await?;
        self.inner.get_tags(key).await
    }

    async fn set_tags(&self, key: &str, tags: &super::Tags) -> StoreResult<()> {
        self.inject(FaultTarget::SetTags, key).await?;
        self.inner.set_tags(key, tags).await
    }

    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
        self.inject(FaultTarget::Restore, key).await?;
        self.inner.restore(key, days, tier).await
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
    async fn fails_only_the_target_and_only_n_times() {
        let s = FaultyStore::new(
            MemoryStore::new(),
            FaultTarget::Put,
            StoreErrorKind::Unreachable,
            1,
        );
        let o = PutOptions::default();
        let err = s.put("k", Bytes::from_static(b"x"), &o).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Unreachable);
        assert!(s.inner().get("k").is_none());
        s.put("k", Bytes::from_static(b"x"), &o).await.unwrap();
        s.copy("k", "k2", None, None).await.unwrap();
        s.delete("k2").await.unwrap();
        assert_eq!(s.inner().keys(), vec!["k".to_string()]);
    }

    #[tokio::test]
    async fn upload_part_copy_and_abort_fail_on_their_own_targets() {
        let mem = MemoryStore::new();
        mem.put("src", "0123");
        let tag = mem.head_etag("src");
        let s = FaultyStore::always(mem, FaultTarget::UploadPartCopy, StoreErrorKind::Other);
        let id = s
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        s.upload_part("k", &id, 1, Bytes::new()).await.unwrap();
        for _ in 0..3 {
            assert!(s
                .upload_part_copy("k", &id, 2, "src", &tag, 0..4)
                .await
                .is_err());
        }
        assert_eq!(s.injected(), 3);
        s.abort_multipart("k", &id).await.unwrap();
        assert!(s.inner().pending_uploads().is_empty());

        let s = FaultyStore::new(
            MemoryStore::new(),
            FaultTarget::Abort,
            StoreErrorKind::Other,
            1,
        );
        let id = s
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        assert!(s.abort_multipart("k", &id).await.is_err());
        assert_eq!(s.inner().pending_uploads(), vec!["k".to_string()]);
        s.abort_multipart("k", &id).await.unwrap();
        assert!(s.inner().pending_uploads().is_empty());
    }

    #[tokio::test]
    async fn refused_deletes_come_back_as_per_key_failures() {
        let mem = MemoryStore::new();
        for k in ["keep/a", "keep/b", "go/a"] {
            mem.put(k, "x");
        }
        let s = FaultyStore::refusing_deletes_under(mem, "keep/");
        let keys: Vec<String> = ["go/a", "keep/a", "keep/b"].map(String::from).to_vec();
        let failed = s.delete_many(&keys).await.unwrap();
        let failed_keys: Vec<&str> = failed.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(failed_keys, ["keep/a", "keep/b"]);
        assert!(failed.iter().all(|f| f.code == "AccessDenied"));
        assert_eq!(s.inner().keys(), ["keep/a", "keep/b"]);
        assert_eq!(
            s.delete("keep/a").await.unwrap_err().kind,
            StoreErrorKind::AccessDenied
        );
        assert_eq!(s.injected(), 3);
        // A fault of the whole request deletes nothing.
        let s = FaultyStore::new(
            MemoryStore::new(),
            FaultTarget::DeleteMany,
            StoreErrorKind::AccessDenied,
            1,
        );
        s.inner().put("k", "x");
        assert!(s.delete_many(&["k".to_string()]).await.is_err());
        assert_eq!(s.inner().keys(), ["k"]);
    }

    #[tokio::test]
    async fn random_faults_follow_the_seed_and_the_rate() {
        let run = |seed| async move {
            let s = FaultyStore::random(MemoryStore::new(), seed, 200, StoreErrorKind::Transient);
            let mut pattern = Vec::new();
            for _ in 0..1000 {
                pattern.push(
                    s.head("k")
                        .await
                        .is_err_and(|e| e.kind == StoreErrorKind::Transient),
                );
            }
            s.set_per_mille(0);
            for _ in 0..100 {
                assert!(s.head("k").await.unwrap_err().kind == StoreErrorKind::NotFound);
            }
            (pattern, s.injected())
        };
        let (a, n) = run(7).await;
        let (b, _) = run(7).await;
        let (c, _) = run(8).await;
        assert_eq!(a, b, "the same seed gives the same faults");
        assert_ne!(a, c);
        assert_eq!(a.iter().filter(|f| **f).count() as u64, n);
        assert!((120..280).contains(&n), "{n} faults in 1000 at 20%");
    }

    #[tokio::test]
    async fn a_gate_holds_requests_until_opened() {
        let s = std::sync::Arc::new(FaultyStore::gated(MemoryStore::new(), FaultTarget::Put));
        let s2 = s.clone();
        let put = tokio::spawn(async move {
            s2.put("k", Bytes::from_static(b"x"), &PutOptions::default())
                .await
        });
        s.entered().notified().await;
        // Other operations pass while the put waits.
        assert!(s.head("other").await.is_err());
        assert!(s.inner().get("k").is_none());
        s.open_gate(1);
        put.await.unwrap().unwrap();
        assert_eq!(s.inner().get("k").unwrap(), Bytes::from_static(b"x"));
    }
}
