//! Records the workers store: index entries, provenance records and audit
//! records. Runners may read them; only workers write them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BuildProvenance, ContentHash, Contract, Scope, TrustLevel};

/// Lifecycle of an index entry. Only `live` entries are ever restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    Live,
    /// Soft-deleted by an invalidation request.
    Invalidated,
    /// Removed by TTL or quota; kept until its `ttl` so misses can be explained.
    Evicted,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Live => "live",
            EntryState::Invalidated => "invalidated",
            EntryState::Evicted => "evicted",
        }
    }
}

/// One cache entry: (scope, key, version) → content hash. Immutable once
/// live, like actions/cache keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    pub cache_key: String,
    pub content_hash: ContentHash,
    /// `artifacts/{hex}`.
    pub s3_key: String,
    pub repository: String,
    /// The scope's ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// actions/cache's version (paths + compression); part of the identity.
    pub cache_version: String,
    /// Toolchain summary for the `repository-toolchain-index` (empty if none).
    pub toolchain: String,
    pub lockfile_hash: Option<String>,
    /// Compressed size of the blob.
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
    pub last_accessed: DateTime<Utc>,
    pub access_count: u64,
    /// Epoch seconds after which the store may drop the record.
    pub ttl: i64,
    pub state: EntryState,
    pub invalidated_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub invalidated_by: Option<String>,
    /// Trust of the build that produced the entry.
    pub trust: TrustLevel,
    /// The trigger event of that build.
    pub trigger_event: String,
    pub upload_id: String,
    /// Build duration the producer reported, for "build time saved".
    pub build_duration_ms: Option<u64>,
    /// What the uploader asked to keep with the entry and to get back as
    /// sent, by name: a build-cache client's metadata such as Turborepo's
    /// `x-artifact-tag` signature. Empty for archives.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl IndexEntry {
    pub fn scope(&self) -> Scope {
        Scope::new(self.repository.clone(), self.git_ref.clone())
    }
    pub fn is_live(&self) -> bool {
        self.state == EntryState::Live
    }
    /// Same (scope, version, key): the identity the index keeps once.
    pub fn same_identity(&self, other: &IndexEntry) -> bool {
        self.repository == other.repository
            && self.git_ref == other.git_ref
            && self.cache_version == other.cache_version
            && self.cache_key == other.cache_key
    }
}

impl Contract for IndexEntry {
    const SCHEMA: &'static str = "index.entry";
    const VERSION: u32 = 1;
}

/// Where an artifact came from: stored as `metadata/{hex}.json` and in the
/// provenance store, keyed by content hash and upload id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceRecord {
    pub content_hash: ContentHash,
    pub upload_id: String,
    pub cache_key: String,
    pub scope: Scope,
    pub cache_version: String,
    pub paths: Vec<String>,
    pub compression: String,
    pub size_bytes: u64,
    pub build: BuildProvenance,
    pub staged_at: DateTime<Utc>,
    pub promoted_at: DateTime<Utc>,
    /// Identity of the worker that verified the bytes.
    pub promoted_by: String,
}

impl Contract for ProvenanceRecord {
    const SCHEMA: &'static str = "provenance.record";
    const VERSION: u32 = 1;
}

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    Invalidated,
    Evicted,
    Rejected,
    /// A CAS blob no entry referenced was deleted.
    Deleted,
}

/// An append-only trace of every eviction, invalidation and rejection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub audit_id: String,
    pub action: AuditAction,
    pub repository: String,
    pub git_ref: Option<String>,
    pub cache_key: Option<String>,
    pub cache_version: Option<String>,
    pub content_hash: Option<ContentHash>,
    /// Human reason (the invalidation's reason, "hash mismatch", …).
    pub reason: String,
    /// The rule that fired: `ttl`, `quota`, `invalidation`, `verification`.
    pub rule: String,
    /// Who asked (invalidation) or which worker acted.
    pub actor: String,
    pub at: DateTime<Utc>,
}

impl Contract for AuditRecord {
    const SCHEMA: &'static str = "audit.record";
    const VERSION: u32 = 1;
}
