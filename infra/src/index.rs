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
    AuditRecord, ContentHash, EntryState, HitKind, IndexEntry, InvalidationSelector, Scope,
    TrustLevel,
};
use serde::{Deserialize, Serialize};

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

    /// [`get`](Self::get) of (scope, `version`, `key`) for each of
    /// `scopes`, in their order, any state: what an exact-key lookup over a
    /// job's readable scopes needs. Adapters answer in one round trip where
    /// they can; the default asks scope by scope.
    async fn get_each(
        &self,
        scopes: &[Scope],
        version: &str,
        key: &str,
    ) -> Result<Vec<Option<IndexEntry>>, StoreError> {
        let mut out = Vec::with_capacity(scopes.len());
        for scope in scopes {
            out.push(self.get(scope, version, key).await?);
        }
        Ok(out)
    }

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
    walk(index, req, None).await
}

/// The exact key only, no prefixes: the first scope (in order) with a live
/// entry of at least `min_trust` under exactly (`version`, `key`). What
/// key-addressed clients (the build tools' remote caches) mean by a GET; the
/// same answer as [`search`] when the key is no other key's prefix.
pub async fn search_exact(
    index: &dyn CacheIndex,
    scopes: &[Scope],
    version: &str,
    key: &str,
    min_trust: TrustLevel,
) -> Result<Option<SearchHit>, StoreError> {
    Ok(index
        .get_each(scopes, version, key)
        .await?
        .into_iter()
        .flatten()
        .find(|e| e.is_live() && e.trust >= min_trust)
        .map(|entry| SearchHit {
            entry,
            kind: HitKind::Exact,
        }))
}

/// [`search`], recording every lookup it makes and what it passed over:
/// what `runcache explain` renders. The hit is the one [`search`] returns.
pub async fn search_traced(
    index: &dyn CacheIndex,
    req: &SearchRequest,
) -> Result<(Option<SearchHit>, SearchTrace), StoreError> {
    let mut trace = SearchTrace::default();
    let hit = walk(index, req, Some(&mut trace)).await?;
    Ok((hit, trace))
}

/// The lookups of one search, in order, up to the one that matched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchTrace {
    pub steps: Vec<SearchStep>,
    /// The exact key, found but not live (invalidated, evicted), per scope.
    pub exact_not_live: Vec<IndexEntry>,
    /// Live entries passed over for having less trust than asked.
    pub below_trust: Vec<IndexEntry>,
}

