//! `explain` renders the trace of the very search `restore` runs: on one
//! index holding entries in every kind of scope (the default branch, the
//! run's own branch, a sibling branch, a pull request, its base, another
//! pull request, a tag), invalidated and low-trust entries among them,
//! every combination of run, key ladder and `--trust` gives the same answer
//! from `restore --lookup-only`, from `explain`, from the last step of
//! explain's trace, and from a plain model of DESIGN.md's restore
//! semantics written here.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use runcache::{
    context::RunContext,
    explain::{explain, StepOutcome},
    restore::{restore, RestoreQuery, RestoreRequest},
};
use runcache_infra::{index::restore_scopes, Backend, Config, StateChange, SystemClock};
use runcache_schemas::{ContentHash, EntryState, HitKind, IndexEntry, Scope, TrustLevel};

const REPO: &str = "acme/app";
const PATHS: [&str; 1] = ["dist"];

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn entry(git_ref: &str, key: &str, created: i64, trust: TrustLevel) -> IndexEntry {
    let hex = format!("{:064x}", created);
    IndexEntry {
        cache_key: key.into(),
        content_hash: ContentHash::from_hex(&hex).unwrap(),
        s3_key: format!("artifacts/{hex}"),
        repository: REPO.into(),
        git_ref: git_ref.into(),
        cache_version: runcache_archive::cache_version(&paths()),
        toolchain: String::new(),
        lockfile_hash: None,
        size_bytes: 1,
        created_at: t(created),
        last_accessed: t(created),
        access_count: 0,
        ttl: t(created).timestamp() + 90 * 86_400,
        state: EntryState::Live,
        invalidated_at: None,
        reason: None,
        invalidated_by: None,
        trust,
        trigger_event: "push".into(),
        upload_id: format!("u{created}"),
        build_duration_ms: None,
        attributes: Default::default(),
    }
}

fn paths() -> Vec<String> {
    PATHS.iter().map(|p| p.to_string()).collect()
}

/// Entries in every kind of scope; `created` doubles as a unique id.
fn corpus() -> (Vec<IndexEntry>, Vec<(String, String)>) {
    use TrustLevel::*;
    let main = "refs/heads/main";
    let feature = "refs/heads/feature-x";
    let sibling = "refs/heads/feature-y";
    let base = "refs/heads/release";
    let pr = "refs/pull/7/merge";
    let other_pr = "refs/pull/8/merge";
    let tag = "refs/tags/v1.0";
    let entries = vec![
        entry(main, "deps-linux-aaa", 1, Protected),
        entry(main, "deps-linux-bbb", 2, Protected),
        entry(main, "deps-linux-old", 3, Protected),
        entry(main, "deps-linux-ccc", 4, Branch),
        entry(main, "build-linux-1", 5, Protected),
        entry(feature, "deps-linux-fff", 6, Branch),
        entry(feature, "deps-linux-aaa", 7, Branch),
        entry(sibling, "deps-linux-sib", 8, Branch),
        entry(sibling, "build-linux-2", 9, Branch),
        entry(base, "deps-linux-rel", 10, Protected),
        entry(base, "build-linux-3", 11, Protected),
        entry(pr, "deps-linux-pr7", 12, PullRequest),
        entry(pr, "build-linux-4", 13, PullRequest),
        entry(other_pr, "deps-linux-pr8", 14, PullRequest),
        entry(other_pr, "deps-linux-aaa", 15, PullRequest),
        entry(tag, "deps-linux-tag", 16, Protected),
        entry(main, "deps-linux-gone", 17, Protected),
        entry(feature, "deps-linux-gone", 18, Branch),
        entry(pr, "deps-linux-untrusted", 19, Untrusted),
    ];
    let invalidated = vec![
        (main.to_string(), "deps-linux-gone".to_string()),
        (feature.to_string(), "deps-linux-gone".to_string()),
    ];
    (entries, invalidated)
}

/// The runs: (ref, base ref) of every scope kind.
fn runs() -> Vec<(&'static str, Option<&'static str>)> {
    vec![
        ("refs/heads/main", None),
        ("refs/heads/feature-x", None),
        ("refs/heads/feature-y", None),
        ("refs/heads/brand-new", None),
        ("refs/pull/7/merge", Some("release")),
        ("refs/pull/7/merge", None),
        ("refs/pull/8/merge", Some("feature-x")),
        ("refs/pull/9/merge", Some("release")),
        ("refs/tags/v1.0", None),
    ]
}

fn ladders() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("deps-linux-aaa", vec![]),
        ("deps-linux-aaa", vec!["deps-linux-"]),
        ("deps-linux-zzz", vec!["deps-linux-"]),
        ("deps-linux-zzz", vec!["deps-linux-b", "deps-"]),
        ("deps-linux-gone", vec![]),
        ("deps-linux-gone", vec!["deps-linux-g"]),
        ("deps-linux-", vec![]),
        ("build-linux-9", vec!["build-linux-", "deps-"]),
        ("nothing", vec!["none-"]),
        ("deps-linux-pr8", vec![]),
        ("deps-linux-sib", vec!["deps-linux-s"]),
        ("deps-linux-untrusted", vec!["deps-linux-u"]),
    ]
}

