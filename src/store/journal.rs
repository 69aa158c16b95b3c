//! The upload journal: a store wrapper that writes down every multipart upload it
//! starts, in a file of its own in the cache directory, before the upload exists and
//! again when it ends, so that uploads a killed daemon left behind are known as ours
//! afterwards (ListMultipartUploads returns no metadata to tell them apart).
//!
//! Each daemon holds an exclusive `flock` on its journal for its whole life; a journal
//! nobody holds belongs to a daemon that is gone. [`recover`] reads those, aborts their
//! open uploads under the mounted prefix that are old enough, and keeps the rest for a
//! later sweep. A start line is written before CreateMultipartUpload is sent: if the
//! daemon died before it learned the upload id, the upload is found by its key and
//! start time in ListMultipartUploads.
//!
//! A journal line is one JSON object: `{"start":N,"key":K,"at":MS}` (before the
//! create), `{"id":N,"upload":ID}` (after it), `{"end":N}` (completed or aborted),
//! `{"abandon":N}` (the abort failed: the next sweep retries it). Lines are written
//! without fsync: they survive a killed daemon, not a machine crash.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use super::{
    CompletedPart, ListPage, ObjectMeta, ObjectStore, PendingUpload, PresignMethod, PutOptions,
    StoreErrorKind, StoreResult, Tags,
};

/// How far an upload's initiation time (the server's clock) may be from the start line
/// (ours) and still be taken as the upload that line started.
const CLOCK_SLACK: Duration = Duration::from_secs(600);

/// The journal file name suffix.
const SUFFIX: &str = ".journal";

/// A journal file shrinks back to nothing once no upload is open and it holds more.
const COMPACT_AT: u64 = 1 << 20;

/// One upload of a journal, as far as its lines tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub at: SystemTime,
    pub upload_id: Option<String>,
    pub abandoned: bool,
}

struct Open {
    file: File,
    /// Uploads started and not ended, by sequence number.
    open: BTreeMap<u64, Entry>,
    /// upload id -> sequence number.
    ids: HashMap<String, u64>,
}

/// A store whose multipart uploads are written down in a journal (see the module doc).
pub struct JournalingStore<S> {
    inner: S,
    path: PathBuf,
    state: Mutex<Open>,
    next: AtomicU64,
}

/// The line written before an upload is created.
fn start_line(n: u64, key: &str, at: SystemTime) -> serde_json::Value {
    serde_json::json!({ "start": n, "key": key, "at": millis(at) })
}

/// The line that gives upload `n` its id.
fn id_line(n: u64, upload_id: &str) -> serde_json::Value {
    serde_json::json!({ "id": n, "upload": upload_id })
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Take the exclusive lock of `f` without waiting; false if someone holds it.
fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a descriptor this function's caller owns.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl<S: ObjectStore> JournalingStore<S> {
    /// A new journal in `dir` (created if missing), locked for this process's life.
    pub fn new(inner: S, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("{}-{nanos}{SUFFIX}", std::process::id()));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        if !try_lock(&file) {
            return Err(std::io::Error::other(format!(
                "{}: cannot lock the new journal",
                path.display()
            )));
        }
        Ok(JournalingStore {
            inner,
            path,
            state: Mutex::new(Open {
                file,
                open: BTreeMap::new(),
                ids: HashMap::new(),
            }),
            next: AtomicU64::new(1),
        })
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// This journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Uploads started through this store and not ended, oldest first.
    pub fn open_uploads(&self) -> Vec<Entry> {
        self.state.lock().open.values().cloned().collect()
    }

    fn line(st: &mut Open, v: serde_json::Value, key: &str) {
        let mut s = v.to_string();
        s.push('\n');
        if let Err(e) = st.file.write_all(s.as_bytes()) {
            warn!(key, "cannot write the upload journal: {e}");
        }
    }

    fn ended(&self, upload_id: &str, key: &str) {
        let mut st = self.state.lock();
        if let Some(n) = st.ids.get(upload_id).copied() {
            Self::end(&mut st, n, key);
        }
    }

    /// Upload `n` is over: its end line, and the journal emptied once nothing is open.
    fn end(st: &mut Open, n: u64, key: &str) {
        if let Some(id) = st.open.remove(&n).and_then(|e| e.upload_id) {
            st.ids.remove(&id);
        }
        Self::line(st, serde_json::json!({ "end": n }), key);
        if st.open.is_empty() && st.file.metadata().is_ok_and(|m| m.len() > COMPACT_AT) {
            if let Err(e) = st.file.set_len(0) {
                warn!("cannot empty the upload journal: {e}");
            }
        }
    }
}

