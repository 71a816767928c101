//! `runcache explain`: why a restore missed, or why it matched what it did.
//!
//! It walks the same search as `restore` (the scopes of
//! [`restore_scopes`], in [`runcache_infra::index::search`]'s order: exact
//! key, then the primary key as a prefix, then each restore key) and
//! records every step. Unless the primary key matched exactly, it then looks
//! around that key for what a user expected to match:
//!
//! - the key under another version, and which input made the version
//!   differ (the path list, their order, the compression), from the entry's
//!   provenance record, or else by recomputing the version with the other
//!   inputs actions/toolkit knows;
//! - the key in a scope this run cannot read (a sibling branch, another
//!   pull request), and why it cannot;
//! - the key invalidated (when, by whom, why) or evicted (when, which rule),
//!   from the soft-deleted entry and the audit log;
//! - entries passed over because of `--trust`;
//! - a save of the key still staged, dead-lettered, or rejected and
//!   quarantined;
//! - the closest keys in each scope, by common prefix, with their age.
//!
//! Read-only: it sends no event and changes nothing, so it never counts as
//! a miss in the metrics. Each look the credentials do not allow (on AWS a
//! runner role may read the index and provenance but not list `staging/`,
//! read `quarantine/` or the dead-letter queues) becomes a "not checked"
//! line, never an error.

use chrono::{DateTime, Utc};
use runcache_cache::lookup::{lookup_traced, LookupRequest, Traced};
pub use runcache_infra::index::{KeyRole, Lookup, SearchStep, StepOutcome};
use runcache_infra::{
    describe, names, queue::ATTR_DEAD_LETTER_REASON, staging, Backend, StoreError,
};
use runcache_schemas::{
    AuditAction, AuditRecord, EntryState, Event, HitKind, IndexEntry, Scope, TrustLevel,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::instrument;

use crate::{
    context::RunContext,
    keys::{validate_keys, KeyError},
};

/// `schema` of the JSON report; `version` changes only when a field is
/// removed or changes meaning (new fields may appear).
pub const REPORT_SCHEMA: &str = "runcache.explain";
pub const REPORT_VERSION: u32 = 1;

/// How many audit records (newest first) are searched for the key.
const AUDIT_RECORDS_SEARCHED: usize = 1000;
/// How many `staging/` keys are listed, and how many of the newest are
/// looked at for their labels.
const STAGING_LISTED: usize = 10_000;
const STAGING_INSPECTED: usize = 500;
/// Dead-lettered staged messages looked at.
const DEAD_LETTERS_INSPECTED: usize = 100;
/// Keys shown per scope as the closest ones.
const CLOSEST_SHOWN: usize = 5;
/// Entries of one kind reported before the rest are only counted.
const FINDINGS_PER_KIND: usize = 10;

/// actions/toolkit's `getCacheVersion` with every input explicit: the path
/// patterns in order, the compression method (none if empty), the
/// `windows-only` marker Windows runners add unless `enableCrossOsArchive`,
/// and the salt. `cache_version_with(p, COMPRESSION, false)` is
/// [`runcache_archive::cache_version`]`(p)`.
pub fn cache_version_with(patterns: &[String], compression: &str, windows_only: bool) -> String {
    let mut parts: Vec<&str> = patterns.iter().map(String::as_str).collect();
    if !compression.is_empty() {
        parts.push(compression);
    }
    if windows_only {
        parts.push("windows-only");
    }
    parts.push("1.0");
    hex::encode(Sha256::digest(parts.join("|").as_bytes()))
}

/// The other compression methods actions/toolkit writes into versions.
const OTHER_COMPRESSIONS: [&str; 3] = ["zstd", "gzip", ""];

/// What to explain: the arguments of the restore in question.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub key: String,
    pub restore_keys: Vec<String>,
    pub paths: Vec<String>,
    pub min_trust: TrustLevel,
}

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
    Invalidated {
        git_ref: String,
        key: String,
        at: Option<DateTime<Utc>>,
        by: Option<String>,
        reason: Option<String>,
        /// The audit rule: `invalidation`, or `verification` when promote
        /// took an entry out of service.
        rule: Option<String>,
        /// The index record has expired; this comes from the audit log.
        record_removed: bool,
    },
    Evicted {
        git_ref: String,
        key: String,
        at: Option<DateTime<Utc>>,
        /// `ttl` or `quota`.
        rule: Option<String>,
        reason: Option<String>,
        by: Option<String>,
        record_removed: bool,
    },
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
    fn rank(&self) -> u8 {
        match self {
            Finding::Invalidated { .. } => 0,
            Finding::Evicted { .. } => 1,
            Finding::VersionMismatch { .. } => 2,
            Finding::BelowTrust { .. } => 3,
            Finding::Staged { .. } => 4,
            Finding::DeadLettered { .. } => 5,
            Finding::Quarantined { .. } => 6,
            Finding::OtherScope { .. } => 7,
            Finding::ClosestKeys { .. } => 8,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Finding::VersionMismatch { .. } => "version-mismatch",
            Finding::OtherScope { .. } => "other-scope",
            Finding::Invalidated { .. } => "invalidated",
            Finding::Evicted { .. } => "evicted",
            Finding::BelowTrust { .. } => "below-trust",
            Finding::Staged { .. } => "staged",
            Finding::DeadLettered { .. } => "dead-lettered",
            Finding::Quarantined { .. } => "quarantined",
            Finding::ClosestKeys { .. } => "closest-keys",
        }
    }
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

