//! `DynamoCacheIndex`: the cache index in one DynamoDB table.
//!
//! # Item layout
//!
//! | item | `pk` | `sk` | `kind` |
//! |---|---|---|---|
//! | an entry | `{repository}#{gitRef}#{cacheVersion}` | cache key | `entry` |
//! | an audit record | `audit#{repository}` | `{at, µs since epoch, 20 digits}#{auditId}` | `audit` |
//! | an audit id (dedup) | `audit-id#{repository}` | audit id | `audit-id` |
//!
//! So restore's lookups are one GetItem (exact key) and one Query (`pk = :pk
//! AND begins_with(sk, :prefix)`) per scope, and an audit log is one Query
//! read backwards. GitHub repository names hold no `#`, and versions are hex,
//! so the partition key is unambiguous.
//!
//! An entry item keeps the whole [`IndexEntry`] as JSON in `doc` (the
//! record as inserted) plus attributes:
//! - for queries and GSIs: `repository`, `gitRef`, `cacheVersion`,
//!   `cacheKey`, `contentHash`, `s3Key`, `sizeBytes`, `trust`,
//!   `toolchain` (GSI `repository-toolchain-index`; `-` when the entry has
//!   none, because DynamoDB refuses an empty string as an index key and a
//!   missing one would drop the entry from the index) and `lockfileHash`
//!   (GSI `lockfileHash-index`; absent when none, so the index is sparse);
//! - `createdAt` (RFC 3339, ns, UTC: fixed width, sorts as text; nanoseconds because handlers compare stored times with the ones they wrote) and `ttl` (epoch
//!   seconds, a Number: DynamoDB TTL deletes the item after it);
//! - the **mutable** fields, which are authoritative over `doc`:
//!   `state`, `lastAccessed`, `accessCount`, `invalidatedAt`, `reason`,
//!   `invalidatedBy`. Updates touch only these, atomically, with condition
//!   expressions; reads overlay them on `doc`.
//!
//! Both GSIs project ALL attributes (terraform/ must do the same), so a
//! query by repository or lockfile is one Query and no GetItems. GSIs are
//! eventually consistent: an entry inserted a moment ago may be missing from
//! `by_repository`/`by_lockfile` for a moment (not from `get`/`find_prefix`,
//! which read the table with strong consistency).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    operation::{
        put_item::PutItemError, transact_write_items::TransactWriteItemsError,
        update_item::UpdateItemError,
    },
    types::{
        AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
        TransactWriteItem,
    },
    Client,
};
use chrono::{DateTime, SecondsFormat, Utc};
use runcache_schemas::{AuditRecord, EntryState, IndexEntry, Scope};

use super::error::dynamodb_error;
use crate::{
    index::{CacheIndex, EntryPage, InsertOutcome, StateChange},
    names::index_attrs::{
        LOCKFILE_INDEX, PARTITION_KEY, REPOSITORY_TOOLCHAIN_INDEX, SORT_KEY, TTL,
    },
    StoreError,
};

/// Attribute names besides those in [`crate::names::index_attrs`].
pub(crate) mod attrs {
    pub const KIND: &str = "kind";
    pub const DOC: &str = "doc";
    pub const REPOSITORY: &str = "repository";
    pub const GIT_REF: &str = "gitRef";
    pub const CACHE_VERSION: &str = "cacheVersion";
    pub const CACHE_KEY: &str = "cacheKey";
    pub const CONTENT_HASH: &str = "contentHash";
    pub const S3_KEY: &str = "s3Key";
    pub const SIZE_BYTES: &str = "sizeBytes";
    pub const TRUST: &str = "trust";
    pub const TOOLCHAIN: &str = "toolchain";
    pub const LOCKFILE_HASH: &str = "lockfileHash";
    pub const STATE: &str = "state";
    pub const CREATED_AT: &str = "createdAt";
    pub const LAST_ACCESSED: &str = "lastAccessed";
    /// Seconds the record lives after its last access (`ttl` minus
    /// `createdAt` at insertion): `record_access` sets `ttl` to the access
    /// time plus this, in the same update.
    pub const LIFETIME: &str = "lifetimeSeconds";
    pub const ACCESS_COUNT: &str = "accessCount";
    pub const INVALIDATED_AT: &str = "invalidatedAt";
    pub const REASON: &str = "reason";
    pub const INVALIDATED_BY: &str = "invalidatedBy";
    pub const AT: &str = "at";
    pub const AUDIT_ID: &str = "auditId";
}
use attrs::*;

