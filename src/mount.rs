//! Mounting: checks that can fail before anything is mounted (target, mountpoint, bucket,
//! credentials, endpoint), daemonizing with a status pipe so the parent exits 0 only once
//! the mount is live (or prints one readable line and exits non-zero), then serving the
//! FUSE session until unmount or SIGTERM. SIGUSR1 logs the S3 request counts.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::cli::{parse_target, MetadataSourceArg, MountArgs, Target};
use crate::fs::attr::{Defaults, MetadataSource};
use crate::fs::{Filesystem, FsConfig};
use crate::fuse::FuseAdapter;
use crate::store::account::{AccountStore, Buckets};
use crate::store::counting::CountingStore;
use crate::store::journal::{self, JournalingStore};
use crate::store::retry::RetryingStore;
use crate::store::s3::{S3Config, S3Store};
use crate::store::s3_account::S3Buckets;
use crate::store::versions::{VersionedStore, View};
use crate::store::{ObjectStore, StoreErrorKind};

const OK: &str = "ok";

/// Run `bucketfs mount`; returns the process exit code.
pub fn run(args: MountArgs) -> i32 {
    let checked = match check(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("bucketfs: {msg}");
            return 1;
        }
    };
    if args.foreground {
        return match serve(&args, &checked, None) {
            Ok(()) => 0,
            Err(msg) => {
                eprintln!("bucketfs: {msg}");
                1
            }
        };
    }
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bucketfs: cannot create a pipe: {e}");
            return 1;
        }
    };
    // SAFETY: no threads exist yet (no runtime, no logging threads): fork is sound here.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            eprintln!("bucketfs: cannot fork: {e}");
            1
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(wr);
            let mut msg = String::new();
            // A read error leaves `msg` short of OK, which is reported below as a failure.
            if let Err(e) = File::from(rd).read_to_string(&mut msg) {
                msg = format!("error: the mount process did not report its status: {e}");
            }
            if msg == OK {
                0
            } else if msg.is_empty() {
                eprintln!("bucketfs: the mount process exited before the mount was ready");
                1
            } else {
                eprintln!("bucketfs: {msg}");
                1
            }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(rd);
            if let Err(e) = nix::unistd::setsid() {
                // Still serves; it only stays in the shell's session.
                eprintln!("bucketfs: warning: setsid failed: {e}");
            }
            let mut status = Some(File::from(wr));
            match serve(&args, &checked, Some(&mut status)) {
                Ok(()) => 0,
                Err(msg) => {
                    report(&mut status, &msg);
                    1
                }
            }
        }
    }
}

/// What `check` established.
struct Checked {
    target: Target,
    /// The whole account: `target` is empty.
    all_buckets: bool,
    ca_bundle: Option<Vec<u8>>,
    sse_c_key: Option<[u8; 32]>,
    mountpoint: PathBuf,
    log: crate::logging::Destination,
    /// `--metrics-addr`, bound.
    metrics: Option<std::net::TcpListener>,
}

