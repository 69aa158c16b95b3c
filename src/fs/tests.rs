//! Unit tests of the core over the in-memory store, counting requests.

use super::*;
use crate::store::counting::{CountingStore, Op};
use crate::store::memory::MemoryStore;

type Store = CountingStore<MemoryStore>;

fn defaults() -> Defaults {
    Defaults {
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        dir_mode: 0o755,
    }
}

fn setup(
    mem: MemoryStore,
    f: impl FnOnce(&mut FsConfig),
) -> (Filesystem<Store>, Arc<RequestStats>) {
    let store = Arc::new(CountingStore::new(mem));
    let stats = store.stats();
    let mut cfg = FsConfig::new("", defaults());
    f(&mut cfg);
    (Filesystem::new(store, cfg, Some(stats.clone())), stats)
}

async fn list_names(fs: &Filesystem<Store>, ino: u64) -> Vec<(String, Kind)> {
    let fh = fs.opendir(ino).unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = fs.readdir(ino, fh, offset).await.unwrap();
        if page.is_empty() {
            break;
        }
        // Take only a few at a time, as a kernel with a small buffer would.
        for e in page.into_iter().take(7) {
            offset = e.offset;
            if e.name != "." && e.name != ".." {
                out.push((e.name, e.kind));
            }
        }
    }
    fs.releasedir(fh);
    out
}

#[tokio::test]
async fn lookup_file_dir_and_missing() {
    let mem = MemoryStore::new();
    mem.put("top.txt", "hello");
    mem.put("d/inner", "x");
    mem.put("explicit/", "");
    let (fs, _) = setup(mem, |_| {});
    let f = fs.lookup(ROOT_INO, b"top.txt").await.unwrap();
    assert_eq!(f.stat.kind, Kind::File);
    assert_eq!(f.stat.size, 5);
    assert_eq!(f.stat.perm, 0o644);
    let d = fs.lookup(ROOT_INO, b"d").await.unwrap();
    assert_eq!(d.stat.kind, Kind::Dir);
    let e = fs.lookup(ROOT_INO, b"explicit").await.unwrap();
    assert_eq!(e.stat.kind, Kind::Dir);
    assert_eq!(
        fs.lookup(ROOT_INO, b"nope").await.unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(
        fs.lookup(ROOT_INO, &[b'n'; 256]).await.unwrap_err().errno(),
        libc::ENAMETOOLONG
    );
    let inner = fs.lookup(d.ino, b"inner").await.unwrap();
    assert_eq!(inner.stat.kind, Kind::File);
    assert_eq!(
        fs.lookup(f.ino, b"x").await.unwrap_err().errno(),
        libc::ENOTDIR
    );
}

#[tokio::test]
async fn directory_shadows_object_of_same_name() {
    let mem = MemoryStore::new();
    mem.put("clash", "object");
    mem.put("clash/child", "x");
    let (fs, _) = setup(mem, |_| {});
    assert_eq!(
        list_names(&fs, ROOT_INO).await,
        vec![("clash".into(), Kind::Dir)]
    );
    let c = fs.lookup(ROOT_INO, b"clash").await.unwrap();
    assert_eq!(c.stat.kind, Kind::Dir);
    // Without a listing, the probe reaches the same answer.
    let mem = MemoryStore::new();
    mem.put("clash", "object");
    mem.put("clash/child", "x");
    let (fs, _) = setup(mem, |_| {});
    assert_eq!(
        fs.lookup(ROOT_INO, b"clash").await.unwrap().stat.kind,
        Kind::Dir
    );
}

#[tokio::test]
async fn readdir_pages_offsets_and_rewind() {
    let mem = MemoryStore::with_page_size(100);
    for i in 0..2600 {
        mem.put(&format!("big/f{i:05}"), "x");
    }
    let (fs, stats) = setup(mem, |_| {});
    let big = fs.lookup(ROOT_INO, b"big").await.unwrap();
    stats.reset();
    let names = list_names(&fs, big.ino).await;
    assert_eq!(names.len(), 2600);
    let uniq: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(uniq.len(), 2600);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 26);
    assert_eq!(stats.snapshot(Op::HeadObject).requests, 0);
    // A second listing within the TTL costs nothing.
    assert_eq!(list_names(&fs, big.ino).await.len(), 2600);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 26);
}

