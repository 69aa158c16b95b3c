//! Attribute mapping: S3 object metadata to POSIX attributes and back. Modes, owners and
//! times live in `x-amz-meta-{mode,uid,gid,mtime,atime,ctime}`, the names s3fs uses, so
//! buckets written by s3fs keep their modes here and ours read back in s3fs. Absent
//! values fall back to the mount's defaults. Also the `user.*` xattr view of metadata.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::HashMap;

use crate::store::{ObjectMeta, ObjectSummary, PutOptions};

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// POSIX attributes of one inode (the inode number is added by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits only (`0o7777` at most).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// Where POSIX metadata comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataSource {
    /// HeadObject per entry, `x-amz-meta-*` honoured (default).
    Posix,
    /// Only what listings carry: mount defaults for mode/owner, LastModified for mtime.
    Listing,
}

/// The mount's defaults for whatever the metadata does not say.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
}

/// Metadata names that carry POSIX attributes, not user xattrs.
pub const POSIX_META: [&str; 6] = ["mode", "uid", "gid", "mtime", "atime", "ctime"];

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;

/// Parse a mode as s3fs writes it (decimal `st_mode`, e.g. `33188`), or octal with a
/// leading `0` (`0644`) as some tools write it.
pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Parse a time as seconds since the epoch, with an optional fraction
/// (`1690000000`, `1690000000.5`), as s3fs and rclone write them.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        format!("{digits:0<9}").parse().ok()?
    };
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// The kind an object's metadata declares (symlinks carry S_IFLNK in their mode).
pub fn kind_from_meta(meta: &ObjectMeta) -> Kind {
    match meta.user_metadata.get("mode").and_then(|m| parse_mode(m)) {
        Some(m) if m & S_IFMT == S_IFLNK => Kind::Symlink,
        _ => Kind::File,
    }
}

/// Attributes of an object from its HeadObject response.
pub fn stat_from_meta(meta: &ObjectMeta, kind: Kind, src: MetadataSource, d: &Defaults) -> Stat {
    let dflt_perm = if kind == Kind::Dir {
        d.dir_mode
    } else {
        d.file_mode
    };
    let mut st = Stat {
        kind,
        size: if kind == Kind::Dir { 0 } else { meta.size },
        perm: dflt_perm,
        uid: d.uid,
        gid: d.gid,
        atime: meta.last_modified,
        mtime: meta.last_modified,
        ctime: meta.last_modified,
    };
    if src == MetadataSource::Listing {
        return st;
    }
    let m = &meta.user_metadata;
    if let Some(mode) = m.get("mode").and_then(|v| parse_mode(v)) {
        st.perm = (mode & 0o7777) as u16;
        if kind == Kind::Symlink {
            st.perm = 0o777;
        }
    }
    if let Some(uid) = m.get("uid").and_then(|v| v.trim().parse().ok()) {
        st.uid = uid;
    }
    if let Some(gid) = m.get("gid").and_then(|v| v.trim().parse().ok()) {
        st.gid = gid;
    }
    if let Some(t) = m.get("mtime").and_then(|v| parse_time(v)) {
        st.mtime = t;
        st.atime = t;
        st.ctime = t;
    }
    if let Some(t) = m.get("atime").and_then(|v| parse_time(v)) {
        st.atime = t;
    }
    if let Some(t) = m.get("ctime").and_then(|v| parse_time(v)) {
        st.ctime = t;
    }
    st
}

/// Attributes of a file known only from a listing entry.
pub fn stat_from_summary(s: &ObjectSummary, d: &Defaults) -> Stat {
    Stat {
        kind: Kind::File,
        size: s.size,
        perm: d.file_mode,
        uid: d.uid,
        gid: d.gid,
        atime: s.last_modified,
        mtime: s.last_modified,
        ctime: s.last_modified,
    }
}

/// Attributes of a directory with no marker metadata (implicit, or listing mode).
pub fn dir_stat(d: &Defaults, time: SystemTime) -> Stat {
    Stat {
        kind: Kind::Dir,
        size: 0,
        perm: d.dir_mode,
        uid: d.uid,
        gid: d.gid,
        atime: time,
        mtime: time,
        ctime: time,
    }
}

/// `st_mode` as stored in `x-amz-meta-mode`: the file type bits and the permissions.
pub fn st_mode(st: &Stat) -> u32 {
    let t = match st.kind {
        Kind::File => 0o100000,
        Kind::Dir => S_IFDIR,
        Kind::Symlink => S_IFLNK,
    };
    t | u32::from(st.perm & 0o7777)
}

