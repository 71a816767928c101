//! The real `@actions/cache` client (npm, unmodified) against `runcache
//! serve` on 127.0.0.1, on every backend: both protocols (v2 Twirp + blob
//! URLs, v1 REST), exact and prefix hits, misses, concurrent saves of one
//! key, scopes a token may and may not read or write, forged signed URLs,
//! tampered staged uploads, and restores right after a save whose
//! promotion runs elsewhere.

mod support;

use std::time::Duration;

use runcache_infra::{names, Backend};
use runcache_schemas::{Event, HitKind, TrustLevel};
use runcache_server::ServeOptions;
use runcache_testkit::noise::noise;
use runcache_worker::{drain, promote::promoter};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::*;

served_tests!(
    v2_exact_hit_prefix_hit_newest_first_and_miss,
    v1_exact_hit_prefix_hit_and_miss,
    two_concurrent_saves_of_one_key_one_wins_the_other_is_told,
    a_pull_request_cannot_read_a_sibling_branch_or_write_the_default_branch,
    forged_and_altered_signed_urls_are_refused,
    missing_and_unknown_tokens_are_refused_with_what_to_configure,
    a_tampered_staged_upload_is_rejected_and_never_served,
    a_restore_right_after_a_save_waits_for_the_promotion,
    served_entries_carry_provenance_and_access_events,
);

async fn hits_and_misses(e: Env, proto: Protocol) {
    let s = serve(&e).await;
    let ws = Workspace::new();
    ws.write(&[("deps/a.bin", &noise(300_000, 1)), ("deps/b.txt", b"one")]);
    saved(&ws.save(&s, proto, MAIN_TOKEN, "deps-linux-1", "deps").await);
    ws.write(&[("deps/b.txt", b"two")]);
    saved(&ws.save(&s, proto, MAIN_TOKEN, "deps-linux-2", "deps").await);

    ws.remove("deps");
    let r = ws
        .restore(&s, proto, MAIN_TOKEN, "deps-linux-1", &[], "deps")
        .await;
    assert_eq!(matched(&r).as_deref(), Some("deps-linux-1"));
    assert_eq!(ws.read("deps/b.txt").unwrap(), b"one");
    assert_eq!(ws.read("deps/a.bin").unwrap(), noise(300_000, 1));

    ws.remove("deps");
    let r = ws
        .restore(
            &s,
            proto,
            MAIN_TOKEN,
            "deps-linux-9",
            &["deps-mac-", "deps-linux-"],
            "deps",
        )
        .await;
    assert_eq!(
        matched(&r).as_deref(),
        Some("deps-linux-2"),
        "the newest with the prefix"
    );
    assert_eq!(ws.read("deps/b.txt").unwrap(), b"two");

    ws.remove("deps");
    let r = ws
        .restore(&s, proto, MAIN_TOKEN, "other", &["deps-mac-"], "deps")
        .await;
    assert_eq!(matched(&r), None);
    assert!(ws.read("deps/b.txt").is_none(), "a miss restores nothing");
    // Other paths are another version: no hit either.
    ws.write(&[("other/x", b"x")]);
    let r = ws
        .restore(&s, proto, MAIN_TOKEN, "deps-linux-1", &[], "other")
        .await;
    assert_eq!(matched(&r), None);
    s.stop().await;
}

async fn v2_exact_hit_prefix_hit_newest_first_and_miss(e: Env) {
    hits_and_misses(e, Protocol::V2).await;
}

async fn v1_exact_hit_prefix_hit_and_miss(e: Env) {
    hits_and_misses(e, Protocol::V1).await;
}

async fn two_concurrent_saves_of_one_key_one_wins_the_other_is_told(e: Env) {
    let s = serve(&e).await;
    let (a, b) = (Workspace::new(), Workspace::new());
    a.write(&[("out/f", &noise(2_000_000, 2))]);
    b.write(&[("out/f", &noise(2_000_000, 3))]);
    let (ra, rb) = tokio::join!(
        a.save(&s, Protocol::V2, MAIN_TOKEN, "race-1", "out"),
        b.save(&s, Protocol::V2, MAIN_TOKEN, "race-1", "out"),
    );
    let ids = [ra["cacheId"].as_i64(), rb["cacheId"].as_i64()];
    let winners = ids.iter().filter(|id| id.unwrap_or(-1) > 0).count();
    assert_eq!(winners, 1, "exactly one save wins: {ra:#} {rb:#}");
    let (winner, loser) = if ids[0].unwrap_or(-1) > 0 {
        (&a, &rb)
    } else {
        (&b, &ra)
    };
    let told = loser["failures"].to_string();
    assert!(
        told.contains("another job may be creating this cache"),
        "{loser:#}"
    );

    let c = Workspace::new();
    let r = c
        .restore(&s, Protocol::V2, MAIN_TOKEN, "race-1", &[], "out")
        .await;
    assert_eq!(matched(&r).as_deref(), Some("race-1"));
    assert_eq!(
        c.read("out/f"),
        winner.read("out/f"),
        "the winner's bytes, whole"
    );
    s.stop().await;
}

