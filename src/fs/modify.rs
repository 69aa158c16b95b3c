//! Changing files: open for writing, create, write, flush/fsync/close (where uploads
//! become durable), setattr (truncate, chmod, chown, utimens) and user xattrs. Every
//! change to a file goes through its shared [`Writer`]; a change to a file nobody has
//! open takes a writer for the duration of the call and commits before returning.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tracing::{debug, error, info, warn};

use super::attr::{self, Kind, Stat};
use super::error::{Error, Result};
use super::inode::{far_future, Inode, ROOT_INO};
use super::names::{check_request_name, file_key};
use super::write::{Commit, Writer};
use super::{Attr, Filesystem, OpenFile, Opened};
use crate::store::ObjectStore;

pub(crate) type SharedWriter = Arc<WriterCell>;

/// One file's [`Writer`] and its locks. Whoever changes the file (write, truncate,
/// setattr, commit) holds `change` throughout, so changes are serialised and nothing
/// changes under an upload. The writer itself is behind a read-write lock: a commit
/// holds it shared while the parts go up, so reads of the file go on meanwhile.
pub(crate) struct WriterCell {
    change: Arc<tokio::sync::Mutex<()>>,
    state: Arc<tokio::sync::RwLock<Writer>>,
    /// [`Writer::pending_bytes`] as of the last change, readable without a lock (for
    /// the metrics: a commit may hold the writer for long).
    pending: Arc<AtomicU64>,
}

impl WriterCell {
    pub(crate) fn new(w: Writer) -> SharedWriter {
        Arc::new(WriterCell {
            change: Arc::new(tokio::sync::Mutex::new(())),
            pending: Arc::new(AtomicU64::new(w.pending_bytes())),
            state: Arc::new(tokio::sync::RwLock::new(w)),
        })
    }

    /// Bytes of this file not yet durably in S3, as of its last change.
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// The writer, to change it.
    pub(crate) async fn lock(&self) -> WriterGuard {
        let change = self.change.clone().lock_owned().await;
        let state = self.state.clone().write_owned().await;
        WriterGuard {
            _change: change,
            state: Some(state),
            cell: self.state.clone(),
            pending: self.pending.clone(),
        }
    }

    /// The writer, to change it, if nobody else is changing or committing it.
    pub(crate) fn try_lock(&self) -> Option<WriterGuard> {
        let change = self.change.clone().try_lock_owned().ok()?;
        let state = self.state.clone().try_write_owned().ok()?;
        Some(WriterGuard {
            _change: change,
            state: Some(state),
            cell: self.state.clone(),
            pending: self.pending.clone(),
        })
    }
}

/// A writer held to be changed (see [`WriterCell`]).
pub(crate) struct WriterGuard {
    _change: tokio::sync::OwnedMutexGuard<()>,
    /// `None` only while [`WriterGuard::commit`] holds the writer shared.
    state: Option<tokio::sync::OwnedRwLockWriteGuard<Writer>>,
    cell: Arc<tokio::sync::RwLock<Writer>>,
    pending: Arc<AtomicU64>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if let Some(w) = &self.state {
            self.pending.store(w.pending_bytes(), Ordering::Relaxed);
        }
    }
}

impl std::ops::Deref for WriterGuard {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        self.state.as_ref().expect("the writer is held")
    }
}

impl std::ops::DerefMut for WriterGuard {
    fn deref_mut(&mut self) -> &mut Writer {
        self.state.as_mut().expect("the writer is held")
    }
}

impl WriterGuard {
    /// [`Writer::commit`], but a staged file's parts go up with the writer held shared,
    /// so reads of the file are not held up by its upload. No change can slip in
    /// meanwhile: `change` stays held.
    pub(crate) async fn commit<S: ObjectStore>(
        &mut self,
        up: &Arc<super::upload::Uploader<S>>,
    ) -> Result<Option<String>> {
        let job = match self.begin_commit(up).await? {
            Commit::Done(etag) => return Ok(etag),
            Commit::Staged(job) => job,
        };
        let shared = self.state.take().expect("the writer is held").downgrade();
        let r = shared.send_staged(up, &job).await;
        drop(shared);
        self.state = Some(self.cell.clone().write_owned().await);
        self.end_staged(*job, r)
    }
}

