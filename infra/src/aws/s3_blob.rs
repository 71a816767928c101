//! `S3BlobStore`: the blob store port on one S3 bucket.
//!
//! - **put** streams: a body shorter than one part is a single PutObject;
//!   anything longer is a multipart upload whose parts go up in parallel
//!   (at most `upload_concurrency` part buffers exist at once, uploading or
//!   being filled). We never know the total size up front, so the part size
//!   starts at `part_size` and doubles every `parts_per_size_step` parts:
//!   with the defaults (8 MiB, ×2 per 1,000 parts) 10,000 parts reach
//!   ~8 TB, past S3's 5 TB object limit, and no part exceeds 4 GiB.
//!   A multipart upload that fails is aborted before `put` returns; one
//!   whose future is dropped is aborted by a guard that spawns the abort, so
//!   no incomplete upload is left behind (a bucket lifecycle rule catches
//!   what a killed process leaves; [`BlobStore::abort_stale_uploads`] too).
//!   Multipart completion is atomic, so readers see the old object or the
//!   whole new one.
//! - **get** of a whole object asks for its first chunk; if the object is
//!   larger, the remaining chunks are fetched by parallel ranged GETs
//!   (`If-Match` the first response's ETag, so a concurrent replace fails
//!   the read instead of mixing two objects) and handed out in order, with
//!   at most `download_concurrency` chunks buffered. A ranged get is one
//!   ranged GET, streamed.
//! - **copy** is CopyObject up to `copy_part_threshold` (5 GiB, S3's limit)
//!   and UploadPartCopy above it, in parallel.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    ops::Range,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use async_trait::async_trait;
use aws_sdk_s3::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier},
    Client,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::{
    io::AsyncReadExt,
    sync::{OwnedSemaphorePermit, Semaphore},
    task::{JoinHandle, JoinSet},
};
use tracing::Instrument;

use super::error::{code, map_sdk_error, missing, status};
use crate::{
    blob::{validate_key, BlobMeta, BlobReader, BlobStore, ListPage},
    StoreError,
};

const MIB: u64 = 1 << 20;
/// S3's limits.
const MAX_PARTS: u32 = 10_000;
const MAX_PART_SIZE: u64 = 5 << 30;
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_DELETE_BATCH: usize = 1000;
const MAX_LIST_KEYS: usize = 1000;
/// The first read of a body: small objects (metadata documents) never get
/// a whole part buffer.
const PROBE: usize = 64 << 10;
/// S3 may still store a part it was receiving when an upload was aborted:
/// abort again after this.
const SECOND_ABORT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// How objects move: part and chunk sizes and how many go at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfig {
    /// Size of the first multipart parts; a body shorter than this is one
    /// PutObject. At least 5 MiB (S3's minimum part size).
    pub part_size: u64,
    /// The part size doubles after every this many parts.
    pub parts_per_size_step: u32,
    /// Part buffers alive at once (filling or uploading), at least 2.
    pub upload_concurrency: usize,
    /// Size of the ranged GETs of a whole-object read.
    pub download_chunk: u64,
    /// Chunks fetched ahead of the reader (and so buffered), at least 1.
    pub download_concurrency: usize,
    /// Objects larger than this are copied with UploadPartCopy.
    pub copy_part_threshold: u64,
    /// Part size of an UploadPartCopy (grown if 10,000 would not do).
    pub copy_part_size: u64,
    /// UploadPartCopy calls at once.
    pub copy_concurrency: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            part_size: 8 * MIB,
            parts_per_size_step: 1000,
            upload_concurrency: 4,
            download_chunk: 8 * MIB,
            download_concurrency: 4,
            copy_part_threshold: 5 << 30,
            copy_part_size: 512 * MIB,
            copy_concurrency: 8,
        }
    }
}

impl TransferConfig {
    /// The size of part `n` (1-based).
    pub fn part_size_for(&self, n: u32) -> u64 {
        let step = (n.saturating_sub(1) / self.parts_per_size_step.max(1)).min(20);
        (self.part_size.max(MIN_PART_SIZE) << step).min(MAX_PART_SIZE)
    }
}

