//! Objects a daemon that died mid-upload left in the bucket: the zero objects a sparse
//! upload copies its holes from (see [`super::names::ZEROS_PREFIX`]). The upload that
//! made one deletes it; one a crash left behind is deleted when a listing of its
//! directory comes across it and it is older than any upload could still be using it
//! (another mount may be using a young one right now). A bucket of millions of keys is
//! never scanned for them.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::store::ObjectSummary;

/// How old a zero object must be before a listing deletes it: longer than the longest
/// upload (5 TiB at 1 Gbit/s takes half a day).
pub const DEFAULT_AGE: Duration = Duration::from_secs(2 * 24 * 3600);

/// The zero objects seen in listings, and which of them this mount deletes.
pub struct Leftovers {
    age: Duration,
    /// Keys being deleted or whose delete failed: each is tried once per mount.
    claimed: Mutex<HashSet<String>>,
}

impl Leftovers {
    pub fn new(age: Duration) -> Self {
        Leftovers {
            age,
            claimed: Mutex::new(HashSet::new()),
        }
    }

    /// Of the zero objects `seen` in a listing, the keys old enough to delete that no
    /// other listing of this mount has claimed yet.
    pub fn claim(&self, seen: &[ObjectSummary], now: SystemTime) -> Vec<String> {
        let mut claimed = self.claimed.lock();
        seen.iter()
            .filter(|o| {
                now.duration_since(o.last_modified)
                    .is_ok_and(|old| old >= self.age)
            })
            .filter(|o| claimed.insert(o.key.clone()))
            .map(|o| o.key.clone())
            .collect()
    }

    /// `key` is gone: a later zero object of the same name may be claimed again.
    pub fn deleted(&self, key: &str) {
        self.claimed.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, age_s: u64, now: SystemTime) -> ObjectSummary {
        ObjectSummary {
            key: key.to_string(),
            size: 8,
            etag: "e".into(),
            last_modified: now - Duration::from_secs(age_s),
            storage_class: None,
        }
    }

    #[test]
    fn only_old_objects_are_claimed_and_each_once() {
        let now = SystemTime::now();
        let l = Leftovers::new(Duration::from_secs(100));
        let seen = [obj("d/old", 101, now), obj("d/young", 99, now)];
        assert_eq!(l.claim(&seen, now), ["d/old"]);
        // Another listing while the delete is in flight (or after it failed): not again.
        assert!(l.claim(&seen, now).is_empty());
        l.deleted("d/old");
        assert_eq!(l.claim(&seen, now), ["d/old"]);
        // A clock behind the server's never claims anything.
        let future = [obj("d/x", 0, now + Duration::from_secs(1000))];
        assert!(l.claim(&future, now).is_empty());
    }
}