/// Everything that can be checked without threads, before forking.
fn check(args: &MountArgs) -> Result<Checked, String> {
    let account = |t: &str| t.len() == 5 && t.eq_ignore_ascii_case("s3://");
    let (target, mp, all_buckets) = match (&args.mountpoint, args.all_buckets) {
        (None, true) => (None, PathBuf::from(&args.target), true),
        (Some(mp), true) if account(&args.target) => (None, mp.clone(), true),
        (Some(_), true) => {
            return Err(format!(
                "--all-buckets mounts every bucket: give only the mountpoint, not {:?}",
                args.target
            ))
        }
        (Some(mp), false) if account(&args.target) => (None, mp.clone(), true),
        (Some(mp), false) => {
            let t = parse_target(&args.target)?;
            crate::cli::check_bucket_name(&t.bucket)?;
            (Some(t), mp.clone(), false)
        }
        (None, false) => {
            return Err(format!(
                "no mountpoint: bucketfs mount {} MOUNTPOINT",
                args.target
            ))
        }
    };
    let target = target.unwrap_or(Target {
        bucket: String::new(),
        prefix: String::new(),
    });
    if all_buckets && args.version_at.is_some() {
        return Err("--version-at needs one bucket, not --all-buckets".into());
    }
    let mp = &mp;
    let meta = std::fs::metadata(mp).map_err(|e| format!("mountpoint {}: {e}", mp.display()))?;
    if !meta.is_dir() {
        return Err(format!("mountpoint {} is not a directory", mp.display()));
    }
    let mountpoint =
        std::fs::canonicalize(mp).map_err(|e| format!("mountpoint {}: {e}", mp.display()))?;
    if is_mountpoint(&mountpoint) {
        return Err(format!(
            "mountpoint {} is already mounted (unmount it first: fusermount3 -u {})",
            mountpoint.display(),
            mountpoint.display()
        ));
    }
    if !args.allow_non_empty && is_non_empty(&mountpoint) {
        return Err(format!(
            "mountpoint {} is not empty: its files would be hidden under the mount \
             (--allow-non-empty mounts over them)",
            mountpoint.display()
        ));
    }
    let staging = staging_dir(
        args.cache_dir.as_deref(),
        cache_name(all_buckets, &target.bucket),
    );
    // CACHE/BUCKET/staging: the cache directory is two levels up.
    if let Some(cache) = staging.parent().and_then(Path::parent) {
        check_cache_dir(cache)?;
    }
    let log_file = match &args.log_file {
        Some(p) => {
            Some(std::path::absolute(p).map_err(|e| format!("log file {}: {e}", p.display()))?)
        }
        None => None,
    };
    let default_log = match staging.parent() {
        Some(bucket_dir) => bucket_dir.join(crate::logging::DEFAULT_FILE),
        None => PathBuf::from(crate::logging::DEFAULT_FILE),
    };
    let log = crate::logging::destination(
        log_file.as_deref(),
        !args.foreground,
        Path::new(crate::logging::SYSLOG_SOCKET),
        &default_log,
    );
    if let crate::logging::Destination::File(p) = &log {
        if let Some(dir) = p.parent().filter(|_| log_file.is_none()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("log directory {}: {e}", dir.display()))?;
        }
        File::options()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| format!("log file {}: {e}", p.display()))?;
    }
    let ca_bundle = match &args.s3.ca_bundle {
        Some(p) => Some(crate::store::s3::read_ca_bundle(p)?),
        None => None,
    };
    let sse_c_key = match &args.sse_c_key_file {
        Some(p) => Some(crate::store::s3::read_sse_c_key(p)?),
        None => None,
    };
    // Last: a failed check above leaves the port free.
    let metrics = match &args.metrics_addr {
        Some(a) => Some(crate::metrics::bind(a)?),
        None => None,
    };
    Ok(Checked {
        target,
        all_buckets,
        ca_bundle,
        sse_c_key,
        mountpoint,
        log,
        metrics,
    })
}

/// Whether the directory `path` has any entry (an unreadable one counts as empty: the
/// mount itself then says what is wrong).
fn is_non_empty(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some())
}

/// The cache directory must be a directory this process can write in: made when
/// missing, refused when a file or read-only, so a random write does not fail later.
fn check_cache_dir(dir: &Path) -> Result<(), String> {
    let d = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(format!("cache directory {d} is not a directory")),
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the cache directory {d}: {e}"))?,
    }
    let probe = dir.join(format!(".bucketfs-probe-{}", std::process::id()));
    File::options()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cache directory {d} is not writable: {e}"))?;
    // A probe left behind is harmless: the name says what it is.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Whether `path` is a mount point, from /proc/self/mountinfo.
fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| crate::mountinfo::unescape(mp) == want)
}

fn report(status: &mut Option<File>, msg: &str) {
    if let Some(mut f) = status.take() {
        // The parent reads this to decide its exit code; if it is gone there is no one
        // left to tell, so the error goes to the log instead.
        if let Err(e) = f.write_all(msg.as_bytes()) {
            tracing::warn!("could not report the mount status to the parent process: {e}");
        }
    }
}

