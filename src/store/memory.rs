//! An in-memory [`ObjectStore`] for unit tests of the filesystem core. It follows S3's
//! listing rules (lexicographic order, delimiter grouping, pagination) closely enough
//! that the core's paging and merging logic is exercised for real.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    CompletedPart, DeleteFailure, ListPage, ObjectMeta, ObjectStore, ObjectSummary, Props,
    PutOptions, StoreError, StoreErrorKind, StoreResult, Tags,
};

/// S3's minimum size of every part but the last of a multipart upload.
pub const S3_MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// A multipart upload in progress.
#[derive(Debug)]
struct Upload {
    key: String,
    initiated: SystemTime,
    opts: PutOptions,
    /// Part number -> (ETag, body).
    parts: BTreeMap<i32, (String, Bytes)>,
}

#[derive(Debug, Clone)]
struct Object {
    body: Bytes,
    etag: String,
    last_modified: SystemTime,
    content_type: Option<String>,
    user_metadata: HashMap<String, String>,
    props: Props,
    tags: Tags,
    /// The `x-amz-restore` status of an archived object.
    restore: Option<String>,
}

/// A bucket held in memory.
///
/// Lock order, where two are held: `objects`, then `uploads`, then `counter`;
/// `objects` before `deleted`.
#[derive(Debug)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Object>>,
    /// Multipart uploads neither completed nor aborted, by upload id.
    uploads: Mutex<HashMap<String, Upload>>,
    page_size: usize,
    min_part_size: usize,
    counter: Mutex<u64>,
    /// Listings skip empty `dir/` markers, as some servers' do.
    unlisted_markers: bool,
    /// Every key deleted, in order.
    deleted: Mutex<Vec<String>>,
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
            uploads: Mutex::new(HashMap::new()),
            page_size,
            min_part_size: S3_MIN_PART_SIZE,
            counter: Mutex::new(0),
            unlisted_markers: false,
            deleted: Mutex::new(Vec::new()),
        }
    }

    /// Completing a multipart upload rejects any part but the last smaller than `n` bytes
    /// (default [`S3_MIN_PART_SIZE`], as S3 does); tests lower it to use small parts.
    pub fn with_min_part_size(mut self, n: usize) -> Self {
        self.min_part_size = n;
        self
    }

    /// Listings leave out empty `dir/` markers (and the prefixes only they make), like
    /// servers that keep a marker as a real, empty directory and list files only.
    pub fn with_unlisted_markers(mut self) -> Self {
        self.unlisted_markers = true;
        self
    }

    fn next_id(&self) -> u64 {
        let mut c = self.counter.lock();
        *c += 1;
        *c
    }

    fn next_etag(&self) -> String {
        format!("\"etag-{}\"", self.next_id())
    }

    fn new_object(&self, body: Bytes, opts: &PutOptions) -> Object {
        Object {
            body,
            etag: self.next_etag(),
            last_modified: SystemTime::now(),
            content_type: opts.content_type.clone(),
            user_metadata: opts.user_metadata.clone(),
            props: opts.props.clone(),
            tags: opts.tags.clone(),
            restore: None,
        }
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
            props: Props::default(),
            tags: Tags::new(),
            restore: None,
        };
        self.objects.lock().insert(key.to_string(), obj);
    }

    /// Put an object with these headers, storage class and encryption.
    pub fn put_with_props(&self, key: &str, body: impl Into<Bytes>, props: Props) {
        self.put(key, body);
        if let Some(o) = self.objects.lock().get_mut(key) {
            o.props = props;
        }
    }

    /// The headers, storage class and encryption of `key`.
    pub fn props(&self, key: &str) -> Option<Props> {
        self.objects.lock().get(key).map(|o| o.props.clone())
    }

    /// Set the tags of `key` (as another client would: the ETag stays).
    pub fn put_tags(&self, key: &str, tags: &[(&str, &str)]) {
        if let Some(o) = self.objects.lock().get_mut(key) {
            o.tags = tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
    }

    /// Finish the restore of `key` (as S3 does hours later): readable until `expiry`.
    pub fn finish_restore(&self, key: &str, expiry: &str) {
        if let Some(o) = self.objects.lock().get_mut(key) {
            o.restore = Some(format!(
                "ongoing-request=\"false\", expiry-date=\"{expiry}\""
            ));
        }
    }

    /// Backdate `key`'s LastModified (as an object written long ago).
    pub fn set_last_modified(&self, key: &str, t: SystemTime) {
        if let Some(o) = self.objects.lock().get_mut(key) {
            o.last_modified = t;
        }
    }

    /// The tags of `key`, if it exists.
    pub fn tags(&self, key: &str) -> Option<Tags> {
        self.objects.lock().get(key).map(|o| o.tags.clone())
    }

    /// Mark an object as archived in `class` (GLACIER, DEEP_ARCHIVE).
    pub fn set_storage_class(&self, key: &str, class: &str) {
        if let Some(o) = self.objects.lock().get_mut(key) {
            o.props.storage_class = Some(class.to_string());
        }
    }

    /// The ETag of `key` (panics if absent; for tests).
    pub fn head_etag(&self, key: &str) -> String {
        self.objects.lock()[key].etag.clone()
    }

    /// The body of `key`, if it exists.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.objects.lock().get(key).map(|o| o.body.clone())
    }

    /// The content type and user metadata of `key`, if it exists.
    pub fn meta(&self, key: &str) -> Option<(Option<String>, HashMap<String, String>)> {
        self.objects
            .lock()
            .get(key)
            .map(|o| (o.content_type.clone(), o.user_metadata.clone()))
    }

    /// Every key, in order.
    /// Every key deleted so far, in the order of the deletes.
    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().clone()
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().keys().cloned().collect()
    }

    /// The keys of multipart uploads neither completed nor aborted, sorted (a key appears
    /// once per pending upload).
    pub fn pending_uploads(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .uploads
            .lock()
            .values()
            .map(|u| u.key.clone())
            .collect();
        keys.sort();
        keys
    }
}

