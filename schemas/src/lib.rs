//! runcache's contracts: every message that crosses a queue and every record
//! that a worker stores, as serde types, plus the JSON Schemas generated from
//! them (checked in under `schemas/json/`, guarded by a drift test).
//!
//! Every document on the wire carries `schema` (its name, e.g.
//! `artifact.staged`) and `version` (an integer bumped on breaking change)
//! next to its fields. [`decode`] and [`Event::decode`] check both before
//! reading the body and return a [`SchemaError`] naming the problem; they
//! never panic on any input.
//!
//! May touch: nothing. No I/O, no async, no AWS types: this crate is the
//! vocabulary that producer, workers and infra share.

mod common;
mod envelope;
mod events;
pub mod json_schema;
mod records;

pub use common::{ContentHash, HitKind, Scope, TrustLevel};
pub use envelope::{decode, Contract, Envelope, SchemaError};
pub use events::{
    ArtifactStaged, BuildProvenance, CacheAccessed, CacheInvalidate, Event, InvalidationSelector,
    OutcomeKind, WorkerOutcome,
};
pub use records::{AuditAction, AuditRecord, EntryState, IndexEntry, ProvenanceRecord};
