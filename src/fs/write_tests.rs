//! Unit tests of the write side over the in-memory store: uploads, staging, namespace
//! changes, metadata, and failures injected into the store.

use super::*;
use crate::store::counting::{CountingStore, Op};
use crate::store::faulty::{FaultTarget, FaultyStore};
use crate::store::memory::MemoryStore;
use crate::store::StoreErrorKind;

pub(super) const MIB: usize = 1024 * 1024;

pub(super) fn defaults() -> Defaults {
    Defaults {
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        dir_mode: 0o755,
    }
}

pub(super) const ME: Owner = Owner {
    uid: 1000,
    gid: 1000,
};

pub(super) struct Env<S: ObjectStore> {
    pub(super) fs: Filesystem<CountingStore<S>>,
    pub(super) stats: Arc<RequestStats>,
    pub(super) store: Arc<CountingStore<S>>,
    pub(super) _dir: tempfile::TempDir,
}

pub(super) fn env<S: ObjectStore>(inner: S) -> Env<S> {
    env_with(inner, |_| {})
}

/// [`env`] with `tune` applied to its configuration.
pub(super) fn env_with<S: ObjectStore>(inner: S, tune: impl FnOnce(&mut FsConfig)) -> Env<S> {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore::new(inner));
    let stats = store.stats();
    let mut cfg = FsConfig::new("", defaults());
    cfg.write.staging_dir = dir.path().join("staging");
    cfg.write.part_size = 5 * MIB as u64;
    cfg.write.memory_budget = 20 * MIB as u64;
    tune(&mut cfg);
    Env {
        fs: Filesystem::new(store.clone(), cfg, Some(stats.clone())),
        stats,
        store,
        _dir: dir,
    }
}

pub(super) fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

pub(super) async fn write_all<S: ObjectStore>(fs: &Filesystem<S>, fh: u64, at: u64, data: &[u8]) {
    for (i, c) in data.chunks(MIB).enumerate() {
        fs.write(fh, at + (i * MIB) as u64, c).await.unwrap();
    }
}

pub(super) async fn read_all<S: ObjectStore>(fs: &Filesystem<S>, fh: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let b = fs.read(fh, out.len() as u64, MIB as u32).await.unwrap();
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    out
}

/// The names a full readdir pass of `ino` gives, without "." and "..".
pub(super) async fn names<S: ObjectStore>(fs: &Filesystem<S>, ino: u64) -> Result<Vec<String>> {
    let fh = fs.opendir(ino)?;
    let mut out = Vec::new();
    let mut offset = 0;
    let r = loop {
        let page = match fs.readdir(ino, fh, offset).await {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        let Some(last) = page.last() else {
            break Ok(());
        };
        offset = last.offset;
        out.extend(
            page.into_iter()
                .map(|e| e.name)
                .filter(|n| n != "." && n != ".."),
        );
    };
    fs.releasedir(fh);
    r.map(|_| out)
}

pub(super) fn count(stats: &RequestStats, op: Op) -> u64 {
    stats.snapshot(op).requests
}

#[tokio::test]
async fn sequential_write_streams_parts_and_small_file_is_one_put() {
    let e = env(MemoryStore::new());
    let data = pattern(13 * MIB + 7, 1);
    let (a, o) = e.fs.create(ROOT_INO, b"big.bin", 0o640, ME).await.unwrap();
    write_all(&e.fs, o.fh, 0, &data).await;
    // The multipart upload began while writing; the tail goes at flush.
    assert_eq!(count(&e.stats, Op::CreateMultipartUpload), 1);
    assert!(e.store.inner().get("big.bin").is_none());
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("big.bin").unwrap(), data);
    assert_eq!(count(&e.stats, Op::CreateMultipartUpload), 1);
    assert_eq!(count(&e.stats, Op::UploadPart), 3);
    assert_eq!(count(&e.stats, Op::PutObject), 0);
    let (ct, meta) = e.store.inner().meta("big.bin").unwrap();
    assert_eq!(ct.as_deref(), Some("application/octet-stream"));
    assert_eq!(meta["mode"], (0o100640).to_string());
    assert_eq!(
        e.fs.getattr(a.ino).await.unwrap().stat.size,
        data.len() as u64
    );

    let (_, o) =
        e.fs.create(ROOT_INO, b"small.json", 0o644, ME)
            .await
            .unwrap();
    e.fs.write(o.fh, 0, b"{}").await.unwrap();
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(count(&e.stats, Op::PutObject), 1);
    let (ct, _) = e.store.inner().meta("small.json").unwrap();
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert!(e.store.inner().pending_uploads().is_empty());
    assert_eq!(e.fs.uploader.budget_free(), 20 * MIB as u64);
}