/// A time as stored in `x-amz-meta-*time`: seconds, with nanoseconds when there are any.
pub fn format_time(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.subsec_nanos() == 0 => d.as_secs().to_string(),
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        Err(e) => format!("-{}", e.duration().as_secs()),
    }
}

/// The metadata an upload or a metadata rewrite carries: the POSIX attributes of `st`
/// (mtime and atime only with `with_times`; otherwise S3's LastModified stands for them),
/// the content type and the user xattrs.
/// Bytes of user metadata (names and values of `x-amz-meta-*`) S3 keeps per object.
pub const USER_META_LIMIT: usize = 2048;

/// What is left of [`USER_META_LIMIT`] for `user.*` xattrs once the POSIX attributes
/// (`mode`, `uid`, `gid`, `mtime`, `atime`, `ctime`: at most about 120 bytes) are in.
pub const USER_META_ROOM: usize = USER_META_LIMIT - 160;

pub fn put_options(
    st: &Stat,
    with_times: bool,
    content_type: Option<&str>,
    user: &HashMap<String, String>,
) -> PutOptions {
    let mut m: HashMap<String, String> = user
        .iter()
        .filter(|(k, _)| !POSIX_META.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.insert("mode".into(), st_mode(st).to_string());
    m.insert("uid".into(), st.uid.to_string());
    m.insert("gid".into(), st.gid.to_string());
    if with_times {
        m.insert("mtime".into(), format_time(st.mtime));
        m.insert("atime".into(), format_time(st.atime));
    }
    PutOptions {
        content_type: content_type.map(str::to_string),
        user_metadata: m,
        ..Default::default()
    }
}

/// The user xattrs of an object: its metadata without the POSIX attributes.
pub fn user_xattrs(meta: &ObjectMeta) -> HashMap<String, String> {
    meta.user_metadata
        .iter()
        .filter(|(k, _)| !POSIX_META.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Content-Type for a new object, guessed from its name's extension.
pub fn guess_content_type(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Whether the mode in `meta` says this object is a directory (`S_IFDIR`).
pub fn meta_is_dir(meta: &ObjectMeta) -> bool {
    meta.user_metadata
        .get("mode")
        .and_then(|m| parse_mode(m))
        .is_some_and(|m| m & S_IFMT == S_IFDIR)
}

/// Whether an object in this storage class must be restored before it can be read.
pub fn is_archived(storage_class: Option<&str>, restore: Option<&str>) -> bool {
    let archived = matches!(storage_class, Some("GLACIER") | Some("DEEP_ARCHIVE"));
    let restored = restore.is_some_and(|r| r.contains("ongoing-request=\"false\""));
    archived && !restored
}

/// Whether the object `m` describes is archived and not restored.
pub fn unreadable(m: &ObjectMeta) -> bool {
    is_archived(m.props.storage_class.as_deref(), m.restore.as_deref())
}

/// Virtual xattrs exposing S3 state: the object's ETag, content type, time and version,
/// and its [`Props`](crate::store::Props) (see [`prop_field`]).
pub const S3_XATTRS: [&str; 15] = [
    "user.s3.etag",
    "user.s3.storage_class",
    "user.s3.content_type",
    "user.s3.last_modified",
    "user.s3.version_id",
    "user.s3.cache_control",
    "user.s3.content_encoding",
    "user.s3.content_disposition",
    "user.s3.content_language",
    "user.s3.expires",
    "user.s3.website_redirect",
    "user.s3.sse",
    "user.s3.sse_kms_key_id",
    "user.s3.bucket_key",
    "user.s3.restore",
];

/// The `user.s3.restore` value for an `x-amz-restore` header: `ongoing` while S3
/// restores the object, `expires DATE` once the restored copy is readable.
pub fn restore_status(raw: &str) -> String {
    if raw.contains("ongoing-request=\"true\"") {
        return "ongoing".to_string();
    }
    match raw.split_once("expiry-date=") {
        Some((_, d)) => format!("expires {}", d.trim().trim_matches('"')),
        None => raw.to_string(),
    }
}

/// A `user.s3.restore` request, `DAYS[,TIER]`: days 1 to 36500, tier Standard, Bulk or
/// Expedited (any case).
pub fn parse_restore(v: &str) -> Option<(u32, Option<&'static str>)> {
    let (days, tier) = match v.trim().split_once(',') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (v.trim(), None),
    };
    let days: u32 = days
        .trim()
        .parse()
        .ok()
        .filter(|d| (1..=36_500).contains(d))?;
    let tier = match tier.map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("standard") => Some("Standard"),
        Some("bulk") => Some("Bulk"),
        Some("expedited") => Some("Expedited"),
        Some(_) => return None,
    };
    Some((days, tier))
}

/// The object property behind `user.s3.NAME` (`short` is `s3.NAME`) that a setxattr may
/// change (one CopyObject): the standard headers and the storage class. Encryption is
/// shown but read-only.
pub fn prop_field<'a>(
    p: &'a mut crate::store::Props,
    short: &str,
) -> Option<&'a mut Option<String>> {
    Some(match short {
        "s3.cache_control" => &mut p.cache_control,
        "s3.content_encoding" => &mut p.content_encoding,
        "s3.content_disposition" => &mut p.content_disposition,
        "s3.content_language" => &mut p.content_language,
        "s3.expires" => &mut p.expires,
        "s3.website_redirect" => &mut p.website_redirect,
        "s3.storage_class" => &mut p.storage_class,
        _ => return None,
    })
}

