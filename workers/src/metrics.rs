//! metrics: turns `cache.accessed` and `worker.outcome` events (both on the
//! accessed queue) into datums for the [`MetricsSink`](runcache_infra::MetricsSink)
//! (CloudWatch on AWS), with the single dimension `Repository`, and keeps the
//! index's access counters; plus the periodic gauges ([`publish_gauges`]).
//!
//! Steps for `cache.accessed`, each safe to repeat and to crash after:
//! 1. If the restore matched an entry: read it (its build duration gives
//!    "build time saved") and `record_access` at the event's `accessedAt`.
//!    `NotFound` is ignored: the entry may have been removed since.
//! 2. Put the datums ([`access_datums`]).
//! 3. Remember the event's id, so a redelivery to this worker is a no-op.
//!
//! Steps for `worker.outcome`: 1. put the datums ([`outcome_datums`]);
//! 2. remember the event.
//!
//! A duplicate that arrives while the first copy is still being handled
//! (same batch) is retried a little later instead of being counted or
//! acked.
//!
//! # Delivery: at least once
//! Metrics are at-least-once, like the queue. Cheap idempotence only:
//! - a worker remembers the last [`RECENT_IDS`] events it finished (the
//!   access id; for outcomes, a digest of the whole event, whose fields the
//!   emitters keep deterministic where they can) and drops a repeat;
//! - `lastAccessed` only moves forward, so repeating step 1 is harmless for
//!   LRU; `accessCount` counts a repeat twice.
//!
//! A repeat after a crash between steps, or one delivered to another worker
//! process, is counted twice (CloudWatch has no de-duplication). Counts may
//! therefore run slightly high, never low.
//!
//! A restore that matched but failed (download, verification, extraction:
//! `error` is set) counts as a miss: the build did not get the cache. A
//! `lookup-only` hit is a hit (with 0 bytes), but saves no build time.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::Mutex,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use runcache_infra::{
    index::CacheIndex,
    metrics::names::{self, DIM_REPOSITORY},
    Backend, MetricDatum, MetricUnit, ReceivedMessage, StoreError,
};
use runcache_schemas::{
    CacheAccessed, Contract, Event, HitKind, IndexEntry, OutcomeKind, Scope, WorkerOutcome,
};
use serde::Serialize;
use tracing::{debug, info, instrument};

use crate::{
    consumer::{Handler, Outcome},
    records::short_digest,
};

/// How many finished events one worker remembers for de-duplication.
pub const RECENT_IDS: usize = 10_000;

/// The metrics handler.
#[derive(Debug)]
pub struct MetricsHandler {
    backend: Backend,
    recent: Mutex<Claims>,
}

/// What this worker knows about an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: handle it.
    New,
    /// Already counted.
    Done,
    /// Being handled right now by another task (a duplicate delivered in
    /// the same batch): come back later rather than count it twice, or ack
    /// it and lose it if the other attempt fails.
    InFlight,
}

#[derive(Debug)]
struct Claims {
    done: RecentIds,
    in_flight: HashSet<String>,
}

