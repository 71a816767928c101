//! The report `explain` returns and `--json` prints: its types and
//! nothing else (the looks that fill it are in `look`, its text in
//! `render`).

use super::*;

/// What to explain: the query of the restore in question.
pub type ExplainRequest = crate::restore::RestoreQuery;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExplainError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cache index: {0}")]
    Store(#[from] StoreError),
}

/// The whole explanation; `--json` prints it as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Always [`REPORT_SCHEMA`].
    pub schema: String,
    /// [`REPORT_VERSION`].
    pub version: u32,
    pub repository: String,
    /// The run's own ref.
    pub git_ref: String,
    pub primary_key: String,
    pub restore_keys: Vec<String>,
    pub paths: Vec<String>,
    pub compression: String,
    /// The version the paths and compression give; part of every lookup.
    pub cache_version: String,
    pub min_trust: TrustLevel,
    /// The refs this run reads, in search order.
    pub readable_refs: Vec<String>,
    /// Every lookup restore makes, in order, up to the one that matched.
    pub steps: Vec<SearchStep>,
    pub result: SearchResult,
    /// One sentence: what restore does and, on a miss, the likeliest why.
    pub summary: String,
    /// What was found around the primary key (empty on an exact match).
    pub findings: Vec<Finding>,
    /// Looks that could not be made (credentials, backend errors).
    pub not_checked: Vec<NotChecked>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResult {
    pub hit_kind: HitKind,
    pub matched_key: Option<String>,
    pub matched_ref: Option<String>,
}

/// An input of the version that differs between an entry and the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionInput {
    /// Another list of path patterns.
    Paths,
    /// The same patterns in another order (the order is hashed too).
    PathOrder,
    Compression,
    /// Saved on Windows without `enableCrossOsArchive`.
    WindowsOnly,
    /// Not determinable: the entry's paths are not recorded, and no other
    /// compression explains it.
    Unknown,
}

/// Whether a quarantined upload's object is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectPresence {
    Present,
    Gone,
    /// These credentials may not read it.
    Unreadable,
}

/// A key near the one asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NearbyKey {
    pub key: String,
    pub state: EntryState,
    pub created_at: DateTime<Utc>,
    pub age_seconds: i64,
}

/// Something found around the primary key. `kind` names the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Finding {
    /// The search finds this entry, but its blob cannot be restored: it is
    /// missing from the CAS or does not hash to its name.
    Unrestorable {
        git_ref: String,
        key: String,
        content_hash: String,
        reason: String,
    },
    /// The key exists in a readable scope under another version.
    VersionMismatch {
        git_ref: String,
        key: String,
        state: EntryState,
        created_at: DateTime<Utc>,
        their_version: String,
        differing_inputs: Vec<VersionInput>,
        /// From the entry's provenance record, when readable.
        their_paths: Option<Vec<String>>,
        their_compression: Option<String>,
    },
    /// The key exists in a scope this run does not read.
    OtherScope {
        git_ref: String,
        key: String,
        state: EntryState,
        created_at: DateTime<Utc>,
        same_version: bool,
        why: String,
    },
    Invalidated(SoftDeletion),
    Evicted(SoftDeletion),
    /// Live, but built with less trust than `--trust` demands.
    BelowTrust {
        git_ref: String,
        key: String,
        trust: TrustLevel,
        trigger_event: String,
        required: TrustLevel,
    },
    /// A save of the key uploaded but not promoted yet.
    Staged {
        git_ref: String,
        upload_id: String,
        staged_at: DateTime<Utc>,
        age_seconds: i64,
        same_version: bool,
    },
    /// A save of the key whose `artifact.staged` message was dead-lettered.
    DeadLettered {
        git_ref: String,
        upload_id: String,
        sent_at: DateTime<Utc>,
        reason: Option<String>,
    },
    /// A save of the key rejected by promote and kept in `quarantine/`.
    Quarantined {
        git_ref: String,
        upload_id: Option<String>,
        at: DateTime<Utc>,
        reason: String,
        object_key: Option<String>,
        object: Option<ObjectPresence>,
    },
    /// The keys of one scope sharing the longest prefix with the key.
    ClosestKeys {
        git_ref: String,
        common_prefix: String,
        keys: Vec<NearbyKey>,
    },
}

impl Finding {
    /// Order in reports: what most often explains a miss comes first.
    pub(super) fn rank(&self) -> u8 {
        match self {
            Finding::Unrestorable { .. } => 0,
            Finding::Invalidated(_) => 0,
            Finding::Evicted(_) => 1,
            Finding::VersionMismatch { .. } => 2,
            Finding::BelowTrust { .. } => 3,
            Finding::Staged { .. } => 4,
            Finding::DeadLettered { .. } => 5,
            Finding::Quarantined { .. } => 6,
            Finding::OtherScope { .. } => 7,
            Finding::ClosestKeys { .. } => 8,
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Finding::Unrestorable { .. } => "unrestorable",
            Finding::VersionMismatch { .. } => "version-mismatch",
            Finding::OtherScope { .. } => "other-scope",
            Finding::Invalidated(_) => "invalidated",
            Finding::Evicted(_) => "evicted",
            Finding::BelowTrust { .. } => "below-trust",
            Finding::Staged { .. } => "staged",
            Finding::DeadLettered { .. } => "dead-lettered",
            Finding::Quarantined { .. } => "quarantined",
            Finding::ClosestKeys { .. } => "closest-keys",
        }
    }
}

/// An invalidation or eviction of the key, from the soft-deleted entry or,
/// once its record expired, from the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftDeletion {
    pub git_ref: String,
    pub key: String,
    pub at: Option<DateTime<Utc>>,
    pub by: Option<String>,
    pub reason: Option<String>,
    /// The audit rule: `invalidation`, or `verification` when promote took
    /// an entry out of service; for evictions `ttl` or `quota`.
    pub rule: Option<String>,
    /// The index record has expired; this comes from the audit log.
    pub record_removed: bool,
}

/// A look that could not be made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotChecked {
    /// `other-versions-and-scopes`, `provenance`, `audit-log`, `staging`,
    /// `dead-letters`, `quarantine`, `closest-keys`.
    pub check: String,
    pub reason: String,
}
