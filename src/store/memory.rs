//! An in-memory [`ObjectStore`] for unit tests of the filesystem core. It follows S3's
//! listing rules (lexicographic order, delimiter grouping, pagination) closely enough
//! that the core's paging and merging logic is exercised for real.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    ListPage, ObjectMeta, ObjectStore, ObjectSummary, StoreError, StoreErrorKind, StoreResult,
};

#[derive(Debug, Clone)]
struct Object {
    body: Bytes,
    etag: String,
    last_modified: SystemTime,
    content_type: Option<String>,
    user_metadata: HashMap<String, String>,
    storage_class: Option<String>,
}

/// A bucket held in memory.
#[derive(Debug)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Object>>,
    page_size: usize,
    counter: Mutex<u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_page_size(1000)
    }

    /// A store whose listings return at most `page_size` entries per page.
    pub fn with_page_size(page_size: usize) -> Self {
        MemoryStore {
            objects: Mutex::new(BTreeMap::new()),
            page_size,
            counter: Mutex::new(0),
        }
    }

    fn next_etag(&self) -> String {
        let mut c = self.counter.lock().unwrap();
        *c += 1;
        format!("\"etag-{}\"", *c)
    }

    /// Put an object with no metadata.
    pub fn put(&self, key: &str, body: impl Into<Bytes>) {
        self.put_with_meta(key, body, &[]);
    }

    /// Put an object with user metadata (`x-amz-meta-*` names without the prefix).
    pub fn put_with_meta(&self, key: &str, body: impl Into<Bytes>, meta: &[(&str, &str)]) {
        let etag = self.next_etag();
        let obj = Object {
            body: body.into(),
            etag,
            last_modified: SystemTime::now(),
            content_type: None,
            user_metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            storage_class: None,
        };
        self.objects.lock().unwrap().insert(key.to_string(), obj);
    }

    /// Mark an object as archived in `class` (GLACIER, DEEP_ARCHIVE).
    pub fn set_storage_class(&self, key: &str, class: &str) {
        if let Some(o) = self.objects.lock().unwrap().get_mut(key) {
            o.storage_class = Some(class.to_string());
        }
    }

    /// The ETag of `key` (panics if absent; for tests).
    pub fn head_etag(&self, key: &str) -> String {
        self.objects.lock().unwrap()[key].etag.clone()
    }
}

fn archived(class: &Option<String>) -> bool {
    matches!(class.as_deref(), Some("GLACIER") | Some("DEEP_ARCHIVE"))
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        // Yield like a network request would, so concurrency is observable in tests.
        tokio::task::yield_now().await;
        let limit = max_keys
            .map(|m| m.max(1) as usize)
            .unwrap_or(self.page_size)
            .min(self.page_size);
        let objects = self.objects.lock().unwrap();
        let mut page = ListPage::default();
        // The continuation token is the last key or common prefix returned.
        let after = continuation;
        let mut last: Option<String> = None;
        let mut count = 0;
        for (key, obj) in objects.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if let Some(a) = &after {
                let inside_prefix =
                    delimiter.is_some_and(|d| a.ends_with(d)) && key.starts_with(a.as_str());
                if key.as_str() <= a.as_str() || inside_prefix {
                    continue;
                }
            }
            let rest = &key[prefix.len()..];
            let grouped = delimiter.and_then(|d| rest.find(d).map(|pos| pos + d.len()));
            if let Some(end) = grouped {
                let cp = format!("{prefix}{}", &rest[..end]);
                if last.as_ref() == Some(&cp) {
                    continue;
                }
                if count == limit {
                    page.next_token = last;
                    return Ok(page);
                }
                page.prefixes.push(cp.clone());
                last = Some(cp);
            } else {
                if count == limit {
                    page.next_token = last;
                    return Ok(page);
                }
                page.objects.push(ObjectSummary {
                    key: key.clone(),
                    size: obj.body.len() as u64,
                    etag: obj.etag.clone(),
                    last_modified: obj.last_modified,
                    storage_class: obj.storage_class.clone(),
                });
                last = Some(key.clone());
            }
            count += 1;
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        tokio::task::yield_now().await;
        let objects = self.objects.lock().unwrap();
        let o = objects.get(key).ok_or_else(|| StoreError::not_found(key))?;
        Ok(ObjectMeta {
            size: o.body.len() as u64,
            etag: o.etag.clone(),
            last_modified: o.last_modified,
            storage_class: o.storage_class.clone(),
            content_type: o.content_type.clone(),
            version_id: None,
            user_metadata: o.user_metadata.clone(),
            restore: None,
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        tokio::task::yield_now().await;
        let objects = self.objects.lock().unwrap();
        let o = objects.get(key).ok_or_else(|| StoreError::not_found(key))?;
        if archived(&o.storage_class) {
            return Err(StoreError::new(
                StoreErrorKind::InvalidObjectState,
                format!("{key}: object is archived"),
            ));
        }
        if let Some(tag) = if_match {
            if tag != o.etag {
                return Err(StoreError::new(
                    StoreErrorKind::PreconditionFailed,
                    format!("{key}: ETag changed"),
                ));
            }
        }
        let len = o.body.len() as u64;
        if range.start >= len && len > 0 {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRange,
                key.to_string(),
            ));
        }
        let end = range.end.min(len);
        Ok(o.body.slice(range.start.min(len) as usize..end as usize))
    }
}