fn no_such_upload(key: &str, upload_id: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::NotFound,
        format!("{key}: NoSuchUpload: no upload {upload_id}"),
    )
}

fn other(key: &str, code: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::new(StoreErrorKind::Other, format!("{key}: {code}: {detail}"))
}

/// The upload `upload_id`, which must be for `key`.
fn upload_for<'a>(
    uploads: &'a mut HashMap<String, Upload>,
    key: &str,
    upload_id: &str,
) -> StoreResult<&'a mut Upload> {
    match uploads.get_mut(upload_id) {
        Some(u) if u.key == key => Ok(u),
        _ => Err(no_such_upload(key, upload_id)),
    }
}

fn check_part_number(key: &str, number: i32) -> StoreResult<()> {
    if (1..=10000).contains(&number) {
        Ok(())
    } else {
        Err(other(
            key,
            "InvalidArgument",
            format!("part number {number} not in 1..=10000"),
        ))
    }
}

fn archived_error(key: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::InvalidObjectState,
        format!("{key}: object is archived"),
    )
}

fn precondition_failed(key: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::PreconditionFailed,
        format!("{key}: ETag changed"),
    )
}

fn archived(class: &Option<String>) -> bool {
    matches!(class.as_deref(), Some("GLACIER") | Some("DEEP_ARCHIVE"))
}

