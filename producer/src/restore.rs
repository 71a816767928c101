//! `runcache restore`: the search of DESIGN.md "Restore semantics", then a
//! streamed download that is hashed and unpacked in the same pass into a
//! temporary directory, moved into place only once the hash matched.

use std::{path::PathBuf, time::Instant};

use chrono::{DateTime, Utc};
use runcache_archive::{ArchiveError, ExtractLimits, Extraction};
use runcache_cache::{
    fetch,
    lookup::{access_event, lookup, report_access, LookupRequest},
};
use runcache_infra::{index::SearchHit, Backend, StoreError};
use runcache_schemas::{ContentHash, HitKind, TrustLevel};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::io::SyncIoBridge;
use tracing::instrument;

use crate::{
    context::RunContext,
    keys::{validate_keys, KeyError},
    outputs::RestoreOutputs,
};

/// What a restore asks for, and what `explain` explains: the key ladder,
/// the path patterns (they give the version, as in actions/cache) and the
/// least trust accepted.
#[derive(Debug, Clone)]
pub struct RestoreQuery {
    pub key: String,
    pub restore_keys: Vec<String>,
    pub paths: Vec<String>,
    pub min_trust: TrustLevel,
}

impl RestoreQuery {
    /// The cache library's lookup for this query, once its keys are valid.
    pub fn lookup_request(&self) -> Result<LookupRequest, KeyError> {
        validate_keys(&self.key, &self.restore_keys)?;
        Ok(LookupRequest {
            primary_key: self.key.clone(),
            restore_keys: self.restore_keys.clone(),
            version: runcache_archive::cache_version(&self.paths),
            min_trust: self.min_trust,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub query: RestoreQuery,
    pub lookup_only: bool,
    pub limits: ExtractLimits,
    /// Show a progress bar on a terminal for long downloads.
    pub progress: bool,
}

impl RestoreRequest {
    /// Restore `key` (else the newest entry under each restore key) into
    /// `paths`, with the defaults: any trust, the default extraction
    /// limits, no progress bar.
    pub fn new(key: impl Into<String>, restore_keys: Vec<String>, paths: Vec<String>) -> Self {
        Self {
            query: RestoreQuery {
                key: key.into(),
                restore_keys,
                paths,
                min_trust: TrustLevel::Untrusted,
            },
            lookup_only: false,
            limits: ExtractLimits::default(),
            progress: false,
        }
    }
}

/// What a restore did; `restore --json` prints it (the step outputs at the
/// top level, as before, then the rest).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    #[serde(flatten)]
    pub outputs: RestoreOutputs,
    pub hit_kind: HitKind,
    pub matched_ref: Option<String>,
    pub content_hash: Option<String>,
    pub bytes: u64,
    pub entries: u64,
    /// The index search.
    pub lookup_ms: u64,
    /// Download and extraction, which run as one streaming pass (the
    /// download waits when extraction falls behind), hashed on the way.
    pub transfer_ms: u64,
    /// Everything, lookup to last file in place.
    pub duration_ms: u64,
    /// Why the restore could not run (it then reports a miss and the build
    /// goes on uncached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RestoreReport {
    /// A miss of `primary_key` after a lookup of `lookup_ms`.
    pub fn miss(primary_key: &str, lookup_ms: u64) -> Self {
        Self {
            outputs: RestoreOutputs {
                cache_primary_key: primary_key.to_string(),
                ..Default::default()
            },
            hit_kind: HitKind::Miss,
            matched_ref: None,
            content_hash: None,
            bytes: 0,
            entries: 0,
            lookup_ms,
            transfer_ms: 0,
            duration_ms: lookup_ms,
            error: None,
        }
    }

    /// The miss a restore that could not run reports for `primary_key`.
    pub fn failed(primary_key: &str, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::miss(primary_key, 0)
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cache store: {0}")]
    Store(#[from] StoreError),
    #[error("the cached archive was refused, nothing was restored: {0}")]
    Archive(#[from] ArchiveError),
    #[error("the extractor stopped unexpectedly: {0}")]
    Task(String),
}

#[instrument(skip_all, fields(key = %req.query.key, scope = %ctx.scope))]
pub async fn restore(
    backend: &Backend,
    ctx: &RunContext,
    req: &RestoreRequest,
) -> Result<RestoreReport, RestoreError> {
    let lookup_req = req.query.lookup_request()?;
    let started = Instant::now();
    let job = ctx.job();
    let hit = lookup(backend, &job, &lookup_req).await?;
    let lookup_ms = started.elapsed().as_millis() as u64;
    let mut report = RestoreReport::miss(&req.query.key, lookup_ms);
    let mut accessed = access_event(&job, &lookup_req, hit.as_ref(), lookup_ms);
    accessed.lookup_only = req.lookup_only;
    let Some(SearchHit { entry, kind }) = hit else {
        report_access(backend, &accessed, &job.traceparent).await;
        return Ok(report);
    };
    report.hit_kind = kind;
    report.outputs.cache_hit = (kind == HitKind::Exact).to_string();
    report.outputs.cache_matched_key = entry.cache_key.clone();
    report.matched_ref = Some(entry.git_ref.clone());
    report.content_hash = Some(entry.content_hash.to_string());

    if !req.lookup_only {
        let transfer = Instant::now();
        let result =
            download_and_extract(backend, ctx, req, entry.size_bytes, &entry.content_hash).await;
        accessed.download_ms = transfer.elapsed().as_millis() as u64;
        report.transfer_ms = accessed.download_ms;
        match result {
            Ok((bytes, entries)) => {
                report.bytes = bytes;
                report.entries = entries;
                accessed.bytes = bytes;
                JobMarker::record(&entry.content_hash);
            }
            Err(e) => {
                accessed.error = Some(e.to_string());
                accessed.total_ms = started.elapsed().as_millis() as u64;
                report_access(backend, &accessed, &job.traceparent).await;
                return Err(e);
            }
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    accessed.total_ms = report.duration_ms;
    report_access(backend, &accessed, &job.traceparent).await;
    Ok(report)
}

async fn download_and_extract(
    backend: &Backend,
    ctx: &RunContext,
    req: &RestoreRequest,
    size: u64,
    expected: &ContentHash,
) -> Result<(u64, u64), RestoreError> {
    let bar = crate::progress::bar("downloading", Some(size), req.progress);
    let body = crate::progress::track(fetch::open(backend, expected).await?, &bar);
    // Ctrl-C fails the next read: the extraction directory is removed.
    let input = crate::interrupt::Interruptible(SyncIoBridge::new(body));
    let (workspace, paths, limits) = (
        ctx.workspace.clone(),
        req.query.paths.clone(),
        req.limits.clone(),
    );
    let expected = expected.hex().to_string();
    let summary = tokio::task::spawn_blocking(move || {
        Extraction::unpack(input, &workspace, &paths, &limits)?.commit_verified(&expected)
    })
    .await
    .map_err(|e| RestoreError::Task(e.to_string()))?;
    bar.finish_and_clear();
    let summary = summary?;
    for link in &summary.replaced_symlinks {
        eprintln!(
            "runcache: `{}` was a symlink; the restore replaced the link with the saved \
             directory, as tar does (what it pointed to is untouched)",
            link.display()
        );
    }
    Ok((summary.compressed_bytes, summary.entries))
}

/// What a restore leaves for a later save in the same job: when the job's
/// first restore ran (build start) and which entries it restored
/// (dependency hashes for provenance).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMarker {
    pub started_at: DateTime<Utc>,
    pub restored: Vec<ContentHash>,
}

impl JobMarker {
    fn path() -> Option<PathBuf> {
        RunContext::job_marker()
    }

    pub fn load() -> Option<JobMarker> {
        let text = std::fs::read_to_string(Self::path()?).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn record(hash: &ContentHash) {
        let Some(path) = Self::path() else { return };
        let mut marker = Self::load().unwrap_or(JobMarker {
            started_at: Utc::now(),
            restored: Vec::new(),
        });
        if !marker.restored.contains(hash) {
            marker.restored.push(hash.clone());
        }
        if let Ok(text) = serde_json::to_string(&marker) {
            let _ = std::fs::write(path, text);
        }
    }
}
