//! The metrics worker, on both backends (one case local only, see there): an accessed hit and a miss produce the right datums
//! (read back through `MetricsSink::stats`), access counters move, outcomes
//! are counted, a repeated event is counted once, and the gauges describe
//! each repository's live entries.

mod support;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use runcache_infra::{
    metrics::names::{self, DIM_REPOSITORY},
    queue::{ATTR_SCHEMA, ATTR_VERSION},
    OutgoingMessage, StateChange,
};
use runcache_schemas::{CacheAccessed, Contract, EntryState, HitKind, Scope};
use runcache_worker::{
    drain,
    metrics::{access_datums, Claim},
    publish_gauges, ConsumerConfig, MetricsHandler,
};
use support::*;

crate::backend_tests!(
    a_hit_and_a_miss_produce_the_right_datums_and_move_the_counters,
    a_prefix_hit_counts_as_a_hit_but_saves_no_build_time,
    an_access_to_an_entry_that_is_gone_is_still_counted,
    gauges_describe_live_entries_per_repository,
    a_drain_whose_queue_cannot_be_read_stops_and_says_why,
);

fn accessed(
    id: &str,
    hit: HitKind,
    key: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> CacheAccessed {
    CacheAccessed {
        access_id: id.into(),
        scope: Scope::new(REPO, "refs/pull/9/merge"),
        primary_key: "deps-abc".into(),
        restore_keys: vec!["deps-".into()],
        cache_version: VERSION.into(),
        hit_kind: hit,
        matched_key: key.map(str::to_string),
        matched_ref: key.map(|_| MAIN.to_string()),
        content_hash: None,
        bytes: if key.is_some() { 1234 } else { 0 },
        lookup_ms: 20,
        download_ms: 3000,
        extract_ms: 1000,
        total_ms: 5000,
        lookup_only: false,
        error: None,
        accessed_at: at,
    }
}

async fn send(e: &Env, body: String, schema: &str) {
    e.backend
        .accessed
        .send(
            OutgoingMessage::new(body)
                .with_attribute(ATTR_SCHEMA, schema)
                .with_attribute(ATTR_VERSION, "1"),
        )
        .await
        .unwrap();
}

async fn stat(e: &Env, name: &str, repo: &str) -> runcache_infra::metrics::MetricStats {
    let dims = BTreeMap::from([(DIM_REPOSITORY.to_string(), repo.to_string())]);
    e.backend
        .metrics
        .stats(name, &dims, e.now() - chrono::Duration::hours(1))
        .await
        .unwrap()
}

async fn a_hit_and_a_miss_produce_the_right_datums_and_move_the_counters(e: Env) {
    let entry = save(&e, "u1", "deps-abc", &main_scope(), b"archive").await;
    assert_eq!(entry.build_duration_ms, Some(60_000));
    e.advance(Duration::from_secs(600));
    let hit = accessed("a1", HitKind::Exact, Some("deps-abc"), e.now());
    let miss = accessed("a2", HitKind::Miss, None, e.now());
    send(&e, hit.encode(), CacheAccessed::SCHEMA).await;
    send(&e, miss.encode(), CacheAccessed::SCHEMA).await;
    // Delivered twice: counted once.
    send(&e, hit.encode(), CacheAccessed::SCHEMA).await;

    let handler = Arc::new(MetricsHandler::new(e.backend.clone()));
    // One at a time, so the duplicate meets a finished first copy (a
    // concurrent one is retried: see the next test).
    let cfg = ConsumerConfig {
        concurrency: 1,
        ..ConsumerConfig::default()
    };
    let report = drain(e.backend.accessed.clone(), handler, cfg).await;
    assert_eq!(report.done, 4, "three accesses and promote's outcome");
    assert_eq!(report.rejected, 0);

    let hits = stat(&e, names::CACHE_HIT, REPO).await;
    let misses = stat(&e, names::CACHE_MISS, REPO).await;
    assert_eq!((hits.sum, hits.count), (1.0, 1));
    assert_eq!((misses.sum, misses.count), (1.0, 1));
    let rate = stat(&e, names::HIT_RATE, REPO).await;
    assert_eq!(rate.count, 2);
    assert_eq!(
        rate.sum / rate.count as f64,
        50.0,
        "the average is the hit rate"
    );
    assert_eq!(stat(&e, names::BYTES_RESTORED, REPO).await.sum, 1234.0);
    let saved = stat(&e, names::BUILD_TIME_SAVED, REPO).await;
    assert_eq!(
        (saved.sum, saved.count),
        (55.0, 1),
        "60 s build − 5 s restore"
    );
    let duration = stat(&e, names::RESTORE_DURATION, REPO).await;
    assert_eq!((duration.sum, duration.count), (10_000.0, 2));
    assert_eq!(stat(&e, names::ARTIFACTS_PROMOTED, REPO).await.sum, 1.0);
    assert_eq!(stat(&e, names::BYTES_SAVED, REPO).await.sum, 7.0);
    assert_eq!(stat(&e, names::PROMOTION_LATENCY, REPO).await.count, 1);

    let after = e
        .backend
        .index
        .get(&main_scope(), VERSION, "deps-abc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.access_count, 1);
    assert_eq!(after.last_accessed, hit.accessed_at);
}

/// Local only: the retried copies come back when their visibility lapses,
/// which the manual clock moves on the local queue but SQS counts in real
/// seconds.
#[tokio::test]
async fn a_duplicate_handled_concurrently_is_counted_once() {
    let e = env();
    save(&e, "u1", "deps-abc", &main_scope(), b"archive").await;
    take_events(&*e.backend.accessed).await;
    let hit = accessed("a1", HitKind::Exact, Some("deps-abc"), e.now());
    for _ in 0..4 {
        send(&e, hit.encode(), CacheAccessed::SCHEMA).await;
    }
    let handler = Arc::new(MetricsHandler::new(e.backend.clone()));
    let report = drain(
        e.backend.accessed.clone(),
        handler.clone(),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.done + report.retried, 4);
    // Retried copies come back after their back-off and are dropped then.
    e.advance(Duration::from_secs(60));
    drain(
        e.backend.accessed.clone(),
        handler,
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(stat(&e, names::CACHE_HIT, REPO).await.sum, 1.0);
    let entry = e
        .backend
        .index
        .get(&main_scope(), VERSION, "deps-abc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.access_count, 1);
    assert_eq!(e.backend.accessed.depth().await.unwrap().visible, 0);
}

async fn a_prefix_hit_counts_as_a_hit_but_saves_no_build_time(e: Env) {
    save(&e, "u1", "deps-old", &main_scope(), b"archive").await;
    let ev = accessed("a1", HitKind::Prefix, Some("deps-old"), e.now());
    let h = MetricsHandler::new(e.backend.clone());
    assert_eq!(h.accessed(&ev).await.unwrap(), Claim::New);
    assert_eq!(stat(&e, names::CACHE_HIT, REPO).await.sum, 1.0);
    assert_eq!(stat(&e, names::BUILD_TIME_SAVED, REPO).await.count, 0);
}

#[test]
fn build_time_saved_is_floored_at_zero_and_a_failed_restore_is_a_miss() {
    let now = chrono::Utc::now();
    let e = entry(
        &main_scope(),
        "k",
        1,
        runcache_schemas::TrustLevel::Protected,
        now,
    );
    let e = runcache_schemas::IndexEntry {
        build_duration_ms: Some(1000),
        attributes: Default::default(),
        ..e
    };
    let ev = accessed("a", HitKind::Exact, Some("k"), now);
    let saved = access_datums(&ev, Some(&e), now)
        .into_iter()
        .find(|d| d.name == names::BUILD_TIME_SAVED)
        .unwrap();
    assert_eq!(saved.value, 0.0);

    let failed = CacheAccessed {
        error: Some("hash mismatch".into()),
        ..ev
    };
    let datums = access_datums(&failed, Some(&e), now);
    assert!(datums.iter().any(|d| d.name == names::CACHE_MISS));
    assert!(!datums
        .iter()
        .any(|d| d.name == names::CACHE_HIT || d.name == names::BUILD_TIME_SAVED));
    assert!(datums
        .iter()
        .all(|d| d.dimensions.get(DIM_REPOSITORY).map(String::as_str) == Some(REPO)));
}

async fn an_access_to_an_entry_that_is_gone_is_still_counted(e: Env) {
    let ev = accessed("a1", HitKind::Exact, Some("vanished"), e.now());
    let h = MetricsHandler::new(e.backend.clone());
    assert_eq!(
        h.accessed(&ev).await.unwrap(),
        Claim::New,
        "NotFound is ignored"
    );
    assert_eq!(h.accessed(&ev).await.unwrap(), Claim::Done);
    assert_eq!(stat(&e, names::CACHE_HIT, REPO).await.sum, 1.0);
}

async fn gauges_describe_live_entries_per_repository(e: Env) {
    save(&e, "u1", "a", &main_scope(), b"12345").await;
    e.advance(Duration::from_secs(100));
    let b = save(&e, "u2", "b", &main_scope(), b"123").await;
    save(&e, "u3", "c", &Scope::new("acme/other", MAIN), b"1").await;
    e.backend
        .index
        .set_state(
            &b.scope(),
            VERSION,
            "b",
            &StateChange {
                state: EntryState::Invalidated,
                at: e.now(),
                reason: "x".into(),
                by: "y".into(),
            },
        )
        .await
        .unwrap();
    e.advance(Duration::from_secs(100));
    let gauges = publish_gauges(&e.backend).await.unwrap();
    let app = gauges.iter().find(|g| g.repository == REPO).unwrap();
    assert_eq!((app.storage_bytes, app.object_count), (5, 1));
    assert_eq!(app.average_age_seconds, 200.0);
    assert_eq!(stat(&e, names::STORAGE_BYTES, REPO).await.sum, 5.0);
    assert_eq!(stat(&e, names::OBJECT_COUNT, "acme/other").await.sum, 1.0);
    assert_eq!(
        stat(&e, names::AVERAGE_CACHE_AGE, "acme/other").await.sum,
        100.0
    );
}

/// Fails every receive, as a read-only local home does.
#[derive(Debug)]
struct Unreadable;

#[async_trait::async_trait]
impl runcache_testkit::intercept::Interceptor for Unreadable {
    async fn before(
        &self,
        call: runcache_testkit::intercept::Call<'_>,
    ) -> Result<(), runcache_infra::StoreError> {
        if call.op == "receive" {
            return Err(runcache_infra::StoreError::Unavailable {
                what: "receive".into(),
                reason: "attempt to write a readonly database".into(),
            });
        }
        Ok(())
    }
}

/// A one-shot drain (`admin stats`, `--once`) on a queue it cannot receive
/// from ends after a few tries with the cause, instead of backing off
/// forever; the pending event stays for a reader that can take it.
async fn a_drain_whose_queue_cannot_be_read_stops_and_says_why(e: Env) {
    let miss = accessed("a1", HitKind::Miss, None, e.now());
    send(&e, miss.encode(), CacheAccessed::SCHEMA).await;
    let unreadable = Intercepted::wrap(e.backend.accessed.clone(), Arc::new(Unreadable));
    let handler = Arc::new(MetricsHandler::new(e.backend.clone()));
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        drain(unreadable, handler.clone(), ConsumerConfig::default()),
    )
    .await
    .expect("the drain ends");
    assert_eq!(report.done, 0);
    let why = report.stopped_by.expect("the drain says why it stopped");
    assert!(why.contains("readonly database"), "{why}");
    // The event was not lost: a drain that can read takes it.
    let report = drain(
        e.backend.accessed.clone(),
        handler,
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.done, 1);
    assert_eq!(report.stopped_by, None);
}
