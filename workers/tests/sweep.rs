//! sweep's invariants, on both backends with a `ManualClock`: TTL and
//! quota eviction (a flood of pull-request entries never evicts the default
//! branch), every eviction audited, unreferenced blobs deleted only after
//! the grace period, referenced blobs never, including while a promotion
//! races the sweep at every point of its deletion protocol, and a crash at
//! any sweep step resumed by the next run.

mod support;

use std::{sync::Arc, time::Duration};

use runcache_infra::{names, StateChange};
use runcache_schemas::{AuditAction, EntryState, Event, OutcomeKind, Scope, TrustLevel};
use runcache_worker::{
    sweep::{quota_victims, sweep, tier, SweepConfig, Tier, PENDING_PREFIX},
    Outcome,
};
use support::*;

crate::backend_tests!(
    entries_idle_past_the_ttl_are_evicted_and_audited,
    a_flood_of_pull_request_entries_cannot_evict_default_branch_entries,
    the_default_branch_alone_over_quota_evicts_its_own_least_recently_used,
    a_referenced_blob_is_never_deleted,
    a_blob_shared_by_a_live_and_an_invalidated_entry_stays,
    an_unreferenced_blob_is_deleted_only_after_the_grace_period,
    stale_staging_objects_and_expired_records_are_removed,
    a_promotion_between_the_listing_and_the_unlink_keeps_its_blob,
    a_promotion_right_after_the_unlink_keeps_its_blob,
    a_promotion_that_saw_the_blob_but_inserts_after_the_sweep_confirmed_keeps_it,
    a_promotion_that_inserts_between_the_unlink_and_the_confirmation_keeps_it,
    a_promotion_during_the_confirming_scan_keeps_its_blob,
    a_crash_after_any_sweep_step_is_resumed_by_the_next_run,
    a_sweep_that_dies_before_confirming_leaves_a_copy_the_next_run_rescues,
    a_vanished_blob_whose_staged_bytes_were_swapped_takes_the_new_entry_out_of_service,
);

fn cfg(e: &Env) -> SweepConfig {
    SweepConfig::from_config(&e.config, "test-sweeper")
}

async fn invalidate(e: &Env, entry: &runcache_schemas::IndexEntry) {
    assert!(e
        .backend
        .index
        .set_state(
            &entry.scope(),
            &entry.cache_version,
            &entry.cache_key,
            &StateChange {
                state: EntryState::Invalidated,
                at: e.now(),
                reason: "test".into(),
                by: "tester".into(),
            },
        )
        .await
        .unwrap());
}

fn artifact(entry: &runcache_schemas::IndexEntry) -> String {
    names::artifact_key(entry.content_hash.hex())
}

fn metadata(entry: &runcache_schemas::IndexEntry) -> String {
    names::metadata_key(entry.content_hash.hex())
}

// ---- TTL ------------------------------------------------------------------

async fn entries_idle_past_the_ttl_are_evicted_and_audited(e: Env) {
    let idle = save(&e, "u1", "idle", &main_scope(), b"idle bytes").await;
    let used = save(&e, "u2", "used", &main_scope(), b"used bytes").await;
    take_events(&*e.backend.accessed).await;

    e.advance(days(60));
    e.backend
        .index
        .record_access(&main_scope(), VERSION, "used", e.now())
        .await
        .unwrap();
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(report.ttl_evicted, 0, "60 days idle is within a 90-day TTL");

    e.advance(days(31));
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(report.ttl_evicted, 1);
    assert!(lookup(&e.backend, &main_scope(), "idle").await.is_none());
    assert!(lookup(&e.backend, &main_scope(), "used").await.is_some());
    // The idle entry's blob was unreferenced and old: deleted in the same run.
    assert!(!exists(&e.backend, &artifact(&idle)).await);
    assert!(exists(&e.backend, &artifact(&used)).await);

    let audit = e.backend.index.audit_log(REPO, 50).await.unwrap();
    let evictions: Vec<_> = audit
        .iter()
        .filter(|a| a.action == AuditAction::Evicted)
        .collect();
    assert_eq!(evictions.len(), 1);
    assert_eq!(evictions[0].rule, "ttl");
    assert_eq!(evictions[0].cache_key.as_deref(), Some("idle"));
    assert!(audit
        .iter()
        .any(|a| a.action == AuditAction::Deleted
            && a.content_hash == Some(idle.content_hash.clone())));
    let outcomes = take_events(&*e.backend.accessed).await;
    assert!(outcomes
        .iter()
        .any(|ev| matches!(ev, Event::Outcome(o) if o.kind == OutcomeKind::Evicted && o.cache_key.as_deref() == Some("idle"))));
}

