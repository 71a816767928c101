//! The conformance suite: the same test bodies (in `conformance/*_cases.rs`)
//! run against every backend of `runcache_testkit::each_backend!`, each
//! on its fixture (`conformance/fixtures.rs`, one constructor per backend,
//! named like it). Failures name the backend:
//! `local::queue_dead_lettered_after_max_receives`.

#[path = "conformance/mod.rs"]
mod conformance;
#[cfg(feature = "aws")]
use peak_alloc::PeakAlloc;

/// Counts allocations so the streaming cases can prove bounded memory.
#[global_allocator]
static PEAK_ALLOC: PeakAlloc = PeakAlloc;

runcache_testkit::each_backend!(crate::conformance_suite! {});
