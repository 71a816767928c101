//! What a backend provides to the suite: fresh, isolated ports, its
//! capabilities, and a way to let time pass.

use std::{sync::Arc, time::Duration};

use runcache_infra::{
    BlobStore, CacheIndex, Config, EventQueue, ManualClock, MetricsSink, ProvenanceStore,
};

/// Deliveries before a message is dead-lettered, in every fixture.
pub const MAX_RECEIVES: u32 = 3;

pub struct Fixture {
    pub blobs: Arc<dyn BlobStore>,
    pub index: Arc<dyn CacheIndex>,
    pub provenance: Arc<dyn ProvenanceStore>,
    pub metrics: Arc<dyn MetricsSink>,
    /// A fresh queue whose DLQ takes messages after [`MAX_RECEIVES`].
    pub queue: Arc<dyn EventQueue>,
    /// Visibility timeout the queue cases use (SQS counts whole seconds).
    pub visibility: Duration,
    /// Size of the streamed-blob case.
    pub large_blob_bytes: u64,
    time: Time,
    _dir: tempfile::TempDir,
}

enum Time {
    Manual(ManualClock),
}

impl Fixture {
    /// Lets `d` pass for the backend (a clock jump where the backend takes
    /// an injected clock).
    pub async fn elapse(&self, d: Duration) {
        match &self.time {
            Time::Manual(clock) => clock.advance(d),
        }
    }
}

pub async fn local() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let backend =
        runcache_infra::Backend::local(&Config::local(dir.path()), Arc::new(clock.clone()))
            .expect("local backend");
    let queue = runcache_infra::local::SqliteEventQueue::open(
        &dir.path().join("conformance-queue.db"),
        "conformance",
        MAX_RECEIVES,
        Arc::new(clock.clone()),
    )
    .expect("local queue");
    Fixture {
        blobs: backend.blobs,
        index: backend.index,
        provenance: backend.provenance,
        metrics: backend.metrics,
        queue: Arc::new(queue),
        visibility: Duration::from_secs(1),
        large_blob_bytes: 1 << 30,
        time: Time::Manual(clock),
        _dir: dir,
    }
}