const KIND_ENTRY: &str = "entry";
const KIND_AUDIT: &str = "audit";
const KIND_AUDIT_ID: &str = "audit-id";
/// Stands for "no toolchain" in the `toolchain` index key.
const NO_TOOLCHAIN: &str = "-";
/// Inserts retried when a conditional put races a removal.
const INSERT_ATTEMPTS: usize = 5;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoCacheIndex {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn get_time(item: &Item, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get_s(item, name)
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StoreError::backend(format!("attribute `{name}` = `{t}`"), e))
        })
        .transpose()
}

pub(crate) fn partition_key(repository: &str, git_ref: &str, version: &str) -> String {
    format!("{repository}#{git_ref}#{version}")
}

fn toolchain_key(toolchain: &str) -> &str {
    if toolchain.is_empty() {
        NO_TOOLCHAIN
    } else {
        toolchain
    }
}

fn entry_item(e: &IndexEntry) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(e)
        .map_err(|err| StoreError::backend("encoding an index entry", err))?;
    let mut item: Item = [
        (
            PARTITION_KEY,
            s(partition_key(&e.repository, &e.git_ref, &e.cache_version)),
        ),
        (SORT_KEY, s(&e.cache_key)),
        (KIND, s(KIND_ENTRY)),
        (DOC, s(doc)),
        (REPOSITORY, s(&e.repository)),
        (GIT_REF, s(&e.git_ref)),
        (CACHE_VERSION, s(&e.cache_version)),
        (CACHE_KEY, s(&e.cache_key)),
        (CONTENT_HASH, s(e.content_hash.as_str())),
        (S3_KEY, s(&e.s3_key)),
        (SIZE_BYTES, n(e.size_bytes)),
        (TRUST, s(e.trust.as_str())),
        (TOOLCHAIN, s(toolchain_key(&e.toolchain))),
        (STATE, s(e.state.as_str())),
        (CREATED_AT, s(time(e.created_at))),
        (LAST_ACCESSED, s(time(e.last_accessed))),
        (ACCESS_COUNT, n(e.access_count)),
        (TTL, n(e.ttl)),
        (LIFETIME, n(e.ttl - e.created_at.timestamp())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(lock) = e.lockfile_hash.as_deref().filter(|l| !l.is_empty()) {
        item.insert(LOCKFILE_HASH.into(), s(lock));
    }
    if let Some(at) = e.invalidated_at {
        item.insert(INVALIDATED_AT.into(), s(time(at)));
    }
    if let Some(reason) = &e.reason {
        item.insert(REASON.into(), s(reason));
    }
    if let Some(by) = &e.invalidated_by {
        item.insert(INVALIDATED_BY.into(), s(by));
    }
    Ok(item)
}

fn parse_state(s: &str) -> Result<EntryState, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| StoreError::backend(format!("entry state `{s}`"), e))
}

/// The entry an item holds: `doc` with the mutable attributes laid over it.
fn entry_of(item: &Item) -> Result<IndexEntry, StoreError> {
    let doc = get_s(item, DOC)
        .ok_or_else(|| StoreError::backend("an index item", "it has no `doc` attribute"))?;
    let mut e: IndexEntry = serde_json::from_str(doc)
        .map_err(|err| StoreError::backend("decoding an index entry", err))?;
    if let Some(state) = get_s(item, STATE) {
        e.state = parse_state(state)?;
    }
    if let Some(count) = get_n(item, ACCESS_COUNT) {
        e.access_count = count.max(0) as u64;
    }
    if let Some(at) = get_time(item, LAST_ACCESSED)? {
        e.last_accessed = at;
    }
    if let Some(ttl) = get_n(item, TTL) {
        e.ttl = ttl;
    }
    if let Some(at) = get_time(item, INVALIDATED_AT)? {
        e.invalidated_at = Some(at);
    }
    if let Some(reason) = get_s(item, REASON) {
        e.reason = Some(reason.to_string());
    }
    if let Some(by) = get_s(item, INVALIDATED_BY) {
        e.invalidated_by = Some(by.to_string());
    }
    Ok(e)
}