/// Whether `v` is a value S3 takes for the property `short` (see [`prop_field`]).
pub fn valid_prop(short: &str, v: &str) -> bool {
    match short {
        "s3.storage_class" => {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        }
        "s3.expires" => {
            aws_smithy_types::DateTime::from_str(v, aws_smithy_types::date_time::Format::HttpDate)
                .is_ok()
        }
        _ => true,
    }
}

/// Whether S3 takes `tag` (with `value`, when set) as an object tag: a name of 1 to 128
/// characters not starting with `aws:`, a value of up to 256, both of letters, digits,
/// spaces and `_ . : / = + - @` (what AWS allows; other servers allow as much or more).
pub fn check_tag(key: &str, tag: &str, value: Option<&str>) -> super::error::Result<()> {
    let allowed = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
    };
    let n = tag.chars().count();
    if n == 0 || n > 128 || tag.starts_with("aws:") || !allowed(tag) {
        return Err(super::error::Error::Invalid(format!(
            "{key}: {tag:?} is not a tag name S3 takes (1 to 128 letters, digits, spaces \
             or _.:/=+-@, not starting with aws:)"
        )));
    }
    if let Some(v) = value {
        if v.chars().count() > 256 || !allowed(v) {
            return Err(super::error::Error::Invalid(format!(
                "{key}: tag {tag:?}: {v:?} is not a tag value S3 takes (up to 256 letters, \
                 digits, spaces or _.:/=+-@)"
            )));
        }
    }
    Ok(())
}

/// Names of every xattr of an object: its user metadata (except the POSIX attributes)
/// and the `user.s3.*` virtual ones that have a value.
pub fn xattr_names(meta: &ObjectMeta) -> Vec<String> {
    let mut names: Vec<String> = meta
        .user_metadata
        .keys()
        .filter(|k| !POSIX_META.contains(&k.as_str()))
        .map(|k| format!("user.{k}"))
        .collect();
    names.sort();
    for n in S3_XATTRS {
        if xattr_value(meta, n).is_some() {
            names.push(n.to_string());
        }
    }
    names
}

/// The value of one xattr, if the object has it.
pub fn xattr_value(meta: &ObjectMeta, name: &str) -> Option<Vec<u8>> {
    let v = match name {
        "user.s3.etag" => meta.etag.trim_matches('"').to_string(),
        "user.s3.storage_class" => meta
            .props
            .storage_class
            .clone()
            .unwrap_or_else(|| "STANDARD".to_string()),
        "user.s3.content_type" => meta.content_type.clone()?,
        "user.s3.last_modified" => rfc3339(meta.last_modified),
        "user.s3.version_id" => meta.version_id.clone()?,
        "user.s3.sse" => meta.props.sse.clone()?,
        "user.s3.sse_kms_key_id" => meta.props.sse_kms_key_id.clone()?,
        "user.s3.bucket_key" => meta.props.bucket_key?.to_string(),
        "user.s3.restore" => restore_status(meta.restore.as_deref()?),
        n if n.starts_with("user.s3.") => {
            let mut p = meta.props.clone();
            prop_field(&mut p, &n["user.".len()..])?.clone()?
        }
        _ => {
            let key = name.strip_prefix("user.")?;
            if POSIX_META.contains(&key) {
                return None;
            }
            meta.user_metadata.get(key)?.clone()
        }
    };
    Some(v.into_bytes())
}

