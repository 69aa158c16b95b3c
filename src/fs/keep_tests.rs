//! A rewrite of an existing object keeps what it carries besides its bytes: its
//! Cache-Control, Content-Encoding, Content-Disposition, Content-Language, Expires and
//! redirect headers, its storage class, and its KMS encryption key. One test per path
//! that writes an object that exists, over the memory store (which, like S3, resets the
//! storage class and encryption on a copy that does not set them).

use super::write_tests::{env, pattern, write_all, ME, MIB};
use super::*;
use crate::store::memory::MemoryStore;
use crate::store::Props;

fn props() -> Props {
    Props {
        cache_control: Some("max-age=3600".into()),
        content_encoding: Some("gzip".into()),
        content_disposition: Some("attachment; filename=\"r.csv\"".into()),
        content_language: Some("de".into()),
        expires: Some("Wed, 21 Oct 2026 07:28:00 GMT".into()),
        website_redirect: Some("/elsewhere".into()),
        storage_class: Some("STANDARD_IA".into()),
        sse: Some("aws:kms".into()),
        sse_kms_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/k1".into()),
        bucket_key: Some(true),
    }
}

/// A store holding `f` (`size` bytes) with [`props`].
fn store(size: usize) -> MemoryStore {
    let m = MemoryStore::new();
    m.put_with_props("f", pattern(size, 1), props());
    m
}

async fn f_ino<S: ObjectStore>(fs: &Filesystem<S>) -> u64 {
    fs.lookup(ROOT_INO, b"f").await.unwrap().ino
}

#[tokio::test]
async fn chmod_chown_utimes_and_xattrs_keep_them() {
    let e = env(store(100));
    let ino = f_ino(&e.fs).await;
    let mem = e.store.inner();
    let chmod = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    e.fs.setattr(ino, chmod).await.unwrap();
    assert_eq!(mem.props("f").unwrap(), props(), "chmod");
    let touch = SetAttr {
        mtime: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000)),
        ..Default::default()
    };
    e.fs.setattr(ino, touch).await.unwrap();
    assert_eq!(mem.props("f").unwrap(), props(), "utimes");
    e.fs.setxattr(ino, b"user.note", b"v").await.unwrap();
    assert_eq!(mem.props("f").unwrap(), props(), "setxattr");
    assert_eq!(mem.get("f").unwrap(), pattern(100, 1));
}

#[tokio::test]
async fn edits_small_and_staged_keep_them() {
    for size in [100, 12 * MIB] {
        let e = env(store(size));
        let ino = f_ino(&e.fs).await;
        let o = e.fs.open(ino, libc::O_RDWR).await.unwrap();
        e.fs.write(o.fh, (size / 2) as u64, b"edit").await.unwrap();
        e.fs.release(o.fh).await.unwrap();
        let mem = e.store.inner();
        assert_eq!(mem.props("f").unwrap(), props(), "edit of {size} bytes");
        assert_eq!(&mem.get("f").unwrap()[size / 2..size / 2 + 4], b"edit");
    }
}

#[tokio::test]
async fn truncating_and_rewriting_keep_them() {
    // truncate(2) down and up.
    let e = env(store(100));
    let ino = f_ino(&e.fs).await;
    for size in [10, 20 * MIB as u64] {
        let t = SetAttr {
            size: Some(size),
            ..Default::default()
        };
        e.fs.setattr(ino, t).await.unwrap();
        assert_eq!(
            e.store.inner().props("f").unwrap(),
            props(),
            "truncate to {size}"
        );
    }
    // open(O_TRUNC) and a new content, one PutObject or streamed in parts.
    for size in [100, 12 * MIB] {
        let e = env(store(100));
        let ino = f_ino(&e.fs).await;
        let o =
            e.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
                .await
                .unwrap();
        write_all(&e.fs, o.fh, 0, &pattern(size, 7)).await;
        e.fs.release(o.fh).await.unwrap();
        let mem = e.store.inner();
        assert_eq!(mem.props("f").unwrap(), props(), "rewrite of {size} bytes");
        assert_eq!(mem.get("f").unwrap(), pattern(size, 7));
    }
}

