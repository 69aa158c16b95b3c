//! The real store: aws-sdk-s3 against AWS or any S3-compatible endpoint. This module is
//! the only one that knows the SDK; it maps SDK errors to [`StoreErrorKind`] and keeps no
//! workaround for any one server.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, EncodingType, MetadataDirective, ObjectCannedAcl,
    ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::{
    CompletedPart, DeleteFailure, ListPage, ObjectMeta, ObjectStore, ObjectSummary, PresignMethod,
    Props, PutOptions, StoreError, StoreErrorKind, StoreResult, Tags,
};

/// Where and how to connect.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub force_path_style: bool,
    /// Attempts per request, including the first (SDK standard retry: backoff with jitter).
    pub max_attempts: u32,
    /// Server-side encryption asked for on every write (`--sse`).
    pub sse: Option<Encryption>,
    /// Canned ACL of every object written (`--acl`).
    pub acl: Option<String>,
    /// Send `x-amz-request-payer: requester` on every request (`--requester-pays`).
    pub requester_pays: bool,
    /// The account that must own the bucket (`--expected-bucket-owner`): S3 refuses a
    /// request to a bucket someone else owns.
    pub expected_bucket_owner: Option<String>,
    /// Anonymous requests, unsigned (`--no-sign-request`).
    pub no_sign_request: bool,
    /// PEM certificates trusted besides the system's (`--ca-bundle`), for an endpoint
    /// with its own CA.
    pub ca_bundle: Option<Vec<u8>>,
    /// The SSE-C key (`--sse-c-key-file`): every object is encrypted with it, and every
    /// request that reads or writes bytes or metadata of an object sends it.
    pub sse_c_key: Option<[u8; 32]>,
    /// How long a connection and a request attempt may take.
    pub timeouts: Timeouts,
}

/// How long requests wait for the endpoint (`--connect-timeout`, `--request-timeout`).
/// A request that runs out of time fails with [`StoreErrorKind::TimedOut`], which the
/// retry layer retries within its window like any passing failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open a connection (TCP and TLS).
    pub connect: Duration,
    /// One attempt of a request, its connection included, until the response is read
    /// (a GetObject until its headers: its body streams, and a stalled body is cut off
    /// by the SDK's stalled-stream protection and resumed). Uploads and server-side
    /// copies get longer: see [`Timeouts::upload`] and [`Timeouts::server_work`].
    pub request: Duration,
}

/// `--connect-timeout`'s default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `--request-timeout`'s default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a check request at mount time waits, unless `--connect-timeout` is
/// longer: with the defaults, a dead endpoint fails the mount in about 10 s.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest an upload's body may move, in bytes a second, before its attempt times
/// out: 1 MiB/s.
const SLOWEST_UPLOAD: u64 = 1 << 20;
/// Server-side copies (CopyObject, UploadPartCopy) and CompleteMultipartUpload, which
/// S3 may work on for minutes, get this many times the request timeout.
const SERVER_WORK_FACTOR: u32 = 10;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The timeouts of the small check requests made at mount time (HeadBucket, a
    /// one-key listing, ListBuckets): the request timeout, but no longer than the connect
    /// timeout or [`PROBE_TIMEOUT`], whichever is longer.
    pub fn probe(self) -> Timeouts {
        Timeouts {
            connect: self.connect,
            request: self.request.min(self.connect.max(PROBE_TIMEOUT)),
        }
    }

    /// One attempt of a PutObject or UploadPart of `bytes`: the request timeout and one
    /// second per MiB of body.
    pub fn upload(&self, bytes: u64) -> Duration {
        self.request + Duration::from_secs(bytes.div_ceil(SLOWEST_UPLOAD))
    }

    /// One attempt of a request S3 works on for long (a copy, a complete).
    pub fn server_work(&self) -> Duration {
        self.request * SERVER_WORK_FACTOR
    }

    /// The SDK's settings for an attempt of at most `attempt`.
    fn config(&self, attempt: Duration) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(attempt)
            .build()
    }
}

/// An SSE-C key as S3 wants it: base64, and the base64 of its MD5.
#[derive(Debug, Clone)]
struct CustomerKey {
    key: String,
    md5: String,
}

impl CustomerKey {
    fn new(raw: &[u8; 32]) -> Self {
        use md5::Digest;
        CustomerKey {
            key: aws_smithy_types::base64::encode(raw),
            md5: aws_smithy_types::base64::encode(md5::Md5::digest(raw)),
        }
    }
}

/// Read a `--sse-c-key-file`: 32 bytes, raw or in base64.
pub fn read_sse_c_key(path: &std::path::Path) -> Result<[u8; 32], String> {
    let data = std::fs::read(path).map_err(|e| format!("SSE-C key {}: {e}", path.display()))?;
    let raw = if data.len() == 32 {
        data
    } else {
        let text = String::from_utf8_lossy(&data);
        aws_smithy_types::base64::decode(text.trim()).unwrap_or_default()
    };
    raw.try_into().map_err(|_| {
        format!(
            "SSE-C key {}: not a 32-byte key (raw, or base64 of 32 bytes)",
            path.display()
        )
    })
}

/// Set the SSE-C headers of `key` (an `Option<CustomerKey>`) on a request; with
/// `copy_source`, the copy-source ones too.
macro_rules! with_sse_c {
    ($req:expr, $key:expr) => {{
        let k: Option<&CustomerKey> = $key;
        $req.set_sse_customer_algorithm(k.map(|_| "AES256".to_string()))
            .set_sse_customer_key(k.map(|k| k.key.clone()))
            .set_sse_customer_key_md5(k.map(|k| k.md5.clone()))
    }};
    ($req:expr, $key:expr, copy_source) => {{
        let k: Option<&CustomerKey> = $key;
        with_sse_c!($req, k)
            .set_copy_source_sse_customer_algorithm(k.map(|_| "AES256".to_string()))
            .set_copy_source_sse_customer_key(k.map(|k| k.key.clone()))
            .set_copy_source_sse_customer_key_md5(k.map(|k| k.md5.clone()))
    }};
}

/// Read a `--ca-bundle` file: PEM certificates, at least one.
pub fn read_ca_bundle(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "CA bundle {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    Ok(pem)
}

/// Some servers send an SSE-C response header twice with the same value (joined as
/// `v, v`), which the SDK cannot parse as one value; a repeat of one value is that value.
#[derive(Debug)]
struct OneValueHeaders;

impl aws_smithy_runtime_api::client::interceptors::Intercept for OneValueHeaders {
    fn name(&self) -> &'static str {
        "bucketfs-one-value-headers"
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let headers = ctx.response_mut().headers_mut();
        for name in [
            "x-amz-server-side-encryption-customer-algorithm",
            "x-amz-server-side-encryption-customer-key-md5",
        ] {
            let values: Vec<String> = headers
                .get_all(name)
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .collect();
            if values.len() > 1 && values.iter().all(|v| *v == values[0]) {
                headers.try_insert(name, values[0].clone())?;
            }
        }
        Ok(())
    }
}

/// Headers every request carries (requester pays, expected bucket owner), added by
/// one interceptor so no operation can miss them.
#[derive(Debug)]
struct ExtraHeaders {
    all: Vec<(&'static str, String)>,
    /// The expected owner of a copy's source bucket (the same bucket here).
    copy_source_owner: Option<String>,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for ExtraHeaders {
    fn name(&self) -> &'static str {
        "bucketfs-extra-headers"
    }

    fn modify_before_signing(
        &self,
        ctx: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let headers = ctx.request_mut().headers_mut();
        let copy = headers.contains_key("x-amz-copy-source");
        for (k, v) in &self.all {
            headers.try_insert(*k, v.clone())?;
        }
        if let (true, Some(o)) = (copy, &self.copy_source_owner) {
            headers.try_insert("x-amz-source-expected-bucket-owner", o.clone())?;
        }
        Ok(())
    }
}

/// Server-side encryption to ask for: `AES256`, `aws:kms` or `aws:kms:dsse`, with the
/// KMS key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encryption {
    pub mode: String,
    pub kms_key_id: Option<String>,
}

/// A bucket reached through aws-sdk-s3.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    timeouts: Timeouts,
    /// What requests are signed with; `None` when unsigned.
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// The profile asked for (`--profile`).
    profile: Option<String>,
    sse: Option<Encryption>,
    acl: Option<ObjectCannedAcl>,
    sse_c: Option<CustomerKey>,
}

