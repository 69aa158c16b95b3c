//! Command-line interface: `bucketfs mount TARGET MOUNTPOINT [options]`, `bucketfs
//! presign`, `bucketfs rm`.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bucketfs",
    version,
    about = "Mount S3 buckets as POSIX directories"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line of this process; a usage error is one line on stderr (exit 2),
    /// `--help` and `--version` print as usual (exit 0).
    pub fn parse_or_exit() -> Cli {
        let argv = match crate::mount_helper::rewrite(std::env::args_os().collect(), &grammar()) {
            Ok(crate::mount_helper::Rewritten::Args(a)) => a,
            Ok(crate::mount_helper::Rewritten::Fake) => std::process::exit(0),
            Err(msg) => {
                eprintln!("bucketfs: {msg}");
                std::process::exit(2);
            }
        };
        match Cli::try_parse_from(argv) {
            Ok(c) => c,
            Err(e) if !e.use_stderr() => e.exit(),
            Err(e) => {
                eprintln!("bucketfs: {}", one_line(&e));
                std::process::exit(2);
            }
        }
    }
}

/// The subcommand names and the long option names of `bucketfs mount` (`read-only`...),
/// from the CLI definition, for the rewrite of mount(8)'s argument forms.
pub fn grammar() -> crate::mount_helper::Grammar {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    // clap adds `help` when it builds the command.
    subcommands.push("help".into());
    let mount_options = cmd
        .find_subcommand("mount")
        .map(|m| {
            m.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    crate::mount_helper::Grammar {
        subcommands,
        mount_options,
    }
}

/// A clap error as one line: its message without the `error:` label, the usage and the
/// "For more information" footer; a tip stays, after a `;`.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = String::new();
    for p in parts {
        if !line.is_empty() {
            line.push_str(if p.starts_with("tip:") {
                "; "
            } else if line.ends_with(':') {
                " "
            } else {
                ", "
            });
        }
        line.push_str(p.strip_prefix("error: ").unwrap_or(p));
    }
    line
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a bucket (or a prefix of it) at a directory.
    Mount(Box<MountArgs>),
    /// Print a presigned URL of an object: a path inside a bucketfs mount (signed with
    /// your AWS credentials for the mount's bucket and endpoint), or s3://bucket/key.
    Presign(PresignArgs),
    /// Delete an object, or with -r every object under a prefix (batches of 1,000 keys
    /// per DeleteObjects): s3://bucket/key or a path inside a bucketfs mount.
    Rm(RmArgs),
    /// Print a shell completion script: `bucketfs completions bash >
    /// /etc/bash_completion.d/bucketfs` (the Debian package installs them).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (bucketfs.1 and one per subcommand) into a directory.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// s3://bucket/key, s3://bucket/prefix (with -r; s3://bucket is the whole bucket), or
    /// a path inside a bucketfs mount (its root, with -r: everything the mount shows).
    pub target: String,
    /// Delete every key under the prefix (`prefix/` and below); a plain object is
    /// deleted as without -r.
    #[arg(short = 'r', visible_short_alias = 'R', long)]
    pub recursive: bool,
    /// A missing object is no error.
    #[arg(short, long)]
    pub force: bool,
    /// DeleteObjects requests (of up to 1,000 keys each) in flight at once (1-64).
    #[arg(long, value_name = "N", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// No progress and no summary line (errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// At the end, print the S3 requests sent, by operation, on stderr.
    #[arg(long)]
    pub stats: bool,
    /// How long a request failing for a passing reason (unreachable, 5xx, throttling)
    /// is retried before the command fails, in seconds (0-86400).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = seconds(0, DAY))]
    pub retry_window: std::time::Duration,
    /// Where the server is, for s3:// (a path in a mount uses the mount's endpoint,
    /// region and addressing); the other options apply to both.
    #[command(flatten)]
    pub s3: ConnectArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresignMethodArg {
    /// A URL that downloads the object.
    Get,
    /// A URL that uploads (replaces) the object.
    Put,
}

#[derive(Debug, Clone, Args)]
pub struct PresignArgs {
    /// A file (existing, or to be created with --method put) inside a bucketfs mount,
    /// or s3://bucket/key.
    pub target: String,
    /// How long the URL is valid, in seconds (1-604800: at most 7 days).
    #[arg(long, value_name = "SECS", default_value = "3600", value_parser = seconds(1, WEEK))]
    pub expires: std::time::Duration,
    #[arg(long, value_enum, default_value = "get")]
    pub method: PresignMethodArg,
    /// Where the server is, for s3:// (a path in a mount uses the mount's); the profile
    /// applies to both.
    #[command(flatten)]
    pub s3: ConnectArgs,
}

/// How to reach the S3 server.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// S3 endpoint (MinIO, Ceph, R2, a local server...), an http:// or https:// URL.
    /// Default: AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL", value_parser = parse_endpoint_url)]
    pub endpoint_url: Option<String>,
    /// AWS region. Default: from the AWS configuration, else us-east-1.
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from the AWS config/credentials files.
    #[arg(long)]
    pub profile: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), for most non-AWS servers.
    #[arg(long)]
    pub force_path_style: bool,
    /// Anonymous, unsigned requests, for public buckets (no credentials needed). Writes
    /// work only where the bucket takes anonymous writes: the first upload it refuses
    /// fails (EIO at close) and makes the mount read-only (EROFS).
    #[arg(long)]
    pub no_sign_request: bool,
    /// The bucket is requester-pays: every request says the requester pays for it.
    #[arg(long)]
    pub requester_pays: bool,
    /// The account ID that must own the bucket: S3 refuses every request (403) if
    /// another account owns it.
    #[arg(long, value_parser = parse_account)]
    pub expected_bucket_owner: Option<String>,
    /// PEM file of CA certificates to trust besides the system's, for an HTTPS endpoint
    /// with its own CA.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// How long opening a connection to the endpoint may take, in seconds (fractions
    /// allowed; 1-300).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds(1, 300))]
    pub connect_timeout: std::time::Duration,
    /// How long one attempt of a request may take, connecting included, in seconds
    /// (fractions allowed; 1-3600); a timed-out request is retried within the retry
    /// window. Uploads (PutObject, UploadPart) get one second more per MiB of body;
    /// server-side copies and CompleteMultipartUpload ten times this. The checks at
    /// mount time wait at most 10 s (or --connect-timeout, if longer).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds(1, 3600))]
    pub request_timeout: std::time::Duration,
}