fn not_checked(check: &str, error: &StoreError) -> NotChecked {
    let reason = match error {
        StoreError::AccessDenied { action, resource } => format!(
            "not readable with these credentials ({action} on {resource} is denied); \
             run explain with a role that may read it to see this part"
        ),
        other => format!("could not check: {}", describe(other)),
    };
    NotChecked {
        check: check.to_string(),
        reason,
    }
}

/// Explains `req` for the run `ctx`.
#[instrument(skip_all, fields(key = %req.key, scope = %ctx.scope))]
pub async fn explain(
    backend: &Backend,
    ctx: &RunContext,
    req: &ExplainRequest,
) -> Result<Explanation, ExplainError> {
    validate_keys(&req.key, &req.restore_keys)?;
    let version = runcache_archive::cache_version(&req.paths);
    let lookup_req = LookupRequest {
        primary_key: req.key.clone(),
        restore_keys: req.restore_keys.clone(),
        version: version.clone(),
        min_trust: req.min_trust,
    };
    let Traced { hit, trace, scopes } = lookup_traced(backend, &ctx.job(), &lookup_req).await?;
    let mut out = Explanation {
        schema: REPORT_SCHEMA.into(),
        version: REPORT_VERSION,
        repository: ctx.scope.repository.clone(),
        git_ref: ctx.scope.git_ref.clone(),
        primary_key: req.key.clone(),
        restore_keys: req.restore_keys.clone(),
        paths: req.paths.clone(),
        compression: runcache_archive::COMPRESSION.into(),
        cache_version: version.clone(),
        min_trust: req.min_trust,
        readable_refs: scopes.iter().map(|s| s.git_ref.clone()).collect(),
        steps: trace.steps,
        result: SearchResult {
            hit_kind: hit.as_ref().map_or(HitKind::Miss, |h| h.kind),
            matched_key: hit.as_ref().map(|h| h.entry.cache_key.clone()),
            matched_ref: hit.as_ref().map(|h| h.entry.git_ref.clone()),
        },
        summary: String::new(),
        findings: Vec::new(),
        not_checked: Vec::new(),
    };
    if out.result.hit_kind != HitKind::Exact {
        let mut look = Look {
            backend,
            ctx,
            req,
            scopes: &scopes,
            version: &version,
            now: backend.clock.now(),
            findings: Vec::new(),
            not_checked: Vec::new(),
        };
        look.not_live(&trace.exact_not_live);
        look.below_trust(&trace.below_trust);
        look.elsewhere().await;
        look.audit_log().await;
        look.staging().await;
        look.dead_letters().await;
        look.closest_keys().await;
        // Stable sort: the likeliest reasons first, the search's order within.
        look.findings.sort_by_key(Finding::rank);
        out.findings = look.findings;
        out.not_checked = look.not_checked;
    }
    out.summary = summary(&out);
    Ok(out)
}

/// The looks around the primary key, collecting findings.
struct Look<'a> {
    backend: &'a Backend,
    ctx: &'a RunContext,
    req: &'a ExplainRequest,
    scopes: &'a [Scope],
    version: &'a str,
    now: DateTime<Utc>,
    findings: Vec<Finding>,
    not_checked: Vec<NotChecked>,
}

