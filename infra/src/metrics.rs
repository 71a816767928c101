//! The metrics port: datums in, and the sums back out for `admin stats` and
//! tests. The names below are the contract with terraform's dashboards and
//! alarms.

use std::{collections::BTreeMap, fmt::Debug};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// Metric names the workers emit (namespace `Runcache/{stage}`).
pub mod names {
    pub const CACHE_HIT: &str = "CacheHit";
    pub const CACHE_MISS: &str = "CacheMiss";
    pub const HIT_RATE: &str = "HitRate";
    pub const BYTES_RESTORED: &str = "BytesRestored";
    pub const BYTES_SAVED: &str = "BytesSaved";
    pub const RESTORE_DURATION: &str = "RestoreDuration";
    pub const SAVE_DURATION: &str = "SaveDuration";
    pub const BUILD_TIME_SAVED: &str = "BuildTimeSaved";
    pub const PROMOTION_LATENCY: &str = "PromotionLatency";
    pub const ARTIFACTS_PROMOTED: &str = "ArtifactsPromoted";
    pub const ARTIFACTS_DEDUPLICATED: &str = "ArtifactsDeduplicated";
    pub const UPLOADS_REJECTED: &str = "UploadsRejected";
    pub const STORAGE_BYTES: &str = "StorageBytes";
    pub const OBJECT_COUNT: &str = "ObjectCount";
    pub const AVERAGE_CACHE_AGE: &str = "AverageCacheAge";
    pub const EVICTIONS: &str = "Evictions";
    pub const INVALIDATIONS: &str = "Invalidations";
    pub const WORKER_ERRORS: &str = "WorkerErrors";

    /// Every name above, for contract tests.
    pub const ALL: [&str; 18] = [
        CACHE_HIT,
        CACHE_MISS,
        HIT_RATE,
        BYTES_RESTORED,
        BYTES_SAVED,
        RESTORE_DURATION,
        SAVE_DURATION,
        BUILD_TIME_SAVED,
        PROMOTION_LATENCY,
        ARTIFACTS_PROMOTED,
        ARTIFACTS_DEDUPLICATED,
        UPLOADS_REJECTED,
        STORAGE_BYTES,
        OBJECT_COUNT,
        AVERAGE_CACHE_AGE,
        EVICTIONS,
        INVALIDATIONS,
        WORKER_ERRORS,
    ];

    /// Dimension on per-repository metrics.
    pub const DIM_REPOSITORY: &str = "Repository";
    /// Dimension on `WorkerErrors`.
    pub const DIM_WORKER: &str = "Worker";
}

/// CloudWatch's units, the ones runcache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    Count,
    Bytes,
    Milliseconds,
    Seconds,
    Percent,
}

impl MetricUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricUnit::Count => "Count",
            MetricUnit::Bytes => "Bytes",
            MetricUnit::Milliseconds => "Milliseconds",
            MetricUnit::Seconds => "Seconds",
            MetricUnit::Percent => "Percent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            MetricUnit::Count,
            MetricUnit::Bytes,
            MetricUnit::Milliseconds,
            MetricUnit::Seconds,
            MetricUnit::Percent,
        ]
        .into_iter()
        .find(|u| u.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    pub name: String,
    pub value: f64,
    pub unit: MetricUnit,
    pub dimensions: BTreeMap<String, String>,
    pub timestamp: DateTime<Utc>,
}

impl MetricDatum {
    pub fn new(name: &str, value: f64, unit: MetricUnit, at: DateTime<Utc>) -> Self {
        Self {
            name: name.to_string(),
            value,
            unit,
            dimensions: BTreeMap::new(),
            timestamp: at,
        }
    }

    pub fn with_dimension(mut self, name: &str, value: impl Into<String>) -> Self {
        self.dimensions.insert(name.to_string(), value.into());
        self
    }
}

/// Aggregate of the datums of one metric and dimension set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricStats {
    pub sum: f64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
}

/// A time window cut into equal periods, for [`MetricsSink::series`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start of the first bucket.
    pub since: DateTime<Utc>,
    /// End of the window (exclusive).
    pub until: DateTime<Utc>,
    /// Length of a bucket: a whole number of minutes (CloudWatch's rule).
    pub period: std::time::Duration,
}

impl Window {
    /// The window of `buckets` periods of `period` that ends with the
    /// bucket holding `now`; buckets start at multiples of `period` since
    /// the epoch, so every adapter cuts them alike.
    pub fn ending_at(now: DateTime<Utc>, period: std::time::Duration, buckets: u32) -> Self {
        let p = (period.as_secs() / 60).max(1) * 60;
        let period = std::time::Duration::from_secs(p);
        let p = p as i64;
        let end = (now.timestamp().div_euclid(p) + 1) * p;
        let start = end - p * i64::from(buckets.max(1));
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
        Self {
            since: at(start),
            until: at(end),
            period,
        }
    }

    /// The number of buckets.
    pub fn buckets(&self) -> u32 {
        let p = self.period.as_secs().max(1) as i64;
        ((self.until - self.since).num_seconds().max(0) + p - 1).div_euclid(p) as u32
    }

    /// The index of the bucket holding `at`, if the window holds it.
    pub fn bucket_of(&self, at: DateTime<Utc>) -> Option<u32> {
        if at < self.since || at >= self.until {
            return None;
        }
        let p = self.period.as_secs().max(1) as i64;
        Some(((at - self.since).num_seconds() / p) as u32)
    }

    /// The start of bucket `i`.
    pub fn bucket_start(&self, i: u32) -> DateTime<Utc> {
        self.since + chrono::Duration::seconds(self.period.as_secs() as i64 * i64::from(i))
    }
}

/// The datums of one bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    pub start: DateTime<Utc>,
    pub stats: MetricStats,
}

#[async_trait]
pub trait MetricsSink: Send + Sync + Debug {
    /// Records datums; any number (adapters batch within their limits).
    async fn put(&self, datums: &[MetricDatum]) -> Result<(), StoreError>;

    /// Aggregates `name` with exactly these dimensions since `since`.
    async fn stats(
        &self,
        name: &str,
        dimensions: &BTreeMap<String, String>,
        since: DateTime<Utc>,
    ) -> Result<MetricStats, StoreError>;

    /// `name` with exactly these dimensions over `window`: one point per
    /// bucket that holds datums, oldest first, each starting at a bucket
    /// start of the window.
    async fn series(
        &self,
        name: &str,
        dimensions: &BTreeMap<String, String>,
        window: &Window,
    ) -> Result<Vec<SeriesPoint>, StoreError>;

    /// Every dimension set `name` was recorded with (CloudWatch: the last
    /// two weeks), sorted.
    async fn dimension_sets(&self, name: &str)
        -> Result<Vec<BTreeMap<String, String>>, StoreError>;
}