async fn a_pull_request_cannot_read_a_sibling_branch_or_write_the_default_branch(e: Env) {
    let s = serve(&e).await;
    let ws = Workspace::new();
    ws.write(&[("deps/f", b"feature")]);
    saved(
        &ws.save(&s, Protocol::V2, FEATURE_TOKEN, "sib-1", "deps")
            .await,
    );
    ws.write(&[("deps/f", b"main")]);
    saved(
        &ws.save(&s, Protocol::V2, MAIN_TOKEN, "base-1", "deps")
            .await,
    );

    let pr = Workspace::new();
    let r = pr
        .restore(&s, Protocol::V2, PR_TOKEN, "sib-1", &[], "deps")
        .await;
    assert_eq!(matched(&r), None, "a sibling branch is not readable");
    let r = pr
        .restore(&s, Protocol::V2, PR_TOKEN, "base-1", &[], "deps")
        .await;
    assert_eq!(matched(&r).as_deref(), Some("base-1"), "its base branch is");
    assert_eq!(pr.read("deps/f").unwrap(), b"main");

    // Pull-request trust on the default branch (pull_request_target): no write.
    pr.write(&[("deps/f", b"poisoned")]);
    let r = pr
        .save(&s, Protocol::V2, PR_ON_MAIN_TOKEN, "base-2", "deps")
        .await;
    assert_eq!(r["cacheId"].as_i64(), Some(-1), "{r:#}");
    assert!(
        e.backend
            .index
            .by_key(REPO, "base-2")
            .await
            .unwrap()
            .is_empty(),
        "nothing was indexed"
    );
    // What a pull request saves lands in its own scope, which main does not read.
    saved(
        &pr.save(&s, Protocol::V2, PR_TOKEN, "pr-own-1", "deps")
            .await,
    );
    let m = Workspace::new();
    let r = m
        .restore(&s, Protocol::V2, MAIN_TOKEN, "pr-own-1", &[], "deps")
        .await;
    assert_eq!(matched(&r), None);
    let entries = e.backend.index.by_key(REPO, "pr-own-1").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].git_ref, PULL);
    assert_eq!(entries[0].trust, TrustLevel::PullRequest);
    s.stop().await;
}

