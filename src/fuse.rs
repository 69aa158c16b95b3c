//! The FUSE edge: a thin adapter from fuser callbacks to the async core in `fs`. Each
//! request becomes a task on the tokio runtime that owns its reply and answers when the
//! core is done, so the FUSE threads never wait on S3.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use tracing::{debug, debug_span, warn, Instrument};

use crate::fs::attr::Kind;
use crate::fs::{Attr, Error, Filesystem};
use crate::store::ObjectStore;

/// Largest read/write the kernel sends in one request.
const MAX_IO: u32 = 1024 * 1024;

pub struct FuseAdapter<S> {
    fs: Arc<Filesystem<S>>,
    rt: tokio::runtime::Handle,
}

impl<S: ObjectStore> FuseAdapter<S> {
    pub fn new(fs: Arc<Filesystem<S>>, rt: tokio::runtime::Handle) -> Self {
        FuseAdapter { fs, rt }
    }

    fn ttl(&self) -> Duration {
        self.fs.ttl()
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let st = &a.stat;
    let (kind, nlink) = match st.kind {
        Kind::File => (FileType::RegularFile, 1),
        Kind::Dir => (FileType::Directory, 2),
        Kind::Symlink => (FileType::Symlink, 1),
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: st.size,
        blocks: st.size.div_ceil(512),
        atime: st.atime,
        mtime: st.mtime,
        ctime: st.ctime,
        crtime: st.mtime,
        kind,
        perm: st.perm,
        nlink,
        uid: st.uid,
        gid: st.gid,
        rdev: 0,
        blksize: MAX_IO,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

/// The errno to reply, logging the failure when it is more than routine.
fn errno(op: &str, e: &Error) -> Errno {
    if e.is_noteworthy() {
        warn!(op, "{}", e.message);
    } else {
        debug!(op, "{}", e.message);
    }
    Errno::from_i32(e.errno)
}

fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl<S: ObjectStore> fuser::Filesystem for FuseAdapter<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(MAX_IO);
        let _ = config.set_max_write(MAX_IO);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS);
        Ok(())
    }

    fn destroy(&mut self) {
        self.fs.log_stats("unmount");
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let ttl = self.ttl();
        let span = debug_span!("lookup", ino = parent.0, name = %String::from_utf8_lossy(&name));
        self.rt.spawn(
            async move {
                match fs.lookup(parent.0, &name).await {
                    Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                    Err(e) => reply.error(errno("lookup", &e)),
                }
            }
            .instrument(span),
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = self.fs.clone();
        let ttl = self.ttl();
        self.rt.spawn(
            async move {
                match fs.getattr(ino.0).await {
                    Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                    Err(e) => reply.error(errno("getattr", &e)),
                }
            }
            .instrument(debug_span!("getattr", ino = ino.0)),
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.rt.spawn(
            async move {
                match fs.readlink(ino.0).await {
                    Ok(t) => reply.data(t.as_bytes()),
                    Err(e) => reply.error(errno("readlink", &e)),
                }
            }
            .instrument(debug_span!("readlink", ino = ino.0)),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.rt.spawn(
            async move {
                match fs.open(ino.0, flags.0).await {
                    Ok(o) => {
                        let f = if o.keep_cache {
                            FopenFlags::FOPEN_KEEP_CACHE
                        } else {
                            FopenFlags::empty()
                        };
                        reply.opened(FileHandle(o.fh), f)
                    }
                    Err(e) => reply.error(errno("open", &e)),
                }
            }
            .instrument(debug_span!("open", ino = ino.0)),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(
            async move {
                match fs.read(fh.0, offset, size).await {
                    Ok(b) => reply.data(&b),
                    Err(e) => reply.error(errno("read", &e)),
                }
            }
            .instrument(debug_span!("read", ino = ino.0, offset, size)),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(
            async move {
                match fs.readdir(ino.0, fh.0, offset).await {
                    Ok(entries) => {
                        for e in entries {
                            if reply.add(INodeNo(e.ino), e.offset, file_type(e.kind), &e.name) {
                                break;
                            }
                        }
                        reply.ok();
                    }
                    Err(e) => reply.error(errno("readdir", &e)),
                }
            }
            .instrument(debug_span!("readdir", ino = ino.0, offset)),
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        self.rt.spawn(
            async move {
                match fs.getxattr(ino.0, &name).await {
                    Ok(v) => xattr_reply(reply, &v, size),
                    Err(e) => reply.error(errno("getxattr", &e)),
                }
            }
            .instrument(debug_span!("getxattr", ino = ino.0)),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.rt.spawn(
            async move {
                match fs.listxattr(ino.0).await {
                    Ok(names) => {
                        let mut buf = Vec::new();
                        for n in names {
                            buf.extend_from_slice(n.as_bytes());
                            buf.push(0);
                        }
                        xattr_reply(reply, &buf, size)
                    }
                    Err(e) => reply.error(errno("listxattr", &e)),
                }
            }
            .instrument(debug_span!("listxattr", ino = ino.0)),
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let value = value.to_vec();
        self.rt.spawn(
            async move {
                match fs.setxattr(ino.0, &name, &value).await {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno("setxattr", &e)),
                }
            }
            .instrument(debug_span!("setxattr", ino = ino.0)),
        );
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        // Objects cannot share data: hard links are refused.
        reply.error(Errno::EPERM);
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if mode.is_none()
            && uid.is_none()
            && gid.is_none()
            && size.is_none()
            && atime.is_none()
            && mtime.is_none()
        {
            return self.getattr(_req, ino, None, reply);
        }
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions).
        reply.ok();
    }
}
