//! The whole worker side, through the queues and the service modes, on both
//! backends with a `ManualClock`: a staged upload is promoted, a
//! restore's access event is counted, an invalidation hides the entry, and
//! the sweep deletes the now-unreferenced blob once the grace period is
//! over. Then `all` runs until shutdown and stops cleanly.

mod support;

use std::{collections::BTreeMap, time::Duration};

use runcache_infra::{
    metrics::names::{self as metric_names, DIM_REPOSITORY},
    names,
    queue::{ATTR_SCHEMA, ATTR_VERSION},
    OutgoingMessage,
};
use runcache_schemas::{
    AuditAction, CacheAccessed, CacheInvalidate, Contract, HitKind, InvalidationSelector,
};
use runcache_worker::{serve, sweep::PENDING_PREFIX, Mode, ServiceOptions};
use support::*;

crate::backend_tests!(
    save_promote_access_invalidate_and_sweep,
    all_runs_until_shutdown_and_stops_cleanly,
);
use tokio_util::sync::CancellationToken;

fn options(e: &Env) -> ServiceOptions {
    let mut o = ServiceOptions::from_config(&e.config, "e2e-worker");
    o.once = true;
    o
}

async fn send<T: Contract>(q: &dyn runcache_infra::EventQueue, ev: &T) {
    q.send(
        OutgoingMessage::new(ev.encode())
            .with_attribute(ATTR_SCHEMA, T::SCHEMA)
            .with_attribute(ATTR_VERSION, T::VERSION.to_string()),
    )
    .await
    .unwrap();
}

async fn metric(e: &Env, name: &str) -> f64 {
    let dims = BTreeMap::from([(DIM_REPOSITORY.to_string(), REPO.to_string())]);
    e.backend
        .metrics
        .stats(name, &dims, e.now() - chrono::Duration::days(1))
        .await
        .unwrap()
        .sum
}

async fn save_promote_access_invalidate_and_sweep(e: Env) {
    let bytes = b"a zstd tar, as far as the workers care".to_vec();

    // save: upload to staging/, announce on the staged queue.
    let ev = staged(
        "0190a1b2-c3d4",
        &bytes,
        "deps-linux-abc",
        &main_scope(),
        e.now(),
    );
    stage(&e.backend, &ev, &bytes).await;
    send(&*e.backend.staged, &ev).await;
    let r = serve(
        e.backend.clone(),
        Mode::Promote,
        options(&e),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.promote.unwrap().done, 1);
    let hit = lookup(&e.backend, &main_scope(), "deps-linux-abc")
        .await
        .expect("promoted and visible");
    let cas = names::artifact_key(hit.entry.content_hash.hex());
    assert_eq!(read(&e.backend, &cas).await, bytes);
    assert!(!exists(&e.backend, &ev.staging_key).await);

    // restore: the access event, then the metrics worker.
    e.advance(Duration::from_secs(60));
    let access = CacheAccessed {
        access_id: "acc-1".into(),
        scope: main_scope(),
        primary_key: "deps-linux-abc".into(),
        restore_keys: vec![],
        cache_version: VERSION.into(),
        hit_kind: HitKind::Exact,
        matched_key: Some("deps-linux-abc".into()),
        matched_ref: Some(MAIN.into()),
        content_hash: Some(hit.entry.content_hash.clone()),
        bytes: bytes.len() as u64,
        lookup_ms: 5,
        download_ms: 10,
        extract_ms: 10,
        total_ms: 25,
        lookup_only: false,
        error: None,
        accessed_at: e.now(),
    };
    send(&*e.backend.accessed, &access).await;
    let r = serve(
        e.backend.clone(),
        Mode::Metrics,
        options(&e),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        r.metrics.unwrap().done,
        2,
        "the promote outcome and the access"
    );
    assert_eq!(metric(&e, metric_names::CACHE_HIT).await, 1.0);
    assert_eq!(metric(&e, metric_names::ARTIFACTS_PROMOTED).await, 1.0);
    assert_eq!(
        metric(&e, metric_names::STORAGE_BYTES).await,
        bytes.len() as f64
    );
    let entry = e
        .backend
        .index
        .get(&main_scope(), VERSION, "deps-linux-abc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.access_count, 1);

    // admin invalidate → the invalidate worker: restores miss at once.
    let request = CacheInvalidate {
        request_id: "req-1".into(),
        selector: InvalidationSelector {
            repository: Some(REPO.into()),
            key_prefix: Some("deps-".into()),
            ..Default::default()
        },
        reason: "poisoned lockfile".into(),
        requested_by: "ops@acme".into(),
        requested_at: e.now(),
        purge_corrupt_blobs: false,
    };
    send(&*e.backend.invalidate, &request).await;
    let r = serve(
        e.backend.clone(),
        Mode::Invalidate,
        options(&e),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.invalidate.unwrap().done, 1);
    assert!(lookup(&e.backend, &main_scope(), "deps-linux-abc")
        .await
        .is_none());
    assert!(exists(&e.backend, &cas).await, "blobs are left for sweep");

    // sweep within the grace period: the blob stays.
    let r = serve(
        e.backend.clone(),
        Mode::Sweep,
        options(&e),
        CancellationToken::new(),
    )
    .await;
    assert_eq!((r.sweeps, r.sweep_failures), (1, 0));
    assert!(exists(&e.backend, &cas).await);

    // After it, `all --once`: the blob and its provenance document go, and
    // the metrics worker counts the invalidation.
    e.advance(Duration::from_secs(2 * 3600));
    let r = serve(
        e.backend.clone(),
        Mode::All,
        options(&e),
        CancellationToken::new(),
    )
    .await;
    assert!(r.ok());
    assert!(!exists(&e.backend, &cas).await);
    assert!(
        !exists(
            &e.backend,
            &names::metadata_key(hit.entry.content_hash.hex())
        )
        .await
    );
    assert!(keys_under(&e.backend, PENDING_PREFIX).await.is_empty());
    assert_eq!(metric(&e, metric_names::INVALIDATIONS).await, 1.0);
    let audit = e.backend.index.audit_log(REPO, 10).await.unwrap();
    let actions: Vec<_> = audit.iter().map(|a| a.action).collect();
    assert!(actions.contains(&AuditAction::Invalidated));
    assert!(actions.contains(&AuditAction::Deleted));
    // The provenance record outlives the blob (traceability).
    assert_eq!(
        e.backend
            .provenance
            .get(&hit.entry.content_hash)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn all_runs_until_shutdown_and_stops_cleanly(e: Env) {
    let bytes = b"served".to_vec();
    let ev = staged("u-live", &bytes, "k", &main_scope(), e.now());
    stage(&e.backend, &ev, &bytes).await;
    send(&*e.backend.staged, &ev).await;

    let mut opts = options(&e);
    opts.once = false;
    opts.consumer.wait = Duration::from_millis(50);
    opts.consumer.shutdown_grace = Duration::from_secs(5);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(e.backend.clone(), Mode::All, opts, shutdown.clone()));
    // Wait (bounded) until the running promote worker has done its work.
    for _ in 0..200 {
        if lookup(&e.backend, &main_scope(), "k").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(lookup(&e.backend, &main_scope(), "k").await.is_some());
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("every worker stops on shutdown")
        .unwrap();
    assert_eq!(report.promote.as_ref().unwrap().done, 1);
    assert!(report.sweeps >= 1, "the sweep loop ran at start");
    assert!(report.ok());
}