impl ConnectArgs {
    /// `--connect-timeout` and `--request-timeout`.
    pub fn timeouts(&self) -> crate::store::s3::Timeouts {
        crate::store::s3::Timeouts {
            connect: self.connect_timeout,
            request: self.request_timeout,
        }
    }

    /// Path-style addressing: asked for, or the endpoint cannot serve virtual-hosted
    /// buckets.
    pub fn path_style(&self) -> bool {
        self.force_path_style
            || self
                .endpoint_url
                .as_deref()
                .is_some_and(crate::mount::needs_path_style)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetadataSourceArg {
    /// HeadObject per entry: modes, owners, times and symlinks from x-amz-meta-*.
    Posix,
    /// Listings only: mount defaults for mode/owner, LastModified for mtime.
    Listing,
}

#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// `bucket`, `bucket/prefix` or `s3://bucket/prefix/`; `s3://` alone for every
    /// bucket of the account (as --all-buckets).
    pub target: String,
    /// An existing directory to mount on (with --all-buckets, the one argument).
    #[arg(required_unless_present = "all_buckets")]
    pub mountpoint: Option<PathBuf>,
    /// Mount every bucket of the account, each a directory at the root (ListBuckets),
    /// served in its own region: `bucketfs mount --all-buckets MNT`. `mkdir MNT/NAME`
    /// creates a bucket (in --region), `rmdir` deletes an empty one.
    #[arg(long, conflicts_with = "version_at")]
    pub all_buckets: bool,
    /// Mount options as mount(8) and fstab write them: `-o name=value,name,...`, where
    /// every long option has a spelling with `_` for `-` (`endpoint_url=URL`,
    /// `read_only`, `metadata_ttl=5`); `ro`, `allow_other` and `nonempty` are
    /// understood, and `rw`, `_netdev`, `nofail`, `noauto`, `user`, `x-systemd.*` and
    /// the other generic options are ignored. fstab: `BUCKET[/PREFIX] MNT fuse.bucketfs
    /// _netdev,endpoint_url=...,ro 0 0`.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    #[command(flatten)]
    pub s3: ConnectArgs,

    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,
    /// No extended attributes (S3 metadata as `user.*` xattrs): the kernel then stops
    /// asking, which saves `ls -l` two round trips per entry (its ACL and SELinux probes).
    #[arg(long)]
    pub no_xattr: bool,
    /// Owner of files without x-amz-meta-uid (0-4294967294). Default: the mounting user.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=ID_MAX))]
    pub uid: Option<u32>,
    /// Group of files without x-amz-meta-gid (0-4294967294). Default: the mounting
    /// user's group.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=ID_MAX))]
    pub gid: Option<u32>,
    /// Mode of files without x-amz-meta-mode (octal, 0-7777).
    #[arg(long, default_value = "0644", value_parser = parse_octal)]
    pub file_mode: u16,
    /// Mode of directories without metadata (octal, 0-7777).
    #[arg(long, default_value = "0755", value_parser = parse_octal)]
    pub dir_mode: u16,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    pub allow_other: bool,
    /// Mount over a directory that is not empty (its files are hidden while mounted);
    /// without it a non-empty mountpoint is refused.
    #[arg(long)]
    pub allow_non_empty: bool,
    /// How long attributes, lookups and listings are cached, in seconds (fractions
    /// allowed; 0-31536000, a year).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = seconds(0, YEAR))]
    pub metadata_ttl: std::time::Duration,
    /// Where POSIX metadata comes from.
    #[arg(long, value_enum, default_value = "posix")]
    pub metadata_source: MetadataSourceArg,

    /// Part size in MiB: the largest ranged GET of sequential reads and the first part
    /// of uploads (uploads grow it so files up to 5 TiB fit in 10,000 parts); 5-5120,
    /// S3's part sizes.
    #[arg(long, value_name = "MIB", default_value = "8",
          value_parser = clap::value_parser!(u64).range(5..=5120))]
    pub part_size: u64,
    /// Memory for upload parts in flight across all files, in MiB (16-1048576).
    #[arg(long, value_name = "MIB", default_value = "128",
          value_parser = clap::value_parser!(u64).range(16..=MEMORY_MAX_MIB))]
    pub max_upload_memory: u64,
    /// Parts uploaded in parallel per file (1-64).
    #[arg(long, value_name = "N", default_value = "8",
          value_parser = clap::value_parser!(u64).range(1..=64).map(|n| n as usize))]
    pub max_concurrency: usize,
    /// Directory for staging files of files modified out of order
    /// (default: $XDG_CACHE_HOME/bucketfs or ~/.cache/bucketfs).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Mount the bucket as it was at this time (RFC 3339, e.g. 2026-12-01T09:00:00Z),
    /// read-only: each key's newest version then, from ListObjectVersions (a delete
    /// marker hides the key); reads ask for that version.
    #[arg(long, value_parser = parse_time)]
    pub version_at: Option<std::time::SystemTime>,
    /// Name of the hidden directory at the mount's root where every file's versions
    /// are (`NAME/PATH/` holds one read-only file per version of PATH, named
    /// TIME_VERSIONID). It is not listed in the root, only reached by name.
    #[arg(long, default_value = ".versions", value_parser = parse_versions_dir)]
    pub versions_dir: String,
    /// No versions directory.
    #[arg(long)]
    pub no_versions_dir: bool,
    /// Multipart uploads that a bucketfs of this cache directory started and could not
    /// finish (it was killed) are aborted at mount, and hourly, once this old: seconds
    /// or a duration such as 90m, 24h, 7d; 0 aborts all of them at once (0-3650d).
    #[arg(long, value_name = "DUR", default_value = "24h", value_parser = parse_duration)]
    pub abort_incomplete_after: std::time::Duration,
    /// Memory for prefetched read data across all open files, in MiB (16-1048576).
    #[arg(long, value_name = "MIB", default_value = "160",
          value_parser = clap::value_parser!(u64).range(16..=MEMORY_MAX_MIB))]
    pub max_memory: u64,
    /// How long a request that fails for a passing reason (the endpoint unreachable or
    /// timing out, 5xx, throttling) is retried, with growing waits, before the operation
    /// fails with EIO; in seconds (fractions allowed). An outage shorter than this costs
    /// waiting, never an error (0-86400).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = seconds(0, DAY))]
    pub retry_window: std::time::Duration,
    /// At most this many attempts per S3 request (1: no retries), within the retry
    /// window (1-1000). Default: as many as the window allows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: Option<u32>,
    /// Inodes kept in memory that the kernel holds no reference to (names a listing
    /// showed but nothing looked up); the least recently used beyond this are dropped
    /// (0-100000000).
    #[arg(long, value_name = "N", default_value = "32768",
          value_parser = clap::value_parser!(u64).range(0..=100_000_000).map(|n| n as usize))]
    pub max_idle_inodes: usize,
    /// Largest file size in bytes a write or truncate may reach (EFBIG beyond);
    /// 1-5497558138880 (S3's object limit, 5 TiB).
    #[arg(long, value_name = "BYTES", default_value = "5497558138880",
          value_parser = clap::value_parser!(u64).range(1..=crate::fs::upload::MAX_OBJECT))]
    pub max_file_size: u64,
    /// How long the presigned URL of the `user.s3.presigned_url` xattr is valid, in
    /// seconds (1-604800: S3 allows up to 7 days).
    #[arg(long, value_name = "SECS", default_value = "3600", value_parser = seconds(1, WEEK))]
    pub presign_expires: std::time::Duration,
    /// Storage class of files created on the mount (STANDARD_IA, INTELLIGENT_TIERING,
    /// GLACIER_IR...). Rewrites keep each object's own class.
    #[arg(long, value_parser = parse_storage_class)]
    pub storage_class: Option<String>,
    /// Server-side encryption asked for on every write: AES256, aws:kms or
    /// aws:kms:dsse (for buckets whose policy requires the header). Objects encrypted
    /// with a KMS key keep theirs when rewritten.
    #[arg(long, value_parser = ["AES256", "aws:kms", "aws:kms:dsse"])]
    pub sse: Option<String>,
    /// Canned ACL of every object written: private, public-read, public-read-write,
    /// authenticated-read, aws-exec-read, bucket-owner-read, bucket-owner-full-control.
    #[arg(long, value_parser = [
        "private", "public-read", "public-read-write", "authenticated-read",
        "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
    ])]
    pub acl: Option<String>,
    /// SSE-C: a file holding a 32-byte key (raw, or base64). Every object written is
    /// encrypted with it, and every read, HEAD and copy sends it; objects encrypted
    /// otherwise cannot be read through this mount.
    #[arg(long, conflicts_with = "sse")]
    pub sse_c_key_file: Option<PathBuf>,
    /// The KMS key of `--sse aws:kms` (default: the account's aws/s3 key).
    #[arg(long, requires = "sse")]
    pub sse_kms_key_id: Option<String>,
    /// Kernel readahead for the mount, in KiB (set when running as root; the kernel's
    /// default for FUSE is 128, which costs a daemon round trip per 128 KiB read);
    /// 0-65536.
    #[arg(long, value_name = "KIB", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub read_ahead_kb: u32,

    /// Stay in the foreground (logs to stderr unless --log-file).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Write logs to this file.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (ADDR is HOST:PORT, e.g.
    /// 127.0.0.1:9464): S3 requests, errors, bytes and latency by operation, requests in
    /// flight, cache hits and misses, open handles, bytes pending upload. Bound before
    /// the mount: an address in use fails the mount.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Debug logging (RUST_LOG overrides the filter).
    #[arg(long)]
    pub debug: bool,
}

