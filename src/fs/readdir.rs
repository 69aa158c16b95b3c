//! Directory listings: turning ListObjectsV2 pages (with `/` as delimiter) into directory
//! entries. Applies the shadowing rule (an object `a` and a prefix `a/` both exist: `a` is
//! a directory, the object is hidden and logged once) even when the two fall on different
//! pages, skips keys that cannot be names, and keeps a per-directory [`Snapshot`] that
//! answers lookups without further requests while it is fresh.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use tracing::warn;

use super::attr::Kind;
use super::names::{check_listed_name, WarnOnce};
use crate::store::{ListPage, ObjectSummary};

/// One name in a directory as the listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    /// `File` or `Dir`: a listing cannot tell symlinks from files.
    pub kind: Kind,
    /// The object, for files.
    pub summary: Option<ObjectSummary>,
}

impl Listed {
    /// Its key in the directory whose prefix is `dir_key`: the object's key for a file,
    /// the prefix (marker key) ending in `/` for a directory.
    pub fn key_in(&self, dir_key: &str) -> String {
        match self.kind {
            Kind::Dir => format!("{dir_key}{}/", self.name),
            _ => format!("{dir_key}{}", self.name),
        }
    }
}

/// Merges listing pages of one directory into entries, in order, exactly once each.
#[derive(Debug)]
pub struct Merger {
    prefix: String,
    /// Files seen but not yet emitted: a prefix `name/` may still follow on a later page.
    pending: BTreeMap<String, ObjectSummary>,
    /// Whether the directory's own marker (`prefix` itself) was seen.
    pub has_marker: bool,
    /// bucketfs's own temporary objects seen (see [`super::leftovers`]).
    helpers: Vec<ObjectSummary>,
}

impl Merger {
    pub fn new(prefix: &str) -> Self {
        Merger {
            prefix: prefix.to_string(),
            pending: BTreeMap::new(),
            has_marker: false,
            helpers: Vec::new(),
        }
    }

