//! Looking an entry up for a job: the restore search over the scopes it may
//! read, and the access event that feeds the metrics. Both doors (restore,
//! get, explain; `serve`'s cache routes) come here, so the order of the
//! search, the scopes and the trust filter are decided once.

use chrono::Utc;
use runcache_infra::{
    index::{search, search_exact, search_traced, SearchHit, SearchRequest, SearchTrace},
    Backend, OutgoingMessage, StoreError,
};
use runcache_schemas::{CacheAccessed, HitKind, IndexEntry, Scope, TrustLevel};
use tracing::{instrument, warn};

use crate::Job;

/// What a restore asks for.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    pub primary_key: String,
    pub restore_keys: Vec<String>,
    /// The entry version (paths + compression, as actions/cache).
    pub version: String,
    /// Entries produced with less trust are passed over.
    pub min_trust: TrustLevel,
}

impl LookupRequest {
    /// The search this request makes for `job`.
    pub fn search_for(&self, job: &Job) -> SearchRequest {
        SearchRequest {
            scopes: job.readable_scopes(),
            version: self.version.clone(),
            primary_key: self.primary_key.clone(),
            restore_keys: self.restore_keys.clone(),
            min_trust: self.min_trust,
        }
    }
}

/// The entry a restore of `req` by `job` uses, and how it matched.
#[instrument(skip_all, fields(key = %req.primary_key, scope = %job.scope))]
pub async fn lookup(
    backend: &Backend,
    job: &Job,
    req: &LookupRequest,
) -> Result<Option<SearchHit>, StoreError> {
    search(&*backend.index, &req.search_for(job)).await
}

/// [`lookup`] of the primary key alone, exactly: no prefix of it and no
/// restore key matches. For key-addressed clients (the build tools' remote
/// caches), where a GET of one key must never return another's object.
#[instrument(skip_all, fields(key = %req.primary_key, scope = %job.scope))]
pub async fn lookup_exact(
    backend: &Backend,
    job: &Job,
    req: &LookupRequest,
) -> Result<Option<SearchHit>, StoreError> {
    search_exact(
        &*backend.index,
        &job.readable_scopes(),
        &req.version,
        &req.primary_key,
        req.min_trust,
    )
    .await
}

/// [`lookup`], with every step of the search recorded (for `explain`),
/// and the scopes it searched.
pub async fn lookup_traced(
    backend: &Backend,
    job: &Job,
    req: &LookupRequest,
) -> Result<Traced, StoreError> {
    let search = req.search_for(job);
    let (hit, trace) = search_traced(&*backend.index, &search).await?;
    Ok(Traced {
        hit,
        trace,
        scopes: search.scopes,
    })
}

/// A traced lookup.
#[derive(Debug, Clone)]
pub struct Traced {
    pub hit: Option<SearchHit>,
    pub trace: SearchTrace,
    /// The scopes searched, in order.
    pub scopes: Vec<Scope>,
}

/// The newest live entry with exactly `key` in the job's scopes (in scope
/// order), whatever its version: for fetching a stored output by key when
/// the paths that made it are not known.
pub async fn newest_with_key(
    backend: &Backend,
    job: &Job,
    key: &str,
) -> Result<Option<IndexEntry>, StoreError> {
    let all = backend.index.by_key(&job.scope.repository, key).await?;
    Ok(job.readable_scopes().iter().find_map(|scope| {
        all.iter()
            .filter(|e| e.is_live() && e.git_ref == scope.git_ref)
            .max_by_key(|e| e.created_at)
            .cloned()
    }))
}

/// The `cache.accessed` event of `job`'s lookup for `req`, which took
/// `lookup_ms` and found `hit`; transfer times and bytes are the door's
/// to fill in.
pub fn access_event(
    job: &Job,
    req: &LookupRequest,
    hit: Option<&SearchHit>,
    lookup_ms: u64,
) -> CacheAccessed {
    CacheAccessed {
        access_id: uuid::Uuid::now_v7().to_string(),
        scope: job.scope.clone(),
        primary_key: req.primary_key.clone(),
        restore_keys: req.restore_keys.clone(),
        cache_version: req.version.clone(),
        hit_kind: hit.map_or(HitKind::Miss, |h| h.kind),
        matched_key: hit.map(|h| h.entry.cache_key.clone()),
        matched_ref: hit.map(|h| h.entry.git_ref.clone()),
        content_hash: hit.map(|h| h.entry.content_hash.clone()),
        bytes: 0,
        lookup_ms,
        download_ms: 0,
        extract_ms: 0,
        total_ms: lookup_ms,
        lookup_only: false,
        error: None,
        accessed_at: Utc::now(),
    }
}

/// Sends `cache.accessed` for the metrics. Best effort: a restore never
/// fails for metrics.
pub async fn report_access(backend: &Backend, accessed: &CacheAccessed, traceparent: &str) {
    let message = OutgoingMessage::event(accessed, traceparent);
    if let Err(e) = backend.accessed.send(message).await {
        warn!(error = %e, "could not record the access (metrics only)");
    }
}
