//! invalidate's invariants, on both backends: matched entries are hidden from restores at
//! once, every one gets exactly one audit record however often the request
//! is delivered or wherever a delivery crashed, an empty selector is
//! dead-lettered, and selectors combine with AND.

mod support;

use std::sync::Arc;

use runcache_infra::{
    index::{matching, selects},
    OutgoingMessage,
};
use runcache_schemas::{
    AuditAction, CacheInvalidate, Contract, EntryState, Event, InvalidationSelector, OutcomeKind,
    Scope,
};
use runcache_worker::{drain, ConsumerConfig, Invalidator};
use support::*;

crate::backend_tests!(
    an_invalidation_hides_the_matched_entries_from_restores_at_once,
    an_empty_selector_is_dead_lettered,
    redelivery_leaves_one_audit_record_per_entry,
    a_crash_after_any_invalidate_step_then_redelivery_ends_consistent,
    selectors_combine_with_and,
    a_deletion_purges_a_corrupt_blob_once_and_keeps_a_sound_one,
);

fn request(
    id: &str,
    selector: InvalidationSelector,
    at: chrono::DateTime<chrono::Utc>,
) -> CacheInvalidate {
    CacheInvalidate {
        request_id: id.into(),
        selector,
        reason: "lockfile compromised".into(),
        requested_by: "admin@acme".into(),
        requested_at: at,
        purge_corrupt_blobs: false,
    }
}

fn by_repo_and_prefix(prefix: &str) -> InvalidationSelector {
    InvalidationSelector {
        repository: Some(REPO.into()),
        key_prefix: Some(prefix.into()),
        ..Default::default()
    }
}

async fn invalidation_audits(e: &Env) -> Vec<runcache_schemas::AuditRecord> {
    e.backend
        .index
        .audit_log(REPO, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == AuditAction::Invalidated)
        .collect()
}

async fn an_invalidation_hides_the_matched_entries_from_restores_at_once(e: Env) {
    let pr = Scope::new(REPO, "refs/pull/3/merge");
    save(&e, "u1", "deps-linux-1", &main_scope(), b"one").await;
    save(&e, "u2", "deps-linux-2", &pr, b"two").await;
    save(&e, "u3", "build-linux", &main_scope(), b"three").await;
    take_events(&*e.backend.accessed).await;
    assert!(lookup(&e.backend, &main_scope(), "deps-linux-1")
        .await
        .is_some());

    let req = request("r1", by_repo_and_prefix("deps-"), e.now());
    e.backend
        .invalidate
        .send(OutgoingMessage::new(req.encode()))
        .await
        .unwrap();
    let report = drain(
        e.backend.invalidate.clone(),
        Arc::new(Invalidator::new(e.backend.clone())),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.done, 1);

    assert!(lookup(&e.backend, &main_scope(), "deps-linux-1")
        .await
        .is_none());
    assert!(lookup(&e.backend, &pr, "deps-linux-2").await.is_none());
    // A prefix restore key finds nothing either.
    let req_prefix = runcache_infra::index::SearchRequest {
        scopes: runcache_infra::index::restore_scopes(&pr, Some("main"), "main"),
        version: VERSION.into(),
        primary_key: "deps-linux-3".into(),
        restore_keys: vec!["deps-".into()],
        min_trust: runcache_schemas::TrustLevel::Untrusted,
    };
    assert!(
        runcache_infra::index::search(&*e.backend.index, &req_prefix)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        lookup(&e.backend, &main_scope(), "build-linux")
            .await
            .is_some(),
        "not selected"
    );

    let entry = e
        .backend
        .index
        .get(&main_scope(), VERSION, "deps-linux-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, EntryState::Invalidated);
    assert_eq!(entry.reason.as_deref(), Some("lockfile compromised"));
    assert_eq!(entry.invalidated_by.as_deref(), Some("admin@acme"));
    // Blobs are left for sweep.
    assert!(exists(&e.backend, &entry.s3_key).await);

    let audits = invalidation_audits(&e).await;
    assert_eq!(audits.len(), 2);
    assert!(audits
        .iter()
        .all(|a| a.rule == "invalidation" && a.actor == "admin@acme"));
    let outcomes: Vec<_> = take_events(&*e.backend.accessed)
        .await
        .into_iter()
        .filter(|ev| matches!(ev, Event::Outcome(o) if o.kind == OutcomeKind::Invalidated))
        .collect();
    assert_eq!(outcomes.len(), 2);
}

async fn an_empty_selector_is_dead_lettered(e: Env) {
    save(&e, "u1", "k", &main_scope(), b"bytes").await;
    for selector in [
        InvalidationSelector::default(),
        // A ref alone narrows nothing down.
        InvalidationSelector {
            git_ref: Some(MAIN.into()),
            key_prefix: Some(String::new()),
            ..Default::default()
        },
    ] {
        e.backend
            .invalidate
            .send(OutgoingMessage::new(
                request("bad", selector, e.now()).encode(),
            ))
            .await
            .unwrap();
    }
    let report = drain(
        e.backend.invalidate.clone(),
        Arc::new(Invalidator::new(e.backend.clone())),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.rejected, 2);
    let dead = e.backend.invalidate.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead[0].attributes["deadLetterReason"].contains("at least one"));
    assert!(
        lookup(&e.backend, &main_scope(), "k").await.is_some(),
        "nothing invalidated"
    );
    assert!(invalidation_audits(&e).await.is_empty());
}

