//! Server-side copy (`copy_file_range`) over the memory store: a whole file into an
//! empty one is a CopyObject (part copies above the copy limit) with no data request,
//! keeps the source's properties, never copies bytes older than the source's own
//! writes, and everything else is refused for the kernel to copy by hand.

use super::error::Error;
use super::write_tests::{count, env, env_with, pattern, read_all, write_all, ME, MIB};
use super::*;
use crate::store::counting::Op;
use crate::store::faulty::{FaultTarget, FaultyStore};
use crate::store::memory::MemoryStore;
use crate::store::{Props, StoreErrorKind};

fn props() -> Props {
    Props {
        cache_control: Some("max-age=60".into()),
        storage_class: Some("STANDARD_IA".into()),
        ..Default::default()
    }
}

/// A store holding `src.bin` (`size` bytes) with [`props`], a tag and a user xattr.
fn store(size: usize) -> MemoryStore {
    let m = MemoryStore::new();
    m.put_with_props("src.bin", pattern(size, 3), props());
    m.put_tags("src.bin", &[("team", "blue")]);
    m
}

const DATA_OPS: [Op; 4] = [
    Op::GetObject,
    Op::UploadPart,
    Op::PutObject,
    Op::DeleteObject,
];

#[tokio::test]
async fn a_whole_file_copy_is_one_copy_object_and_no_data_request() {
    let e = env(store(12 * MIB));
    let src = e.fs.lookup(ROOT_INO, b"src.bin").await.unwrap();
    let fin = e.fs.open(src.ino, libc::O_RDONLY).await.unwrap().fh;
    let (dst, o) = e.fs.create(ROOT_INO, b"dst.bin", 0o600, ME).await.unwrap();
    e.stats.reset();
    // What coreutils' cp asks: everything, from the start.
    let n =
        e.fs.copy_file_range(fin, 0, o.fh, 0, 1 << 62)
            .await
            .unwrap();
    assert_eq!(n, (12 * MIB) as u64);
    // A next request past the end: the copy is over, nothing more is sent.
    assert_eq!(
        e.fs.copy_file_range(fin, n, o.fh, n, 1 << 62)
            .await
            .unwrap(),
        0
    );
    assert_eq!(e.fs.getattr(dst.ino).await.unwrap().stat.size, n);
    e.fs.flush(o.fh).await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    e.fs.release(fin).await.unwrap();
    assert_eq!(count(&e.stats, Op::CopyObject), 1);
    for op in DATA_OPS {
        assert_eq!(count(&e.stats, op), 0, "{op:?}");
    }
    let mem = e.store.inner();
    assert_eq!(mem.get("dst.bin").unwrap(), pattern(12 * MIB, 3));
    assert_eq!(mem.props("dst.bin").unwrap(), props());
    assert_eq!(mem.tags("dst.bin").unwrap()["team"], "blue");
    // The new file's own mode, as created.
    let (_, meta) = mem.meta("dst.bin").unwrap();
    assert_eq!(meta["mode"], (0o100600).to_string());
    // Read back through the mount, from a new handle.
    let fh = e.fs.open(dst.ino, libc::O_RDONLY).await.unwrap().fh;
    assert_eq!(read_all(&e.fs, fh, 12 * MIB).await, pattern(12 * MIB, 3));
}

#[tokio::test]
async fn above_the_copy_limit_the_parts_are_copied_server_side_with_the_tags() {
    let e = env_with(store(13 * MIB), |c| c.write.copy_limit = 6 * MIB as u64);
    let src = e.fs.lookup(ROOT_INO, b"src.bin").await.unwrap();
    let fin = e.fs.open(src.ino, libc::O_RDONLY).await.unwrap().fh;
    let (_, o) = e.fs.create(ROOT_INO, b"dst.bin", 0o644, ME).await.unwrap();
    e.stats.reset();
    let n =
        e.fs.copy_file_range(fin, 0, o.fh, 0, 1 << 62)
            .await
            .unwrap();
    assert_eq!(n, (13 * MIB) as u64);
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(count(&e.stats, Op::CopyObject), 0);
    assert!(count(&e.stats, Op::UploadPartCopy) >= 1);
    assert_eq!(count(&e.stats, Op::CompleteMultipartUpload), 1);
    for op in DATA_OPS {
        assert_eq!(count(&e.stats, op), 0, "{op:?}");
    }
    let mem = e.store.inner();
    assert_eq!(mem.get("dst.bin").unwrap(), pattern(13 * MIB, 3));
    assert_eq!(mem.props("dst.bin").unwrap(), props());
    assert_eq!(mem.tags("dst.bin").unwrap()["team"], "blue");
}

