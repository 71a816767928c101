//! Mode `github`: the job's runtime token (`ACTIONS_RUNTIME_TOKEN`) is a
//! JWT; it is verified against configured keys (a JWKS file or URL), its
//! issuer, audience and expiry, and the job is read off its claims the way
//! GitHub's cache service reads them:
//!
//! - `ac`: a JSON *string* holding `[{"Scope": ref, "Permission": n}]`,
//!   `n` a bit set (1 read, 2 write). The scope with the write bit is the
//!   one the job writes (at most one); the read-only ones, in order, are
//!   what it may fall back to (a pull request's base, then the default
//!   branch). Nothing outside the claim is ever readable.
//! - the repository: the claim `repository_claim` names (`repository`),
//!   which must be in the configured `repositories`: one issuer signs the
//!   tokens of every repository on GitHub, so the list is required.
//! - trust: `pull-request` for `refs/pull/…`, `protected` for the
//!   configured `protected_refs`, `branch` otherwise.
//!
//! May touch: the JWKS file, and the JWKS URL (refetched when a token names
//! a key it does not hold, at most once a minute by default).

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use runcache_cache::Job;
use runcache_schemas::{BuildProvenance, Scope, TrustLevel};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::{AuthConfigError, AuthError, Caller};

/// Signature algorithms accepted: asymmetric only, so a public key can
/// never be used as an HMAC secret (the algorithm-confusion attack).
const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const READ: u64 = 1;
const WRITE: u64 = 2;

/// `--github-auth FILE` (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAuthConfig {
    /// A JWKS document on disk.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Or where to fetch it (`https://…/.well-known/jwks`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of them, if several).
    pub audience: String,
    /// The repositories served: `owner/name`, or `owner/*`.
    pub repositories: Vec<String>,
    /// The claim naming the job's repository.
    #[serde(default = "default_repository_claim")]
    pub repository_claim: String,
    /// Refs whose uploads are `protected` (`refs/heads/main`,
    /// `refs/tags/*`: a trailing `*` matches any rest).
    #[serde(default)]
    pub protected_refs: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// A token naming a key the set lacks refetches `jwks_url`, at most
    /// this often (seconds).
    #[serde(default = "default_refetch")]
    pub jwks_min_refetch_seconds: u64,
}

fn default_refetch() -> u64 {
    60
}

fn default_repository_claim() -> String {
    "repository".into()
}

fn default_leeway() -> u64 {
    60
}

/// Verifies runtime tokens.
#[derive(Debug)]
pub struct GithubAuth {
    config: GithubAuthConfig,
    keys: Mutex<Keys>,
    http: reqwest::Client,
}

#[derive(Debug)]
struct Keys {
    set: JwkSet,
    fetched: Instant,
}

