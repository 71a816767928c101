//! MetricsSink and ProvenanceStore cases.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use runcache_infra::{metrics::names, MetricDatum, MetricUnit, Window};
use runcache_schemas::{BuildProvenance, ContentHash, ProvenanceRecord, Scope, TrustLevel};

use super::Fixture;

fn repo_dims(repo: &str) -> BTreeMap<String, String> {
    [(names::DIM_REPOSITORY.to_string(), repo.to_string())].into()
}

pub async fn metrics_put_and_aggregate(fx: &Fixture) {
    let now = Utc::now();
    let datums = vec![
        MetricDatum::new(names::CACHE_HIT, 1.0, MetricUnit::Count, now)
            .with_dimension(names::DIM_REPOSITORY, "acme/app"),
        MetricDatum::new(names::CACHE_HIT, 1.0, MetricUnit::Count, now)
            .with_dimension(names::DIM_REPOSITORY, "acme/app"),
        MetricDatum::new(names::CACHE_HIT, 1.0, MetricUnit::Count, now)
            .with_dimension(names::DIM_REPOSITORY, "acme/other"),
        MetricDatum::new(
            names::RESTORE_DURATION,
            250.0,
            MetricUnit::Milliseconds,
            now,
        )
        .with_dimension(names::DIM_REPOSITORY, "acme/app"),
        MetricDatum::new(
            names::RESTORE_DURATION,
            750.0,
            MetricUnit::Milliseconds,
            now,
        )
        .with_dimension(names::DIM_REPOSITORY, "acme/app"),
    ];
    fx.metrics.put(&datums).await.unwrap();
    let since = now - Duration::hours(1);
    let hits = fx
        .metrics
        .stats(names::CACHE_HIT, &repo_dims("acme/app"), since)
        .await
        .unwrap();
    assert_eq!((hits.sum, hits.count), (2.0, 2));
    let other = fx
        .metrics
        .stats(names::CACHE_HIT, &repo_dims("acme/other"), since)
        .await
        .unwrap();
    assert_eq!(other.sum, 1.0);
    let dur = fx
        .metrics
        .stats(names::RESTORE_DURATION, &repo_dims("acme/app"), since)
        .await
        .unwrap();
    assert_eq!((dur.min, dur.max, dur.sum), (250.0, 750.0, 1000.0));
    let none = fx
        .metrics
        .stats(names::CACHE_MISS, &repo_dims("acme/app"), since)
        .await
        .unwrap();
    assert_eq!(none.count, 0);
}