async fn redelivery_leaves_one_audit_record_per_entry(e: Env) {
    for i in 0..3 {
        save(
            &e,
            &format!("u{i}"),
            &format!("deps-{i}"),
            &main_scope(),
            format!("b{i}").as_bytes(),
        )
        .await;
    }
    let req = request("r1", by_repo_and_prefix("deps-"), e.now());
    let inv = Invalidator::new(e.backend.clone());
    let first = inv.invalidate(&req).await.unwrap();
    assert_eq!((first.matched, first.invalidated, first.resumed), (3, 3, 0));
    let second = inv.invalidate(&req).await.unwrap();
    assert_eq!(
        (second.matched, second.invalidated, second.resumed),
        (3, 0, 3)
    );
    assert_eq!(invalidation_audits(&e).await.len(), 3);

    // The same request through the queue, twice.
    for _ in 0..2 {
        e.backend
            .invalidate
            .send(OutgoingMessage::new(req.encode()))
            .await
            .unwrap();
    }
    drain(
        e.backend.invalidate.clone(),
        Arc::new(Invalidator::new(e.backend.clone())),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(invalidation_audits(&e).await.len(), 3);

    // Another request over the same (already invalidated) entries adds
    // nothing: they are not live, and not its own.
    e.advance(std::time::Duration::from_secs(1));
    let other = inv
        .invalidate(&request("r2", by_repo_and_prefix("deps-"), e.now()))
        .await
        .unwrap();
    assert_eq!((other.invalidated, other.resumed), (0, 0));
    assert_eq!(invalidation_audits(&e).await.len(), 3);
}

async fn a_crash_after_any_invalidate_step_then_redelivery_ends_consistent(first: Env) {
    let mut covered = 0;
    let mut e = first;
    for fail_at in 1.. {
        if fail_at > 1 {
            e = e.another().await;
        }
        save(&e, "u1", "deps-a", &main_scope(), b"a").await;
        save(&e, "u2", "deps-b", &main_scope(), b"b").await;
        take_events(&*e.backend.accessed).await;
        let req = request("r1", by_repo_and_prefix("deps-"), e.now());
        let faults = Faults::new(fail_at);
        let first = Invalidator::new(crashing(&e.backend, &faults))
            .invalidate(&req)
            .await;
        if !faults.fired() {
            first.unwrap();
            break;
        }
        assert!(first.is_err());
        covered += 1;
        Invalidator::new(e.backend.clone())
            .invalidate(&req)
            .await
            .unwrap();
        for key in ["deps-a", "deps-b"] {
            assert!(
                lookup(&e.backend, &main_scope(), key).await.is_none(),
                "crash at {fail_at}"
            );
        }
        let audits = invalidation_audits(&e).await;
        assert_eq!(audits.len(), 2, "crash at {fail_at}: one record per entry");
        let outcomes = take_events(&*e.backend.accessed).await;
        for key in ["deps-a", "deps-b"] {
            assert!(
                outcomes.iter().any(|ev| matches!(ev, Event::Outcome(o)
                    if o.kind == OutcomeKind::Invalidated && o.cache_key.as_deref() == Some(key))),
                "crash at {fail_at}: outcome for {key}"
            );
        }
    }
    assert!(covered >= 6, "covered {covered} write steps");
}

async fn selectors_combine_with_and(e: Env) {
    let feature = Scope::new(REPO, "refs/heads/feature");
    save(&e, "u1", "deps-1", &main_scope(), b"1").await;
    save(&e, "u2", "deps-2", &feature, b"2").await;
    save(&e, "u3", "deps-3", &Scope::new("acme/other", MAIN), b"3").await;

    let keys = |entries: Vec<runcache_schemas::IndexEntry>| {
        let mut k: Vec<String> = entries.into_iter().map(|e| e.cache_key).collect();
        k.sort();
        k
    };
    let sel = InvalidationSelector {
        repository: Some(REPO.into()),
        git_ref: Some("feature".into()),
        ..Default::default()
    };
    assert_eq!(
        keys(matching(&*e.backend.index, &sel).await.unwrap()),
        ["deps-2"]
    );
    let sel = InvalidationSelector {
        lockfile_hash: Some("lock-1".into()),
        key_prefix: Some("deps-".into()),
        ..Default::default()
    };
    assert_eq!(
        keys(matching(&*e.backend.index, &sel).await.unwrap()),
        ["deps-1", "deps-2", "deps-3"]
    );
    let sel = InvalidationSelector {
        toolchain: Some("node-20".into()),
        repository: Some("acme/other".into()),
        ..Default::default()
    };
    assert_eq!(
        keys(matching(&*e.backend.index, &sel).await.unwrap()),
        ["deps-3"]
    );
    let sel = InvalidationSelector {
        toolchain: Some("node-18".into()),
        ..Default::default()
    };
    assert!(matching(&*e.backend.index, &sel).await.unwrap().is_empty());
    // An empty selector matches nothing (the handler refuses it anyway).
    assert!(
        matching(&*e.backend.index, &InvalidationSelector::default())
            .await
            .unwrap()
            .is_empty()
    );
    // `selects` applies every field that is set; a branch name is a ref.
    let entry = e
        .backend
        .index
        .get(&feature, VERSION, "deps-2")
        .await
        .unwrap()
        .unwrap();
    let sel = InvalidationSelector {
        git_ref: Some("refs/heads/feature".into()),
        key_prefix: Some("deps-2".into()),
        ..Default::default()
    };
    assert!(selects(&sel, &entry));
    let sel = InvalidationSelector {
        key_prefix: Some("deps-3".into()),
        ..sel
    };
    assert!(!selects(&sel, &entry));
}

/// `admin delete`'s request (an exact key, `purge_corrupt_blobs`): the
/// entry is invalidated and its blob, if it does not hash to its name,
/// removed from the CAS with an audit record, once however often it is
/// delivered; a sound blob (maybe shared by other entries) stays.
async fn a_deletion_purges_a_corrupt_blob_once_and_keeps_a_sound_one(e: Env) {
    let bad = save(&e, "u1", "deps-1", &main_scope(), b"one").await;
    let good = save(&e, "u2", "deps-2", &main_scope(), b"two").await;
    e.backend
        .blobs
        .put(
            &bad.s3_key,
            Box::pin(std::io::Cursor::new(b"bit rot".to_vec())),
            Default::default(),
        )
        .await
        .unwrap();
    let delete = |id: &str, key: &str| CacheInvalidate {
        purge_corrupt_blobs: true,
        ..request(
            id,
            InvalidationSelector {
                repository: Some(REPO.into()),
                cache_key: Some(key.into()),
                ..Default::default()
            },
            e.now(),
        )
    };
    let invalidator = Invalidator::new(e.backend.clone());
    let first = invalidator
        .invalidate(&delete("d1", "deps-1"))
        .await
        .unwrap();
    assert_eq!((first.invalidated, first.purged), (1, 1));
    // Redelivered: nothing more to purge, no second record.
    let again = invalidator
        .invalidate(&delete("d1", "deps-1"))
        .await
        .unwrap();
    assert_eq!(again.purged, 0);
    assert!(e.backend.blobs.head(&bad.s3_key).await.unwrap().is_none());
    let deleted: Vec<_> = e
        .backend
        .index
        .audit_log(REPO, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == AuditAction::Deleted)
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].cache_key.as_deref(), Some("deps-1"));
    assert_eq!(deleted[0].rule, "verification");

    // The exact key only: deps-2 untouched until asked; its sound blob stays.
    assert!(lookup(&e.backend, &main_scope(), "deps-2").await.is_some());
    let sound = invalidator
        .invalidate(&delete("d2", "deps-2"))
        .await
        .unwrap();
    assert_eq!((sound.invalidated, sound.purged), (1, 0));
    assert!(e.backend.blobs.head(&good.s3_key).await.unwrap().is_some());
}
