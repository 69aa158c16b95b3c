//! The inode table: stable inode numbers for (parent, name) pairs, the key each maps to,
//! cached attributes with their expiry, and the kernel's lookup counts. An inode leaves
//! the table when the kernel forgets it; inodes the kernel holds no reference to (made
//! by a listing, or whose READDIRPLUS entry did not fit) wait in a bounded LRU and are
//! evicted from it, so listing a huge bucket does not grow the table for ever.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use super::attr::{Kind, Stat};
use super::error::{Error, Result};
use super::readdir::Snapshot;
use crate::store::ObjectMeta;

pub const ROOT_INO: u64 = 1;

/// One file, directory or symlink.
#[derive(Debug)]
pub struct Inode {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    /// Files and symlinks: the object key. Directories: the key prefix, ending in `/`
    /// (the root's is the mount prefix, `""` for a whole bucket).
    pub key: String,
    pub kind: Kind,
    /// Shared by every version of this inode: a rename makes a new `Inode` with the new
    /// name and key but the same state, so code still holding the old one (an open
    /// directory handle, a refresh in flight, a page push) reads and writes the state the
    /// table has.
    pub state: Arc<Mutex<InodeState>>,
}

/// The mutable part of an inode.
#[derive(Debug, Clone)]
pub struct InodeState {
    pub lookups: u64,
    pub stat: Stat,
    /// Until when `stat` may be served without asking S3.
    pub valid_until: Instant,
    /// The last HeadObject response (files; directory markers), for xattrs and ETags.
    pub meta: Option<Arc<ObjectMeta>>,
    /// ETag from a listing when no HeadObject was made (listing mode).
    pub listed_etag: Option<String>,
    /// Directories: the latest listing, used to answer lookups without requests.
    pub listing: Option<Arc<Mutex<Snapshot>>>,
    /// ETag seen by the last open, so an unchanged object keeps its page cache.
    pub last_open_etag: Option<String>,
    pub symlink_target: Option<String>,
    /// ETag of the object as this mount last uploaded it: readers opened before the
    /// upload move on to it (read-your-writes), unlike for changes made elsewhere.
    pub local_etag: Option<String>,
    /// Directories: changes made here to their entries, so a listing that was in flight
    /// during one is known to be stale.
    pub changes: u64,
    /// Files: bumped when what the kernel's page cache may hold changes (see `pages`).
    pub data_generation: u64,
}

impl InodeState {
    fn new(lookups: u64, stat: Stat, valid_until: Instant) -> Self {
        InodeState {
            lookups,
            stat,
            valid_until,
            meta: None,
            listed_etag: None,
            listing: None,
            last_open_etag: None,
            symlink_target: None,
            local_etag: None,
            changes: 0,
            data_generation: 0,
        }
    }
}

impl Inode {
    pub fn stat(&self) -> Stat {
        self.state.lock().stat
    }

    /// The ETag we know for this object, from HeadObject or a listing.
    pub fn etag(&self) -> Option<String> {
        let st = self.state.lock();
        st.meta
            .as_ref()
            .map(|m| m.etag.clone())
            .or_else(|| st.listed_etag.clone())
    }
}

struct Tables {
    by_ino: HashMap<u64, Arc<Inode>>,
    by_name: HashMap<(u64, String), u64>,
    next: u64,
    /// Inodes with no kernel reference, least recently used first.
    idle: lru::LruCache<u64, ()>,
    /// How many of them are kept.
    idle_cap: usize,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("inodes", &self.by_ino.len())
            .field("idle", &self.idle.len())
            .finish()
    }
}

impl Tables {
    /// `ino` has no kernel reference: keep it while it is among the `idle_cap` most
    /// recently used such inodes.
    fn idle(&mut self, ino: u64) {
        self.idle.put(ino, ());
        while self.idle.len() > self.idle_cap {
            let Some((old, ())) = self.idle.pop_lru() else {
                break;
            };
            let unreferenced = self
                .by_ino
                .get(&old)
                .is_some_and(|i| i.state.lock().lookups == 0);
            if unreferenced {
                self.evict(old);
            }
        }
    }

