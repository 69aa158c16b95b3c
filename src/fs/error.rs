//! The core's one error type: an errno for the kernel and a message naming the key and
//! the cause, for the log.

use std::fmt;

use crate::store::{StoreError, StoreErrorKind};

/// A failed filesystem operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub errno: i32,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Error {
            errno,
            message: message.into(),
        }
    }

    pub fn enoent(what: impl fmt::Display) -> Self {
        Self::new(libc::ENOENT, format!("{what}: no such file or directory"))
    }

    pub fn eio(message: impl Into<String>) -> Self {
        Self::new(libc::EIO, message)
    }

    /// Whether this error is worth a warning in the log (ENOENT and friends are routine).
    pub fn is_noteworthy(&self) -> bool {
        !matches!(
            self.errno,
            libc::ENOENT
                | libc::ENODATA
                | libc::ERANGE
                | libc::ENAMETOOLONG
                | libc::ENOTEMPTY
                | libc::EEXIST
                | libc::ENOTDIR
                | libc::EISDIR
                | libc::EROFS
                | libc::ENOSYS
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        let errno = match e.kind {
            StoreErrorKind::NotFound => libc::ENOENT,
            StoreErrorKind::AccessDenied => libc::EACCES,
            StoreErrorKind::InvalidObjectState => libc::EACCES,
            StoreErrorKind::NoSuchBucket
            | StoreErrorKind::PreconditionFailed
            | StoreErrorKind::InvalidRange
            | StoreErrorKind::Unreachable
            | StoreErrorKind::Transient
            | StoreErrorKind::Other => libc::EIO,
        };
        let message = match e.kind {
            StoreErrorKind::PreconditionFailed => format!(
                "{}: the object changed in S3 while it was open; reopen it to read the new version",
                e.message
            ),
            _ => e.message,
        };
        Error { errno, message }
    }
}