/// An endpoint URL: `http://` or `https://` (any case), a host (a name, an IPv4
/// address or `[IPv6]`), an optional port, an optional path. A URL without a scheme
/// is refused with the two URLs it may have meant: which one is the user's to say.
pub(crate) fn parse_endpoint_url(s: &str) -> Result<String, String> {
    let t = s.trim();
    let Some((scheme, rest)) = t.split_once("://") else {
        let host = t.trim_end_matches('/');
        return Err(if host.is_empty() {
            "the endpoint URL is empty".to_string()
        } else {
            format!("no scheme: write http://{host} or https://{host}")
        });
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "the scheme must be http:// or https://, not {scheme:?}"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let bad = |why: &str| Err(format!("not a valid URL: {why}"));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) if h.parse::<std::net::Ipv6Addr>().is_ok() => (h, p),
            _ => return bad("the IPv6 address in [] is not valid"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, &authority[h.len()..][..p.len() + 1]),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return bad("no host name");
    }
    if !authority.starts_with('[')
        && !host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return bad("the host name may have only letters, digits, '-' and '.'");
    }
    if let Some(p) = port.strip_prefix(':') {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return bad("the port must be a number from 1 to 65535");
        }
    } else if !port.is_empty() {
        return bad("unexpected text after the host");
    }
    Ok(t.to_string())
}

