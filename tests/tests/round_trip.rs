//! Whole flows on the local backend through the library API: save a real
//! tree, restore it byte-identical (modes, mtimes, symlinks), refuse a
//! tampered CAS blob without touching the target.

use std::{
    fs,
    os::unix::fs::{symlink, PermissionsExt},
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use runcache::{
    context::RunContext,
    restore::{restore, RestoreRequest},
    save::{save, SaveReport, SaveRequest},
};
use runcache_e2e::tree_snapshot;
use runcache_infra::{names, Backend, Config, SystemClock};
use runcache_schemas::{HitKind, Scope, TrustLevel};

struct Setup {
    config: Config,
    backend: Backend,
    ctx: RunContext,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn setup() -> Setup {
    let home = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let config = Config::local(home.path());
    let backend = Backend::local(&config, Arc::new(SystemClock)).unwrap();
    let ctx = RunContext {
        scope: Scope::new("acme/app", "refs/heads/main"),
        base_ref: None,
        default_branch: "main".into(),
        event_name: "push".into(),
        trust: TrustLevel::Protected,
        workspace: ws.path().to_path_buf(),
        traceparent: runcache_infra::queue::trace::new_traceparent(),
    };
    Setup {
        config,
        backend,
        ctx,
        _dirs: (home, ws),
    }
}

/// A small project tree with what real caches contain.
fn make_tree(root: &Path) {
    let nm = root.join("node_modules");
    fs::create_dir_all(nm.join("left-pad/lib")).unwrap();
    fs::create_dir_all(nm.join(".bin")).unwrap();
    fs::create_dir_all(nm.join("empty-dir")).unwrap();
    fs::write(nm.join("left-pad/package.json"), br#"{"name":"left-pad"}"#).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(nm.join("left-pad/lib/big.bin"), &big).unwrap();
    fs::write(nm.join("left-pad/lib/cli.js"), b"#!/usr/bin/env node\n").unwrap();
    fs::set_permissions(
        nm.join("left-pad/lib/cli.js"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink("../left-pad/lib/cli.js", nm.join(".bin/left-pad")).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(nm.join("left-pad/package.json"))
        .unwrap()
        .set_modified(old)
        .unwrap();
}

fn request(key: &str, restore_keys: &[&str]) -> RestoreRequest {
    RestoreRequest::new(
        key,
        restore_keys.iter().map(|s| s.to_string()).collect(),
        vec!["node_modules".into()],
    )
}

#[tokio::test]
async fn save_then_restore_is_byte_identical() {
    let s = setup();
    make_tree(&s.ctx.workspace);
    let before = tree_snapshot(&s.ctx.workspace.join("node_modules"));
    let req = SaveRequest::new("npm-linux-abc", vec!["node_modules".into()]);
    let report = save(&s.config, &s.backend, &s.ctx, &req).await.unwrap();
    let SaveReport::Saved {
        promoted: true,
        content_hash,
        ..
    } = report
    else {
        panic!("expected a promoted save, got {report:?}");
    };
    // Saving the same key again is a reported no-op.
    assert!(matches!(
        save(&s.config, &s.backend, &s.ctx, &req).await.unwrap(),
        SaveReport::AlreadyCached { .. }
    ));
    fs::remove_dir_all(s.ctx.workspace.join("node_modules")).unwrap();

    let restored = restore(&s.backend, &s.ctx, &request("npm-linux-abc", &[]))
        .await
        .unwrap();
    assert_eq!(restored.hit_kind, HitKind::Exact);
    assert_eq!(restored.outputs.cache_hit, "true");
    assert_eq!(
        restored.content_hash.as_deref(),
        Some(content_hash.as_str())
    );
    assert_eq!(tree_snapshot(&s.ctx.workspace.join("node_modules")), before);

    // A prefix match restores too, and says it was not exact.
    fs::remove_dir_all(s.ctx.workspace.join("node_modules")).unwrap();
    let prefix = restore(
        &s.backend,
        &s.ctx,
        &request("npm-linux-zzz", &["npm-linux-"]),
    )
    .await
    .unwrap();
    assert_eq!(prefix.outputs.cache_hit, "false");
    assert_eq!(prefix.outputs.cache_matched_key, "npm-linux-abc");
    assert_eq!(tree_snapshot(&s.ctx.workspace.join("node_modules")), before);
    let leftovers: Vec<_> = fs::read_dir(&s.ctx.workspace)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        leftovers,
        ["node_modules"],
        "no temp directories left behind"
    );
}

#[tokio::test]
async fn a_miss_and_lookup_only_download_nothing() {
    let s = setup();
    make_tree(&s.ctx.workspace);
    let req = SaveRequest::new("k1", vec!["node_modules".into()]);
    save(&s.config, &s.backend, &s.ctx, &req).await.unwrap();
    fs::remove_dir_all(s.ctx.workspace.join("node_modules")).unwrap();
    let miss = restore(&s.backend, &s.ctx, &request("other", &["nope-"]))
        .await
        .unwrap();
    assert_eq!(miss.hit_kind, HitKind::Miss);
    assert_eq!(miss.outputs.cache_hit, "");
    let mut lookup = request("k1", &[]);
    lookup.lookup_only = true;
    let found = restore(&s.backend, &s.ctx, &lookup).await.unwrap();
    assert_eq!(found.outputs.cache_hit, "true");
    assert!(
        !s.ctx.workspace.join("node_modules").exists(),
        "lookup-only restores nothing"
    );
    // Another set of paths is another version: never a match.
    let mut other_paths = request("k1", &[]);
    other_paths.query.paths = vec!["node_modules".into(), "dist".into()];
    assert_eq!(
        restore(&s.backend, &s.ctx, &other_paths)
            .await
            .unwrap()
            .hit_kind,
        HitKind::Miss
    );
}

#[tokio::test]
async fn a_tampered_cas_blob_fails_the_restore_and_leaves_the_target_alone() {
    let s = setup();
    make_tree(&s.ctx.workspace);
    let req = SaveRequest::new("k1", vec!["node_modules".into()]);
    let SaveReport::Saved { content_hash, .. } =
        save(&s.config, &s.backend, &s.ctx, &req).await.unwrap()
    else {
        panic!("saved");
    };
    // Someone with disk access swaps the CAS object for another valid archive.
    fs::write(
        s.ctx.workspace.join("node_modules/left-pad/package.json"),
        b"evil",
    )
    .unwrap();
    let evil_home = tempfile::tempdir().unwrap();
    let evil_cfg = Config::local(evil_home.path());
    let evil = Backend::local(&evil_cfg, Arc::new(SystemClock)).unwrap();
    let SaveReport::Saved {
        content_hash: evil_hash,
        ..
    } = save(&evil_cfg, &evil, &s.ctx, &req).await.unwrap()
    else {
        panic!("saved");
    };
    let hex = |h: &str| h.trim_start_matches("sha256:").to_string();
    let blob = |home: &Path, h: &str| home.join("blobs").join(names::artifact_key(&hex(h)));
    fs::copy(
        blob(evil_home.path(), &evil_hash),
        blob(&s.config.home, &content_hash),
    )
    .unwrap();

    fs::remove_dir_all(s.ctx.workspace.join("node_modules")).unwrap();
    fs::create_dir_all(s.ctx.workspace.join("node_modules")).unwrap();
    fs::write(s.ctx.workspace.join("node_modules/keep.txt"), b"mine").unwrap();
    let before = tree_snapshot(&s.ctx.workspace);
    let err = restore(&s.backend, &s.ctx, &request("k1", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert_eq!(
        tree_snapshot(&s.ctx.workspace),
        before,
        "a failed restore leaves the target as it was"
    );
}

#[tokio::test]
async fn one_trace_id_spans_the_runner_and_the_worker() {
    use runcache_infra::queue::{trace::trace_id, ATTR_TRACEPARENT};
    let s = setup();
    make_tree(&s.ctx.workspace);
    let req = SaveRequest::new("traced", vec!["node_modules".into()]);
    save(&s.config, &s.backend, &s.ctx, &req).await.unwrap();
    // The promote worker (run in-process here) emitted its outcome as a
    // child of the save's trace.
    let out = s
        .backend
        .accessed
        .receive(
            10,
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    let worker_tp = &out[0].attributes[ATTR_TRACEPARENT];
    assert_eq!(trace_id(worker_tp), trace_id(&s.ctx.traceparent));
    assert_ne!(
        worker_tp, &s.ctx.traceparent,
        "the worker's span is its own"
    );
}
