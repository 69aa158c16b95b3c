//! Uploads: everything that puts bytes into S3. A new file written in order streams out
//! as a multipart upload whose parts go up in parallel while the application writes;
//! a staged file is uploaded at flush, re-sending only the parts that changed and copying
//! the others server-side (UploadPartCopy). Buffered parts are bounded by a global memory
//! budget: a writer waits for room instead of growing without limit. A failed multipart
//! upload is always aborted, so no partial object and no dangling upload is left behind.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::error::{Error, Result};
use crate::store::{CompletedPart, ObjectStore, PutOptions, StoreErrorKind, StoreResult};

/// S3's limits.
pub const MAX_PARTS: u64 = 10_000;
pub const MIN_PART: u64 = 5 * 1024 * 1024;
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// Largest object a single CopyObject may copy.
pub const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// The largest object S3 stores: 5 TiB.
pub const MAX_OBJECT: u64 = 5 << 40;
const MIB: u64 = 1024 * 1024;

/// How uploads behave.
#[derive(Debug, Clone)]
pub struct WriteConfig {
    /// First part size of a streaming upload; also the smallest staged part.
    pub part_size: u64,
    /// Parts in flight per upload.
    pub concurrency: usize,
    /// Bytes of parts buffered in memory across all uploads.
    pub memory_budget: u64,
    /// Where staging files go (created on first use).
    pub staging_dir: PathBuf,
    /// Largest object copied with one CopyObject; larger ones are copied part by part
    /// (S3's limit is 5 GiB; tests lower it).
    pub copy_limit: u64,
    /// Largest file size a write or truncate may reach (EFBIG beyond; at most S3's
    /// 5 TiB object limit).
    pub max_file_size: u64,
    /// How old a zero object of a crashed upload must be before a listing deletes it.
    pub leftover_age: std::time::Duration,
    /// Storage class of files created here (`--storage-class`); `None`: the bucket's.
    pub storage_class: Option<String>,
}

impl WriteConfig {
    pub fn new(staging_dir: PathBuf) -> Self {
        WriteConfig {
            part_size: 8 * MIB,
            concurrency: 8,
            memory_budget: 128 * MIB,
            staging_dir,
            copy_limit: MAX_COPY,
            max_file_size: MAX_OBJECT,
            leftover_age: super::leftovers::DEFAULT_AGE,
            storage_class: None,
        }
    }
}

/// Shared by every writer of a mount: the store, the memory budget, staging names.
pub struct Uploader<S> {
    pub store: Arc<S>,
    pub cfg: WriteConfig,
    budget: Arc<Semaphore>,
    budget_kib: u64,
    names: AtomicU64,
}

impl<S: ObjectStore> Uploader<S> {
    pub fn new(store: Arc<S>, mut cfg: WriteConfig) -> Self {
        cfg.part_size = cfg.part_size.clamp(MIN_PART, MAX_PART);
        cfg.concurrency = cfg.concurrency.max(1);
        cfg.copy_limit = cfg.copy_limit.clamp(1, MAX_COPY);
        cfg.max_file_size = cfg.max_file_size.min(MAX_OBJECT);
        let budget_kib = (cfg.memory_budget / 1024).clamp(1, u32::MAX as u64 / 2);
        Uploader {
            store,
            cfg,
            budget: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
            names: AtomicU64::new(0),
        }
    }

