//! Object versions as files: a store wrapper that shows the filesystem core either
//!
//! - the bucket as it was at a past time (`--version-at`): listings come from
//!   ListObjectVersions (the newest version of each key at that time; a delete
//!   marker hides the key), and HEADs and GETs ask for that version id; or
//! - beside the live bucket, a read-only tree of every file's versions under a hidden
//!   directory (`--versions-dir`, default `.versions`): `.versions/PATH/` is a
//!   directory holding one file per version of `PATH`, named
//!   `YYYY-MM-DDTHH:MM:SSZ_VERSIONID` (its LastModified, then its version id, with `%`
//!   and `/` written `%25` and `%2F`), and the subdirectories of `PATH/` mirrored.
//!
//! The core asks for keys as usual; this wrapper maps them. Every write under the
//! versions directory, and every write at all in a past-time view, is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{
    CompletedPart, ListPage, ObjectMeta, ObjectStore, ObjectSummary, PendingUpload, PresignMethod,
    PutOptions, StoreError, StoreErrorKind, StoreResult, Tags, VersionPage, VersionSummary,
};

/// What the view shows.
#[derive(Debug, Clone)]
pub enum View {
    /// The bucket at this time, read-only.
    At(SystemTime),
    /// The live bucket, and under `dir` (a full key prefix ending in `/`, such as
    /// `root/.versions/`) the versions of what is under `root` (a prefix, maybe empty).
    VersionsDir { root: String, dir: String },
}

/// A store seen through a [`View`].
pub struct VersionedStore<S> {
    inner: S,
    view: View,
    /// `At` views: the version of each key at the time, for the prefixes listed whole.
    snapshot: Mutex<Snapshot>,
}

#[derive(Default)]
struct Snapshot {
    /// Prefixes whose every key is in `keys`.
    covered: BTreeSet<String>,
    keys: BTreeMap<String, VersionSummary>,
}

impl Snapshot {
    fn covers(&self, key: &str) -> bool {
        self.covered.iter().any(|p| key.starts_with(p.as_str()))
    }
}

fn refused(key: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::AccessDenied,
        format!("{key}: versions are read-only"),
    )
}

/// The file name of a version.
pub fn version_name(v: &VersionSummary) -> String {
    let t = crate::fs::attr::rfc3339(v.last_modified);
    let id = v.version_id.replace('%', "%25").replace('/', "%2F");
    format!("{t}_{id}")
}

/// The version id in a version's file name.
pub fn parse_version_name(name: &str) -> Option<String> {
    let (t, id) = name.split_once("Z_")?;
    if t.len() != 19 || id.is_empty() {
        return None;
    }
    Some(id.replace("%2F", "/").replace("%25", "%"))
}

/// The newest version of each key at `at`, from `versions` (any order); keys whose
/// newest version then is a delete marker are left out.
pub fn at_time(versions: &[VersionSummary], at: SystemTime) -> BTreeMap<String, VersionSummary> {
    let mut best: BTreeMap<String, &VersionSummary> = BTreeMap::new();
    for v in versions.iter().filter(|v| v.last_modified <= at) {
        match best.get(&v.key) {
            // Listings give each key's versions newest first: on a tie, the first.
            Some(b) if b.last_modified >= v.last_modified => {}
            _ => {
                best.insert(v.key.clone(), v);
            }
        }
    }
    best.into_iter()
        .filter(|(_, v)| !v.delete_marker)
        .map(|(k, v)| (k, v.clone()))
        .collect()
}

fn summary(key: String, v: &VersionSummary) -> ObjectSummary {
    ObjectSummary {
        key,
        size: v.size,
        etag: v.etag.clone(),
        last_modified: v.last_modified,
        storage_class: None,
    }
}