/// Counters of what the store did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferCounters {
    pub parts_uploaded: u64,
    /// Most UploadPart calls in flight at once, since the store was made.
    pub peak_parts_in_flight: usize,
    pub chunks_downloaded: u64,
    /// Most ranged GETs of one reader in flight at once.
    pub peak_chunks_in_flight: usize,
}

#[derive(Debug, Default)]
struct Counters {
    parts: AtomicU64,
    parts_in_flight: AtomicUsize,
    peak_parts: AtomicUsize,
    chunks: AtomicU64,
    chunks_in_flight: AtomicUsize,
    peak_chunks: AtomicUsize,
}

/// Counts one call in flight while alive.
struct InFlight<'a> {
    now: &'a AtomicUsize,
}

impl<'a> InFlight<'a> {
    fn enter(now: &'a AtomicUsize, peak: &AtomicUsize) -> Self {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(n, Ordering::SeqCst);
        Self { now }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A multipart upload left behind by an interrupted put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    transfer: TransferConfig,
    counters: Arc<Counters>,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self::with_transfer(client, bucket, TransferConfig::default())
    }

    pub fn with_transfer(
        client: Client,
        bucket: impl Into<String>,
        transfer: TransferConfig,
    ) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            transfer,
            counters: Arc::default(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn counters(&self) -> TransferCounters {
        let c = &self.counters;
        TransferCounters {
            parts_uploaded: c.parts.load(Ordering::SeqCst),
            peak_parts_in_flight: c.peak_parts.load(Ordering::SeqCst),
            chunks_downloaded: c.chunks.load(Ordering::SeqCst),
            peak_chunks_in_flight: c.peak_chunks.load(Ordering::SeqCst),
        }
    }

    /// Every multipart upload in the bucket not yet completed or aborted.
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket))]
    pub async fn incomplete_uploads(&self) -> Result<Vec<IncompleteUpload>, StoreError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.error("s3:ListBucketMultipartUploads", None, e))?;
            for upload in page.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    out.push(IncompleteUpload {
                        key: key.to_string(),
                        upload_id: id.to_string(),
                        initiated: upload.initiated().map(to_chrono).unwrap_or_default(),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(out);
            }
        }
    }

    /// The one place S3 errors become [`StoreError`]s.
    fn error<E>(
        &self,
        action: &str,
        key: Option<&str>,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let object = || format!("object `{}` in bucket `{}`", key.unwrap_or(""), self.bucket);
        match code(&err) {
            Some("NoSuchBucket") => return missing("S3 bucket", &self.bucket, "RUNCACHE_BUCKET"),
            Some("NoSuchKey" | "NotFound") if key.is_some() => {
                return StoreError::NotFound { what: object() }
            }
            Some("NoSuchUpload") => {
                return StoreError::NotFound {
                    what: format!("multipart upload of {}", object()),
                }
            }
            Some("PreconditionFailed") => {
                return StoreError::Unavailable {
                    what: object(),
                    reason: "it was replaced while being read or copied; retry".into(),
                }
            }
            _ => {}
        }
        if status(&err) == Some(404) && key.is_some() {
            return StoreError::NotFound { what: object() };
        }
        let resource = match key {
            Some(k) => format!("arn:aws:s3:::{}/{k}", self.bucket),
            None => format!("arn:aws:s3:::{}", self.bucket),
        };
        map_sdk_error(err, action, &resource)
    }

    async fn head_object(
        &self,
        key: &str,
    ) -> Result<Option<(BlobMeta, Option<String>)>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                BlobMeta {
                    key: key.to_string(),
                    size: out.content_length().unwrap_or_default().max(0) as u64,
                    last_modified: out.last_modified().map(to_chrono).unwrap_or_default(),
                    metadata: out
                        .metadata()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                    etag: out.e_tag().map(str::to_string),
                },
                out.e_tag().map(str::to_string),
            ))),
            Err(e) => match self.error("s3:GetObject", Some(key), e) {
                StoreError::NotFound { what } if what.starts_with("object") => Ok(None),
                other => Err(other),
            },
        }
    }

    /// `head` that insists: the object must be there (after our own write).
    async fn meta_after_write(&self, key: &str) -> Result<BlobMeta, StoreError> {
        self.head_object(key)
            .await?
            .map(|(meta, _)| meta)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("object `{key}` just written to bucket `{}`", self.bucket),
            })
    }

    /// What a write just made, from its own answer: no HEAD after it, which
    /// would need `s3:GetObject` on the key (runners may only put).
    fn written(
        key: &str,
        size: u64,
        etag: Option<String>,
        metadata: &BTreeMap<String, String>,
    ) -> BlobMeta {
        BlobMeta {
            key: key.to_string(),
            size,
            last_modified: Utc::now(),
            metadata: metadata.clone(),
            etag,
        }
    }

    async fn put_single(
        &self,
        key: &str,
        data: Bytes,
        metadata: &BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError> {
        let size = data.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(data.len() as i64)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("s3:PutObject", Some(key), e))?;
        Ok(Self::written(
            key,
            size,
            out.e_tag().map(str::to_string),
            metadata,
        ))
    }

    async fn put_multipart(
        &self,
        key: &str,
        parts: PartReader,
        first: (Bytes, OwnedSemaphorePermit),
        second: (Bytes, OwnedSemaphorePermit),
        permits: Arc<Semaphore>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| self.error("s3:PutObject", Some(key), e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        // Declared before the part tasks, so that when this future is
        // dropped the tasks are dropped (cancelled) first and the guard
        // then spawns the abort.
        let mut guard = AbortOnDrop::new(&self.client, &self.bucket, key, &upload_id);
        let mut tasks = JoinSet::new();
        let result = match self
            .upload_parts(key, &upload_id, parts, first, second, &permits, &mut tasks)
            .await
        {
            Ok((done, size)) => self
                .complete(key, &upload_id, done, size)
                .await
                .map(|etag| Self::written(key, size, etag, metadata)),
            Err(e) => Err(e),
        };
        match result {
            Ok(meta) => {
                guard.armed = false;
                Ok(meta)
            }
            Err(e) => {
                // Abort now (not on drop) so that when `put` returns nothing
                // is left; the guard stays armed until the abort is done.
                self.abort_failed(key, &upload_id, &mut tasks).await;
                guard.armed = false;
                Err(e)
            }
        }
    }

    /// Reads the body part by part and uploads the parts in parallel; at
    /// most `upload_concurrency` part buffers exist at once (a permit is
    /// taken before a part is read and released when it is uploaded).
    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: PartReader,
        first: (Bytes, OwnedSemaphorePermit),
        second: (Bytes, OwnedSemaphorePermit),
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<Result<CompletedPart, StoreError>>,
    ) -> Result<(Vec<CompletedPart>, u64), StoreError> {
        let mut done = Vec::new();
        let mut size = 0u64;
        let mut n = 1u32;
        let mut next = Some(first);
        let mut after = Some(second);
        while let Some((data, permit)) = next.take() {
            let full = data.len() as u64 == self.transfer.part_size_for(n);
            size += data.len() as u64;
            self.spawn_part(tasks, key, upload_id, n, data, permit);
            // Fail fast: a part that failed stops the reading.
            while let Some(res) = tasks.try_join_next() {
                done.push(joined(res)??);
            }
            if !full {
                break;
            }
            n += 1;
            next = match after.take() {
                Some(part) => Some(part),
                None => {
                    let permit =
                        permits.clone().acquire_owned().await.map_err(|_| {
                            StoreError::backend("upload permits", "semaphore closed")
                        })?;
                    let data = parts
                        .next(self.transfer.part_size_for(n) as usize)
                        .await
                        .map_err(|e| StoreError::io(format!("body of `{key}`"), e))?;
                    (!data.is_empty()).then_some((data, permit))
                }
            };
            if next.is_some() && n > MAX_PARTS {
                return Err(StoreError::invalid(
                    format!("upload of `{key}`"),
                    "larger than 10,000 parts allow (over 5 TB)",
                ));
            }
        }
        while let Some(res) = tasks.join_next().await {
            done.push(joined(res)??);
        }
        Ok((done, size))
    }

    /// Completes the upload of `done` parts totalling `size` bytes; the
    /// object's ETag.
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        mut done: Vec<CompletedPart>,
        size: u64,
    ) -> Result<Option<String>, StoreError> {
        done.sort_by_key(|p| p.part_number());
        let parts = done.len();
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.e_tag().map(str::to_string)),
            // A 200 whose body the SDK cannot parse (moto names the root
            // element `CompleteMultipartUploadResponse`, S3 says `…Result`;
            // S3's own errors-in-a-200 carry a code and are not this).
            // Believe it only if the object is there as this upload made it.
            Err(e) if status(&e) == Some(200) && code(&e).is_none() => {
                match self.head_object(key).await? {
                    Some((meta, Some(etag)))
                        if meta.size == size
                            && etag.trim_matches('"').ends_with(&format!("-{parts}")) =>
                    {
                        Ok(Some(etag))
                    }
                    _ => Err(self.error("s3:PutObject", Some(key), e)),
                }
            }
            Err(e) => Err(self.error("s3:PutObject", Some(key), e)),
        }
    }

    /// Stops the part tasks and aborts the upload. A part S3 was still
    /// receiving can land after an abort, so a second abort follows a
    /// little later (S3's advice); the lifecycle rule and
    /// `abort_stale_uploads` remain the net under both.
    async fn abort_failed(
        &self,
        key: &str,
        upload_id: &str,
        tasks: &mut JoinSet<Result<CompletedPart, StoreError>>,
    ) {
        tasks.shutdown().await;
        if let Err(e) = abort_upload(&self.client, &self.bucket, key, upload_id).await {
            tracing::warn!(key, upload_id, error = %e, "could not abort a failed multipart upload");
        }
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            self.bucket.clone(),
            key.to_string(),
            upload_id.to_string(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(SECOND_ABORT_AFTER).await;
            let _ = abort_upload(&client, &bucket, &key, &upload_id).await;
        });
    }

    fn spawn_part(
        &self,
        tasks: &mut JoinSet<Result<CompletedPart, StoreError>>,
        key: &str,
        upload_id: &str,
        n: u32,
        data: Bytes,
        permit: OwnedSemaphorePermit,
    ) {
        let store = self.clone();
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        tasks.spawn(
            async move {
                let _permit = permit;
                let counters = store.counters.clone();
                let out = {
                    let _in_flight =
                        InFlight::enter(&counters.parts_in_flight, &counters.peak_parts);
                    store
                        .client
                        .upload_part()
                        .bucket(&store.bucket)
                        .key(&key)
                        .upload_id(&upload_id)
                        .part_number(n as i32)
                        .content_length(data.len() as i64)
                        .body(ByteStream::from(data))
                        .send()
                        .await
                        .map_err(|e| store.error("s3:PutObject", Some(&key), e))?
                };
                counters.parts.fetch_add(1, Ordering::SeqCst);
                Ok(CompletedPart::builder()
                    .part_number(n as i32)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build())
            }
            .in_current_span(),
        );
    }

    /// A whole-object read: the first chunk streams; later chunks come from
    /// parallel ranged GETs.
    async fn get_whole(&self, key: &str) -> Result<BlobReader, StoreError> {
        let chunk = self.transfer.download_chunk.max(1);
        let first = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", chunk - 1))
            .send()
            .await;
        let first = match first {
            Ok(out) => out,
            // A range of an empty object is unsatisfiable.
            Err(e) if code(&e) == Some("InvalidRange") || status(&e) == Some(416) => {
                let out = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| self.error("s3:GetObject", Some(key), e))?;
                return Ok(Box::pin(out.body.into_async_read()));
            }
            Err(e) => return Err(self.error("s3:GetObject", Some(key), e)),
        };
        let total = match first.content_range().and_then(total_of_content_range) {
            Some(total) => total,
            // No Content-Range: the server sent the whole object.
            None => return Ok(Box::pin(first.body.into_async_read())),
        };
        if total <= chunk {
            return Ok(Box::pin(first.body.into_async_read()));
        }
        let state = Chunks {
            store: self.clone(),
            key: key.to_string(),
            etag: first.e_tag().map(str::to_string),
            total,
            chunk,
            next_start: chunk,
            first_len: chunk,
            current: Current::Body(first.body, 0),
            pending: VecDeque::new(),
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut s| async move {
            let item = s.next_bytes().await?;
            Some((item, s))
        });
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    async fn copy_multipart(
        &self,
        from: &str,
        to: &str,
        size: u64,
        etag: Option<String>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(to)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| self.error("s3:PutObject", Some(to), e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let mut guard = AbortOnDrop::new(&self.client, &self.bucket, to, &upload_id);
        let mut tasks = JoinSet::new();
        let result = match self
            .copy_parts(from, to, size, etag, &upload_id, &mut tasks)
            .await
        {
            Ok(done) => self.complete(to, &upload_id, done, size).await.map(drop),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.abort_failed(to, &upload_id, &mut tasks).await;
        }
        guard.armed = false;
        result
    }

    /// UploadPartCopy of every range of `from`, `copy_concurrency` at once.
    async fn copy_parts(
        &self,
        from: &str,
        to: &str,
        size: u64,
        etag: Option<String>,
        upload_id: &str,
        tasks: &mut JoinSet<Result<CompletedPart, StoreError>>,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let part = self
            .transfer
            .copy_part_size
            .max(size.div_ceil(u64::from(MAX_PARTS)))
            .max(MIN_PART_SIZE);
        let source = copy_source(&self.bucket, from);
        let permits = Arc::new(Semaphore::new(self.transfer.copy_concurrency.max(1)));
        let mut done = Vec::new();
        for i in 0..size.div_ceil(part) {
            let (n, start, end) = ((i + 1) as i32, i * part, ((i + 1) * part).min(size));
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| StoreError::backend("copy permits", "semaphore closed"))?;
            let (store, to, upload_id, source, etag) = (
                self.clone(),
                to.to_string(),
                upload_id.to_string(),
                source.clone(),
                etag.clone(),
            );
            tasks.spawn(
                async move {
                    let _permit = permit;
                    let out = store
                        .client
                        .upload_part_copy()
                        .bucket(&store.bucket)
                        .key(&to)
                        .upload_id(&upload_id)
                        .part_number(n)
                        .copy_source(source)
                        .copy_source_range(format!("bytes={start}-{}", end - 1))
                        .set_copy_source_if_match(etag)
                        .send()
                        .await
                        .map_err(|e| store.error("s3:PutObject", Some(&to), e))?;
                    store.counters.parts.fetch_add(1, Ordering::SeqCst);
                    Ok(CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(
                            out.copy_part_result()
                                .and_then(|r| r.e_tag())
                                .map(str::to_string),
                        )
                        .build())
                }
                .in_current_span(),
            );
            while let Some(res) = tasks.try_join_next() {
                done.push(joined(res)??);
            }
        }
        while let Some(res) = tasks.join_next().await {
            done.push(joined(res)??);
        }
        Ok(done)
    }
}

