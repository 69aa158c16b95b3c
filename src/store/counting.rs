//! Request accounting: [`CountingStore`] wraps any store and counts every request by S3
//! operation, with bytes moved, errors, and the peak number in flight at once. The counts
//! are what tests and benchmarks assert on (they are deterministic, unlike timings), and
//! what a user sees through the `user.bucketfs.stats` xattr, SIGUSR1 and the unmount log.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ListPage, ObjectMeta, ObjectStore, StoreResult};

/// The S3 operations bucketfs issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ListObjectsV2,
    HeadObject,
    GetObject,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::ListObjectsV2, Op::HeadObject, Op::GetObject];

    pub fn name(self) -> &'static str {
        match self {
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::HeadObject => "HeadObject",
            Op::GetObject => "GetObject",
        }
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

/// Counters for every operation; shared by the store wrapper and whoever reports them.
#[derive(Debug, Default)]
pub struct RequestStats {
    ops: [OpCounters; 3],
}

impl RequestStats {
    fn counters(&self, op: Op) -> &OpCounters {
        &self.ops[Op::ALL.iter().position(|o| *o == op).unwrap_or(0)]
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

    fn begin(&self, op: Op) -> InFlight<'_> {
        let c = self.counters(op);
        c.requests.fetch_add(1, Ordering::Relaxed);
        let now = c.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        c.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight { c }
    }
}

struct InFlight<'a> {
    c: &'a OpCounters,
}

impl InFlight<'_> {
    fn finish<T>(self, r: &StoreResult<T>, bytes: u64) {
        if r.is_err() {
            self.c.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.c.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
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
        t.finish(&r, 0);
        r
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let t = self.stats.begin(Op::HeadObject);
        let r = self.inner.head(key).await;
        t.finish(&r, 0);
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
        t.finish(&r, n);
        r
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
}
