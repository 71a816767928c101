//! `runcache admin`: the operator's operations, as library functions over a
//! [`Backend`] that return serde-serialisable reports; the CLI prints them
//! (as a table or `--json`) and picks the exit code.
//!
//! - [`stats`]: per repository, hits/misses/hit rate and bytes restored
//!   (from the metrics sink) with storage, entry count, average age and the
//!   most accessed entries (from the index).
//! - [`invalidate`]: validates a selector and **enqueues** `cache.invalidate`
//!   for the invalidate worker; it changes nothing itself (runners' and
//!   admins' credentials do not write the index: workers do).
//! - [`ls`]: a repository's entries, any state.
//! - [`provenance`]: the provenance records of a content hash, or of the
//!   entries a key resolves to.
//! - [`verify`]: re-hashes every `artifacts/` object (streamed) and lists
//!   mismatches and live entries whose object is missing.
//!
//! May touch: the ports (read), the invalidate queue (send). Self-contained
//! (no `crate::` paths) so that it reads the same from any crate.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use runcache_infra::{
    metrics::names::{self, DIM_REPOSITORY},
    names as keys, Backend, OutgoingMessage, StoreError,
};
use runcache_schemas::{
    CacheInvalidate, ContentHash, IndexEntry, InvalidationSelector, ProvenanceRecord, Scope,
};
use serde::Serialize;

/// How many entries `stats` lists as most accessed, by default.
pub const DEFAULT_TOP: usize = 10;
/// Objects `verify` re-hashes at once.
pub const VERIFY_CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error("cache store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}; set at least one of --repository, --toolchain, --lockfile-hash or --key-prefix")]
    InvalidSelector(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Usage(String),
}

// ---- stats ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    pub since: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub repositories: Vec<RepositoryStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStats {
    pub repository: String,
    pub hits: u64,
    pub misses: u64,
    /// Hits over all restores, in percent; `None` without restores.
    pub hit_rate_percent: Option<f64>,
    pub bytes_restored: u64,
    pub build_time_saved_seconds: f64,
    /// Sum of the live entries' sizes.
    pub storage_bytes: u64,
    /// Live entries.
    pub object_count: u64,
    /// Mean age of the live entries, seconds since creation.
    pub average_age_seconds: f64,
    /// Live entries with the highest access counts.
    pub most_accessed: Vec<EntrySummary>,
}

/// One entry, as `stats` and `ls` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntrySummary {
    pub cache_key: String,
    pub git_ref: String,
    pub cache_version: String,
    pub content_hash: ContentHash,
    pub size_bytes: u64,
    pub access_count: u64,
    pub created_at: DateTime<Utc>,
    pub last_accessed: DateTime<Utc>,
    pub state: String,
}

impl From<&IndexEntry> for EntrySummary {
    fn from(e: &IndexEntry) -> Self {
        Self {
            cache_key: e.cache_key.clone(),
            git_ref: e.git_ref.clone(),
            cache_version: e.cache_version.clone(),
            content_hash: e.content_hash.clone(),
            size_bytes: e.size_bytes,
            access_count: e.access_count,
            created_at: e.created_at,
            last_accessed: e.last_accessed,
            state: e.state.as_str().to_string(),
        }
    }
}