/// A task's result, with a panic or cancellation as an error.
fn joined<T>(res: Result<T, tokio::task::JoinError>) -> Result<T, StoreError> {
    res.map_err(|e| StoreError::backend("transfer task", e))
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

/// `bytes 0-8388607/123456789` → 123456789.
fn total_of_content_range(range: &str) -> Option<u64> {
    range.rsplit_once('/')?.1.trim().parse().ok()
}

/// `bucket/key` for `x-amz-copy-source`, the key percent-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn abort_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), StoreError> {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some("NoSuchUpload") => Ok(()),
        Err(e) => Err(map_sdk_error(
            e,
            "s3:AbortMultipartUpload",
            &format!("arn:aws:s3:::{bucket}/{key}"),
        )),
    }
}

/// Aborts a multipart upload when dropped while armed: a `put` future
/// dropped mid-upload (cancellation) must not leave parts behind.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortOnDrop {
    fn new(client: &Client, bucket: &str, key: &str, upload_id: &str) -> Self {
        Self {
            client: client.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            armed: true,
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = abort_upload(&client, &bucket, &key, &upload_id).await {
                        tracing::warn!(key, upload_id, error = %e, "could not abort a cancelled multipart upload");
                    }
                    // Parts that were in flight may land after the abort.
                    tokio::time::sleep(SECOND_ABORT_AFTER).await;
                    let _ = abort_upload(&client, &bucket, &key, &upload_id).await;
                });
            }
            Err(_) => tracing::warn!(
                key,
                upload_id,
                "multipart upload cancelled outside a runtime; left for abort_stale_uploads"
            ),
        }
    }
}

