//! sweep: the batch job that keeps the cache within its bounds. Not
//! queue-driven: `runcache-worker sweep --once` runs it on a schedule (one
//! at a time, though two overlapping runs are safe, see below). Every time
//! comes from the backend's clock, so tests move a `ManualClock`.
//!
//! Steps, each safe to repeat and to crash after (the next run resumes):
//! 1. **TTL.** Live entries not accessed for `ttl` → `evicted` (audit rule
//!    `ttl`).
//! 2. **Quota**, per repository, LRU within trust tiers ([`Tier`]): while a
//!    repository's live entries exceed `quota_bytes`, evict the least
//!    recently used entry of the lowest tier that has one (audit rule
//!    `quota`). Pull-request and untrusted entries go first, then other
//!    branches and tags, and default-branch entries built by trusted
//!    triggers last. So an entry of a tier is evicted only when that tier
//!    and the tiers above it *alone* exceed the quota: no flood of
//!    lower-trust writes can evict a default-branch entry.
//! 3. **Unreferenced blobs**: the protocol below.
//! 4. **Expired records**: invalidated or evicted records past their `ttl`
//!    attribute are removed from the index.
//! 5. **Staging**: incomplete uploads are aborted and `staging/` objects
//!    (and promote's pins, `quarantine/promoting/`) older than
//!    `staging_max_age` (1 day, as the bucket's lifecycle rule) deleted.
//! 6. The gauges ([`crate::metrics::publish_gauges`]).
//!
//! Every eviction is audited *before* its state change (write-ahead, id
//! `evicted-{rule}-{entry fingerprint}`, idempotent), and its `evicted`
//! outcome for metrics is sent before it too: a crash between them leaves
//! the record (and maybe a count) for an eviction the next run repeats
//! (same audit id), never an eviction without a record. The price: if an
//! invalidation takes the entry out of service between the scan and
//! `set_state`, there is also an eviction record for it. Every blob deletion is audited (action `deleted`) before it
//! becomes final; a run that crashes mid-way may leave a deletion audited
//! under two run ids, never under none.
//!
//! # Deleting blobs without racing promote
//!
//! promote may *deduplicate* onto an existing blob: it sees
//! `artifacts/{h}` (step 3), and inserts an entry pointing at it later
//! (step 5). A sweep that found `h` unreferenced in between would, if it
//! simply deleted it, leave that new entry dangling. Re-checking references
//! right before each delete, or comparing timestamps, narrows the window
//! but cannot close it with these ports: whatever the sweep checks last,
//! promote's insert can land between that check and the delete, and neither
//! the blob store nor the index offers a conditional delete or a lock.
//!
//! So the sweep keeps the bytes recoverable until it has proof that no one
//! references them, and promote checks after its insert ("mark, delete,
//! then forget"):
//!
//! - **G1 candidates.** List `artifacts/` and `metadata/`; *then* scan the
//!   index for live hashes (L1). A hash is a candidate if no live entry
//!   references it and its objects are older than `grace` (1 h): fresh
//!   objects belong to promotions in flight.
//! - **G2 unlink.** Per candidate: head again (skip it if now fresh); copy
//!   `artifacts/{h}` to `quarantine/sweep/{run}/{h}` (the *pending* copy),
//!   then delete `artifacts/{h}` and `metadata/{h}.json`.
//! - **G3 confirm.** Scan the index again (L2), after every G2 delete. A
//!   hash that L2 shows referenced is *rescued*: the pending copy is
//!   streamed back into `artifacts/{h}` through the verifying reader, and
//!   `metadata/{h}.json` rewritten from the provenance store. Otherwise the
//!   deletion is final: audit it, delete the pending copy.
//! - **promote step 6.** After inserting its entry, promote checks that
//!   `artifacts/{h}` and `metadata/{h}.json` exist and re-stores them from
//!   the staged bytes (verified again) if not.
//!
//! Why this is safe: let promote insert an entry for `h` at time C, and the
//! sweep delete `artifacts/{h}` at B and start L2 at S > B. If C < S, L2
//! sees the entry and the sweep rescues the bytes. If C > S, then promote's
//! step 6 runs after C > B, finds the object missing and re-stores it. Either
//! way the object exists once both are done. The cost is a short window in
//! which a restore of that one new entry fails (a warning, not a broken
//! build) — only when a promotion dedups onto a blob that had been
//! unreferenced for the whole grace period at the very moment a sweep
//! removes it. A rescue writes through the hashing reader, so the CAS
//! invariant never depends on what lies in `quarantine/`; and promote
//! refuses upload ids containing `/`, so no rejected upload can be
//! quarantined onto a pending key.
//!
//! A run that crashes between G2 and G3 leaves pending copies. Every run
//! also looks at other runs' pending copies after its L2: it rescues those
//! whose hash is referenced (always safe: it only writes verified bytes),
//! and deletes those older than `pending_max_age` (1 day, far longer than a
//! run). A younger one may belong to a run still in progress, whose own G3
//! decides. The bucket's `quarantine/` lifecycle rule is the last net.
//!
//! Consistency the ports must give: a scan reflects every write that
//! completed before it started (DynamoDB: `ConsistentRead`).

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use runcache_infra::{
    index::live_hashes, names, Backend, BlobMeta, Config, StateChange, StoreError,
};
use runcache_schemas::{
    AuditAction, AuditRecord, ContentHash, Contract, EntryState, IndexEntry, OutcomeKind, Scope,
    TrustLevel,
};
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::{
    metrics::{publish_gauges, RepositoryGauges},
    records::{entry_fingerprint, entry_outcome, send_outcome, short_digest},
};
use runcache_infra::digest::HashingReader;

