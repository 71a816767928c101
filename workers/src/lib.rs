//! runcache's workers: the queue consumers that own every write needing
//! trust. One module per queue handler and one consumer loop:
//!
//! - [`consumer`]: receive → decode → handle → ack / retry / dead-letter,
//!   with bounded concurrency, visibility extension and graceful shutdown.
//! - [`promote`]: verify a staged upload's SHA-256 and move it into the CAS,
//!   then write provenance and the index entry.
//!
//! May touch: the ports of `runcache-infra` only.

pub mod consumer;
pub mod promote;
mod verify;

pub use consumer::{drain, run, ConsumerConfig, DrainReport, Handler, Outcome};
pub use promote::Promoter;
