//! `SqliteMetricsSink`: every datum as a row, aggregated on read. The local
//! stand-in for CloudWatch, read by `runcache admin stats`.

use std::{collections::BTreeMap, path::Path};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::db::{micros, to_json, Db};
use crate::{
    metrics::{MetricDatum, MetricStats, MetricsSink},
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
}
