//! The filesystem core: POSIX operations over an [`ObjectStore`], with no FUSE types.
//! `fuse.rs` adapts kernel requests to these async methods; unit tests call them
//! directly over the in-memory store.

pub mod attr;
pub mod copy;
pub mod error;
pub mod inode;
pub mod leftovers;
pub mod limiter;
pub mod meta;
pub mod modify;
pub mod names;
pub mod namespace;
pub mod pages;
pub mod prefetch;
pub mod read;
pub mod readdir;
pub mod staging;
pub mod unlisted;
pub mod upload;
pub mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::store::counting::RequestStats;
use crate::store::ObjectStore;
use attr::{Defaults, Kind, MetadataSource, Stat};
pub use error::{Error, Result};
use inode::{Inode, InodeTable, ROOT_INO};
use limiter::Limiter;
use meta::MetaCache;
use modify::SharedWriter;
pub use modify::{Owner, SetAttr};
use names::{check_request_name, dir_prefix, file_key, WarnOnce};
pub use pages::PageOffer;
use prefetch::PrefetchConfig;
use read::{ReadHandle, Reader};
use readdir::{Listed, Merger, Snapshot};
use upload::{Uploader, WriteConfig};

/// How a mount behaves.
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Key prefix of the mount's root: `""` or ending in `/`.
    pub root_prefix: String,
    pub defaults: Defaults,
    pub metadata_ttl: Duration,
    /// How long the URL of `user.s3.presigned_url` is valid.
    pub presign_expires: Duration,
    /// What the root's `user.bucketfs.target` says (JSON), when mounted.
    pub mount_target: Option<String>,
    pub metadata_source: MetadataSource,
    pub read_only: bool,
    /// Requests are anonymous (`--no-sign-request`): the first upload S3 refuses makes
    /// the mount read-only.
    pub anonymous: bool,
    pub prefetch: PrefetchConfig,
    /// HeadObjects statahead keeps in flight at once.
    pub statahead_concurrency: usize,
    /// How many entries ahead of the reader statahead looks.
    pub statahead_window: usize,
    pub write: WriteConfig,
    /// Inodes without a kernel reference kept for reuse (see `inode`).
    pub idle_inodes: usize,
    /// A name in the root that readdir leaves out (the versions directory).
    pub hidden_name: Option<String>,
    /// Keys under this prefix are read-only (EROFS): the versions directory.
    pub read_only_prefix: Option<String>,
    /// The whole account (`--all-buckets`): the root's entries are buckets, keys are
    /// `BUCKET/KEY` (see `store::account`). The root then holds only directories, and
    /// nothing moves between buckets by rename (EXDEV).
    pub all_buckets: bool,
}

impl FsConfig {
    pub fn new(root_prefix: &str, defaults: Defaults) -> Self {
        FsConfig {
            root_prefix: root_prefix.to_string(),
            defaults,
            metadata_ttl: Duration::from_secs(1),
            presign_expires: Duration::from_secs(3600),
            mount_target: None,
            metadata_source: MetadataSource::Posix,
            read_only: false,
            anonymous: false,
            prefetch: PrefetchConfig::default(),
            statahead_concurrency: 256,
            statahead_window: 4096,
            write: WriteConfig::new(std::env::temp_dir().join("bucketfs-staging")),
            idle_inodes: inode::IDLE_INODES,
            hidden_name: None,
            read_only_prefix: None,
            all_buckets: false,
        }
    }
}

/// An inode number with its attributes, as lookup and getattr return them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub stat: Stat,
}

/// One directory entry for readdir: `offset` is the position of the entry after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub offset: u64,
    pub kind: Kind,
    pub name: String,
}

/// What open returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// The object is unchanged since the last open: the kernel may keep its page cache.
    pub keep_cache: bool,
}

/// Answer of statfs.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// Entries in one ListObjectsV2 page: what a probe of one name costs, a listing costs
/// per this many entries.
const LIST_PAGE: usize = 1000;

/// How old a listing may be and still steer statahead.
const STATAHEAD_HORIZON: Duration = Duration::from_secs(30);

/// How often the mount runs [`Filesystem::sweep`].
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Keys a lookup's listing asks for: enough to see past names like `name.txt` to `name/`.
const PROBE_PAGE: i32 = 32;

/// The name of the root xattr that reports request counts (reading it) and resets them
/// (writing `reset`).
pub const STATS_XATTR: &str = "user.bucketfs.stats";

/// The root xattr that describes the mount (bucket, prefix, endpoint) as JSON, for
/// `bucketfs presign PATH`.
pub const TARGET_XATTR: &str = "user.bucketfs.target";

/// The xattr of a file whose value is a presigned GET URL of its object, valid for
/// [`FsConfig::presign_expires`].
pub const PRESIGNED_XATTR: &str = "user.s3.presigned_url";

/// The prefix of the xattrs that are a file's object tags: `user.s3.tag.NAME`. They are
/// fetched only when one is asked for (one GetObjectTagging, cached for the metadata
/// TTL); a write is one PutObjectTagging more.
pub const TAG_XATTR_PREFIX: &str = "user.s3.tag.";

/// The name of the root xattr that reports the inode table's size as JSON:
/// `{"inodes":N,"idle":M}` (idle: inodes the kernel holds no reference to).
pub const INODES_XATTR: &str = "user.bucketfs.inodes";

struct DirHandle {
    dir: Arc<Inode>,
    entries: Vec<DirEntry>,
    merger: Option<Merger>,
    token: Option<String>,
    done: bool,
    snapshot: Arc<Mutex<Snapshot>>,
    /// The next listing page, requested while the kernel consumes the current one.
    ahead: Option<PageAhead>,
}

/// A listing page fetched in the background for the continuation token `token`;
/// dropping it (rewind, releasedir) cancels the request.
struct PageAhead {
    token: String,
    task: tokio::task::JoinHandle<crate::store::StoreResult<crate::store::ListPage>>,
}

impl Drop for PageAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One open file handle. Reads go through the file's writer while it is open for
/// writing in this mount, else through a reader pinned to one ETag.
pub(crate) struct OpenFile {
    pub ino: u64,
    pub writable: bool,
    pub reader: Mutex<Option<Arc<ReadHandle>>>,
    /// The process (thread group) that opened it, 0 if unknown: see
    /// [`Filesystem::flush_from`].
    pub opener: std::sync::atomic::AtomicU32,
}

/// What a mount holds open and has yet to upload, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Open file handles.
    pub open_files: u64,
    /// Open directory handles.
    pub open_dirs: u64,
    /// Files whose data is written and not yet durably in S3.
    pub dirty_files: u64,
    /// Their size in all: what close or fsync still has to upload (a streaming
    /// upload's parts sent so far included).
    pub pending_upload_bytes: u64,
}

