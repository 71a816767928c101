//! Events that travel on the queues: `artifact.staged` (producer → promote),
//! `cache.accessed` (producer → metrics), `cache.invalidate` (admin →
//! invalidate) and `worker.outcome` (workers → metrics).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    envelope::{body, header},
    ContentHash, Contract, HitKind, SchemaError, Scope, TrustLevel,
};

/// Who built an artifact, from what, and how long it took. Filled by the
/// producer from the GitHub Actions environment; copied by promote into the
/// provenance record. Runner-supplied, so informative, never proof: trust
/// decisions use the scope and trigger the worker records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildProvenance {
    /// `owner/name` (`GITHUB_REPOSITORY`).
    pub repository: String,
    /// The commit built (`GITHUB_SHA`).
    pub commit_sha: Option<String>,
    /// First line of the commit message, when git could tell.
    pub commit_message: Option<String>,
    /// The ref built (`GITHUB_REF`).
    pub branch: String,
    /// The pull request's base branch (`GITHUB_BASE_REF`).
    pub base_ref: Option<String>,
    /// `GITHUB_WORKFLOW_REF`, e.g. `o/r/.github/workflows/ci.yml@refs/heads/main`.
    pub workflow_ref: Option<String>,
    /// `GITHUB_RUN_ID`.
    pub workflow_run_id: Option<String>,
    /// `GITHUB_RUN_ATTEMPT`.
    pub run_attempt: Option<String>,
    /// `GITHUB_JOB`.
    pub job: Option<String>,
    /// `GITHUB_ACTOR`.
    pub actor: Option<String>,
    /// The trigger (`GITHUB_EVENT_NAME`): push, pull_request, …
    pub trigger_event: String,
    /// The trust the trigger earns (see [`TrustLevel::classify`]).
    pub trust: TrustLevel,
    /// Toolchain name → version (`node` → `20.11.0`).
    pub toolchains: BTreeMap<String, String>,
    /// The toolchain summary the index is queried by, e.g. `node-20.11.0`.
    pub toolchain: Option<String>,
    /// Hash of the lockfile(s) the key was derived from.
    pub lockfile_hash: Option<String>,
    pub build_started_at: Option<DateTime<Utc>>,
    pub build_duration_ms: Option<u64>,
    /// Content hashes restored earlier in the same job: what this build used.
    pub dependency_hashes: Vec<ContentHash>,
    pub runner_name: Option<String>,
    pub runner_os: Option<String>,
    pub runner_arch: Option<String>,
    /// The runcache version that produced the upload.
    pub producer_version: String,
}

/// `artifact.staged`: an upload is in `staging/{upload_id}` and claims a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStaged {
    pub upload_id: String,
    /// Object key of the upload, `staging/{upload_id}`.
    pub staging_key: String,
    /// What the producer says the bytes hash to; promote checks it.
    pub claimed_hash: ContentHash,
    pub size_bytes: u64,
    pub cache_key: String,
    pub scope: Scope,
    /// actions/cache's version: hash of the path patterns and compression.
    pub cache_version: String,
    /// The path patterns as written.
    pub paths: Vec<String>,
    /// `zstd-without-long`, as actions/toolkit names it.
    pub compression: String,
    /// Uncompressed size of the archive, when known.
    pub unpacked_bytes: Option<u64>,
    pub staged_at: DateTime<Utc>,
    pub provenance: BuildProvenance,
    /// What the uploader asked to keep with the entry and to get back as
    /// sent, by name: a build-cache client's metadata such as Turborepo's
    /// `x-artifact-tag` signature. Empty for archives.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl Contract for ArtifactStaged {
    const SCHEMA: &'static str = "artifact.staged";
    const VERSION: u32 = 1;
}

/// `cache.accessed`: a restore looked something up (and maybe downloaded it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheAccessed {
    pub access_id: String,
    /// The scope of the restoring run.
    pub scope: Scope,
    /// The primary key asked for.
    pub primary_key: String,
    pub restore_keys: Vec<String>,
    pub cache_version: String,
    pub hit_kind: HitKind,
    pub matched_key: Option<String>,
    /// The ref whose entry matched (own, base or default branch).
    pub matched_ref: Option<String>,
    pub content_hash: Option<ContentHash>,
    /// Compressed bytes downloaded (0 on a miss or with lookup-only).
    pub bytes: u64,
    pub lookup_ms: u64,
    pub download_ms: u64,
    pub extract_ms: u64,
    pub total_ms: u64,
    pub lookup_only: bool,
    /// Set when the restore failed after a match (download, verification,
    /// extraction): the entry matched but the build did not get it.
    pub error: Option<String>,
    pub accessed_at: DateTime<Utc>,
}

