//! `runcache save`: one streaming pass tar → zstd → SHA-256 → upload to
//! `staging/{tier}/{upload-id}`, then `artifact.staged` on the staged
//! queue. The tier is the job's trust capped by the runner's `max_trust`
//! (what its credentials may write); a tier that may not write the job's
//! scope (e.g. `pull_request_target` on the default branch) saves nothing. The
//! workers verify and promote; on the local backend that happens here,
//! in-process, so a restore right after works.

use std::{path::PathBuf, sync::Arc, time::Instant};

use chrono::Utc;
use runcache_archive::{ArchiveError, ArchiveOptions, COMPRESSION};
use runcache_infra::{names, Backend, BackendKind, Config, OutgoingMessage, StoreError};
use runcache_schemas::{ArtifactStaged, ContentHash};
use runcache_worker::promote::WrittenUpload;
use serde::Serialize;
use thiserror::Error;
use tracing::{info, instrument};

use crate::{
    context::RunContext,
    keys::{validate_key, KeyError},
};

#[derive(Debug, Clone)]
pub struct SaveRequest {
    pub key: String,
    /// Path patterns; they give the entry its version, as in actions/cache.
    pub paths: Vec<String>,
    pub zstd_level: i32,
    /// Store this ready archive (actions/cache's `cache.tzst`) as it is
    /// instead of archiving `paths`.
    pub from_archive: Option<PathBuf>,
    /// Show a progress bar on a terminal for long uploads.
    pub progress: bool,
    /// When the build started (`--build-started-at`); else the marker the
    /// job's first restore left; else unknown.
    pub build_started_at: Option<chrono::DateTime<Utc>>,
}

impl SaveRequest {
    /// Archive `paths` under `key` with the defaults: zstd level 3, no
    /// progress bar, build start from the job marker.
    pub fn new(key: impl Into<String>, paths: Vec<String>) -> Self {
        Self {
            key: key.into(),
            paths,
            zstd_level: 3,
            from_archive: None,
            progress: false,
            build_started_at: None,
        }
    }
}

/// What `save` did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum SaveReport {
    /// A live entry already has this key in this scope: nothing uploaded.
    AlreadyCached { key: String, content_hash: String },
    /// Uploaded and announced (and, on the local backend, promoted).
    Saved {
        key: String,
        upload_id: String,
        content_hash: String,
        size_bytes: u64,
        unpacked_bytes: u64,
        entries: u64,
        duration_ms: u64,
        promoted: bool,
    },
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SaveError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("could not archive the paths: {0}")]
    Archive(#[from] ArchiveError),
    #[error("cache store: {0}")]
    Store(#[from] StoreError),
    #[error("the archiver stopped unexpectedly: {0}")]
    Task(String),
    #[error(
        "not saving: {tier} uploads may not create entries in {git_ref} \
         (only pushes to the default branch or a tag may; a pull request writes its own refs/pull/… scope). \
         If this runner's credentials carry more trust, set RUNCACHE_MAX_TRUST accordingly"
    )]
    ScopeNotWritable { tier: String, git_ref: String },
}

