//! Small value types shared by events and records: content hashes, scopes,
//! trust levels, hit kinds.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::SchemaError;

/// A SHA-256 content hash written `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(String);

impl ContentHash {
    const PREFIX: &'static str = "sha256:";

    /// From 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Result<Self, SchemaError> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(format!(
                "{}{}",
                Self::PREFIX,
                hex.to_ascii_lowercase()
            )))
        } else {
            Err(SchemaError::InvalidValue(format!(
                "`{hex}` is not a SHA-256 hex digest (64 hex digits)"
            )))
        }
    }

    /// The 64 hex digits, as used in `artifacts/{hex}`.
    pub fn hex(&self) -> &str {
        &self.0[Self::PREFIX.len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContentHash {
    type Err = SchemaError;
    /// Accepts `sha256:<hex>` or bare hex.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s.strip_prefix(Self::PREFIX).unwrap_or(s))
    }
}

impl TryFrom<String> for ContentHash {
    type Error = SchemaError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.strip_prefix(Self::PREFIX) {
            Some(hex) => Self::from_hex(hex),
            None => Err(SchemaError::InvalidValue(format!(
                "`{s}` is not a content hash (expected `sha256:<64 hex>`)"
            ))),
        }
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for ContentHash {
    fn schema_name() -> Cow<'static, str> {
        "ContentHash".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": "SHA-256 of the compressed archive, `sha256:` + 64 lowercase hex digits"
        })
    }
}

/// Where an entry lives: a repository and a git ref. A restore reads its own
/// scope, then (for a pull request) the base branch, then the default branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// `owner/name`, as `GITHUB_REPOSITORY`.
    pub repository: String,
    /// A full ref, as `GITHUB_REF`: `refs/heads/main`, `refs/pull/7/merge`.
    pub git_ref: String,
}

impl Scope {
    pub fn new(repository: impl Into<String>, git_ref: impl Into<String>) -> Self {
        Self {
            repository: repository.into(),
            git_ref: git_ref.into(),
        }
    }

    /// `refs/heads/{branch}` of the same repository.
    pub fn branch(&self, branch: &str) -> Scope {
        Scope::new(self.repository.clone(), branch_ref(branch))
    }

    pub fn is_pull_request(&self) -> bool {
        self.git_ref.starts_with("refs/pull/")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.git_ref)
    }
}

/// `main` → `refs/heads/main`; a full ref is kept as it is.
pub fn branch_ref(branch: &str) -> String {
    if branch.starts_with("refs/") {
        branch.to_string()
    } else {
        format!("refs/heads/{branch}")
    }
}

/// How much the build that produced an entry can be trusted, lowest first.
/// A restore may demand a minimum (`--trust protected` for release jobs).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TrustLevel {
    /// Triggers that run code or inputs from outside the repository's
    /// writers: `pull_request_target`, `issue_comment`, `workflow_run`,
    /// unknown events. The default: trust is earned, never assumed.
    #[default]
    Untrusted,
    /// `pull_request`: code from a pull request, isolated in its own scope.
    PullRequest,
    /// A push (or manual/scheduled run) on a branch other than the default.
    Branch,
    /// A push, schedule or manual run on the default branch, or a tag.
    Protected,
}

impl TrustLevel {
    /// Classifies a GitHub Actions trigger (`GITHUB_EVENT_NAME`) on a ref.
    pub fn classify(event_name: &str, git_ref: &str, default_branch: &str) -> TrustLevel {
        let on_default = git_ref == branch_ref(default_branch);
        match event_name {
            "pull_request" | "merge_group" => TrustLevel::PullRequest,
            "push" | "schedule" | "workflow_dispatch" | "release" | "local"
                if on_default || git_ref.starts_with("refs/tags/") =>
            {
                TrustLevel::Protected
            }
            "push" | "schedule" | "workflow_dispatch" | "release" | "local" => TrustLevel::Branch,
            _ => TrustLevel::Untrusted,
        }
    }

    /// Every level, lowest first.
    pub const ALL: [TrustLevel; 4] = [
        TrustLevel::Untrusted,
        TrustLevel::PullRequest,
        TrustLevel::Branch,
        TrustLevel::Protected,
    ];

    /// Whether an upload staged with credentials of this tier may create an
    /// entry in scope `git_ref`: protected may write any ref; branch any
    /// ref but the default branch; pull-request and untrusted only pull
    /// request refs (`refs/pull/…`). With the tier bound to credentials
    /// (IAM lets a runner write only `staging/{its tier or lower}/`), this
    /// is what keeps a pull request from writing the default branch's scope.
    pub fn may_write_ref(self, git_ref: &str, default_branch: &str) -> bool {
        match self {
            TrustLevel::Protected => true,
            TrustLevel::Branch => git_ref != branch_ref(default_branch),
            TrustLevel::PullRequest | TrustLevel::Untrusted => git_ref.starts_with("refs/pull/"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Untrusted => "untrusted",
            TrustLevel::PullRequest => "pull-request",
            TrustLevel::Branch => "branch",
            TrustLevel::Protected => "protected",
        }
    }
}

impl FromStr for TrustLevel {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "untrusted" => Ok(TrustLevel::Untrusted),
            "pull-request" => Ok(TrustLevel::PullRequest),
            "branch" => Ok(TrustLevel::Branch),
            "protected" => Ok(TrustLevel::Protected),
            other => Err(SchemaError::InvalidValue(format!(
                "unknown trust level `{other}` (use untrusted, pull-request, branch or protected)"
            ))),
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a restore was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    /// The primary key matched exactly (`cache-hit=true`).
    Exact,
    /// A prefix of the primary key or a restore key matched.
    Prefix,
    /// Nothing matched.
    Miss,
}
