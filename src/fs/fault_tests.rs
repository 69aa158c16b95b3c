//! One hard fault per store operation, driven through the core as a program would:
//! each gives the caller a clear errno, leaves S3 as it was (or, where S3 cannot undo a
//! step, in a state that loses no data), leaves no multipart upload behind, and the
//! same operation works once the store does.

use std::sync::Arc;

use super::write_tests::{count, env, names, pattern, read_all, write_all, Env, ME, MIB};
use super::*;
use crate::store::counting::Op;
use crate::store::faulty::{FaultTarget, FaultyStore};
use crate::store::memory::MemoryStore;
use crate::store::StoreErrorKind;

type Faulty = FaultyStore<MemoryStore>;

/// A mount over `mem` whose `target` requests fail once the test arms them.
fn faulty(mem: MemoryStore, target: FaultTarget) -> Env<Faulty> {
    env(FaultyStore::new(mem, target, StoreErrorKind::Other, 0))
}

fn arm(e: &Env<Faulty>, n: u64) {
    e.store.inner().arm(n);
}

fn mem(e: &Env<Faulty>) -> &MemoryStore {
    e.store.inner().inner()
}

/// The log lines written while `f` runs.
async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<parking_lot::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    let out = {
        let _g = tracing::subscriber::set_default(sub);
        f.await
    };
    let text = String::from_utf8_lossy(&buf.0.lock()).into_owned();
    (out, text)
}

/// A 12 MiB object `big` (three 5 MiB parts) opened for writing with one byte changed
/// in its middle part: its commit copies two parts and sends one.
async fn edited_big(target: FaultTarget) -> (Env<Faulty>, u64, Vec<u8>, Vec<u8>) {
    let m = MemoryStore::new();
    let old = pattern(12 * MIB, 4);
    m.put("big", old.clone());
    let e = faulty(m, target);
    let f = e.fs.lookup(ROOT_INO, b"big").await.unwrap();
    let o = e.fs.open(f.ino, libc::O_RDWR).await.unwrap();
    e.fs.write(o.fh, 7 * MIB as u64, b"!").await.unwrap();
    let mut new = old.clone();
    new[7 * MIB] = b'!';
    (e, o.fh, old, new)
}