impl<S> Drop for JournalingStore<S> {
    /// A journal with nothing open is of no more use; one with open uploads stays for
    /// the next mount's sweep.
    fn drop(&mut self) {
        if self.state.get_mut().open.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for JournalingStore<S> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        self.inner
            .list(prefix, delimiter, continuation, max_keys)
            .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        self.inner.get_range(key, range, if_match).await
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        self.inner.put(key, body, opts).await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let at = SystemTime::now();
        {
            let mut st = self.state.lock();
            Self::line(&mut st, start_line(n, key, at), key);
            st.open.insert(
                n,
                Entry {
                    key: key.to_string(),
                    at,
                    upload_id: None,
                    abandoned: false,
                },
            );
        }
        let r = self.inner.create_multipart(key, opts).await;
        let mut st = self.state.lock();
        match &r {
            Ok(id) => {
                Self::line(&mut st, id_line(n, id), key);
                if let Some(e) = st.open.get_mut(&n) {
                    e.upload_id = Some(id.clone());
                }
                st.ids.insert(id.clone(), n);
            }
            // The request may have created an upload all the same (an answer lost on
            // the way): left open, for a sweep to look it up by key and time.
            Err(_) => {
                Self::line(&mut st, serde_json::json!({ "abandon": n }), key);
                if let Some(e) = st.open.get_mut(&n) {
                    e.abandoned = true;
                }
            }
        }
        r
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
        self.inner
            .upload_part_copy(key, upload_id, number, source, source_etag, range)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        let r = self.inner.complete_multipart(key, upload_id, parts).await;
        if r.is_ok() {
            self.ended(upload_id, key);
        }
        r
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let r = self.inner.abort_multipart(key, upload_id).await;
        match &r {
            Ok(()) => self.ended(upload_id, key),
            Err(e) if e.kind == StoreErrorKind::NotFound => self.ended(upload_id, key),
            Err(_) => {
                let mut st = self.state.lock();
                if let Some(n) = st.ids.get(upload_id).copied() {
                    Self::line(&mut st, serde_json::json!({ "abandon": n }), key);
                    if let Some(e) = st.open.get_mut(&n) {
                        e.abandoned = true;
                    }
                }
            }
        }
        r
    }

    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<super::VersionPage> {
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
        self.inner.copy(source, dest, source_etag, opts).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<super::DeleteFailure>> {
        self.inner.delete_many(keys).await
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        self.inner.get_tags(key).await
    }

    async fn set_tags(&self, key: &str, tags: &Tags) -> StoreResult<()> {
        self.inner.set_tags(key, tags).await
    }

    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
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

/// The uploads a journal's lines leave open.
pub fn parse(text: &str) -> BTreeMap<u64, Entry> {
    let mut open = BTreeMap::new();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            // A line cut off by the kill: nothing after it was written.
            continue;
        };
        let num = |k: &str| v.get(k).and_then(|x| x.as_u64());
        if let (Some(n), Some(key), Some(at)) = (
            num("start"),
            v.get("key").and_then(|x| x.as_str()),
            num("at"),
        ) {
            open.insert(
                n,
                Entry {
                    key: key.to_string(),
                    at: UNIX_EPOCH + Duration::from_millis(at),
                    upload_id: None,
                    abandoned: false,
                },
            );
        } else if let (Some(n), Some(id)) = (num("id"), v.get("upload").and_then(|x| x.as_str())) {
            if let Some(e) = open.get_mut(&n) {
                e.upload_id = Some(id.to_string());
            }
        } else if let Some(n) = num("end") {
            open.remove(&n);
        } else if let Some(n) = num("abandon") {
            if let Some(e) = open.get_mut(&n) {
                e.abandoned = true;
            }
        }
    }
    open
}

