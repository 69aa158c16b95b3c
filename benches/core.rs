//! In-process benchmarks of bucketfs's hot paths that need no mount and no S3:
//!
//! - `inode_table`: `InodeTable` holding 1,000,000 entries (1,000 directories of 1,000
//!   files, built once outside the timed region): `child()` lookups of random names,
//!   `get()` of random inode numbers, inserting 10,000 new entries and forgetting them.
//! - `readdir`: merging a 10,000-entry directory delivered as 10 ListObjectsV2 pages of
//!   1,000 keys (files plus common prefixes) with `Merger`, and `Snapshot::add` /
//!   `Snapshot::answer` over those entries.
//! - `prefetch`: planning a whole 2 GiB sequential read in 1 MiB steps with `Window`
//!   (`new`, `covers`, `grow`, `plan`), and `blocks_for` of random 4 KiB reads.
//!
//! Run with `cargo bench --bench core` (add a name filter, e.g.
//! `cargo bench --bench core -- readdir`, to run a subset; `DIVAN_SAMPLE_COUNT=N`
//! changes the number of samples).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use bucketfs::fs::attr::{dir_stat, Defaults, Kind, Stat};
use bucketfs::fs::inode::{far_future, InodeTable, ROOT_INO};
use bucketfs::fs::names::WarnOnce;
use bucketfs::fs::prefetch::{blocks_for, PrefetchConfig, Window};
use bucketfs::fs::readdir::{Listed, Merger, Snapshot};
use bucketfs::store::{ListPage, ObjectSummary};
use divan::{black_box, Bencher};

fn main() {
    divan::main();
}

/// SplitMix64: a small deterministic generator, so runs pick the same "random" items.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` for picking benchmark inputs.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const EPOCH_2024: Duration = Duration::from_secs(1_704_067_200);

fn defaults() -> Defaults {
    Defaults {
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        dir_mode: 0o755,
    }
}

fn file_stat(size: u64) -> Stat {
    let mut s = dir_stat(&defaults(), SystemTime::UNIX_EPOCH + EPOCH_2024);
    s.kind = Kind::File;
    s.size = size;
    s.perm = defaults().file_mode;
    s
}

mod inode_table {
    use super::*;

    const DIRS: u64 = 1_000;
    const FILES_PER_DIR: u64 = 1_000;
    const NEW_ENTRIES: u64 = 10_000;

    fn dir_name(d: u64) -> String {
        format!("dir-{d:04}")
    }

    fn file_name(f: u64) -> String {
        format!("file-{f:06}.dat")
    }

    /// The table with 1,000 directories under the root, each holding 1,000 files.
    struct Big {
        table: InodeTable,
        /// Inode number of each directory, by index.
        dirs: Vec<u64>,
        /// Inode numbers in use are `ROOT_INO..=max_ino`.
        max_ino: u64,
        /// Names inserted (and forgotten) by the insert and forget benchmarks:
        /// `(parent ino, name, key)`, 10 per directory.
        batch: Vec<(u64, String, String)>,
    }

    static BIG: LazyLock<Big> = LazyLock::new(|| {
        let until = far_future();
        let table = InodeTable::new("", dir_stat(&defaults(), SystemTime::UNIX_EPOCH));
        let mut dirs = Vec::with_capacity(DIRS as usize);
        for d in 0..DIRS {
            let name = dir_name(d);
            let mut st = dir_stat(&defaults(), SystemTime::UNIX_EPOCH + EPOCH_2024);
            st.kind = Kind::Dir;
            let dir = table.insert(ROOT_INO, &name, &format!("{name}/"), st, until);
            dirs.push(dir.ino);
        }
        let mut max_ino = 0;
        for (d, &dir) in dirs.iter().enumerate() {
            let prefix = format!("{}/", dir_name(d as u64));
            for f in 0..FILES_PER_DIR {
                let name = file_name(f);
                let key = format!("{prefix}{name}");
                max_ino = table
                    .insert(dir, &name, &key, file_stat(4096 + f), until)
                    .ino;
            }
        }
        assert_eq!(table.len() as u64, 1 + DIRS + DIRS * FILES_PER_DIR);
        let per_dir = NEW_ENTRIES / DIRS;
        let batch = (0..NEW_ENTRIES)
            .map(|i| {
                let d = i / per_dir;
                let name = format!("new-{i:05}.tmp");
                let key = format!("{}/{name}", dir_name(d));
                (dirs[d as usize], name, key)
            })
            .collect();
        Big {
            table,
            dirs,
            max_ino,
            batch,
        }
    });