#[tokio::test]
async fn the_sources_own_writes_are_uploaded_before_it_is_copied() {
    let e = env(MemoryStore::new());
    let (src, w) = e.fs.create(ROOT_INO, b"src.txt", 0o644, ME).await.unwrap();
    write_all(&e.fs, w.fh, 0, b"first version").await;
    e.fs.flush(w.fh).await.unwrap();
    // Written again and not closed: the copy must not take the old bytes.
    e.fs.write(w.fh, 0, b"FIRST").await.unwrap();
    let fin = e.fs.open(src.ino, libc::O_RDONLY).await.unwrap().fh;
    let (_, o) = e.fs.create(ROOT_INO, b"dst.txt", 0o644, ME).await.unwrap();
    let n =
        e.fs.copy_file_range(fin, 0, o.fh, 0, 1 << 30)
            .await
            .unwrap();
    assert_eq!(n, 13);
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(
        &e.store.inner().get("dst.txt").unwrap()[..],
        b"FIRST version"
    );
    e.fs.release(w.fh).await.unwrap();
}

#[tokio::test]
async fn partial_copies_and_full_destinations_are_left_to_the_kernel() {
    let e = env(store(MIB));
    let src = e.fs.lookup(ROOT_INO, b"src.bin").await.unwrap();
    let fin = e.fs.open(src.ino, libc::O_RDONLY).await.unwrap().fh;
    let (_, o) = e.fs.create(ROOT_INO, b"dst.bin", 0o644, ME).await.unwrap();
    e.stats.reset();
    let unsupported = |r: Result<u64>| match r {
        Err(e @ Error::Unsupported(_)) => assert_eq!(e.errno(), libc::EOPNOTSUPP),
        other => panic!("expected EOPNOTSUPP, got {other:?}"),
    };
    // Not from the start, not all of it, not to the start.
    unsupported(e.fs.copy_file_range(fin, 10, o.fh, 0, 1 << 30).await);
    unsupported(e.fs.copy_file_range(fin, 0, o.fh, 0, 4096).await);
    unsupported(e.fs.copy_file_range(fin, 0, o.fh, 10, 1 << 30).await);
    // Into a file that holds bytes already.
    e.fs.write(o.fh, 0, b"x").await.unwrap();
    unsupported(e.fs.copy_file_range(fin, 0, o.fh, 0, 1 << 30).await);
    // Onto itself.
    let (_, w) = e.fs.create(ROOT_INO, b"self", 0o644, ME).await.unwrap();
    unsupported(e.fs.copy_file_range(w.fh, 0, w.fh, 0, 1 << 30).await);
    // Into a handle open only for reading.
    let r = e.fs.copy_file_range(fin, 0, fin, 0, 1 << 30).await;
    assert!(matches!(r, Err(Error::BadHandle(_))), "{r:?}");
    assert_eq!(count(&e.stats, Op::CopyObject), 0);
    assert_eq!(count(&e.stats, Op::UploadPartCopy), 0);
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(&e.store.inner().get("dst.bin").unwrap()[..], b"x");
}

#[tokio::test]
async fn a_copy_then_written_is_uploaded_as_an_edit_of_the_copy() {
    let e = env(store(2 * MIB));
    let src = e.fs.lookup(ROOT_INO, b"src.bin").await.unwrap();
    let fin = e.fs.open(src.ino, libc::O_RDONLY).await.unwrap().fh;
    let (_, o) = e.fs.create(ROOT_INO, b"dst.bin", 0o644, ME).await.unwrap();
    e.fs.copy_file_range(fin, 0, o.fh, 0, 1 << 30)
        .await
        .unwrap();
    // A later request of the same copy finds the bytes there.
    assert_eq!(
        e.fs.copy_file_range(fin, 4096, o.fh, 4096, 1 << 30)
            .await
            .unwrap(),
        (2 * MIB - 4096) as u64
    );
    e.fs.write(o.fh, 100, b"edit").await.unwrap();
    // Once written, the file is no copy any more.
    assert!(e
        .fs
        .copy_file_range(fin, 4096, o.fh, 4096, 1 << 30)
        .await
        .is_err());
    e.fs.release(o.fh).await.unwrap();
    let mut want = pattern(2 * MIB, 3);
    want[100..104].copy_from_slice(b"edit");
    assert_eq!(e.store.inner().get("dst.bin").unwrap(), want);
    assert_eq!(e.store.inner().get("src.bin").unwrap(), pattern(2 * MIB, 3));
}

#[tokio::test]
async fn a_failed_copy_is_an_error_and_the_file_stays_empty() {
    let faulty = FaultyStore::always(store(MIB), FaultTarget::Copy, StoreErrorKind::AccessDenied);
    let e = env(faulty);
    let src = e.fs.lookup(ROOT_INO, b"src.bin").await.unwrap();
    let fin = e.fs.open(src.ino, libc::O_RDONLY).await.unwrap().fh;
    let (dst, o) = e.fs.create(ROOT_INO, b"dst.bin", 0o644, ME).await.unwrap();
    let r = e.fs.copy_file_range(fin, 0, o.fh, 0, 1 << 30).await;
    assert_eq!(r.unwrap_err().errno(), libc::EACCES);
    assert_eq!(e.fs.getattr(dst.ino).await.unwrap().stat.size, 0);
    // The kernel can still copy by hand into it.
    e.fs.write(o.fh, 0, b"by hand").await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(
        &e.store.inner().inner().get("dst.bin").unwrap()[..],
        b"by hand"
    );
}
