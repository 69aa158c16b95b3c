//! A fault-injecting [`ObjectStore`] wrapper for unit tests: fails chosen operations a set
//! number of times, or always, and can return short bodies, so tests can prove that the
//! core surfaces errors cleanly and never returns wrong bytes.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ListPage, ObjectMeta, ObjectStore, StoreError, StoreErrorKind, StoreResult};

/// Which requests to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    List,
    Head,
    Get,
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
}