/// Per repository (one, or every repository the index knows): restores
/// since `since` from the metrics, storage now from the index, and the
/// `top` most accessed live entries.
pub async fn stats(
    backend: &Backend,
    repository: Option<&str>,
    since: DateTime<Utc>,
    top: usize,
) -> Result<StatsReport, AdminError> {
    let now = backend.clock.now();
    let entries = match repository {
        Some(repo) => backend.index.by_repository(repo, None).await?,
        None => scan_all(backend).await?,
    };
    let mut by_repo: BTreeMap<String, Vec<IndexEntry>> = BTreeMap::new();
    if let Some(repo) = repository {
        by_repo.insert(repo.to_string(), Vec::new());
    }
    for e in entries {
        by_repo.entry(e.repository.clone()).or_default().push(e);
    }
    let mut repositories = Vec::new();
    for (repo, entries) in by_repo {
        let dims = BTreeMap::from([(DIM_REPOSITORY.to_string(), repo.clone())]);
        let sum = |name: &'static str| {
            let dims = dims.clone();
            async move {
                backend
                    .metrics
                    .stats(name, &dims, since)
                    .await
                    .map(|s| s.sum)
            }
        };
        let hits = sum(names::CACHE_HIT).await? as u64;
        let misses = sum(names::CACHE_MISS).await? as u64;
        let bytes_restored = sum(names::BYTES_RESTORED).await? as u64;
        let build_time_saved_seconds = sum(names::BUILD_TIME_SAVED).await?;
        let mut live: Vec<&IndexEntry> = entries.iter().filter(|e| e.is_live()).collect();
        let storage_bytes = live.iter().map(|e| e.size_bytes).sum();
        let object_count = live.len() as u64;
        let average_age_seconds = if live.is_empty() {
            0.0
        } else {
            live.iter()
                .map(|e| (now - e.created_at).num_milliseconds().max(0) as f64 / 1000.0)
                .sum::<f64>()
                / live.len() as f64
        };
        live.sort_by(|a, b| {
            b.access_count
                .cmp(&a.access_count)
                .then(b.last_accessed.cmp(&a.last_accessed))
        });
        repositories.push(RepositoryStats {
            repository: repo,
            hits,
            misses,
            hit_rate_percent: (hits + misses > 0)
                .then(|| hits as f64 * 100.0 / (hits + misses) as f64),
            bytes_restored,
            build_time_saved_seconds,
            storage_bytes,
            object_count,
            average_age_seconds,
            most_accessed: live.into_iter().take(top).map(EntrySummary::from).collect(),
        });
    }
    Ok(StatsReport {
        since,
        at: now,
        repositories,
    })
}

// ---- invalidate -----------------------------------------------------------

/// What `invalidate` enqueued.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvalidationRequested {
    pub request_id: String,
    /// The queue's id of the message.
    pub message_id: String,
    pub queue: String,
    pub selector: InvalidationSelector,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// Live entries the selector matches right now (the worker decides when
    /// it runs; new saves may match by then).
    pub live_matches_now: u64,
}

/// Validates the selector and enqueues `cache.invalidate`; the invalidate
/// worker applies it. An empty selector (it would match everything) is
/// refused here, before anything is sent. `purge_corrupt_blobs`: the worker
/// also removes each matched entry's blob from the CAS if it does not hash
/// to its name (`admin delete`).
pub async fn invalidate(
    backend: &Backend,
    selector: InvalidationSelector,
    reason: &str,
    requested_by: &str,
    purge_corrupt_blobs: bool,
) -> Result<InvalidationRequested, AdminError> {
    selector
        .validate()
        .map_err(|e| AdminError::InvalidSelector(e.to_string()))?;
    if reason.trim().is_empty() {
        return Err(AdminError::Usage(
            "an invalidation needs a reason (it goes into every audit record); pass --reason"
                .into(),
        ));
    }
    let live_matches_now = runcache_infra::index::matching(&*backend.index, &selector)
        .await?
        .iter()
        .filter(|e| e.is_live())
        .count() as u64;
    let request = CacheInvalidate {
        request_id: uuid::Uuid::now_v7().to_string(),
        selector,
        reason: reason.to_string(),
        requested_by: requested_by.to_string(),
        requested_at: backend.clock.now(),
        purge_corrupt_blobs,
    };
    let message_id = backend
        .invalidate
        .send(OutgoingMessage::event(
            &request,
            &runcache_infra::queue::trace::new_traceparent(),
        ))
        .await?;
    Ok(InvalidationRequested {
        request_id: request.request_id,
        message_id,
        queue: backend.invalidate.name().to_string(),
        selector: request.selector,
        reason: request.reason,
        requested_by: request.requested_by,
        requested_at: request.requested_at,
        live_matches_now,
    })
}

// ---- ls -------------------------------------------------------------------

