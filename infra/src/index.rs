//! The cache index port: (scope, version, key) → entry, plus the queries the
//! workers need, and [`search`], the restore search order both backends
//! share (DESIGN.md "Restore semantics").
//!
//! # Contract
//! - `get` returns the entry whatever its state (callers filter); `None` if
//!   absent.
//! - `find_prefix` returns only **live** entries of that scope and version
//!   whose key starts with the prefix, newest `created_at` first.
//! - `insert` is conditional and atomic: it succeeds only if no live entry
//!   has the same identity (an invalidated or evicted one is replaced);
//!   otherwise it returns the live entry unchanged. Of two concurrent inserts
//!   exactly one wins.
//! - `set_state` moves a live entry to another state and reports whether it
//!   did; it never revives an entry.
//! - `append_audit` is idempotent on `audit_id`.
//! - `by_key` returns every entry with exactly that key in any ref, version
//!   and state of the repository, newest `created_at` first (on DynamoDB
//!   through the repository index: eventually consistent, and the caller
//!   needs Query on the table's indexes).
//! - `list_prefix` returns entries of one scope and version in **any**
//!   state whose key starts with the prefix, in ascending key order, at most
//!   `limit` of them.
//!
//! `by_key` and `list_prefix` serve `runcache explain`, which reports what a
//! restore passed over, so unlike `find_prefix` they include entries that
//! are not live.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use runcache_schemas::{
    AuditRecord, ContentHash, EntryState, HitKind, IndexEntry, Scope, TrustLevel,
};

use crate::StoreError;

/// Result of a conditional insert.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    Inserted,
    /// A live entry already has this identity: keys are immutable.
    Exists(Box<IndexEntry>),
}

/// A state transition for [`CacheIndex::set_state`].
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub state: EntryState,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub by: String,
}

/// A page of entries and the cursor to continue.
#[derive(Debug, Clone, Default)]
pub struct EntryPage {
    pub entries: Vec<IndexEntry>,
    pub next: Option<String>,
}

#[async_trait]
pub trait CacheIndex: Send + Sync + Debug {
    async fn get(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
    ) -> Result<Option<IndexEntry>, StoreError>;

    async fn find_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
    ) -> Result<Vec<IndexEntry>, StoreError>;

    async fn insert(&self, entry: &IndexEntry) -> Result<InsertOutcome, StoreError>;

    /// Sets `last_accessed` (if later) and adds one to `access_count`.
    /// [`StoreError::NotFound`] if there is no such entry.
    async fn record_access(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Every entry (any state) of a repository, optionally of one toolchain.
    async fn by_repository(
        &self,
        repository: &str,
        toolchain: Option<&str>,
    ) -> Result<Vec<IndexEntry>, StoreError>;

    /// Every entry (any state) with this lockfile hash.
    async fn by_lockfile(&self, lockfile_hash: &str) -> Result<Vec<IndexEntry>, StoreError>;

    /// Every entry (any ref, version or state) of a repository with exactly
    /// this key, newest first: "the key exists, but not where you looked".
    async fn by_key(&self, repository: &str, key: &str) -> Result<Vec<IndexEntry>, StoreError>;

    /// Up to `limit` entries (any state) of one scope and version whose key
    /// starts with `prefix`, in key order: the neighbours of a missed key.
    async fn list_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, StoreError>;

    async fn set_state(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        change: &StateChange,
    ) -> Result<bool, StoreError>;

    /// Removes the record for good (records past their `ttl`).
    async fn remove(&self, scope: &Scope, version: &str, key: &str) -> Result<(), StoreError>;

    /// All entries, a page at a time (sweep, stats, verify).
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<EntryPage, StoreError>;

    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError>;

    /// A repository's audit records, newest first.
    async fn audit_log(
        &self,
        repository: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;
}

/// What a restore asks for.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Scopes in the order they are searched; see [`restore_scopes`].
    pub scopes: Vec<Scope>,
    pub version: String,
    pub primary_key: String,
    pub restore_keys: Vec<String>,
    /// Entries produced with less trust are passed over.
    pub min_trust: TrustLevel,
}

/// The entry a restore will use and how it matched.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub entry: IndexEntry,
    pub kind: HitKind,
}

/// The scopes a run may read, in search order: its own ref, then (for a pull
/// request) the base branch, then the default branch. A branch never reads a
/// sibling; a pull request's scope is read only by that pull request.
pub fn restore_scopes(own: &Scope, base_ref: Option<&str>, default_branch: &str) -> Vec<Scope> {
    let mut scopes = vec![own.clone()];
    if own.is_pull_request() {
        if let Some(base) = base_ref.filter(|b| !b.is_empty()) {
            scopes.push(own.branch(base));
        }
    }
    scopes.push(own.branch(default_branch));
    scopes.dedup();
    let mut seen = std::collections::HashSet::new();
    scopes.retain(|s| seen.insert(s.clone()));
    scopes
}

/// The restore search: per scope in order, the exact key, then the primary
/// key as a prefix, then each restore key as a prefix; among prefix matches
/// the most recently created wins. Only live entries of the same version and
/// of at least `min_trust` are considered.
pub async fn search(
    index: &dyn CacheIndex,
    req: &SearchRequest,
) -> Result<Option<SearchHit>, StoreError> {
    let trusted = |e: &IndexEntry| e.is_live() && e.trust >= req.min_trust;
    for scope in &req.scopes {
        if let Some(entry) = index.get(scope, &req.version, &req.primary_key).await? {
            if trusted(&entry) {
                return Ok(Some(SearchHit {
                    entry,
                    kind: HitKind::Exact,
                }));
            }
        }
        for prefix in std::iter::once(&req.primary_key).chain(&req.restore_keys) {
            let found = index.find_prefix(scope, &req.version, prefix).await?;
            if let Some(entry) = found.into_iter().find(|e| trusted(e)) {
                let kind = if entry.cache_key == req.primary_key {
                    HitKind::Exact
                } else {
                    HitKind::Prefix
                };
                return Ok(Some(SearchHit { entry, kind }));
            }
        }
    }
    Ok(None)
}

/// The content hashes that live entries reference (for sweep and verify).
pub async fn live_hashes(
    index: &dyn CacheIndex,
) -> Result<std::collections::HashSet<ContentHash>, StoreError> {
    let mut hashes = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = index.scan(cursor.as_deref(), 1000).await?;
        hashes.extend(
            page.entries
                .into_iter()
                .filter(IndexEntry::is_live)
                .map(|e| e.content_hash),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(hashes),
        }
    }
}