fn newest_first(entries: &mut [IndexEntry]) {
    entries.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.cache_key.cmp(&a.cache_key))
    });
}

fn is_conditional<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    super::error::code(err) == Some("ConditionalCheckFailedException")
}

impl DynamoCacheIndex {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
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
            "RUNCACHE_INDEX_TABLE",
        )
    }

    fn key(scope: &Scope, version: &str, key: &str) -> Item {
        [
            (
                PARTITION_KEY.to_string(),
                s(partition_key(&scope.repository, &scope.git_ref, version)),
            ),
            (SORT_KEY.to_string(), s(key)),
        ]
        .into()
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("dynamodb:GetItem", e))?;
        Ok(out.item)
    }

    /// Every entry a (possibly index) query returns, all pages.
    async fn query_all(
        &self,
        index: Option<&str>,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        filter: Option<&str>,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(condition)
                .set_filter_expression(filter.map(str::to_string))
                .set_exclusive_start_key(start.take())
                // Strong reads where DynamoDB offers them (not on GSIs).
                .consistent_read(index.is_none());
            for (k, v) in names {
                q = q.expression_attribute_names(*k, *v);
            }
            for (k, v) in &values {
                q = q.expression_attribute_values(*k, v.clone());
            }
            match self.query_page(q, &mut entries).await? {
                Some(next) => start = Some(next),
                None => return Ok(entries),
            }
        }
    }

    /// Sends one page of a query, adds the entries it holds (not audit
    /// records) to `entries`, and returns where the next page starts.
    async fn query_page(
        &self,
        q: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        entries: &mut Vec<IndexEntry>,
    ) -> Result<Option<Item>, StoreError> {
        let page = q
            .send()
            .await
            .map_err(|e| self.error("dynamodb:Query", e))?;
        for item in page.items() {
            if get_s(item, KIND) == Some(KIND_ENTRY) {
                entries.push(entry_of(item)?);
            }
        }
        Ok(page.last_evaluated_key.filter(|key| !key.is_empty()))
    }

    async fn try_insert(&self, entry: &IndexEntry) -> Result<Result<(), Option<Item>>, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(entry_item(entry)?))
            .condition_expression("attribute_not_exists(#pk) OR #state <> :live")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":live", s(EntryState::Live.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Ok(())),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let PutItemError::ConditionalCheckFailedException(c) = e.into_err() else {
                    unreachable!("matched above");
                };
                Ok(Err(c.item))
            }
            Err(e) => Err(self.error("dynamodb:PutItem", e)),
        }
    }
}

