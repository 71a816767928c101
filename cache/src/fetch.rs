//! Fetching a stored entry out of the CAS (`artifacts/{sha256}`), verified
//! against its hash: as a stream that fails at its end unless the bytes
//! were exactly the stored ones ([`open_verified`]), or into a file that
//! appears only once they were ([`to_file`]). Restores that unpack verify
//! inside the extraction instead (`Extraction::commit_verified`), from
//! [`open`].

use std::path::{Path, PathBuf};

use runcache_infra::{digest::HashingReader, names, Backend, BlobReader, StoreError};
use runcache_schemas::ContentHash;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("cache store: {0}")]
    Store(#[from] StoreError),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("downloaded bytes hash to {actual}, expected {expected}: nothing was written (the stored object was altered)")]
    HashMismatch {
        expected: ContentHash,
        actual: ContentHash,
    },
}

/// Whether the CAS holds `hash`.
pub async fn exists(backend: &Backend, hash: &ContentHash) -> Result<bool, StoreError> {
    Ok(backend
        .blobs
        .head(&names::artifact_key(hash.hex()))
        .await?
        .is_some())
}

/// The stored bytes of `hash`, unverified: the caller verifies (the
/// extraction does, before anything is moved into place).
pub async fn open(backend: &Backend, hash: &ContentHash) -> Result<BlobReader, StoreError> {
    backend
        .blobs
        .get(&names::artifact_key(hash.hex()), None)
        .await
}

/// The stored bytes of `hash` (`size` long), as a stream that ends with an
/// `InvalidData` error instead of EOF unless they hash to `hash`.
pub async fn open_verified(
    backend: &Backend,
    hash: &ContentHash,
    size: u64,
) -> Result<HashingReader<BlobReader>, StoreError> {
    let body = open(backend, hash).await?;
    Ok(HashingReader::new(body, Some((hash.clone(), size))).0)
}

/// Streams the stored bytes of `hash` to a temporary file beside `file`,
/// hashing them, and renames it into place only if the hash matches.
/// Returns the bytes written.
pub async fn to_file(
    backend: &Backend,
    hash: &ContentHash,
    file: &Path,
) -> Result<u64, FetchError> {
    to_file_with(backend, hash, file, |body| body).await
}

/// [`to_file`], the download passed through `wrap` first (a progress
/// bar's counting reader).
pub async fn to_file_with(
    backend: &Backend,
    hash: &ContentHash,
    file: &Path,
    wrap: impl FnOnce(BlobReader) -> BlobReader,
) -> Result<u64, FetchError> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |what: &'static str| {
        let path = file.to_path_buf();
        move |source| FetchError::Io { what, path, source }
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("creating a temp file for"))?;
    let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(io("opening"))?);
    let (mut body, digest) = HashingReader::new(wrap(open(backend, hash).await?), None);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut buf).await.map_err(io("downloading into"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await.map_err(io("writing"))?;
    }
    out.sync_all().await.map_err(io("writing"))?;
    let digested = digest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .expect("the stream was read to its end");
    if digested.hash != *hash {
        return Err(FetchError::HashMismatch {
            expected: hash.clone(),
            actual: digested.hash,
        });
    }
    tmp.persist(file).map_err(|e| io("writing")(e.error))?;
    Ok(digested.size)
}
