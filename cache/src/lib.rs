//! The cache library: the operations every front door performs, written
//! once. The CLI (`runcache save|restore|get|explain`) and `runcache serve`
//! (every client protocol) are thin doors over it: they parse their
//! requests, capture who is asking as a [`Job`], call these, and render.
//!
//! - [`stage`]: an archive stream in, a staged upload with its claim and
//!   the `artifact.staged` event out (the trust tier decided here, once).
//! - [`lookup`]: the restore search (`runcache_infra::index::search`, the
//!   one implementation) over the scopes a job may read, with an optional
//!   trace that `explain` renders; access events for the metrics.
//! - [`fetch`]: a stored entry out of the CAS, verified against its hash.
//! - [`keys`]: the key rules every door enforces (actions/cache's).
//!
//! What lives below, in `runcache-infra`: the ports, the staging layout
//! (`staging`), hashing (`digest`), the search order (`index::search`).
//! What never happens here: reading the process environment (a [`Job`] is
//! handed in), writing `artifacts/`, the index or provenance (the workers'
//! job; a door that runs them inline calls `runcache_worker::settle`).
//!
//! May touch: the ports of `runcache-infra`.

pub mod fetch;
mod job;
pub mod keys;
pub mod lookup;
pub mod stage;

pub use job::Job;
