//! `runcache explain`: why a restore missed, or why it matched what it did.
//!
//! It runs restore's own search, traced
//! ([`runcache_cache::lookup::lookup_traced`], the one implementation in
//! `runcache_infra::index`: per readable scope the exact key, then the
//! primary key as a prefix, then each restore key) and reports every step.
//! Unless the primary key matched exactly, it then looks around that key
//! for what a user expected to match:
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
//!
//! Here: the request and [`explain`]. The report's types are in `report`,
//! the looks around the key in `look`, the text forms in `render`.

use chrono::{DateTime, Utc};
use runcache_cache::lookup::{lookup_traced, Traced};
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

use crate::{context::RunContext, keys::KeyError};

/// `schema` of the JSON report; `version` changes only when a field is
/// removed or changes meaning (new fields may appear).
pub const REPORT_SCHEMA: &str = "runcache.explain";
pub const REPORT_VERSION: u32 = 1;

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

mod look;
mod render;
mod report;

use look::Look;
use render::summary;
pub use report::*;

/// Explains `req` for the run `ctx`.
#[instrument(skip_all, fields(key = %req.key, scope = %ctx.scope))]
pub async fn explain(
    backend: &Backend,
    ctx: &RunContext,
    req: &ExplainRequest,
) -> Result<Explanation, ExplainError> {
    let lookup_req = req.lookup_request()?;
    let version = lookup_req.version.clone();
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
    if let Some(hit) = &hit {
        if let Some(reason) = unrestorable(backend, &hit.entry).await {
            out.findings.push(Finding::Unrestorable {
                git_ref: hit.entry.git_ref.clone(),
                key: hit.entry.cache_key.clone(),
                content_hash: hit.entry.content_hash.to_string(),
                reason,
            });
        }
    }
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
        out.findings.extend(look.findings);
        out.not_checked = look.not_checked;
    }
    out.summary = summary(&out);
    Ok(out)
}

/// Why the blob of a found entry cannot be restored, if it cannot: it is
/// missing, or it does not hash to its name (read and hashed in full, as a
/// restore would).
async fn unrestorable(backend: &Backend, entry: &runcache_schemas::IndexEntry) -> Option<String> {
    let body = match backend.blobs.get(&entry.s3_key, None).await {
        Ok(body) => body,
        Err(e) if e.is_not_found() => {
            return Some(format!(
                "its blob {} is missing from the store",
                entry.s3_key
            ))
        }
        Err(e) => return Some(format!("its blob {} is unreadable: {e}", entry.s3_key)),
    };
    match runcache_infra::digest::digest(body).await {
        Ok(d) if d.hash == entry.content_hash => None,
        Ok(d) => Some(format!(
            "its blob {} is corrupt (it hashes to {})",
            entry.s3_key, d.hash
        )),
        Err(e) => Some(format!("its blob {} is unreadable: {e}", entry.s3_key)),
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
}
