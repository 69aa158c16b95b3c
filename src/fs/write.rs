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
        sent_opts: Option<PutOptions>,
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
            data: Data::fresh(),
            data_dirty: true,
            meta_dirty: false,
            times_explicit: false,
            etag,
            unlinked: false,
            broken: None,
            handles: 0,
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
        }
    }

    /// Created or truncated to empty and not written since: a commit now would upload
    /// an empty object that a later write replaces at once.
    pub fn holds_nothing_new(&self) -> bool {
        let empty_stream = matches!(&self.data, Data::Stream { upload, .. } if upload.written() == 0 && !upload.started());
        empty_stream && self.stat.size == 0 && self.data_dirty && !self.unlinked
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
        attr::put_options(
            &self.stat,
            with_times,
            self.content_type.as_deref(),
            &self.user,
        )
    }

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(m) => Err(Error::Failed(m.clone())),
            None => Ok(()),
        }
    }

    fn touch(&mut self) {
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
        if let Data::Stream { upload, sent_opts } = &mut self.data {
            if offset == upload.written() {
                if sent_opts.is_none() {
                    // Metadata goes with CreateMultipartUpload, which may happen now.
                    *sent_opts = Some(attr::put_options(
                        &self.stat,
                        self.times_explicit,
                        self.content_type.as_deref(),
                        &self.user,
                    ));
                }
                let opts = sent_opts.clone().unwrap_or_default();
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
                return Err(Error::Failed(format!(
                    "{}: bytes {offset}-{} were already uploaded while the file is being \
                     written by another handle; they can be read once it is closed",
                    self.key,
                    end - 1
                )));
            }
        }
        self.unstream(up).await?;
        let size = self.stat.size;
        let staged = self.staged_mut();
        staged.bytes(up, offset..end, size).await
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
    /// something was uploaded.
    pub async fn commit<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
    ) -> Result<Option<String>> {
        self.check()?;
        if !self.is_dirty() {
            return Ok(None);
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
                    return Ok(Some(etag));
                }
                Data::Stream { upload, sent_opts } => {
                    let upload = std::mem::take(upload);
                    let sent = sent_opts.take();
                    let started = upload.started();
                    let with_times = !started || self.times_explicit;
                    let opts = attr::put_options(
                        &self.stat,
                        with_times,
                        self.content_type.as_deref(),
                        &self.user,
                    );
                    // A stream still in memory leaves as one PutObject with today's
                    // attributes; a started one already sent its metadata.
                    let sent = match sent {
                        Some(s) if started => s,
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
                    let opts = attr::put_options(
                        &self.stat,
                        true,
                        self.content_type.as_deref(),
                        &self.user,
                    );
                    st.upload(up, &self.key, size, &opts).await?
                }
            }
        };
        // The object now is the file: it becomes the base of later changes.
        match &mut self.data {
            Data::Staged(st) => {
                st.base = Some(Base {
                    key: self.key.clone(),
                    etag: etag.clone(),
                    len: size,
                });
                st.written = RangeSet::new();
            }
            Data::Stream { .. } => {
                self.data = Data::Staged(Staged {
                    file: None,
                    base: Some(Base {
                        key: self.key.clone(),
                        etag: etag.clone(),
                        len: size,
                    }),
                    present: RangeSet::new(),
                    written: RangeSet::new(),
                });
            }
        }
        self.data_dirty = false;
        self.meta_dirty = false;
        self.etag = Some(etag.clone());
        Ok(Some(etag))
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
            (None, Some(base)) => {
                // Nothing local: the base's bytes, then zeros past its end.
                let mut out = Vec::with_capacity(len);
                let b_end = range.end.min(base.len);
                if range.start < b_end {
                    out.extend_from_slice(&Self::fetch(up, base, range.start..b_end).await?);
                }
                out.resize(len, 0);
                Ok(Bytes::from(out))
            }
            (None, None) => Ok(Bytes::from(vec![0u8; len])),
        }
    }

    /// Upload the whole file as `key`: one PutObject when it fits in one part, else a
    /// multipart upload in which parts the base still holds unchanged are copied
    /// server-side and only the others are sent.
    async fn upload<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        key: &str,
        size: u64,
        opts: &PutOptions,
    ) -> Result<String> {
        let ps = up.staged_part_size(size);
        if size <= ps {
            let body = self.bytes(up, 0..size, size).await?;
            return up.put(key, body, opts).await;
        }
        let ranges: Vec<Range<u64>> = (0..size.div_ceil(ps))
            .map(|i| i * ps..((i + 1) * ps).min(size))
            .collect();
        let base_len = self.base.as_ref().map_or(0, |b| b.len);
        let mut plan: Vec<(Range<u64>, Part)> = ranges
            .into_iter()
            .map(|r| {
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
        let holes = plan.iter().filter(|p| p.1 == Part::Zeros).count();
        // Holes are copied server-side from one zero object, so a file grown by
        // truncate or a far pwrite sends no zeros over the network. One hole is cheaper
        // sent than copied (the zero object costs a PUT of its size and a DELETE).
        let zeros = if holes >= 2 {
            up.put_zeros(key, ps).await?
        } else {
            None
        };
        if zeros.is_none() {
            for p in plan.iter_mut().filter(|p| p.1 == Part::Zeros) {
                p.1 = Part::Send;
            }
        }
        let r = self.upload_parts(up, key, opts, plan, zeros.as_ref()).await;
        if let Some((zkey, _)) = &zeros {
            up.delete_helper(zkey).await;
        }
        r
    }

    /// The multipart upload of [`Staged::upload`], part by part as `plan` says.
    async fn upload_parts<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        key: &str,
        opts: &PutOptions,
        plan: Vec<(Range<u64>, Part)>,
        zeros: Option<&(String, String)>,
    ) -> Result<String> {
        let count = |k: Part| plan.iter().filter(|p| p.1 == k).count();
        debug!(
            key,
            parts = plan.len(),
            copies = count(Part::Copy),
            holes = count(Part::Zeros),
            "uploading staged file"
        );
        let sends = count(Part::Send) > 0;
        // Parts to send come from the staging file: fetch what it lacks first (a file
        // only grown by truncate has none yet: past the base it reads as zeros).
        if self.file.is_none() && sends {
            self.file = Some(StagingFile::create(up.staging_path(key)).await?);
        }
        for (r, part) in &plan {
            if *part == Part::Send {
                self.ensure_present(up, r.clone()).await?;
            }
        }
        let upload_id = up
            .store
            .create_multipart(key, opts)
            .await
            .map_err(Error::from)?;
        let this = &*self;
        let id = upload_id.as_str();
        let results: Vec<StoreResult<CompletedPart>> =
            futures::stream::iter(plan.into_iter().enumerate())
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
