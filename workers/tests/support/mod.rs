//! Shared fixtures for the worker tests: an [`Env`] on either backend with
//! a `ManualClock` (the local one, or the AWS adapters on this test binary's
//! moto server, each test on fresh uniquely-named resources), staging and
//! promoting uploads, reading objects, and wrappers that stop a port call at
//! a chosen point (to build interleavings explicitly) or fail it (to crash a
//! handler after any step).
//!
//! [`backend_tests!`] expands plain `async fn case(e: Env)` bodies into one
//! test per backend: `local::case` and `aws_moto::case`.
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

use std::{
    collections::BTreeMap,
    ops::Range,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use runcache_infra::{
    index::{search, CacheIndex, EntryPage, SearchHit, SearchRequest},
    names, staging, Backend, BackendKind, BlobMeta, BlobReader, BlobStore, Config, EventQueue,
    InsertOutcome, ListPage, ManualClock, OutgoingMessage, QueueDepth, ReceivedMessage,
    StateChange, StoreError,
};
use runcache_schemas::{
    ArtifactStaged, AuditRecord, BuildProvenance, ContentHash, Event, IndexEntry, Scope, TrustLevel,
};
use runcache_worker::{Outcome, Promoter};
use sha2::{Digest, Sha256};
use tokio::{io::AsyncReadExt, sync::oneshot};

pub const REPO: &str = "acme/app";
pub const VERSION: &str = "v1";
pub const MAIN: &str = "refs/heads/main";
/// Deliveries before a message is dead-lettered, on both backends.
pub const MAX_RECEIVES: u32 = 5;

/// Expands each `async fn case(e: Env)` of the calling module into one
/// `#[tokio::test]` per backend, in modules `local` and `aws_moto`, so a
/// failure names its backend. The bodies are written once.
#[macro_export]
macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::local_env()).await;
                }
            )*
        }
        #[cfg(feature = "aws")]
        mod aws_moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::moto_env().await).await;
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
            BackendKind::Aws => moto_env().await,
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

/// The AWS adapters against this test binary's moto server, on resources of
/// their own (a random stage, bootstrapped), with a `ManualClock` that
/// starts at the real time (see the module doc).
#[cfg(feature = "aws")]
pub async fn moto_env() -> Env {
    let (sdk, config, _) = runcache_infra::aws::moto::fresh(MAX_RECEIVES).await;
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
    }
}

// ---- gates: stop a port call at a chosen point ---------------------------

/// Stops the first call of `op` on a key starting with `key_prefix`
/// (before or after the call itself) until the test releases it.
#[derive(Debug)]
pub struct Gate {
    op: &'static str,
    key_prefix: String,
    after: bool,
    reached: Mutex<Option<oneshot::Sender<()>>>,
    release: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

/// The test's side of a gate.
pub struct GateHandle {
    pub reached: oneshot::Receiver<()>,
    pub release: oneshot::Sender<()>,
}

impl Gate {
    pub fn before(op: &'static str, key_prefix: &str) -> (Arc<Gate>, GateHandle) {
        Self::new(op, key_prefix, false)
    }
    pub fn after(op: &'static str, key_prefix: &str) -> (Arc<Gate>, GateHandle) {
        Self::new(op, key_prefix, true)
    }
    fn new(op: &'static str, key_prefix: &str, after: bool) -> (Arc<Gate>, GateHandle) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        (
            Arc::new(Gate {
                op,
                key_prefix: key_prefix.into(),
                after,
                reached: Mutex::new(Some(reached_tx)),
                release: tokio::sync::Mutex::new(Some(release_rx)),
            }),
            GateHandle {
                reached: reached_rx,
                release: release_tx,
            },
        )
    }

    async fn pass(&self, op: &str, key: &str, after: bool) {
        if op != self.op || after != self.after || !key.starts_with(&self.key_prefix) {
            return;
        }
        let Some(tx) = self.reached.lock().unwrap().take() else {
            return;
        };
        let _ = tx.send(());
        if let Some(rx) = self.release.lock().await.take() {
            let _ = rx.await;
        }
    }
}

async fn gated<T>(
    gates: &[Arc<Gate>],
    op: &str,
    key: &str,
    call: impl std::future::Future<Output = T>,
) -> T {
    for g in gates {
        g.pass(op, key, false).await;
    }
    let out = call.await;
    for g in gates {
        g.pass(op, key, true).await;
    }
    out
}

#[derive(Debug)]
pub struct GatedBlobs(pub Arc<dyn BlobStore>, pub Vec<Arc<Gate>>);

