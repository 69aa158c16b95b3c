//! The FUSE mount itself when bucketfs runs as root: /dev/fuse opened and mounted with
//! mount(2) as type `fuse.bucketfs`, the bucket as the source. fuser's own direct mount
//! names the type plain `fuse` (it drops the subtype), so mount(8), df -T, findmnt and
//! fstab tools could not tell a bucketfs mount from any other; as a user, fuser goes
//! through fusermount3, which keeps the subtype, and this module is not used.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::MsFlags;

/// What the mount shows and allows.
pub struct Options<'a> {
    /// The source column (`BUCKET[/PREFIX]`).
    pub source: &'a str,
    pub read_only: bool,
    pub allow_other: bool,
}

/// Mount /dev/fuse at `mountpoint`; the returned descriptor is the session's channel.
pub fn mount(mountpoint: &Path, o: &Options) -> std::io::Result<OwnedFd> {
    let root_mode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let dev = File::options().read(true).write(true).open("/dev/fuse")?;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={},default_permissions",
        dev.as_raw_fd(),
        root_mode,
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if o.allow_other {
        data.push_str(",allow_other");
    }
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME;
    if o.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some(o.source),
        mountpoint,
        Some("fuse.bucketfs"),
        flags,
        Some(data.as_str()),
    )
    .map_err(std::io::Error::from)?;
    Ok(dev.into())
}

/// Unmount what `mount` mounted: a plain unmount, else (busy) a lazy one.
pub fn unmount(mountpoint: &Path) -> std::io::Result<()> {
    match nix::mount::umount2(mountpoint, nix::mount::MntFlags::empty()) {
        Ok(()) => Ok(()),
        // Already gone (fusermount3 -u, umount by hand): nothing to do.
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
