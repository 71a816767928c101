//! runcache's ports and adapters: the only crate that talks to the outside
//! world (filesystem, SQLite, later AWS). Everything above it (producer,
//! workers) sees the traits in [`blob`], [`index`], [`queue`], [`metrics`]
//! and [`provenance`], bundled in a [`Backend`] built from [`Config`].
//!
//! - `local`: filesystem blobs + SQLite index, queues, metrics and
//!   provenance under `$RUNCACHE_HOME`: the embedded default, nothing to
//!   install or start.
//! - `aws` (feature `aws`, on by default): S3, DynamoDB, SQS and
//!   CloudWatch through the AWS SDK; `aws::bootstrap` creates the resources.
//!
//! Pure logic that both backends share (the restore search order) lives next
//! to its port so that no adapter re-implements it.

#[cfg(feature = "aws")]
pub mod aws;
pub mod backend;
pub mod blob;
pub mod clock;
pub mod config;
pub mod digest;
mod error;
pub mod index;
pub mod local;
pub mod metrics;
pub mod names;
pub mod provenance;
pub mod queue;
pub mod staging;
pub mod telemetry;

pub use backend::Backend;
pub use blob::{BlobMeta, BlobReader, BlobStore, ListPage};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{BackendKind, Config};
pub use error::{describe, StoreError};
pub use index::{CacheIndex, InsertOutcome, StateChange};
pub use metrics::{MetricDatum, MetricStats, MetricUnit, MetricsSink, SeriesPoint, Window};
pub use provenance::ProvenanceStore;
pub use queue::{EventQueue, OutgoingMessage, QueueDepth, ReceivedMessage};