/// What a [`recover`] pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Uploads aborted.
    pub aborted: usize,
    /// Uploads of gone daemons kept for a later pass: too young, outside the prefix,
    /// or their abort failed.
    pub kept: usize,
}

/// Abort what `entries` name (each under `prefix`, started before `cutoff`) and return
/// the ones left, with the count aborted.
async fn abort_entries<S: ObjectStore>(
    store: &S,
    entries: BTreeMap<u64, Entry>,
    prefix: &str,
    cutoff: SystemTime,
    known: &std::collections::HashSet<String>,
) -> (BTreeMap<u64, Entry>, usize) {
    let mut left = BTreeMap::new();
    let mut aborted = 0;
    for (n, e) in entries {
        if !e.key.starts_with(prefix) || e.at > cutoff {
            left.insert(n, e);
            continue;
        }
        let ids: Vec<String> = match &e.upload_id {
            Some(id) => vec![id.clone()],
            None => match store.list_uploads(&e.key).await {
                // Started by this line: the same key, initiated about then, and not an
                // upload some live journal knows.
                Ok(ups) => ups
                    .into_iter()
                    .filter(|u| u.key == e.key && !known.contains(&u.upload_id))
                    .filter(|u| {
                        let d = u.initiated.duration_since(e.at);
                        d.unwrap_or_else(|early| early.duration()) <= CLOCK_SLACK
                    })
                    .map(|u| u.upload_id)
                    .collect(),
                Err(err) => {
                    warn!(key = %e.key, "cannot list multipart uploads: {err}");
                    left.insert(n, e);
                    continue;
                }
            },
        };
        let mut ok = true;
        for id in ids {
            match store.abort_multipart(&e.key, &id).await {
                Ok(()) => {
                    aborted += 1;
                    debug!(key = %e.key, upload_id = %id, "aborted an upload left behind");
                }
                Err(err) if err.kind == StoreErrorKind::NotFound => {}
                Err(err) => {
                    warn!(key = %e.key, upload_id = %id, "cannot abort an upload left behind: {err}");
                    ok = false;
                }
            }
        }
        if !ok {
            left.insert(n, e);
        }
    }
    (left, aborted)
}

