//! The whole-account mount over in-memory buckets: the root is the bucket list, mkdir
//! and rmdir there are CreateBucket and DeleteBucket, names that cannot be buckets are
//! refused without a request, the root holds no files, and nothing is renamed between
//! buckets in place (EXDEV).

use super::write_tests::{count, env_with, names, read_all, write_all, Env, ME};
use super::*;
use crate::store::account::AccountStore;
use crate::store::counting::Op;
use crate::store::memory::MemoryBuckets;

type Account = AccountStore<MemoryBuckets>;

fn account(names: &[&str]) -> Env<Account> {
    let a = AccountStore::new(MemoryBuckets::new(names));
    env_with(a, |c| c.all_buckets = true)
}

/// Requests as the buckets saw them (the outer counter sees only store calls).
fn sent(e: &Env<Account>, op: Op) -> u64 {
    count(&e.store.inner().buckets().stats(), op)
}

async fn write_file(e: &Env<Account>, parent: u64, name: &[u8], data: &[u8]) -> Result<()> {
    let (_, o) = e.fs.create(parent, name, 0o644, ME).await?;
    write_all(&e.fs, o.fh, 0, data).await;
    e.fs.flush(o.fh).await?;
    e.fs.release(o.fh).await
}

#[tokio::test]
async fn the_root_lists_the_buckets_and_each_is_a_directory() {
    let e = account(&["alpha", "beta"]);
    e.store
        .put(
            "alpha/d/f.txt",
            Bytes::from_static(b"hello"),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(names(&e.fs, ROOT_INO).await.unwrap(), ["alpha", "beta"]);
    assert_eq!(sent(&e, Op::ListBuckets), 1);
    let a = e.fs.lookup(ROOT_INO, b"alpha").await.unwrap();
    assert_eq!(a.stat.kind, Kind::Dir);
    let b = e.fs.lookup(ROOT_INO, b"beta").await.unwrap();
    assert_eq!(b.stat.kind, Kind::Dir);
    assert!(names(&e.fs, b.ino).await.unwrap().is_empty());
    let d = e.fs.lookup(a.ino, b"d").await.unwrap();
    let f = e.fs.lookup(d.ino, b"f.txt").await.unwrap();
    let fh = e.fs.open(f.ino, libc::O_RDONLY).await.unwrap().fh;
    assert_eq!(read_all(&e.fs, fh, 5).await, b"hello");
    e.fs.release(fh).await.unwrap();
    // Written through the mount: in the bucket's own store, under its own key.
    write_file(&e, b.ino, b"new", b"written").await.unwrap();
    let beta = e.store.inner().buckets().get("beta").unwrap();
    assert!(beta.get("new").is_some());
}

#[tokio::test]
async fn names_that_cannot_be_buckets_cost_no_request_and_mkdir_refuses_them() {
    let e = account(&["alpha"]);
    names(&e.fs, ROOT_INO).await.unwrap();
    let before = sent(&e, Op::HeadBucket) + sent(&e, Op::ListBuckets);
    for bad in ["Upper", "a_b", "ab", ".git", "-x-", "192.168.1.1", "a..b"] {
        let r = e.fs.mkdir(ROOT_INO, bad.as_bytes(), 0o755, ME).await;
        assert_eq!(r.unwrap_err().errno(), libc::EINVAL, "{bad}");
    }
    assert_eq!(sent(&e, Op::CreateBucket), 0);
    assert_eq!(
        e.fs.lookup(ROOT_INO, b"Upper").await.unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(sent(&e, Op::HeadBucket) + sent(&e, Op::ListBuckets), before);
}

#[tokio::test]
async fn the_root_holds_no_files() {
    let e = account(&["alpha"]);
    let r = e.fs.create(ROOT_INO, b"file", 0o644, ME).await;
    assert_eq!(r.unwrap_err().errno(), libc::EPERM);
    let r = e.fs.symlink(ROOT_INO, b"link", b"alpha", ME).await;
    assert_eq!(r.unwrap_err().errno(), libc::EPERM);
    let a = e.fs.lookup(ROOT_INO, b"alpha").await.unwrap();
    write_file(&e, a.ino, b"f", b"x").await.unwrap();
    let r = e.fs.rename(a.ino, b"f", ROOT_INO, b"f", 0).await;
    assert_eq!(r.unwrap_err().errno(), libc::EPERM);
}

#[tokio::test]
async fn mkdir_and_rmdir_at_the_root_create_and_delete_buckets() {
    let e = account(&["alpha"]);
    let made = e.fs.mkdir(ROOT_INO, b"gamma", 0o755, ME).await.unwrap();
    assert_eq!(sent(&e, Op::CreateBucket), 1);
    assert!(e.store.inner().buckets().get("gamma").is_some());
    assert_eq!(
        e.fs.mkdir(ROOT_INO, b"gamma", 0o755, ME)
            .await
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );
    write_file(&e, made.ino, b"f", b"data").await.unwrap();
    assert_eq!(
        e.fs.rmdir(ROOT_INO, b"gamma").await.unwrap_err().errno(),
        libc::ENOTEMPTY
    );
    assert!(e.store.inner().buckets().get("gamma").is_some());
    e.fs.unlink(made.ino, b"f").await.unwrap();
    e.fs.rmdir(ROOT_INO, b"gamma").await.unwrap();
    assert_eq!(sent(&e, Op::DeleteBucket), 1);
    assert!(e.store.inner().buckets().get("gamma").is_none());
    assert_eq!(
        e.fs.lookup(ROOT_INO, b"gamma").await.unwrap_err().errno(),
        libc::ENOENT
    );
}

#[tokio::test]
async fn renames_stay_within_a_bucket() {
    let e = account(&["alpha", "beta"]);
    let a = e.fs.lookup(ROOT_INO, b"alpha").await.unwrap();
    let b = e.fs.lookup(ROOT_INO, b"beta").await.unwrap();
    write_file(&e, a.ino, b"f", b"data").await.unwrap();
    let r = e.fs.rename(a.ino, b"f", b.ino, b"f", 0).await;
    assert_eq!(r.unwrap_err().errno(), libc::EXDEV);
    let r = e.fs.rename(ROOT_INO, b"alpha", ROOT_INO, b"delta", 0).await;
    assert_eq!(r.unwrap_err().errno(), libc::EXDEV);
    assert_eq!(sent(&e, Op::CopyObject), 0);
    e.fs.rename(a.ino, b"f", a.ino, b"g", 0).await.unwrap();
    let alpha = e.store.inner().buckets().get("alpha").unwrap();
    assert!(alpha.get("g").is_some() && alpha.get("f").is_none());
}

#[tokio::test]
async fn a_bucket_deleted_elsewhere_lists_empty() {
    let e = account(&["alpha"]);
    let a = e.fs.lookup(ROOT_INO, b"alpha").await.unwrap();
    use crate::store::account::Buckets as _;
    e.store
        .inner()
        .buckets()
        .delete_bucket("alpha")
        .await
        .unwrap();
    assert!(names(&e.fs, a.ino).await.unwrap().is_empty());
}
