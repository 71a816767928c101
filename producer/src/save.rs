//! `runcache save`: one streaming pass tar → zstd → SHA-256 → upload to
//! `staging/{tier}/{upload-id}`, then `artifact.staged` on the staged
//! queue. The tier is the job's trust capped by the runner's `max_trust`
//! (what its credentials may write); a tier that may not write the job's
//! scope (e.g. `pull_request_target` on the default branch) saves nothing.
//! The staging itself is `runcache_cache::stage`'s; this module archives
//! and gathers provenance. The workers verify and promote; where the
//! configuration runs them inline (the local backend's default) that
//! happens here, through `runcache_worker::settle`, so a restore right
//! after works.

use std::{
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc},
    time::Instant,
};

use chrono::Utc;
use runcache_archive::{ArchiveError, ArchiveOptions, COMPRESSION};
use runcache_cache::stage::{self, Claim, StageError, Upload, Written};
use runcache_infra::{Backend, Config, StoreError};
use runcache_schemas::ContentHash;
use runcache_worker::settle::{self, UploadFate};

use crate::interrupt::Interruptible;
use serde::Serialize;
use thiserror::Error;
use tracing::{info, instrument, warn};

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
#[serde(
    tag = "status",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
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
    #[error(transparent)]
    Import(#[from] crate::import::NotImportable),
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
    let job = ctx.job();
    let tier = stage::tier_for(&job, config.max_trust).map_err(|e| match e {
        StageError::NotWritable { tier, git_ref } => SaveError::ScopeNotWritable {
            tier: tier.as_str().to_string(),
            git_ref,
        },
        StageError::Store(e) => SaveError::Store(e),
        other => SaveError::Task(other.to_string()),
    })?;
    let started = Instant::now();
    let claim = Claim {
        scope: ctx.scope.clone(),
        cache_version: runcache_archive::cache_version(&req.paths),
        cache_key: req.key.clone(),
    };
    if let Some(existing) = stage::existing(backend, &claim).await? {
        info!("already cached; nothing to upload");
        return Ok(SaveReport::AlreadyCached {
            key: req.key.clone(),
            content_hash: existing.content_hash.to_string(),
        });
    }

    // Provenance runs processes (git, a version query per toolchain):
    // gather it while archiving.
    let provenance = tokio::task::spawn_blocking({
        let (ctx, key) = (ctx.clone(), req.key.clone());
        move || build_provenance(&ctx, &key)
    });
    // An import is checked the way a restore here would take it before
    // anything is staged: a file no restore accepts is never saved.
    let imported = match &req.from_archive {
        Some(file) => {
            let (file, workspace, paths) = (file.clone(), ctx.workspace.clone(), req.paths.clone());
            let checked = tokio::task::spawn_blocking(move || {
                crate::import::check(&file, &workspace, &paths)
            })
            .await
            .map_err(|e| SaveError::Task(e.to_string()))??;
            Some(checked)
        }
        None => None,
    };
    let upload = Upload::new(tier, claim);
    let (writer, reader) = crate::pipe::pipe();
    let (paths, workspace) = (req.paths.clone(), ctx.workspace.clone());
    let from_archive = req.from_archive.clone();
    // Progress is measured on what is read: the archive's size is known
    // only at its end. An import reads its file; a save its files' bytes.
    let bar = crate::progress::bar("saving", None, req.progress);
    let archived_bytes = Arc::new(AtomicU64::new(0));
    let opts = ArchiveOptions {
        zstd_level: req.zstd_level,
        progress: Some(archived_bytes.clone()),
        ..ArchiveOptions::default()
    };
    let show_progress = req.progress;
    let archiver = {
        let (bar, archived_bytes) = (bar.clone(), archived_bytes.clone());
        tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            let result = {
                // Ctrl-C stops the archive here; the upload then fails and
                // removes what it wrote.
                let mut out = Interruptible(&mut writer);
                match &from_archive {
                    Some(file) => copy_archive(file, &mut out, &archived_bytes, &bar),
                    None => runcache_archive::resolve_paths(&paths, &workspace).and_then(|names| {
                        if show_progress {
                            // One more stat per file, only when someone may watch.
                            bar.set_length(runcache_archive::input_bytes(&names, &workspace));
                        }
                        runcache_archive::create_from_paths(&names, &workspace, &mut out, &opts)
                    }),
                }
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
        })
    };
    let ticker = crate::progress::follow(&bar, archived_bytes.clone());
    let uploaded = upload.put(backend, reader).await;
    ticker.abort();
    bar.finish_and_clear();
    let archived = archiver.await.map_err(|e| SaveError::Task(e.to_string()))?;
    let (mut summary, uploaded) = match (archived, uploaded) {
        (Ok(summary), uploaded) => (summary, uploaded?),
        // The upload gave up first (a full disk, a read-only home, access
        // denied): its error is the cause, the archive's broken pipe the echo.
        (Err(ArchiveError::Output { source }), Err(upload))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Err(upload.into());
        }
        (Err(archive), _) => return Err(archive.into()),
    };
    if let Some(checked) = imported {
        if checked.sha256_hex != summary.sha256_hex {
            upload.discard(backend).await?;
            return Err(SaveError::Archive(ArchiveError::Corrupt {
                detail: "the archive changed while it was being imported; save it again".into(),
            }));
        }
        summary.uncompressed_bytes = checked.unpacked_bytes;
        summary.entries = checked.entries;
    }
    if uploaded.size != summary.compressed_bytes {
        upload.discard(backend).await?;
        return Err(SaveError::Task(format!(
            "uploaded {} bytes but the archive has {}",
            uploaded.size, summary.compressed_bytes
        )));
    }

    let mut provenance = provenance
        .await
        .map_err(|e| SaveError::Task(e.to_string()))?;
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
    let written = Written {
        hash: ContentHash::from_hex(&summary.sha256_hex)
            .map_err(|e| SaveError::Task(e.to_string()))?,
        size_bytes: summary.compressed_bytes,
        unpacked_bytes: (summary.uncompressed_bytes > 0).then_some(summary.uncompressed_bytes),
        paths: req.paths.clone(),
        compression: COMPRESSION.to_string(),
        attributes: Default::default(),
    };
    let event = upload
        .announce(backend, written, provenance, &job.traceparent)
        .await?;

    let promoted = if config.runs_workers_inline() {
        // This save hashed its own upload while writing it (the event's
        // claimed hash): promote need not read it again while the staged
        // object keeps this etag.
        let fate = settle::staged_upload(config, backend, &event, uploaded.etag.clone()).await?;
        if fate != UploadFate::Promoted {
            warn!(?fate, "the in-process promote did not index this upload");
        }
        fate == UploadFate::Promoted
    } else {
        false
    };
    Ok(SaveReport::Saved {
        key: req.key.clone(),
        upload_id: upload.upload_id.clone(),
        content_hash: event.claimed_hash.to_string(),
        size_bytes: summary.compressed_bytes,
        unpacked_bytes: summary.uncompressed_bytes,
        entries: summary.entries,
        duration_ms: started.elapsed().as_millis() as u64,
        promoted,
    })
}