/// A repository's entries in every state, optionally of one ref (a full
/// ref or a branch name), by ref and then newest first.
pub async fn ls(
    backend: &Backend,
    repository: &str,
    git_ref: Option<&str>,
) -> Result<Vec<IndexEntry>, AdminError> {
    let wanted = git_ref.map(|r| Scope::new(repository, "").branch(r).git_ref);
    let mut entries: Vec<IndexEntry> = backend
        .index
        .by_repository(repository, None)
        .await?
        .into_iter()
        .filter(|e| wanted.as_deref().is_none_or(|r| e.git_ref == r))
        .collect();
    entries.sort_by(|a, b| {
        a.git_ref
            .cmp(&b.git_ref)
            .then(b.created_at.cmp(&a.created_at))
            .then(a.cache_key.cmp(&b.cache_key))
    });
    Ok(entries)
}

// ---- provenance -----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceReport {
    pub query: String,
    /// The entries a key resolved to (empty when asked by hash).
    pub entries: Vec<EntrySummary>,
    /// Every record of every hash involved, oldest promotion first per hash.
    pub records: Vec<ProvenanceRecord>,
}

/// Provenance by content hash (`sha256:<hex>` or 64 hex digits), or by
/// cache key: the key is resolved through the index in `repository`
/// (required then), in every ref or only `git_ref`, any version and state.
pub async fn provenance(
    backend: &Backend,
    hash_or_key: &str,
    repository: Option<&str>,
    git_ref: Option<&str>,
) -> Result<ProvenanceReport, AdminError> {
    let as_hash = hash_or_key
        .strip_prefix("sha256:")
        .map(ContentHash::from_hex)
        .or_else(|| (hash_or_key.len() == 64).then(|| ContentHash::from_hex(hash_or_key)))
        .and_then(Result::ok);
    let (entries, hashes) = match as_hash {
        Some(h) => (Vec::new(), vec![h]),
        None => {
            let repository = repository.ok_or_else(|| {
                AdminError::Usage(format!(
                    "`{hash_or_key}` is not a content hash; to look it up as a cache key, \
                     pass --repository (and optionally --ref)"
                ))
            })?;
            let entries: Vec<IndexEntry> = ls(backend, repository, git_ref)
                .await?
                .into_iter()
                .filter(|e| e.cache_key == hash_or_key)
                .collect();
            if entries.is_empty() {
                return Err(AdminError::NotFound(format!(
                    "no entry with key `{hash_or_key}` in {repository}{}; \
                     `runcache admin ls --repository {repository}` lists the keys",
                    git_ref.map(|r| format!(" ({r})")).unwrap_or_default()
                )));
            }
            let mut seen = BTreeSet::new();
            let hashes = entries
                .iter()
                .filter(|e| seen.insert(e.content_hash.clone()))
                .map(|e| e.content_hash.clone())
                .collect();
            (entries, hashes)
        }
    };
    let mut records = Vec::new();
    for h in &hashes {
        records.extend(backend.provenance.get(h).await?);
    }
    if records.is_empty() && entries.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no provenance recorded for {}",
            hashes[0]
        )));
    }
    Ok(ProvenanceReport {
        query: hash_or_key.to_string(),
        entries: entries.iter().map(EntrySummary::from).collect(),
        records,
    })
}

// ---- verify ---------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// `artifacts/` objects re-hashed.
    pub checked: u64,
    pub bytes: u64,
    /// Objects whose bytes do not hash to their name (or whose name is not
    /// a content hash).
    pub mismatches: Vec<VerifyMismatch>,
    /// Objects that could not be read to the end.
    pub unreadable: Vec<Unreadable>,
    /// Live entries whose `artifacts/` object does not exist.
    pub missing: Vec<MissingObject>,
}

