//! Kernel readahead of the mount. FUSE can only lower the page cache's readahead below
//! the 128 KiB default, so large sequential reads arrive as 128 KiB requests, each a
//! round trip through the daemon. Raising the mount's backing-device readahead
//! (`/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`) lets the kernel ask for up to 1 MiB at
//! once (the request size negotiated at init), which more than halves the CPU time per
//! byte read. Only root may write that file; otherwise the default stays and a debug line
//! says so.

use std::path::Path;

use tracing::{debug, info};

/// Set the readahead of the filesystem mounted at `mountpoint` to `kib`. Finds its
/// device number in /proc/self/mountinfo, so it never touches the mount itself (the
/// session is not serving requests yet).
pub fn raise(mountpoint: &Path, kib: u32) {
    let Some(m) = crate::mountinfo::at(mountpoint) else {
        debug!(mountpoint = %mountpoint.display(), "mount not found in mountinfo");
        return;
    };
    let path = format!("/sys/class/bdi/{}/read_ahead_kb", m.dev);
    match std::fs::write(&path, kib.to_string()) {
        Ok(()) => info!(kib, %path, "readahead raised"),
        Err(e) => debug!(kib, %path, "readahead left at the kernel default: {e}"),
    }
}