#[async_trait]
impl CacheIndex for DynamoCacheIndex {
    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key))]
    async fn get(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
    ) -> Result<Option<IndexEntry>, StoreError> {
        match self.get_item(Self::key(scope, version, key)).await? {
            Some(item) if get_s(&item, KIND) == Some(KIND_ENTRY) => entry_of(&item).map(Some),
            _ => Ok(None),
        }
    }

    /// One BatchGetItem (strongly consistent) for every scope; keys
    /// DynamoDB leaves unprocessed (throttling) are asked again, then one
    /// by one.
    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key, scopes = scopes.len()))]
    async fn get_each(
        &self,
        scopes: &[Scope],
        version: &str,
        key: &str,
    ) -> Result<Vec<Option<IndexEntry>>, StoreError> {
        if scopes.len() <= 1 || scopes.len() > 100 {
            let mut out = Vec::with_capacity(scopes.len());
            for scope in scopes {
                out.push(self.get(scope, version, key).await?);
            }
            return Ok(out);
        }
        let wanted: Vec<String> = scopes
            .iter()
            .map(|sc| partition_key(&sc.repository, &sc.git_ref, version))
            .collect();
        let mut pending: Vec<Item> = scopes
            .iter()
            .map(|sc| Self::key(sc, version, key))
            .collect();
        let mut found: HashMap<String, Item> = HashMap::new();
        for attempt in 0..3u32 {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::backend("building a BatchGetItem request", e))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| self.error("dynamodb:BatchGetItem", e))?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                if let Some(pk) = get_s(&item, PARTITION_KEY) {
                    found.insert(pk.to_string(), item);
                }
            }
            pending = out
                .unprocessed_keys
                .unwrap_or_default()
                .remove(&self.table)
                .map(|k| k.keys)
                .unwrap_or_default();
        }
        let mut out = Vec::with_capacity(scopes.len());
        for (scope, pk) in scopes.iter().zip(&wanted) {
            let item = match found.remove(pk) {
                Some(item) => Some(item),
                // Still unprocessed after the retries: ask this one alone.
                None if pending
                    .iter()
                    .any(|k| get_s(k, PARTITION_KEY) == Some(pk.as_str())) =>
                {
                    self.get_item(Self::key(scope, version, key)).await?
                }
                None => None,
            };
            out.push(match item {
                Some(item) if get_s(&item, KIND) == Some(KIND_ENTRY) => Some(entry_of(&item)?),
                _ => None,
            });
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, prefix = %prefix))]
    async fn find_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let pk = partition_key(&scope.repository, &scope.git_ref, version);
        let mut values = vec![(":pk", s(pk)), (":live", s(EntryState::Live.as_str()))];
        // begins_with is literal (no wildcards); an empty prefix is every key.
        let condition = if prefix.is_empty() {
            "#pk = :pk"
        } else {
            values.push((":prefix", s(prefix)));
            "#pk = :pk AND begins_with(#sk, :prefix)"
        };
        let mut names = vec![("#pk", PARTITION_KEY), ("#state", STATE)];
        if !prefix.is_empty() {
            names.push(("#sk", SORT_KEY));
        }
        let mut entries = self
            .query_all(None, condition, &names, values, Some("#state = :live"))
            .await?;
        newest_first(&mut entries);
        Ok(entries)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, key = %entry.cache_key))]
    async fn insert(&self, entry: &IndexEntry) -> Result<InsertOutcome, StoreError> {
        for _ in 0..INSERT_ATTEMPTS {
            let existing = match self.try_insert(entry).await? {
                Ok(()) => return Ok(InsertOutcome::Inserted),
                Err(Some(item)) => Some(item),
                // No old item in the error: read it.
                Err(None) => {
                    self.get_item(Self::key(
                        &entry.scope(),
                        &entry.cache_version,
                        &entry.cache_key,
                    ))
                    .await?
                }
            };
            if let Some(item) = existing {
                let existing = entry_of(&item)?;
                if existing.is_live() {
                    return Ok(InsertOutcome::Exists(Box::new(existing)));
                }
            }
            // The live entry that refused us is gone again: try once more.
        }
        Err(StoreError::Unavailable {
            what: format!(
                "insert of `{}` into table `{}`",
                entry.cache_key, self.table
            ),
            reason: "the entry kept changing under concurrent writers".into(),
        })
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key))]
    async fn record_access(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let update = |expr: &str, condition: &str| {
            let mut u = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(scope, version, key)))
                .update_expression(expr)
                .condition_expression(condition)
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_names("#count", ACCESS_COUNT)
                .expression_attribute_values(":one", n(1));
            if expr.contains("#last") {
                u = u
                    .expression_attribute_names("#last", LAST_ACCESSED)
                    .expression_attribute_names("#ttl", TTL)
                    .expression_attribute_names("#life", LIFETIME)
                    .expression_attribute_values(":at", s(time(at)))
                    .expression_attribute_values(":epoch", n(at.timestamp()));
            }
            u
        };
        // The common case (a newer access) is one atomic update that also
        // slides the record's expiry; an older one only counts.
        let newer = update(
            "ADD #count :one SET #last = :at, #ttl = :epoch + #life",
            "attribute_exists(#pk) AND (attribute_not_exists(#last) OR #last < :at)",
        )
        .send()
        .await;
        match newer {
            Ok(_) => return Ok(()),
            Err(e) if is_conditional(&e) => {}
            Err(e) => return Err(self.error("dynamodb:UpdateItem", e)),
        }
        match update("ADD #count :one", "attribute_exists(#pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(StoreError::NotFound {
                    what: format!("index entry `{key}` in {scope}"),
                })
            }
            Err(e) => Err(self.error("dynamodb:UpdateItem", e)),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, repository = %repository))]
    async fn by_repository(
        &self,
        repository: &str,
        toolchain: Option<&str>,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let mut values = vec![(":repo", s(repository))];
        let mut names = vec![("#repo", REPOSITORY)];
        let condition = match toolchain {
            Some(t) => {
                values.push((":tc", s(toolchain_key(t))));
                names.push(("#tc", TOOLCHAIN));
                "#repo = :repo AND #tc = :tc"
            }
            None => "#repo = :repo",
        };
        if repository.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries = self
            .query_all(
                Some(REPOSITORY_TOOLCHAIN_INDEX),
                condition,
                &names,
                values,
                None,
            )
            .await?;
        newest_first(&mut entries);
        Ok(entries)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, lockfile_hash = %lockfile_hash))]
    async fn by_lockfile(&self, lockfile_hash: &str) -> Result<Vec<IndexEntry>, StoreError> {
        if lockfile_hash.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries = self
            .query_all(
                Some(LOCKFILE_INDEX),
                "#lf = :lf",
                &[("#lf", LOCKFILE_HASH)],
                vec![(":lf", s(lockfile_hash))],
                None,
            )
            .await?;
        newest_first(&mut entries);
        Ok(entries)
    }

    /// One GSI Query by repository, filtered to the key: reads (and pays
    /// for) every entry of the repository, which is fine for a diagnostic.
    #[tracing::instrument(skip_all, fields(table = %self.table, repository = %repository, key = %key))]
    async fn by_key(&self, repository: &str, key: &str) -> Result<Vec<IndexEntry>, StoreError> {
        if repository.is_empty() || key.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries = self
            .query_all(
                Some(REPOSITORY_TOOLCHAIN_INDEX),
                "#repo = :repo",
                &[("#repo", REPOSITORY), ("#key", CACHE_KEY)],
                vec![(":repo", s(repository)), (":key", s(key))],
                Some("#key = :key"),
            )
            .await?;
        newest_first(&mut entries);
        Ok(entries)
    }

    /// One Query on the scope's partition, in sort-key (= key) order, with
    /// `Limit` (every item of an entry partition is an entry, so `Limit`
    /// counts entries).
    #[tracing::instrument(skip_all, fields(table = %self.table, prefix = %prefix, limit = limit))]
    async fn list_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let pk = partition_key(&scope.repository, &scope.git_ref, version);
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        while entries.len() < limit {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_values(":pk", s(&pk))
                .limit((limit - entries.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take())
                .consistent_read(true);
            // begins_with is literal; DynamoDB refuses an empty value.
            q = if prefix.is_empty() {
                q.key_condition_expression("#pk = :pk")
            } else {
                q.key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", SORT_KEY)
                    .expression_attribute_values(":prefix", s(prefix))
            };
            match self.query_page(q, &mut entries).await? {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        entries.truncate(limit);
        Ok(entries)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key, state = change.state.as_str()))]
    async fn set_state(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        change: &StateChange,
    ) -> Result<bool, StoreError> {
        if change.state == EntryState::Live {
            return Ok(false);
        }
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(scope, version, key)))
            .update_expression("SET #state = :new, #at = :at, #reason = :reason, #by = :by")
            .condition_expression("attribute_exists(#pk) AND #state = :live")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#state", STATE)
            .expression_attribute_names("#at", INVALIDATED_AT)
            .expression_attribute_names("#reason", REASON)
            .expression_attribute_names("#by", INVALIDATED_BY)
            .expression_attribute_values(":new", s(change.state.as_str()))
            .expression_attribute_values(":live", s(EntryState::Live.as_str()))
            .expression_attribute_values(":at", s(time(change.at)))
            .expression_attribute_values(":reason", s(&change.reason))
            .expression_attribute_values(":by", s(&change.by))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(self.error("dynamodb:UpdateItem", e)),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key))]
    async fn remove(&self, scope: &Scope, version: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(scope, version, key)))
            .send()
            .await
            .map_err(|e| self.error("dynamodb:DeleteItem", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, limit = limit))]
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<EntryPage, StoreError> {
        let start = cursor
            .map(|c| {
                let (pk, sk): (String, String) = serde_json::from_str(c).map_err(|_| {
                    StoreError::invalid("scan cursor", format!("`{c}` is not ours"))
                })?;
                Ok::<_, StoreError>(Item::from([
                    (PARTITION_KEY.to_string(), s(pk)),
                    (SORT_KEY.to_string(), s(sk)),
                ]))
            })
            .transpose()?;
        // `Limit` counts items read before the filter drops audit items, so
        // a page may hold fewer than `limit` entries (even none) and still
        // have a next page.
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .set_exclusive_start_key(start)
            .limit(limit.clamp(1, 10_000) as i32)
            .filter_expression("#kind = :entry")
            .expression_attribute_names("#kind", KIND)
            .expression_attribute_values(":entry", s(KIND_ENTRY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("dynamodb:Scan", e))?;
        let entries = out.items().iter().map(entry_of).collect::<Result<_, _>>()?;
        let next = match out.last_evaluated_key() {
            Some(key) if !key.is_empty() => {
                let pk = get_s(key, PARTITION_KEY).unwrap_or_default();
                let sk = get_s(key, SORT_KEY).unwrap_or_default();
                Some(
                    serde_json::to_string(&(pk, sk))
                        .map_err(|e| StoreError::backend("scan cursor", e))?,
                )
            }
            _ => None,
        };
        Ok(EntryPage { entries, next })
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, audit_id = %record.audit_id))]
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let doc = serde_json::to_string(record)
            .map_err(|e| StoreError::backend("encoding an audit record", e))?;
        let micros = record.at.timestamp_micros().max(0);
        let repo = &record.repository;
        let marker: Item = [
            (PARTITION_KEY, s(format!("{KIND_AUDIT_ID}#{repo}"))),
            (SORT_KEY, s(&record.audit_id)),
            (KIND, s(KIND_AUDIT_ID)),
            (AT, s(time(record.at))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let audit: Item = [
            (PARTITION_KEY, s(format!("{KIND_AUDIT}#{repo}"))),
            (SORT_KEY, s(format!("{micros:020}#{}", record.audit_id))),
            (KIND, s(KIND_AUDIT)),
            (DOC, s(doc)),
            (REPOSITORY, s(repo)),
            (AUDIT_ID, s(&record.audit_id)),
            (AT, s(time(record.at))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let put = |item: Item, condition: bool| {
            let mut p = Put::builder().table_name(&self.table).set_item(Some(item));
            if condition {
                p = p
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", PARTITION_KEY);
            }
            p.build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(|e| StoreError::backend("building an audit write", e))
        };
        // The id marker makes the append idempotent on audit_id even when a
        // retry carries a different `at` (a redelivered handler's clock).
        let res = self
            .client
            .transact_write_items()
            .transact_items(put(marker, true)?)
            .transact_items(put(audit, false)?)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(c)
                    if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
                        || c.message().unwrap_or_default().contains("ConditionalCheckFailed")) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error("dynamodb:PutItem", e)),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, repository = %repository, limit = limit))]
    async fn audit_log(
        &self,
        repository: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        while records.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_values(":pk", s(format!("{KIND_AUDIT}#{repository}")))
                .scan_index_forward(false)
                .limit((limit - records.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.error("dynamodb:Query", e))?;
            for item in page.items() {
                let doc = get_s(item, DOC).unwrap_or_default();
                records.push(
                    serde_json::from_str(doc)
                        .map_err(|e| StoreError::backend("decoding an audit record", e))?,
                );
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        records.truncate(limit);
        Ok(records)
    }
}