#[tokio::test]
async fn readdir_asks_for_the_next_page_ahead_and_only_one() {
    let mem = MemoryStore::with_page_size(100);
    for i in 0..350 {
        mem.put(&format!("big/f{i:05}"), "x");
    }
    let (fs, stats) = setup(mem, |_| {});
    let big = fs.lookup(ROOT_INO, b"big").await.unwrap();
    stats.reset();
    let fh = fs.opendir(big.ino).unwrap();
    let first = fs.readdir(big.ino, fh, 0).await.unwrap();
    // ".", "..", and the page's names but its last (a prefix of that name may follow).
    assert_eq!(first.len(), 101);
    // The second page is requested in the background before the kernel asks for it
    // (this test's runtime is single-threaded: yielding lets that task run)...
    for _ in 0..100 {
        if stats.snapshot(Op::ListObjectsV2).requests == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 2);
    // ...and never more than one page ahead.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 2);
    // Reading on uses that page: no second request for it.
    let second = fs
        .readdir(big.ino, fh, first.last().unwrap().offset)
        .await
        .unwrap();
    assert_eq!(second.first().unwrap().name, "f00099");
    assert_eq!(second.len(), 100);
    assert!(stats.snapshot(Op::ListObjectsV2).requests <= 3);
    // A rewind drops the page fetched ahead and lists from the start.
    let again = fs.readdir(big.ino, fh, 0).await.unwrap();
    assert_eq!(again[2].name, "f00000");
    fs.releasedir(fh);
    // In all: pages 1, 2, 3 (ahead, then dropped or not yet sent) and 1 again.
    let n = stats.snapshot(Op::ListObjectsV2).requests;
    assert!((3..=4).contains(&n), "{n} listings");
}

#[tokio::test]
async fn listing_answers_lookups_and_negatives() {
    let mem = MemoryStore::new();
    mem.put("a", "1");
    mem.put("sub/b", "2");
    let (fs, stats) = setup(mem, |c| c.metadata_source = MetadataSource::Listing);
    list_names(&fs, ROOT_INO).await;
    stats.reset();
    assert_eq!(fs.lookup(ROOT_INO, b"a").await.unwrap().stat.size, 1);
    assert_eq!(
        fs.lookup(ROOT_INO, b"sub").await.unwrap().stat.kind,
        Kind::Dir
    );
    assert_eq!(
        fs.lookup(ROOT_INO, b"zzz").await.unwrap_err().errno(),
        libc::ENOENT
    );
    // Listing mode: no HeadObject and no further listing for any of these.
    assert_eq!(stats.snapshot(Op::HeadObject).requests, 0);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 0);
}

#[tokio::test]
async fn metadata_cache_expires() {
    let mem = MemoryStore::new();
    mem.put("f", "abc");
    let (fs, stats) = setup(mem, |c| c.metadata_ttl = Duration::from_millis(50));
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let heads = stats.snapshot(Op::HeadObject).requests;
    fs.getattr(f.ino).await.unwrap();
    assert_eq!(
        stats.snapshot(Op::HeadObject).requests,
        heads,
        "served from cache"
    );
    wait_past(Duration::from_millis(60)).await;
    fs.getattr(f.ino).await.unwrap();
    assert_eq!(
        stats.snapshot(Op::HeadObject).requests,
        heads + 1,
        "refreshed after TTL"
    );
}

#[tokio::test]
async fn statahead_overlaps_heads_after_second_lookup() {
    let mem = MemoryStore::new();
    for i in 0..300 {
        mem.put(&format!("d/f{i:04}"), "x");
    }
    let (fs, stats) = setup(mem, |_| {});
    let d = fs.lookup(ROOT_INO, b"d").await.unwrap();
    let names = list_names(&fs, d.ino).await;
    stats.reset();
    // Plain listing: no HEADs.
    assert_eq!(stats.snapshot(Op::HeadObject).requests, 0);
    for (n, _) in &names {
        fs.lookup(d.ino, n.as_bytes()).await.unwrap();
    }
    let heads = stats.snapshot(Op::HeadObject);
    // Every entry HEADed once (statahead and lookups share requests).
    assert_eq!(heads.requests, 300);
    assert!(heads.max_in_flight > 1, "statahead ran HEADs concurrently");
}

