//! Command-line interface: `bucketfs mount TARGET MOUNTPOINT [options]`, `bucketfs
//! presign`, `bucketfs rm`.

use std::path::PathBuf;

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
    /// DeleteObjects requests (of up to 1,000 keys each) in flight at once.
    #[arg(long, default_value = "4", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// No progress and no summary line (errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// At the end, print the S3 requests sent, by operation, on stderr.
    #[arg(long)]
    pub stats: bool,
    /// How long a request failing for a passing reason (unreachable, 5xx, throttling)
    /// is retried before the command fails, in seconds.
    #[arg(long, default_value = "120", value_parser = parse_seconds)]
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
    /// How long the URL is valid, in seconds (at most 7 days).
    #[arg(long, default_value = "3600", value_parser = parse_seconds)]
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
    /// S3 endpoint (MinIO, Ceph, R2, a local server...). Default: AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
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
}

impl ConnectArgs {
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
    /// An existing directory to mount on.
    pub mountpoint: Option<PathBuf>,
    /// Mount every bucket of the account, each a directory at the root (ListBuckets),
    /// served in its own region: `bucketfs mount --all-buckets MNT`. `mkdir MNT/NAME`
    /// creates a bucket (in --region), `rmdir` deletes an empty one.
    #[arg(long, conflicts_with = "version_at")]
    pub all_buckets: bool,
    #[command(flatten)]
    pub s3: ConnectArgs,

    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,
    /// No extended attributes (S3 metadata as `user.*` xattrs): the kernel then stops
    /// asking, which saves `ls -l` two round trips per entry (its ACL and SELinux probes).
    #[arg(long)]
    pub no_xattr: bool,
    /// Owner of files without x-amz-meta-uid. Default: the mounting user.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of files without x-amz-meta-gid. Default: the mounting user's group.
    #[arg(long)]
    pub gid: Option<u32>,
    /// Mode of files without x-amz-meta-mode (octal).
    #[arg(long, default_value = "0644", value_parser = parse_octal)]
    pub file_mode: u16,
    /// Mode of directories without metadata (octal).
    #[arg(long, default_value = "0755", value_parser = parse_octal)]
    pub dir_mode: u16,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    pub allow_other: bool,
    /// How long attributes, lookups and listings are cached, in seconds (fractions allowed).
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub metadata_ttl: std::time::Duration,
    /// Where POSIX metadata comes from.
    #[arg(long, value_enum, default_value = "posix")]
    pub metadata_source: MetadataSourceArg,

    /// Part size in MiB: the largest ranged GET of sequential reads and the first part
    /// of uploads (uploads grow it so files up to 5 TiB fit in 10,000 parts; min 5).
    #[arg(long, default_value = "8")]
    pub part_size: u64,
    /// Memory for upload parts in flight across all files, in MiB.
    #[arg(long, default_value = "128")]
    pub max_upload_memory: u64,
    /// Parts uploaded in parallel per file.
    #[arg(long, default_value = "8")]
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
    /// or a duration such as 90m, 24h, 7d; 0 aborts all of them at once.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub abort_incomplete_after: std::time::Duration,
    /// Memory for prefetched read data across all open files, in MiB.
    #[arg(long, default_value = "160")]
    pub max_memory: u64,
    /// How long a request that fails for a passing reason (the endpoint unreachable or
    /// timing out, 5xx, throttling) is retried, with growing waits, before the operation
    /// fails with EIO; in seconds (fractions allowed). An outage shorter than this costs
    /// waiting, never an error.
    #[arg(long, default_value = "120", value_parser = parse_seconds)]
    pub retry_window: std::time::Duration,
    /// At most this many attempts per S3 request (1: no retries), within the retry
    /// window. Default: as many as the window allows.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Inodes kept in memory that the kernel holds no reference to (names a listing
    /// showed but nothing looked up); the least recently used beyond this are dropped.
    #[arg(long, default_value = "32768")]
    pub max_idle_inodes: usize,
    /// Largest file size in bytes a write or truncate may reach (EFBIG beyond);
    /// at most S3's object limit, 5 TiB.
    #[arg(long, default_value = "5497558138880")]
    pub max_file_size: u64,
    /// How long the presigned URL of the `user.s3.presigned_url` xattr is valid, in
    /// seconds (S3 allows up to 7 days).
    #[arg(long, default_value = "3600", value_parser = parse_seconds)]
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
    /// default for FUSE is 128, which costs a daemon round trip per 128 KiB read).
    #[arg(long, default_value = "1024")]
    pub read_ahead_kb: u32,

    /// Stay in the foreground (logs to stderr unless --log-file).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Write logs to this file.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Debug logging (RUST_LOG overrides the filter).
    #[arg(long)]
    pub debug: bool,
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
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().map_err(|_| bad())?;
            let om: i64 = o[4..6].parse().map_err(|_| bad())?;
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

/// Seconds, or a number with a unit: s, m, h, d.
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
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is not a duration like 3600, 90m, 24h or 7d"))
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// A parsed mount target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    /// `""` or a prefix ending in `/`.
    pub prefix: String,
}

/// Parse `bucket`, `bucket/prefix`, `s3://bucket/prefix/`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let rest = s.strip_prefix("s3://").unwrap_or(s);
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
            parse_seconds("0.5"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(parse_seconds("-1").is_err());
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