// ---- quota ----------------------------------------------------------------

const GB: u64 = 1_000_000_000;

#[test]
fn tiers_put_low_trust_first_and_the_trusted_default_branch_last() {
    let now = chrono::Utc::now();
    let pr = Scope::new(REPO, "refs/pull/7/merge");
    let feature = Scope::new(REPO, "refs/heads/feature");
    assert_eq!(
        tier(&entry(&pr, "k", 1, TrustLevel::PullRequest, now), "main"),
        Tier::LowTrust
    );
    // pull_request_target writes into the base branch's scope: still low.
    assert_eq!(
        tier(
            &entry(&main_scope(), "k", 1, TrustLevel::Untrusted, now),
            "main"
        ),
        Tier::LowTrust
    );
    assert_eq!(
        tier(&entry(&feature, "k", 1, TrustLevel::Branch, now), "main"),
        Tier::Branch
    );
    assert_eq!(
        tier(
            &entry(&main_scope(), "k", 1, TrustLevel::Protected, now),
            "main"
        ),
        Tier::DefaultBranch
    );
}

async fn a_flood_of_pull_request_entries_cannot_evict_default_branch_entries(e: Env) {
    let t0 = e.now();
    // 6 GB on main, used long ago (least recently used of all).
    for i in 0..6 {
        let en = entry(
            &main_scope(),
            &format!("main-{i}"),
            GB,
            TrustLevel::Protected,
            t0,
        );
        e.backend.index.insert(&en).await.unwrap();
    }
    e.advance(hours(1));
    // 3 GB on a feature branch.
    let feature = Scope::new(REPO, "refs/heads/feature");
    for i in 0..3 {
        let en = entry(
            &feature,
            &format!("feat-{i}"),
            GB,
            TrustLevel::Branch,
            e.now(),
        );
        e.backend.index.insert(&en).await.unwrap();
    }
    // A flood: 50 pull requests × 1 GB, all more recently used than main's,
    // plus pull_request_target writes into main's own scope.
    for i in 0..50 {
        e.advance(Duration::from_secs(60));
        let pr = Scope::new(REPO, format!("refs/pull/{i}/merge"));
        let en = entry(
            &pr,
            &format!("pr-{i}"),
            GB,
            TrustLevel::PullRequest,
            e.now(),
        );
        e.backend.index.insert(&en).await.unwrap();
    }
    for i in 0..5 {
        let en = entry(
            &main_scope(),
            &format!("prt-{i}"),
            GB,
            TrustLevel::Untrusted,
            e.now(),
        );
        e.backend.index.insert(&en).await.unwrap();
    }
    // Another repository's entries are not this repository's quota.
    let other = Scope::new("acme/other", MAIN);
    e.backend
        .index
        .insert(&entry(&other, "x", 9 * GB, TrustLevel::Protected, t0))
        .await
        .unwrap();

    let mut c = cfg(&e);
    c.quota_bytes = 10 * GB;
    let report = sweep(&e.backend, &c).await.unwrap();

    let all = all_entries(&e.backend).await;
    let live = |prefix: &str| {
        all.iter()
            .filter(|en| en.is_live() && en.repository == REPO && en.cache_key.starts_with(prefix))
            .count()
    };
    assert_eq!(live("main-"), 6, "every default-branch entry survives");
    assert_eq!(live("feat-"), 3, "branch entries fit beside them");
    assert_eq!(
        live("pr-") + live("prt-"),
        1,
        "low-trust entries fill what is left"
    );
    assert_eq!(report.quota_evicted, 54);
    let used: u64 = all
        .iter()
        .filter(|en| en.is_live() && en.repository == REPO)
        .map(|en| en.size_bytes)
        .sum();
    assert!(used <= 10 * GB);
    assert!(all
        .iter()
        .any(|en| en.repository == "acme/other" && en.is_live()));
    // The most recently used pull request is the one that stayed.
    assert!(all.iter().any(|en| en.cache_key == "prt-4" && en.is_live()));
    let audit = e.backend.index.audit_log(REPO, 500).await.unwrap();
    let quota: Vec<_> = audit.iter().filter(|a| a.rule == "quota").collect();
    assert_eq!(quota.len(), 54, "one audit record per eviction");
    assert!(quota.iter().all(|a| a.action == AuditAction::Evicted
        && !a.cache_key.as_deref().unwrap().starts_with("main-")));
}

