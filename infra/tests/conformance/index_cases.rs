//! CacheIndex cases, including the restore search order shared by every
//! backend.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use runcache_infra::{
    index::{restore_scopes, search, search_exact, SearchRequest},
    CacheIndex, InsertOutcome, StateChange, StoreError,
};
use runcache_schemas::{
    AuditAction, AuditRecord, ContentHash, EntryState, HitKind, IndexEntry, Scope, TrustLevel,
};

use super::Fixture;

const REPO: &str = "acme/app";
const V1: &str = "v1-paths-hash";
const V2: &str = "v2-other-paths";

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn main_scope() -> Scope {
    Scope::new(REPO, "refs/heads/main")
}

fn hash(n: u8) -> ContentHash {
    ContentHash::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
}

fn entry(scope: &Scope, version: &str, key: &str, created: i64) -> IndexEntry {
    let h = hash(created as u8);
    IndexEntry {
        cache_key: key.into(),
        s3_key: format!("artifacts/{}", h.hex()),
        content_hash: h,
        repository: scope.repository.clone(),
        git_ref: scope.git_ref.clone(),
        cache_version: version.into(),
        toolchain: "node-20".into(),
        lockfile_hash: Some("lock-a".into()),
        size_bytes: 100,
        created_at: t(created),
        last_accessed: t(created),
        access_count: 0,
        ttl: t(created).timestamp() + 90 * 86400,
        state: EntryState::Live,
        invalidated_at: None,
        reason: None,
        invalidated_by: None,
        trust: TrustLevel::Protected,
        trigger_event: "push".into(),
        upload_id: format!("upload-{key}-{created}"),
        build_duration_ms: Some(60_000),
        attributes: Default::default(),
    }
}

async fn put(index: &dyn CacheIndex, e: &IndexEntry) {
    assert_eq!(
        index.insert(e).await.unwrap(),
        InsertOutcome::Inserted,
        "{}",
        e.cache_key
    );
}

fn invalidation() -> StateChange {
    StateChange {
        state: EntryState::Invalidated,
        at: t(100),
        reason: "lockfile compromised".into(),
        by: "admin@acme".into(),
    }
}

pub async fn get_missing_is_none(fx: &Fixture) {
    assert!(fx
        .index
        .get(&main_scope(), V1, "nope")
        .await
        .unwrap()
        .is_none());
}

pub async fn insert_then_get(fx: &Fixture) {
    let e = entry(&main_scope(), V1, "deps-linux-abc", 1);
    put(&*fx.index, &e).await;
    assert_eq!(
        fx.index
            .get(&main_scope(), V1, "deps-linux-abc")
            .await
            .unwrap(),
        Some(e)
    );
}