/// Where G2 keeps the bytes of blobs it unlinked until G3 decides:
/// `quarantine/sweep/{run}/{hex}`. Worker-only, and expired by the
/// `quarantine/` lifecycle rule.
pub const PENDING_PREFIX: &str = names::SWEEP_PENDING_PREFIX;

/// The audit `repository` of a deleted blob that no provenance record names.
pub const UNKNOWN_REPOSITORY: &str = "(unknown)";

const PAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// Live entries not accessed for this long are evicted.
    pub ttl: Duration,
    /// Per repository.
    pub quota_bytes: u64,
    /// The branch whose trusted entries are evicted last.
    pub default_branch: String,
    /// Objects younger than this are never deleted (promotions in flight).
    pub grace: Duration,
    /// `staging/` objects and incomplete uploads older than this are removed.
    pub staging_max_age: Duration,
    /// Other runs' pending copies older than this are finished off.
    pub pending_max_age: Duration,
    /// Recorded as the actor of evictions and deletions.
    pub worker_id: String,
}

impl SweepConfig {
    pub fn from_config(config: &Config, worker_id: &str) -> Self {
        Self {
            ttl: Duration::from_secs(u64::from(config.ttl_days) * 86_400),
            quota_bytes: config.quota_bytes,
            default_branch: config.default_branch.clone(),
            grace: Duration::from_secs(3600),
            staging_max_age: Duration::from_secs(86_400),
            pending_max_age: Duration::from_secs(86_400),
            worker_id: worker_id.to_string(),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub run_id: String,
    pub ttl_evicted: u64,
    pub quota_evicted: u64,
    /// Sum of the evicted entries' sizes.
    pub bytes_evicted: u64,
    /// `artifacts/` objects deleted for good.
    pub blobs_deleted: u64,
    pub bytes_deleted: u64,
    pub metadata_deleted: u64,
    /// Unlinked in G2 but referenced again by G3 (a promotion raced us), or
    /// leftovers of an earlier run that were still referenced.
    pub blobs_rescued: u64,
    /// Candidates that turned fresh before G2 reached them.
    pub skipped_fresh: u64,
    /// Leftover pending copies of earlier runs that were finished off.
    pub leftovers_finished: u64,
    pub records_removed: u64,
    pub staging_deleted: u64,
    pub uploads_aborted: u64,
    pub gauges: Vec<RepositoryGauges>,
}

/// Eviction order within a repository, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Pull-request scopes, and anything built by an untrusted or
    /// pull-request trigger wherever it was saved (`pull_request_target`
    /// writes into the base branch's scope).
    LowTrust,
    /// Other branches, tags, and default-branch entries of a branch-level
    /// trigger.
    Branch,
    /// The default branch, built by a protected trigger.
    DefaultBranch,
}

/// The tier of an entry.
pub fn tier(entry: &IndexEntry, default_branch: &str) -> Tier {
    let default_ref = Scope::new("", "").branch(default_branch).git_ref;
    if entry.trust <= TrustLevel::PullRequest || entry.scope().is_pull_request() {
        Tier::LowTrust
    } else if entry.git_ref == default_ref && entry.trust == TrustLevel::Protected {
        Tier::DefaultBranch
    } else {
        Tier::Branch
    }
}

/// Which of one repository's live entries the quota evicts, in order: the
/// least recently used of the lowest tier first, until the rest fit.
pub fn quota_victims<'a>(
    live: &[&'a IndexEntry],
    quota_bytes: u64,
    default_branch: &str,
) -> Vec<&'a IndexEntry> {
    let mut total: u64 = live.iter().map(|e| e.size_bytes).sum();
    if total <= quota_bytes {
        return Vec::new();
    }
    let mut order: Vec<&IndexEntry> = live.to_vec();
    order.sort_by(|a, b| {
        (
            tier(a, default_branch),
            a.last_accessed,
            a.created_at,
            &a.cache_key,
        )
            .cmp(&(
                tier(b, default_branch),
                b.last_accessed,
                b.created_at,
                &b.cache_key,
            ))
    });
    let mut victims = Vec::new();
    for e in order {
        if total <= quota_bytes {
            break;
        }
        total -= e.size_bytes;
        victims.push(e);
    }
    victims
}