/// The owner of a new file: the requesting process's uid and gid.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Attribute changes of a setattr.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

impl<S: ObjectStore> Filesystem<S> {
    pub(crate) fn writer(&self, ino: u64) -> Option<SharedWriter> {
        self.writers.lock().get(&ino).cloned()
    }

    /// [`check_writable`](Self::check_writable) for a change at `key`.
    pub(crate) fn check_writable_at(&self, key: &str) -> Result<()> {
        if self
            .cfg
            .read_only_prefix
            .as_deref()
            .is_some_and(|p| key.starts_with(p))
        {
            return Err(Error::ReadOnly);
        }
        self.check_writable()
    }

    /// In an all-buckets mount the root holds only buckets: no file, symlink or special
    /// file is made there (EPERM).
    pub(crate) fn check_not_at_account_root(&self, parent: u64, name: &[u8]) -> Result<()> {
        if self.cfg.all_buckets && parent == ROOT_INO {
            return Err(Error::NotPermitted(format!(
                "{}: the root of an all-buckets mount holds only buckets (directories)",
                String::from_utf8_lossy(name)
            )));
        }
        Ok(())
    }

    /// Whether two keys are in one bucket (always, but in an all-buckets mount).
    pub(crate) fn same_bucket(&self, a: &str, b: &str) -> bool {
        let bucket = |k: &str| k.split('/').next().unwrap_or("").to_string();
        !self.cfg.all_buckets || bucket(a) == bucket(b)
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.cfg.read_only
            || self
                .writes_refused
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Show a writer's attributes on its inode (no request while it is open).
    pub(super) fn mirror(&self, ino: u64, w: &Writer) {
        if let Ok(inode) = self.inodes.get(ino) {
            let mut s = inode.state.lock();
            s.stat = w.stat;
            s.valid_until = far_future();
        }
    }

    /// Record an upload of `ino` with ETag `etag`.
    /// A listing of the parent that was requested before this upload landed may lack
    /// the file, so the parent's listing is marked changed under its name (as at create):
    /// lookups ask again and the next readdir lists again.
    pub(super) async fn uploaded(&self, ino: u64, key: &str, etag: &str, w: &Writer) {
        self.meta.invalidate(key).await;
        if let Ok(inode) = self.inodes.get(ino) {
            {
                let mut s = inode.state.lock();
                s.stat = w.stat;
                s.meta = None;
                s.listed_etag = Some(etag.to_string());
                s.local_etag = Some(etag.to_string());
            }
            if let Ok(dir) = self.inodes.get(inode.parent) {
                self.dir_changed(&dir, &inode.name);
            }
        }
    }

    fn add_file(&self, ino: u64, writable: bool) -> u64 {
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.files.lock().insert(
            fh,
            Arc::new(OpenFile {
                ino,
                writable,
                reader: Mutex::new(None),
                opener: Default::default(),
            }),
        );
        fh
    }

    pub(crate) fn open_file(&self, fh: u64) -> Result<Arc<OpenFile>> {
        self.files
            .lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::BadHandle(format!("no file handle {fh}")))
    }

    /// The writer of `inode`, created if needed, with one more handle on it. With
    /// `truncate`, the content starts empty (O_TRUNC) and the old bytes are never read.
    pub(crate) async fn take_writer(
        &self,
        inode: &Arc<Inode>,
        truncate: bool,
    ) -> Result<SharedWriter> {
        loop {
            if let Some(w) = self.writer(inode.ino) {
                let mut g = w.lock().await;
                if g.handles == 0 && !self.writers_has(inode.ino, &w) {
                    // Closed and removed while we waited: make a new one.
                    continue;
                }
                g.handles += 1;
                if truncate {
                    g.truncate(&self.uploader, 0).await?;
                }
                self.mirror(inode.ino, &g);
                drop(g);
                return Ok(w);
            }
            let w = self.new_writer(inode, truncate).await?;
            let w = WriterCell::new(w);
            let inserted = {
                let mut map = self.writers.lock();
                !map.contains_key(&inode.ino) && map.insert(inode.ino, w.clone()).is_none()
            };
            if !inserted {
                continue;
            }
            // Programs may write through the page cache from now on: no push of data
            // read before may land on it.
            self.new_data_generation(inode).await;
            let mut g = w.lock().await;
            g.handles += 1;
            self.mirror(inode.ino, &g);
            drop(g);
            return Ok(w);
        }
    }

