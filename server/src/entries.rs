//! Finding the entry a client's restore asks for: the cache library's
//! `lookup` over the scopes the caller's token may read (the same search
//! `runcache restore` and `explain` make), waiting briefly when an upload
//! finalized on this server could answer it but is not indexed yet, and
//! the `cache.accessed` event the metrics count. Also the signed URL a hit
//! is downloaded from.
//!
//! May touch: the index (reads), the access queue.

use std::time::{Duration, Instant};

use runcache_cache::{
    keys::{validate_keys, KeyError},
    lookup::{access_event, lookup, lookup_exact, LookupRequest},
};
use runcache_infra::{index::SearchHit, StoreError};
use runcache_schemas::{IndexEntry, TrustLevel};
use thiserror::Error;
use tracing::instrument;

use crate::{auth::Caller, State};

/// How often a restore that waits for a promotion looks again.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FindError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cache index: {0}")]
    Store(#[from] StoreError),
}

/// The entry a restore of `primary` (then the `restore_keys` prefixes) at
/// `version` by `caller` uses, if any; records the access.
#[instrument(skip_all, fields(key = primary, scope = %caller.job.scope))]
pub async fn find(
    state: &State,
    caller: &Caller,
    primary: &str,
    restore_keys: &[String],
    version: &str,
) -> Result<Option<IndexEntry>, FindError> {
    find_with(state, caller, primary, restore_keys, version, Match::Search).await
}

/// [`find`] of exactly `key` (no prefix matches): what a build tool's GET
/// of one object means.
#[instrument(skip_all, fields(key = key, scope = %caller.job.scope))]
pub async fn find_exact(
    state: &State,
    caller: &Caller,
    key: &str,
    version: &str,
) -> Result<Option<IndexEntry>, FindError> {
    find_with(state, caller, key, &[], version, Match::Exact).await
}

/// How a key matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The restore search: exact, then prefixes, scope by scope.
    Search,
    /// The key exactly, in the first scope that has it.
    Exact,
}

async fn find_with(
    state: &State,
    caller: &Caller,
    primary: &str,
    restore_keys: &[String],
    version: &str,
    how: Match,
) -> Result<Option<IndexEntry>, FindError> {
    validate_keys(primary, restore_keys)?;
    let req = LookupRequest {
        primary_key: primary.to_string(),
        restore_keys: restore_keys.to_vec(),
        version: version.to_string(),
        min_trust: TrustLevel::Untrusted,
    };
    let started = Instant::now();
    let job = &caller.job;
    let look = || async {
        match how {
            Match::Search => lookup(&state.backend, job, &req).await,
            Match::Exact => lookup_exact(&state.backend, job, &req).await,
        }
    };
    let mut hit = look().await?;
    if hit.is_none() {
        let keys: Vec<&str> = std::iter::once(primary)
            .chain(restore_keys.iter().map(String::as_str))
            .collect();
        if let Some(until) = state.uploads.awaits_promotion(job, version, &keys) {
            while hit.is_none() && Instant::now() < until {
                tokio::time::sleep(POLL).await;
                hit = look().await?;
            }
        }
    }
    let lookup_ms = started.elapsed().as_millis() as u64;
    let mut accessed = access_event(job, &req, hit.as_ref(), lookup_ms);
    let entry = hit.map(|SearchHit { entry, .. }| {
        // The client downloads what it is handed.
        accessed.bytes = entry.size_bytes;
        state.uploads.promoted(&runcache_cache::stage::Claim {
            scope: entry.scope(),
            cache_version: entry.cache_version.clone(),
            cache_key: entry.cache_key.clone(),
        });
        entry
    });
    state.access.report(&accessed, &job.traceparent);
    Ok(entry)
}
