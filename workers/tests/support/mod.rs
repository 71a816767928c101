//! Shared fixtures for the worker tests: an [`Env`] on either backend with
//! a `ManualClock` (the local one, or the AWS adapters on this test binary's
//! moto server, each test on fresh uniquely-named resources), staging and
//! promoting uploads, reading objects. The wrappers that hold a port call
//! at a chosen point ([`Gate`]) or fail it ([`Faults`]) come from
//! `runcache_testkit`.
//!
//! [`backend_tests!`] expands plain `async fn case(e: Env)` bodies into one
//! test per backend of `runcache_testkit::each_backend!`: `local::case` and
//! `aws_moto::case`.
//!
//! # Time on the two backends
//!
//! Handlers and the sweep read time from `backend.clock`, a `ManualClock`
//! on both backends. It starts at the real time, and tests only move it
//! forward. Blob timestamps are the store's own wall clock (file mtimes,
//! S3 `LastModified` from moto), so an object written *after* the clock was
//! advanced looks older than the clock says; the tests rely on that only in
//! the same way on both backends. What the ports keep in real time on AWS
//! (SQS visibility, CloudWatch's query window) is not moved by the clock:
//! tests that need those to elapse run on the local backend only.

#![allow(dead_code)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use runcache_infra::{
    index::{search, SearchHit, SearchRequest},
    names, staging, Backend, BackendKind, BlobMeta, Config, EventQueue, ManualClock,
};
use runcache_schemas::{
    ArtifactStaged, BuildProvenance, ContentHash, Event, IndexEntry, Scope, TrustLevel,
};
use runcache_worker::{Outcome, Promoter};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

// Not every test binary uses all of them.
#[allow(unused_imports)]
pub use runcache_testkit::{crashing, Faults, Gate, GateHandle, Intercepted};

pub const REPO: &str = "acme/app";
pub const VERSION: &str = "v1";
pub const MAIN: &str = "refs/heads/main";
/// Deliveries before a message is dead-lettered, on both backends.
pub const MAX_RECEIVES: u32 = 5;

/// Expands each `async fn case(e: Env)` of the calling module into one
/// `#[tokio::test]` per backend, in modules named after the backends
/// (`local`, `aws_moto`), so a failure names its backend. The bodies are
/// written once; each runs on the `Env` of the function named like its
/// backend below.
#[macro_export]
macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        runcache_testkit::each_backend!($crate::backend_tests_on! { $($case),* });
    };
}

/// One backend's module of [`backend_tests!`].
#[macro_export]
macro_rules! backend_tests_on {
    ($backend:ident [$($cfg:tt)*] { $($case:ident),* }) => {
        #[cfg(all($($cfg)*))]
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::$backend().await).await;
                }
            )*
        }
    };
}

pub struct Env {
    pub backend: Backend,
    pub clock: ManualClock,
    pub config: Config,
    _dir: tempfile::TempDir,
}

impl Env {
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
    pub fn now(&self) -> DateTime<Utc> {
        self.backend.clock.now()
    }
    pub fn kind(&self) -> BackendKind {
        self.backend.kind
    }
    /// A fresh environment on the same backend (tests that start over per
    /// iteration, such as the crash-at-every-step loops).
    pub async fn another(&self) -> Env {
        match self.backend.kind {
            #[cfg(feature = "aws")]
            BackendKind::Aws => aws_moto().await,
            _ => local_env(),
        }
    }
}

/// The local backend in a temporary directory, on a `ManualClock`.
pub fn local_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let mut config = Config::local(dir.path());
    config.max_receives = MAX_RECEIVES;
    let backend = Backend::local(&config, Arc::new(clock.clone())).unwrap();
    Env {
        backend,
        clock,
        config,
        _dir: dir,
    }
}

/// The local backend (for the tests that run on it alone).
pub fn env() -> Env {
    local_env()
}

/// [`local_env`], as [`backend_tests!`] calls it.
pub async fn local() -> Env {
    local_env()
}

/// The AWS adapters against this test binary's moto server, on resources of
/// their own (a random stage, bootstrapped), with a `ManualClock` that
/// starts at the real time (see the module doc).
#[cfg(feature = "aws")]
pub async fn aws_moto() -> Env {
    let (sdk, config, _) = runcache_testkit::moto::fresh(MAX_RECEIVES).await;
    let mut backend = runcache_infra::aws::connect_with(&sdk, &config).expect("aws backend");
    let clock = ManualClock::default();
    backend.clock = Arc::new(clock.clone());
    Env {
        backend,
        clock,
        config,
        _dir: tempfile::tempdir().unwrap(),
    }
}

pub fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

pub fn days(d: u64) -> Duration {
    Duration::from_secs(d * 86_400)
}

pub fn hash_of(bytes: &[u8]) -> ContentHash {
    ContentHash::from_hex(&hex::encode(Sha256::digest(bytes))).unwrap()
}

