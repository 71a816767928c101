//! promote: turns a staged upload into a verified, indexed, traceable CAS
//! entry. The only writer of `artifacts/`, `metadata/` and the index
//! (besides `sweep`, which removes what nothing references).
//!
//! Steps, each safe to repeat and to crash after (a redelivery resumes):
//! 0. The upload id must be a plain token (letters, digits, `.`, `_`, `-`):
//!    it names `staging/{tier}/{id}` and `quarantine/{id}`, and must never
//!    reach into a sub-prefix such as the sweep's pending deletions.
//!    The claim must be one the upload's tier may make: IAM lets a runner
//!    write only `staging/{t}/` for the tiers t its credentials carry, so
//!    the key's tier bounds the trust the event may claim and the scopes it
//!    may write (`TrustLevel::may_write_ref`: a pull request never writes
//!    the default branch's scope); and the staged object's `runcache-claim`
//!    metadata, written with the bytes, must name the event's scope, version
//!    and key, so an event cannot re-label another runner's upload. A claim
//!    that fails either check is refused: quarantined, audited, counted as
//!    `rejected`, never indexed.
//! 1. If a live entry with this identity exists: if it is this upload's,
//!    an earlier run got past step 5: finish steps 6–8; otherwise the key is
//!    taken (keys are immutable): drop the upload.
//! 2. If the staging object is gone: done if it was quarantined, else reject.
//! 3. Verify and store: if `artifacts/{claimed}` exists, hash the staged
//!    bytes (dedup, no copy). Else, on S3, stream them into
//!    `artifacts/{claimed}` through a hashing reader that fails the put on
//!    any mismatch, so the object appears only if its bytes hash to its
//!    name (no window in which a runner could swap the staged bytes between
//!    check and copy). On a store whose copies share bytes (the local
//!    filesystem: hard links), pin the staged bytes at
//!    `quarantine/promoting/{id}`, hash the pin, link it into the CAS: the
//!    same guarantee without writing the archive a second time.
//!    `runcache save` on the local backend, which promotes in its own
//!    process, hands over the digest it computed while writing the upload
//!    ([`WrittenUpload`]); it stands in for the hash only while the staged
//!    object's etag (inode, size, mtime, ctime) is the one the write left.
//!    A mismatch (hash or size): copy what was hashed to `quarantine/`,
//!    audit, emit `rejected`, delete the staged object.
//! 4. Provenance: `metadata/{h}.json` (first build wins) and the store.
//! 5. Conditional insert of the index entry.
//! 6. Ensure `artifacts/{h}` and `metadata/{h}.json` still exist; re-store
//!    whichever is missing from the staged bytes (through the verifying
//!    reader again). A sweep running concurrently may have unlinked a blob
//!    that was unreferenced when it looked, after step 3 saw it (dedup):
//!    this step, which runs after the entry became visible, is the
//!    promote half of the protocol described in `sweep.rs`.
//! 7. Emit `promoted` / `deduplicated` with the latency since staging.
//! 8. Delete the staged object.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use runcache_infra::{
    names, staging, Backend, Config, InsertOutcome, ReceivedMessage, StateChange, StoreError,
};
use runcache_schemas::{
    ArtifactStaged, AuditAction, AuditRecord, Contract, EntryState, Event, IndexEntry, OutcomeKind,
    ProvenanceRecord, TrustLevel, WorkerOutcome,
};
use tracing::{info, instrument, warn};

use runcache_infra::digest::{digest, Digested, HashingReader};

use crate::consumer::{Handler, Outcome};

/// The promote handler.
#[derive(Debug, Clone)]
pub struct Promoter {
    backend: Backend,
    /// Identity recorded as `promotedBy`.
    worker_id: String,
    /// Entries live this long after their last access (the `ttl` field).
    ttl: Duration,
    /// Only protected-tier uploads may write this branch's scope.
    default_branch: String,
    /// `save`'s in-process promote: the digest of the upload it just wrote.
    written: Option<WrittenUpload>,
}

