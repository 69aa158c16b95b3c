//! The whole account as one tree (`--all-buckets`, target `s3://`): a store whose keys
//! are `BUCKET/KEY`. The first segment of a key picks the bucket, whose own store (a
//! client signed for the bucket's region, found once per bucket) serves the rest:
//!
//! - a listing of the root (prefix without `/`) is ListBuckets, each bucket a common
//!   prefix `BUCKET/`; a listing of `BUCKET/...` is the bucket's, its keys given back
//!   with `BUCKET/` in front, and a bucket that does not exist lists empty;
//! - `BUCKET/` is the bucket's "marker": a HEAD of it answers from what ListBuckets
//!   said, a PUT of it is CreateBucket (with the mount's region as location
//!   constraint), a DELETE of it is DeleteBucket (`NotEmpty` while it holds objects);
//! - objects cannot live at the root, and a copy between two buckets is refused
//!   (`CrossBucket`), so a rename falls back to a copy by the program (EXDEV).
//!
//! Bucket names follow S3's rules ([`valid_bucket_name`]): a name that cannot be a
//! bucket is answered as missing without a request, and refused for CreateBucket
//! (`InvalidName`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{
    CompletedPart, DeleteFailure, ListPage, ObjectMeta, ObjectStore, ObjectSummary, PendingUpload,
    PresignMethod, Props, PutOptions, StoreError, StoreErrorKind, StoreResult, Tags, VersionPage,
};

/// One bucket as ListBuckets reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created: Option<SystemTime>,
}

/// What an account offers besides its buckets' objects.
#[async_trait]
pub trait Buckets: Send + Sync + 'static {
    /// ListBuckets (all pages).
    async fn list_buckets(&self) -> StoreResult<Vec<BucketInfo>>;
    /// CreateBucket. A bucket this account already owns is not an error.
    async fn create_bucket(&self, name: &str) -> StoreResult<()>;
    /// DeleteBucket: `NotEmpty` while it holds objects (or versions).
    async fn delete_bucket(&self, name: &str) -> StoreResult<()>;
    /// The store of one bucket (called once per bucket and kept; no request needed
    /// beyond finding its region).
    async fn open(&self, name: &str) -> StoreResult<Arc<dyn ObjectStore>>;
}

/// Whether `name` can be the name of a new bucket, by S3's rules: 3 to 63 characters
/// of lower-case letters, digits, `.` and `-`, starting and ending with a letter or a
/// digit, no `..`, not shaped like an IP address, none of the reserved prefixes and
/// suffixes.
pub fn valid_bucket_name(name: &str) -> Result<(), String> {
    let why = if !(3..=63).contains(&name.len()) {
        "a bucket name has 3 to 63 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        "a bucket name has only lower-case letters, digits, '.' and '-'"
    } else if !name.as_bytes()[0].is_ascii_alphanumeric()
        || !name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
    {
        "a bucket name starts and ends with a letter or a digit"
    } else if name.contains("..") || name.contains(".-") || name.contains("-.") {
        "a bucket name has no '..', '.-' or '-.'"
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        "a bucket name is not an IP address"
    } else if name.starts_with("xn--") || name.starts_with("sthree-") {
        "a bucket name does not start with xn-- or sthree-"
    } else if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        "a bucket name does not end with -s3alias or --ol-s3"
    } else {
        return Ok(());
    };
    Err(why.to_string())
}

/// Whether an existing bucket could be called `name`: the rules for new buckets, or
/// the looser ones of old us-east-1 buckets (up to 255 characters, also upper case and
/// `_`).
fn could_be_bucket(name: &str) -> bool {
    valid_bucket_name(name).is_ok()
        || (!name.is_empty()
            && name.len() <= 255
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && name.as_bytes()[0].is_ascii_alphanumeric())
}

/// A key split into its bucket and the key in it; `None` for a key at the root.
fn split(key: &str) -> Option<(&str, &str)> {
    key.split_once('/')
}

fn at_root(key: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::AccessDenied,
        format!("{key}: the root of an all-buckets mount holds only buckets"),
    )
}

