//! The blob store port: one bucket's worth of objects under string keys
//! (`staging/…`, `artifacts/…`, `quarantine/…`, `metadata/…`), streamed in
//! and out so that no object is ever held whole in memory.
//!
//! # Contract
//! - `put` is atomic: readers see the old object (or none) until the whole
//!   new one is in place; a failed or cancelled put leaves nothing behind.
//! - `get` and `copy` of a missing key return [`StoreError::NotFound`];
//!   `head` returns `None`; `delete` of a missing key succeeds.
//! - Keys are relative, `/`-separated, without `.`/`..` segments or empty
//!   segments; anything else is [`StoreError::Invalid`].
//! - `list` returns keys in lexicographic order, a page at a time.

use std::{collections::BTreeMap, fmt::Debug, ops::Range, pin::Pin};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

use crate::StoreError;

/// A stream of object bytes.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// What `head`, `put` and `list` tell about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    /// User metadata (S3 `x-amz-meta-*`); empty in listings.
    pub metadata: BTreeMap<String, String>,
    /// Changes whenever the object's bytes may have: S3's ETag; on the
    /// filesystem the device, inode, size, mtime and ctime (a writer can
    /// set the mtime back, never the ctime). `None` where unknown.
    pub etag: Option<String>,
}

/// One page of a listing; `next` continues it.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<BlobMeta>,
    pub next: Option<String>,
}

#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Streams `body` into `key`, replacing any object there.
    async fn put(
        &self,
        key: &str,
        body: BlobReader,
        metadata: BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError>;

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError>;

    /// The object's bytes, or the half-open byte `range` of them.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobReader, StoreError>;

    /// Server-side copy; the destination gets the source's metadata.
    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, StoreError>;

    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Objects whose key starts with `prefix`, after the key `start_after`
    /// (exclusive), at most `limit` of them.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError>;

    /// Removes what interrupted uploads left behind (temp files, incomplete
    /// multipart uploads) started before `older_than`; returns how many.
    async fn abort_stale_uploads(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Whether `copy` shares the source's current bytes instead of
    /// duplicating them (a hard link on a filesystem whose objects are
    /// never modified in place): then a copy is an O(1) way to pin an
    /// object's bytes and to move them into another key. Default: false.
    fn copy_shares_bytes(&self) -> bool {
        false
    }

    /// Deletes several keys; missing ones are fine.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }
}

/// Checks a key against the contract's rules.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| Err(StoreError::invalid(format!("object key `{key}`"), reason));
    if key.is_empty() || key.len() > 1024 {
        return bad("must be 1 to 1024 bytes");
    }
    if key.starts_with('/') || key.contains('\\') || key.contains('\0') {
        return bad("must be relative, `/`-separated, without NUL");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("must not contain empty, `.` or `..` segments");
    }
    Ok(())
}