async fn the_default_branch_alone_over_quota_evicts_its_own_least_recently_used(e: Env) {
    for i in 0..4 {
        e.advance(Duration::from_secs(60));
        let en = entry(
            &main_scope(),
            &format!("main-{i}"),
            4 * GB,
            TrustLevel::Protected,
            e.now(),
        );
        e.backend.index.insert(&en).await.unwrap();
    }
    let pr = Scope::new(REPO, "refs/pull/1/merge");
    e.backend
        .index
        .insert(&entry(&pr, "pr", GB, TrustLevel::PullRequest, e.now()))
        .await
        .unwrap();
    // main-0 is the least recently created but the most recently used.
    e.advance(Duration::from_secs(60));
    e.backend
        .index
        .record_access(&main_scope(), VERSION, "main-0", e.now())
        .await
        .unwrap();
    let mut c = cfg(&e);
    c.quota_bytes = 10 * GB;
    sweep(&e.backend, &c).await.unwrap();
    let mut live: Vec<String> = all_entries(&e.backend)
        .await
        .into_iter()
        .filter(|en| en.is_live())
        .map(|en| en.cache_key)
        .collect();
    live.sort();
    assert_eq!(live, vec!["main-0", "main-3"]);
}

#[test]
fn quota_victims_never_include_the_trusted_default_branch_unless_it_alone_is_over() {
    // A small exhaustive check over mixes of tiers and sizes.
    let now = chrono::Utc::now();
    let pr = Scope::new(REPO, "refs/pull/1/merge");
    for main_gb in 0..6u64 {
        for pr_count in 0..8u64 {
            let mut all = Vec::new();
            for i in 0..main_gb {
                all.push(entry(
                    &main_scope(),
                    &format!("m{i}"),
                    GB,
                    TrustLevel::Protected,
                    now,
                ));
            }
            for i in 0..pr_count {
                let t = now + chrono::Duration::seconds(i as i64 + 1);
                all.push(entry(&pr, &format!("p{i}"), GB, TrustLevel::PullRequest, t));
            }
            let refs: Vec<_> = all.iter().collect();
            let victims = quota_victims(&refs, 4 * GB, "main");
            let main_victims = victims
                .iter()
                .filter(|v| v.cache_key.starts_with('m'))
                .count() as u64;
            assert_eq!(
                main_victims,
                main_gb.saturating_sub(4),
                "main={main_gb} prs={pr_count}"
            );
            let left = main_gb + pr_count - victims.len() as u64;
            assert!(left <= 4);
        }
    }
}

// ---- unreferenced blobs -----------------------------------------------------

async fn a_referenced_blob_is_never_deleted(e: Env) {
    let live = save(&e, "u1", "k", &main_scope(), b"keep me").await;
    e.advance(days(30));
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(report.blobs_deleted, 0);
    assert_eq!(read(&e.backend, &artifact(&live)).await, b"keep me");
    assert!(exists(&e.backend, &metadata(&live)).await);
}

