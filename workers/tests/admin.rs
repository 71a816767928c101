//! `runcache admin`'s operations (`runcache::admin`) on the local backend,
//! over the workers' fixtures: stats, ls, provenance, invalidate (enqueue
//! only) and verify (which finds a tampered `artifacts/` object).

mod support;

use std::{sync::Arc, time::Duration};

use runcache::admin::{self, AdminError};
use runcache_infra::names;
use runcache_schemas::{CacheAccessed, Event, HitKind, InvalidationSelector, Scope};
use runcache_worker::{drain, ConsumerConfig, Invalidator, MetricsHandler};
use support::*;

fn access(key: &str, hit: HitKind, at: chrono::DateTime<chrono::Utc>) -> CacheAccessed {
    CacheAccessed {
        access_id: uuid::Uuid::new_v4().to_string(),
        scope: main_scope(),
        primary_key: key.into(),
        restore_keys: vec![],
        cache_version: VERSION.into(),
        hit_kind: hit,
        matched_key: (hit != HitKind::Miss).then(|| key.to_string()),
        matched_ref: (hit != HitKind::Miss).then(|| MAIN.to_string()),
        content_hash: None,
        bytes: if hit == HitKind::Miss { 0 } else { 100 },
        lookup_ms: 1,
        download_ms: 1,
        extract_ms: 1,
        total_ms: 3,
        lookup_only: false,
        error: None,
        accessed_at: at,
    }
}

#[tokio::test]
async fn stats_report_hit_rate_storage_and_the_most_accessed_entries() {
    let e = env();
    save(&e, "u1", "popular", &main_scope(), b"aaaa").await;
    save(&e, "u2", "rare", &main_scope(), b"bb").await;
    save(&e, "u3", "x", &Scope::new("acme/other", MAIN), b"c").await;
    let h = MetricsHandler::new(e.backend.clone());
    for _ in 0..3 {
        h.accessed(&access("popular", HitKind::Exact, e.now()))
            .await
            .unwrap();
    }
    h.accessed(&access("nothing", HitKind::Miss, e.now()))
        .await
        .unwrap();
    e.advance(Duration::from_secs(10));

    let since = e.now() - chrono::Duration::hours(1);
    let report = admin::stats(&e.backend, Some(REPO), since, 1)
        .await
        .unwrap();
    assert_eq!(report.repositories.len(), 1);
    let r = &report.repositories[0];
    assert_eq!((r.hits, r.misses), (3, 1));
    assert_eq!(r.hit_rate_percent, Some(75.0));
    assert_eq!(r.bytes_restored, 300);
    assert_eq!((r.storage_bytes, r.object_count), (6, 2));
    assert_eq!(r.average_age_seconds, 10.0);
    assert_eq!(r.most_accessed.len(), 1);
    assert_eq!(r.most_accessed[0].cache_key, "popular");
    assert_eq!(r.most_accessed[0].access_count, 3);

    let all = admin::stats(&e.backend, None, since, admin::DEFAULT_TOP)
        .await
        .unwrap();
    let repos: Vec<_> = all
        .repositories
        .iter()
        .map(|r| r.repository.as_str())
        .collect();
    assert_eq!(repos, ["acme/app", "acme/other"]);
    assert_eq!(
        all.repositories[1].hit_rate_percent, None,
        "no restores yet"
    );
    // Serialisable for --json.
    let json = serde_json::to_value(&all).unwrap();
    assert_eq!(json["repositories"][0]["hitRatePercent"], 75.0);
}

