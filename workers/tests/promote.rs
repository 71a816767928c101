//! promote's invariants, on both backends (`local::…`, `aws_moto::…`): a
//! tampered upload is rejected and never indexed; duplicate delivery and a
//! crash after any step end with one entry, a correct CAS object and no
//! staging object; poison messages are dead-lettered.

mod support;

use std::{sync::Arc, time::Duration};

use runcache_infra::{names, staging, OutgoingMessage};
use runcache_schemas::{
    ArtifactStaged, AuditAction, ContentHash, Contract, Event, IndexEntry, Scope, TrustLevel,
};
use runcache_worker::{drain, promote::WrittenUpload, ConsumerConfig, Outcome, Promoter};
use support::{crashing, hash_of, main_scope, promoter, read, staged, Env, Faults, Intercepted};

crate::backend_tests!(
    a_verified_upload_is_promoted_indexed_and_traced,
    a_tampered_staging_object_is_quarantined_and_never_indexed,
    a_size_that_differs_from_the_claim_is_rejected,
    a_tampered_upload_of_an_existing_blob_is_still_rejected,
    identical_content_is_deduplicated,
    a_second_save_of_a_key_is_a_no_op,
    duplicate_delivery_through_the_queue_ends_in_one_entry,
    poison_messages_go_to_the_dead_letter_queue,
    an_upload_id_that_is_not_a_plain_token_is_rejected,
    refused_claims_a_trust_above_the_staging_tier,
    refused_claims_a_scope_the_tier_may_not_write,
    refused_claims_an_upload_made_for_another_key_or_scope,
    a_crash_after_any_promote_step_then_redelivery_ends_consistent,
    a_crash_after_any_reject_step_then_redelivery_ends_consistent,
    a_written_upload_is_promoted_on_its_digest,
    a_written_upload_replaced_after_the_save_is_hashed_and_rejected,
);

/// `artifact.staged` for upload `upload` claiming `claimed` and `size`,
/// under the key `deps-linux-abc` on main.
fn event(e: &Env, upload: &str, claimed: ContentHash, size: u64) -> ArtifactStaged {
    let mut ev = staged(upload, b"", "deps-linux-abc", &main_scope(), e.now());
    ev.claimed_hash = claimed;
    ev.size_bytes = size;
    ev
}

/// Uploads `bytes` for `event(e, upload, …)` (its key, scope and claim).
async fn put_staging(e: &Env, upload: &str, bytes: &[u8]) {
    support::stage(&e.backend, &event(e, upload, hash_of(b""), 0), bytes).await;
}

/// The staging key of upload `upload` (a protected push, as `event`).
fn staging(upload: &str) -> String {
    staging::key(TrustLevel::Protected, upload)
}

async fn entries(e: &Env) -> Vec<IndexEntry> {
    support::all_entries(&e.backend).await
}

async fn exists(e: &Env, key: &str) -> bool {
    support::exists(&e.backend, key).await
}

async fn artifacts(e: &Env) -> Vec<String> {
    support::keys_under(&e.backend, names::ARTIFACTS_PREFIX).await
}

async fn a_verified_upload_is_promoted_indexed_and_traced(e: Env) {
    let bytes = b"archive bytes".to_vec();
    put_staging(&e, "u1", &bytes).await;
    let ev = event(&e, "u1", hash_of(&bytes), bytes.len() as u64);
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    let cas = names::artifact_key(ev.claimed_hash.hex());
    assert_eq!(read(&e.backend, &cas).await, bytes);
    assert!(!exists(&e, &staging("u1")).await);
    let all = entries(&e).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].content_hash, ev.claimed_hash);
    assert_eq!(all[0].s3_key, cas);
    let prov = e.backend.provenance.get(&ev.claimed_hash).await.unwrap();
    assert_eq!(prov.len(), 1);
    assert_eq!(prov[0].promoted_by, "test-worker");
    let doc =
        String::from_utf8(read(&e.backend, &names::metadata_key(ev.claimed_hash.hex())).await)
            .unwrap();
    assert!(doc.contains("\"schema\":\"provenance.record\""));
    let out = e
        .backend
        .accessed
        .receive(10, Duration::ZERO, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert!(
        matches!(Event::decode(&out[0].body).unwrap(), Event::Outcome(o) if o.kind == runcache_schemas::OutcomeKind::Promoted)
    );
}