    /// Room for `bytes` of buffered data; waits until other uploads release enough.
    pub async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let kib = bytes.div_ceil(1024).clamp(1, self.budget_kib) as u32;
        self.budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("budget semaphore is never closed")
    }

    /// Bytes of the budget free right now (for tests and logs).
    pub fn budget_free(&self) -> u64 {
        self.budget.available_permits() as u64 * 1024
    }

    /// A new staging file path for `key` (the directory is made with the file).
    pub fn staging_path(&self, key: &str) -> PathBuf {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        let base: String = key
            .rsplit('/')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(60)
            .collect();
        self.cfg
            .staging_dir
            .join(format!("{}-{n}-{base}", std::process::id()))
    }

    /// Size of part `number` (1-based) of a streaming upload of unknown length: the
    /// configured size for the first parts, doubling every 950 parts, so 10,000 parts
    /// reach past 5 TiB even from the smallest start S3 allows (5 MiB: 7 TiB).
    pub fn stream_part_size(&self, number: i32) -> u64 {
        let step = ((number.max(1) - 1) / 950).min(20) as u32;
        (self.cfg.part_size << step).min(MAX_PART)
    }

    /// Part size for an upload of known `size`: the configured size, or larger so the
    /// object fits in 10,000 parts.
    pub fn staged_part_size(&self, size: u64) -> u64 {
        let need = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.cfg.part_size.max(need).min(MAX_PART)
    }

    /// PutObject.
    pub async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> Result<String> {
        self.store
            .put(key, body.clone(), opts)
            .await
            .map_err(Error::from)
    }

    /// A reserved name beside `key` (see [`names::ZEROS_PREFIX`]) for a zero object,
    /// or `None` when none fits in S3's key limit. Each call gives a new name.
    pub fn zeros_key(&self, key: &str) -> Option<String> {
        let dir = key.rfind('/').map_or("", |i| &key[..=i]);
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        let zkey = format!(
            "{dir}{}{}-{n}",
            super::names::ZEROS_PREFIX,
            std::process::id()
        );
        (zkey.len() <= super::names::KEY_MAX).then_some(zkey)
    }

    /// Put an object of `len` zero bytes as `zkey` (from [`Uploader::zeros_key`]), for
    /// the holes of a sparse file to be copied from server-side; returns its ETag.
    /// Larger than a part, it goes up as a multipart upload of one shared zero buffer,
    /// so memory stays at one part whatever `len` is.
    pub async fn put_zeros(&self, zkey: &str, len: u64) -> Result<String> {
        let opts = PutOptions::default();
        let chunk = self.cfg.part_size.min(len).max(1);
        let _permit = self.reserve(chunk).await;
        let zeros = Bytes::from(vec![0u8; chunk as usize]);
        if len <= chunk {
            return self.put(zkey, zeros.slice(..len as usize), &opts).await;
        }
        let id = self
            .store
            .create_multipart(zkey, &opts)
            .await
            .map_err(Error::from)?;
        let parts: Vec<(i32, Bytes)> = (0..len.div_ceil(chunk))
            .map(|i| {
                let n = (len - i * chunk).min(chunk) as usize;
                (i as i32 + 1, zeros.slice(..n))
            })
            .collect();
        let zk = zkey;
        let idr = id.as_str();
        let results: Vec<StoreResult<CompletedPart>> = futures::stream::iter(parts)
            .map(|(number, body)| async move {
                let etag = self.store.upload_part(zk, idr, number, body).await?;
                Ok(CompletedPart { number, etag })
            })
            .buffered(self.cfg.concurrency)
            .collect()
            .await;
        self.finish(zkey, &id, results).await
    }

    /// Delete a helper object (a zero source), logging (not returning) a failure.
    pub async fn delete_helper(&self, key: &str) {
        if let Err(e) = self.store.delete(key).await {
            warn!(key, "could not delete the temporary zero object: {e}");
        }
    }

    /// Abort a multipart upload, logging (not returning) a failure.
    pub async fn abort(&self, key: &str, upload_id: &str) {
        if let Err(e) = self.store.abort_multipart(key, upload_id).await {
            warn!(key, upload_id, "could not abort multipart upload: {e}");
        }
    }

    /// Copy `src` (`size` bytes, ETag `src_etag` when known) to `dst`. With `replace`, the
    /// copy gets `opts` as its metadata; without, it keeps the source's. Objects over
    /// 5 GiB are copied part by part (which always writes `opts`).
    pub async fn copy_object(
        &self,
        src: &str,
        src_etag: Option<&str>,
        dst: &str,
        size: u64,
        opts: &PutOptions,
        replace: bool,
    ) -> Result<String> {
        if size <= self.cfg.copy_limit {
            let o = replace.then_some(opts);
            return self
                .store
                .copy(src, dst, src_etag, o)
                .await
                .map_err(Error::from);
        }
        let etag = src_etag.ok_or_else(|| {
            Error::Failed(format!(
                "copy {src}: the source's ETag is needed to copy it"
            ))
        })?;
        let upload_id = self
            .store
            .create_multipart(dst, opts)
            .await
            .map_err(Error::from)?;
        let ps = self
            .staged_part_size(size)
            .max(self.cfg.copy_limit.min(512 * MIB))
            .min(MAX_PART);
        let ranges: Vec<Range<u64>> = (0..size.div_ceil(ps))
            .map(|i| i * ps..((i + 1) * ps).min(size))
            .collect();
        let id = upload_id.as_str();
        let results: Vec<StoreResult<CompletedPart>> =
            futures::stream::iter(ranges.into_iter().enumerate())
                .map(|(i, r)| async move {
                    let number = i as i32 + 1;
                    let e = self
                        .store
                        .upload_part_copy(dst, id, number, src, etag, r.clone())
                        .await?;
                    Ok(CompletedPart { number, etag: e })
                })
                .buffered(self.cfg.concurrency)
                .collect()
                .await;
        self.finish(dst, &upload_id, results).await
    }

    /// Complete an upload from its parts' results, or abort it if any part failed.
    pub async fn finish(
        &self,
        key: &str,
        upload_id: &str,
        results: Vec<StoreResult<CompletedPart>>,
    ) -> Result<String> {
        let mut parts = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(p) => parts.push(p),
                Err(e) => {
                    self.abort(key, upload_id).await;
                    return Err(Error::from(e));
                }
            }
        }
        parts.sort_by_key(|p| p.number);
        match self.store.complete_multipart(key, upload_id, &parts).await {
            Ok(etag) => Ok(etag),
            Err(e) => {
                self.abort(key, upload_id).await;
                Err(Error::from(e))
            }
        }
    }
}

