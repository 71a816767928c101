//! The `runcache` CLI as a library: what runners run in workflow steps.
//!
//! - [`context`]: who is running (scope, trigger, trust) from the GitHub
//!   Actions environment or flags.
//! - [`save`]: archive → hash → upload to staging → `artifact.staged`.
//! - [`restore`]: index search → verified download → safe extraction.
//! - [`explain`]: why a restore missed: the same search, step by step, and
//!   what lies around the key (other versions and scopes, invalidations,
//!   evictions, staged or rejected saves, the closest keys).
//! - [`pipe`]: bridges between the sync archive code and async ports.
//! - [`outputs`]: `cache-hit` & co. to `$GITHUB_OUTPUT` and stdout.
//! - [`json`]: the one style and versioned envelope of every `--json`.
//!
//! May touch: the ports of `runcache-infra`, the archive crate, the local
//! filesystem it archives or restores into. Never `artifacts/`, the index
//! or provenance directly: that is the workers' job (on the local backend
//! `save` runs the promote worker in-process).

pub mod admin;
pub mod annotate;
pub mod context;
pub mod derive;
pub mod explain;
pub mod get;
pub mod import;
pub mod interrupt;
pub mod json;
pub use runcache_cache::keys;
pub mod outputs;
pub mod pipe;
pub mod progress;
pub mod restore;
pub mod save;