#[tokio::test]
async fn posix_metadata_and_symlinks() {
    let mem = MemoryStore::new();
    mem.put_with_meta(
        "m",
        "data",
        &[
            ("mode", "33216"),
            ("uid", "5"),
            ("gid", "6"),
            ("mtime", "1600000000"),
        ],
    );
    mem.put_with_meta("link", "target/path", &[("mode", &0o120777u32.to_string())]);
    mem.put_with_meta("dir/", "", &[("mode", &0o40700u32.to_string())]);
    let (fs, _) = setup(mem, |_| {});
    let m = fs.lookup(ROOT_INO, b"m").await.unwrap();
    assert_eq!(m.stat.perm, 0o700);
    assert_eq!((m.stat.uid, m.stat.gid), (5, 6));
    let l = fs.lookup(ROOT_INO, b"link").await.unwrap();
    assert_eq!(l.stat.kind, Kind::Symlink);
    assert_eq!(fs.readlink(l.ino).await.unwrap(), "target/path");
    let d = fs.lookup(ROOT_INO, b"dir").await.unwrap();
    assert_eq!(d.stat.kind, Kind::Dir);
    assert_eq!(d.stat.perm, 0o700);
}

#[tokio::test]
async fn open_read_and_read_only_refusal() {
    let mem = MemoryStore::new();
    mem.put("f", "0123456789");
    let (fs, _) = setup(mem, |c| c.read_only = true);
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let o = fs.open(f.ino, libc::O_RDONLY).await.unwrap();
    assert!(!o.keep_cache);
    assert_eq!(&fs.read(o.fh, 3, 4).await.unwrap()[..], b"3456");
    fs.release(o.fh).await.unwrap();
    let o2 = fs.open(f.ino, libc::O_RDONLY).await.unwrap();
    assert!(o2.keep_cache, "unchanged object keeps the page cache");
    assert_eq!(
        fs.open(f.ino, libc::O_WRONLY).await.unwrap_err().errno(),
        libc::EROFS
    );
    assert_eq!(
        fs.unlink(ROOT_INO, b"f").await.unwrap_err().errno(),
        libc::EROFS
    );
    assert_eq!(fs.read(999, 0, 1).await.unwrap_err().errno(), libc::EBADF);
}

#[tokio::test]
async fn archived_object_gives_clear_error() {
    let mem = MemoryStore::new();
    mem.put("cold", "x");
    mem.set_storage_class("cold", "DEEP_ARCHIVE");
    let (fs, _) = setup(mem, |_| {});
    let c = fs.lookup(ROOT_INO, b"cold").await.unwrap();
    let e = fs.open(c.ino, libc::O_RDONLY).await.unwrap_err();
    assert_eq!(e.errno(), libc::EACCES);
    assert!(e.to_string().contains("DEEP_ARCHIVE"), "{}", e);
}

#[tokio::test]
async fn xattrs_and_stats() {
    let mem = MemoryStore::new();
    mem.put_with_meta("f", "x", &[("color", "blue"), ("mode", "33188")]);
    let (fs, _) = setup(mem, |_| {});
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let names = fs.listxattr(f.ino).await.unwrap();
    assert!(names.contains(&"user.color".to_string()));
    assert!(names.contains(&"user.s3.etag".to_string()));
    assert_eq!(fs.getxattr(f.ino, b"user.color").await.unwrap(), b"blue");
    assert_eq!(
        fs.getxattr(f.ino, b"user.nope").await.unwrap_err().errno(),
        libc::ENODATA
    );
    let s =
        String::from_utf8(fs.getxattr(ROOT_INO, STATS_XATTR.as_bytes()).await.unwrap()).unwrap();
    assert!(s.contains("\"HeadObject\":{\"requests\":"), "{s}");
    fs.setxattr(ROOT_INO, STATS_XATTR.as_bytes(), b"reset")
        .await
        .unwrap();
    let s =
        String::from_utf8(fs.getxattr(ROOT_INO, STATS_XATTR.as_bytes()).await.unwrap()).unwrap();
    assert!(s.contains("\"HeadObject\":{\"requests\":0,"), "{s}");
}

#[tokio::test]
async fn prefix_mount_sees_only_its_prefix() {
    let mem = MemoryStore::new();
    mem.put("inside/a", "1");
    mem.put("inside/sub/b", "2");
    mem.put("outside", "3");
    let store = Arc::new(CountingStore::new(mem));
    let fs = Filesystem::new(store, FsConfig::new("inside/", defaults()), None);
    assert_eq!(
        list_names(&fs, ROOT_INO).await,
        vec![("a".into(), Kind::File), ("sub".into(), Kind::Dir)]
    );
    assert_eq!(
        fs.lookup(ROOT_INO, b"outside").await.unwrap_err().errno(),
        libc::ENOENT
    );
}