/// One lookup of the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchStep {
    pub git_ref: String,
    pub lookup: Lookup,
    /// The key (exact) or prefix looked for.
    pub looked_for: String,
    pub role: KeyRole,
    pub outcome: StepOutcome,
    /// The key that matched, or the newest one passed over.
    pub key: Option<String>,
    /// For `not-live`: the entry's state.
    pub state: Option<EntryState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lookup {
    Exact,
    Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyRole {
    PrimaryKey,
    RestoreKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepOutcome {
    Matched,
    NotFound,
    /// The exact key is there but invalidated or evicted.
    NotLive,
    /// Live entries were there but built with less trust than `--trust`.
    BelowTrust,
}

/// The one implementation of the search; `trace`, when given, records it.
async fn walk(
    index: &dyn CacheIndex,
    req: &SearchRequest,
    mut trace: Option<&mut SearchTrace>,
) -> Result<Option<SearchHit>, StoreError> {
    let trusted = |e: &IndexEntry| e.trust >= req.min_trust;
    for scope in &req.scopes {
        let mut step = SearchStep {
            git_ref: scope.git_ref.clone(),
            lookup: Lookup::Exact,
            looked_for: req.primary_key.clone(),
            role: KeyRole::PrimaryKey,
            outcome: StepOutcome::NotFound,
            key: None,
            state: None,
        };
        let mut hit = None;
        if let Some(entry) = index.get(scope, &req.version, &req.primary_key).await? {
            step.key = Some(entry.cache_key.clone());
            step.state = Some(entry.state);
            if !entry.is_live() {
                step.outcome = StepOutcome::NotLive;
                if let Some(t) = trace.as_deref_mut() {
                    t.exact_not_live.push(entry);
                }
            } else if !trusted(&entry) {
                step.outcome = StepOutcome::BelowTrust;
                if let Some(t) = trace.as_deref_mut() {
                    t.below_trust.push(entry);
                }
            } else {
                step.outcome = StepOutcome::Matched;
                hit = Some(SearchHit {
                    entry,
                    kind: HitKind::Exact,
                });
            }
        }
        if let Some(t) = trace.as_deref_mut() {
            t.steps.push(step);
        }
        if hit.is_some() {
            return Ok(hit);
        }
        let prefixes = std::iter::once((&req.primary_key, KeyRole::PrimaryKey))
            .chain(req.restore_keys.iter().map(|k| (k, KeyRole::RestoreKey)));
        for (prefix, role) in prefixes {
            // Live entries only, newest first (the port's contract).
            let found = index.find_prefix(scope, &req.version, prefix).await?;
            let mut step = SearchStep {
                git_ref: scope.git_ref.clone(),
                lookup: Lookup::Prefix,
                looked_for: prefix.clone(),
                role,
                outcome: StepOutcome::NotFound,
                key: None,
                state: None,
            };
            let matched = found.iter().position(|e| e.is_live() && trusted(e));
            if let Some(newest) = matched.map_or(found.first(), |i| found.get(i)) {
                step.key = Some(newest.cache_key.clone());
                step.state = Some(newest.state);
                step.outcome = if matched.is_some() {
                    StepOutcome::Matched
                } else {
                    StepOutcome::BelowTrust
                };
            }
            if let Some(t) = trace.as_deref_mut() {
                t.steps.push(step);
                if matched.is_none() {
                    for e in &found {
                        if !t.below_trust.iter().any(|b| b.same_identity(e)) {
                            t.below_trust.push(e.clone());
                        }
                    }
                }
            }
            if let Some(i) = matched {
                let entry = found.into_iter().nth(i).expect("matched index is in range");
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

/// Whether `entry` satisfies every field the selector sets. A `gitRef` may
/// be a full ref or a branch name (`main` is `refs/heads/main`).
pub fn selects(selector: &InvalidationSelector, entry: &IndexEntry) -> bool {
    let set = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    set(&selector.repository).is_none_or(|r| entry.repository == r)
        && set(&selector.git_ref).is_none_or(|r| {
            entry.git_ref == r || entry.git_ref == Scope::new("", "").branch(&r).git_ref
        })
        && set(&selector.toolchain).is_none_or(|t| entry.toolchain == t)
        && set(&selector.lockfile_hash).is_none_or(|l| entry.lockfile_hash.as_deref() == Some(&l))
        && set(&selector.key_prefix).is_none_or(|p| entry.cache_key.starts_with(&p))
        && set(&selector.cache_key).is_none_or(|k| entry.cache_key == k)
}

/// Every entry (any state) the selector matches, through the narrowest
/// query the index offers for it. An empty selector matches nothing here
/// (callers validate first).
pub async fn matching(
    index: &dyn CacheIndex,
    selector: &InvalidationSelector,
) -> Result<Vec<IndexEntry>, StoreError> {
    if selector.validate().is_err() {
        return Ok(Vec::new());
    }
    let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
    let candidates = if let Some(repo) = nonempty(&selector.repository) {
        index
            .by_repository(&repo, nonempty(&selector.toolchain).as_deref())
            .await?
    } else if let Some(lock) = nonempty(&selector.lockfile_hash) {
        index.by_lockfile(&lock).await?
    } else {
        // Toolchain or key prefix alone: no index serves them across
        // repositories, so scan (admin operations are rare).
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = index.scan(cursor.as_deref(), 1000).await?;
            all.extend(page.entries);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        all
    };
    Ok(candidates
        .into_iter()
        .filter(|e| selects(selector, e))
        .collect())
}