fn init_logging(args: &MountArgs, dest: &crate::logging::Destination) {
    crate::logging::init(args.debug, dest);
}

/// The one line for a failed check of the bucket at mount time.
fn mount_error(
    t: &Target,
    endpoint: &str,
    region: Option<&str>,
    e: &crate::store::StoreError,
) -> String {
    let b = &t.bucket;
    if let Some(line) = endpoint_error(endpoint, e) {
        return line;
    }
    match e.kind {
        StoreErrorKind::NoSuchBucket => format!("bucket {b:?} does not exist at {endpoint}"),
        StoreErrorKind::NotFound => format!("bucket {b:?} not found at {endpoint} ({})", e.message),
        StoreErrorKind::AccessDenied => format!(
            "access denied to bucket {b:?} at {endpoint}: check the credentials and their permissions ({})",
            e.message
        ),
        StoreErrorKind::InvalidName => format!(
            "the server at {endpoint} refuses the bucket name {b:?} ({})",
            e.message
        ),
        StoreErrorKind::WrongRegion => {
            let used = region.unwrap_or("the default region");
            match &e.region {
                Some(r) => format!(
                    "bucket {b:?} is in region {r}, not {used}: give --region {r} (or leave --region out and bucketfs asks the bucket)"
                ),
                None => format!(
                    "bucket {b:?} is not in region {used}: give its region with --region, or leave --region out ({})",
                    e.message
                ),
            }
        }
        _ => format!("cannot list bucket {b:?} at {endpoint}: {}", e.message),
    }
}

/// The line for an error that says nothing of a bucket: the endpoint gave no answer
/// (refused, timed out, TLS) or there were no credentials to ask with. `None` for the
/// others. Shared by mount, rm and presign.
pub(crate) fn endpoint_error(endpoint: &str, e: &crate::store::StoreError) -> Option<String> {
    Some(match e.kind {
        StoreErrorKind::Credentials => e.message.clone(),
        StoreErrorKind::TimedOut => {
            let waited = e
                .timeout
                .map(crate::store::s3::seconds_text)
                .unwrap_or_else(|| "the timeout".into());
            let knob = if e.message.contains("--connect-timeout") {
                "--connect-timeout"
            } else {
                "--request-timeout"
            };
            format!(
                "the S3 endpoint {endpoint} did not answer within {waited}: is the URL right and the server up? ({knob} sets how long to wait)"
            )
        }
        StoreErrorKind::Unreachable => {
            format!("cannot reach the S3 endpoint {endpoint}: {}", e.message)
        }
        _ => return None,
    })
}

/// The directory of the cache dir that a mount's journal, staging files and default log
/// go in: the bucket's name, or for all buckets a name no bucket has (`_` is not
/// allowed in bucket names).
fn cache_name(all_buckets: bool, bucket: &str) -> &str {
    if all_buckets {
        "_all-buckets"
    } else {
        bucket
    }
}

/// The settings of the check requests at mount time: one SDK attempt each (a timeout is
/// not waited through twice) and the short timeouts of [`Timeouts::probe`].
///
/// [`Timeouts::probe`]: crate::store::s3::Timeouts::probe
fn probe_config(cfg: &S3Config) -> S3Config {
    S3Config {
        max_attempts: 1,
        timeouts: cfg.timeouts.probe(),
        ..cfg.clone()
    }
}

/// `op`, and once more after a moment if S3 answered with a passing failure (5xx,
/// throttling); an endpoint that gave no answer is not asked twice, so a dead one fails
/// the mount within one timeout.
async fn once_more<T, F, Fut>(op: F) -> crate::store::StoreResult<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::store::StoreResult<T>>,
{
    match op().await {
        Err(e) if e.kind == StoreErrorKind::Transient => {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            op().await
        }
        r => r,
    }
}

