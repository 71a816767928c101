//! What runcache's tests share, so each suite states only its cases:
//!
//! - [`each_backend!`]: the one list of backends every suite runs on
//!   (`local`, and `aws_moto` with the `aws` feature). The conformance
//!   suite and the worker tests expand their cases through it, so a new
//!   backend joins every suite in one place and test names say the backend
//!   (`local::case`, `aws_moto::case`).
//! - [`moto`]: the AWS emulator a test binary starts on 127.0.0.1.
//! - [`actions_cache`]: the real `@actions/cache` client, installed from
//!   npm and run as a job would run it, for the served-protocol tests.
//! - [`http`]: one raw HTTP/1.1 request, for asserting exact answers.
//! - [`noise`]: incompressible, deterministic test data.
//! - [`process`]: `kill -9` of a child at a chosen point.
//! - [`intercept`]: wrappers around the ports that forward every call and
//!   let a test hold it ([`Gate`]) or fail it ([`Faults`]), to build
//!   interleavings and crashes explicitly.
//!
//! Only tests and benchmarks depend on this crate; production code never
//! does (tests/architecture.rs checks it).

pub mod actions_cache;
pub mod browser;
pub mod faults;
pub mod gate;
pub mod http;
pub mod intercept;
#[cfg(feature = "aws")]
pub mod moto;
pub mod noise;
pub mod process;

pub use faults::{crashing, Faults};
pub use gate::{Gate, GateHandle};
pub use intercept::{Call, Intercepted, Interceptor};

/// Calls `$callback! { backend [cfg…] args }` once per backend, where
/// `backend` is the module name a suite gives its cases and `[cfg…]` the
/// `cfg` predicate the backend needs in the calling crate (empty: always).
/// The callback writes `#[cfg(all(cfg…))] mod backend { … }`.
///
/// ```ignore
/// macro_rules! my_suite {
///     ($backend:ident [$($cfg:tt)*] { $($case:ident),* }) => {
///         #[cfg(all($($cfg)*))]
///         mod $backend { /* one test per case on fixtures::$backend() */ }
///     };
/// }
/// runcache_testkit::each_backend!(my_suite! { case_a, case_b });
/// ```
///
/// The callback may be a path (`$crate::my_suite!`), so a suite's macro
/// can hand over a `#[macro_export]`ed callback of its own crate.
#[macro_export]
macro_rules! each_backend {
    ($($callback:ident)::+ ! $args:tt) => {
        $($callback)::+ ! { local [] $args }
        $($callback)::+ ! { aws_moto [feature = "aws"] $args }
    };
}
