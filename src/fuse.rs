//! The FUSE edge: a thin adapter from fuser callbacks to the async core in `fs`. Each
//! request becomes a task on the tokio runtime that owns its reply and answers when the
//! core is done, so the FUSE threads never wait on S3.

use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::task::Context;
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use tracing::{debug, debug_span, warn, Instrument, Span};

use crate::fs::attr::Kind;
use crate::fs::{Attr, Error, Filesystem, Owner, PageOffer, SetAttr};
use crate::store::ObjectStore;

/// Largest read/write the kernel sends in one request.
const MAX_IO: u32 = 1024 * 1024;

/// The I/O size reported in `st_blksize`. Runtimes size their read buffers from it
/// (Python reads `st_blksize` bytes for a 4 KiB `read`), so it matches the first
/// ranged GET of a stream: a program that reads a file's head fetches one request's
/// worth, not the whole file. Sequential readers still get 1 MiB kernel requests.
const BLKSIZE: u32 = 128 * 1024;

pub struct FuseAdapter<S> {
    fs: Arc<Filesystem<S>>,
    rt: tokio::runtime::Handle,
    xattrs: bool,
    /// Where reads send the blocks they fetched, for the kernel's page cache; set once
    /// the session exists (its notifier does the pushing).
    pages: Arc<OnceLock<SyncSender<PageOffer>>>,
    /// The mount's id in /proc/self/mountinfo (as /proc/PID/fdinfo names it), once mounted.
    mount_id: Arc<OnceLock<u64>>,
}

impl<S: ObjectStore> FuseAdapter<S> {
    pub fn new(fs: Arc<Filesystem<S>>, rt: tokio::runtime::Handle) -> Self {
        FuseAdapter {
            fs,
            rt,
            xattrs: true,
            pages: Arc::new(OnceLock::new()),
            mount_id: Arc::new(OnceLock::new()),
        }
    }

    /// The slot for the mount's id, set once the session is mounted.
    pub fn mount_id_slot(&self) -> Arc<OnceLock<u64>> {
        self.mount_id.clone()
    }

    /// The slot for [`push_pages`]' sender.
    pub fn page_slot(&self) -> Arc<OnceLock<SyncSender<PageOffer>>> {
        self.pages.clone()
    }

    /// Without xattrs every xattr call answers ENOSYS, which the kernel remembers for
    /// the mount: `ls -l` then costs no round trip for its SELinux and ACL probes.
    pub fn with_xattrs(mut self, on: bool) -> Self {
        self.xattrs = on;
        self
    }

    fn ttl(&self) -> Duration {
        self.fs.ttl()
    }

