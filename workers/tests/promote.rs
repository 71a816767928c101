//! promote's invariants on the local backend: a tampered upload is rejected
//! and never indexed; duplicate delivery and a crash after any step end with
//! one entry, a correct CAS object and no staging object.

mod support;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use runcache_infra::{names, Backend, Config, ManualClock, OutgoingMessage};
use runcache_schemas::{
    ArtifactStaged, BuildProvenance, ContentHash, Contract, Event, IndexEntry, Scope, TrustLevel,
};
use runcache_worker::{drain, ConsumerConfig, Outcome, Promoter};
use sha2::{Digest, Sha256};
use support::{Faults, FaultyBlobs, FaultyIndex};
use tokio::io::AsyncReadExt;

struct Env {
    backend: Backend,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        Backend::local(&Config::local(dir.path()), Arc::new(ManualClock::default())).unwrap();
    Env { backend, _dir: dir }
}

fn hash_of(bytes: &[u8]) -> ContentHash {
    ContentHash::from_hex(&hex::encode(Sha256::digest(bytes))).unwrap()
}

fn event(upload: &str, claimed: ContentHash, size: u64) -> ArtifactStaged {
    ArtifactStaged {
        upload_id: upload.into(),
        staging_key: names::staging_key(upload),
        claimed_hash: claimed,
        size_bytes: size,
        cache_key: "deps-linux-abc".into(),
        scope: Scope::new("acme/app", "refs/heads/main"),
        cache_version: "v1".into(),
        paths: vec!["node_modules".into()],
        compression: "zstd-without-long".into(),
        unpacked_bytes: None,
        staged_at: Utc::now(),
        provenance: BuildProvenance {
            repository: "acme/app".into(),
            trigger_event: "push".into(),
            trust: TrustLevel::Protected,
            ..Default::default()
        },
    }
}

async fn stage(b: &Backend, upload: &str, bytes: &[u8]) {
    b.blobs
        .put(
            &names::staging_key(upload),
            Box::pin(std::io::Cursor::new(bytes.to_vec())),
            BTreeMap::new(),
        )
        .await
        .unwrap();
}

