//! `SqliteCacheIndex`: the index as one SQLite table keyed like the DynamoDB
//! design (repository, ref, version, key), with the full entry kept as JSON
//! next to the columns that queries filter on. Audit records sit in a second
//! table of the same database.

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use runcache_schemas::{AuditRecord, EntryState, IndexEntry, Scope};
use rusqlite::{params, OptionalExtension};

use super::db::{from_json, micros, to_json, Db};
use crate::{
    index::{CacheIndex, EntryPage, InsertOutcome, StateChange},
    StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    repository    TEXT NOT NULL,
    git_ref       TEXT NOT NULL,
    cache_version TEXT NOT NULL,
    cache_key     TEXT NOT NULL,
    state         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    toolchain     TEXT NOT NULL,
    lockfile_hash TEXT,
    content_hash  TEXT NOT NULL,
    doc           TEXT NOT NULL,
    PRIMARY KEY (repository, git_ref, cache_version, cache_key)
);
CREATE INDEX IF NOT EXISTS entries_repository_toolchain ON entries (repository, toolchain);
CREATE INDEX IF NOT EXISTS entries_lockfile ON entries (lockfile_hash);
CREATE INDEX IF NOT EXISTS entries_repository_key ON entries (repository, cache_key);
CREATE TABLE IF NOT EXISTS audit (
    audit_id   TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    at         INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_repository ON audit (repository, at);
";

#[derive(Debug, Clone)]
pub struct SqliteCacheIndex {
    db: Db,
}

impl SqliteCacheIndex {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, SCHEMA)?,
        })
    }

    /// Read-modify-write of one entry: `decide` sees the entry `id` (if
    /// any) and returns what to store (nothing: leave it) and the answer.
    /// It runs in one write transaction ([`Db::write`]): of two inserts,
    /// one sees the other's entry.
    async fn update<T, F>(&self, id: Id, decide: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Option<IndexEntry>) -> (Option<IndexEntry>, Result<T, StoreError>)
            + Send
            + 'static,
    {
        self.db
            .write(move |tx, err| {
                let existing = match load(&tx, &id).map_err(err)? {
                    Some(doc) => Some(from_json::<IndexEntry>(&doc)?),
                    None => None,
                };
                let (write, answer) = decide(existing);
                let answer = answer?;
                if let Some(entry) = write {
                    store(&tx, &entry)?;
                    tx.commit().map_err(err)?;
                }
                Ok(answer)
            })
            .await
    }
}

/// The identity columns of an entry, owned so they can move to a blocking
/// thread.
#[derive(Clone)]
struct Id {
    repository: String,
    git_ref: String,
    version: String,
    key: String,
}

impl Id {
    fn new(scope: &Scope, version: &str, key: &str) -> Self {
        Self {
            repository: scope.repository.clone(),
            git_ref: scope.git_ref.clone(),
            version: version.to_string(),
            key: key.to_string(),
        }
    }
}

const SELECT_DOC: &str = "SELECT doc FROM entries
    WHERE repository = ?1 AND git_ref = ?2 AND cache_version = ?3 AND cache_key = ?4";

fn load(conn: &rusqlite::Connection, id: &Id) -> rusqlite::Result<Option<String>> {
    // Cached: the statement every lookup runs, parsed once per connection.
    conn.prepare_cached(SELECT_DOC)?
        .query_row(
            params![id.repository, id.git_ref, id.version, id.key],
            |r| r.get(0),
        )
        .optional()
}

fn store(conn: &rusqlite::Connection, e: &IndexEntry) -> Result<(), StoreError> {
    let doc = to_json(e)?;
    conn.execute(
        "INSERT OR REPLACE INTO entries
         (repository, git_ref, cache_version, cache_key, state, created_at, toolchain,
          lockfile_hash, content_hash, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            e.repository,
            e.git_ref,
            e.cache_version,
            e.cache_key,
            e.state.as_str(),
            micros(e.created_at),
            e.toolchain,
            e.lockfile_hash,
            e.content_hash.as_str(),
            doc
        ],
    )
    .map_err(|err| StoreError::backend("writing an index entry", err))?;
    Ok(())
}

fn docs<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(|e| StoreError::backend("querying the index", e))?;
    let rows = stmt
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(|e| StoreError::backend("querying the index", e))?;
    rows.map(|row| {
        row.map_err(|e| StoreError::backend("querying the index", e))
            .and_then(|doc| from_json(&doc))
    })
    .collect()
}

#[async_trait]
impl CacheIndex for SqliteCacheIndex {
    async fn get(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let id = Id::new(scope, version, key);
        let err = self.db.err();
        self.db
            .call(move |conn| match load(conn, &id).map_err(err)? {
                Some(doc) => from_json(&doc).map(Some),
                None => Ok(None),
            })
            .await
    }

    async fn get_each(
        &self,
        scopes: &[Scope],
        version: &str,
        key: &str,
    ) -> Result<Vec<Option<IndexEntry>>, StoreError> {
        let ids: Vec<Id> = scopes.iter().map(|s| Id::new(s, version, key)).collect();
        let err = self.db.err();
        // One blocking call for every scope.
        self.db
            .call(move |conn| {
                ids.iter()
                    .map(|id| match load(conn, id).map_err(&err)? {
                        Some(doc) => from_json(&doc).map(Some),
                        None => Ok(None),
                    })
                    .collect()
            })
            .await
    }

