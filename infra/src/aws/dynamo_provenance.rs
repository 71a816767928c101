//! `DynamoProvenanceStore`: provenance records in a DynamoDB table with hash
//! key `contentHash` (`sha256:…`) and range key `uploadId`. The record is
//! kept whole as JSON in `doc`, beside `promotedAt` (RFC 3339, µs),
//! `cacheKey` and `repository` for people reading the table.
//!
//! `put` is a conditional PutItem (`attribute_not_exists`): the first record
//! of an upload stays, a second write of it is a no-op. `get` is one Query
//! (all pages), ordered by promotion time client-side.

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    types::AttributeValue,
    Client,
};
use chrono::SecondsFormat;
use runcache_schemas::{ContentHash, ProvenanceRecord};

use super::error::{code, dynamodb_error};
use crate::{provenance::ProvenanceStore, StoreError};

/// The table's key and attribute names.
pub(crate) mod attrs {
    pub const CONTENT_HASH: &str = "contentHash";
    pub const UPLOAD_ID: &str = "uploadId";
    pub const PROMOTED_AT: &str = "promotedAt";
    pub const CACHE_KEY: &str = "cacheKey";
    pub const REPOSITORY: &str = "repository";
    pub const DOC: &str = "doc";
}
use attrs::*;

#[derive(Debug, Clone)]
pub struct DynamoProvenanceStore {
    client: Client,
    table: String,
}

impl DynamoProvenanceStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The one place DynamoDB errors become [`StoreError`]s.
    fn error<E>(&self, action: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        dynamodb_error(
            err,
            action,
            &self.client,
            &self.table,
            "RUNCACHE_PROVENANCE_TABLE",
        )
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[async_trait]
impl ProvenanceStore for DynamoProvenanceStore {
    #[tracing::instrument(skip_all, fields(table = %self.table, content_hash = %record.content_hash, upload_id = %record.upload_id))]
    async fn put(&self, record: &ProvenanceRecord) -> Result<(), StoreError> {
        let doc = serde_json::to_string(record)
            .map_err(|e| StoreError::backend("encoding a provenance record", e))?;
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(CONTENT_HASH, s(record.content_hash.as_str()))
            .item(UPLOAD_ID, s(&record.upload_id))
            .item(
                PROMOTED_AT,
                s(record
                    .promoted_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true)),
            )
            .item(CACHE_KEY, s(&record.cache_key))
            .item(REPOSITORY, s(&record.scope.repository))
            .item(DOC, s(doc))
            .condition_expression("attribute_not_exists(#h)")
            .expression_attribute_names("#h", CONTENT_HASH)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(self.error("dynamodb:PutItem", e)),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, content_hash = %hash))]
    async fn get(&self, hash: &ContentHash) -> Result<Vec<ProvenanceRecord>, StoreError> {
        let mut records: Vec<ProvenanceRecord> = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#h = :h")
                .expression_attribute_names("#h", CONTENT_HASH)
                .expression_attribute_values(":h", s(hash.as_str()))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.error("dynamodb:Query", e))?;
            for item in page.items() {
                let doc = item
                    .get(DOC)
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| StoreError::backend("a provenance item", "it has no `doc`"))?;
                records.push(
                    serde_json::from_str(doc)
                        .map_err(|e| StoreError::backend("decoding a provenance record", e))?,
                );
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        records.sort_by(|a, b| {
            a.promoted_at
                .cmp(&b.promoted_at)
                .then_with(|| a.upload_id.cmp(&b.upload_id))
        });
        Ok(records)
    }
}
