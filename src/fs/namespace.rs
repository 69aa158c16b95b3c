//! Namespace changes: mkdir (a `dir/` marker, so empty directories persist), rmdir
//! (only when empty), unlink, symlink, and rename. S3 has no rename: a file is copied
//! server-side and then deleted; a directory is every key under it, copied in parallel,
//! deleted once all copies succeeded, its marker last. This is not atomic across keys
//! (see docs/semantics.md), but a failure never deletes a source that was not copied.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use tracing::{debug, error};

use super::attr::{self, Kind, Stat};
use super::error::{Error, Result};
use super::inode::{Inode, ROOT_INO};
use super::modify::Owner;
use super::names::{check_request_name, dir_prefix, file_key};
use super::readdir::Snapshot;
use super::{Attr, Filesystem};
use crate::store::{ObjectStore, PutOptions};

/// Parallel copies and deletes of a directory rename.
const RENAME_CONCURRENCY: usize = 32;

impl<S: ObjectStore> Filesystem<S> {
    /// A change in `dir` under `name`: its cached listing and negative entry are stale.
    pub(crate) fn dir_changed(&self, dir: &Inode, name: &str) {
        let listing = {
            let mut s = dir.state.lock();
            s.changes += 1;
            s.listing.clone()
        };
        if let Some(snap) = listing {
            snap.lock().changed.insert(name.to_string());
        }
        self.negative.invalidate(&(dir.ino, name.to_string()));
    }

    /// `name` (object or marker `key`) is gone from `dir`: forget what this mount knew
    /// of it and remember it missing.
    async fn name_removed(&self, dir: &Inode, name: &str, key: &str) {
        self.meta.invalidate(key).await;
        self.inodes.remove_name(dir.ino, name);
        self.dir_changed(dir, name);
        self.negative.insert((dir.ino, name.to_string()), ());
    }

    /// The inode of `name` in `parent` (the kernel looked it up before asking for a
    /// change, but the table may have dropped it).
    async fn entry(&self, parent: u64, name: &str) -> Result<Arc<Inode>> {
        if let Some(i) = self.inodes.child(parent, name) {
            return Ok(i);
        }
        let a = self.lookup(parent, name.as_bytes()).await?;
        let i = self.inodes.get(a.ino)?;
        self.inodes.forget(a.ino, 1);
        Ok(i)
    }

