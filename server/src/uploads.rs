//! Uploads in flight, whichever protocol brings them: a reservation per
//! (scope, version, key) from Create/reserve to Finalize/commit, the
//! client's blocks or chunks spooled on local disk, and the one pass that
//! streams the assembled archive into staging while hashing it
//! (`runcache_cache::stage`, as `runcache save` does). Finalize only
//! announces `artifact.staged` (and, with inline workers, settles it): it
//! never hashes or copies the archive again.
//!
//! Reservations live in this process: a second Create for a (scope,
//! version, key) another upload holds is refused ("another job may be
//! creating this cache"); across several servers the index's insert-once
//! rule still lets exactly one upload win.
//!
//! May touch: the spool directory, staging (through `runcache_cache`), the
//! staged queue, and the workers through `runcache_worker::settle`.

use std::{
    collections::HashMap,
    io::SeekFrom,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use runcache_cache::{
    keys::{validate_key, KeyError},
    stage::{self, Claim, StageError, Upload, Written},
    Job,
};
use runcache_infra::{digest::HashingReader, Backend, BlobReader, Config, StoreError};
use runcache_schemas::{ContentHash, TrustLevel};
use runcache_worker::settle::{self, UploadFate};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tracing::{info, instrument, warn};

use crate::auth::Caller;

/// What the clients write: tar + zstd without `--long` (`@actions/cache`
/// 4.x), recorded as the entry's compression.
const CLIENT_COMPRESSION: &str = runcache_archive::COMPRESSION;

/// The compression recorded for a build-cache object: stored as the
/// client sent it, whatever it is (`runcache restore` never extracts it).
pub const OBJECT_COMPRESSION: &str = "none";

/// A reservation nobody finished is dropped after this long.
const ABANDONED_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Bytes per read and write of the spool: every tokio file operation is a
/// hop to the blocking pool, and 8 KiB ones (tokio::io::copy's) made that
/// hop the cost of a gigabyte.
const SPOOL_BUFFER: usize = 1 << 20;
/// Per block or chunk being received: one per request in flight, so
/// smaller (`--max-requests` of them at once).
const SPOOL_WRITE_BUFFER: usize = 256 << 10;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UploadError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "cache entry `{key}` already exists in {scope}; keys are immutable: save under a new key"
    )]
    Exists { key: String, scope: String },
    #[error("another job is uploading `{key}` in {scope} right now; keys are immutable and one upload wins")]
    InFlight { key: String, scope: String },
    #[error("{tier} uploads may not create entries in {git_ref}: only pushes to the default branch or a tag may; a pull request writes its own refs/pull/… scope")]
    NotWritable { tier: TrustLevel, git_ref: String },
    #[error("no upload {0} is in progress here (it was finished, abandoned, or reserved on another server)")]
    Unknown(u64),
    #[error("this job's token grants reading only: the runtime token's `ac` claim gives no scope write access")]
    ReadOnly,
    #[error("upload {0} belongs to another job")]
    NotYours(u64),
    #[error("nothing was uploaded for this entry yet: upload the archive to the signed URL first")]
    NothingUploaded,
    #[error("the upload has {actual} bytes but the request says {claimed}")]
    SizeMismatch { claimed: u64, actual: u64 },
    #[error("block `{0}` is in the block list but was never uploaded")]
    MissingBlock(String),
    #[error("the object is larger than this server's limit of {max} bytes (`runcache serve --max-object-size MIB`)")]
    TooLarge { max: u64 },
    #[error("the object's bytes hash to {actual}, not to the {expected} it was stored under: nothing was kept")]
    HashMismatch {
        expected: ContentHash,
        actual: ContentHash,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("spooling the upload: {0}")]
    Io(#[from] std::io::Error),
    #[error("cache store: {0}")]
    Store(#[from] StoreError),
}

/// The bytes of an upload, once in staging.
#[derive(Debug, Clone)]
struct Staged {
    written: Written,
    etag: Option<String>,
}

#[derive(Debug, Default)]
struct Parts {
    /// Put Block: block id as the client gave it → its spool file.
    blocks: HashMap<String, PathBuf>,
    /// v1 PATCH: bytes received into the one spool file.
    chunk_bytes: u64,
    staged: Option<Staged>,
    /// The build time a build-cache client reported for its object.
    build_duration_ms: Option<u64>,
    finalized: bool,
}

/// What a build-cache PUT brings besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct ObjectExtras {
    /// How long producing the object took, as the client says (Turborepo's
    /// `x-artifact-duration`): the entry's build time, for "time saved".
    pub build_duration_ms: Option<u64>,
    /// Kept with the entry and returned as sent (Turborepo's
    /// `x-artifact-tag` signature).
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// What [`Uploads::put_object`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectPut {
    /// Stored under its content hash (readable in the writer's scope now
    /// with inline workers, once promoted otherwise).
    Stored(ContentHash),
    /// The key already had an object: left as it was.
    Existed,
    /// Another request is storing the same key right now: it wins.
    Racing,
}

