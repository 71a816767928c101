//! A SQLite connection shared by one adapter, used from async code through
//! `spawn_blocking` so that a slow disk never stalls the runtime.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{config::DbConfig, Connection, ErrorCode};

use crate::StoreError;

#[derive(Debug, Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and applies
    /// `schema` (idempotent `CREATE … IF NOT EXISTS` statements).
    pub fn open(path: &Path, schema: &str) -> Result<Db, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::io(format!("directory {}", dir.display()), e))?;
        }
        let what = || format!("database {}", path.display());
        let conn = Connection::open(path).map_err(|e| StoreError::backend(what(), e))?;
        // Several processes (the CLI, a worker) share these files: WAL lets
        // readers proceed during a write, busy_timeout queues writers.
        conn.busy_timeout(Duration::from_secs(30))
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            // The last connection to close would checkpoint the WAL into
            // the database, fsync both and delete the WAL: a few
            // milliseconds at the end of every short CLI run. SQLite
            // checkpoints as the WAL grows anyway.
            .and_then(|_| conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true))
            .map(|_| ())
            .and_then(|_| conn.execute_batch(schema))
            .map_err(|e| StoreError::backend(what(), e))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::backend("sqlite task", e))?
    }

    /// Runs `f` in an IMMEDIATE transaction on the blocking pool: the write
    /// lock is taken before the first read, so two writers (even in two
    /// processes) never both act on what they read. `f` gets the
    /// transaction and this database's error mapping; it commits what it
    /// wants kept (dropping the transaction rolls back).
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(
                rusqlite::Transaction<'_>,
                &(dyn Fn(rusqlite::Error) -> StoreError + Send + Sync),
            ) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        let err = self.err();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(&err)?;
            f(tx, &err)
        })
        .await
    }

    /// Maps a SQLite error on this database to a [`StoreError`].
    pub fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + Send + Sync + 'static {
        let path = self.path.clone();
        move |e| sql_error(&path, e)
    }
}

fn sql_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let what = format!("database {}", path.display());
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable {
            what,
            reason: "locked by another process for too long".into(),
        },
        // A file, not a role: the advice is the file system's.
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => StoreError::Io {
            what,
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "permission denied: this user may not write it (make the directory and its \
                 files writable, or point RUNCACHE_HOME somewhere this user owns)",
            ),
        },
        _ => StoreError::backend(what, e),
    }
}

/// Timestamps are stored as microseconds since the epoch, so that ordering
/// in SQL is numeric.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::backend("encoding a record", e))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::backend("decoding a stored record", e))
}
