//! What the page shows, read from the ports: the metrics' series for each
//! time range, the most accessed entries from the index, the dead letters
//! from the queues. Reads only.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::{future::BoxFuture, stream, FutureExt, StreamExt, TryStreamExt};
use runcache_infra::{
    metrics::names::{self, DIM_REPOSITORY},
    Backend, MetricsSink, SeriesPoint, StoreError, Window,
};
use serde::Serialize;
use tracing::instrument;

/// A time range of the selector: `buckets` periods ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Range {
    /// Used in the page's element ids.
    pub id: &'static str,
    pub label: &'static str,
    #[serde(skip)]
    pub period: Duration,
    pub buckets: u32,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The selector's ranges, shortest first.
pub const RANGES: [Range; 4] = [
    Range {
        id: "1h",
        label: "1 hour",
        period: Duration::from_secs(MINUTE),
        buckets: 60,
    },
    Range {
        id: "24h",
        label: "24 hours",
        period: Duration::from_secs(30 * MINUTE),
        buckets: 48,
    },
    Range {
        id: "7d",
        label: "7 days",
        period: Duration::from_secs(6 * HOUR),
        buckets: 28,
    },
    Range {
        id: "30d",
        label: "30 days",
        period: Duration::from_secs(DAY),
        buckets: 30,
    },
];

/// How many metric queries run at once (CloudWatch calls on AWS).
const CONCURRENT_QUERIES: usize = 8;

/// Index entries read at most for "most accessed" (a scan on DynamoDB).
pub const MAX_SCANNED: usize = 200_000;

/// What to draw.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this repository (serve's page shows the caller's own).
    pub repository: Option<String>,
    /// The end of every range: now, or a simulation's last instant.
    pub now: DateTime<Utc>,
    /// How many of the most accessed entries to list.
    pub top: usize,
    /// Show the queues' dead letters (operators only: they name no
    /// repository).
    pub queues: bool,
    /// Which range the page opens on.
    pub initial_range: &'static str,
    /// Where the figures come from, for the page's header.
    pub source: String,
}

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub generated_at: DateTime<Utc>,
    pub source: String,
    pub repository: Option<String>,
    pub initial_range: &'static str,
    pub views: Vec<View>,
    pub most_accessed: Vec<TopEntry>,
    /// Entries read to find them (capped at [`MAX_SCANNED`]).
    pub entries_scanned: u64,
    pub scan_capped: bool,
    /// `None` when not shown.
    pub queues: Option<Vec<QueueHealth>>,
}

/// The plots of one range.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub range: Range,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// One line per repository.
    pub hit_rate: Vec<RepositoryRestores>,
    /// Sum over repositories of each one's latest `StorageBytes` gauge.
    pub stored_bytes: Vec<Point>,
    /// `BuildTimeSaved` (seconds) per bucket, every repository.
    pub build_time_saved: Vec<Point>,
    pub evictions: Vec<Point>,
    pub invalidations: Vec<Point>,
    /// `UploadsRejected`: uploads promote refused and quarantined.
    pub rejected: Vec<Point>,
}

/// A value at the start of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// One repository's restores in a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRestores {
    pub repository: String,
    pub points: Vec<RestorePoint>,
}

impl RepositoryRestores {
    pub fn hits(&self) -> u64 {
        self.points.iter().map(|p| p.hits).sum()
    }

    pub fn misses(&self) -> u64 {
        self.points.iter().map(|p| p.misses).sum()
    }
}

/// Hits and misses of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RestorePoint {
    pub at: DateTime<Utc>,
    pub hits: u64,
    pub misses: u64,
}

impl RestorePoint {
    /// Hits over restores, in percent.
    pub fn rate(&self) -> f64 {
        let all = self.hits + self.misses;
        if all == 0 {
            0.0
        } else {
            self.hits as f64 * 100.0 / all as f64
        }
    }
}

/// One of the most accessed live entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopEntry {
    pub repository: String,
    pub git_ref: String,
    pub cache_key: String,
    pub access_count: u64,
    pub size_bytes: u64,
    pub last_accessed: DateTime<Utc>,
}

/// A queue's dead letters now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueHealth {
    pub queue: String,
    pub dead_letters: u64,
    pub visible: u64,
}

/// Sum of a series' values.
pub fn total(points: &[Point]) -> f64 {
    // fold from +0: an empty f64 sum is -0, which prints as "-0".
    points.iter().fold(0.0, |sum, p| sum + p.value)
}

