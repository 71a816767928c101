//! The one error type every port returns. The ports differ in what they
//! store, not in what can go wrong, so callers match the same few kinds.

use std::error::Error as StdError;

/// What went wrong in a port call. `what` names the resource (a key, a table,
/// a queue) so the message alone tells a user where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what} is throttled; retry later")]
    Throttled { what: String },
    #[error("{what} is unavailable: {reason}")]
    Unavailable { what: String, reason: String },
    #[error("access denied: {action} on {resource}; grant `{action}` on it to this role")]
    AccessDenied { action: String, resource: String },
    #[error("I/O error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Backend {
        what: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl StoreError {
    /// Worth retrying: the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Throttled { .. } | StoreError::Unavailable { .. } => true,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound { what: what.into() }
        } else {
            StoreError::Io {
                what: what.into(),
                source,
            }
        }
    }

    pub(crate) fn backend(
        what: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            what: what.into(),
            source: source.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