fn tamper_signature(url: &str) -> String {
    let at = url.find("sig=").unwrap() + 4;
    let mut bytes = url.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

async fn forged_and_altered_signed_urls_are_refused(e: Env) {
    let s = serve(&e).await;
    let (status, created) = twirp(
        &s,
        "CreateCacheEntry",
        Some(MAIN_TOKEN),
        json!({"key": "f-1", "version": "v1"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let upload = created["signed_upload_url"].as_str().unwrap().to_string();

    let forged = tamper_signature(&upload);
    let (status, head, _) = http("PUT", &forged, &[("x-ms-blob-type", "BlockBlob")], b"evil").await;
    assert_eq!(status, 403, "{head}");
    let unsigned = upload.split('?').next().unwrap();
    assert_eq!(http("PUT", unsigned, &[], b"evil").await.0, 403);
    let query = upload.split_once('?').unwrap().1;
    let other_upload = format!("{}_blob/runcache/up/12345?{query}", s.url);
    assert_eq!(
        http("PUT", &other_upload, &[], b"evil").await.0,
        403,
        "a signature grants one path"
    );

    // The genuine URL works: Put Blob, then Finalize.
    let (status, head, _) = http(
        "PUT",
        &upload,
        &[("x-ms-blob-type", "BlockBlob")],
        b"genuine bytes",
    )
    .await;
    assert_eq!(status, 201, "{head}");
    let (status, done) = twirp(
        &s,
        "FinalizeCacheEntryUpload",
        Some(MAIN_TOKEN),
        json!({"key": "f-1", "version": "v1", "size_bytes": "13"}),
    )
    .await;
    assert_eq!((status, done["ok"].as_bool()), (200, Some(true)), "{done}");

    let (status, got) = twirp(
        &s,
        "GetCacheEntryDownloadURL",
        Some(MAIN_TOKEN),
        json!({"key": "f-1", "version": "v1"}),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    let download = got["signed_download_url"].as_str().unwrap().to_string();
    let (status, _, body) = http("GET", &download, &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"genuine bytes"[..]));
    let (status, head, body) = http("GET", &download, &[("Range", "bytes=8-12")], b"").await;
    assert_eq!((status, body.as_slice()), (206, &b"bytes"[..]), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-range: bytes 8-12/13"),
        "{head}"
    );
    let (status, head, _) = http("HEAD", &download, &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-length: 13"),
        "{head}"
    );

    assert_eq!(
        http("GET", &tamper_signature(&download), &[], b"").await.0,
        403
    );
    let other_hash = download.replace(
        &hex::encode(Sha256::digest(b"genuine bytes")),
        &hex::encode(Sha256::digest(b"another entry")),
    );
    assert_ne!(other_hash, download);
    assert_eq!(
        http("GET", &other_hash, &[], b"").await.0,
        403,
        "a signature grants one blob"
    );
    s.stop().await;
}

async fn missing_and_unknown_tokens_are_refused_with_what_to_configure(e: Env) {
    let s = serve(&e).await;
    let body = json!({"key": "k", "version": "v"});
    let (status, err) = twirp(&s, "GetCacheEntryDownloadURL", None, body.clone()).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("unauthenticated")),
        "{err}"
    );
    assert!(err["msg"].as_str().unwrap().contains("Bearer"), "{err}");
    let (status, err) = twirp(&s, "CreateCacheEntry", Some("made-up"), body.clone()).await;
    assert_eq!(status, 401, "{err}");
    let (status, err) = twirp(&s, "CreateCacheEntry", Some(PR_ON_MAIN_TOKEN), body.clone()).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (403, Some("permission_denied")),
        "{err}"
    );
    let (status, err) = twirp(&s, "DeleteCacheEntry", Some(MAIN_TOKEN), body).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("bad_route")),
        "{err}"
    );
    let url = format!("{}_apis/artifactcache/cache?keys=k&version=v", s.url);
    let (status, _, body) = http("GET", &url, &[], b"").await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(
        "GET",
        &format!("{}_apis/pipelines/workflows/1/artifacts", s.url),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("does not serve"));
    s.stop().await;
}

/// Promotes what the staged queue holds, as `runcache-worker` would.
async fn run_promote(e: &Env) {
    drain(
        e.backend.staged.clone(),
        promoter(&e.backend, "test-worker", &e.config),
        Default::default(),
    )
    .await;
}

fn workers_elsewhere(e: &mut Env) {
    e.config.inline_workers = Some(false);
}

async fn a_tampered_staged_upload_is_rejected_and_never_served(mut e: Env) {
    workers_elsewhere(&mut e);
    let opts = ServeOptions {
        promotion_wait: Duration::from_secs(2),
        ..ServeOptions::default()
    };
    let s = serve_with(&e, opts).await;
    let ws = Workspace::new();
    ws.write(&[("deps/f", &noise(100_000, 4))]);
    saved(&ws.save(&s, Protocol::V2, MAIN_TOKEN, "t-1", "deps").await);
    let staged = e
        .backend
        .blobs
        .list("staging/", None, 100)
        .await
        .unwrap()
        .objects;
    assert_eq!(staged.len(), 1, "one staged upload");
    let key = &staged[0].key;
    let meta = e.backend.blobs.head(key).await.unwrap().unwrap();
    e.backend
        .blobs
        .put(
            key,
            Box::pin(std::io::Cursor::new(b"tampered".to_vec())),
            meta.metadata,
        )
        .await
        .unwrap();
    run_promote(&e).await;
    assert!(
        e.backend
            .index
            .by_key(REPO, "t-1")
            .await
            .unwrap()
            .is_empty(),
        "never indexed"
    );
    let r = ws
        .restore(&s, Protocol::V2, MAIN_TOKEN, "t-1", &[], "deps")
        .await;
    assert_eq!(matched(&r), None, "never served");
    s.stop().await;
}

