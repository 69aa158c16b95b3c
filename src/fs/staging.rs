//! Staging files: the local copy of a file being modified out of order (random writes,
//! appends, truncates, sqlite). A staging file lives under the cache directory and holds
//! the file's bytes as far as they are known locally. Bytes of the object in S3 (the
//! "base") are fetched only for the ranges a read or an upload needs, so a small edit to
//! a large object neither downloads nor re-sends the unchanged parts.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use tracing::warn;

use super::error::{Error, Result};

/// A set of disjoint, sorted, non-adjacent byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    pub fn new() -> Self {
        RangeSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }

    /// Add `r`, merging with neighbours.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let mut start = r.start;
        let mut end = r.end;
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for x in self.ranges.drain(..) {
            if x.end < start {
                out.push(x);
            } else if x.start > end {
                if !placed {
                    out.push(start..end);
                    placed = true;
                }
                out.push(x);
            } else {
                start = start.min(x.start);
                end = end.max(x.end);
            }
        }
        if !placed {
            out.push(start..end);
        }
        self.ranges = out;
    }

    /// Forget everything at or beyond `n`.
    pub fn truncate(&mut self, n: u64) {
        self.ranges.retain(|r| r.start < n);
        if let Some(last) = self.ranges.last_mut() {
            last.end = last.end.min(n);
        }
    }

    /// The parts of `r` not in the set.
    pub fn missing(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = r.start;
        for x in &self.ranges {
            if x.end <= at {
                continue;
            }
            if x.start >= r.end {
                break;
            }
            if x.start > at {
                out.push(at..x.start);
            }
            at = at.max(x.end);
            if at >= r.end {
                break;
            }
        }
        if at < r.end {
            out.push(at..r.end);
        }
        out
    }

    /// Whether any byte of `r` is in the set.
    pub fn overlaps(&self, r: &Range<u64>) -> bool {
        self.ranges
            .iter()
            .any(|x| x.start < r.end && r.start < x.end)
    }
}

/// A local file under the cache directory. It is deleted on drop unless `keep` was called
/// (after a failed upload, so the data survives for the user to recover). Its reads and
/// writes run on tokio's blocking pool, never on the runtime's workers (or on a FUSE
/// thread polling a request), since a staging file may take megabytes per call.
#[derive(Debug)]
pub struct StagingFile {
    file: Arc<File>,
    path: PathBuf,
    keep: bool,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::local(format!("staging file {}: {what}", path.display()), e)
}

/// Run blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::task(
            format!("staging file {}: the I/O task failed", path.display()),
            e,
        )
    })?
}

impl StagingFile {
    /// Create a new empty staging file at `path` (and its directory if needed).
    pub async fn create(path: PathBuf) -> Result<Self> {
        let p = path.clone();
        let file = blocking(&path, move || {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::local(
                        format!("cannot create cache directory {}", dir.display()),
                        e,
                    )
                })?;
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&p)
                .map_err(|e| io_err("create", &p, e))
        })
        .await?;
        Ok(StagingFile {
            file: Arc::new(file),
            path,
            keep: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking(&self.path, move || {
            file.write_all_at(&data, offset)
                .map_err(|e| io_err("write", &path, e))
        })
        .await
    }

    /// Read `len` bytes at `offset`; bytes past the end of the file read as zeros.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking(&self.path, move || {
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let n = file
                    .read_at(&mut buf[done..], offset + done as u64)
                    .map_err(|e| io_err("read", &path, e))?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(buf)
        })
        .await
    }

    pub async fn set_len(&self, n: u64) -> Result<()> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking(&self.path, move || {
            file.set_len(n).map_err(|e| io_err("truncate", &path, e))
        })
        .await
    }

    /// Keep the file on disk when this handle is dropped, renamed `kept-NAME` so that
    /// later mounts leave it alone (see [`clean_leftovers`]).
    pub fn keep(&mut self) {
        self.keep = true;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| !n.starts_with(KEPT)) {
            let kept = self.path.with_file_name(format!("{KEPT}{name}"));
            match std::fs::rename(&self.path, &kept) {
                Ok(()) => self.path = kept,
                Err(e) => {
                    warn!(path = %self.path.display(), "cannot rename a kept staging file: {e}")
                }
            }
        }
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = std::fs::remove_file(&self.path) {
                warn!(path = %self.path.display(), "cannot remove a staging file: {e}");
            }
        }
    }
}