impl Look<'_> {
    fn readable(&self, git_ref: &str) -> bool {
        self.scopes.iter().any(|s| s.git_ref == git_ref)
    }

    fn age(&self, at: DateTime<Utc>) -> i64 {
        (self.now - at).num_seconds().max(0)
    }

    /// The exact key, soft-deleted, where restore looked.
    fn not_live(&mut self, entries: &[IndexEntry]) {
        for e in entries {
            self.findings.push(soft_deleted(e, None, false));
        }
    }

    fn below_trust(&mut self, entries: &[IndexEntry]) {
        for e in entries.iter().take(FINDINGS_PER_KIND) {
            self.findings.push(Finding::BelowTrust {
                git_ref: e.git_ref.clone(),
                key: e.cache_key.clone(),
                trust: e.trust,
                trigger_event: e.trigger_event.clone(),
                required: self.req.min_trust,
            });
        }
    }

    /// The key under other versions, and in scopes this run cannot read.
    async fn elsewhere(&mut self) {
        let repository = &self.ctx.scope.repository;
        let entries = match self.backend.index.by_key(repository, &self.req.key).await {
            Ok(entries) => entries,
            Err(e) => {
                self.not_checked
                    .push(not_checked("other-versions-and-scopes", &e));
                self.other_compressions().await;
                return;
            }
        };
        let mut mismatches = 0;
        let mut others = 0;
        for e in entries {
            if self.readable(&e.git_ref) {
                if e.cache_version == self.version || mismatches >= FINDINGS_PER_KIND {
                    continue;
                }
                mismatches += 1;
                let finding = self.version_mismatch(&e).await;
                self.findings.push(finding);
            } else if others < FINDINGS_PER_KIND {
                others += 1;
                self.findings.push(Finding::OtherScope {
                    why: why_invisible(&e.git_ref, self.ctx),
                    git_ref: e.git_ref.clone(),
                    key: e.cache_key.clone(),
                    state: e.state,
                    created_at: e.created_at,
                    same_version: e.cache_version == self.version,
                });
            }
        }
    }

    /// Without `by_key`: the key in the readable scopes under the versions
    /// the same paths give with another compression or on Windows.
    async fn other_compressions(&mut self) {
        for scope in self.scopes {
            for (compression, windows_only) in alternative_inputs() {
                let version = cache_version_with(&self.req.paths, compression, windows_only);
                if let Ok(Some(e)) = self.backend.index.get(scope, &version, &self.req.key).await {
                    let finding = self.version_mismatch(&e).await;
                    self.findings.push(finding);
                }
            }
        }
    }

    /// Names the input that differs: from the entry's provenance record
    /// when there is one, else by recomputing the version.
    async fn version_mismatch(&mut self, e: &IndexEntry) -> Finding {
        let record = match self.backend.provenance.get(&e.content_hash).await {
            Ok(records) => records
                .into_iter()
                .filter(|r| r.cache_version == e.cache_version)
                .max_by_key(|r| (r.upload_id == e.upload_id, r.promoted_at)),
            Err(err) => {
                if !self.not_checked.iter().any(|n| n.check == "provenance") {
                    self.not_checked.push(not_checked("provenance", &err));
                }
                None
            }
        };
        let mut differing = Vec::new();
        let (their_paths, their_compression) = match record {
            Some(r) => {
                if r.paths != self.req.paths {
                    let (mut a, mut b) = (r.paths.clone(), self.req.paths.clone());
                    a.sort();
                    b.sort();
                    differing.push(if a == b {
                        VersionInput::PathOrder
                    } else {
                        VersionInput::Paths
                    });
                }
                if r.compression != runcache_archive::COMPRESSION {
                    differing.push(VersionInput::Compression);
                }
                (Some(r.paths), Some(r.compression))
            }
            None => (None, None),
        };
        if differing.is_empty() {
            // Same recorded inputs (another producer's version rules), or
            // nothing recorded: try the inputs actions/toolkit varies.
            let found = alternative_inputs()
                .into_iter()
                .find(|(c, w)| cache_version_with(&self.req.paths, c, *w) == e.cache_version);
            match found {
                Some((compression, windows_only)) => {
                    if compression != runcache_archive::COMPRESSION {
                        differing.push(VersionInput::Compression);
                    }
                    if windows_only {
                        differing.push(VersionInput::WindowsOnly);
                    }
                    return Finding::VersionMismatch {
                        git_ref: e.git_ref.clone(),
                        key: e.cache_key.clone(),
                        state: e.state,
                        created_at: e.created_at,
                        their_version: e.cache_version.clone(),
                        differing_inputs: differing,
                        their_paths: their_paths.or_else(|| Some(self.req.paths.clone())),
                        their_compression: their_compression.or(Some(compression.to_string())),
                    };
                }
                None => differing.push(VersionInput::Unknown),
            }
        }
        Finding::VersionMismatch {
            git_ref: e.git_ref.clone(),
            key: e.cache_key.clone(),
            state: e.state,
            created_at: e.created_at,
            their_version: e.cache_version.clone(),
            differing_inputs: differing,
            their_paths,
            their_compression,
        }
    }

    /// Invalidations, evictions and rejections of the key in the readable
    /// scopes, from the audit log: the rule of an eviction, and what
    /// happened to entries whose records have since expired.
    async fn audit_log(&mut self) {
        let records = match self
            .backend
            .index
            .audit_log(&self.ctx.scope.repository, AUDIT_RECORDS_SEARCHED)
            .await
        {
            Ok(records) => records,
            Err(e) => {
                self.not_checked.push(not_checked("audit-log", &e));
                return;
            }
        };
        let mine: Vec<&AuditRecord> = records
            .iter()
            .filter(|r| r.cache_key.as_deref() == Some(self.req.key.as_str()))
            .filter(|r| r.git_ref.as_deref().is_some_and(|g| self.readable(g)))
            .collect();
        let mut quarantined = 0;
        for r in mine {
            let git_ref = r.git_ref.clone().unwrap_or_default();
            match r.action {
                AuditAction::Rejected if quarantined < FINDINGS_PER_KIND => {
                    quarantined += 1;
                    let finding = self.quarantined(r, git_ref).await;
                    self.findings.push(finding);
                }
                AuditAction::Invalidated | AuditAction::Evicted
                    if r.cache_version.as_deref() == Some(self.version) =>
                {
                    self.merge_audit(r, git_ref);
                }
                _ => {}
            }
        }
    }

    /// Adds an audit record's rule to the finding about its entry, or a
    /// finding of its own when the entry's record is gone.
    fn merge_audit(&mut self, r: &AuditRecord, git_ref: String) {
        let evicted = r.action == AuditAction::Evicted;
        for f in &mut self.findings {
            match f {
                Finding::Evicted {
                    git_ref: g, rule, ..
                } if evicted && *g == git_ref => {
                    rule.get_or_insert_with(|| r.rule.clone());
                    return;
                }
                Finding::Invalidated {
                    git_ref: g, rule, ..
                } if !evicted && *g == git_ref => {
                    rule.get_or_insert_with(|| r.rule.clone());
                    return;
                }
                _ => {}
            }
        }
        // Only the newest record of an entry that no longer has one
        // (records are newest first, so an older one finds this finding).
        self.findings.push(if evicted {
            Finding::Evicted {
                git_ref,
                key: self.req.key.clone(),
                at: Some(r.at),
                rule: Some(r.rule.clone()),
                reason: Some(r.reason.clone()),
                by: Some(r.actor.clone()),
                record_removed: true,
            }
        } else {
            Finding::Invalidated {
                git_ref,
                key: self.req.key.clone(),
                at: Some(r.at),
                by: Some(r.actor.clone()),
                reason: Some(r.reason.clone()),
                rule: Some(r.rule.clone()),
                record_removed: true,
            }
        });
    }

    async fn quarantined(&mut self, r: &AuditRecord, git_ref: String) -> Finding {
        // promote names its rejection records `rejected-{upload id}`.
        let upload_id = r.audit_id.strip_prefix("rejected-").map(str::to_string);
        let object_key = upload_id.as_deref().map(names::quarantine_key);
        let object = match &object_key {
            Some(key) => Some(match self.backend.blobs.head(key).await {
                Ok(Some(_)) => ObjectPresence::Present,
                Ok(None) => ObjectPresence::Gone,
                Err(e) => {
                    if !self.not_checked.iter().any(|n| n.check == "quarantine") {
                        self.not_checked.push(not_checked("quarantine", &e));
                    }
                    ObjectPresence::Unreadable
                }
            }),
            None => None,
        };
        Finding::Quarantined {
            git_ref,
            upload_id,
            at: r.at,
            reason: r.reason.clone(),
            object_key,
            object,
        }
    }

    /// Saves of the key still under `staging/` (labelled by `save`).
    async fn staging(&mut self) {
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = match self
                .backend
                .blobs
                .list(names::STAGING_PREFIX, after.as_deref(), 1000)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    self.not_checked.push(not_checked("staging", &e));
                    return;
                }
            };
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(next) if keys.len() < STAGING_LISTED => after = Some(next),
                _ => break,
            }
        }
        // Upload ids are UUIDv7: their order is upload order; newest last.
        keys.sort_by(|a, b| staging::upload_id_of(a).cmp(staging::upload_id_of(b)));
        let newest = keys.len().saturating_sub(STAGING_INSPECTED);
        let mut unlabelled = 0;
        for key in &keys[newest..] {
            let meta = match self.backend.blobs.head(key).await {
                Ok(Some(meta)) => meta,
                Ok(None) => continue, // promoted meanwhile
                Err(e) => {
                    self.not_checked.push(not_checked("staging", &e));
                    return;
                }
            };
            let Some(labels) = staging::Labels::read(&meta.metadata) else {
                unlabelled += 1;
                continue;
            };
            if !labels.is_for_key(&self.req.key)
                || labels.repository.as_deref() != Some(self.ctx.scope.repository.as_str())
                || !self.readable(&labels.git_ref)
            {
                continue;
            }
            self.findings.push(Finding::Staged {
                upload_id: staging::upload_id_of(key).to_string(),
                staged_at: meta.last_modified,
                age_seconds: self.age(meta.last_modified),
                same_version: labels.cache_version.as_deref() == Some(self.version),
                git_ref: labels.git_ref,
            });
        }
        if unlabelled > 0 {
            self.not_checked.push(NotChecked {
                check: "staging".into(),
                reason: format!(
                    "{unlabelled} staged upload(s) carry no key label (an older runcache saved \
                     them), so whether one is for this key is unknown"
                ),
            });
        }
    }

    /// Saves of the key whose staged message went to the dead-letter queue.
    async fn dead_letters(&mut self) {
        let messages = match self
            .backend
            .staged
            .dead_letters(DEAD_LETTERS_INSPECTED)
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                self.not_checked.push(not_checked("dead-letters", &e));
                return;
            }
        };
        for m in messages {
            let Ok(Event::Staged(ev)) = Event::decode(&m.body) else {
                continue;
            };
            if ev.cache_key != self.req.key
                || ev.scope.repository != self.ctx.scope.repository
                || !self.readable(&ev.scope.git_ref)
            {
                continue;
            }
            self.findings.push(Finding::DeadLettered {
                git_ref: ev.scope.git_ref.clone(),
                upload_id: ev.upload_id.clone(),
                sent_at: m.sent_at,
                reason: m.attributes.get(ATTR_DEAD_LETTER_REASON).cloned(),
            });
        }
    }

    /// Per readable scope, the keys (any state) sharing the longest prefix
    /// with the primary key, newest first.
    async fn closest_keys(&mut self) {
        for scope in self.scopes {
            match closest_in(self.backend, scope, self.version, &self.req.key).await {
                Ok((common_prefix, mut entries)) => {
                    entries.sort_by_key(|e| std::cmp::Reverse(e.created_at));
                    let keys = entries
                        .into_iter()
                        .take(CLOSEST_SHOWN)
                        .map(|e| NearbyKey {
                            age_seconds: self.age(e.created_at),
                            key: e.cache_key,
                            state: e.state,
                            created_at: e.created_at,
                        })
                        .collect();
                    self.findings.push(Finding::ClosestKeys {
                        git_ref: scope.git_ref.clone(),
                        common_prefix,
                        keys,
                    });
                }
                Err(e) => {
                    self.not_checked.push(not_checked("closest-keys", &e));
                    return;
                }
            }
        }
    }
}

