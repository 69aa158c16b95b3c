//! Unit tests of lifecycle defects found by review and fault runs (issue 11): each
//! failed on the code before its fix.

use super::write_tests::{count, env, names, pattern, write_all, ME, MIB};
use super::*;
use crate::store::counting::Op;
use crate::store::faulty::{FaultTarget, FaultyStore};
use crate::store::memory::MemoryStore;

/// Every name a full readdir pass of `ino` gives, without "." and "..".
#[tokio::test]
async fn a_readers_close_does_not_publish_a_file_being_written() {
    let e = env(MemoryStore::new());
    let (a, w) = e.fs.create(ROOT_INO, b"half", 0o644, ME).await.unwrap();
    write_all(&e.fs, w.fh, 0, &pattern(12 * MIB, 3)).await;
    // `cat half` (or a backup tool) opens it read-only and closes it.
    let r = e.fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    // Bytes already uploaded cannot be read back without publishing them: EIO.
    let err = e.fs.read(r.fh, 0, 4096).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    e.fs.flush(r.fh).await.unwrap();
    e.fs.release(r.fh).await.unwrap();
    assert!(
        e.store.inner().get("half").is_none(),
        "a partial object became visible"
    );
    assert_eq!(count(&e.stats, Op::CompleteMultipartUpload), 0);
    assert_eq!(count(&e.stats, Op::PutObject), 0);
    // The writer's own close publishes the whole file.
    write_all(&e.fs, w.fh, 12 * MIB as u64, b"end").await;
    e.fs.flush(w.fh).await.unwrap();
    e.fs.release(w.fh).await.unwrap();
    assert_eq!(e.store.inner().get("half").unwrap().len(), 12 * MIB + 3);
}

#[tokio::test]
async fn sizes_beyond_the_object_limit_fail_with_efbig_at_once() {
    let e = env(MemoryStore::new());
    e.store.inner().put("f", "data");
    let f = e.fs.lookup(ROOT_INO, b"f").await.unwrap();
    let huge = SetAttr {
        size: Some(999_999_999_999_999),
        ..Default::default()
    };
    let err = e.fs.setattr(f.ino, huge).await.unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG);
    let (_, o) = e.fs.create(ROOT_INO, b"g", 0o644, ME).await.unwrap();
    let err = e.fs.write(o.fh, 5 << 40, b"x").await.unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG);
    let err = e.fs.write(o.fh, u64::MAX - 1, b"xy").await.unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG);
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    // Nothing was staged or sent for the refused sizes.
    assert_eq!(e.store.inner().get("f").unwrap(), "data");
    assert_eq!(e.store.inner().get("g").unwrap(), "");
    assert_eq!(count(&e.stats, Op::UploadPart), 0);
    assert_eq!(e.fs.getattr(f.ino).await.unwrap().stat.size, 4);
}

#[tokio::test]
async fn oversized_user_metadata_is_refused_when_set_not_at_close() {
    let e = env(MemoryStore::new());
    let big = vec![b'v'; 64 * 1024];
    // On a file being written: the set fails, and the file still reaches S3.
    let (a, o) = e.fs.create(ROOT_INO, b"open", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"payload").await.unwrap();
    let err = e.fs.setxattr(a.ino, b"user.big", &big).await.unwrap_err();
    assert_eq!(err.errno(), libc::E2BIG);
    e.fs.setxattr(a.ino, b"user.small", b"ok").await.unwrap();
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("open").unwrap(), "payload");
    assert_eq!(e.store.inner().meta("open").unwrap().1["small"], "ok");
    // On a closed file: refused, nothing rewritten.
    let copies = count(&e.stats, Op::CopyObject);
    let err = e.fs.setxattr(a.ino, b"user.big", &big).await.unwrap_err();
    assert_eq!(err.errno(), libc::E2BIG);
    assert_eq!(count(&e.stats, Op::CopyObject), copies);
    // Many small ones add up to the same limit.
    let v = vec![b'v'; 500];
    for i in 0..3 {
        let name = format!("user.k{i}");
        e.fs.setxattr(a.ino, name.as_bytes(), &v).await.unwrap();
    }
    let err = e.fs.setxattr(a.ino, b"user.k3", &v).await.unwrap_err();
    assert_eq!(err.errno(), libc::E2BIG);
    // Replacing a value counts the new one only.
    e.fs.setxattr(a.ino, b"user.k2", &v).await.unwrap();
}