#[instrument(skip_all, fields(key = %req.key, scope = %ctx.scope))]
pub async fn save(
    config: &Config,
    backend: &Backend,
    ctx: &RunContext,
    req: &SaveRequest,
) -> Result<SaveReport, SaveError> {
    validate_key(&req.key)?;
    let tier = ctx.trust.min(config.max_trust);
    if !tier.may_write_ref(&ctx.scope.git_ref, &ctx.default_branch) {
        return Err(SaveError::ScopeNotWritable {
            tier: tier.as_str().to_string(),
            git_ref: ctx.scope.git_ref.clone(),
        });
    }
    let started = Instant::now();
    let version = runcache_archive::cache_version(&req.paths);
    if let Some(existing) = backend.index.get(&ctx.scope, &version, &req.key).await? {
        if existing.is_live() {
            info!("already cached; nothing to upload");
            return Ok(SaveReport::AlreadyCached {
                key: req.key.clone(),
                content_hash: existing.content_hash.to_string(),
            });
        }
    }

    // Provenance runs processes (git, a version query per toolchain):
    // gather it while archiving.
    let provenance = tokio::task::spawn_blocking({
        let ctx = ctx.clone();
        move || build_provenance(&ctx)
    });
    let upload_id = uuid::Uuid::now_v7().to_string();
    let staging_key = names::staging_key(tier, &upload_id);
    // The claim promote checks, and labels for `explain`.
    let metadata = crate::explain::staging_metadata(&req.key, &ctx.scope, &version);
    let (writer, reader) = crate::pipe::pipe();
    let (paths, workspace) = (req.paths.clone(), ctx.workspace.clone());
    let opts = ArchiveOptions {
        zstd_level: req.zstd_level,
        ..ArchiveOptions::default()
    };
    let from_archive = req.from_archive.clone();
    let total = match &from_archive {
        Some(file) => Some(
            std::fs::metadata(file)
                .map_err(|source| ArchiveError::Io {
                    path: file.clone(),
                    source,
                })?
                .len(),
        ),
        None => None,
    };
    let archiver = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        let result = match &from_archive {
            Some(file) => copy_archive(file, &mut writer),
            None => runcache_archive::create(&paths, &workspace, &mut writer, &opts),
        };
        match result {
            Ok(summary) => writer
                .finish()
                .map(|()| summary)
                .map_err(|source| ArchiveError::Output { source }),
            Err(e) => {
                writer.fail(std::io::Error::other(e.to_string()));
                Err(e)
            }
        }
    });
    let bar = crate::progress::bar("uploading", total, req.progress);
    let upload = backend
        .blobs
        .put(&staging_key, crate::progress::track(reader, &bar), metadata)
        .await;
    bar.finish_and_clear();
    let summary = archiver
        .await
        .map_err(|e| SaveError::Task(e.to_string()))??;
    let uploaded = upload?;
    if uploaded.size != summary.compressed_bytes {
        backend.blobs.delete(&staging_key).await?;
        return Err(SaveError::Task(format!(
            "uploaded {} bytes but the archive has {}",
            uploaded.size, summary.compressed_bytes
        )));
    }

    let mut provenance = provenance
        .await
        .map_err(|e| SaveError::Task(e.to_string()))?;
    provenance.trust = tier;
    let marker = crate::restore::JobMarker::load();
    let build_started = req
        .build_started_at
        .or(marker.as_ref().map(|m| m.started_at));
    if let Some(at) = build_started {
        provenance.build_started_at = Some(at);
        provenance.build_duration_ms = Some((Utc::now() - at).num_milliseconds().max(0) as u64);
    }
    if let Some(marker) = marker {
        provenance.dependency_hashes = marker.restored;
    }
    let event = ArtifactStaged {
        upload_id: upload_id.clone(),
        staging_key,
        claimed_hash: ContentHash::from_hex(&summary.sha256_hex)
            .map_err(|e| SaveError::Task(e.to_string()))?,
        size_bytes: summary.compressed_bytes,
        cache_key: req.key.clone(),
        scope: ctx.scope.clone(),
        cache_version: version,
        paths: req.paths.clone(),
        compression: COMPRESSION.to_string(),
        unpacked_bytes: (summary.uncompressed_bytes > 0).then_some(summary.uncompressed_bytes),
        staged_at: Utc::now(),
        provenance,
    };
    backend
        .staged
        .send(OutgoingMessage::event(&event, &ctx.traceparent))
        .await?;

    let promoted = if backend.kind == BackendKind::Local {
        let written = uploaded.etag.clone().map(|etag| WrittenUpload {
            upload_id: upload_id.clone(),
            hash: event.claimed_hash.clone(),
            size: uploaded.size,
            etag,
        });
        promote_in_process(config, backend, written).await;
        true
    } else {
        false
    };
    Ok(SaveReport::Saved {
        key: req.key.clone(),
        upload_id,
        content_hash: event.claimed_hash.to_string(),
        size_bytes: summary.compressed_bytes,
        unpacked_bytes: summary.uncompressed_bytes,
        entries: summary.entries,
        duration_ms: started.elapsed().as_millis() as u64,
        promoted,
    })
}

/// Provenance from the Actions environment and git, plus the lockfile
/// hash and toolchains (for the index's toolchain/lockfile queries), the
/// latter best effort: a save never fails for them.
fn build_provenance(ctx: &RunContext) -> runcache_schemas::BuildProvenance {
    let mut provenance = ctx.provenance();
    let opts = crate::derive::DeriveOptions {
        toolchain_timeout: std::time::Duration::from_secs(3),
        ..Default::default()
    };
    match crate::derive::detect(&ctx.workspace, &opts) {
        Ok(derivation) => derivation.apply_to(&mut provenance),
        Err(e) => tracing::debug!(error = %e, "no build inputs recorded"),
    }
    provenance
}

/// The local backend has no separate worker by default: run the same
/// promote code over the staged queue now. `written` is this save's own
/// upload, which it has just hashed: promote need not read it again.
async fn promote_in_process(config: &Config, backend: &Backend, written: Option<WrittenUpload>) {
    let mut promoter =
        runcache_worker::promote::promoter(backend, "runcache-save (in-process)", config);
    if let Some(written) = written {
        promoter = Arc::new(Arc::unwrap_or_clone(promoter).with_written_upload(written));
    }
    runcache_worker::drain(
        backend.staged.clone(),
        promoter as Arc<_>,
        Default::default(),
    )
    .await;
}

/// `--from-archive`: streams a ready archive into the pipe, hashing it on
/// the way. Its contents are checked like any other's: by promote (hash)
/// and by every restore (path safety).
fn copy_archive(
    file: &std::path::Path,
    out: &mut impl std::io::Write,
) -> Result<runcache_archive::ArchiveSummary, ArchiveError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let io_err = |source| ArchiveError::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut input = std::fs::File::open(file).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|source| ArchiveError::Output { source })?;
        total += n as u64;
    }
    Ok(runcache_archive::ArchiveSummary {
        sha256_hex: hex::encode(hasher.finalize()),
        compressed_bytes: total,
        uncompressed_bytes: 0,
        entries: 0,
    })
}
