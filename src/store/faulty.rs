//! A fault-injecting [`ObjectStore`] wrapper for unit tests: fails chosen operations a set
//! number of times, or always, and can return short bodies, so tests can prove that the
//! core surfaces errors cleanly and never returns wrong bytes.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    CompletedPart, ListPage, ObjectMeta, ObjectStore, PutOptions, StoreError, StoreErrorKind,
    StoreResult,
};

/// Which requests to fail. `abort_multipart` is never failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    List,
    Head,
    Get,
    Put,
    CreateMultipart,
    /// Both `upload_part` and `upload_part_copy`.
    UploadPart,
    Complete,
    Copy,
    Delete,
}

/// Wraps a store; the next `n` requests of the target kind fail with `kind`.
pub struct FaultyStore<S> {
    inner: S,
    target: FaultTarget,
    kind: StoreErrorKind,
    remaining: AtomicU64,
    short_reads: bool,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S, target: FaultTarget, kind: StoreErrorKind, failures: u64) -> Self {
        FaultyStore {
            inner,
            target,
            kind,
            remaining: AtomicU64::new(failures),
            short_reads: false,
        }
    }

    /// Every request of the target kind fails with `kind`, forever.
    pub fn always(inner: S, target: FaultTarget, kind: StoreErrorKind) -> Self {
        Self::new(inner, target, kind, u64::MAX)
    }

    /// From now on the next `n` requests of the target kind fail.
    pub fn arm(&self, n: u64) {
        self.remaining.store(n, Ordering::SeqCst);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// GETs return one byte less than asked for (a truncated body).
    pub fn short_reads(inner: S) -> Self {
        FaultyStore {
            inner,
            target: FaultTarget::Get,
            kind: StoreErrorKind::Other,
            remaining: AtomicU64::new(0),
            short_reads: true,
        }
    }

    fn inject(&self, target: FaultTarget, key: &str) -> StoreResult<()> {
        if target != self.target {
            return Ok(());
        }
        let took = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            Err(StoreError::new(
                self.kind,
                format!("{key}: injected fault ({:?})", self.kind),
            ))
        } else {
            Ok(())
        }
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
        self.inject(FaultTarget::List, prefix)?;
        self.inner
            .list(prefix, delimiter, continuation, max_keys)
            .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inject(FaultTarget::Head, key)?;
        self.inner.head(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        self.inject(FaultTarget::Get, key)?;
        let b = self.inner.get_range(key, range, if_match).await?;
        if self.short_reads && !b.is_empty() {
            return Ok(b.slice(..b.len() - 1));
        }
        Ok(b)
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        self.inject(FaultTarget::Put, key)?;
        self.inner.put(key, body, opts).await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.inject(FaultTarget::CreateMultipart, key)?;
        self.inner.create_multipart(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        self.inject(FaultTarget::UploadPart, key)?;
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
        self.inject(FaultTarget::UploadPart, key)?;
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
        self.inject(FaultTarget::Complete, key)?;
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        self.inject(FaultTarget::Copy, dest)?;
        self.inner.copy(source, dest, source_etag, opts).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inject(FaultTarget::Delete, key)?;
        self.inner.delete(key).await
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
    async fn always_fails_upload_parts_but_never_abort() {
        let s = FaultyStore::always(
            MemoryStore::new(),
            FaultTarget::UploadPart,
            StoreErrorKind::Other,
        );
        s.inner().put("src", "0123");
        let tag = s.inner().head_etag("src");
        let id = s
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        for _ in 0..3 {
            assert!(s.upload_part("k", &id, 1, Bytes::new()).await.is_err());
            assert!(s
                .upload_part_copy("k", &id, 1, "src", &tag, 0..4)
                .await
                .is_err());
        }
        assert_eq!(s.inner().pending_uploads(), vec!["k".to_string()]);
        s.abort_multipart("k", &id).await.unwrap();
        assert!(s.inner().pending_uploads().is_empty());
    }
}