impl MetricsHandler {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            recent: Mutex::new(Claims {
                done: RecentIds::new(RECENT_IDS),
                in_flight: HashSet::new(),
            }),
        }
    }

    /// Handles one `cache.accessed`; the claim it found (`New` when it
    /// counted the event now).
    #[instrument(skip_all, fields(access_id = %ev.access_id, repository = %ev.scope.repository, hit = ?ev.hit_kind))]
    pub async fn accessed(&self, ev: &CacheAccessed) -> Result<Claim, StoreError> {
        let id = format!("accessed:{}", ev.access_id);
        self.once(id, async {
            let entry = self.record_access(ev).await?;
            let datums = access_datums(ev, entry.as_ref(), self.backend.clock.now());
            self.backend.metrics.put(&datums).await?;
            // The log contract (docs/deploy.md): Contributor Insights and the
            // dashboard's "most restored" widgets read this line.
            info!(
                event = "cache.accessed",
                repository = %ev.scope.repository,
                matched_key = ev.matched_key.as_deref().unwrap_or(""),
                hit_kind = %serde_json::to_value(ev.hit_kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                bytes = ev.bytes,
                "cache accessed"
            );
            Ok(())
        })
        .await
    }

    /// Handles one `worker.outcome`; the claim it found.
    #[instrument(skip_all, fields(kind = ?ev.kind, repository = %ev.repository))]
    pub async fn outcome(&self, ev: &WorkerOutcome) -> Result<Claim, StoreError> {
        let id = format!("outcome:{}", short_digest(&ev.encode()));
        self.once(id, async {
            let datums = outcome_datums(ev, self.backend.clock.now());
            self.backend.metrics.put(&datums).await
        })
        .await
    }

    /// Runs `work` unless this worker already did it for `id` or is doing
    /// it now; remembers `id` only once `work` succeeded.
    async fn once(
        &self,
        id: String,
        work: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<Claim, StoreError> {
        match self.claim(&id) {
            Claim::New => {}
            other => {
                debug!(?other, "repeated event; not counted again");
                return Ok(other);
            }
        }
        let result = work.await;
        let mut claims = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        claims.in_flight.remove(&id);
        if result.is_ok() {
            claims.done.insert(id);
        }
        result.map(|()| Claim::New)
    }

    /// Step 1: the matched entry, after counting the access on it.
    #[instrument(skip_all)]
    async fn record_access(&self, ev: &CacheAccessed) -> Result<Option<IndexEntry>, StoreError> {
        let (Some(key), Some(git_ref)) = (&ev.matched_key, &ev.matched_ref) else {
            return Ok(None);
        };
        if ev.hit_kind == HitKind::Miss || ev.error.is_some() {
            return Ok(None);
        }
        let scope = Scope::new(ev.scope.repository.clone(), git_ref.clone());
        let index: &dyn CacheIndex = &*self.backend.index;
        let entry = index.get(&scope, &ev.cache_version, key).await?;
        match index
            .record_access(&scope, &ev.cache_version, key, ev.accessed_at)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                debug!("matched entry is gone; access not recorded");
            }
            Err(e) => return Err(e),
        }
        Ok(entry)
    }

    fn claim(&self, id: &str) -> Claim {
        let mut claims = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if claims.done.contains(id) {
            Claim::Done
        } else if !claims.in_flight.insert(id.to_string()) {
            Claim::InFlight
        } else {
            Claim::New
        }
    }
}

#[async_trait]
impl Handler for MetricsHandler {
    fn name(&self) -> &'static str {
        "metrics"
    }

    async fn handle(&self, event: Event, _message: &ReceivedMessage) -> Outcome {
        let result = match &event {
            Event::Accessed(ev) => self.accessed(ev).await,
            Event::Outcome(ev) => self.outcome(ev).await,
            other => {
                return Outcome::Reject {
                    reason: format!(
                        "metrics takes cache.accessed and worker.outcome, not {}",
                        other.schema()
                    ),
                }
            }
        };
        match result {
            Ok(Claim::New | Claim::Done) => Outcome::Done,
            Ok(Claim::InFlight) => Outcome::Retry {
                after: std::time::Duration::from_secs(10),
                reason: "a duplicate of this event is being counted right now".into(),
            },
            Err(e) => Outcome::from_store_error(&e),
        }
    }
}

fn datum(name: &str, value: f64, unit: MetricUnit, repo: &str, at: DateTime<Utc>) -> MetricDatum {
    MetricDatum::new(name, value, unit, at).with_dimension(DIM_REPOSITORY, repo)
}

/// The datums of one access. `entry` is the matched entry, if still there.
pub fn access_datums(
    ev: &CacheAccessed,
    entry: Option<&IndexEntry>,
    at: DateTime<Utc>,
) -> Vec<MetricDatum> {
    let repo = ev.scope.repository.as_str();
    let hit = ev.hit_kind != HitKind::Miss && ev.error.is_none();
    let mut out = vec![
        datum(
            if hit {
                names::CACHE_HIT
            } else {
                names::CACHE_MISS
            },
            1.0,
            MetricUnit::Count,
            repo,
            at,
        ),
        // 100 or 0 per restore: CloudWatch's average is the hit rate.
        datum(
            names::HIT_RATE,
            if hit { 100.0 } else { 0.0 },
            MetricUnit::Percent,
            repo,
            at,
        ),
        datum(
            names::RESTORE_DURATION,
            ev.total_ms as f64,
            MetricUnit::Milliseconds,
            repo,
            at,
        ),
    ];
    if hit {
        out.push(datum(
            names::BYTES_RESTORED,
            ev.bytes as f64,
            MetricUnit::Bytes,
            repo,
            at,
        ));
    }
    if hit && ev.hit_kind == HitKind::Exact && !ev.lookup_only {
        if let Some(build_ms) = entry.and_then(|e| e.build_duration_ms) {
            let saved_ms = build_ms.saturating_sub(ev.total_ms);
            out.push(datum(
                names::BUILD_TIME_SAVED,
                saved_ms as f64 / 1000.0,
                MetricUnit::Seconds,
                repo,
                at,
            ));
        }
    }
    out
}

