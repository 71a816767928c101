//! How an AWS SDK error becomes a [`StoreError`]. Every adapter has one
//! `error` function that handles its service's own codes (a missing bucket,
//! table or queue; a failed condition) and hands everything else to
//! [`map_sdk_error`], so that credentials, throttling, outages and access
//! denials read the same whichever service raised them.
//!
//! By the time an error gets here the SDK's standard retry mode has already
//! retried it if it could succeed (throttling, 5xx, timeouts, dropped
//! connections), so a `Throttled` or `Unavailable` here means "still failing
//! after several jittered attempts".

use std::fmt::Debug;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::StoreError;

/// Error codes AWS services use for throttling.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "TooManyRequestsException",
    "BandwidthLimitExceeded",
    "RequestThrottledException",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
];

/// Codes for credentials AWS refused (as opposed to a missing permission).
const BAD_CREDENTIALS: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "TokenRefreshRequired",
];

const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "UnauthorizedOperation",
    "AllAccessDisabled",
];

/// What a user does about missing or refused credentials.
const CREDENTIALS_HINT: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, \
     or run with an instance/task role or web identity (AWS_ROLE_ARN + \
     AWS_WEB_IDENTITY_TOKEN_FILE)";

/// The service error's code, if AWS answered with one.
pub(crate) fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// The service error's HTTP status, if AWS answered.
pub(crate) fn status<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The text of a missing resource: its kind and name and how to create it.
pub(crate) fn missing(kind: &str, name: &str, setting: &str) -> StoreError {
    StoreError::NotFound {
        what: format!(
            "{kind} `{name}` (create it with `runcache admin bootstrap` or by deploying \
             terraform/, or set {setting} to an existing one in this region)"
        ),
    }
}

/// A DynamoDB error on `table` as a [`StoreError`]: a missing table says
/// how to create it or which `setting` names another one.
pub(crate) fn dynamodb_error<E, R>(
    err: SdkError<E, R>,
    action: &str,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    setting: &str,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    if code(&err) == Some("ResourceNotFoundException") {
        return missing("DynamoDB table", table, setting);
    }
    let region = super::region_of(client.config().region());
    map_sdk_error(
        err,
        action,
        &format!("arn:aws:dynamodb:{region}:*:table/{table}"),
    )
}

/// Maps what no service-specific rule claimed. `action` is the IAM action
/// (`s3:GetObject`), `resource` names what it was applied to.
pub(crate) fn map_sdk_error<E, R>(err: SdkError<E, R>, action: &str, resource: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let what = format!("{action} on {resource}");
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or_default();
            let message = e.message().unwrap_or_default().to_string();
            if THROTTLING.contains(&code) {
                StoreError::Throttled { what }
            } else if BAD_CREDENTIALS.contains(&code) {
                StoreError::Invalid {
                    what: "AWS credentials".into(),
                    reason: format!(
                        "AWS refused them for {action} ({code}: {message}); refresh or fix them: \
                         {CREDENTIALS_HINT}"
                    ),
                }
            } else if ACCESS_DENIED.contains(&code) {
                StoreError::AccessDenied {
                    action: action.to_string(),
                    resource: resource.to_string(),
                }
            } else if code.starts_with("Internal")
                || code == "ServiceUnavailable"
                || code == "ServiceUnavailableException"
            {
                StoreError::Unavailable {
                    what,
                    reason: format!("AWS answered {code}: {message}"),
                }
            } else if code.starts_with("Validation")
                || code.starts_with("InvalidParameter")
                || code.starts_with("InvalidArgument")
                || code == "InvalidRequest"
                || code == "MissingParameter"
            {
                StoreError::Invalid {
                    what,
                    reason: format!("{code}: {message}"),
                }
            } else {
                let what = if code.is_empty() {
                    what
                } else {
                    format!("{what} ({code}: {message})")
                };
                StoreError::backend(what, err)
            }
        }
        SdkError::TimeoutError(_) => StoreError::Unavailable {
            what,
            reason: "timed out".into(),
        },
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
            let context = DisplayErrorContext(&err).to_string();
            if looks_like_credentials(&context) {
                StoreError::Invalid {
                    what: "AWS credentials".into(),
                    reason: format!("none could be loaded for {action}; {CREDENTIALS_HINT}"),
                }
            } else if matches!(err, SdkError::DispatchFailure(_)) {
                StoreError::Unavailable {
                    what,
                    reason: format!(
                        "could not reach the AWS endpoint (check the network, AWS_REGION and \
                         AWS_ENDPOINT_URL): {context}"
                    ),
                }
            } else {
                StoreError::backend(what, context)
            }
        }
        SdkError::ResponseError(_) => StoreError::Unavailable {
            what,
            reason: format!("unreadable response: {}", DisplayErrorContext(&err)),
        },
        _ => {
            let context = DisplayErrorContext(&err).to_string();
            StoreError::backend(what, context)
        }
    }
}

fn looks_like_credentials(context: &str) -> bool {
    let lower = context.to_ascii_lowercase();
    lower.contains("credential") || lower.contains("no providers in chain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_failures_are_recognised() {
        assert!(looks_like_credentials(
            "dispatch failure: other: the credential provider was not enabled: \
             no providers in chain provided credentials"
        ));
        assert!(!looks_like_credentials("io error: connection refused"));
    }
}