#[async_trait]
impl BlobStore for GatedBlobs {
    async fn put(
        &self,
        key: &str,
        body: BlobReader,
        m: BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError> {
        gated(&self.1, "put", key, self.0.put(key, body, m)).await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        gated(&self.1, "head", key, self.0.head(key)).await
    }
    async fn get(&self, key: &str, r: Option<Range<u64>>) -> Result<BlobReader, StoreError> {
        gated(&self.1, "get", key, self.0.get(key, r)).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, StoreError> {
        gated(&self.1, "copy", from, self.0.copy(from, to)).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        gated(&self.1, "delete", key, self.0.delete(key)).await
    }
    async fn list(&self, p: &str, a: Option<&str>, l: usize) -> Result<ListPage, StoreError> {
        gated(&self.1, "list", p, self.0.list(p, a, l)).await
    }
    async fn abort_stale_uploads(&self, t: DateTime<Utc>) -> Result<u64, StoreError> {
        self.0.abort_stale_uploads(t).await
    }
    // Forwarded so a wrapped store takes the same code paths as the bare
    // one (promote pins by copy where copies share bytes). `delete_many`
    // keeps its default: one `delete` (one fault point) per key.
    fn copy_shares_bytes(&self) -> bool {
        self.0.copy_shares_bytes()
    }
}

/// Gates on the index: `insert` (key = the cache key) and `scan` (key "").
#[derive(Debug)]
pub struct GatedIndex(pub Arc<dyn CacheIndex>, pub Vec<Arc<Gate>>);

#[async_trait]
impl CacheIndex for GatedIndex {
    async fn get(&self, s: &Scope, v: &str, k: &str) -> Result<Option<IndexEntry>, StoreError> {
        self.0.get(s, v, k).await
    }
    async fn find_prefix(
        &self,
        s: &Scope,
        v: &str,
        p: &str,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.find_prefix(s, v, p).await
    }
    async fn insert(&self, e: &IndexEntry) -> Result<InsertOutcome, StoreError> {
        gated(&self.1, "insert", &e.cache_key, self.0.insert(e)).await
    }
    async fn record_access(
        &self,
        s: &Scope,
        v: &str,
        k: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0.record_access(s, v, k, at).await
    }
    async fn by_repository(&self, r: &str, t: Option<&str>) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.by_repository(r, t).await
    }
    async fn by_lockfile(&self, h: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.by_lockfile(h).await
    }
    async fn by_key(&self, r: &str, k: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.by_key(r, k).await
    }
    async fn list_prefix(
        &self,
        s: &Scope,
        v: &str,
        p: &str,
        l: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.list_prefix(s, v, p, l).await
    }
    async fn set_state(
        &self,
        s: &Scope,
        v: &str,
        k: &str,
        c: &StateChange,
    ) -> Result<bool, StoreError> {
        self.0.set_state(s, v, k, c).await
    }
    async fn remove(&self, s: &Scope, v: &str, k: &str) -> Result<(), StoreError> {
        self.0.remove(s, v, k).await
    }
    async fn scan(&self, c: Option<&str>, l: usize) -> Result<EntryPage, StoreError> {
        gated(&self.1, "scan", "", self.0.scan(c, l)).await
    }
    async fn append_audit(&self, r: &AuditRecord) -> Result<(), StoreError> {
        self.0.append_audit(r).await
    }
    async fn audit_log(&self, r: &str, l: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.0.audit_log(r, l).await
    }
}

// ---- faults: crash a handler at its k-th write ---------------------------

/// Fails the `fail_at`-th mutating call (1-based) across the wrapped ports,
/// as if the worker died there.
#[derive(Debug)]
pub struct Faults {
    calls: AtomicUsize,
    fail_at: usize,
}

impl Faults {
    pub fn new(fail_at: usize) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            fail_at,
        })
    }

    /// Whether the injected failure was reached.
    pub fn fired(&self) -> bool {
        self.calls.load(Ordering::SeqCst) >= self.fail_at
    }

    fn hit(&self, what: &str) -> Result<(), StoreError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(StoreError::Unavailable {
                what: what.into(),
                reason: "injected crash".into(),
            });
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct FaultyBlobs(pub Arc<dyn BlobStore>, pub Arc<Faults>);