    fn writers_has(&self, ino: u64, w: &SharedWriter) -> bool {
        self.writers
            .lock()
            .get(&ino)
            .is_some_and(|x| Arc::ptr_eq(x, w))
    }

    async fn new_writer(&self, inode: &Arc<Inode>, truncate: bool) -> Result<Writer> {
        if inode.kind == Kind::Dir {
            return Err(Error::IsDir(inode.key.clone()));
        }
        // The object's content type and user metadata travel with the new upload.
        let m = self
            .meta
            .head(&inode.key)
            .await?
            .ok_or_else(|| Error::NotFound(inode.key.to_string()))?;
        let mut stat = inode.stat();
        if !self.posix() {
            stat =
                attr::stat_from_meta(&m, Kind::File, self.cfg.metadata_source, &self.cfg.defaults);
        }
        stat.size = m.size;
        let user = attr::user_xattrs(&m);
        let tags = self.tags_to_keep(&inode.key, &m).await?;
        if truncate {
            let mut w = Writer::new_empty(
                &inode.key,
                stat,
                m.content_type.clone(),
                user,
                Some(m.etag.clone()),
            );
            w.props = m.props.clone();
            w.tags = tags;
            return Ok(w);
        }
        if attr::unreadable(&m) {
            return Err(Error::Archived {
                key: inode.key.clone(),
                class: m.props.storage_class.clone().unwrap_or_else(|| "?".into()),
                action: "changed",
            });
        }
        let mut w = Writer::existing(
            &inode.key,
            stat,
            m.content_type.clone(),
            user,
            m.etag.clone(),
        );
        w.props = m.props.clone();
        w.tags = tags;
        Ok(w)
    }

    /// The tags a rewrite of `key` (whose HEAD is `m`) must carry: one GetObjectTagging
    /// when the HEAD counts any. A mount whose credentials may not read tags still
    /// writes, and says the tags are lost.
    pub(crate) async fn tags_to_keep(
        &self,
        key: &str,
        m: &crate::store::ObjectMeta,
    ) -> Result<crate::store::Tags> {
        if m.tag_count == 0 {
            return Ok(Default::default());
        }
        match self.meta.tags(key).await {
            Ok(t) => Ok((*t).clone()),
            Err(e) if e.is_access_denied() => {
                warn!(
                    key,
                    "the object's tags cannot be read, so a rewrite drops them: {}", e
                );
                Ok(Default::default())
            }
            Err(e) => Err(e),
        }
    }

    /// open() with write access or O_TRUNC.
    pub(crate) async fn open_write(&self, inode: &Arc<Inode>, flags: i32) -> Result<Opened> {
        self.check_writable_at(&inode.key)?;
        if inode.kind == Kind::Symlink {
            return Err(Error::IsSymlink(inode.key.clone()));
        }
        let truncate = flags & libc::O_TRUNC != 0;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        self.take_writer(inode, truncate).await?;
        let fh = self.add_file(inode.ino, true);
        if !writable {
            // O_RDONLY|O_TRUNC: the truncation is the only change; commit it now.
            self.files.lock().remove(&fh);
            self.release_writer(inode.ino).await?;
            let fh = self.add_file(inode.ino, false);
            return Ok(Opened {
                fh,
                keep_cache: false,
            });
        }
        Ok(Opened {
            fh,
            keep_cache: false,
        })
    }