/// The filesystem over one bucket (or one prefix of it).
pub struct Filesystem<S> {
    store: Arc<S>,
    cfg: FsConfig,
    inodes: InodeTable,
    meta: Arc<MetaCache<S>>,
    reader: Reader<S>,
    warn: WarnOnce,
    /// Names found missing, for the metadata TTL.
    negative: moka::sync::Cache<(u64, String), ()>,
    /// Relistings of small directories in flight or done within the TTL, by inode.
    relists: moka::future::Cache<u64, Option<Arc<Mutex<Snapshot>>>>,
    dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<DirHandle>>>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    writers: Mutex<HashMap<u64, SharedWriter>>,
    /// An anonymous mount's upload was refused: the bucket takes no anonymous writes,
    /// so the mount is read-only from then on.
    writes_refused: std::sync::atomic::AtomicBool,
    uploader: Arc<Uploader<S>>,
    next_fh: AtomicU64,
    stats: Option<Arc<RequestStats>>,
    mounted_at: SystemTime,
    /// Orders pushes into the kernel's page cache against writers and new versions.
    page_gate: tokio::sync::Mutex<()>,
    /// How many statahead HeadObjects run at once.
    statahead: Arc<Limiter>,
    /// Directories made here that no listing has shown yet.
    unlisted: unlisted::Unlisted,
    /// Zero objects of crashed uploads that listings came across.
    leftovers: leftovers::Leftovers,
}

impl<S: ObjectStore> Filesystem<S> {
    pub fn new(store: Arc<S>, cfg: FsConfig, stats: Option<Arc<RequestStats>>) -> Self {
        let now = SystemTime::now();
        let root = attr::dir_stat(&cfg.defaults, now);
        let negative = moka::sync::Cache::builder()
            .time_to_live(cfg.metadata_ttl.max(Duration::from_nanos(1)))
            .max_capacity(if cfg.metadata_ttl.is_zero() {
                0
            } else {
                100_000
            })
            .build();
        let relist_ttl = cfg.metadata_ttl.max(Duration::from_millis(1));
        let conc = cfg.statahead_concurrency;
        let cfg_leftover_age = cfg.write.leftover_age;
        let statahead = Arc::new(Limiter::new(4.min(conc), conc / 4, conc));
        Filesystem {
            meta: Arc::new(
                MetaCache::new(store.clone(), cfg.metadata_ttl).with_stats(stats.clone()),
            ),
            reader: Reader::new(store.clone(), cfg.prefetch).with_stats(stats.clone()),
            inodes: InodeTable::new(&cfg.root_prefix, root).with_idle_cap(cfg.idle_inodes),
            writers: Mutex::new(HashMap::new()),
            writes_refused: Default::default(),
            uploader: Arc::new(Uploader::new(store.clone(), cfg.write.clone())),
            store,
            cfg,
            warn: WarnOnce::default(),
            negative,
            relists: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(relist_ttl)
                .build(),
            dirs: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            stats,
            mounted_at: now,
            page_gate: tokio::sync::Mutex::new(()),
            statahead,
            unlisted: Default::default(),
            leftovers: leftovers::Leftovers::new(cfg_leftover_age),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.cfg.metadata_ttl
    }

    fn valid_until(&self) -> Instant {
        Instant::now() + self.cfg.metadata_ttl
    }

    fn fresh(&self, t: Instant) -> bool {
        t.elapsed() < self.cfg.metadata_ttl
    }

    fn posix(&self) -> bool {
        self.cfg.metadata_source == MetadataSource::Posix
    }

    fn dir_inode(&self, ino: u64) -> Result<Arc<Inode>> {
        let d = self.inodes.get(ino)?;
        if d.kind != Kind::Dir {
            return Err(Error::NotDir(d.key.clone()));
        }
        Ok(d)
    }

    // ----- lookup -----

    /// Resolve `name` in directory `parent`. Adds one kernel reference to the result.
    pub async fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        match self.lookup_in_s3(parent, name).await {
            Err(e) if e.is_not_found() => self.unlisted_dir(parent, name, true).ok_or(e),
            r => r,
        }
    }

    /// A directory made here that S3's listings do not show (yet): it exists. `lookup`:
    /// the answer is a kernel reference.
    fn unlisted_dir(&self, parent: u64, name: &[u8], lookup: bool) -> Option<Attr> {
        let name = std::str::from_utf8(name).ok()?;
        let dir = self.inodes.get(parent).ok()?;
        let prefix = dir_prefix(&dir.key, name).ok()?;
        if !self.unlisted.contains(&prefix) {
            return None;
        }
        let stat = match self.inodes.child(parent, name) {
            Some(i) if i.kind == Kind::Dir => i.stat(),
            _ => attr::dir_stat(&self.cfg.defaults, self.mounted_at),
        };
        let inode = self.inodes.upsert(
            parent,
            name,
            &prefix,
            stat,
            self.valid_until(),
            None,
            None,
            lookup,
        );
        Some(Attr {
            ino: inode.ino,
            stat,
        })
    }