/// The other (compression, windows-only) inputs of a version.
fn alternative_inputs() -> Vec<(&'static str, bool)> {
    let mut inputs: Vec<(&str, bool)> = OTHER_COMPRESSIONS.iter().map(|c| (*c, false)).collect();
    inputs.extend(
        std::iter::once(runcache_archive::COMPRESSION)
            .chain(OTHER_COMPRESSIONS)
            .map(|c| (c, true)),
    );
    inputs
}

fn soft_deleted(e: &IndexEntry, rule: Option<String>, record_removed: bool) -> Finding {
    if e.state == EntryState::Evicted {
        Finding::Evicted {
            git_ref: e.git_ref.clone(),
            key: e.cache_key.clone(),
            at: e.invalidated_at,
            rule: rule.or_else(|| eviction_rule(e.reason.as_deref())),
            reason: e.reason.clone(),
            by: e.invalidated_by.clone(),
            record_removed,
        }
    } else {
        Finding::Invalidated {
            git_ref: e.git_ref.clone(),
            key: e.cache_key.clone(),
            at: e.invalidated_at,
            by: e.invalidated_by.clone(),
            reason: e.reason.clone(),
            rule,
            record_removed,
        }
    }
}

/// The sweep's rule from its reason text, when no audit record says it.
fn eviction_rule(reason: Option<&str>) -> Option<String> {
    let reason = reason?;
    if reason.starts_with("not accessed for") {
        Some("ttl".into())
    } else if reason.contains("over its quota") {
        Some("quota".into())
    } else {
        None
    }
}