    /// Create and open a new file. Nothing is sent to S3 until it is flushed.
    pub async fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        owner: Owner,
    ) -> Result<(Attr, Opened)> {
        self.check_writable_at(&self.inodes.get(parent)?.key)?;
        self.check_not_at_account_root(parent, name)?;
        let name = check_request_name(name)?;
        let dir = self.dir_inode(parent)?;
        let key = file_key(&dir.key, name)?;
        let now = SystemTime::now();
        let stat = Stat {
            kind: Kind::File,
            size: 0,
            perm: (mode & 0o7777) as u16,
            uid: owner.uid,
            gid: owner.gid,
            atime: now,
            mtime: now,
            ctime: now,
        };
        let inode = self.inodes.insert(parent, name, &key, stat, far_future());
        let mut w = Writer::new_empty(
            &key,
            stat,
            Some(attr::guess_content_type(name)),
            HashMap::new(),
            None,
        );
        w.props.storage_class = self.cfg.write.storage_class.clone();
        w.handles = 1;
        self.writers.lock().insert(inode.ino, WriterCell::new(w));
        self.dir_changed(&dir, name);
        self.meta.invalidate(&key).await;
        let fh = self.add_file(inode.ino, true);
        Ok((
            Attr {
                ino: inode.ino,
                stat,
            },
            Opened {
                fh,
                keep_cache: false,
            },
        ))
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let f = self.open_file(fh)?;
        if !f.writable {
            return Err(Error::BadHandle("file is not open for writing".into()));
        }
        let w = self
            .writer(f.ino)
            .ok_or_else(|| Error::BadHandle("file is no longer open for writing".into()))?;
        let mut g = w.lock().await;
        self.check_size(&g.key, offset.checked_add(data.len() as u64))?;
        let r = g.write(&self.uploader, offset, data).await;
        self.mirror(f.ino, &g);
        if let Err(e) = &r {
            error!(key = %g.key, "write failed: {}", e);
        }
        r.map(|_| data.len() as u32)
    }

    /// EFBIG when a file of `key` would reach `end` bytes, beyond what S3 (or
    /// `--max-file-size`) stores: refused at once, before anything is staged or sent.
    fn check_size(&self, key: &str, end: Option<u64>) -> Result<()> {
        let max = self.uploader.cfg.max_file_size;
        match end {
            Some(n) if n <= max => Ok(()),
            _ => Err(Error::FileTooBig {
                key: key.to_string(),
                max,
            }),
        }
    }

    /// Upload what the file holds now (close's flush, fsync). The error, if any, is
    /// logged with the key and returned.
    pub(super) async fn commit_writer(&self, ino: u64, w: &mut WriterGuard) -> Result<()> {
        match w.commit(&self.uploader).await {
            Ok(Some(etag)) => {
                let key = w.key.clone();
                self.uploaded(ino, &key, &etag, w).await;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                error!(key = %w.key, "upload failed: {}", e);
                if self.cfg.anonymous
                    && e.is_access_denied()
                    && !self
                        .writes_refused
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    warn!(key = %w.key, "the bucket takes no anonymous writes: the mount is read-only from now on");
                }
                Err(Error::upload(&w.key, e))
            }
        }
    }

    /// Whether handle `fh` writes a file that is empty and unwritten since it was created
    /// or truncated (a commit now would upload an empty object). False when unsure.
    pub fn holds_nothing_new(&self, fh: u64) -> bool {
        let Ok(f) = self.open_file(fh) else {
            return false;
        };
        let Some(w) = self.writer(f.ino).filter(|_| f.writable) else {
            return false;
        };
        w.try_lock().is_some_and(|g| g.holds_nothing_new())
    }

    /// Record which process (thread group id) opened handle `fh`.
    pub fn set_opener(&self, fh: u64, tgid: u32) {
        if let Ok(f) = self.open_file(fh) {
            f.opener.store(tgid, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// fsync, and close's flush by the process that opened the file: the file's content
    /// is in S3 when this returns Ok. A handle open only for reading commits nothing:
    /// its close must not publish what another handle is still writing.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        self.flush_from(fh, 0).await
    }

    /// Close's flush, sent by process `tgid` (0: unknown). The kernel flushes on every
    /// close of a descriptor, including a forked child's copy that it closes at exec or
    /// exit while the parent goes on writing (`subprocess`, `system()`): a flush from
    /// another process than the opener commits nothing, or it would publish a
    /// half-written file. The opener's own close, or the release after the last close
    /// anywhere, commits.
    pub async fn flush_from(&self, fh: u64, tgid: u32) -> Result<()> {
        let f = self.open_file(fh)?;
        if !f.writable {
            return Ok(());
        }
        let opener = f.opener.load(std::sync::atomic::Ordering::Relaxed);
        if opener != 0 && tgid != 0 && opener != tgid {
            debug!(
                ino = f.ino,
                opener, tgid, "flush from another process than the opener: nothing to commit"
            );
            return Ok(());
        }
        let Some(w) = self.writer(f.ino) else {
            return Ok(());
        };
        let mut g = w.lock().await;
        self.commit_writer(f.ino, &mut g).await
    }

    pub async fn release(&self, fh: u64) -> Result<()> {
        let f = self.files.lock().remove(&fh);
        match f {
            Some(f) if f.writable => self.release_writer(f.ino).await,
            _ => Ok(()),
        }
    }

    /// One handle less on the writer of `ino`; the last one commits and drops it. A final
    /// failure keeps the staging file and logs where it is.
    pub(crate) async fn release_writer(&self, ino: u64) -> Result<()> {
        let Some(w) = self.writer(ino) else {
            return Ok(());
        };
        let mut g = w.lock().await;
        g.handles = g.handles.saturating_sub(1);
        if g.handles > 0 {
            return Ok(());
        }
        let r = if g.unlinked {
            g.discard(&self.uploader).await;
            Ok(())
        } else {
            let r = self.commit_writer(ino, &mut g).await;
            if r.is_err() {
                match g.keep_staging() {
                    Some(p) => {
                        error!(key = %g.key, staging = %p.display(), "upload failed at close: the data is kept in the staging file")
                    }
                    None => error!(key = %g.key, "upload failed at close: the data is lost"),
                }
            }
            r
        };
        {
            let mut map = self.writers.lock();
            if map.get(&ino).is_some_and(|x| Arc::ptr_eq(x, &w)) {
                map.remove(&ino);
            }
        }
        if let Ok(inode) = self.inodes.get(ino) {
            inode.state.lock().valid_until = Instant::now() + self.cfg.metadata_ttl;
        }
        r
    }

    /// Read through the writer when the file is open for writing in this mount.
    /// `writable`: the reading handle may write too (see [`Writer::read`]).
    pub(crate) async fn read_via_writer(
        &self,
        ino: u64,
        writable: bool,
        offset: u64,
        size: u32,
    ) -> Option<Result<Bytes>> {
        let w = self.writer(ino)?;
        let mut g = match w.try_lock() {
            Some(g) => g,
            None => {
                // Being changed or committed: read what is there, without waiting for
                // an upload to end, unless the read needs the writer to itself.
                let shared = w.state.read().await;
                match shared
                    .read_shared(&self.uploader, offset, size, writable)
                    .await
                {
                    Ok(Some(b)) => return Some(Ok(b)),
                    Ok(None) => {}
                    Err(e) => {
                        error!(key = %shared.key, "read of a file open for writing failed: {}", e);
                        return Some(Err(e));
                    }
                }
                drop(shared);
                w.lock().await
            }
        };
        let r = g.read(&self.uploader, offset, size, writable).await;
        if let Err(e) = &r {
            error!(key = %g.key, "read of a file open for writing failed: {}", e);
        }
        Some(r)
    }

    /// chmod, chown, utimens, truncate.
    pub async fn setattr(&self, ino: u64, ch: SetAttr) -> Result<Attr> {
        let inode = self.inodes.get(ino)?;
        let nothing = ch.mode.is_none()
            && ch.uid.is_none()
            && ch.gid.is_none()
            && ch.size.is_none()
            && ch.atime.is_none()
            && ch.mtime.is_none();
        if nothing {
            return self.getattr(ino).await;
        }
        self.check_writable_at(&inode.key)?;
        if inode.kind == Kind::Dir {
            if ch.size.is_some() {
                return Err(Error::IsDir(inode.key.clone()));
            }
            return self.update_dir(&inode, |st, _, _| apply(st, &ch)).await;
        }
        if let Some(n) = ch.size {
            self.check_size(&inode.key, Some(n))?;
        }
        let w = self.take_writer(&inode, ch.size == Some(0)).await?;
        let r = async {
            let mut g = w.lock().await;
            if let Some(n) = ch.size {
                g.truncate(&self.uploader, n).await?;
            }
            if ch.mode.is_some()
                || ch.uid.is_some()
                || ch.gid.is_some()
                || ch.atime.is_some()
                || ch.mtime.is_some()
            {
                g.set_attrs(
                    ch.mode.map(|m| (m & 0o7777) as u16),
                    ch.uid,
                    ch.gid,
                    ch.atime,
                    ch.mtime,
                );
            }
            self.mirror(ino, &g);
            Ok::<Stat, Error>(g.stat)
        }
        .await;
        // A file nobody had open is committed before the call returns.
        let released = self.release_writer(ino).await;
        let stat = r?;
        released?;
        Ok(Attr { ino, stat })
    }

    /// Rewrite a directory's marker with changed attributes (creating the marker if
    /// the directory was implicit). The mount root of a whole bucket has no marker: its
    /// attributes change in memory only.
    pub(crate) async fn update_dir<F>(&self, inode: &Arc<Inode>, f: F) -> Result<Attr>
    where
        F: FnOnce(&mut Stat, &mut HashMap<String, String>, &mut Option<String>) -> Result<()>,
    {
        let marker = if inode.key.is_empty() {
            None
        } else {
            self.meta.head(&inode.key).await?
        };
        let mut stat = inode.stat();
        let mut user = marker
            .as_ref()
            .map(|m| attr::user_xattrs(m))
            .unwrap_or_default();
        let mut ct = marker
            .as_ref()
            .and_then(|m| m.content_type.clone())
            .or_else(|| Some("application/x-directory".to_string()));
        f(&mut stat, &mut user, &mut ct)?;
        stat.ctime = SystemTime::now();
        if !inode.key.is_empty() {
            let opts = attr::put_options(&stat, true, ct.as_deref(), &user);
            self.uploader
                .put(&inode.key, Bytes::new(), &opts)
                .await
                .inspect_err(|e| {
                    error!(key = %inode.key, "directory update failed: {}", e);
                })?;
            self.meta.invalidate(&inode.key).await;
        }
        inode.state.lock().stat = stat;
        Ok(Attr {
            ino: inode.ino,
            stat,
        })
    }

    /// Set or remove (`value` None) a `user.*` xattr; `user.s3.content_type` sets the
    /// Content-Type.
    pub(crate) async fn change_xattr(
        &self,
        ino: u64,
        name: &str,
        value: Option<&[u8]>,
    ) -> Result<()> {
        let inode = self.inodes.get(ino)?;
        self.check_writable_at(&inode.key)?;
        if let Some(tag) = name.strip_prefix(super::TAG_XATTR_PREFIX) {
            return self.change_tag(&inode, tag, value).await;
        }
        let Some(short) = name.strip_prefix("user.") else {
            return Err(Error::Unsupported(format!(
                "{}: only user.* attributes can be set, not {name}",
                inode.key
            )));
        };
        let value = match value {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v)
                    .ok()
                    .filter(|s| s.bytes().all(|b| (0x20..0x7f).contains(&b)))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "{}: {name}: S3 metadata values must be printable ASCII",
                            inode.key
                        ))
                    })?
                    .to_string(),
            ),
        };
        if short == "s3.restore" {
            return self.start_restore(&inode, value.as_deref()).await;
        }
        let content_type = short == "s3.content_type";
        let prop = attr::prop_field(&mut Default::default(), short).is_some();
        if prop {
            if inode.kind != Kind::File {
                return Err(Error::NotPermitted(format!(
                    "{}: {name} can only be set on a file",
                    inode.key
                )));
            }
            if let Some(v) = &value {
                if !attr::valid_prop(short, v) {
                    return Err(Error::Invalid(format!(
                        "{}: {name}: {v:?} is not a value S3 takes",
                        inode.key
                    )));
                }
            }
        }
        if !content_type && !prop {
            if short.starts_with("s3.") {
                return Err(Error::NotPermitted(format!(
                    "{}: {name} is read-only",
                    inode.key
                )));
            }
            let ok = !short.is_empty()
                && short
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && !attr::POSIX_META.contains(&short.to_ascii_lowercase().as_str());
            if !ok {
                return Err(Error::Invalid(format!(
                    "{}: {name}: S3 metadata names are letters, digits, '-', '_' and '.'",
                    inode.key
                )));
            }
        }
        let short = short.to_ascii_lowercase();
        let apply = |user: &mut HashMap<String, String>, ct: &mut Option<String>| -> Result<()> {
            if content_type {
                *ct = value.clone();
                return Ok(());
            }
            match &value {
                Some(v) => {
                    let others: usize = user
                        .iter()
                        .filter(|(k, _)| **k != short)
                        .map(|(k, v)| k.len() + v.len())
                        .sum();
                    if others + short.len() + v.len() > attr::USER_META_ROOM {
                        return Err(Error::MetadataFull(format!(
                            "{}: {name}: S3 keeps at most {} bytes of user metadata per \
                                 object ({} are taken by the file's mode, owner and times)",
                            inode.key,
                            attr::USER_META_LIMIT,
                            attr::USER_META_LIMIT - attr::USER_META_ROOM
                        )));
                    }
                    user.insert(short.clone(), v.clone());
                }
                None => {
                    if user.remove(&short).is_none() {
                        return Err(Error::NoAttribute(format!(
                            "{}: no attribute {name}",
                            inode.key
                        )));
                    }
                }
            }
            Ok(())
        };
        if inode.kind == Kind::Dir {
            if inode.key.is_empty() {
                return Err(Error::NotPermitted(
                    "the bucket root has no metadata".into(),
                ));
            }
            self.update_dir(&inode, |_, u, ct| apply(u, ct)).await?;
            return Ok(());
        }
        let w = self.take_writer(&inode, false).await?;
        let r = async {
            let mut g = w.lock().await;
            let g = &mut *g;
            match attr::prop_field(&mut g.props, &short) {
                Some(field) if value.is_none() && field.is_none() => {
                    return Err(Error::NoAttribute(format!(
                        "{}: no attribute {name}",
                        g.key
                    )));
                }
                Some(field) => *field = value.clone(),
                None => apply(&mut g.user, &mut g.content_type)?,
            }
            g.meta_dirty = true;
            Ok::<(), Error>(())
        }
        .await;
        let released = self.release_writer(ino).await;
        r?;
        released
    }

    /// `setfattr -n user.s3.restore -v DAYS[,TIER]`: one RestoreObject of an archived
    /// file. S3 takes hours; `user.s3.restore` says `ongoing` until the copy is readable,
    /// and the next open after that reads it.
    async fn start_restore(&self, inode: &Arc<Inode>, value: Option<&str>) -> Result<()> {
        let key = &inode.key;
        if inode.kind != Kind::File {
            return Err(Error::NotPermitted(format!(
                "{key}: only files can be restored"
            )));
        }
        let Some(v) = value else {
            return Err(Error::NotPermitted(format!(
                "{key}: a restore cannot be removed (it expires by itself)"
            )));
        };
        let (days, tier) = attr::parse_restore(v).ok_or_else(|| {
            Error::Invalid(format!(
                "{key}: user.s3.restore takes DAYS[,TIER] (1 to 36500 days; Standard, Bulk or Expedited), not {v:?}"
            ))
        })?;
        let r = self.store.restore(key, days, tier).await;
        self.meta.invalidate(key).await;
        match r {
            Ok(()) => {
                info!(key = %key, days, tier = tier.unwrap_or("default"), "restore requested");
                Ok(())
            }
            Err(e) => {
                error!(key = %key, "restore request failed: {}", e);
                Err(e.into())
            }
        }
    }

    /// Set or remove (`value` None) the tag `tag` of a file: one GetObjectTagging and one
    /// PutObjectTagging (DeleteObjectTagging for the last tag). A file open for writing
    /// also keeps the new set for its next upload; a new file not uploaded yet gets it
    /// with its first upload.
    async fn change_tag(&self, inode: &Arc<Inode>, tag: &str, value: Option<&[u8]>) -> Result<()> {
        let key = &inode.key;
        if inode.kind != Kind::File {
            return Err(Error::NotPermitted(format!(
                "{key}: tags can only be set on a file"
            )));
        }
        let value = match value {
            None => None,
            Some(v) => Some(std::str::from_utf8(v).map_err(|_| {
                Error::Invalid(format!("{key}: the value of tag {tag:?} is not UTF-8"))
            })?),
        };
        attr::check_tag(key, tag, value)?;
        let w = self.writer(inode.ino);
        let mut guard = match &w {
            Some(w) => Some(w.lock().await),
            None => None,
        };
        let uploaded = guard.as_ref().is_none_or(|g| g.etag.is_some());
        let mut tags = match guard.as_deref() {
            Some(g) if !uploaded => g.tags.clone(),
            _ => (*self.meta.tags(key).await?).clone(),
        };
        match value {
            Some(v) => {
                tags.insert(tag.to_string(), v.to_string());
                if tags.len() > crate::store::MAX_TAGS {
                    return Err(Error::MetadataFull(format!(
                        "{key}: S3 keeps at most {} tags per object",
                        crate::store::MAX_TAGS
                    )));
                }
            }
            None => {
                if tags.remove(tag).is_none() {
                    return Err(Error::NoAttribute(format!("{key}: no tag {tag:?}")));
                }
            }
        }
        if uploaded {
            let r = self.store.set_tags(key, &tags).await;
            if let Err(e) = r {
                error!(key = %key, tag, "tag change failed: {}", e);
                self.meta.invalidate(key).await;
                return Err(e.into());
            }
            self.meta.tags_changed(key, tags.clone()).await;
        }
        if let Some(g) = guard.as_deref_mut() {
            g.tags = tags;
        }
        Ok(())
    }

    /// Every file open for writing, taken out of the map so its lock is not held while
    /// each writer is awaited.
    pub(crate) fn open_writers(&self) -> Vec<(u64, SharedWriter)> {
        self.writers
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Finish every pending upload (unmount, SIGTERM). Failures are logged with the key
    /// and where the data was kept.
    pub async fn drain(&self) -> usize {
        let mut failed = 0;
        for (ino, w) in self.open_writers() {
            let mut g = w.lock().await;
            if !g.is_dirty() {
                continue;
            }
            info!(key = %g.key, "finishing upload before exit");
            if self.commit_writer(ino, &mut g).await.is_err() {
                failed += 1;
                match g.keep_staging() {
                    Some(p) => {
                        error!(key = %g.key, staging = %p.display(), "upload failed at exit: the data is kept in the staging file")
                    }
                    None => error!(key = %g.key, "upload failed at exit: the data is lost"),
                }
            }
        }
        failed
    }
}

fn apply(st: &mut Stat, ch: &SetAttr) -> Result<()> {
    if let Some(m) = ch.mode {
        st.perm = (m & 0o7777) as u16;
    }
    if let Some(u) = ch.uid {
        st.uid = u;
    }
    if let Some(g) = ch.gid {
        st.gid = g;
    }
    if let Some(t) = ch.atime {
        st.atime = t;
    }
    if let Some(t) = ch.mtime {
        st.mtime = t;
    }
    Ok(())
}
