//! The names scripts, terraform and tests rely on (DESIGN.md "Configuration
//! contract" and "Storage layout"). `tests/` compares them with `terraform/`.

use runcache_schemas::{Scope, TrustLevel};

/// Object key prefixes inside the one bucket.
pub const STAGING_PREFIX: &str = "staging/";
pub const ARTIFACTS_PREFIX: &str = "artifacts/";
pub const QUARANTINE_PREFIX: &str = "quarantine/";
pub const METADATA_PREFIX: &str = "metadata/";
/// Worker-only scratch space under `quarantine/` (expired by its lifecycle
/// rule): the sweep's pending deletions, `quarantine/sweep/{run}/{hex}`…
pub const SWEEP_PENDING_PREFIX: &str = "quarantine/sweep/";
/// …and promote's pinned copies of staged uploads being verified,
/// `quarantine/promoting/{upload_id}` (see `promoting_key`).
pub const PROMOTING_PREFIX: &str = "quarantine/promoting/";

pub fn bucket(stage: &str) -> String {
    format!("self-runners-artifacts-{stage}")
}
pub fn index_table(stage: &str) -> String {
    format!("self-runners-cache-index-{stage}")
}
pub fn provenance_table(stage: &str) -> String {
    format!("self-runners-artifact-provenance-{stage}")
}
pub fn staged_queue(stage: &str) -> String {
    format!("self-runners-cache-staged-{stage}")
}
pub fn accessed_queue(stage: &str) -> String {
    format!("self-runners-cache-accessed-{stage}")
}
pub fn invalidate_queue(stage: &str) -> String {
    format!("self-runners-cache-invalidate-{stage}")
}
/// The dead-letter queue beside a queue.
pub fn dlq(queue: &str) -> String {
    format!("{queue}-dlq")
}
pub fn metrics_namespace(stage: &str) -> String {
    format!("Runcache/{stage}")
}

/// `staging/{tier}/{upload_id}`: uploads are staged under the trust tier of
/// the credentials that wrote them. IAM lets a runner role of tier T put
/// only under `staging/{t}/` for t ≤ T, so promote can read the most trust
/// an upload may claim from its key (see `staged_tier`).
pub fn staging_key(tier: TrustLevel, upload_id: &str) -> String {
    format!("{STAGING_PREFIX}{}/{upload_id}", tier.as_str())
}
/// The user-metadata field of a staged object that binds it to the entry
/// it was uploaded for (see `staging_claim`).
pub const STAGING_CLAIM_META: &str = "runcache-claim";

/// What a staged object's `runcache-claim` metadata holds: a digest of the
/// scope, version and key it was uploaded for. Written with the bytes, by
/// credentials allowed to write that staging tier; promote refuses an event
/// whose claim differs, so an event cannot re-label someone else's upload.
pub fn staging_claim(scope: &Scope, cache_version: &str, cache_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!([scope.repository, scope.git_ref, cache_version, cache_key]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The user metadata a staged object needs for promote to accept it:
/// `{runcache-claim: staging_claim(…)}`.
pub fn staging_claim_metadata(
    scope: &Scope,
    cache_version: &str,
    cache_key: &str,
) -> std::collections::BTreeMap<String, String> {
    [(
        STAGING_CLAIM_META.to_string(),
        staging_claim(scope, cache_version, cache_key),
    )]
    .into()
}

/// The tier and upload id of `staging/{tier}/{upload_id}`; `None` for any
/// other key.
pub fn staged_tier(key: &str) -> Option<(TrustLevel, &str)> {
    let (tier, upload_id) = key.strip_prefix(STAGING_PREFIX)?.split_once('/')?;
    let tier = TrustLevel::ALL.into_iter().find(|t| t.as_str() == tier)?;
    (!upload_id.is_empty() && !upload_id.contains('/')).then_some((tier, upload_id))
}
/// `artifacts/{hex}`: the CAS.
pub fn artifact_key(hex: &str) -> String {
    format!("{ARTIFACTS_PREFIX}{hex}")
}
/// `quarantine/{upload_id}`.
pub fn quarantine_key(upload_id: &str) -> String {
    format!("{QUARANTINE_PREFIX}{upload_id}")
}
/// `quarantine/promoting/{upload_id}`: where promote pins a staged upload's
/// bytes while it hashes them, on stores whose copies share bytes.
pub fn promoting_key(upload_id: &str) -> String {
    format!("{PROMOTING_PREFIX}{upload_id}")
}
/// `metadata/{hex}.json`.
pub fn metadata_key(hex: &str) -> String {
    format!("{METADATA_PREFIX}{hex}.json")
}

/// Index table attributes the DynamoDB design depends on.
pub mod index_attrs {
    pub const PARTITION_KEY: &str = "pk";
    pub const SORT_KEY: &str = "sk";
    pub const TTL: &str = "ttl";
    pub const REPOSITORY_TOOLCHAIN_INDEX: &str = "repository-toolchain-index";
    pub const LOCKFILE_INDEX: &str = "lockfileHash-index";
}
