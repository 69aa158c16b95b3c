//! The account side of S3 for `--all-buckets`: ListBuckets, CreateBucket and
//! DeleteBucket with the mount's client, and one store per bucket, signed for the
//! region the bucket reports (HeadBucket's `x-amz-bucket-region`, asked once per
//! bucket). Every request is counted with the mount's other requests.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use tracing::info;

use super::account::{BucketInfo, Buckets};
use super::counting::{CountingStore, Op, RequestStats};
use super::s3::{map_err, no_answer, to_system_time, S3Config, S3Store};
use super::{ObjectStore, StoreResult};

/// The buckets of the account the mount's credentials belong to.
pub struct S3Buckets {
    cfg: S3Config,
    /// The mount's client, signed for the mount's region.
    base: S3Store,
    stats: Arc<RequestStats>,
}

impl S3Buckets {
    /// `cfg` without a bucket; `base` is a client built from it.
    pub fn new(cfg: S3Config, base: S3Store, stats: Arc<RequestStats>) -> Self {
        S3Buckets { cfg, base, stats }
    }

    fn region(&self) -> Option<String> {
        self.base.region()
    }
}

#[async_trait]
impl Buckets for S3Buckets {
    async fn list_buckets(&self) -> StoreResult<Vec<BucketInfo>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = self
                .base
                .client()
                .list_buckets()
                .set_continuation_token(token.clone());
            let out = self
                .stats
                .count(Op::ListBuckets, "", async {
                    req.send().await.map_err(|e| map_err("list buckets", e))
                })
                .await?;
            all.extend(out.buckets().iter().filter_map(|b| {
                Some(BucketInfo {
                    name: b.name()?.to_string(),
                    created: b.creation_date().map(|d| to_system_time(Some(d))),
                })
            }));
            match out.continuation_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(all)
    }

    async fn create_bucket(&self, name: &str) -> StoreResult<()> {
        let mut req = self.base.client().create_bucket().bucket(name);
        // us-east-1 is the default location, and S3 refuses it named.
        if let Some(r) = self.region().filter(|r| r != "us-east-1") {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r.as_str()))
                    .build(),
            );
        }
        let what = format!("create bucket {name}");
        let r = self
            .stats
            .count(Op::CreateBucket, name, async {
                req.send().await.map(|_| ()).map_err(|e| {
                    let owned = e
                        .as_service_error()
                        .is_some_and(|s| s.is_bucket_already_owned_by_you());
                    (owned, map_err(&what, e))
                })
            })
            .await;
        match r {
            Ok(()) | Err((true, _)) => {
                info!(
                    bucket = name,
                    region = self.region().as_deref().unwrap_or("default"),
                    "created bucket"
                );
                Ok(())
            }
            Err((false, e)) => Err(e),
        }
    }

    async fn delete_bucket(&self, name: &str) -> StoreResult<()> {
        let req = self.base.client().delete_bucket().bucket(name);
        self.stats
            .count(Op::DeleteBucket, name, async {
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| map_err(&format!("delete bucket {name}"), e))
            })
            .await?;
        info!(bucket = name, "deleted bucket");
        Ok(())
    }

    async fn open(&self, name: &str) -> StoreResult<Arc<dyn ObjectStore>> {
        let probe = self.base.for_bucket(name);
        let found = self
            .stats
            .count(Op::HeadBucket, name, probe.bucket_region())
            .await;
        let store = match found {
            Ok(Some(r)) if Some(&r) != self.region().as_ref() => {
                info!(bucket = name, region = %r, "using the bucket's region");
                let cfg = S3Config {
                    bucket: name.to_string(),
                    region: Some(r),
                    ..self.cfg.clone()
                };
                S3Store::connect(&cfg).await
            }
            Ok(_) => probe,
            Err(e) if no_answer(e.kind) => return Err(e),
            Err(_) => probe,
        };
        Ok(Arc::new(CountingStore::with_stats(
            store,
            self.stats.clone(),
        )))
    }
}
