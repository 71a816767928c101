//! `runcache explain` and `restore --explain` (issue #9), driving the real
//! binary on the local backend: one test per reason a restore misses, each
//! checking that the restore really missed and that the explanation names
//! the reason; the short form after a miss; the JSON field names.
//!
//! States the CLI cannot reach on its own (a staged upload promote has not
//! seen yet, a tampered upload, a dead-lettered message, an entry of another
//! compression) are set up through the library on the same `$RUNCACHE_HOME`.

use std::{collections::BTreeSet, fs, process::Output, sync::Arc};

use runcache::explain::cache_version_with;
use runcache_infra::staging;
use runcache_infra::{names, queue::trace, Backend, Config, OutgoingMessage, SystemClock};
use runcache_schemas::{
    ArtifactStaged, BuildProvenance, ContentHash, EntryState, IndexEntry, Scope, TrustLevel,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod common;

use common::{ok, stderr, MAIN, REPO};

/// The explain tests' sandbox: `dist/app.js` and `extra/notes.txt` in the
/// workspace, and the library's view of its home.
struct Sandbox(common::Sandbox);

impl std::ops::Deref for Sandbox {
    type Target = common::Sandbox;
    fn deref(&self) -> &common::Sandbox {
        &self.0
    }
}

impl Sandbox {
    fn new() -> Self {
        let s = common::Sandbox::new();
        fs::create_dir_all(s.ws().join("dist")).unwrap();
        fs::write(s.ws().join("dist/app.js"), b"console.log(1)").unwrap();
        fs::create_dir_all(s.ws().join("extra")).unwrap();
        fs::write(s.ws().join("extra/notes.txt"), b"notes").unwrap();
        Sandbox(s)
    }

    fn run_with(&self, args: &[&str], git_ref: &str, env: &[(&str, &str)]) -> Output {
        self.run_env(args, git_ref, env)
    }

    fn save(&self, key: &str, paths: &[&str], git_ref: &str) {
        let mut args = vec!["save", "--key", key];
        for p in paths {
            args.extend(["--path", p]);
        }
        ok(&self.run(&args, git_ref));
    }

    /// `runcache explain --json` for `key` with `paths`.
    fn explain(&self, key: &str, paths: &[&str], git_ref: &str, env: &[(&str, &str)]) -> Value {
        let mut args = vec!["explain", "--json", "--key", key];
        for p in paths {
            args.extend(["--path", p]);
        }
        let stdout = ok(&self.run_with(&args, git_ref, env));
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
    }

    /// The library's view of the same home, for states the CLI cannot make.
    fn backend(&self) -> Backend {
        Backend::local(&Config::local(self.home()), Arc::new(SystemClock)).unwrap()
    }
}

/// Restores `key` (with `--explain`) after removing `dist`, asserts the miss
/// and that nothing was restored, and returns stderr.
fn restore_misses(s: &Sandbox, key: &str, paths: &[&str], git_ref: &str) -> String {
    fs::remove_dir_all(s.ws().join("dist")).ok();
    let mut args = vec!["restore", "--explain", "--key", key];
    for p in paths {
        args.extend(["--path", p]);
    }
    let out = s.run(&args, git_ref);
    let stdout = ok(&out);
    assert!(stdout.contains("cache-hit=\n"), "expected a miss: {stdout}");
    assert!(
        !s.ws().join("dist/app.js").exists(),
        "a miss restores nothing"
    );
    stderr(&out)
}

fn findings<'a>(x: &'a Value, kind: &str) -> Vec<&'a Value> {
    x["findings"]
        .as_array()
        .expect("findings is an array")
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn one<'a>(x: &'a Value, kind: &str) -> &'a Value {
    let found = findings(x, kind);
    assert_eq!(found.len(), 1, "one `{kind}` finding expected in {x:#}");
    found[0]
}

fn hash_of(bytes: &[u8]) -> ContentHash {
    ContentHash::from_hex(&hex::encode(Sha256::digest(bytes))).unwrap()
}

fn staged_event(upload_id: &str, key: &str, claimed: ContentHash, size: u64) -> ArtifactStaged {
    let paths = vec!["dist".to_string()];
    ArtifactStaged {
        upload_id: upload_id.into(),
        staging_key: staging::key(TrustLevel::Protected, upload_id),
        claimed_hash: claimed,
        size_bytes: size,
        cache_key: key.into(),
        scope: Scope::new(REPO, MAIN),
        cache_version: runcache_archive::cache_version(&paths),
        paths,
        compression: runcache_archive::COMPRESSION.into(),
        unpacked_bytes: None,
        staged_at: chrono::Utc::now(),
        attributes: Default::default(),
        provenance: BuildProvenance {
            repository: REPO.into(),
            branch: MAIN.into(),
            trigger_event: "push".into(),
            trust: TrustLevel::Protected,
            ..Default::default()
        },
    }
}

