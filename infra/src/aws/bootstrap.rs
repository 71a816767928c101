//! `runcache admin bootstrap`: creates every AWS resource the backend needs,
//! idempotently, for development accounts and emulators (moto). Production
//! accounts get the same resources, plus IAM, alarms and dashboards, from
//! terraform/; both must agree on names, keys and indexes.
//!
//! What is created, each only if absent (an existing resource is reported
//! as present and left as it is, so bootstrap never fights terraform):
//! - the bucket, with lifecycle rules: abort incomplete multipart uploads
//!   after 1 day, expire `staging/` after 1 day and `quarantine/` after 30;
//! - the index table (`pk`/`sk`, GSIs `repository-toolchain-index` and
//!   `lockfileHash-index` projecting ALL, TTL on `ttl`) and the provenance
//!   table (`contentHash`/`uploadId`), both on-demand;
//! - each queue's DLQ (14 days' retention), then the queue with a
//!   RedrivePolicy to it, `maxReceiveCount` = `config.max_receives`.

use std::{fmt, time::Duration};

use aws_sdk_dynamodb::{
    client::Waiters as _,
    types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    },
};
use aws_sdk_s3::{
    client::Waiters as _,
    types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
        CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    },
};
use aws_sdk_sqs::types::QueueAttributeName;
use backon::{ExponentialBuilder, Retryable};

use super::{
    dynamo_index::attrs as index,
    dynamo_provenance::attrs as provenance,
    error::{code, map_sdk_error},
    Clients,
};
use crate::{
    names::{self, index_attrs},
    Config, StoreError,
};

/// How long to wait for a new table or bucket to become usable.
const READY_WAIT: Duration = Duration::from_secs(300);
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapOutcome {
    Created,
    AlreadyPresent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapItem {
    /// `S3 bucket`, `DynamoDB table`, `SQS queue`.
    pub kind: &'static str,
    pub name: String,
    pub outcome: BootstrapOutcome,
}

/// What bootstrap found and did, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapReport {
    pub items: Vec<BootstrapItem>,
}

impl BootstrapReport {
    pub fn created(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.outcome == BootstrapOutcome::Created)
            .count()
    }

    /// True when nothing had to be created.
    pub fn all_present(&self) -> bool {
        self.created() == 0
    }

    fn push(&mut self, kind: &'static str, name: &str, outcome: BootstrapOutcome) {
        tracing::info!(kind, name, ?outcome, "bootstrap");
        self.items.push(BootstrapItem {
            kind,
            name: name.to_string(),
            outcome,
        });
    }
}

impl fmt::Display for BootstrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            let what = match item.outcome {
                BootstrapOutcome::Created => "created",
                BootstrapOutcome::AlreadyPresent => "already present",
            };
            writeln!(f, "{:<15} {:<55} {what}", item.kind, item.name)?;
        }
        write!(
            f,
            "{} created, {} already present",
            self.created(),
            self.items.len() - self.created()
        )
    }
}

/// Creates what `config` names, from the standard AWS configuration.
pub async fn bootstrap(config: &Config) -> Result<BootstrapReport, StoreError> {
    let sdk = super::load_sdk_config().await;
    bootstrap_with(&Clients::new(&sdk), config).await
}

/// Creates what `config` names with the given clients.
#[tracing::instrument(skip_all, fields(stage = %config.stage))]
pub async fn bootstrap_with(
    clients: &Clients,
    config: &Config,
) -> Result<BootstrapReport, StoreError> {
    let mut report = BootstrapReport::default();
    bucket(clients, &config.bucket(), &mut report).await?;
    let index_table = config.index_table();
    let provenance_table = config.provenance_table();
    let index_created = table(clients, &index_table, index_table_spec(), &mut report).await?;
    table(
        clients,
        &provenance_table,
        provenance_table_spec(),
        &mut report,
    )
    .await?;
    if index_created {
        clients
            .dynamodb
            .update_time_to_live()
            .table_name(&index_table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(index_attrs::TTL)
                    .enabled(true)
                    .build()
                    .map_err(|e| StoreError::backend("building a TTL specification", e))?,
            )
            .send()
            .await
            .map_err(|e| table_error(e, "dynamodb:UpdateTimeToLive", &index_table))?;
    }
    for queue_name in [
        config.staged_queue(),
        config.accessed_queue(),
        config.invalidate_queue(),
    ] {
        queue(clients, &queue_name, config.max_receives, &mut report).await?;
    }
    Ok(report)
}

