//! The object-store boundary: everything bucketfs asks of S3 goes through the
//! [`ObjectStore`] trait. `s3` talks to a real endpoint with aws-sdk-s3, `memory`
//! and `faulty` are test doubles, and `counting` wraps any store to count requests.

pub mod account;
pub mod counting;
pub mod faulty;
pub mod journal;
pub mod memory;
pub mod retry;
pub mod s3;
pub mod s3_account;
pub mod versions;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

/// What went wrong talking to the store, reduced to the cases the filesystem maps to errnos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The key (or the bucket) does not exist.
    NotFound,
    /// The bucket itself does not exist.
    NoSuchBucket,
    /// Credentials refused or permission denied.
    AccessDenied,
    /// An If-Match / If-None-Match condition failed: the object changed.
    PreconditionFailed,
    /// The object is archived (Glacier / Deep Archive) and not restored.
    InvalidObjectState,
    /// The requested range cannot be satisfied (offset past the end).
    InvalidRange,
    /// The endpoint could not be reached (refused, no route, DNS, TLS handshake).
    Unreachable,
    /// The endpoint did not answer in time (`--connect-timeout`, `--request-timeout`):
    /// [`StoreError::timeout`] says how long was waited.
    TimedOut,
    /// No credentials to sign with (none found, a profile missing, a provider
    /// failing), before any request was sent.
    Credentials,
    /// The bucket is in another region than the one requests are signed for (301
    /// PermanentRedirect, AuthorizationHeaderMalformed): [`StoreError::region`] names
    /// the bucket's region when the server said it.
    WrongRegion,
    /// A failure that may go away by itself: 5xx, throttling (429, SlowDown), a
    /// response cut off.
    Transient,
    /// A bucket of that name exists already (someone else's, for CreateBucket).
    Exists,
    /// The bucket still holds objects (DeleteBucket).
    NotEmpty,
    /// The name cannot be a bucket's.
    InvalidName,
    /// A copy between two buckets of an all-buckets mount, which is not served.
    CrossBucket,
    /// Anything else (an unexpected 4xx, a malformed response, ...).
    Other,
}

/// An error from the store, with the key it concerned and a readable cause; `source`
/// is the error underneath (the SDK's, with its own chain), where there is one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
    /// For [`StoreErrorKind::TimedOut`]: how long the request waited.
    pub timeout: Option<std::time::Duration>,
    /// For [`StoreErrorKind::WrongRegion`]: the bucket's region, as the server said it.
    pub region: Option<String>,
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            timeout: None,
            region: None,
            source: None,
        }
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn not_found(key: &str) -> Self {
        Self::new(StoreErrorKind::NotFound, format!("no such key: {key}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One object as a listing reports it: no user metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    pub storage_class: Option<String>,
}

/// One page of a ListObjectsV2 with a delimiter.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects directly under the prefix, in key order.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes (each ends with the delimiter), in key order.
    pub prefixes: Vec<String>,
    /// Token for the next page; `None` when the listing is complete.
    pub next_token: Option<String>,
}

/// What an object carries besides its bytes, content type and user metadata, which a
/// rewrite of the object (a metadata change, an edit, a rename) must keep: its standard
/// headers, storage class and encryption.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    pub cache_control: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    /// The `Expires` header, an HTTP date.
    pub expires: Option<String>,
    pub website_redirect: Option<String>,
    pub storage_class: Option<String>,
    /// `AES256`, `aws:kms` or `aws:kms:dsse`.
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub bucket_key: Option<bool>,
}

/// Everything a HeadObject returns that bucketfs uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    /// Headers, storage class and encryption.
    pub props: Props,
    pub content_type: Option<String>,
    pub version_id: Option<String>,
    /// `x-amz-meta-*` headers, keys lower-case without the prefix.
    pub user_metadata: HashMap<String, String>,
    /// Restore status header (`ongoing-request="false", expiry-date=...`), if any.
    pub restore: Option<String>,
    /// How many tags the object has (`x-amz-tagging-count`; S3 leaves the header out
    /// when there are none, so 0 also stands for "not reported").
    pub tag_count: u32,
}

/// An object's tags, by name (names and values are Unicode).
pub type Tags = BTreeMap<String, String>;

/// How many tags S3 allows on one object.
pub const MAX_TAGS: usize = 10;

/// What an upload or a metadata rewrite sets on the new object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// `x-amz-meta-*` values, names without the prefix.
    pub user_metadata: HashMap<String, String>,
    /// Headers, storage class and encryption of the new object.
    pub props: Props,
    /// Tags of the new object (`x-amz-tagging`; none when empty). A CopyObject keeps
    /// the source's tags and ignores these.
    pub tags: Tags,
}

impl PutOptions {
    /// Everything `m`'s object carries, for a copy of it.
    pub fn from_meta(m: &ObjectMeta) -> Self {
        PutOptions {
            content_type: m.content_type.clone(),
            user_metadata: m.user_metadata.clone(),
            props: m.props.clone(),
            tags: Tags::new(),
        }
    }
}