#[tokio::test]
async fn ls_lists_a_repositorys_entries_by_ref() {
    let e = env();
    let feature = Scope::new(REPO, "refs/heads/feature");
    save(&e, "u1", "a", &main_scope(), b"1").await;
    e.advance(Duration::from_secs(1));
    save(&e, "u2", "b", &main_scope(), b"2").await;
    save(&e, "u3", "c", &feature, b"3").await;
    save(&e, "u4", "d", &Scope::new("acme/other", MAIN), b"4").await;
    let keys = |v: Vec<runcache_schemas::IndexEntry>| {
        v.into_iter().map(|e| e.cache_key).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(admin::ls(&e.backend, REPO, None).await.unwrap()),
        ["c", "b", "a"]
    );
    assert_eq!(
        keys(admin::ls(&e.backend, REPO, Some("main")).await.unwrap()),
        ["b", "a"]
    );
    assert_eq!(
        keys(
            admin::ls(&e.backend, REPO, Some("refs/heads/feature"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert!(admin::ls(&e.backend, "nobody/none", None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn provenance_by_hash_and_by_key() {
    let e = env();
    let entry = save(&e, "u1", "deps-1", &main_scope(), b"built").await;
    let by_hash = admin::provenance(&e.backend, entry.content_hash.as_str(), None, None)
        .await
        .unwrap();
    assert_eq!(by_hash.records.len(), 1);
    assert_eq!(by_hash.records[0].upload_id, "u1");
    assert_eq!(by_hash.records[0].build.trigger_event, "push");
    let bare = admin::provenance(&e.backend, entry.content_hash.hex(), None, None)
        .await
        .unwrap();
    assert_eq!(bare.records, by_hash.records);

    let by_key = admin::provenance(&e.backend, "deps-1", Some(REPO), Some("main"))
        .await
        .unwrap();
    assert_eq!(by_key.entries.len(), 1);
    assert_eq!(by_key.entries[0].content_hash, entry.content_hash);
    assert_eq!(by_key.records, by_hash.records);

    assert!(matches!(
        admin::provenance(&e.backend, "deps-1", None, None).await,
        Err(AdminError::Usage(_))
    ));
    assert!(matches!(
        admin::provenance(&e.backend, "nope", Some(REPO), None).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn invalidate_validates_and_enqueues_for_the_worker() {
    let e = env();
    save(&e, "u1", "deps-1", &main_scope(), b"1").await;
    assert!(matches!(
        admin::invalidate(
            &e.backend,
            InvalidationSelector::default(),
            "why",
            "me",
            false
        )
        .await,
        Err(AdminError::InvalidSelector(_))
    ));
    assert_eq!(
        e.backend.invalidate.depth().await.unwrap().visible,
        0,
        "nothing sent"
    );

    let selector = InvalidationSelector {
        repository: Some(REPO.into()),
        key_prefix: Some("deps-".into()),
        ..Default::default()
    };
    let sent = admin::invalidate(
        &e.backend,
        selector.clone(),
        "bad lockfile",
        "ops@acme",
        false,
    )
    .await
    .unwrap();
    assert_eq!(sent.live_matches_now, 1);
    // Enqueued only: still restorable until the worker runs.
    assert!(lookup(&e.backend, &main_scope(), "deps-1").await.is_some());
    let report = drain(
        e.backend.invalidate.clone(),
        Arc::new(Invalidator::new(e.backend.clone())),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.done, 1);
    assert!(lookup(&e.backend, &main_scope(), "deps-1").await.is_none());
    let audit = e.backend.index.audit_log(REPO, 10).await.unwrap();
    assert!(audit[0].audit_id.contains(&sent.request_id));
    assert_eq!(audit[0].actor, "ops@acme");
    assert!(take_events(&*e.backend.accessed)
        .await
        .iter()
        .any(|ev| matches!(ev, Event::Outcome(_))));
}

#[tokio::test]
async fn verify_finds_a_tampered_artifact_and_a_missing_one() {
    let e = env();
    let good = save(&e, "u1", "good", &main_scope(), b"good bytes").await;
    let bad = save(&e, "u2", "bad", &main_scope(), b"original bytes").await;
    let clean = admin::verify(&e.backend).await.unwrap();
    assert!(clean.ok(), "{clean:?}");
    assert_eq!(clean.checked, 2);

    // Someone with bucket access rewrites a CAS object.
    put_bytes(
        &e.backend,
        &names::artifact_key(bad.content_hash.hex()),
        b"evil bytes",
    )
    .await;
    let report = admin::verify(&e.backend).await.unwrap();
    assert!(!report.ok());
    assert_eq!(report.mismatches.len(), 1);
    assert_eq!(report.mismatches[0].key, bad.s3_key);
    assert_eq!(
        report.mismatches[0].expected.as_ref(),
        Some(&bad.content_hash)
    );
    assert_eq!(report.mismatches[0].actual, hash_of(b"evil bytes"));

    // And one deleted from under its live entry.
    e.backend.blobs.delete(&good.s3_key).await.unwrap();
    let report = admin::verify(&e.backend).await.unwrap();
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].content_hash, good.content_hash);
    assert_eq!(report.checked, 1);
}