impl VerifyReport {
    /// Nothing wrong: the CLI exits 0 only then.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.unreadable.is_empty() && self.missing.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyMismatch {
    pub key: String,
    /// What the name says, if it is a content hash at all.
    pub expected: Option<ContentHash>,
    pub actual: ContentHash,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unreadable {
    pub key: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingObject {
    pub content_hash: ContentHash,
    /// `repository@ref key` of every live entry pointing at it.
    pub entries: Vec<String>,
}

/// Re-hashes every `artifacts/` object, [`VERIFY_CONCURRENCY`] at a time,
/// each streamed (never held in memory), and checks that every live entry's
/// object exists. An object deleted while verify runs (by a sweep) is
/// skipped, not reported.
pub async fn verify(backend: &Backend) -> Result<VerifyReport, AdminError> {
    verify_with_progress(backend, &indicatif::ProgressBar::hidden()).await
}

/// [`verify`], counting the objects checked on `progress` (its message:
/// the bytes hashed so far).
pub async fn verify_with_progress(
    backend: &Backend,
    progress: &indicatif::ProgressBar,
) -> Result<VerifyReport, AdminError> {
    let mut report = VerifyReport::default();
    let mut present = std::collections::HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = backend
            .blobs
            .list(keys::ARTIFACTS_PREFIX, after.as_deref(), 1000)
            .await?;
        for meta in page.objects {
            let expected = meta
                .key
                .strip_prefix(keys::ARTIFACTS_PREFIX)
                .and_then(|hex| ContentHash::from_hex(hex).ok())
                .filter(|h| names_match(&meta.key, h));
            if let Some(h) = &expected {
                present.insert(h.clone());
            }
            while tasks.len() >= VERIFY_CONCURRENCY {
                if let Some(done) = tasks.join_next().await {
                    record(&mut report, done);
                    tick(progress, &report);
                }
            }
            let blobs = backend.blobs.clone();
            tasks.spawn(async move {
                let result = match blobs.get(&meta.key, None).await {
                    Ok(body) => runcache_infra::digest::digest(body)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e.to_string()),
                };
                (meta.key, expected, result)
            });
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    while let Some(done) = tasks.join_next().await {
        record(&mut report, done);
        tick(progress, &report);
    }
    progress.finish_and_clear();
    report.mismatches.sort_by(|a, b| a.key.cmp(&b.key));
    report.unreadable.sort_by(|a, b| a.key.cmp(&b.key));

    let mut dangling: HashMap<ContentHash, Vec<String>> = HashMap::new();
    for e in scan_all(backend)
        .await?
        .into_iter()
        .filter(IndexEntry::is_live)
    {
        if !present.contains(&e.content_hash) {
            dangling
                .entry(e.content_hash.clone())
                .or_default()
                .push(format!("{} {}", e.scope(), e.cache_key));
        }
    }
    // Re-check: an object promoted after the listing is not missing.
    for (hash, entries) in dangling {
        if backend
            .blobs
            .head(&keys::artifact_key(hash.hex()))
            .await?
            .is_none()
        {
            report.missing.push(MissingObject {
                content_hash: hash,
                entries,
            });
        }
    }
    report
        .missing
        .sort_by(|a, b| a.content_hash.cmp(&b.content_hash));
    Ok(report)
}

/// The key is exactly `artifacts/{lowercase hex of h}`.
fn names_match(key: &str, h: &ContentHash) -> bool {
    key == keys::artifact_key(h.hex())
}

type Verified = (
    String,
    Option<ContentHash>,
    Result<Option<runcache_infra::digest::Digested>, String>,
);

fn tick(progress: &indicatif::ProgressBar, report: &VerifyReport) {
    progress.set_position(report.checked);
    progress.set_message(format!(
        "objects verified, {} MB hashed",
        report.bytes / 1_000_000
    ));
}

fn record(report: &mut VerifyReport, done: Result<Verified, tokio::task::JoinError>) {
    match done {
        Ok((key, expected, Ok(Some(d)))) => {
            report.checked += 1;
            report.bytes += d.size;
            if expected.as_ref() != Some(&d.hash) {
                report.mismatches.push(VerifyMismatch {
                    key,
                    expected,
                    actual: d.hash,
                    size: d.size,
                });
            }
        }
        // Deleted since the listing.
        Ok((_, _, Ok(None))) => {}
        Ok((key, _, Err(error))) => report.unreadable.push(Unreadable { key, error }),
        Err(e) => report.unreadable.push(Unreadable {
            key: "(task)".into(),
            error: e.to_string(),
        }),
    }
}

async fn scan_all(backend: &Backend) -> Result<Vec<IndexEntry>, StoreError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = backend.index.scan(cursor.as_deref(), 1000).await?;
        all.extend(page.entries);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}
