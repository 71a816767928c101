//! The simulation's report: per-repository figures, the seed's success
//! metrics evaluated on them, and the markdown docs/benchmarks.md shows.

use std::time::Duration;

use super::Params;

/// What the sweeps did, over the whole simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SweepTotals {
    pub runs: u64,
    pub ttl_evicted: u64,
    pub quota_evicted: u64,
    /// Sum of the evicted entries' claimed sizes.
    pub bytes_evicted: u64,
    /// Unreferenced blobs the sweep deleted from the CAS.
    pub blobs_deleted: u64,
}

/// One repository's figures (or, in [`Report::total`], all of them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoReport {
    pub repository: String,
    /// Scale factor of sizes and build time (0.5–1.5).
    pub scale: f64,
    pub runs: u64,
    pub pr_runs: u64,
    pub reruns: u64,
    pub restores: u64,
    pub exact: u64,
    /// Restore-key (prefix) hits.
    pub partial: u64,
    pub misses: u64,
    pub saves: u64,
    /// Sum of the claimed sizes saved.
    pub written_bytes: u64,
    /// Run time without any cache, and with this one (model).
    pub cold_seconds: f64,
    pub cached_seconds: f64,
    /// Cold time of the steps served by an exact hit, and by a restore-key
    /// hit; time spent restoring and saving. With the cold time these give
    /// the build time cut for any pair of "saves" fractions
    /// ([`RepoReport::build_time_cut_if`]): the hits do not depend on them.
    pub exact_step_seconds: f64,
    pub partial_step_seconds: f64,
    pub transfer_seconds: f64,
    /// Live storage just before a sweep, the highest seen (in the total:
    /// the largest repository's).
    pub peak_storage_bytes: u64,
    /// At the end, from the metrics worker's gauges (in the total: the
    /// largest repository's).
    pub storage_bytes: u64,
    pub live_entries: u64,
    /// Mean age of the live entries at the end (gauge `AverageCacheAge`).
    pub average_age_seconds: f64,
    /// From the metrics worker's datums (`CacheHit`, `CacheMiss`,
    /// `Evictions`, `Invalidations`, `BuildTimeSaved`).
    pub metric_hits: u64,
    pub metric_misses: u64,
    pub evictions: u64,
    pub invalidations: u64,
    pub metric_build_time_saved_seconds: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl RepoReport {
    /// Exact and restore-key hits over restores (what `HitRate` counts).
    pub fn hit_rate(&self) -> f64 {
        ratio(self.exact + self.partial, self.restores)
    }

    pub fn exact_rate(&self) -> f64 {
        ratio(self.exact, self.restores)
    }

    pub fn partial_rate(&self) -> f64 {
        ratio(self.partial, self.restores)
    }

    /// 1 − (run time with the cache / without).
    pub fn build_time_cut(&self) -> f64 {
        if self.cold_seconds > 0.0 {
            1.0 - self.cached_seconds / self.cold_seconds
        } else {
            0.0
        }
    }

    /// The build time cut had an exact hit saved `exact` and a restore-key
    /// hit `partial` of their step's cold time.
    pub fn build_time_cut_if(&self, exact: f64, partial: f64) -> f64 {
        if self.cold_seconds > 0.0 {
            (self.exact_step_seconds * exact + self.partial_step_seconds * partial
                - self.transfer_seconds)
                / self.cold_seconds
        } else {
            0.0
        }
    }

    fn total(repos: &[RepoReport]) -> RepoReport {
        let mut t = RepoReport {
            repository: "all".into(),
            ..Default::default()
        };
        let mut age_sum = 0.0;
        for r in repos {
            t.runs += r.runs;
            t.pr_runs += r.pr_runs;
            t.reruns += r.reruns;
            t.restores += r.restores;
            t.exact += r.exact;
            t.partial += r.partial;
            t.misses += r.misses;
            t.saves += r.saves;
            t.written_bytes += r.written_bytes;
            t.cold_seconds += r.cold_seconds;
            t.cached_seconds += r.cached_seconds;
            t.exact_step_seconds += r.exact_step_seconds;
            t.partial_step_seconds += r.partial_step_seconds;
            t.transfer_seconds += r.transfer_seconds;
            t.peak_storage_bytes = t.peak_storage_bytes.max(r.peak_storage_bytes);
            t.storage_bytes = t.storage_bytes.max(r.storage_bytes);
            t.live_entries += r.live_entries;
            age_sum += r.average_age_seconds * r.live_entries as f64;
            t.metric_hits += r.metric_hits;
            t.metric_misses += r.metric_misses;
            t.evictions += r.evictions;
            t.invalidations += r.invalidations;
            t.metric_build_time_saved_seconds += r.metric_build_time_saved_seconds;
        }
        if t.live_entries > 0 {
            t.average_age_seconds = age_sum / t.live_entries as f64;
        }
        t
    }
}

/// One of the seed's success metrics, evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub metric: &'static str,
    pub target: &'static str,
    pub value: String,
    pub met: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub params: Params,
    pub repositories: Vec<RepoReport>,
    pub total: RepoReport,
    pub sweeps: SweepTotals,
    /// Simulated time covered.
    pub simulated: Duration,
    /// The seed's success metrics: hit rate, build time cut, storage per
    /// repository, average cache age.
    pub checks: Vec<Check>,
}