async fn read(b: &Backend, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    b.blobs
        .get(key, None)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

fn promoter(b: &Backend) -> Promoter {
    Promoter::new(b.clone(), "test-worker", Duration::from_secs(90 * 86400))
}

async fn entries(b: &Backend) -> Vec<IndexEntry> {
    b.index.scan(None, 100).await.unwrap().entries
}

#[tokio::test]
async fn a_verified_upload_is_promoted_indexed_and_traced() {
    let e = env();
    let bytes = b"archive bytes".to_vec();
    stage(&e.backend, "u1", &bytes).await;
    let ev = event("u1", hash_of(&bytes), bytes.len() as u64);
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    let cas = names::artifact_key(ev.claimed_hash.hex());
    assert_eq!(read(&e.backend, &cas).await, bytes);
    assert!(e.backend.blobs.head("staging/u1").await.unwrap().is_none());
    let all = entries(&e.backend).await;
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

#[tokio::test]
async fn a_tampered_staging_object_is_quarantined_and_never_indexed() {
    let e = env();
    let good = b"the bytes the runner hashed".to_vec();
    stage(&e.backend, "u1", b"the bytes someone swapped in").await;
    let ev = event("u1", hash_of(&good), good.len() as u64);
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    assert!(entries(&e.backend).await.is_empty(), "never indexed");
    assert!(
        e.backend
            .blobs
            .head(&names::artifact_key(ev.claimed_hash.hex()))
            .await
            .unwrap()
            .is_none(),
        "nothing at artifacts/{{claimed}}"
    );
    assert!(e
        .backend
        .blobs
        .list("artifacts/", None, 10)
        .await
        .unwrap()
        .objects
        .is_empty());
    assert!(
        e.backend
            .blobs
            .head("quarantine/u1")
            .await
            .unwrap()
            .is_some(),
        "kept for inspection"
    );
    assert!(e.backend.blobs.head("staging/u1").await.unwrap().is_none());
    let audit = e.backend.index.audit_log("acme/app", 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert!(audit[0].reason.contains("claimed"), "{}", audit[0].reason);
    // Redelivery of the same message is harmless.
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    assert!(entries(&e.backend).await.is_empty());
}

#[tokio::test]
async fn a_size_that_differs_from_the_claim_is_rejected() {
    let e = env();
    let bytes = b"exact bytes".to_vec();
    stage(&e.backend, "u1", &bytes).await;
    let ev = event("u1", hash_of(&bytes), bytes.len() as u64 + 1);
    promoter(&e.backend).promote(&ev).await.unwrap();
    assert!(entries(&e.backend).await.is_empty());
    assert!(e
        .backend
        .blobs
        .head("quarantine/u1")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_tampered_upload_of_an_existing_blob_is_still_rejected() {
    let e = env();
    let bytes = b"popular".to_vec();
    stage(&e.backend, "u1", &bytes).await;
    promoter(&e.backend)
        .promote(&event("u1", hash_of(&bytes), 7))
        .await
        .unwrap();
    stage(&e.backend, "u2", b"garbage").await;
    let mut ev = event("u2", hash_of(&bytes), 7);
    ev.cache_key = "other-key".into();
    promoter(&e.backend).promote(&ev).await.unwrap();
    assert_eq!(
        entries(&e.backend).await.len(),
        1,
        "the dedup path verifies too"
    );
    assert!(e
        .backend
        .blobs
        .head("quarantine/u2")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn identical_content_is_deduplicated() {
    let e = env();
    let bytes = b"same".to_vec();
    stage(&e.backend, "u1", &bytes).await;
    stage(&e.backend, "u2", &bytes).await;
    promoter(&e.backend)
        .promote(&event("u1", hash_of(&bytes), 4))
        .await
        .unwrap();
    let mut ev = event("u2", hash_of(&bytes), 4);
    ev.cache_key = "another-key".into();
    promoter(&e.backend).promote(&ev).await.unwrap();
    assert_eq!(entries(&e.backend).await.len(), 2);
    assert_eq!(
        e.backend
            .blobs
            .list("artifacts/", None, 10)
            .await
            .unwrap()
            .objects
            .len(),
        1
    );
}

#[tokio::test]
async fn a_second_save_of_a_key_is_a_no_op() {
    let e = env();
    stage(&e.backend, "u1", b"first").await;
    stage(&e.backend, "u2", b"second").await;
    promoter(&e.backend)
        .promote(&event("u1", hash_of(b"first"), 5))
        .await
        .unwrap();
    promoter(&e.backend)
        .promote(&event("u2", hash_of(b"second"), 6))
        .await
        .unwrap();
    let all = entries(&e.backend).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].content_hash, hash_of(b"first"), "keys are immutable");
    assert!(e.backend.blobs.head("staging/u2").await.unwrap().is_none());
}

#[tokio::test]
async fn duplicate_delivery_through_the_queue_ends_in_one_entry() {
    let e = env();
    let bytes = b"delivered twice".to_vec();
    stage(&e.backend, "u1", &bytes).await;
    let body = event("u1", hash_of(&bytes), bytes.len() as u64).encode();
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
    assert_eq!(entries(&e.backend).await.len(), 1);
    assert!(e.backend.blobs.head("staging/u1").await.unwrap().is_none());
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_queue() {
    let e = env();
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
    let reasons: Vec<_> = dead
        .iter()
        .map(|m| m.attributes["deadLetterReason"].clone())
        .collect();
    assert!(reasons[0].contains("malformed"), "{reasons:?}");
    assert!(
        reasons[1].contains("unknown schema `cache.exploded`"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("unsupported version 9"), "{reasons:?}");
}

#[tokio::test]
async fn an_upload_id_that_is_not_a_plain_token_is_rejected() {
    let e = env();
    for id in ["sweep/abc", "../x", "", ".hidden", "a b"] {
        let mut ev = event("u1", hash_of(b"x"), 1);
        ev.upload_id = id.into();
        ev.staging_key = names::staging_key(id);
        assert!(
            matches!(
                promoter(&e.backend).promote(&ev).await.unwrap(),
                Outcome::Reject { reason } if reason.contains("plain token")
            ),
            "{id:?}"
        );
    }
    assert!(entries(&e.backend).await.is_empty());
}

// ---- crash after every step -------------------------------------------

async fn crash_then_redeliver(bytes: &[u8], claimed: &[u8]) -> usize {
    for fail_at in 1.. {
        let e = env();
        stage(&e.backend, "u1", bytes).await;
        let ev = event("u1", hash_of(claimed), claimed.len() as u64);
        let faults = Faults::new(fail_at);
        let mut crashing = e.backend.clone();
        crashing.blobs = Arc::new(FaultyBlobs(e.backend.blobs.clone(), faults.clone()));
        crashing.index = Arc::new(FaultyIndex(e.backend.index.clone(), faults.clone()));
        let first = promoter(&crashing).promote(&ev).await;
        if first.is_ok() {
            // fail_at is past the last mutating step: every step before it
            // was covered.
            return fail_at - 1;
        }
        // Redelivery to a healthy worker.
        assert_eq!(
            promoter(&e.backend).promote(&ev).await.unwrap(),
            Outcome::Done,
            "after crash at write {fail_at}"
        );
        assert!(
            e.backend.blobs.head("staging/u1").await.unwrap().is_none(),
            "crash at {fail_at}: staging left"
        );
        let all = entries(&e.backend).await;
        if bytes == claimed {
            assert_eq!(all.len(), 1, "crash at {fail_at}: exactly one entry");
            let cas = names::artifact_key(all[0].content_hash.hex());
            assert_eq!(
                read(&e.backend, &cas).await,
                bytes,
                "crash at {fail_at}: CAS object correct"
            );
        } else {
            assert!(
                all.is_empty(),
                "crash at {fail_at}: a rejected upload is never indexed"
            );
            assert!(e
                .backend
                .blobs
                .list("artifacts/", None, 10)
                .await
                .unwrap()
                .objects
                .is_empty());
        }
    }
    unreachable!()
}

#[tokio::test]
async fn a_crash_after_any_promote_step_then_redelivery_ends_consistent() {
    let steps = crash_then_redeliver(b"good bytes", b"good bytes").await;
    assert!(
        steps >= 4,
        "covered {steps} write steps (CAS put, metadata, index, outcome, staging delete)"
    );
}

#[tokio::test]
async fn a_crash_after_any_reject_step_then_redelivery_ends_consistent() {
    let steps = crash_then_redeliver(b"swapped bytes", b"claimed bytes").await;
    assert!(
        steps >= 3,
        "covered {steps} write steps (quarantine copy, audit, staging delete)"
    );
}