    /// Remove the benchmark batch from the table if a previous run left it there.
    fn clear_batch(big: &Big) {
        for (parent, name, _) in &big.batch {
            if let Some(inode) = big.table.child(*parent, name) {
                big.table.forget(inode.ino, u64::MAX);
            }
        }
    }

    #[divan::bench]
    fn child_random(bencher: Bencher) {
        let big = &*BIG;
        let mut rng = Rng::new(1);
        bencher
            .with_inputs(|| {
                let d = rng.below(DIRS) as usize;
                (big.dirs[d], file_name(rng.below(FILES_PER_DIR)))
            })
            .bench_local_refs(|(parent, name)| black_box(big.table.child(*parent, name)));
    }

    #[divan::bench]
    fn get_random(bencher: Bencher) {
        let big = &*BIG;
        let mut rng = Rng::new(2);
        bencher
            .with_inputs(|| ROOT_INO + rng.below(big.max_ino))
            .bench_local_values(|ino| black_box(big.table.get(ino).ok()));
    }

    /// One iteration inserts 10,000 new names (10 in each directory) into the 1M table;
    /// the untimed input step forgets the previous iteration's so the table stays at 1M.
    #[divan::bench(sample_size = 1, sample_count = 50)]
    fn insert_10k(bencher: Bencher) {
        let big = &*BIG;
        let until = far_future();
        let st = file_stat(0);
        bencher
            .with_inputs(|| clear_batch(big))
            .bench_local_values(|()| {
                for (parent, name, key) in &big.batch {
                    black_box(big.table.insert(*parent, name, key, st, until));
                }
            });
        clear_batch(big);
    }

    /// One iteration forgets 10,000 entries (kernel FORGET of each, lookup count 1).
    #[divan::bench(sample_size = 1, sample_count = 50)]
    fn forget_10k(bencher: Bencher) {
        let big = &*BIG;
        let until = far_future();
        let st = file_stat(0);
        bencher
            .with_inputs(|| {
                clear_batch(big);
                big.batch
                    .iter()
                    .map(|(parent, name, key)| big.table.insert(*parent, name, key, st, until).ino)
                    .collect::<Vec<u64>>()
            })
            .bench_local_refs(|inos| {
                for &ino in inos.iter() {
                    big.table.forget(ino, 1);
                }
                black_box(big.table.len())
            });
    }
}

mod readdir {
    use super::*;

    const PREFIX: &str = "warehouse/photos/2024/";
    const ENTRIES: u64 = 10_000;
    const PAGE: usize = 1_000;

