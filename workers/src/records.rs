//! What the workers write besides index entries, shared by every handler:
//! `worker.outcome` events (for the metrics worker) and the stable ids that
//! make audit records idempotent.

use runcache_infra::{Backend, OutgoingMessage, StoreError};
use runcache_schemas::{IndexEntry, OutcomeKind, WorkerOutcome};
use sha2::{Digest, Sha256};

/// Sends a `worker.outcome` on the accessed queue (the metrics worker's).
pub async fn send_outcome(backend: &Backend, outcome: &WorkerOutcome) -> Result<(), StoreError> {
    backend
        .accessed
        .send(OutgoingMessage::event(
            outcome,
            &crate::consumer::child_traceparent(),
        ))
        .await
        .map(|_| ())
}

/// The outcome event about one index entry (eviction, invalidation).
pub fn entry_outcome(
    kind: OutcomeKind,
    entry: &IndexEntry,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> WorkerOutcome {
    WorkerOutcome {
        kind,
        repository: entry.repository.clone(),
        git_ref: Some(entry.git_ref.clone()),
        cache_key: Some(entry.cache_key.clone()),
        content_hash: Some(entry.content_hash.clone()),
        upload_id: Some(entry.upload_id.clone()),
        size_bytes: Some(entry.size_bytes),
        latency_ms: None,
        reason: Some(reason.to_string()),
        at,
    }
}

/// A short, stable name for one incarnation of an entry: its identity
/// (repository, ref, version, key) and its creation time, so that an entry
/// re-created under the same key later gets a different one. Used in audit
/// ids, which are idempotent (`append_audit` ignores a repeated id).
pub fn entry_fingerprint(entry: &IndexEntry) -> String {
    let mut h = Sha256::new();
    for part in [
        entry.repository.as_str(),
        entry.git_ref.as_str(),
        entry.cache_version.as_str(),
        entry.cache_key.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(entry.created_at.timestamp_micros().to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A short stable digest of any text (ids built from free-form parts).
pub fn short_digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}
