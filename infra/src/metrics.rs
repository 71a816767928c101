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
}