pub async fn duplicate_insert_is_refused(fx: &Fixture) {
    let first = entry(&main_scope(), V1, "k", 1);
    put(&*fx.index, &first).await;
    let mut second = entry(&main_scope(), V1, "k", 2);
    second.content_hash = hash(99);
    match fx.index.insert(&second).await.unwrap() {
        InsertOutcome::Exists(existing) => assert_eq!(*existing, first),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(
        fx.index
            .get(&main_scope(), V1, "k")
            .await
            .unwrap()
            .unwrap()
            .content_hash,
        first.content_hash,
        "keys are immutable: the first write stays"
    );
}

pub async fn concurrent_inserts_exactly_one_wins(fx: &Fixture) {
    let index: Arc<dyn CacheIndex> = fx.index.clone();
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let index = index.clone();
            tokio::spawn(async move {
                let mut e = entry(&main_scope(), V1, "race", 1);
                e.content_hash = hash(i + 10);
                (index.insert(&e).await.unwrap(), e)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (outcome, e) = task.await.unwrap();
        if outcome == InsertOutcome::Inserted {
            winners.push(e);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent insert wins");
    let stored = fx
        .index
        .get(&main_scope(), V1, "race")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.content_hash, winners[0].content_hash);
}

pub async fn prefix_newest_created_first(fx: &Fixture) {
    let s = main_scope();
    // Inserted out of creation order, and key order disagrees with time.
    for (key, created) in [("deps-b", 5), ("deps-c", 1), ("deps-a", 9), ("other-z", 20)] {
        put(&*fx.index, &entry(&s, V1, key, created)).await;
    }
    let found = fx.index.find_prefix(&s, V1, "deps-").await.unwrap();
    let keys: Vec<_> = found.iter().map(|e| e.cache_key.as_str()).collect();
    assert_eq!(keys, ["deps-a", "deps-b", "deps-c"]);
    assert!(fx
        .index
        .find_prefix(&s, V1, "zzz")
        .await
        .unwrap()
        .is_empty());
}

pub async fn prefix_is_scoped_and_versioned(fx: &Fixture) {
    let main = main_scope();
    let feature = main.branch("feature");
    put(&*fx.index, &entry(&main, V1, "deps-1", 1)).await;
    put(&*fx.index, &entry(&feature, V1, "deps-2", 2)).await;
    put(&*fx.index, &entry(&main, V2, "deps-3", 3)).await;
    put(
        &*fx.index,
        &entry(
            &Scope::new("acme/other", "refs/heads/main"),
            V1,
            "deps-4",
            4,
        ),
    )
    .await;
    let keys: Vec<_> = fx
        .index
        .find_prefix(&main, V1, "deps-")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.cache_key)
        .collect();
    assert_eq!(keys, ["deps-1"]);
}

pub async fn prefix_treats_wildcards_literally(fx: &Fixture) {
    let s = main_scope();
    put(&*fx.index, &entry(&s, V1, "a%b_c", 1)).await;
    put(&*fx.index, &entry(&s, V1, "aXbYc", 2)).await;
    let keys: Vec<_> = fx
        .index
        .find_prefix(&s, V1, "a%b_")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.cache_key)
        .collect();
    assert_eq!(keys, ["a%b_c"]);
}

pub async fn invalidated_entries_are_hidden(fx: &Fixture) {
    let s = main_scope();
    put(&*fx.index, &entry(&s, V1, "deps-old", 1)).await;
    put(&*fx.index, &entry(&s, V1, "deps-new", 2)).await;
    assert!(fx
        .index
        .set_state(&s, V1, "deps-new", &invalidation())
        .await
        .unwrap());
    let found = fx.index.find_prefix(&s, V1, "deps-").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].cache_key, "deps-old");
    let stored = fx.index.get(&s, V1, "deps-new").await.unwrap().unwrap();
    assert_eq!(stored.state, EntryState::Invalidated);
    assert_eq!(stored.reason.as_deref(), Some("lockfile compromised"));
    assert_eq!(stored.invalidated_by.as_deref(), Some("admin@acme"));
    assert_eq!(stored.invalidated_at, Some(t(100)));
    let req = request(vec![s.clone()], "deps-new", &["deps-"]);
    let hit = search(&*fx.index, &req)
        .await
        .unwrap()
        .expect("falls back to the live one");
    assert_eq!(hit.entry.cache_key, "deps-old");
    assert_eq!(hit.kind, HitKind::Prefix);
}

pub async fn state_changes_only_from_live(fx: &Fixture) {
    let s = main_scope();
    assert!(!fx
        .index
        .set_state(&s, V1, "absent", &invalidation())
        .await
        .unwrap());
    put(&*fx.index, &entry(&s, V1, "k", 1)).await;
    assert!(fx
        .index
        .set_state(&s, V1, "k", &invalidation())
        .await
        .unwrap());
    assert!(
        !fx.index
            .set_state(&s, V1, "k", &invalidation())
            .await
            .unwrap(),
        "twice is a no-op"
    );
    let revive = StateChange {
        state: EntryState::Live,
        ..invalidation()
    };
    assert!(
        !fx.index.set_state(&s, V1, "k", &revive).await.unwrap(),
        "never revives"
    );
    // A new save after invalidation replaces the dead entry.
    let fresh = entry(&s, V1, "k", 50);
    put(&*fx.index, &fresh).await;
    assert_eq!(fx.index.get(&s, V1, "k").await.unwrap(), Some(fresh));
}