/// One upload between Create and Finalize.
#[derive(Debug)]
pub struct Reservation {
    /// The entry id the protocols show (below 2^53: clients parse it as a
    /// JavaScript number).
    pub id: u64,
    pub upload: Upload,
    pub caller: Caller,
    created: Instant,
    parts: tokio::sync::Mutex<Parts>,
}

impl Reservation {
    fn spool_dir(&self, root: &std::path::Path) -> PathBuf {
        root.join(self.id.to_string())
    }
}

/// An upload that was finalized but may not be indexed yet.
#[derive(Debug, Clone)]
struct Pending {
    claim: Claim,
    until: Instant,
}

/// The uploads this server holds.
#[derive(Debug)]
pub struct Uploads {
    spool: PathBuf,
    reservations: Mutex<HashMap<u64, Arc<Reservation>>>,
    pending: Mutex<Vec<Pending>>,
    promotion_wait: Duration,
}

impl Uploads {
    /// Uploads spooled under `spool`; restores wait up to `promotion_wait`
    /// for an upload finalized here to be indexed.
    pub fn new(spool: PathBuf, promotion_wait: Duration) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(&spool)?;
        Ok(Self {
            spool,
            reservations: Mutex::default(),
            pending: Mutex::default(),
            promotion_wait,
        })
    }

    /// Reserves (the caller's scope, `version`, `key`): refused if a live
    /// entry or another upload in flight has it, or if the caller's tier
    /// may not create entries in its scope.
    #[instrument(skip_all, fields(key, scope = %caller.job.scope))]
    pub async fn reserve(
        &self,
        config: &Config,
        backend: &Backend,
        caller: &Caller,
        key: &str,
        version: &str,
    ) -> Result<Arc<Reservation>, UploadError> {
        if !caller.can_write {
            return Err(UploadError::ReadOnly);
        }
        validate_key(key)?;
        if version.is_empty() {
            return Err(UploadError::BadRequest("version is empty".into()));
        }
        let tier = stage::tier_for(&caller.job, config.max_trust).map_err(|e| match e {
            StageError::NotWritable { tier, git_ref } => UploadError::NotWritable { tier, git_ref },
            StageError::Store(e) => UploadError::Store(e),
            other => UploadError::BadRequest(other.to_string()),
        })?;
        let claim = Claim {
            scope: caller.job.scope.clone(),
            cache_version: version.to_string(),
            cache_key: key.to_string(),
        };
        let taken = |claim: &Claim| UploadError::Exists {
            key: claim.cache_key.clone(),
            scope: claim.scope.to_string(),
        };
        if stage::existing(backend, &claim).await?.is_some() {
            return Err(taken(&claim));
        }
        let (reservation, abandoned) = {
            let mut all = self.reservations.lock().unwrap();
            let abandoned: Vec<_> = all
                .values()
                .filter(|r| r.created.elapsed() > ABANDONED_AFTER)
                .cloned()
                .collect();
            for r in &abandoned {
                all.remove(&r.id);
            }
            if all.values().any(|r| r.upload.claim == claim) || self.is_pending(&claim) {
                return Err(UploadError::InFlight {
                    key: claim.cache_key,
                    scope: claim.scope.to_string(),
                });
            }
            let id = loop {
                let id = rand::random::<u64>() & ((1 << 52) - 1);
                if id != 0 && !all.contains_key(&id) {
                    break id;
                }
            };
            let reservation = Arc::new(Reservation {
                id,
                upload: Upload::new(tier, claim),
                caller: caller.clone(),
                created: Instant::now(),
                parts: Default::default(),
            });
            all.insert(id, reservation.clone());
            info!(id, upload_id = %reservation.upload.upload_id, "reserved");
            (reservation, abandoned)
        };
        for r in abandoned {
            let _ = tokio::fs::remove_dir_all(r.spool_dir(&self.spool)).await;
        }
        Ok(reservation)
    }

    /// The reservation `id`, if the caller's job holds it (`None` for a
    /// capability URL, which is itself the proof).
    pub fn get(&self, id: u64, job: Option<&Job>) -> Result<Arc<Reservation>, UploadError> {
        let r = self
            .reservations
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(UploadError::Unknown(id))?;
        match job {
            Some(job) if job.scope != r.caller.job.scope => Err(UploadError::NotYours(id)),
            _ => Ok(r),
        }
    }

    /// The open reservation of the caller's (scope, version, key).
    pub fn find(&self, job: &Job, version: &str, key: &str) -> Option<Arc<Reservation>> {
        self.reservations
            .lock()
            .unwrap()
            .values()
            .find(|r| {
                let c = &r.upload.claim;
                c.scope == job.scope && c.cache_version == version && c.cache_key == key
            })
            .cloned()
    }

    /// Put Blob: the whole archive in one body, straight into staging.
    pub async fn put_whole(
        &self,
        backend: &Backend,
        r: &Reservation,
        body: BlobReader,
    ) -> Result<u64, UploadError> {
        let mut parts = r.parts.lock().await;
        if parts.finalized {
            return Err(UploadError::BadRequest(
                "the upload was already finalized".into(),
            ));
        }
        let staged = stage_stream(backend, &r.upload, body).await?;
        let size = staged.written.size_bytes;
        parts.staged = Some(staged);
        Ok(size)
    }

    /// A build-cache object in one request, the body being the whole object:
    /// reserved, staged while hashed (at most `max_bytes`), announced and,
    /// with inline workers, promoted, as an upload through Create, Put Blob
    /// and Finalize is. With `expected` (Bazel's CAS names the hash), bytes
    /// that hash otherwise are refused and nothing is kept. A key already
    /// stored, or being stored right now by another request, is left as it
    /// is: keys are immutable, and the object under it is the same build
    /// output.
    #[instrument(skip_all, fields(key, version, scope = %caller.job.scope))]
    #[allow(clippy::too_many_arguments)]
    pub async fn put_object(
        &self,
        config: &Config,
        backend: &Backend,
        caller: &Caller,
        version: &str,
        key: &str,
        body: BlobReader,
        max_bytes: u64,
        expected: Option<&ContentHash>,
        extras: ObjectExtras,
    ) -> Result<ObjectPut, UploadError> {
        let mut limited: BlobReader = Box::pin(body.take(max_bytes.saturating_add(1)));
        let kept = match self.reserve(config, backend, caller, key, version).await {
            Ok(r) => Ok(r),
            Err(UploadError::Exists { .. }) => Err(ObjectPut::Existed),
            Err(UploadError::InFlight { .. }) => Err(ObjectPut::Racing),
            Err(e) => return Err(e),
        };
        let r = match kept {
            Ok(r) => r,
            Err(outcome) => {
                // Read and dropped, so the connection stays usable: Bazel
                // PUTs every output whether the cache has it or not.
                tokio::io::copy(&mut limited, &mut tokio::io::sink()).await?;
                return Ok(outcome);
            }
        };
        let staged = match stage_stream(backend, &r.upload, limited).await {
            Ok(staged) => staged,
            Err(e) => {
                self.drop_reservation(&r).await;
                return Err(e);
            }
        };
        let refused = if staged.written.size_bytes > max_bytes {
            Some(UploadError::TooLarge { max: max_bytes })
        } else {
            expected
                .filter(|expected| **expected != staged.written.hash)
                .map(|expected| UploadError::HashMismatch {
                    expected: expected.clone(),
                    actual: staged.written.hash.clone(),
                })
        };
        if let Some(refused) = refused {
            self.drop_reservation(&r).await;
            let _ = r.upload.discard(backend).await;
            return Err(refused);
        }
        let (hash, size) = (staged.written.hash.clone(), staged.written.size_bytes);
        {
            let mut parts = r.parts.lock().await;
            let mut staged = staged;
            staged.written.compression = OBJECT_COMPRESSION.to_string();
            staged.written.attributes = extras.attributes;
            parts.staged = Some(staged);
            parts.build_duration_ms = extras.build_duration_ms;
        }
        match self.finalize(config, backend, &r, size).await? {
            UploadFate::Promoted | UploadFate::Pending => Ok(ObjectPut::Stored(hash)),
            UploadFate::AlreadyCached { .. } => Ok(ObjectPut::Existed),
            UploadFate::Rejected => Err(UploadError::BadRequest(
                "the store refused the object: see the server's log".into(),
            )),
        }
    }

    /// Put Block: one block, spooled under the id the client gave (stored
    /// as given, never parsed).
    pub async fn put_block(
        &self,
        r: &Reservation,
        block_id: &str,
        mut body: BlobReader,
    ) -> Result<u64, UploadError> {
        if block_id.is_empty() || block_id.len() > 1024 {
            return Err(UploadError::BadRequest(
                "blockid must be 1 to 1024 characters".into(),
            ));
        }
        let dir = r.spool_dir(&self.spool);
        tokio::fs::create_dir_all(&dir).await?;
        let file = dir.join(format!("block-{}", hex::encode(block_id)));
        let mut out = tokio::io::BufWriter::with_capacity(
            SPOOL_WRITE_BUFFER,
            tokio::fs::File::create(&file).await?,
        );
        let n = tokio::io::copy(&mut body, &mut out).await?;
        out.flush().await?;
        r.parts
            .lock()
            .await
            .blocks
            .insert(block_id.to_string(), file);
        Ok(n)
    }

    /// Put Block List: the blocks in list order, streamed into staging.
    pub async fn commit_blocks(
        &self,
        backend: &Backend,
        r: &Reservation,
        ids: &[String],
    ) -> Result<u64, UploadError> {
        let mut parts = r.parts.lock().await;
        if parts.finalized {
            return Err(UploadError::BadRequest(
                "the upload was already finalized".into(),
            ));
        }
        let mut body: BlobReader = Box::pin(tokio::io::empty());
        for id in ids {
            let file = parts
                .blocks
                .get(id)
                .ok_or_else(|| UploadError::MissingBlock(id.clone()))?;
            let file = tokio::fs::File::open(file).await?;
            body = Box::pin(body.chain(file));
        }
        // One buffer for the whole chain (a buffer per block, allocated up
        // front, made memory grow with the upload's size).
        let body = Box::pin(tokio::io::BufReader::with_capacity(SPOOL_BUFFER, body));
        let staged = stage_stream(backend, &r.upload, body).await?;
        let size = staged.written.size_bytes;
        parts.staged = Some(staged);
        parts.blocks.clear();
        drop(parts);
        let _ = tokio::fs::remove_dir_all(r.spool_dir(&self.spool)).await;
        Ok(size)
    }

    /// v1 PATCH: `body` belongs at `start` of the archive (chunks arrive in
    /// any order and in parallel).
    pub async fn put_chunk(
        &self,
        r: &Reservation,
        start: u64,
        mut body: BlobReader,
    ) -> Result<u64, UploadError> {
        let dir = r.spool_dir(&self.spool);
        tokio::fs::create_dir_all(&dir).await?;
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("chunks"))
            .await?;
        out.seek(SeekFrom::Start(start)).await?;
        let mut out = tokio::io::BufWriter::with_capacity(SPOOL_WRITE_BUFFER, out);
        let n = tokio::io::copy(&mut body, &mut out).await?;
        out.flush().await?;
        r.parts.lock().await.chunk_bytes += n;
        Ok(n)
    }

    /// v1 commit: streams the spooled chunks into staging and finalizes,
    /// in the background (the client does not wait for the copy); a
    /// restore meanwhile waits for it like for any pending promotion.
    pub fn commit_chunks(
        self: &Arc<Self>,
        config: Config,
        backend: Backend,
        r: Arc<Reservation>,
        size: u64,
        tasks: &tokio_util::task::TaskTracker,
    ) {
        self.add_pending(&r.upload.claim);
        let uploads = self.clone();
        tasks.spawn(async move {
            let result = async {
                let file = r.spool_dir(&uploads.spool).join("chunks");
                let len = match tokio::fs::metadata(&file).await {
                    Ok(m) => m.len(),
                    Err(_) if size == 0 => 0,
                    Err(e) => return Err(UploadError::Io(e)),
                };
                if len != size {
                    return Err(UploadError::SizeMismatch {
                        claimed: size,
                        actual: len,
                    });
                }
                let body: BlobReader = if size == 0 {
                    Box::pin(tokio::io::empty())
                } else {
                    Box::pin(tokio::io::BufReader::with_capacity(
                        SPOOL_BUFFER,
                        tokio::fs::File::open(&file).await?,
                    ))
                };
                {
                    let mut parts = r.parts.lock().await;
                    parts.staged = Some(stage_stream(&backend, &r.upload, body).await?);
                }
                let _ = tokio::fs::remove_dir_all(r.spool_dir(&uploads.spool)).await;
                uploads.finalize(&config, &backend, &r, size).await
            }
            .await;
            if let Err(e) = result {
                warn!(id = r.id, error = %e, "a v1 upload could not be committed");
                uploads.drop_reservation(&r).await;
            }
            uploads.remove_pending(&r.upload.claim);
        });
    }

    /// Finalize: announces the staged bytes to promote; with inline
    /// workers, promotes them now. Returns what became of the upload
    /// (`Pending` when a worker elsewhere will promote it).
    #[instrument(skip_all, fields(id = r.id, upload_id = %r.upload.upload_id))]
    pub async fn finalize(
        &self,
        config: &Config,
        backend: &Backend,
        r: &Reservation,
        size: u64,
    ) -> Result<UploadFate, UploadError> {
        let mut parts = r.parts.lock().await;
        let Some(staged) = parts.staged.clone() else {
            return Err(UploadError::NothingUploaded);
        };
        if parts.finalized {
            return Err(UploadError::BadRequest(
                "the upload was already finalized".into(),
            ));
        }
        if staged.written.size_bytes != size {
            drop(parts);
            self.drop_reservation(r).await;
            let _ = r.upload.discard(backend).await;
            return Err(UploadError::SizeMismatch {
                claimed: size,
                actual: staged.written.size_bytes,
            });
        }
        let mut provenance = r.caller.provenance.clone();
        if let Some(ms) = parts.build_duration_ms {
            provenance.build_duration_ms = Some(ms);
        }
        let event = r
            .upload
            .announce(
                backend,
                staged.written,
                provenance,
                &r.caller.job.traceparent,
            )
            .await?;
        parts.finalized = true;
        drop(parts);
        let fate = if config.runs_workers_inline() {
            settle::staged_upload(config, backend, &event, staged.etag).await?
        } else {
            self.add_pending(&r.upload.claim);
            UploadFate::Pending
        };
        self.reservations.lock().unwrap().remove(&r.id);
        info!(?fate, "finalized");
        Ok(fate)
    }

    async fn drop_reservation(&self, r: &Reservation) {
        self.reservations.lock().unwrap().remove(&r.id);
        let _ = tokio::fs::remove_dir_all(r.spool_dir(&self.spool)).await;
    }

    fn add_pending(&self, claim: &Claim) {
        self.pending.lock().unwrap().push(Pending {
            claim: claim.clone(),
            until: Instant::now() + self.promotion_wait,
        });
    }

    fn remove_pending(&self, claim: &Claim) {
        self.pending.lock().unwrap().retain(|p| &p.claim != claim);
    }

    fn is_pending(&self, claim: &Claim) -> bool {
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap();
        pending.retain(|p| p.until > now);
        pending.iter().any(|p| &p.claim == claim)
    }

    /// Whether an upload finalized here, not yet indexed as far as this
    /// server knows, could answer a restore of `keys` (primary key, then
    /// prefixes) at `version` by `job`: then the restore waits for it.
    pub fn awaits_promotion(&self, job: &Job, version: &str, keys: &[&str]) -> Option<Instant> {
        let scopes = job.readable_scopes();
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap();
        pending.retain(|p| p.until > now);
        pending
            .iter()
            .filter(|p| {
                let c = &p.claim;
                c.cache_version == version
                    && scopes.contains(&c.scope)
                    && keys.iter().any(|k| c.cache_key.starts_with(k))
            })
            .map(|p| p.until)
            .max()
    }

    /// The promotion of `claim` was seen in the index.
    pub fn promoted(&self, claim: &Claim) {
        self.remove_pending(claim);
    }
}

/// Streams `body` into `upload`'s staging key, hashing it on the way.
async fn stage_stream(
    backend: &Backend,
    upload: &Upload,
    body: BlobReader,
) -> Result<Staged, UploadError> {
    let (hashing, digest) = HashingReader::new(body, None);
    let meta = upload.put(backend, Box::pin(hashing)).await?;
    let digested = digest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| UploadError::BadRequest("the upload ended early".into()))?;
    if digested.size != meta.size {
        let _ = upload.discard(backend).await;
        return Err(UploadError::SizeMismatch {
            claimed: digested.size,
            actual: meta.size,
        });
    }
    Ok(Staged {
        written: Written {
            hash: digested.hash,
            size_bytes: digested.size,
            unpacked_bytes: None,
            // The client's version hash covers its paths; it does not
            // send them.
            paths: Vec::new(),
            compression: CLIENT_COMPRESSION.to_string(),
            attributes: Default::default(),
        },
        etag: meta.etag,
    })
}