/// The longest prefix of `key` that some other key of the scope shares, by
/// binary search over its length (a prefix shared by some key has every
/// shorter prefix shared too), and the entries sharing it.
async fn closest_in(
    backend: &Backend,
    scope: &Scope,
    version: &str,
    key: &str,
) -> Result<(String, Vec<IndexEntry>), StoreError> {
    let boundaries: Vec<usize> = key
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(key.len()))
        .collect();
    let others = |entries: Vec<IndexEntry>| -> Vec<IndexEntry> {
        entries.into_iter().filter(|e| e.cache_key != key).collect()
    };
    let shared = |prefix: &str| {
        let prefix = prefix.to_string();
        async move {
            backend
                .index
                .list_prefix(scope, version, &prefix, 2)
                .await
                .map(|found| found.iter().any(|e| e.cache_key != key))
        }
    };
    if !shared("").await? {
        return Ok((String::new(), Vec::new()));
    }
    // boundaries[lo] is shared; find the largest shared index.
    let (mut lo, mut hi) = (0, boundaries.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if shared(&key[..boundaries[mid]]).await? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let prefix = &key[..boundaries[lo]];
    let found = backend
        .index
        .list_prefix(scope, version, prefix, 100)
        .await?;
    Ok((prefix.to_string(), others(found)))
}