async fn a_tampered_staging_object_is_quarantined_and_never_indexed(e: Env) {
    let good = b"the bytes the runner hashed".to_vec();
    put_staging(&e, "u1", b"the bytes someone swapped in").await;
    let ev = event(&e, "u1", hash_of(&good), good.len() as u64);
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    assert!(entries(&e).await.is_empty(), "never indexed");
    assert!(
        !exists(&e, &names::artifact_key(ev.claimed_hash.hex())).await,
        "nothing at artifacts/{{claimed}}"
    );
    assert!(artifacts(&e).await.is_empty());
    assert!(exists(&e, "quarantine/u1").await, "kept for inspection");
    assert!(!exists(&e, &staging("u1")).await);
    let audit = e.backend.index.audit_log("acme/app", 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert!(audit[0].reason.contains("claimed"), "{}", audit[0].reason);
    // Redelivery of the same message is harmless.
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    assert!(entries(&e).await.is_empty());
    assert!(artifacts(&e).await.is_empty());
}

async fn a_size_that_differs_from_the_claim_is_rejected(e: Env) {
    let bytes = b"exact bytes".to_vec();
    put_staging(&e, "u1", &bytes).await;
    let ev = event(&e, "u1", hash_of(&bytes), bytes.len() as u64 + 1);
    promoter(&e.backend).promote(&ev).await.unwrap();
    assert!(entries(&e).await.is_empty());
    assert!(artifacts(&e).await.is_empty());
    assert!(exists(&e, "quarantine/u1").await);
}

async fn a_tampered_upload_of_an_existing_blob_is_still_rejected(e: Env) {
    let bytes = b"popular".to_vec();
    put_staging(&e, "u1", &bytes).await;
    promoter(&e.backend)
        .promote(&event(&e, "u1", hash_of(&bytes), 7))
        .await
        .unwrap();
    let mut ev = event(&e, "u2", hash_of(&bytes), 7);
    ev.cache_key = "other-key".into();
    support::stage(&e.backend, &ev, b"garbage").await;
    promoter(&e.backend).promote(&ev).await.unwrap();
    assert_eq!(entries(&e).await.len(), 1, "the dedup path verifies too");
    assert!(exists(&e, "quarantine/u2").await);
    let cas = names::artifact_key(hash_of(&bytes).hex());
    assert_eq!(
        read(&e.backend, &cas).await,
        bytes,
        "the CAS object is intact"
    );
}

async fn identical_content_is_deduplicated(e: Env) {
    let bytes = b"same".to_vec();
    put_staging(&e, "u1", &bytes).await;
    promoter(&e.backend)
        .promote(&event(&e, "u1", hash_of(&bytes), 4))
        .await
        .unwrap();
    let mut ev = event(&e, "u2", hash_of(&bytes), 4);
    ev.cache_key = "another-key".into();
    support::stage(&e.backend, &ev, &bytes).await;
    promoter(&e.backend).promote(&ev).await.unwrap();
    assert_eq!(entries(&e).await.len(), 2);
    assert_eq!(artifacts(&e).await.len(), 1);
}

async fn a_second_save_of_a_key_is_a_no_op(e: Env) {
    put_staging(&e, "u1", b"first").await;
    put_staging(&e, "u2", b"second").await;
    promoter(&e.backend)
        .promote(&event(&e, "u1", hash_of(b"first"), 5))
        .await
        .unwrap();
    promoter(&e.backend)
        .promote(&event(&e, "u2", hash_of(b"second"), 6))
        .await
        .unwrap();
    let all = entries(&e).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].content_hash, hash_of(b"first"), "keys are immutable");
    assert!(!exists(&e, &staging("u2")).await);
}

