//! Staging an upload: the first half of every save, whichever door it
//! comes through. The bytes go to `staging/{tier}/{upload_id}` with the
//! claim that binds them to one (scope, version, key), then one
//! `artifact.staged` event tells promote to verify and index them. Nothing
//! here writes `artifacts/`, the index or provenance.
//!
//! The steps, in order: [`tier_for`] (which staging tier the job's
//! credentials write, and whether that tier may create entries in its
//! scope) → [`existing`] (keys are immutable: a live entry makes the save a
//! no-op) → [`Upload::put`] (stream the archive) → [`Upload::announce`]
//! (the event). A failure before `announce` leaves at most a staged object
//! no event names, which the staging lifecycle expires;
//! [`Upload::discard`] removes it at once.

use std::collections::BTreeMap;

use chrono::Utc;
use runcache_infra::{staging, Backend, BlobMeta, BlobReader, OutgoingMessage, StoreError};
use runcache_schemas::{
    ArtifactStaged, BuildProvenance, ContentHash, IndexEntry, Scope, TrustLevel,
};
use thiserror::Error;
use tracing::instrument;

use crate::Job;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StageError {
    /// The tier may not create entries in the job's scope (e.g. a pull
    /// request's credentials and the default branch).
    #[error("{tier} uploads may not create entries in {git_ref}")]
    NotWritable { tier: TrustLevel, git_ref: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an upload is for: the entry identity its claim binds it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: Scope,
    pub cache_version: String,
    pub cache_key: String,
}

/// The staging tier `job`'s uploads go to: its trust capped by what the
/// credentials carry (`max_trust`), refused if that tier may not create
/// entries in the job's scope.
pub fn tier_for(job: &Job, max_trust: TrustLevel) -> Result<TrustLevel, StageError> {
    let tier = job.trust.min(max_trust);
    if tier.may_write_ref(&job.scope.git_ref, &job.default_branch) {
        Ok(tier)
    } else {
        Err(StageError::NotWritable {
            tier,
            git_ref: job.scope.git_ref.clone(),
        })
    }
}

/// The live entry that already holds `claim`'s identity, if any: then
/// there is nothing to upload (keys are immutable).
pub async fn existing(backend: &Backend, claim: &Claim) -> Result<Option<IndexEntry>, StoreError> {
    Ok(backend
        .index
        .get(&claim.scope, &claim.cache_version, &claim.cache_key)
        .await?
        .filter(IndexEntry::is_live))
}

/// One upload to the staging area.
#[derive(Debug, Clone)]
pub struct Upload {
    pub upload_id: String,
    pub staging_key: String,
    pub tier: TrustLevel,
    pub claim: Claim,
}

/// What the uploader knows of the bytes it wrote, for the event.
#[derive(Debug, Clone)]
pub struct Written {
    /// SHA-256 of the bytes as uploaded (the claim promote checks).
    pub hash: ContentHash,
    pub size_bytes: u64,
    /// Uncompressed tar size, when the uploader archived it itself.
    pub unpacked_bytes: Option<u64>,
    pub paths: Vec<String>,
    pub compression: String,
    /// Kept with the entry and returned as sent (see
    /// [`ArtifactStaged::attributes`]); empty for archives.
    pub attributes: BTreeMap<String, String>,
}

impl Upload {
    /// A new upload id under `staging/{tier}/`.
    pub fn new(tier: TrustLevel, claim: Claim) -> Self {
        let upload_id = staging::new_upload_id();
        Self {
            staging_key: staging::key(tier, &upload_id),
            upload_id,
            tier,
            claim,
        }
    }

    /// The metadata written with the bytes: the claim and the labels.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        staging::metadata(
            &self.claim.cache_key,
            &self.claim.scope,
            &self.claim.cache_version,
        )
    }

    /// Streams `body` to the staging key.
    #[instrument(skip_all, fields(upload_id = %self.upload_id))]
    pub async fn put(&self, backend: &Backend, body: BlobReader) -> Result<BlobMeta, StoreError> {
        backend
            .blobs
            .put(&self.staging_key, body, self.metadata())
            .await
    }

    /// Removes the staged bytes (an upload that will not be announced).
    pub async fn discard(&self, backend: &Backend) -> Result<(), StoreError> {
        backend.blobs.delete(&self.staging_key).await
    }

    /// Sends `artifact.staged` for the staged bytes: from here promote
    /// owns them. `provenance.trust` is set to the upload's tier.
    #[instrument(skip_all, fields(upload_id = %self.upload_id))]
    pub async fn announce(
        &self,
        backend: &Backend,
        written: Written,
        mut provenance: BuildProvenance,
        traceparent: &str,
    ) -> Result<ArtifactStaged, StoreError> {
        provenance.trust = self.tier;
        let event = ArtifactStaged {
            upload_id: self.upload_id.clone(),
            staging_key: self.staging_key.clone(),
            claimed_hash: written.hash,
            size_bytes: written.size_bytes,
            cache_key: self.claim.cache_key.clone(),
            scope: self.claim.scope.clone(),
            cache_version: self.claim.cache_version.clone(),
            paths: written.paths,
            compression: written.compression,
            unpacked_bytes: written.unpacked_bytes,
            staged_at: Utc::now(),
            provenance,
            attributes: written.attributes,
        };
        backend
            .staged
            .send(OutgoingMessage::event(&event, traceparent))
            .await?;
        Ok(event)
    }
}
