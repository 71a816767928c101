//! invalidate: soft-deletes every live entry a `cache.invalidate` selector
//! matches. From the state change on, restores miss the entry (the index
//! search returns live entries only); its blob is left for `sweep`, which
//! deletes it once nothing live references it.
//!
//! Steps, each safe to repeat and to crash after (a redelivery resumes):
//! 1. Validate the selector: an empty one would match everything, so it is
//!    rejected (dead-lettered with the reason), as is a message whose
//!    selector can never be satisfied.
//! 2. Find the matches ([`runcache_infra::index::matching`]): `by_repository` (with the toolchain
//!    if given), else `by_lockfile`, else a scan; every selector field is
//!    then applied (they combine with AND).
//! 3. For each live match: `set_state(Invalidated, at = requestedAt,
//!    reason, by = requestedBy)`. The change is deterministic, so an entry
//!    this request already invalidated (on an earlier delivery) is
//!    recognised: it carries exactly this request's (at, by, reason). (Two
//!    requests identical in all three are taken for one; the index entry
//!    has no field for the request id.)
//! 4. For each entry this request invalidated (now or earlier): the audit
//!    record `invalidated-{requestId}-{entry fingerprint}` (action
//!    `invalidated`, rule `invalidation`); `append_audit` ignores a
//!    repeated id, so a redelivery never duplicates it.
//! 5. For each of them: the outcome `invalidated` for metrics. Its body is
//!    deterministic too, so the metrics worker drops a re-emission it has
//!    already counted; across processes metrics are at-least-once.
//!
//! The audit record follows the state change (rather than preceding it) so
//! that it never claims an invalidation that did not happen; step 3's
//! recognition of "ours" is what makes a crash between 3 and 4 safe.

use async_trait::async_trait;
use runcache_infra::{index::matching, Backend, ReceivedMessage, StateChange, StoreError};
use runcache_schemas::{
    AuditAction, AuditRecord, CacheInvalidate, EntryState, Event, IndexEntry, OutcomeKind,
};
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::{
    consumer::{Handler, Outcome},
    records::{entry_fingerprint, entry_outcome, send_outcome},
};

/// The invalidate handler.
#[derive(Debug, Clone)]
pub struct Invalidator {
    backend: Backend,
}

/// What one invalidation request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvalidationReport {
    /// Entries the selector matched, in any state.
    pub matched: u64,
    /// Entries this delivery moved from live to invalidated.
    pub invalidated: u64,
    /// Entries an earlier delivery of the same request had invalidated
    /// (their audit record and outcome were completed again).
    pub resumed: u64,
    /// Blobs removed from the CAS because they did not hash to their name
    /// (`purge_corrupt_blobs`).
    pub purged: u64,
}