async fn a_restore_right_after_a_save_waits_for_the_promotion(mut e: Env) {
    workers_elsewhere(&mut e);
    let s = serve(&e).await;
    let ws = Workspace::new();
    ws.write(&[("deps/f", &noise(100_000, 5))]);
    saved(&ws.save(&s, Protocol::V2, MAIN_TOKEN, "w-1", "deps").await);
    assert!(
        e.backend
            .index
            .by_key(REPO, "w-1")
            .await
            .unwrap()
            .is_empty(),
        "not promoted yet"
    );
    // The worker gets to it a moment later, while the restore waits.
    let worker = {
        let (config, backend) = (e.config.clone(), e.backend.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            drain(
                backend.staged.clone(),
                promoter(&backend, "test-worker", &config),
                Default::default(),
            )
            .await;
        })
    };
    ws.remove("deps");
    let r = ws
        .restore(&s, Protocol::V2, MAIN_TOKEN, "w-1", &[], "deps")
        .await;
    assert_eq!(matched(&r).as_deref(), Some("w-1"));
    assert_eq!(ws.read("deps/f").unwrap(), noise(100_000, 5));
    worker.await.unwrap();
    s.stop().await;
}

async fn accesses(b: &Backend) -> Vec<runcache_schemas::CacheAccessed> {
    let mut out = Vec::new();
    loop {
        let batch = b
            .accessed
            .receive(10, Duration::ZERO, Duration::from_secs(60))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            b.accessed.ack(&m.receipt).await.unwrap();
            if let Ok(Event::Accessed(a)) = Event::decode(&m.body) {
                out.push(a);
            }
        }
    }
}

async fn served_entries_carry_provenance_and_access_events(e: Env) {
    let s = serve(&e).await;
    let ws = Workspace::new();
    ws.write(&[("deps/f", b"provenance")]);
    saved(&ws.save(&s, Protocol::V2, MAIN_TOKEN, "p-1", "deps").await);
    let entries = e.backend.index.by_key(REPO, "p-1").await.unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(
        (entry.git_ref.as_str(), entry.trust),
        (MAIN, TrustLevel::Protected)
    );
    assert_eq!(
        entry.cache_version,
        runcache_archive::cache_version(&["deps".to_string()]),
        "the client's version is runcache's"
    );
    let records = e.backend.provenance.get(&entry.content_hash).await.unwrap();
    let build = &records.first().expect("a provenance record").build;
    assert_eq!(
        (build.repository.as_str(), build.trigger_event.as_str()),
        (REPO, "push")
    );
    assert_eq!(build.actor.as_deref(), Some("octocat"));
    assert!(e
        .backend
        .blobs
        .head(&names::artifact_key(entry.content_hash.hex()))
        .await
        .unwrap()
        .is_some());

    accesses(&e.backend).await; // what the save left
    ws.remove("deps");
    matched(
        &ws.restore(&s, Protocol::V2, MAIN_TOKEN, "p-1", &[], "deps")
            .await,
    );
    matched(
        &ws.restore(&s, Protocol::V2, MAIN_TOKEN, "p-9", &[], "deps")
            .await,
    );
    // Access events are sent in batches off the request path; stopping
    // the server sends what is still buffered.
    s.stop().await;
    let seen = accesses(&e.backend).await;
    let kinds: Vec<_> = seen
        .iter()
        .map(|a| (a.primary_key.as_str(), a.hit_kind))
        .collect();
    assert_eq!(kinds, [("p-1", HitKind::Exact), ("p-9", HitKind::Miss)]);
    assert_eq!(seen[0].content_hash.as_ref(), Some(&entry.content_hash));
}

/// Over 128 MiB the client's Azure SDK uploads 64 MiB blocks, 8 at a time,
/// out of order, then the block list; the download streams it verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_over_300_mib_goes_through_blocks_and_back() {
    let e = local().await;
    let s = serve(&e).await;
    let ws = Workspace::new();
    let big = noise(310 << 20, 6);
    let digest = Sha256::digest(&big);
    ws.write(&[("big/blob", &big)]);
    drop(big);
    saved(&ws.save(&s, Protocol::V2, MAIN_TOKEN, "big-1", "big").await);
    ws.remove("big");
    let r = ws
        .restore(&s, Protocol::V2, MAIN_TOKEN, "big-1", &[], "big")
        .await;
    assert_eq!(matched(&r).as_deref(), Some("big-1"));
    assert_eq!(Sha256::digest(ws.read("big/blob").unwrap()), digest);
    let entry = &e.backend.index.by_key(REPO, "big-1").await.unwrap()[0];
    assert!(
        entry.size_bytes > 300 << 20,
        "stored as the client wrote it: {}",
        entry.size_bytes
    );
    s.stop().await;
}