async fn bucket(
    clients: &Clients,
    name: &str,
    report: &mut BootstrapReport,
) -> Result<(), StoreError> {
    let s3 = &clients.s3;
    let arn = format!("arn:aws:s3:::{name}");
    match s3.head_bucket().bucket(name).send().await {
        Ok(_) => {
            report.push("S3 bucket", name, BootstrapOutcome::AlreadyPresent);
            return Ok(());
        }
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => {}
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(403) => {
            return Err(StoreError::Invalid {
                what: format!("bucket name `{name}`"),
                reason: "it exists but this account may not use it (bucket names are global); \
                         set RUNCACHE_BUCKET or RUNCACHE_STAGE to pick another"
                    .into(),
            })
        }
        Err(e) => return Err(map_sdk_error(e, "s3:ListBucket", &arn)),
    }
    let region = s3.config().region().map(|r| r.as_ref().to_string());
    let mut create = s3.create_bucket().bucket(name);
    // us-east-1 is the one region that takes no location constraint.
    if let Some(region) = region.filter(|r| r != "us-east-1") {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(e) if code(&e) == Some("BucketAlreadyOwnedByYou") => {
            report.push("S3 bucket", name, BootstrapOutcome::AlreadyPresent);
            return Ok(());
        }
        Err(e) if code(&e) == Some("BucketAlreadyExists") => {
            return Err(StoreError::Invalid {
                what: format!("bucket name `{name}`"),
                reason: "another AWS account owns it (bucket names are global); set \
                         RUNCACHE_BUCKET or RUNCACHE_STAGE to pick another"
                    .into(),
            })
        }
        Err(e) => return Err(map_sdk_error(e, "s3:CreateBucket", &arn)),
    }
    s3.wait_until_bucket_exists()
        .bucket(name)
        .wait(READY_WAIT)
        .await
        .map_err(|e| StoreError::Unavailable {
            what: format!("new bucket `{name}`"),
            reason: format!("did not become ready: {e}"),
        })?;
    let rule = |id: &str, prefix: &str| {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
    };
    let lifecycle = BucketLifecycleConfiguration::builder()
        .rules(
            rule("abort-incomplete-uploads", "")
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(1)
                        .build(),
                )
                .build()
                .map_err(|e| StoreError::backend("building a lifecycle rule", e))?,
        )
        .rules(
            rule("expire-staging", names::STAGING_PREFIX)
                .expiration(LifecycleExpiration::builder().days(1).build())
                .build()
                .map_err(|e| StoreError::backend("building a lifecycle rule", e))?,
        )
        .rules(
            rule("expire-quarantine", names::QUARANTINE_PREFIX)
                .expiration(LifecycleExpiration::builder().days(30).build())
                .build()
                .map_err(|e| StoreError::backend("building a lifecycle rule", e))?,
        )
        .build()
        .map_err(|e| StoreError::backend("building a lifecycle configuration", e))?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(lifecycle)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, "s3:PutLifecycleConfiguration", &arn))?;
    report.push("S3 bucket", name, BootstrapOutcome::Created);
    Ok(())
}

/// A table's keys and indexes.
struct TableSpec {
    hash: &'static str,
    range: &'static str,
    /// Extra string attributes that key a GSI.
    gsi_attributes: Vec<&'static str>,
    /// (name, hash key, range key)
    gsis: Vec<(&'static str, &'static str, Option<&'static str>)>,
}

fn index_table_spec() -> TableSpec {
    TableSpec {
        hash: index_attrs::PARTITION_KEY,
        range: index_attrs::SORT_KEY,
        gsi_attributes: vec![index::REPOSITORY, index::TOOLCHAIN, index::LOCKFILE_HASH],
        gsis: vec![
            (
                index_attrs::REPOSITORY_TOOLCHAIN_INDEX,
                index::REPOSITORY,
                Some(index::TOOLCHAIN),
            ),
            (index_attrs::LOCKFILE_INDEX, index::LOCKFILE_HASH, None),
        ],
    }
}

fn provenance_table_spec() -> TableSpec {
    TableSpec {
        hash: provenance::CONTENT_HASH,
        range: provenance::UPLOAD_ID,
        gsi_attributes: vec![],
        gsis: vec![],
    }
}

fn table_error<E>(
    err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    action: &str,
    table: &str,
) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    map_sdk_error(err, action, &format!("table/{table}"))
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| StoreError::backend("building a key schema", e))
}

