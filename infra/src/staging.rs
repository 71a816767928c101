//! The staging protocol, in one place: how an upload is laid out under
//! `staging/`, what binds it to the entry it was uploaded for, and the
//! labels `explain` reads back. Every front door (the CLI's `save`,
//! `runcache serve`) writes uploads through this module, and promote reads
//! them through it.
//!
//! - **Key**: `staging/{tier}/{upload_id}`. IAM lets a runner role of tier
//!   T put only under `staging/{t}/` for t ≤ T, so promote reads the most
//!   trust an upload may claim from its key ([`parse_key`]).
//! - **Upload id**: a UUIDv7 ([`new_upload_id`]): ids sort in upload order.
//! - **Claim** (`runcache-claim` user metadata): a digest of the scope,
//!   version and key the bytes were uploaded for, written with the bytes;
//!   promote refuses an `artifact.staged` event whose claim differs, so an
//!   event cannot re-label someone else's upload.
//! - **Labels** (`runcache-key-sha256`, `-repository`, `-ref`,
//!   `-cache-version`): runner-supplied, used for nothing but telling which
//!   key a staged or quarantined upload is for (`runcache explain`).
//!
//! May touch: nothing (pure functions over names and metadata maps).

use std::collections::BTreeMap;

use runcache_schemas::{Scope, TrustLevel};
use sha2::{Digest, Sha256};

use crate::names::STAGING_PREFIX;

/// The user-metadata field of a staged object that binds it to the entry
/// it was uploaded for (see [`claim`]).
pub const CLAIM_META: &str = "runcache-claim";

/// The label fields of a staged object's user metadata.
pub mod labels {
    /// SHA-256 hex of the cache key (keys may hold characters S3 metadata
    /// cannot, and may be longer than it allows).
    pub const KEY_SHA256: &str = "runcache-key-sha256";
    pub const REPOSITORY: &str = "runcache-repository";
    /// The scope's ref, percent-encoded outside printable ASCII.
    pub const GIT_REF: &str = "runcache-ref";
    pub const CACHE_VERSION: &str = "runcache-cache-version";
}

/// `staging/{tier}/{upload_id}`.
pub fn key(tier: TrustLevel, upload_id: &str) -> String {
    format!("{STAGING_PREFIX}{}/{upload_id}", tier.as_str())
}

/// The tier and upload id of `staging/{tier}/{upload_id}`; `None` for any
/// other key.
pub fn parse_key(key: &str) -> Option<(TrustLevel, &str)> {
    let (tier, upload_id) = key.strip_prefix(STAGING_PREFIX)?.split_once('/')?;
    let tier = TrustLevel::ALL.into_iter().find(|t| t.as_str() == tier)?;
    (!upload_id.is_empty() && !upload_id.contains('/')).then_some((tier, upload_id))
}

/// The upload id in `staging/{tier}/{id}` (the key itself if it is not one).
pub fn upload_id_of(key: &str) -> &str {
    parse_key(key).map_or(key, |(_, id)| id)
}

/// A fresh upload id: a UUIDv7, so that ids sort in upload order.
pub fn new_upload_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What a staged object's `runcache-claim` metadata holds: a digest of the
/// scope, version and key it was uploaded for.
pub fn claim(scope: &Scope, cache_version: &str, cache_key: &str) -> String {
    let canonical = serde_json::json!([scope.repository, scope.git_ref, cache_version, cache_key]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The least user metadata a staged object needs for promote to accept it:
/// `{runcache-claim: claim(…)}`.
pub fn claim_metadata(
    scope: &Scope,
    cache_version: &str,
    cache_key: &str,
) -> BTreeMap<String, String> {
    [(
        CLAIM_META.to_string(),
        claim(scope, cache_version, cache_key),
    )]
    .into()
}

/// The metadata every front door writes with a staged upload of `key` to
/// `scope`: the claim and the labels.
pub fn metadata(key: &str, scope: &Scope, version: &str) -> BTreeMap<String, String> {
    let mut metadata = claim_metadata(scope, version, key);
    metadata.extend([
        (labels::KEY_SHA256.to_string(), key_sha256(key)),
        (
            labels::REPOSITORY.to_string(),
            percent_encode(&scope.repository),
        ),
        (labels::GIT_REF.to_string(), percent_encode(&scope.git_ref)),
        (labels::CACHE_VERSION.to_string(), version.to_string()),
    ]);
    metadata
}

/// The labels read back from a staged object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub key_sha256: String,
    pub repository: Option<String>,
    pub git_ref: String,
    pub cache_version: Option<String>,
}

impl Labels {
    /// `None` when the object carries no key label (an older runcache, or
    /// not a runcache upload).
    pub fn read(metadata: &BTreeMap<String, String>) -> Option<Labels> {
        let label = |name: &str| metadata.get(name).map(|v| percent_decode(v));
        Some(Labels {
            key_sha256: label(labels::KEY_SHA256)?,
            repository: label(labels::REPOSITORY),
            git_ref: label(labels::GIT_REF).unwrap_or_default(),
            cache_version: label(labels::CACHE_VERSION),
        })
    }

    /// Whether these labels name a save of `key`.
    pub fn is_for_key(&self, key: &str) -> bool {
        self.key_sha256 == key_sha256(key)
    }
}

fn key_sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_any_text() {
        for text in ["plain", "refs/heads/fé%ture", "100%", "a b\n", ""] {
            assert_eq!(percent_decode(&percent_encode(text)), text);
            assert!(percent_encode(text)
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b)));
        }
        let scope = Scope::new("acme/app", "refs/heads/fé");
        let labels = Labels::read(&metadata("k\n1", &scope, "v1")).unwrap();
        assert!(labels.is_for_key("k\n1"));
        assert_eq!(labels.git_ref, "refs/heads/fé");
        assert_eq!(labels.repository.as_deref(), Some("acme/app"));
        assert_eq!(labels.cache_version.as_deref(), Some("v1"));
    }

    #[test]
    fn keys_parse_back() {
        let key = key(TrustLevel::PullRequest, "u1");
        assert_eq!(parse_key(&key), Some((TrustLevel::PullRequest, "u1")));
        assert_eq!(upload_id_of(&key), "u1");
        assert_eq!(parse_key("staging/nope/u1"), None);
        assert_eq!(parse_key("staging/protected/a/b"), None);
        assert_eq!(upload_id_of("other"), "other");
    }
}