async fn duplicate_delivery_through_the_queue_ends_in_one_entry(e: Env) {
    let bytes = b"delivered twice".to_vec();
    put_staging(&e, "u1", &bytes).await;
    let body = event(&e, "u1", hash_of(&bytes), bytes.len() as u64).encode();
    e.backend
        .staged
        .send(OutgoingMessage::new(body.clone()))
        .await
        .unwrap();
    e.backend
        .staged
        .send(OutgoingMessage::new(body))
        .await
        .unwrap();
    let report = drain(
        e.backend.staged.clone(),
        Arc::new(promoter(&e.backend)),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.done, 2);
    let all = entries(&e).await;
    assert_eq!(all.len(), 1);
    assert_eq!(read(&e.backend, &all[0].s3_key).await, bytes);
    assert_eq!(artifacts(&e).await, [all[0].s3_key.clone()]);
    assert!(!exists(&e, &staging("u1")).await);
    assert_eq!(e.backend.staged.depth().await.unwrap().visible, 0);
}

async fn poison_messages_go_to_the_dead_letter_queue(e: Env) {
    for body in [
        "{not json",
        r#"{"schema":"cache.exploded","version":1}"#,
        r#"{"schema":"artifact.staged","version":9}"#,
    ] {
        e.backend
            .staged
            .send(OutgoingMessage::new(body))
            .await
            .unwrap();
    }
    let report = drain(
        e.backend.staged.clone(),
        Arc::new(promoter(&e.backend)),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.rejected, 3);
    let dead = e.backend.staged.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 3);
    // A standard queue keeps no order: find each message's reason.
    let reason = |body: &str| {
        dead.iter()
            .find(|m| m.body.contains(body))
            .map(|m| m.attributes["deadLetterReason"].clone())
            .unwrap_or_else(|| panic!("{body} was not dead-lettered"))
    };
    assert!(reason("{not json").contains("malformed"));
    assert!(reason("cache.exploded").contains("unknown schema `cache.exploded`"));
    assert!(reason("\"version\":9").contains("unsupported version 9"));
    assert_eq!(e.backend.staged.depth().await.unwrap().visible, 0);
}

async fn an_upload_id_that_is_not_a_plain_token_is_rejected(e: Env) {
    for id in ["sweep/abc", "../x", "", ".hidden", "a b"] {
        let mut ev = event(&e, "u1", hash_of(b"x"), 1);
        ev.upload_id = id.into();
        ev.staging_key = staging(id);
        assert!(
            matches!(
                promoter(&e.backend).promote(&ev).await.unwrap(),
                Outcome::Reject { reason } if reason.contains("plain token")
            ),
            "{id:?}"
        );
    }
    assert!(entries(&e).await.is_empty());
}

// ---- crash after every step -------------------------------------------

/// Crashes a promotion at its 1st, 2nd, … write (each on a fresh
/// environment of `first`'s backend), redelivers to a healthy worker, and
/// checks the end state; returns how many write steps it covered.
async fn crash_then_redeliver(first: Env, bytes: &[u8], claimed: &[u8]) -> usize {
    let mut e = first;
    for fail_at in 1.. {
        if fail_at > 1 {
            e = e.another().await;
        }
        put_staging(&e, "u1", bytes).await;
        let ev = event(&e, "u1", hash_of(claimed), claimed.len() as u64);
        let faults = Faults::new(fail_at);
        let first = promoter(&crashing(&e.backend, &faults)).promote(&ev).await;
        if !faults.fired() {
            // fail_at is past the last write: every step before it was
            // covered.
            assert_eq!(first.unwrap(), Outcome::Done);
            return fail_at - 1;
        }
        // Redelivery to a healthy worker.
        assert_eq!(
            promoter(&e.backend).promote(&ev).await.unwrap(),
            Outcome::Done,
            "after crash at write {fail_at}"
        );
        assert!(
            !exists(&e, &staging("u1")).await,
            "crash at {fail_at}: staging left"
        );
        let all = entries(&e).await;
        if bytes == claimed {
            assert_eq!(all.len(), 1, "crash at {fail_at}: exactly one entry");
            let cas = names::artifact_key(all[0].content_hash.hex());
            assert_eq!(
                read(&e.backend, &cas).await,
                bytes,
                "crash at {fail_at}: CAS object correct"
            );
            assert_eq!(artifacts(&e).await, [cas], "crash at {fail_at}");
        } else {
            assert!(
                all.is_empty(),
                "crash at {fail_at}: a rejected upload is never indexed"
            );
            assert!(artifacts(&e).await.is_empty(), "crash at {fail_at}");
            assert!(exists(&e, "quarantine/u1").await, "crash at {fail_at}");
        }
    }
    unreachable!()
}