/// Check the credentials and the bucket of a one-bucket mount (and find its region
/// when --region is not given), so a wrong endpoint, bucket or region fails fast.
fn check_bucket(
    rt: &tokio::runtime::Runtime,
    s3cfg: &mut S3Config,
    c: &Checked,
    endpoint: &str,
) -> Result<(), String> {
    let mut cfg = probe_config(s3cfg);
    rt.block_on(async {
        let mut probe = S3Store::connect(&cfg).await;
        let fail = |probe: &S3Store, e: crate::store::StoreError| {
            mount_error(&c.target, endpoint, probe.region().as_deref(), &e)
        };
        probe
            .check_credentials()
            .await
            .map_err(|e| fail(&probe, e))?;
        if s3cfg.region.is_none() {
            // No --region: the bucket says where it is, as the peers ask it.
            let used = probe.region();
            let found = once_more(|| probe.bucket_region())
                .await
                .map_err(|e| fail(&probe, e))?;
            if let Some(r) = found {
                if used.as_deref() != Some(r.as_str()) {
                    info!(bucket = %c.target.bucket, region = %r, "using the bucket's region");
                }
                s3cfg.region = Some(r.clone());
                cfg.region = Some(r);
                probe = S3Store::connect(&cfg).await;
            }
        }
        once_more(|| probe.list(&c.target.prefix, Some("/"), None, Some(1)))
            .await
            .map(|_| ())
            .map_err(|e| fail(&probe, e))
    })
}

/// The one line for a ListBuckets that failed at mount time.
fn account_error(endpoint: &str, e: &crate::store::StoreError) -> String {
    if let Some(line) = endpoint_error(endpoint, e) {
        return line;
    }
    match e.kind {
        StoreErrorKind::AccessDenied => format!(
            "access denied listing the buckets at {endpoint}: check the credentials and their permissions (s3:ListAllMyBuckets) ({})",
            e.message
        ),
        _ => format!("cannot list the buckets at {endpoint}: {}", e.message),
    }
}