/// Reads everything the page shows.
#[instrument(skip_all, fields(repository = ?options.repository))]
pub async fn gather(backend: &Backend, options: &Options) -> Result<Dashboard, StoreError> {
    let metrics = &*backend.metrics;
    let wanted =
        |set: &BTreeMap<String, String>| match (&options.repository, set.get(DIM_REPOSITORY)) {
            (Some(only), Some(repo)) => repo == only,
            (Some(_), None) => false,
            (None, repo) => repo.is_some(),
        };
    let mut sets: BTreeMap<&'static str, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for name in [
        names::CACHE_HIT,
        names::CACHE_MISS,
        names::STORAGE_BYTES,
        names::BUILD_TIME_SAVED,
        names::EVICTIONS,
        names::INVALIDATIONS,
        names::UPLOADS_REJECTED,
    ] {
        let found = metrics.dimension_sets(name).await?;
        sets.insert(name, found.into_iter().filter(|s| wanted(s)).collect());
    }
    let repositories: BTreeSet<String> = sets[names::CACHE_HIT]
        .iter()
        .chain(&sets[names::CACHE_MISS])
        .filter_map(|s| s.get(DIM_REPOSITORY).cloned())
        .collect();

    let mut views = Vec::new();
    for range in RANGES {
        let window = Window::ending_at(options.now, range.period, range.buckets);
        let mut hit_rate = Vec::new();
        for repo in &repositories {
            let dims = BTreeMap::from([(DIM_REPOSITORY.to_string(), repo.clone())]);
            let hits = metrics.series(names::CACHE_HIT, &dims, &window).await?;
            let misses = metrics.series(names::CACHE_MISS, &dims, &window).await?;
            hit_rate.push(RepositoryRestores {
                repository: repo.clone(),
                points: restore_points(&window, &hits, &misses),
            });
        }
        let series_of = |name: &'static str| all_series(metrics, name, &sets[name], window);
        let stored = series_of(names::STORAGE_BYTES).await?;
        views.push(View {
            range,
            since: window.since,
            until: window.until,
            hit_rate,
            stored_bytes: latest_gauges(&stored),
            build_time_saved: summed(&series_of(names::BUILD_TIME_SAVED).await?),
            evictions: summed(&series_of(names::EVICTIONS).await?),
            invalidations: summed(&series_of(names::INVALIDATIONS).await?),
            rejected: summed(&series_of(names::UPLOADS_REJECTED).await?),
        });
    }

    let (most_accessed, entries_scanned, scan_capped) =
        most_accessed(backend, options.repository.as_deref(), options.top).await?;
    let queues = if options.queues {
        let mut out = Vec::new();
        for queue in [&backend.staged, &backend.accessed, &backend.invalidate] {
            let depth = queue.depth().await?;
            out.push(QueueHealth {
                queue: queue.name().to_string(),
                dead_letters: depth.dead_letters,
                visible: depth.visible,
            });
        }
        Some(out)
    } else {
        None
    };
    Ok(Dashboard {
        generated_at: Utc::now(),
        source: options.source.clone(),
        repository: options.repository.clone(),
        initial_range: options.initial_range,
        views,
        most_accessed,
        entries_scanned,
        scan_capped,
        queues,
    })
}

/// The series of `name` for each dimension set, a few queries at a time.
async fn all_series(
    metrics: &dyn MetricsSink,
    name: &'static str,
    sets: &[BTreeMap<String, String>],
    window: Window,
) -> Result<Vec<Vec<SeriesPoint>>, StoreError> {
    // Boxed: a future per set, named types, so the whole stays `Send` for
    // the server's handlers.
    type Query<'a> = BoxFuture<'a, Result<Vec<SeriesPoint>, StoreError>>;
    let queries: Vec<Query<'_>> = sets
        .iter()
        .map(|dims| metrics.series(name, dims, &window).boxed())
        .collect();
    stream::iter(queries)
        .buffered(CONCURRENT_QUERIES)
        .try_collect()
        .await
}

/// Hits and misses per bucket, for the buckets that have either.
fn restore_points(
    window: &Window,
    hits: &[SeriesPoint],
    misses: &[SeriesPoint],
) -> Vec<RestorePoint> {
    let mut by_start: BTreeMap<DateTime<Utc>, RestorePoint> = BTreeMap::new();
    for (points, is_hit) in [(hits, true), (misses, false)] {
        for p in points {
            let at = window
                .bucket_of(p.start)
                .map_or(p.start, |i| window.bucket_start(i));
            let point = by_start.entry(at).or_insert(RestorePoint {
                at,
                hits: 0,
                misses: 0,
            });
            let n = p.stats.sum.round().max(0.0) as u64;
            if is_hit {
                point.hits += n;
            } else {
                point.misses += n;
            }
        }
    }
    by_start.into_values().collect()
}

