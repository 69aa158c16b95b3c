//! `bucketfs presign`: a presigned URL of an object, named by a path inside a bucketfs
//! mount or as s3://bucket/key. For a path, the mount's root tells the bucket, prefix
//! and endpoint (its `user.bucketfs.target` xattr); the URL is signed here, locally,
//! with the caller's AWS credentials, and no request is sent.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cli::{parse_target, PresignArgs, PresignMethodArg};
use crate::fs::TARGET_XATTR;
use crate::store::s3::{S3Config, S3Store};
use crate::store::{ObjectStore, PresignMethod};

/// Where an object is: its bucket and key, and how to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTarget {
    pub bucket: String,
    pub prefix: String,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
}

impl MountTarget {
    /// As the mount root's `user.bucketfs.target` xattr says it.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "force_path_style": self.force_path_style,
        })
        .to_string()
    }

    pub fn from_json(b: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(b).ok()?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(MountTarget {
            bucket: s("bucket")?,
            prefix: s("prefix").unwrap_or_default(),
            endpoint_url: s("endpoint_url"),
            region: s("region"),
            force_path_style: v.get("force_path_style")?.as_bool()?,
        })
    }
}

/// Run `bucketfs presign`; returns the process exit code.
pub fn run(args: PresignArgs) -> i32 {
    match url(&args) {
        Ok(u) => {
            use std::io::Write;
            let mut out = std::io::stdout();
            if writeln!(out, "{u}").is_err() {
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!("bucketfs presign: {e}");
            1
        }
    }
}

fn url(args: &PresignArgs) -> Result<String, String> {
    if args.expires.is_zero() || args.expires > std::time::Duration::from_secs(7 * 86_400) {
        return Err("--expires must be between 1 second and 7 days".into());
    }
    let (target, key) = if crate::cli::strip_s3_scheme(&args.target).is_some() {
        let t = parse_target(&args.target)?;
        crate::cli::check_bucket_name(&t.bucket)?;
        let key = t.prefix.trim_end_matches('/').to_string();
        if key.is_empty() {
            return Err(format!("{}: no object key after the bucket", args.target));
        }
        let mt = MountTarget {
            bucket: t.bucket,
            prefix: String::new(),
            endpoint_url: args.s3.endpoint_url.clone(),
            region: args.s3.region.clone(),
            force_path_style: args.s3.path_style(),
        };
        (mt, key)
    } else {
        let (t, key) = in_mount(Path::new(&args.target))?;
        if key.is_empty() || key.ends_with('/') {
            return Err(format!("{}: the mount's root, not a file", args.target));
        }
        (t, key)
    };
    let cfg = S3Config {
        bucket: target.bucket.clone(),
        endpoint_url: target.endpoint_url.clone(),
        region: target.region.clone(),
        profile: args.s3.profile.clone(),
        force_path_style: target.force_path_style,
        max_attempts: 1,
        timeouts: args.s3.timeouts(),
        // A presigned URL must not need headers its holder would not send: no
        // requester-pays or owner headers here.
        ..Default::default()
    };
    let method = match args.method {
        PresignMethodArg::Get => PresignMethod::Get,
        PresignMethodArg::Put => PresignMethod::Put,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let endpoint = cfg
        .endpoint_url
        .clone()
        .unwrap_or_else(|| "AWS S3".to_string());
    rt.block_on(async {
        let store = S3Store::connect(&cfg).await;
        // Signing needs credentials: without them (or with a profile that is not
        // there) say so, not what the signer makes of it.
        store.check_credentials().await?;
        store.presign(&key, method, args.expires).await
    })
    .map_err(|e| crate::mount::endpoint_error(&endpoint, &e).unwrap_or(e.message))
}

/// The mount that `path` is in, and the object key of `path`. The mount's root itself
/// is the mount's prefix (`""` for a whole bucket, else ending in `/`); no other path
/// gives a key ending in `/`. The last component is not followed if it is a symlink:
/// the key is the link's own.
pub(crate) fn in_mount(path: &Path) -> Result<(MountTarget, String), String> {
    let full = match path.file_name() {
        Some(name) => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let parent = parent
                .canonicalize()
                .map_err(|e| format!("{}: {e}", parent.display()))?;
            parent.join(name)
        }
        // `.`, `..`, `/`: a directory, named by where it is.
        None => path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?,
    };
    let mut dir = full.as_path();
    loop {
        if let Some(json) = read_xattr(dir, TARGET_XATTR) {
            let t = MountTarget::from_json(&json)
                .ok_or_else(|| format!("{}: unreadable mount description", dir.display()))?;
            let rel = full
                .strip_prefix(dir)
                .map_err(|_| format!("{} is not under {}", full.display(), dir.display()))?;
            let rel = rel
                .to_str()
                .ok_or_else(|| format!("{}: not UTF-8", full.display()))?;
            let key = format!("{}{rel}", t.prefix);
            if t.bucket.is_empty() {
                // An all-buckets mount: the first component is the bucket, whose region
                // is its own.
                return match key.split_once('/') {
                    Some((b, k)) if !b.is_empty() => Ok((
                        MountTarget {
                            bucket: b.to_string(),
                            prefix: String::new(),
                            region: None,
                            ..t
                        },
                        k.to_string(),
                    )),
                    _ if !key.is_empty() => Ok((
                        MountTarget {
                            bucket: key.clone(),
                            prefix: String::new(),
                            region: None,
                            ..t
                        },
                        String::new(),
                    )),
                    _ => Err(format!(
                        "{}: the root of an all-buckets mount is no bucket",
                        full.display()
                    )),
                };
            }
            return Ok((t, key));
        }
        dir = dir.parent().ok_or_else(|| {
            format!(
                "{} is not inside a bucketfs mount (use s3://bucket/key)",
                path.display()
            )
        })?;
    }
}

/// The value of xattr `name` of `path` (of a symlink itself, not what it points to), if
/// it has one.
fn read_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and live across the call; the buffer is
    // valid for its length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}
