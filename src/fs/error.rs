//! The core's errors: one variant per cause, each with the key (or handle) it concerns
//! and, where another error caused it, that error as its source. [`Error::errno`] is the
//! one place that maps them to an errno for the kernel; `Display` gives the whole cause
//! in words for the log (never a Debug dump), `source()` the chain for programs.

use std::io;
use std::sync::Arc;

use crate::store::{StoreError, StoreErrorKind};

/// A failed filesystem operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: file exists")]
    Exists(String),
    #[error("{0}: not a directory")]
    NotDir(String),
    #[error("{0}: is a directory")]
    IsDir(String),
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    #[error("{0}: is a symlink")]
    IsSymlink(String),
    /// A name over 255 bytes or a key over 1,024.
    #[error("{0}")]
    NameTooLong(String),
    /// An argument the operation cannot take (a name S3 cannot store, a bad value).
    #[error("{0}")]
    Invalid(String),
    #[error("this mount is read-only")]
    ReadOnly,
    /// A write or truncate past the largest object the store keeps.
    #[error("{key}: a file here can hold at most {max} bytes")]
    FileTooBig { key: String, max: u64 },
    /// User metadata over what S3 keeps per object.
    #[error("{0}")]
    MetadataFull(String),
    #[error("{0}")]
    NoAttribute(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    NotPermitted(String),
    /// A rename the filesystem cannot do in place (between two buckets): the program
    /// copies instead.
    #[error("{0}")]
    CrossDevice(String),
    /// An archived object (Glacier, Deep Archive) that is not restored.
    #[error(
        "{key}: object is in storage class {class} and must be restored before it can be {action}"
    )]
    Archived {
        key: String,
        class: String,
        action: &'static str,
    },
    #[error("{0}")]
    BadHandle(String),
    #[error("inode {0} is not known")]
    Stale(u64),
    /// A request to the object store failed.
    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
    /// A local file (staging file, cache directory) failed.
    #[error("{what}: {source}")]
    Local {
        what: String,
        #[source]
        source: Arc<io::Error>,
    },
    /// A background task (a part upload, a prefetch) did not finish.
    #[error("{what}: {source}")]
    Task {
        what: String,
        #[source]
        source: Arc<tokio::task::JoinError>,
    },
    /// A file's upload failed; `source` says why.
    #[error("upload of {key} failed: {source}")]
    Upload {
        key: String,
        #[source]
        source: Box<Error>,
    },
    /// Anything else that makes the operation fail with EIO.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn store_message(e: &StoreError) -> String {
    match e.kind {
        StoreErrorKind::PreconditionFailed => format!(
            "{e}: the object changed in S3 while it was open; reopen it to read the new version"
        ),
        _ => e.to_string(),
    }
}

