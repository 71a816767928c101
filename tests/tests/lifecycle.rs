//! An entry's whole life through the same library calls the `runcache` and
//! `runcache-worker` binaries make, on the local backend with a manual
//! clock: save (promoted in-process) → restore, byte-identical → the
//! metrics worker counts the hit → `admin invalidate` → the invalidate
//! worker hides the entry, the next restore misses → the sweep deletes the
//! now-unreferenced blob, only once the grace period is over.

use std::{fs, os::unix::fs::symlink, sync::Arc, time::Duration};

use runcache::{
    admin,
    context::RunContext,
    restore::{restore, RestoreRequest},
    save::{save, SaveReport, SaveRequest},
};
use runcache_e2e::tree_snapshot;
use runcache_infra::{clock::ManualClock, names, Backend, Config};
use runcache_schemas::{AuditAction, HitKind, InvalidationSelector, Scope, TrustLevel};
use runcache_worker::{serve, Mode, ServiceOptions};
use tokio_util::sync::CancellationToken;

const REPO: &str = "acme/app";

fn ctx(workspace: &std::path::Path) -> RunContext {
    RunContext {
        scope: Scope::new(REPO, "refs/heads/main"),
        base_ref: None,
        default_branch: "main".into(),
        event_name: "push".into(),
        trust: TrustLevel::Protected,
        workspace: workspace.to_path_buf(),
        traceparent: runcache_infra::queue::trace::new_traceparent(),
    }
}

fn request(key: &str) -> RestoreRequest {
    RestoreRequest::new(key, vec![], vec!["dist".into()])
}

/// Runs one worker mode until its queue is drained (or one sweep ran).
async fn run_once(backend: &Backend, config: &Config, mode: Mode) {
    let mut opts = ServiceOptions::from_config(config, "lifecycle-worker");
    opts.once = true;
    serve(backend.clone(), mode, opts, CancellationToken::new()).await;
}

async fn cas_exists(backend: &Backend, hash: &str) -> bool {
    backend
        .blobs
        .head(&names::artifact_key(hash.trim_start_matches("sha256:")))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_restore_metrics_invalidate_miss_and_sweep() {
    let home = tempfile::tempdir().unwrap();
    let config = Config::local(home.path());
    let clock = ManualClock::default();
    let backend = Backend::local(&config, Arc::new(clock.clone())).unwrap();

    // save: archived, staged, promoted in-process.
    let ws = tempfile::tempdir().unwrap();
    fs::create_dir_all(ws.path().join("dist/js")).unwrap();
    fs::write(ws.path().join("dist/js/app.js"), b"console.log('built')").unwrap();
    symlink("js/app.js", ws.path().join("dist/main.js")).unwrap();
    let before = tree_snapshot(&ws.path().join("dist"));
    let SaveReport::Saved {
        content_hash,
        promoted,
        ..
    } = save(
        &config,
        &backend,
        &ctx(ws.path()),
        &SaveRequest::new("build-1", vec!["dist".into()]),
    )
    .await
    .unwrap()
    else {
        panic!("expected a save");
    };
    assert!(promoted);
    assert!(cas_exists(&backend, &content_hash).await);

    // restore in a fresh workspace: an exact hit, byte-identical.
    let other = tempfile::tempdir().unwrap();
    let hit = restore(&backend, &ctx(other.path()), &request("build-1"))
        .await
        .unwrap();
    assert_eq!(hit.hit_kind, HitKind::Exact);
    assert_eq!(tree_snapshot(&other.path().join("dist")), before);

    // metrics: the access event becomes a hit for the repository.
    run_once(&backend, &config, Mode::Metrics).await;
    let since = clock_now(&backend) - chrono::Duration::hours(1);
    let stats = admin::stats(&backend, Some(REPO), since, 5).await.unwrap();
    assert_eq!(stats.repositories.len(), 1);
    assert_eq!(stats.repositories[0].hits, 1, "{stats:?}");

    // invalidate: requested through admin, applied by the worker.
    let selector = InvalidationSelector {
        key_prefix: Some("build-".into()),
        repository: Some(REPO.into()),
        ..Default::default()
    };
    let requested = admin::invalidate(&backend, selector, "bad compiler", "alice", false)
        .await
        .unwrap();
    assert_eq!(requested.live_matches_now, 1);
    run_once(&backend, &config, Mode::Invalidate).await;
    let third = tempfile::tempdir().unwrap();
    let miss = restore(&backend, &ctx(third.path()), &request("build-1"))
        .await
        .unwrap();
    assert_eq!(
        miss.hit_kind,
        HitKind::Miss,
        "invalidated entries never restore"
    );
    assert!(!third.path().join("dist").exists());
    assert!(
        cas_exists(&backend, &content_hash).await,
        "invalidation leaves the blob to the sweep"
    );

    // sweep: within the grace period the blob stays; after it, it goes.
    run_once(&backend, &config, Mode::Sweep).await;
    assert!(cas_exists(&backend, &content_hash).await, "grace period");
    clock.advance(Duration::from_secs(2 * 3600));
    run_once(&backend, &config, Mode::Sweep).await;
    assert!(
        !cas_exists(&backend, &content_hash).await,
        "the unreferenced blob is deleted"
    );
    let audit = backend.index.audit_log(REPO, 20).await.unwrap();
    let actions: Vec<AuditAction> = audit.iter().map(|a| a.action).collect();
    assert!(actions.contains(&AuditAction::Invalidated), "{audit:?}");
    assert!(actions.contains(&AuditAction::Deleted), "{audit:?}");
}

fn clock_now(backend: &Backend) -> chrono::DateTime<chrono::Utc> {
    backend.clock.now()
}
