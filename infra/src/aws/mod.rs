//! The AWS backend: S3 blobs, DynamoDB index and provenance, SQS queues and
//! CloudWatch metrics through the AWS SDK for Rust (feature `aws`).
//!
//! May touch: AWS (or whatever `AWS_ENDPOINT_URL` points at). No
//! `aws_sdk_*` type leaves this module: callers get the ports.
//!
//! - Region, credentials and endpoints come from the standard chain
//!   (`aws_config::defaults`): environment, shared profile, web identity,
//!   ECS task role, EC2 instance role. `AWS_ENDPOINT_URL` (all services) and
//!   `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`, … are honoured by
//!   aws-config itself; with an S3 endpoint override S3 uses path-style
//!   addressing (emulators serve no per-bucket host names).
//! - Resource names come from [`Config`]; [`connect`] does no I/O (queue URLs
//!   are resolved on first use), so opening the backend is free for a CLI
//!   call that touches one port.
//! - [`bootstrap`] creates every resource idempotently for development and
//!   emulators; production resources come from terraform/.
//!
//! | port | adapter |
//! |---|---|
//! | `BlobStore` | [`S3BlobStore`] |
//! | `CacheIndex` | [`DynamoCacheIndex`] |
//! | `ProvenanceStore` | [`DynamoProvenanceStore`] |
//! | `EventQueue` | [`SqsEventQueue`] |
//! | `MetricsSink` | [`CloudWatchMetricsSink`] |

mod bootstrap;
mod cloudwatch_metrics;
mod dynamo_index;
mod dynamo_provenance;
mod error;
mod s3_blob;
mod sqs_queue;

use std::{sync::Arc, time::Duration};

use aws_config::{
    retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, ConfigLoader, SdkConfig,
};

pub use bootstrap::{bootstrap, bootstrap_with, BootstrapItem, BootstrapOutcome, BootstrapReport};
pub use cloudwatch_metrics::CloudWatchMetricsSink;
pub use dynamo_index::DynamoCacheIndex;
pub use dynamo_provenance::DynamoProvenanceStore;
pub use s3_blob::{IncompleteUpload, S3BlobStore, TransferConfig, TransferCounters};
pub use sqs_queue::SqsEventQueue;

use crate::{Backend, BackendKind, Config, StoreError, SystemClock};

/// Attempts per SDK call (the first try included).
pub const MAX_ATTEMPTS: u32 = 5;

/// aws-config's default loader with runcache's client settings. Callers may
/// override anything on it (tests set the endpoint, region and credentials
/// explicitly) before `.load()`.
///
/// Retries: the SDK's *standard* retry mode retries throttling errors,
/// transient errors (5xx, timeouts, dropped connections) and nothing else,
/// with jittered exponential backoff and a client-side retry quota; a 4xx
/// that cannot succeed (validation, access denied, missing resource, failed
/// condition) is returned at once. Adapters add no retries of their own.
pub fn loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        // Connecting is quick or never; reads are not bounded here because
        // SQS long polls legitimately take 20 s and S3 bodies stream.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .build(),
        )
}

/// The one client per service every adapter shares.
#[derive(Debug, Clone)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Clients {
    pub fn new(sdk: &SdkConfig) -> Self {
        let mut s3 = aws_sdk_s3::config::Builder::from(sdk)
            // Uploads are verified end to end by SHA-256 (the CAS) and each
            // request's payload is SigV4-signed, which S3 checks; extra CRC
            // trailers add nothing and some S3-compatible endpoints (moto)
            // mishandle them. Checksums that S3 requires are still sent.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
        if s3_endpoint_overridden(sdk) {
            s3 = s3.force_path_style(true);
        }
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        }
    }
}

/// Whether S3 requests go to an endpoint other than AWS's: the global
/// override or an S3-specific one (env `AWS_ENDPOINT_URL_S3` or the
/// profile's `services` section), resolved as the S3 client resolves it.
fn s3_endpoint_overridden(sdk: &SdkConfig) -> bool {
    if sdk.endpoint_url().is_some() {
        return true;
    }
    let Ok(key) = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
    else {
        return false;
    };
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .is_some()
}

/// Loads the standard AWS configuration (see [`loader`]).
pub async fn load_sdk_config() -> SdkConfig {
    loader().load().await
}

/// The AWS backend for `config`, from the standard AWS configuration.
pub async fn connect(config: &Config) -> Result<Backend, StoreError> {
    connect_with(&load_sdk_config().await, config)
}

/// The AWS backend for `config` on an explicit SDK configuration. Does no
/// I/O: a missing resource shows on first use, with what to do about it.
pub fn connect_with(sdk: &SdkConfig, config: &Config) -> Result<Backend, StoreError> {
    if sdk.region().is_none() {
        return Err(StoreError::Invalid {
            what: "AWS region".into(),
            reason: "none is configured; set AWS_REGION (or `region` in the AWS profile)".into(),
        });
    }
    let clients = Clients::new(sdk);
    let queue = |name: String| -> Arc<dyn crate::EventQueue> {
        Arc::new(SqsEventQueue::new(clients.sqs.clone(), name))
    };
    Ok(Backend {
        kind: BackendKind::Aws,
        blobs: Arc::new(S3BlobStore::new(clients.s3.clone(), config.bucket())),
        index: Arc::new(DynamoCacheIndex::new(
            clients.dynamodb.clone(),
            config.index_table(),
        )),
        provenance: Arc::new(DynamoProvenanceStore::new(
            clients.dynamodb.clone(),
            config.provenance_table(),
        )),
        metrics: Arc::new(CloudWatchMetricsSink::new(
            clients.cloudwatch.clone(),
            config.metrics_namespace(),
        )),
        staged: queue(config.staged_queue()),
        accessed: queue(config.accessed_queue()),
        invalidate: queue(config.invalidate_queue()),
        clock: Arc::new(SystemClock),
    })
}

/// The region the clients use, for messages and ARNs.
fn region_of(conf_region: Option<&aws_config::Region>) -> String {
    conf_region
        .map(|r| r.as_ref().to_string())
        .unwrap_or_else(|| "*".into())
}