pub async fn record_access_counts(fx: &Fixture) {
    let s = main_scope();
    put(&*fx.index, &entry(&s, V1, "k", 1)).await;
    fx.index.record_access(&s, V1, "k", t(10)).await.unwrap();
    fx.index.record_access(&s, V1, "k", t(5)).await.unwrap();
    let e = fx.index.get(&s, V1, "k").await.unwrap().unwrap();
    assert_eq!(e.access_count, 2);
    assert_eq!(
        e.last_accessed,
        t(10),
        "an older access never moves it back"
    );
    assert_eq!(
        e.ttl,
        t(10).timestamp() + 90 * 86400,
        "the record's expiry slides with its last access (DynamoDB's TTL must \
         never delete an entry still in use)"
    );
    assert!(matches!(
        fx.index.record_access(&s, V1, "absent", t(1)).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn queries_by_repository_toolchain_and_lockfile(fx: &Fixture) {
    let s = main_scope();
    let mut a = entry(&s, V1, "a", 1);
    a.toolchain = "node-18".into();
    let mut b = entry(&s, V1, "b", 2);
    b.lockfile_hash = Some("lock-b".into());
    let other = entry(&Scope::new("acme/other", "refs/heads/main"), V1, "c", 3);
    for e in [&a, &b, &other] {
        put(&*fx.index, e).await;
    }
    let mut all: Vec<_> = fx
        .index
        .by_repository(REPO, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.cache_key)
        .collect();
    all.sort();
    assert_eq!(all, ["a", "b"]);
    let node18 = fx.index.by_repository(REPO, Some("node-18")).await.unwrap();
    assert_eq!(node18.len(), 1);
    assert_eq!(node18[0].cache_key, "a");
    let mut lock_a: Vec<_> = fx
        .index
        .by_lockfile("lock-a")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.cache_key)
        .collect();
    lock_a.sort();
    assert_eq!(lock_a, ["a", "c"]);
    assert!(fx.index.by_lockfile("lock-zzz").await.unwrap().is_empty());
}

pub async fn remove_and_scan_in_pages(fx: &Fixture) {
    let s = main_scope();
    for i in 0..25 {
        put(&*fx.index, &entry(&s, V1, &format!("k{i:02}"), i)).await;
    }
    fx.index.remove(&s, V1, "k03").await.unwrap();
    fx.index.remove(&s, V1, "never-there").await.unwrap();
    assert!(fx.index.get(&s, V1, "k03").await.unwrap().is_none());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = fx.index.scan(cursor.as_deref(), 10).await.unwrap();
        assert!(page.entries.len() <= 10);
        seen.extend(page.entries.into_iter().map(|e| e.cache_key));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    let expected: Vec<String> = (0..25)
        .filter(|i| *i != 3)
        .map(|i| format!("k{i:02}"))
        .collect();
    assert_eq!(seen, expected);
}

fn audit(id: &str, minute: i64) -> AuditRecord {
    AuditRecord {
        audit_id: id.into(),
        action: AuditAction::Evicted,
        repository: REPO.into(),
        git_ref: Some("refs/heads/main".into()),
        cache_key: Some("k".into()),
        cache_version: Some(V1.into()),
        content_hash: Some(hash(1)),
        reason: "quota".into(),
        rule: "quota".into(),
        actor: "sweep".into(),
        at: t(minute),
    }
}

pub async fn audit_log_is_idempotent_and_newest_first(fx: &Fixture) {
    fx.index.append_audit(&audit("a1", 1)).await.unwrap();
    fx.index.append_audit(&audit("a2", 2)).await.unwrap();
    fx.index.append_audit(&audit("a1", 1)).await.unwrap();
    let log = fx.index.audit_log(REPO, 10).await.unwrap();
    let ids: Vec<_> = log.iter().map(|a| a.audit_id.as_str()).collect();
    assert_eq!(ids, ["a2", "a1"]);
    assert_eq!(log[1], audit("a1", 1));
    assert!(fx
        .index
        .audit_log("acme/other", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(fx.index.audit_log(REPO, 1).await.unwrap().len(), 1);
}

fn request(scopes: Vec<Scope>, primary: &str, restore: &[&str]) -> SearchRequest {
    SearchRequest {
        scopes,
        version: V1.into(),
        primary_key: primary.into(),
        restore_keys: restore.iter().map(|s| s.to_string()).collect(),
        min_trust: TrustLevel::Untrusted,
    }
}

async fn found(fx: &Fixture, req: &SearchRequest) -> Option<(String, String, HitKind)> {
    search(&*fx.index, req)
        .await
        .unwrap()
        .map(|h| (h.entry.git_ref, h.entry.cache_key, h.kind))
}

pub async fn search_order_exact_then_prefix_then_restore_keys(fx: &Fixture) {
    let s = main_scope();
    let main = "refs/heads/main".to_string();
    put(&*fx.index, &entry(&s, V1, "linux-deps-aaa-extra", 5)).await;
    put(&*fx.index, &entry(&s, V1, "linux-deps-bbb", 3)).await;
    put(&*fx.index, &entry(&s, V1, "linux-old", 9)).await;
    // Exact wins even though a prefix match is newer.
    put(&*fx.index, &entry(&s, V1, "linux-deps-aaa", 1)).await;
    let req = request(
        vec![s.clone()],
        "linux-deps-aaa",
        &["linux-deps-", "linux-"],
    );
    assert_eq!(
        found(fx, &req).await,
        Some((main.clone(), "linux-deps-aaa".into(), HitKind::Exact))
    );
    // No exact: the primary key as a prefix comes before the restore keys.
    let req = request(vec![s.clone()], "linux-deps-a", &["linux-"]);
    assert_eq!(
        found(fx, &req).await,
        Some((main.clone(), "linux-deps-aaa-extra".into(), HitKind::Prefix))
    );
    // Restore keys in the order given; newest created within one.
    let req = request(
        vec![s.clone()],
        "linux-deps-zzz",
        &["linux-deps-", "linux-"],
    );
    assert_eq!(
        found(fx, &req).await,
        Some((main.clone(), "linux-deps-aaa-extra".into(), HitKind::Prefix))
    );
    let req = request(
        vec![s.clone()],
        "linux-deps-zzz",
        &["linux-o", "linux-deps-"],
    );
    assert_eq!(
        found(fx, &req).await,
        Some((main, "linux-old".into(), HitKind::Prefix))
    );
    let req = request(vec![s], "windows", &["win-"]);
    assert_eq!(found(fx, &req).await, None);
}

pub async fn search_falls_back_through_scopes(fx: &Fixture) {
    let pr = Scope::new(REPO, "refs/pull/7/merge");
    let scopes = restore_scopes(&pr, Some("develop"), "main");
    let refs: Vec<_> = scopes.iter().map(|s| s.git_ref.as_str()).collect();
    assert_eq!(
        refs,
        ["refs/pull/7/merge", "refs/heads/develop", "refs/heads/main"]
    );
    put(&*fx.index, &entry(&main_scope(), V1, "deps-x", 1)).await;
    let req = request(scopes.clone(), "deps-x", &[]);
    assert_eq!(
        found(fx, &req).await,
        Some(("refs/heads/main".into(), "deps-x".into(), HitKind::Exact))
    );
    // The base branch is searched before the default branch, even for an
    // older prefix match against a newer exact one further down.
    put(
        &*fx.index,
        &entry(&main_scope().branch("develop"), V1, "deps-x-dev", 0),
    )
    .await;
    let req = request(scopes.clone(), "deps-x", &["deps-"]);
    assert_eq!(
        found(fx, &req).await,
        Some((
            "refs/heads/develop".into(),
            "deps-x-dev".into(),
            HitKind::Prefix
        ))
    );
    // The run's own scope comes first.
    put(&*fx.index, &entry(&pr, V1, "deps-x", 2)).await;
    assert_eq!(
        found(fx, &req).await,
        Some(("refs/pull/7/merge".into(), "deps-x".into(), HitKind::Exact))
    );
    let on_main = restore_scopes(&main_scope(), None, "main");
    assert_eq!(on_main, vec![main_scope()], "no duplicate scopes");
}

pub async fn search_never_crosses_branches_or_pull_requests(fx: &Fixture) {
    let sibling = main_scope().branch("feature-b");
    let other_pr = Scope::new(REPO, "refs/pull/8/merge");
    put(&*fx.index, &entry(&sibling, V1, "deps-x", 1)).await;
    put(&*fx.index, &entry(&other_pr, V1, "deps-x", 2)).await;
    let me = main_scope().branch("feature-a");
    let req = request(restore_scopes(&me, None, "main"), "deps-x", &["deps-"]);
    assert_eq!(
        found(fx, &req).await,
        None,
        "a branch never sees a sibling's entries"
    );
    let my_pr = Scope::new(REPO, "refs/pull/7/merge");
    let req = request(
        restore_scopes(&my_pr, Some("main"), "main"),
        "deps-x",
        &["deps-"],
    );
    assert_eq!(
        found(fx, &req).await,
        None,
        "a pull request never sees another's"
    );
}

pub async fn search_never_matches_another_version(fx: &Fixture) {
    put(&*fx.index, &entry(&main_scope(), V2, "deps-x", 1)).await;
    let req = request(vec![main_scope()], "deps-x", &["deps-"]);
    assert_eq!(found(fx, &req).await, None);
}

pub async fn search_respects_minimum_trust(fx: &Fixture) {
    let s = main_scope();
    let mut untrusted = entry(&s, V1, "deps-new", 5);
    untrusted.trust = TrustLevel::Untrusted;
    untrusted.trigger_event = "pull_request_target".into();
    put(&*fx.index, &untrusted).await;
    put(&*fx.index, &entry(&s, V1, "deps-old", 1)).await;
    let mut req = request(vec![s.clone()], "deps-new", &["deps-"]);
    assert_eq!(found(fx, &req).await.unwrap().1, "deps-new");
    req.min_trust = TrustLevel::Protected;
    assert_eq!(
        found(fx, &req).await,
        Some(("refs/heads/main".into(), "deps-old".into(), HitKind::Prefix)),
        "entries below the demanded trust are passed over"
    );
}

/// Entries with no toolchain and no lockfile are still found by repository
/// (DynamoDB refuses empty strings as index keys; the adapter must not drop
/// such entries from its index).
pub async fn entries_without_toolchain_or_lockfile_are_queryable(fx: &Fixture) {
    let s = main_scope();
    let mut bare = entry(&s, V1, "bare", 1);
    bare.toolchain = String::new();
    bare.lockfile_hash = None;
    put(&*fx.index, &bare).await;
    put(&*fx.index, &entry(&s, V1, "full", 2)).await;
    let mut all: Vec<_> = fx
        .index
        .by_repository(REPO, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.cache_key)
        .collect();
    all.sort();
    assert_eq!(all, ["bare", "full"]);
    let none = fx.index.by_repository(REPO, Some("")).await.unwrap();
    assert_eq!(none.len(), 1);
    assert_eq!(none[0], bare, "stored and read back unchanged");
    assert_eq!(fx.index.by_lockfile("lock-a").await.unwrap().len(), 1);
}

/// `scan` hands out entries only, whatever else the index keeps (audit
/// records), across pages.
pub async fn scan_returns_entries_not_audit_records(fx: &Fixture) {
    let s = main_scope();
    for i in 0..5 {
        put(&*fx.index, &entry(&s, V1, &format!("k{i}"), i)).await;
        fx.index
            .append_audit(&audit(&format!("a{i}"), i))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = fx.index.scan(cursor.as_deref(), 3).await.unwrap();
        assert!(page.entries.len() <= 3);
        seen.extend(page.entries.into_iter().map(|e| e.cache_key));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["k0", "k1", "k2", "k3", "k4"]);
    assert_eq!(fx.index.audit_log(REPO, 10).await.unwrap().len(), 5);
}

/// `by_key` (for `runcache explain`): the key in every ref, version and
/// state of one repository, newest first, and nothing else.
pub async fn by_key_finds_the_key_in_every_ref_version_and_state(fx: &Fixture) {
    let main = main_scope();
    let sibling = main.branch("feature-b");
    let pr = Scope::new(REPO, "refs/pull/8/merge");
    put(&*fx.index, &entry(&main, V1, "deps-x", 1)).await;
    put(&*fx.index, &entry(&main, V2, "deps-x", 2)).await;
    put(&*fx.index, &entry(&sibling, V1, "deps-x", 3)).await;
    put(&*fx.index, &entry(&pr, V1, "deps-x", 4)).await;
    assert!(fx
        .index
        .set_state(&main, V1, "deps-x", &invalidation())
        .await
        .unwrap());
    // Not the key: a longer key, a prefix of it, another repository.
    put(&*fx.index, &entry(&main, V1, "deps-x-longer", 5)).await;
    put(&*fx.index, &entry(&main, V1, "deps-", 6)).await;
    put(
        &*fx.index,
        &entry(
            &Scope::new("acme/other", "refs/heads/main"),
            V1,
            "deps-x",
            7,
        ),
    )
    .await;
    let found: Vec<_> = fx
        .index
        .by_key(REPO, "deps-x")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.git_ref, e.cache_version, e.state))
        .collect();
    assert_eq!(
        found,
        [
            (
                "refs/pull/8/merge".to_string(),
                V1.to_string(),
                EntryState::Live
            ),
            ("refs/heads/feature-b".into(), V1.into(), EntryState::Live),
            ("refs/heads/main".into(), V2.into(), EntryState::Live),
            ("refs/heads/main".into(), V1.into(), EntryState::Invalidated),
        ]
    );
    assert!(fx.index.by_key(REPO, "nope").await.unwrap().is_empty());
}

/// `list_prefix` (for `runcache explain`): one scope and version, any
/// state, key order, bounded, prefixes taken literally.
pub async fn list_prefix_includes_entries_that_are_not_live(fx: &Fixture) {
    let s = main_scope();
    for (key, created) in [
        ("deps-c", 1),
        ("deps-a", 2),
        ("deps-b", 3),
        ("deps%_", 4),
        ("other", 5),
    ] {
        put(&*fx.index, &entry(&s, V1, key, created)).await;
    }
    put(&*fx.index, &entry(&s, V2, "deps-0", 6)).await;
    put(&*fx.index, &entry(&s.branch("feature"), V1, "deps-0", 7)).await;
    assert!(fx
        .index
        .set_state(&s, V1, "deps-b", &invalidation())
        .await
        .unwrap());
    let keys = |entries: Vec<IndexEntry>| -> Vec<(String, EntryState)> {
        entries
            .into_iter()
            .map(|e| (e.cache_key, e.state))
            .collect()
    };
    assert_eq!(
        keys(fx.index.list_prefix(&s, V1, "deps-", 10).await.unwrap()),
        [
            ("deps-a".to_string(), EntryState::Live),
            ("deps-b".into(), EntryState::Invalidated),
            ("deps-c".into(), EntryState::Live),
        ]
    );
    assert_eq!(
        keys(fx.index.list_prefix(&s, V1, "deps-", 2).await.unwrap()),
        [
            ("deps-a".to_string(), EntryState::Live),
            ("deps-b".into(), EntryState::Invalidated),
        ]
    );
    assert_eq!(
        keys(fx.index.list_prefix(&s, V1, "deps%", 10).await.unwrap()),
        [("deps%_".to_string(), EntryState::Live)],
        "wildcards are literal"
    );
    assert_eq!(
        fx.index.list_prefix(&s, V1, "", 100).await.unwrap().len(),
        5,
        "an empty prefix lists the scope's version"
    );
    assert!(fx
        .index
        .list_prefix(&s, V1, "zzz", 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn exact_search_matches_the_key_only_in_scope_order(fx: &Fixture) {
    let pr = Scope::new(REPO, "refs/pull/9/merge");
    let scopes = restore_scopes(&pr, None, "main");
    // A longer key that starts with the one asked for: never an exact hit.
    put(&*fx.index, &entry(&main_scope(), V1, "obj-1234", 1)).await;
    let each = fx.index.get_each(&scopes, V1, "obj-12").await.unwrap();
    assert_eq!(each.len(), 2);
    assert!(each.iter().all(Option::is_none), "{each:?}");
    assert!(
        search_exact(&*fx.index, &scopes, V1, "obj-12", TrustLevel::Untrusted)
            .await
            .unwrap()
            .is_none()
    );
    // The default branch has it; then the pull request's own scope too,
    // which comes first.
    put(&*fx.index, &entry(&main_scope(), V1, "obj-12", 2)).await;
    let hit = search_exact(&*fx.index, &scopes, V1, "obj-12", TrustLevel::Untrusted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (hit.entry.git_ref.as_str(), hit.kind),
        ("refs/heads/main", HitKind::Exact)
    );
    put(&*fx.index, &entry(&pr, V1, "obj-12", 3)).await;
    let each = fx.index.get_each(&scopes, V1, "obj-12").await.unwrap();
    let refs: Vec<_> = each
        .iter()
        .map(|e| e.as_ref().map(|e| e.git_ref.as_str()))
        .collect();
    assert_eq!(refs, [Some("refs/pull/9/merge"), Some("refs/heads/main")]);
    let hit = search_exact(&*fx.index, &scopes, V1, "obj-12", TrustLevel::Untrusted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hit.entry.git_ref, "refs/pull/9/merge");
    // Another version is another object.
    assert!(fx
        .index
        .get_each(&scopes, V2, "obj-12")
        .await
        .unwrap()
        .iter()
        .all(Option::is_none));
    // Not live: passed over for the next scope; below the trust asked: too.
    fx.index
        .set_state(&pr, V1, "obj-12", &invalidation())
        .await
        .unwrap();
    let hit = search_exact(&*fx.index, &scopes, V1, "obj-12", TrustLevel::Untrusted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hit.entry.git_ref, "refs/heads/main");
    let strict = search_exact(&*fx.index, &scopes, V1, "obj-12", TrustLevel::Protected).await;
    let main_trust = hit.entry.trust;
    assert_eq!(
        strict.unwrap().is_some(),
        main_trust >= TrustLevel::Protected,
        "the trust filter applies"
    );
}
