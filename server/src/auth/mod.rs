//! Who a request comes from. Every protocol carries the job's bearer token
//! (`Authorization: Bearer …`, the runner's `ACTIONS_RUNTIME_TOKEN`); this
//! module turns it into a [`Caller`]: the [`Job`] (the scope it writes,
//! the scopes it reads, its trust) and the provenance fields the token
//! vouches for.
//!
//! Mode `static` (this module's [`Auth::Static`]): a token file maps each
//! token to one repository, ref and trust tier, for a single team or a
//! laptop. The token's trust is still capped by the server's `max_trust`
//! when staging (`runcache_cache::stage::tier_for`): a token never widens
//! what the staging tier allows.
//!
//! May touch: the token file it loads. Nothing else.

use std::{collections::HashMap, path::Path};

use runcache_cache::Job;
use runcache_schemas::{BuildProvenance, Scope, TrustLevel};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A token file's entry (`[[token]]` in TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    /// The bearer token, as the job sends it.
    pub token: String,
    /// `owner/name`.
    pub repository: String,
    /// The ref this token's jobs write (`refs/heads/main`,
    /// `refs/pull/7/merge`); they read it, then `base_ref`, then the
    /// default branch.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// For a pull request's token: its base branch.
    #[serde(default)]
    pub base_ref: Option<String>,
    /// The trust its jobs' uploads carry (`untrusted`, `pull-request`,
    /// `branch`, `protected`).
    pub trust: TrustLevel,
    /// Recorded in provenance (`push`, `pull_request`…); default `push`.
    #[serde(default)]
    pub trigger_event: Option<String>,
    /// Recorded in provenance: who the token stands for.
    #[serde(default)]
    pub actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(rename = "token", default)]
    tokens: Vec<StaticToken>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    #[error("reading the token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is not valid: {reason} (expected [[token]] tables with token, repository, ref and trust)")]
    Invalid { path: String, reason: String },
}

/// Why a request is refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no bearer token: the job must send `Authorization: Bearer <token>` (ACTIONS_RUNTIME_TOKEN), and the token must be listed in the server's --tokens file")]
    Missing,
    #[error("unknown token: add it to the server's --tokens file (with its repository, ref and trust), or use the token the runner was given")]
    Unknown,
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
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Tokens listed in a file, by the SHA-256 of the token.
    Static(HashMap<[u8; 32], StaticToken>),
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Static tokens, as listed.
    pub fn static_tokens(tokens: Vec<StaticToken>) -> Auth {
        Auth::Static(
            tokens
                .into_iter()
                .map(|t| (token_digest(&t.token), t))
                .collect(),
        )
    }

    /// Static tokens from a TOML file of `[[token]]` tables.
    pub fn load_static(path: &Path) -> Result<Auth, AuthConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: TokenFile = toml::from_str(&text).map_err(|e| AuthConfigError::Invalid {
            path: shown.clone(),
            reason: e.message().to_string(),
        })?;
        if file.tokens.is_empty() {
            return Err(AuthConfigError::Invalid {
                path: shown,
                reason: "it lists no token".into(),
            });
        }
        Ok(Auth::static_tokens(file.tokens))
    }

    /// The caller an `Authorization` header value names.
    pub fn caller(
        &self,
        authorization: Option<&str>,
        default_branch: &str,
    ) -> Result<Caller, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        match self {
            Auth::Static(tokens) => {
                let t = tokens.get(&token_digest(token)).ok_or(AuthError::Unknown)?;
                Ok(caller_of(t, default_branch))
            }
        }
    }
}

fn caller_of(t: &StaticToken, default_branch: &str) -> Caller {
    let job = Job {
        scope: Scope::new(&t.repository, &t.git_ref),
        base_ref: t.base_ref.clone(),
        default_branch: default_branch.to_string(),
        trust: t.trust,
        traceparent: String::new(),
    };
    let provenance = BuildProvenance {
        repository: t.repository.clone(),
        branch: t.git_ref.clone(),
        base_ref: t.base_ref.clone(),
        trigger_event: t.trigger_event.clone().unwrap_or_else(|| "push".into()),
        actor: t.actor.clone(),
        trust: t.trust,
        producer_version: concat!("runcache-serve/", env!("CARGO_PKG_VERSION")).into(),
        ..Default::default()
    };
    Caller { job, provenance }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::static_tokens(vec![StaticToken {
            token: "s3cret".into(),
            repository: "acme/app".into(),
            git_ref: "refs/pull/7/merge".into(),
            base_ref: Some("refs/heads/main".into()),
            trust: TrustLevel::PullRequest,
            trigger_event: Some("pull_request".into()),
            actor: None,
        }])
    }

    #[test]
    fn a_listed_token_names_its_job() {
        let c = auth().caller(Some("Bearer s3cret"), "main").unwrap();
        assert_eq!(c.job.scope, Scope::new("acme/app", "refs/pull/7/merge"));
        assert_eq!(c.job.trust, TrustLevel::PullRequest);
        assert_eq!(c.provenance.trigger_event, "pull_request");
    }

    #[test]
    fn missing_and_unknown_tokens_are_401() {
        let a = auth();
        assert_eq!(a.caller(None, "main").unwrap_err(), AuthError::Missing);
        assert_eq!(
            a.caller(Some("Bearer "), "main").unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            a.caller(Some("Basic s3cret"), "main").unwrap_err(),
            AuthError::Missing
        );
        let unknown = a.caller(Some("Bearer nope"), "main").unwrap_err();
        assert_eq!(unknown, AuthError::Unknown);
        assert_eq!(unknown.status(), 401);
    }

    #[test]
    fn the_token_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[token]]\ntoken = \"t\"\nrepository = \"a/b\"\nref = \"refs/heads/main\"\ntrust = \"protected\"\n").unwrap();
        assert!(Auth::load_static(&path)
            .unwrap()
            .caller(Some("Bearer t"), "main")
            .is_ok());
        std::fs::write(&path, "[[token]]\ntoken = \"t\"\n").unwrap();
        let err = Auth::load_static(&path).unwrap_err().to_string();
        assert!(err.contains("repository"), "{err}");
    }
}
