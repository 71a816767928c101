//! JSON Schema generation for every contract. `runcache-schemagen` writes
//! these files to `schemas/json/`; `tests/drift.rs` fails when the checked-in
//! files differ from what the types generate.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};

use crate::{
    ArtifactStaged, AuditRecord, CacheAccessed, CacheInvalidate, Contract, Envelope, IndexEntry,
    ProvenanceRecord, WorkerOutcome,
};

/// `(file name, pretty JSON)` for every contract, in a stable order.
pub fn all() -> Vec<(String, String)> {
    vec![
        file::<ArtifactStaged>(),
        file::<CacheAccessed>(),
        file::<CacheInvalidate>(),
        file::<WorkerOutcome>(),
        file::<IndexEntry>(),
        file::<ProvenanceRecord>(),
        file::<AuditRecord>(),
    ]
}

fn file<T: Contract + JsonSchema>() -> (String, String) {
    let schema = SchemaGenerator::default().into_root_schema_for::<Envelope<T>>();
    let mut value = schema.to_value();
    // Pin the envelope's header to this contract: a validator then rejects a
    // document of another schema or version, as `decode` does.
    if let Some(props) = value.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("schema".into(), json!({ "const": T::SCHEMA }));
        props.insert("version".into(), json!({ "const": T::VERSION }));
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "title".into(),
            json!(format!("{} v{}", T::SCHEMA, T::VERSION)),
        );
    }
    let name = format!("{}.v{}.json", T::SCHEMA, T::VERSION);
    let text = serde_json::to_string_pretty(&value).expect("a JSON value always serialises") + "\n";
    (name, text)
}
