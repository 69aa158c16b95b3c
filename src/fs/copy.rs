//! Server-side copy between two files of the mount (`copy_file_range`, which `cp`
//! uses): a whole-file copy into an empty file open for writing is one CopyObject (an
//! UploadPartCopy per part above the copy limit) and no data byte passes through the
//! daemon. Anything else (a partial range, a file that is not empty, a source being
//! archived) is refused with EOPNOTSUPP, and the kernel copies through reads and
//! writes instead.

use tracing::{debug, info};

use super::attr::{self, Kind};
use super::error::{Error, Result};
use super::write::CopyOf;
use super::Filesystem;
use crate::store::{ObjectStore, StoreErrorKind};

/// A request for fewer bytes than the source holds is still taken as the whole file
/// when it asks for at least this much: the kernel caps one request at just under
/// 4 GiB, so a bigger file comes as several requests, each answered from the first
/// copy (see [`CopyOf`]).
const WHOLE_FILE_REQUEST: u64 = 1 << 30;

impl<S: ObjectStore> Filesystem<S> {
    /// Copy `len` bytes at `off_in` of handle `fh_in` to `off_out` of `fh_out`; returns
    /// how many were copied (0 at the end of the source). `Unsupported` (EOPNOTSUPP)
    /// for any copy that is not a whole file into an empty one.
    pub async fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        let fin = self.open_file(fh_in)?;
        let fout = self.open_file(fh_out)?;
        if !fout.writable {
            return Err(Error::BadHandle("file is not open for writing".into()));
        }
        let refuse = |why: &str| {
            debug!(
                ino_in = fin.ino,
                ino_out = fout.ino,
                off_in,
                off_out,
                len,
                "no server-side copy ({why}): the kernel copies the bytes"
            );
            Err(Error::Unsupported(format!("no server-side copy: {why}")))
        };
        if fin.ino == fout.ino {
            return refuse("source and destination are one file");
        }
        let src = self.inodes.get(fin.ino)?;
        if src.kind != Kind::File {
            return refuse("the source is not a regular file");
        }
        if self
            .cfg
            .read_only_prefix
            .as_deref()
            .is_some_and(|p| src.key.starts_with(p))
        {
            // An old version: its bytes are read by version id, which CopyObject here
            // is not given.
            return refuse("the source is a version");
        }
        if let Ok(dst) = self.inodes.get(fout.ino) {
            if !self.same_bucket(&src.key, &dst.key) {
                return refuse("source and destination are in different buckets");
            }
        }
        let out = self
            .writer(fout.ino)
            .ok_or_else(|| Error::BadHandle("file is no longer open for writing".into()))?;
        // The source's own writes in this mount go to S3 first, so the copy never takes
        // older bytes than a read of the source would give.
        let mut src_writer_etag = None;
        if let Some(w) = self.writer(fin.ino) {
            let mut g = w.lock().await;
            if g.is_dirty() {
                self.commit_writer(fin.ino, &mut g).await?;
            }
            if g.unlinked {
                return refuse("the source was removed");
            }
            src_writer_etag = g.etag.clone();
        }
        let mut g = out.lock().await;
        // A later request of a copy already made (a source over the kernel's request
        // size comes in several): the bytes are there.
        if let Some(c) = &g.copy_of {
            let same = c.ino == fin.ino
                && src_writer_etag.as_ref().is_none_or(|e| *e == c.etag)
                && off_in == off_out
                && off_in > 0;
            if same {
                return Ok(len.min(g.stat.size.saturating_sub(off_out)));
            }
        }
        if off_in != 0 || off_out != 0 {
            return refuse("not from the start of both files");
        }
        // Empty: created or truncated and unwritten, or an empty object as it is in S3.
        let empty = g.stat.size == 0 && (g.holds_nothing_new() || !g.is_dirty());
        if g.unlinked || !empty {
            return refuse("the destination is not empty");
        }
        let mut fresh = false;
        loop {
            if fresh {
                self.meta.invalidate(&src.key).await;
            }
            let Some(m) = self.meta.head(&src.key).await? else {
                return refuse("the source is not in S3");
            };
            if m.size == 0 {
                return Ok(0);
            }
            if len < m.size && len < WHOLE_FILE_REQUEST {
                return refuse("a part of the source");
            }
            if attr::unreadable(&m) {
                return refuse("the source is archived");
            }
            if let Some(e) = &src_writer_etag {
                if *e != m.etag && !fresh {
                    fresh = true;
                    continue;
                }
            }
            let mut stat = g.stat;
            let now = std::time::SystemTime::now();
            stat.mtime = now;
            stat.ctime = now;
            stat.size = m.size;
            let mut opts = attr::put_options(
                &stat,
                true,
                m.content_type.as_deref(),
                &attr::user_xattrs(&m),
            );
            opts.props = m.props.clone();
            if m.size > self.uploader.cfg.copy_limit {
                // Part copies do not carry tags by themselves.
                opts.tags = self.tags_to_keep(&src.key, &m).await?;
            }
            let key = g.key.clone();
            let r = self
                .uploader
                .copy_object(&src.key, Some(&m.etag), &key, m.size, &opts, true)
                .await;
            match r {
                Ok(etag) => {
                    info!(from = %src.key, key = %key, size = m.size, "copied server-side");
                    g.stat = stat;
                    g.replaced_by_copy(
                        etag.clone(),
                        m.size,
                        CopyOf {
                            ino: fin.ino,
                            etag: m.etag.clone(),
                        },
                    );
                    self.mirror(fout.ino, &g);
                    self.uploaded(fout.ino, &key, &etag, &g).await;
                    return Ok(len.min(m.size));
                }
                Err(Error::Store(e)) if e.kind == StoreErrorKind::PreconditionFailed && !fresh => {
                    // The source changed since its HEAD was cached: once more, fresh.
                    fresh = true;
                }
                Err(e) => {
                    tracing::error!(from = %src.key, key = %key, "server-side copy failed: {}", e);
                    return Err(e);
                }
            }
        }
    }
}
