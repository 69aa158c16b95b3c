//! Offering fetched data to the kernel's page cache. A random 4 KiB read fetches a whole
//! block (64 KiB); the FUSE adapter may push the rest of that block into the page cache
//! (FUSE notify_store), so later reads nearby never leave the kernel. This module owns
//! the rule that keeps those pushes from ever putting old bytes over newer ones.
//!
//! The rule: a block may be pushed only if, at the moment of the push,
//! - no writer is open on the inode in this mount (the kernel's page cache then holds
//!   what programs wrote, and a push could land on it);
//! - the block is of the version the last open saw (`last_open_etag`): that is the
//!   version the kernel's cache holds, since an open of another version clears it;
//! - nothing changed the inode's data generation since the read began.
//!
//! Pushes hold the filesystem's `page_gate` for the whole push, and every event that changes what the page
//! cache may hold (a writer appears, an open sees a new version) bumps the generation
//! under the same gate before the kernel hears of it. So a push either ends before that
//! event or sees it and is skipped.

use std::sync::Arc;

use bytes::Bytes;

use super::inode::Inode;
use super::Filesystem;
use crate::store::ObjectStore;

/// Bytes of one object fetched by a read, which the page cache may take.
#[derive(Debug)]
pub struct PageOffer {
    pub ino: u64,
    /// Offset of `data` in the file.
    pub offset: u64,
    pub data: Bytes,
    etag: Arc<str>,
    /// The inode's data generation when the read began.
    generation: u64,
}

impl<S: ObjectStore> Filesystem<S> {
    /// The inode's data generation, read when a read begins.
    pub(crate) fn data_generation(&self, ino: u64) -> Option<u64> {
        let inode = self.inodes.get(ino).ok()?;
        let g = inode.state.lock().data_generation;
        Some(g)
    }

    /// Something that changes what the page cache of `inode` may hold is about to be
    /// told to the kernel: wait for a push in progress, and make pushes of data read
    /// before now fail their check.
    pub(crate) async fn new_data_generation(&self, inode: &Inode) {
        let _gate = self.page_gate.lock().await;
        inode.state.lock().data_generation += 1;
    }

    pub(crate) fn offers(
        &self,
        ino: u64,
        etag: &Arc<str>,
        generation: u64,
        blocks: Vec<(u64, Bytes)>,
    ) -> Vec<PageOffer> {
        blocks
            .into_iter()
            .map(|(offset, data)| PageOffer {
                ino,
                offset,
                data,
                etag: etag.clone(),
                generation,
            })
            .collect()
    }

    /// Push `o` with `push(ino, offset, bytes)` if the rule above allows it; whether it
    /// was pushed. Blocks (the push waits for the page locks of reads in flight, the one
    /// that fetched the block included, until they are answered): call it on a thread of
    /// its own, never on a FUSE or runtime thread.
    pub fn offer_pages(
        &self,
        o: &PageOffer,
        push: impl FnOnce(u64, u64, &[u8]) -> std::io::Result<()>,
    ) -> bool {
        let _gate = self.page_gate.blocking_lock();
        let Ok(inode) = self.inodes.get(o.ino) else {
            return false;
        };
        if self.writer(o.ino).is_some() {
            return false;
        }
        {
            let s = inode.state.lock();
            let current = s.last_open_etag.as_deref() == Some(&*o.etag)
                && s.local_etag.as_deref().is_none_or(|l| l == &*o.etag);
            if s.data_generation != o.generation || !current {
                return false;
            }
        }
        push(o.ino, o.offset, &o.data).is_ok()
    }
}
