//! `SqliteProvenanceStore`: provenance records keyed by (content hash,
//! upload id), kept as JSON.

use std::path::Path;

use async_trait::async_trait;
use runcache_schemas::{ContentHash, ProvenanceRecord};
use rusqlite::params;

use super::db::{from_json, micros, to_json, Db};
use crate::{provenance::ProvenanceStore, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS provenance (
    content_hash TEXT NOT NULL,
    upload_id    TEXT NOT NULL,
    promoted_at  INTEGER NOT NULL,
    doc          TEXT NOT NULL,
    PRIMARY KEY (content_hash, upload_id)
);
";

#[derive(Debug, Clone)]
pub struct SqliteProvenanceStore {
    db: Db,
}

impl SqliteProvenanceStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, SCHEMA)?,
        })
    }
}

#[async_trait]
impl ProvenanceStore for SqliteProvenanceStore {
    async fn put(&self, record: &ProvenanceRecord) -> Result<(), StoreError> {
        let doc = to_json(record)?;
        let (hash, upload, at) = (
            record.content_hash.to_string(),
            record.upload_id.clone(),
            micros(record.promoted_at),
        );
        let err = self.db.err();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO provenance (content_hash, upload_id, promoted_at, doc)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![hash, upload, at, doc],
                )
                .map_err(err)?;
                Ok(())
            })
            .await
    }

    async fn get(&self, hash: &ContentHash) -> Result<Vec<ProvenanceRecord>, StoreError> {
        let hash = hash.to_string();
        let err = self.db.err();
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT doc FROM provenance WHERE content_hash = ?1 ORDER BY promoted_at, upload_id",
                    )
                    .map_err(&err)?;
                let rows = stmt
                    .query_map(params![hash], |r| r.get::<_, String>(0))
                    .map_err(&err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(&err)?;
                rows.iter().map(|d| from_json(d)).collect()
            })
            .await
    }
}
