//! The whole flow on the AWS backend, against moto's server on 127.0.0.1
//! (started by the test itself): save uploads to S3 staging and enqueues on
//! SQS, the promote worker verifies into the CAS and writes DynamoDB, a
//! restore from another workspace gets the tree back byte-identical.

use std::{fs, os::unix::fs::symlink};

use runcache::{
    context::RunContext,
    restore::{restore, RestoreRequest},
    save::{save, SaveReport, SaveRequest},
};
use runcache_e2e::tree_snapshot;
use runcache_infra::{aws, names, staging};
use runcache_schemas::{HitKind, Scope, TrustLevel};
use runcache_worker::{drain, promote::promoter, ConsumerConfig};

fn ctx(workspace: &std::path::Path) -> RunContext {
    RunContext {
        scope: Scope::new("acme/app", "refs/heads/main"),
        base_ref: None,
        default_branch: "main".into(),
        event_name: "push".into(),
        trust: TrustLevel::Protected,
        workspace: workspace.to_path_buf(),
        traceparent: runcache_infra::queue::trace::new_traceparent(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_promote_restore_through_s3_sqs_and_dynamodb() {
    let (sdk, config, _) = runcache_testkit::moto::fresh(3).await;
    let backend = aws::connect_with(&sdk, &config).unwrap();

    let ws = tempfile::tempdir().unwrap();
    let nm = ws.path().join("node_modules/pkg");
    fs::create_dir_all(&nm).unwrap();
    fs::write(nm.join("index.js"), b"module.exports = 1").unwrap();
    let big: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    fs::write(nm.join("blob.bin"), &big).unwrap();
    symlink("pkg/index.js", ws.path().join("node_modules/main.js")).unwrap();
    let before = tree_snapshot(&ws.path().join("node_modules"));

    let req = SaveRequest::new("npm-linux-1", vec!["node_modules".into()]);
    let SaveReport::Saved {
        content_hash,
        promoted,
        upload_id,
        ..
    } = save(&config, &backend, &ctx(ws.path()), &req)
        .await
        .unwrap()
    else {
        panic!("expected a save");
    };
    assert!(!promoted, "on AWS the workers promote, not the runner");
    assert!(backend
        .blobs
        .head(&staging::key(TrustLevel::Protected, &upload_id))
        .await
        .unwrap()
        .is_some());

    let report = drain(
        backend.staged.clone(),
        promoter(&backend, "e2e-worker", &config),
        ConsumerConfig::default(),
    )
    .await;
    assert_eq!(report.done, 1);
    let hex = content_hash.trim_start_matches("sha256:");
    assert!(
        backend
            .blobs
            .head(&names::artifact_key(hex))
            .await
            .unwrap()
            .is_some(),
        "in the CAS"
    );
    assert!(
        backend
            .blobs
            .head(&staging::key(TrustLevel::Protected, &upload_id))
            .await
            .unwrap()
            .is_none(),
        "staging cleaned"
    );

    let other = tempfile::tempdir().unwrap();
    let restored = restore(
        &backend,
        &ctx(other.path()),
        &RestoreRequest::new("npm-linux-2", vec!["npm-linux-".into()], req.paths.clone()),
    )
    .await
    .unwrap();
    assert_eq!(restored.hit_kind, HitKind::Prefix);
    assert_eq!(restored.outputs.cache_matched_key, "npm-linux-1");
    assert_eq!(tree_snapshot(&other.path().join("node_modules")), before);
    let records = backend
        .provenance
        .get(&content_hash.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].promoted_by, "e2e-worker");
}
