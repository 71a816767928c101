//! The conformance suite: the same test bodies (in `conformance/cases*.rs`)
//! run against every backend. A backend joins with one line:
//! `conformance_suite!(name, fixture_constructor);`. Failures name the
//! backend: `local::queue_dead_lettered_after_max_receives`.

#[path = "conformance/mod.rs"]
mod conformance;
#[cfg(feature = "aws")]
use peak_alloc::PeakAlloc;

/// Counts allocations so the streaming cases can prove bounded memory.
#[global_allocator]
static PEAK_ALLOC: PeakAlloc = PeakAlloc;

conformance_suite!(local, crate::conformance::fixtures::local);
#[cfg(feature = "aws")]
conformance_suite!(aws_moto, crate::conformance::fixtures::moto);