/// Whether `name` can be a bucket's, by the rules every S3 server shares: 3 to 63
/// characters (255 for old us-east-1 buckets) of letters, digits, `.`, `-` and `_`,
/// starting and ending with a letter or digit. Servers may refuse more (AWS: capitals
/// and `_` in new buckets); they answer InvalidBucketName.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_chars
        && (3..=255).contains(&name.len())
        && ends(name.bytes().next())
        && ends(name.bytes().last())
    {
        Ok(())
    } else {
        Err(format!(
            "invalid bucket name {name:?}: a bucket name is 3-63 lower-case letters, digits, \
             dots and hyphens, and begins and ends with a letter or digit"
        ))
    }
}

fn parse_octal(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode like 0644"))
}

fn parse_storage_class(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a storage class like STANDARD_IA (upper case, as S3 spells it)"
        ))
    }
}

fn parse_account(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an account ID like 111122223333"))
    }
}

fn parse_versions_dir(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s != "." && s != ".." && !s.contains('/') && s.len() <= 255;
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a directory name"))
    }
}

/// An RFC 3339 time: `2026-12-01T09:00:00Z`, fractions and `+HH:MM` offsets allowed.
pub(crate) fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time like 2026-12-01T09:00:00Z");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num =
        |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad);
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.get(3..4) == Some(":") =>
        {
            let field = |r: std::ops::Range<usize>| o.get(r).and_then(|x| x.parse::<i64>().ok());
            let oh = field(1..3).ok_or_else(bad)?;
            let om = field(4..6).ok_or_else(bad)?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(secs)
        .ok()
        .map(|x| std::time::UNIX_EPOCH + std::time::Duration::from_secs(x))
        .ok_or_else(bad)
}