/// What a `save` that promotes in its own process knows of the upload it
/// has just written: the SHA-256 it computed over the very bytes it wrote
/// (the archive is hashed in the same pass that produces it), and the
/// object's etag as the store reported it once the write was complete.
///
/// Promote takes that digest instead of reading the object again only for
/// that upload, and only while the staged object's etag is still the one
/// recorded: on the filesystem the etag covers inode, size, mtime and
/// ctime, so bytes replaced or rewritten after the save (even with the
/// mtime set back) are hashed as usual and rejected on a mismatch. Only
/// `runcache save` on the local backend builds one (where the writer and
/// the promoter are the same process and the same user); a worker never
/// receives one, so everything a runner uploads on AWS is hashed by the
/// worker itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenUpload {
    pub upload_id: String,
    pub hash: runcache_schemas::ContentHash,
    pub size: u64,
    pub etag: String,
}

impl Promoter {
    pub fn new(backend: Backend, worker_id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            backend,
            worker_id: worker_id.into(),
            ttl,
            default_branch: "main".into(),
            written: None,
        }
    }

    /// Promote `upload` without hashing its bytes a second time, while its
    /// etag is unchanged (see [`WrittenUpload`]).
    pub fn with_written_upload(mut self, upload: WrittenUpload) -> Self {
        self.written = Some(upload);
        self
    }

    /// Whether `staged` (the staged object's head, just read) is exactly
    /// the upload this process wrote and hashed, as `ev` claims it.
    fn written_here(&self, ev: &ArtifactStaged, staged: &runcache_infra::BlobMeta) -> bool {
        self.written.as_ref().is_some_and(|w| {
            w.upload_id == ev.upload_id
                && w.hash == ev.claimed_hash
                && w.size == ev.size_bytes
                && staged.size == w.size
                && staged.etag.as_deref() == Some(w.etag.as_str())
        })
    }

    /// The repository's default branch (`main` unless told).
    pub fn with_default_branch(mut self, branch: impl Into<String>) -> Self {
        self.default_branch = branch.into();
        self
    }

    #[instrument(skip_all, fields(upload_id = %ev.upload_id, content_hash = %ev.claimed_hash, key = %ev.cache_key))]
    pub async fn promote(&self, ev: &ArtifactStaged) -> Result<Outcome, StoreError> {
        let b = &self.backend;
        if let Err(reason) = validate_upload_id(&ev.upload_id) {
            return Ok(Outcome::Reject { reason });
        }
        let Some((tier, _)) =
            staging::parse_key(&ev.staging_key).filter(|(_, id)| *id == ev.upload_id)
        else {
            return Ok(Outcome::Reject {
                reason: format!(
                    "staging key {} is not staging/{{tier}}/{}",
                    ev.staging_key, ev.upload_id
                ),
            });
        };
        if let Err(reason) = self.check_tier(ev, tier) {
            return self.refuse_claim(ev, &reason).await;
        }
        let scope = ev.scope.clone();
        if let Some(existing) = b
            .index
            .get(&scope, &ev.cache_version, &ev.cache_key)
            .await?
        {
            if existing.is_live() {
                if existing.upload_id == ev.upload_id {
                    // Crashed after step 5 last time. Without the staged
                    // object, step 8 ran, so step 6 had too.
                    if b.blobs.head(&ev.staging_key).await?.is_some() {
                        if let Err(reason) = self.ensure_stored(ev).await? {
                            return self.unstorable(ev, &existing, &reason).await;
                        }
                        self.emit(ev, OutcomeKind::Promoted, None).await?;
                        self.drop_upload(ev).await?;
                    }
                    return Ok(Outcome::Done);
                }
                info!("key already cached in this scope; dropping the upload (keys are immutable)");
                self.drop_upload(ev).await?;
                return Ok(Outcome::Done);
            }
        }

        let Some(staged) = b.blobs.head(&ev.staging_key).await? else {
            if b.blobs
                .head(&names::quarantine_key(&ev.upload_id))
                .await?
                .is_some()
            {
                return Ok(Outcome::Done);
            }
            return Ok(Outcome::Reject {
                reason: format!(
                    "staged object {} is missing (never uploaded, or expired before promotion)",
                    ev.staging_key
                ),
            });
        };
        let claim = staging::claim(&scope, &ev.cache_version, &ev.cache_key);
        if staged.metadata.get(staging::CLAIM_META) != Some(&claim) {
            return self
                .refuse_claim(
                    ev,
                    "the staged object was not uploaded for this scope, version and key \
                     (its runcache-claim metadata differs)",
                )
                .await;
        }

        let cas_key = names::artifact_key(ev.claimed_hash.hex());
        let deduplicated = b.blobs.head(&cas_key).await?.is_some();
        let written_here = self.written_here(ev, &staged);
        let verified = if deduplicated && written_here {
            Ok(())
        } else if deduplicated {
            self.verify_staged(ev, &ev.staging_key).await?
        } else if b.blobs.copy_shares_bytes() {
            self.store_pinned(ev, &cas_key, written_here).await?
        } else {
            self.store_streamed(ev, &cas_key).await?
        };
        if let Err(Mismatch { reason, evidence }) = verified {
            return self
                .reject(ev, &reason, &evidence)
                .await
                .map(|_| Outcome::Done);
        }

        let now = b.clock.now();
        let provenance = self.provenance_record(ev, now);
        self.ensure_metadata(&provenance).await?;
        b.provenance.put(&provenance).await?;

        let entry = IndexEntry {
            cache_key: ev.cache_key.clone(),
            content_hash: ev.claimed_hash.clone(),
            s3_key: cas_key,
            repository: scope.repository.clone(),
            git_ref: scope.git_ref.clone(),
            cache_version: ev.cache_version.clone(),
            toolchain: ev.provenance.toolchain.clone().unwrap_or_default(),
            lockfile_hash: ev.provenance.lockfile_hash.clone(),
            size_bytes: staged.size,
            created_at: now,
            last_accessed: now,
            access_count: 0,
            ttl: (now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(90)))
                .timestamp(),
            state: EntryState::Live,
            invalidated_at: None,
            reason: None,
            invalidated_by: None,
            trust: ev.provenance.trust,
            trigger_event: ev.provenance.trigger_event.clone(),
            upload_id: ev.upload_id.clone(),
            build_duration_ms: ev.provenance.build_duration_ms,
            attributes: ev.attributes.clone(),
        };
        match b.index.insert(&entry).await? {
            InsertOutcome::Inserted => {
                if let Err(reason) = self.ensure_stored(ev).await? {
                    return self.unstorable(ev, &entry, &reason).await;
                }
                let kind = if deduplicated {
                    OutcomeKind::Deduplicated
                } else {
                    OutcomeKind::Promoted
                };
                self.emit(ev, kind, None).await?;
            }
            InsertOutcome::Exists(other) if other.upload_id == ev.upload_id => {
                if let Err(reason) = self.ensure_stored(ev).await? {
                    return self.unstorable(ev, &other, &reason).await;
                }
            }
            InsertOutcome::Exists(_) => {
                info!("a concurrent save took the key first; keeping it (keys are immutable)");
            }
        }
        self.drop_upload(ev).await?;
        Ok(Outcome::Done)
    }

    /// Step 0: what an upload staged under `tier` may claim.
    fn check_tier(&self, ev: &ArtifactStaged, tier: TrustLevel) -> Result<(), String> {
        let claimed = ev.provenance.trust;
        if claimed > tier {
            return Err(format!(
                "claims trust {} but was staged under the {} tier",
                claimed.as_str(),
                tier.as_str()
            ));
        }
        if !tier.may_write_ref(&ev.scope.git_ref, &self.default_branch) {
            return Err(format!(
                "a {}-tier upload may not create entries in {}",
                tier.as_str(),
                ev.scope.git_ref
            ));
        }
        Ok(())
    }

    /// A claim the upload may not make: keep its bytes in `quarantine/` as
    /// evidence (a redelivery then finds them there and is done), audit
    /// it, count it as rejected, drop the upload. Each step is idempotent.
    async fn refuse_claim(&self, ev: &ArtifactStaged, reason: &str) -> Result<Outcome, StoreError> {
        let b = &self.backend;
        warn!(%reason, scope = %ev.scope, "refusing an upload's claim");
        match b
            .blobs
            .copy(&ev.staging_key, &names::quarantine_key(&ev.upload_id))
            .await
        {
            Ok(_) => {}
            // Redelivered after the upload was dropped, or never uploaded.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let record = self.audit(ev, "refused", AuditAction::Rejected, "claim", reason);
        b.index.append_audit(&record).await?;
        self.emit(ev, OutcomeKind::Rejected, Some(reason.to_string()))
            .await?;
        self.drop_upload(ev).await?;
        Ok(Outcome::Done)
    }

    /// Hashes the object at `key` against the claim.
    async fn verify_staged(&self, ev: &ArtifactStaged, key: &str) -> Result<Verified, StoreError> {
        let body = self.backend.blobs.get(key, None).await?;
        let d = digest(body).await.map_err(|e| StoreError::Io {
            what: key.to_string(),
            source: e,
        })?;
        Ok(if d.hash == ev.claimed_hash && d.size == ev.size_bytes {
            Ok(())
        } else {
            Err(Mismatch {
                reason: mismatch_reason(ev, &d),
                evidence: key.to_string(),
            })
        })
    }

    /// Step 3 where copies share bytes (the filesystem): pin the staged
    /// bytes with a copy a runner cannot reach, hash the pinned copy (unless
    /// this process wrote and hashed them: `written_here`), and move
    /// exactly those bytes into the CAS. Nothing is written twice.
    async fn store_pinned(
        &self,
        ev: &ArtifactStaged,
        cas_key: &str,
        written_here: bool,
    ) -> Result<Verified, StoreError> {
        let blobs = &self.backend.blobs;
        let pin = names::promoting_key(&ev.upload_id);
        blobs.copy(&ev.staging_key, &pin).await?;
        let verified = if written_here {
            Ok(())
        } else {
            self.verify_staged(ev, &pin).await?
        };
        // On a mismatch `reject` quarantines the pinned bytes, then drops
        // the pin.
        if verified.is_ok() {
            blobs.copy(&pin, cas_key).await?;
            blobs.delete(&pin).await?;
        }
        Ok(verified)
    }

    /// Step 3 elsewhere (S3): stream the staged bytes into the CAS through
    /// a hashing reader that fails the put on any mismatch, so the object
    /// appears only if its bytes hash to its name, in one pass.
    async fn store_streamed(
        &self,
        ev: &ArtifactStaged,
        cas_key: &str,
    ) -> Result<Verified, StoreError> {
        let blobs = &self.backend.blobs;
        let body = blobs.get(&ev.staging_key, None).await?;
        let (reader, slot) =
            HashingReader::new(body, Some((ev.claimed_hash.clone(), ev.size_bytes)));
        match blobs.put(cas_key, Box::pin(reader), BTreeMap::new()).await {
            Ok(_) => Ok(Ok(())),
            Err(e) => {
                let digested = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match digested {
                    // The stream ended: the store refused it because of
                    // the mismatch.
                    Some(d) if d.hash != ev.claimed_hash || d.size != ev.size_bytes => {
                        Ok(Err(Mismatch {
                            reason: mismatch_reason(ev, &d),
                            evidence: ev.staging_key.clone(),
                        }))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    fn provenance_record(&self, ev: &ArtifactStaged, now: DateTime<Utc>) -> ProvenanceRecord {
        ProvenanceRecord {
            content_hash: ev.claimed_hash.clone(),
            upload_id: ev.upload_id.clone(),
            cache_key: ev.cache_key.clone(),
            scope: ev.scope.clone(),
            cache_version: ev.cache_version.clone(),
            paths: ev.paths.clone(),
            compression: ev.compression.clone(),
            size_bytes: ev.size_bytes,
            build: ev.provenance.clone(),
            staged_at: ev.staged_at,
            promoted_at: now,
            promoted_by: self.worker_id.clone(),
        }
    }

    /// `metadata/{h}.json`, unless one exists (the first build wins).
    async fn ensure_metadata(&self, provenance: &ProvenanceRecord) -> Result<(), StoreError> {
        let b = &self.backend;
        let metadata_key = names::metadata_key(provenance.content_hash.hex());
        if b.blobs.head(&metadata_key).await?.is_none() {
            let doc = provenance.encode().into_bytes();
            b.blobs
                .put(
                    &metadata_key,
                    Box::pin(std::io::Cursor::new(doc)),
                    BTreeMap::new(),
                )
                .await?;
        }
        Ok(())
    }

    /// Step 6: the entry is visible now; make sure what it points at still
    /// exists (see `sweep.rs` for why it might not). `Ok(Err(reason))` when
    /// the CAS object is gone and the staged bytes no longer match the
    /// claim (replaced after step 3), so it cannot be re-stored.
    #[instrument(skip_all)]
    async fn ensure_stored(&self, ev: &ArtifactStaged) -> Result<Result<(), String>, StoreError> {
        let b = &self.backend;
        let cas_key = names::artifact_key(ev.claimed_hash.hex());
        if b.blobs.head(&cas_key).await?.is_none() {
            warn!("the CAS object vanished after the entry was written (a concurrent sweep); storing it again");
            let body = b.blobs.get(&ev.staging_key, None).await?;
            let expected = (ev.claimed_hash.clone(), ev.size_bytes);
            let (reader, slot) = HashingReader::new(body, Some(expected.clone()));
            if let Err(e) = b
                .blobs
                .put(&cas_key, Box::pin(reader), BTreeMap::new())
                .await
            {
                let digested = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return match digested {
                    Some(d) if d.hash != expected.0 || d.size != expected.1 => Ok(Err(format!(
                        "the CAS object vanished and the staged bytes changed since verification: \
                         content is {} ({} bytes), claimed {} ({} bytes)",
                        d.hash, d.size, expected.0, expected.1
                    ))),
                    _ => Err(e),
                };
            }
        }
        self.ensure_metadata(&self.provenance_record(ev, b.clock.now()))
            .await?;
        Ok(Ok(()))
    }

    /// The entry points at a blob that is gone and cannot be re-stored:
    /// take the entry out of service (restores would fail on it) and
    /// record why, then drop the upload.
    async fn unstorable(
        &self,
        ev: &ArtifactStaged,
        entry: &IndexEntry,
        reason: &str,
    ) -> Result<Outcome, StoreError> {
        let b = &self.backend;
        warn!(%reason, "invalidating the new entry: its blob cannot be stored");
        let now = b.clock.now();
        let record = AuditRecord {
            at: now,
            ..self.audit(
                ev,
                "unstorable",
                AuditAction::Invalidated,
                "verification",
                reason,
            )
        };
        b.index.append_audit(&record).await?;
        b.index
            .set_state(
                &entry.scope(),
                &entry.cache_version,
                &entry.cache_key,
                &StateChange {
                    state: EntryState::Invalidated,
                    at: now,
                    reason: reason.to_string(),
                    by: self.worker_id.clone(),
                },
            )
            .await?;
        self.emit(ev, OutcomeKind::Rejected, Some(reason.to_string()))
            .await?;
        self.drop_upload(ev).await?;
        Ok(Outcome::Done)
    }

    /// Quarantines the bytes that did not match their claim (`evidence`: the
    /// staged object, or promote's pinned copy of it).
    async fn reject(
        &self,
        ev: &ArtifactStaged,
        reason: &str,
        evidence: &str,
    ) -> Result<(), StoreError> {
        let b = &self.backend;
        warn!(%reason, "rejecting upload: hash mismatch");
        b.blobs
            .copy(evidence, &names::quarantine_key(&ev.upload_id))
            .await?;
        let record = self.audit(
            ev,
            "rejected",
            AuditAction::Rejected,
            "verification",
            reason,
        );
        b.index.append_audit(&record).await?;
        self.emit(ev, OutcomeKind::Rejected, Some(reason.to_string()))
            .await?;
        if evidence != ev.staging_key {
            b.blobs.delete(evidence).await?;
        }
        self.drop_upload(ev).await
    }

    /// The audit record of what promote did to `ev`'s upload, now; its id
    /// is `{kind}-{upload id}`, so a redelivery rewrites the same record.
    fn audit(
        &self,
        ev: &ArtifactStaged,
        kind: &str,
        action: AuditAction,
        rule: &str,
        reason: &str,
    ) -> AuditRecord {
        AuditRecord {
            audit_id: format!("{kind}-{}", ev.upload_id),
            action,
            repository: ev.scope.repository.clone(),
            git_ref: Some(ev.scope.git_ref.clone()),
            cache_key: Some(ev.cache_key.clone()),
            cache_version: Some(ev.cache_version.clone()),
            content_hash: Some(ev.claimed_hash.clone()),
            reason: reason.to_string(),
            rule: rule.to_string(),
            actor: self.worker_id.clone(),
            at: self.backend.clock.now(),
        }
    }

    /// Step 8: deletes the staged object, and a pin a crash may have left
    /// (a redelivery that finds the CAS object goes the dedup way and never
    /// pins again).
    async fn drop_upload(&self, ev: &ArtifactStaged) -> Result<(), StoreError> {
        let blobs = &self.backend.blobs;
        if blobs.copy_shares_bytes() {
            blobs.delete(&names::promoting_key(&ev.upload_id)).await?;
        }
        blobs.delete(&ev.staging_key).await
    }

    async fn emit(
        &self,
        ev: &ArtifactStaged,
        kind: OutcomeKind,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let now = self.backend.clock.now();
        let outcome = WorkerOutcome {
            kind,
            repository: ev.scope.repository.clone(),
            git_ref: Some(ev.scope.git_ref.clone()),
            cache_key: Some(ev.cache_key.clone()),
            content_hash: Some(ev.claimed_hash.clone()),
            upload_id: Some(ev.upload_id.clone()),
            size_bytes: Some(ev.size_bytes),
            latency_ms: Some((now - ev.staged_at).num_milliseconds().max(0) as u64),
            reason,
            at: now,
        };
        crate::records::send_outcome(&self.backend, &outcome).await
    }
}

#[async_trait]
impl Handler for Promoter {
    fn name(&self) -> &'static str {
        "promote"
    }

    async fn handle(&self, event: Event, _message: &ReceivedMessage) -> Outcome {
        let Event::Staged(ev) = event else {
            return Outcome::Reject {
                reason: format!("promote takes artifact.staged, not {}", event.schema()),
            };
        };
        match self.promote(&ev).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::from_store_error(&e),
        }
    }
}

/// What step 3 concluded: `Ok` when the bytes were verified (and stored).
type Verified = Result<(), Mismatch>;

/// Bytes that do not match their claim, and the key holding them.
#[derive(Debug)]
struct Mismatch {
    reason: String,
    evidence: String,
}

fn mismatch_reason(ev: &ArtifactStaged, d: &Digested) -> String {
    format!(
        "content is {} ({} bytes), claimed {} ({} bytes)",
        d.hash, d.size, ev.claimed_hash, ev.size_bytes
    )
}

/// Step 0: an upload id is a plain token, 1 to 128 of `[A-Za-z0-9._-]`, not
/// starting with `.` (the producer uses UUIDs).
pub fn validate_upload_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "upload id `{}` is not a plain token (1 to 128 letters, digits, `.`, `_` or `-`)",
            id.chars().take(140).collect::<String>()
        ))
    }
}

/// A promoter with `config`'s TTL and default branch.
pub fn promoter(backend: &Backend, worker_id: &str, config: &Config) -> Arc<Promoter> {
    Arc::new(
        Promoter::new(
            backend.clone(),
            worker_id,
            Duration::from_secs(u64::from(config.ttl_days) * 86_400),
        )
        .with_default_branch(config.default_branch.clone()),
    )
}
