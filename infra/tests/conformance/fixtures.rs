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
    /// The backend keeps its own time (SQS, DynamoDB): really wait.
    #[cfg(feature = "aws")]
    Wall,
}

impl Fixture {
    /// Lets `d` pass for the backend (a clock jump where the backend takes
    /// an injected clock).
    pub async fn elapse(&self, d: Duration) {
        match &self.time {
            Time::Manual(clock) => clock.advance(d),
            #[cfg(feature = "aws")]
            Time::Wall => tokio::time::sleep(d).await,
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

/// The AWS adapters against the one moto server of this test binary, on
/// resources of their own (a random stage, bootstrapped).
#[cfg(feature = "aws")]
pub async fn aws_moto() -> Fixture {
    let (sdk, config, _) = runcache_testkit::moto::fresh(MAX_RECEIVES).await;
    let backend = runcache_infra::aws::connect_with(&sdk, &config).expect("aws backend");
    Fixture {
        blobs: backend.blobs,
        index: backend.index,
        provenance: backend.provenance,
        metrics: backend.metrics,
        // Its RedrivePolicy says MAX_RECEIVES (bootstrap wrote it).
        queue: backend.staged,
        visibility: Duration::from_secs(1),
        // Several parts and several download chunks, so the parallel
        // multipart upload and ranged GETs run; moto keeps it in memory and
        // moves a few tens of MB/s, so not the local backend's 1 GiB. It
        // also keeps the memory bound (len / 4) above the S3 adapter's
        // buffering (4 parts or chunks of 8 MiB) with room for the cases
        // running beside it.
        large_blob_bytes: 256 << 20,
        time: Time::Wall,
        _dir: tempfile::tempdir().expect("temp dir"),
    }
}