const DAY: f64 = 86_400.0;

fn pct(f: f64) -> String {
    format!("{:.1}%", f * 100.0)
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

fn days(seconds: f64) -> String {
    format!("{:.1} d", seconds / DAY)
}

impl Report {
    pub fn new(
        params: Params,
        repositories: Vec<RepoReport>,
        sweeps: SweepTotals,
        simulated: Duration,
    ) -> Report {
        let total = RepoReport::total(&repositories);
        let oldest = repositories
            .iter()
            .map(|r| r.average_age_seconds)
            .fold(0.0, f64::max);
        let checks = vec![
            Check {
                metric: "hit rate (exact + restore-key)",
                target: "> 60%",
                value: format!(
                    "{} (exact {}, restore-key {})",
                    pct(total.hit_rate()),
                    pct(total.exact_rate()),
                    pct(total.partial_rate())
                ),
                met: total.hit_rate() > 0.60,
            },
            Check {
                metric: "build time cut",
                target: "50–90%",
                value: pct(total.build_time_cut()),
                met: total.build_time_cut() >= 0.50,
            },
            Check {
                metric: "storage per repository",
                target: "< 100 GB",
                value: format!(
                    "{} at most (largest repository, just before a sweep)",
                    gb(total.peak_storage_bytes)
                ),
                met: total.peak_storage_bytes < 100_000_000_000,
            },
            Check {
                metric: "average cache age",
                target: "< 7 days",
                value: format!(
                    "{} (live entries at the end; oldest repository {})",
                    days(total.average_age_seconds),
                    days(oldest)
                ),
                met: total.average_age_seconds < 7.0 * DAY,
            },
        ];
        Report {
            params,
            repositories,
            total,
            sweeps,
            simulated,
            checks,
        }
    }

    /// Whether every success metric is met.
    pub fn all_met(&self) -> bool {
        self.checks.iter().all(|c| c.met)
    }

    /// The report as docs/benchmarks.md shows it.
    pub fn markdown(&self) -> String {
        let t = &self.total;
        let mut out = format!(
            "{:.0} simulated days, {} repositories (`--seed {}`): {} CI runs ({} on pull requests, {} on the default branch, {} of them re-runs), {} restores, {} saves, {} sweeps.\n\n",
            self.simulated.as_secs_f64() / DAY,
            self.repositories.len(),
            self.params.seed,
            t.runs,
            t.pr_runs,
            t.runs - t.pr_runs,
            t.reruns,
            t.restores,
            t.saves,
            self.sweeps.runs,
        );
        out.push_str("| success metric (seed) | target | simulated | |\n|---|---|---|---|\n");
        for c in &self.checks {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.metric,
                c.target,
                c.value,
                if c.met { "**met**" } else { "**missed**" }
            ));
        }
        out.push_str("\n| repository (scale) | runs | restores: exact / restore-key / miss | hit rate | build time cut | written by saves | storage: peak / end | live entries | average age | evictions | invalidated |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in self.repositories.iter().chain([t]) {
            let (name, storage) = if std::ptr::eq(r, t) {
                (
                    "**all**".to_string(),
                    format!(
                        "max {} / max {}",
                        gb(r.peak_storage_bytes),
                        gb(r.storage_bytes)
                    ),
                )
            } else {
                (
                    format!("{} (×{:.2})", r.repository, r.scale),
                    format!("{} / {}", gb(r.peak_storage_bytes), gb(r.storage_bytes)),
                )
            };
            out.push_str(&format!(
                "| {name} | {} | {} / {} / {} | {} | {} | {} | {storage} | {} | {} | {} | {} |\n",
                r.runs,
                r.exact,
                r.partial,
                r.misses,
                pct(r.hit_rate()),
                pct(r.build_time_cut()),
                gb(r.written_bytes),
                r.live_entries,
                days(r.average_age_seconds),
                r.evictions,
                r.invalidations,
            ));
        }
        let p = &self.params;
        let cut = |partial: f64| pct(t.build_time_cut_if(p.exact_hit_saves, partial));
        out.push_str(&format!(
            "\nThe build time cut rests on the model's assumptions, above all what a restore-key hit saves (`--partial-hit-saves`, {}): \
             had it saved 25% / 50% / 75% of its step, the cut would be {} / {} / {}; \
             with nothing but exact hits counted, {}.\n",
            pct(p.partial_hit_saves),
            cut(0.25),
            cut(0.50),
            cut(0.75),
            cut(0.0),
        ));
        let s = &self.sweeps;
        out.push_str(&format!(
            "\nSweeps: {} TTL and {} quota evictions ({} of claimed sizes), {} unreferenced blobs deleted from the CAS. \
             Build time: {:.0} h without a cache, {:.0} h with it ({:.1} min saved per run). \
             The metrics worker's `BuildTimeSaved` (exact hits only, against the producing run's own duration) sums to {:.0} h.\n",
            s.ttl_evicted,
            s.quota_evicted,
            gb(s.bytes_evicted),
            s.blobs_deleted,
            t.cold_seconds / 3600.0,
            t.cached_seconds / 3600.0,
            (t.cold_seconds - t.cached_seconds) / 60.0 / t.runs.max(1) as f64,
            t.metric_build_time_saved_seconds / 3600.0,
        ));
        out
    }
}