impl S3Store {
    /// Build a client from the standard AWS configuration chain plus `cfg`'s overrides.
    /// No request is sent.
    pub async fn connect(cfg: &S3Config) -> Self {
        let region = RegionProviderChain::first_try(cfg.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::new("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
        if let Some(p) = &cfg.profile {
            loader = loader.profile_name(p);
        }
        if cfg.no_sign_request {
            loader = loader.no_credentials();
        }
        let sdk = loader.load().await;
        let attempts = cfg.max_attempts.max(1);
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.force_path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(cfg.timeouts.config(cfg.timeouts.request));
        if let Some(url) = &cfg.endpoint_url {
            b = b.endpoint_url(url);
            // Since 2025 the SDK adds a CRC32 to every upload by default, streamed as an
            // aws-chunked trailer, and asks for checksums on downloads. Many
            // S3-compatible servers reject that framing or those headers; against them
            // checksums are sent only where an operation requires one (DeleteObjects),
            // unless the environment chooses otherwise. AWS keeps the default.
            if std::env::var_os("AWS_REQUEST_CHECKSUM_CALCULATION").is_none() {
                b = b.request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
            }
            if std::env::var_os("AWS_RESPONSE_CHECKSUM_VALIDATION").is_none() {
                b = b.response_checksum_validation(ResponseChecksumValidation::WhenRequired);
            }
        }
        if let Some(pem) = &cfg.ca_bundle {
            use aws_smithy_http_client::tls;
            let trust = tls::TrustStore::default().with_pem_certificate(pem.clone());
            match tls::TlsContext::builder().with_trust_store(trust).build() {
                Ok(ctx) => {
                    let http = aws_smithy_http_client::Builder::new()
                        .tls_provider(tls::Provider::Rustls(
                            tls::rustls_provider::CryptoMode::AwsLc,
                        ))
                        .tls_context(ctx)
                        .build_https();
                    b = b.http_client(http);
                }
                // Checked when the option is read (`read_ca_bundle`), so not reached.
                Err(e) => tracing::error!("the CA bundle cannot be used: {e}"),
            }
        }
        if cfg.sse_c_key.is_some() {
            b = b.interceptor(OneValueHeaders);
        }
        let mut all = Vec::new();
        if cfg.requester_pays {
            all.push(("x-amz-request-payer", "requester".to_string()));
        }
        if let Some(o) = &cfg.expected_bucket_owner {
            all.push(("x-amz-expected-bucket-owner", o.clone()));
        }
        if !all.is_empty() {
            b = b.interceptor(ExtraHeaders {
                all,
                copy_source_owner: cfg.expected_bucket_owner.clone(),
            });
        }
        S3Store {
            client: Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
            timeouts: cfg.timeouts,
            credentials: sdk.credentials_provider(),
            profile: cfg.profile.clone(),
            sse: cfg.sse.clone(),
            acl: cfg.acl.as_deref().map(ObjectCannedAcl::from),
            sse_c: cfg.sse_c_key.as_ref().map(CustomerKey::new),
        }
    }

    /// The bucket's region as the server reports it (HeadBucket's `x-amz-bucket-region`,
    /// which S3 sends even with a 301 or 403), if it says.
    /// Fails only when the endpoint cannot be reached.
    pub async fn bucket_region(&self) -> StoreResult<Option<String>> {
        let r = match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(out) => out.bucket_region().map(str::to_string),
            Err(e) => {
                let region = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_string);
                let err = map_err(&format!("head bucket s3://{}", self.bucket), e);
                if no_answer(err.kind) {
                    return Err(err);
                }
                region
            }
        };
        Ok(r.filter(|r| !r.is_empty()))
    }

    /// Load the credentials requests will be signed with (and check that a profile
    /// asked for exists), so that a mount, rm or presign without them says so before
    /// any request. Unsigned stores have nothing to check.
    pub async fn check_credentials(&self) -> StoreResult<()> {
        use aws_credential_types::provider::ProvideCredentials;
        if let Some(p) = &self.profile {
            check_profile(p).await?;
        }
        let Some(provider) = &self.credentials else {
            return Ok(());
        };
        match provider.provide_credentials().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let d = describe(&e);
                let mut err = StoreError::new(d.kind, d.words);
                err.timeout = d.timeout;
                Err(err.with_source(e))
            }
        }
    }

    /// A per-request configuration whose attempt times out after `attempt`.
    fn attempt_within(&self, attempt: Duration) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::new().timeout_config(self.timeouts.config(attempt))
    }

    /// The region requests are signed for.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The same client and settings, for another bucket.
    pub fn for_bucket(&self, bucket: &str) -> S3Store {
        S3Store {
            bucket: bucket.to_string(),
            ..self.clone()
        }
    }

    /// One GetObject of `range`, checked to be of the version `if_match` names.
    /// HeadObject of the current version, or of `version`.
    async fn head_at(&self, key: &str, version: Option<&str>) -> StoreResult<ObjectMeta> {
        let req = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string));

        let req = with_sse_c!(req, self.sse_c.as_ref());
        let out = if key.ends_with('/') {
            // A directory marker only decorates a directory its listing already shows,
            // and some servers answer 500 for a prefix they keep as a real directory:
            // one retry, not the full backoff a lookup would wait through.
            req.customize()
                .config_override(
                    self.attempt_within(self.timeouts.request)
                        .retry_config(RetryConfig::standard().with_max_attempts(2)),
                )
                .send()
                .await
        } else {
            req.send().await
        }
        .map_err(|e| map_err(&format!("head s3://{}/{key}", self.bucket), e))?;
        let props = Props {
            cache_control: out.cache_control().map(str::to_string),
            content_encoding: out.content_encoding().map(str::to_string),
            content_disposition: out.content_disposition().map(str::to_string),
            content_language: out.content_language().map(str::to_string),
            expires: out.expires_string().map(str::to_string),
            website_redirect: out.website_redirect_location().map(str::to_string),
            storage_class: out.storage_class().map(|c| c.as_str().to_string()),
            sse: out.server_side_encryption().map(|e| e.as_str().to_string()),
            sse_kms_key_id: out.ssekms_key_id().map(str::to_string),
            bucket_key: out.bucket_key_enabled(),
        };
        Ok(ObjectMeta {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().unwrap_or_default().to_string(),
            last_modified: to_system_time(out.last_modified()),
            props,
            content_type: out.content_type().map(str::to_string),
            version_id: out.version_id().map(str::to_string),
            user_metadata: out
                .metadata()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            restore: out.restore().map(str::to_string),
            tag_count: out.tag_count().unwrap_or(0).max(0) as u32,
        })
    }

    /// GetObject of `range` of the current version (pinned by `if_match`), or of
    /// `version`.
    async fn get_range_at(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        version: Option<&str>,
    ) -> StoreResult<Bytes> {
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        // No ETag known (a server whose listings carry none): nothing to pin to.
        let if_match = if_match.filter(|e| !e.is_empty());
        let what = |r: &Range<u64>| {
            format!(
                "get s3://{}/{key} bytes {}-{}",
                self.bucket,
                r.start,
                r.end - 1
            )
        };
        // A body cut off part-way (a connection reset, a proxy timeout) is resumed from
        // the byte where it stopped, with the same If-Match, so the pieces are one version.
        let mut buf = bytes::BytesMut::new();
        let mut cuts = 0;
        loop {
            let rest = range.start + buf.len() as u64..range.end;
            let out = self
                .get_once(key, &rest, if_match, version, &what(&rest))
                .await?;
            let expected = out.content_length().and_then(|n| u64::try_from(n).ok());
            if buf.is_empty() {
                buf.reserve(expected.unwrap_or(rest.end - rest.start) as usize);
            }
            let before = buf.len();
            let mut body = out.body;
            let cut = loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                    Ok(None) => {
                        let got = (buf.len() - before) as u64;
                        break expected
                            .filter(|&n| got < n)
                            .map(|n| format!("the body ended after {got} of {n} bytes"));
                    }
                    Err(e) => break Some(causes(&e)),
                }
            };
            let Some(cause) = cut else {
                return Ok(buf.freeze());
            };
            cuts += 1;
            let at = range.start + buf.len() as u64;
            if cuts > BODY_RESUMES || at >= range.end {
                return Err(StoreError::new(
                    StoreErrorKind::Transient,
                    format!(
                        "{}: the download was cut off {cuts} times (last at byte {at}: {cause})",
                        what(&range)
                    ),
                ));
            }
            tracing::debug!(key, at, cuts, "download cut off ({cause}): resuming");
            tokio::time::sleep(Duration::from_millis(50 << cuts.min(6))).await;
        }
    }

    async fn get_once(
        &self,
        key: &str,
        range: &Range<u64>,
        if_match: Option<&str>,
        version: Option<&str>,
        what: &str,
    ) -> StoreResult<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_version_id(version.map(str::to_string))
            .set_if_match(if_match.map(str::to_string));
        let out = with_sse_c!(out, self.sse_c.as_ref())
            .send()
            .await
            .map_err(|e| map_err(what, e))?;
        // A server that ignores If-Match would hand over another version's bytes: the
        // ETag of what came back must be the one asked for.
        if let (Some(want), Some(got)) = (if_match, out.e_tag()) {
            if !same_etag(want, got) {
                return Err(StoreError::new(
                    StoreErrorKind::PreconditionFailed,
                    format!("{what}: ETag is {got}, not {want} (the object changed)"),
                ));
            }
        }
        Ok(out)
    }
}