/// Creates the table if absent; true if it did.
async fn table(
    clients: &Clients,
    name: &str,
    spec: TableSpec,
    report: &mut BootstrapReport,
) -> Result<bool, StoreError> {
    let db = &clients.dynamodb;
    match db.describe_table().table_name(name).send().await {
        Ok(_) => {
            report.push("DynamoDB table", name, BootstrapOutcome::AlreadyPresent);
            return Ok(false);
        }
        Err(e) if code(&e) == Some("ResourceNotFoundException") => {}
        Err(e) => return Err(table_error(e, "dynamodb:DescribeTable", name)),
    }
    let mut create = db
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(spec.hash, KeyType::Hash)?)
        .key_schema(key(spec.range, KeyType::Range)?);
    for attr in [spec.hash, spec.range]
        .into_iter()
        .chain(spec.gsi_attributes)
    {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::backend("building an attribute definition", e))?,
        );
    }
    for (index_name, hash, range) in spec.gsis {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(index_name)
            .key_schema(key(hash, KeyType::Hash)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            );
        if let Some(range) = range {
            gsi = gsi.key_schema(key(range, KeyType::Range)?);
        }
        create = create.global_secondary_indexes(
            gsi.build()
                .map_err(|e| StoreError::backend("building an index", e))?,
        );
    }
    match create.send().await {
        Ok(_) => {}
        // Created by someone else since we looked.
        Err(e) if code(&e) == Some("ResourceInUseException") => {
            report.push("DynamoDB table", name, BootstrapOutcome::AlreadyPresent);
            return Ok(false);
        }
        Err(e) => return Err(table_error(e, "dynamodb:CreateTable", name)),
    }
    db.wait_until_table_exists()
        .table_name(name)
        .wait(READY_WAIT)
        .await
        .map_err(|e| StoreError::Unavailable {
            what: format!("new table `{name}`"),
            reason: format!("did not become active: {e}"),
        })?;
    report.push("DynamoDB table", name, BootstrapOutcome::Created);
    Ok(true)
}

/// Creates `name`'s DLQ and then `name` (with its redrive policy), each if
/// absent.
async fn queue(
    clients: &Clients,
    name: &str,
    max_receives: u32,
    report: &mut BootstrapReport,
) -> Result<(), StoreError> {
    let dlq = names::dlq(name);
    let dlq_url = ensure_queue(
        clients,
        &dlq,
        vec![(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECS.to_string(),
        )],
        report,
    )
    .await?;
    let sqs = &clients.sqs;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, "sqs:GetQueueAttributes", &dlq))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| StoreError::backend(format!("SQS queue `{dlq}`"), "it has no QueueArn"))?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receives,
    })
    .to_string();
    ensure_queue(
        clients,
        name,
        vec![(QueueAttributeName::RedrivePolicy, redrive)],
        report,
    )
    .await?;
    Ok(())
}

/// The queue's URL, creating it with `attributes` if absent.
async fn ensure_queue(
    clients: &Clients,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
    report: &mut BootstrapReport,
) -> Result<String, StoreError> {
    let sqs = &clients.sqs;
    let lookup = || async { sqs.get_queue_url().queue_name(name).send().await };
    let missing = |e: &aws_sdk_sqs::error::SdkError<_, _>| {
        matches!(
            code(e),
            Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
        )
    };
    match lookup().await {
        Ok(out) => {
            report.push("SQS queue", name, BootstrapOutcome::AlreadyPresent);
            return Ok(out.queue_url.unwrap_or_default());
        }
        Err(e) if missing(&e) => {}
        Err(e) => return Err(map_sdk_error(e, "sqs:GetQueueUrl", name)),
    }
    sqs.create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.into_iter().collect()))
        .send()
        .await
        .map_err(|e| map_sdk_error(e, "sqs:CreateQueue", name))?;
    // A new queue can take a moment to be visible everywhere; the SDK has
    // no waiter for queues.
    let out = lookup
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(12)
                .with_jitter(),
        )
        .when(missing)
        .await
        .map_err(|e| map_sdk_error(e, "sqs:GetQueueUrl", name))?;
    report.push("SQS queue", name, BootstrapOutcome::Created);
    Ok(out.queue_url.unwrap_or_default())
}