#[tokio::test]
async fn a_closed_file_is_in_every_later_listing_and_lookup() {
    let e = env(MemoryStore::new());
    e.store.inner().put("other", "x");
    let (_, o) = e.fs.create(ROOT_INO, b"new", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"hello").await.unwrap();
    // Another process lists the directory while the file is being written: S3 does not
    // have it yet, the mount shows it as an open file.
    assert_eq!(names(&e.fs, ROOT_INO).await.unwrap(), ["other", "new"]);
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    // After close, within the metadata TTL: listed and found.
    let mut after = names(&e.fs, ROOT_INO).await.unwrap();
    after.sort();
    assert_eq!(after, ["new", "other"]);
    let a = e.fs.lookup(ROOT_INO, b"new").await.unwrap();
    assert_eq!(a.stat.size, 5);
}

/// A memory store with `n` objects `d/fNNNNN`, and the filesystem over it with at most
/// `idle` unreferenced inodes; returns the inode of `d`.
async fn big_dir(n: usize, idle: usize) -> (super::write_tests::Env<MemoryStore>, u64) {
    let mem = MemoryStore::new();
    for i in 0..n {
        mem.put(&format!("d/f{i:05}"), "x");
    }
    let mut e = env(mem);
    let store = e.store.clone();
    let mut cfg = FsConfig::new("", super::write_tests::defaults());
    cfg.idle_inodes = idle;
    e.fs = Filesystem::new(store, cfg, Some(e.stats.clone()));
    let d = e.fs.lookup(ROOT_INO, b"d").await.unwrap();
    (e, d.ino)
}

#[tokio::test]
async fn listing_without_lookups_leaves_a_bounded_inode_table() {
    let (e, d) = big_dir(5_000, 1_000).await;
    assert_eq!(names(&e.fs, d).await.unwrap().len(), 5_000);
    let (all, idle) = e.fs.inode_counts();
    assert!(idle <= 1_000, "{idle} idle inodes kept");
    assert!(all <= 1_002, "{all} inodes after listing 5,000 names");
    // `ls | head`: a handle read partly and closed leaves no more.
    let fh = e.fs.opendir(d).unwrap();
    let first = e.fs.readdir(d, fh, 0).await.unwrap();
    assert!(first.len() > 10);
    e.fs.releasedir(fh);
    assert!(e.fs.inode_counts().0 <= 1_002);
    // Referenced inodes are never evicted, however many names are listed after them.
    let a = e.fs.lookup(d, b"f00001").await.unwrap();
    names(&e.fs, d).await.unwrap();
    assert_eq!(e.fs.getattr(a.ino).await.unwrap().ino, a.ino);
}

#[tokio::test]
async fn an_entry_that_did_not_fit_is_offered_again_with_its_inode() {
    let (e, d) = big_dir(50, 1_000).await;
    let fh = e.fs.opendir(d).unwrap();
    // A READDIRPLUS buffer that takes 10 entries: the 11th is counted, then taken back.
    let mut sent = Vec::new();
    let mut refused = None;
    e.fs.readdir_with(d, fh, 0, |x| {
        let (a, _) = e.fs.entry_attr(x).expect("every entry has a live inode");
        if sent.len() == 10 {
            refused = Some(a.ino);
            e.fs.unreference(a.ino, 1);
            return true;
        }
        sent.push(x.clone());
        false
    })
    .await
    .unwrap();
    let refused = refused.unwrap();
    let next = sent.last().unwrap().offset;
    let mut again = None;
    e.fs.readdir_with(d, fh, next, |x| {
        again = Some((x.ino, e.fs.entry_attr(x).map(|(a, _)| a)));
        true
    })
    .await
    .unwrap();
    let (ino, attr) = again.unwrap();
    assert_eq!(
        ino, refused,
        "the entry came back with another inode number"
    );
    let attr = attr.expect("the entry's inode was evicted");
    assert_eq!(attr.stat.kind, Kind::File);
    assert_eq!(attr.stat.size, 1);
    e.fs.releasedir(fh);
}