/// Archived and not restored: GET and copies fail with InvalidObjectState.
fn unreadable(o: &Object) -> bool {
    archived(&o.props.storage_class)
        && !o
            .restore
            .as_deref()
            .is_some_and(|r| r.contains("ongoing-request=\"false\""))
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
        let objects = self.objects.lock();
        let mut page = ListPage::default();
        // The continuation token is the last key or common prefix returned.
        let after = continuation;
        let mut last: Option<String> = None;
        let mut count = 0;
        for (key, obj) in objects.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if self.unlisted_markers && key.ends_with('/') && obj.body.is_empty() {
                continue;
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
                    storage_class: obj.props.storage_class.clone(),
                });
                last = Some(key.clone());
            }
            count += 1;
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        tokio::task::yield_now().await;
        let objects = self.objects.lock();
        let o = objects.get(key).ok_or_else(|| StoreError::not_found(key))?;
        Ok(ObjectMeta {
            size: o.body.len() as u64,
            etag: o.etag.clone(),
            last_modified: o.last_modified,
            props: o.props.clone(),
            content_type: o.content_type.clone(),
            version_id: None,
            user_metadata: o.user_metadata.clone(),
            restore: o.restore.clone(),
            tag_count: o.tags.len() as u32,
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        tokio::task::yield_now().await;
        let objects = self.objects.lock();
        let o = objects.get(key).ok_or_else(|| StoreError::not_found(key))?;
        if unreadable(o) {
            return Err(archived_error(key));
        }
        if let Some(tag) = if_match {
            if tag != o.etag {
                return Err(precondition_failed(key));
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

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        tokio::task::yield_now().await;
        let obj = self.new_object(body, opts);
        let etag = obj.etag.clone();
        self.objects.lock().insert(key.to_string(), obj);
        Ok(etag)
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        tokio::task::yield_now().await;
        let id = format!("upload-{}", self.next_id());
        self.uploads.lock().insert(
            id.clone(),
            Upload {
                key: key.to_string(),
                initiated: SystemTime::now(),
                opts: opts.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        tokio::task::yield_now().await;
        let mut uploads = self.uploads.lock();
        let upload = upload_for(&mut uploads, key, upload_id)?;
        check_part_number(key, number)?;
        let etag = self.next_etag();
        upload.parts.insert(number, (etag.clone(), body));
        Ok(etag)
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
        tokio::task::yield_now().await;
        let objects = self.objects.lock();
        let mut uploads = self.uploads.lock();
        let upload = upload_for(&mut uploads, key, upload_id)?;
        check_part_number(key, number)?;
        let src = objects
            .get(source)
            .ok_or_else(|| StoreError::not_found(source))?;
        if unreadable(src) {
            return Err(archived_error(source));
        }
        if src.etag != source_etag {
            return Err(precondition_failed(source));
        }
        let len = src.body.len() as u64;
        if range.start >= range.end || range.end > len {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRange,
                format!(
                    "{source}: range {}..{} of a {len}-byte object",
                    range.start, range.end
                ),
            ));
        }
        let body = src.body.slice(range.start as usize..range.end as usize);
        let etag = self.next_etag();
        upload.parts.insert(number, (etag.clone(), body));
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        tokio::task::yield_now().await;
        let mut objects = self.objects.lock();
        let mut uploads = self.uploads.lock();
        let upload = upload_for(&mut uploads, key, upload_id)?;
        if parts.is_empty() {
            return Err(other(key, "MalformedXML", "no parts"));
        }
        if let Some(w) = parts.windows(2).find(|w| w[1].number <= w[0].number) {
            return Err(other(
                key,
                "InvalidPartOrder",
                format!("part {} after part {}", w[1].number, w[0].number),
            ));
        }
        let mut bodies = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let body = match upload.parts.get(&p.number) {
                // S3 accepts the ETag with or without its quotes.
                Some((etag, body)) if etag.trim_matches('"') == p.etag.trim_matches('"') => {
                    body.clone()
                }
                _ => {
                    return Err(other(
                        key,
                        "InvalidPart",
                        format!("part {} with ETag {} was not uploaded", p.number, p.etag),
                    ))
                }
            };
            if i + 1 < parts.len() && body.len() < self.min_part_size {
                return Err(other(
                    key,
                    "EntityTooSmall",
                    format!(
                        "part {} is {} bytes, less than {}",
                        p.number,
                        body.len(),
                        self.min_part_size
                    ),
                ));
            }
            bodies.push(body);
        }
        let upload = uploads.remove(upload_id).expect("checked above");
        let mut whole = Vec::with_capacity(bodies.iter().map(Bytes::len).sum());
        for b in &bodies {
            whole.extend_from_slice(b);
        }
        let obj = self.new_object(Bytes::from(whole), &upload.opts);
        let etag = obj.etag.clone();
        objects.insert(key.to_string(), obj);
        Ok(etag)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        tokio::task::yield_now().await;
        let mut uploads = self.uploads.lock();
        upload_for(&mut uploads, key, upload_id)?;
        uploads.remove(upload_id);
        Ok(())
    }

    async fn list_versions(
        &self,
        prefix: &str,
        _marker: Option<(String, String)>,
    ) -> StoreResult<super::VersionPage> {
        tokio::task::yield_now().await;
        // No history is kept: each object is its one version, "null".
        let versions = self
            .objects
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| super::VersionSummary {
                key: k.clone(),
                version_id: "null".into(),
                size: o.body.len() as u64,
                etag: o.etag.clone(),
                last_modified: o.last_modified,
                is_latest: true,
                delete_marker: false,
            })
            .collect();
        Ok(super::VersionPage {
            versions,
            next: None,
        })
    }

    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        if version_id != "null" {
            return Err(StoreError::not_found(key));
        }
        self.head(key).await
    }

    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        if version_id != "null" {
            return Err(StoreError::not_found(key));
        }
        self.get_range(key, range, None).await
    }

    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        tokio::task::yield_now().await;
        let mut v: Vec<super::PendingUpload> = self
            .uploads
            .lock()
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| super::PendingUpload {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: u.initiated,
            })
            .collect();
        v.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        Ok(v)
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        tokio::task::yield_now().await;
        let mut objects = self.objects.lock();
        let src = objects
            .get(source)
            .ok_or_else(|| StoreError::not_found(source))?;
        if unreadable(src) {
            return Err(archived_error(source));
        }
        if let Some(tag) = source_etag {
            if tag != src.etag {
                return Err(precondition_failed(source));
            }
        }
        if source == dest && opts.is_none() {
            return Err(other(
                dest,
                "InvalidRequest",
                "copying an object to itself without changing its metadata",
            ));
        }
        let kept;
        let opts = match opts {
            Some(o) => o,
            None => {
                // As S3's metadata directive COPY: the headers and metadata stay, the
                // storage class and encryption become the bucket's defaults.
                kept = PutOptions {
                    content_type: src.content_type.clone(),
                    user_metadata: src.user_metadata.clone(),
                    props: Props {
                        storage_class: None,
                        sse: None,
                        sse_kms_key_id: None,
                        bucket_key: None,
                        ..src.props.clone()
                    },
                    tags: Tags::new(),
                };
                &kept
            }
        };
        // TaggingDirective COPY (S3's default, whatever the metadata directive).
        let tags = src.tags.clone();
        let mut obj = self.new_object(src.body.clone(), opts);
        obj.tags = tags;
        let etag = obj.etag.clone();
        objects.insert(dest.to_string(), obj);
        Ok(etag)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.objects.lock().remove(key);
        self.deleted.lock().push(key.to_string());
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>> {
        tokio::task::yield_now().await;
        if keys.is_empty() || keys.len() > super::MAX_DELETE_KEYS {
            return Err(other(
                "DeleteObjects",
                "MalformedXML",
                format!("{} keys (1 to 1000 allowed)", keys.len()),
            ));
        }
        let mut objects = self.objects.lock();
        let mut deleted = self.deleted.lock();
        for k in keys {
            objects.remove(k);
            deleted.push(k.clone());
        }
        Ok(Vec::new())
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        tokio::task::yield_now().await;
        let objects = self.objects.lock();
        let o = objects.get(key).ok_or_else(|| StoreError::not_found(key))?;
        Ok(o.tags.clone())
    }

    async fn set_tags(&self, key: &str, tags: &Tags) -> StoreResult<()> {
        tokio::task::yield_now().await;
        if tags.len() > super::MAX_TAGS {
            return Err(other(
                key,
                "BadRequest",
                "an object can have at most 10 tags",
            ));
        }
        let mut objects = self.objects.lock();
        let o = objects
            .get_mut(key)
            .ok_or_else(|| StoreError::not_found(key))?;
        o.tags = tags.clone();
        Ok(())
    }

    async fn restore(&self, key: &str, _days: u32, _tier: Option<&str>) -> StoreResult<()> {
        tokio::task::yield_now().await;
        let mut objects = self.objects.lock();
        let o = objects
            .get_mut(key)
            .ok_or_else(|| StoreError::not_found(key))?;
        if !archived(&o.props.storage_class) {
            return Err(StoreError::new(
                StoreErrorKind::InvalidObjectState,
                format!("restore {key}: InvalidObjectState: the object is not archived"),
            ));
        }
        if o.restore.as_deref().is_some_and(|r| r.contains("\"true\"")) {
            return Err(other(
                key,
                "RestoreAlreadyInProgress",
                "a restore is in progress",
            ));
        }
        o.restore = Some("ongoing-request=\"true\"".to_string());
        Ok(())
    }

    async fn presign(
        &self,
        key: &str,
        method: super::PresignMethod,
        expires: std::time::Duration,
    ) -> StoreResult<String> {
        Ok(format!(
            "memory:///{key}?method={method:?}&expires={}",
            expires.as_secs()
        ))
    }
}