    /// Run a request's future: polled once here, on the FUSE thread, so a request the
    /// caches can answer is replied to at once, without waking a runtime thread (that
    /// hand-off was most of the cost of `ls -l` and of reads from prefetched data). A
    /// future that has to wait (on S3, a lock, the memory budget) goes on as a task on
    /// the runtime, which polls it again with a real waker: the FUSE loop never blocks.
    fn dispatch<F: Future<Output = ()> + Send + 'static>(&self, fut: F) {
        let _runtime = self.rt.enter();
        let mut fut = Box::pin(fut);
        let waker = futures::task::noop_waker();
        if fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
        {
            self.rt.spawn(fut);
        }
    }
    /// Run a request whose answer is success or an errno (`op` names it in the log).
    fn answer_empty<F>(&self, op: &'static str, span: Span, reply: ReplyEmpty, fut: F)
    where
        F: Future<Output = crate::fs::Result<()>> + Send + 'static,
    {
        self.dispatch(
            async move {
                match fut.await {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno(op, &e)),
                }
            }
            .instrument(span),
        );
    }

    /// Run a request that answers with a directory entry (lookup, mkdir, ...).
    fn answer_entry<F>(&self, op: &'static str, span: Span, reply: ReplyEntry, fut: F)
    where
        F: Future<Output = crate::fs::Result<Attr>> + Send + 'static,
    {
        let ttl = self.ttl();
        self.dispatch(
            async move {
                match fut.await {
                    Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                    Err(e) => reply.error(errno(op, &e)),
                }
            }
            .instrument(span),
        );
    }

    /// Run a request that answers with attributes (getattr, setattr).
    fn answer_attr<F>(&self, op: &'static str, span: Span, reply: ReplyAttr, fut: F)
    where
        F: Future<Output = crate::fs::Result<Attr>> + Send + 'static,
    {
        let ttl = self.ttl();
        self.dispatch(
            async move {
                match fut.await {
                    Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                    Err(e) => reply.error(errno(op, &e)),
                }
            }
            .instrument(span),
        );
    }
}

/// Start the thread that pushes blocks fetched by random reads into the kernel's page
/// cache (FUSE notify_store), so nearby reads are answered without a request. A push
/// can wait on page locks of reads in flight, so it runs on this thread alone, never on
/// a FUSE or runtime thread; offers that find the queue full are dropped.
pub fn push_pages<S: ObjectStore>(
    fs: Arc<Filesystem<S>>,
    notifier: fuser::Notifier,
) -> std::io::Result<SyncSender<PageOffer>> {
    // At most 16 MiB of blocks wait here; more are dropped (they are only a cache).
    let (tx, rx) = sync_channel::<PageOffer>(256);
    std::thread::Builder::new()
        .name("bucketfs-pages".into())
        .spawn(move || {
            for o in rx {
                fs.offer_pages(&o, |ino, offset, data| {
                    notifier
                        .store(INodeNo(ino), offset, data)
                        .inspect_err(|e| debug!(ino, offset, "page push refused: {e}"))
                });
            }
        })?;
    Ok(tx)
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
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// Attributes for an entry the kernel must look up before use (valid for zero time).
fn placeholder(ino: u64, kind: Kind) -> Attr {
    Attr {
        ino,
        stat: crate::fs::attr::Stat {
            kind,
            size: 0,
            perm: 0,
            uid: 0,
            gid: 0,
            atime: std::time::UNIX_EPOCH,
            mtime: std::time::UNIX_EPOCH,
            ctime: std::time::UNIX_EPOCH,
        },
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
        warn!(op, "{}", e);
    } else {
        debug!(op, "{}", e);
    }
    Errno::from_i32(e.errno())
}

/// Whether process `tgid` has a descriptor open on inode `ino` of mount `mnt`, from
/// /proc/TGID/fdinfo (`mnt_id` and `ino` lines). The descriptor being closed is already
/// gone from the table when its flush arrives.
fn holds_descriptor(tgid: u32, mnt: u64, ino: u64) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{tgid}/fdinfo")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            return false;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        field("mnt_id:") == Some(mnt) && field("ino:") == Some(ino)
    })
}

/// The thread group (process) of thread `pid`, as FUSE requests name the calling thread;
/// `pid` itself when /proc cannot tell (the thread is gone).
fn thread_group(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(pid)
}

fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
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
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        let _ = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS);
        // open(O_TRUNC) arrives as one request, so a truncated file starts a fresh upload.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn destroy(&mut self) {
        let failed = self.rt.block_on(self.fs.drain());
        if failed > 0 {
            warn!(
                failed,
                "some uploads failed at unmount (see the errors above)"
            );
        }
        // The stats line is logged once, by the daemon once the session has ended.
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let span = debug_span!("lookup", ino = parent.0, name = %String::from_utf8_lossy(&name));
        self.answer_entry("lookup", span, reply, async move {
            fs.lookup(parent.0, &name).await
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = self.fs.clone();
        self.answer_attr(
            "getattr",
            debug_span!("getattr", ino = ino.0),
            reply,
            async move { fs.getattr(ino.0).await },
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.dispatch(
            async move {
                match fs.readlink(ino.0).await {
                    Ok(t) => reply.data(t.as_bytes()),
                    Err(e) => reply.error(errno("readlink", &e)),
                }
            }
            .instrument(debug_span!("readlink", ino = ino.0)),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let tgid = thread_group(req.pid());
        self.dispatch(
            async move {
                match fs.open(ino.0, flags.0).await {
                    Ok(o) => {
                        fs.set_opener(o.fh, tgid);
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
        let pages = self.pages.clone();
        self.dispatch(
            async move {
                match fs.read_offering(fh.0, offset, size).await {
                    Ok((b, offers)) => {
                        // Queued before the answer, so pushes keep the order of the
                        // reads; a push waits for the page locks of this read, which the
                        // answer releases.
                        if let Some(tx) = pages.get() {
                            for o in offers {
                                if let Err(TrySendError::Full(o)) = tx.try_send(o) {
                                    debug!(ino = o.ino, offset = o.offset, "page push queue full");
                                }
                            }
                        }
                        reply.data(&b);
                    }
                    Err(e) => reply.error(errno("read", &e)),
                }
            }
            .instrument(debug_span!("read", ino = ino.0, offset, size)),
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        let fs = self.fs.clone();
        let data = data.to_vec();
        let len = data.len();
        self.dispatch(
            async move {
                match fs.write(fh.0, offset, &data).await {
                    Ok(n) => reply.written(n),
                    Err(e) => reply.error(errno("write", &e)),
                }
            }
            .instrument(debug_span!("write", ino = ino.0, offset, len)),
        );
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let tgid = thread_group(req.pid());
        // `echo x > f`: the shell opens f, dup2()s it onto stdout and closes the original
        // descriptor before anything is written. Committing that empty file would cost a
        // PutObject and show other clients an empty object (and add a version); while the
        // same process still holds a descriptor of this file, its close flushes again.
        if let Some(mnt) = self.mount_id.get() {
            if fs.holds_nothing_new(fh.0) && holds_descriptor(tgid, *mnt, ino.0) {
                debug!(
                    ino = ino.0,
                    tgid,
                    "flush of an empty new file still open elsewhere in the process: deferred"
                );
                return reply.ok();
            }
        }
        self.answer_empty(
            "flush",
            debug_span!("flush", ino = ino.0),
            reply,
            async move { fs.flush_from(fh.0, tgid).await },
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.answer_empty(
            "fsync",
            debug_span!("fsync", ino = ino.0),
            reply,
            async move { fs.flush(fh.0).await },
        );
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.answer_empty(
            "release",
            debug_span!("release", ino = ino.0),
            reply,
            async move { fs.release(fh.0).await },
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        // Plain allocation: the file grows to cover the range, like posix_fallocate.
        let fs = self.fs.clone();
        self.answer_empty(
            "fallocate",
            debug_span!("fallocate", ino = ino.0),
            reply,
            async move {
                match fs.getattr(ino.0).await {
                    Ok(a) if a.stat.size >= offset + length => Ok(()),
                    Ok(_) => fs
                        .setattr(
                            ino.0,
                            SetAttr {
                                size: Some(offset + length),
                                ..Default::default()
                            },
                        )
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                }
            },
        );
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
        self.dispatch(
            async move {
                let r = fs
                    .readdir_with(ino.0, fh.0, offset, |e| {
                        reply.add(INodeNo(e.ino), e.offset, file_type(e.kind), &e.name)
                    })
                    .await;
                match r {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno("readdir", &e)),
                }
            }
            .instrument(debug_span!("readdir", ino = ino.0, offset)),
        );
    }

    /// Entries with their attributes, so `ls -l` needs no lookup per entry when the
    /// listing (listing mode) or cached metadata (POSIX mode) already answers.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let fs = self.fs.clone();
        self.dispatch(
            async move {
                let r = fs
                    .readdir_with(ino.0, fh.0, offset, |e| {
                        // The kernel takes no reference for "." and "..".
                        let dots = e.name == "." || e.name == "..";
                        let known = if dots { None } else { fs.entry_attr(e) };
                        let (attr, ttl) =
                            known.unwrap_or_else(|| (placeholder(e.ino, e.kind), Duration::ZERO));
                        let full = reply.add(
                            INodeNo(e.ino),
                            e.offset,
                            &e.name,
                            &ttl,
                            &file_attr(&attr),
                            Generation(0),
                        );
                        if full && known.is_some() {
                            // Not sent: the kernel holds no reference, and the entry is
                            // offered again (same inode) on its next call.
                            fs.unreference(e.ino, 1);
                        }
                        full
                    })
                    .await;
                match r {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno("readdirplus", &e)),
                }
            }
            .instrument(debug_span!("readdirplus", ino = ino.0, offset)),
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
        if !self.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        self.dispatch(
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
        if !self.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        let fs = self.fs.clone();
        self.dispatch(
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
        if !self.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let value = value.to_vec();
        self.answer_empty(
            "setxattr",
            debug_span!("setxattr", ino = ino.0),
            reply,
            async move { fs.setxattr(ino.0, &name, &value).await },
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let owner = owner(req);
        self.answer_entry(
            "mkdir",
            debug_span!("mkdir", ino = parent.0),
            reply,
            async move { fs.mkdir(parent.0, &name, mode & !umask, owner).await },
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Devices, FIFOs and sockets cannot be objects.
            return reply.error(Errno::EPERM);
        }
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let owner = owner(req);
        self.answer_entry(
            "mknod",
            debug_span!("mknod", ino = parent.0),
            reply,
            async move {
                let (a, o) = fs.create(parent.0, &name, mode & !umask, owner).await?;
                fs.release(o.fh).await.map(|_| a)
            },
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let owner = owner(req);
        let ttl = self.ttl();
        let tgid = thread_group(req.pid());
        self.dispatch(
            async move {
                match fs.create(parent.0, &name, mode & !umask, owner).await {
                    Ok((a, o)) => {
                        fs.set_opener(o.fh, tgid);
                        reply.created(
                            &ttl,
                            &file_attr(&a),
                            Generation(0),
                            FileHandle(o.fh),
                            FopenFlags::empty(),
                        )
                    }
                    Err(e) => reply.error(errno("create", &e)),
                }
            }
            .instrument(debug_span!("create", ino = parent.0)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        self.answer_empty(
            "unlink",
            debug_span!("unlink", ino = parent.0),
            reply,
            async move { fs.unlink(parent.0, &name).await },
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        self.answer_empty(
            "rmdir",
            debug_span!("rmdir", ino = parent.0),
            reply,
            async move { fs.rmdir(parent.0, &name).await },
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let fs = self.fs.clone();
        let name = link_name.as_bytes().to_vec();
        let target = target.as_os_str().as_bytes().to_vec();
        let owner = owner(req);
        self.answer_entry(
            "symlink",
            debug_span!("symlink", ino = parent.0),
            reply,
            async move { fs.symlink(parent.0, &name, &target, owner).await },
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        let newname = newname.as_bytes().to_vec();
        self.answer_empty(
            "rename",
            debug_span!("rename", ino = parent.0),
            reply,
            async move {
                fs.rename(parent.0, &name, newparent.0, &newname, flags.bits())
                    .await
            },
        );
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
        let t = |x: fuser::TimeOrNow| match x {
            fuser::TimeOrNow::SpecificTime(t) => t,
            fuser::TimeOrNow::Now => std::time::SystemTime::now(),
        };
        let ch = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(t),
            mtime: mtime.map(t),
        };
        let fs = self.fs.clone();
        self.answer_attr(
            "setattr",
            debug_span!("setattr", ino = ino.0),
            reply,
            async move { fs.setattr(ino.0, ch).await },
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        let fs = self.fs.clone();
        let name = name.as_bytes().to_vec();
        self.answer_empty(
            "removexattr",
            debug_span!("removexattr", ino = ino.0),
            reply,
            async move { fs.removexattr(ino.0, &name).await },
        );
    }

    /// Objects are not terminals or devices: every ioctl is "not a tty" (Python's `open`
    /// asks TCGETS of each file it opens; the kernel does not remember a refusal, so a
    /// logged "not implemented" would be one warning per file).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// SEEK_DATA/SEEK_HOLE: objects have no holes; ENOSYS makes the kernel answer them
    /// itself from the file size, from then on.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// `cp` copies with copy_file_range: a whole file into an empty one is copied
    /// server-side (see `fs::copy`). Anything else is EOPNOTSUPP, on which the kernel
    /// copies through reads and writes itself (ENOSYS would stop it asking again).
    /// FICLONE (`cp --reflink=always`) never reaches FUSE: the kernel refuses it.
    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: fuser::ReplyWrite,
    ) {
        let fs = self.fs.clone();
        self.dispatch(
            async move {
                match fs
                    .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
                    .await
                {
                    // The reply holds at most u32::MAX; the kernel asks for less.
                    Ok(n) => reply.written(n.min(u64::from(u32::MAX)) as u32),
                    // The core logged why at debug level: no warning per fallback.
                    Err(e @ Error::Unsupported(_)) => reply.error(Errno::from_i32(e.errno())),
                    Err(e) => reply.error(errno("copy_file_range", &e)),
                }
            }
            .instrument(debug_span!(
                "copy_file_range",
                ino = ino_in.0,
                ino_out = ino_out.0,
                offset_in,
                offset_out,
                len
            )),
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions).
        reply.ok();
    }
}