#[tokio::test]
async fn reading_a_directory_touches_each_entry_once_per_pass() {
    let (e, d) = big_dir(40_000, 100_000).await;
    for pass in 0..2 {
        let fh = e.fs.opendir(d).unwrap();
        let (mut offset, mut visits, mut calls, mut got) = (0, 0usize, 0usize, 0usize);
        loop {
            calls += 1;
            let mut last = None;
            let mut taken = 0;
            e.fs.readdir_with(d, fh, offset, |x| {
                visits += 1;
                if taken == 100 {
                    return true;
                }
                taken += 1;
                last = Some(x.offset);
                false
            })
            .await
            .unwrap();
            let Some(l) = last else { break };
            got += taken;
            offset = l;
        }
        e.fs.releasedir(fh);
        assert_eq!(got, 40_002, "pass {pass}");
        // Each call looks at the entries it hands over and one more.
        assert!(
            visits <= got + calls,
            "pass {pass}: {visits} visits in {calls} calls"
        );
    }
}

#[tokio::test]
async fn a_forked_childs_close_does_not_commit_the_parents_file() {
    let e = env(MemoryStore::new());
    let (_, w) = e.fs.create(ROOT_INO, b"log", 0o644, ME).await.unwrap();
    e.fs.set_opener(w.fh, 100);
    write_all(&e.fs, w.fh, 0, &pattern(6 * MIB, 4)).await;
    // The child of a fork closes its copy of the descriptor (exec, exit).
    e.fs.flush_from(w.fh, 200).await.unwrap();
    assert!(e.store.inner().get("log").is_none());
    assert_eq!(count(&e.stats, Op::CompleteMultipartUpload), 0);
    // The opener's close commits.
    e.fs.flush_from(w.fh, 100).await.unwrap();
    assert_eq!(e.store.inner().get("log").unwrap().len(), 6 * MIB);
    e.fs.release(w.fh).await.unwrap();
}

#[tokio::test]
async fn a_directory_rename_deletes_no_marker_before_what_is_under_it() {
    let e = env(MemoryStore::new());
    let mem = e.store.inner();
    for k in [
        "a/X/",
        "a/X/f",
        "a/X/Y/",
        "a/X/Y/g",
        "a/X/Y/Z/",
        "a/X/Y/Z/h",
        "a/X/V/",
    ] {
        mem.put(k, "");
    }
    let a = e.fs.lookup(ROOT_INO, b"a").await.unwrap();
    e.fs.lookup(a.ino, b"X").await.unwrap();
    e.fs.rename(a.ino, b"X", a.ino, b"W", 0).await.unwrap();
    let deleted = mem.deleted();
    assert_eq!(deleted.len(), 7, "{deleted:?}");
    for (i, m) in deleted.iter().enumerate().filter(|(_, k)| k.ends_with('/')) {
        let after = deleted[i + 1..].iter().find(|k| k.starts_with(m.as_str()));
        assert!(after.is_none(), "{m} deleted before {after:?}: {deleted:?}");
    }
    assert_eq!(deleted.last().unwrap(), "a/X/");
    let mut keys = mem.keys();
    keys.sort();
    assert_eq!(
        keys,
        [
            "a/W/",
            "a/W/V/",
            "a/W/Y/",
            "a/W/Y/Z/",
            "a/W/Y/Z/h",
            "a/W/Y/g",
            "a/W/f"
        ]
    );
}

