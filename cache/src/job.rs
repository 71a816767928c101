//! Who is asking: what every operation needs to know of the job behind a
//! request, captured by the front door (from the GitHub Actions
//! environment, or from a verified token) and handed in.

use runcache_schemas::{Scope, TrustLevel};

/// The job a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The scope it writes and reads first (repository + ref).
    pub scope: Scope,
    /// For a pull request: its base branch, read after its own scope.
    pub base_ref: Option<String>,
    /// The branch every job may fall back to.
    pub default_branch: String,
    /// The trust its trigger earns (before the credentials' cap).
    pub trust: TrustLevel,
    /// W3C trace context put on every event sent for it.
    pub traceparent: String,
}

impl Job {
    /// The scopes this job may read, in search order (see
    /// [`runcache_infra::index::restore_scopes`]).
    pub fn readable_scopes(&self) -> Vec<Scope> {
        runcache_infra::index::restore_scopes(
            &self.scope,
            self.base_ref.as_deref(),
            &self.default_branch,
        )
    }
}