/// Prefix of staging files kept after a failed upload: the only copy of their data.
const KEPT: &str = "kept-";

/// What [`clean_leftovers`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Staging files of daemons that are gone, removed.
    pub removed: usize,
    /// Files kept after failed uploads, left for the user.
    pub kept: Vec<PathBuf>,
}

/// Remove the staging files in `dir` that a daemon which is no longer running left
/// behind (killed, or crashed, in the middle of writes). Staging files are named
/// `PID-N-NAME`; those of a live bucketfs process (another mount of the same bucket) are
/// left alone, and so are files kept after a failed upload (`kept-...`), which are
/// reported instead.
pub fn clean_leftovers(dir: &Path) -> Leftovers {
    let mut out = Leftovers::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(KEPT) {
            out.kept.push(e.path());
            continue;
        }
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(bucketfs_is_running) {
            continue;
        }
        match std::fs::remove_file(e.path()) {
            Ok(()) => out.removed += 1,
            Err(err) => {
                warn!(path = %e.path().display(), "cannot remove a leftover staging file: {err}")
            }
        }
    }
    out.kept.sort();
    out
}

/// Whether process `pid` is alive and is bucketfs.
fn bucketfs_is_running(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(8).any(|w| w == b"bucketfs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rangeset_merges_and_finds_gaps() {
        let mut s = RangeSet::new();
        s.insert(10..20);
        s.insert(30..40);
        s.insert(20..25);
        assert_eq!(s.ranges(), &[10..25, 30..40]);
        assert_eq!(s.missing(0..50), vec![0..10, 25..30, 40..50]);
        assert_eq!(s.missing(12..22), Vec::<Range<u64>>::new());
        assert!(s.overlaps(&(24..26)));
        assert!(!s.overlaps(&(25..30)));
        s.insert(5..35);
        assert_eq!(s.ranges(), std::slice::from_ref(&(5..40)));
        s.truncate(12);
        assert_eq!(s.ranges(), std::slice::from_ref(&(5..12)));
        s.truncate(3);
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn staging_file_reads_zeros_past_end_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("f");
        {
            let f = StagingFile::create(p.clone()).await.unwrap();
            f.write_at(2, Bytes::from_static(b"ab")).await.unwrap();
            assert_eq!(f.read_at(0, 6).await.unwrap(), b"\0\0ab\0\0");
            f.set_len(3).await.unwrap();
            f.set_len(5).await.unwrap();
            assert_eq!(f.read_at(0, 5).await.unwrap(), b"\0\0a\0\0");
        }
        assert!(!p.exists());
        let mut f = StagingFile::create(p.clone()).await.unwrap();
        f.keep();
        let kept = f.path().to_path_buf();
        drop(f);
        assert!(!p.exists());
        assert_eq!(kept, dir.path().join("sub").join("kept-f"));
        assert!(kept.exists());
    }

    #[test]
    fn leftovers_of_stopped_daemons_are_removed_and_kept_files_reported() {
        let dir = tempfile::tempdir().unwrap();
        // No process can have this pid (Linux pids stop at 4,194,304).
        let dead = dir.path().join("999999999-1-data.bin");
        let live = dir
            .path()
            .join(format!("{}-2-open.bin", std::process::id()));
        let kept = dir.path().join("kept-123-3-failed.bin");
        for p in [&dead, &live, &kept] {
            std::fs::write(p, b"x").unwrap();
        }
        let found = clean_leftovers(dir.path());
        assert_eq!(found.removed, 1);
        assert_eq!(found.kept, vec![kept.clone()]);
        assert!(!dead.exists());
        // This test's process is a bucketfs binary: its files stay.
        assert!(live.exists());
        assert!(kept.exists());
        assert_eq!(
            clean_leftovers(&dir.path().join("none")),
            Leftovers::default()
        );
    }
}