/// How many times one ranged GET resumes a body cut off part-way before it fails.
const BODY_RESUMES: u32 = 8;

/// Map an SDK error to our kinds, with a message naming the bucket/key and the cause in
/// words. This and [`describe`] are the one place SDK errors become text.
pub(crate) fn map_err<E, R>(what: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    if matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ConstructionFailure(_)
    ) {
        // No answer: the source chain says why (refused, timed out, TLS, credentials).
        let d = describe(&err);
        let mut e = StoreError::new(d.kind, format!("{what}: {}", d.words));
        e.timeout = d.timeout;
        return e.with_source(err);
    }
    let status = err.raw_response().map(|r| r.status_u16());
    let code = err.code().map(str::to_string);
    let kind = match (&err, status, code.as_deref()) {
        (_, _, Some("NoSuchBucket")) => StoreErrorKind::NoSuchBucket,
        (_, _, Some("BucketAlreadyExists")) => StoreErrorKind::Exists,
        (_, _, Some("BucketNotEmpty")) => StoreErrorKind::NotEmpty,
        (_, _, Some("InvalidBucketName")) => StoreErrorKind::InvalidName,
        (_, _, Some("InvalidObjectState")) => StoreErrorKind::InvalidObjectState,
        (_, _, Some("PermanentRedirect" | "AuthorizationHeaderMalformed")) | (_, Some(301), _) => {
            StoreErrorKind::WrongRegion
        }
        // The object's KMS key is missing, disabled or not usable by these credentials,
        // or the SSE-C key is wrong or missing: the data cannot be had with what this
        // mount holds.
        (_, _, Some(c))
            if c.starts_with("KMS.") || c.starts_with("KMS") && c.ends_with("Exception") =>
        {
            StoreErrorKind::AccessDenied
        }
        (_, Some(400), Some("InvalidRequest" | "InvalidArgument"))
            if err.message().is_some_and(|m| {
                let m = m.to_ascii_lowercase();
                m.contains("encrypt") || m.contains("customer") || m.contains("kms")
            }) =>
        {
            StoreErrorKind::AccessDenied
        }
        (_, _, Some("NoSuchKey" | "NotFound")) | (_, Some(404), _) => StoreErrorKind::NotFound,
        (_, _, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"))
        | (_, Some(401 | 403), _) => StoreErrorKind::AccessDenied,
        (_, _, Some("PreconditionFailed")) | (_, Some(412), _) => {
            StoreErrorKind::PreconditionFailed
        }
        (_, _, Some("InvalidRange")) | (_, Some(416), _) => StoreErrorKind::InvalidRange,
        (SdkError::ResponseError(_), _, _) if cut_off(&err) => StoreErrorKind::Transient,
        (_, Some(429 | 500 | 502 | 503 | 504), _)
        | (
            _,
            _,
            Some(
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeout"
                | "InternalError"
                | "ServiceUnavailable",
            ),
        ) => StoreErrorKind::Transient,
        _ => StoreErrorKind::Other,
    };
    let cause = match (&code, err.message(), status) {
        (Some(c), Some(m), _) => format!("{c}: {}", one_line(m)),
        (Some(c), None, Some(s)) => format!("{c} (HTTP {s})"),
        (None, _, Some(s)) if s >= 300 => format!("HTTP {s}"),
        _ => causes(&err),
    };
    let mut e = StoreError::new(kind, format!("{what}: {cause}"));
    if kind == StoreErrorKind::WrongRegion {
        e.region = err
            .raw_response()
            .and_then(|r| r.header("x-amz-bucket-region"))
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .or_else(|| err.message().and_then(expected_region));
    }
    e.with_source(err)
}

/// Whether an error of this kind means the endpoint gave no answer (or the request
/// could not be sent at all), rather than an answer about the bucket.
pub(crate) fn no_answer(kind: StoreErrorKind) -> bool {
    matches!(
        kind,
        StoreErrorKind::Unreachable | StoreErrorKind::TimedOut | StoreErrorKind::Credentials
    )
}

/// Fails with [`StoreErrorKind::Credentials`] when profile `name` is in neither AWS
/// file (the config file, `AWS_CONFIG_FILE`, and the credentials file,
/// `AWS_SHARED_CREDENTIALS_FILE`), naming the files and the profiles they have.
async fn check_profile(name: &str) -> StoreResult<()> {
    use aws_runtime::env_config::file::EnvConfigFiles;
    use aws_types::os_shim_internal::{Env, Fs};
    let set =
        aws_config::profile::load(&Fs::real(), &Env::real(), &EnvConfigFiles::default(), None)
            .await
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Credentials,
                    format!("cannot read the AWS config files: {}", causes(&e)),
                )
            })?;
    if set.get_profile(name).is_some() {
        return Ok(());
    }
    let file = |var: &str, default: &str| {
        let p = std::env::var(var).unwrap_or_else(|_| default.to_string());
        let path = match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
            _ => std::path::PathBuf::from(&p),
        };
        if path.exists() {
            p
        } else {
            format!("{p} (missing)")
        }
    };
    let mut names: Vec<&str> = set.profiles().collect();
    names.sort_unstable();
    let have = if names.is_empty() {
        "no profiles there".to_string()
    } else {
        format!("profiles there: {}", names.join(", "))
    };
    Err(StoreError::new(
        StoreErrorKind::Credentials,
        format!(
            "AWS profile {name:?} not found in {} or {} ({have})",
            file("AWS_CONFIG_FILE", "~/.aws/config"),
            file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        ),
    ))
}

/// The region an AuthorizationHeaderMalformed message says is right: "the region
/// 'us-east-1' is wrong; expecting 'eu-west-1'".
fn expected_region(message: &str) -> Option<String> {
    let rest = &message[message.find("expecting")? + "expecting".len()..];
    let r: String = rest
        .trim_start_matches([' ', '\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!r.is_empty()).then_some(r)
}

/// A failure without an answer from the endpoint, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    pub kind: StoreErrorKind,
    pub words: String,
    /// How long was waited, for a timeout.
    pub timeout: Option<Duration>,
}

/// Why a request got no answer, from its error's source chain: refused, timed out (and
/// after how long), a TLS handshake that failed, a host name that does not resolve,
/// credentials that could not be loaded, an endpoint URL that is no URL. The words are
/// the chain's own messages, one line, without the SDK's layer names, never a Debug
/// dump; a hint is added where the user has an option to change.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> Described {
    use aws_credential_types::provider::error::CredentialsError;
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(x) = e {
        if let Some(c) = x.downcast_ref::<CredentialsError>() {
            return describe_credentials(c);
        }
        e = x.source();
    }
    let all = causes(err);
    let lower = all.to_ascii_lowercase();
    let found = |w: &str| lower.contains(w);
    let tail = |marker: &str| -> String {
        let at = lower.find(&marker.to_ascii_lowercase()).unwrap_or(0);
        all[at..].to_string()
    };
    let d = |kind, words: String| Described {
        kind,
        words,
        timeout: None,
    };
    if let Some(at) = lower.find("occurred after ").filter(|_| found("timeout")) {
        let after = parse_debug_duration(&all[at + "occurred after ".len()..]);
        let which = if found("connect timeout") {
            "--connect-timeout"
        } else {
            "--request-timeout"
        };
        let words = match after {
            Some(t) => format!("no answer within {} ({which})", seconds_text(t)),
            None => format!("no answer in time ({which})"),
        };
        return Described {
            kind: StoreErrorKind::TimedOut,
            words,
            timeout: after,
        };
    }
    if found("connection refused") {
        return d(StoreErrorKind::Unreachable, "connection refused".into());
    }
    if found("tls") || found("certificate") || found("handshake") {
        let what = if found("tls handshake failed") {
            tail("TLS handshake failed")
        } else {
            strip_layers(&all)
        };
        return d(
            StoreErrorKind::Unreachable,
            format!(
                "{what} (is the endpoint an http:// server? For a server whose certificate \
                 is signed by its own CA, give --ca-bundle FILE)"
            ),
        );
    }
    if found("dns error") || found("failed to lookup address") || found("name or service") {
        return d(
            StoreErrorKind::Unreachable,
            format!(
                "the host name does not resolve ({})",
                strip_layers(&tail("dns error"))
            ),
        );
    }
    if found("not a valid uri") || found("invalid endpoint") {
        return d(
            StoreErrorKind::Other,
            format!("invalid endpoint URL: {}", strip_layers(&all)),
        );
    }
    d(StoreErrorKind::Unreachable, strip_layers(&all))
}