/// Cuts a body into parts of the sizes asked for.
struct PartReader {
    body: BlobReader,
}

impl PartReader {
    /// Up to `size` bytes; fewer only at the end of the body, none after it.
    async fn next(&mut self, size: usize) -> io::Result<Bytes> {
        let mut buf = Vec::with_capacity(size.min(PROBE));
        while buf.len() < size {
            if buf.len() == buf.capacity() {
                buf.reserve_exact(size - buf.len());
            }
            let want = (size - buf.len()) as u64;
            let n = (&mut self.body).take(want).read_buf(&mut buf).await?;
            if n == 0 {
                break;
            }
        }
        Ok(Bytes::from(buf))
    }
}

/// Aborts a spawned task when dropped (a reader dropped mid-object stops
/// its prefetches).
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A prefetched chunk: the response's buffers as they arrived (no copy).
struct Chunk {
    segments: VecDeque<Bytes>,
}

enum Current {
    /// The first response, streamed; the count of bytes seen so far.
    Body(ByteStream, u64),
    Chunk(Chunk),
    None,
}

/// State of a whole-object read.
struct Chunks {
    store: S3BlobStore,
    key: String,
    etag: Option<String>,
    total: u64,
    chunk: u64,
    next_start: u64,
    first_len: u64,
    current: Current,
    pending: VecDeque<Task<Result<Chunk, StoreError>>>,
    done: bool,
}