/// One version (or delete marker) as ListObjectVersions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    pub key: String,
    /// `null` for an object written before versioning was enabled.
    pub version_id: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    pub is_latest: bool,
    pub delete_marker: bool,
}

/// One page of ListObjectVersions.
#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    /// Versions and delete markers, in any order.
    pub versions: Vec<VersionSummary>,
    /// The key and version id markers of the next page; `None` at the end.
    pub next: Option<(String, String)>,
}

/// A multipart upload in progress, as ListMultipartUploads reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: SystemTime,
}

/// One finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based.
    pub number: i32,
    pub etag: String,
}

/// The operations the filesystem needs from an S3-like store.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// One page of keys under `prefix`, grouped by `delimiter` when given.
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage>;

    /// HeadObject.
    async fn head(&self, key: &str) -> StoreResult<ObjectMeta>;

    /// GetObject of `range` (end exclusive). With `if_match`, the request fails with
    /// `PreconditionFailed` when the object's ETag differs.
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes>;

    /// PutObject: the whole object in one request. Returns the new ETag.
    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String>;

    /// CreateMultipartUpload. Returns the upload id.
    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String>;

    /// UploadPart. Returns the part's ETag.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String>;

    /// UploadPartCopy: part `number` is `range` (end exclusive) of `source`, which must
    /// still have ETag `source_etag` (else `PreconditionFailed`). Returns the part's ETag.
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> StoreResult<String>;

    /// CompleteMultipartUpload with `parts` in order. Returns the object's ETag.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String>;

    /// AbortMultipartUpload.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()>;

    /// One page of ListObjectVersions under `prefix` (no delimiter), from `marker`
    /// (key and version id markers of the previous page).
    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<VersionPage>;

    /// HeadObject of one version.
    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta>;

    /// GetObject of `range` (end exclusive) of one version.
    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes>;

    /// ListMultipartUploads: every upload under `prefix` neither completed nor aborted
    /// (all pages).
    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>>;

    /// CopyObject (single request, sources up to 5 GiB). With `opts`, the copy gets
    /// these metadata (MetadataDirective REPLACE); without, it keeps the source's.
    /// With `source_etag`, fails with `PreconditionFailed` if the source changed.
    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String>;

    /// DeleteObject. Deleting a missing key succeeds, as in S3.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// DeleteObjects of 1 to [`MAX_DELETE_KEYS`] keys in one request (quiet: only the
    /// failures come back). Returns the keys that were not deleted, with S3's reason; a
    /// missing key is deleted, as in S3. An error is the request's own (refused,
    /// unreachable): then nothing is known of the keys.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>>;

    /// GetObjectTagging: the object's tags.
    async fn get_tags(&self, key: &str) -> StoreResult<Tags>;

    /// PutObjectTagging with the whole new set, or DeleteObjectTagging when `tags` is
    /// empty (some servers refuse an empty set).
    async fn set_tags(&self, key: &str, tags: &Tags) -> StoreResult<()>;

    /// RestoreObject: a temporary copy of an archived object for `days`, at `tier`
    /// (`Standard`, `Bulk`, `Expedited`; the store's default when `None`).
    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()>;

    /// A URL that lets anyone holding it GET (or PUT) `key` for `expires` from now,
    /// signed locally: no request is sent.
    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires: std::time::Duration,
    ) -> StoreResult<String>;
}

/// The most keys one DeleteObjects takes.
pub const MAX_DELETE_KEYS: usize = 1000;

/// A key a DeleteObjects did not delete, as the response's `Error` entry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub key: String,
    /// S3's code (`AccessDenied`, `InternalError`...).
    pub code: String,
    pub message: String,
}

/// What a presigned URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    Get,
    Put,
}

/// A shared store is a store: the bucket stores of an all-buckets mount, and stores
/// that tests keep a handle on.
#[async_trait]
impl<S: ObjectStore + ?Sized> ObjectStore for Arc<S> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        (**self)
            .list(prefix, delimiter, continuation, max_keys)
            .await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        (**self).head(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        (**self).get_range(key, range, if_match).await
    }
    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        (**self).put(key, body, opts).await
    }
    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        (**self).create_multipart(key, opts).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        (**self).upload_part(key, upload_id, number, body).await
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
        (**self)
            .upload_part_copy(key, upload_id, number, source, source_etag, range)
            .await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        (**self).complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        (**self).abort_multipart(key, upload_id).await
    }
    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<VersionPage> {
        (**self).list_versions(prefix, marker).await
    }
    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        (**self).head_version(key, version_id).await
    }
    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        (**self).get_version_range(key, version_id, range).await
    }
    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
        (**self).list_uploads(prefix).await
    }
    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        (**self).copy(source, dest, source_etag, opts).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        (**self).delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>> {
        (**self).delete_many(keys).await
    }
    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        (**self).get_tags(key).await
    }
    async fn set_tags(&self, key: &str, tags: &Tags) -> StoreResult<()> {
        (**self).set_tags(key, tags).await
    }
    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
        (**self).restore(key, days, tier).await
    }
    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires: std::time::Duration,
    ) -> StoreResult<String> {
        (**self).presign(key, method, expires).await
    }
}
