//! `runcache get`: fetch a stored build output by key or by content hash,
//! verified, into a directory or as the raw archive, and say where it came
//! from (provenance). For another workflow, or an old build.

use std::path::PathBuf;

use runcache_archive::{ArchiveError, ExtractLimits, Extraction};
use runcache_cache::{
    fetch::{self, FetchError},
    lookup::{lookup, newest_with_key, LookupRequest},
};
use runcache_infra::{Backend, StoreError};
use runcache_schemas::{ContentHash, IndexEntry, ProvenanceRecord, TrustLevel};
use serde::Serialize;
use thiserror::Error;
use tokio_util::io::SyncIoBridge;

use crate::context::RunContext;

/// What to fetch.
#[derive(Debug, Clone)]
pub enum GetTarget {
    /// The newest live entry with exactly this key in the run's scopes; with
    /// `paths`, only entries of the version those paths give.
    Key {
        key: String,
        paths: Option<Vec<String>>,
    },
    Hash(ContentHash),
}

/// Where to put it.
#[derive(Debug, Clone)]
pub enum GetOutput {
    /// Unpack (path-safe, verified) relative to this directory.
    Dir(PathBuf),
    /// Write the verified archive (`cache.tzst` format) to this file.
    Archive(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetReport {
    pub content_hash: String,
    pub key: Option<String>,
    pub matched_ref: Option<String>,
    pub bytes: u64,
    pub written_to: PathBuf,
    pub provenance: Vec<ProvenanceRecord>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GetError {
    #[error("{0}")]
    NotFound(String),
    #[error("cache store: {0}")]
    Store(#[from] StoreError),
    #[error("the stored archive was refused, nothing was written: {0}")]
    Archive(#[from] ArchiveError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Task(String),
}

pub async fn get(
    backend: &Backend,
    ctx: &RunContext,
    target: &GetTarget,
    output: &GetOutput,
    limits: &ExtractLimits,
    progress: bool,
) -> Result<GetReport, GetError> {
    let (hash, entry) = match target {
        GetTarget::Hash(h) => {
            if !fetch::exists(backend, h).await? {
                return Err(GetError::NotFound(format!(
                    "no artifact {h} in the store (check the hash with `runcache admin ls`)"
                )));
            }
            (h.clone(), None)
        }
        GetTarget::Key { key, paths } => {
            let entry = find_key(backend, ctx, key, paths.as_deref()).await?;
            (entry.content_hash.clone(), Some(entry))
        }
    };
    let provenance = backend.provenance.get(&hash).await?;
    let size = match &entry {
        Some(e) => Some(e.size_bytes),
        None => backend
            .blobs
            .head(&runcache_infra::names::artifact_key(hash.hex()))
            .await?
            .map(|m| m.size),
    };
    // Shown on a terminal once the download has run for a few seconds.
    let bar = crate::progress::bar("downloading", size, progress);
    let tracked = |body| crate::progress::track(body, &bar);
    let (written_to, bytes) = match output {
        GetOutput::Archive(file) => (
            file.clone(),
            fetch::to_file_with(backend, &hash, file, tracked).await?,
        ),
        GetOutput::Dir(dir) => {
            let paths = entry
                .as_ref()
                .and_then(|e| provenance.iter().find(|p| p.upload_id == e.upload_id))
                .or(provenance.first())
                .map(|p| p.paths.clone())
                .ok_or_else(|| {
                    GetError::NotFound(format!(
                        "no provenance for {hash} tells which paths it holds; fetch it with --archive FILE instead"
                    ))
                })?;
            std::fs::create_dir_all(dir).map_err(|source| GetError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
            let input = crate::interrupt::Interruptible(SyncIoBridge::new(tracked(
                fetch::open(backend, &hash).await?,
            )));
            let (dir_owned, limits, expected) =
                (dir.clone(), limits.clone(), hash.hex().to_string());
            // `~` patterns would land in the home directory, not under --out:
            // refuse them here (no home), and say to use --archive.
            let summary = tokio::task::spawn_blocking(move || {
                Extraction::unpack_with_home(input, &dir_owned, None, &paths, &limits)?
                    .commit_verified(&expected)
            })
            .await
            .map_err(|e| GetError::Task(e.to_string()))??;
            (dir.clone(), summary.compressed_bytes)
        }
    };
    bar.finish_and_clear();
    // A blob shared by several repositories has a record for each: show
    // only this repository's (the others' commits and workflows are theirs).
    let provenance = provenance
        .into_iter()
        .filter(|p| p.build.repository == ctx.scope.repository)
        .collect();
    Ok(GetReport {
        content_hash: hash.to_string(),
        key: entry.as_ref().map(|e| e.cache_key.clone()),
        matched_ref: entry.as_ref().map(|e| e.git_ref.clone()),
        bytes,
        written_to,
        provenance,
    })
}

async fn find_key(
    backend: &Backend,
    ctx: &RunContext,
    key: &str,
    paths: Option<&[String]>,
) -> Result<IndexEntry, GetError> {
    let job = ctx.job();
    let not_found = || {
        GetError::NotFound(format!(
            "no live entry `{key}` in {} (searched {})",
            ctx.scope.repository,
            job.readable_scopes()
                .iter()
                .map(|s| s.git_ref.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    let found = match paths {
        Some(paths) => {
            let req = LookupRequest {
                primary_key: key.to_string(),
                restore_keys: vec![],
                version: runcache_archive::cache_version(paths),
                min_trust: TrustLevel::Untrusted,
            };
            lookup(backend, &job, &req)
                .await?
                .map(|hit| hit.entry)
                .filter(|e| e.cache_key == key)
        }
        // Without paths the version is unknown: the newest live entry with
        // this key, in scope order.
        None => newest_with_key(backend, &job, key).await?,
    };
    found.ok_or_else(not_found)
}
