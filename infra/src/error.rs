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

/// An error and its causes on one line, for people: `a: b: c`. Causes whose
/// text the message before already contains are left out, since many error
/// types print their source inside their own message.
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("save failed: {0}")]
    struct Outer(#[source] StoreError);

    #[test]
    fn describe_prints_each_cause_once() {
        let inner = StoreError::io("object `a`", std::io::Error::other("disk full"));
        let text = describe(&Outer(inner));
        assert_eq!(text, "save failed: I/O error on object `a`: disk full");
        assert_eq!(text.matches("disk full").count(), 1);
    }
}