/// `2026-11-22T01:02:03Z` for a time (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn meta(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            size: 42,
            etag: "\"abc\"".into(),
            last_modified: UNIX_EPOCH + Duration::from_secs(1_000_000),
            props: Default::default(),
            content_type: Some("application/json".into()),
            version_id: None,
            user_metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            restore: None,
            tag_count: 0,
        }
    }

    const D: Defaults = Defaults {
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        dir_mode: 0o755,
    };

    #[test]
    fn s3fs_metadata_is_honoured() {
        let m = meta(&[
            ("mode", "33184"), // 0100640
            ("uid", "7"),
            ("gid", "8"),
            ("mtime", "1700000000"),
        ]);
        let st = stat_from_meta(&m, kind_from_meta(&m), MetadataSource::Posix, &D);
        assert_eq!(st.kind, Kind::File);
        assert_eq!(st.perm, 0o640);
        assert_eq!((st.uid, st.gid), (7, 8));
        assert_eq!(st.mtime, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(st.size, 42);
    }

    #[test]
    fn listing_mode_ignores_metadata() {
        let m = meta(&[("mode", "33184"), ("uid", "7")]);
        let st = stat_from_meta(&m, Kind::File, MetadataSource::Listing, &D);
        assert_eq!(st.perm, 0o644);
        assert_eq!(st.uid, 1000);
        assert_eq!(st.mtime, m.last_modified);
    }

    #[test]
    fn defaults_when_absent_or_garbage() {
        let m = meta(&[("mode", "banana"), ("uid", "-3"), ("mtime", "x")]);
        let st = stat_from_meta(&m, Kind::File, MetadataSource::Posix, &D);
        assert_eq!(st.perm, 0o644);
        assert_eq!(st.uid, 1000);
        assert_eq!(st.mtime, m.last_modified);
    }

    #[test]
    fn symlink_mode() {
        let m = meta(&[("mode", &(0o120777u32).to_string())]);
        assert_eq!(kind_from_meta(&m), Kind::Symlink);
    }

    #[test]
    fn modes_and_times_parse() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("33188"), Some(0o100644));
        assert_eq!(
            parse_time("1.5"),
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
        assert_eq!(parse_time("1.x"), None);
    }

    #[test]
    fn xattrs() {
        let m = meta(&[("mode", "33188"), ("color", "blue")]);
        let names = xattr_names(&m);
        assert!(names.contains(&"user.color".to_string()));
        assert!(!names.contains(&"user.mode".to_string()));
        assert!(!names.contains(&"user.s3.version_id".to_string()));
        assert_eq!(xattr_value(&m, "user.color").unwrap(), b"blue");
        assert_eq!(xattr_value(&m, "user.s3.etag").unwrap(), b"abc");
        assert_eq!(
            xattr_value(&m, "user.s3.storage_class").unwrap(),
            b"STANDARD"
        );
        assert_eq!(xattr_value(&m, "user.mode"), None);
        assert_eq!(
            xattr_value(&m, "user.s3.last_modified").unwrap(),
            b"1970-01-12T13:46:40Z"
        );
    }

    #[test]
    fn upload_metadata_round_trips() {
        let mut st = stat_from_meta(&meta(&[]), Kind::File, MetadataSource::Posix, &D);
        st.perm = 0o640;
        st.mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let user: HashMap<String, String> = [("color".to_string(), "blue".to_string())].into();
        let o = put_options(&st, true, Some("text/plain"), &user);
        let mut m = meta(&[]);
        m.user_metadata = o.user_metadata.clone();
        let back = stat_from_meta(&m, kind_from_meta(&m), MetadataSource::Posix, &D);
        assert_eq!(back.perm, 0o640);
        assert_eq!(back.mtime, st.mtime);
        assert_eq!(o.user_metadata["mode"], "33184");
        assert_eq!(o.user_metadata["color"], "blue");
        assert_eq!(user_xattrs(&m).len(), 1);
        let no_times = put_options(&st, false, None, &HashMap::new());
        assert!(!no_times.user_metadata.contains_key("mtime"));
        assert_eq!(guess_content_type("a/b.json"), "application/json");
        assert_eq!(guess_content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn archive_state() {
        assert!(is_archived(Some("GLACIER"), None));
        assert!(!is_archived(
            Some("GLACIER"),
            Some("ongoing-request=\"false\", expiry-date=\"x\"")
        ));
        assert!(is_archived(
            Some("DEEP_ARCHIVE"),
            Some("ongoing-request=\"true\"")
        ));
        assert!(!is_archived(Some("GLACIER_IR"), None));
        assert!(!is_archived(None, None));
    }
}
