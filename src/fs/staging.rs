//! Staging files: the local copy of a file being modified out of order (random writes,
//! appends, truncates, sqlite). A staging file lives under the cache directory and holds
//! the file's bytes as far as they are known locally. Bytes of the object in S3 (the
//! "base") are fetched only for the ranges a read or an upload needs, so a small edit to
//! a large object neither downloads nor re-sends the unchanged parts.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
/// (after a failed upload, so the data survives for the user to recover).
#[derive(Debug)]
pub struct StagingFile {
    file: File,
    path: PathBuf,
    keep: bool,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    let errno = e.raw_os_error().unwrap_or(libc::EIO);
    Error::new(
        errno,
        format!("staging file {}: {what}: {e}", path.display()),
    )
}

impl StagingFile {
    /// Create a new empty staging file at `path`.
    pub fn create(path: PathBuf) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err("create", &path, e))?;
        Ok(StagingFile {
            file,
            path,
            keep: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| io_err("write", &self.path, e))
    }

    /// Read `len` bytes at `offset`; bytes past the end of the file read as zeros.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = self
                .file
                .read_at(&mut buf[done..], offset + done as u64)
                .map_err(|e| io_err("read", &self.path, e))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(buf)
    }

    pub fn set_len(&self, n: u64) -> Result<()> {
        self.file
            .set_len(n)
            .map_err(|e| io_err("truncate", &self.path, e))
    }

    /// Keep the file on disk when this handle is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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

    #[test]
    fn staging_file_reads_zeros_past_end_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        {
            let f = StagingFile::create(p.clone()).unwrap();
            f.write_at(2, b"ab").unwrap();
            assert_eq!(f.read_at(0, 6).unwrap(), b"\0\0ab\0\0");
            f.set_len(3).unwrap();
            f.set_len(5).unwrap();
            assert_eq!(f.read_at(0, 5).unwrap(), b"\0\0a\0\0");
        }
        assert!(!p.exists());
        let mut f = StagingFile::create(p.clone()).unwrap();
        f.keep();
        drop(f);
        assert!(p.exists());
    }
}