/// `artifact.staged` for `bytes` under `key` in `scope`.
pub fn staged(
    upload: &str,
    bytes: &[u8],
    key: &str,
    scope: &Scope,
    at: DateTime<Utc>,
) -> ArtifactStaged {
    ArtifactStaged {
        upload_id: upload.into(),
        staging_key: staging::key(TrustLevel::Protected, upload),
        claimed_hash: hash_of(bytes),
        size_bytes: bytes.len() as u64,
        cache_key: key.into(),
        scope: scope.clone(),
        cache_version: VERSION.into(),
        paths: vec!["node_modules".into()],
        compression: "zstd-without-long".into(),
        unpacked_bytes: None,
        staged_at: at,
        attributes: Default::default(),
        provenance: BuildProvenance {
            repository: scope.repository.clone(),
            branch: scope.git_ref.clone(),
            trigger_event: "push".into(),
            trust: TrustLevel::Protected,
            toolchain: Some("node-20".into()),
            lockfile_hash: Some("lock-1".into()),
            build_duration_ms: Some(60_000),
            ..Default::default()
        },
    }
}

pub async fn put_bytes(b: &Backend, key: &str, bytes: &[u8]) {
    b.blobs
        .put(
            key,
            Box::pin(std::io::Cursor::new(bytes.to_vec())),
            BTreeMap::new(),
        )
        .await
        .unwrap();
}

/// Uploads `bytes` as `save` does for `ev`: at its staging key, with the
/// `runcache-claim` metadata promote checks. Returns what the store said.
pub async fn stage(b: &Backend, ev: &ArtifactStaged, bytes: &[u8]) -> BlobMeta {
    b.blobs
        .put(
            &ev.staging_key,
            Box::pin(std::io::Cursor::new(bytes.to_vec())),
            staging::claim_metadata(&ev.scope, &ev.cache_version, &ev.cache_key),
        )
        .await
        .unwrap()
}

pub fn promoter(b: &Backend) -> Promoter {
    Promoter::new(b.clone(), "test-worker", days(90))
}

/// Stages and promotes `bytes` under `key` in `scope`; returns the entry.
pub async fn save(e: &Env, upload: &str, key: &str, scope: &Scope, bytes: &[u8]) -> IndexEntry {
    let ev = staged(upload, bytes, key, scope, e.now());
    stage(&e.backend, &ev, bytes).await;
    assert_eq!(
        promoter(&e.backend).promote(&ev).await.unwrap(),
        Outcome::Done
    );
    e.backend
        .index
        .get(scope, VERSION, key)
        .await
        .unwrap()
        .expect("promoted")
}

pub fn main_scope() -> Scope {
    Scope::new(REPO, MAIN)
}

pub async fn read(b: &Backend, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    b.blobs
        .get(key, None)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

pub async fn exists(b: &Backend, key: &str) -> bool {
    b.blobs.head(key).await.unwrap().is_some()
}

pub async fn keys_under(b: &Backend, prefix: &str) -> Vec<String> {
    b.blobs
        .list(prefix, None, 10_000)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|m| m.key)
        .collect()
}

pub async fn all_entries(b: &Backend) -> Vec<IndexEntry> {
    b.index.scan(None, 10_000).await.unwrap().entries
}

/// A restore's search for `key` from `scope` (own ref, then main).
pub async fn lookup(b: &Backend, scope: &Scope, key: &str) -> Option<SearchHit> {
    let req = SearchRequest {
        scopes: runcache_infra::index::restore_scopes(scope, None, "main"),
        version: VERSION.into(),
        primary_key: key.into(),
        restore_keys: vec![],
        min_trust: TrustLevel::Untrusted,
    };
    search(&*b.index, &req).await.unwrap()
}

/// Every event waiting on a queue, acknowledged.
pub async fn take_events(q: &dyn EventQueue) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let batch = q
            .receive(10, Duration::ZERO, Duration::from_secs(60))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            q.ack(&m.receipt).await.unwrap();
            out.push(Event::decode(&m.body).unwrap());
        }
    }
}

/// An index entry built directly (quota and TTL tests need many, no blobs).
pub fn entry(
    scope: &Scope,
    key: &str,
    size: u64,
    trust: TrustLevel,
    at: DateTime<Utc>,
) -> IndexEntry {
    let h = hash_of(format!("{scope}/{key}").as_bytes());
    IndexEntry {
        cache_key: key.into(),
        s3_key: names::artifact_key(h.hex()),
        content_hash: h,
        repository: scope.repository.clone(),
        git_ref: scope.git_ref.clone(),
        cache_version: VERSION.into(),
        toolchain: "node-20".into(),
        lockfile_hash: Some("lock-1".into()),
        size_bytes: size,
        created_at: at,
        last_accessed: at,
        access_count: 0,
        ttl: (at + chrono::Duration::days(90)).timestamp(),
        state: runcache_schemas::EntryState::Live,
        invalidated_at: None,
        reason: None,
        invalidated_by: None,
        trust,
        trigger_event: "push".into(),
        upload_id: format!("u-{key}"),
        build_duration_ms: None,
        attributes: Default::default(),
    }
}