impl Chunks {
    /// Keeps up to `download_concurrency` chunks fetched or in flight
    /// (counting the one being read), so buffering stays bounded.
    fn top_up(&mut self) {
        let limit = self.store.transfer.download_concurrency.max(1);
        let held = usize::from(matches!(self.current, Current::Chunk(_)));
        while self.pending.len() + held < limit && self.next_start < self.total {
            let range = self.next_start..(self.next_start + self.chunk).min(self.total);
            self.next_start = range.end;
            let (store, key, etag) = (self.store.clone(), self.key.clone(), self.etag.clone());
            self.pending.push_back(Task(tokio::spawn(
                async move { store.fetch_chunk(&key, etag, range).await }.in_current_span(),
            )));
        }
    }

    async fn next_bytes(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        loop {
            self.top_up();
            match &mut self.current {
                Current::Body(body, seen) => match body.next().await {
                    Some(Ok(bytes)) => {
                        *seen += bytes.len() as u64;
                        return Some(Ok(bytes));
                    }
                    Some(Err(e)) => return self.fail(io::Error::other(e)),
                    None => {
                        if *seen != self.first_len {
                            let msg = format!("first chunk of `{}` ended early", self.key);
                            return self.fail(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
                        }
                        self.current = Current::None;
                    }
                },
                Current::Chunk(chunk) => match chunk.segments.pop_front() {
                    Some(bytes) => return Some(Ok(bytes)),
                    None => self.current = Current::None,
                },
                Current::None => {
                    let Some(mut task) = self.pending.pop_front() else {
                        self.done = true;
                        return None;
                    };
                    match (&mut task.0).await {
                        Ok(Ok(chunk)) => self.current = Current::Chunk(chunk),
                        Ok(Err(e)) => return self.fail(io::Error::other(e)),
                        Err(e) => return self.fail(io::Error::other(e)),
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: io::Error) -> Option<io::Result<Bytes>> {
        self.done = true;
        self.pending.clear();
        Some(Err(e))
    }
}

impl S3BlobStore {
    async fn fetch_chunk(
        &self,
        key: &str,
        etag: Option<String>,
        range: Range<u64>,
    ) -> Result<Chunk, StoreError> {
        let counters = self.counters.clone();
        let _in_flight = InFlight::enter(&counters.chunks_in_flight, &counters.peak_chunks);
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(etag)
            .send()
            .await
            .map_err(|e| self.error("s3:GetObject", Some(key), e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::backend(format!("reading `{key}`"), e))?;
        let segments: VecDeque<Bytes> = bytes.into_segments().collect();
        let len: u64 = segments.iter().map(|b| b.len() as u64).sum();
        if len != range.end - range.start {
            return Err(StoreError::Unavailable {
                what: format!("object `{key}`"),
                reason: format!("bytes {range:?} came back as {len} bytes"),
            });
        }
        counters.chunks.fetch_add(1, Ordering::SeqCst);
        Ok(Chunk { segments })
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key))]
    async fn put(
        &self,
        key: &str,
        body: BlobReader,
        metadata: BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError> {
        validate_key(key)?;
        let io_err = |e| StoreError::io(format!("body of `{key}`"), e);
        let mut parts = PartReader { body };
        let permits = Arc::new(Semaphore::new(self.transfer.upload_concurrency.max(2)));
        let permit = |p: &Arc<Semaphore>| {
            p.clone()
                .try_acquire_owned()
                .map_err(|_| StoreError::backend("upload permits", "none free at start"))
        };
        let size1 = self.transfer.part_size_for(1) as usize;
        let p1 = permit(&permits)?;
        let first = parts.next(size1).await.map_err(io_err)?;
        if first.len() < size1 {
            return self.put_single(key, first, &metadata).await;
        }
        let p2 = permit(&permits)?;
        let second = parts
            .next(self.transfer.part_size_for(2) as usize)
            .await
            .map_err(io_err)?;
        if second.is_empty() {
            return self.put_single(key, first, &metadata).await;
        }
        self.put_multipart(key, parts, (first, p1), (second, p2), permits, &metadata)
            .await
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key))]
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        validate_key(key)?;
        Ok(self.head_object(key).await?.map(|(meta, _)| meta))
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key, range = ?range))]
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobReader, StoreError> {
        validate_key(key)?;
        let Some(r) = range else {
            return self.get_whole(key).await;
        };
        if r.start > r.end {
            return Err(StoreError::invalid(
                "byte range",
                format!("{r:?} is reversed"),
            ));
        }
        if r.start == r.end {
            // S3 cannot express an empty range; still say NotFound if absent.
            return match self.head_object(key).await? {
                Some(_) => Ok(Box::pin(tokio::io::empty())),
                None => Err(StoreError::NotFound {
                    what: format!("object `{key}` in bucket `{}`", self.bucket),
                }),
            };
        }
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", r.start, r.end - 1))
            .send()
            .await
        {
            Ok(out) => Ok(Box::pin(out.body.into_async_read())),
            // Starts past the end: nothing to read, as with a file.
            Err(e) if code(&e) == Some("InvalidRange") || status(&e) == Some(416) => {
                Ok(Box::pin(tokio::io::empty()))
            }
            Err(e) => Err(self.error("s3:GetObject", Some(key), e)),
        }
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, from = %from, to = %to))]
    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, StoreError> {
        validate_key(from)?;
        validate_key(to)?;
        let Some((source, etag)) = self.head_object(from).await? else {
            return Err(StoreError::NotFound {
                what: format!("object `{from}` in bucket `{}`", self.bucket),
            });
        };
        if source.size <= self.transfer.copy_part_threshold {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(to)
                .copy_source(copy_source(&self.bucket, from))
                .set_copy_source_if_match(etag)
                .metadata_directive(MetadataDirective::Copy)
                .send()
                .await
                .map_err(|e| match self.error("s3:GetObject", Some(from), e) {
                    StoreError::AccessDenied { .. } => StoreError::AccessDenied {
                        action: "s3:GetObject on the source and s3:PutObject".into(),
                        resource: format!("arn:aws:s3:::{}/{to}", self.bucket),
                    },
                    other => other,
                })?;
        } else {
            self.copy_multipart(from, to, source.size, etag, &source.metadata)
                .await?;
        }
        self.meta_after_write(to).await
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key))]
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("s3:DeleteObject", Some(key), e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, prefix = %prefix, limit = limit))]
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .max_keys(limit.clamp(1, MAX_LIST_KEYS) as i32)
            .send()
            .await
            .map_err(|e| self.error("s3:ListBucket", None, e))?;
        let objects: Vec<BlobMeta> = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(BlobMeta {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    last_modified: o.last_modified().map(to_chrono).unwrap_or_default(),
                    metadata: BTreeMap::new(),
                    etag: o.e_tag().map(str::to_string),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket))]
    async fn abort_stale_uploads(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut aborted = 0;
        for upload in self.incomplete_uploads().await? {
            if upload.initiated < older_than {
                match self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&upload.key)
                    .upload_id(&upload.upload_id)
                    .send()
                    .await
                {
                    Ok(_) => aborted += 1,
                    Err(e) if code(&e) == Some("NoSuchUpload") => {}
                    Err(e) => {
                        return Err(self.error("s3:AbortMultipartUpload", Some(&upload.key), e))
                    }
                }
            }
        }
        Ok(aborted)
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, keys = keys.len()))]
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            validate_key(key)?;
        }
        for batch in keys.chunks(MAX_DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::backend("building a delete request", e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::backend("building a delete request", e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.error("s3:DeleteObject", None, e))?;
            if let Some(failed) = out.errors().first() {
                let key = failed.key().unwrap_or_default();
                let code = failed.code().unwrap_or_default();
                let message = failed.message().unwrap_or_default();
                return Err(if code == "AccessDenied" {
                    StoreError::AccessDenied {
                        action: "s3:DeleteObject".into(),
                        resource: format!("arn:aws:s3:::{}/{key}", self.bucket),
                    }
                } else {
                    StoreError::backend(
                        format!("s3:DeleteObject on `{key}` in bucket `{}`", self.bucket),
                        format!(
                            "{code}: {message} ({} of {} keys failed)",
                            out.errors().len(),
                            batch.len()
                        ),
                    )
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_parts_cover_five_terabytes() {
        let t = TransferConfig::default();
        assert_eq!(t.part_size_for(1), 8 * MIB);
        assert_eq!(t.part_size_for(1000), 8 * MIB);
        assert_eq!(t.part_size_for(1001), 16 * MIB);
        let total: u64 = (1..=MAX_PARTS).map(|n| t.part_size_for(n)).sum();
        assert!(total > 5_000_000_000_000, "{total}");
        assert!((1..=MAX_PARTS).all(|n| t.part_size_for(n) <= MAX_PART_SIZE));
    }

    #[test]
    fn content_range_total() {
        assert_eq!(
            total_of_content_range("bytes 0-8388607/123456789"),
            Some(123_456_789)
        );
        assert_eq!(total_of_content_range("bytes */0"), Some(0));
        assert_eq!(total_of_content_range("garbage"), None);
    }

    #[test]
    fn copy_source_encodes_the_key() {
        assert_eq!(copy_source("b", "staging/a b+c"), "b/staging/a%20b%2Bc");
        assert_eq!(copy_source("b", "artifacts/ab~_.-"), "b/artifacts/ab~_.-");
    }
}
