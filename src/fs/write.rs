//! Files open for writing. One [`Writer`] per inode is shared by every handle open on it,
//! so two handles see each other's writes. A file created or truncated to zero and then
//! written in order streams straight to S3 (see `upload::StreamUpload`); the first write
//! out of order, truncate or read of bytes already sent turns it into a staged file (see
//! `staging`), whose unchanged ranges are reused server-side at upload. `commit` makes
//! S3 hold exactly the file's current content and attributes: flush, fsync and close
//! call it, and report its error.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use tracing::{debug, warn};

use super::attr::{self, Stat};
use super::error::{Error, Result};
use super::staging::{RangeSet, StagingFile};
use super::upload::{StreamUpload, Uploader};
use crate::store::{CompletedPart, ObjectStore, PutOptions, StoreResult};

/// The object a staged file started from: its bytes `[0, len)` are the file's, except
/// where written locally.
#[derive(Debug, Clone)]
pub struct Base {
    pub key: String,
    pub etag: String,
    pub len: u64,
}

/// Where one part of a staged upload comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Unchanged in the base: UploadPartCopy from it.
    Copy,
    /// A hole past the base, never written: UploadPartCopy from a zero object.
    Zeros,
    /// Sent from the staging file.
    Send,
}

/// A staged commit between its steps (see [`Writer::begin_commit`]).
pub struct StagedJob {
    key: String,
    size: u64,
    opts: PutOptions,
    /// Each part and where it comes from; empty: one PutObject.
    plan: Vec<(Range<u64>, Part)>,
    /// The name of the zero object the holes are copied from, when there are holes.
    zeros_key: Option<String>,
}

/// What [`Writer::begin_commit`] leaves to do.
pub enum Commit {
    /// Nothing: the commit is over (with the new ETag when something was uploaded).
    Done(Option<String>),
    /// A staged file to send ([`Writer::send_staged`], then [`Writer::end_staged`]).
    Staged(Box<StagedJob>),
}

struct Staged {
    file: Option<StagingFile>,
    base: Option<Base>,
    /// Ranges whose bytes are in the staging file (written, or fetched from the base).
    present: RangeSet,
    /// Ranges written since the base.
    written: RangeSet,
}

enum Data {
    Stream {
        upload: StreamUpload,
        /// The metadata the multipart upload was created with (once it was).
        sent_opts: Option<Box<PutOptions>>,
    },
    Staged(Staged),
}

/// The shared state of one file open for writing.
pub struct Writer {
    pub key: String,
    pub stat: Stat,
    pub content_type: Option<String>,
    /// User xattrs (`x-amz-meta-*` other than the POSIX ones).
    pub user: HashMap<String, String>,
    /// Headers, storage class and encryption of the object this file rewrites: every
    /// upload of it keeps them.
    pub props: crate::store::Props,
    /// Tags of the object this file rewrites: every upload of it carries them (a
    /// CopyObject keeps them by itself).
    pub tags: crate::store::Tags,
    data: Data,
    /// The content differs from S3.
    pub data_dirty: bool,
    /// The attributes differ from S3.
    pub meta_dirty: bool,
    /// mtime/atime were set explicitly (utimens) since the last write.
    times_explicit: bool,
    /// ETag of the object this writer last saw or made; `None`: no object yet.
    pub etag: Option<String>,
    /// The name was removed: nothing is uploaded any more.
    pub unlinked: bool,
    /// A streamed upload failed and its bytes are gone: every later flush fails.
    broken: Option<String>,
    /// Open handles sharing this writer.
    pub handles: usize,
    /// The content was put there by a server-side copy of this source and not changed
    /// since (see `copy::copy_file_range`).
    pub copy_of: Option<CopyOf>,
}

/// The source of a server-side copy that a file's content is, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOf {
    pub ino: u64,
    pub etag: String,
}