fn cross(source: &str, dest: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::CrossBucket,
        format!("copy of {source} to {dest}: not within one bucket"),
    )
}

/// The whole account through [`Buckets`].
pub struct AccountStore<B> {
    buckets: B,
    /// Stores of the buckets used so far.
    open: tokio::sync::Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// What the last ListBuckets said (and buckets found since), with creation dates.
    known: Mutex<BTreeMap<String, Option<SystemTime>>>,
}

impl<B: Buckets> AccountStore<B> {
    pub fn new(buckets: B) -> Self {
        AccountStore {
            buckets,
            open: tokio::sync::Mutex::new(HashMap::new()),
            known: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn buckets(&self) -> &B {
        &self.buckets
    }

    /// The store of `bucket`, opened on first use.
    async fn bucket(&self, bucket: &str) -> StoreResult<Arc<dyn ObjectStore>> {
        let mut open = self.open.lock().await;
        if let Some(s) = open.get(bucket) {
            return Ok(s.clone());
        }
        let s = self.buckets.open(bucket).await?;
        open.insert(bucket.to_string(), s.clone());
        Ok(s)
    }

    /// ListBuckets, remembered for HEADs of buckets.
    async fn list_buckets(&self) -> StoreResult<Vec<BucketInfo>> {
        let mut all = self.buckets.list_buckets().await?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let mut known = self.known.lock();
        known.clear();
        for b in &all {
            known.insert(b.name.clone(), b.created);
        }
        Ok(all)
    }

    /// Whether `bucket` exists and can be listed: one listing of at most one key.
    async fn exists(&self, bucket: &str) -> StoreResult<bool> {
        if !could_be_bucket(bucket) {
            return Ok(false);
        }
        let s = self.bucket(bucket).await?;
        match s.list("", Some("/"), None, Some(1)).await {
            Ok(_) => {
                self.known.lock().entry(bucket.to_string()).or_insert(None);
                Ok(true)
            }
            Err(e) if gone(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The root's listing: the buckets whose `NAME/` starts with `prefix`. A bucket
    /// ListBuckets does not show (another account's, shared with this one) is found
    /// when asked for by its exact name.
    async fn list_root(&self, prefix: &str) -> StoreResult<ListPage> {
        let all = self.list_buckets().await?;
        let mut prefixes: Vec<String> = all
            .iter()
            .map(|b| format!("{}/", b.name))
            .filter(|p| p.starts_with(prefix))
            .collect();
        if !prefix.is_empty()
            && !all.iter().any(|b| b.name == prefix)
            && self.exists(prefix).await?
        {
            prefixes.push(format!("{prefix}/"));
            prefixes.sort();
        }
        Ok(ListPage {
            objects: Vec::new(),
            prefixes,
            next_token: None,
        })
    }

    fn marker_meta(&self, bucket: &str) -> Option<ObjectMeta> {
        let known = self.known.lock();
        let created = known.get(bucket)?;
        Some(ObjectMeta {
            size: 0,
            etag: String::new(),
            last_modified: created.unwrap_or(SystemTime::UNIX_EPOCH),
            props: Props::default(),
            content_type: Some("application/x-directory".into()),
            version_id: None,
            user_metadata: HashMap::new(),
            restore: None,
            tag_count: 0,
        })
    }

    /// The bucket's store and the key in it, for an object (not the root, not a
    /// bucket itself).
    async fn object(&self, key: &str) -> StoreResult<(Arc<dyn ObjectStore>, String)> {
        match split(key) {
            Some((b, rest)) if !rest.is_empty() && could_be_bucket(b) => {
                Ok((self.bucket(b).await?, rest.to_string()))
            }
            Some((b, rest)) if !rest.is_empty() => {
                Err(StoreError::not_found(&format!("{b}/{rest}")))
            }
            _ => Err(at_root(key)),
        }
    }
}

/// A bucket missing (or deleted since): its listings are empty.
fn gone(e: &StoreError) -> bool {
    matches!(
        e.kind,
        StoreErrorKind::NoSuchBucket | StoreErrorKind::NotFound
    )
}

fn with_bucket(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

#[async_trait]
impl<B: Buckets> ObjectStore for AccountStore<B> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        let Some((bucket, rest)) = split(prefix) else {
            return self.list_root(prefix).await;
        };
        if !could_be_bucket(bucket) {
            return Ok(ListPage::default());
        }
        let s = self.bucket(bucket).await?;
        let first = continuation.is_none();
        let mut page = match s.list(rest, delimiter, continuation, max_keys).await {
            Ok(p) => p,
            Err(e) if gone(&e) => return Ok(ListPage::default()),
            Err(e) => return Err(e),
        };
        for o in &mut page.objects {
            o.key = with_bucket(bucket, &o.key);
        }
        for p in &mut page.prefixes {
            *p = with_bucket(bucket, p);
        }
        if first && rest.is_empty() {
            // The bucket is there: it shows as a directory with a marker.
            let created = {
                let mut known = self.known.lock();
                *known.entry(bucket.to_string()).or_insert(None)
            };
            page.objects.insert(
                0,
                ObjectSummary {
                    key: format!("{bucket}/"),
                    size: 0,
                    etag: String::new(),
                    last_modified: created.unwrap_or(SystemTime::UNIX_EPOCH),
                    storage_class: None,
                },
            );
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        match split(key) {
            None => Err(StoreError::not_found(key)),
            Some((b, "")) => {
                if let Some(m) = self.marker_meta(b) {
                    return Ok(m);
                }
                if self.exists(b).await? {
                    if let Some(m) = self.marker_meta(b) {
                        return Ok(m);
                    }
                }
                Err(StoreError::not_found(key))
            }
            Some((b, _)) if !could_be_bucket(b) => Err(StoreError::not_found(key)),
            Some(_) => {
                let (s, k) = self.object(key).await?;
                s.head(&k).await
            }
        }
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        let (s, k) = self.object(key).await?;
        s.get_range(&k, range, if_match).await
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        match split(key) {
            Some((b, "")) => {
                if self.known.lock().contains_key(b) {
                    // A directory's metadata (chmod, utimes) has nowhere to go on a
                    // bucket: it stays in this mount's memory.
                    return Ok(String::new());
                }
                valid_bucket_name(b).map_err(|why| {
                    StoreError::new(
                        StoreErrorKind::InvalidName,
                        format!("create bucket {b}: {why}"),
                    )
                })?;
                self.buckets.create_bucket(b).await?;
                // A store opened while it did not exist (the lookup before a mkdir) may
                // be signed for the wrong region: the next use opens it again.
                self.open.lock().await.remove(b);
                self.known
                    .lock()
                    .insert(b.to_string(), Some(SystemTime::now()));
                Ok(String::new())
            }
            _ => {
                let (s, k) = self.object(key).await?;
                s.put(&k, body, opts).await
            }
        }
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let (s, k) = self.object(key).await?;
        s.create_multipart(&k, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        let (s, k) = self.object(key).await?;
        s.upload_part(&k, upload_id, number, body).await
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
        let (Some((b, _)), Some((sb, src))) = (split(key), split(source)) else {
            return Err(cross(source, key));
        };
        if b != sb {
            return Err(cross(source, key));
        }
        let (s, k) = self.object(key).await?;
        s.upload_part_copy(&k, upload_id, number, src, source_etag, range)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        let (s, k) = self.object(key).await?;
        s.complete_multipart(&k, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let (s, k) = self.object(key).await?;
        s.abort_multipart(&k, upload_id).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<VersionPage> {
        let Some((bucket, rest)) = split(prefix) else {
            // Versions live in buckets; the root has none of its own.
            return Ok(VersionPage::default());
        };
        if !could_be_bucket(bucket) {
            return Ok(VersionPage::default());
        }
        let s = self.bucket(bucket).await?;
        let marker = marker.map(|(k, v)| {
            (
                k.strip_prefix(&format!("{bucket}/"))
                    .unwrap_or(&k)
                    .to_string(),
                v,
            )
        });
        let mut page = match s.list_versions(rest, marker).await {
            Ok(p) => p,
            Err(e) if gone(&e) => return Ok(VersionPage::default()),
            Err(e) => return Err(e),
        };
        for v in &mut page.versions {
            v.key = with_bucket(bucket, &v.key);
        }
        if let Some((k, _)) = &mut page.next {
            *k = with_bucket(bucket, k);
        }
        Ok(page)
    }

    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        let (s, k) = self.object(key).await?;
        s.head_version(&k, version_id).await
    }

    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        let (s, k) = self.object(key).await?;
        s.get_version_range(&k, version_id, range).await
    }

    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
        let (names, rest): (Vec<String>, &str) = match split(prefix) {
            Some((b, rest)) => (vec![b.to_string()], rest),
            None => (
                self.list_buckets()
                    .await?
                    .into_iter()
                    .map(|b| b.name)
                    .filter(|n| n.starts_with(prefix))
                    .collect(),
                "",
            ),
        };
        let mut out = Vec::new();
        for b in names.iter().filter(|b| could_be_bucket(b)) {
            let s = self.bucket(b).await?;
            match s.list_uploads(rest).await {
                Ok(ups) => out.extend(ups.into_iter().map(|mut u| {
                    u.key = with_bucket(b, &u.key);
                    u
                })),
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        match (split(source), split(dest)) {
            // A bucket's own metadata rewritten (chmod of the directory): see `put`.
            (Some((sb, "")), Some((db, ""))) if sb == db => Ok(String::new()),
            (Some((sb, src)), Some((db, _))) if sb == db && !src.is_empty() => {
                let (s, k) = self.object(dest).await?;
                s.copy(src, &k, source_etag, opts).await
            }
            _ => Err(cross(source, dest)),
        }
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        match split(key) {
            None => Ok(()),
            Some((b, "")) => {
                if !could_be_bucket(b) {
                    return Ok(());
                }
                match self.buckets.delete_bucket(b).await {
                    Ok(()) => {}
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
                self.known.lock().remove(b);
                self.open.lock().await.remove(b);
                Ok(())
            }
            Some((b, _)) if !could_be_bucket(b) => Ok(()),
            Some(_) => {
                let (s, k) = self.object(key).await?;
                s.delete(&k).await
            }
        }
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>> {
        let mut by_bucket: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut buckets = Vec::new();
        for key in keys {
            match split(key) {
                Some((_, "")) => buckets.push(key.clone()),
                Some((b, rest)) if could_be_bucket(b) => {
                    by_bucket.entry(b).or_default().push(rest.to_string())
                }
                _ => {}
            }
        }
        let mut failed = Vec::new();
        for (b, keys) in by_bucket {
            let s = self.bucket(b).await?;
            match s.delete_many(&keys).await {
                Ok(f) => failed.extend(f.into_iter().map(|mut f| {
                    f.key = with_bucket(b, &f.key);
                    f
                })),
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        // Buckets last: they must be empty by then.
        for key in buckets {
            if let Err(e) = self.delete(&key).await {
                failed.push(DeleteFailure {
                    code: match e.kind {
                        StoreErrorKind::NotEmpty => "BucketNotEmpty".into(),
                        StoreErrorKind::AccessDenied => "AccessDenied".into(),
                        _ => "DeleteBucket".into(),
                    },
                    message: e.message,
                    key,
                });
            }
        }
        Ok(failed)
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        let (s, k) = self.object(key).await?;
        s.get_tags(&k).await
    }

    async fn set_tags(&self, key: &str, tags: &Tags) -> StoreResult<()> {
        let (s, k) = self.object(key).await?;
        s.set_tags(&k, tags).await
    }

    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
        let (s, k) = self.object(key).await?;
        s.restore(&k, days, tier).await
    }

    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires: std::time::Duration,
    ) -> StoreResult<String> {
        let (s, k) = self.object(key).await?;
        s.presign(&k, method, expires).await
    }
}