impl Contract for CacheAccessed {
    const SCHEMA: &'static str = "cache.accessed";
    const VERSION: u32 = 1;
}

/// What an invalidation applies to. Fields combine with AND; at least one of
/// repository, toolchain, lockfile hash or key prefix must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvalidationSelector {
    pub repository: Option<String>,
    /// Narrows to one ref; only meaningful with another selector.
    pub git_ref: Option<String>,
    pub toolchain: Option<String>,
    pub lockfile_hash: Option<String>,
    pub key_prefix: Option<String>,
    /// Exactly this key (`runcache admin delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
}

impl InvalidationSelector {
    /// Refuses a selector that would match everything.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        if set(&self.repository)
            || set(&self.toolchain)
            || set(&self.lockfile_hash)
            || set(&self.key_prefix)
            || set(&self.cache_key)
        {
            Ok(())
        } else {
            Err(SchemaError::InvalidValue(
                "an invalidation needs at least one of repository, toolchain, lockfile hash or key prefix".into(),
            ))
        }
    }
}

/// `cache.invalidate`: soft-delete every live entry the selector matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheInvalidate {
    pub request_id: String,
    pub selector: InvalidationSelector,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// Also re-hash each invalidated entry's blob and delete it from the
    /// CAS when it does not hash to its name (missing or corrupt), so the
    /// next save of the key stores fresh bytes instead of deduplicating
    /// onto the broken ones (`runcache admin delete`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge_corrupt_blobs: bool,
}

impl Contract for CacheInvalidate {
    const SCHEMA: &'static str = "cache.invalidate";
    const VERSION: u32 = 1;
}

/// What a worker did with an artifact or entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeKind {
    /// A new blob entered the CAS and got an index entry.
    Promoted,
    /// The blob was already in the CAS; only the index entry was new.
    Deduplicated,
    /// The staged bytes did not match their claim; quarantined.
    Rejected,
    /// Removed by TTL or quota.
    Evicted,
    /// Soft-deleted by an invalidation request.
    Invalidated,
}

/// `worker.outcome`: emitted by workers, consumed by metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerOutcome {
    pub kind: OutcomeKind,
    pub repository: String,
    pub git_ref: Option<String>,
    pub cache_key: Option<String>,
    pub content_hash: Option<ContentHash>,
    pub upload_id: Option<String>,
    pub size_bytes: Option<u64>,
    /// For promotions: from `stagedAt` to the entry being visible.
    pub latency_ms: Option<u64>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl Contract for WorkerOutcome {
    const SCHEMA: &'static str = "worker.outcome";
    const VERSION: u32 = 1;
}

/// Any event a queue may carry.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Boxed: by far the largest event.
    Staged(Box<ArtifactStaged>),
    Accessed(CacheAccessed),
    Invalidate(CacheInvalidate),
    Outcome(WorkerOutcome),
}

impl Event {
    /// The schema names this build understands.
    pub const KNOWN: [&'static str; 4] = [
        ArtifactStaged::SCHEMA,
        CacheAccessed::SCHEMA,
        CacheInvalidate::SCHEMA,
        WorkerOutcome::SCHEMA,
    ];

    /// Decodes any event, dispatching on its `schema`.
    pub fn decode(json: &str) -> Result<Event, SchemaError> {
        let h = header(json)?;
        match h.schema.as_str() {
            ArtifactStaged::SCHEMA => body(json, &h).map(|e| Event::Staged(Box::new(e))),
            CacheAccessed::SCHEMA => body(json, &h).map(Event::Accessed),
            CacheInvalidate::SCHEMA => body(json, &h).map(Event::Invalidate),
            WorkerOutcome::SCHEMA => body(json, &h).map(Event::Outcome),
            _ => Err(SchemaError::UnknownSchema {
                found: h.schema,
                known: Self::KNOWN.join(", "),
            }),
        }
    }

    pub fn encode(&self) -> String {
        match self {
            Event::Staged(e) => e.encode(),
            Event::Accessed(e) => e.encode(),
            Event::Invalidate(e) => e.encode(),
            Event::Outcome(e) => e.encode(),
        }
    }

    pub fn schema(&self) -> &'static str {
        match self {
            Event::Staged(_) => ArtifactStaged::SCHEMA,
            Event::Accessed(_) => CacheAccessed::SCHEMA,
            Event::Invalidate(_) => CacheInvalidate::SCHEMA,
            Event::Outcome(_) => WorkerOutcome::SCHEMA,
        }
    }
}