impl Data {
    /// An empty stream: nothing written, nothing sent.
    fn fresh() -> Self {
        Data::Stream {
            upload: StreamUpload::new(),
            sent_opts: None,
        }
    }
}

impl Writer {
    /// A new, empty file (create, or open with O_TRUNC): streams if written in order.
    pub fn new_empty(
        key: &str,
        stat: Stat,
        content_type: Option<String>,
        user: HashMap<String, String>,
        etag: Option<String>,
    ) -> Self {
        let mut stat = stat;
        stat.size = 0;
        Writer {
            key: key.to_string(),
            stat,
            content_type,
            user,
            props: Default::default(),
            tags: Default::default(),
            data: Data::fresh(),
            data_dirty: true,
            meta_dirty: false,
            times_explicit: false,
            etag,
            unlinked: false,
            broken: None,
            handles: 0,
            copy_of: None,
        }
    }

    /// An existing object opened for writing: staged on its first change.
    pub fn existing(
        key: &str,
        stat: Stat,
        content_type: Option<String>,
        user: HashMap<String, String>,
        etag: String,
    ) -> Self {
        let base = Base {
            key: key.to_string(),
            etag: etag.clone(),
            len: stat.size,
        };
        Writer {
            key: key.to_string(),
            stat,
            content_type,
            user,
            props: Default::default(),
            tags: Default::default(),
            data: Data::Staged(Staged {
                file: None,
                base: Some(base),
                present: RangeSet::new(),
                written: RangeSet::new(),
            }),
            data_dirty: false,
            meta_dirty: false,
            times_explicit: false,
            etag: Some(etag),
            unlinked: false,
            broken: None,
            handles: 0,
            copy_of: None,
        }
    }

    /// The file is now object `etag` of `len` bytes, which a server-side copy of `from`
    /// put in S3 with this writer's attributes: nothing is left to upload.
    pub fn replaced_by_copy(&mut self, etag: String, len: u64, from: CopyOf) {
        self.data = Data::Staged(Staged {
            file: None,
            base: Some(Base {
                key: self.key.clone(),
                etag: etag.clone(),
                len,
            }),
            present: RangeSet::new(),
            written: RangeSet::new(),
        });
        self.stat.size = len;
        self.etag = Some(etag);
        self.data_dirty = false;
        self.meta_dirty = false;
        self.times_explicit = false;
        self.copy_of = Some(from);
    }

    /// Created or truncated to empty and not written since: a commit now would upload
    /// an empty object that a later write replaces at once.
    pub fn holds_nothing_new(&self) -> bool {
        let empty_stream = matches!(&self.data, Data::Stream { upload, .. } if upload.written() == 0 && !upload.started());
        empty_stream && self.stat.size == 0 && self.data_dirty && !self.unlinked
    }

    /// Bytes that a commit still has to make durable: the whole file while its data
    /// is changed and not yet in S3 (a streaming upload's parts sent so far included).
    pub fn pending_bytes(&self) -> u64 {
        if self.data_dirty && !self.unlinked {
            self.stat.size
        } else {
            0
        }
    }

    pub fn is_dirty(&self) -> bool {
        !self.unlinked && (self.data_dirty || self.meta_dirty)
    }

    /// Path of the staging file, if there is one.
    pub fn staging_path(&self) -> Option<std::path::PathBuf> {
        match &self.data {
            Data::Staged(s) => s.file.as_ref().map(|f| f.path().to_path_buf()),
            Data::Stream { .. } => None,
        }
    }