/// Two malloc arenas instead of glibc's eight per core. Part buffers (up to `--part-size`)
/// are freed by other threads than the ones that allocated them; with an arena per thread
/// each arena kept its own freed parts, and a 2 GiB read followed by a 1 GiB write peaked
/// at 430 MiB RSS. With two: 185-226 MiB, and no loss of throughput (read 577-598 MB/s
/// against 545-566, write 163-166 against 110-136, same machine, same run). A
/// MALLOC_ARENA_MAX in the environment wins. Called before any thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Connect, check the bucket, mount, and serve until unmounted.
fn serve(args: &MountArgs, c: &Checked, status: Option<&mut Option<File>>) -> Result<(), String> {
    limit_malloc_arenas();
    init_logging(args, &c.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("bucketfs-io")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;

    let mut s3cfg = S3Config {
        bucket: c.target.bucket.clone(),
        endpoint_url: args.s3.endpoint_url.clone(),
        region: args.s3.region.clone(),
        profile: args.s3.profile.clone(),
        force_path_style: args.s3.path_style(),
        // One attempt per SDK call: the retry window below is the one retry policy.
        max_attempts: 1,
        sse: args.sse.clone().map(|mode| crate::store::s3::Encryption {
            mode,
            kms_key_id: args.sse_kms_key_id.clone(),
        }),
        acl: args.acl.clone(),
        requester_pays: args.s3.requester_pays,
        expected_bucket_owner: args.s3.expected_bucket_owner.clone(),
        no_sign_request: args.s3.no_sign_request,
        ca_bundle: c.ca_bundle.clone(),
        sse_c_key: c.sse_c_key,
        timeouts: args.s3.timeouts(),
    };
    let endpoint = args
        .s3
        .endpoint_url
        .clone()
        .unwrap_or_else(|| "AWS S3".to_string());
    // Check the credentials and the bucket (or the account) with one attempt per
    // request and short timeouts, so a wrong endpoint fails fast.
    if c.all_buckets {
        let stats = Arc::new(crate::store::counting::RequestStats::default());
        let cfg = probe_config(&s3cfg);
        rt.block_on(async {
            let base = S3Store::connect(&cfg).await;
            base.check_credentials().await?;
            let buckets = S3Buckets::new(cfg.clone(), base, stats);
            once_more(|| buckets.list_buckets()).await
        })
        .map_err(|e| account_error(&endpoint, &e))?;
    } else {
        check_bucket(&rt, &mut s3cfg, c, &endpoint)?;
    }
    let (bottom, stats): (Arc<dyn ObjectStore>, _) = if c.all_buckets {
        let stats = Arc::new(crate::store::counting::RequestStats::default());
        let base = rt.block_on(S3Store::connect(&s3cfg));
        let buckets = S3Buckets::new(s3cfg.clone(), base, stats.clone());
        (Arc::new(AccountStore::new(buckets)), stats)
    } else {
        let counted = CountingStore::new(rt.block_on(S3Store::connect(&s3cfg)));
        let stats = counted.stats();
        (Arc::new(counted), stats)
    };
    let journal_name = cache_name(c.all_buckets, &c.target.bucket);
    let uploads_dir = uploads_dir(args.cache_dir.as_deref(), journal_name);
    let journaled = JournalingStore::new(bottom, &uploads_dir).map_err(|e| {
        format!(
            "cannot write the upload journal in {}: {e}",
            uploads_dir.display()
        )
    })?;
    let mut retrying = RetryingStore::new(journaled, args.retry_window);
    if let Some(n) = args.max_attempts {
        retrying = retrying.with_max_attempts(n);
    }
    let mut cfg_versions = None;
    let view = match args.version_at {
        Some(t) => View::At(t),
        None => View::VersionsDir {
            root: c.target.prefix.clone(),
            dir: if args.no_versions_dir {
                // A name no key can have: S3 keys are at most 1,024 bytes.
                format!("{}{}/", c.target.prefix, "v".repeat(1100))
            } else {
                format!("{}{}/", c.target.prefix, args.versions_dir)
            },
        },
    };
    if let View::VersionsDir { dir, .. } = &view {
        if !args.no_versions_dir {
            cfg_versions = Some((args.versions_dir.clone(), dir.clone()));
        }
    }
    let store = Arc::new(VersionedStore::new(retrying, view));
    // Uploads that a killed bucketfs left, before this one starts its own.
    let after = args.abort_incomplete_after;
    let prefix = c.target.prefix.clone();
    rt.block_on(journal::recover(
        store.inner(),
        &uploads_dir,
        &prefix,
        after,
        Some(store.inner().inner()),
    ));
    let sweep_store = store.clone();
    rt.spawn(async move {
        let mut every = tokio::time::interval(UPLOAD_SWEEP_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            let r = sweep_store.inner();
            journal::recover(r, &uploads_dir, &prefix, after, Some(r.inner())).await;
        }
    });

    let uid = args.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let gid = args.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw());
    let mut cfg = FsConfig::new(
        &c.target.prefix,
        Defaults {
            uid,
            gid,
            file_mode: args.file_mode,
            dir_mode: args.dir_mode,
        },
    );
    cfg.metadata_ttl = args.metadata_ttl;
    cfg.metadata_source = match args.metadata_source {
        MetadataSourceArg::Posix => MetadataSource::Posix,
        MetadataSourceArg::Listing => MetadataSource::Listing,
    };
    // A past time is read-only.
    cfg.read_only = args.read_only || args.version_at.is_some();
    // Anonymous requests write only to a bucket that takes them: the first upload it
    // refuses makes the mount read-only.
    cfg.anonymous = args.s3.no_sign_request;
    cfg.prefetch.part_size = args.part_size.max(1) * 1024 * 1024;
    cfg.prefetch.memory_budget = args.max_memory.max(16) * 1024 * 1024;
    cfg.write.part_size = args.part_size.max(5) * 1024 * 1024;
    cfg.write.memory_budget = args.max_upload_memory.max(16) * 1024 * 1024;
    cfg.write.concurrency = args.max_concurrency.max(1);
    cfg.write.max_file_size = args.max_file_size;
    cfg.write.storage_class = args.storage_class.clone();
    cfg.presign_expires = args.presign_expires;
    cfg.mount_target = Some(
        crate::presign::MountTarget {
            bucket: c.target.bucket.clone(),
            prefix: c.target.prefix.clone(),
            endpoint_url: s3cfg.endpoint_url.clone(),
            region: s3cfg.region.clone(),
            force_path_style: s3cfg.force_path_style,
        }
        .to_json(),
    );
    cfg.idle_inodes = args.max_idle_inodes;
    cfg.all_buckets = c.all_buckets;
    if let Some((name, dir)) = cfg_versions {
        cfg.hidden_name = Some(name);
        cfg.read_only_prefix = Some(dir);
    }
    cfg.write.staging_dir = staging_dir(args.cache_dir.as_deref(), journal_name);
    let left = crate::fs::staging::clean_leftovers(&cfg.write.staging_dir);
    if left.removed > 0 {
        info!(
            dir = %cfg.write.staging_dir.display(),
            "removed {} staging files left by a bucketfs that stopped while writing",
            left.removed
        );
    }
    if !left.kept.is_empty() {
        warn!(
            dir = %cfg.write.staging_dir.display(),
            "{} staging files of failed uploads are kept for recovery (kept-*): {}",
            left.kept.len(),
            left.kept
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let metrics = c.metrics.as_ref().map(|_| {
        let m = Arc::new(crate::metrics::Metrics::new());
        // A new RequestStats: nothing observes it yet.
        let _ = stats.observe(m.clone());
        m
    });
    let fs = Arc::new(Filesystem::new(store, cfg, Some(stats)));
    if let (Some(l), Some(m)) = (&c.metrics, metrics) {
        let weak = Arc::downgrade(&fs);
        let gauges = Arc::new(move || weak.upgrade().map(|f| f.gauges()).unwrap_or_default());
        let _in_rt = rt.enter();
        l.try_clone()
            .and_then(|l| crate::metrics::serve(l, m, gauges))
            .map_err(|e| format!("cannot serve the metrics: {e}"))?;
    }

    let source = if c.all_buckets {
        "s3://".to_string()
    } else {
        match c.target.prefix.trim_end_matches('/') {
            "" => c.target.bucket.clone(),
            p => format!("{}/{p}", c.target.bucket),
        }
    };
    let mut config = fuser::Config::default();
    let mut opts = vec![
        // The source column of mount(8) and df: what fstab names.
        fuser::MountOption::FSName(source.clone()),
        fuser::MountOption::Subtype("bucketfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    opts.push(if args.read_only {
        fuser::MountOption::RO
    } else {
        fuser::MountOption::RW
    });
    config.mount_options = opts;
    config.acl = if args.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(4);
    config.clone_fd = true;

    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone()).with_xattrs(!args.no_xattr);
    let page_slot = adapter.page_slot();
    let mount_id_slot = adapter.mount_id_slot();
    let mount_failed =
        |e: std::io::Error| format!("cannot mount at {}: {e}", c.mountpoint.display());
    // As root the mount is ours (type fuse.bucketfs); as a user fusermount3 makes it.
    let own_mount = nix::unistd::geteuid().is_root();
    let mut session = if own_mount {
        let fd = crate::kernel_mount::mount(
            &c.mountpoint,
            &crate::kernel_mount::Options {
                source: &source,
                read_only: args.read_only,
                allow_other: args.allow_other,
            },
        )
        .map_err(mount_failed)?;
        let acl = config.acl;
        fuser::Session::from_fd(adapter, fd, acl, config).map_err(|e| {
            let _ = nix::mount::umount2(&c.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            mount_failed(e)
        })?
    } else {
        fuser::Session::new(adapter, &c.mountpoint, &config).map_err(mount_failed)?
    };
    match crate::fuse::push_pages(fs.clone(), session.notifier()) {
        Ok(tx) => {
            let _ = page_slot.set(tx);
        }
        Err(e) => warn!("no page-cache pushes (cannot start their thread: {e})"),
    }
    if let Some(m) = crate::mountinfo::at(&c.mountpoint) {
        let _ = mount_id_slot.set(m.id);
    }
    crate::readahead::raise(&c.mountpoint, args.read_ahead_kb);
    info!(
        bucket = %c.target.bucket,
        prefix = %c.target.prefix,
        mountpoint = %c.mountpoint.display(),
        "mounted"
    );

    let sweep_fs = fs.clone();
    rt.spawn(async move {
        let mut every = tokio::time::interval(crate::fs::SWEEP_EVERY);
        loop {
            every.tick().await;
            sweep_fs.sweep().await;
            // Hand memory freed since (dropped listings, inodes the kernel forgot) back
            // to the system: glibc keeps freed heap pages otherwise.
            // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });

    let mut unmounter = session.unmount_callable();
    let mountpoint = c.mountpoint.clone();
    let sig_fs = fs.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::user_defined1()),
        ) else {
            warn!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = usr1.recv() => {
                    sig_fs.log_stats("SIGUSR1");
                    continue;
                }
            }
            info!("signal received: unmounting {}", mountpoint.display());
            crate::notify::stopping("unmounting");
            let done = if own_mount {
                crate::kernel_mount::unmount(&mountpoint)
            } else {
                unmounter.unmount()
            };
            if let Err(e) = done {
                warn!(
                    "unmount of {} failed ({e}); detaching it lazily",
                    mountpoint.display()
                );
                if let Err(e) = nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH) {
                    warn!("lazy unmount of {} failed too: {e}", mountpoint.display());
                }
            }
            break;
        }
    });

    crate::notify::ready(&format!("mounted {source} at {}", c.mountpoint.display()));
    if let Some(st) = status {
        report(st, OK);
        // So the daemon does not keep the caller's directory busy.
        if let Err(e) = std::env::set_current_dir("/") {
            warn!("cannot leave the working directory for /: {e}");
        }
        redirect_stdio();
    }
    let res = session.run();
    crate::notify::stopping("unmounted; finishing uploads");
    // destroy() drained already; this catches a session that ended without it.
    let failed = rt.block_on(fs.drain());
    if failed > 0 {
        tracing::error!(failed, "uploads failed at exit (see the errors above)");
    }
    fs.log_stats("unmount");
    drop(rt);
    match res {
        Ok(()) => Ok(()),
        Err(e) => {
            error!("FUSE session ended with an error: {e}");
            Err(format!("FUSE session failed: {e}"))
        }
    }
}