async fn a_blob_shared_by_a_live_and_an_invalidated_entry_stays(e: Env) {
    let a = save(&e, "u1", "a", &main_scope(), b"shared").await;
    let _b = save(&e, "u2", "b", &main_scope(), b"shared").await;
    invalidate(&e, &a).await;
    e.advance(hours(2));
    sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert!(exists(&e.backend, &artifact(&a)).await);
}

async fn an_unreferenced_blob_is_deleted_only_after_the_grace_period(e: Env) {
    let gone = save(&e, "u1", "k", &main_scope(), b"soon unreferenced").await;
    invalidate(&e, &gone).await;

    e.advance(Duration::from_secs(30 * 60));
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(report.blobs_deleted, 0, "younger than the grace period");
    assert!(exists(&e.backend, &artifact(&gone)).await);

    e.advance(hours(1));
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(report.blobs_deleted, 1);
    assert_eq!(report.bytes_deleted, b"soon unreferenced".len() as u64);
    assert_eq!(report.metadata_deleted, 1);
    assert!(!exists(&e.backend, &artifact(&gone)).await);
    assert!(!exists(&e.backend, &metadata(&gone)).await);
    assert!(keys_under(&e.backend, PENDING_PREFIX).await.is_empty());
    let audit = e.backend.index.audit_log(REPO, 50).await.unwrap();
    let deleted: Vec<_> = audit
        .iter()
        .filter(|a| a.action == AuditAction::Deleted)
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].content_hash.as_ref(), Some(&gone.content_hash));

    // Nothing left to do: a second run changes nothing.
    let again = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!((again.blobs_deleted, again.blobs_rescued), (0, 0));
}

async fn stale_staging_objects_and_expired_records_are_removed(e: Env) {
    put_bytes(&e.backend, "staging/abandoned", b"never announced").await;
    let old = save(&e, "u1", "k", &main_scope(), b"bytes").await;
    invalidate(&e, &old).await;
    e.advance(hours(2));
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(report.staging_deleted, 0, "a day is allowed");
    assert_eq!(report.records_removed, 0);
    e.advance(days(91));
    put_bytes(&e.backend, "staging/fresh", b"just uploaded").await;
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    // `staging/fresh` has a real mtime of now, i.e. 91 days before the clock.
    assert!(report.staging_deleted >= 1);
    assert!(!exists(&e.backend, "staging/abandoned").await);
    assert_eq!(
        report.records_removed, 1,
        "the invalidated record is past its ttl"
    );
    assert!(all_entries(&e.backend).await.is_empty());
}

// ---- sweep × promote races ------------------------------------------------------

/// An old blob that no live entry references, and a staged upload of the
/// same bytes under a new key (so promote will deduplicate onto the blob).
async fn dead_blob_and_a_new_upload(e: &Env) -> (runcache_schemas::ArtifactStaged, String) {
    let bytes = b"popular content".to_vec();
    let old = save(e, "u-old", "old", &main_scope(), &bytes).await;
    invalidate(e, &old).await;
    e.advance(hours(2));
    let ev = staged("u-new", &bytes, "new", &main_scope(), e.now());
    stage(&e.backend, &ev, &bytes).await;
    (ev, artifact(&old))
}

async fn assert_new_entry_is_whole(e: &Env, cas: &str) {
    let hit = lookup(&e.backend, &main_scope(), "new")
        .await
        .expect("the new entry is live");
    assert_eq!(names::artifact_key(hit.entry.content_hash.hex()), cas);
    assert_eq!(read(&e.backend, cas).await, b"popular content");
    assert!(
        exists(
            &e.backend,
            &names::metadata_key(hit.entry.content_hash.hex())
        )
        .await
    );
    assert!(keys_under(&e.backend, PENDING_PREFIX).await.is_empty());
    // And later sweeps keep it.
    e.advance(hours(2));
    sweep(&e.backend, &cfg(e)).await.unwrap();
    assert_eq!(read(&e.backend, cas).await, b"popular content");
}