/// An in-memory account for tests of `--all-buckets`: buckets by name, each a
/// [`MemoryStore`], every request counted into one [`RequestStats`].
pub struct MemoryBuckets {
    buckets: Mutex<BTreeMap<String, Arc<MemoryStore>>>,
    stats: Arc<super::counting::RequestStats>,
}

impl MemoryBuckets {
    pub fn new(names: &[&str]) -> Self {
        MemoryBuckets {
            buckets: Mutex::new(
                names
                    .iter()
                    .map(|n| (n.to_string(), Arc::new(MemoryStore::new())))
                    .collect(),
            ),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<super::counting::RequestStats> {
        self.stats.clone()
    }

    /// The store of bucket `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<MemoryStore>> {
        self.buckets.lock().get(name).cloned()
    }
}

fn no_bucket(name: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::NoSuchBucket,
        format!("{name}: NoSuchBucket: The specified bucket does not exist"),
    )
}

#[async_trait]
impl super::account::Buckets for MemoryBuckets {
    async fn list_buckets(&self) -> StoreResult<Vec<super::account::BucketInfo>> {
        use super::counting::Op;
        let names: Vec<String> = self.buckets.lock().keys().cloned().collect();
        self.stats
            .count(Op::ListBuckets, "", async {
                Ok::<_, StoreError>(
                    names
                        .into_iter()
                        .map(|name| super::account::BucketInfo {
                            name,
                            created: Some(SystemTime::UNIX_EPOCH),
                        })
                        .collect(),
                )
            })
            .await
    }