pub async fn metrics_accept_large_batches(fx: &Fixture) {
    let now = Utc::now();
    // More than CloudWatch takes in one call (1000 datums): adapters batch.
    let datums: Vec<_> = (0..1500)
        .map(|_| {
            MetricDatum::new(names::BYTES_RESTORED, 2.0, MetricUnit::Bytes, now)
                .with_dimension(names::DIM_REPOSITORY, "acme/batch")
        })
        .collect();
    fx.metrics.put(&datums).await.unwrap();
    let s = fx
        .metrics
        .stats(
            names::BYTES_RESTORED,
            &repo_dims("acme/batch"),
            now - Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(s.sum, 3000.0);
}

pub async fn metrics_series_cut_the_window_in_periods(fx: &Fixture) {
    let now = Utc::now();
    let window = Window::ending_at(now, std::time::Duration::from_secs(60), 10);
    assert_eq!(window.buckets(), 10);
    let repo = "acme/series";
    // Two datums in the newest bucket, one three buckets before it, one
    // before the window (not counted). The first one in the window is on a
    // bucket start: CloudWatch cuts buckets from the start time, moto from
    // the first datum it finds (moto/cloudwatch/models.py,
    // get_metric_statistics), and the two agree only then.
    let newest = window.bucket_start(9) + Duration::seconds(1);
    let older = window.bucket_start(6);
    let datums = vec![
        MetricDatum::new(names::CACHE_HIT, 1.0, MetricUnit::Count, newest)
            .with_dimension(names::DIM_REPOSITORY, repo),
        MetricDatum::new(names::CACHE_HIT, 2.0, MetricUnit::Count, newest)
            .with_dimension(names::DIM_REPOSITORY, repo),
        MetricDatum::new(names::CACHE_HIT, 4.0, MetricUnit::Count, older)
            .with_dimension(names::DIM_REPOSITORY, repo),
        MetricDatum::new(
            names::CACHE_HIT,
            8.0,
            MetricUnit::Count,
            window.since - Duration::minutes(5),
        )
        .with_dimension(names::DIM_REPOSITORY, repo),
        MetricDatum::new(names::CACHE_HIT, 16.0, MetricUnit::Count, newest)
            .with_dimension(names::DIM_REPOSITORY, "acme/elsewhere"),
    ];
    fx.metrics.put(&datums).await.unwrap();
    let points = fx
        .metrics
        .series(names::CACHE_HIT, &repo_dims(repo), &window)
        .await
        .unwrap();
    let got: Vec<_> = points
        .iter()
        .map(|p| (p.start, p.stats.sum, p.stats.count, p.stats.max))
        .collect();
    assert_eq!(
        got,
        vec![
            (window.bucket_start(6), 4.0, 1, 4.0),
            (window.bucket_start(9), 3.0, 2, 2.0),
        ],
        "one point per bucket with datums, oldest first, only this dimension set"
    );
    let empty = fx
        .metrics
        .series(names::CACHE_MISS, &repo_dims(repo), &window)
        .await
        .unwrap();
    assert!(empty.is_empty(), "no datums, no points: {empty:?}");
}

pub async fn metrics_dimension_sets_name_every_recorded_set(fx: &Fixture) {
    let now = Utc::now();
    let datums = vec![
        MetricDatum::new(names::EVICTIONS, 1.0, MetricUnit::Count, now)
            .with_dimension(names::DIM_REPOSITORY, "acme/b"),
        MetricDatum::new(names::EVICTIONS, 1.0, MetricUnit::Count, now)
            .with_dimension(names::DIM_REPOSITORY, "acme/a"),
        MetricDatum::new(names::EVICTIONS, 1.0, MetricUnit::Count, now)
            .with_dimension(names::DIM_REPOSITORY, "acme/a"),
        MetricDatum::new(names::INVALIDATIONS, 1.0, MetricUnit::Count, now)
            .with_dimension(names::DIM_REPOSITORY, "acme/c"),
    ];
    fx.metrics.put(&datums).await.unwrap();
    let sets = fx.metrics.dimension_sets(names::EVICTIONS).await.unwrap();
    assert_eq!(sets, vec![repo_dims("acme/a"), repo_dims("acme/b")]);
    assert!(fx
        .metrics
        .dimension_sets(names::WORKER_ERRORS)
        .await
        .unwrap()
        .is_empty());
}

fn record(upload: &str, minute: i64) -> ProvenanceRecord {
    let at = Utc::now() + Duration::minutes(minute);
    ProvenanceRecord {
        content_hash: ContentHash::from_hex(&"cd".repeat(32)).unwrap(),
        upload_id: upload.into(),
        cache_key: "deps-1".into(),
        scope: Scope::new("acme/app", "refs/heads/main"),
        cache_version: "v".into(),
        paths: vec!["node_modules".into()],
        compression: "zstd-without-long".into(),
        size_bytes: 10,
        build: BuildProvenance {
            repository: "acme/app".into(),
            commit_sha: Some("abc123".into()),
            trigger_event: "push".into(),
            trust: TrustLevel::Protected,
            ..Default::default()
        },
        staged_at: at,
        promoted_at: at,
        promoted_by: "worker-1".into(),
    }
}

pub async fn provenance_put_is_idempotent(fx: &Fixture) {
    let hash = record("u1", 0).content_hash;
    assert!(fx.provenance.get(&hash).await.unwrap().is_empty());
    fx.provenance.put(&record("u1", 0)).await.unwrap();
    fx.provenance.put(&record("u1", 0)).await.unwrap();
    fx.provenance.put(&record("u2", 5)).await.unwrap();
    let got = fx.provenance.get(&hash).await.unwrap();
    let uploads: Vec<_> = got.iter().map(|r| r.upload_id.as_str()).collect();
    assert_eq!(uploads, ["u1", "u2"], "one record per upload, oldest first");
    assert_eq!(got[0].build.commit_sha.as_deref(), Some("abc123"));
}