/// Why a run cannot read `git_ref` (DESIGN.md "Scope isolation").
fn why_invisible(git_ref: &str, ctx: &RunContext) -> String {
    let default = &ctx.default_branch;
    if let Some(pr) = git_ref.strip_prefix("refs/pull/") {
        let number = pr.split('/').next().unwrap_or(pr);
        return format!(
            "it belongs to pull request #{number}; a pull request's entries are visible only to \
             that pull request"
        );
    }
    if ctx.scope.is_pull_request() {
        let base = ctx
            .base_ref
            .as_deref()
            .map(|b| format!("its base branch `{b}`, "))
            .unwrap_or_default();
        return format!(
            "this pull request reads only its own entries, {base}and the default branch \
             `{default}`'s"
        );
    }
    match git_ref.strip_prefix("refs/heads/") {
        Some(branch) => format!(
            "`{branch}` is a sibling branch; a branch reads only its own entries and the default \
             branch `{default}`'s"
        ),
        None => format!(
            "a run reads only its own ref's entries, its pull request's base branch's and the \
             default branch `{default}`'s"
        ),
    }
}

fn summary(x: &Explanation) -> String {
    let key = &x.primary_key;
    match x.result.hit_kind {
        HitKind::Exact => format!(
            "`{key}` matches exactly in {}: restore restores it (cache-hit=true).",
            x.result.matched_ref.as_deref().unwrap_or("?")
        ),
        HitKind::Prefix => format!(
            "No exact match for `{key}`; restore uses `{}` from {} (a prefix match, \
             cache-hit=false).",
            x.result.matched_key.as_deref().unwrap_or("?"),
            x.result.matched_ref.as_deref().unwrap_or("?")
        ),
        HitKind::Miss => {
            let traces = x
                .findings
                .iter()
                .filter(|f| !matches!(f, Finding::ClosestKeys { .. }))
                .count();
            let scopes = x.readable_refs.len();
            if traces == 0 {
                format!(
                    "Nothing matched `{key}` or its restore keys in the {scopes} scope(s) this \
                     run reads, and there is no trace of `{key}` anywhere it may look: it was \
                     never saved with these paths where this run can see it, or its records \
                     have expired."
                )
            } else {
                format!(
                    "Nothing matched `{key}` or its restore keys in the {scopes} scope(s) this \
                     run reads; see why below."
                )
            }
        }
    }
}

fn age_text(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or("at an unknown time".into(), |t| {
        t.format("on %Y-%m-%d at %H:%M:%S UTC").to_string()
    })
}

fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

