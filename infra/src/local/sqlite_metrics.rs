//! `SqliteMetricsSink`: every datum as a row, aggregated on read. The local
//! stand-in for CloudWatch, read by `runcache admin stats`.

use std::{collections::BTreeMap, path::Path};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::db::{from_json, micros, to_json, Db};
use crate::{
    metrics::{MetricDatum, MetricStats, MetricsSink, SeriesPoint, Window},
    StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS datums (
    name       TEXT NOT NULL,
    dimensions TEXT NOT NULL,
    value      REAL NOT NULL,
    unit       TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS datums_name ON datums (name, dimensions, at);
";

#[derive(Debug, Clone)]
pub struct SqliteMetricsSink {
    db: Db,
}

impl SqliteMetricsSink {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, SCHEMA)?,
        })
    }
}

#[async_trait]
impl MetricsSink for SqliteMetricsSink {
    async fn put(&self, datums: &[MetricDatum]) -> Result<(), StoreError> {
        let rows = datums
            .iter()
            .map(|d| {
                Ok((
                    d.name.clone(),
                    to_json(&d.dimensions)?,
                    d.value,
                    d.unit.as_str(),
                    micros(d.timestamp),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let err = self.db.err();
        self.db
            .call(move |conn| {
                let tx = conn.transaction().map_err(&err)?;
                for (name, dims, value, unit, at) in rows {
                    tx.execute(
                        "INSERT INTO datums (name, dimensions, value, unit, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![name, dims, value, unit, at],
                    )
                    .map_err(&err)?;
                }
                tx.commit().map_err(&err)
            })
            .await
    }

    async fn stats(
        &self,
        name: &str,
        dimensions: &BTreeMap<String, String>,
        since: DateTime<Utc>,
    ) -> Result<MetricStats, StoreError> {
        let (name, dims, since) = (name.to_string(), to_json(dimensions)?, micros(since));
        let err = self.db.err();
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT coalesce(sum(value), 0), count(*), coalesce(min(value), 0), coalesce(max(value), 0)
                     FROM datums WHERE name = ?1 AND dimensions = ?2 AND at >= ?3",
                    params![name, dims, since],
                    |r| {
                        Ok(MetricStats {
                            sum: r.get(0)?,
                            count: r.get::<_, i64>(1)? as u64,
                            min: r.get(2)?,
                            max: r.get(3)?,
                        })
                    },
                )
                .map_err(err)
            })
            .await
    }

    async fn series(
        &self,
        name: &str,
        dimensions: &BTreeMap<String, String>,
        window: &Window,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let (name, dims) = (name.to_string(), to_json(dimensions)?);
        let window = *window;
        let (since, until) = (micros(window.since), micros(window.until));
        let period = (window.period.as_micros() as i64).max(1);
        let err = self.db.err();
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT (at - ?3) / ?5 AS bucket, sum(value), count(*), min(value), max(value)
                         FROM datums WHERE name = ?1 AND dimensions = ?2 AND at >= ?3 AND at < ?4
                         GROUP BY bucket ORDER BY bucket",
                    )
                    .map_err(&err)?;
                let rows = stmt
                    .query_map(params![name, dims, since, until, period], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            MetricStats {
                                sum: r.get(1)?,
                                count: r.get::<_, i64>(2)? as u64,
                                min: r.get(3)?,
                                max: r.get(4)?,
                            },
                        ))
                    })
                    .map_err(&err)?;
                rows.map(|row| {
                    let (bucket, stats) = row.map_err(&err)?;
                    Ok(SeriesPoint {
                        start: window.bucket_start(bucket as u32),
                        stats,
                    })
                })
                .collect()
            })
            .await
    }

    async fn dimension_sets(
        &self,
        name: &str,
    ) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        let name = name.to_string();
        let err = self.db.err();
        let docs: Vec<String> = self
            .db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT DISTINCT dimensions FROM datums WHERE name = ?1 ORDER BY dimensions",
                    )
                    .map_err(&err)?;
                let rows = stmt
                    .query_map(params![name], |r| r.get::<_, String>(0))
                    .map_err(&err)?;
                rows.collect::<Result<_, _>>().map_err(&err)
            })
            .await?;
        let mut sets = docs
            .iter()
            .map(|d| from_json(d))
            .collect::<Result<Vec<BTreeMap<String, String>>, _>>()?;
        sets.sort();
        Ok(sets)
    }
}