    fn name_of<'a>(&self, key: &'a str, warn_once: &WarnOnce) -> Option<&'a str> {
        let name = key.strip_prefix(self.prefix.as_str())?;
        match check_listed_name(name) {
            Ok(()) => Some(name),
            Err(super::names::Rejected::Reserved) => None,
            Err(why) => {
                if warn_once.first(key) {
                    warn!(key, reason = ?why, "skipping key that cannot be a file name");
                }
                None
            }
        }
    }

    /// The temporary objects of bucketfs seen since the last call.
    pub fn take_helpers(&mut self) -> Vec<ObjectSummary> {
        std::mem::take(&mut self.helpers)
    }

    /// Take one page; return the entries that are now final.
    pub fn push_page(&mut self, page: &ListPage, warn_once: &WarnOnce) -> Vec<Listed> {
        let mut out = Vec::new();
        // Objects first: an object `n` sorts before the prefix `n/` that shadows it.
        for o in &page.objects {
            if o.key == self.prefix {
                self.has_marker = true;
                continue;
            }
            // A key ending in `/` listed as an object can only be this directory's marker
            // with a delimiter; be defensive about servers that differ.
            if o.key.ends_with('/') {
                continue;
            }
            if o.key
                .strip_prefix(self.prefix.as_str())
                .is_some_and(super::names::is_reserved)
            {
                self.helpers.push(o.clone());
                continue;
            }
            let Some(name) = self.name_of(&o.key, warn_once) else {
                continue;
            };
            self.pending.insert(name.to_string(), o.clone());
        }
        for p in &page.prefixes {
            let Some(stripped) = p.strip_suffix('/') else {
                continue;
            };
            let Some(name) = self.name_of(stripped, warn_once) else {
                continue;
            };
            if let Some(hidden) = self.pending.remove(name) {
                if warn_once.first(&hidden.key) {
                    warn!(key = %hidden.key, "object is shadowed by a directory of the same name and is not reachable");
                }
            }
            out.push(Listed {
                name: name.to_string(),
                kind: Kind::Dir,
                summary: None,
            });
        }
        // Everything up to the last key of this page has been seen. A pending file `n` is
        // final once the listing has passed `n/` (a prefix `n/` would have appeared).
        let last = page
            .objects
            .last()
            .map(|o| o.key.as_str())
            .into_iter()
            .chain(page.prefixes.last().map(String::as_str))
            .max()
            .map(str::to_string);
        if page.next_token.is_none() {
            return self.finish(out);
        }
        if let Some(last) = last {
            let done: Vec<String> = self
                .pending
                .keys()
                .filter(|n| format!("{}{n}/", self.prefix).as_str() < last.as_str())
                .cloned()
                .collect();
            for n in done {
                let s = self.pending.remove(&n).expect("pending name");
                out.push(Listed {
                    name: n,
                    kind: Kind::File,
                    summary: Some(s),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn finish(&mut self, mut out: Vec<Listed>) -> Vec<Listed> {
        for (n, s) in std::mem::take(&mut self.pending) {
            out.push(Listed {
                name: n,
                kind: Kind::File,
                summary: Some(s),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// What the latest listing of a directory said, for lookups.
#[derive(Debug)]
pub struct Snapshot {
    /// When the last page arrived.
    pub updated: Instant,
    /// The whole directory has been listed: a name not here does not exist.
    pub complete: bool,
    pub has_marker: bool,
    pub entries: HashMap<String, usize>,
    /// Entries in listing order (statahead walks this).
    pub order: Vec<Listed>,
    /// Statahead has been started up to this index of `order`.
    pub statahead_upto: usize,
    /// Lookups served from this snapshot (statahead starts on the second).
    pub lookups: usize,
    /// Directory lookups served from it (marker statahead starts on the second).
    pub dir_lookups: usize,
    /// Lookups that found this listing stale and asked S3 about their name instead.
    pub stale_lookups: usize,
    /// Names this mount has changed since the listing: lookups of these ask S3 (or the
    /// inode table), and readdir lists the directory again instead of reusing this.
    pub changed: HashSet<String>,
    /// Unique per listing: statahead results are used only by lookups answered from the
    /// listing that asked for them.
    pub pass: u64,
}

impl Snapshot {
    pub fn new() -> Self {
        Snapshot {
            updated: Instant::now(),
            complete: false,
            has_marker: false,
            entries: HashMap::new(),
            order: Vec::new(),
            statahead_upto: 0,
            lookups: 0,
            dir_lookups: 0,
            stale_lookups: 0,
            changed: HashSet::new(),
            pass: {
                static PASSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                PASSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// The listing of a directory this mount has just created: complete and empty.
    pub fn empty_dir() -> Self {
        Snapshot {
            complete: true,
            has_marker: true,
            ..Snapshot::new()
        }
    }

    pub fn add(&mut self, items: &[Listed]) {
        for l in items {
            if let Some(&i) = self.entries.get(&l.name) {
                self.order[i] = l.clone();
            } else {
                self.entries.insert(l.name.clone(), self.order.len());
                self.order.push(l.clone());
            }
        }
        self.updated = Instant::now();
    }

    /// What the listing says of `name`: `Some(Some(_))` listed, `Some(None)` known absent,
    /// `None` unknown (listing incomplete, or the name changed here since).
    pub fn answer(&self, name: &str) -> Option<Option<(usize, &Listed)>> {
        if self.changed.contains(name) {
            return None;
        }
        match self.get(name) {
            Some(e) => Some(Some(e)),
            None if self.complete => Some(None),
            None => None,
        }
    }

    /// Take one page's entries; `last` when the listing ends with this page.
    pub fn record_page(&mut self, items: &[Listed], has_marker: bool, last: bool) {
        self.add(items);
        self.has_marker |= has_marker;
        self.complete |= last;
    }

    pub fn get(&self, name: &str) -> Option<(usize, &Listed)> {
        let i = *self.entries.get(name)?;
        Some((i, &self.order[i]))
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::ObjectStore;

    /// List `prefix` of `store` page by page through a merger.
    async fn list_all(store: &MemoryStore, prefix: &str) -> (Vec<Listed>, bool, usize) {
        let warn = WarnOnce::default();
        let mut m = Merger::new(prefix);
        let mut token = None;
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.list(prefix, Some("/"), token, None).await.unwrap();
            pages += 1;
            out.extend(m.push_page(&page, &warn));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        (out, m.has_marker, pages)
    }

    fn names(v: &[Listed]) -> Vec<(String, Kind)> {
        v.iter().map(|l| (l.name.clone(), l.kind)).collect()
    }

    #[tokio::test]
    async fn hostile_keys_are_skipped_or_contained() {
        let s = MemoryStore::new();
        for k in [
            "a//b",
            "x/./y",
            "x/../z",
            "../evil",
            "ok.txt",
            "new\nline",
            "dir/",
            "clash",
            "clash/child",
            "emptyseg//",
        ] {
            s.put(k, "x");
        }
        s.put("dirbody/", "this marker has a body");
        s.put(&"L".repeat(300), "long");
        let (root, _, _) = list_all(&s, "").await;
        assert_eq!(
            names(&root),
            vec![
                ("a".into(), Kind::Dir),
                ("clash".into(), Kind::Dir),
                ("dir".into(), Kind::Dir),
                ("dirbody".into(), Kind::Dir),
                ("emptyseg".into(), Kind::Dir),
                ("new\nline".into(), Kind::File),
                ("ok.txt".into(), Kind::File),
                ("x".into(), Kind::Dir),
            ]
        );
        // `a//b`: the empty segment is skipped, so `a` lists as empty; nothing escapes.
        let (a, _, _) = list_all(&s, "a/").await;
        assert!(a.is_empty());
        // `x/./y` and `x/../z` list nothing under `x`.
        let (x, _, _) = list_all(&s, "x/").await;
        assert!(x.is_empty());
        let (clash, _, _) = list_all(&s, "clash/").await;
        assert_eq!(names(&clash), vec![("child".into(), Kind::File)]);
        let (d, marker, _) = list_all(&s, "dirbody/").await;
        assert!(d.is_empty());
        assert!(marker);
    }

    #[tokio::test]
    async fn paging_lists_every_entry_once() {
        let s = MemoryStore::with_page_size(100);
        for i in 0..2500 {
            s.put(&format!("big/f{i:05}"), "x");
        }
        for i in 0..30 {
            s.put(&format!("big/d{i:03}/inner"), "x");
        }
        let (all, _, pages) = list_all(&s, "big/").await;
        assert_eq!(all.len(), 2530);
        assert_eq!(pages, 26);
        let mut seen = std::collections::HashSet::new();
        for l in &all {
            assert!(seen.insert(l.name.clone()), "duplicate {}", l.name);
        }
    }

    #[tokio::test]
    async fn shadowing_across_a_page_boundary() {
        // Page size 2: `p/a` ends page 1, `p/a.txt` and `p/a/` (prefix) come later.
        let s = MemoryStore::with_page_size(2);
        s.put("p/0", "x");
        s.put("p/a", "hidden object");
        s.put("p/a.txt", "x");
        s.put("p/a/inner", "x");
        s.put("p/b", "x");
        let (all, _, _) = list_all(&s, "p/").await;
        assert_eq!(
            names(&all),
            vec![
                ("0".into(), Kind::File),
                ("a".into(), Kind::Dir),
                ("a.txt".into(), Kind::File),
                ("b".into(), Kind::File),
            ]
        );
    }

    #[test]
    fn snapshot_add_and_get() {
        let mut s = Snapshot::new();
        let l = Listed {
            name: "a".into(),
            kind: Kind::File,
            summary: None,
        };
        s.add(&[l.clone(), l.clone()]);
        assert_eq!(s.order.len(), 1);
        assert_eq!(s.get("a").unwrap().0, 0);
        assert!(s.get("b").is_none());
    }
}
