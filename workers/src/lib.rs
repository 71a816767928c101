//! runcache's workers: the queue consumers and the batch job that own every
//! write needing trust. One module per handler and one consumer loop:
//!
//! - [`consumer`]: receive → decode → handle → ack / retry / dead-letter,
//!   with bounded concurrency, visibility extension and graceful shutdown.
//! - [`promote`] (staged queue): verify a staged upload's SHA-256 and move
//!   it into the CAS, then write provenance and the index entry.
//! - [`metrics`] (accessed queue): `cache.accessed` and `worker.outcome` →
//!   datums and access counters; the periodic storage gauges.
//! - [`invalidate`] (invalidate queue): soft-delete what a selector matches.
//! - [`sweep`] (batch, no queue): TTL and quota eviction, deletion of
//!   unreferenced blobs (safe against concurrent promotions), clean-up.
//! - [`settle`]: the one door for a front door that runs the handlers
//!   in its own process (the local backend's default), saying what
//!   happened.
//! - [`service`]: the binary's modes (`promote | metrics | invalidate |
//!   sweep | all`, `--once`) under one shutdown token.
//! - [`records`]: outcome events and audit ids the handlers share.
//!
//! The hashing reader (`runcache_infra::digest`) and selector matching
//! (`runcache_infra::index::matching`) live below, where the CLI may use
//! them too.
//!
//! Every handler's module doc lists its steps; each step is safe to repeat
//! and to crash after.
//!
//! May touch: the ports of `runcache-infra` only.

pub mod consumer;
pub mod invalidate;
pub mod metrics;
pub mod promote;
pub mod records;
pub mod service;
pub mod settle;
pub mod sweep;

pub use consumer::{drain, run, ConsumerConfig, DrainReport, Handler, Outcome};
pub use invalidate::Invalidator;
pub use metrics::{publish_gauges, MetricsHandler};
pub use promote::Promoter;
pub use service::{serve, Mode, ServiceOptions, ServiceReport};
pub use sweep::{sweep, SweepConfig, SweepReport};