#[tokio::test]
async fn store_errors_map_to_errnos() {
    use crate::store::faulty::{FaultTarget, FaultyStore};
    use crate::store::StoreErrorKind;
    let mem = MemoryStore::new();
    mem.put("f", "x");
    let store = Arc::new(FaultyStore::new(
        mem,
        FaultTarget::Head,
        StoreErrorKind::AccessDenied,
        1,
    ));
    let fs = Filesystem::new(store, FsConfig::new("", defaults()), None);
    assert_eq!(
        fs.lookup(ROOT_INO, b"f").await.unwrap_err().errno(),
        libc::EACCES
    );
    // The fault is gone: the same lookup now succeeds (errors are not cached).
    assert_eq!(
        fs.lookup(ROOT_INO, b"f").await.unwrap().stat.kind,
        Kind::File
    );
}

#[tokio::test]
async fn descending_into_subdirectories_sends_no_head_per_file() {
    // `find -name` looks up every subdirectory of a listed directory to descend into it:
    // one HEAD per directory (its marker's metadata), none per file; none in listing mode.
    let mem = MemoryStore::new();
    for i in 0..20 {
        mem.put(&format!("sub{i:02}/file"), "x");
    }
    mem.put("top-file", "x");
    let (fs, stats) = setup(mem, |_| {});
    let root = list_names(&fs, ROOT_INO).await;
    for (n, k) in &root {
        if *k == Kind::Dir {
            let d = fs.lookup(ROOT_INO, n.as_bytes()).await.unwrap();
            list_names(&fs, d.ino).await;
        }
    }
    // Let any statahead task run before counting.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(stats.snapshot(Op::HeadObject).requests, 20);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 21);
}

#[tokio::test]
async fn directory_mode_comes_from_its_marker() {
    let mem = MemoryStore::new();
    mem.put_with_meta("priv/", "", &[("mode", "16832")]); // 040700
    mem.put("priv/f", "x");
    let (fs, _) = setup(mem, |_| {});
    list_names(&fs, ROOT_INO).await;
    let d = fs.lookup(ROOT_INO, b"priv").await.unwrap();
    assert_eq!(d.stat.perm, 0o700);
}

#[tokio::test]
async fn missing_name_costs_one_listing() {
    let mem = MemoryStore::new();
    mem.put("a.txt", "x");
    mem.put("dir/b", "y");
    let (fs, stats) = setup(mem, |_| {});
    let e = fs.lookup(ROOT_INO, b"nope").await.unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 1);
    assert_eq!(stats.total_requests(), 1);
    // An existing file: the listing, then its metadata.
    stats.reset();
    assert_eq!(fs.lookup(ROOT_INO, b"a.txt").await.unwrap().stat.size, 1);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 1);
    assert_eq!(stats.snapshot(Op::HeadObject).requests, 1);
}

#[tokio::test]
async fn lookup_finds_directory_behind_many_similar_names() {
    let mem = MemoryStore::new();
    // `name-00` .. `name.39` sort between `name` and `name/`: more than a probe page.
    for i in 0..40 {
        mem.put(&format!("name-{i:02}"), "x");
        mem.put(&format!("name.{i:02}"), "x");
    }
    mem.put("name", "shadowed");
    mem.put("name/inner", "y");
    mem.put("other-00", "x");
    let (fs, stats) = setup(mem, |_| {});
    let d = fs.lookup(ROOT_INO, b"name").await.unwrap();
    assert_eq!(d.stat.kind, Kind::Dir, "the directory wins over the object");
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 2);
    assert!(fs.lookup(d.ino, b"inner").await.is_ok());
    // Without a directory behind them, the same crowd still means "a file".
    stats.reset();
    let f = fs.lookup(ROOT_INO, b"other-00").await.unwrap();
    assert_eq!(f.stat.kind, Kind::File);
    assert_eq!(
        fs.lookup(ROOT_INO, b"name-0").await.unwrap_err().errno(),
        libc::ENOENT
    );
}