fn path_list(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("--path {p}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Finding {
    /// One line for people.
    pub fn describe(&self, x: &Explanation) -> String {
        match self {
            Finding::VersionMismatch {
                git_ref,
                key,
                state,
                their_version,
                differing_inputs,
                their_paths,
                their_compression,
                ..
            } => {
                let why: Vec<String> = differing_inputs
                    .iter()
                    .map(|input| match input {
                        VersionInput::Paths => format!(
                            "the path list differs: it was saved with `{}`, you gave `{}`",
                            path_list(their_paths.as_deref().unwrap_or_default()),
                            path_list(&x.paths)
                        ),
                        VersionInput::PathOrder => format!(
                            "the same paths in another order: it was saved with `{}`, you gave \
                             `{}` (the order is part of the version)",
                            path_list(their_paths.as_deref().unwrap_or_default()),
                            path_list(&x.paths)
                        ),
                        VersionInput::Compression => format!(
                            "the compression differs: it was saved with `{}`, runcache uses `{}`",
                            their_compression
                                .as_deref()
                                .filter(|c| !c.is_empty())
                                .unwrap_or("none"),
                            x.compression
                        ),
                        VersionInput::WindowsOnly => "it was saved on Windows without \
                             enableCrossOsArchive (its version is marked windows-only)"
                            .to_string(),
                        VersionInput::Unknown => "its paths are not recorded, and no other \
                             compression explains it: most likely the path list differs"
                            .to_string(),
                    })
                    .collect();
                format!(
                    "`{key}` exists in {git_ref} ({}) under another version ({}… vs your {}…): {}",
                    state.as_str(),
                    short(their_version),
                    short(&x.cache_version),
                    why.join("; ")
                )
            }
            Finding::OtherScope {
                git_ref,
                key,
                state,
                created_at,
                same_version,
                why,
            } => format!(
                "`{key}` exists in {git_ref} ({}, {} old{}), which this run cannot read: {why}",
                state.as_str(),
                age_text((Utc::now() - *created_at).num_seconds().max(0)),
                if *same_version {
                    ""
                } else {
                    ", another version"
                }
            ),
            Finding::Invalidated {
                git_ref,
                key,
                at,
                by,
                reason,
                rule,
                record_removed,
            } => format!(
                "`{key}` in {git_ref} was invalidated {} by {}{}: {}{}",
                when(*at),
                by.as_deref().unwrap_or("someone unknown"),
                match rule.as_deref() {
                    Some("verification") => " (promote could not keep its blob)",
                    _ => "",
                },
                reason.as_deref().unwrap_or("no reason recorded"),
                if *record_removed {
                    " (from the audit log; the entry has since expired)"
                } else {
                    ""
                }
            ),
            Finding::Evicted {
                git_ref,
                key,
                at,
                rule,
                reason,
                record_removed,
                ..
            } => format!(
                "`{key}` in {git_ref} was evicted {} by the {} rule: {}{}",
                when(*at),
                rule.as_deref().unwrap_or("sweep's"),
                reason.as_deref().unwrap_or("no reason recorded"),
                if *record_removed {
                    " (from the audit log; the entry has since expired)"
                } else {
                    ""
                }
            ),
            Finding::BelowTrust {
                git_ref,
                key,
                trust,
                trigger_event,
                required,
            } => format!(
                "`{key}` in {git_ref} was passed over: built by a `{trigger_event}` run \
                 ({trust} trust), below --trust {required}"
            ),
            Finding::Staged {
                git_ref,
                upload_id,
                age_seconds,
                same_version,
                ..
            } => format!(
                "a save of `{}` to {git_ref} is still staged, not promoted (upload {upload_id}, {} \
                 old{}): promotion has not run or is failing; on AWS check the promote worker \
                 and the staged queue's DLQ, on the local backend run `runcache-worker promote \
                 --once`",
                x.primary_key,
                age_text(*age_seconds),
                if *same_version {
                    ""
                } else {
                    ", another version"
                }
            ),
            Finding::DeadLettered {
                git_ref,
                upload_id,
                sent_at,
                reason,
            } => format!(
                "a save of `{}` to {git_ref} (upload {upload_id}, sent {}) was dead-lettered \
                 and never promoted: {}",
                x.primary_key,
                sent_at.format("%Y-%m-%d %H:%M:%S UTC"),
                reason.as_deref().unwrap_or("no reason recorded")
            ),
            Finding::Quarantined {
                git_ref,
                at,
                reason,
                object_key,
                object,
                ..
            } => format!(
                "a save of `{}` to {git_ref} was rejected {} (its bytes did not match their \
                 claimed hash): {reason}{}",
                x.primary_key,
                when(Some(*at)),
                match (object_key, object) {
                    (Some(k), Some(ObjectPresence::Present)) => format!("; kept as {k}"),
                    (Some(k), Some(ObjectPresence::Gone)) => format!("; {k} has since expired"),
                    (Some(k), _) => format!("; kept as {k} (not readable with these credentials)"),
                    (None, _) => String::new(),
                }
            ),
            Finding::ClosestKeys {
                git_ref,
                common_prefix,
                keys,
            } => {
                if keys.is_empty() {
                    return format!("{git_ref} holds no other key with these paths");
                }
                let list: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "`{}` ({}, {} old)",
                            k.key,
                            k.state.as_str(),
                            age_text(k.age_seconds)
                        )
                    })
                    .collect();
                if common_prefix.is_empty() {
                    format!(
                        "no key in {git_ref} shares a prefix with `{}`; its newest: {}",
                        x.primary_key,
                        list.join(", ")
                    )
                } else {
                    format!(
                        "closest keys in {git_ref} (sharing `{common_prefix}`): {}",
                        list.join(", ")
                    )
                }
            }
        }
    }
}

/// Quotes a value for a shell command line when it needs it.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