/// A credentials provider's failure in words: which sources were tried when none had
/// credentials, the profile when it is missing.
fn describe_credentials(c: &aws_credential_types::provider::error::CredentialsError) -> Described {
    use aws_credential_types::provider::error::CredentialsError as C;
    let inner = std::error::Error::source(c).map(causes).unwrap_or_default();
    let (kind, words) = match c {
        C::CredentialsNotLoaded(_) => {
            // The profile provider says so when a named profile is not in the files.
            let chain = full_text(c);
            match chain.find("profile `").map(|i| &chain[i + 9..]) {
                Some(rest) if chain.contains("was not defined") => {
                    let name = rest.split('`').next().unwrap_or(rest);
                    (
                        StoreErrorKind::Credentials,
                        format!(
                            "AWS profile {name:?} not found in the AWS config or credentials files"
                        ),
                    )
                }
                _ => (StoreErrorKind::Credentials, NO_CREDENTIALS.to_string()),
            }
        }
        C::ProviderTimedOut(t) => {
            return Described {
                kind: StoreErrorKind::TimedOut,
                words: format!(
                    "the AWS credentials provider did not answer within {}",
                    seconds_text(t.timeout_duration())
                ),
                timeout: Some(t.timeout_duration()),
            }
        }
        C::InvalidConfiguration(_) => (
            StoreErrorKind::Credentials,
            format!("the AWS configuration is invalid: {inner}"),
        ),
        // A 503 from STS or the instance metadata: may pass.
        C::ProviderError(_) => (
            StoreErrorKind::Transient,
            format!("the AWS credentials provider failed: {inner}"),
        ),
        _ => (
            StoreErrorKind::Credentials,
            format!("AWS credentials could not be loaded: {inner}"),
        ),
    };
    Described {
        kind,
        words,
        timeout: None,
    }
}

/// What bucketfs says when the credential chain found nothing.
pub(crate) const NO_CREDENTIALS: &str = "no AWS credentials found (tried: the environment \
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), the shared config and credentials files \
    (~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), \
    SSO, web identity token, container and instance metadata); set them, give --profile, \
    or --no-sign-request for a public bucket";

/// Every level of an error's chain, whole (newlines and all), joined.
fn full_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(x) = e {
        out.push_str(&x.to_string());
        out.push('\n');
        e = x.source();
    }
    out
}

/// The chain's text without the names of the SDK's layers ("dispatch failure", "io
/// error", "client error (Connect)", "other"), which say nothing to a user.
fn strip_layers(s: &str) -> String {
    const LAYERS: [&str; 7] = [
        "dispatch failure",
        "io error",
        "other",
        "timeout",
        "user",
        "client error (Connect)",
        "error trying to connect",
    ];
    let parts: Vec<&str> = s
        .split(": ")
        .map(str::trim)
        .filter(|p| !LAYERS.iter().any(|l| p.eq_ignore_ascii_case(l)))
        .collect();
    if parts.is_empty() {
        s.to_string()
    } else {
        parts.join(": ")
    }
}

