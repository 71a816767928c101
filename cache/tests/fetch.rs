//! `fetch` hands out only bytes that hash to what they are stored under:
//! a verified stream fails at its end on altered bytes, and `to_file`
//! leaves no file behind when they do not match.

use std::sync::Arc;

use runcache_cache::fetch::{self, FetchError};
use runcache_infra::{names, Backend, Config, SystemClock};
use runcache_schemas::ContentHash;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

fn hash_of(bytes: &[u8]) -> ContentHash {
    ContentHash::from_hex(&hex::encode(Sha256::digest(bytes))).unwrap()
}

async fn backend_with(stored: &[u8], under: &ContentHash) -> (tempfile::TempDir, Backend) {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(&Config::local(dir.path()), Arc::new(SystemClock)).unwrap();
    let body: runcache_infra::BlobReader = Box::pin(std::io::Cursor::new(stored.to_vec()));
    backend
        .blobs
        .put(&names::artifact_key(under.hex()), body, Default::default())
        .await
        .unwrap();
    (dir, backend)
}

#[tokio::test]
async fn an_intact_entry_streams_and_lands_in_its_file() {
    let bytes = b"the archive".to_vec();
    let hash = hash_of(&bytes);
    let (dir, backend) = backend_with(&bytes, &hash).await;
    assert!(fetch::exists(&backend, &hash).await.unwrap());

    let mut out = Vec::new();
    fetch::open_verified(&backend, &hash, bytes.len() as u64)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert_eq!(out, bytes);

    let file = dir.path().join("out/cache.tzst");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    assert_eq!(
        fetch::to_file(&backend, &hash, &file).await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
}

#[tokio::test]
async fn altered_bytes_fail_the_stream_and_write_no_file() {
    let claimed = hash_of(b"what was promoted");
    let (dir, backend) = backend_with(b"what is there now", &claimed).await;

    let mut out = Vec::new();
    let err = fetch::open_verified(&backend, &claimed, 17)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");

    let file = dir.path().join("cache.tzst");
    match fetch::to_file(&backend, &claimed, &file).await {
        Err(FetchError::HashMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, hash_of(b"what is there now"));
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(!file.exists(), "nothing is written for altered bytes");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left behind");
}

#[tokio::test]
async fn a_missing_entry_is_reported_absent() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(&Config::local(dir.path()), Arc::new(SystemClock)).unwrap();
    assert!(!fetch::exists(&backend, &hash_of(b"never stored"))
        .await
        .unwrap());
}