/// Runs one sweep.
#[instrument(skip_all, fields(worker = %cfg.worker_id))]
pub async fn sweep(backend: &Backend, cfg: &SweepConfig) -> Result<SweepReport, StoreError> {
    let run = Sweep {
        b: backend,
        cfg,
        run_id: format!(
            "{}-{}",
            backend.clock.now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
    };
    let mut report = SweepReport {
        run_id: run.run_id.clone(),
        ..Default::default()
    };
    run.evict(&mut report).await?;
    run.collect_garbage(&mut report).await?;
    run.remove_expired_records(&mut report).await?;
    run.clean_staging(&mut report).await?;
    report.gauges = publish_gauges(backend).await?;
    info!(
        ttl_evicted = report.ttl_evicted,
        quota_evicted = report.quota_evicted,
        blobs_deleted = report.blobs_deleted,
        bytes_deleted = report.bytes_deleted,
        blobs_rescued = report.blobs_rescued,
        records_removed = report.records_removed,
        staging_deleted = report.staging_deleted,
        "sweep finished"
    );
    Ok(report)
}

struct Sweep<'a> {
    b: &'a Backend,
    cfg: &'a SweepConfig,
    run_id: String,
}

/// What G2 did to one hash.
struct Unlinked {
    hash: ContentHash,
    /// The pending copy of `artifacts/{h}` and its size, if there was one.
    pending: Option<(String, u64)>,
    artifact_deleted: bool,
    metadata_deleted: bool,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Sweep<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.b.clock.now()
    }

    async fn all_entries(&self) -> Result<Vec<IndexEntry>, StoreError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.b.index.scan(cursor.as_deref(), PAGE).await?;
            all.extend(page.entries);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<BlobMeta>, StoreError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.b.blobs.list(prefix, after.as_deref(), PAGE).await?;
            all.extend(page.objects);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Steps 1 and 2.
    #[instrument(skip_all)]
    async fn evict(&self, report: &mut SweepReport) -> Result<(), StoreError> {
        let now = self.now();
        let idle_since = now - chrono_duration(self.cfg.ttl);
        let entries = self.all_entries().await?;
        let mut by_repo: BTreeMap<&str, Vec<&IndexEntry>> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.is_live()) {
            if e.last_accessed < idle_since {
                let reason = format!(
                    "not accessed for {} days (last {})",
                    self.cfg.ttl.as_secs() / 86_400,
                    e.last_accessed.to_rfc3339()
                );
                if self.evict_one(e, "ttl", &reason).await? {
                    report.ttl_evicted += 1;
                    report.bytes_evicted += e.size_bytes;
                }
            } else {
                by_repo.entry(e.repository.as_str()).or_default().push(e);
            }
        }
        for (repo, live) in by_repo {
            let victims = quota_victims(&live, self.cfg.quota_bytes, &self.cfg.default_branch);
            if victims.is_empty() {
                continue;
            }
            info!(
                repository = repo,
                victims = victims.len(),
                "repository over its quota"
            );
            for e in victims {
                let reason = format!(
                    "repository {repo} over its quota of {} bytes; least recently used of tier {:?}",
                    self.cfg.quota_bytes,
                    tier(e, &self.cfg.default_branch)
                );
                if self.evict_one(e, "quota", &reason).await? {
                    report.quota_evicted += 1;
                    report.bytes_evicted += e.size_bytes;
                }
            }
        }
        Ok(())
    }

    /// Audit and outcome (both write-ahead), then the state change;
    /// `false` if the entry had changed under us (it was no longer live).
    async fn evict_one(
        &self,
        e: &IndexEntry,
        rule: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        self.b
            .index
            .append_audit(&AuditRecord {
                audit_id: format!("evicted-{rule}-{}", entry_fingerprint(e)),
                action: AuditAction::Evicted,
                repository: e.repository.clone(),
                git_ref: Some(e.git_ref.clone()),
                cache_key: Some(e.cache_key.clone()),
                cache_version: Some(e.cache_version.clone()),
                content_hash: Some(e.content_hash.clone()),
                reason: reason.to_string(),
                rule: rule.to_string(),
                actor: self.cfg.worker_id.clone(),
                at: now,
            })
            .await?;
        send_outcome(self.b, &entry_outcome(OutcomeKind::Evicted, e, reason, now)).await?;
        self.b
            .index
            .set_state(
                &e.scope(),
                &e.cache_version,
                &e.cache_key,
                &StateChange {
                    state: EntryState::Evicted,
                    at: now,
                    reason: reason.to_string(),
                    by: self.cfg.worker_id.clone(),
                },
            )
            .await
    }

    /// Step 3: G1 → G2 → G3, then other runs' leftovers.
    #[instrument(skip_all, fields(run = %self.run_id))]
    async fn collect_garbage(&self, report: &mut SweepReport) -> Result<(), StoreError> {
        let cutoff = self.now() - chrono_duration(self.cfg.grace);

        // G1: list first, then L1, so that anything referenced before the
        // listing is known.
        let mut newest: BTreeMap<ContentHash, DateTime<Utc>> = BTreeMap::new();
        for (prefix, suffix) in [
            (names::ARTIFACTS_PREFIX, ""),
            (names::METADATA_PREFIX, ".json"),
        ] {
            for meta in self.list_all(prefix).await? {
                let Some(hash) = hash_in(&meta.key, prefix, suffix) else {
                    warn!(key = %meta.key, "not a content address; left alone (`runcache admin verify` reports it)");
                    continue;
                };
                let t = newest.entry(hash).or_insert(meta.last_modified);
                *t = (*t).max(meta.last_modified);
            }
        }
        let live = live_hashes(&*self.b.index).await?;
        let candidates: Vec<ContentHash> = newest
            .into_iter()
            .filter(|(h, t)| !live.contains(h) && *t < cutoff)
            .map(|(h, _)| h)
            .collect();

        // G2. On an error, stop unlinking but still confirm (G3) what was
        // unlinked so far, so that nothing a promotion needs waits for the
        // next run.
        let mut unlinked = Vec::new();
        let mut first_error = None;
        for hash in candidates {
            match self.unlink(&hash, cutoff, &mut unlinked).await {
                Ok(true) => {}
                Ok(false) => report.skipped_fresh += 1,
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }

        // G3: L2 starts after every G2 delete.
        let live = match live_hashes(&*self.b.index).await {
            Ok(live) => live,
            Err(e) => {
                warn!(error = %e, "cannot confirm deletions; putting unlinked blobs back");
                for u in &unlinked {
                    if let Err(e) = self.rescue(u).await {
                        warn!(hash = %u.hash, error = %e, "could not put a blob back; the next sweep will");
                    }
                }
                return Err(e);
            }
        };
        for u in &unlinked {
            if let Err(e) = self.confirm(u, &live, report).await {
                warn!(hash = %u.hash, error = %e, "could not confirm an unlinked blob; the next sweep will");
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.finish_leftovers(&live, report).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// G3 for one unlinked hash: rescue it if referenced, else make the
    /// deletion final (audit first).
    async fn confirm(
        &self,
        u: &Unlinked,
        live: &HashSet<ContentHash>,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        if live.contains(&u.hash) {
            info!(hash = %u.hash, "a promotion referenced an unlinked blob; rescuing it");
            self.rescue(u).await?;
            report.blobs_rescued += 1;
            return Ok(());
        }
        if !u.artifact_deleted && !u.metadata_deleted {
            // Copied aside but never removed: nothing to confirm.
            if let Some((pending, _)) = &u.pending {
                self.b.blobs.delete(pending).await?;
            }
            return Ok(());
        }
        let size = u
            .pending
            .as_ref()
            .filter(|_| u.artifact_deleted)
            .map(|(_, s)| *s);
        self.audit_deletion(&u.hash, &self.run_id, size).await?;
        if let Some((pending, size)) = &u.pending {
            self.b.blobs.delete(pending).await?;
            if u.artifact_deleted {
                report.blobs_deleted += 1;
                report.bytes_deleted += size;
            }
        }
        if u.metadata_deleted {
            report.metadata_deleted += 1;
        }
        Ok(())
    }

    /// G2 for one hash; `false` if one of its objects turned fresh. Pushes
    /// onto `unlinked` as soon as anything is gone, so that G3 confirms it
    /// even if a later step here fails.
    async fn unlink(
        &self,
        hash: &ContentHash,
        cutoff: DateTime<Utc>,
        unlinked: &mut Vec<Unlinked>,
    ) -> Result<bool, StoreError> {
        let art_key = names::artifact_key(hash.hex());
        let meta_key = names::metadata_key(hash.hex());
        let art = self.b.blobs.head(&art_key).await?;
        let meta = self.b.blobs.head(&meta_key).await?;
        if [&art, &meta]
            .into_iter()
            .flatten()
            .any(|m| m.last_modified >= cutoff)
        {
            return Ok(false);
        }
        let mut pending = None;
        if art.is_some() {
            let key = format!("{PENDING_PREFIX}{}/{}", self.run_id, hash.hex());
            match self.b.blobs.copy(&art_key, &key).await {
                Ok(copied) => pending = Some((key, copied.size)),
                // Deleted since the head: nothing to keep.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let copied = pending.is_some();
        unlinked.push(Unlinked {
            hash: hash.clone(),
            pending,
            artifact_deleted: false,
            metadata_deleted: false,
        });
        if copied {
            self.b.blobs.delete(&art_key).await?;
            if let Some(u) = unlinked.last_mut() {
                u.artifact_deleted = true;
            }
        }
        if meta.is_some() {
            self.b.blobs.delete(&meta_key).await?;
            if let Some(u) = unlinked.last_mut() {
                u.metadata_deleted = true;
            }
        }
        Ok(true)
    }

    /// Puts an unlinked blob back, then drops the pending copy.
    async fn rescue(&self, u: &Unlinked) -> Result<(), StoreError> {
        self.restore(&u.hash, u.pending.as_ref().map(|(k, s)| (k.as_str(), *s)))
            .await?;
        if let Some((pending, _)) = &u.pending {
            self.b.blobs.delete(pending).await?;
        }
        Ok(())
    }

    /// `artifacts/{h}` from the pending copy through the verifying reader
    /// (unless a promotion already re-stored it), and `metadata/{h}.json`
    /// from the provenance store if it is missing.
    async fn restore(
        &self,
        hash: &ContentHash,
        pending: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        let art_key = names::artifact_key(hash.hex());
        if let Some((pending, size)) = pending {
            if self.b.blobs.head(&art_key).await?.is_none() {
                let body = self.b.blobs.get(pending, None).await?;
                let (reader, _) = HashingReader::new(body, Some((hash.clone(), size)));
                self.b
                    .blobs
                    .put(&art_key, Box::pin(reader), BTreeMap::new())
                    .await?;
            }
        }
        let meta_key = names::metadata_key(hash.hex());
        if self.b.blobs.head(&meta_key).await?.is_none() {
            if let Some(first) = self.b.provenance.get(hash).await?.into_iter().next() {
                self.b
                    .blobs
                    .put(
                        &meta_key,
                        Box::pin(std::io::Cursor::new(first.encode().into_bytes())),
                        BTreeMap::new(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Other runs' pending copies: rescue the referenced ones, finish off
    /// the stale ones.
    async fn finish_leftovers(
        &self,
        live: &HashSet<ContentHash>,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let own = format!("{PENDING_PREFIX}{}/", self.run_id);
        let stale_before = self.now() - chrono_duration(self.cfg.pending_max_age);
        for meta in self.list_all(PENDING_PREFIX).await? {
            if meta.key.starts_with(&own) {
                continue;
            }
            let Some((run, hash)) = meta
                .key
                .strip_prefix(PENDING_PREFIX)
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(run, hex)| Some((run.to_string(), ContentHash::from_hex(hex).ok()?)))
            else {
                continue;
            };
            let stale = meta.last_modified < stale_before;
            let referenced = live.contains(&hash);
            let art_key = names::artifact_key(hash.hex());
            let artifact_exists = self.b.blobs.head(&art_key).await?.is_some();
            if referenced && !artifact_exists {
                info!(%hash, %run, "rescuing a referenced blob an earlier sweep left unlinked");
                self.restore(&hash, Some((&meta.key, meta.size))).await?;
                report.blobs_rescued += 1;
            }
            // A younger copy may belong to a run still in progress: its own
            // G3 decides.
            if stale {
                if !referenced && !artifact_exists {
                    self.audit_deletion(&hash, &run, Some(meta.size)).await?;
                    report.blobs_deleted += 1;
                    report.bytes_deleted += meta.size;
                }
                self.b.blobs.delete(&meta.key).await?;
                report.leftovers_finished += 1;
            }
        }
        Ok(())
    }

    /// One `deleted` audit record per repository that ever promoted the
    /// blob (from its provenance), written before the deletion is final.
    async fn audit_deletion(
        &self,
        hash: &ContentHash,
        run: &str,
        size: Option<u64>,
    ) -> Result<(), StoreError> {
        let repos: BTreeSet<String> = self
            .b
            .provenance
            .get(hash)
            .await?
            .into_iter()
            .map(|p| p.scope.repository)
            .collect();
        let repos = if repos.is_empty() {
            BTreeSet::from([UNKNOWN_REPOSITORY.to_string()])
        } else {
            repos
        };
        let reason = match size {
            Some(size) => format!(
                "no live entry references it ({size} bytes) for longer than the grace period"
            ),
            None => "orphaned provenance document: no live entry references it".to_string(),
        };
        for repo in repos {
            self.b
                .index
                .append_audit(&AuditRecord {
                    audit_id: format!("deleted-{run}-{}-{}", hash.hex(), short_digest(&repo)),
                    action: AuditAction::Deleted,
                    repository: repo,
                    git_ref: None,
                    cache_key: None,
                    cache_version: None,
                    content_hash: Some(hash.clone()),
                    reason: reason.clone(),
                    rule: "unreferenced".into(),
                    actor: self.cfg.worker_id.clone(),
                    at: self.now(),
                })
                .await?;
        }
        Ok(())
    }

    /// Step 4: records past their `ttl`. Live records are kept whatever
    /// their `ttl` (it slides with every access, so it passes only for
    /// idle entries, and the TTL eviction of step 1, with the configured
    /// idle time, is what ends a live entry's life).
    #[instrument(skip_all)]
    async fn remove_expired_records(&self, report: &mut SweepReport) -> Result<(), StoreError> {
        let now = self.now().timestamp();
        for e in self.all_entries().await? {
            if !e.is_live() && e.ttl < now {
                self.b
                    .index
                    .remove(&e.scope(), &e.cache_version, &e.cache_key)
                    .await?;
                report.records_removed += 1;
            }
        }
        Ok(())
    }

    /// Step 5.
    #[instrument(skip_all)]
    async fn clean_staging(&self, report: &mut SweepReport) -> Result<(), StoreError> {
        let before = self.now() - chrono_duration(self.cfg.staging_max_age);
        report.uploads_aborted = self.b.blobs.abort_stale_uploads(before).await?;
        // Uploads never promoted, and promote's pins left by a crash whose
        // message never came back.
        for prefix in [names::STAGING_PREFIX, names::PROMOTING_PREFIX] {
            for meta in self.list_all(prefix).await? {
                if meta.last_modified < before {
                    self.b.blobs.delete(&meta.key).await?;
                    report.staging_deleted += 1;
                }
            }
        }
        Ok(())
    }
}

/// The hash in `{prefix}{hex}{suffix}`, if it is one.
fn hash_in(key: &str, prefix: &str, suffix: &str) -> Option<ContentHash> {
    let hex = key.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    ContentHash::from_hex(hex).ok()
}