async fn a_crash_after_any_promote_step_then_redelivery_ends_consistent(e: Env) {
    let steps = crash_then_redeliver(e, b"good bytes", b"good bytes").await;
    assert!(
        steps >= 5,
        "covered {steps} write steps (CAS put, metadata, index, outcome, staging delete)"
    );
}

async fn a_crash_after_any_reject_step_then_redelivery_ends_consistent(e: Env) {
    let steps = crash_then_redeliver(e, b"swapped bytes", b"claimed bytes").await;
    assert!(
        steps >= 4,
        "covered {steps} write steps (quarantine copy, audit, outcome, staging delete)"
    );
}

// ---- claims: what the uploader's credentials may say ---------------------

/// Promotes `ev` (its bytes staged with the claim of `staged_for`) and
/// checks it was refused for its claim: audited, counted, never indexed,
/// the upload dropped, nothing in the CAS.
async fn assert_refused(e: &Env, ev: &ArtifactStaged, staged_for: &ArtifactStaged, why: &str) {
    let bytes = b"bytes of a hostile save";
    support::stage(&e.backend, staged_for, bytes).await;
    assert_eq!(
        promoter(&e.backend).promote(ev).await.unwrap(),
        Outcome::Done
    );
    assert!(entries(e).await.is_empty(), "never indexed");
    assert!(artifacts(e).await.is_empty(), "nothing in the CAS");
    assert!(!exists(e, &ev.staging_key).await, "the upload is dropped");
    assert!(
        exists(e, &names::quarantine_key(&ev.upload_id)).await,
        "kept as evidence"
    );
    let audit = e.backend.index.audit_log("acme/app", 10).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].action, AuditAction::Rejected);
    assert_eq!(audit[0].rule, "claim");
    assert!(audit[0].reason.contains(why), "{}", audit[0].reason);
    // Redelivery is harmless.
    assert_eq!(
        promoter(&e.backend).promote(ev).await.unwrap(),
        Outcome::Done
    );
    assert!(entries(e).await.is_empty());
}

/// A pull request's upload (its credentials may only write
/// `staging/pull-request/`) claiming a protected push to main.
async fn refused_claims_a_trust_above_the_staging_tier(e: Env) {
    let bytes = b"bytes of a hostile save";
    let mut ev = staged("u1", bytes, "deps", &main_scope(), e.now());
    ev.staging_key = staging::key(TrustLevel::PullRequest, "u1");
    assert_refused(&e, &ev, &ev, "claims trust protected").await;
}

/// The same upload claiming its own trust honestly but main's scope: a
/// pull-request tier may only write `refs/pull/…`.
async fn refused_claims_a_scope_the_tier_may_not_write(e: Env) {
    let bytes = b"bytes of a hostile save";
    let mut ev = staged("u1", bytes, "deps", &main_scope(), e.now());
    ev.staging_key = staging::key(TrustLevel::PullRequest, "u1");
    ev.provenance.trust = TrustLevel::PullRequest;
    assert_refused(&e, &ev, &ev, "may not create entries in refs/heads/main").await;
    // Its own pull request's scope is fine.
    let pr = Scope::new("acme/app", "refs/pull/7/merge");
    let mut ok = staged("u2", bytes, "deps", &pr, e.now());
    ok.staging_key = staging::key(TrustLevel::PullRequest, "u2");
    ok.provenance.trust = TrustLevel::PullRequest;
    support::stage(&e.backend, &ok, bytes).await;
    promoter(&e.backend).promote(&ok).await.unwrap();
    assert_eq!(entries(&e).await.len(), 1);
}

/// An event pointing at an upload made for another key (or scope): the
/// upload's claim metadata, written with its bytes, gives it away.
async fn refused_claims_an_upload_made_for_another_key_or_scope(e: Env) {
    let bytes = b"bytes of a hostile save";
    let made_for = staged("u1", bytes, "harmless-key", &main_scope(), e.now());
    let mut relabelled = made_for.clone();
    relabelled.cache_key = "deps-linux-abc".into();
    assert_refused(&e, &relabelled, &made_for, "runcache-claim").await;
}