/// DESIGN.md "Restore semantics", written plainly over the whole corpus.
fn model(
    all: &[IndexEntry],
    scopes: &[Scope],
    key: &str,
    restore_keys: &[&str],
    min_trust: TrustLevel,
) -> Option<(HitKind, String, String)> {
    let usable = |e: &&IndexEntry, scope: &Scope| {
        e.git_ref == scope.git_ref && e.is_live() && e.trust >= min_trust
    };
    for scope in scopes {
        if let Some(e) = all.iter().find(|e| usable(e, scope) && e.cache_key == key) {
            return Some((HitKind::Exact, e.cache_key.clone(), e.git_ref.clone()));
        }
        for prefix in std::iter::once(key).chain(restore_keys.iter().copied()) {
            let newest = all
                .iter()
                .filter(|e| usable(e, scope) && e.cache_key.starts_with(prefix))
                .max_by_key(|e| e.created_at);
            if let Some(e) = newest {
                let kind = if e.cache_key == key {
                    HitKind::Exact
                } else {
                    HitKind::Prefix
                };
                return Some((kind, e.cache_key.clone(), e.git_ref.clone()));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_restore_agree_for_every_scope_kind() {
    let home = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let backend = Backend::local(&Config::local(home.path()), Arc::new(SystemClock)).unwrap();
    let (mut entries, invalidated) = corpus();
    for e in &entries {
        backend.index.insert(e).await.unwrap();
    }
    let version = runcache_archive::cache_version(&paths());
    for (git_ref, key) in &invalidated {
        let change = StateChange {
            state: EntryState::Invalidated,
            at: t(100),
            reason: "test".into(),
            by: "test".into(),
        };
        let scope = Scope::new(REPO, git_ref.as_str());
        assert!(backend
            .index
            .set_state(&scope, &version, key, &change)
            .await
            .unwrap());
        for e in entries.iter_mut() {
            if e.git_ref == *git_ref && e.cache_key == *key {
                e.state = EntryState::Invalidated;
            }
        }
    }

    let mut compared = 0;
    let mut hits = 0;
    for (git_ref, base_ref) in runs() {
        let ctx = RunContext {
            scope: Scope::new(REPO, git_ref),
            base_ref: base_ref.map(str::to_string),
            default_branch: "main".into(),
            event_name: "push".into(),
            trust: TrustLevel::Protected,
            workspace: workspace.path().to_path_buf(),
            traceparent: String::new(),
        };
        let scopes = restore_scopes(&ctx.scope, ctx.base_ref.as_deref(), &ctx.default_branch);
        for (key, restore_keys) in ladders() {
            for min_trust in TrustLevel::ALL {
                let expected = model(&entries, &scopes, key, &restore_keys, min_trust);
                let query = RestoreQuery {
                    key: key.into(),
                    restore_keys: restore_keys.iter().map(|k| k.to_string()).collect(),
                    paths: paths(),
                    min_trust,
                };
                let restored = restore(
                    &backend,
                    &ctx,
                    &RestoreRequest {
                        query: query.clone(),
                        lookup_only: true,
                        ..RestoreRequest::new(key, vec![], paths())
                    },
                )
                .await
                .unwrap();
                let explained = explain(&backend, &ctx, &query).await.unwrap();
                let case = format!(
                    "{git_ref} (base {base_ref:?}) {key} {restore_keys:?} trust {min_trust}"
                );
                let from_restore = (restored.hit_kind != HitKind::Miss).then(|| {
                    (
                        restored.hit_kind,
                        restored.outputs.cache_matched_key.clone(),
                        restored.matched_ref.clone().unwrap(),
                    )
                });
                let from_explain = explained.result.matched_key.clone().map(|k| {
                    (
                        explained.result.hit_kind,
                        k,
                        explained.result.matched_ref.clone().unwrap(),
                    )
                });
                assert_eq!(from_restore, expected, "restore vs the model: {case}");
                assert_eq!(from_explain, expected, "explain vs the model: {case}");
                let last = explained.steps.last().expect("at least one step");
                match &expected {
                    Some((_, matched, matched_ref)) => {
                        assert_eq!(last.outcome, StepOutcome::Matched, "{case}");
                        assert_eq!(last.key.as_ref(), Some(matched), "{case}");
                        assert_eq!(&last.git_ref, matched_ref, "{case}");
                        hits += 1;
                    }
                    None => {
                        assert!(
                            explained
                                .steps
                                .iter()
                                .all(|s| s.outcome != StepOutcome::Matched),
                            "{case}"
                        );
                        // A miss walks every lookup of every readable scope.
                        assert_eq!(
                            explained.steps.len(),
                            scopes.len() * (2 + restore_keys.len()),
                            "{case}"
                        );
                    }
                }
                compared += 1;
            }
        }
    }
    assert_eq!(
        compared,
        runs().len() * ladders().len() * TrustLevel::ALL.len()
    );
    assert!(
        hits > compared / 4 && hits < compared,
        "the corpus gives both hits and misses ({hits} of {compared})"
    );
}
