//! Who a request comes from. Every protocol carries the job's bearer token
//! (`Authorization: Bearer …`, the runner's `ACTIONS_RUNTIME_TOKEN`); this
//! module turns it into a [`Caller`]: the [`Job`] (the scope it writes,
//! the scopes it reads, its trust) and the provenance fields the token
//! vouches for. Two modes:
//!
//! - [`tokens`] (`--tokens FILE`): listed tokens, each with one repository,
//!   ref and trust, for a single team or a laptop;
//! - [`github`] (`--github-auth FILE`): the runtime token as a JWT,
//!   verified against a JWKS, its claims naming repository and scopes.
//!
//! Either way the token's trust is still capped by the server's
//! `max_trust` when staging (`runcache_cache::stage::tier_for`): a token
//! never widens what the staging tier allows.
//!
//! May touch: what its modes load (their files, a JWKS URL).

pub mod github;
pub mod tokens;

use std::sync::Arc;

use runcache_cache::Job;
use runcache_schemas::BuildProvenance;
use thiserror::Error;

pub use github::{GithubAuth, GithubAuthConfig};
pub use tokens::{StaticToken, StaticTokens};

/// A mode's configuration could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {reason} ({expected})")]
    Invalid {
        path: String,
        reason: String,
        expected: &'static str,
    },
}

/// Why a request is refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no token: send `Authorization: Bearer <token>` (the runner's ACTIONS_RUNTIME_TOKEN, or a token from the server's --tokens file), or the token as the password of Basic credentials")]
    Missing,
    #[error("unknown token: add it to the server's --tokens file (with its repository, ref and trust), or use the token the runner was given")]
    Unknown,
    /// A token that does not verify (signature, issuer, audience, expiry,
    /// claims).
    #[error("the runtime token is not accepted: {0}")]
    Invalid(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    /// `401` for a missing or bad token, `403` for a known one that may not.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden(_) => 403,
            _ => 401,
        }
    }
}

/// The job behind a request, as its token says.
#[derive(Debug, Clone)]
pub struct Caller {
    pub job: Job,
    /// What provenance records of it (repository, branch, trigger, actor).
    pub provenance: BuildProvenance,
    /// Whether the token grants writing the job's scope (a read-only
    /// runtime token restores but never saves).
    pub can_write: bool,
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub enum Auth {
    Static(StaticTokens),
    Github(Arc<GithubAuth>),
}

impl Auth {
    /// Static tokens, as listed.
    pub fn static_tokens(tokens: Vec<StaticToken>) -> Auth {
        Auth::Static(StaticTokens::new(tokens))
    }

    /// The caller an `Authorization` header value names. `default_branch`
    /// is the server's, for modes whose tokens do not say it.
    pub async fn caller(
        &self,
        authorization: Option<&str>,
        default_branch: &str,
    ) -> Result<Caller, AuthError> {
        let token = authorization
            .and_then(token_of)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        match self {
            Auth::Static(tokens) => tokens.caller(&token, default_branch),
            Auth::Github(github) => github.caller(&token).await,
        }
    }
}

/// The token an `Authorization` value carries: `Bearer <token>`, or
/// `Basic <base64(user:token)>` as build tools send credentials from a URL
/// or a username/password setting (the password is the token; a bare
/// `token:` also works). Both base64 alphabets are read: Bazel encodes
/// with the URL-safe one.
fn token_of(header: &str) -> Option<String> {
    use base64::Engine as _;
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let unpadded = value.trim_end_matches('=');
    let decoded = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ]
    .iter()
    .find_map(|engine| engine.decode(unpadded).ok())?;
    let credentials = String::from_utf8(decoded).ok()?;
    let (user, password) = credentials.split_once(':')?;
    Some(if password.is_empty() { user } else { password }.to_string())
}