impl GithubAuth {
    /// Reads `path`, then loads the keys it names (fetching a URL now, so a
    /// wrong one fails at start rather than at the first job).
    pub async fn load(path: &Path) -> Result<GithubAuth, AuthConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: GithubAuthConfig =
            toml::from_str(&text).map_err(|e| AuthConfigError::Invalid {
                path: shown.clone(),
                reason: e.message().to_string(),
                expected: GITHUB_EXPECTED,
            })?;
        GithubAuth::new(config)
            .await
            .map_err(|reason| AuthConfigError::Invalid {
                path: shown,
                reason,
                expected: GITHUB_EXPECTED,
            })
    }

    /// Checks `config` and loads its keys.
    pub async fn new(config: GithubAuthConfig) -> Result<GithubAuth, String> {
        if config.repositories.is_empty() {
            return Err("`repositories` is empty: list the repositories this server serves (`owner/name` or `owner/*`); the issuer signs every repository's tokens".into());
        }
        if config.jwks_file.is_some() == config.jwks_url.is_some() {
            return Err("set exactly one of `jwks_file` and `jwks_url`".into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("preparing the JWKS client: {e}"))?;
        let set = load_keys(&config, &http).await?;
        Ok(GithubAuth {
            config,
            keys: Mutex::new(Keys {
                set,
                fetched: Instant::now(),
            }),
            http,
        })
    }

    /// The caller a verified `token` names.
    pub async fn caller(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("not a JWT: {e}")))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "tokens signed with {:?} are not accepted (asymmetric keys only)",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_seconds;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(format!("the token does not verify: {e}")))?
            .claims;
        self.caller_of(&claims)
    }

    /// The key `kid` names; an unknown one refetches a URL's set first.
    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.find(kid)? {
            return Ok(key);
        }
        let stale = {
            let keys = self.keys.lock().expect("keys lock");
            keys.fetched.elapsed() >= Duration::from_secs(self.config.jwks_min_refetch_seconds)
        };
        if self.config.jwks_url.is_some() && stale {
            match load_keys(&self.config, &self.http).await {
                Ok(set) => {
                    info!(keys = set.keys.len(), "refetched the JWKS");
                    *self.keys.lock().expect("keys lock") = Keys {
                        set,
                        fetched: Instant::now(),
                    };
                }
                Err(e) => warn!(error = %e, "refetching the JWKS failed"),
            }
            if let Some(key) = self.find(kid)? {
                return Ok(key);
            }
        }
        Err(AuthError::Invalid(format!(
            "no configured key has kid {}: check the server's JWKS",
            kid.unwrap_or("(none)")
        )))
    }

    fn find(&self, kid: Option<&str>) -> Result<Option<DecodingKey>, AuthError> {
        let keys = self.keys.lock().expect("keys lock");
        let jwk = match kid {
            Some(kid) => keys.set.find(kid),
            // Without a kid, only a one-key set says which key is meant.
            None if keys.set.keys.len() == 1 => keys.set.keys.first(),
            None => None,
        };
        jwk.map(|jwk| {
            DecodingKey::from_jwk(jwk)
                .map_err(|e| AuthError::Invalid(format!("the JWKS key is unusable: {e}")))
        })
        .transpose()
    }

    fn caller_of(&self, claims: &Map<String, Value>) -> Result<Caller, AuthError> {
        let claim_name = &self.config.repository_claim;
        let repository = claims
            .get(claim_name)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "the token has no `{claim_name}` claim: set `repository_claim` in the server's --github-auth file to the claim naming the repository"
                ))
            })?;
        if !self
            .config
            .repositories
            .iter()
            .any(|pattern| matches(pattern, repository))
        {
            return Err(AuthError::Forbidden(format!(
                "repository {repository} is not served here: add it to `repositories` in the server's --github-auth file"
            )));
        }
        let scopes = access_claim(claims)?;
        let writable: Vec<&AccessScope> = scopes.iter().filter(|s| s.can(WRITE)).collect();
        let writes = match writable.as_slice() {
            [] => None,
            [one] => Some(one.scope.clone()),
            _ => {
                return Err(AuthError::Invalid(
                    "the token's `ac` claim gives write access to more than one scope".into(),
                ))
            }
        };
        let reads: Vec<String> = scopes
            .iter()
            .filter(|s| s.can(READ) && Some(&s.scope) != writes.as_ref())
            .map(|s| s.scope.clone())
            .collect();
        // The job's own scope: the one it writes, or else the first it reads.
        let own = match (&writes, reads.first()) {
            (Some(w), _) => w.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => {
                return Err(AuthError::Forbidden(
                    "the token's `ac` claim grants no cache scope".into(),
                ))
            }
        };
        let fallbacks: Vec<&String> = reads.iter().filter(|r| **r != own).collect();
        let scope = Scope::new(repository, &own);
        // Fallbacks in the claim's order: a pull request's base, then the
        // default branch; with none, the job reads only its own scope.
        let (base_ref, fallback) = match (scope.is_pull_request(), fallbacks.as_slice()) {
            (_, []) => (None, own.clone()),
            (true, [base, .., last]) => (Some((*base).clone()), (*last).clone()),
            (_, [.., last]) => (None, (*last).clone()),
        };
        let trust = if scope.is_pull_request() {
            TrustLevel::PullRequest
        } else if self.config.protected_refs.iter().any(|p| matches(p, &own)) {
            TrustLevel::Protected
        } else {
            TrustLevel::Branch
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(String::from);
        let job = Job {
            scope,
            base_ref: base_ref.clone(),
            default_branch: fallback,
            trust,
            traceparent: String::new(),
        };
        let provenance = BuildProvenance {
            repository: repository.to_string(),
            branch: own.clone(),
            base_ref,
            trigger_event: text("event_name").unwrap_or_else(|| {
                if job.scope.is_pull_request() {
                    "pull_request".into()
                } else {
                    "push".into()
                }
            }),
            actor: text("actor"),
            trust,
            producer_version: concat!("runcache-serve/", env!("CARGO_PKG_VERSION")).into(),
            ..Default::default()
        };
        Ok(Caller {
            job,
            provenance,
            can_write: writes.is_some(),
        })
    }
}

const GITHUB_EXPECTED: &str =
    "expected issuer, audience, repositories and one of jwks_file or jwks_url";

/// One entry of the `ac` claim.
#[derive(Debug, Deserialize)]
struct AccessScope {
    #[serde(rename = "Scope")]
    scope: String,
    #[serde(rename = "Permission")]
    permission: u64,
}

impl AccessScope {
    fn can(&self, bit: u64) -> bool {
        self.permission & bit != 0
    }
}

fn access_claim(claims: &Map<String, Value>) -> Result<Vec<AccessScope>, AuthError> {
    let text = claims.get("ac").and_then(Value::as_str).ok_or_else(|| {
        AuthError::Invalid("the token has no `ac` claim (the cache scopes it grants)".into())
    })?;
    serde_json::from_str(text).map_err(|e| {
        AuthError::Invalid(format!(
            "the token's `ac` claim is not a list of Scope/Permission: {e}"
        ))
    })
}

/// `pattern` is exact, or ends in `*` and matches any rest.
fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

async fn load_keys(config: &GithubAuthConfig, http: &reqwest::Client) -> Result<JwkSet, String> {
    let (text, from) = match (&config.jwks_file, &config.jwks_url) {
        (Some(file), _) => (
            std::fs::read_to_string(file)
                .map_err(|e| format!("reading jwks_file {}: {e}", file.display()))?,
            file.display().to_string(),
        ),
        (None, Some(url)) => (fetch(http, url).await?, url.clone()),
        (None, None) => return Err("set one of `jwks_file` and `jwks_url`".into()),
    };
    let set: JwkSet =
        serde_json::from_str(&text).map_err(|e| format!("{from} is not a JWKS document: {e}"))?;
    if set.keys.is_empty() {
        return Err(format!("{from} holds no key"));
    }
    Ok(set)
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("fetching jwks_url {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("fetching jwks_url {url}: HTTP {status}"));
    }
    response
        .text()
        .await
        .map_err(|e| format!("reading jwks_url {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        assert!(matches("acme/app", "acme/app"));
        assert!(!matches("acme/app", "acme/app2"));
        assert!(matches("acme/*", "acme/anything"));
        assert!(!matches("acme/*", "evil/acme"));
    }
}