/// Seconds in a day, a week, a year: the bounds of duration options.
const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;
const YEAR: u64 = 365 * DAY;
/// Largest memory budget, in MiB (1 TiB).
const MEMORY_MAX_MIB: u64 = 1 << 20;
/// Largest uid or gid: `(uid_t)-1` means "no change" to chown, so it is no owner.
const ID_MAX: i64 = u32::MAX as i64 - 1;
/// Largest `--abort-incomplete-after`: ten years.
const ABORT_AFTER_MAX: u64 = 3650 * DAY;

/// Seconds, or a number with a unit: s, m, h, d; at most ten years.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_lowercase()),
        _ => (t, 's'),
    };
    let per = match unit {
        's' => 1u64,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    let n = num
        .parse::<u64>()
        .map_err(|_| format!("{s:?} is not a duration like 3600, 90m, 24h or 7d"))?;
    n.checked_mul(per)
        .filter(|v| *v <= ABORT_AFTER_MAX)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s} is not between 0 and 3650d"))
}

/// A parser of seconds (fractions allowed) between `lo` and `hi`.
fn seconds(
    lo: u64,
    hi: u64,
) -> impl Fn(&str) -> Result<std::time::Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| parse_seconds_in(s, lo, hi)
}

/// `s` as seconds between `lo` and `hi`; never panics (NaN, infinities, 1e20 and
/// negative numbers are errors).
fn parse_seconds_in(s: &str, lo: u64, hi: u64) -> Result<std::time::Duration, String> {
    let v = s
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))?;
    if v < lo as f64 || v > hi as f64 {
        return Err(format!("{s} is not between {lo} and {hi} seconds"));
    }
    std::time::Duration::try_from_secs_f64(v.max(0.0))
        .map_err(|_| format!("{s:?} is not a number of seconds"))
}

/// A parsed mount target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    /// `""` or a prefix ending in `/`.
    pub prefix: String,
}

/// `s` without its `s3://` scheme, in any case (`S3://b` is bucket `b`); `None` when it
/// has none.
pub fn strip_s3_scheme(s: &str) -> Option<&str> {
    s.get(..5)
        .filter(|p| p.eq_ignore_ascii_case("s3://"))
        .map(|_| &s[5..])
}