#[tokio::test]
async fn relisting_unchanged_objects_sends_no_head() {
    let mem = MemoryStore::new();
    for i in 0..5 {
        mem.put(&format!("f{i}"), "abc");
    }
    let ttl = Duration::from_millis(100);
    let (fs, stats) = setup(mem, |c| c.metadata_ttl = ttl);
    list_names(&fs, ROOT_INO).await;
    for i in 0..5 {
        fs.lookup(ROOT_INO, format!("f{i}").as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(stats.snapshot(Op::HeadObject).requests, 5);
    // Another client rewrites f2 (new ETag). Wait past the TTL by polling the clock.
    fs.store.inner().put("f2", "changed");
    let start = Instant::now();
    while start.elapsed() < ttl + Duration::from_millis(10) {
        tokio::task::yield_now().await;
    }
    stats.reset();
    list_names(&fs, ROOT_INO).await;
    let mut sizes = Vec::new();
    for i in 0..5 {
        sizes.push(
            fs.lookup(ROOT_INO, format!("f{i}").as_bytes())
                .await
                .unwrap()
                .stat
                .size,
        );
    }
    assert_eq!(sizes, vec![3, 3, 7, 3, 3]);
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 1);
    assert_eq!(
        stats.snapshot(Op::HeadObject).requests,
        1,
        "only the changed object is asked for again"
    );
}

#[tokio::test]
async fn descending_fetches_each_marker_once() {
    let mem = MemoryStore::new();
    for i in 0..20 {
        mem.put(&format!("d{i:02}/"), "");
        mem.put(&format!("d{i:02}/f"), "x");
    }
    let (fs, stats) = setup(mem, |_| {});
    list_names(&fs, ROOT_INO).await;
    // Two directory lookups start the marker statahead for the rest.
    fs.lookup(ROOT_INO, b"d00").await.unwrap();
    fs.lookup(ROOT_INO, b"d01").await.unwrap();
    for i in 2..20 {
        let d = fs
            .lookup(ROOT_INO, format!("d{i:02}").as_bytes())
            .await
            .unwrap();
        assert_eq!(d.stat.kind, Kind::Dir);
    }
    assert_eq!(
        stats.snapshot(Op::HeadObject).requests,
        20,
        "each marker fetched once, by statahead or lookup"
    );
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 1);
}

/// Push `o` as the FUSE adapter would (from a thread of its own); whether it was pushed.
async fn push(fs: &Arc<Filesystem<Store>>, o: PageOffer) -> bool {
    let fs = fs.clone();
    tokio::task::spawn_blocking(move || fs.offer_pages(&o, |_, _, _| Ok(())))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_blocks_reach_the_page_cache_only_while_nothing_changed() {
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let mem = MemoryStore::new();
    mem.put("f", body.clone());
    let (fs, stats) = setup(mem, |c| c.metadata_ttl = Duration::ZERO);
    let fs = Arc::new(fs);
    let f = fs.lookup(ROOT_INO, b"f").await.unwrap();
    let r = fs.open(f.ino, libc::O_RDONLY).await.unwrap();

    // A random read offers the whole block it fetched...
    let (data, offers) = fs.read_offering(r.fh, 200_000, 4096).await.unwrap();
    assert_eq!(&data[..], &body[200_000..204_096]);
    assert_eq!(offers.len(), 1);
    assert_eq!((offers[0].ino, offers[0].offset), (f.ino, 3 << 16));
    assert_eq!(&offers[0].data[..], &body[3 << 16..4 << 16]);
    // ...once: a read the block cache answers has nothing new.
    let gets = stats.snapshot(Op::GetObject).requests;
    let (_, again) = fs.read_offering(r.fh, 250_000, 4096).await.unwrap();
    assert!(again.is_empty());
    assert_eq!(stats.snapshot(Op::GetObject).requests, gets);
    let block = offers.into_iter().next().unwrap();
    assert!(push(&fs, block).await, "nothing changed: pushed");

    // A writer appears: data read before it is not pushed, nor anything while it is open.
    let (_, before) = fs.read_offering(r.fh, 500_000, 4096).await.unwrap();
    assert_eq!(before.len(), 1);
    let w = fs.open(f.ino, libc::O_WRONLY).await.unwrap();
    assert!(!push(&fs, before.into_iter().next().unwrap()).await);
    fs.write(w.fh, 10, b"new bytes").await.unwrap();
    let (during_data, during) = fs.read_offering(r.fh, 700_000, 4096).await.unwrap();
    assert_eq!(&during_data[..], &body[700_000..704_096]);
    assert!(during.is_empty());
    fs.flush(w.fh).await.unwrap();
    fs.release(w.fh).await.unwrap();
    // Closed and uploaded: the old handle reads the new version, which is not the one
    // the page cache was opened with, so nothing is pushed until a new open.
    let (_, after) = fs.read_offering(r.fh, 900_000, 4096).await.unwrap();
    for o in after {
        assert!(!push(&fs, o).await);
    }
    let r2 = fs.open(f.ino, libc::O_RDONLY).await.unwrap();
    let (_, fresh) = fs.read_offering(r2.fh, 300_000, 4096).await.unwrap();
    assert_eq!(
        fresh.len(),
        1,
        "{:?}",
        fresh
            .iter()
            .map(|o| (o.offset, o.data.len()))
            .collect::<Vec<_>>()
    );

    // Replaced elsewhere: an open that sees the new version voids what was read before.
    fs.store.inner().put("f", vec![9u8; 1 << 20]);
    let r3 = fs.open(f.ino, libc::O_RDONLY).await.unwrap();
    assert!(!push(&fs, fresh.into_iter().next().unwrap()).await);
    let (data, offers) = fs.read_offering(r3.fh, 600_000, 4096).await.unwrap();
    assert_eq!(&data[..], &[9u8; 4096][..]);
    assert!(push(&fs, offers.into_iter().next().unwrap()).await);
}

/// Wait until `d` has passed, by polling the clock (not by sleeping a guessed amount).
async fn wait_past(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        tokio::task::yield_now().await;
    }
}

