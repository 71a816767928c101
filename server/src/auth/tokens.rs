//! Mode `static`: a token file maps each token to one repository, ref and
//! trust tier, for a single team or a laptop. Tokens are held by their
//! SHA-256, compared as digests.
//!
//! May touch: the token file it loads.

use std::{collections::HashMap, path::Path};

use runcache_cache::Job;
use runcache_schemas::{BuildProvenance, Scope, TrustLevel};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AuthConfigError, AuthError, Caller};

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

/// The tokens of a token file, by digest.
#[derive(Debug, Clone)]
pub struct StaticTokens(HashMap<[u8; 32], StaticToken>);

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

const EXPECTED: &str = "expected [[token]] tables with token, repository, ref and trust";

impl StaticTokens {
    /// The tokens, as listed.
    pub fn new(tokens: Vec<StaticToken>) -> StaticTokens {
        StaticTokens(
            tokens
                .into_iter()
                .map(|t| (token_digest(&t.token), t))
                .collect(),
        )
    }

    /// The tokens of a TOML file of `[[token]]` tables.
    pub fn load(path: &Path) -> Result<StaticTokens, AuthConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: TokenFile = toml::from_str(&text).map_err(|e| AuthConfigError::Invalid {
            path: shown.clone(),
            reason: e.message().to_string(),
            expected: EXPECTED,
        })?;
        if file.tokens.is_empty() {
            return Err(AuthConfigError::Invalid {
                path: shown,
                reason: "it lists no token".into(),
                expected: EXPECTED,
            });
        }
        Ok(StaticTokens::new(file.tokens))
    }

    /// The caller `token` names.
    pub fn caller(&self, token: &str, default_branch: &str) -> Result<Caller, AuthError> {
        let t = self.0.get(&token_digest(token)).ok_or(AuthError::Unknown)?;
        Ok(caller_of(t, default_branch))
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
    Caller {
        job,
        provenance,
        can_write: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Auth;

    fn auth() -> Auth {
        Auth::Static(StaticTokens::new(vec![StaticToken {
            token: "s3cret".into(),
            repository: "acme/app".into(),
            git_ref: "refs/pull/7/merge".into(),
            base_ref: Some("refs/heads/main".into()),
            trust: TrustLevel::PullRequest,
            trigger_event: Some("pull_request".into()),
            actor: None,
        }]))
    }

    #[tokio::test]
    async fn a_listed_token_names_its_job() {
        let c = auth().caller(Some("Bearer s3cret"), "main").await.unwrap();
        assert_eq!(c.job.scope, Scope::new("acme/app", "refs/pull/7/merge"));
        assert_eq!(c.job.trust, TrustLevel::PullRequest);
        assert_eq!(c.provenance.trigger_event, "pull_request");
    }

    #[tokio::test]
    async fn the_token_may_come_as_the_password_of_basic_credentials() {
        use base64::Engine as _;
        let a = auth();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in &engines {
            for credentials in ["bazel:s3cret", "s3cret:"] {
                let header = format!("Basic {}", engine.encode(credentials));
                let c = a.caller(Some(&header), "main").await.unwrap();
                assert_eq!(c.job.scope, Scope::new("acme/app", "refs/pull/7/merge"));
            }
        }
        // A password with `+`/`/` in its standard encoding, sent as Bazel
        // sends it (URL-safe alphabet).
        let wrong = format!("Basic {}", engines[1].encode("u:nope>>>?"));
        assert_eq!(
            a.caller(Some(&wrong), "main").await.unwrap_err(),
            AuthError::Unknown
        );
    }

    #[tokio::test]
    async fn missing_and_unknown_tokens_are_401() {
        let a = auth();
        assert_eq!(
            a.caller(None, "main").await.unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            a.caller(Some("Bearer "), "main").await.unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            a.caller(Some("Basic s3cret"), "main").await.unwrap_err(),
            AuthError::Missing
        );
        let unknown = a.caller(Some("Bearer nope"), "main").await.unwrap_err();
        assert_eq!(unknown, AuthError::Unknown);
        assert_eq!(unknown.status(), 401);
    }

    #[tokio::test]
    async fn the_token_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[token]]\ntoken = \"t\"\nrepository = \"a/b\"\nref = \"refs/heads/main\"\ntrust = \"protected\"\n").unwrap();
        assert!(Auth::Static(StaticTokens::load(&path).unwrap())
            .caller(Some("Bearer t"), "main")
            .await
            .is_ok());
        std::fs::write(&path, "[[token]]\ntoken = \"t\"\n").unwrap();
        let err = StaticTokens::load(&path).unwrap_err().to_string();
        assert!(err.contains("repository"), "{err}");
    }
}
