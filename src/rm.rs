//! `bucketfs rm [-r] [-f] TARGET`: delete one object, or with `-r` every key under a
//! prefix, named as s3://bucket/key or by a path inside a bucketfs mount (resolved as
//! `bucketfs presign` resolves it, from the mount root's `user.bucketfs.target`).
//!
//! This module owns the command: what a target means (a key, a directory, a whole
//! bucket), the walk that lists keys (ListObjectsV2 without delimiter, 1,000 a page) and
//! deletes them in DeleteObjects batches of 1,000, several batches in flight and
//! pipelined with the listing (at most about `concurrency + 2` pages of keys are held,
//! whatever the number of keys, besides one name per directory), then the `dir/`
//! markers of the directories it emptied, and what the user sees: one line per key S3 did not
//! delete, a progress line on a terminal, a summary, and the exit code. Requests go
//! through the retrying store, so a 503 or a dropped connection costs waiting, not a
//! failure. A mount that has the directory cached sees it gone after its metadata TTL.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use crate::cli::RmArgs;
use crate::store::counting::{CountingStore, Op, RequestStats};
use crate::store::retry::RetryingStore;
use crate::store::s3::{read_ca_bundle, S3Config, S3Store};
use crate::store::{
    DeleteFailure, ListPage, ObjectStore, StoreError, StoreErrorKind, StoreResult, MAX_DELETE_KEYS,
};

/// How to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmOptions {
    pub recursive: bool,
    /// A missing object is no error.
    pub force: bool,
    /// DeleteObjects requests in flight at once (at least one).
    pub concurrency: usize,
    /// Delete the markers of emptied directories even when the server no longer shows
    /// them (tests of their order); else only when it does (see `delete_under`).
    pub always_markers: bool,
}

/// Keys deleted so far, and keys S3 answered it did not delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub deleted: u64,
    pub failed: u64,
}

/// Why `rm` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RmError {
    /// Without -r, the target is a directory (keys exist under `target/`).
    #[error("{0}: is a directory, use -r")]
    IsADirectory(String),
    /// Nothing exists at the target (and not --force).
    #[error("{0}: no such object")]
    NotFound(String),
    /// A request failed as a whole (refused, unreachable past the retry window...).
    #[error("{}", .0.message)]
    Store(#[from] StoreError),
}

/// What `rm` reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// S3 did not delete this key.
    Failed(&'a DeleteFailure),
    /// A batch finished: the totals so far.
    Progress(Counts),
}

/// How `rm` ended: what it deleted, and the error that stopped it, if one did.
#[derive(Debug)]
pub struct Outcome {
    pub counts: Counts,
    pub error: Option<RmError>,
}

impl Outcome {
    /// Everything asked for is deleted.
    pub fn ok(&self) -> bool {
        self.counts.failed == 0 && self.error.is_none()
    }
}