/// Endpoints addressed by IP or `localhost` cannot serve virtual-hosted buckets
/// (`bucket.127.0.0.1`): use path-style addressing for them without being asked.
pub(crate) fn needs_path_style(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if host.starts_with('[') {
        return true; // IPv6 literal
    }
    let host = host.split(':').next().unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Detach a daemon from the terminal: stdin/stdout/stderr to /dev/null.
fn redirect_stdio() {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let fd: OwnedFd = null.into();
        for target in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            unsafe {
                libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&fd), target);
            }
        }
    }
}

/// How often the journals of stopped daemons are looked at again.
const UPLOAD_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Where upload journals go: beside the bucket's staging directory.
fn uploads_dir(cache_dir: Option<&std::path::Path>, bucket: &str) -> std::path::PathBuf {
    staging_dir(cache_dir, bucket)
        .parent()
        .map(|p| p.join("uploads"))
        .unwrap_or_else(|| std::path::PathBuf::from("uploads"))
}

/// Where staging files go: `--cache-dir`, else the user's cache directory; one
/// subdirectory per bucket.
fn staging_dir(cache_dir: Option<&std::path::Path>, bucket: &str) -> std::path::PathBuf {
    let base = cache_dir.map(|p| p.to_path_buf()).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
            .unwrap_or_else(std::env::temp_dir)
            .join("bucketfs")
    });
    base.join(bucket).join("staging")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_style_for_ip_endpoints() {
        assert!(needs_path_style("http://127.0.0.1:9000"));
        assert!(needs_path_style("http://localhost:9000/"));
        assert!(needs_path_style("https://[::1]:9000"));
        assert!(needs_path_style("10.0.0.5"));
        assert!(!needs_path_style("https://s3.eu-west-1.amazonaws.com"));
        assert!(!needs_path_style("https://minio.example.com:9000"));
    }

    #[test]
    fn root_is_a_mountpoint() {
        assert!(is_mountpoint(Path::new("/")));
    }
}