#[tokio::test]
async fn an_idle_mount_drops_its_listings_and_unreferenced_inodes() {
    let (e, d) = big_dir(20_000, 1_000).await;
    assert_eq!(names(&e.fs, d).await.unwrap().len(), 20_000);
    let listing = |fs: &Filesystem<_>| {
        let dir = fs.inodes.get(d).unwrap();
        let n = dir
            .state
            .lock()
            .listing
            .as_ref()
            .map(|s| s.lock().order.len());
        n
    };
    assert_eq!(listing(&e.fs), Some(20_000));
    // A directory handle still reading keeps its listing.
    let fh = e.fs.opendir(d).unwrap();
    e.fs.readdir(d, fh, 0).await.unwrap();
    assert_eq!(e.fs.sweep_older_than(Duration::ZERO).await, 0);
    e.fs.releasedir(fh);
    // Idle: the listing goes; fresh ones stay for the TTL's sake.
    assert_eq!(e.fs.sweep().await, 0);
    assert_eq!(e.fs.sweep_older_than(Duration::ZERO).await, 1);
    assert_eq!(listing(&e.fs), None);
    assert!(e.fs.inode_counts().0 <= 1_002);
    // The directory still lists and looks up as before (a new listing).
    assert_eq!(e.fs.lookup(d, b"f19999").await.unwrap().stat.size, 1);
}

#[tokio::test]
async fn a_renamed_inode_keeps_its_identity_and_open_handles_follow_it() {
    let e = env(MemoryStore::new());
    e.store.inner().put("d1/a", "x");
    e.store.inner().put("f", "y");
    let d1 = e.fs.lookup(ROOT_INO, b"d1").await.unwrap();
    let f = e.fs.lookup(ROOT_INO, b"f").await.unwrap();
    let fh = e.fs.opendir(d1.ino).unwrap();
    assert_eq!(names(&e.fs, d1.ino).await.unwrap(), ["a"]);
    let old_file = e.fs.inodes.get(f.ino).unwrap();
    e.fs.rename(ROOT_INO, b"d1", ROOT_INO, b"d2", 0)
        .await
        .unwrap();
    e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
        .await
        .unwrap();
    // State written through the inode as it was before the rename is the inode's state.
    old_file.state.lock().symlink_target = Some("marker".into());
    let now = e.fs.inodes.get(f.ino).unwrap();
    assert_eq!(now.key, "g");
    assert_eq!(now.state.lock().symlink_target.as_deref(), Some("marker"));
    // A handle opened before the rename lists the directory where it is now.
    let (_, o) = e.fs.create(d1.ino, b"new", 0o644, ME).await.unwrap();
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert!(e.store.inner().get("d2/new").is_some());
    let mut listed: Vec<String> =
        e.fs.readdir(d1.ino, fh, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.name)
            .filter(|n| n != "." && n != "..")
            .collect();
    listed.sort();
    assert_eq!(listed, ["a", "new"]);
    e.fs.releasedir(fh);
}

#[tokio::test]
async fn a_directory_rename_uploads_its_open_files_in_parallel() {
    let e = env(MemoryStore::new());
    let d = e.fs.mkdir(ROOT_INO, b"d", 0o755, ME).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..6 {
        let name = format!("f{i}");
        let (_, o) =
            e.fs.create(d.ino, name.as_bytes(), 0o644, ME)
                .await
                .unwrap();
        e.fs.write(o.fh, 0, name.as_bytes()).await.unwrap();
        handles.push(o.fh);
    }
    e.fs.rename(ROOT_INO, b"d", ROOT_INO, b"e", 0)
        .await
        .unwrap();
    assert!(
        e.stats.snapshot(Op::PutObject).max_in_flight > 1,
        "the open files were uploaded one at a time"
    );
    for fh in handles {
        e.fs.flush(fh).await.unwrap();
        e.fs.release(fh).await.unwrap();
    }
    for i in 0..6 {
        let body = e.store.inner().get(&format!("e/f{i}")).unwrap();
        assert_eq!(body, format!("f{i}"));
    }
}

/// The key of every object in the store, for checking nothing temporary is left.
fn all_keys(e: &super::write_tests::Env<MemoryStore>) -> Vec<String> {
    e.store.inner().keys()
}