/// Runs a sweep whose blob calls pass through `gate`; while it is held,
/// runs a whole promotion; then lets the sweep finish.
async fn promote_while_sweep_is_held(
    e: &Env,
    ev: &runcache_schemas::ArtifactStaged,
    gate: (Arc<Gate>, GateHandle),
    on_index: bool,
) -> runcache_worker::SweepReport {
    let (gate, handle) = gate;
    let mut sweeping = e.backend.clone();
    if on_index {
        sweeping.index = Intercepted::wrap(e.backend.index.clone(), gate);
    } else {
        sweeping.blobs = Intercepted::wrap(e.backend.blobs.clone(), gate);
    }
    let c = cfg(e);
    let task = tokio::spawn(async move { sweep(&sweeping, &c).await });
    handle.reached.await.expect("the sweep reached the gate");
    assert_eq!(
        promoter(&e.backend).promote(ev).await.unwrap(),
        Outcome::Done
    );
    handle.release.send(()).unwrap();
    task.await.unwrap().unwrap()
}

async fn a_promotion_between_the_listing_and_the_unlink_keeps_its_blob(e: Env) {
    let (ev, cas) = dead_blob_and_a_new_upload(&e).await;
    // The sweep has listed the blob and found it unreferenced; it is about
    // to move it aside. The promotion dedups onto it meanwhile.
    let report = promote_while_sweep_is_held(
        &e,
        &ev,
        Gate::before("copy", names::ARTIFACTS_PREFIX),
        false,
    )
    .await;
    assert_eq!(report.blobs_deleted, 0);
    assert_eq!(report.blobs_rescued, 1, "G3 saw the new reference");
    assert_new_entry_is_whole(&e, &cas).await;
}

async fn a_promotion_right_after_the_unlink_keeps_its_blob(e: Env) {
    let (ev, cas) = dead_blob_and_a_new_upload(&e).await;
    // artifacts/{h} is gone (kept aside); the promotion finds no blob and
    // stores it afresh, then G3 sees the reference.
    let report = promote_while_sweep_is_held(
        &e,
        &ev,
        Gate::after("delete", names::ARTIFACTS_PREFIX),
        false,
    )
    .await;
    assert_eq!(report.blobs_deleted, 0);
    assert_new_entry_is_whole(&e, &cas).await;
}

async fn a_promotion_that_saw_the_blob_but_inserts_after_the_sweep_confirmed_keeps_it(e: Env) {
    // The worst interleaving: promote's dedup check sees artifacts/{h}; the
    // whole sweep then runs (L1 and L2 both miss the entry, the blob is
    // deleted for good); only then does promote insert its entry. Its
    // step 6 stores the blob again from the staged bytes.
    let (ev, cas) = dead_blob_and_a_new_upload(&e).await;
    let (gate, handle) = Gate::before("insert", "new");
    let mut promoting = e.backend.clone();
    promoting.index = Intercepted::wrap(e.backend.index.clone(), gate);
    let ev2 = ev.clone();
    let task = tokio::spawn(async move { promoter(&promoting).promote(&ev2).await });
    handle.reached.await.unwrap();
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(
        report.blobs_deleted, 1,
        "nothing referenced it when the sweep looked"
    );
    assert!(!exists(&e.backend, &cas).await);
    handle.release.send(()).unwrap();
    assert_eq!(task.await.unwrap().unwrap(), Outcome::Done);
    assert_new_entry_is_whole(&e, &cas).await;
}