/// A multipart upload fed in order: whole parts leave as soon as they are full, while
/// the application keeps writing.
pub struct StreamUpload {
    upload_id: Option<String>,
    /// Bytes after the last part handed off.
    buf: BytesMut,
    /// Bytes handed to parts.
    sent: u64,
    next_part: i32,
    tasks: Vec<JoinHandle<StoreResult<CompletedPart>>>,
    done: Vec<CompletedPart>,
}

impl StreamUpload {
    pub fn new() -> Self {
        StreamUpload {
            upload_id: None,
            buf: BytesMut::new(),
            sent: 0,
            next_part: 1,
            tasks: Vec::new(),
            done: Vec::new(),
        }
    }

    /// A stream that already holds `data` (a small file committed and still appended to).
    pub fn with_bytes(data: &[u8]) -> Self {
        let mut s = Self::new();
        s.buf.extend_from_slice(data);
        s
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.sent + self.buf.len() as u64
    }

    /// Whether any part has left (the data is no longer all in memory).
    pub fn started(&self) -> bool {
        self.upload_id.is_some()
    }

    /// The bytes of `range` if they are still in memory.
    pub fn buffered(&self, range: Range<u64>) -> Option<Bytes> {
        if range.start < self.sent || range.end > self.written() {
            return None;
        }
        let a = (range.start - self.sent) as usize;
        let b = (range.end - self.sent) as usize;
        Some(Bytes::copy_from_slice(&self.buf[a..b]))
    }

    /// Everything written, when no part has left yet.
    pub fn take_all(&mut self) -> Option<Bytes> {
        (self.upload_id.is_none()).then(|| self.buf.split().freeze())
    }

    /// Append `data`; full parts start uploading (waiting for budget room first).
    pub async fn append<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        key: &str,
        opts: &PutOptions,
        data: &[u8],
    ) -> Result<()> {
        self.buf.extend_from_slice(data);
        loop {
            let want = up.stream_part_size(self.next_part);
            if (self.buf.len() as u64) < want {
                return Ok(());
            }
            let body = self.buf.split_to(want as usize).freeze();
            self.send(up, key, opts, body).await?;
        }
    }

    async fn send<S: ObjectStore>(
        &mut self,
        up: &Arc<Uploader<S>>,
        key: &str,
        opts: &PutOptions,
        body: Bytes,
    ) -> Result<()> {
        if self.upload_id.is_none() {
            let id = up
                .store
                .create_multipart(key, opts)
                .await
                .map_err(Error::from)?;
            debug!(key, upload_id = %id, "multipart upload started");
            self.upload_id = Some(id);
        }
        // A failed part fails the upload: stop early rather than after the last byte.
        if let Some(e) = self.reap().await {
            return Err(e);
        }
        let permit = up.reserve(body.len() as u64).await;
        let number = self.next_part;
        self.next_part += 1;
        self.sent += body.len() as u64;
        let up2 = up.clone();
        let key = key.to_string();
        let id = self.upload_id.clone().unwrap_or_default();
        self.tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let etag = up2
                .store
                .upload_part(&key, &id, number, body.clone())
                .await?;
            Ok(CompletedPart { number, etag })
        }));
        Ok(())
    }

    /// The error of a part that already failed, if any; finished parts move to `done`.
    async fn reap(&mut self) -> Option<Error> {
        let mut i = 0;
        while i < self.tasks.len() {
            if !self.tasks[i].is_finished() {
                i += 1;
                continue;
            }
            match self.tasks.swap_remove(i).await {
                Ok(Ok(p)) => self.done.push(p),
                Ok(Err(e)) => return Some(Error::from(e)),
                Err(e) => return Some(Error::task("part upload", e)),
            }
        }
        None
    }

    /// Finish the upload: one PutObject if no part has left yet, else the last part and
    /// CompleteMultipartUpload. On failure the multipart upload is aborted. Returns the
    /// new ETag.
    pub async fn finish<S: ObjectStore>(
        mut self,
        up: &Arc<Uploader<S>>,
        key: &str,
        opts: &PutOptions,
    ) -> Result<String> {
        if let Some(body) = self.take_all() {
            return up.put(key, body, opts).await;
        }
        let rest = self.buf.split().freeze();
        let sent = if rest.is_empty() {
            Ok(())
        } else {
            self.send(up, key, opts, rest).await
        };
        let id = self.upload_id.clone().unwrap_or_default();
        let mut results: Vec<StoreResult<CompletedPart>> = self.done.drain(..).map(Ok).collect();
        for t in self.tasks.drain(..) {
            results.push(match t.await {
                Ok(r) => r,
                Err(e) => Err(crate::store::StoreError::new(
                    StoreErrorKind::Other,
                    format!("upload task failed: {e}"),
                )),
            });
        }
        if let Err(e) = sent {
            up.abort(key, &id).await;
            return Err(e);
        }
        up.finish(key, &id, results).await
    }

    /// Give up: abort the multipart upload if one was started.
    pub async fn abort<S: ObjectStore>(mut self, up: &Arc<Uploader<S>>, key: &str) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(id) = self.upload_id.take() {
            up.abort(key, &id).await;
        }
    }
}

impl Default for StreamUpload {
    fn default() -> Self {
        Self::new()
    }
}
