//! The workload simulator end to end, with small parameters: the report
//! adds up, agrees with the metrics worker and the sweeps, keeps every
//! repository within its quota, evaluates the seed's success metrics, and
//! depends only on the seed.

use runcache_bench::simulate::{simulate, Params};

fn small() -> Params {
    Params {
        days: 7,
        repositories: 2,
        prs_per_day: 4.0,
        sweep_every_hours: 6,
        // Small enough that the quota evicts within a week.
        quota_gb: 5.0,
        ..Params::default()
    }
}

#[tokio::test]
async fn a_small_simulation_is_consistent_and_evaluates_the_success_metrics() {
    let p = small();
    let report = simulate(&p).await.unwrap();
    let t = &report.total;

    assert_eq!(report.repositories.len(), 2);
    assert!(t.runs > 20, "too few runs to mean anything: {}", t.runs);
    assert_eq!(t.restores, 2 * t.runs, "every run restores two caches");
    assert_eq!(t.exact + t.partial + t.misses, t.restores);
    assert!(t.exact > 0 && t.partial > 0 && t.misses > 0, "{t:?}");
    assert!(t.saves <= t.partial + t.misses, "exact hits never save");
    assert!(t.cached_seconds < t.cold_seconds, "the cache saved time");
    let cut = t.build_time_cut_if(p.exact_hit_saves, p.partial_hit_saves);
    assert!(
        (cut - t.build_time_cut()).abs() < 1e-9,
        "{cut} ≠ {}",
        t.build_time_cut()
    );
    assert!(t.build_time_cut_if(0.9, 0.25) < t.build_time_cut_if(0.9, 0.75));

    // What the metrics worker counted is what happened.
    assert_eq!(t.metric_hits, t.exact + t.partial);
    assert_eq!(t.metric_misses, t.misses);
    let s = &report.sweeps;
    assert_eq!(s.runs, 7 * 24 / 6);
    assert!(
        s.quota_evicted > 0,
        "a 5 GB quota is exceeded within a week"
    );
    assert_eq!(t.evictions, s.ttl_evicted + s.quota_evicted);
    assert!(s.blobs_deleted > 0, "evicted entries' blobs are collected");

    // The last sweep runs at the end: every repository is within its quota.
    for r in &report.repositories {
        assert!(r.storage_bytes <= 5_000_000_000, "{r:?}");
        assert!(r.peak_storage_bytes >= r.storage_bytes);
    }
    assert!(t.live_entries > 0 && t.average_age_seconds > 0.0, "{t:?}");

    let metrics: Vec<_> = report.checks.iter().map(|c| c.metric).collect();
    assert_eq!(
        metrics,
        [
            "hit rate (exact + restore-key)",
            "build time cut",
            "storage per repository",
            "average cache age"
        ]
    );
    assert_eq!(report.checks[0].met, t.hit_rate() > 0.6);
    assert_eq!(report.checks[1].met, t.build_time_cut() >= 0.5);
    assert!(
        report.checks[2].met,
        "a 5 GB quota keeps storage under 100 GB"
    );
    assert_eq!(report.checks[3].met, t.average_age_seconds < 7.0 * 86_400.0);

    let md = report.markdown();
    assert!(md.contains("| success metric (seed) |"), "{md}");
    assert!(md.contains("| **all** |"), "{md}");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_report_and_another_seed_another() {
    let p = Params {
        days: 3,
        repositories: 1,
        sweep_every_hours: 12,
        ..Params::default()
    };
    let a = simulate(&p).await.unwrap();
    let b = simulate(&p).await.unwrap();
    assert_eq!(a, b);
    let c = simulate(&Params { seed: 2, ..p }).await.unwrap();
    assert_ne!(a.markdown(), c.markdown());
}

#[tokio::test]
async fn parameters_out_of_range_are_refused() {
    let err = simulate(&Params {
        merge_rate: 1.5,
        ..Params::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--merge-rate"), "{err}");
}