/// Abort the multipart uploads that gone daemons' journals in `dir` left open, under
/// `prefix` and started at least `older_than` ago; and, when `own` is given, this
/// daemon's own uploads whose create or abort failed that long ago. Journals with
/// nothing left open are removed; the others are rewritten with what is left.
pub async fn recover<T: ObjectStore, U: ObjectStore>(
    store: &T,
    dir: &Path,
    prefix: &str,
    older_than: Duration,
    own: Option<&JournalingStore<U>>,
) -> Recovered {
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(UNIX_EPOCH);
    let mut out = Recovered::default();
    let known: std::collections::HashSet<String> = own
        .map(|j| {
            j.open_uploads()
                .into_iter()
                .filter_map(|e| e.upload_id)
                .collect()
        })
        .unwrap_or_default();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for ent in rd.flatten() {
        let path = ent.path();
        if !path.to_string_lossy().ends_with(SUFFIX)
            || own.is_some_and(|j| j.path() == path.as_path())
        {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if !try_lock(&file) {
            // A live daemon's.
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (left, n) = abort_entries(store, parse(&text), prefix, cutoff, &known).await;
        out.aborted += n;
        out.kept += left.len();
        if left.is_empty() {
            let _ = std::fs::remove_file(&path);
        } else if n > 0 {
            let mut s = String::new();
            for (n, e) in &left {
                s += &format!("{}\n", start_line(*n, &e.key, e.at));
                if let Some(id) = &e.upload_id {
                    s += &format!("{}\n", id_line(*n, id));
                }
            }
            let tmp = path.with_extension("rewrite");
            if std::fs::write(&tmp, s).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        drop(file);
    }
    if let Some(j) = own {
        let mine: BTreeMap<u64, Entry> = j
            .state
            .lock()
            .open
            .iter()
            .filter(|(_, e)| e.abandoned)
            .map(|(n, e)| (*n, e.clone()))
            .collect();
        let (left, n) = abort_entries(store, mine.clone(), prefix, cutoff, &known).await;
        out.aborted += n;
        let mut st = j.state.lock();
        for (num, e) in mine.iter().filter(|(num, _)| !left.contains_key(num)) {
            JournalingStore::<U>::end(&mut st, *num, &e.key);
        }
    }
    if out.aborted > 0 {
        info!(
            dir = %dir.display(),
            "aborted {} incomplete multipart uploads that a stopped bucketfs left (older than {}s)",
            out.aborted,
            older_than.as_secs()
        );
    }
    out
}

#[cfg(test)]
impl<S> JournalingStore<S> {
    /// Let go of the journal's lock as a killed daemon does, keeping its lines.
    fn release_lock(&self) {
        let st = self.state.lock();
        // SAFETY: unlocking a descriptor this store owns.
        unsafe {
            libc::flock(st.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::faulty::{FaultTarget, FaultyStore};
    use crate::store::memory::MemoryStore;

    fn journals(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().to_string_lossy().ends_with(SUFFIX))
            .count()
    }

    const NONE: Option<&JournalingStore<MemoryStore>> = None;

    #[tokio::test]
    async fn a_gone_daemons_open_uploads_are_aborted_and_its_journal_removed() {
        let dir = tempfile::tempdir().unwrap();
        let j = JournalingStore::new(MemoryStore::new(), dir.path()).unwrap();
        let opts = PutOptions::default();
        let id = j.create_multipart("a/open", &opts).await.unwrap();
        j.upload_part("a/open", &id, 1, Bytes::from(vec![1u8; 10]))
            .await
            .unwrap();
        let done = j.create_multipart("a/done", &opts).await.unwrap();
        let etag = j
            .upload_part("a/done", &done, 1, Bytes::from("x"))
            .await
            .unwrap();
        let parts = [CompletedPart { number: 1, etag }];
        j.complete_multipart("a/done", &done, &parts).await.unwrap();
        let aborted = j.create_multipart("a/aborted", &opts).await.unwrap();
        j.abort_multipart("a/aborted", &aborted).await.unwrap();
        assert_eq!(j.open_uploads().len(), 1);

        // While its daemon lives, a journal is not touched.
        let r = recover(j.inner(), dir.path(), "", Duration::ZERO, NONE).await;
        assert_eq!(r, Recovered::default());
        assert!(j.inner().pending_uploads().contains(&"a/open".to_string()));

        j.release_lock();
        let r = recover(j.inner(), dir.path(), "", Duration::ZERO, NONE).await;
        assert_eq!(
            r,
            Recovered {
                aborted: 1,
                kept: 0
            }
        );
        assert!(j.inner().pending_uploads().is_empty());
        assert_eq!(journals(dir.path()), 0);
    }

    #[tokio::test]
    async fn young_uploads_and_other_prefixes_are_kept_for_a_later_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let j = JournalingStore::new(MemoryStore::new(), dir.path()).unwrap();
        let opts = PutOptions::default();
        j.create_multipart("mine/f", &opts).await.unwrap();
        j.create_multipart("other/f", &opts).await.unwrap();
        j.release_lock();
        let hour = Duration::from_secs(3600);
        let r = recover(j.inner(), dir.path(), "mine/", hour, NONE).await;
        assert_eq!(
            r,
            Recovered {
                aborted: 0,
                kept: 2
            }
        );
        let r = recover(j.inner(), dir.path(), "mine/", Duration::ZERO, NONE).await;
        assert_eq!(
            r,
            Recovered {
                aborted: 1,
                kept: 1
            }
        );
        assert_eq!(j.inner().pending_uploads(), vec!["other/f".to_string()]);
        // The journal now holds only what is left, and a later sweep finds it.
        assert_eq!(journals(dir.path()), 1);
        let r = recover(j.inner(), dir.path(), "", Duration::ZERO, NONE).await;
        assert_eq!(
            r,
            Recovered {
                aborted: 1,
                kept: 0
            }
        );
        assert!(j.inner().pending_uploads().is_empty());
    }

    #[tokio::test]
    async fn an_upload_whose_id_was_never_written_is_found_by_key_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let mem = MemoryStore::new();
        let opts = PutOptions::default();
        // The daemon wrote the start line and died before the id line; its last line
        // was cut off.
        let at = millis(SystemTime::now());
        mem.create_multipart("k", &opts).await.unwrap();
        let other = mem.create_multipart("k2", &opts).await.unwrap();
        let text = format!("{{\"start\":1,\"key\":\"k\",\"at\":{at}}}\n{{\"id\":1,\"up");
        std::fs::write(dir.path().join(format!("1-1{SUFFIX}")), text).unwrap();
        let r = recover(&mem, dir.path(), "", Duration::ZERO, NONE).await;
        assert_eq!(
            r,
            Recovered {
                aborted: 1,
                kept: 0
            }
        );
        let left = mem.list_uploads("").await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].upload_id, other);
    }

    #[tokio::test]
    async fn an_abort_that_failed_is_retried_by_the_next_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = FaultyStore::new(
            MemoryStore::new(),
            FaultTarget::Abort,
            StoreErrorKind::Transient,
            1,
        );
        let j = JournalingStore::new(faulty, dir.path()).unwrap();
        let id = j
            .create_multipart("f", &PutOptions::default())
            .await
            .unwrap();
        assert!(j.abort_multipart("f", &id).await.is_err());
        assert_eq!(j.open_uploads().len(), 1);
        assert!(j.open_uploads()[0].abandoned);
        let r = recover(&j, dir.path(), "", Duration::ZERO, Some(&j)).await;
        assert_eq!(r.aborted, 1);
        assert!(j.open_uploads().is_empty());
        assert!(j.inner().inner().pending_uploads().is_empty());
        // A live upload of this daemon is never a sweep's.
        j.create_multipart("g", &PutOptions::default())
            .await
            .unwrap();
        let r = recover(&j, dir.path(), "", Duration::ZERO, Some(&j)).await;
        assert_eq!(r.aborted, 0);
        assert_eq!(j.inner().inner().pending_uploads(), vec!["g".to_string()]);
    }

    #[test]
    fn journal_lines_parse_to_the_open_uploads() {
        let t = concat!(
            "{\"start\":1,\"key\":\"a\",\"at\":1000}\n",
            "{\"id\":1,\"upload\":\"u1\"}\n",
            "{\"start\":2,\"key\":\"b\\nc\",\"at\":2000}\n",
            "{\"id\":2,\"upload\":\"u2\"}\n",
            "{\"end\":1}\n",
            "{\"start\":3,\"key\":\"d\",\"at\":3000}\n",
            "{\"abandon\":3}\n",
            "garbage\n",
        );
        let open = parse(t);
        assert_eq!(open.len(), 2);
        assert_eq!(open[&2].key, "b\nc");
        assert_eq!(open[&2].upload_id.as_deref(), Some("u2"));
        assert!(open[&3].abandoned && open[&3].upload_id.is_none());
    }
}
