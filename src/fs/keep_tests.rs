//! A rewrite of an existing object keeps what it carries besides its bytes: its
//! Cache-Control, Content-Encoding, Content-Disposition, Content-Language, Expires and
//! redirect headers, its storage class, its KMS encryption key, and its tags. One test per path
//! that writes an object that exists, over the memory store (which, like S3, resets the
//! storage class and encryption on a copy that does not set them).

use super::write_tests::{env, env_with, pattern, write_all, ME, MIB};
use super::*;
use crate::store::counting::Op;
use crate::store::memory::MemoryStore;
use crate::store::{Props, Tags};

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

const TAGS: [(&str, &str); 2] = [("project", "apollo 11"), ("tier", "gold")];

fn tags() -> Tags {
    TAGS.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A store holding `f` (`size` bytes) with [`props`] and [`TAGS`].
fn store(size: usize) -> MemoryStore {
    let m = MemoryStore::new();
    m.put_with_props("f", pattern(size, 1), props());
    m.put_tags("f", &TAGS);
    m
}

/// `key` still has [`props`] and [`TAGS`].
fn assert_kept(mem: &MemoryStore, key: &str, what: &str) {
    assert_eq!(mem.props(key).unwrap(), props(), "props after {what}");
    assert_eq!(mem.tags(key).unwrap(), tags(), "tags after {what}");
}

/// Whether `listxattr` of `ino` names `name`.
async fn lists<S: ObjectStore>(fs: &Filesystem<S>, ino: u64, name: &str) -> bool {
    fs.listxattr(ino).await.unwrap().iter().any(|n| n == name)
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
    assert_kept(mem, "f", "chmod");
    let touch = SetAttr {
        mtime: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000)),
        ..Default::default()
    };
    e.fs.setattr(ino, touch).await.unwrap();
    assert_kept(mem, "f", "utimes");
    e.fs.setxattr(ino, b"user.note", b"v").await.unwrap();
    assert_kept(mem, "f", "setxattr");
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
        assert_kept(mem, "f", &format!("edit of {size} bytes"));
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
        assert_kept(e.store.inner(), "f", &format!("truncate to {size}"));
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
        assert_kept(mem, "f", &format!("rewrite of {size} bytes"));
        assert_eq!(mem.get("f").unwrap(), pattern(size, 7));
    }
}

#[tokio::test]
async fn a_file_rename_keeps_them() {
    let e = env(store(100));
    e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
        .await
        .unwrap();
    assert_kept(e.store.inner(), "g", "rename");
    // A file created here has none of them.
    let (_, o) = e.fs.create(ROOT_INO, b"new", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"x").await.unwrap();
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(e.store.inner().props("new").unwrap(), Props::default());
    assert_eq!(e.store.inner().tags("new").unwrap(), Tags::new());
}

#[tokio::test]
async fn a_rename_copied_part_by_part_keeps_them() {
    // Over the copy limit a rename is a multipart copy, which carries no tags by
    // itself: they are read once and sent with the new upload.
    let e = env_with(store(7 * MIB), |c| c.write.copy_limit = 6 * MIB as u64);
    e.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)
        .await
        .unwrap();
    assert_eq!(e.stats.snapshot(Op::UploadPartCopy).requests, 2);
    assert_eq!(e.stats.snapshot(Op::GetObjectTagging).requests, 1);
    assert_kept(e.store.inner(), "g", "multipart rename");
    assert_eq!(e.store.inner().get("g").unwrap(), pattern(7 * MIB, 1));
}