#[tokio::test]
async fn part_sizes_grow_to_fit_five_tib() {
    let e = env(MemoryStore::new());
    let up = &e.fs.uploader;
    let total: u64 = (1..=10_000).map(|n| up.stream_part_size(n)).sum();
    assert!(total >= 5 << 40, "10,000 parts hold only {total} bytes");
    assert!((1..=10_000).all(|n| up.stream_part_size(n) <= upload::MAX_PART));
    assert_eq!(up.staged_part_size(1 << 20), 5 * MIB as u64);
    assert!(up.staged_part_size(5 << 40) * 10_000 >= 5 << 40);
}

#[tokio::test]
async fn memory_budget_bounds_parts_in_flight() {
    // 20 MiB budget, 5 MiB parts: at most 4 parts may wait in memory at once.
    let e = env(MemoryStore::new());
    let (_, o) = e.fs.create(ROOT_INO, b"f", 0o644, ME).await.unwrap();
    write_all(&e.fs, o.fh, 0, &pattern(40 * MIB, 2)).await;
    e.fs.flush(o.fh).await.unwrap();
    assert!(e.stats.snapshot(Op::UploadPart).max_in_flight <= 4);
    assert_eq!(e.store.inner().get("f").unwrap().len(), 40 * MIB);
}

#[tokio::test]
async fn random_writes_append_truncate_match_reference_and_reuse_parts() {
    let mem = MemoryStore::new();
    let mut reference = pattern(23 * MIB, 3);
    mem.put("f", reference.clone());
    let e = env(mem);
    let a = e.fs.lookup(ROOT_INO, b"f").await.unwrap();

    // Overwrite 100 bytes in the middle: only the part holding them is sent.
    let o = e.fs.open(a.ino, libc::O_RDWR).await.unwrap();
    let patch = vec![0xAB; 100];
    e.fs.write(o.fh, 12 * MIB as u64, &patch).await.unwrap();
    reference[12 * MIB..12 * MIB + 100].copy_from_slice(&patch);
    assert_eq!(read_all(&e.fs, o.fh, reference.len()).await, reference);
    e.stats.reset();
    e.fs.flush(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("f").unwrap(), reference);
    assert_eq!(count(&e.stats, Op::UploadPart), 1);
    assert_eq!(count(&e.stats, Op::UploadPartCopy), 4);

    // Append.
    let tail = pattern(777, 9);
    e.fs.write(o.fh, reference.len() as u64, &tail)
        .await
        .unwrap();
    reference.extend_from_slice(&tail);
    e.fs.flush(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("f").unwrap(), reference);

    // Truncate down, then up (zeros).
    e.fs.setattr(
        a.ino,
        SetAttr {
            size: Some(MIB as u64 + 5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    reference.truncate(MIB + 5);
    e.fs.flush(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("f").unwrap(), reference);
    e.fs.setattr(
        a.ino,
        SetAttr {
            size: Some(3 * MIB as u64),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    reference.resize(3 * MIB, 0);
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("f").unwrap(), reference);
    assert!(e.store.inner().pending_uploads().is_empty());
}

#[tokio::test]
async fn seek_back_in_a_stream_and_two_handles_share_writes() {
    let e = env(MemoryStore::new());
    let (a, w) = e.fs.create(ROOT_INO, b"z", 0o644, ME).await.unwrap();
    let mut reference = pattern(7 * MIB, 4);
    write_all(&e.fs, w.fh, 0, &reference).await;
    // A second handle reads what the first wrote, before any close.
    let r = e.fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    assert_eq!(
        e.fs.read(r.fh, 6 * MIB as u64, 10).await.unwrap(),
        &reference[6 * MIB..6 * MIB + 10]
    );
    // Patch the start (already sent as a part), like a zip writer fixing a header.
    e.fs.write(w.fh, 10, b"HEADER").await.unwrap();
    reference[10..16].copy_from_slice(b"HEADER");
    assert_eq!(&e.fs.read(r.fh, 0, 32).await.unwrap()[..], &reference[..32]);
    e.fs.flush(w.fh).await.unwrap();
    e.fs.release(w.fh).await.unwrap();
    assert_eq!(e.store.inner().get("z").unwrap(), reference);
    // The reader opened during the write now reads the uploaded object.
    assert_eq!(read_all(&e.fs, r.fh, reference.len()).await, reference);
    e.fs.release(r.fh).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failing_parts_are_retried() {
    // Parts that fail for a passing reason are retried by the store's retry policy.
    let faulty = FaultyStore::new(
        MemoryStore::new(),
        FaultTarget::UploadPart,
        StoreErrorKind::Transient,
        2,
    );
    let e = env(crate::store::retry::RetryingStore::new(
        faulty,
        crate::store::retry::DEFAULT_WINDOW,
    ));
    let data = pattern(11 * MIB, 5);
    let (_, o) = e.fs.create(ROOT_INO, b"r", 0o644, ME).await.unwrap();
    write_all(&e.fs, o.fh, 0, &data).await;
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().inner().inner().get("r").unwrap(), data);
    assert_eq!(e.stats.snapshot(Op::UploadPart).errors, 0);
}

#[tokio::test]
async fn upload_that_keeps_failing_is_eio_with_nothing_left_behind() {
    let faulty = FaultyStore::always(
        MemoryStore::new(),
        FaultTarget::UploadPart,
        StoreErrorKind::Other,
    );
    let e = env(faulty);
    let (_, o) = e.fs.create(ROOT_INO, b"bad", 0o644, ME).await.unwrap();
    let mut failed = None;
    for (i, c) in pattern(16 * MIB, 6).chunks(MIB).enumerate() {
        if let Err(err) = e.fs.write(o.fh, (i * MIB) as u64, c).await {
            failed = Some(err);
            break;
        }
    }
    let flushed = e.fs.flush(o.fh).await;
    let err = failed.or(flushed.err()).expect("the upload cannot succeed");
    assert_eq!(err.errno(), libc::EIO);
    assert!(
        e.fs.flush(o.fh).await.is_err(),
        "a lost upload must keep failing"
    );
    assert_eq!(e.fs.release(o.fh).await.unwrap_err().errno(), libc::EIO);
    let mem = e.store.inner().inner();
    assert!(mem.get("bad").is_none());
    assert!(mem.pending_uploads().is_empty());
}

#[tokio::test]
async fn failed_staged_upload_keeps_the_staging_file() {
    let mem = MemoryStore::new();
    mem.put("s", pattern(1000, 7));
    let faulty = FaultyStore::always(mem, FaultTarget::Put, StoreErrorKind::Other);
    let e = env(faulty);
    let a = e.fs.lookup(ROOT_INO, b"s").await.unwrap();
    let o = e.fs.open(a.ino, libc::O_WRONLY).await.unwrap();
    e.fs.write(o.fh, 10, b"new").await.unwrap();
    assert_eq!(e.fs.flush(o.fh).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(e.fs.release(o.fh).await.unwrap_err().errno(), libc::EIO);
    let kept: Vec<_> = std::fs::read_dir(e._dir.path().join("staging"))
        .unwrap()
        .collect();
    assert_eq!(kept.len(), 1);
    // The old object is untouched.
    assert_eq!(e.store.inner().inner().get("s").unwrap(), pattern(1000, 7));
}

#[tokio::test]
async fn namespace_changes() {
    let mem = MemoryStore::new();
    mem.put("d/a", "A");
    mem.put("d/sub/b", "B");
    mem.put("x", "X");
    let e = env(mem);
    let d = e.fs.lookup(ROOT_INO, b"d").await.unwrap();
    assert_eq!(
        e.fs.rmdir(ROOT_INO, b"d").await.unwrap_err().errno(),
        libc::ENOTEMPTY
    );
    // Directory rename moves every key.
    e.fs.rename(ROOT_INO, b"d", ROOT_INO, b"e", 0)
        .await
        .unwrap();
    let mut keys = e.store.inner().keys();
    keys.sort();
    assert_eq!(keys, vec!["e/a", "e/sub/b", "x"]);
    assert_eq!(e.fs.getattr(d.ino).await.unwrap().stat.kind, Kind::Dir);
    let names: Vec<String> = {
        let fh = e.fs.opendir(d.ino).unwrap();
        let v = e.fs.readdir(d.ino, fh, 0).await.unwrap();
        v.into_iter().map(|x| x.name).collect()
    };
    assert!(names.contains(&"a".to_string()) && names.contains(&"sub".to_string()));
    // File rename over an existing file; NOREPLACE refuses.
    assert_eq!(
        e.fs.rename(d.ino, b"a", ROOT_INO, b"x", libc::RENAME_NOREPLACE)
            .await
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );
    e.fs.rename(d.ino, b"a", ROOT_INO, b"x", 0).await.unwrap();
    assert_eq!(e.store.inner().get("x").unwrap(), "A");
    assert!(e.store.inner().get("e/a").is_none());
    // mkdir writes a marker; rmdir of an empty dir removes it.
    let m = e.fs.mkdir(ROOT_INO, b"new", 0o700, ME).await.unwrap();
    assert_eq!(m.stat.perm, 0o700);
    let (_, meta) = e.store.inner().meta("new/").unwrap();
    assert_eq!(meta["mode"], (0o040700).to_string());
    e.fs.rmdir(ROOT_INO, b"new").await.unwrap();
    assert!(e.store.inner().get("new/").is_none());
    // unlink, symlink, and the name limit.
    e.fs.unlink(ROOT_INO, b"x").await.unwrap();
    assert!(e.store.inner().get("x").is_none());
    assert_eq!(
        e.fs.lookup(ROOT_INO, b"x").await.unwrap_err().errno(),
        libc::ENOENT
    );
    e.fs.symlink(ROOT_INO, b"ln", b"e/sub/b", ME).await.unwrap();
    let l = e.fs.lookup(ROOT_INO, b"ln").await.unwrap();
    assert_eq!(e.fs.readlink(l.ino).await.unwrap(), "e/sub/b");
    let long = vec![b'n'; 256];
    assert_eq!(
        e.fs.create(ROOT_INO, &long, 0o644, ME)
            .await
            .unwrap_err()
            .errno(),
        libc::ENAMETOOLONG
    );
}

#[tokio::test]
async fn metadata_changes_persist_and_fold_into_open_uploads() {
    let mem = MemoryStore::new();
    mem.put("f", "data");
    let e = env(mem);
    let a = e.fs.lookup(ROOT_INO, b"f").await.unwrap();
    let t = std::time::UNIX_EPOCH + Duration::from_secs(981_173_106);
    e.fs.setattr(
        a.ino,
        SetAttr {
            mode: Some(0o600),
            mtime: Some(t),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (_, meta) = e.store.inner().meta("f").unwrap();
    assert_eq!(meta["mode"], (0o100600).to_string());
    assert_eq!(meta["mtime"], "981173106");
    assert_eq!(e.store.inner().get("f").unwrap(), "data");
    e.fs.setxattr(a.ino, b"user.color", b"blue").await.unwrap();
    e.fs.setxattr(a.ino, b"user.s3.content_type", b"text/x-test")
        .await
        .unwrap();
    let (ct, meta) = e.store.inner().meta("f").unwrap();
    assert_eq!(ct.as_deref(), Some("text/x-test"));
    assert_eq!(meta["color"], "blue");
    assert_eq!(meta["mode"], (0o100600).to_string());
    assert_eq!(
        e.fs.setxattr(a.ino, b"user.s3.etag", b"x")
            .await
            .unwrap_err()
            .errno(),
        libc::EPERM
    );
    e.fs.removexattr(a.ino, b"user.color").await.unwrap();
    assert!(!e.store.inner().meta("f").unwrap().1.contains_key("color"));

    // On a file being written, attributes travel with its upload: one PutObject.
    let (c, o) = e.fs.create(ROOT_INO, b"g", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"hello").await.unwrap();
    e.stats.reset();
    e.fs.setattr(
        c.ino,
        SetAttr {
            mode: Some(0o751),
            mtime: Some(t),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(e.stats.total_requests(), 0);
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(count(&e.stats, Op::PutObject), 1);
    let (_, meta) = e.store.inner().meta("g").unwrap();
    assert_eq!(meta["mode"], (0o100751).to_string());
    assert_eq!(meta["mtime"], "981173106");
}

#[tokio::test]
async fn unlinked_open_file_is_not_uploaded() {
    let e = env(MemoryStore::new());
    let (_, o) = e.fs.create(ROOT_INO, b"tmp", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"scratch").await.unwrap();
    e.fs.unlink(ROOT_INO, b"tmp").await.unwrap();
    assert_eq!(e.fs.read(o.fh, 0, 100).await.unwrap(), "scratch");
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert!(e.store.inner().keys().is_empty());
}

#[tokio::test]
async fn drain_uploads_files_still_open() {
    let e = env(MemoryStore::new());
    let (_, a) = e.fs.create(ROOT_INO, b"open-a", 0o644, ME).await.unwrap();
    e.fs.write(a.fh, 0, b"pending a").await.unwrap();
    let (_, b) = e.fs.create(ROOT_INO, b"open-b", 0o644, ME).await.unwrap();
    write_all(&e.fs, b.fh, 0, &pattern(6 * MIB, 8)).await;
    // Both are still open (as at SIGTERM); drain finishes them.
    assert_eq!(e.fs.drain().await, 0);
    assert_eq!(e.store.inner().get("open-a").unwrap(), "pending a");
    assert_eq!(e.store.inner().get("open-b").unwrap(), pattern(6 * MIB, 8));
    assert!(e.store.inner().pending_uploads().is_empty());
}

#[tokio::test]
async fn pending_file_is_listed_before_its_upload() {
    let e = env(MemoryStore::new());
    let (_, o) = e.fs.create(ROOT_INO, b"new.txt", 0o644, ME).await.unwrap();
    for _ in 0..2 {
        // The second readdir reuses the cached listing: the pending file stays.
        let fh = e.fs.opendir(ROOT_INO).unwrap();
        let names: Vec<String> =
            e.fs.readdir(ROOT_INO, fh, 0)
                .await
                .unwrap()
                .into_iter()
                .map(|x| x.name)
                .collect();
        e.fs.releasedir(fh);
        assert!(names.contains(&"new.txt".to_string()), "{names:?}");
    }
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("new.txt").unwrap(), "");
}

#[tokio::test]
async fn close_of_a_dup_before_writing_keeps_the_file_streaming() {
    // dd and shells open, dup2 and close the first fd: a flush of the empty new file.
    let e = env(MemoryStore::new());
    let (_, o) = e.fs.create(ROOT_INO, b"dd.out", 0o644, ME).await.unwrap();
    e.fs.flush(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("dd.out").unwrap(), "");
    let data = pattern(12 * MIB, 10);
    write_all(&e.fs, o.fh, 0, &data).await;
    // Still a stream: the multipart upload began while writing, nothing was staged.
    assert_eq!(count(&e.stats, Op::CreateMultipartUpload), 1);
    assert!(std::fs::read_dir(e._dir.path().join("staging")).map_or(true, |d| d.count() == 0));
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().get("dd.out").unwrap(), data);
}

#[tokio::test]
async fn large_objects_are_renamed_and_rewritten_by_multipart_copy() {
    let mem = MemoryStore::new();
    let data = pattern(17 * MIB, 11);
    mem.put_with_meta(
        "d/big",
        data.clone(),
        &[("mode", "33184"), ("color", "red")],
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore::new(mem));
    let stats = store.stats();
    let mut cfg = FsConfig::new("", defaults());
    cfg.write.staging_dir = dir.path().join("staging");
    // Stand-in for S3's 5 GiB CopyObject limit.
    cfg.write.copy_limit = 6 * MIB as u64;
    let fs = Filesystem::new(store.clone(), cfg, Some(stats.clone()));
    let d = fs.lookup(ROOT_INO, b"d").await.unwrap();
    fs.rename(d.ino, b"big", ROOT_INO, b"moved", 0)
        .await
        .unwrap();
    assert_eq!(store.inner().get("moved").unwrap(), data);
    assert!(store.inner().get("d/big").is_none());
    let (_, meta) = store.inner().meta("moved").unwrap();
    assert_eq!(
        (meta["mode"].as_str(), meta["color"].as_str()),
        ("33184", "red")
    );
    assert_eq!(count(&stats, Op::CopyObject), 0);
    assert_eq!(count(&stats, Op::UploadPartCopy), 3);
    // chmod of a large object: a multipart copy onto itself with the new mode.
    let m = fs.lookup(ROOT_INO, b"moved").await.unwrap();
    fs.setattr(
        m.ino,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(store.inner().get("moved").unwrap(), data);
    assert_eq!(store.inner().meta("moved").unwrap().1["mode"], "33152");
    // Directory rename of a large object goes the same way.
    fs.mkdir(ROOT_INO, b"dir", 0o755, ME).await.unwrap();
    let dd = fs.lookup(ROOT_INO, b"dir").await.unwrap();
    fs.rename(ROOT_INO, b"moved", dd.ino, b"x", 0)
        .await
        .unwrap();
    fs.rename(ROOT_INO, b"dir", ROOT_INO, b"dir3", 0)
        .await
        .unwrap();
    assert_eq!(store.inner().get("dir3/x").unwrap(), data);
    assert!(store.inner().pending_uploads().is_empty());
}

#[tokio::test]
async fn creates_in_a_new_directory_cost_one_put_each() {
    let e = env(MemoryStore::new());
    let d = e.fs.mkdir(ROOT_INO, b"new", 0o755, ME).await.unwrap();
    e.stats.reset();
    for i in 0..20 {
        let name = format!("f{i}");
        // The kernel looks the name up before it creates it.
        let miss = e.fs.lookup(d.ino, name.as_bytes()).await.unwrap_err();
        assert_eq!(miss.errno(), libc::ENOENT);
        let (_, o) =
            e.fs.create(d.ino, name.as_bytes(), 0o644, ME)
                .await
                .unwrap();
        e.fs.write(o.fh, 0, b"data").await.unwrap();
        e.fs.release(o.fh).await.unwrap();
    }
    assert_eq!(e.stats.snapshot(Op::PutObject).requests, 20);
    assert_eq!(
        e.stats.total_requests(),
        20,
        "no lookup request in a directory made here"
    );
    // The files exist: lookups of changed names ask S3 again and find them.
    let f = e.fs.lookup(d.ino, b"f3").await.unwrap();
    assert_eq!(f.stat.size, 4);
    let names: Vec<String> = {
        let fh = e.fs.opendir(d.ino).unwrap();
        let entries = e.fs.readdir(d.ino, fh, 0).await.unwrap();
        e.fs.releasedir(fh);
        entries.into_iter().map(|x| x.name).collect()
    };
    assert_eq!(
        names.len(),
        22,
        "all 20 files listed after the creates: {names:?}"
    );
}

#[tokio::test]
async fn stale_small_directory_is_listed_again_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let stats = store.stats();
    let mut cfg = FsConfig::new("", defaults());
    cfg.write.staging_dir = dir.path().join("staging");
    let ttl = Duration::from_millis(100);
    cfg.metadata_ttl = ttl;
    let fs = Filesystem::new(store.clone(), cfg, Some(stats.clone()));
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ME).await.unwrap();
    for i in 0..5 {
        let (_, o) = fs
            .create(d.ino, format!("f{i}").as_bytes(), 0o644, ME)
            .await
            .unwrap();
        fs.write(o.fh, 0, b"x").await.unwrap();
        fs.release(o.fh).await.unwrap();
    }
    // Another client adds a file; wait past the TTL by polling the clock.
    store.inner().put("d/other", "y");
    let start = Instant::now();
    while start.elapsed() < ttl + Duration::from_millis(10) {
        tokio::task::yield_now().await;
    }
    stats.reset();
    let names: Vec<String> = (0..10).map(|i| format!("new{i}")).collect();
    let misses = names.iter().map(|n| fs.lookup(d.ino, n.as_bytes()));
    for r in futures::future::join_all(misses).await {
        assert_eq!(r.unwrap_err().errno(), libc::ENOENT);
    }
    assert_eq!(
        stats.snapshot(Op::ListObjectsV2).requests,
        1,
        "one listing for all"
    );
    assert_eq!(stats.total_requests(), 1);
    // The new listing knows both this mount's files and the other client's.
    assert_eq!(fs.lookup(d.ino, b"other").await.unwrap().stat.size, 1);
    assert_eq!(fs.lookup(d.ino, b"f3").await.unwrap().stat.size, 1);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 1);
}

#[tokio::test]
async fn directories_made_here_exist_even_where_listings_skip_markers() {
    // A server whose listings never show an empty directory's marker: what mkdir made
    // is still listed, looked up, renamed and removed here (read-your-writes).
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new().with_unlisted_markers());
    let mut cfg = FsConfig::new("", defaults());
    cfg.write.staging_dir = dir.path().join("staging");
    // No caching: every lookup asks the store, as after the TTL.
    cfg.metadata_ttl = Duration::ZERO;
    let fs = Filesystem::new(store.clone(), cfg, None);
    let names = |v: Vec<DirEntry>| -> Vec<String> {
        v.into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect()
    };
    let d = fs.mkdir(ROOT_INO, b"d", 0o750, ME).await.unwrap();
    let s = fs.mkdir(d.ino, b"s", 0o700, ME).await.unwrap();
    let fh = fs.opendir(ROOT_INO).unwrap();
    assert_eq!(names(fs.readdir(ROOT_INO, fh, 0).await.unwrap()), vec!["d"]);
    let fh = fs.opendir(d.ino).unwrap();
    assert_eq!(names(fs.readdir(d.ino, fh, 0).await.unwrap()), vec!["s"]);
    let again = fs.lookup(d.ino, b"s").await.unwrap();
    assert_eq!((again.ino, again.stat.perm), (s.ino, 0o700));
    // Not empty while it holds a directory made here.
    assert_eq!(
        fs.rmdir(ROOT_INO, b"d").await.unwrap_err().errno(),
        libc::ENOTEMPTY
    );
    fs.rename(d.ino, b"s", d.ino, b"t", 0).await.unwrap();
    assert_eq!(
        fs.lookup(d.ino, b"s").await.unwrap_err().errno(),
        libc::ENOENT
    );
    let t = fs.lookup(d.ino, b"t").await.unwrap();
    assert_eq!(t.stat.kind, Kind::Dir);
    assert!(store.get("d/t/").is_some() && store.get("d/s/").is_none());
    fs.rmdir(d.ino, b"t").await.unwrap();
    assert_eq!(
        fs.lookup(d.ino, b"t").await.unwrap_err().errno(),
        libc::ENOENT
    );
    fs.rmdir(ROOT_INO, b"d").await.unwrap();
    assert_eq!(
        fs.lookup(ROOT_INO, b"d").await.unwrap_err().errno(),
        libc::ENOENT
    );
    assert!(store.keys().is_empty(), "{:?}", store.keys());
}