#[tokio::test]
async fn a_file_rename_keeps_them() {
    let e = env(store(100));
    e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
        .await
        .unwrap();
    assert_eq!(e.store.inner().props("g").unwrap(), props());
    // A file created here has none of them.
    let (_, o) = e.fs.create(ROOT_INO, b"new", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"x").await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().props("new").unwrap(), Props::default());
}

#[tokio::test]
async fn properties_are_xattrs_and_setting_one_is_one_copy() {
    use crate::store::counting::Op;
    let e = env(store(100));
    let ino = f_ino(&e.fs).await;
    let mem = e.store.inner();
    let get = |n: &'static str| {
        let fs = &e.fs;
        async move { fs.getxattr(ino, n.as_bytes()).await }
    };
    assert_eq!(get("user.s3.cache_control").await.unwrap(), b"max-age=3600");
    assert_eq!(get("user.s3.storage_class").await.unwrap(), b"STANDARD_IA");
    assert_eq!(get("user.s3.sse").await.unwrap(), b"aws:kms");
    assert_eq!(get("user.s3.bucket_key").await.unwrap(), b"true");
    let names = e.fs.listxattr(ino).await.unwrap();
    for n in [
        "user.s3.content_disposition",
        "user.s3.expires",
        "user.s3.sse_kms_key_id",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }

    let copies = e.stats.snapshot(Op::CopyObject).requests;
    e.fs.setxattr(ino, b"user.s3.storage_class", b"GLACIER_IR")
        .await
        .unwrap();
    e.fs.setxattr(ino, b"user.s3.cache_control", b"no-cache")
        .await
        .unwrap();
    e.fs.removexattr(ino, b"user.s3.content_language")
        .await
        .unwrap();
    assert_eq!(e.stats.snapshot(Op::CopyObject).requests, copies + 3);
    assert_eq!(e.stats.snapshot(Op::GetObject).requests, 0, "no download");
    let want = Props {
        storage_class: Some("GLACIER_IR".into()),
        cache_control: Some("no-cache".into()),
        content_language: None,
        ..props()
    };
    assert_eq!(mem.props("f").unwrap(), want);
    assert_eq!(mem.get("f").unwrap(), pattern(100, 1));
    assert_eq!(get("user.s3.cache_control").await.unwrap(), b"no-cache");

    let err = |r: Result<()>| r.unwrap_err().errno();
    let fs = &e.fs;
    assert_eq!(
        err(fs.removexattr(ino, b"user.s3.content_language").await),
        libc::ENODATA
    );
    assert_eq!(
        err(fs.setxattr(ino, b"user.s3.expires", b"tomorrow").await),
        libc::EINVAL
    );
    assert_eq!(
        err(fs.setxattr(ino, b"user.s3.storage_class", b"fast").await),
        libc::EINVAL
    );
    assert_eq!(
        err(fs.setxattr(ino, b"user.s3.sse", b"AES256").await),
        libc::EPERM
    );
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ME).await.unwrap();
    assert_eq!(
        err(fs.setxattr(d.ino, b"user.s3.cache_control", b"x").await),
        libc::EPERM
    );
    assert_eq!(mem.props("f").unwrap(), want, "failed calls change nothing");
}

#[tokio::test]
async fn a_files_presigned_url_is_an_xattr_made_without_a_request() {
    let e = env(store(100));
    let ino = f_ino(&e.fs).await;
    let before = e.stats.total_requests();
    let url = e.fs.getxattr(ino, b"user.s3.presigned_url").await.unwrap();
    assert_eq!(url, b"memory:///f?method=Get&expires=3600");
    assert_eq!(e.stats.total_requests(), before, "signing sends nothing");
    assert!(e
        .fs
        .listxattr(ino)
        .await
        .unwrap()
        .iter()
        .any(|n| n == "user.s3.presigned_url"));
    let d = e.fs.mkdir(ROOT_INO, b"d", 0o755, ME).await.unwrap();
    assert_eq!(
        e.fs.getxattr(d.ino, b"user.s3.presigned_url")
            .await
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
    assert!(!e
        .fs
        .listxattr(d.ino)
        .await
        .unwrap()
        .iter()
        .any(|n| n == "user.s3.presigned_url"));
}
