//! `CloudWatchMetricsSink`: datums to CloudWatch with PutMetricData, under
//! one namespace (`Runcache/{stage}` unless configured).
//!
//! - `put` splits the datums into calls within CloudWatch's limits: at most
//!   1,000 datums and well under the 1 MB request payload (estimated per
//!   datum as the query-protocol encoding, which is what aws-sdk-cloudwatch
//!   1.99 speaks; see infra/Cargo.toml).
//! - `stats` is GetMetricStatistics (Sum, SampleCount, Minimum, Maximum)
//!   over `since`..now (plus CloudWatch's 2 h of accepted clock skew), with
//!   the smallest period that keeps within 1,440 datapoints, folded into one
//!   aggregate. CloudWatch matches the dimension set exactly, as the port
//!   asks. It is eventually consistent: a datum may take a minute to count.
//! - `series` is GetMetricStatistics at the window's period (several calls
//!   for more than 1,440 buckets), each datapoint put in the window's
//!   bucket; `dimension_sets` is ListMetrics (the last two weeks). moto
//!   cuts its buckets from the first datum instead of the start time, so
//!   on moto a bucket may hold datums of the one after it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatch::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    operation::get_metric_statistics::GetMetricStatisticsOutput,
    primitives::DateTime as AwsDateTime,
    types::{Dimension, MetricDatum as AwsDatum, StandardUnit, Statistic},
    Client,
};
use chrono::{DateTime, Duration, Utc};

use super::error::map_sdk_error;
use crate::{
    metrics::{MetricDatum, MetricStats, MetricsSink, SeriesPoint, Window},
    StoreError,
};

/// CloudWatch's limits.
const MAX_DATUMS_PER_CALL: usize = 1000;
const MAX_PAYLOAD_BYTES: usize = 1_000_000;
/// Headroom for the request's own fields and our size estimate's error.
const PAYLOAD_BUDGET: usize = MAX_PAYLOAD_BYTES * 8 / 10;
const MAX_DATAPOINTS: i64 = 1440;
/// CloudWatch accepts datums up to two hours in the future.
const FUTURE_SKEW: Duration = Duration::minutes(125);

#[derive(Debug, Clone)]
pub struct CloudWatchMetricsSink {
    client: Client,
    namespace: String,
}

impl CloudWatchMetricsSink {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }

    /// The one place CloudWatch errors become [`StoreError`]s. PutMetricData
    /// has no resource-level permissions: grants are on `*`, optionally
    /// conditioned on `cloudwatch:namespace`.
    fn error<E>(&self, action: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_sdk_error(
            err,
            action,
            &format!("* (cloudwatch:namespace = `{}`)", self.namespace),
        )
    }
}

fn aws_time(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_millis(t.timestamp_millis())
}

fn dimensions(dims: &BTreeMap<String, String>) -> Vec<Dimension> {
    dims.iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect()
}

/// A generous estimate of a datum's share of a query-protocol request:
/// `MetricData.member.N.` prefixes (~25 bytes) on every field, the fields'
/// names and values, percent-encoding worst case ×3 on the strings.
fn encoded_size(d: &MetricDatum) -> usize {
    let strings = d.name.len()
        + d.dimensions
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let fields = 5 + 2 * d.dimensions.len();
    strings * 3 + fields * 50
}

