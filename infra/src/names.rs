//! The names scripts, terraform and tests rely on (DESIGN.md "Configuration
//! contract" and "Storage layout"). `tests/` compares them with `terraform/`.

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

// The staging layout (`staging/{tier}/{upload_id}`, claims, labels) is
// `crate::staging`.
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