    async fn find_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let id = Id::new(scope, version, prefix);
        self.db
            .call(move |conn| {
                // substr, not LIKE: keys may contain `%` and `_`.
                docs(
                    conn,
                    "SELECT doc FROM entries
                     WHERE repository = ?1 AND git_ref = ?2 AND cache_version = ?3
                       AND substr(cache_key, 1, length(?4)) = ?4 AND state = 'live'
                     ORDER BY created_at DESC, cache_key DESC",
                    params![id.repository, id.git_ref, id.version, id.key],
                )
            })
            .await
    }

    async fn insert(&self, entry: &IndexEntry) -> Result<InsertOutcome, StoreError> {
        let entry = entry.clone();
        let id = Id::new(&entry.scope(), &entry.cache_version, &entry.cache_key);
        self.update(id, move |existing| match existing {
            Some(existing) if existing.is_live() => {
                (None, Ok(InsertOutcome::Exists(Box::new(existing))))
            }
            _ => (Some(entry), Ok(InsertOutcome::Inserted)),
        })
        .await
    }

    async fn record_access(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let what = format!("index entry `{key}` in {scope}");
        self.update(Id::new(scope, version, key), move |entry| {
            let Some(mut entry) = entry else {
                return (None, Err(StoreError::NotFound { what }));
            };
            entry.access_count += 1;
            if at > entry.last_accessed {
                // The record lives as long after its last access as it did
                // after its creation.
                entry.ttl += (at - entry.last_accessed).num_seconds();
                entry.last_accessed = at;
            }
            (Some(entry), Ok(()))
        })
        .await
    }

    async fn by_repository(
        &self,
        repository: &str,
        toolchain: Option<&str>,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let repository = repository.to_string();
        let toolchain = toolchain.map(str::to_string);
        self.db
            .call(move |conn| match toolchain {
                Some(t) => docs(
                    conn,
                    "SELECT doc FROM entries WHERE repository = ?1 AND toolchain = ?2
                     ORDER BY created_at DESC",
                    params![repository, t],
                ),
                None => docs(
                    conn,
                    "SELECT doc FROM entries WHERE repository = ?1 ORDER BY created_at DESC",
                    params![repository],
                ),
            })
            .await
    }

    async fn by_lockfile(&self, lockfile_hash: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let hash = lockfile_hash.to_string();
        self.db
            .call(move |conn| {
                docs(
                    conn,
                    "SELECT doc FROM entries WHERE lockfile_hash = ?1 ORDER BY created_at DESC",
                    params![hash],
                )
            })
            .await
    }

    async fn by_key(&self, repository: &str, key: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let (repository, key) = (repository.to_string(), key.to_string());
        self.db
            .call(move |conn| {
                docs(
                    conn,
                    "SELECT doc FROM entries WHERE repository = ?1 AND cache_key = ?2
                     ORDER BY created_at DESC, git_ref, cache_version",
                    params![repository, key],
                )
            })
            .await
    }

    async fn list_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let id = Id::new(scope, version, prefix);
        let limit = limit.min(i64::MAX as usize) as i64;
        self.db
            .call(move |conn| {
                // substr, not LIKE: keys may contain `%` and `_`.
                docs(
                    conn,
                    "SELECT doc FROM entries
                     WHERE repository = ?1 AND git_ref = ?2 AND cache_version = ?3
                       AND substr(cache_key, 1, length(?4)) = ?4
                     ORDER BY cache_key LIMIT ?5",
                    params![id.repository, id.git_ref, id.version, id.key, limit],
                )
            })
            .await
    }

    async fn set_state(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        change: &StateChange,
    ) -> Result<bool, StoreError> {
        let change = change.clone();
        self.update(Id::new(scope, version, key), move |entry| match entry {
            Some(mut entry) if entry.is_live() && change.state != EntryState::Live => {
                entry.state = change.state;
                entry.invalidated_at = Some(change.at);
                entry.reason = Some(change.reason);
                entry.invalidated_by = Some(change.by);
                (Some(entry), Ok(true))
            }
            _ => (None, Ok(false)),
        })
        .await
    }

    async fn remove(&self, scope: &Scope, version: &str, key: &str) -> Result<(), StoreError> {
        let id = Id::new(scope, version, key);
        let err = self.db.err();
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM entries WHERE repository = ?1 AND git_ref = ?2
                     AND cache_version = ?3 AND cache_key = ?4",
                    params![id.repository, id.git_ref, id.version, id.key],
                )
                .map_err(err)?;
                Ok(())
            })
            .await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<EntryPage, StoreError> {
        let after: i64 = match cursor {
            Some(c) => c
                .parse()
                .map_err(|_| StoreError::invalid("scan cursor", format!("`{c}` is not ours")))?,
            None => 0,
        };
        let limit = limit.clamp(1, 10_000);
        let err = self.db.err();
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT rowid, doc FROM entries WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                    )
                    .map_err(&err)?;
                let rows = stmt
                    .query_map(params![after, limit as i64 + 1], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(&err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(&err)?;
                let more = rows.len() > limit;
                let mut page = EntryPage::default();
                for (rowid, doc) in rows.into_iter().take(limit) {
                    page.entries.push(from_json(&doc)?);
                    page.next = Some(rowid.to_string());
                }
                if !more {
                    page.next = None;
                }
                Ok(page)
            })
            .await
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let doc = to_json(record)?;
        let (id, repo, at) = (
            record.audit_id.clone(),
            record.repository.clone(),
            micros(record.at),
        );
        let err = self.db.err();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO audit (audit_id, repository, at, doc) VALUES (?1, ?2, ?3, ?4)",
                    params![id, repo, at, doc],
                )
                .map_err(err)?;
                Ok(())
            })
            .await
    }

    async fn audit_log(
        &self,
        repository: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let repo = repository.to_string();
        self.db
            .call(move |conn| {
                docs(
                    conn,
                    "SELECT doc FROM audit WHERE repository = ?1
                     ORDER BY at DESC, audit_id DESC LIMIT ?2",
                    params![repo, limit as i64],
                )
            })
            .await
    }
}