impl Invalidator {
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }

    /// Applies one request. A selector that fails validation is an
    /// [`StoreError::Invalid`] (the handler dead-letters it).
    #[instrument(skip_all, fields(request_id = %ev.request_id, requested_by = %ev.requested_by))]
    pub async fn invalidate(&self, ev: &CacheInvalidate) -> Result<InvalidationReport, StoreError> {
        ev.selector.validate().map_err(|e| StoreError::Invalid {
            what: format!("invalidation request {}", ev.request_id),
            reason: e.to_string(),
        })?;
        let b = &self.backend;
        let change = StateChange {
            state: EntryState::Invalidated,
            at: ev.requested_at,
            reason: ev.reason.clone(),
            by: ev.requested_by.clone(),
        };
        let mut report = InvalidationReport::default();
        for entry in matching(&*b.index, &ev.selector).await? {
            report.matched += 1;
            let ours = if entry.is_live() {
                let done = b
                    .index
                    .set_state(
                        &entry.scope(),
                        &entry.cache_version,
                        &entry.cache_key,
                        &change,
                    )
                    .await?;
                if done {
                    report.invalidated += 1;
                    true
                } else {
                    // Changed under us (another request, a sweep): ours
                    // only if the change that won is this request's.
                    let now = b
                        .index
                        .get(&entry.scope(), &entry.cache_version, &entry.cache_key)
                        .await?;
                    now.is_some_and(|e| invalidated_by(&e, &change))
                }
            } else if invalidated_by(&entry, &change) {
                report.resumed += 1;
                true
            } else {
                false
            };
            if !ours {
                continue;
            }
            b.index
                .append_audit(&AuditRecord {
                    audit_id: format!(
                        "invalidated-{}-{}",
                        ev.request_id,
                        entry_fingerprint(&entry)
                    ),
                    action: AuditAction::Invalidated,
                    repository: entry.repository.clone(),
                    git_ref: Some(entry.git_ref.clone()),
                    cache_key: Some(entry.cache_key.clone()),
                    cache_version: Some(entry.cache_version.clone()),
                    content_hash: Some(entry.content_hash.clone()),
                    reason: ev.reason.clone(),
                    rule: "invalidation".into(),
                    actor: ev.requested_by.clone(),
                    at: ev.requested_at,
                })
                .await?;
            send_outcome(
                b,
                &entry_outcome(
                    OutcomeKind::Invalidated,
                    &entry,
                    &ev.reason,
                    ev.requested_at,
                ),
            )
            .await?;
            if ev.purge_corrupt_blobs && self.purge_if_corrupt(ev, &entry).await? {
                report.purged += 1;
            }
        }
        info!(
            matched = report.matched,
            invalidated = report.invalidated,
            resumed = report.resumed,
            purged = report.purged,
            "invalidation applied"
        );
        Ok(report)
    }

    /// Re-hashes `entry`'s blob and deletes it (audited) when it does not
    /// hash to its name, so a later save stores fresh bytes rather than
    /// deduplicating onto it. A blob already gone is nothing to do (a
    /// redelivery, or a blob that was missing all along).
    async fn purge_if_corrupt(
        &self,
        ev: &CacheInvalidate,
        entry: &IndexEntry,
    ) -> Result<bool, StoreError> {
        let b = &self.backend;
        let body = match b.blobs.get(&entry.s3_key, None).await {
            Ok(body) => body,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let reason = match runcache_infra::digest::digest(body).await {
            Ok(d) if d.hash == entry.content_hash => return Ok(false),
            Ok(d) => format!("the blob hashes to {}, not to its name", d.hash),
            Err(e) => format!("the blob is unreadable: {e}"),
        };
        b.blobs.delete(&entry.s3_key).await?;
        warn!(key = %entry.s3_key, %reason, "corrupt blob removed from the CAS");
        b.index
            .append_audit(&AuditRecord {
                audit_id: format!("purged-{}-{}", ev.request_id, entry.content_hash.hex()),
                action: AuditAction::Deleted,
                repository: entry.repository.clone(),
                git_ref: Some(entry.git_ref.clone()),
                cache_key: Some(entry.cache_key.clone()),
                cache_version: Some(entry.cache_version.clone()),
                content_hash: Some(entry.content_hash.clone()),
                reason: format!("{reason} ({})", ev.reason),
                rule: "verification".into(),
                actor: ev.requested_by.clone(),
                at: ev.requested_at,
            })
            .await?;
        Ok(true)
    }
}

/// Whether `entry` carries exactly this state change.
fn invalidated_by(entry: &IndexEntry, change: &StateChange) -> bool {
    entry.state == change.state
        && entry.invalidated_at == Some(change.at)
        && entry.invalidated_by.as_deref() == Some(change.by.as_str())
        && entry.reason.as_deref() == Some(change.reason.as_str())
}

#[async_trait]
impl Handler for Invalidator {
    fn name(&self) -> &'static str {
        "invalidate"
    }

    async fn handle(&self, event: Event, _message: &ReceivedMessage) -> Outcome {
        let Event::Invalidate(ev) = event else {
            return Outcome::Reject {
                reason: format!("invalidate takes cache.invalidate, not {}", event.schema()),
            };
        };
        match self.invalidate(&ev).await {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::from_store_error(&e),
        }
    }
}
