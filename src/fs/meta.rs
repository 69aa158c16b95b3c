//! The HeadObject cache: results (including "not found") live for the metadata TTL, and
//! concurrent requests for the same key share one HeadObject. Statahead fills it ahead
//! of the kernel's lookups after a readdir; what statahead fetched also waits, for up to
//! [`AHEAD_HORIZON`], for the one lookup it was fetched for, so a long `ls -l` on a busy
//! machine (or a slow server) does not fetch an entry twice when the TTL runs out
//! between statahead's request and the kernel's lookup. An object's tags, fetched only
//! when asked for, are cached beside its HEAD for the same TTL (a `getfattr` asks twice:
//! once for the size, once for the value).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::error::{Error, Result};
use crate::store::counting::{Cache, RequestStats};
use crate::store::{ObjectMeta, ObjectStore, StoreErrorKind, Tags};

/// `None` = the key does not exist.
pub type HeadResult = Option<Arc<ObjectMeta>>;

/// How long a statahead result waits for its lookup.
pub const AHEAD_HORIZON: Duration = Duration::from_secs(30);

pub struct MetaCache<S> {
    store: Arc<S>,
    cache: Option<moka::future::Cache<String, HeadResult>>,
    /// GetObjectTagging results.
    tags: Option<moka::future::Cache<String, Arc<Tags>>>,
    /// Statahead results no lookup has used yet, with the listing pass that asked.
    ahead: moka::sync::Cache<String, (u64, HeadResult)>,
    /// Where hits and misses are counted.
    stats: Option<Arc<RequestStats>>,
}

impl<S: ObjectStore> MetaCache<S> {
    pub fn new(store: Arc<S>, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(200_000)
                .build()
        });
        let tags = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(10_000)
                .build()
        });
        let ahead = moka::sync::Cache::builder()
            .time_to_live(AHEAD_HORIZON)
            .max_capacity(if ttl.is_zero() { 0 } else { 20_000 })
            .build();
        MetaCache {
            store,
            cache,
            tags,
            ahead,
            stats: None,
        }
    }

    /// Count hits and misses into `stats`.
    pub fn with_stats(mut self, stats: Option<Arc<RequestStats>>) -> Self {
        self.stats = stats;
        self
    }

    fn counted(&self, hit: bool) {
        if let Some(s) = &self.stats {
            s.lookup(Cache::Metadata, hit);
        }
    }

    /// HeadObject of `key` for statahead of listing `pass`: cached as
    /// [`head`](Self::head) does, and kept for its lookup (see the module doc). Returns
    /// the round trip if this call sent it.
    pub async fn prefetch(&self, key: &str, pass: u64) -> Option<Duration> {
        let (r, rtt) = self.head_timed(key).await;
        if let (Ok(m), Some(_)) = (r, rtt) {
            self.ahead.insert(key.to_string(), (pass, m));
        }
        rtt
    }

    /// HeadObject of `key` for a lookup answered from listing `pass`: a statahead result
    /// that listing asked for and no lookup used yet answers it even past the TTL (within
    /// [`AHEAD_HORIZON`]), once; else as [`head`](Self::head).
    pub async fn head_for_lookup(&self, key: &str, pass: u64) -> Result<HeadResult> {
        if let Some(c) = &self.cache {
            if let Some(m) = c.get(key).await {
                self.ahead.invalidate(key);
                self.counted(true);
                return Ok(m);
            }
        }
        if let Some((p, m)) = self.ahead.remove(key) {
            if p == pass {
                self.counted(true);
                return Ok(m);
            }
        }
        self.head(key).await
    }

    async fn fetch(store: Arc<S>, key: String) -> Result<HeadResult> {
        match store.head(&key).await {
            Ok(m) => Ok(Some(Arc::new(m))),
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(None),
            Err(e) if key.ends_with('/') => {
                // A directory marker (keys ending in `/` are nothing else) only carries
                // a directory's mode, owner and times; its directory exists by listing.
                // Some servers cannot HEAD a prefix they keep as a real directory (500)
                // or deny it: the directory then has the mount's defaults.
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    warn!(key, "directory metadata unavailable, using defaults: {}", e);
                } else {
                    debug!(key, "directory metadata unavailable: {}", e);
                }
                Ok(None)
            }
            Err(e) => Err(Error::from(e)),
        }
    }

    /// HeadObject of `key`, from the cache when fresh.
    pub async fn head(&self, key: &str) -> Result<HeadResult> {
        self.head_timed(key).await.0
    }

    /// [`head`](Self::head), with the round trip of the HeadObject if this call sent
    /// it (`None` when the cache answered or another caller's request did).
    pub async fn head_timed(&self, key: &str) -> (Result<HeadResult>, Option<Duration>) {
        let Some(c) = &self.cache else {
            let t = Instant::now();
            let r = Self::fetch(self.store.clone(), key.to_string()).await;
            self.counted(false);
            return (r, Some(t.elapsed()));
        };
        let mut rtt = None;
        let r = c
            .try_get_with(key.to_string(), async {
                let t = Instant::now();
                let r = Self::fetch(self.store.clone(), key.to_string()).await;
                rtt = Some(t.elapsed());
                r
            })
            .await
            .map_err(|e: Arc<Error>| (*e).clone());
        // Answered by the cache, or by another caller's request: no request of its own.
        self.counted(rtt.is_none());
        (r, rtt)
    }

    /// The tags of `key`: one GetObjectTagging, unless fresh in the cache (concurrent
    /// callers share one request).
    pub async fn tags(&self, key: &str) -> Result<Arc<Tags>> {
        let fetch = async {
            self.store
                .get_tags(key)
                .await
                .map(Arc::new)
                .map_err(Error::from)
        };
        match &self.tags {
            None => fetch.await,
            Some(c) => c
                .try_get_with(key.to_string(), fetch)
                .await
                .map_err(|e: Arc<Error>| (*e).clone()),
        }
    }

    /// `key` now has `tags` (this mount set them).
    pub async fn tags_changed(&self, key: &str, tags: Tags) {
        if let Some(c) = &self.tags {
            c.insert(key.to_string(), Arc::new(tags)).await;
        }
    }

    /// The cached result for `key`, if any, without a request.
    pub async fn peek(&self, key: &str) -> Option<HeadResult> {
        self.cache.as_ref()?.get(key).await
    }

    /// Free what expired (the caches' housekeeping).
    pub async fn run_pending_tasks(&self) {
        if let Some(c) = &self.cache {
            c.run_pending_tasks().await;
        }
        if let Some(c) = &self.tags {
            c.run_pending_tasks().await;
        }
        self.ahead.run_pending_tasks();
    }

    pub async fn invalidate(&self, key: &str) {
        self.ahead.invalidate(key);
        if let Some(c) = &self.cache {
            c.invalidate(key).await;
        }
        if let Some(c) = &self.tags {
            c.invalidate(key).await;
        }
    }
}