    /// The directory as S3 lists it with `/` as delimiter and max-keys 1,000: the marker,
    /// then 10,000 entries in key order, of which every 25th is a common prefix
    /// (`photo_00025_edits/`) and the rest are objects (`photo_00026_5f1c09a2.jpg`).
    static PAGES: LazyLock<Vec<ListPage>> = LazyLock::new(|| {
        let mut rng = Rng::new(3);
        // (key, is a common prefix)
        let mut keys: Vec<(String, bool)> = (0..ENTRIES)
            .map(|i| {
                if i % 25 == 0 {
                    (format!("{PREFIX}photo_{i:05}_edits/"), true)
                } else {
                    let tag = rng.next() as u32;
                    (format!("{PREFIX}photo_{i:05}_{tag:08x}.jpg"), false)
                }
            })
            .collect();
        keys.sort();
        let summary = |key: String, rng: &mut Rng| ObjectSummary {
            key,
            size: 200_000 + rng.below(8_000_000),
            etag: format!("\"{:016x}{:016x}\"", rng.next(), rng.next()),
            last_modified: SystemTime::UNIX_EPOCH
                + EPOCH_2024
                + Duration::from_secs(rng.below(1 << 24)),
            storage_class: Some("STANDARD".to_string()),
        };
        let chunks: Vec<&[(String, bool)]> = keys.chunks(PAGE).collect();
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut page = ListPage::default();
                if i == 0 {
                    page.objects.push(summary(PREFIX.to_string(), &mut rng));
                }
                for (key, is_prefix) in chunk {
                    if *is_prefix {
                        page.prefixes.push(key.clone());
                    } else {
                        page.objects.push(summary(key.clone(), &mut rng));
                    }
                }
                page.next_token = (i + 1 < n).then(|| format!("token-{i}"));
                page
            })
            .collect()
    });

    fn merge_all(pages: &[ListPage], warn: &WarnOnce) -> Vec<Vec<Listed>> {
        let mut m = Merger::new(PREFIX);
        pages.iter().map(|p| m.push_page(p, warn)).collect()
    }

    /// The merged entries, in the batches `Merger` emitted them.
    static LISTED: LazyLock<Vec<Vec<Listed>>> = LazyLock::new(|| {
        let out = merge_all(&PAGES, &WarnOnce::default());
        assert_eq!(out.iter().map(Vec::len).sum::<usize>() as u64, ENTRIES);
        out
    });

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new();
        for batch in LISTED.iter() {
            s.add(batch);
        }
        s.complete = true;
        s
    }

    static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(snapshot);

    /// One iteration merges all 10 pages of the directory.
    #[divan::bench]
    fn merge_10_pages(bencher: Bencher) {
        let pages = &*PAGES;
        let warn = WarnOnce::default();
        bencher.bench_local(|| black_box(merge_all(black_box(pages), &warn)));
    }

    /// One iteration builds a complete snapshot of the 10,000 entries.
    #[divan::bench]
    fn snapshot_add_10k(bencher: Bencher) {
        LazyLock::force(&LISTED);
        bencher.bench_local(|| black_box(snapshot()));
    }

    #[divan::bench]
    fn snapshot_answer_hit(bencher: Bencher) {
        let snap = &*SNAPSHOT;
        let mut rng = Rng::new(4);
        bencher
            .with_inputs(|| {
                snap.order[rng.below(snap.order.len() as u64) as usize]
                    .name
                    .as_str()
            })
            .bench_local_values(|name| black_box(snap.answer(name).map(|e| e.map(|(i, _)| i))));
    }

    #[divan::bench]
    fn snapshot_answer_miss(bencher: Bencher) {
        let snap = &*SNAPSHOT;
        let mut rng = Rng::new(5);
        bencher
            .with_inputs(|| format!("photo_{:05}_missing.jpg", rng.below(ENTRIES)))
            .bench_local_refs(|name| black_box(snap.answer(name).map(|e| e.map(|(i, _)| i))));
    }
}

mod prefetch {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const OBJECT: u64 = 2 * 1024 * MIB;
    /// As in `fs::read`: parts this far behind the reader are still kept.
    const KEEP_BEHIND: u64 = 2 * MIB;

    /// Drive one `Window` as the read path does for a 2 GiB object read front to back in
    /// 1 MiB reads: check the stream covers the read, drop parts behind the reader,
    /// grow once the reader passes a part, plan. Returns the number of requests.
    fn stream(cfg: PrefetchConfig) -> usize {
        let mut win = Window::new(0, OBJECT, cfg);
        let mut parts: VecDeque<Range<u64>> = VecDeque::new();
        let mut requests = 0;
        let mut offset = 0;
        while offset < OBJECT {
            let oldest = parts.front().map_or(win.next_start, |p| p.start);
            black_box(win.covers(oldest, offset));
            while parts.front().is_some_and(|p| p.end + KEEP_BEHIND <= offset) {
                parts.pop_front();
            }
            if parts.front().is_some_and(|p| offset >= p.end) {
                win.grow();
            }
            let end = (offset + MIB).min(OBJECT);
            for r in win.plan(end) {
                requests += 1;
                parts.push_back(black_box(r));
            }
            offset = end;
        }
        assert_eq!(win.next_start, OBJECT);
        requests
    }

    /// One iteration plans the whole 2 GiB stream (2,048 reads of 1 MiB).
    #[divan::bench]
    fn plan_2gib_stream(bencher: Bencher) {
        let cfg = PrefetchConfig::default();
        bencher.bench_local(|| black_box(stream(black_box(cfg))));
    }

    /// Blocks for one random page-aligned 4 KiB read of a 2 GiB object.
    #[divan::bench]
    fn blocks_for_random_4k(bencher: Bencher) {
        let cfg = PrefetchConfig::default();
        let mut rng = Rng::new(6);
        bencher
            .with_inputs(|| rng.below(OBJECT / (4 * KIB)) * 4 * KIB)
            .bench_local_values(|offset| {
                black_box(blocks_for(offset, 4 * KIB, cfg.block_size, OBJECT))
            });
    }
}