async fn a_promotion_that_inserts_between_the_unlink_and_the_confirmation_keeps_it(e: Env) {
    // promote saw the blob (dedup) before the sweep unlinked it, and
    // inserts after the unlink but before G3's scan: G3 rescues.
    let (ev, cas) = dead_blob_and_a_new_upload(&e).await;
    let (p_gate, p_handle) = Gate::before("insert", "new");
    let mut promoting = e.backend.clone();
    promoting.index = Intercepted::wrap(e.backend.index.clone(), p_gate);
    let ev2 = ev.clone();
    let promotion = tokio::spawn(async move { promoter(&promoting).promote(&ev2).await });
    p_handle.reached.await.unwrap();

    let (s_gate, s_handle) = Gate::after("delete", names::ARTIFACTS_PREFIX);
    let mut sweeping = e.backend.clone();
    sweeping.blobs = Intercepted::wrap(e.backend.blobs.clone(), s_gate);
    let c = cfg(&e);
    let sweeping_task = tokio::spawn(async move { sweep(&sweeping, &c).await });
    s_handle.reached.await.unwrap();
    // The blob is unlinked; now the promotion inserts and finishes (its
    // step 6 re-stores the blob), then the sweep confirms.
    p_handle.release.send(()).unwrap();
    assert_eq!(promotion.await.unwrap().unwrap(), Outcome::Done);
    s_handle.release.send(()).unwrap();
    let report = sweeping_task.await.unwrap().unwrap();
    assert_eq!(report.blobs_deleted, 0);
    assert_eq!(report.blobs_rescued, 1);
    assert_new_entry_is_whole(&e, &cas).await;
}

async fn a_promotion_during_the_confirming_scan_keeps_its_blob(e: Env) {
    let (ev, cas) = dead_blob_and_a_new_upload(&e).await;
    // Gate the sweep's pending-copy deletion: by then G3 has decided.
    let report =
        promote_while_sweep_is_held(&e, &ev, Gate::before("delete", PENDING_PREFIX), false).await;
    // The promotion stored the blob again itself (step 6).
    assert_eq!(report.blobs_deleted, 1);
    assert_new_entry_is_whole(&e, &cas).await;
}

// ---- crash at any step ------------------------------------------------------

async fn a_crash_after_any_sweep_step_is_resumed_by_the_next_run(first: Env) {
    let mut covered = 0;
    let mut e = first;
    for fail_at in 1.. {
        if fail_at > 1 {
            e = e.another().await;
        }
        let keep = save(&e, "u1", "keep", &main_scope(), b"referenced").await;
        let dead = save(&e, "u2", "dead", &main_scope(), b"unreferenced").await;
        let _idle = save(&e, "u3", "idle", &main_scope(), b"idle").await;
        invalidate(&e, &dead).await;
        e.advance(hours(2));
        e.backend
            .index
            .record_access(&main_scope(), VERSION, "keep", e.now())
            .await
            .unwrap();
        let mut c = cfg(&e);
        c.ttl = hours(1); // evicts `idle`, not the just-accessed `keep`

        let faults = Faults::new(fail_at);
        let first = sweep(&crashing(&e.backend, &faults), &c).await;
        if !faults.fired() {
            first.unwrap();
            break;
        }
        assert!(first.is_err(), "crash at write {fail_at}");
        covered += 1;

        // The next runs, healthy; the second one after pending copies of
        // the crashed run have gone stale.
        sweep(&e.backend, &c).await.unwrap();
        e.advance(days(2));
        e.backend
            .index
            .record_access(&main_scope(), VERSION, "keep", e.now())
            .await
            .unwrap();
        sweep(&e.backend, &c).await.unwrap();

        assert_eq!(
            read(&e.backend, &artifact(&keep)).await,
            b"referenced",
            "crash at {fail_at}"
        );
        assert!(
            exists(&e.backend, &metadata(&keep)).await,
            "crash at {fail_at}"
        );
        assert!(
            !exists(&e.backend, &artifact(&dead)).await,
            "crash at {fail_at}"
        );
        assert!(
            keys_under(&e.backend, PENDING_PREFIX).await.is_empty(),
            "crash at {fail_at}"
        );
        let audit = e.backend.index.audit_log(REPO, 100).await.unwrap();
        let evicted: Vec<_> = audit
            .iter()
            .filter(|a| a.action == AuditAction::Evicted)
            .collect();
        assert_eq!(
            evicted.len(),
            1,
            "crash at {fail_at}: one record for the one eviction"
        );
        assert_eq!(evicted[0].cache_key.as_deref(), Some("idle"));
        assert!(audit.iter().any(|a| a.action == AuditAction::Deleted
            && a.content_hash.as_ref() == Some(&dead.content_hash)));
        assert!(!audit.iter().any(|a| a.action == AuditAction::Deleted
            && a.content_hash.as_ref() == Some(&keep.content_hash)));
    }
    assert!(covered >= 6, "covered {covered} write steps");
}