    async fn lookup_in_s3(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        // A name S3 cannot store cannot exist there either.
        let name = check_request_name(name).map_err(|e| match e {
            Error::Invalid(m) => Error::NotFound(m),
            e => e,
        })?;
        if names::is_reserved(name) {
            return Err(Error::NotFound(format!("{name} is reserved for bucketfs")));
        }
        let dir = self.dir_inode(parent)?;
        let key = file_key(&dir.key, name)?;
        let prefix = dir_prefix(&dir.key, name)?;

        // A file open for writing here is what this mount says it is.
        if let Some(i) = self.inodes.child(parent, name) {
            if self.writer(i.ino).is_some() {
                self.inodes.add_lookup(&i);
                return Ok(Attr {
                    ino: i.ino,
                    stat: i.stat(),
                });
            }
        }

        // A fresh listing of the parent answers without a request for the name itself.
        let mut snap = dir.state.lock().listing.clone();
        let relist = snap
            .as_deref()
            .is_some_and(|s| self.worth_relisting(s) && !self.head_decides(s, name));
        if relist {
            // Lookups arriving together (the kernel sends them in parallel) share one.
            let again = self
                .relists
                .try_get_with(dir.ino, self.relist(&dir))
                .await
                .map_err(|e: Arc<Error>| (*e).clone())?;
            snap = again.or(snap);
        }
        // Statahead results are used by lookups answered from the listing that asked.
        let pass = snap.as_ref().map_or(0, |s| s.lock().pass);
        // A file the listing showed lately, in POSIX mode: its HeadObject decides.
        let mut recent_file = false;
        if let Some(snap) = &snap {
            let listed = {
                let mut s = snap.lock();
                let answer = s.answer(name).map(|e| e.map(|(i, l)| (i, l.clone())));
                if let Some(Some((idx, l))) = &answer {
                    // Statahead only warms the cache, so an older listing may steer it.
                    // Only file lookups count: `find` looks up directories to descend,
                    // `ls -l` looks up everything.
                    if l.kind != Kind::Dir && s.updated.elapsed() < STATAHEAD_HORIZON {
                        s.lookups += 1;
                        self.maybe_statahead(&dir, &mut s, *idx);
                    } else if l.kind == Kind::Dir && self.posix() {
                        s.dir_lookups += 1;
                        if s.dir_lookups == 2 {
                            self.statahead_markers(&dir, &s, *idx);
                        }
                    }
                }
                if self.fresh(s.updated) {
                    answer.map(|e| e.map(|(_, l)| l))
                } else {
                    recent_file = matches!(&answer, Some(Some((_, l))) if l.kind != Kind::Dir)
                        && s.updated.elapsed() < STATAHEAD_HORIZON;
                    None
                }
            };
            match listed {
                Some(Some(l)) => {
                    if let Some(a) = self.resolve_listed(&dir, &l, &key, &prefix, pass).await? {
                        return Ok(a);
                    }
                }
                Some(None) => return Err(Error::NotFound(key.to_string())),
                None => {}
            }
        }
        if self.negative.contains_key(&(dir.ino, name.to_string())) {
            return Err(Error::NotFound(key.to_string()));
        }
        // A fresh HeadObject (statahead's, or an earlier lookup's) answers for a file.
        // For a file a recent listing showed, the HeadObject is asked for (or joined
        // while statahead's is in flight) instead of a probe: when the server is slow
        // or far away, an `ls -l` outlasts the TTL of its listing, and a probe per name
        // would double its requests and fall further behind statahead.
        if self.posix() {
            let m = if recent_file {
                self.meta.head_for_lookup(&key, pass).await?
            } else {
                self.meta.peek(&key).await.flatten()
            };
            if let Some(m) = m {
                return Ok(self.found_object(&dir, name, &key, m));
            }
        }
        if let Some(snap) = &snap {
            // A probe the listing could not spare: counts toward listing it again.
            let mut s = snap.lock();
            if self.stale_complete(&s) {
                s.stale_lookups += 1;
            }
        }
        let r = self.probe(&dir, name, &key, &prefix).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            self.negative.insert((dir.ino, name.to_string()), ());
        }
        r
    }

    /// Attributes of an entry a listing showed. `None` if it vanished since.
    async fn resolve_listed(
        &self,
        dir: &Arc<Inode>,
        l: &Listed,
        key: &str,
        prefix: &str,
        pass: u64,
    ) -> Result<Option<Attr>> {
        match l.kind {
            Kind::Dir => {
                // A directory's mode, owner and times live on its marker: one HeadObject
                // (shared with statahead's, cached for the TTL) in POSIX mode.
                Ok(Some(self.found_dir(dir, &l.name, prefix, None).await?))
            }
            _ if self.posix() => {
                // An object the listing shows unchanged keeps the metadata we have.
                if let Some(m) = self.unchanged_meta(dir, l) {
                    return Ok(Some(self.found_object(dir, &l.name, key, m)));
                }
                match self.meta.head_for_lookup(key, pass).await? {
                    Some(m) => Ok(Some(self.found_object(dir, &l.name, key, m))),
                    None => Ok(None),
                }
            }
            _ => {
                let s = l.summary.as_ref().expect("listed file has a summary");
                Ok(Some(self.found_listed(dir, &l.name, key, s)))
            }
        }
    }

    /// The HeadObject metadata this mount already holds for a listed file, if the
    /// listing shows the same object: same ETag, size and modification second. (A
    /// metadata-only rewrite keeps the ETag but not LastModified.)
    fn unchanged_meta(&self, dir: &Inode, l: &Listed) -> Option<Arc<crate::store::ObjectMeta>> {
        let summary = l.summary.as_ref()?;
        let child = self.inodes.child(dir.ino, &l.name)?;
        let m = child.state.lock().meta.clone()?;
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok();
        (m.etag == summary.etag
            && m.size == summary.size
            && secs(m.last_modified) == secs(summary.last_modified))
        .then_some(m)
    }

    /// Ask S3 whether `name` is a directory (any key under `prefix`) or an object
    /// (`key`). A directory wins over an object of the same name.
    ///
    /// One listing at `key` answers both in the common case: the object is its first
    /// entry if it exists, and `name/` shows as a common prefix unless more than a page
    /// of keys such as `name.txt` or `name-1` sort between them (then a second, one-key
    /// listing at `prefix` decides). So a name that does not exist costs one request,
    /// and an existing one adds the HeadObject of its metadata in POSIX mode.
    async fn probe(&self, dir: &Arc<Inode>, name: &str, key: &str, prefix: &str) -> Result<Attr> {
        let page = self
            .store
            .list(key, Some("/"), None, Some(PROBE_PAGE))
            .await
            .map_err(Error::from)?;
        let object = page.objects.iter().find(|o| o.key == key).cloned();
        let mut is_dir = page.prefixes.iter().any(|p| p == prefix);
        let passed = |k: &str| k > prefix;
        let conclusive = is_dir
            || page.next_token.is_none()
            || page.objects.last().is_some_and(|o| passed(&o.key))
            || page.prefixes.last().is_some_and(|p| passed(p));
        if !conclusive {
            let list = self
                .store
                .list(prefix, Some("/"), None, Some(1))
                .await
                .map_err(Error::from)?;
            is_dir = !list.objects.is_empty() || !list.prefixes.is_empty();
        }
        if is_dir {
            self.unlisted.seen(prefix);
            if object.is_some() && self.warn.first(key) {
                warn!(
                    key,
                    "object is shadowed by a directory of the same name and is not reachable"
                );
            }
            return self.found_dir(dir, name, prefix, None).await;
        }
        match object {
            None => Err(Error::NotFound(key.to_string())),
            Some(s) if !self.posix() => Ok(self.found_listed(dir, name, key, &s)),
            Some(_) => match self.meta.head(key).await? {
                Some(m) => Ok(self.found_object(dir, name, key, m)),
                None => Err(Error::NotFound(key.to_string())),
            },
        }
    }

    /// Record a directory `name` in `dir`. `marker` is the marker's HeadObject when the
    /// caller already knows it (`Some(None)`: known to have none).
    async fn found_dir(
        &self,
        dir: &Arc<Inode>,
        name: &str,
        prefix: &str,
        marker: Option<Option<Arc<crate::store::ObjectMeta>>>,
    ) -> Result<Attr> {
        let marker = match marker {
            Some(m) => m,
            None if self.posix() => self.meta.head(prefix).await?,
            None => None,
        };
        let stat = match &marker {
            Some(m) => {
                attr::stat_from_meta(m, Kind::Dir, self.cfg.metadata_source, &self.cfg.defaults)
            }
            None => attr::dir_stat(&self.cfg.defaults, self.mounted_at),
        };
        let inode = self.inodes.upsert(
            dir.ino,
            name,
            prefix,
            stat,
            self.valid_until(),
            marker,
            None,
            true,
        );
        Ok(Attr {
            ino: inode.ino,
            stat,
        })
    }

    /// Record a file known only from a listing entry (listing mode).
    fn found_listed(
        &self,
        dir: &Arc<Inode>,
        name: &str,
        key: &str,
        s: &crate::store::ObjectSummary,
    ) -> Attr {
        let stat = attr::stat_from_summary(s, &self.cfg.defaults);
        let inode = self.inodes.upsert(
            dir.ino,
            name,
            key,
            stat,
            self.valid_until(),
            None,
            Some(s.etag.clone()),
            true,
        );
        Attr {
            ino: inode.ino,
            stat,
        }
    }

    fn found_object(
        &self,
        dir: &Arc<Inode>,
        name: &str,
        key: &str,
        m: Arc<crate::store::ObjectMeta>,
    ) -> Attr {
        let kind = if self.posix() {
            attr::kind_from_meta(&m)
        } else {
            Kind::File
        };
        let stat = attr::stat_from_meta(&m, kind, self.cfg.metadata_source, &self.cfg.defaults);
        let inode = self.inodes.upsert(
            dir.ino,
            name,
            key,
            stat,
            self.valid_until(),
            Some(m),
            None,
            true,
        );
        Attr {
            ino: inode.ino,
            stat,
        }
    }

    /// Whether a lookup that finds `snap` stale should list the directory again rather
    /// than probe the one name. A listing answers every lookup there for another TTL (a
    /// loop of creates, `tar -x`, an `ls -l` whose attributes expired); it costs a
    /// request per 1,000 entries, a probe one per name. So a directory of one page is
    /// listed again at once, and a larger one once the probes sent against its stale
    /// listing have cost as much as listing it again would: never more than twice the
    /// requests of the better choice, and an `ls -l` of 10,000 names after the TTL costs
    /// 10 probes and 10 pages instead of 10,000 probes one after another.
    fn worth_relisting(&self, snap: &Mutex<Snapshot>) -> bool {
        let s = snap.lock();
        !self.cfg.metadata_ttl.is_zero()
            && self.stale_complete(&s)
            && (s.stale_lookups + 1) * LIST_PAGE > s.order.len() + s.changed.len()
    }

    /// Whether a lookup of `name` in a stale listing `snap` is answered by the name's
    /// HeadObject anyway (POSIX mode, a file the listing showed lately: see
    /// `lookup_in_s3`), so listing the directory again would add a request, not save one:
    /// an `ls -l` that outlasts its listing's TTL lists once, not once per TTL.
    fn head_decides(&self, snap: &Mutex<Snapshot>, name: &str) -> bool {
        let s = snap.lock();
        self.posix()
            && s.updated.elapsed() < STATAHEAD_HORIZON
            && matches!(s.answer(name), Some(Some((_, l))) if l.kind != Kind::Dir)
    }

    /// A listing of the whole directory that is no longer fresh: the kind a lookup may
    /// replace with a new listing.
    fn stale_complete(&self, s: &Snapshot) -> bool {
        s.complete && !self.fresh(s.updated)
    }

    /// Delete the zero objects of crashed uploads a listing came across (see
    /// [`leftovers`]), if they are old enough. Failures are logged, never returned: the
    /// listing itself succeeded.
    async fn delete_leftovers(&self, seen: Vec<crate::store::ObjectSummary>) {
        if seen.is_empty() || self.cfg.read_only {
            return;
        }
        let keys = self.leftovers.claim(&seen, SystemTime::now());
        let deletes = keys.iter().map(|key| async move {
            match self.store.delete(key).await {
                Ok(()) => {
                    info!(key, "deleted a zero object a crashed upload left behind");
                    self.leftovers.deleted(key);
                }
                Err(e) => warn!(
                    key,
                    "could not delete a zero object a crashed upload left behind: {e}"
                ),
            }
        });
        futures::future::join_all(deletes).await;
    }

    /// List a directory again and make it the directory's listing. `None` if this mount
    /// changed the directory while the listing was in flight (then the names in question
    /// are probed instead).
    async fn relist(&self, dir: &Arc<Inode>) -> Result<Option<Arc<Mutex<Snapshot>>>> {
        let before = dir.state.lock().changes;
        let mut merger = Merger::new(&dir.key);
        let mut snap = Snapshot::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .list(&dir.key, Some("/"), token, None)
                .await
                .map_err(Error::from)?;
            let items = merger.push_page(&page, &self.warn);
            self.delete_leftovers(merger.take_helpers()).await;
            snap.record_page(&items, merger.has_marker, page.next_token.is_none());
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let snap = Arc::new(Mutex::new(snap));
        let mut st = dir.state.lock();
        if st.changes != before {
            return Ok(None);
        }
        st.listing = Some(snap.clone());
        Ok(Some(snap))
    }

    /// The second subdirectory looked up from a listing (`find`, `du`, `cp -r`
    /// descending): fetch the markers of the following subdirectories in parallel, so
    /// their lookups, which need each marker's HeadObject in POSIX mode, do not wait one
    /// round trip after another. The same requests, sent earlier.
    fn statahead_markers(&self, dir: &Arc<Inode>, s: &Snapshot, idx: usize) {
        let to = (idx + 1 + self.cfg.statahead_window).min(s.order.len());
        let keys: Vec<String> = s.order[(idx + 1).min(to)..to]
            .iter()
            .filter(|l| l.kind == Kind::Dir)
            .map(|l| l.key_in(&dir.key))
            .collect();
        if keys.is_empty() {
            return;
        }
        debug!(dir = %dir.key, n = keys.len(), "marker statahead");
        self.head_ahead(keys, s.pass);
    }

    /// HeadObject `keys` in the background, as many at a time as the server takes
    /// without queueing them (at most `statahead_concurrency`; see `limiter`), into the
    /// metadata cache (where lookups find them, or join them while in flight).
    fn head_ahead(&self, keys: Vec<String>, pass: u64) {
        let meta = self.meta.clone();
        let limiter = self.statahead.clone();
        tokio::spawn(async move {
            for k in keys {
                let slot = limiter.acquire().await;
                let meta = meta.clone();
                tokio::spawn(async move {
                    let rtt = meta.prefetch(&k, pass).await;
                    slot.done(rtt);
                });
            }
        });
    }

    /// After a readdir, a second file lookup in the listing means a `ls -l`-like walk:
    /// fetch the metadata of the following entries in parallel, ahead of the kernel.
    fn maybe_statahead(&self, dir: &Arc<Inode>, s: &mut Snapshot, idx: usize) {
        if !self.posix() || s.lookups < 2 {
            return;
        }
        let from = s.statahead_upto.max(idx + 1);
        let to = (idx + 1 + self.cfg.statahead_window).min(s.order.len());
        if from >= to || to - from < self.cfg.statahead_window / 4 && to < s.order.len() {
            return;
        }
        s.statahead_upto = to;
        let keys: Vec<String> = s.order[from..to]
            .iter()
            .filter(|l| l.kind == Kind::Dir || self.unchanged_meta(dir, l).is_none())
            .map(|l| l.key_in(&dir.key))
            .collect();
        debug!(dir = %dir.key, from, to, "statahead");
        self.head_ahead(keys, s.pass);
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    // ----- attributes -----

    pub async fn getattr(&self, ino: u64) -> Result<Attr> {
        let inode = self.inodes.get(ino)?;
        let (stat, until) = {
            let s = inode.state.lock();
            (s.stat, s.valid_until)
        };
        if Instant::now() < until || inode.kind == Kind::Dir {
            return Ok(Attr { ino, stat });
        }
        self.refresh(&inode).await
    }

    /// Re-read a file's attributes from S3.
    async fn refresh(&self, inode: &Arc<Inode>) -> Result<Attr> {
        let m = self
            .meta
            .head(&inode.key)
            .await?
            .ok_or_else(|| Error::NotFound(inode.key.to_string()))?;
        let stat =
            attr::stat_from_meta(&m, inode.kind, self.cfg.metadata_source, &self.cfg.defaults);
        let mut s = inode.state.lock();
        s.stat = stat;
        s.valid_until = self.valid_until();
        s.meta = Some(m);
        Ok(Attr {
            ino: inode.ino,
            stat,
        })
    }

    // ----- directories -----

    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let dir = self.dir_inode(ino)?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = DirHandle {
            dir,
            entries: Vec::new(),
            merger: None,
            token: None,
            done: false,
            snapshot: Arc::new(Mutex::new(Snapshot::new())),
            ahead: None,
        };
        self.dirs
            .lock()
            .insert(fh, Arc::new(tokio::sync::Mutex::new(h)));
        Ok(fh)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().remove(&fh);
    }

    /// Entries from position `offset` on (0 = start); at least one page's worth unless
    /// the directory is exhausted (then empty). For tests and callers that want them
    /// all; the FUSE adapter uses [`readdir_with`](Self::readdir_with).
    pub async fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        self.readdir_with(ino, fh, offset, |e| {
            out.push(e.clone());
            false
        })
        .await?;
        Ok(out)
    }

    /// Hand the entries from position `offset` on (0 = start) to `add`, one at a time,
    /// until it answers `true` (the kernel's buffer is full) or the entries loaded so far
    /// (at least one page's worth, unless the directory is exhausted) run out. Only the
    /// entries handed over are touched, so reading a directory of n entries costs O(n)
    /// over all calls, cached or not. Every entry handed over names an inode that is in
    /// the table (one evicted since the listing is made again), so READDIRPLUS can
    /// count a reference to it.
    pub async fn readdir_with<F>(&self, ino: u64, fh: u64, offset: u64, mut add: F) -> Result<()>
    where
        F: FnMut(&DirEntry) -> bool,
    {
        let h = self
            .dirs
            .lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::BadHandle(format!("no directory handle {fh}")))?;
        let mut h = h.lock().await;
        if h.dir.ino != ino {
            return Err(Error::BadHandle("directory handle of another inode".into()));
        }
        if offset == 0 {
            self.start_listing(&mut h);
            let dot = DirEntry {
                ino,
                offset: 1,
                kind: Kind::Dir,
                name: ".".into(),
            };
            if add(&dot) {
                return Ok(());
            }
        }
        if offset <= 1 {
            let dotdot = DirEntry {
                ino: h.dir.parent,
                offset: 2,
                kind: Kind::Dir,
                name: "..".into(),
            };
            if add(&dotdot) {
                return Ok(());
            }
        }
        let start = offset.saturating_sub(2) as usize;
        while h.entries.len() <= start && !h.done {
            self.next_page(&mut h).await?;
        }
        let dir = h.dir.ino;
        for i in start..h.entries.len() {
            if dir == ROOT_INO && self.cfg.hidden_name.as_deref() == Some(&h.entries[i].name) {
                continue;
            }
            self.ensure_entry_inode(dir, &mut h.entries[i]);
            if add(&h.entries[i]) {
                break;
            }
        }
        Ok(())
    }

    /// Point `e` at a live inode: the one its name has now, or a new one with default
    /// attributes that the kernel will look up before use (the listing's inode was
    /// evicted, or replaced, since).
    fn ensure_entry_inode(&self, dir: u64, e: &mut DirEntry) {
        if self.inodes.get(e.ino).is_ok() {
            return;
        }
        if let Some(i) = self.inodes.child(dir, &e.name) {
            e.ino = i.ino;
            e.kind = i.kind;
            return;
        }
        let Ok(d) = self.inodes.get(dir) else {
            return;
        };
        let (key, stat) = match e.kind {
            Kind::Dir => (
                format!("{}{}/", d.key, e.name),
                attr::dir_stat(&self.cfg.defaults, self.mounted_at),
            ),
            kind => {
                let mut st = attr::dir_stat(&self.cfg.defaults, self.mounted_at);
                st.kind = kind;
                st.size = 0;
                st.perm = self.cfg.defaults.file_mode;
                (format!("{}{}", d.key, e.name), st)
            }
        };
        let inode = self
            .inodes
            .upsert(dir, &e.name, &key, stat, Instant::now(), None, None, false);
        e.ino = inode.ino;
    }

    /// Attributes of a readdir entry for READDIRPLUS, known without a request, and how
    /// long the kernel may keep them: zero when they are only the listing's guess (POSIX
    /// mode before the object's metadata is known), so the kernel looks the name up
    /// before using it. Counts one kernel reference, as a lookup does (take it back with
    /// [`unreference`](Self::unreference) if the entry does not reach the kernel); `None`
    /// if the inode is gone.
    pub fn entry_attr(&self, e: &DirEntry) -> Option<(Attr, Duration)> {
        let inode = self.inodes.reference(e.ino)?;
        let s = inode.state.lock();
        // Never longer than a lookup's (a file open for writing holds its attributes
        // indefinitely, but the kernel should still come back within the TTL).
        let ttl = s
            .valid_until
            .saturating_duration_since(Instant::now())
            .min(self.cfg.metadata_ttl);
        Some((
            Attr {
                ino: e.ino,
                stat: s.stat,
            },
            ttl,
        ))
    }

    /// Take back references [`entry_attr`](Self::entry_attr) counted for an entry the
    /// kernel did not receive. Unlike a FORGET, the inode stays in the table.
    pub fn unreference(&self, ino: u64, n: u64) {
        self.inodes.unreference(ino, n);
    }

    /// Inodes in the table, and how many of them the kernel holds no reference to.
    pub fn inode_counts(&self) -> (usize, usize) {
        self.inodes.counts()
    }

    /// Drop what an idle mount no longer needs: the listings of directories that no
    /// open handle reads and that are too old to answer lookups or steer statahead. A
    /// listing holds every name of its directory, so a mount that listed a million keys
    /// once returns to a small size. The mount runs this every [`SWEEP_EVERY`].
    /// Returns how many listings were dropped.
    pub async fn sweep(&self) -> usize {
        self.sweep_older_than(STATAHEAD_HORIZON.max(self.cfg.metadata_ttl))
            .await
    }

    /// [`sweep`](Self::sweep) listings older than `old`.
    async fn sweep_older_than(&self, old: Duration) -> usize {
        // Expired relistings may still hold their snapshots; expired cache entries
        // are only freed by the caches' housekeeping.
        self.relists.run_pending_tasks().await;
        self.negative.run_pending_tasks();
        self.meta.run_pending_tasks().await;
        self.inodes.compact();
        let mut dropped = 0;
        for d in self.inodes.dirs() {
            let mut st = d.state.lock();
            let idle = st.listing.as_ref().is_some_and(|snap| {
                // Held by the inode alone: no directory handle is reading it.
                Arc::strong_count(snap) == 1 && snap.lock().updated.elapsed() > old
            });
            if idle {
                st.listing = None;
                dropped += 1;
            }
        }
        if dropped > 0 {
            debug!(dropped, "idle directory listings dropped");
        }
        dropped
    }

    fn start_listing(&self, h: &mut DirHandle) {
        // The directory may have been renamed since the handle was opened: list it
        // where it is now.
        if let Ok(now) = self.inodes.get(h.dir.ino) {
            h.dir = now;
        }
        h.entries.clear();
        h.token = None;
        h.ahead = None;
        h.done = false;
        h.merger = Some(Merger::new(&h.dir.key));
        // A complete, fresh listing of this directory is reused as it is.
        let cached = h.dir.state.lock().listing.clone();
        if let Some(snap) = cached {
            let s = snap.lock();
            if s.complete && s.changed.is_empty() && self.fresh(s.updated) {
                let items = s.order.clone();
                drop(s);
                self.append_entries(h, &items);
                self.append_pending(h);
                h.done = true;
                h.snapshot = snap;
                return;
            }
        }
        h.snapshot = Arc::new(Mutex::new(Snapshot::new()));
        h.dir.state.lock().listing = Some(h.snapshot.clone());
    }

    async fn next_page(&self, h: &mut DirHandle) -> Result<()> {
        let token = h.token.take();
        let page = match h.ahead.take() {
            Some(mut a) if token.as_deref() == Some(a.token.as_str()) => (&mut a.task)
                .await
                .map_err(|e| Error::task(format!("listing {}", h.dir.key), e))?,
            _ => self.store.list(&h.dir.key, Some("/"), token, None).await,
        }
        .map_err(Error::from)?;
        let merger = h.merger.as_mut().expect("listing started");
        let items = merger.push_page(&page, &self.warn);
        let helpers = merger.take_helpers();
        self.delete_leftovers(helpers).await;
        h.snapshot
            .lock()
            .record_page(&items, merger.has_marker, page.next_token.is_none());
        self.append_entries(h, &items);
        h.token = page.next_token;
        h.done = h.token.is_none();
        // A directory of more than one page is usually read to its end (ls, find, rsync):
        // ask for the next page now, so S3's latency overlaps the kernel's work on this one.
        if let Some(t) = &h.token {
            let (store, key, token) = (self.store.clone(), h.dir.key.clone(), t.clone());
            h.ahead = Some(PageAhead {
                token: t.clone(),
                task: tokio::spawn(
                    async move { store.list(&key, Some("/"), Some(token), None).await },
                ),
            });
        }
        if h.done {
            self.append_pending(h);
        }
        Ok(())
    }

    /// Files created in this mount and not uploaded yet are entries too, and so are
    /// directories made here that the listing did not show.
    fn append_pending(&self, h: &mut DirHandle) {
        self.append_unlisted(h);
        let inos: Vec<u64> = self.writers.lock().keys().copied().collect();
        let listed: std::collections::HashSet<String> =
            h.entries.iter().map(|e| e.name.clone()).collect();
        for ino in inos {
            let Ok(i) = self.inodes.get(ino) else {
                continue;
            };
            let named = self.inodes.child(h.dir.ino, &i.name).map(|c| c.ino) == Some(ino);
            if i.parent == h.dir.ino && named && !listed.contains(&i.name) {
                let offset = h.entries.len() as u64 + 3;
                h.entries.push(DirEntry {
                    ino,
                    offset,
                    kind: i.kind,
                    name: i.name.clone(),
                });
            }
        }
    }

    fn append_unlisted(&self, h: &mut DirHandle) {
        let names = self.unlisted.children(&h.dir.key);
        if names.is_empty() {
            return;
        }
        let listed: std::collections::HashSet<String> =
            h.entries.iter().map(|e| e.name.clone()).collect();
        for name in names {
            if listed.contains(&name) {
                continue;
            }
            if let Some(a) = self.unlisted_dir(h.dir.ino, name.as_bytes(), false) {
                let offset = h.entries.len() as u64 + 3;
                h.entries.push(DirEntry {
                    ino: a.ino,
                    offset,
                    kind: Kind::Dir,
                    name,
                });
            }
        }
    }

    fn append_entries(&self, h: &mut DirHandle, items: &[Listed]) {
        // In listing mode the listing is the whole truth about an entry; in POSIX mode
        // it is only for an object whose metadata we hold and which it shows unchanged.
        let listed_valid = if self.posix() {
            Instant::now()
        } else {
            self.valid_until()
        };
        for l in items {
            if l.kind == Kind::Dir {
                self.unlisted.seen(&l.key_in(&h.dir.key));
            }
            let ino = match self.inodes.child(h.dir.ino, &l.name) {
                Some(i)
                    if i.kind == l.kind || (i.kind == Kind::Symlink && l.kind == Kind::File) =>
                {
                    if self.posix() && self.writer(i.ino).is_none() {
                        if let Some(m) = self.unchanged_meta(&h.dir, l) {
                            let stat = attr::stat_from_meta(
                                &m,
                                i.kind,
                                self.cfg.metadata_source,
                                &self.cfg.defaults,
                            );
                            let mut st = i.state.lock();
                            st.stat = stat;
                            st.valid_until = self.valid_until();
                        }
                    }
                    i.ino
                }
                _ => {
                    let stat = match l.kind {
                        Kind::Dir => attr::dir_stat(&self.cfg.defaults, self.mounted_at),
                        _ => attr::stat_from_summary(
                            l.summary.as_ref().expect("listed file has a summary"),
                            &self.cfg.defaults,
                        ),
                    };
                    let listed_etag = l.summary.as_ref().filter(|_| !self.posix());
                    self.inodes
                        .upsert(
                            h.dir.ino,
                            &l.name,
                            &l.key_in(&h.dir.key),
                            stat,
                            listed_valid,
                            None,
                            listed_etag.map(|s| s.etag.clone()),
                            false,
                        )
                        .ino
                }
            };
            let kind = self.inodes.get(ino).map(|i| i.kind).unwrap_or(l.kind);
            let offset = h.entries.len() as u64 + 3;
            h.entries.push(DirEntry {
                ino,
                offset,
                kind,
                name: l.name.clone(),
            });
        }
    }

    // ----- files -----

    /// Open a file for reading. Writes are not supported yet (EROFS).
    pub async fn open(&self, ino: u64, flags: i32) -> Result<Opened> {
        let inode = self.inodes.get(ino)?;
        if inode.kind == Kind::Dir {
            return Err(Error::IsDir(inode.key.clone()));
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return self.open_write(&inode, flags).await;
        }
        if self.writer(ino).is_some() {
            return Ok(Opened {
                fh: self.add_reader(ino, None),
                keep_cache: false,
            });
        }
        // Close-to-open: revalidate unless attributes are fresh.
        let (mut meta, mut etag, mut size, fresh) = {
            let s = inode.state.lock();
            let etag = s
                .meta
                .as_ref()
                .map(|m| m.etag.clone())
                .or_else(|| s.listed_etag.clone())
                .filter(|e| !e.is_empty());
            (
                s.meta.clone(),
                etag,
                s.stat.size,
                Instant::now() < s.valid_until,
            )
        };
        if !fresh || etag.is_none() {
            let a = self.refresh(&inode).await?;
            meta = inode.state.lock().meta.clone();
            etag = meta.as_ref().map(|m| m.etag.clone());
            size = a.stat.size;
        }
        if meta.as_deref().is_some_and(attr::unreadable) {
            // A finished restore changes neither the ETag nor the size, so no listing
            // shows it: ask S3 again before refusing.
            self.meta.invalidate(&inode.key).await;
            if let Some(m) = self.meta.head(&inode.key).await? {
                inode.state.lock().meta = Some(m.clone());
                etag = Some(m.etag.clone());
                meta = Some(m);
            }
        }
        let etag = etag.unwrap_or_default();
        if let Some(m) = &meta {
            if attr::unreadable(m) {
                let how = if m.restore.is_some() {
                    "its restore is still in progress".to_string()
                } else {
                    format!(
                        "restore it first: setfattr -n user.s3.restore -v DAYS {}",
                        inode.key
                    )
                };
                warn!(key = %inode.key, storage_class = m.props.storage_class.as_deref().unwrap_or("?"), "object is archived and cannot be read yet: {how}");
                return Err(Error::Archived {
                    key: inode.key.clone(),
                    class: m.props.storage_class.clone().unwrap_or_else(|| "?".into()),
                    action: "read",
                });
            }
        }
        let keep_cache = {
            let mut s = inode.state.lock();
            let same = s.last_open_etag.as_deref() == Some(etag.as_str());
            s.last_open_etag = Some(etag.clone());
            if s.local_etag.as_deref().is_some_and(|l| l != etag) {
                // Replaced elsewhere since this mount uploaded it: readers must not move
                // on to this mount's version any more.
                s.local_etag = None;
            }
            same
        };
        if !keep_cache {
            // The kernel clears the page cache on this reply: no push of older data may
            // land after that.
            self.new_data_generation(&inode).await;
        }
        let h = Arc::new(ReadHandle::new(inode.ino, &inode.key, &etag, size));
        Ok(Opened {
            fh: self.add_reader(ino, Some(h)),
            keep_cache,
        })
    }

    fn add_reader(&self, ino: u64, h: Option<Arc<ReadHandle>>) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.files.lock().insert(
            fh,
            Arc::new(OpenFile {
                ino,
                writable: false,
                reader: Mutex::new(h),
                opener: Default::default(),
            }),
        );
        fh
    }

    /// The reader of an open file: a new one when this mount uploaded a new version
    /// since (read-your-writes), or when the file was opened while being written.
    fn reader_of(&self, f: &OpenFile) -> Result<Arc<ReadHandle>> {
        let inode = self.inodes.get(f.ino)?;
        let (local, etag, size) = {
            let s = inode.state.lock();
            let etag = s
                .meta
                .as_ref()
                .map(|m| m.etag.clone())
                .or_else(|| s.listed_etag.clone());
            (s.local_etag.clone(), etag, s.stat.size)
        };
        let mut r = f.reader.lock();
        let stale = match (&*r, &local) {
            (None, _) => true,
            (Some(h), Some(l)) => &*h.etag != l.as_str(),
            (Some(_), None) => false,
        };
        if stale {
            let etag = local.or(etag).unwrap_or_default();
            *r = Some(Arc::new(ReadHandle::new(f.ino, &inode.key, &etag, size)));
        }
        Ok(r.clone().expect("set above"))
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes> {
        Ok(self.read_offering(fh, offset, size).await?.0)
    }

    /// [`read`](Self::read), with the blocks it fetched from S3 beyond what was asked,
    /// for the kernel's page cache (see [`offer_pages`](Self::offer_pages)).
    pub async fn read_offering(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<(Bytes, Vec<PageOffer>)> {
        let f = self.open_file(fh)?;
        if let Some(r) = self.read_via_writer(f.ino, f.writable, offset, size).await {
            return Ok((r?, Vec::new()));
        }
        let generation = self.data_generation(f.ino);
        let h = self.reader_of(&f)?;
        let r = h.read_fetching(&self.reader, offset, size).await;
        if r.is_err() {
            // The object may have changed: the next open must ask S3 again.
            self.meta.invalidate(&h.key).await;
            if let Ok(inode) = self.inodes.get(h.ino) {
                inode.state.lock().valid_until = Instant::now();
            }
        }
        let (data, fresh) = r?;
        let offers = match generation {
            Some(g) if !fresh.is_empty() => self.offers(f.ino, &h.etag, g, fresh),
            _ => Vec::new(),
        };
        Ok((data, offers))
    }

    pub async fn readlink(&self, ino: u64) -> Result<String> {
        let inode = self.inodes.get(ino)?;
        if inode.kind != Kind::Symlink {
            return Err(Error::Invalid(format!("{}: not a symlink", inode.key)));
        }
        if let Some(t) = inode.state.lock().symlink_target.clone() {
            return Ok(t);
        }
        let size = inode.stat().size.min(4096);
        let body = self
            .store
            .get_range(&inode.key, 0..size, None)
            .await
            .map_err(Error::from)?;
        let target = String::from_utf8(body.to_vec())
            .map_err(|_| Error::Failed(format!("{}: symlink target is not UTF-8", inode.key)))?;
        inode.state.lock().symlink_target = Some(target.clone());
        Ok(target)
    }

    // ----- xattrs -----

    /// The metadata xattrs come from: the object, or a directory's marker.
    async fn xattr_meta(
        &self,
        inode: &Arc<Inode>,
    ) -> Result<Option<Arc<crate::store::ObjectMeta>>> {
        if inode.ino == ROOT_INO && inode.key.is_empty() {
            return Ok(None);
        }
        let m = self.meta.head(&inode.key).await?;
        if m.is_none() && inode.kind != Kind::Dir {
            return Err(Error::NotFound(inode.key.to_string()));
        }
        Ok(m)
    }

    pub async fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        let inode = self.inodes.get(ino)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::NoAttribute("no such attribute".into()))?;
        if ino == ROOT_INO && name == STATS_XATTR {
            if let Some(s) = &self.stats {
                return Ok(s.to_json().into_bytes());
            }
        }
        if ino == ROOT_INO && name == TARGET_XATTR {
            if let Some(t) = &self.cfg.mount_target {
                return Ok(t.clone().into_bytes());
            }
        }
        if ino == ROOT_INO && name == INODES_XATTR {
            let (all, idle) = self.inode_counts();
            return Ok(format!("{{\"inodes\":{all},\"idle\":{idle}}}").into_bytes());
        }
        // Only the user namespace maps to S3 metadata; security.*, system.* (ACLs) and
        // trusted.* never exist here, and `ls -l` asks for them on every file.
        if !name.starts_with("user.") {
            return Err(Error::NoAttribute(format!(
                "{}: no attribute {name}",
                inode.key
            )));
        }
        if name == PRESIGNED_XATTR && inode.kind == Kind::File {
            // Signed here with the mount's credentials: no request.
            let url = self
                .store
                .presign(
                    &inode.key,
                    crate::store::PresignMethod::Get,
                    self.cfg.presign_expires,
                )
                .await?;
            return Ok(url.into_bytes());
        }
        if let Some(tag) = name.strip_prefix(TAG_XATTR_PREFIX) {
            let tags = self.object_tags(&inode).await?;
            return tags
                .get(tag)
                .map(|v| v.clone().into_bytes())
                .ok_or_else(|| Error::NoAttribute(format!("{}: no tag {tag:?}", inode.key)));
        }
        let m = self.xattr_meta(&inode).await?;
        m.and_then(|m| attr::xattr_value(&m, name))
            .ok_or_else(|| Error::NoAttribute(format!("{}: no attribute {name}", inode.key)))
    }

    pub async fn listxattr(&self, ino: u64) -> Result<Vec<String>> {
        let inode = self.inodes.get(ino)?;
        let m = self.xattr_meta(&inode).await?;
        let mut names = m.as_deref().map(attr::xattr_names).unwrap_or_default();
        if inode.kind == Kind::File {
            names.push(PRESIGNED_XATTR.to_string());
            // Only a HEAD that counts tags costs a GetObjectTagging.
            if m.is_some_and(|m| m.tag_count > 0) {
                let tags = self.object_tags(&inode).await?;
                names.extend(tags.keys().map(|k| format!("{TAG_XATTR_PREFIX}{k}")));
            }
        }
        Ok(names)
    }

    /// A file's tags: its object's, or, for a new file not uploaded yet, what its first
    /// upload will set.
    async fn object_tags(&self, inode: &Arc<Inode>) -> Result<crate::store::Tags> {
        if inode.kind != Kind::File {
            return Ok(Default::default());
        }
        if let Some(w) = self.writer(inode.ino) {
            let g = w.lock().await;
            if g.etag.is_none() {
                return Ok(g.tags.clone());
            }
        }
        Ok((*self.meta.tags(&inode.key).await?).clone())
    }

    pub async fn setxattr(&self, ino: u64, name: &[u8], value: &[u8]) -> Result<()> {
        if ino == ROOT_INO && name == STATS_XATTR.as_bytes() {
            if let Some(s) = &self.stats {
                if value == b"reset" {
                    s.reset();
                    info!("request counters reset");
                    return Ok(());
                }
            }
            return Err(Error::Invalid("write 'reset' to reset the counters".into()));
        }
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::Invalid("attribute name is not UTF-8".into()))?;
        self.change_xattr(ino, name, Some(value)).await
    }

    pub async fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::NoAttribute("no such attribute".into()))?;
        self.change_xattr(ino, name, None).await
    }

    pub fn statfs(&self) -> StatFs {
        StatFs {
            blocks: 1 << 40,
            bfree: 1 << 40,
            bavail: 1 << 40,
            files: 1 << 32,
            ffree: 1 << 32,
            bsize: 4096,
            namelen: names::NAME_MAX as u32,
        }
    }

    /// What is open and what is still to be uploaded, now (for the metrics).
    pub fn gauges(&self) -> Gauges {
        let (mut dirty_files, mut pending_upload_bytes) = (0, 0);
        // Atomic loads only: the lock is held for no longer than the walk.
        for w in self.writers.lock().values() {
            let b = w.pending_bytes();
            dirty_files += u64::from(b > 0);
            pending_upload_bytes += b;
        }
        Gauges {
            open_files: self.files.lock().len() as u64,
            open_dirs: self.dirs.lock().len() as u64,
            dirty_files,
            pending_upload_bytes,
        }
    }

    /// Log the request counters (SIGUSR1, unmount).
    pub fn log_stats(&self, why: &str) {
        if let Some(s) = &self.stats {
            info!(event = why, "S3 requests: {}", s.summary());
        }
    }
}

#[cfg(test)]
mod account_tests;
#[cfg(test)]
mod copy_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod keep_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod write_tests;
