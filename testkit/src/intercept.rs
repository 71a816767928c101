//! [`Intercepted`]: a port wrapped so that every call passes its
//! [`Interceptor`]s before and after it reaches the real port. Every trait
//! method is forwarded (the wrapped port takes the same code paths as the
//! bare one; `delete_many` alone keeps its per-key default), so a wrapper
//! never changes behaviour unless an interceptor says so.

use std::{
    collections::BTreeMap, fmt::Debug, future::Future, ops::Range, sync::Arc, time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use runcache_infra::{
    index::{CacheIndex, EntryPage},
    BlobMeta, BlobReader, BlobStore, EventQueue, InsertOutcome, ListPage, OutgoingMessage,
    QueueDepth, ReceivedMessage, StateChange, StoreError,
};
use runcache_schemas::{AuditRecord, IndexEntry, Scope};

/// One port call as an interceptor sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The trait method (`"put"`, `"insert"`, `"send"`…).
    pub op: &'static str,
    /// What it is about: the blob key (the source of a copy), the cache
    /// key, the prefix, the repository, a receipt; `""` when nothing.
    pub key: &'a str,
    /// Whether the call changes stored state.
    pub writes: bool,
}

/// Something that happens around port calls.
#[async_trait]
pub trait Interceptor: Send + Sync + Debug {
    /// Before the call; an error fails it without reaching the port.
    async fn before(&self, _call: Call<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    /// After the call, whatever it returned.
    async fn after(&self, _call: Call<'_>) {}
}

/// A port (`dyn BlobStore`, `dyn CacheIndex`, `dyn EventQueue`) whose calls
/// pass `hooks` in order.
#[derive(Debug)]
pub struct Intercepted<P: ?Sized> {
    inner: Arc<P>,
    hooks: Vec<Arc<dyn Interceptor>>,
}

impl<P: ?Sized> Intercepted<P> {
    pub fn new(inner: Arc<P>, hooks: Vec<Arc<dyn Interceptor>>) -> Arc<Self> {
        Arc::new(Self { inner, hooks })
    }

    /// `inner` behind one interceptor.
    pub fn wrap(inner: Arc<P>, hook: Arc<dyn Interceptor>) -> Arc<Self> {
        Self::new(inner, vec![hook])
    }

    async fn around<T>(
        &self,
        call: Call<'_>,
        port_call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        for hook in &self.hooks {
            hook.before(call).await?;
        }
        let out = port_call.await;
        for hook in &self.hooks {
            hook.after(call).await;
        }
        out
    }
}

fn reads<'a>(op: &'static str, key: &'a str) -> Call<'a> {
    Call {
        op,
        key,
        writes: false,
    }
}

fn writes<'a>(op: &'static str, key: &'a str) -> Call<'a> {
    Call {
        op,
        key,
        writes: true,
    }
}

#[async_trait]
impl BlobStore for Intercepted<dyn BlobStore> {
    async fn put(
        &self,
        key: &str,
        body: BlobReader,
        metadata: BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError> {
        self.around(writes("put", key), self.inner.put(key, body, metadata))
            .await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        self.around(reads("head", key), self.inner.head(key)).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobReader, StoreError> {
        self.around(reads("get", key), self.inner.get(key, range))
            .await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, StoreError> {
        self.around(writes("copy", from), self.inner.copy(from, to))
            .await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.around(writes("delete", key), self.inner.delete(key))
            .await
    }
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        self.around(reads("list", prefix), self.inner.list(prefix, after, limit))
            .await
    }
    async fn abort_stale_uploads(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        self.around(
            writes("abort_stale_uploads", ""),
            self.inner.abort_stale_uploads(older_than),
        )
        .await
    }
    fn copy_shares_bytes(&self) -> bool {
        self.inner.copy_shares_bytes()
    }
    // `delete_many` keeps the trait's default, one `delete` per key, so
    // each key is a point where a test can hold or fail the deletion.
}

#[async_trait]
impl CacheIndex for Intercepted<dyn CacheIndex> {
    async fn get(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
    ) -> Result<Option<IndexEntry>, StoreError> {
        self.around(reads("get", key), self.inner.get(scope, version, key))
            .await
    }
    async fn find_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.around(
            reads("find_prefix", prefix),
            self.inner.find_prefix(scope, version, prefix),
        )
        .await
    }
    async fn insert(&self, entry: &IndexEntry) -> Result<InsertOutcome, StoreError> {
        self.around(writes("insert", &entry.cache_key), self.inner.insert(entry))
            .await
    }
    async fn record_access(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.around(
            writes("record_access", key),
            self.inner.record_access(scope, version, key, at),
        )
        .await
    }
    async fn by_repository(
        &self,
        repository: &str,
        toolchain: Option<&str>,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.around(
            reads("by_repository", repository),
            self.inner.by_repository(repository, toolchain),
        )
        .await
    }
    async fn by_lockfile(&self, lockfile_hash: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.around(
            reads("by_lockfile", lockfile_hash),
            self.inner.by_lockfile(lockfile_hash),
        )
        .await
    }
    async fn by_key(&self, repository: &str, key: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.around(reads("by_key", key), self.inner.by_key(repository, key))
            .await
    }
    async fn list_prefix(
        &self,
        scope: &Scope,
        version: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.around(
            reads("list_prefix", prefix),
            self.inner.list_prefix(scope, version, prefix, limit),
        )
        .await
    }
    async fn set_state(
        &self,
        scope: &Scope,
        version: &str,
        key: &str,
        change: &StateChange,
    ) -> Result<bool, StoreError> {
        self.around(
            writes("set_state", key),
            self.inner.set_state(scope, version, key, change),
        )
        .await
    }
    async fn remove(&self, scope: &Scope, version: &str, key: &str) -> Result<(), StoreError> {
        self.around(
            writes("remove", key),
            self.inner.remove(scope, version, key),
        )
        .await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<EntryPage, StoreError> {
        self.around(reads("scan", ""), self.inner.scan(cursor, limit))
            .await
    }
    async fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.around(
            writes("append_audit", &record.repository),
            self.inner.append_audit(record),
        )
        .await
    }
    async fn audit_log(
        &self,
        repository: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.around(
            reads("audit_log", repository),
            self.inner.audit_log(repository, limit),
        )
        .await
    }
}

#[async_trait]
impl EventQueue for Intercepted<dyn EventQueue> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, message: OutgoingMessage) -> Result<String, StoreError> {
        self.around(writes("send", ""), self.inner.send(message))
            .await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        self.around(
            writes("receive", ""),
            self.inner.receive(max, wait, visibility),
        )
        .await
    }
    async fn extend_visibility(&self, receipt: &str, by: Duration) -> Result<(), StoreError> {
        self.around(
            writes("extend_visibility", receipt),
            self.inner.extend_visibility(receipt, by),
        )
        .await
    }
    async fn ack(&self, receipt: &str) -> Result<(), StoreError> {
        self.around(writes("ack", receipt), self.inner.ack(receipt))
            .await
    }
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), StoreError> {
        self.around(
            writes("dead_letter", ""),
            self.inner.dead_letter(message, reason),
        )
        .await
    }
    async fn dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, StoreError> {
        self.around(reads("dead_letters", ""), self.inner.dead_letters(max))
            .await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.around(reads("depth", ""), self.inner.depth()).await
    }
}