/// Delete `target` (a key of `bucket`, as given: `""` is the whole bucket, a trailing
/// `/` names a directory) from `store`; `bucket` only names keys in messages. Without
/// `recursive`, one object (a directory is refused); with it, every key under
/// `target/`, or the object `target` when nothing is under it.
pub async fn remove<S: ObjectStore + ?Sized>(
    store: &S,
    bucket: &str,
    target: &str,
    opts: &RmOptions,
    on: &mut dyn FnMut(Event<'_>),
) -> Outcome {
    let mut counts = Counts::default();
    let error = remove_inner(store, bucket, target, opts, &mut counts, on)
        .await
        .err();
    Outcome { counts, error }
}

async fn remove_inner<S: ObjectStore + ?Sized>(
    store: &S,
    bucket: &str,
    target: &str,
    opts: &RmOptions,
    counts: &mut Counts,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), RmError> {
    let url = |k: &str| format!("s3://{bucket}/{k}");
    let name = target.trim_end_matches('/');
    let as_dir = target.ends_with('/') || name.is_empty();
    let prefix = if name.is_empty() {
        String::new()
    } else {
        format!("{name}/")
    };
    let missing = || {
        if opts.force {
            Ok(())
        } else {
            Err(RmError::NotFound(url(name)))
        }
    };
    if opts.recursive {
        let listed = delete_under(store, &prefix, *opts, counts, on).await?;
        if listed > 0 || name.is_empty() {
            return Ok(());
        }
        // Nothing under `name/`: `rm -r` of a plain object deletes it.
        if as_dir || !exists(store, name).await? {
            return missing();
        }
        return delete_batch(store, vec![name.to_string()], counts, on).await;
    }
    if name.is_empty() {
        return Err(RmError::IsADirectory(url("")));
    }
    if !as_dir && exists(store, name).await? {
        return delete_batch(store, vec![name.to_string()], counts, on).await;
    }
    let below = store.list(&prefix, None, None, Some(1)).await?;
    if below.objects.is_empty() {
        return missing();
    }
    Err(RmError::IsADirectory(url(name)))
}

/// Whether object `key` exists (HeadObject).
async fn exists<S: ObjectStore + ?Sized>(store: &S, key: &str) -> StoreResult<bool> {
    match store.head(key).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind == StoreErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// One DeleteObjects of `keys`, counted and reported.
async fn delete_batch<S: ObjectStore + ?Sized>(
    store: &S,
    keys: Vec<String>,
    counts: &mut Counts,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), RmError> {
    let failures = store.delete_many(&keys).await?;
    tally(keys.len(), &failures, counts, on);
    Ok(())
}

/// Count a finished batch of `sent` keys of which `failures` were not deleted.
fn tally(
    sent: usize,
    failures: &[DeleteFailure],
    counts: &mut Counts,
    on: &mut dyn FnMut(Event<'_>),
) {
    for f in failures {
        on(Event::Failed(f));
    }
    let failed = failures.len().min(sent) as u64;
    counts.failed += failed;
    counts.deleted += sent as u64 - failed;
    on(Event::Progress(*counts));
}

type Batch<'a> = BoxFuture<'a, (usize, StoreResult<Vec<DeleteFailure>>)>;

/// Delete every key under `prefix`, listing and deleting at once: a page is listed
/// while batches are deleted, and listing waits while a full batch waits for a free
/// slot. Then, when every key is deleted, the markers of the directories emptied (see
/// below). Returns how many keys the listing showed. The first request that fails as a
/// whole stops the walk (batches in flight finish and are counted).
async fn delete_under<S: ObjectStore + ?Sized>(
    store: &S,
    prefix: &str,
    opts: RmOptions,
    counts: &mut Counts,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<u64, RmError> {
    let concurrency = opts.concurrency.max(1);
    let page_size = Some(MAX_DELETE_KEYS as i32);
    let mut listing: Option<BoxFuture<'_, StoreResult<ListPage>>> =
        Some(store.list(prefix, None, None, page_size));
    let mut pending: Vec<String> = Vec::new();
    let mut batches: FuturesUnordered<Batch<'_>> = FuturesUnordered::new();
    let mut listed = 0u64;
    let mut error: Option<StoreError> = None;
    // Every directory the keys are in (from `prefix` down), and the markers listed.
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut markers: BTreeSet<String> = BTreeSet::new();
    loop {
        // Start every full batch there is room for, and the last one once listed.
        while error.is_none()
            && batches.len() < concurrency
            && (pending.len() >= MAX_DELETE_KEYS || (listing.is_none() && !pending.is_empty()))
        {
            let n = pending.len().min(MAX_DELETE_KEYS);
            let keys: Vec<String> = pending.drain(..n).collect();
            batches.push(
                async move {
                    let r = store.delete_many(&keys).await;
                    (keys.len(), r)
                }
                .boxed(),
            );
        }
        let list_more = error.is_none() && listing.is_some() && pending.len() < MAX_DELETE_KEYS;
        if !list_more && batches.is_empty() {
            break;
        }
        tokio::select! {
            page = async { listing.as_mut().expect("listing in progress").await }, if list_more => {
                match page {
                    Ok(page) => {
                        listed += page.objects.len() as u64;
                        for o in &page.objects {
                            note_dirs(prefix, &o.key, &mut dirs);
                            if o.key.ends_with('/') {
                                markers.insert(o.key.clone());
                            }
                        }
                        pending.extend(page.objects.into_iter().map(|o| o.key));
                        listing = page
                            .next_token
                            .map(|t| store.list(prefix, None, Some(t), page_size));
                    }
                    Err(e) => {
                        listing = None;
                        error = Some(e);
                    }
                }
            }
            Some((sent, r)) = batches.next(), if !batches.is_empty() => {
                match r {
                    Ok(failures) => tally(sent, &failures, counts, on),
                    Err(e) => {
                        if error.is_none() {
                            error = Some(e);
                        }
                    }
                }
            }
        }
    }
    if let Some(e) = error {
        return Err(e.into());
    }
    // Servers that keep directories as real folders (SeaweedFS) keep an emptied one
    // until its `dir/` marker is deleted, as `rmdir` on a mount does. One listing where
    // the directory would show tells: where it still does, delete the markers not
    // listed, children before parents, one batch after another. Where directories are
    // only prefixes (AWS, MinIO) it is gone, and nothing more is sent.
    let unlisted: Vec<String> = dirs
        .into_iter()
        .rev()
        .filter(|d| !markers.contains(d))
        .collect();
    let stays = if counts.failed == 0 && !unlisted.is_empty() && !opts.always_markers {
        let page = store
            .list(prefix.trim_end_matches('/'), Some("/"), None, None)
            .await?;
        let shown = if prefix.is_empty() {
            !page.prefixes.is_empty()
        } else {
            page.prefixes.iter().any(|p| p == prefix)
        };
        shown || page.next_token.is_some()
    } else {
        opts.always_markers
    };
    if counts.failed == 0 && stays {
        for chunk in unlisted.chunks(MAX_DELETE_KEYS) {
            let failures = store.delete_many(chunk).await?;
            for f in &failures {
                on(Event::Failed(f));
            }
            counts.failed += failures.len() as u64;
        }
    }
    Ok(listed)
}

/// Add the directories `key` is in, from `prefix` (itself included, unless `""`) down,
/// to `dirs`.
fn note_dirs(prefix: &str, key: &str, dirs: &mut BTreeSet<String>) {
    for (i, _) in key.match_indices('/') {
        let end = i + 1;
        if end >= prefix.len() && !dirs.contains(&key[..end]) {
            dirs.insert(key[..end].to_string());
        }
    }
}

/// Where the objects to delete are: the bucket and key, and how to reach the server.
fn resolve(args: &RmArgs) -> Result<(S3Config, String), String> {
    let (bucket, key, endpoint_url, region, force_path_style) =
        if let Some(rest) = crate::cli::strip_s3_scheme(&args.target) {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{}: no bucket name", args.target));
            }
            crate::cli::check_bucket_name(bucket)?;
            (
                bucket.to_string(),
                key.to_string(),
                args.s3.endpoint_url.clone(),
                args.s3.region.clone(),
                args.s3.path_style(),
            )
        } else {
            let (t, key) = crate::presign::in_mount(Path::new(&args.target))?;
            (t.bucket, key, t.endpoint_url, t.region, t.force_path_style)
        };
    let ca_bundle = match &args.s3.ca_bundle {
        Some(p) => Some(read_ca_bundle(p)?),
        None => None,
    };
    let cfg = S3Config {
        bucket,
        endpoint_url,
        region,
        profile: args.s3.profile.clone(),
        force_path_style,
        // One attempt per SDK call: the retrying store is the one retry policy.
        max_attempts: 1,
        requester_pays: args.s3.requester_pays,
        expected_bucket_owner: args.s3.expected_bucket_owner.clone(),
        no_sign_request: args.s3.no_sign_request,
        ca_bundle,
        timeouts: args.s3.timeouts(),
        ..Default::default()
    };
    Ok((cfg, key))
}

/// The progress line on a terminal: `deleted N keys (M failed)`, redrawn at most ten
/// times a second.
struct ProgressLine {
    on: bool,
    last: Option<Instant>,
    shown: bool,
}

impl ProgressLine {
    fn show(&mut self, c: Counts) {
        if !self.on
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Kbucketfs rm: deleted {} keys ({} failed)",
            c.deleted, c.failed
        );
        let _ = err.flush();
        self.last = Some(Instant::now());
        self.shown = true;
    }

    /// Erase the line, so that a message takes its place.
    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

/// The operations with requests, as `ListObjectsV2=5 DeleteObjects=5`.
fn requests(stats: &RequestStats) -> String {
    let used: Vec<String> = Op::ALL
        .iter()
        .filter_map(|op| {
            let n = stats.snapshot(*op).requests;
            (n > 0).then(|| format!("{}={n}", op.name()))
        })
        .collect();
    if used.is_empty() {
        "none".to_string()
    } else {
        used.join(" ")
    }
}

/// A request's error as rm says it: the endpoint's failures (refused, timed out, no
/// credentials) as mount says them, the others as they are.
fn line_of(endpoint: &str, e: &StoreError) -> String {
    crate::mount::endpoint_error(endpoint, e).unwrap_or_else(|| e.message.clone())
}

/// Run `bucketfs rm`; returns the process exit code.
pub fn run(args: RmArgs) -> i32 {
    let (mut cfg, key) = match resolve(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bucketfs rm: {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bucketfs rm: cannot start the runtime: {e}");
            return 1;
        }
    };
    let opts = RmOptions {
        recursive: args.recursive,
        force: args.force,
        concurrency: args.concurrency as usize,
        always_markers: false,
    };
    let bucket = cfg.bucket.clone();
    let mut progress = ProgressLine {
        on: !args.quiet && std::io::stderr().is_terminal(),
        last: None,
        shown: false,
    };
    let endpoint = cfg
        .endpoint_url
        .clone()
        .unwrap_or_else(|| "AWS S3".to_string());
    // No credentials, or a profile that is not there: said before any request.
    let checked = rt.block_on(async { S3Store::connect(&cfg).await.check_credentials().await });
    if let Err(e) = checked {
        progress.clear();
        eprintln!("bucketfs rm: {}", line_of(&endpoint, &e));
        return 1;
    }
    let (outcome, stats) = rt.block_on(async {
        if cfg.region.is_none() {
            // No region given: the bucket says where it is, as `mount` asks it.
            let probe = S3Store::connect(&cfg).await;
            if let Ok(Some(r)) = probe.bucket_region().await {
                cfg.region = Some(r);
            }
        }
        let counted = CountingStore::new(S3Store::connect(&cfg).await);
        let stats = counted.stats();
        let store = RetryingStore::new(counted, args.retry_window);
        let mut on = |ev: Event<'_>| match ev {
            Event::Failed(f) => {
                progress.clear();
                eprintln!(
                    "bucketfs rm: s3://{bucket}/{}: {}: {}",
                    f.key, f.code, f.message
                );
            }
            Event::Progress(c) => progress.show(c),
        };
        let outcome = remove(&store, &bucket, &key, &opts, &mut on).await;
        (outcome, stats)
    });
    progress.clear();
    let c = outcome.counts;
    let stopped = outcome.error.is_some();
    if !args.quiet && (!stopped || c.deleted + c.failed > 0) {
        let objects = if c.deleted == 1 { "object" } else { "objects" };
        if c.failed > 0 {
            eprintln!(
                "bucketfs rm: deleted {} {objects}, {} failed",
                c.deleted, c.failed
            );
        } else {
            eprintln!("bucketfs rm: deleted {} {objects}", c.deleted);
        }
    }
    match &outcome.error {
        Some(RmError::Store(e)) => eprintln!("bucketfs rm: {}", line_of(&endpoint, e)),
        Some(e) => eprintln!("bucketfs rm: {e}"),
        None => {}
    }
    if args.stats {
        eprintln!("bucketfs rm: requests: {}", requests(&stats));
    }
    if outcome.ok() {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::faulty::{FaultTarget, FaultyStore};
    use crate::store::memory::MemoryStore;

    const OPTS: RmOptions = RmOptions {
        recursive: true,
        force: false,
        concurrency: 4,
        always_markers: false,
    };
    /// [`OPTS`], with the markers deleted as on a server that keeps folders.
    const FOLDERS: RmOptions = RmOptions {
        always_markers: true,
        ..OPTS
    };

    /// Run `remove`, collecting the keys reported as failed.
    async fn rm<S: ObjectStore>(
        store: &S,
        target: &str,
        opts: RmOptions,
    ) -> (Outcome, Vec<DeleteFailure>) {
        let mut failed = Vec::new();
        let mut on = |ev: Event<'_>| {
            if let Event::Failed(f) = ev {
                failed.push(f.clone());
            }
        };
        let out = remove(store, "b", target, &opts, &mut on).await;
        (out, failed)
    }

    fn tree(mem: &MemoryStore, prefix: &str, n: usize) {
        for i in 0..n {
            mem.put(&format!("{prefix}{i:05}"), "x");
        }
    }

    #[tokio::test]
    async fn five_thousand_keys_take_five_listings_and_five_batches_of_keys() {
        let mem = MemoryStore::new();
        tree(&mem, "a/b/", 5_000);
        mem.put("a/b/", "");
        mem.put("a/bc", "sibling");
        mem.put("a/b", "file beside the directory");
        mem.put("a/b.txt", "x");
        let store = CountingStore::new(mem);
        let stats = store.stats();
        let (out, failed) = rm(&store, "a/b", OPTS).await;
        assert!(out.ok(), "{:?}", out.error);
        assert!(failed.is_empty());
        assert_eq!(
            out.counts,
            Counts {
                deleted: 5_001,
                failed: 0
            }
        );
        // 5,001 keys (the marker too): six pages, six batches; the one directory's
        // marker was listed, so no batch of markers.
        assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 6);
        assert_eq!(stats.snapshot(Op::DeleteObjects).requests, 6);
        assert_eq!(stats.snapshot(Op::HeadObject).requests, 0);
        assert_eq!(stats.snapshot(Op::DeleteObject).requests, 0);
        assert_eq!(store.inner().keys(), ["a/b", "a/b.txt", "a/bc"]);

        // Exactly 5,000 and no marker: five pages and five batches of keys, then one
        // listing shows `t/` gone (a server that kept it as a folder would show it,
        // and get one batch of markers).
        let mem = MemoryStore::new();
        tree(&mem, "t/", 5_000);
        mem.put("t0", "sibling");
        let store = CountingStore::new(mem);
        let stats = store.stats();
        let (out, _) = rm(&store, "t/", OPTS).await;
        assert!(out.ok());
        assert_eq!(out.counts.deleted, 5_000);
        assert_eq!(stats.snapshot(Op::ListObjectsV2).requests, 6);
        assert_eq!(stats.snapshot(Op::DeleteObjects).requests, 5);
        assert_ne!(
            store.inner().deleted().last().map(String::as_str),
            Some("t/")
        );
        assert_eq!(store.inner().keys(), ["t0"]);
    }

    #[tokio::test]
    async fn batches_run_concurrently_up_to_the_limit() {
        let mem = MemoryStore::new();
        tree(&mem, "d/", 9_000);
        let store = CountingStore::new(FaultyStore::gated(mem, FaultTarget::DeleteMany));
        let stats = store.stats();
        // DeleteObjects wait at the gate: as many as the limit are sent, and no more,
        // while the listing keeps at most a batch waiting.
        let driver = async {
            let mut spins = 0;
            while stats.snapshot(Op::DeleteObjects).requests < 4 {
                spins += 1;
                assert!(spins < 100_000, "4 batches never started");
                tokio::task::yield_now().await;
            }
            for _ in 0..1_000 {
                tokio::task::yield_now().await;
            }
            let held = (
                stats.snapshot(Op::DeleteObjects).requests,
                stats.snapshot(Op::ListObjectsV2).requests,
            );
            store.inner().open_gate(1_000);
            held
        };
        let ((out, _), held) = tokio::join!(rm(&store, "d", OPTS), driver);
        assert!(out.ok(), "{:?}", out.error);
        // 4 in flight and 1 full batch waiting: 5 pages listed, the listing waits.
        assert_eq!(held, (4, 5));
        assert_eq!(stats.snapshot(Op::DeleteObjects).max_in_flight, 4);
        // Nine batches of keys; `d/` is gone with them.
        assert_eq!(stats.snapshot(Op::DeleteObjects).requests, 9);
        assert!(store.inner().inner().keys().is_empty());

        let mem = MemoryStore::new();
        tree(&mem, "d/", 3_000);
        let store = CountingStore::new(mem);
        let stats = store.stats();
        let one = RmOptions {
            concurrency: 1,
            ..OPTS
        };
        assert!(rm(&store, "d", one).await.0.ok());
        assert_eq!(stats.snapshot(Op::DeleteObjects).max_in_flight, 1);
        assert!(store.inner().keys().is_empty());
    }

    #[tokio::test]
    async fn emptied_directories_lose_their_markers_children_first() {
        let mem = MemoryStore::new();
        for k in ["x/a", "x/s/b", "x/s/t/c", "x/u/", "xy/d"] {
            mem.put(k, "x");
        }
        let store = CountingStore::new(mem);
        let (out, _) = rm(&store, "x", FOLDERS).await;
        assert!(out.ok());
        assert_eq!(out.counts.deleted, 4);
        assert_eq!(store.inner().keys(), ["xy/d"]);
        // After the keys: the markers not listed, deepest first (`x/u/` was listed).
        let deleted = store.inner().deleted();
        assert_eq!(deleted[4..], ["x/s/t/", "x/s/", "x/"]);

        // The whole bucket: every directory, never "".
        let mem = MemoryStore::new();
        mem.put("a/b/c", "x");
        mem.put("top", "x");
        let (out, _) = rm(&mem, "", FOLDERS).await;
        assert!(out.ok());
        assert_eq!(mem.deleted()[2..], ["a/b/", "a/"]);
    }

    #[tokio::test]
    async fn keys_s3_refuses_are_reported_and_fail_the_command() {
        let mem = MemoryStore::new();
        tree(&mem, "d/ok/", 1_500);
        tree(&mem, "d/locked/", 3);
        let store = CountingStore::new(FaultyStore::refusing_deletes_under(mem, "d/locked/"));
        let (out, failed) = rm(&store, "d", OPTS).await;
        assert!(!out.ok());
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(
            out.counts,
            Counts {
                deleted: 1_500,
                failed: 3
            }
        );
        let keys: Vec<&str> = failed.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["d/locked/00000", "d/locked/00001", "d/locked/00002"]);
        assert!(failed.iter().all(|f| f.code == "AccessDenied"));
        assert_eq!(store.inner().inner().keys().len(), 3);
        // A directory not emptied keeps its marker: no batch of markers.
        assert_eq!(store.stats().snapshot(Op::DeleteObjects).requests, 2);
    }

    #[tokio::test]
    async fn a_refused_request_stops_the_walk_with_one_error() {
        let mem = MemoryStore::new();
        tree(&mem, "d/", 10_000);
        let store = FaultyStore::always(mem, FaultTarget::DeleteMany, StoreErrorKind::AccessDenied);
        let (out, failed) = rm(&store, "d", OPTS).await;
        assert!(!out.ok());
        assert!(failed.is_empty());
        assert_eq!(out.counts.deleted, 0);
        let e = out.error.expect("an error");
        assert!(matches!(&e, RmError::Store(s) if s.kind == StoreErrorKind::AccessDenied));
        // Stopped: no batch is sent after the first refusal (those in flight finish).
        assert!(
            (1..=4).contains(&store.injected()),
            "{} batches sent",
            store.injected()
        );
        assert_eq!(store.inner().keys().len(), 10_000);

        let mem = MemoryStore::new();
        tree(&mem, "d/", 10);
        let store = FaultyStore::always(mem, FaultTarget::List, StoreErrorKind::AccessDenied);
        let (out, _) = rm(&store, "d", OPTS).await;
        assert!(matches!(out.error, Some(RmError::Store(_))));
    }

    #[tokio::test]
    async fn without_r_one_object_is_deleted_and_a_directory_refused() {
        let mem = MemoryStore::new();
        mem.put("dir/f", "x");
        mem.put("dir/g", "x");
        mem.put("file", "x");
        let store = CountingStore::new(mem);
        let stats = store.stats();
        let plain = RmOptions {
            recursive: false,
            ..OPTS
        };
        let (out, _) = rm(&store, "dir", plain).await;
        let e = out.error.expect("refused");
        assert!(matches!(e, RmError::IsADirectory(_)));
        assert_eq!(e.to_string(), "s3://b/dir: is a directory, use -r");
        assert_eq!(stats.snapshot(Op::DeleteObjects).requests, 0);
        let (out, _) = rm(&store, "dir/", plain).await;
        assert!(matches!(out.error, Some(RmError::IsADirectory(_))));
        let (out, _) = rm(&store, "", plain).await;
        assert!(matches!(out.error, Some(RmError::IsADirectory(_))));

        let (out, _) = rm(&store, "dir/f", plain).await;
        assert!(out.ok());
        assert_eq!(out.counts.deleted, 1);
        let (out, _) = rm(&store, "file", plain).await;
        assert!(out.ok());
        assert_eq!(store.inner().keys(), ["dir/g"]);

        let (out, _) = rm(&store, "nothing", plain).await;
        let e = out.error.expect("missing");
        assert_eq!(e.to_string(), "s3://b/nothing: no such object");
        let force = RmOptions {
            force: true,
            ..plain
        };
        let (out, _) = rm(&store, "nothing", force).await;
        assert!(out.ok());
        assert_eq!(out.counts.deleted, 0);
    }

    #[tokio::test]
    async fn with_r_a_plain_object_is_deleted_and_nothing_is_missing() {
        let mem = MemoryStore::new();
        mem.put("f", "x");
        mem.put("f.txt", "x");
        let store = CountingStore::new(mem);
        let (out, _) = rm(&store, "f", OPTS).await;
        assert!(out.ok());
        assert_eq!(out.counts.deleted, 1);
        assert_eq!(store.inner().keys(), ["f.txt"]);
        let (out, _) = rm(&store, "f", OPTS).await;
        assert!(matches!(out.error, Some(RmError::NotFound(_))));
        let force = RmOptions {
            force: true,
            ..OPTS
        };
        assert!(rm(&store, "f", force).await.0.ok());
        // The whole bucket, empty or not, is no error.
        let (out, _) = rm(&store, "", OPTS).await;
        assert!(out.ok());
        assert_eq!(out.counts.deleted, 1);
        assert!(store.inner().keys().is_empty());
        assert!(rm(&store, "", OPTS).await.0.ok());
    }
}
