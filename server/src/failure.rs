//! One refusal, whatever its cause, with the HTTP status and the Twirp
//! code it maps to; each protocol module renders it in its own format.

use axum::http::StatusCode;
use runcache_infra::StoreError;

use crate::{auth::AuthError, entries::FindError, signed::SignatureError, uploads::UploadError};

/// A request that failed: the status, the Twirp error code, and a message
/// that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub msg: String,
}

impl Failure {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        let code = match status.as_u16() {
            400 => "invalid_argument",
            401 => "unauthenticated",
            403 => "permission_denied",
            404 => "not_found",
            409 => "already_exists",
            413 => "resource_exhausted",
            412 => "failed_precondition",
            503 => "unavailable",
            _ => "internal",
        };
        Self {
            status,
            code,
            msg: msg.into(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        Self::new(status, e.to_string())
    }
}

impl From<SignatureError> for Failure {
    fn from(e: SignatureError) -> Self {
        Self::new(StatusCode::FORBIDDEN, e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "the cache store failed a request");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("cache store: {e}"))
    }
}

impl From<FindError> for Failure {
    fn from(e: FindError) -> Self {
        match e {
            FindError::Key(e) => Self::bad_request(e.to_string()),
            FindError::Store(e) => e.into(),
        }
    }
}

impl From<UploadError> for Failure {
    fn from(e: UploadError) -> Self {
        let status = match &e {
            UploadError::Exists { .. } | UploadError::InFlight { .. } => StatusCode::CONFLICT,
            UploadError::NotWritable { .. } | UploadError::NotYours(_) | UploadError::ReadOnly => {
                StatusCode::FORBIDDEN
            }
            UploadError::Unknown(_) => StatusCode::NOT_FOUND,
            UploadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            UploadError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "an upload failed");
        }
        Self::new(status, e.to_string())
    }
}