#[tokio::test]
async fn truncate_far_past_the_end_copies_its_holes_instead_of_sending_zeros() {
    let e = env(MemoryStore::new());
    let head = pattern(3 * MIB, 7);
    e.store.inner().put("f", head.clone());
    let f = e.fs.lookup(ROOT_INO, b"f").await.unwrap();
    let grow = SetAttr {
        size: Some(60 * MIB as u64),
        ..Default::default()
    };
    e.fs.setattr(f.ino, grow).await.unwrap();
    // Twelve 5 MiB parts: the first holds the old bytes, the other eleven are holes,
    // copied server-side from one zero object of one part.
    assert_eq!(count(&e.stats, Op::UploadPart), 1);
    assert_eq!(e.stats.snapshot(Op::UploadPart).bytes, 5 * MIB as u64);
    assert_eq!(count(&e.stats, Op::UploadPartCopy), 11);
    assert_eq!(count(&e.stats, Op::PutObject), 1);
    assert_eq!(e.stats.snapshot(Op::PutObject).bytes, 5 * MIB as u64);
    assert_eq!(count(&e.stats, Op::CompleteMultipartUpload), 1);
    assert_eq!(count(&e.stats, Op::DeleteObject), 1);
    let body = e.store.inner().get("f").unwrap();
    assert_eq!(body.len(), 60 * MIB);
    assert_eq!(&body[..3 * MIB], &head[..]);
    assert!(body[3 * MIB..].iter().all(|&b| b == 0));
    assert_eq!(all_keys(&e), vec!["f".to_string()]);
    assert!(e.store.inner().pending_uploads().is_empty());
}

#[tokio::test]
async fn a_far_pwrite_sends_only_the_written_parts() {
    let e = env(MemoryStore::new());
    let (_, o) = e.fs.create(ROOT_INO, b"g", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"head").await.unwrap();
    e.fs.write(o.fh, 40 * MIB as u64, b"tail").await.unwrap();
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    // Nine parts: the first and the last carry bytes, the seven between are holes.
    assert_eq!(count(&e.stats, Op::UploadPart), 2);
    assert_eq!(count(&e.stats, Op::UploadPartCopy), 7);
    let body = e.store.inner().get("g").unwrap();
    assert_eq!(body.len(), 40 * MIB + 4);
    assert_eq!(&body[..4], b"head");
    assert_eq!(&body[40 * MIB..], b"tail");
    assert!(body[4..40 * MIB].iter().all(|&b| b == 0));
    assert_eq!(all_keys(&e), vec!["g".to_string()]);
}

#[tokio::test]
async fn a_zero_object_larger_than_a_part_is_one_shared_buffer_sent_in_parts() {
    let e = env(MemoryStore::new());
    let up = &e.fs.uploader;
    let zkey = up.zeros_key("d/file").unwrap();
    let etag = up.put_zeros(&zkey, 12 * MIB as u64).await.unwrap();
    assert!(zkey.starts_with("d/.bucketfs-zeros-"), "{zkey}");
    assert_eq!(count(&e.stats, Op::UploadPart), 3);
    assert_eq!(e.store.inner().head_etag(&zkey), etag);
    let body = e.store.inner().get(&zkey).unwrap();
    assert_eq!(body.len(), 12 * MIB);
    assert!(body.iter().all(|&b| b == 0));
    // Never listed, never found by name.
    let d = e.fs.lookup(ROOT_INO, b"d").await.unwrap();
    assert!(names(&e.fs, d.ino).await.unwrap().is_empty());
    let name = zkey.strip_prefix("d/").unwrap();
    let err = e.fs.lookup(d.ino, name.as_bytes()).await.unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    up.delete_helper(&zkey).await;
    assert!(all_keys(&e).is_empty());
}