    /// The metadata an upload carries now.
    fn opts(&self, with_times: bool) -> PutOptions {
        PutOptions {
            props: self.props.clone(),
            tags: self.tags.clone(),
            ..attr::put_options(
                &self.stat,
                with_times,
                self.content_type.as_deref(),
                &self.user,
            )
        }
    }

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(m) => Err(Error::Failed(m.clone())),
            None => Ok(()),
        }
    }

    fn touch(&mut self) {
        self.copy_of = None;
        let now = SystemTime::now();
        self.stat.mtime = now;
        self.stat.ctime = now;
        self.times_explicit = false;
        self.data_dirty = true;
    }

    /// Set attributes (chmod, chown, utimens); uploaded with the next commit.
    pub fn set_attrs(
        &mut self,
        perm: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) {
        if let Some(p) = perm {
            self.stat.perm = p;
        }
        if let Some(u) = uid {
            self.stat.uid = u;
        }
        if let Some(g) = gid {
            self.stat.gid = g;
        }
        if let Some(t) = atime {
            self.stat.atime = t;
            self.times_explicit = true;
        }
        if let Some(t) = mtime {
            self.stat.mtime = t;
            self.times_explicit = true;
        }
        self.stat.ctime = SystemTime::now();
        self.meta_dirty = true;
    }

    pub async fn write<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        self.check()?;
        // Metadata goes with CreateMultipartUpload, which may happen now.
        let first_opts = match &self.data {
            Data::Stream { upload, sent_opts }
                if offset == upload.written() && sent_opts.is_none() =>
            {
                Some(Box::new(self.opts(self.times_explicit)))
            }
            _ => None,
        };
        if let Data::Stream { upload, sent_opts } = &mut self.data {
            if offset == upload.written() {
                if sent_opts.is_none() {
                    *sent_opts = first_opts;
                }
                let opts = sent_opts.as_deref().cloned().unwrap_or_default();
                let r = upload.append(up, &self.key, &opts, data).await;
                if let Err(e) = r {
                    self.fail_stream(up, &e).await;
                    return Err(e);
                }
                self.stat.size = offset + data.len() as u64;
                self.touch();
                return Ok(());
            }
        }
        if let Data::Stream { upload, .. } = &self.data {
            debug!(key = %self.key, offset, at = upload.written(), "write out of order: staging");
        }
        self.unstream(up).await?;
        let key = self.key.clone();
        let staged = self.staged_mut();
        let file = match &staged.file {
            Some(f) => f,
            None => {
                staged.file = Some(StagingFile::create(up.staging_path(&key)).await?);
                staged.file.as_ref().expect("just set")
            }
        };
        file.write_at(offset, Bytes::copy_from_slice(data)).await?;
        let r = offset..offset + data.len() as u64;
        staged.present.insert(r.clone());
        staged.written.insert(r);
        self.stat.size = self.stat.size.max(offset + data.len() as u64);
        self.touch();
        Ok(())
    }

    /// The file's bytes at `offset`. Bytes a streamed upload has already sent are no
    /// longer here: reading them completes the upload so far and stages the file, which
    /// makes the part written so far visible in S3. Only a handle that writes too
    /// (`may_publish`: a program reading back what it wrote) does that; a read-only
    /// handle gets EIO for them instead, so a reader never publishes a half-written file.
    pub async fn read<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        offset: u64,
        size: u32,
        may_publish: bool,
    ) -> Result<Bytes> {
        self.check()?;
        let end = (offset + u64::from(size)).min(self.stat.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        if let Data::Stream { upload, .. } = &self.data {
            if let Some(b) = upload.buffered(offset..end) {
                return Ok(b);
            }
            if upload.started() && !may_publish {
                return Err(self.already_sent(offset, end));
            }
        }
        self.unstream(up).await?;
        let size = self.stat.size;
        let staged = self.staged_mut();
        staged.bytes(up, offset..end, size).await
    }

    /// A read-only handle asked for bytes a streamed upload already sent.
    fn already_sent(&self, offset: u64, end: u64) -> Error {
        Error::Failed(format!(
            "{}: bytes {offset}-{} were already uploaded while the file is being \
             written by another handle; they can be read once it is closed",
            self.key,
            end - 1
        ))
    }

    pub async fn truncate<S: ObjectStore>(&mut self, up: &Arc<Uploader<S>>, n: u64) -> Result<()> {
        self.check()?;
        if n == 0 {
            // Nothing of the old content survives: start a fresh stream.
            if let Data::Stream { upload, .. } = std::mem::replace(&mut self.data, Data::fresh()) {
                upload.abort(up, &self.key).await;
            }
            self.stat.size = 0;
            self.touch();
            return Ok(());
        }
        if n == self.stat.size {
            self.touch();
            return Ok(());
        }
        self.unstream(up).await?;
        let staged = self.staged_mut();
        if let Some(f) = &staged.file {
            f.set_len(n).await?;
        }
        staged.present.truncate(n);
        staged.written.truncate(n);
        if let Some(b) = &mut staged.base {
            b.len = b.len.min(n);
        }
        self.stat.size = n;
        self.touch();
        Ok(())
    }

    fn staged_mut(&mut self) -> &mut Staged {
        match &mut self.data {
            Data::Staged(s) => s,
            Data::Stream { .. } => unreachable!("unstream() ran first"),
        }
    }

    /// A streamed upload failed: its bytes are gone, so the file can no longer be saved.
    async fn fail_stream<S: ObjectStore>(&mut self, up: &Arc<Uploader<S>>, e: &Error) {
        let old = std::mem::replace(&mut self.data, Data::fresh());
        if let Data::Stream { upload, .. } = old {
            upload.abort(up, &self.key).await;
        }
        self.broken = Some(format!(
            "upload of {} failed and its data is lost: {}",
            self.key, e
        ));
    }

    /// Turn a stream into a staged file. A stream still all in memory moves into a
    /// staging file; one whose parts already left is completed first and becomes the
    /// base of the staged file.
    async fn unstream<S: ObjectStore>(&mut self, up: &Arc<Uploader<S>>) -> Result<()> {
        let Data::Stream { upload, .. } = &mut self.data else {
            return Ok(());
        };
        if let Some(body) = upload.take_all() {
            let file = StagingFile::create(up.staging_path(&self.key)).await?;
            let len = body.len() as u64;
            file.write_at(0, body).await?;
            let mut present = RangeSet::new();
            present.insert(0..len);
            self.data = Data::Staged(Staged {
                file: Some(file),
                base: None,
                written: present.clone(),
                present,
            });
            return Ok(());
        }
        debug!(key = %self.key, "streamed file written out of order: completing the upload so far");
        self.commit(up).await?;
        Ok(())
    }

    /// Make S3 hold this file's content and attributes. Returns the new ETag when
    /// something was uploaded. All of it runs with the writer held exclusively; see
    /// [`Writer::begin_commit`] for the form that lets readers in while parts go up.
    pub async fn commit<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
    ) -> Result<Option<String>> {
        match self.begin_commit(up).await? {
            Commit::Done(etag) => Ok(etag),
            Commit::Staged(job) => {
                let r = self.send_staged(up, &job).await;
                self.end_staged(*job, r)
            }
        }
    }

    /// The first step of a commit, which needs the writer to itself. Attribute-only
    /// changes and streams are finished here (`Commit::Done`). A staged file gets its
    /// staging file ready (the base's bytes of every part to send fetched) and is left
    /// to [`Writer::send_staged`], which only reads the writer, so reads of the file
    /// can go on while its parts go up; [`Writer::end_staged`] then records the result.
    pub async fn begin_commit<S: ObjectStore>(&mut self, up: &Arc<Uploader<S>>) -> Result<Commit> {
        self.check()?;
        if !self.is_dirty() {
            return Ok(Commit::Done(None));
        }
        let size = self.stat.size;
        debug!(key = %self.key, size, data = self.data_dirty, meta = self.meta_dirty, "commit");
        let etag = if !self.data_dirty {
            // Attributes only: rewrite the metadata server-side.
            let etag = self.etag.clone().ok_or_else(|| {
                Error::Failed(format!("{}: no object to update the metadata of", self.key))
            })?;
            let opts = self.opts(true);
            up.copy_object(&self.key, Some(&etag), &self.key, size, &opts, true)
                .await?
        } else {
            let staged_opts = self.opts(true);
            match &mut self.data {
                Data::Stream { upload, sent_opts } if !upload.started() => {
                    // Still all in memory: one PutObject, and the bytes stay here so the
                    // file can go on streaming (close of a dup'ed fd, fsync of a log).
                    let body = upload.take_all().unwrap_or_default();
                    *upload = StreamUpload::with_bytes(&body);
                    *sent_opts = None;
                    let opts = self.opts(true);
                    let etag = up.put(&self.key, body, &opts).await?;
                    self.data_dirty = false;
                    self.meta_dirty = false;
                    self.etag = Some(etag.clone());
                    return Ok(Commit::Done(Some(etag)));
                }
                Data::Stream { upload, sent_opts } => {
                    let upload = std::mem::take(upload);
                    let sent = sent_opts.take();
                    let started = upload.started();
                    let with_times = !started || self.times_explicit;
                    let opts = self.opts(with_times);
                    // A stream still in memory leaves as one PutObject with today's
                    // attributes; a started one already sent its metadata.
                    let sent = match sent {
                        Some(s) if started => *s,
                        _ => opts.clone(),
                    };
                    let r = upload.finish(up, &self.key, &sent).await;
                    let mut etag = match r {
                        Ok(e) => e,
                        Err(e) => {
                            self.broken = Some(format!(
                                "upload of {} failed and its data is lost: {}",
                                self.key, e
                            ));
                            return Err(e);
                        }
                    };
                    if started && sent != opts {
                        // Attributes changed after the upload began (e.g. tar's utimens).
                        etag = up
                            .copy_object(&self.key, Some(&etag), &self.key, size, &opts, true)
                            .await?;
                    }
                    etag
                }
                Data::Staged(st) => {
                    let opts = staged_opts;
                    let (plan, zeros_key) = st.prepare(up, &self.key, size).await?;
                    return Ok(Commit::Staged(Box::new(StagedJob {
                        key: self.key.clone(),
                        size,
                        opts,
                        plan,
                        zeros_key,
                    })));
                }
            }
        };
        self.committed(size, &etag);
        Ok(Commit::Done(Some(etag)))
    }

    /// The upload step of a staged commit: reads the writer only.
    pub async fn send_staged<S: ObjectStore>(
        &self,
        up: &Arc<Uploader<S>>,
        job: &StagedJob,
    ) -> Result<String> {
        let Data::Staged(st) = &self.data else {
            return Err(Error::Failed(format!(
                "{}: the file changed during its upload",
                job.key
            )));
        };
        st.send(up, job).await
    }

    /// The last step of a staged commit: with its result, the writer to itself again.
    pub fn end_staged(&mut self, job: StagedJob, r: Result<String>) -> Result<Option<String>> {
        let etag = r?;
        self.committed(job.size, &etag);
        Ok(Some(etag))
    }

    /// The object now is the file (`size` bytes, ETag `etag`): it becomes the base of
    /// later changes.
    fn committed(&mut self, size: u64, etag: &str) {
        match &mut self.data {
            Data::Staged(st) => {
                st.base = Some(Base {
                    key: self.key.clone(),
                    etag: etag.to_string(),
                    len: size,
                });
                st.written = RangeSet::new();
            }
            Data::Stream { .. } => {
                self.data = Data::Staged(Staged {
                    file: None,
                    base: Some(Base {
                        key: self.key.clone(),
                        etag: etag.to_string(),
                        len: size,
                    }),
                    present: RangeSet::new(),
                    written: RangeSet::new(),
                });
            }
        }
        self.data_dirty = false;
        self.meta_dirty = false;
        self.etag = Some(etag.to_string());
    }

    /// Read without changing the writer, for a reader that finds the file being
    /// committed: `Ok(None)` when the read needs the writer to itself (bytes a stream
    /// already sent, to be staged first) or the base changed under it (the commit just
    /// replaced it); the caller then waits for the writer and reads as usual.
    pub async fn read_shared<S: ObjectStore>(
        &self,
        up: &Arc<Uploader<S>>,
        offset: u64,
        size: u32,
        may_publish: bool,
    ) -> Result<Option<Bytes>> {
        self.check()?;
        let end = (offset + u64::from(size)).min(self.stat.size);
        if offset >= end {
            return Ok(Some(Bytes::new()));
        }
        match &self.data {
            Data::Stream { upload, .. } => {
                if let Some(b) = upload.buffered(offset..end) {
                    return Ok(Some(b));
                }
                if upload.started() && !may_publish {
                    return Err(self.already_sent(offset, end));
                }
                Ok(None)
            }
            Data::Staged(st) => match st.peek(up, offset..end, self.stat.size).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.is_precondition_failed() => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// The object was renamed server-side to `key` with ETag `etag`.
    pub fn renamed(&mut self, key: &str, etag: Option<String>) {
        self.key = key.to_string();
        if let Some(e) = etag {
            if let Data::Staged(st) = &mut self.data {
                if let Some(b) = &mut st.base {
                    b.key = key.to_string();
                    b.etag = e.clone();
                }
            }
            self.etag = Some(e);
        }
    }

    /// Keep the staging file on disk (after a final failed upload); returns its path.
    pub fn keep_staging(&mut self) -> Option<std::path::PathBuf> {
        match &mut self.data {
            Data::Staged(s) => s.file.as_mut().map(|f| {
                f.keep();
                f.path().to_path_buf()
            }),
            Data::Stream { .. } => None,
        }
    }

    /// Drop the data without uploading (unlinked, or given up): abort a stream.
    pub async fn discard<S: ObjectStore>(&mut self, up: &Arc<Uploader<S>>) {
        let old = std::mem::replace(&mut self.data, Data::fresh());
        if let Data::Stream { upload, .. } = old {
            upload.abort(up, &self.key).await;
        } else {
            self.data = old;
        }
    }
}

impl Staged {
    /// Fetch `range` of the base (clipped to the base), checking its ETag and length.
    async fn fetch<S: ObjectStore>(
        up: &Arc<Uploader<S>>,
        base: &Base,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let want = range.end - range.start;
        let data = up
            .store
            .get_range(&base.key, range.clone(), Some(base.etag.as_str()))
            .await
            .map_err(Error::from)?;
        if data.len() as u64 != want {
            return Err(Error::Failed(format!(
                "get {} bytes {}-{}: short body ({} of {want} bytes)",
                base.key,
                range.start,
                range.end - 1,
                data.len()
            )));
        }
        Ok(data)
    }

    /// Bring the base's bytes of `range` into the staging file.
    async fn ensure_present<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        range: Range<u64>,
    ) -> Result<()> {
        let (Some(base), Some(file)) = (&self.base, &self.file) else {
            return Ok(());
        };
        let end = range.end.min(base.len);
        if range.start >= end {
            return Ok(());
        }
        let chunk = up.cfg.part_size;
        let mut pieces = Vec::new();
        for m in self.present.missing(range.start..end) {
            let mut a = m.start;
            while a < m.end {
                let b = (a + chunk).min(m.end);
                pieces.push(a..b);
                a = b;
            }
        }
        let fetched: Vec<Result<(Range<u64>, Bytes)>> = futures::stream::iter(pieces)
            .map(|r| async move { Self::fetch(up, base, r.clone()).await.map(|d| (r, d)) })
            .buffered(up.cfg.concurrency)
            .collect()
            .await;
        for f in fetched {
            let (r, d) = f?;
            file.write_at(r.start, d).await?;
            self.present.insert(r);
        }
        Ok(())
    }

    /// The file's bytes in `range` (within `size`).
    async fn bytes<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        range: Range<u64>,
        size: u64,
    ) -> Result<Bytes> {
        let range = range.start.min(size)..range.end.min(size);
        let len = (range.end - range.start) as usize;
        match (&self.file, &self.base) {
            (Some(_), _) => {
                self.ensure_present(up, range.clone()).await?;
                let f = self.file.as_ref().expect("checked");
                Ok(Bytes::from(f.read_at(range.start, len).await?))
            }
            // Nothing local: the base's bytes, then zeros past its end.
            (None, _) => self.base_bytes(up, range).await,
        }
    }

    /// The bytes of `range` (within `size`) without changing anything: what the
    /// staging file holds, the base's bytes it lacks fetched but not kept, zeros past.
    async fn peek<S: ObjectStore>(
        &self,
        up: &Arc<Uploader<S>>,
        range: Range<u64>,
        size: u64,
    ) -> Result<Bytes> {
        let range = range.start.min(size)..range.end.min(size);
        let len = (range.end - range.start) as usize;
        let Some(file) = &self.file else {
            return self.base_bytes(up, range).await;
        };
        let mut out = file.read_at(range.start, len).await?;
        out.resize(len, 0);
        if let Some(base) = &self.base {
            let within = range.start..range.end.min(base.len);
            if within.start < within.end {
                for m in self.present.missing(within) {
                    let d = Self::fetch(up, base, m.clone()).await?;
                    let at = (m.start - range.start) as usize;
                    out[at..at + d.len()].copy_from_slice(&d);
                }
            }
        }
        Ok(Bytes::from(out))
    }

    /// With no staging file: the base's bytes of `range`, then zeros past its end.
    async fn base_bytes<S: ObjectStore>(
        &self,
        up: &Arc<Uploader<S>>,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let len = (range.end - range.start) as usize;
        let mut out = Vec::with_capacity(len);
        if let Some(base) = &self.base {
            let b_end = range.end.min(base.len);
            if range.start < b_end {
                out.extend_from_slice(&Self::fetch(up, base, range.start..b_end).await?);
            }
        }
        out.resize(len, 0);
        Ok(Bytes::from(out))
    }

    /// Get ready to upload the whole file as `key`: decide where each part comes from
    /// and bring into the staging file the base's bytes of every part to send. One
    /// PutObject when it fits in one part (the plan is empty), else a multipart upload
    /// whose parts the base holds unchanged are copied server-side, whose holes are
    /// copied from a zero object, and whose other parts are sent.
    async fn prepare<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        key: &str,
        size: u64,
    ) -> Result<(Vec<(Range<u64>, Part)>, Option<String>)> {
        let ps = up.staged_part_size(size);
        if size <= ps {
            if self.file.is_some() {
                self.ensure_present(up, 0..size).await?;
            }
            return Ok((Vec::new(), None));
        }
        let base_len = self.base.as_ref().map_or(0, |b| b.len);
        let mut plan: Vec<(Range<u64>, Part)> = (0..size.div_ceil(ps))
            .map(|i| {
                let r = i * ps..((i + 1) * ps).min(size);
                let part = if self.written.overlaps(&r) {
                    Part::Send
                } else if r.end <= base_len {
                    Part::Copy
                } else if r.start >= base_len {
                    // Past the base and never written: a hole, all zeros.
                    Part::Zeros
                } else {
                    Part::Send
                };
                (r, part)
            })
            .collect();
        // Holes are copied server-side from one zero object, so a file grown by
        // truncate or a far pwrite sends no zeros over the network. One hole is cheaper
        // sent than copied (the zero object costs a PUT of its size and a DELETE).
        let holes = plan.iter().filter(|p| p.1 == Part::Zeros).count();
        let zeros_key = if holes >= 2 { up.zeros_key(key) } else { None };
        if zeros_key.is_none() {
            for p in plan.iter_mut().filter(|p| p.1 == Part::Zeros) {
                p.1 = Part::Send;
            }
        }
        // Parts to send come from the staging file: fetch what it lacks first (a file
        // only grown by truncate has none yet: past the base it reads as zeros).
        if self.file.is_none() && plan.iter().any(|p| p.1 == Part::Send) {
            self.file = Some(StagingFile::create(up.staging_path(key)).await?);
        }
        for (r, part) in &plan {
            if *part == Part::Send {
                self.ensure_present(up, r.clone()).await?;
            }
        }
        Ok((plan, zeros_key))
    }

    /// Upload the file as [`Staged::prepare`] planned it; reads `self` only.
    async fn send<S: ObjectStore>(&self, up: &Arc<Uploader<S>>, job: &StagedJob) -> Result<String> {
        let key = job.key.as_str();
        if job.plan.is_empty() {
            let body = self.peek(up, 0..job.size, job.size).await?;
            return up.put(key, body, &job.opts).await;
        }
        let count = |k: Part| job.plan.iter().filter(|p| p.1 == k).count();
        debug!(
            key,
            parts = job.plan.len(),
            copies = count(Part::Copy),
            holes = count(Part::Zeros),
            "uploading staged file ({} bytes)",
            job.size
        );
        let zeros = match &job.zeros_key {
            Some(zkey) => {
                let part_size = job.plan[0].0.end;
                let etag = up.put_zeros(zkey, part_size).await?;
                Some((zkey.clone(), etag))
            }
            None => None,
        };
        let r = self.send_parts(up, job, zeros.as_ref()).await;
        if let Some((zkey, _)) = &zeros {
            up.delete_helper(zkey).await;
        }
        r
    }

    /// The multipart upload of [`Staged::send`].
    async fn send_parts<S: ObjectStore>(
        &self,
        up: &Arc<Uploader<S>>,
        job: &StagedJob,
        zeros: Option<&(String, String)>,
    ) -> Result<String> {
        let key = job.key.as_str();
        let upload_id = up
            .store
            .create_multipart(key, &job.opts)
            .await
            .map_err(Error::from)?;
        let this = self;
        let id = upload_id.as_str();
        let results: Vec<StoreResult<CompletedPart>> =
            futures::stream::iter(job.plan.iter().cloned().enumerate())
                .map(|(i, (r, part))| async move {
                    let number = i as i32 + 1;
                    let etag = match part {
                        Part::Copy => {
                            let b = this.base.as_ref().expect("copyable parts have a base");
                            up.store
                                .upload_part_copy(key, id, number, &b.key, &b.etag, r.clone())
                                .await?
                        }
                        Part::Zeros => {
                            let (zkey, zetag) = zeros.expect("holes have a zero object");
                            up.store
                                .upload_part_copy(key, id, number, zkey, zetag, 0..r.end - r.start)
                                .await?
                        }
                        Part::Send => {
                            let _permit = up.reserve(r.end - r.start).await;
                            let body = match &this.file {
                                Some(f) => f
                                    .read_at(r.start, (r.end - r.start) as usize)
                                    .await
                                    .map(Bytes::from),
                                None => Err(Error::Failed("no staging file".into())),
                            };
                            let body = match body {
                                Ok(b) => b,
                                Err(e) => {
                                    return Err(crate::store::StoreError::new(
                                        crate::store::StoreErrorKind::Other,
                                        e.to_string(),
                                    )
                                    .with_source(e))
                                }
                            };
                            up.store.upload_part(key, id, number, body).await?
                        }
                    };
                    Ok(CompletedPart { number, etag })
                })
                .buffered(up.cfg.concurrency)
                .collect()
                .await;
        let r = up.finish(key, &upload_id, results).await;
        if let Err(e) = &r {
            warn!(key, "upload failed: {}", e);
        }
        r
    }
}