/// The sums of several series, bucket by bucket.
fn summed(series: &[Vec<SeriesPoint>]) -> Vec<Point> {
    let mut by_start: BTreeMap<DateTime<Utc>, f64> = BTreeMap::new();
    for p in series.iter().flatten() {
        *by_start.entry(p.start).or_default() += p.stats.sum;
    }
    by_start
        .into_iter()
        .map(|(at, value)| Point { at, value })
        .collect()
}

/// Gauges (one series per repository) as their total: at each bucket any
/// of them reported in, the sum of every repository's latest value.
fn latest_gauges(series: &[Vec<SeriesPoint>]) -> Vec<Point> {
    let starts: BTreeSet<DateTime<Utc>> = series.iter().flatten().map(|p| p.start).collect();
    let mut latest = vec![None::<f64>; series.len()];
    let mut cursor = vec![0usize; series.len()];
    starts
        .into_iter()
        .map(|at| {
            for (i, s) in series.iter().enumerate() {
                while cursor[i] < s.len() && s[cursor[i]].start <= at {
                    latest[i] = Some(s[cursor[i]].stats.max);
                    cursor[i] += 1;
                }
            }
            Point {
                at,
                value: latest.iter().flatten().fold(0.0, |sum, v| sum + v),
            }
        })
        .collect()
}

/// The `top` live entries with the highest access counts (ties: the most
/// recently read first); the entries read; whether the scan stopped at
/// [`MAX_SCANNED`].
async fn most_accessed(
    backend: &Backend,
    repository: Option<&str>,
    top: usize,
) -> Result<(Vec<TopEntry>, u64, bool), StoreError> {
    let mut live = Vec::new();
    let mut scanned = 0usize;
    let mut capped = false;
    match repository {
        Some(repo) => {
            let entries = backend.index.by_repository(repo, None).await?;
            scanned = entries.len();
            live.extend(entries.into_iter().filter(|e| e.is_live()));
        }
        None => {
            let mut cursor: Option<String> = None;
            loop {
                let page = backend.index.scan(cursor.as_deref(), 1000).await?;
                scanned += page.entries.len();
                live.extend(page.entries.into_iter().filter(|e| e.is_live()));
                match page.next {
                    Some(next) if scanned < MAX_SCANNED => cursor = Some(next),
                    Some(_) => {
                        capped = true;
                        break;
                    }
                    None => break,
                }
            }
        }
    }
    live.sort_by(|a, b| {
        b.access_count
            .cmp(&a.access_count)
            .then(b.last_accessed.cmp(&a.last_accessed))
    });
    let top = live
        .into_iter()
        .filter(|e| e.access_count > 0)
        .take(top)
        .map(|e| TopEntry {
            repository: e.repository,
            git_ref: e.git_ref,
            cache_key: e.cache_key,
            access_count: e.access_count,
            size_bytes: e.size_bytes,
            last_accessed: e.last_accessed,
        })
        .collect();
    Ok((top, scanned as u64, capped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runcache_infra::MetricStats;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn gauge(minute: i64, value: f64) -> SeriesPoint {
        SeriesPoint {
            start: at(minute),
            stats: MetricStats {
                sum: value,
                count: 1,
                min: value,
                max: value,
            },
        }
    }

    #[test]
    fn gauges_carry_each_repositorys_latest_value_forward() {
        let a = vec![gauge(0, 10.0), gauge(2, 30.0)];
        let b = vec![gauge(1, 5.0)];
        let total: Vec<f64> = latest_gauges(&[a, b]).iter().map(|p| p.value).collect();
        assert_eq!(total, vec![10.0, 15.0, 35.0]);
    }

    #[test]
    fn counts_are_summed_bucket_by_bucket() {
        let sums: Vec<(DateTime<Utc>, f64)> =
            summed(&[vec![gauge(0, 1.0), gauge(1, 2.0)], vec![gauge(1, 3.0)]])
                .iter()
                .map(|p| (p.at, p.value))
                .collect();
        assert_eq!(sums, vec![(at(0), 1.0), (at(1), 5.0)]);
    }

    #[test]
    fn restore_points_join_hits_and_misses() {
        let w = Window::ending_at(at(10), Duration::from_secs(60), 20);
        let points = restore_points(&w, &[gauge(3, 3.0)], &[gauge(3, 1.0), gauge(5, 2.0)]);
        let got: Vec<_> = points
            .iter()
            .map(|p| (p.hits, p.misses, p.rate()))
            .collect();
        assert_eq!(got, vec![(3, 1, 75.0), (0, 2, 0.0)]);
    }
}