#[async_trait]
impl MetricsSink for CloudWatchMetricsSink {
    #[tracing::instrument(skip_all, fields(namespace = %self.namespace, datums = datums.len()))]
    async fn put(&self, datums: &[MetricDatum]) -> Result<(), StoreError> {
        let mut batch: Vec<AwsDatum> = Vec::new();
        let mut bytes = 0;
        for (i, d) in datums.iter().enumerate() {
            if !d.value.is_finite() {
                return Err(StoreError::invalid(
                    format!("metric `{}`", d.name),
                    format!("value {} is not a finite number", d.value),
                ));
            }
            let size = encoded_size(d);
            if !batch.is_empty()
                && (batch.len() == MAX_DATUMS_PER_CALL || bytes + size > PAYLOAD_BUDGET)
            {
                self.send(std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += size;
            batch.push(
                AwsDatum::builder()
                    .metric_name(&d.name)
                    .value(d.value)
                    .unit(StandardUnit::from(d.unit.as_str()))
                    .timestamp(aws_time(d.timestamp))
                    .set_dimensions(Some(dimensions(&d.dimensions)))
                    .build(),
            );
            if i + 1 == datums.len() {
                self.send(std::mem::take(&mut batch)).await?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(namespace = %self.namespace, name = %name))]
    async fn stats(
        &self,
        name: &str,
        dims: &BTreeMap<String, String>,
        since: DateTime<Utc>,
    ) -> Result<MetricStats, StoreError> {
        let end = Utc::now() + FUTURE_SKEW;
        let window = (end - since).num_seconds().max(60);
        // Periods are multiples of 60 s; at most 1,440 datapoints a call.
        let period = ((window + MAX_DATAPOINTS * 60 - 1) / (MAX_DATAPOINTS * 60) * 60).max(60);
        let out = self.statistics(name, dims, since, end, period).await?;
        let mut stats = MetricStats::default();
        let mut min = f64::INFINITY;
        let mut max = f64::NEG_INFINITY;
        for p in out.datapoints() {
            let count = p.sample_count().unwrap_or_default();
            if count <= 0.0 {
                continue;
            }
            stats.count += count.round() as u64;
            stats.sum += p.sum().unwrap_or_default();
            min = min.min(p.minimum().unwrap_or(f64::INFINITY));
            max = max.max(p.maximum().unwrap_or(f64::NEG_INFINITY));
        }
        if stats.count > 0 {
            stats.min = min;
            stats.max = max;
        }
        Ok(stats)
    }

    #[tracing::instrument(skip_all, fields(namespace = %self.namespace, name = %name))]
    async fn series(
        &self,
        name: &str,
        dims: &BTreeMap<String, String>,
        window: &Window,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let period = (window.period.as_secs() / 60).max(1) * 60;
        // At most 1,440 datapoints a call: longer windows in several calls.
        let step = Duration::seconds(period as i64 * MAX_DATAPOINTS);
        let mut buckets: BTreeMap<u32, MetricStats> = BTreeMap::new();
        let mut from = window.since;
        while from < window.until {
            let to = (from + step).min(window.until);
            let out = self.statistics(name, dims, from, to, period as i64).await?;
            for p in out.datapoints() {
                let count = p.sample_count().unwrap_or_default();
                let Some(at) = p
                    .timestamp()
                    .and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?))
                else {
                    continue;
                };
                let Some(bucket) = window.bucket_of(at) else {
                    continue;
                };
                if count <= 0.0 {
                    continue;
                }
                let b = buckets.entry(bucket).or_insert(MetricStats {
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    ..MetricStats::default()
                });
                b.count += count.round() as u64;
                b.sum += p.sum().unwrap_or_default();
                b.min = b.min.min(p.minimum().unwrap_or(f64::INFINITY));
                b.max = b.max.max(p.maximum().unwrap_or(f64::NEG_INFINITY));
            }
            from = to;
        }
        Ok(buckets
            .into_iter()
            .map(|(i, stats)| SeriesPoint {
                start: window.bucket_start(i),
                stats,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(namespace = %self.namespace, name = %name))]
    async fn dimension_sets(
        &self,
        name: &str,
    ) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        let mut sets = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_metrics()
                .namespace(&self.namespace)
                .metric_name(name)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("cloudwatch:ListMetrics", e))?;
            for m in out.metrics() {
                let set: BTreeMap<String, String> = m
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
                    .collect();
                sets.push(set);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        sets.sort();
        sets.dedup();
        Ok(sets)
    }
}

impl CloudWatchMetricsSink {
    /// GetMetricStatistics of `name` with exactly `dims` over `from..to` in
    /// periods of `period` seconds: sum, sample count, minimum, maximum.
    async fn statistics(
        &self,
        name: &str,
        dims: &BTreeMap<String, String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        period: i64,
    ) -> Result<GetMetricStatisticsOutput, StoreError> {
        self.client
            .get_metric_statistics()
            .namespace(&self.namespace)
            .metric_name(name)
            .set_dimensions(Some(dimensions(dims)))
            .start_time(aws_time(from))
            .end_time(aws_time(to))
            .period(i32::try_from(period).unwrap_or(i32::MAX / 60 * 60))
            .statistics(Statistic::Sum)
            .statistics(Statistic::SampleCount)
            .statistics(Statistic::Minimum)
            .statistics(Statistic::Maximum)
            .send()
            .await
            .map_err(|e| self.error("cloudwatch:GetMetricStatistics", e))
    }

    async fn send(&self, batch: Vec<AwsDatum>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(batch))
            .send()
            .await
            .map_err(|e| self.error("cloudwatch:PutMetricData", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricUnit;

    #[test]
    fn a_full_batch_fits_the_payload_limit() {
        let d = MetricDatum::new("BytesRestored", 1.0, MetricUnit::Bytes, Utc::now())
            .with_dimension("Repository", "acme/some-fairly-long-repository-name");
        assert!(encoded_size(&d) * MAX_DATUMS_PER_CALL < PAYLOAD_BUDGET);
    }
}