/// `10 s`, `1.5 s`, `0.25 s`.
pub(crate) fn seconds_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        let t = format!("{s:.3}");
        format!("{} s", t.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A duration as `Debug` writes it (`10s`, `1.5s`, `250ms`, `3µs`, `7ns`), at the start
/// of `s`.
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let n: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v: f64 = n.parse().ok()?;
    let unit = &s[n.len()..];
    let secs = if unit.starts_with("ms") {
        v / 1e3
    } else if unit.starts_with("µs") || unit.starts_with("us") {
        v / 1e6
    } else if unit.starts_with("ns") {
        v / 1e9
    } else if unit.starts_with('s') {
        v
    } else {
        return None;
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Whether a response that could not be read was cut off (the connection failed while
/// it arrived: worth another try), rather than malformed (not).
fn cut_off(err: &(dyn std::error::Error + 'static)) -> bool {
    let c = causes(err).to_ascii_lowercase();
    [
        "io error",
        "connection",
        "reset",
        "broken pipe",
        "timed out",
        "unexpected eof",
    ]
    .iter()
    .any(|w| c.contains(w))
}

/// `s` on one line: its lines trimmed and joined with `; `.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The causes of an error in words, outermost first, from its source chain: for a
/// dispatch failure, for example, "dispatch failure: io error: client error (Connect):
/// tcp connect error: Connection refused (os error 111)". Each level's own message only,
/// on one line, never a Debug dump; repeats (a level that quotes its source) are dropped.
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(x) = e {
        let m = one_line(&x.to_string());
        let readable = !m.is_empty() && !looks_like_debug(&m);
        if readable && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        e = x.source();
    }
    if parts.is_empty() {
        "unknown error".to_string()
    } else {
        parts.join(": ")
    }
}

/// Whether a text looks like a Debug dump (`Foo { x: Some(..) }`) rather than words.
pub(crate) fn looks_like_debug(s: &str) -> bool {
    s.contains(['{', '}']) || s.contains("Some(") || s.contains("DispatchFailure")
}

/// Decode a name of a listing asked for with `encoding-type=url`: `%XX` escapes, and
/// `+` for a space (as S3 writes them, and as botocore reads them).
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Whether two ETags name the same version: servers differ in quoting them and in
/// marking them weak (`W/"..."`).
fn same_etag(a: &str, b: &str) -> bool {
    let bare = |e: &str| {
        e.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    bare(a) == bare(b)
}

/// What we need from a raw HTTP response.
pub trait HttpStatus {
    fn status_u16(&self) -> u16;
    fn header(&self, name: &str) -> Option<&str>;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name)
    }
}

/// The `x-amz-copy-source` value for `key` in `bucket`: `bucket/key` with the key
/// percent-encoded (everything but unreserved characters and `/`), as S3 requires.
fn copy_source(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key.split('/').map(percent_encode).collect();
    format!("{bucket}/{}", key.join("/"))
}

/// `%XX` for every byte of `s` but the unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `x-amz-tagging` header for `tags` (`name=value&...`, URL-encoded); `None` when
/// there are none.
fn tagging(tags: &Tags) -> Option<String> {
    if tags.is_empty() {
        return None;
    }
    let pairs: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    Some(pairs.join("&"))
}

/// User metadata as the SDK wants it: `None` when there is none.
fn metadata(m: &HashMap<String, String>) -> Option<HashMap<String, String>> {
    if m.is_empty() {
        None
    } else {
        Some(m.clone())
    }
}

/// The ETag of a written object; empty if the server sent none (the write did happen, so
/// that is not an error: the caller may HEAD the key to learn it).
fn object_etag(v: Option<&str>) -> String {
    v.unwrap_or_default().to_string()
}

/// A field a response must carry for the next request to be possible (upload id, part ETag).
fn required(what: &str, field: &str, v: Option<&str>) -> StoreResult<String> {
    v.map(str::to_string).ok_or_else(|| {
        StoreError::new(
            StoreErrorKind::Other,
            format!("{what}: response has no {field}"),
        )
    })
}

pub(crate) fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|d| SystemTime::try_from(*d).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Set what `Props` holds on a PutObject, CreateMultipartUpload or CopyObject request,
/// with the mount's `--sse`. The storage class STANDARD and SSE-S3 (`AES256`) are what a
/// bucket gives by default, and some S3-compatible servers refuse the headers, so they
/// are sent only when `--sse` asks; an object's KMS key travels with its id and
/// bucket-key setting, and wins over `--sse`.
macro_rules! with_props {
    ($req:expr, $props:expr, $forced:expr) => {{
        let p: &Props = $props;
        let (sse, key, bucket_key) = sse_headers(p, $forced);
        $req.set_cache_control(p.cache_control.clone())
            .set_content_encoding(p.content_encoding.clone())
            .set_content_disposition(p.content_disposition.clone())
            .set_content_language(p.content_language.clone())
            .set_expires(p.expires.as_deref().and_then(http_date))
            .set_website_redirect_location(p.website_redirect.clone())
            .set_storage_class(
                p.storage_class
                    .as_deref()
                    .filter(|c| *c != "STANDARD")
                    .map(StorageClass::from),
            )
            .set_server_side_encryption(sse.map(ServerSideEncryption::from))
            .set_ssekms_key_id(key)
            .set_bucket_key_enabled(bucket_key)
    }};
}

/// The encryption headers of a write: the object's own KMS encryption if it has one,
/// else what `--sse` asks for, else none.
fn sse_headers<'a>(
    p: &'a Props,
    forced: Option<&'a Encryption>,
) -> (Option<&'a str>, Option<String>, Option<bool>) {
    match p.sse.as_deref() {
        Some(e) if e.starts_with("aws:kms") => (Some(e), p.sse_kms_key_id.clone(), p.bucket_key),
        _ => match forced {
            Some(f) => (Some(f.mode.as_str()), f.kms_key_id.clone(), None),
            None => (None, None, None),
        },
    }
}

/// An `Expires` header value (an HTTP date) as the SDK wants it.
fn http_date(s: &str) -> Option<aws_smithy_types::DateTime> {
    aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::HttpDate).ok()
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> StoreResult<ListPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(continuation)
            .set_max_keys(max_keys)
            // Keys may hold characters XML 1.0 cannot carry (control characters): one
            // such key would make the whole page unparsable. Servers that honour this
            // say so in the answer, and only then are the names decoded.
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| map_err(&format!("list s3://{}/{prefix}", self.bucket), e))?;
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let name = |k: &str| {
            if encoded {
                url_decode(k)
            } else {
                k.to_string()
            }
        };
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectSummary {
                    key: name(o.key()?),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    last_modified: to_system_time(o.last_modified()),
                    storage_class: o.storage_class().map(|c| c.as_str().to_string()),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(name))
            .collect();
        let next_token = if out.is_truncated().unwrap_or(false) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            prefixes,
            next_token,
        })
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.head_at(key, None).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> StoreResult<ObjectMeta> {
        self.head_at(key, Some(version_id)).await
    }

    async fn get_version_range(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> StoreResult<Bytes> {
        self.get_range_at(key, range, None, Some(version_id)).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        marker: Option<(String, String)>,
    ) -> StoreResult<super::VersionPage> {
        let what = format!("list object versions s3://{}/{prefix}", self.bucket);
        let (km, vm) = marker.unzip();
        let r = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_key_marker(km)
            .set_version_id_marker(vm.filter(|v| !v.is_empty()))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        let mut versions: Vec<super::VersionSummary> = r
            .versions()
            .iter()
            .filter_map(|v| {
                Some(super::VersionSummary {
                    key: v.key()?.to_string(),
                    version_id: v.version_id().unwrap_or("null").to_string(),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    etag: v.e_tag().unwrap_or_default().to_string(),
                    last_modified: to_system_time(v.last_modified()),
                    is_latest: v.is_latest().unwrap_or(false),
                    delete_marker: false,
                })
            })
            .collect();
        versions.extend(r.delete_markers().iter().filter_map(|d| {
            Some(super::VersionSummary {
                key: d.key()?.to_string(),
                version_id: d.version_id().unwrap_or("null").to_string(),
                size: 0,
                etag: String::new(),
                last_modified: to_system_time(d.last_modified()),
                is_latest: d.is_latest().unwrap_or(false),
                delete_marker: true,
            })
        }));
        let next = (r.is_truncated() == Some(true))
            .then(|| {
                r.next_key_marker().map(|k| {
                    (
                        k.to_string(),
                        r.next_version_id_marker().unwrap_or_default().to_string(),
                    )
                })
            })
            .flatten();
        Ok(super::VersionPage { versions, next })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        self.get_range_at(key, range, if_match, None).await
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        let what = format!("put s3://{}/{key}", self.bucket);
        let within = self.timeouts.upload(body.len() as u64);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata(&opts.user_metadata))
            .set_tagging(tagging(&opts.tags))
            .set_acl(self.acl.clone());
        let out = with_sse_c!(out, self.sse_c.as_ref());
        let out = with_props!(out, &opts.props, self.sse.as_ref())
            .customize()
            .config_override(self.attempt_within(within))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(object_etag(out.e_tag()))
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let what = format!("create multipart upload s3://{}/{key}", self.bucket);
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(opts.content_type.clone())
            .set_metadata(metadata(&opts.user_metadata))
            .set_tagging(tagging(&opts.tags))
            .set_acl(self.acl.clone());
        let out = with_sse_c!(out, self.sse_c.as_ref());
        let out = with_props!(out, &opts.props, self.sse.as_ref())
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        required(&what, "UploadId", out.upload_id())
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        let what = format!("upload part {number} of s3://{}/{key}", self.bucket);
        let within = self.timeouts.upload(body.len() as u64);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body));
        let out = with_sse_c!(out, self.sse_c.as_ref())
            .customize()
            .config_override(self.attempt_within(within))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        required(&what, "ETag", out.e_tag())
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> StoreResult<String> {
        let what = format!(
            "upload part {number} of s3://{}/{key} (copy of s3://{}/{source} bytes {}-{})",
            self.bucket,
            self.bucket,
            range.start,
            range.end.saturating_sub(1)
        );
        if range.end <= range.start {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRange,
                format!("{what}: empty range"),
            ));
        }
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(copy_source(&self.bucket, source))
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
            .copy_source_if_match(source_etag);
        let out = with_sse_c!(out, self.sse_c.as_ref(), copy_source)
            .customize()
            .config_override(self.attempt_within(self.timeouts.server_work()))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        required(
            &what,
            "ETag",
            out.copy_part_result().and_then(|r| r.e_tag()),
        )
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<String> {
        let what = format!("complete multipart upload s3://{}/{key}", self.bucket);
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(p.number)
                            .e_tag(&p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(upload)
            .customize()
            .config_override(self.attempt_within(self.timeouts.server_work()))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(object_etag(out.e_tag()))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let what = format!("abort multipart upload s3://{}/{key}", self.bucket);
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn list_uploads(&self, prefix: &str) -> StoreResult<Vec<super::PendingUpload>> {
        let what = format!("list multipart uploads s3://{}/{prefix}", self.bucket);
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let r = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| map_err(&what, e))?;
            for u in r.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let initiated = u
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push(super::PendingUpload {
                    key: key.to_string(),
                    upload_id: id.to_string(),
                    initiated,
                });
            }
            let more = r.is_truncated() == Some(true);
            key_marker = r.next_key_marker().map(str::to_string);
            id_marker = r.next_upload_id_marker().map(str::to_string);
            if !more || (key_marker.is_none() && id_marker.is_none()) {
                return Ok(out);
            }
        }
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        source_etag: Option<&str>,
        opts: Option<&PutOptions>,
    ) -> StoreResult<String> {
        let what = format!(
            "copy s3://{}/{source} to s3://{}/{dest}",
            self.bucket, self.bucket
        );
        let req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(dest)
            .copy_source(copy_source(&self.bucket, source))
            .set_copy_source_if_match(source_etag.map(str::to_string))
            .set_acl(self.acl.clone());
        let mut req = with_sse_c!(req, self.sse_c.as_ref(), copy_source);
        req = match opts {
            Some(o) => {
                let req = req
                    .metadata_directive(MetadataDirective::Replace)
                    .set_content_type(o.content_type.clone())
                    .set_metadata(metadata(&o.user_metadata));
                with_props!(req, &o.props, self.sse.as_ref())
            }
            None => {
                // S3 keeps the headers and metadata; the encryption must be asked again.
                let none = Props::default();
                let (sse, key, _) = sse_headers(&none, self.sse.as_ref());
                req.metadata_directive(MetadataDirective::Copy)
                    .set_server_side_encryption(sse.map(ServerSideEncryption::from))
                    .set_ssekms_key_id(key)
            }
        };
        let out = req
            .customize()
            .config_override(self.attempt_within(self.timeouts.server_work()))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(object_etag(
            out.copy_object_result().and_then(|r| r.e_tag()),
        ))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let what = format!("delete s3://{}/{key}", self.bucket);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = map_err(&what, e);
                if err.kind == StoreErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<DeleteFailure>> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let what = match keys {
            [one] => format!("delete s3://{}/{one}", self.bucket),
            _ => format!(
                "delete {} keys from s3://{}/{}",
                keys.len(),
                self.bucket,
                keys.first().map(String::as_str).unwrap_or_default()
            ),
        };
        let invalid = |e: &dyn std::fmt::Display| {
            StoreError::new(StoreErrorKind::Other, format!("{what}: {e}"))
        };
        if keys.is_empty() || keys.len() > super::MAX_DELETE_KEYS {
            return Err(invalid(&format_args!(
                "a DeleteObjects takes 1 to {} keys, not {}",
                super::MAX_DELETE_KEYS,
                keys.len()
            )));
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| invalid(&e))?;
        // DeleteObjects must carry a checksum of its body: the SDK adds one (CRC32)
        // even where checksums are sent only when required (see `connect`).
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(out
            .errors()
            .iter()
            // A missing key is deleted, as S3 itself answers; some servers report it.
            .filter(|e| e.code() != Some("NoSuchKey"))
            .map(|e| DeleteFailure {
                key: e.key().unwrap_or_default().to_string(),
                code: e.code().unwrap_or("UnknownError").to_string(),
                message: e.message().unwrap_or_default().to_string(),
            })
            .collect())
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        let what = format!("get tags of s3://{}/{key}", self.bucket);
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    async fn set_tags(&self, key: &str, tags: &Tags) -> StoreResult<()> {
        if tags.is_empty() {
            let what = format!("delete tags of s3://{}/{key}", self.bucket);
            self.client
                .delete_object_tagging()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| map_err(&what, e))?;
            return Ok(());
        }
        let what = format!("put tags on s3://{}/{key}", self.bucket);
        let set = tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_s3::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("{what}: {e}")))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("{what}: {e}")))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn restore(&self, key: &str, days: u32, tier: Option<&str>) -> StoreResult<()> {
        use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, Tier};
        let what = format!("restore s3://{}/{key}", self.bucket);
        let params = match tier {
            Some(t) => Some(
                GlacierJobParameters::builder()
                    .tier(Tier::from(t))
                    .build()
                    .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("{what}: {e}")))?,
            ),
            None => None,
        };
        let req = RestoreRequest::builder()
            .days(days as i32)
            .set_glacier_job_parameters(params)
            .build();
        self.client
            .restore_object()
            .bucket(&self.bucket)
            .key(key)
            .restore_request(req)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires: Duration,
    ) -> StoreResult<String> {
        let what = format!("presign s3://{}/{key}", self.bucket);
        let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("{what}: {e}")))?;
        let req = match method {
            PresignMethod::Get => self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(cfg)
                .await
                .map_err(|e| map_err(&what, e))?,
            PresignMethod::Put => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(cfg)
                .await
                .map_err(|e| map_err(&what, e))?,
        };
        Ok(req.uri().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_source, same_etag, sse_headers, url_decode, Encryption, S3Config, S3Store};
    use crate::store::{ObjectStore, Props, PutOptions, StoreErrorKind};
    use bytes::Bytes;
    use std::time::Duration;

    /// A store whose endpoint refuses connections (nothing listens on port 1).
    fn refused() -> S3Store {
        let creds = aws_sdk_s3::config::Credentials::new("k", "s", None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .credentials_provider(creds)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: "b".into(),
            timeouts: super::Timeouts::default(),
            credentials: None,
            profile: None,
            sse: None,
            acl: None,
            sse_c: None,
        }
    }

    /// Connection settings for bucket `b` at the test server `url`: one attempt,
    /// unsigned (no credentials needed).
    fn local(url: String) -> S3Config {
        S3Config {
            bucket: "b".into(),
            endpoint_url: Some(url),
            region: Some("us-east-1".into()),
            force_path_style: true,
            max_attempts: 1,
            no_sign_request: true,
            ..Default::default()
        }
    }

    /// A server on 127.0.0.1 that answers every request 200 with no body and records
    /// each request's head (request line and headers, lower-cased).
    async fn recorder() -> (String, std::sync::Arc<parking_lot::Mutex<Vec<String>>>) {
        serve(|_| "HTTP/1.1 200 OK\r\ncontent-length: 0\r\netag: \"e\"\r\n\r\n".to_string()).await
    }

    /// A server on 127.0.0.1 that answers each request with `answer(request head)`.
    async fn serve(
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (String, std::sync::Arc<parking_lot::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = std::sync::Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let log = log.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match c.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            match c.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        let reply = answer(&head);
                        log.lock().push(head);
                        if c.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn an_sse_c_key_goes_with_every_request_on_an_objects_bytes_or_metadata() {
        let (url, seen) = recorder().await;
        let cfg = S3Config {
            sse_c_key: Some([7u8; 32]),
            ..local(url)
        };
        let s = S3Store::connect(&cfg).await;
        let opts = PutOptions::default();
        let _ = s.head("k").await;
        let _ = s.get_range("k", 0..4, None).await;
        let _ = s.put("k", Bytes::from_static(b"x"), &opts).await;
        let _ = s.create_multipart("k", &opts).await;
        let _ = s.upload_part("k", "u", 1, Bytes::from_static(b"x")).await;
        let _ = s.upload_part_copy("k", "u", 2, "src", "\"e\"", 0..4).await;
        let _ = s.copy("src", "k", None, None).await;
        let _ = s.delete("k").await;
        let seen = seen.lock().clone();
        assert_eq!(seen.len(), 8, "{seen:#?}");
        let key = aws_smithy_types::base64::encode([7u8; 32]);
        for r in &seen[..7] {
            assert!(
                r.contains("x-amz-server-side-encryption-customer-algorithm: aes256"),
                "{r}"
            );
            assert!(
                r.contains(&format!(
                    "x-amz-server-side-encryption-customer-key: {}",
                    key.to_ascii_lowercase()
                )),
                "{r}"
            );
        }
        for r in &seen[5..7] {
            assert!(
                r.contains("x-amz-copy-source-server-side-encryption-customer-algorithm: aes256"),
                "copy source key: {r}"
            );
        }
        assert!(!seen[7].contains("customer"), "DeleteObject needs no key");
    }

    #[tokio::test]
    async fn delete_many_is_one_quiet_checksummed_request_and_reads_the_failures() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
            <DeleteResult><Error><Key>locked/a</Key><Code>AccessDenied</Code>\
            <Message>Access Denied</Message></Error>\
            <Error><Key>gone</Key><Code>NoSuchKey</Code><Message>none</Message></Error>\
            </DeleteResult>";
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (url, log) = serve(move |_| reply.clone()).await;
        let s = S3Store::connect(&local(url)).await;
        let keys: Vec<String> = ["ok", "locked/a", "gone"].map(String::from).to_vec();
        let failed = s.delete_many(&keys).await.unwrap();
        assert_eq!(
            failed,
            [crate::store::DeleteFailure {
                key: "locked/a".into(),
                code: "AccessDenied".into(),
                message: "Access Denied".into(),
            }]
        );
        let seen = log.lock().clone();
        assert_eq!(seen.len(), 1, "{seen:#?}");
        assert!(seen[0].starts_with("post /b/?delete"), "{}", seen[0]);
        // S3 refuses a DeleteObjects without a checksum of its body.
        assert!(
            seen[0].contains("x-amz-checksum-") || seen[0].contains("content-md5:"),
            "{}",
            seen[0]
        );
        let too_many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        assert_eq!(
            s.delete_many(&too_many).await.unwrap_err().kind,
            StoreErrorKind::Other
        );
        assert_eq!(log.lock().len(), 1, "no request for more than 1,000 keys");
    }

    #[tokio::test]
    async fn s3_error_codes_map_to_kinds_and_messages_name_key_and_code() {
        fn error(status: u16, code: &str, message: &str) -> String {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            );
            format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        let cases: [(u16, &str, &str, StoreErrorKind); 7] = [
            (403, "AccessDenied", "Access Denied", StoreErrorKind::AccessDenied),
            (403, "InvalidObjectState", "archived", StoreErrorKind::InvalidObjectState),
            (400, "KMS.NotFoundException", "Invalid keyId k1", StoreErrorKind::AccessDenied),
            (400, "KMS.DisabledException", "key is disabled", StoreErrorKind::AccessDenied),
            (
                400,
                "InvalidRequest",
                "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
                StoreErrorKind::AccessDenied,
            ),
            (403, "RequestTimeTooSkewed", "clock", StoreErrorKind::AccessDenied),
            (503, "SlowDown", "Please reduce your request rate.", StoreErrorKind::Transient),
        ];
        for (status, code, message, kind) in cases {
            let reply = error(status, code, message);
            let (url, _) = serve(move |_| reply.clone()).await;
            let s = S3Store::connect(&local(url)).await;
            let e = s.get_range("dir/k", 0..4, None).await.unwrap_err();
            assert_eq!(e.kind, kind, "{status} {code}: {}", e.message);
            assert!(e.message.contains("s3://b/dir/k"), "{}", e.message);
            assert!(e.message.contains(code), "{}", e.message);
            assert!(!e.message.contains(['{', '}']), "{}", e.message);
        }
    }

    #[tokio::test]
    async fn mount_options_put_their_headers_on_every_request() {
        let (url, seen) = recorder().await;
        let cfg = S3Config {
            acl: Some("public-read".into()),
            requester_pays: true,
            expected_bucket_owner: Some("111122223333".into()),
            ..local(url)
        };
        let s = S3Store::connect(&cfg).await;
        let _ = s.head("k").await;
        let _ = s
            .put("k", Bytes::from_static(b"x"), &PutOptions::default())
            .await;
        let _ = s.copy("k", "c", None, None).await;
        let _ = s.list("", Some("/"), None, None).await;
        let _ = s.get_tags("k").await;
        let seen = seen.lock().clone();
        assert_eq!(seen.len(), 5, "{seen:#?}");
        for r in &seen {
            assert!(r.contains("x-amz-request-payer: requester"), "{r}");
            assert!(
                r.contains("x-amz-expected-bucket-owner: 111122223333"),
                "{r}"
            );
            assert!(!r.contains("authorization:"), "unsigned: {r}");
        }
        let put = seen.iter().find(|r| r.starts_with("put /b/k")).unwrap();
        assert!(put.contains("x-amz-acl: public-read"), "{put}");
        let copy = seen.iter().find(|r| r.starts_with("put /b/c")).unwrap();
        assert!(copy.contains("x-amz-acl: public-read"), "{copy}");
        assert!(
            copy.contains("x-amz-source-expected-bucket-owner: 111122223333"),
            "{copy}"
        );
        let head = seen.iter().find(|r| r.starts_with("head ")).unwrap();
        assert!(!head.contains("x-amz-acl"), "{head}");
    }

    #[test]
    fn an_objects_kms_key_wins_over_sse_and_sse_applies_otherwise() {
        let forced = Encryption {
            mode: "aws:kms".into(),
            kms_key_id: Some("mount-key".into()),
        };
        let own = Props {
            sse: Some("aws:kms".into()),
            sse_kms_key_id: Some("own-key".into()),
            bucket_key: Some(true),
            ..Default::default()
        };
        assert_eq!(
            sse_headers(&own, Some(&forced)),
            (Some("aws:kms"), Some("own-key".into()), Some(true))
        );
        let s3 = Props {
            sse: Some("AES256".into()),
            ..Default::default()
        };
        assert_eq!(
            sse_headers(&s3, Some(&forced)),
            (Some("aws:kms"), Some("mount-key".into()), None)
        );
        // Without --sse, SSE-S3 is the bucket's default: no header.
        assert_eq!(sse_headers(&s3, None), (None, None, None));
    }

    /// No Debug dump and no SDK layer names in a message meant for a user.
    fn assert_words(m: &str) {
        for bad in [
            "{ ",
            "}",
            "Some(",
            "DispatchFailure",
            "ConnectorError",
            "Unknown",
        ] {
            assert!(!m.contains(bad), "{bad:?} in {m:?}");
        }
        assert!(!m.contains('\n'), "not one line: {m:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_reported_in_words() {
        let e = refused()
            .list("p/", Some("/"), None, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Unreachable);
        assert_eq!(e.message, "list s3://b/p/: connection refused");
        assert_words(&e.message);
    }

    /// A listener on 127.0.0.1 that accepts connections and never answers; the
    /// connections are kept open while the listener lives.
    fn silent_listener() -> (String, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming().take(8) {
                held.push(c);
            }
        });
        (url, t)
    }

    /// A listener on 127.0.0.1 that never accepts, with its backlog full: a connect
    /// to it gets no answer at all. Returns the URL, the listener and the connection
    /// that fills the queue (both must stay alive).
    fn full_listener() -> (String, std::net::TcpListener, Vec<std::net::TcpStream>) {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen on the listener's own socket, with a backlog of 0.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let addr = l.local_addr().unwrap();
        let mut fill = Vec::new();
        // Connect until one connect gets no answer: the queue is full.
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(c) => fill.push(c),
                Err(_) => break,
            }
            assert!(fill.len() < 64, "the backlog never fills");
        }
        (format!("http://{addr}"), l, fill)
    }

    fn quick(url: String) -> S3Config {
        S3Config {
            timeouts: super::Timeouts {
                connect: Duration::from_secs(1),
                request: Duration::from_millis(1500),
            },
            ..local(url)
        }
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out_per_attempt_as_a_passing_failure() {
        let (url, _t) = silent_listener();
        let s = S3Store::connect(&quick(url)).await;
        let start = std::time::Instant::now();
        let e = s.list("", Some("/"), None, None).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.kind, StoreErrorKind::TimedOut, "{}", e.message);
        assert!(crate::store::retry::is_transient(e.kind));
        assert_eq!(e.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(
            e.message,
            "list s3://b/: no answer within 1.5 s (--request-timeout)"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_words(&e.message);
    }

    #[tokio::test]
    async fn an_endpoint_that_never_accepts_times_out_connecting() {
        let (url, _l, _fill) = full_listener();
        let s = S3Store::connect(&quick(url)).await;
        let start = std::time::Instant::now();
        let e = s.head("k").await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::TimedOut, "{}", e.message);
        assert_eq!(e.timeout, Some(Duration::from_secs(1)));
        assert!(
            e.message
                .ends_with("no answer within 1 s (--connect-timeout)"),
            "{}",
            e.message
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_words(&e.message);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_tls_failure_with_the_ca_bundle_hint() {
        use std::io::{Read, Write};
        // A plain-HTTP server that answers the first bytes it gets (a ClientHello).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let e = S3Store::connect(&local(url))
            .await
            .list("", Some("/"), None, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Unreachable);
        assert!(
            e.message.starts_with("list s3://b/: TLS handshake failed"),
            "{}",
            e.message
        );
        assert!(e.message.contains("--ca-bundle"), "{}", e.message);
        assert_words(&e.message);
    }

    #[tokio::test]
    async fn no_credentials_is_its_own_kind_naming_the_sources_tried() {
        use aws_credential_types::provider::error::CredentialsError;
        let none = aws_credential_types::credential_fn::provide_credentials_fn(|| async {
            Err(CredentialsError::not_loaded(
                "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: not set",
            ))
        });
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .credentials_provider(none)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        let s = S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
            ..refused()
        };
        let e = s.list("", Some("/"), None, None).await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Credentials, "{}", e.message);
        assert!(!crate::store::retry::is_transient(e.kind));
        assert_eq!(
            e.message,
            format!("list s3://b/: {}", super::NO_CREDENTIALS)
        );
        for source in [
            "environment",
            "config and credentials files",
            "SSO",
            "web identity",
            "instance metadata",
        ] {
            assert!(e.message.contains(source), "{source}: {}", e.message);
        }
        assert_words(&e.message);
        // A named profile the provider did not find is said as such.
        let c = CredentialsError::not_loaded(
            "no credentials found in chain. Attempted:\n  Profile: the credential provider was not enabled: profile `nope` was not defined: could not find source profile nope",
        );
        let d = super::describe(&c);
        assert_eq!(d.kind, StoreErrorKind::Credentials);
        assert_eq!(
            d.words,
            "AWS profile \"nope\" not found in the AWS config or credentials files"
        );
    }

    #[test]
    fn a_missing_profile_names_the_files_and_the_profiles_in_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, "[profile work]\nregion = eu-west-1\n[default]\n").unwrap();
        let creds = dir.path().join("no-credentials");
        // The process environment is shared by the tests of this binary: only this
        // test sets these two, and the others do not read them.
        std::env::set_var("AWS_CONFIG_FILE", &config);
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let missing = rt.block_on(super::check_profile("nope")).unwrap_err();
        let found = rt.block_on(super::check_profile("work"));
        std::env::remove_var("AWS_CONFIG_FILE");
        std::env::remove_var("AWS_SHARED_CREDENTIALS_FILE");
        assert!(found.is_ok(), "{found:?}");
        assert_eq!(missing.kind, StoreErrorKind::Credentials);
        assert_eq!(
            missing.message,
            format!(
                "AWS profile \"nope\" not found in {} or {} (missing) (profiles there: default, work)",
                config.display(),
                creds.display()
            )
        );
    }

    /// The error of a one-key listing at a server that answers `status` with the XML
    /// error `body` and `headers` (each ending in CRLF).
    async fn listing_error(status: &str, headers: &str, body: &str) -> crate::store::StoreError {
        let reply = format!(
            "HTTP/1.1 {status}\r\n{headers}content-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (url, _) = serve(move |_| reply.clone()).await;
        S3Store::connect(&local(url))
            .await
            .list("", Some("/"), None, Some(1))
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_wrong_region_names_the_buckets_region() {
        // S3's answer to a request signed for another region than the bucket's: a 301
        // with the bucket's region in a header.
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message><Endpoint>b.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>b</Bucket><RequestId>R</RequestId><HostId>H</HostId></Error>";
        let e = listing_error(
            "301 Moved Permanently",
            "x-amz-bucket-region: eu-west-1\r\n",
            body,
        )
        .await;
        assert_eq!(e.kind, StoreErrorKind::WrongRegion, "{}", e.message);
        assert_eq!(e.region.as_deref(), Some("eu-west-1"));
        assert!(e.message.contains("PermanentRedirect"), "{}", e.message);
        assert_words(&e.message);
        // Or a 400 whose message names it.
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'ap-south-1'</Message><Region>ap-south-1</Region></Error>";
        let e = listing_error("400 Bad Request", "", body).await;
        assert_eq!(e.kind, StoreErrorKind::WrongRegion, "{}", e.message);
        assert_eq!(e.region.as_deref(), Some("ap-south-1"));
    }

    #[test]
    fn the_chain_walk_renders_causes_in_words() {
        #[derive(Debug)]
        struct Layer(
            &'static str,
            Option<Box<dyn std::error::Error + Send + Sync>>,
        );
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let chain = |levels: &[&'static str]| {
            let mut e: Option<Box<dyn std::error::Error + Send + Sync>> = None;
            for l in levels.iter().rev() {
                e = Some(Box::new(Layer(l, e)));
            }
            e.unwrap()
        };
        let refused = chain(&[
            "dispatch failure",
            "io error",
            "client error (Connect)",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(super::describe(&*refused).words, "connection refused");
        // A Debug dump among the levels is left out; multi-line levels become one line.
        let odd = chain(&[
            "dispatch failure",
            "Unknown { source: Some(X) }",
            "first line\n   second line",
        ]);
        assert_eq!(
            super::causes(&*odd),
            "dispatch failure: first line; second line"
        );
        let d = super::describe(&*odd);
        assert_eq!(d.kind, StoreErrorKind::Unreachable);
        assert_eq!(d.words, "first line; second line");
        let dns = chain(&[
            "dispatch failure",
            "io error",
            "client error (Connect)",
            "dns error",
            "failed to lookup address information: Name or service not known",
        ]);
        let d = super::describe(&*dns);
        assert!(
            d.words.starts_with("the host name does not resolve"),
            "{}",
            d.words
        );
        assert_words(&d.words);
        let uri = chain(&[
            "dispatch failure",
            "other",
            "Custom endpoint `x y` was not a valid URI",
        ]);
        let d = super::describe(&*uri);
        assert_eq!(d.kind, StoreErrorKind::Other);
        assert_eq!(
            d.words,
            "invalid endpoint URL: Custom endpoint `x y` was not a valid URI"
        );
        let attempt = chain(&[
            "request has timed out",
            "operation attempt timeout (single attempt) occurred after 250ms",
        ]);
        let d = super::describe(&*attempt);
        assert_eq!(d.kind, StoreErrorKind::TimedOut);
        assert_eq!(d.timeout, Some(Duration::from_millis(250)));
        assert_eq!(d.words, "no answer within 0.25 s (--request-timeout)");
    }

    #[test]
    fn durations_read_and_write() {
        use super::{parse_debug_duration, seconds_text};
        assert_eq!(parse_debug_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_debug_duration("1.5s)"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_debug_duration("250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_debug_duration("3µs"), Some(Duration::from_micros(3)));
        assert_eq!(parse_debug_duration("x"), None);
        assert_eq!(seconds_text(Duration::from_secs(10)), "10 s");
        assert_eq!(seconds_text(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds_text(Duration::from_millis(250)), "0.25 s");
    }

    #[test]
    fn uploads_and_server_side_copies_get_longer_attempts() {
        let t = super::Timeouts::default();
        assert_eq!(t.upload(0), Duration::from_secs(30));
        assert_eq!(t.upload(8 << 20), Duration::from_secs(38));
        assert_eq!(t.upload((8 << 20) + 1), Duration::from_secs(39));
        assert_eq!(t.server_work(), Duration::from_secs(300));
        // The mount-time checks: at most 10 s, or the connect timeout if longer.
        assert_eq!(t.probe().request, Duration::from_secs(10));
        let slow = super::Timeouts {
            connect: Duration::from_secs(20),
            request: Duration::from_secs(60),
        };
        assert_eq!(slow.probe().request, Duration::from_secs(20));
        let short = super::Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(3),
        };
        assert_eq!(short.probe().request, Duration::from_secs(3));
    }

    /// A server on 127.0.0.1, on threads of its own, that answers every request 200
    /// after `delay`.
    fn slow_server(delay: Duration) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match c.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            match c.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        std::thread::sleep(delay);
                        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\netag: \"e\"\r\n\r\n";
                        if c.write_all(ok.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn an_upload_part_waits_longer_than_a_listing() {
        // A server that takes 2 s to answer: longer than the request timeout of 1.5 s,
        // within an upload's (1.5 s + 1 s per MiB).
        let url = slow_server(Duration::from_secs(2));
        let s = S3Store::connect(&quick(url)).await;
        let part = s
            .upload_part("k", "u", 1, Bytes::from(vec![0u8; 1 << 20]))
            .await;
        assert_eq!(part.unwrap(), "\"e\"");
        let e = s.list("", Some("/"), None, None).await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::TimedOut, "{}", e.message);
    }

    #[test]
    fn url_encoded_listing_names_decode() {
        assert_eq!(url_decode("ctrl%01char.txt"), "ctrl\u{1}char.txt");
        assert_eq!(url_decode("with+space%2Bplus"), "with space+plus");
        assert_eq!(url_decode("caf%C3%A9/%E6%97%A5"), "caf\u{e9}/\u{65e5}");
        assert_eq!(url_decode("new%0Aline"), "new\nline");
        // Not an escape: kept as it is.
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("50%zz"), "50%zz");
        assert_eq!(url_decode("a%2"), "a%2");
    }

    #[test]
    fn etags_compare_across_quoting_and_weakness() {
        assert!(same_etag("\"abc\"", "abc"));
        assert!(same_etag("W/\"abc\"", "\"abc\""));
        assert!(!same_etag("\"abc\"", "\"abd\""));
        assert!(!same_etag("\"abc-2\"", "\"abc\""));
    }

    #[test]
    fn copy_source_percent_encodes_the_key() {
        assert_eq!(copy_source("b", "dir/file.txt"), "b/dir/file.txt");
        assert_eq!(copy_source("b", "a b+c"), "b/a%20b%2Bc");
        assert_eq!(copy_source("b", "100%/x"), "b/100%25/x");
        assert_eq!(
            copy_source("b", "caf\u{e9}/\u{65e5}"),
            "b/caf%C3%A9/%E6%97%A5"
        );
        assert_eq!(copy_source("b", "-_.~AZaz09"), "b/-_.~AZaz09");
        assert_eq!(copy_source("b", "q?x=1&y#z"), "b/q%3Fx%3D1%26y%23z");
    }
}
