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
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let Some(dev) = device_of(&info, &mountpoint.to_string_lossy()) else {
        debug!(mountpoint = %mountpoint.display(), "mount not found in mountinfo");
        return;
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&path, kib.to_string()) {
        Ok(()) => info!(kib, %path, "readahead raised"),
        Err(e) => debug!(kib, %path, "readahead left at the kernel default: {e}"),
    }
}

/// The `MAJOR:MINOR` of the last mount at `mountpoint` in a mountinfo text.
fn device_of(mountinfo: &str, mountpoint: &str) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && unescape(f[4]) == mountpoint).then(|| f[2].to_string())
        })
        .next_back()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_mount_at_a_path_with_escapes() {
        let info = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
90 22 0:61 / /mnt/my\\040data rw,nosuid,nodev - fuse.bucketfs bucketfs:b rw
91 22 0:62 / /mnt/other rw - fuse.bucketfs bucketfs:c rw
95 90 0:70 / /mnt/my\\040data rw - fuse.bucketfs bucketfs:d rw
";
        assert_eq!(device_of(info, "/mnt/my data").as_deref(), Some("0:70"));
        assert_eq!(device_of(info, "/mnt/other").as_deref(), Some("0:62"));
        assert_eq!(device_of(info, "/mnt/none"), None);
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
    }
}
