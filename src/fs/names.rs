//! Names and keys: which S3 keys can be file names, how a child's key is built from its
//! parent's, and the limits (255-byte names, 1024-byte keys). Keys that cannot be names
//! (`.`, `..`, empty segments from `//`, over-long segments, NUL) are skipped with one
//! warning each; they never break a listing and never map outside the mount.

use parking_lot::Mutex;
use std::collections::HashSet;

use super::error::{Error, Result};

/// Longest file name, in bytes.
pub const NAME_MAX: usize = 255;
/// Longest S3 key, in bytes.
pub const KEY_MAX: usize = 1024;

/// Why a listed key was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Empty,
    Dot,
    TooLong,
    Nul,
    /// A name bucketfs uses for its own temporary objects ([`ZEROS_PREFIX`]).
    Reserved,
}

/// Names of the temporary objects a sparse upload copies its holes from: never listed,
/// never looked up, deleted when the upload ends.
pub const ZEROS_PREFIX: &str = ".bucketfs-zeros-";

/// Whether `name` is one of bucketfs's own temporary objects.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(ZEROS_PREFIX)
}

/// Whether `name` (one path segment taken from a key) can be shown as a file name.
pub fn check_listed_name(name: &str) -> std::result::Result<(), Rejected> {
    if name.is_empty() {
        Err(Rejected::Empty)
    } else if name == "." || name == ".." {
        Err(Rejected::Dot)
    } else if name.len() > NAME_MAX {
        Err(Rejected::TooLong)
    } else if name.contains('\0') {
        Err(Rejected::Nul)
    } else if is_reserved(name) {
        Err(Rejected::Reserved)
    } else {
        Ok(())
    }
}

/// Validate a name the kernel hands us (lookup, create, ...) and return it as UTF-8.
/// S3 keys are UTF-8, so a name that is not cannot exist in the bucket.
pub fn check_request_name(name: &[u8]) -> Result<&str> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong(format!(
            "name of {} bytes is over {NAME_MAX}",
            name.len()
        )));
    }
    let s = std::str::from_utf8(name).map_err(|_| {
        Error::Invalid(format!(
            "name {:?} is not UTF-8 and cannot be an S3 key",
            String::from_utf8_lossy(name)
        ))
    })?;
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(Error::Invalid(format!("invalid name {s:?}")));
    }
    Ok(s)
}

/// The key of a child file of the directory whose key prefix is `dir_prefix`
/// (`""` for the bucket root, else ending in `/`).
pub fn file_key(dir_prefix: &str, name: &str) -> Result<String> {
    let key = format!("{dir_prefix}{name}");
    if key.len() > KEY_MAX {
        return Err(Error::NameTooLong(format!(
            "key {key:?} is over {KEY_MAX} bytes"
        )));
    }
    Ok(key)
}

/// The key prefix of a child directory (its marker key): `dir_prefix + name + "/"`.
pub fn dir_prefix(dir_prefix: &str, name: &str) -> Result<String> {
    file_key(dir_prefix, &format!("{name}/"))
}

/// Remembers which keys were already reported, so each odd key is logged once per mount.
#[derive(Debug, Default)]
pub struct WarnOnce {
    seen: Mutex<HashSet<String>>,
}

impl WarnOnce {
    /// True the first time `key` is passed.
    pub fn first(&self, key: &str) -> bool {
        let mut seen = self.seen.lock();
        if seen.len() > 100_000 {
            seen.clear();
        }
        seen.insert(key.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names() {
        assert_eq!(check_listed_name(""), Err(Rejected::Empty));
        assert_eq!(check_listed_name("."), Err(Rejected::Dot));
        assert_eq!(check_listed_name(".."), Err(Rejected::Dot));
        assert_eq!(check_listed_name(&"x".repeat(256)), Err(Rejected::TooLong));
        assert_eq!(check_listed_name("a\0b"), Err(Rejected::Nul));
        assert!(check_listed_name(&"x".repeat(255)).is_ok());
        assert!(check_listed_name("new\nline").is_ok());
        assert!(check_listed_name("...").is_ok());
        assert_eq!(
            check_listed_name(".bucketfs-zeros-12-3"),
            Err(Rejected::Reserved)
        );
        assert!(check_listed_name(".bucketfs-zero").is_ok());
    }

    #[test]
    fn request_names() {
        assert_eq!(
            check_request_name(&[b'a'; 256]).unwrap_err().errno(),
            libc::ENAMETOOLONG
        );
        assert_eq!(check_request_name(b"..").unwrap_err().errno(), libc::EINVAL);
        assert_eq!(
            check_request_name(&[0xff, 0xfe]).unwrap_err().errno(),
            libc::EINVAL
        );
        assert_eq!(check_request_name(b"ok.txt").unwrap(), "ok.txt");
    }

    #[test]
    fn keys() {
        assert_eq!(file_key("", "a").unwrap(), "a");
        assert_eq!(file_key("p/q/", "a").unwrap(), "p/q/a");
        assert_eq!(dir_prefix("p/", "d").unwrap(), "p/d/");
        let long = "d/".repeat(510);
        assert_eq!(
            file_key(&long, "abcdefghijklmnopqrstuvwxyz")
                .unwrap_err()
                .errno(),
            libc::ENAMETOOLONG
        );
    }

    #[test]
    fn warn_once() {
        let w = WarnOnce::default();
        assert!(w.first("k"));
        assert!(!w.first("k"));
        assert!(w.first("j"));
    }
}