impl<S: ObjectStore> VersionedStore<S> {
    pub fn new(inner: S, view: View) -> Self {
        VersionedStore {
            inner,
            view,
            snapshot: Mutex::new(Snapshot::default()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Every version under `prefix` (all pages).
    async fn all_versions(&self, prefix: &str) -> StoreResult<Vec<VersionSummary>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let VersionPage { versions, next } = self.inner.list_versions(prefix, marker).await?;
            out.extend(versions);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    /// The versions of exactly `key`, newest first.
    async fn versions_of(&self, key: &str) -> StoreResult<Vec<VersionSummary>> {
        let mut v: Vec<VersionSummary> = self
            .all_versions(key)
            .await?
            .into_iter()
            .filter(|v| v.key == key && !v.delete_marker)
            .collect();
        v.sort_by_key(|v| std::cmp::Reverse(v.last_modified));
        Ok(v)
    }

    /// `At` view: the version of `key` at the time.
    async fn version_at(&self, key: &str, at: SystemTime) -> StoreResult<VersionSummary> {
        {
            let s = self.snapshot.lock();
            if s.covers(key) {
                return s
                    .keys
                    .get(key)
                    .cloned()
                    .ok_or_else(|| StoreError::not_found(key));
            }
        }
        let all: Vec<VersionSummary> = self
            .all_versions(key)
            .await?
            .into_iter()
            .filter(|v| v.key == key)
            .collect();
        at_time(&all, at)
            .remove(key)
            .ok_or_else(|| StoreError::not_found(key))
    }

    /// `VersionsDir` view: `key` under the versions directory as (the real key of the
    /// file, the version id), if it names a version.
    fn version_key(&self, key: &str) -> Option<(String, String)> {
        let View::VersionsDir { root, dir } = &self.view else {
            return None;
        };
        let rel = key.strip_prefix(dir.as_str())?;
        let (file, name) = rel.rsplit_once('/')?;
        let id = parse_version_name(name)?;
        Some((format!("{root}{file}"), id))
    }

    fn under_versions_dir(&self, key: &str) -> bool {
        matches!(&self.view, View::VersionsDir { dir, .. } if key.starts_with(dir.as_str()))
    }

    fn writable(&self, key: &str) -> StoreResult<()> {
        match &self.view {
            View::At(_) => Err(refused(key)),
            View::VersionsDir { .. } if self.under_versions_dir(key) => Err(refused(key)),
            View::VersionsDir { .. } => Ok(()),
        }
    }

    /// `At` view: a listing from the snapshot.
    async fn list_at(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        at: SystemTime,
    ) -> StoreResult<ListPage> {
        let dir = match delimiter {
            Some(d) => prefix.rfind(d).map_or("", |i| &prefix[..i + d.len()]),
            None => prefix,
        }
        .to_string();
        let covered = self.snapshot.lock().covers(&dir);
        if !covered {
            let all = self.all_versions(&dir).await?;
            let keys = at_time(&all, at);
            let mut s = self.snapshot.lock();
            s.keys.extend(keys);
            s.covered.insert(dir);
        }
        let s = self.snapshot.lock();
        let mut page = ListPage::default();
        let mut prefixes = BTreeSet::new();
        for (k, v) in s
            .keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            let rest = &k[prefix.len()..];
            match delimiter.and_then(|d| rest.find(d).map(|i| i + d.len())) {
                Some(end) => {
                    prefixes.insert(format!("{prefix}{}", &rest[..end]));
                }
                None => page.objects.push(summary(k.clone(), v)),
            }
        }
        page.prefixes = prefixes.into_iter().collect();
        Ok(page)
    }

    /// `VersionsDir` view: a listing under the versions directory.
    async fn list_versions_dir(
        &self,
        prefix: &str,
        root: &str,
        vdir: &str,
    ) -> StoreResult<ListPage> {
        let rel = &prefix[vdir.len()..];
        let (reld, frag) = match rel.rfind('/') {
            Some(i) => (&rel[..=i], &rel[i + 1..]),
            None => ("", rel),
        };
        let mut prefixes = BTreeSet::new();
        let mut objects = Vec::new();
        // The files and directories of the real directory, each a directory here.
        let real = format!("{root}{reld}{frag}");
        let real_dir = format!("{root}{reld}");
        let mut token = None;
        loop {
            let page = self.inner.list(&real, Some("/"), token, None).await?;
            for o in &page.objects {
                let name = &o.key[real_dir.len()..];
                if !name.is_empty() && !name.ends_with('/') {
                    prefixes.insert(format!("{vdir}{reld}{name}/"));
                }
            }
            for p in &page.prefixes {
                prefixes.insert(format!("{vdir}{}", &p[root.len()..]));
            }
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        // A name looked up that is no file now (deleted): its versions, if any, are.
        let named = format!("{vdir}{reld}{frag}/");
        if !frag.is_empty()
            && !prefixes.contains(&named)
            && !self.versions_of(&real).await?.is_empty()
        {
            prefixes.insert(named);
        }
        // The versions of the file this directory stands for.
        if let Some(file) = reld.strip_suffix('/').filter(|f| !f.is_empty()) {
            for v in self.versions_of(&format!("{root}{file}")).await? {
                let name = version_name(&v);
                if name.starts_with(frag) {
                    objects.push(summary(format!("{vdir}{reld}{name}"), &v));
                }
            }
            objects.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(ListPage {
            objects,
            prefixes: prefixes.into_iter().collect(),
            next_token: None,
        })
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for VersionedStore<S> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        match &self.view {
            View::At(t) => {
                if continuation.is_some() {
                    return Ok(ListPage::default());
                }
                self.list_at(prefix, delimiter, *t).await
            }
            View::VersionsDir { root, dir } => {
                if prefix.starts_with(dir.as_str()) {
                    if continuation.is_some() {
                        return Ok(ListPage::default());
                    }
                    return self.list_versions_dir(prefix, root, dir).await;
                }
                let first = continuation.is_none();
                let mut page = self
                    .inner
                    .list(prefix, delimiter, continuation, max_keys)
                    .await?;
                // Keys of the bucket under the versions directory's name are shadowed
                // by it (the mount logs so); the core hides it from the root's readdir.
                page.prefixes.retain(|p| p != dir);
                page.objects.retain(|o| !o.key.starts_with(dir.as_str()));
                let here = prefix.len() >= root.len() && dir.starts_with(prefix);
                if here && first && delimiter == Some("/") {
                    let at = page.prefixes.partition_point(|p| p < dir);
                    page.prefixes.insert(at, dir.clone());
                }
                Ok(page)
            }
        }
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        match &self.view {
            View::At(t) => {
                let v = self.version_at(key, *t).await?;
                self.inner.head_version(key, &v.version_id).await
            }
            View::VersionsDir { .. } => {
                if let Some((real, id)) = self.version_key(key) {
                    return self.inner.head_version(&real, &id).await;
                }
                if self.under_versions_dir(key) {
                    return Err(StoreError::not_found(key));
                }
                self.inner.head(key).await
            }
        }
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        match &self.view {
            View::At(t) => {
                let v = self.version_at(key, *t).await?;
                self.inner
                    .get_version_range(key, &v.version_id, range)
                    .await
            }
            View::VersionsDir { .. } => {
                if let Some((real, id)) = self.version_key(key) {
                    return self.inner.get_version_range(&real, &id, range).await;
                }
                if self.under_versions_dir(key) {
                    return Err(StoreError::not_found(key));
                }
                self.inner.get_range(key, range, if_match).await
            }
        }
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        self.writable(key)?;
        self.inner.put(key, body, opts).await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.writable(key)?;
        self.inner.create_multipart(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
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
        self.writable(key)?;
        match self.version_key(source) {
            // A copy of a version goes through its bytes' real key only by id, which
            // UploadPartCopy here does not take: refuse, the kernel copies by hand.
            Some(_) => Err(refused(source)),
            None => {
                self.inner
                    .upload_part_copy(key, upload_id, number, source, source_etag, range)
                    .await
            }
        }
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<VersionPage> {
        self.inner.list_versions(prefix, marker).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        self.inner.head_version(key, version_id).await
    }

    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        self.inner.get_version_range(key, version_id, range).await
    }

    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
        self.inner.list_uploads(prefix).await
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        self.writable(dest)?;
        if self.version_key(source).is_some() || matches!(self.view, View::At(_)) {
            return Err(refused(source));
        }
        self.inner.copy(source, dest, source_etag, opts).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.writable(key)?;
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<super::DeleteFailure>> {
        if let Some(k) = keys.iter().find(|k| self.writable(k).is_err()) {
            return Err(refused(k));
        }
        self.inner.delete_many(keys).await
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        if self.under_versions_dir(key) || matches!(self.view, View::At(_)) {
            return Ok(Tags::new());
        }
        self.inner.get_tags(key).await
    }

    async fn set_tags(&self, key: &str, tags: &Tags) -> StoreResult<()> {
        self.writable(key)?;
        self.inner.set_tags(key, tags).await
    }

    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
        self.writable(key)?;
        self.inner.restore(key, days, tier).await
    }

    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires: Duration,
    ) -> StoreResult<String> {
        self.inner.presign(key, method, expires).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::time::UNIX_EPOCH;

    fn v(key: &str, id: &str, secs: u64, marker: bool) -> VersionSummary {
        VersionSummary {
            key: key.into(),
            version_id: id.into(),
            size: 1,
            etag: format!("\"{id}\""),
            last_modified: UNIX_EPOCH + Duration::from_secs(secs),
            is_latest: false,
            delete_marker: marker,
        }
    }

    #[test]
    fn the_newest_version_at_a_time_and_delete_markers_hide_keys() {
        let all = [
            v("a", "a2", 200, false),
            v("a", "a1", 100, false),
            v("b", "bm", 150, true),
            v("b", "b1", 50, false),
            v("c", "c1", 300, false),
        ];
        let at = |s| at_time(&all, UNIX_EPOCH + Duration::from_secs(s));
        let ids = |m: BTreeMap<String, VersionSummary>| {
            m.into_values().map(|v| v.version_id).collect::<Vec<_>>()
        };
        assert_eq!(ids(at(120)), ["a1", "b1"]);
        assert_eq!(ids(at(160)), ["a1"]);
        assert_eq!(ids(at(250)), ["a2"]);
        assert_eq!(ids(at(300)), ["a2", "c1"]);
        assert!(at(10).is_empty());
    }

    #[test]
    fn version_names_round_trip_and_sort_by_time() {
        let a = v("k", "x/y%z", 1_700_000_000, false);
        let n = version_name(&a);
        assert_eq!(n, "2023-11-14T22:13:20Z_x%2Fy%25z");
        assert_eq!(parse_version_name(&n).as_deref(), Some("x/y%z"));
        let later = version_name(&v("k", "a", 1_700_000_001, false));
        assert!(later > n);
        assert_eq!(parse_version_name("report.txt"), None);
        assert_eq!(parse_version_name("2023-11-14T22:13:20Z_"), None);
    }

    #[tokio::test]
    async fn the_versions_dir_mirrors_the_tree_and_refuses_writes() {
        let mem = MemoryStore::new();
        mem.put("d/f.txt", "x");
        mem.put("d/sub/g", "y");
        let s = VersionedStore::new(
            mem,
            View::VersionsDir {
                root: String::new(),
                dir: ".versions/".into(),
            },
        );
        let root = s.list("", Some("/"), None, None).await.unwrap();
        assert!(root.prefixes.contains(&".versions/".to_string()));
        let d = s.list(".versions/d/", Some("/"), None, None).await.unwrap();
        assert_eq!(d.prefixes, [".versions/d/f.txt/", ".versions/d/sub/"]);
        let f = s
            .list(".versions/d/f.txt/", Some("/"), None, None)
            .await
            .unwrap();
        assert_eq!(f.objects.len(), 1);
        let key = &f.objects[0].key;
        assert!(key.ends_with("Z_null"), "{key}");
        assert_eq!(&s.get_range(key, 0..1, None).await.unwrap()[..], b"x");
        assert_eq!(s.head(key).await.unwrap().size, 1);
        let e = s
            .put(".versions/d/x", Bytes::new(), &PutOptions::default())
            .await;
        assert_eq!(e.unwrap_err().kind, StoreErrorKind::AccessDenied);
        assert!(s.delete(key).await.is_err());
        // The live tree is the store's own.
        s.put("d/new", Bytes::from("n"), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(&s.get_range("d/new", 0..1, None).await.unwrap()[..], b"n");
    }
}