impl Explanation {
    /// The `runcache explain` command line for the same restore, with its
    /// scope spelled out so that it runs the same anywhere (a laptop with
    /// read access, outside the job).
    pub fn command(&self) -> String {
        let mut cmd = format!("runcache explain --key {}", shell_word(&self.primary_key));
        for k in &self.restore_keys {
            cmd.push_str(&format!(" --restore-key {}", shell_word(k)));
        }
        for p in &self.paths {
            cmd.push_str(&format!(" --path {}", shell_word(p)));
        }
        if self.min_trust != TrustLevel::Untrusted {
            cmd.push_str(&format!(" --trust {}", self.min_trust));
        }
        cmd.push_str(&format!(
            " --repository {} --ref {}",
            shell_word(&self.repository),
            shell_word(&self.git_ref)
        ));
        // The base branch is the second scope a pull request reads.
        if self.git_ref.starts_with("refs/pull/") {
            if let Some(base) = self
                .readable_refs
                .get(1)
                .filter(|_| self.readable_refs.len() > 2)
            {
                let base = base.strip_prefix("refs/heads/").unwrap_or(base);
                cmd.push_str(&format!(" --base-ref {}", shell_word(base)));
            }
        }
        // The default branch is always the last scope read.
        if let Some(default) = self.readable_refs.last() {
            let default = default.strip_prefix("refs/heads/").unwrap_or(default);
            if default != "main" {
                cmd.push_str(&format!(" --default-branch {}", shell_word(default)));
            }
        }
        cmd
    }

    /// The short form printed after a miss (`restore --explain`).
    pub fn render_short(&self) -> String {
        let mut out = format!("runcache: why: {}\n", self.summary);
        for f in self
            .findings
            .iter()
            .filter(|f| !matches!(f, Finding::ClosestKeys { keys, .. } if keys.is_empty()))
        {
            out.push_str(&format!("  - {}\n", f.describe(self)));
        }
        for n in &self.not_checked {
            out.push_str(&format!("  - not checked ({}): {}\n", n.check, n.reason));
        }
        out.push_str(&format!(
            "  the whole search, step by step: {}\n",
            self.command()
        ));
        out
    }

    /// The full report of `runcache explain`.
    pub fn render_long(&self) -> String {
        let mut out = format!(
            "Restore of `{}` in {}@{}\n  paths {} (compression {}), version {}\n  reads, in order: {}\n",
            self.primary_key,
            self.repository,
            self.git_ref,
            path_list(&self.paths),
            self.compression,
            self.cache_version,
            self.readable_refs.join(", ")
        );
        if self.min_trust != TrustLevel::Untrusted {
            out.push_str(&format!(
                "  only entries of trust {} or more\n",
                self.min_trust
            ));
        }
        out.push_str("\nSearch, as restore runs it:\n");
        for (i, s) in self.steps.iter().enumerate() {
            let what = match (s.lookup, s.role) {
                (Lookup::Exact, _) => format!("exact key `{}`", s.looked_for),
                (Lookup::Prefix, KeyRole::PrimaryKey) => {
                    format!("primary key as prefix `{}`", s.looked_for)
                }
                (Lookup::Prefix, KeyRole::RestoreKey) => {
                    format!("restore key `{}`", s.looked_for)
                }
            };
            let result = match s.outcome {
                StepOutcome::Matched => format!("matched `{}`", s.key.as_deref().unwrap_or("?")),
                StepOutcome::NotFound => "nothing".to_string(),
                StepOutcome::NotLive => format!(
                    "found, but {}",
                    s.state.map_or("not live", EntryState::as_str)
                ),
                StepOutcome::BelowTrust => format!(
                    "only entries below --trust {} (newest `{}`)",
                    self.min_trust,
                    s.key.as_deref().unwrap_or("?")
                ),
            };
            out.push_str(&format!(
                "  {:>2}. {:<24} {what}: {result}\n",
                i + 1,
                s.git_ref
            ));
        }
        out.push_str(&format!("\n{}\n", self.summary));
        if !self.findings.is_empty() {
            out.push_str("\nFound around it:\n");
            for f in &self.findings {
                out.push_str(&format!("  - [{}] {}\n", f.kind(), f.describe(self)));
            }
        }
        if !self.not_checked.is_empty() {
            out.push_str("\nNot checked:\n");
            for n in &self.not_checked {
                out.push_str(&format!("  - {}: {}\n", n.check, n.reason));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_formula_matches_the_archive_crate() {
        let paths = vec!["node_modules".to_string(), "~/.npm".to_string()];
        assert_eq!(
            cache_version_with(&paths, runcache_archive::COMPRESSION, false),
            runcache_archive::cache_version(&paths)
        );
        assert_ne!(
            cache_version_with(&paths, "gzip", false),
            runcache_archive::cache_version(&paths)
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("deps-linux:abc"), "deps-linux:abc");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("~/.npm"), "'~/.npm'");
    }
}
