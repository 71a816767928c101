//! The JSON documents `--json` prints, in one style: field names in
//! lowerCamelCase (as in the event and record schemas the documents
//! embed), enum values in kebab-case, and every document an object that
//! begins with `schema` (`runcache.<command>`) and `version`.
//!
//! `version` changes only when a field is removed or changes meaning; new
//! fields may appear at any time. docs/usage.md lists the documents.
//!
//! May touch: nothing but serde; callers print what it returns.

use serde::Serialize;

/// The version of every document this build prints.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a, T: ?Sized> {
    schema: String,
    version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` (a struct, map or tagged enum) as the pretty-printed document
/// `runcache.{command}`. A list goes in a struct with a named field.
pub fn document<T: Serialize + ?Sized>(command: &str, body: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&Envelope {
        schema: format!("runcache.{command}"),
        version: VERSION,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_comes_first_and_the_body_is_flattened() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            content_hash: &'static str,
        }
        let text = document("save", &Body { content_hash: "ab" }).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["schema"], "runcache.save");
        assert_eq!(value["version"], VERSION);
        assert_eq!(value["contentHash"], "ab");
        assert!(text.find("schema").unwrap() < text.find("contentHash").unwrap());
    }
}