#[tokio::test]
async fn a_directory_rename_keeps_them_on_every_file() {
    let mem = MemoryStore::new();
    for k in ["d/a", "d/sub/b"] {
        mem.put_with_props(k, pattern(10, 2), props());
        mem.put_tags(k, &TAGS);
    }
    mem.put_with_props("d/big", pattern(7 * MIB, 3), props());
    mem.put_tags("d/big", &TAGS);
    let e = env_with(mem, |c| c.write.copy_limit = 6 * MIB as u64);
    e.fs.rename(ROOT_INO, b"d", ROOT_INO, b"e", 0)
        .await
        .unwrap();
    let mem = e.store.inner();
    for k in ["e/a", "e/sub/b", "e/big"] {
        assert_kept(mem, k, &format!("directory rename ({k})"));
    }
    assert_eq!(mem.get("e/big").unwrap(), pattern(7 * MIB, 3));
    assert!(mem.keys().iter().all(|k| !k.starts_with("d/")));
}

#[tokio::test]
async fn a_directory_rename_keeps_each_files_modification_time() {
    let mem = MemoryStore::new();
    mem.put("d/a", "x");
    let then = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    mem.set_last_modified("d/a", then);
    let e = env(mem);
    e.fs.rename(ROOT_INO, b"d", ROOT_INO, b"e", 0)
        .await
        .unwrap();
    let d = e.fs.lookup(ROOT_INO, b"e").await.unwrap();
    let after = e.fs.lookup(d.ino, b"a").await.unwrap().stat.mtime;
    assert_eq!(
        after, then,
        "the copy's new LastModified is not the file's mtime"
    );
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
    assert!(lists(&e.fs, ino, "user.s3.presigned_url").await);
    let d = e.fs.mkdir(ROOT_INO, b"d", 0o755, ME).await.unwrap();
    assert_eq!(
        e.fs.getxattr(d.ino, b"user.s3.presigned_url")
            .await
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
    assert!(!lists(&e.fs, d.ino, "user.s3.presigned_url").await);
}

#[tokio::test]
async fn tags_are_xattrs_read_only_when_asked_for() {
    // A TTL no test outlasts: what the cache answers is deterministic.
    let e = env_with(store(100), |c| c.metadata_ttl = Duration::from_secs(3600));
    let tagging = |e: &super::write_tests::Env<MemoryStore>| {
        [
            Op::GetObjectTagging,
            Op::PutObjectTagging,
            Op::DeleteObjectTagging,
        ]
        .map(|op| e.stats.snapshot(op).requests)
    };
    // Lookups and listings (what `ls -l` does) never ask for tags.
    let ino = f_ino(&e.fs).await;
    e.fs.getattr(ino).await.unwrap();
    let h = e.fs.opendir(ROOT_INO).unwrap();
    e.fs.readdir(ROOT_INO, h, 0).await.unwrap();
    assert_eq!(tagging(&e), [0, 0, 0], "ls -l");

    // One tag read is one GetObjectTagging.
    let v = e.fs.getxattr(ino, b"user.s3.tag.project").await.unwrap();
    assert_eq!(v, b"apollo 11");
    assert_eq!(tagging(&e), [1, 0, 0]);
    let missing = e.fs.getxattr(ino, b"user.s3.tag.nope").await.unwrap_err();
    assert_eq!(missing.errno(), libc::ENODATA);

    // The list names them (the HEAD counts two); within the TTL the set is cached.
    let names = e.fs.listxattr(ino).await.unwrap();
    for n in ["user.s3.tag.project", "user.s3.tag.tier"] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }
    assert_eq!(tagging(&e), [1, 0, 0]);

    // Setting one is a read and a PutObjectTagging: no download, no copy, same object.
    let etag = e.store.inner().head_etag("f");
    let (gets, copies) = (
        e.stats.snapshot(Op::GetObject).requests,
        e.stats.snapshot(Op::CopyObject).requests,
    );
    e.fs.setxattr(ino, b"user.s3.tag.tier", b"silver")
        .await
        .unwrap();
    e.fs.setxattr(ino, "user.s3.tag.Ünïcode".as_bytes(), "wért".as_bytes())
        .await
        .unwrap();
    assert_eq!(tagging(&e), [1, 2, 0]);
    assert_eq!(e.stats.snapshot(Op::GetObject).requests, gets);
    assert_eq!(e.stats.snapshot(Op::CopyObject).requests, copies);
    assert_eq!(e.store.inner().head_etag("f"), etag);
    let want: Tags = [
        ("project", "apollo 11"),
        ("tier", "silver"),
        ("Ünïcode", "wért"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(e.store.inner().tags("f").unwrap(), want);

    // Removing the last one deletes the set.
    for t in ["project", "tier", "Ünïcode"] {
        let n = format!("user.s3.tag.{t}");
        e.fs.removexattr(ino, n.as_bytes()).await.unwrap();
    }
    assert_eq!(e.store.inner().tags("f").unwrap(), Tags::new());
    assert_eq!(
        tagging(&e)[2],
        1,
        "the last removal is a DeleteObjectTagging"
    );
    let gone =
        e.fs.removexattr(ino, b"user.s3.tag.tier")
            .await
            .unwrap_err();
    assert_eq!(gone.errno(), libc::ENODATA);
    // With no tags counted, listing the xattrs asks for none.
    e.fs.setattr(
        ino,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let before = tagging(&e);
    e.fs.listxattr(ino).await.unwrap();
    assert_eq!(tagging(&e), before);
}

#[tokio::test]
async fn bad_tags_are_refused_and_change_nothing() {
    let e = env(store(100));
    let ino = f_ino(&e.fs).await;
    let fs = &e.fs;
    let err = |r: Result<()>| r.unwrap_err().errno();
    assert_eq!(
        err(fs.setxattr(ino, b"user.s3.tag.aws:x", b"v").await),
        libc::EINVAL
    );
    assert_eq!(
        err(fs.setxattr(ino, b"user.s3.tag.a", &[0xff, 0xfe]).await),
        libc::EINVAL
    );
    assert_eq!(
        err(fs
            .setxattr(ino, b"user.s3.tag.a", "x".repeat(257).as_bytes())
            .await),
        libc::EINVAL
    );
    assert_eq!(
        err(fs.setxattr(ino, b"user.s3.tag.a;b", b"v").await),
        libc::EINVAL
    );
    for i in 0..8 {
        let n = format!("user.s3.tag.t{i}");
        fs.setxattr(ino, n.as_bytes(), b"v").await.unwrap();
    }
    assert_eq!(
        err(fs.setxattr(ino, b"user.s3.tag.eleventh", b"v").await),
        libc::E2BIG
    );
    assert_eq!(e.store.inner().tags("f").unwrap().len(), 10);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ME).await.unwrap();
    assert_eq!(
        err(fs.setxattr(d.ino, b"user.s3.tag.a", b"v").await),
        libc::EPERM
    );
}

#[tokio::test]
async fn a_tag_set_on_a_file_being_written_goes_up_with_it() {
    let e = env(MemoryStore::new());
    // A new file: the tag waits for the first upload, which carries it.
    let (a, o) = e.fs.create(ROOT_INO, b"new", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"hello").await.unwrap();
    e.fs.setxattr(a.ino, b"user.s3.tag.k", b"v").await.unwrap();
    assert_eq!(e.fs.getxattr(a.ino, b"user.s3.tag.k").await.unwrap(), b"v");
    assert_eq!(e.stats.snapshot(Op::PutObjectTagging).requests, 0);
    e.fs.release(o.fh).await.unwrap();
    let want: Tags = [("k".to_string(), "v".to_string())].into_iter().collect();
    assert_eq!(e.store.inner().tags("new").unwrap(), want);
    assert_eq!(e.store.inner().get("new").unwrap(), &b"hello"[..]);

    // An existing file open for writing: tagged at once, and its next upload keeps it.
    let o = e.fs.open(a.ino, libc::O_RDWR).await.unwrap();
    e.fs.write(o.fh, 0, b"J").await.unwrap();
    e.fs.setxattr(a.ino, b"user.s3.tag.k2", b"v2")
        .await
        .unwrap();
    e.fs.release(o.fh).await.unwrap();
    let tags = e.store.inner().tags("new").unwrap();
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_eq!(tags["k2"], "v2");
    assert_eq!(e.store.inner().get("new").unwrap(), &b"Jello"[..]);
}

#[tokio::test]
async fn an_archived_file_is_restored_through_its_xattr_and_read_once_restored() {
    let mem = MemoryStore::new();
    mem.put("cold", pattern(50, 4));
    mem.set_storage_class("cold", "DEEP_ARCHIVE");
    // A TTL no test outlasts: only the open's own re-check can see the restore.
    let e = env_with(mem, |c| c.metadata_ttl = Duration::from_secs(3600));
    let ino = e.fs.lookup(ROOT_INO, b"cold").await.unwrap().ino;
    let err = e.fs.open(ino, libc::O_RDONLY).await.unwrap_err();
    assert_eq!(err.errno(), libc::EACCES);
    let none = e.fs.getxattr(ino, b"user.s3.restore").await.unwrap_err();
    assert_eq!(none.errno(), libc::ENODATA, "no restore asked for yet");

    for bad in ["0", "x", "3,Fast", "-1"] {
        let r = e.fs.setxattr(ino, b"user.s3.restore", bad.as_bytes()).await;
        assert_eq!(r.unwrap_err().errno(), libc::EINVAL, "{bad:?}");
    }
    assert_eq!(e.stats.snapshot(Op::RestoreObject).requests, 0);
    e.fs.setxattr(ino, b"user.s3.restore", b"7,bulk")
        .await
        .unwrap();
    assert_eq!(e.stats.snapshot(Op::RestoreObject).requests, 1);
    assert_eq!(
        e.fs.getxattr(ino, b"user.s3.restore").await.unwrap(),
        b"ongoing"
    );
    assert!(lists(&e.fs, ino, "user.s3.restore").await);
    assert_eq!(
        e.fs.open(ino, libc::O_RDONLY).await.unwrap_err().errno(),
        libc::EACCES,
        "still restoring"
    );

    // S3 finishes: same ETag, size and time, so only a new HEAD can tell.
    let expiry = "Fri, 01 Jan 2027 00:00:00 GMT";
    e.store.inner().finish_restore("cold", expiry);
    let o = e.fs.open(ino, libc::O_RDONLY).await.unwrap();
    assert_eq!(
        super::write_tests::read_all(&e.fs, o.fh, 50).await,
        pattern(50, 4)
    );
    e.fs.release(o.fh).await.unwrap();
    assert_eq!(
        e.fs.getxattr(ino, b"user.s3.restore").await.unwrap(),
        format!("expires {expiry}").into_bytes()
    );
}

#[tokio::test]
async fn an_anonymous_mount_turns_read_only_once_the_bucket_refuses_an_upload() {
    use crate::store::faulty::{FaultTarget, FaultyStore};
    let refusing = || {
        FaultyStore::always(
            MemoryStore::new(),
            FaultTarget::Put,
            crate::store::StoreErrorKind::AccessDenied,
        )
    };
    let e = env_with(refusing(), |c| c.anonymous = true);
    let (_, o) = e.fs.create(ROOT_INO, b"a", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"x").await.unwrap();
    assert!(e.fs.flush(o.fh).await.is_err(), "the refused upload fails");
    let _ = e.fs.release(o.fh).await;
    let again = e.fs.create(ROOT_INO, b"b", 0o644, ME).await.unwrap_err();
    assert_eq!(again.errno(), libc::EROFS);
    // A signed mount whose upload is refused stays writable (the next may be allowed).
    let e = env(refusing());
    let (_, o) = e.fs.create(ROOT_INO, b"a", 0o644, ME).await.unwrap();
    e.fs.write(o.fh, 0, b"x").await.unwrap();
    assert!(e.fs.flush(o.fh).await.is_err());
    let _ = e.fs.release(o.fh).await;
    assert!(e.fs.create(ROOT_INO, b"b", 0o644, ME).await.is_ok());
}
