//! `runcache get`: fetch a stored build output by key or by content hash,
//! verified, into a directory or as the raw archive, and say where it came
//! from (provenance). For another workflow, or an old build.

use std::path::{Path, PathBuf};

use runcache_archive::{ArchiveError, ExtractLimits, Extraction};
use runcache_infra::{
    index::{restore_scopes, search, SearchRequest},
    names, Backend, StoreError,
};
use runcache_schemas::{ContentHash, IndexEntry, ProvenanceRecord, TrustLevel};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    #[error("downloaded bytes hash to {actual}, expected {expected}: nothing was written (the stored object was altered)")]
    HashMismatch { expected: String, actual: String },
    #[error("{0}")]
    Task(String),
}

pub async fn get(
    backend: &Backend,
    ctx: &RunContext,
    target: &GetTarget,
    output: &GetOutput,
    limits: &ExtractLimits,
) -> Result<GetReport, GetError> {
    let (hash, entry) = match target {
        GetTarget::Hash(h) => {
            if backend
                .blobs
                .head(&names::artifact_key(h.hex()))
                .await?
                .is_none()
            {
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
    let cas_key = names::artifact_key(hash.hex());
    let (written_to, bytes) = match output {
        GetOutput::Archive(file) => (
            file.clone(),
            write_archive(backend, &cas_key, &hash, file).await?,
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
            let input = SyncIoBridge::new(backend.blobs.get(&cas_key, None).await?);
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
    let scopes = restore_scopes(&ctx.scope, ctx.base_ref.as_deref(), &ctx.default_branch);
    let not_found = || {
        GetError::NotFound(format!(
            "no live entry `{key}` in {} (searched {})",
            ctx.scope.repository,
            scopes
                .iter()
                .map(|s| s.git_ref.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    if let Some(paths) = paths {
        let req = SearchRequest {
            scopes: scopes.clone(),
            version: runcache_archive::cache_version(paths),
            primary_key: key.to_string(),
            restore_keys: vec![],
            min_trust: TrustLevel::Untrusted,
        };
        return match search(&*backend.index, &req).await? {
            Some(hit) if hit.entry.cache_key == key => Ok(hit.entry),
            _ => Err(not_found()),
        };
    }
    // Without paths the version is unknown: take the newest live entry with
    // this key, in scope order.
    let all = backend
        .index
        .by_repository(&ctx.scope.repository, None)
        .await?;
    scopes
        .iter()
        .find_map(|scope| {
            all.iter()
                .filter(|e| e.is_live() && e.cache_key == key && e.git_ref == scope.git_ref)
                .max_by_key(|e| e.created_at)
                .cloned()
        })
        .ok_or_else(not_found)
}

/// Streams the CAS object to a temp file beside `file`, hashing it, and
/// renames it into place only if the hash matches.
async fn write_archive(
    backend: &Backend,
    cas_key: &str,
    hash: &ContentHash,
    file: &Path,
) -> Result<u64, GetError> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |what: &str| {
        let what = format!("{what} {}", file.display());
        move |source| GetError::Io { what, source }
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("creating a temp file for"))?;
    let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(io("opening"))?);
    let mut body = backend.blobs.get(cas_key, None).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).await.map_err(io("downloading into"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).await.map_err(io("writing"))?;
        total += n as u64;
    }
    out.sync_all().await.map_err(io("writing"))?;
    let actual = hex::encode(hasher.finalize());
    if actual != hash.hex() {
        return Err(GetError::HashMismatch {
            expected: hash.to_string(),
            actual: format!("sha256:{actual}"),
        });
    }
    tmp.persist(file).map_err(|e| GetError::Io {
        what: format!("writing {}", file.display()),
        source: e.error,
    })?;
    Ok(total)
}