impl Error {
    pub fn local(what: impl Into<String>, source: io::Error) -> Self {
        Error::Local {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    pub fn task(what: impl Into<String>, source: tokio::task::JoinError) -> Self {
        Error::Task {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    pub fn upload(key: &str, source: Error) -> Self {
        match source {
            // Already says so.
            e @ Error::Upload { .. } => e,
            e => Error::Upload {
                key: key.to_string(),
                source: Box::new(e),
            },
        }
    }

    /// The errno the kernel is answered with: the one place errors become errnos.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) => libc::ENOENT,
            Error::Exists(_) => libc::EEXIST,
            Error::NotDir(_) => libc::ENOTDIR,
            Error::IsDir(_) => libc::EISDIR,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::IsSymlink(_) => libc::ELOOP,
            Error::NameTooLong(_) => libc::ENAMETOOLONG,
            Error::Invalid(_) => libc::EINVAL,
            Error::ReadOnly => libc::EROFS,
            Error::FileTooBig { .. } => libc::EFBIG,
            Error::MetadataFull(_) => libc::E2BIG,
            Error::NoAttribute(_) => libc::ENODATA,
            Error::Unsupported(_) => libc::EOPNOTSUPP,
            Error::NotPermitted(_) => libc::EPERM,
            Error::CrossDevice(_) => libc::EXDEV,
            Error::Archived { .. } => libc::EACCES,
            Error::BadHandle(_) => libc::EBADF,
            Error::Stale(_) => libc::ESTALE,
            Error::Store(e) => match e.kind {
                StoreErrorKind::NotFound => libc::ENOENT,
                StoreErrorKind::AccessDenied
                | StoreErrorKind::InvalidObjectState
                | StoreErrorKind::Credentials => libc::EACCES,
                StoreErrorKind::Exists => libc::EEXIST,
                StoreErrorKind::NotEmpty => libc::ENOTEMPTY,
                StoreErrorKind::InvalidName => libc::EINVAL,
                StoreErrorKind::CrossBucket => libc::EXDEV,
                StoreErrorKind::NoSuchBucket
                | StoreErrorKind::PreconditionFailed
                | StoreErrorKind::InvalidRange
                | StoreErrorKind::Unreachable
                | StoreErrorKind::TimedOut
                | StoreErrorKind::WrongRegion
                | StoreErrorKind::Transient
                | StoreErrorKind::Other => libc::EIO,
            },
            // A full cache disk is ENOSPC, as the application would get from a local file.
            Error::Local { source, .. } => match source.raw_os_error() {
                Some(n @ (libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EACCES)) => n,
                _ => libc::EIO,
            },
            Error::Task { .. } | Error::Upload { .. } | Error::Failed(_) => libc::EIO,
        }
    }

    /// The name (or key) does not exist, whether the table or the store said so.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) => true,
            Error::Store(e) => e.kind == StoreErrorKind::NotFound,
            _ => false,
        }
    }

    /// S3 refused the request (permissions, credentials), here or in an upload's cause.
    pub fn is_access_denied(&self) -> bool {
        match self {
            Error::Store(e) => e.kind == StoreErrorKind::AccessDenied,
            Error::Upload { source, .. } => source.is_access_denied(),
            _ => false,
        }
    }

    /// The object changed under a conditional request (its ETag is no longer the one
    /// asked for).
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, Error::Store(e) if e.kind == StoreErrorKind::PreconditionFailed)
    }

    /// Whether this error is worth a warning in the log (ENOENT and friends are routine:
    /// they answer what a program asked, and nothing failed).
    pub fn is_noteworthy(&self) -> bool {
        !matches!(
            self,
            Error::NotFound(_)
                | Error::NoAttribute(_)
                | Error::NameTooLong(_)
                | Error::NotEmpty(_)
                | Error::Exists(_)
                | Error::NotDir(_)
                | Error::IsDir(_)
                | Error::ReadOnly
                | Error::CrossDevice(_)
        ) && !self.is_not_found()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn store_errors_keep_their_cause_and_map_by_kind() {
        let s = StoreError::new(StoreErrorKind::NotFound, "head s3://b/k: no such key");
        let e = Error::from(s);
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(e.is_not_found());
        assert!(!e.is_noteworthy());
        assert_eq!(
            e.source().unwrap().to_string(),
            "head s3://b/k: no such key"
        );

        let s = StoreError::new(StoreErrorKind::PreconditionFailed, "get s3://b/k: 412");
        let e = Error::from(s);
        assert_eq!(e.errno(), libc::EIO);
        assert!(e.to_string().contains("reopen it"), "{e}");
    }

    #[test]
    fn an_upload_error_names_the_key_and_keeps_the_chain() {
        let inner = Error::local(
            "staging file /c/1",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(inner.errno(), libc::ENOSPC);
        let e = Error::upload("dir/f", inner);
        assert_eq!(e.errno(), libc::EIO);
        let text = e.to_string();
        assert!(
            text.starts_with("upload of dir/f failed: staging file /c/1: "),
            "{text}"
        );
        let cause = e.source().unwrap();
        assert!(cause.to_string().starts_with("staging file /c/1"));
        assert!(cause.source().is_some(), "the io::Error is the next link");
        // Wrapping twice does not repeat the key.
        let again = Error::upload("dir/f", e);
        assert_eq!(again.to_string().matches("upload of").count(), 1);
    }
}
