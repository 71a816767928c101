//! runcache's benchmarks and workload simulator, as a library so that
//! `benches/tests/` can drive them; `runcache-bench` (src/main.rs) is the
//! command line and `benches/run.sh` the one command that reproduces every
//! table in docs/benchmarks.md.
//!
//! - [`promote`]: promote throughput against openssl; save-to-visible
//!   latency.
//! - [`lookup`]: restore lookup latency on the local backend and on moto.
//! - [`hash`]: SHA-256 through the workers' hashing reader.
//! - [`simulate`]: 30 days of CI history replayed through the real index,
//!   restore search, metrics worker, invalidation and sweep.
//!
//! May touch: the library APIs of `runcache-infra` and `runcache-worker`,
//! temporary directories, and (for `lookup --backend moto`) a moto server.

pub mod hash;
pub mod lookup;
pub mod promote;
pub mod rng;
pub mod simulate;
pub mod stats;

use chrono::{DateTime, Utc};
use runcache_infra::names;
use runcache_schemas::{ContentHash, EntryState, IndexEntry, Scope, TrustLevel};
use sha2::{Digest, Sha256};

/// The bytes standing in for an artifact (benchmarks need entries, not
/// gigabytes): unique per entry, and what its content hash is the hash of,
/// so the CAS invariant holds for every blob a benchmark writes.
pub fn placeholder(scope: &Scope, version: &str, key: &str, at: DateTime<Utc>) -> Vec<u8> {
    format!("{scope}|{version}|{key}|{}", at.timestamp_micros()).into_bytes()
}

/// A live index entry as promote would write it, claiming `size_bytes`,
/// whose content is [`placeholder`]; built by hand so that its size can be
/// any claim.
pub fn index_entry(
    scope: &Scope,
    version: &str,
    key: &str,
    size_bytes: u64,
    trust: TrustLevel,
    at: DateTime<Utc>,
) -> IndexEntry {
    let hex = hex::encode(Sha256::digest(placeholder(scope, version, key, at)));
    IndexEntry {
        cache_key: key.into(),
        s3_key: names::artifact_key(&hex),
        content_hash: ContentHash::from_hex(&hex).expect("sha256 is 64 hex digits"),
        repository: scope.repository.clone(),
        git_ref: scope.git_ref.clone(),
        cache_version: version.into(),
        toolchain: String::new(),
        lockfile_hash: None,
        size_bytes,
        created_at: at,
        last_accessed: at,
        access_count: 0,
        ttl: (at + chrono::Duration::days(90)).timestamp(),
        state: EntryState::Live,
        invalidated_at: None,
        reason: None,
        invalidated_by: None,
        trust,
        trigger_event: if trust == TrustLevel::PullRequest {
            "pull_request".into()
        } else {
            "push".into()
        },
        upload_id: format!("bench-{}", &hex[..16]),
        build_duration_ms: None,
        attributes: Default::default(),
    }
}