/// A staged commit that failed left the old object and no upload; the next one works.
async fn failed_commit_then_retry(target: FaultTarget) {
    let (e, fh, old, new) = edited_big(target).await;
    arm(&e, 1);
    assert_eq!(e.fs.flush(fh).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(mem(&e).get("big").unwrap(), old, "{target:?}");
    assert!(mem(&e).pending_uploads().is_empty(), "{target:?}");
    // The edit is still here, and goes up once the store works.
    assert_eq!(read_all(&e.fs, fh, 12 * MIB).await, new);
    e.fs.flush(fh).await.unwrap();
    e.fs.release(fh).await.unwrap();
    assert_eq!(mem(&e).get("big").unwrap(), new, "{target:?}");
    assert_eq!(mem(&e).keys(), vec!["big".to_string()]);
}

#[tokio::test]
async fn a_failed_list_fails_readdir_and_rmdir_and_changes_nothing() {
    let m = MemoryStore::new();
    m.put("d/a", "A");
    m.put("d/b", "B");
    m.put("e/", "");
    let e = faulty(m, FaultTarget::List);
    let d = e.fs.lookup(ROOT_INO, b"d").await.unwrap();
    let dir_e = e.fs.lookup(ROOT_INO, b"e").await.unwrap();
    arm(&e, 1);
    let err = names(&e.fs, d.ino).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(names(&e.fs, d.ino).await.unwrap(), ["a", "b"]);
    // rmdir cannot tell whether the directory is empty: it refuses, keeping the marker.
    arm(&e, 1);
    assert_eq!(
        e.fs.rmdir(ROOT_INO, b"e").await.unwrap_err().errno(),
        libc::EIO
    );
    assert!(mem(&e).get("e/").is_some());
    assert_eq!(e.fs.getattr(dir_e.ino).await.unwrap().stat.kind, Kind::Dir);
    e.fs.rmdir(ROOT_INO, b"e").await.unwrap();
    assert!(mem(&e).get("e/").is_none());
}

#[tokio::test]
async fn a_failed_head_is_eio_not_enoent_and_is_not_cached() {
    let m = MemoryStore::new();
    m.put("f", "data");
    let e = faulty(m, FaultTarget::Head);
    arm(&e, 1);
    let err = e.fs.lookup(ROOT_INO, b"f").await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(e.fs.lookup(ROOT_INO, b"f").await.unwrap().stat.size, 4);
}

#[tokio::test]
async fn a_failed_get_fails_that_read_only() {
    let m = MemoryStore::new();
    let data = pattern(MIB, 2);
    m.put("f", data.clone());
    let e = faulty(m, FaultTarget::Get);
    let f = e.fs.lookup(ROOT_INO, b"f").await.unwrap();
    let o = e.fs.open(f.ino, libc::O_RDONLY).await.unwrap();
    arm(&e, 1);
    let err = e.fs.read(o.fh, 0, 4096).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(read_all(&e.fs, o.fh, MIB).await, data);
    e.fs.release(o.fh).await.unwrap();
}

#[tokio::test]
async fn a_failed_put_fails_close_and_mkdir_and_a_later_flush_saves_the_file() {
    let e = faulty(MemoryStore::new(), FaultTarget::Put);
    let (a, o) = e.fs.create(ROOT_INO, b"small", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"hello").await.unwrap();
    arm(&e, 1);
    assert_eq!(e.fs.flush(o.fh).await.unwrap_err().errno(), libc::EIO);
    assert!(mem(&e).get("small").is_none());
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(mem(&e).get("small").unwrap(), "hello");
    assert_eq!(e.fs.getattr(a.ino).await.unwrap().stat.size, 5);
    arm(&e, 1);
    let err = e.fs.mkdir(ROOT_INO, b"d", 0o755, ME).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(
        e.fs.lookup(ROOT_INO, b"d").await.unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(names(&e.fs, ROOT_INO).await.unwrap(), ["small"]);
}

#[tokio::test]
async fn a_failed_create_multipart_loses_a_stream_cleanly_and_keeps_a_staged_edit() {
    let e = faulty(MemoryStore::new(), FaultTarget::CreateMultipart);
    let (_, o) = e.fs.create(ROOT_INO, b"s", 0o644, ME).await.unwrap();
    arm(&e, 1);
    let mut failed = None;
    for (i, c) in pattern(12 * MIB, 1).chunks(MIB).enumerate() {
        if let Err(err) = e.fs.write(o.fh, (i * MIB) as u64, c).await {
            failed = Some(err);
            break;
        }
    }
    let err = match failed {
        Some(err) => err,
        None => e.fs.flush(o.fh).await.unwrap_err(),
    };
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(e.fs.release(o.fh).await.unwrap_err().errno(), libc::EIO);
    assert!(mem(&e).get("s").is_none());
    assert!(mem(&e).pending_uploads().is_empty());
    failed_commit_then_retry(FaultTarget::CreateMultipart).await;
}

#[tokio::test]
async fn a_failed_upload_part_of_a_staged_file_keeps_the_old_object() {
    failed_commit_then_retry(FaultTarget::UploadPart).await;
}

#[tokio::test]
async fn a_failed_upload_part_copy_of_a_staged_edit_keeps_the_old_object() {
    failed_commit_then_retry(FaultTarget::UploadPartCopy).await;
}

#[tokio::test]
async fn a_failed_complete_whose_abort_fails_too_is_eio_and_logs_the_upload_left() {
    let m = MemoryStore::new();
    let old = pattern(12 * MIB, 4);
    m.put("big", old.clone());
    let aborts = FaultyStore::new(m, FaultTarget::Abort, StoreErrorKind::Other, 1);
    let e = env(FaultyStore::new(
        aborts,
        FaultTarget::Complete,
        StoreErrorKind::Other,
        1,
    ));
    let mem = e.store.inner().inner().inner();
    let f = e.fs.lookup(ROOT_INO, b"big").await.unwrap();
    let o = e.fs.open(f.ino, libc::O_RDWR).await.unwrap();
    e.fs.write(o.fh, 7 * MIB as u64, b"!").await.unwrap();
    let mut new = old.clone();
    new[7 * MIB] = b'!';
    let (flushed, log) = logged(e.fs.flush(o.fh)).await;
    assert_eq!(flushed.unwrap_err().errno(), libc::EIO);
    assert_eq!(mem.get("big").unwrap(), old);
    // The upload S3 would not abort is left, and the log says which one.
    assert_eq!(mem.pending_uploads(), vec!["big".to_string()]);
    assert!(
        log.contains("could not abort multipart upload") && log.contains("big"),
        "{log}"
    );
    assert_eq!(count(&e.stats, Op::AbortMultipartUpload), 1);
    // The edit is kept and goes up once the store works.
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(mem.get("big").unwrap(), new);
}

#[tokio::test]
async fn a_failed_complete_keeps_the_old_object_and_aborts_the_upload() {
    failed_commit_then_retry(FaultTarget::Complete).await;
    // A streamed file: its parts are gone with the aborted upload, so it fails for good.
    let e = faulty(MemoryStore::new(), FaultTarget::Complete);
    let (_, o) = e.fs.create(ROOT_INO, b"s", 0o644, ME).await.unwrap();
    write_all(&e.fs, o.fh, 0, &pattern(12 * MIB, 8)).await;
    arm(&e, 1);
    assert_eq!(e.fs.flush(o.fh).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(e.fs.release(o.fh).await.unwrap_err().errno(), libc::EIO);
    assert!(mem(&e).get("s").is_none());
    assert!(mem(&e).pending_uploads().is_empty());
    assert_eq!(count(&e.stats, Op::AbortMultipartUpload), 1);
}

#[tokio::test]
async fn a_failed_copy_fails_rename_and_chmod_and_changes_nothing() {
    let m = MemoryStore::new();
    m.put("f", "data");
    let e = faulty(m, FaultTarget::Copy);
    let f = e.fs.lookup(ROOT_INO, b"f").await.unwrap();
    arm(&e, 1);
    let err =
        e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
            .await
            .unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(mem(&e).keys(), vec!["f".to_string()]);
    assert_eq!(names(&e.fs, ROOT_INO).await.unwrap(), ["f"]);
    assert_eq!(e.fs.lookup(ROOT_INO, b"f").await.unwrap().ino, f.ino);
    arm(&e, 1);
    let chmod = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    assert_eq!(
        e.fs.setattr(f.ino, chmod).await.unwrap_err().errno(),
        libc::EIO
    );
    let (_, meta) = mem(&e).meta("f").unwrap();
    assert!(!meta.contains_key("mode"), "{meta:?}");
    e.fs.setattr(f.ino, chmod).await.unwrap();
    e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
        .await
        .unwrap();
    assert_eq!(mem(&e).keys(), vec!["g".to_string()]);
    assert_eq!(mem(&e).get("g").unwrap(), "data");
}

#[tokio::test]
async fn a_failed_delete_fails_unlink_and_rolls_a_rename_back() {
    let m = MemoryStore::new();
    m.put("f", "data");
    m.put("t", "old target");
    let e = faulty(m, FaultTarget::Delete);
    arm(&e, 1);
    assert_eq!(
        e.fs.unlink(ROOT_INO, b"f").await.unwrap_err().errno(),
        libc::EIO
    );
    assert_eq!(names(&e.fs, ROOT_INO).await.unwrap(), ["f", "t"]);
    assert!(e.fs.lookup(ROOT_INO, b"f").await.is_ok());
    // The copy to a new name is taken back when the source cannot be deleted.
    arm(&e, 1);
    let err =
        e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
            .await
            .unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(mem(&e).keys(), vec!["f".to_string(), "t".to_string()]);
    assert_eq!(names(&e.fs, ROOT_INO).await.unwrap(), ["f", "t"]);
    // Over an existing target, the copy stays: nothing is lost either way.
    arm(&e, 1);
    let err =
        e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"t", 0)
            .await
            .unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(mem(&e).get("f").unwrap(), "data");
    assert_eq!(mem(&e).get("t").unwrap(), "data");
    e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
        .await
        .unwrap();
    assert_eq!(mem(&e).keys(), vec!["g".to_string(), "t".to_string()]);
}

/// A directory of `n` files and a marker.
fn tree(n: usize) -> MemoryStore {
    let m = MemoryStore::new();
    m.put("d/", "");
    for i in 0..n {
        m.put(&format!("d/f{i:02}"), format!("body {i}"));
    }
    m
}

#[tokio::test]
async fn a_directory_rename_whose_copy_fails_part_way_is_rolled_back() {
    let e = faulty(tree(20), FaultTarget::Copy);
    let before = mem(&e).keys();
    e.fs.lookup(ROOT_INO, b"d").await.unwrap();
    // One copy fails; the others (up to 32 at once) land.
    arm(&e, 1);
    let err =
        e.fs.rename(ROOT_INO, b"d", ROOT_INO, b"n", 0)
            .await
            .unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(count(&e.stats, Op::CopyObject) >= 1);
    assert_eq!(mem(&e).keys(), before, "the sources stay and the copies go");
    let d = e.fs.lookup(ROOT_INO, b"d").await.unwrap();
    assert_eq!(names(&e.fs, d.ino).await.unwrap().len(), 20);
    assert_eq!(
        e.fs.lookup(ROOT_INO, b"n").await.unwrap_err().errno(),
        libc::ENOENT
    );
    e.fs.rename(ROOT_INO, b"d", ROOT_INO, b"n", 0)
        .await
        .unwrap();
    assert_eq!(mem(&e).keys().len(), 21);
    assert!(mem(&e).keys().iter().all(|k| k.starts_with("n/")));
}

#[tokio::test]
async fn a_rollback_delete_that_fails_is_logged_with_the_key() {
    // Copies fail once (outer), every delete fails (inner).
    let inner = FaultyStore::always(tree(5), FaultTarget::Delete, StoreErrorKind::Other);
    let e = env(FaultyStore::new(
        inner,
        FaultTarget::Copy,
        StoreErrorKind::Other,
        0,
    ));
    e.fs.lookup(ROOT_INO, b"d").await.unwrap();
    e.store.inner().arm(1);
    let (r, log) = logged(e.fs.rename(ROOT_INO, b"d", ROOT_INO, b"n", 0)).await;
    assert_eq!(r.unwrap_err().errno(), libc::EIO);
    let m = e.store.inner().inner().inner();
    // The sources are all there; each copy that could not be removed is named.
    for i in 0..5 {
        assert!(m.get(&format!("d/f{i:02}")).is_some());
    }
    let left: Vec<String> = m
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("n/"))
        .collect();
    assert_eq!(left.len(), 4, "four of the five copies landed: {left:?}");
    for k in &left {
        assert!(
            log.contains("could not remove the partial copy") && log.contains(k.as_str()),
            "{k} not in the log:\n{log}"
        );
    }
}