/// Uploads `bytes` to `staging/{id}` (labelled as `save` labels it) and
/// announces them, claiming `claimed`.
async fn stage(backend: &Backend, ev: &ArtifactStaged, bytes: &[u8]) {
    backend
        .blobs
        .put(
            &ev.staging_key,
            Box::pin(std::io::Cursor::new(bytes.to_vec())),
            staging::metadata(&ev.cache_key, &ev.scope, &ev.cache_version),
        )
        .await
        .unwrap();
    backend
        .staged
        .send(OutgoingMessage::event(ev, &trace::new_traceparent()))
        .await
        .unwrap();
}

async fn promote_pending(backend: &Backend) {
    let promoter = runcache_worker::promote::promoter(
        backend,
        "test-promote",
        &runcache_infra::Config::default(),
    );
    runcache_worker::drain(
        backend.staged.clone(),
        promoter as Arc<_>,
        Default::default(),
    )
    .await;
}

#[test]
fn a_version_mismatch_names_the_differing_paths_and_their_order() {
    let s = Sandbox::new();
    s.save("deps-1", &["dist", "extra"], MAIN);

    let err = restore_misses(&s, "deps-1", &["dist"], MAIN);
    assert!(err.contains("path list differs"), "{err}");
    assert!(err.contains("--path dist --path extra"), "{err}");

    let x = s.explain("deps-1", &["dist"], MAIN, &[]);
    let f = one(&x, "version-mismatch");
    assert_eq!(f["gitRef"], MAIN);
    assert_eq!(f["differingInputs"], serde_json::json!(["paths"]));
    assert_eq!(f["theirPaths"], serde_json::json!(["dist", "extra"]));
    assert_eq!(f["theirCompression"], "zstd-without-long");
    assert_ne!(f["theirVersion"], x["cacheVersion"]);

    // The same patterns in another order are another version too.
    let x = s.explain("deps-1", &["extra", "dist"], MAIN, &[]);
    assert_eq!(
        one(&x, "version-mismatch")["differingInputs"],
        serde_json::json!(["path-order"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_mismatch_by_compression_is_named_even_without_provenance() {
    let s = Sandbox::new();
    // An entry actions/cache would have written with gzip (no provenance
    // record, as for an entry imported by another tool).
    let paths = vec!["dist".to_string()];
    let h = hash_of(b"gzip archive");
    let now = chrono::Utc::now();
    let entry = IndexEntry {
        cache_key: "deps-gz".into(),
        s3_key: names::artifact_key(h.hex()),
        content_hash: h,
        repository: REPO.into(),
        git_ref: MAIN.into(),
        cache_version: cache_version_with(&paths, "gzip", false),
        toolchain: String::new(),
        lockfile_hash: None,
        size_bytes: 12,
        created_at: now,
        last_accessed: now,
        access_count: 0,
        ttl: now.timestamp() + 86_400,
        state: EntryState::Live,
        invalidated_at: None,
        reason: None,
        invalidated_by: None,
        trust: TrustLevel::Protected,
        trigger_event: "push".into(),
        upload_id: "imported-1".into(),
        build_duration_ms: None,
        attributes: Default::default(),
    };
    s.backend().index.insert(&entry).await.unwrap();

    let err = restore_misses(&s, "deps-gz", &["dist"], MAIN);
    assert!(err.contains("compression differs"), "{err}");
    assert!(err.contains("`gzip`"), "{err}");
    let x = s.explain("deps-gz", &["dist"], MAIN, &[]);
    let f = one(&x, "version-mismatch");
    assert_eq!(f["differingInputs"], serde_json::json!(["compression"]));
    assert_eq!(f["theirCompression"], "gzip");
}

#[test]
fn a_sibling_branchs_entry_is_reported_invisible_and_not_restored() {
    let s = Sandbox::new();
    s.save("build-1", &["dist"], "refs/heads/feature-b");

    // RUNCACHE_EXPLAIN=1 instead of --explain.
    fs::remove_dir_all(s.ws().join("dist")).unwrap();
    let out = s.run_with(
        &["restore", "--key", "build-1", "--path", "dist"],
        "refs/heads/feature-a",
        &[("RUNCACHE_EXPLAIN", "1")],
    );
    assert!(ok(&out).contains("cache-hit=\n"));
    assert!(
        !s.ws().join("dist").exists(),
        "a sibling's entry is never restored"
    );
    let err = stderr(&out);
    assert!(err.contains("refs/heads/feature-b"), "{err}");
    assert!(err.contains("sibling branch"), "{err}");

    let x = s.explain("build-1", &["dist"], "refs/heads/feature-a", &[]);
    let f = one(&x, "other-scope");
    assert_eq!(f["gitRef"], "refs/heads/feature-b");
    assert_eq!(f["sameVersion"], true);
    assert_eq!(f["state"], "live");
    assert!(f["why"].as_str().unwrap().contains("sibling branch"), "{f}");
    assert_eq!(
        x["readableRefs"],
        serde_json::json!(["refs/heads/feature-a", MAIN])
    );
    assert_eq!(x["result"]["hitKind"], "miss");
}

#[test]
fn another_pull_requests_entry_is_reported_invisible() {
    let s = Sandbox::new();
    let pr = [
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("GITHUB_BASE_REF", "main"),
    ];
    ok(&s.run_with(
        &["save", "--key", "pr-build", "--path", "dist"],
        "refs/pull/8/merge",
        &pr,
    ));
    let x = s.explain("pr-build", &["dist"], "refs/pull/7/merge", &pr);
    let f = one(&x, "other-scope");
    assert_eq!(f["gitRef"], "refs/pull/8/merge");
    assert!(
        f["why"].as_str().unwrap().contains("pull request #8"),
        "{f}"
    );
}

#[test]
fn an_invalidated_key_says_who_when_and_why() {
    let s = Sandbox::new();
    s.save("deps-inv", &["dist"], MAIN);
    ok(&s.run(
        &[
            "admin",
            "invalidate",
            "--repository",
            REPO,
            "--key-prefix",
            "deps-inv",
            "--reason",
            "lockfile compromised",
            "--requested-by",
            "alice",
        ],
        MAIN,
    ));

    let err = restore_misses(&s, "deps-inv", &["dist"], MAIN);
    assert!(err.contains("invalidated"), "{err}");
    assert!(err.contains("alice"), "{err}");
    assert!(err.contains("lockfile compromised"), "{err}");

    let x = s.explain("deps-inv", &["dist"], MAIN, &[]);
    let f = one(&x, "invalidated");
    assert_eq!(f["gitRef"], MAIN);
    assert_eq!(f["by"], "alice");
    assert_eq!(f["reason"], "lockfile compromised");
    assert_eq!(f["rule"], "invalidation", "from the audit record");
    assert_eq!(f["recordRemoved"], false);
    let at: chrono::DateTime<chrono::Utc> = f["at"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now() - at).num_minutes() < 5, "{at}");
    // The step shows where restore met it.
    assert_eq!(x["steps"][0]["outcome"], "not-live");
    assert_eq!(x["steps"][0]["state"], "invalidated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_key_names_the_rule() {
    let s = Sandbox::new();
    s.save("deps-ev", &["dist"], MAIN);
    let backend = s.backend();
    let mut cfg = runcache_worker::SweepConfig::from_config(&Config::local(s.home()), "test-sweep");
    cfg.quota_bytes = 1;
    let report = runcache_worker::sweep(&backend, &cfg).await.unwrap();
    assert_eq!(report.quota_evicted, 1);

    let err = restore_misses(&s, "deps-ev", &["dist"], MAIN);
    assert!(err.contains("evicted"), "{err}");
    assert!(err.contains("quota rule"), "{err}");

    let x = s.explain("deps-ev", &["dist"], MAIN, &[]);
    let f = one(&x, "evicted");
    assert_eq!(f["rule"], "quota");
    assert_eq!(f["by"], "test-sweep");
    assert!(f["reason"].as_str().unwrap().contains("quota"), "{f}");
    assert!(f["at"].is_string());
}

#[test]
fn the_closest_keys_in_scope_are_listed_with_their_age() {
    let s = Sandbox::new();
    s.save("deps-linux-aaa", &["dist"], MAIN);
    s.save("deps-linux-bbb", &["dist"], MAIN);
    s.save("other-x", &["dist"], MAIN);

    let err = restore_misses(&s, "deps-linux-ccc", &["dist"], MAIN);
    assert!(err.contains("closest keys in refs/heads/main"), "{err}");

    let x = s.explain("deps-linux-ccc", &["dist"], MAIN, &[]);
    let f = one(&x, "closest-keys");
    assert_eq!(f["gitRef"], MAIN);
    assert_eq!(f["commonPrefix"], "deps-linux-");
    let keys: BTreeSet<&str> = f["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, BTreeSet::from(["deps-linux-aaa", "deps-linux-bbb"]));
    for k in f["keys"].as_array().unwrap() {
        assert!(k["ageSeconds"].as_i64().unwrap() >= 0);
        assert_eq!(k["state"], "live");
    }
    // Newest first.
    assert_eq!(f["keys"][0]["key"], "deps-linux-bbb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_still_staged_is_reported() {
    let s = Sandbox::new();
    let backend = s.backend();
    let bytes = b"an archive promote has not seen yet";
    let ev = staged_event(
        "0190c0de-0000-7000-8000-000000000001",
        "deps-st",
        hash_of(bytes),
        bytes.len() as u64,
    );
    stage(&backend, &ev, bytes).await;

    let err = restore_misses(&s, "deps-st", &["dist"], MAIN);
    assert!(err.contains("still staged"), "{err}");
    let x = s.explain("deps-st", &["dist"], MAIN, &[]);
    let f = one(&x, "staged");
    assert_eq!(f["uploadId"], ev.upload_id);
    assert_eq!(f["gitRef"], MAIN);
    assert_eq!(f["sameVersion"], true);
    assert!(f["ageSeconds"].as_i64().unwrap() >= 0);

    // Once promoted, the same restore hits and there is nothing to explain.
    promote_pending(&backend).await;
    let x = s.explain("deps-st", &["dist"], MAIN, &[]);
    assert_eq!(x["result"]["hitKind"], "exact");
    assert_eq!(x["findings"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_save_is_reported_quarantined_with_the_reason() {
    let s = Sandbox::new();
    let backend = s.backend();
    let claimed = b"what the runner claimed";
    let actual = b"what it really uploaded";
    let ev = staged_event(
        "0190c0de-0000-7000-8000-000000000002",
        "deps-q",
        hash_of(claimed),
        claimed.len() as u64,
    );
    stage(&backend, &ev, actual).await;
    promote_pending(&backend).await;

    let err = restore_misses(&s, "deps-q", &["dist"], MAIN);
    assert!(err.contains("was rejected"), "{err}");
    let x = s.explain("deps-q", &["dist"], MAIN, &[]);
    let f = one(&x, "quarantined");
    assert_eq!(f["uploadId"], ev.upload_id);
    assert_eq!(
        f["objectKey"],
        format!("quarantine/{}", ev.upload_id).as_str()
    );
    assert_eq!(f["object"], "present");
    let reason = f["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("claimed {}", hash_of(claimed))),
        "{reason}"
    );
    assert!(
        findings(&x, "staged").is_empty(),
        "promote deleted the staged object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_save_is_reported_with_the_reason() {
    let s = Sandbox::new();
    let backend = s.backend();
    // Announced, but the upload never arrived: promote dead-letters it.
    let ev = staged_event(
        "0190c0de-0000-7000-8000-000000000003",
        "deps-dl",
        hash_of(b"x"),
        1,
    );
    backend
        .staged
        .send(OutgoingMessage::event(&ev, &trace::new_traceparent()))
        .await
        .unwrap();
    promote_pending(&backend).await;

    let x = s.explain("deps-dl", &["dist"], MAIN, &[]);
    let f = one(&x, "dead-lettered");
    assert_eq!(f["uploadId"], ev.upload_id);
    assert!(f["reason"].as_str().unwrap().contains("is missing"), "{f}");
}

#[test]
fn entries_below_the_demanded_trust_are_reported_as_passed_over() {
    // A push to a feature branch records `branch` trust; a release job
    // there demanding `protected` passes the entry over.
    let s = Sandbox::new();
    let feature = "refs/heads/feature";
    ok(&s.run(&["save", "--key", "deps-t", "--path", "dist"], feature));
    fs::remove_dir_all(s.ws().join("dist")).unwrap();
    let out = s.run(
        &[
            "restore",
            "--explain",
            "--trust",
            "protected",
            "--key",
            "deps-t",
            "--path",
            "dist",
        ],
        feature,
    );
    assert!(ok(&out).contains("cache-hit=\n"));
    let err = stderr(&out);
    assert!(err.contains("passed over"), "{err}");
    assert!(err.contains("branch"), "{err}");
}

#[test]
fn restore_explains_only_misses_and_only_when_asked() {
    let s = Sandbox::new();
    s.save("deps-hit", &["dist"], MAIN);
    let why = "runcache: why:";

    // A hit with --explain: nothing to explain.
    let out = s.run(
        &[
            "restore",
            "--explain",
            "--key",
            "deps-hit",
            "--path",
            "dist",
        ],
        MAIN,
    );
    assert!(ok(&out).contains("cache-hit=true"));
    assert!(!stderr(&out).contains(why), "{}", stderr(&out));

    // A miss without it: silent as before.
    let out = s.run(&["restore", "--key", "nope", "--path", "dist"], MAIN);
    ok(&out);
    assert!(!stderr(&out).contains(why), "{}", stderr(&out));
    let out = s.run_with(
        &["restore", "--key", "nope", "--path", "dist"],
        MAIN,
        &[("RUNCACHE_EXPLAIN", "0")],
    );
    ok(&out);
    assert!(!stderr(&out).contains(why), "{}", stderr(&out));

    // A miss with it: the short form, ending with the full command, while
    // stdout keeps exactly the step outputs.
    let out = s.run(
        &[
            "restore",
            "--explain",
            "--key",
            "nope",
            "--restore-key",
            "zzz-",
            "--path",
            "dist",
        ],
        MAIN,
    );
    assert_eq!(
        ok(&out),
        "cache-hit=\ncache-primary-key=nope\ncache-matched-key=\n"
    );
    let err = stderr(&out);
    assert!(err.contains(why), "{err}");
    assert!(err.contains("no trace of `nope`"), "{err}");
    assert!(
        err.contains(
            "runcache explain --key nope --restore-key zzz- --path dist \
             --repository acme/app --ref refs/heads/main"
        ),
        "{err}"
    );
    // With --json the outputs stay valid JSON on stdout.
    let out = s.run(
        &[
            "restore",
            "--json",
            "--explain",
            "--key",
            "nope",
            "--path",
            "dist",
        ],
        MAIN,
    );
    let outputs: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(outputs["cacheHit"], "");
    assert!(stderr(&out).contains(why));
}

#[test]
fn explain_prints_every_step_and_a_prefix_match() {
    let s = Sandbox::new();
    s.save("deps-old", &["dist"], MAIN);
    let out = s.run(
        &[
            "explain",
            "--key",
            "deps-new",
            "--restore-key",
            "deps-",
            "--path",
            "dist",
        ],
        "refs/heads/feature",
    );
    let text = ok(&out);
    for expected in [
        "refs/heads/feature",
        "exact key `deps-new`: nothing",
        "restore key `deps-`: nothing",
        "restore key `deps-`: matched `deps-old`",
        "a prefix match, cache-hit=false",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
}

#[test]
fn the_json_report_is_valid_with_stable_field_names() {
    let s = Sandbox::new();
    s.save("deps-a1", &["dist", "extra"], MAIN);
    s.save("deps-a2", &["dist"], MAIN);
    s.save("deps-a1", &["dist"], "refs/heads/feature-b");
    let x = s.explain("deps-a1", &["dist"], "refs/heads/feature-a", &[]);
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        keys(&x),
        set(&[
            "schema",
            "version",
            "repository",
            "gitRef",
            "primaryKey",
            "restoreKeys",
            "paths",
            "compression",
            "cacheVersion",
            "minTrust",
            "readableRefs",
            "steps",
            "result",
            "summary",
            "findings",
            "notChecked",
        ])
    );
    assert_eq!(x["schema"], "runcache.explain");
    assert_eq!(x["version"], 1);
    assert_eq!(x["minTrust"], "untrusted");
    assert_eq!(
        keys(&x["steps"][0]),
        set(&[
            "gitRef",
            "lookup",
            "lookedFor",
            "role",
            "outcome",
            "key",
            "state"
        ])
    );
    assert_eq!(x["steps"][0]["lookup"], "exact");
    assert_eq!(x["steps"][0]["role"], "primary-key");
    assert_eq!(
        keys(&x["result"]),
        set(&["hitKind", "matchedKey", "matchedRef"])
    );
    assert_eq!(
        keys(one(&x, "version-mismatch")),
        set(&[
            "kind",
            "gitRef",
            "key",
            "state",
            "createdAt",
            "theirVersion",
            "differingInputs",
            "theirPaths",
            "theirCompression",
        ])
    );
    let closest = findings(&x, "closest-keys");
    assert_eq!(
        closest.iter().map(|f| keys(f)).collect::<Vec<_>>(),
        vec![set(&["kind", "gitRef", "commonPrefix", "keys"]); 2],
        "one per readable scope"
    );
    assert_eq!(closest[1]["gitRef"], MAIN);
    assert_eq!(
        keys(&closest[1]["keys"][0]),
        set(&["key", "state", "createdAt", "ageSeconds"])
    );
    assert_eq!(keys(one(&x, "other-scope")).len(), 7);
}