/// Stages `bytes` for `event(e, upload, …)` and returns what `save` would
/// hand its in-process promote: the digest of those bytes and the etag the
/// store reported for them.
async fn stage_written(e: &Env, upload: &str, bytes: &[u8]) -> WrittenUpload {
    let ev = event(e, upload, hash_of(bytes), bytes.len() as u64);
    let meta = support::stage(&e.backend, &ev, bytes).await;
    WrittenUpload {
        upload_id: upload.into(),
        hash: hash_of(bytes),
        size: bytes.len() as u64,
        etag: meta.etag.expect("the store reports an etag"),
    }
}

/// `save`'s in-process promote takes the digest computed while writing:
/// the upload is promoted as usual, and where promote pins by link (the
/// filesystem) it does not read the bytes a second time.
async fn a_written_upload_is_promoted_on_its_digest(e: Env) {
    let bytes = b"archive bytes hashed while they were written".to_vec();
    let written = stage_written(&e, "u1", &bytes).await;
    let ev = event(&e, "u1", hash_of(&bytes), bytes.len() as u64);
    let (gate, handle) = support::Gate::before("get", "");
    let support::GateHandle {
        mut reached,
        release,
    } = handle;
    drop(release); // a read, if any, passes straight through
    let mut backend = e.backend.clone();
    backend.blobs = Intercepted::wrap(e.backend.blobs.clone(), gate);
    let promoter =
        Promoter::new(backend, "test-worker", support::days(90)).with_written_upload(written);
    assert_eq!(promoter.promote(&ev).await.unwrap(), Outcome::Done);
    let cas = names::artifact_key(ev.claimed_hash.hex());
    assert_eq!(read(&e.backend, &cas).await, bytes);
    assert_eq!(entries(&e).await.len(), 1);
    assert!(!exists(&e, &staging("u1")).await);
    if e.backend.blobs.copy_shares_bytes() {
        assert!(
            reached.try_recv().is_err(),
            "promote read the bytes it was handed the digest of"
        );
    }
}

/// The digest covers the bytes the save wrote, not whatever is at the
/// staging key later: bytes replaced after the save are hashed as usual
/// and rejected.
async fn a_written_upload_replaced_after_the_save_is_hashed_and_rejected(e: Env) {
    let good = b"the bytes the save wrote and hashed".to_vec();
    let written = stage_written(&e, "u1", &good).await;
    let mut bad = good.clone();
    bad[..3].copy_from_slice(b"THE"); // same size, other bytes
    stage_written(&e, "u1", &bad).await;
    assert_written_upload_rejected(&e, &good, written).await;
}

/// On the filesystem the etag includes the ctime, which a writer cannot
/// set back: bytes rewritten in place, same size, mtime restored, are
/// still hashed and rejected.
#[tokio::test]
async fn a_written_upload_rewritten_in_place_with_its_mtime_set_back_is_rejected() {
    let e = support::env();
    let good = b"the bytes the save wrote and hashed".to_vec();
    let written = stage_written(&e, "u1", &good).await;
    let path = e.config.home.join("blobs").join(staging("u1"));
    let before = std::fs::metadata(&path).unwrap();
    // Past any coarse timestamp tick (the kernel's ctime granularity).
    tokio::time::sleep(Duration::from_millis(20)).await;
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all(b"THE").unwrap();
        file.sync_all().unwrap();
        file.set_modified(before.modified().unwrap()).unwrap();
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before.modified().unwrap()
    );
    assert_written_upload_rejected(&e, &good, written).await;
}

/// Promotes upload `u1`, claiming `good`, with `written` handed over, and
/// asserts it was hashed and rejected: never indexed, kept in quarantine.
async fn assert_written_upload_rejected(e: &Env, good: &[u8], written: WrittenUpload) {
    let ev = event(e, "u1", hash_of(good), good.len() as u64);
    let promoter = promoter(&e.backend).with_written_upload(written);
    assert_eq!(promoter.promote(&ev).await.unwrap(), Outcome::Done);
    assert!(entries(e).await.is_empty(), "never indexed");
    assert!(artifacts(e).await.is_empty());
    assert!(exists(e, "quarantine/u1").await);
}