/// Provenance from the Actions environment and git, plus the lockfile
/// hash and toolchain the key names (for the index's toolchain/lockfile
/// queries: `derive::record_inputs`), best effort: a save never fails for
/// them.
fn build_provenance(ctx: &RunContext, key: &str) -> runcache_schemas::BuildProvenance {
    let mut provenance = ctx.provenance();
    let detected = if crate::derive::KeyInputs::of(key).is_some() {
        None // the key says it all: nothing to run
    } else {
        let opts = crate::derive::DeriveOptions {
            toolchain_timeout: std::time::Duration::from_secs(3),
            ..Default::default()
        };
        crate::derive::detect(&ctx.workspace, &opts)
            .inspect_err(|e| tracing::debug!(error = %e, "no build inputs detected"))
            .ok()
    };
    crate::derive::record_inputs(key, detected.as_ref(), &mut provenance);
    provenance
}

/// `--from-archive`: streams a ready archive into the pipe, hashing it on
/// the way (after `import::check` took it as a restore would; the hashes
/// must agree). Promote checks the hash and every restore the paths again.
/// Copies a ready archive to `out`, hashing it, and counts what it read in
/// `read` against the file's size on `bar`.
fn copy_archive(
    file: &std::path::Path,
    out: &mut impl std::io::Write,
    read: &AtomicU64,
    bar: &indicatif::ProgressBar,
) -> Result<runcache_archive::ArchiveSummary, ArchiveError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let io_err = |source| ArchiveError::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut input = std::fs::File::open(file).map_err(io_err)?;
    bar.set_length(input.metadata().map_err(io_err)?.len());
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
        read.store(total, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(runcache_archive::ArchiveSummary {
        sha256_hex: hex::encode(hasher.finalize()),
        compressed_bytes: total,
        uncompressed_bytes: 0,
        entries: 0,
    })
}
