//! Reading /proc/self/mountinfo: which mount sits at a path, with its mount id (as
//! /proc/PID/fdinfo names it) and device number (as /sys/class/bdi names it).

use std::path::Path;

/// One mount, as mountinfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    /// `MAJOR:MINOR`.
    pub dev: String,
}

/// The last (topmost) mount at `path`, if any.
pub fn at(path: &Path) -> Option<Mount> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    find(&info, &path.to_string_lossy())
}

/// The last mount at `mountpoint` in a mountinfo text.
pub fn find(mountinfo: &str, mountpoint: &str) -> Option<Mount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() <= 4 || unescape(f[4]) != mountpoint {
                return None;
            }
            Some(Mount {
                id: f[0].parse().ok()?,
                dev: f[2].to_string(),
            })
        })
        .next_back()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
pub fn unescape(s: &str) -> String {
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
        let m = find(info, "/mnt/my data").unwrap();
        assert_eq!((m.id, m.dev.as_str()), (95, "0:70"));
        assert_eq!(find(info, "/mnt/other").unwrap().dev, "0:62");
        assert_eq!(find(info, "/mnt/none"), None);
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
