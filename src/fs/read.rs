//! Reading open files. Each open handle pins the object's ETag; every ranged GET carries
//! `If-Match`, so a reader never mixes bytes of two versions. Sequential reads are served
//! from a stream of parts fetched ahead in parallel (see `prefetch`), bounded by a global
//! memory budget; other reads fetch small aligned blocks through a shared LRU cache.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::error::{Error, Result};
use super::prefetch::{blocks_for, PrefetchConfig, Window};
use crate::store::counting::{Cache, RequestStats};
use crate::store::ObjectStore;

type BlockKey = (Arc<str>, Arc<str>, u64);

/// The bytes of one part, shared by every read that needs them.
type PartData = Shared<BoxFuture<'static, Result<Bytes>>>;

/// What every open file shares: the store, the memory budget and the block cache.
pub struct Reader<S> {
    store: Arc<S>,
    cfg: PrefetchConfig,
    /// Prefetch memory budget in KiB permits.
    budget: Arc<Semaphore>,
    blocks: moka::future::Cache<BlockKey, Bytes>,
    /// Where block cache hits and misses are counted.
    stats: Option<Arc<RequestStats>>,
}

impl<S: ObjectStore> Reader<S> {
    pub fn new(store: Arc<S>, cfg: PrefetchConfig) -> Self {
        let kib = (cfg.memory_budget / 1024).clamp(1, u32::MAX as u64 / 2) as usize;
        Reader {
            store,
            cfg,
            budget: Arc::new(Semaphore::new(kib)),
            blocks: moka::future::Cache::builder()
                .max_capacity(cfg.block_cache.max(1))
                .weigher(|_k: &BlockKey, v: &Bytes| v.len().try_into().unwrap_or(u32::MAX))
                .build(),
            stats: None,
        }
    }

    /// Count block cache hits and misses into `stats`.
    pub fn with_stats(mut self, stats: Option<Arc<RequestStats>>) -> Self {
        self.stats = stats;
        self
    }

