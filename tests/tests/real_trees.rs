//! Round trips of real trees on the local backend: a `node_modules` from
//! `npm install` of a small pinned package set, and a cargo `target/` from
//! a real build. Each must restore byte-identical with the same modes,
//! mtimes and symlinks.

use std::{fs, path::Path, process::Command, sync::Arc};

use runcache::{
    context::RunContext,
    restore::{restore, RestoreRequest},
    save::{save, SaveReport, SaveRequest},
};
use runcache_e2e::tree_snapshot;
use runcache_infra::{Backend, Config, SystemClock};
use runcache_schemas::{HitKind, Scope, TrustLevel};

async fn round_trip(workspace: &Path, path: &str) {
    let home = tempfile::tempdir().unwrap();
    let config = Config::local(home.path());
    let backend = Backend::local(&config, Arc::new(SystemClock)).unwrap();
    let ctx = RunContext {
        scope: Scope::new("acme/app", "refs/heads/main"),
        base_ref: None,
        default_branch: "main".into(),
        event_name: "push".into(),
        trust: TrustLevel::Protected,
        workspace: workspace.to_path_buf(),
        traceparent: runcache_infra::queue::trace::new_traceparent(),
    };
    let before = tree_snapshot(&workspace.join(path));
    assert!(
        before.len() > 10,
        "the corpus is too small to mean anything"
    );
    let req = SaveRequest::new(format!("{path}-key"), vec![path.into()]);
    let report = save(&config, &backend, &ctx, &req).await.unwrap();
    assert!(
        matches!(report, SaveReport::Saved { promoted: true, .. }),
        "{report:?}"
    );
    fs::rename(workspace.join(path), workspace.join(format!("{path}.orig"))).unwrap();
    let restored = restore(
        &backend,
        &ctx,
        &RestoreRequest::new(req.key.clone(), vec![], req.paths.clone()),
    )
    .await
    .unwrap();
    assert_eq!(restored.hit_kind, HitKind::Exact);
    let after = tree_snapshot(&workspace.join(path));
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a, b, "restored tree differs");
    }
}

fn run(cmd: &mut Command, hint: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{hint}: {e}"));
    assert!(
        out.status.success(),
        "{hint}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn node_modules_from_npm_install_round_trips() {
    let ws = tempfile::tempdir().unwrap();
    fs::write(
        ws.path().join("package.json"),
        r#"{"name":"rt","private":true,"dependencies":{"ms":"2.1.3","is-number":"7.0.0","semver":"7.6.3","rimraf":"5.0.10"}}"#,
    )
    .unwrap();
    run(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
            ])
            .current_dir(ws.path()),
        "npm install failed (needs npm and the npm registry; install Node.js with npm)",
    );
    assert!(
        fs::symlink_metadata(ws.path().join("node_modules/.bin/rimraf"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "npm made .bin symlinks, so the round trip covers them"
    );
    round_trip(ws.path(), "node_modules").await;
}

#[tokio::test]
async fn a_cargo_target_dir_round_trips() {
    let ws = tempfile::tempdir().unwrap();
    let krate = ws.path().join("demo");
    fs::create_dir_all(krate.join("src")).unwrap();
    fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    fs::write(
        krate.join("src/main.rs"),
        "fn main() { println!(\"hello\"); }\n",
    )
    .unwrap();
    run(
        Command::new(env!("CARGO"))
            .args(["build", "--offline", "--quiet"])
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(&krate),
        "cargo build of a tiny crate failed",
    );
    round_trip(&krate, "target").await;
}
