//! The `schema` + `version` envelope shared by every wire document, and the
//! typed errors of decoding one.

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A type that travels or is stored as JSON under a fixed schema name and
/// version.
pub trait Contract: Serialize + DeserializeOwned {
    /// The value of the `schema` field, e.g. `artifact.staged`.
    const SCHEMA: &'static str;
    /// The value of the `version` field this code writes and reads.
    const VERSION: u32;

    /// Serialises `self` inside its envelope.
    fn encode(&self) -> String {
        let envelope = Envelope {
            schema: Self::SCHEMA.to_string(),
            version: Self::VERSION,
            body: self,
        };
        // Serialising plain data structs (no maps with non-string keys, no
        // failing Serialize impls) cannot fail.
        serde_json::to_string(&envelope).expect("contract types always serialise")
    }
}

/// `{ "schema": …, "version": …, …body fields }`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<T> {
    pub schema: String,
    pub version: u32,
    #[serde(flatten)]
    pub body: T,
}

/// Why a document could not be decoded. Each variant names the problem so a
/// worker can log it and dead-letter the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    #[error("malformed document: {0} (expected a JSON object with `schema` and `version`)")]
    Malformed(#[source] serde_json::Error),
    #[error("unknown schema `{found}` (this build understands: {known})")]
    UnknownSchema { found: String, known: String },
    #[error("schema `{found}` where `{expected}` was expected")]
    WrongSchema {
        expected: &'static str,
        found: String,
    },
    #[error("unsupported version {found} of schema `{schema}` (this build reads version {supported}; upgrade the reader or downgrade the writer)")]
    UnsupportedVersion {
        schema: String,
        found: u32,
        supported: u32,
    },
    #[error("invalid `{schema}` v{version} document: {source}")]
    Invalid {
        schema: &'static str,
        version: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid value: {0}")]
    InvalidValue(String),
}

/// Only the envelope's header, read before committing to a body type.
#[derive(Deserialize)]
pub(crate) struct Header {
    pub schema: String,
    pub version: u32,
}

pub(crate) fn header(json: &str) -> Result<Header, SchemaError> {
    serde_json::from_str::<Header>(json).map_err(SchemaError::Malformed)
}

pub(crate) fn body<T: Contract>(json: &str, header: &Header) -> Result<T, SchemaError> {
    if header.version != T::VERSION {
        return Err(SchemaError::UnsupportedVersion {
            schema: header.schema.clone(),
            found: header.version,
            supported: T::VERSION,
        });
    }
    serde_json::from_str::<Envelope<T>>(json)
        .map(|envelope| envelope.body)
        .map_err(|source| SchemaError::Invalid {
            schema: T::SCHEMA,
            version: T::VERSION,
            source,
        })
}

/// Decodes one document of a known type, checking its schema and version.
pub fn decode<T: Contract>(json: &str) -> Result<T, SchemaError> {
    let header = header(json)?;
    if header.schema != T::SCHEMA {
        return Err(SchemaError::WrongSchema {
            expected: T::SCHEMA,
            found: header.schema,
        });
    }
    body(json, &header)
}
