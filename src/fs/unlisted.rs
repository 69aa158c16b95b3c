//! Directories made through this mount that no listing has shown yet. S3 lists a
//! `dir/` marker as soon as it is written, and the first listing or lookup that sees it
//! ends its stay here. Some S3-compatible servers never list an empty directory's
//! marker (s3s-fs keeps it as a real, empty directory that its listings skip): without
//! this record, `mkdir d && ls` would not show `d`, and a lookup after the TTL would
//! call it missing (rsync's and git's next step then fails). Read-your-writes holds
//! within the mount either way.

use parking_lot::Mutex;
use std::collections::BTreeSet;

/// Marker keys (`a/b/`) of directories made here and not yet seen listed.
#[derive(Debug, Default)]
pub struct Unlisted {
    keys: Mutex<BTreeSet<String>>,
}

impl Unlisted {
    pub fn add(&self, marker: &str) {
        self.keys.lock().insert(marker.to_string());
    }

    /// A listing showed the directory: S3 knows it, the record is done.
    pub fn seen(&self, marker: &str) {
        let mut k = self.keys.lock();
        if !k.is_empty() {
            k.remove(marker);
        }
    }

    pub fn contains(&self, marker: &str) -> bool {
        self.keys.lock().contains(marker)
    }

    /// The directory `prefix` and everything under it are gone.
    pub fn remove_tree(&self, prefix: &str) {
        self.keys.lock().retain(|k| !k.starts_with(prefix));
    }

    /// Records of the directory `prefix` and under it.
    pub fn tree(&self, prefix: &str) -> Vec<String> {
        self.keys
            .lock()
            .range(prefix.to_string()..)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Records under `prefix` (not `prefix` itself).
    pub fn under(&self, prefix: &str) -> Vec<String> {
        let mut t = self.tree(prefix);
        t.retain(|k| k != prefix);
        t
    }

    /// Names of the records directly in directory `prefix`.
    pub fn children(&self, prefix: &str) -> Vec<String> {
        self.under(prefix)
            .into_iter()
            .filter_map(|k| {
                let rest = k[prefix.len()..].strip_suffix('/')?;
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect()
    }

    /// The directory `old` became `new`: so did the records in and under it.
    pub fn rename_tree(&self, old: &str, new: &str) {
        let mut k = self.keys.lock();
        let moved: Vec<String> = k.iter().filter(|x| x.starts_with(old)).cloned().collect();
        for m in moved {
            k.remove(&m);
            k.insert(format!("{new}{}", &m[old.len()..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_children_renames_and_forgets() {
        let u = Unlisted::default();
        u.add("a/");
        u.add("a/b/");
        u.add("a/b/c/");
        u.add("a/x/");
        u.add("ab/");
        assert_eq!(u.children(""), vec!["a", "ab"]);
        assert_eq!(u.children("a/"), vec!["b", "x"]);
        assert_eq!(u.under("a/").len(), 3);
        assert_eq!(u.tree("a/").len(), 4);
        u.rename_tree("a/b/", "z/");
        assert!(u.contains("z/") && u.contains("z/c/") && !u.contains("a/b/"));
        u.seen("a/x/");
        assert_eq!(u.children("a/"), Vec::<String>::new());
        u.remove_tree("z/");
        assert!(!u.contains("z/c/"));
        assert!(u.contains("a/") && u.contains("ab/"));
    }
}
