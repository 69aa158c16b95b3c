//! The HeadObject cache: results (including "not found") live for the metadata TTL, and
//! concurrent requests for the same key share one HeadObject. Statahead fills it ahead
//! of the kernel's lookups after a readdir.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::error::{Error, Result};
use crate::store::{ObjectMeta, ObjectStore, StoreErrorKind};

/// `None` = the key does not exist.
pub type HeadResult = Option<Arc<ObjectMeta>>;

pub struct MetaCache<S> {
    store: Arc<S>,
    cache: Option<moka::future::Cache<String, HeadResult>>,
}

impl<S: ObjectStore> MetaCache<S> {
    pub fn new(store: Arc<S>, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(200_000)
                .build()
        });
        MetaCache { store, cache }
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
                    warn!(
                        key,
                        "directory metadata unavailable, using defaults: {}", e.message
                    );
                } else {
                    debug!(key, "directory metadata unavailable: {}", e.message);
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
        (r, rtt)
    }

    /// The cached result for `key`, if any, without a request.
    pub async fn peek(&self, key: &str) -> Option<HeadResult> {
        self.cache.as_ref()?.get(key).await
    }

    pub async fn invalidate(&self, key: &str) {
        if let Some(c) = &self.cache {
            c.invalidate(key).await;
        }
    }
}
