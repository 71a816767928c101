//! The local backend: everything under one directory (`$RUNCACHE_HOME`),
//! nothing to install or start. Blobs are files in the bucket's key layout;
//! the index, queues, metrics and provenance are SQLite databases.
//!
//! May touch: the filesystem under its root, and nothing else.

mod db;
mod fs_blob;
mod sqlite_index;
mod sqlite_metrics;
mod sqlite_provenance;
mod sqlite_queue;

pub use fs_blob::FsBlobStore;
pub use sqlite_index::SqliteCacheIndex;
pub use sqlite_metrics::SqliteMetricsSink;
pub use sqlite_provenance::SqliteProvenanceStore;
pub use sqlite_queue::SqliteEventQueue;