    /// EEXIST when `name` is taken in `parent`: a new directory or symlink never
    /// overwrites a file, a directory marker or a link of the same name (the kernel
    /// checks its own cache first, but that may be stale or the call may come from
    /// elsewhere). Usually answered from the lookup the kernel just made.
    async fn check_free(&self, parent: u64, name: &str, key: &str) -> Result<()> {
        match self.entry(parent, name).await {
            Ok(_) => Err(Error::Exists(key.to_string())),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn new_stat(kind: Kind, perm: u32, owner: Owner, size: u64) -> Stat {
        let now = SystemTime::now();
        Stat {
            kind,
            size,
            perm: (perm & 0o7777) as u16,
            uid: owner.uid,
            gid: owner.gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    pub async fn mkdir(&self, parent: u64, name: &[u8], mode: u32, owner: Owner) -> Result<Attr> {
        self.check_writable_at(&self.inodes.get(parent)?.key)?;
        let name = check_request_name(name)?;
        if self.cfg.all_buckets && parent == ROOT_INO {
            crate::store::account::valid_bucket_name(name).map_err(|why| {
                Error::Invalid(format!("{name}: cannot be a bucket's name: {why}"))
            })?;
        }
        let dir = self.dir_inode(parent)?;
        let prefix = dir_prefix(&dir.key, name)?;
        self.check_free(parent, name, &prefix).await?;
        let stat = Self::new_stat(Kind::Dir, mode, owner, 0);
        let opts = attr::put_options(
            &stat,
            true,
            Some("application/x-directory"),
            &Default::default(),
        );
        self.uploader.put(&prefix, Bytes::new(), &opts).await?;
        self.unlisted.add(&prefix);
        self.meta.invalidate(&prefix).await;
        let inode = self
            .inodes
            .insert(parent, name, &prefix, stat, self.valid_until());
        // A directory made here is empty: lookups in it need no request for a while.
        inode.state.lock().listing = Some(Arc::new(parking_lot::Mutex::new(Snapshot::empty_dir())));
        self.dir_changed(&dir, name);
        Ok(Attr {
            ino: inode.ino,
            stat,
        })
    }

    pub async fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        owner: Owner,
    ) -> Result<Attr> {
        self.check_writable_at(&self.inodes.get(parent)?.key)?;
        self.check_not_at_account_root(parent, name)?;
        let name = check_request_name(name)?;
        let target = std::str::from_utf8(target)
            .map_err(|_| Error::Invalid("symlink target is not UTF-8".into()))?;
        let dir = self.dir_inode(parent)?;
        let key = file_key(&dir.key, name)?;
        self.check_free(parent, name, &key).await?;
        let stat = Self::new_stat(Kind::Symlink, 0o777, owner, target.len() as u64);
        let opts = attr::put_options(&stat, true, None, &Default::default());
        self.uploader
            .put(&key, Bytes::copy_from_slice(target.as_bytes()), &opts)
            .await?;
        self.meta.invalidate(&key).await;
        let inode = self
            .inodes
            .insert(parent, name, &key, stat, self.valid_until());
        inode.state.lock().symlink_target = Some(target.to_string());
        self.dir_changed(&dir, name);
        Ok(Attr {
            ino: inode.ino,
            stat,
        })
    }

    pub async fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.check_writable_at(&self.inodes.get(parent)?.key)?;
        let name = check_request_name(name)?;
        let dir = self.dir_inode(parent)?;
        let inode = self.entry(parent, name).await?;
        if inode.kind == Kind::Dir {
            return Err(Error::IsDir(inode.key.clone()));
        }
        let mut in_s3 = true;
        if let Some(w) = self.writer(inode.ino) {
            let mut g = w.lock().await;
            g.unlinked = true;
            in_s3 = g.etag.is_some();
        }
        if in_s3 {
            self.store.delete(&inode.key).await.map_err(Error::from)?;
        }
        self.name_removed(&dir, name, &inode.key).await;
        Ok(())
    }

    /// Whether the directory `prefix` holds anything but its marker (here or pending).
    async fn dir_has_children(&self, prefix: &str) -> Result<bool> {
        if !self.unlisted.under(prefix).is_empty() {
            return Ok(true);
        }
        let pending = self.writers.lock().keys().copied().collect::<Vec<_>>();
        for ino in pending {
            if let Ok(i) = self.inodes.get(ino) {
                if i.key.starts_with(prefix) && i.key != prefix {
                    if let Some(w) = self.writer(ino) {
                        if !w.lock().await.unlinked {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        let page = self
            .store
            .list(prefix, None, None, Some(2))
            .await
            .map_err(Error::from)?;
        Ok(page.objects.iter().any(|o| o.key != prefix) || !page.prefixes.is_empty())
    }

    pub async fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.check_writable_at(&self.inodes.get(parent)?.key)?;
        let name = check_request_name(name)?;
        let dir = self.dir_inode(parent)?;
        let inode = self.entry(parent, name).await?;
        if inode.kind != Kind::Dir {
            return Err(Error::NotDir(inode.key.clone()));
        }
        if self.dir_has_children(&inode.key).await? {
            return Err(Error::NotEmpty(inode.key.clone()));
        }
        self.store.delete(&inode.key).await.map_err(Error::from)?;
        self.unlisted.remove_tree(&inode.key);
        self.name_removed(&dir, name, &inode.key).await;
        Ok(())
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<()> {
        self.check_writable_at(&self.inodes.get(parent)?.key)?;
        self.check_writable_at(&self.inodes.get(newparent)?.key)?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(Error::Invalid("RENAME_EXCHANGE is not supported".into()));
        }
        let name = check_request_name(name)?;
        let newname = check_request_name(newname)?;
        let dir = self.dir_inode(parent)?;
        let newdir = self.dir_inode(newparent)?;
        let src = self.entry(parent, name).await?;
        let dst = match self.entry(newparent, newname).await {
            Ok(i) => Some(i),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        if let Some(d) = &dst {
            if d.ino == src.ino {
                return Ok(());
            }
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(Error::Exists(d.key.clone()));
            }
        }
        if self.cfg.all_buckets {
            if src.kind != Kind::Dir {
                self.check_not_at_account_root(newparent, newname.as_bytes())?;
            }
            let to = format!("{}{newname}/", newdir.key);
            if !self.same_bucket(&src.key, &to) {
                return Err(Error::CrossDevice(format!(
                    "{} cannot move to {to} in place: another bucket",
                    src.key
                )));
            }
        }
        let new_key = if src.kind == Kind::Dir {
            // As rename(2): moving a directory below itself is EINVAL, whatever the
            // target is.
            let new_prefix = dir_prefix(&newdir.key, newname)?;
            if new_prefix.starts_with(&src.key) {
                return Err(Error::Invalid(format!(
                    "cannot move {} into itself",
                    src.key
                )));
            }
            if let Some(d) = &dst {
                if d.kind != Kind::Dir {
                    return Err(Error::NotDir(d.key.clone()));
                }
                if self.dir_has_children(&d.key).await? {
                    return Err(Error::NotEmpty(d.key.clone()));
                }
            }
            self.rename_dir(&src.key, &new_prefix).await?;
            new_prefix
        } else {
            if let Some(d) = &dst {
                if d.kind == Kind::Dir {
                    return Err(Error::IsDir(d.key.clone()));
                }
            }
            let new_key = file_key(&newdir.key, newname)?;
            self.rename_file(&src, &new_key, dst.is_some()).await?;
            new_key
        };
        // Whatever was open under the replaced name must not upload over the new content.
        if let Some(d) = &dst {
            if let Some(w) = self.writer(d.ino) {
                w.lock().await.unlinked = true;
            }
        }
        self.meta.invalidate(&src.key).await;
        self.meta.invalidate(&new_key).await;
        self.inodes.rename(src.ino, newparent, newname, &new_key);
        if src.kind == Kind::Dir {
            self.inodes.rekey_prefix(&src.key, &new_key);
        }
        if let Ok(i) = self.inodes.get(src.ino) {
            i.state.lock().valid_until = std::time::Instant::now();
        }
        self.dir_changed(&dir, name);
        self.dir_changed(&newdir, newname);
        self.negative.insert((dir.ino, name.to_string()), ());
        Ok(())
    }

    /// Copy the file `src` to `new_key` with its metadata, then delete it. A file open
    /// for writing is committed first. When the source cannot be deleted, a copy to a
    /// new name (`replaces` false) is deleted again, so the failed rename leaves things
    /// as they were; a copy over an existing file stays (the old target is gone either
    /// way, and the source still holds the same bytes).
    async fn rename_file(&self, src: &Arc<Inode>, new_key: &str, replaces: bool) -> Result<()> {
        let w = self.writer(src.ino);
        let mut guard = match &w {
            Some(w) => Some(w.lock().await),
            None => None,
        };
        if let Some(g) = guard.as_deref_mut() {
            if g.is_dirty() {
                let r = g.commit(&self.uploader).await;
                if let Err(e) = r {
                    error!(key = %g.key, "upload before rename failed: {}", e);
                    return Err(e);
                }
            }
        }
        self.meta.invalidate(&src.key).await;
        let m = self
            .meta
            .head(&src.key)
            .await?
            .ok_or_else(|| Error::NotFound(src.key.to_string()))?;
        let opts = self.copy_options(&src.key, &m).await?;
        let etag = self
            .uploader
            .copy_object(&src.key, Some(&m.etag), new_key, m.size, &opts, true)
            .await?;
        if let Err(e) = self.store.delete(&src.key).await {
            error!(key = %src.key, to = new_key, "rename failed: the source could not be deleted: {}", e);
            if !replaces {
                if let Err(d) = self.store.delete(new_key).await {
                    error!(
                        key = new_key,
                        "could not remove the copy of a failed rename: {}", d
                    );
                }
            }
            self.meta.invalidate(new_key).await;
            return Err(Error::from(e));
        }
        if let Some(g) = guard.as_deref_mut() {
            g.renamed(new_key, Some(etag.clone()));
        }
        if let Ok(i) = self.inodes.get(src.ino) {
            i.state.lock().local_etag = Some(etag);
        }
        Ok(())
    }

    /// Copy every key under `old` to `new` (in parallel, the marker last), then delete
    /// the sources (the marker last). Files open for writing under `old` are committed
    /// first and follow their keys.
    async fn rename_dir(&self, old: &str, new: &str) -> Result<()> {
        // Files open for writing under the directory are uploaded first, in parallel.
        let commits: Vec<Result<Option<(u64, super::modify::SharedWriter)>>> =
            futures::stream::iter(self.open_writers())
                .map(|(ino, w)| async move {
                    let mut g = w.lock().await;
                    if !g.key.starts_with(old) || g.unlinked {
                        return Ok(None);
                    }
                    if g.is_dirty() {
                        if let Err(e) = g.commit(&self.uploader).await {
                            error!(key = %g.key, "upload before rename failed: {}", e);
                            return Err(e);
                        }
                    }
                    drop(g);
                    Ok(Some((ino, w)))
                })
                .buffer_unordered(RENAME_CONCURRENCY)
                .collect()
                .await;
        let mut moving = Vec::new();
        for c in commits {
            moving.extend(c?);
        }
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .list(old, None, token, None)
                .await
                .map_err(Error::from)?;
            keys.extend(page.objects.into_iter().map(|o| (o.key, o.size, o.etag)));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        // Directories made here that the listing did not show move too.
        for u in self.unlisted.tree(old) {
            if !keys.iter().any(|k| k.0 == u) {
                keys.push((u, 0, String::new()));
            }
        }
        let marker = keys.iter().position(|k| k.0 == old).map(|i| keys.remove(i));
        debug!(old, new, keys = keys.len(), "renaming directory");
        let jobs: Vec<(String, String, u64, String)> = keys
            .iter()
            .map(|(k, size, etag)| {
                (
                    k.clone(),
                    format!("{new}{}", &k[old.len()..]),
                    *size,
                    etag.clone(),
                )
            })
            .collect();
        let results: Vec<(String, String, Result<String>)> = futures::stream::iter(jobs)
            .map(|(k, t, size, etag)| self.copy_for_rename(k, t, size, etag))
            .buffer_unordered(RENAME_CONCURRENCY)
            .collect()
            .await;
        let mut failed = None;
        let mut copied = Vec::new();
        let mut new_etags = std::collections::HashMap::new();
        for (k, t, r) in results {
            match r {
                Ok(e) => {
                    new_etags.insert(k, e);
                    copied.push(t);
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() {
            if let Some((k, size, etag)) = marker.clone() {
                let t = format!("{new}{}", &k[old.len()..]);
                let (_, t, r) = self.copy_for_rename(k, t, size, etag).await;
                match r {
                    Ok(_) => copied.push(t),
                    Err(e) => failed = Some(e),
                }
            }
        }
        if let Some(e) = failed {
            // Leave the sources as they were; remove the partial copies.
            error!(old, new, "directory rename failed, sources kept: {}", e);
            for t in copied {
                if let Err(d) = self.store.delete(&t).await {
                    error!(key = %t, "could not remove the partial copy of a failed directory rename: {}", d);
                }
            }
            return Err(e);
        }
        // Sources go in waves: objects first, then the markers of subdirectories, deepest
        // first, then the directory's own marker. A marker never leaves before what is
        // under it (some servers keep listing a prefix whose marker was deleted while keys
        // under it remained, and then list the old directory after the keys are gone).
        let mut waves: std::collections::BTreeMap<std::cmp::Reverse<usize>, Vec<String>> =
            Default::default();
        for (k, _, _) in keys.iter().chain(marker.iter()) {
            let depth = if k.ends_with('/') {
                k.matches('/').count()
            } else {
                usize::MAX
            };
            waves
                .entry(std::cmp::Reverse(depth))
                .or_default()
                .push(k.clone());
        }
        for (_, wave) in waves {
            let deletes: Vec<Result<()>> = futures::stream::iter(wave)
                .map(|k| self.delete_key(k))
                .buffer_unordered(RENAME_CONCURRENCY)
                .collect()
                .await;
            for d in deletes {
                d?;
            }
        }
        self.unlisted.rename_tree(old, new);
        for (_, w) in moving {
            let mut g = w.lock().await;
            let nk = format!("{new}{}", &g.key[old.len()..]);
            let e = new_etags.get(&g.key).cloned();
            g.renamed(&nk, e);
        }
        Ok(())
    }

    /// Everything a copy of the file `key` (whose HEAD is `m`) must carry, with its
    /// modification time (the copy gets a new LastModified). A CopyObject keeps the tags
    /// by itself; a copy part by part (over the copy limit) sends them again.
    async fn copy_options(&self, key: &str, m: &crate::store::ObjectMeta) -> Result<PutOptions> {
        let mut opts = PutOptions::from_meta(m);
        opts.user_metadata
            .entry("mtime".into())
            .or_insert_with(|| attr::format_time(m.last_modified));
        if m.size > self.uploader.cfg.copy_limit {
            opts.tags = self.tags_to_keep(key, m).await?;
        }
        Ok(opts)
    }

    async fn delete_key(&self, k: String) -> Result<()> {
        self.store.delete(&k).await.map_err(Error::from)
    }

    /// One key of a directory rename, with everything it carries: its HEAD gives the
    /// storage class and encryption, which a CopyObject would otherwise reset to the
    /// bucket's defaults, and its modification time, which the copy's new LastModified
    /// would replace (objects over the copy limit are copied part by part).
    async fn copy_for_rename(
        &self,
        k: String,
        t: String,
        size: u64,
        etag: String,
    ) -> (String, String, Result<String>) {
        let r = async {
            self.meta.invalidate(&k).await;
            let m = self.meta.head(&k).await?;
            if size == 0 && k.ends_with('/') {
                // A directory marker: some servers keep these as real directories that
                // CopyObject cannot read, so write a new marker with the same metadata.
                let opts = m.map(|m| PutOptions::from_meta(&m)).unwrap_or_default();
                return self.uploader.put(&t, Bytes::new(), &opts).await;
            }
            let m = m.ok_or_else(|| Error::NotFound(k.to_string()))?;
            if m.etag != etag {
                debug!(key = %k, "changed since it was listed; copying what is there now");
            }
            let opts = self.copy_options(&k, &m).await?;
            self.uploader
                .copy_object(&k, Some(&m.etag), &t, m.size, &opts, true)
                .await
        }
        .await;
        (k, t, r)
    }
}
