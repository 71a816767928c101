//! One factory that turns a [`Config`] into the ports the rest of runcache
//! uses. Nothing above `infra` names an adapter type.

use std::{path::Path, sync::Arc};

use crate::{
    local::{
        FsBlobStore, SqliteCacheIndex, SqliteEventQueue, SqliteMetricsSink, SqliteProvenanceStore,
    },
    BackendKind, BlobStore, CacheIndex, Clock, Config, EventQueue, MetricsSink, ProvenanceStore,
    StoreError, SystemClock,
};

/// Every port, ready to use.
#[derive(Debug, Clone)]
pub struct Backend {
    pub kind: BackendKind,
    pub blobs: Arc<dyn BlobStore>,
    pub index: Arc<dyn CacheIndex>,
    pub provenance: Arc<dyn ProvenanceStore>,
    pub metrics: Arc<dyn MetricsSink>,
    /// `artifact.staged`: producer → promote.
    pub staged: Arc<dyn EventQueue>,
    /// `cache.accessed` and `worker.outcome`: → metrics.
    pub accessed: Arc<dyn EventQueue>,
    /// `cache.invalidate`: admin → invalidate.
    pub invalidate: Arc<dyn EventQueue>,
    pub clock: Arc<dyn Clock>,
}

impl Backend {
    pub async fn open(config: &Config) -> Result<Backend, StoreError> {
        match config.backend {
            BackendKind::Local => Self::local(config, Arc::new(SystemClock)),
            #[cfg(feature = "aws")]
            BackendKind::Aws => crate::aws::connect(config).await,
            #[cfg(not(feature = "aws"))]
            BackendKind::Aws => Err(StoreError::Unavailable {
                what: "the aws backend".into(),
                reason: "this build of runcache-infra has no AWS adapters (feature `aws` is off); \
                         rebuild with default features or use RUNCACHE_BACKEND=local"
                    .into(),
            }),
        }
    }

    /// The local backend under `config.home`, with the given clock.
    pub fn local(config: &Config, clock: Arc<dyn Clock>) -> Result<Backend, StoreError> {
        let home: &Path = &config.home;
        let queues = home.join("queues.db");
        let queue = |name: String| -> Result<Arc<dyn EventQueue>, StoreError> {
            Ok(Arc::new(SqliteEventQueue::open(
                &queues,
                &name,
                config.max_receives,
                clock.clone(),
            )?))
        };
        Ok(Backend {
            kind: BackendKind::Local,
            blobs: Arc::new(FsBlobStore::new(home.join("blobs"))?),
            index: Arc::new(SqliteCacheIndex::open(&home.join("index.db"))?),
            provenance: Arc::new(SqliteProvenanceStore::open(&home.join("provenance.db"))?),
            metrics: Arc::new(SqliteMetricsSink::open(&home.join("metrics.db"))?),
            staged: queue(config.staged_queue())?,
            accessed: queue(config.accessed_queue())?,
            invalidate: queue(config.invalidate_queue())?,
            clock,
        })
    }
}