    /// Fetch `range` of `key` at `etag`, checking the length that came back.
    fn fetch(
        &self,
        key: Arc<str>,
        etag: Arc<str>,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Bytes>> {
        let store = self.store.clone();
        async move {
            let want = range.end - range.start;
            let data = store
                .get_range(&key, range.clone(), Some(&etag))
                .await
                .map_err(Error::from)?;
            if data.len() as u64 != want {
                return Err(Error::Failed(format!(
                    "get {key} bytes {}-{}: short body ({} of {want} bytes)",
                    range.start,
                    range.end - 1,
                    data.len()
                )));
            }
            Ok(data)
        }
        .boxed()
    }
}

/// One ranged GET of a sequential stream, running in the background.
struct Part {
    range: Range<u64>,
    data: PartData,
    abort: AbortHandle,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Part {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

struct Stream {
    win: Window,
    parts: VecDeque<Part>,
}

impl Stream {
    fn oldest(&self) -> u64 {
        self.parts
            .front()
            .map(|p| p.range.start)
            .unwrap_or(self.win.next_start)
    }
}

#[derive(Default)]
struct ReadState {
    stream: Option<Stream>,
    /// End of the previous read, to tell sequential from random access.
    last_end: u64,
    reads: u64,
}

/// An open file being read.
pub struct ReadHandle {
    pub ino: u64,
    pub key: Arc<str>,
    pub etag: Arc<str>,
    pub size: u64,
    state: Mutex<ReadState>,
}

/// How much of the data behind the reader a stream keeps, for reads the kernel issues
/// slightly out of order.
const KEEP_BEHIND: u64 = 2 * 1024 * 1024;

impl ReadHandle {
    pub fn new(ino: u64, key: &str, etag: &str, size: u64) -> Self {
        ReadHandle {
            ino,
            key: key.into(),
            etag: etag.into(),
            size,
            state: Mutex::new(ReadState::default()),
        }
    }

    /// Read up to `len` bytes at `offset` (fewer only at the end of the object).
    pub async fn read<S: ObjectStore>(
        &self,
        r: &Reader<S>,
        offset: u64,
        len: u32,
    ) -> Result<Bytes> {
        Ok(self.read_fetching(r, offset, len).await?.0)
    }

    /// [`read`](Self::read), with the random-read blocks this call fetched from S3 (not
    /// those another read fetched or the block cache held), whole, with their offsets.
    pub async fn read_fetching<S: ObjectStore>(
        &self,
        r: &Reader<S>,
        offset: u64,
        len: u32,
    ) -> Result<(Bytes, Vec<(u64, Bytes)>)> {
        if offset >= self.size || len == 0 {
            return Ok((Bytes::new(), Vec::new()));
        }
        let end = (offset + u64::from(len)).min(self.size);
        let needed = {
            let mut st = self.state.lock();
            let sequential = (st.reads == 0 && offset == 0)
                || offset == st.last_end
                || st
                    .stream
                    .as_ref()
                    .is_some_and(|s| s.win.covers(s.oldest(), offset));
            st.reads += 1;
            st.last_end = end;
            if sequential {
                Some(self.stream_parts(r, &mut st, offset, end))
            } else {
                None
            }
        };
        match needed {
            Some(parts) => match assemble(parts, offset, end).await {
                Ok(b) => Ok((b, Vec::new())),
                Err(e) => {
                    // A failed part must not fail every later read of its range: the
                    // stream is dropped, and the next read starts a new one.
                    self.state.lock().stream = None;
                    Err(e)
                }
            },
            None => self.read_blocks(r, offset, end).await,
        }
    }

    /// Under the state lock: make sure the stream has requested `[offset, end)` and
    /// its window ahead; return the parts that hold `[offset, end)`.
    fn stream_parts<S: ObjectStore>(
        &self,
        r: &Reader<S>,
        st: &mut ReadState,
        offset: u64,
        end: u64,
    ) -> Vec<(Range<u64>, PartData)> {
        let fresh = match &st.stream {
            Some(s) => !s.win.covers(s.oldest(), offset),
            None => true,
        };
        if fresh {
            debug!(key = %self.key, offset, "starting sequential stream");
            st.stream = Some(Stream {
                win: Window::new(offset, self.size, r.cfg),
                parts: VecDeque::new(),
            });
        }
        let s = st.stream.as_mut().expect("stream");
        // Parts wholly behind the reader (beyond a small slack) are done with.
        while s
            .parts
            .front()
            .is_some_and(|p| p.range.end + KEEP_BEHIND <= offset)
        {
            s.parts.pop_front();
        }
        // The reader has moved past a part it started on: it is sequential, look further.
        if s.parts.front().is_some_and(|p| offset >= p.range.end) {
            s.win.grow();
        }
        for range in s.win.plan(end) {
            let demanded = range.start < end;
            let kib = ((range.end - range.start) / 1024).max(1) as u32;
            let permit = match r.budget.clone().try_acquire_many_owned(kib) {
                Ok(p) => Some(p),
                Err(_) if demanded => None,
                Err(_) => {
                    // Out of budget: give the range back and try again on a later read.
                    s.win.next_start = range.start;
                    break;
                }
            };
            let fut = r.fetch(self.key.clone(), self.etag.clone(), range.clone());
            // Polled only if the task is aborted (below).
            let again = r.fetch(self.key.clone(), self.etag.clone(), range.clone());
            let task = tokio::spawn(fut);
            let abort = task.abort_handle();
            let data = async move {
                match task.await {
                    Ok(r) => r,
                    // The stream moved on and dropped this part while a read that came
                    // in parallel (the kernel's readahead) still waits for it: fetch the
                    // range for that read instead of failing it.
                    Err(e) if e.is_cancelled() => again.await,
                    Err(e) => Err(Error::task("prefetch", e)),
                }
            }
            .boxed()
            .shared();
            s.parts.push_back(Part {
                range,
                data,
                abort,
                _permit: permit,
            });
        }
        s.parts
            .iter()
            .filter(|p| p.range.start < end && p.range.end > offset)
            .map(|p| (p.range.clone(), p.data.clone()))
            .collect()
    }

    async fn read_blocks<S: ObjectStore>(
        &self,
        r: &Reader<S>,
        offset: u64,
        end: u64,
    ) -> Result<(Bytes, Vec<(u64, Bytes)>)> {
        let blocks = blocks_for(offset, end - offset, r.cfg.block_size, self.size);
        let futs = blocks.into_iter().map(|range| {
            let k: BlockKey = (self.key.clone(), self.etag.clone(), range.start);
            let fetch = r.fetch(self.key.clone(), self.etag.clone(), range.clone());
            async move {
                // The cache runs the fetch for one caller only: that one reports it.
                let mut fetched = false;
                let data = r
                    .blocks
                    .try_get_with(k, async {
                        fetched = true;
                        fetch.await
                    })
                    .await
                    .map_err(|e: Arc<Error>| (*e).clone())?;
                Ok::<_, Error>((range, data, fetched))
            }
        });
        let got = futures::future::try_join_all(futs).await?;
        if let Some(s) = &r.stats {
            for (_, _, fetched) in &got {
                s.lookup(Cache::Data, !*fetched);
            }
        }
        let data = copy_out(got.iter().map(|(r, d, _)| (r.clone(), d)), offset, end);
        let fresh = got
            .into_iter()
            .filter(|(_, _, fetched)| *fetched)
            .map(|(r, d, _)| (r.start, d))
            .collect();
        Ok((data, fresh))
    }
}

async fn assemble(parts: Vec<(Range<u64>, PartData)>, offset: u64, end: u64) -> Result<Bytes> {
    let mut got = Vec::with_capacity(parts.len());
    for (range, fut) in parts {
        let data = fut.await.inspect_err(|e| warn!("read failed: {e}"))?;
        got.push((range, data));
    }
    let covered = got.first().map(|(r, _)| r.start <= offset).unwrap_or(false)
        && got.last().map(|(r, _)| r.end >= end).unwrap_or(false);
    if !covered {
        return Err(Error::Failed(format!(
            "internal: read {offset}-{end} not covered by the prefetch stream"
        )));
    }
    Ok(copy_out(
        got.iter().map(|(r, d)| (r.clone(), d)),
        offset,
        end,
    ))
}

/// Copy `[offset, end)` out of contiguous ranges; a single range is sliced without a copy.
fn copy_out<'a>(
    parts: impl Iterator<Item = (Range<u64>, &'a Bytes)>,
    offset: u64,
    end: u64,
) -> Bytes {
    let parts: Vec<_> = parts.collect();
    if parts.len() == 1 {
        let (r, d) = &parts[0];
        return d.slice((offset - r.start) as usize..(end - r.start) as usize);
    }
    let mut out = BytesMut::with_capacity((end - offset) as usize);
    for (r, d) in parts {
        let from = offset.max(r.start);
        let to = end.min(r.end);
        if from < to {
            out.extend_from_slice(&d[(from - r.start) as usize..(to - r.start) as usize]);
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::counting::{CountingStore, Op};
    use crate::store::faulty::FaultyStore;
    use crate::store::memory::MemoryStore;

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    async fn setup(
        n: usize,
    ) -> (
        Arc<CountingStore<MemoryStore>>,
        Reader<CountingStore<MemoryStore>>,
        ReadHandle,
    ) {
        let mem = MemoryStore::new();
        mem.put("k", body(n));
        let etag = mem.head_etag("k");
        let store = Arc::new(CountingStore::new(mem));
        let reader = Reader::new(store.clone(), PrefetchConfig::default());
        (store, reader, ReadHandle::new(2, "k", &etag, n as u64))
    }

    #[tokio::test]
    async fn sequential_read_returns_exact_bytes_with_few_requests() {
        let n = 40 * 1024 * 1024 + 123;
        let (store, reader, h) = setup(n).await;
        let want = body(n);
        let mut off = 0u64;
        let mut got = Vec::new();
        while off < n as u64 {
            let b = h.read(&reader, off, 128 * 1024).await.unwrap();
            assert!(!b.is_empty());
            off += b.len() as u64;
            got.extend_from_slice(&b);
        }
        assert_eq!(got, want);
        let gets = store.stats().snapshot(Op::GetObject);
        // 128 KiB reads, but far fewer, larger requests; nothing fetched twice.
        assert!(gets.requests < 20, "{} GETs", gets.requests);
        assert_eq!(gets.bytes, n as u64);
    }

    #[tokio::test]
    async fn a_part_dropped_by_the_stream_still_serves_a_read_waiting_for_it() {
        let n = 4 * 1024 * 1024;
        let (_, reader, h) = setup(n).await;
        // A read takes its parts; then the stream is dropped (a seek far away starts a
        // new one) before the read awaits them, as with the kernel's parallel reads.
        let parts = {
            let mut st = h.state.lock();
            let parts = h.stream_parts(&reader, &mut st, 0, 65536);
            st.stream = None;
            parts
        };
        let got = assemble(parts, 0, 65536).await.unwrap();
        assert_eq!(&got[..], &body(n)[..65536]);
    }

    #[tokio::test]
    async fn random_reads_fetch_small_blocks() {
        let n = 16 * 1024 * 1024;
        let (store, reader, h) = setup(n).await;
        let want = body(n);
        let mut x: u64 = 12345;
        for _ in 0..200 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (x >> 20) % (n as u64 - 4096);
            let b = h.read(&reader, off, 4096).await.unwrap();
            assert_eq!(&b[..], &want[off as usize..off as usize + 4096]);
        }
        let gets = store.stats().snapshot(Op::GetObject);
        // Never the whole object: at most two 64 KiB blocks per 4 KiB read.
        assert!(gets.bytes <= 200 * 2 * 64 * 1024, "{} bytes", gets.bytes);
    }

    #[tokio::test]
    async fn changed_object_gives_eio_not_mixed_bytes() {
        let (store, reader, h) = setup(1024 * 1024).await;
        h.read(&reader, 0, 4096).await.unwrap();
        store.inner().put("k", vec![0u8; 1024 * 1024]);
        let e = h.read(&reader, 700_000, 4096).await.unwrap_err();
        assert_eq!(e.errno(), libc::EIO);
        assert!(e.to_string().contains("changed"), "{}", e);
    }

    #[tokio::test]
    async fn short_body_is_an_error() {
        let mem = MemoryStore::new();
        mem.put("k", body(100_000));
        let etag = mem.head_etag("k");
        let reader = Reader::new(
            Arc::new(FaultyStore::short_reads(mem)),
            PrefetchConfig::default(),
        );
        let h = ReadHandle::new(2, "k", &etag, 100_000);
        assert_eq!(
            h.read(&reader, 0, 4096).await.unwrap_err().errno(),
            libc::EIO
        );
    }

    #[tokio::test]
    async fn reads_past_the_end_are_empty_or_clipped() {
        let (_s, reader, h) = setup(1000).await;
        assert!(h.read(&reader, 1000, 10).await.unwrap().is_empty());
        assert_eq!(h.read(&reader, 990, 100).await.unwrap().len(), 10);
    }

    #[tokio::test]
    async fn memory_budget_bounds_prefetch() {
        let n = 64 * 1024 * 1024;
        let mem = MemoryStore::new();
        mem.put("k", body(n));
        let etag = mem.head_etag("k");
        let cfg = PrefetchConfig {
            memory_budget: 4 * 1024 * 1024,
            ..PrefetchConfig::default()
        };
        let reader = Reader::new(Arc::new(mem), cfg);
        let h = ReadHandle::new(2, "k", &etag, n as u64);
        let mut off = 0;
        while off < n as u64 {
            let b = h.read(&reader, off, 1024 * 1024).await.unwrap();
            off += b.len() as u64;
            let held: u64 = h
                .state
                .lock()
                .stream
                .as_ref()
                .map(|s| s.parts.iter().map(|p| p.range.end - p.range.start).sum())
                .unwrap_or(0);
            // Budgeted prefetch plus at most the demanded part(s) and what is kept behind.
            assert!(
                held <= 4 * 1024 * 1024 + 2 * cfg.part_size + KEEP_BEHIND,
                "{held}"
            );
        }
        assert_eq!(off, n as u64);
    }
}