#[async_trait]
impl BlobStore for FaultyBlobs {
    async fn put(
        &self,
        key: &str,
        body: BlobReader,
        m: BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError> {
        self.1.hit("put")?;
        self.0.put(key, body, m).await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        self.0.head(key).await
    }
    async fn get(&self, key: &str, r: Option<Range<u64>>) -> Result<BlobReader, StoreError> {
        self.0.get(key, r).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, StoreError> {
        self.1.hit("copy")?;
        self.0.copy(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.1.hit("delete")?;
        self.0.delete(key).await
    }
    async fn list(&self, p: &str, a: Option<&str>, l: usize) -> Result<ListPage, StoreError> {
        self.0.list(p, a, l).await
    }
    async fn abort_stale_uploads(&self, t: DateTime<Utc>) -> Result<u64, StoreError> {
        self.0.abort_stale_uploads(t).await
    }
    // Forwarded so a wrapped store takes the same code paths as the bare
    // one (promote pins by copy where copies share bytes). `delete_many`
    // keeps its default: one `delete` (one fault point) per key.
    fn copy_shares_bytes(&self) -> bool {
        self.0.copy_shares_bytes()
    }
}

#[derive(Debug)]
pub struct FaultyIndex(pub Arc<dyn CacheIndex>, pub Arc<Faults>);

#[async_trait]
impl CacheIndex for FaultyIndex {
    async fn get(&self, s: &Scope, v: &str, k: &str) -> Result<Option<IndexEntry>, StoreError> {
        self.0.get(s, v, k).await
    }
    async fn find_prefix(
        &self,
        s: &Scope,
        v: &str,
        p: &str,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.find_prefix(s, v, p).await
    }
    async fn insert(&self, e: &IndexEntry) -> Result<InsertOutcome, StoreError> {
        self.1.hit("insert")?;
        self.0.insert(e).await
    }
    async fn record_access(
        &self,
        s: &Scope,
        v: &str,
        k: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.1.hit("record_access")?;
        self.0.record_access(s, v, k, at).await
    }
    async fn by_repository(&self, r: &str, t: Option<&str>) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.by_repository(r, t).await
    }
    async fn by_lockfile(&self, h: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.by_lockfile(h).await
    }
    async fn by_key(&self, r: &str, k: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.by_key(r, k).await
    }
    async fn list_prefix(
        &self,
        s: &Scope,
        v: &str,
        p: &str,
        l: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.list_prefix(s, v, p, l).await
    }
    async fn set_state(
        &self,
        s: &Scope,
        v: &str,
        k: &str,
        c: &StateChange,
    ) -> Result<bool, StoreError> {
        self.1.hit("set_state")?;
        self.0.set_state(s, v, k, c).await
    }
    async fn remove(&self, s: &Scope, v: &str, k: &str) -> Result<(), StoreError> {
        self.1.hit("remove")?;
        self.0.remove(s, v, k).await
    }
    async fn scan(&self, c: Option<&str>, l: usize) -> Result<EntryPage, StoreError> {
        self.0.scan(c, l).await
    }
    async fn append_audit(&self, r: &AuditRecord) -> Result<(), StoreError> {
        self.1.hit("audit")?;
        self.0.append_audit(r).await
    }
    async fn audit_log(&self, r: &str, l: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.0.audit_log(r, l).await
    }
}

#[derive(Debug)]
pub struct FaultyQueue(pub Arc<dyn EventQueue>, pub Arc<Faults>);

#[async_trait]
impl EventQueue for FaultyQueue {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn send(&self, m: OutgoingMessage) -> Result<String, StoreError> {
        self.1.hit("send")?;
        self.0.send(m).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        vis: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        self.0.receive(max, wait, vis).await
    }
    async fn extend_visibility(&self, r: &str, v: Duration) -> Result<(), StoreError> {
        self.0.extend_visibility(r, v).await
    }
    async fn ack(&self, r: &str) -> Result<(), StoreError> {
        self.0.ack(r).await
    }
    async fn dead_letter(&self, m: &ReceivedMessage, reason: &str) -> Result<(), StoreError> {
        self.0.dead_letter(m, reason).await
    }
    async fn dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, StoreError> {
        self.0.dead_letters(max).await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.0.depth().await
    }
}

/// `backend` with every port that writes wrapped to fail at `faults`.
pub fn crashing(backend: &Backend, faults: &Arc<Faults>) -> Backend {
    let mut b = backend.clone();
    b.blobs = Arc::new(FaultyBlobs(backend.blobs.clone(), faults.clone()));
    b.index = Arc::new(FaultyIndex(backend.index.clone(), faults.clone()));
    b.accessed = Arc::new(FaultyQueue(backend.accessed.clone(), faults.clone()));
    b.metrics = backend.metrics.clone();
    b
}