/// Parse `bucket`, `bucket/prefix`, `s3://bucket/prefix/`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let rest = strip_s3_scheme(s).unwrap_or(s);
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p),
        None => (rest, ""),
    };
    if bucket.is_empty() {
        return Err(format!(
            "{s:?}: no bucket name (expected bucket[/prefix] or s3://bucket/prefix/)"
        ));
    }
    let segments: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if segments.iter().any(|p| *p == "." || *p == "..") {
        return Err(format!(
            "{s:?}: the prefix may not contain . or .. segments"
        ));
    }
    let prefix = if segments.is_empty() {
        String::new()
    } else {
        format!("{}/", segments.join("/"))
    };
    Ok(Target {
        bucket: bucket.to_string(),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |b: &str, p: &str| Target {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!(parse_target("b").unwrap(), t("b", ""));
        assert_eq!(parse_target("b/").unwrap(), t("b", ""));
        assert_eq!(parse_target("b/p/q").unwrap(), t("b", "p/q/"));
        assert_eq!(parse_target("s3://b/p/").unwrap(), t("b", "p/"));
        assert_eq!(parse_target("s3://b").unwrap(), t("b", ""));
        assert!(parse_target("s3://").is_err());
        assert!(parse_target("b/../x").is_err());
    }

    #[test]
    fn modes_and_ttl() {
        assert_eq!(parse_octal("0640"), Ok(0o640));
        assert!(parse_octal("999").is_err());
        assert_eq!(
            parse_seconds_in("0.5", 0, 10),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(parse_seconds_in("-1", 0, 10).is_err());
        assert!(parse_seconds_in("11", 0, 10).is_err());
        assert_eq!(
            parse_seconds_in("1e20", 0, YEAR).unwrap_err(),
            "1e20 is not between 0 and 31536000 seconds"
        );
        for bad in ["NaN", "nan", "inf", "-inf", "1e400", "", " ", "0x10"] {
            assert!(parse_seconds_in(bad, 0, YEAR).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_duration("7d"),
            Ok(std::time::Duration::from_secs(WEEK))
        );
        assert!(parse_duration("3651d").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    /// Every numeric or duration option of mount, rm and presign.
    const MOUNT_NUMERIC: &[&str] = &[
        "--uid",
        "--gid",
        "--file-mode",
        "--dir-mode",
        "--metadata-ttl",
        "--part-size",
        "--max-upload-memory",
        "--max-concurrency",
        "--abort-incomplete-after",
        "--max-memory",
        "--retry-window",
        "--max-attempts",
        "--max-idle-inodes",
        "--max-file-size",
        "--presign-expires",
        "--read-ahead-kb",
        "--connect-timeout",
        "--request-timeout",
    ];

    /// Values no option takes.
    const EXTREME: &[&str] = &[
        "-1",
        "99999999999999999999999999",
        "18446744073709551616",
        "NaN",
        "1e11",
        "1e20",
        "1e400",
        "inf",
        "-inf",
        "",
        "0x10",
        "\u{663}",
        "1\u{e9}",
    ];

    fn mount_with(opt: &str, v: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["bucketfs", "mount", "b", "/mnt", &format!("{opt}={v}")])
    }

    #[test]
    fn extreme_values_of_every_numeric_option_are_one_line_errors_never_panics() {
        for opt in MOUNT_NUMERIC {
            for v in EXTREME {
                let e = mount_with(opt, v).expect_err(&format!("{opt}={v:?} was accepted"));
                let line = one_line(&e);
                assert!(
                    !line.contains('\n') && !line.is_empty(),
                    "{opt}={v:?}: {line:?}"
                );
                assert!(line.contains(opt), "{opt}={v:?}: {line:?}");
            }
            // `--opt -1` (a separate word) is refused too, as an unknown argument.
            let e = Cli::try_parse_from(["bucketfs", "mount", "b", "/mnt", opt, "-1"]);
            assert!(e.is_err(), "{opt} -1 was accepted");
            assert!(!one_line(&e.unwrap_err()).contains('\n'));
            // 0 parses or is refused; it never panics.
            let _ = mount_with(opt, "0");
        }
        for (cmd, opt) in [
            ("rm", "--concurrency"),
            ("rm", "--retry-window"),
            ("rm", "--connect-timeout"),
            ("rm", "--request-timeout"),
            ("presign", "--expires"),
            ("presign", "--connect-timeout"),
            ("presign", "--request-timeout"),
        ] {
            for v in EXTREME
                .iter()
                .chain(&["0"])
                .filter(|v| !(opt == "--retry-window" && **v == "0"))
            {
                let r = Cli::try_parse_from(["bucketfs", cmd, "s3://b/k", &format!("{opt}={v}")]);
                assert!(r.is_err(), "{cmd} {opt}={v:?} was accepted");
            }
        }
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_range() {
        let cases = [
            ("--part-size", "0", "5..=5120"),
            ("--part-size", "4", "5..=5120"),
            ("--max-concurrency", "0", "1..=64"),
            ("--max-memory", "0", "16..=1048576"),
            ("--max-upload-memory", "15", "16..=1048576"),
            ("--metadata-ttl", "1e11", "between 0 and 31536000 seconds"),
            ("--metadata-ttl", "1e20", "between 0 and 31536000 seconds"),
            ("--retry-window", "86401", "between 0 and 86400 seconds"),
            ("--presign-expires", "0", "between 1 and 604800 seconds"),
            ("--max-file-size", "0", "1..=5497558138880"),
            ("--max-attempts", "0", "1..=1000"),
            ("--uid", "4294967295", "0..=4294967294"),
            ("--read-ahead-kb", "65537", "0..=65536"),
            ("--abort-incomplete-after", "3651d", "between 0 and 3650d"),
            ("--connect-timeout", "0", "between 1 and 300 seconds"),
            ("--connect-timeout", "301", "between 1 and 300 seconds"),
            ("--request-timeout", "0.5", "between 1 and 3600 seconds"),
            ("--request-timeout", "3601", "between 1 and 3600 seconds"),
        ];
        for (opt, v, range) in cases {
            let line = one_line(&mount_with(opt, v).expect_err(opt));
            assert!(line.contains(range), "{opt}={v}: {line}");
            assert!(!line.contains('\n'), "{opt}={v}: {line}");
        }
        let c = mount_with("--metadata-ttl", "31536000").unwrap();
        let Command::Mount(m) = c.command else {
            panic!("not a mount command");
        };
        assert_eq!(m.metadata_ttl, std::time::Duration::from_secs(YEAR));
        let c = mount_with("--request-timeout", "2.5").unwrap();
        let Command::Mount(m) = c.command else {
            panic!("not a mount command");
        };
        assert_eq!(
            m.s3.timeouts(),
            crate::store::s3::Timeouts {
                connect: std::time::Duration::from_secs(10),
                request: std::time::Duration::from_millis(2500),
            }
        );
    }

    #[test]
    fn the_timeouts_default_to_10_and_30_seconds_on_every_connecting_command() {
        use crate::store::s3::Timeouts;
        let want = Timeouts::default();
        assert_eq!(want.connect, std::time::Duration::from_secs(10));
        assert_eq!(want.request, std::time::Duration::from_secs(30));
        let m = Cli::try_parse_from(["bucketfs", "mount", "b", "/mnt"]).unwrap();
        let r = Cli::try_parse_from(["bucketfs", "rm", "s3://b/k"]).unwrap();
        let p = Cli::try_parse_from(["bucketfs", "presign", "s3://b/k"]).unwrap();
        match (m.command, r.command, p.command) {
            (Command::Mount(m), Command::Rm(r), Command::Presign(p)) => {
                assert_eq!(m.s3.timeouts(), want);
                assert_eq!(r.s3.timeouts(), want);
                assert_eq!(p.s3.timeouts(), want);
            }
            _ => panic!("wrong commands"),
        }
        let r = Cli::try_parse_from([
            "bucketfs",
            "rm",
            "s3://b/k",
            "--connect-timeout",
            "2",
            "--request-timeout",
            "7",
        ])
        .unwrap();
        let Command::Rm(r) = r.command else {
            panic!("not rm");
        };
        assert_eq!(r.s3.timeouts().connect, std::time::Duration::from_secs(2));
        assert_eq!(r.s3.timeouts().request, std::time::Duration::from_secs(7));
    }

    #[test]
    fn endpoint_urls_need_a_scheme_and_a_host() {
        for ok in [
            "http://127.0.0.1:9000",
            "https://s3.eu-west-1.amazonaws.com",
            "HTTP://localhost:9000/",
            "https://[::1]:8443/base",
            "http://minio",
        ] {
            assert_eq!(parse_endpoint_url(ok).as_deref(), Ok(ok), "{ok}");
        }
        let e = parse_endpoint_url("localhost:9000").unwrap_err();
        assert!(
            e.contains("no scheme") && e.contains("http://localhost:9000"),
            "{e}"
        );
        for bad in [
            "ht!tp://x",
            "ftp://x",
            "http://",
            "http://a b",
            "http://x:0",
            "http://x:99999",
            "http://x:port",
            "http://[zz]:1",
            "http://ex_ample.com",
            "",
        ] {
            assert!(parse_endpoint_url(bad).is_err(), "{bad:?} accepted");
        }
        let e = Cli::try_parse_from([
            "bucketfs",
            "mount",
            "b",
            "/mnt",
            "--endpoint-url",
            "ht!tp://x",
        ])
        .unwrap_err();
        let line = one_line(&e);
        assert!(
            line.contains("--endpoint-url") && line.contains("http://"),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn bucket_names_are_checked_by_the_rules_all_servers_share() {
        for ok in ["abc", "my-bucket.logs", "Legacy_Bucket", "a1b"] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "a b c",
            "bad!",
            "caf\u{e9}",
            &"x".repeat(256),
        ] {
            let e = check_bucket_name(bad).unwrap_err();
            assert!(e.starts_with("invalid bucket name"), "{e}");
        }
    }

    #[test]
    fn the_help_of_every_numeric_option_states_its_range() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let mount = cmd.find_subcommand("mount").unwrap();
        for opt in MOUNT_NUMERIC {
            let arg = mount
                .get_arguments()
                .find(|a| a.get_long() == opt.strip_prefix("--"))
                .unwrap();
            let help = arg.get_help().unwrap().to_string();
            let has_range = help
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .any(|w| {
                    let mut it = w.splitn(2, '-');
                    matches!((it.next(), it.next()), (Some(a), Some(b))
                        if a.chars().next().is_some_and(|c| c.is_ascii_digit())
                            && b.chars().next().is_some_and(|c| c.is_ascii_digit()))
                });
            assert!(has_range, "{opt}: no range in {help:?}");
        }
    }

    #[test]
    fn one_line_keeps_the_names_of_missing_arguments() {
        let e = Cli::try_parse_from(["bucketfs", "mount", "b"]).unwrap_err();
        let line = one_line(&e);
        assert!(line.contains("<MOUNTPOINT>"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn the_s3_scheme_is_accepted_in_any_case() {
        let t = |b: &str, p: &str| Target {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!(parse_target("S3://demo").unwrap(), t("demo", ""));
        assert_eq!(parse_target("s3://demo/x").unwrap(), t("demo", "x/"));
        assert_eq!(parse_target("S3://demo/x/").unwrap(), t("demo", "x/"));
        assert_eq!(strip_s3_scheme("s3:/x"), None);
        assert_eq!(strip_s3_scheme("\u{e9}\u{e9}\u{e9}"), None);
    }

    #[test]
    fn times_with_multibyte_characters_are_errors() {
        for s in [
            "2026-12-01T09:00:00+0\u{e9}00",
            "2026-12-01T09:00:00+\u{e9}:000",
            "2026-12-01T09:00:00.\u{e9}Z",
            "\u{e9}026-12-01T09:00:00Z",
        ] {
            assert!(parse_time(s).is_err(), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_string_panics_a_parser(s in "\\PC{0,30}") {
            let _ = parse_time(&s);
            let _ = parse_duration(&s);
            let _ = parse_seconds_in(&s, 0, YEAR);
            let _ = parse_octal(&s);
            let _ = parse_target(&s);
            let _ = parse_storage_class(&s);
            let _ = parse_account(&s);
            let _ = parse_versions_dir(&s);
        }

        #[test]
        fn no_time_shaped_string_panics(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\PC{0,8}") {
            let _ = parse_time(&s);
        }
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from([
            "bucketfs",
            "mount",
            "s3://b/p",
            "/mnt",
            "--endpoint-url",
            "http://127.0.0.1:1",
            "--metadata-source",
            "listing",
            "--file-mode",
            "0600",
            "--read-only",
        ])
        .unwrap();
        let Command::Mount(m) = c.command else {
            panic!("not a mount command");
        };
        assert_eq!(m.file_mode, 0o600);
        assert_eq!(m.metadata_source, MetadataSourceArg::Listing);
        assert!(m.read_only);
    }

    #[test]
    fn rm_parses() {
        let c = Cli::try_parse_from(["bucketfs", "rm", "-R", "-f", "s3://b/p", "--stats"]).unwrap();
        let Command::Rm(r) = c.command else {
            panic!("not an rm command");
        };
        assert!(r.recursive && r.force && r.stats && !r.quiet);
        assert_eq!(r.concurrency, 4);
        let c = Cli::try_parse_from(["bucketfs", "rm", "--recursive", "x", "--concurrency", "9"]);
        let Command::Rm(r) = c.unwrap().command else {
            panic!("not an rm command");
        };
        assert!(r.recursive && !r.force);
        assert_eq!(r.concurrency, 9);
        assert!(Cli::try_parse_from(["bucketfs", "rm", "x", "--concurrency", "0"]).is_err());
    }
}