    async fn create_bucket(&self, name: &str) -> StoreResult<()> {
        use super::counting::Op;
        self.stats
            .count(Op::CreateBucket, name, async {
                self.buckets
                    .lock()
                    .entry(name.to_string())
                    .or_insert_with(|| Arc::new(MemoryStore::new()));
                Ok::<_, StoreError>(())
            })
            .await
    }

    async fn delete_bucket(&self, name: &str) -> StoreResult<()> {
        use super::counting::Op;
        self.stats
            .count(Op::DeleteBucket, name, async {
                let mut b = self.buckets.lock();
                match b.get(name) {
                    None => Err(no_bucket(name)),
                    Some(s) if !s.objects.lock().is_empty() => Err(StoreError::new(
                        StoreErrorKind::NotEmpty,
                        format!("delete bucket {name}: BucketNotEmpty"),
                    )),
                    Some(_) => {
                        b.remove(name);
                        Ok(())
                    }
                }
            })
            .await
    }

    async fn open(&self, name: &str) -> StoreResult<Arc<dyn ObjectStore>> {
        use super::counting::{CountingStore, Op};
        let found = self.get(name);
        self.stats
            .count(Op::HeadBucket, name, async { Ok::<_, StoreError>(()) })
            .await?;
        Ok(match found {
            Some(s) => Arc::new(CountingStore::with_stats(s, self.stats.clone())),
            None => Arc::new(CountingStore::with_stats(
                super::faulty::FaultyStore::random(
                    MemoryStore::new(),
                    0,
                    1000,
                    StoreErrorKind::NoSuchBucket,
                ),
                self.stats.clone(),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ct: &str, meta: &[(&str, &str)]) -> PutOptions {
        PutOptions {
            content_type: Some(ct.to_string()),
            user_metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn part(number: i32, etag: String) -> CompletedPart {
        CompletedPart { number, etag }
    }

    #[tokio::test]
    async fn put_sets_content_type_and_metadata() {
        let s = MemoryStore::new();
        let o = opts("text/plain", &[("mode", "33188")]);
        let etag = ObjectStore::put(&s, "k", Bytes::from_static(b"abc"), &o)
            .await
            .unwrap();
        let h = s.head("k").await.unwrap();
        assert_eq!(h.etag, etag);
        assert_eq!(h.size, 3);
        assert_eq!(h.content_type.as_deref(), Some("text/plain"));
        assert_eq!(h.user_metadata["mode"], "33188");
        assert_eq!(s.get("k").unwrap(), "abc");
        assert_eq!(s.meta("k").unwrap(), (o.content_type, o.user_metadata));
        assert_eq!(s.keys(), vec!["k".to_string()]);
    }

    #[tokio::test]
    async fn complete_assembles_parts_in_order() {
        let s = MemoryStore::new().with_min_part_size(2);
        let id = s
            .create_multipart("big", &opts("a/b", &[("x", "1")]))
            .await
            .unwrap();
        assert_eq!(s.pending_uploads(), vec!["big".to_string()]);
        // Parts may be uploaded in any order; the list given to complete decides.
        let e2 = s
            .upload_part("big", &id, 2, Bytes::from_static(b"cd"))
            .await
            .unwrap();
        let e1 = s
            .upload_part("big", &id, 1, Bytes::from_static(b"ab"))
            .await
            .unwrap();
        let e3 = s
            .upload_part("big", &id, 3, Bytes::from_static(b"e"))
            .await
            .unwrap();
        assert!(s.get("big").is_none(), "nothing visible before complete");
        let etag = s
            .complete_multipart("big", &id, &[part(1, e1), part(2, e2), part(3, e3)])
            .await
            .unwrap();
        assert_eq!(s.get("big").unwrap(), "abcde");
        let h = s.head("big").await.unwrap();
        assert_eq!(h.etag, etag);
        assert_eq!(h.content_type.as_deref(), Some("a/b"));
        assert_eq!(h.user_metadata["x"], "1");
        assert!(s.pending_uploads().is_empty());
        // The upload is gone once completed.
        let err = s
            .upload_part("big", &id, 4, Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NotFound);
    }

    #[tokio::test]
    async fn complete_rejects_small_parts_wrong_etags_and_bad_order() {
        let s = MemoryStore::new(); // S3's 5 MiB minimum
        let id = s
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        let e1 = s
            .upload_part("k", &id, 1, Bytes::from(vec![1u8; 100]))
            .await
            .unwrap();
        let e2 = s
            .upload_part("k", &id, 2, Bytes::from(vec![2u8; 10]))
            .await
            .unwrap();
        let err = s
            .complete_multipart("k", &id, &[part(1, e1.clone()), part(2, e2.clone())])
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Other);
        assert!(err.message.contains("EntityTooSmall"), "{}", err.message);
        let err = s
            .complete_multipart("k", &id, &[part(1, "\"nope\"".into())])
            .await
            .unwrap_err();
        assert!(err.message.contains("InvalidPart"), "{}", err.message);
        let err = s
            .complete_multipart("k", &id, &[part(2, e2.clone()), part(1, e1.clone())])
            .await
            .unwrap_err();
        assert!(err.message.contains("InvalidPartOrder"), "{}", err.message);
        assert!(s.get("k").is_none());
        // A failed complete leaves the upload pending; a single small part is fine.
        assert_eq!(s.pending_uploads(), vec!["k".to_string()]);
        s.complete_multipart("k", &id, &[part(2, e2)])
            .await
            .unwrap();
        assert_eq!(s.get("k").unwrap().len(), 10);
        // Part of 5 MiB exactly is accepted as a non-last part.
        let id = s
            .create_multipart("m", &PutOptions::default())
            .await
            .unwrap();
        let e1 = s
            .upload_part("m", &id, 1, Bytes::from(vec![0u8; S3_MIN_PART_SIZE]))
            .await
            .unwrap();
        let e2 = s
            .upload_part("m", &id, 2, Bytes::from_static(b"z"))
            .await
            .unwrap();
        s.complete_multipart("m", &id, &[part(1, e1), part(2, e2)])
            .await
            .unwrap();
        assert_eq!(s.get("m").unwrap().len(), S3_MIN_PART_SIZE + 1);
    }

    #[tokio::test]
    async fn abort_clears_pending_uploads() {
        let s = MemoryStore::new();
        let id = s
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        s.upload_part("k", &id, 1, Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(s.pending_uploads(), vec!["k".to_string()]);
        s.abort_multipart("k", &id).await.unwrap();
        assert!(s.pending_uploads().is_empty());
        assert!(s.get("k").is_none());
        let err = s.abort_multipart("k", &id).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NotFound);
        let err = s
            .upload_part("k", "no-such-upload", 1, Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NotFound);
    }

    #[tokio::test]
    async fn upload_part_copy_checks_source() {
        let s = MemoryStore::new().with_min_part_size(1);
        s.put("src", "0123456789");
        let tag = s.head_etag("src");
        let id = s
            .create_multipart("dst", &PutOptions::default())
            .await
            .unwrap();
        let e1 = s
            .upload_part_copy("dst", &id, 1, "src", &tag, 2..5)
            .await
            .unwrap();
        let err = s
            .upload_part_copy("dst", &id, 2, "src", "\"stale\"", 0..1)
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
        let err = s
            .upload_part_copy("dst", &id, 2, "missing", &tag, 0..1)
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NotFound);
        let err = s
            .upload_part_copy("dst", &id, 2, "src", &tag, 5..11)
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::InvalidRange);
        let e2 = s
            .upload_part("dst", &id, 2, Bytes::from_static(b"!"))
            .await
            .unwrap();
        s.complete_multipart("dst", &id, &[part(1, e1), part(2, e2)])
            .await
            .unwrap();
        assert_eq!(s.get("dst").unwrap(), "234!");
    }

    #[tokio::test]
    async fn copy_keeps_or_replaces_metadata() {
        let s = MemoryStore::new();
        ObjectStore::put(
            &s,
            "a",
            Bytes::from_static(b"body"),
            &opts("t/a", &[("m", "1")]),
        )
        .await
        .unwrap();
        let tag = s.head_etag("a");
        let kept = s.copy("a", "b", Some(&tag), None).await.unwrap();
        assert_ne!(kept, tag);
        assert_eq!(s.get("b").unwrap(), "body");
        assert_eq!(s.meta("b"), s.meta("a"));
        let new = opts("t/new", &[("m", "2")]);
        s.copy("a", "a", None, Some(&new)).await.unwrap();
        assert_eq!(s.meta("a").unwrap(), (new.content_type, new.user_metadata));
        let err = s.copy("a", "c", Some(&tag), None).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
        let err = s.copy("nope", "c", None, None).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NotFound);
        s.delete("b").await.unwrap();
        s.delete("b").await.unwrap();
        assert_eq!(s.keys(), vec!["a".to_string()]);
    }
}