/// The datums of one worker outcome.
pub fn outcome_datums(ev: &WorkerOutcome, at: DateTime<Utc>) -> Vec<MetricDatum> {
    let repo = ev.repository.as_str();
    let count = |name: &str| datum(name, 1.0, MetricUnit::Count, repo, at);
    let mut out = Vec::new();
    match ev.kind {
        OutcomeKind::Promoted | OutcomeKind::Deduplicated => {
            out.push(count(if ev.kind == OutcomeKind::Promoted {
                names::ARTIFACTS_PROMOTED
            } else {
                names::ARTIFACTS_DEDUPLICATED
            }));
            if let Some(ms) = ev.latency_ms {
                out.push(datum(
                    names::PROMOTION_LATENCY,
                    ms as f64,
                    MetricUnit::Milliseconds,
                    repo,
                    at,
                ));
            }
            // What saves uploaded (the dashboard's "Saved (uploaded)").
            if let Some(bytes) = ev.size_bytes {
                out.push(datum(
                    names::BYTES_SAVED,
                    bytes as f64,
                    MetricUnit::Bytes,
                    repo,
                    at,
                ));
            }
        }
        OutcomeKind::Rejected => out.push(count(names::UPLOADS_REJECTED)),
        OutcomeKind::Evicted => out.push(count(names::EVICTIONS)),
        OutcomeKind::Invalidated => out.push(count(names::INVALIDATIONS)),
    }
    out
}

/// One repository's storage, as the periodic gauges report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryGauges {
    pub repository: String,
    /// Sum of the live entries' compressed sizes (a blob shared by several
    /// entries counts once per entry: it is what each entry costs the quota).
    pub storage_bytes: u64,
    /// Live entries.
    pub object_count: u64,
    /// Mean seconds since creation over live entries (0 when there are none).
    pub average_age_seconds: f64,
}

/// Storage per repository from one index scan. Repositories whose entries
/// are all invalidated or evicted are reported with zeros, so their graphs
/// fall to 0 instead of stopping at the last value.
pub async fn repository_gauges(
    index: &dyn CacheIndex,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, RepositoryGauges>, StoreError> {
    let mut acc: BTreeMap<String, (RepositoryGauges, f64)> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = index.scan(cursor.as_deref(), 1000).await?;
        for e in page.entries {
            let (g, age_sum) = acc.entry(e.repository.clone()).or_insert_with(|| {
                (
                    RepositoryGauges {
                        repository: e.repository.clone(),
                        ..Default::default()
                    },
                    0.0,
                )
            });
            if e.is_live() {
                g.storage_bytes += e.size_bytes;
                g.object_count += 1;
                *age_sum += ((now - e.created_at).num_milliseconds().max(0) as f64) / 1000.0;
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(acc
        .into_iter()
        .map(|(repo, (mut g, age_sum))| {
            if g.object_count > 0 {
                g.average_age_seconds = age_sum / g.object_count as f64;
            }
            (repo, g)
        })
        .collect())
}

/// The periodic gauges: `StorageBytes`, `ObjectCount` and `AverageCacheAge`
/// per repository. The `metrics` mode calls this every few minutes; `sweep`
/// at its end.
#[instrument(skip_all)]
pub async fn publish_gauges(backend: &Backend) -> Result<Vec<RepositoryGauges>, StoreError> {
    let now = backend.clock.now();
    let gauges = repository_gauges(&*backend.index, now).await?;
    let datums: Vec<MetricDatum> = gauges
        .values()
        .flat_map(|g| {
            [
                datum(
                    names::STORAGE_BYTES,
                    g.storage_bytes as f64,
                    MetricUnit::Bytes,
                    &g.repository,
                    now,
                ),
                datum(
                    names::OBJECT_COUNT,
                    g.object_count as f64,
                    MetricUnit::Count,
                    &g.repository,
                    now,
                ),
                datum(
                    names::AVERAGE_CACHE_AGE,
                    g.average_age_seconds,
                    MetricUnit::Seconds,
                    &g.repository,
                    now,
                ),
            ]
        })
        .collect();
    if !datums.is_empty() {
        backend.metrics.put(&datums).await?;
    }
    Ok(gauges.into_values().collect())
}

/// A bounded set of recently finished event ids (oldest forgotten first).
#[derive(Debug)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut r = RecentIds::new(2);
        r.insert("a".into());
        r.insert("b".into());
        r.insert("c".into());
        assert!(!r.contains("a"));
        assert!(r.contains("b") && r.contains("c"));
    }
}
