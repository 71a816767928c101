//! The provenance store port: where each artifact came from, keyed by
//! content hash and upload id.
//!
//! # Contract
//! - `put` is idempotent on (content hash, upload id): writing the same
//!   record twice leaves one.
//! - `get` returns every record of a hash, oldest promotion first; an empty
//!   vector when there is none.

use std::fmt::Debug;

use async_trait::async_trait;
use runcache_schemas::{ContentHash, ProvenanceRecord};

use crate::StoreError;

#[async_trait]
pub trait ProvenanceStore: Send + Sync + Debug {
    async fn put(&self, record: &ProvenanceRecord) -> Result<(), StoreError>;
    async fn get(&self, hash: &ContentHash) -> Result<Vec<ProvenanceRecord>, StoreError>;
}