    /// `n` kernel references fewer on `ino`; how many are left (`None`: not in the table).
    fn drop_refs(&mut self, ino: u64, n: u64) -> Option<u64> {
        let inode = self.by_ino.get(&ino)?;
        let mut s = inode.state.lock();
        s.lookups = s.lookups.saturating_sub(n);
        Some(s.lookups)
    }

    /// `ino` gained a kernel reference: it is no longer a candidate for eviction.
    fn referenced(&mut self, ino: u64) {
        self.idle.pop(&ino);
    }

    fn evict(&mut self, ino: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(inode) = self.by_ino.remove(&ino) {
            let k = (inode.parent, inode.name.clone());
            if self.by_name.get(&k) == Some(&ino) {
                self.by_name.remove(&k);
            }
        }
        self.idle.pop(&ino);
    }
}

/// Inodes without a kernel reference kept by default (see [`InodeTable::with_idle_cap`]).
pub const IDLE_INODES: usize = 32_768;

/// All inodes the kernel may refer to.
#[derive(Debug)]
pub struct InodeTable {
    t: Mutex<Tables>,
}

impl InodeTable {
    pub fn new(root_key: &str, root_stat: Stat) -> Self {
        let root = Arc::new(Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            key: root_key.to_string(),
            kind: Kind::Dir,
            state: Arc::new(Mutex::new(InodeState::new(1, root_stat, far_future()))),
        });
        let mut by_ino = HashMap::new();
        by_ino.insert(ROOT_INO, root);
        InodeTable {
            t: Mutex::new(Tables {
                by_ino,
                by_name: HashMap::new(),
                next: ROOT_INO + 1,
                idle: lru::LruCache::unbounded(),
                idle_cap: IDLE_INODES,
            }),
        }
    }

    /// Keep at most `cap` inodes that the kernel holds no reference to.
    pub fn with_idle_cap(self, cap: usize) -> Self {
        self.t.lock().idle_cap = cap;
        self
    }

    pub fn get(&self, ino: u64) -> Result<Arc<Inode>> {
        self.t
            .lock()
            .by_ino
            .get(&ino)
            .cloned()
            .ok_or_else(|| Error::Stale(ino))
    }

    /// The inode for `name` in `parent` if the table has one.
    pub fn child(&self, parent: u64, name: &str) -> Option<Arc<Inode>> {
        let t = self.t.lock();
        let ino = t.by_name.get(&(parent, name.to_string()))?;
        t.by_ino.get(ino).cloned()
    }

    /// The inode for `name` in `parent`, created (or replaced, if its kind changed) with
    /// `stat`, valid until `valid_until`. `lookup` adds one kernel reference.
    #[allow(clippy::too_many_arguments)]
    pub fn upsert(
        &self,
        parent: u64,
        name: &str,
        key: &str,
        stat: Stat,
        valid_until: Instant,
        meta: Option<Arc<ObjectMeta>>,
        listed_etag: Option<String>,
        lookup: bool,
    ) -> Arc<Inode> {
        let mut t = self.t.lock();
        if let Some(ino) = t.by_name.get(&(parent, name.to_string())).copied() {
            if let Some(inode) = t.by_ino.get(&ino).cloned() {
                if inode.kind == stat.kind && inode.key == key {
                    let mut s = inode.state.lock();
                    s.stat = stat;
                    s.valid_until = valid_until;
                    if meta.is_some() {
                        s.meta = meta;
                    }
                    if listed_etag.is_some() {
                        s.listed_etag = listed_etag;
                    }
                    if lookup {
                        s.lookups += 1;
                    }
                    drop(s);
                    if lookup {
                        t.referenced(ino);
                    }
                    return inode;
                }
            }
        }
        let mut state = InodeState::new(u64::from(lookup), stat, valid_until);
        state.meta = meta;
        state.listed_etag = listed_etag;
        Self::add(&mut t, parent, name, key, state)
    }

    /// A new inode numbered next, named `name` in `parent`.
    fn add(t: &mut Tables, parent: u64, name: &str, key: &str, state: InodeState) -> Arc<Inode> {
        let ino = t.next;
        t.next += 1;
        let inode = Arc::new(Inode {
            ino,
            parent,
            name: name.to_string(),
            key: key.to_string(),
            kind: state.stat.kind,
            state: Arc::new(Mutex::new(state)),
        });
        let unreferenced = inode.state.lock().lookups == 0;
        t.by_ino.insert(ino, inode.clone());
        t.by_name.insert((parent, name.to_string()), ino);
        if unreferenced {
            t.idle(ino);
        }
        inode
    }

    /// One more kernel reference to `inode` (a lookup answered from local state).
    pub fn add_lookup(&self, inode: &Inode) {
        let mut t = self.t.lock();
        inode.state.lock().lookups += 1;
        t.referenced(inode.ino);
    }

    /// One more kernel reference to `ino` (a READDIRPLUS entry), if it is in the table.
    pub fn reference(&self, ino: u64) -> Option<Arc<Inode>> {
        let mut t = self.t.lock();
        let inode = t.by_ino.get(&ino).cloned()?;
        inode.state.lock().lookups += 1;
        t.referenced(ino);
        Some(inode)
    }

    /// Take back `n` references counted for entries the kernel did not receive (a
    /// READDIRPLUS entry that did not fit): the inode stays, as it was before, and
    /// becomes idle again if nothing else holds it.
    pub fn unreference(&self, ino: u64, n: u64) {
        let mut t = self.t.lock();
        if t.drop_refs(ino, n) == Some(0) && ino != ROOT_INO {
            t.idle(ino);
        }
    }

    /// Every directory inode in the table.
    pub fn dirs(&self) -> Vec<Arc<Inode>> {
        let t = self.t.lock();
        t.by_ino
            .values()
            .filter(|i| i.kind == Kind::Dir)
            .cloned()
            .collect()
    }

    /// Give memory back after the table shrank: a walk of a million names grows the
    /// hash tables to a million slots, which removing the inodes does not release.
    pub fn compact(&self) {
        fn shrink<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
            if m.capacity() > 4 * m.len() + 1024 {
                m.shrink_to(m.len() * 2);
            }
        }
        let mut t = self.t.lock();
        shrink(&mut t.by_ino);
        shrink(&mut t.by_name);
    }

    /// Slots the table's hash tables have room for (tests).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        let t = self.t.lock();
        t.by_ino.capacity() + t.by_name.capacity()
    }

    /// Inodes in the table, and how many of them the kernel holds no reference to.
    pub fn counts(&self) -> (usize, usize) {
        let t = self.t.lock();
        (t.by_ino.len(), t.idle.len())
    }

    /// Insert a new inode for `name` in `parent` (create, mkdir, symlink), replacing any
    /// entry of that name. Adds one kernel reference.
    pub fn insert(
        &self,
        parent: u64,
        name: &str,
        key: &str,
        stat: Stat,
        valid_until: Instant,
    ) -> Arc<Inode> {
        let mut t = self.t.lock();
        Self::add(
            &mut t,
            parent,
            name,
            key,
            InodeState::new(1, stat, valid_until),
        )
    }

    /// The name `name` in `parent` is gone (unlink, rmdir). Inodes the kernel still
    /// holds stay until forgotten.
    pub fn remove_name(&self, parent: u64, name: &str) {
        self.t.lock().by_name.remove(&(parent, name.to_string()));
    }

    /// `ino` moved to `name` in `parent` with key `key` (rename). Returns the inode as
    /// it is now; whatever had the new name loses it.
    pub fn rename(&self, ino: u64, parent: u64, name: &str, key: &str) -> Option<Arc<Inode>> {
        let mut t = self.t.lock();
        let old = t.by_ino.get(&ino).cloned()?;
        let new = Arc::new(Inode {
            ino,
            parent,
            name: name.to_string(),
            key: key.to_string(),
            kind: old.kind,
            state: old.state.clone(),
        });
        let k = (old.parent, old.name.clone());
        if t.by_name.get(&k) == Some(&ino) {
            t.by_name.remove(&k);
        }
        t.by_name.insert((parent, name.to_string()), ino);
        t.by_ino.insert(ino, new.clone());
        Some(new)
    }

    /// Every inode whose key starts with `old` now has `new` in its place (the
    /// descendants of a renamed directory).
    pub fn rekey_prefix(&self, old: &str, new: &str) {
        let mut t = self.t.lock();
        let moved: Vec<Arc<Inode>> = t
            .by_ino
            .values()
            .filter(|i| i.key.starts_with(old) && i.ino != ROOT_INO)
            .cloned()
            .collect();
        for i in moved {
            let n = Arc::new(Inode {
                ino: i.ino,
                parent: i.parent,
                name: i.name.clone(),
                key: format!("{new}{}", &i.key[old.len()..]),
                kind: i.kind,
                state: i.state.clone(),
            });
            t.by_ino.insert(i.ino, n);
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut t = self.t.lock();
        if t.drop_refs(ino, n) == Some(0) {
            t.evict(ino);
        }
    }

    pub fn len(&self) -> usize {
        self.t.lock().by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(100 * 365 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::attr::{dir_stat, Defaults};
    use std::time::SystemTime;

    fn st(kind: Kind) -> Stat {
        let d = Defaults {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
        };
        let mut s = dir_stat(&d, SystemTime::UNIX_EPOCH);
        s.kind = kind;
        s
    }

    #[test]
    fn a_table_emptied_after_a_big_walk_gives_its_memory_back() {
        let t = InodeTable::new("", st(Kind::Dir)).with_idle_cap(0);
        let now = Instant::now();
        let inos: Vec<u64> = (0..100_000)
            .map(|i| {
                let name = format!("f{i}");
                t.upsert(
                    ROOT_INO,
                    &name,
                    &name,
                    st(Kind::File),
                    now,
                    None,
                    None,
                    true,
                )
                .ino
            })
            .collect();
        for ino in inos {
            t.forget(ino, 1);
        }
        assert_eq!(t.counts(), (1, 0));
        let before = t.capacity();
        assert!(before >= 100_000, "{before}");
        t.compact();
        assert!(
            t.capacity() < 4_096,
            "{} slots left for one inode",
            t.capacity()
        );
        // And the table still works.
        let a = t.upsert(ROOT_INO, "a", "a", st(Kind::File), now, None, None, true);
        assert_eq!(t.child(ROOT_INO, "a").unwrap().ino, a.ino);
    }

    #[test]
    fn stable_numbers_and_forget() {
        let t = InodeTable::new("", st(Kind::Dir));
        let now = Instant::now();
        let a = t.upsert(ROOT_INO, "a", "a", st(Kind::File), now, None, None, true);
        let a2 = t.upsert(ROOT_INO, "a", "a", st(Kind::File), now, None, None, true);
        assert_eq!(a.ino, a2.ino);
        assert_eq!(a.state.lock().lookups, 2);
        t.forget(a.ino, 1);
        assert!(t.get(a.ino).is_ok());
        t.forget(a.ino, 1);
        assert_eq!(t.get(a.ino).unwrap_err().errno(), libc::ESTALE);
        assert!(t.child(ROOT_INO, "a").is_none());
        t.forget(ROOT_INO, 10);
        assert!(t.get(ROOT_INO).is_ok());
    }

    #[test]
    fn kind_change_gets_new_inode() {
        let t = InodeTable::new("", st(Kind::Dir));
        let now = Instant::now();
        let f = t.upsert(ROOT_INO, "x", "x", st(Kind::File), now, None, None, true);
        let d = t.upsert(ROOT_INO, "x", "x/", st(Kind::Dir), now, None, None, true);
        assert_ne!(f.ino, d.ino);
        assert_eq!(t.child(ROOT_INO, "x").unwrap().ino, d.ino);
        // The old inode stays valid for the kernel until forgotten.
        assert!(t.get(f.ino).is_ok());
        t.forget(f.ino, 1);
        assert_eq!(t.child(ROOT_INO, "x").unwrap().ino, d.ino);
    }
}