async fn a_sweep_that_dies_before_confirming_leaves_a_copy_the_next_run_rescues(e: Env) {
    // A promotion dedups onto the blob and finishes (its step 6 still saw
    // the blob) between the sweep's listing and its unlink; the sweep then
    // dies before it could rescue. The entry dangles until the next run,
    // which finds the crashed run's pending copy and puts the blob back.
    let (ev, cas) = dead_blob_and_a_new_upload(&e).await;
    let (gate, handle) = Gate::before("copy", names::ARTIFACTS_PREFIX);
    // Writes of the sweep: 1 copy aside, 2 delete artifact, 3 delete
    // metadata, 4 the rescue's put: it dies there.
    let faults = Faults::new(4);
    let mut sweeping = crashing(&e.backend, &faults);
    sweeping.blobs = Intercepted::wrap(sweeping.blobs.clone(), gate);
    let c = cfg(&e);
    let task = tokio::spawn(async move { sweep(&sweeping, &c).await });
    handle.reached.await.unwrap();
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    handle.release.send(()).unwrap();
    assert!(task.await.unwrap().is_err(), "the sweep died");
    assert!(faults.fired());
    assert!(!exists(&e.backend, &cas).await, "dangling for now");
    assert_eq!(keys_under(&e.backend, PENDING_PREFIX).await.len(), 1);

    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!(report.blobs_rescued, 1);
    assert_eq!(read(&e.backend, &cas).await, b"popular content");
    // The copy is kept until it is stale (its run might still be going)...
    e.advance(days(2));
    let report = sweep(&e.backend, &cfg(&e)).await.unwrap();
    assert_eq!((report.leftovers_finished, report.blobs_deleted), (1, 0));
    // ...and the blob, referenced throughout, is never audited as deleted.
    let audit = e.backend.index.audit_log(REPO, 50).await.unwrap();
    assert!(!audit.iter().any(|a| a.action == AuditAction::Deleted));
    assert_new_entry_is_whole(&e, &cas).await;
}

async fn a_vanished_blob_whose_staged_bytes_were_swapped_takes_the_new_entry_out_of_service(
    e: Env,
) {
    // promote verified the staged bytes and dedups; before its step 6 the
    // blob is gone (a sweep) and the runner has swapped the staged bytes.
    // Step 6 cannot re-store the blob from them (the verifying reader
    // refuses): the new entry must not stay live pointing at nothing.
    let (ev, cas) = dead_blob_and_a_new_upload(&e).await;
    let (gate, handle) = Gate::after("insert", "new");
    let mut promoting = e.backend.clone();
    promoting.index = Intercepted::wrap(e.backend.index.clone(), gate);
    let ev2 = ev.clone();
    let task = tokio::spawn(async move { promoter(&promoting).promote(&ev2).await });
    handle.reached.await.unwrap();
    e.backend.blobs.delete(&cas).await.unwrap();
    put_bytes(&e.backend, &ev.staging_key, b"swapped after verification").await;
    handle.release.send(()).unwrap();
    assert_eq!(task.await.unwrap().unwrap(), Outcome::Done);

    assert!(lookup(&e.backend, &main_scope(), "new").await.is_none());
    assert!(
        !exists(&e.backend, &cas).await,
        "nothing unverified entered the CAS"
    );
    assert!(!exists(&e.backend, &ev.staging_key).await);
    let audit = e.backend.index.audit_log(REPO, 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.rule == "verification" && a.cache_key.as_deref() == Some("new")));
}