#[tokio::test]
async fn reads_of_a_file_go_on_while_its_upload_is_in_flight() {
    let mem = MemoryStore::new();
    let old = pattern(12 * MIB, 9);
    mem.put("big", old.clone());
    let e = env(FaultyStore::gated(mem, FaultTarget::UploadPart));
    let f = e.fs.lookup(ROOT_INO, b"big").await.unwrap();
    let w = e.fs.open(f.ino, libc::O_RDWR).await.unwrap();
    e.fs.write(w.fh, 6 * MIB as u64, b"NEW").await.unwrap();
    let r = e.fs.open(f.ino, libc::O_RDONLY).await.unwrap();
    let mut want = old.clone();
    want[6 * MIB..6 * MIB + 3].copy_from_slice(b"NEW");
    let gated = &e.store.inner();
    let reader = async {
        // The flush is sending the changed part, which waits at the gate.
        gated.entered().notified().await;
        let bound = std::time::Duration::from_secs(30);
        let mid = tokio::time::timeout(bound, e.fs.read(r.fh, 6 * MIB as u64 - 2, 8))
            .await
            .expect("a read waited for the upload to finish")
            .unwrap();
        let head = tokio::time::timeout(bound, e.fs.read(r.fh, 0, 4096))
            .await
            .expect("a read waited for the upload to finish")
            .unwrap();
        gated.open_gate(100);
        (mid, head)
    };
    let (flushed, (mid, head)) = tokio::join!(e.fs.flush(w.fh), reader);
    flushed.unwrap();
    assert_eq!(&mid[..], &want[6 * MIB - 2..6 * MIB + 6]);
    assert_eq!(&head[..], &want[..4096]);
    e.fs.release(w.fh).await.unwrap();
    e.fs.release(r.fh).await.unwrap();
    assert_eq!(e.store.inner().inner().get("big").unwrap(), want);
    assert_eq!(count(&e.stats, Op::UploadPart), 1);
    assert_eq!(count(&e.stats, Op::UploadPartCopy), 2);
}

#[tokio::test]
async fn mkdir_and_symlink_never_overwrite_a_name_and_a_dir_never_moves_below_itself() {
    let m = MemoryStore::new();
    m.put("f", "data");
    m.put("d/", "");
    m.put("d/x", "X");
    let e = env(m);
    for name in [&b"f"[..], b"d"] {
        let err = e.fs.mkdir(ROOT_INO, name, 0o755, ME).await.unwrap_err();
        assert_eq!(err.errno(), libc::EEXIST, "mkdir {name:?}");
        let err = e.fs.symlink(ROOT_INO, name, b"t", ME).await.unwrap_err();
        assert_eq!(err.errno(), libc::EEXIST, "symlink {name:?}");
    }
    // No `f/` marker beside the file, and the file is intact.
    let mem = e.store.inner();
    assert_eq!(mem.keys(), ["d/", "d/x", "f"]);
    assert_eq!(mem.get("f").unwrap(), "data");
    // rename(2) answers EINVAL for a directory moved below itself, before looking at
    // what the target is.
    let err =
        e.fs.rename(
            ROOT_INO,
            b"d",
            e.fs.lookup(ROOT_INO, b"d").await.unwrap().ino,
            b"x",
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(mem.keys(), ["d/", "d/x", "f"]);
}

#[tokio::test]
async fn a_listing_deletes_zero_objects_a_crash_left_once_they_are_old() {
    for (age, kept) in [(Duration::ZERO, false), (leftovers::DEFAULT_AGE, true)] {
        let dir = tempfile::tempdir().unwrap();
        let mem = Arc::new(MemoryStore::new());
        MemoryStore::put(&mem, "d/f", "F");
        MemoryStore::put(&mem, "d/.bucketfs-zeros-4242-0", vec![0u8; 1024]);
        MemoryStore::put(&mem, ".bucketfs-zeros-4242-1", vec![0u8; 1024]);
        let mut cfg = FsConfig::new("", super::write_tests::defaults());
        cfg.write.staging_dir = dir.path().join("staging");
        cfg.write.leftover_age = age;
        let fs = Filesystem::new(mem.clone(), cfg, None);
        let d = fs.lookup(ROOT_INO, b"d").await.unwrap();
        assert_eq!(names(&fs, d.ino).await.unwrap(), ["f"]);
        assert_eq!(names(&fs, ROOT_INO).await.unwrap(), ["d"]);
        let left: Vec<String> = mem
            .keys()
            .into_iter()
            .filter(|k| k.contains(names::ZEROS_PREFIX))
            .collect();
        if kept {
            // Young ones may belong to an upload of another mount that is still going.
            assert_eq!(left.len(), 2, "{left:?}");
        } else {
            assert!(left.is_empty(), "{left:?}");
            assert_eq!(mem.keys(), ["d/f"]);
        }
    }
}