/// A directory `big` of 3,000 one-byte files, listed once, with the metadata TTL `ttl`.
async fn listed_big_dir(
    ttl: Duration,
    f: impl FnOnce(&mut FsConfig),
) -> (Filesystem<Store>, Arc<RequestStats>, Attr) {
    let mem = MemoryStore::with_page_size(1000);
    for i in 0..3000 {
        mem.put(&format!("big/f{i:05}"), "x");
    }
    let (fs, stats) = setup(mem, |c| {
        c.metadata_ttl = ttl;
        f(c)
    });
    let big = fs.lookup(ROOT_INO, b"big").await.unwrap();
    assert_eq!(list_names(&fs, big.ino).await.len(), 3000);
    (fs, stats, big)
}

#[tokio::test]
async fn stale_large_listing_is_listed_again_once_probes_cost_as_much() {
    let ttl = Duration::from_millis(200);
    let (fs, stats, big) =
        listed_big_dir(ttl, |c| c.metadata_source = MetadataSource::Listing).await;
    // Past the TTL: the listing is stale.
    wait_past(ttl + Duration::from_millis(10)).await;
    stats.reset();
    // An `ls -l` whose attributes expired: one lookup after another. Three probes cost
    // what listing 3,000 names again costs; the fourth lookup lists (3 pages), and the
    // rest are answered from that listing.
    for i in 0..3 {
        fs.lookup(big.ino, format!("f{i:05}").as_bytes())
            .await
            .unwrap();
        assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, i + 1);
    }
    for i in 3..40 {
        let a = fs
            .lookup(big.ino, format!("f{i:05}").as_bytes())
            .await
            .unwrap();
        assert_eq!(a.stat.size, 1);
    }
    assert_eq!(
        fs.lookup(big.ino, b"nope").await.unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 3 + 3);
    assert_eq!(stats.snapshot(Op::HeadObject).requests, 0);
}

#[tokio::test]
async fn stale_listing_lookups_of_listed_files_cost_one_head_each() {
    // POSIX mode, a listing older than the TTL (an `ls -l` that outlasts its listing on
    // a slow or far server): a listed file is answered by its HeadObject alone (joined
    // with statahead's), never by a probe listing as well.
    let ttl = Duration::from_millis(200);
    let (fs, stats, big) = listed_big_dir(ttl, |_| {}).await;
    wait_past(ttl + Duration::from_millis(10)).await;
    stats.reset();
    for i in 0..40 {
        let a = fs
            .lookup(big.ino, format!("f{i:05}").as_bytes())
            .await
            .unwrap();
        assert_eq!(a.stat.size, 1);
    }
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 0);
    assert!(stats.snapshot(Op::HeadObject).requests >= 40);
    // A listed file deleted since: once the HeadObject statahead cached has expired, a
    // new one finds nothing, and a probe confirms.
    fs.store.delete("big/f02999").await.unwrap();
    wait_past(ttl + Duration::from_millis(10)).await;
    assert_eq!(
        fs.lookup(big.ino, b"f02999").await.unwrap_err().errno(),
        libc::ENOENT
    );
}

