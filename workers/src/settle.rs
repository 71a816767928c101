//! The one door from a front door (the CLI, later `runcache serve`) to the
//! workers' handlers in its own process. Used when the configuration says
//! the workers run inline ([`Config::runs_workers_inline`]: by default on
//! the local backend, where nothing else runs), it drains a queue with the
//! same handler `runcache-worker` runs and says what really happened.
//!
//! A front door never names a handler, the consumer loop or promote's
//! internals: it calls [`staged_upload`], [`accesses`] or
//! [`invalidations`] and renders the answer.
//!
//! May touch: the ports (through the handlers).

use std::sync::Arc;

use runcache_infra::{staging, Backend, Config, StoreError};
use runcache_schemas::{ArtifactStaged, ContentHash};
use serde::Serialize;
use tracing::instrument;

use crate::{
    consumer::{drain, DrainReport},
    promote::{promoter, WrittenUpload},
    Invalidator, MetricsHandler,
};

/// Identity recorded as `promotedBy` for inline promotions.
pub const INLINE_WORKER_ID: &str = "runcache-save (in-process)";

/// What became of one staged upload once the staged queue was drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fate", rename_all = "kebab-case")]
pub enum UploadFate {
    /// Verified and indexed: restores see it now.
    Promoted,
    /// Another upload of the same (scope, version, key) was indexed first;
    /// keys are immutable, so this one was dropped.
    AlreadyCached { content_hash: ContentHash },
    /// Refused (hash, size or claim): quarantined, never indexed.
    Rejected,
    /// Still staged (a transient failure): a worker or the next inline
    /// drain retries it.
    Pending,
}

/// Promotes what the staged queue holds, `upload` among it, and says what
/// became of `upload`. With `written_etag` (the etag of the staged object
/// the caller wrote), the caller vouches that `upload.claimed_hash` is the
/// digest it computed of those bytes while writing them; promote then does
/// not read them again as long as the staged object keeps that etag.
#[instrument(skip_all, fields(upload_id = %upload.upload_id))]
pub async fn staged_upload(
    config: &Config,
    backend: &Backend,
    upload: &ArtifactStaged,
    written_etag: Option<String>,
) -> Result<UploadFate, StoreError> {
    let mut promoter = promoter(backend, INLINE_WORKER_ID, config);
    if let Some(etag) = written_etag {
        let written = WrittenUpload {
            upload_id: upload.upload_id.clone(),
            hash: upload.claimed_hash.clone(),
            size: upload.size_bytes,
            etag,
        };
        promoter = Arc::new(Arc::unwrap_or_clone(promoter).with_written_upload(written));
    }
    drain(backend.staged.clone(), promoter, Default::default()).await;
    fate_of(backend, upload).await
}

/// What the index and the staging area say of `upload`.
async fn fate_of(backend: &Backend, upload: &ArtifactStaged) -> Result<UploadFate, StoreError> {
    let entry = backend
        .index
        .get(&upload.scope, &upload.cache_version, &upload.cache_key)
        .await?
        .filter(|e| e.is_live());
    if let Some(entry) = entry {
        return Ok(if entry.upload_id == upload.upload_id {
            UploadFate::Promoted
        } else {
            UploadFate::AlreadyCached {
                content_hash: entry.content_hash,
            }
        });
    }
    let still_staged = staging::parse_key(&upload.staging_key).is_some()
        && backend.blobs.head(&upload.staging_key).await?.is_some();
    Ok(if still_staged {
        UploadFate::Pending
    } else {
        UploadFate::Rejected
    })
}

/// Takes the storage gauges now (`StorageBytes`, `ObjectCount`,
/// `AverageCacheAge` per repository), as the metrics worker does every few
/// minutes: for a dashboard drawn where no metrics worker runs.
pub async fn gauges(backend: &Backend) -> Result<(), runcache_infra::StoreError> {
    crate::metrics::publish_gauges(backend).await.map(|_| ())
}

/// Counts the pending access events (hit/miss metrics, access counters).
pub async fn accesses(backend: &Backend) -> DrainReport {
    let handler = Arc::new(MetricsHandler::new(backend.clone()));
    drain(backend.accessed.clone(), handler, Default::default()).await
}

/// Applies the pending invalidation requests.
pub async fn invalidations(backend: &Backend) -> DrainReport {
    let handler = Arc::new(Invalidator::new(backend.clone()));
    drain(backend.invalidate.clone(), handler, Default::default()).await
}
