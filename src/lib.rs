//! bucketfs: mount an S3 bucket (AWS or any S3-compatible store) as a POSIX directory.
//!
//! Data flows FUSE -> `fuse` (adapter) -> `fs` (core, FUSE-free) -> `store` (S3).

pub mod cli;
pub mod fs;
pub mod fuse;
pub mod kernel_mount;
pub mod logging;
pub mod manual;
pub mod metrics;
pub mod mount;
pub mod mount_helper;
pub mod mountinfo;
pub mod notify;
pub mod presign;
pub mod readahead;
pub mod rm;
pub mod store;