#[tokio::test]
async fn ls_l_that_outlasts_the_ttl_lists_once_and_heads_each_file_once() {
    // A busy machine: the metadata TTL runs out several times while `ls -l` of a
    // one-page directory goes through its entries.
    let ttl = Duration::from_millis(100);
    let mem = MemoryStore::new();
    for i in 0..1000 {
        mem.put(&format!("d/f{i:04}"), "x");
    }
    let (fs, stats) = setup(mem, |c| c.metadata_ttl = ttl);
    let d = fs.lookup(ROOT_INO, b"d").await.unwrap();
    stats.reset();
    assert_eq!(list_names(&fs, d.ino).await.len(), 1000);
    for i in 0..1000 {
        if i % 100 == 50 {
            wait_past(ttl + Duration::from_millis(10)).await;
        }
        let a = fs
            .lookup(d.ino, format!("f{i:04}").as_bytes())
            .await
            .unwrap();
        assert_eq!(a.stat.size, 1);
    }
    assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 1);
    let heads = stats.snapshot(Op::HeadObject).requests;
    assert!(heads <= 1000 + 2, "{heads} HeadObject for 1,000 files");
}

/// Counts cache lookups, for the metrics' hit and miss counters.
#[derive(Default)]
struct Lookups(parking_lot::Mutex<Vec<(crate::store::counting::Cache, bool)>>);

impl crate::store::counting::Observer for Lookups {
    fn started(&self, _: Op) {}
    fn finished(&self, _: Op, _: bool, _: u64, _: Duration) {}
    fn ended(&self, _: Op) {}
    fn lookup(&self, cache: crate::store::counting::Cache, hit: bool) {
        self.0.lock().push((cache, hit));
    }
}

impl Lookups {
    fn count(&self, cache: crate::store::counting::Cache, hit: bool) -> usize {
        self.0.lock().iter().filter(|l| **l == (cache, hit)).count()
    }
}

#[tokio::test]
async fn cache_lookups_are_counted_a_miss_per_request_and_a_hit_per_answer_without_one() {
    use crate::store::counting::Cache;
    let mem = MemoryStore::new();
    mem.put("a.txt", "hello");
    mem.put("big", vec![3u8; 16 << 20]);
    let (fs, stats) = setup(mem, |c| c.metadata_ttl = Duration::from_secs(60));
    let seen = Arc::new(Lookups::default());
    assert!(stats.observe(seen.clone()).is_ok());
    // Metadata: every HeadObject is a miss; a fresh answer from the cache is a hit.
    let a = fs.lookup(ROOT_INO, b"a.txt").await.unwrap();
    let heads = stats.snapshot(Op::HeadObject).requests as usize;
    assert!(heads >= 1);
    assert_eq!(seen.count(Cache::Metadata, false), heads);
    fs.forget(a.ino, 1);
    let again = fs.meta.head("a.txt").await.unwrap();
    assert!(again.is_some());
    assert_eq!(stats.snapshot(Op::HeadObject).requests as usize, heads);
    assert_eq!(seen.count(Cache::Metadata, true), 1);
    // Data: a random read's block is fetched once (a miss), then answered from the
    // block cache (a hit), with no second GET.
    let big = fs.lookup(ROOT_INO, b"big").await.unwrap();
    let fh = fs.open(big.ino, libc::O_RDONLY).await.unwrap().fh;
    let gets = stats.snapshot(Op::GetObject).requests;
    let x = fs.read(fh, 9 << 20, 4096).await.unwrap();
    assert_eq!(x.len(), 4096);
    let fetched = stats.snapshot(Op::GetObject).requests - gets;
    assert_eq!(fetched, 1);
    assert_eq!(seen.count(Cache::Data, false), 1);
    assert_eq!(seen.count(Cache::Data, true), 0);
    let y = fs.read(fh, (9 << 20) + 8192, 4096).await.unwrap();
    assert_eq!(y, x);
    assert_eq!(stats.snapshot(Op::GetObject).requests - gets, 1);
    assert_eq!(seen.count(Cache::Data, true), 1);
    fs.release(fh).await.unwrap();
}
