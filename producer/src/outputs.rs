//! Step outputs, as actions/cache names them: appended to `$GITHUB_OUTPUT`
//! when set, and printed (`name=value` lines, or JSON with `--json`).

use std::{io::Write, path::Path};

use serde::Serialize;

/// In JSON the fields are `cacheHit`, `cachePrimaryKey`, `cacheMatchedKey`
/// (one style for every document, see [`crate::json`]); the step outputs
/// keep actions/cache's names ([`RestoreOutputs::lines`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOutputs {
    /// `true` on an exact match, `false` on a prefix match, empty on a miss.
    pub cache_hit: String,
    pub cache_primary_key: String,
    pub cache_matched_key: String,
}

impl RestoreOutputs {
    pub fn lines(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("cache-hit", &self.cache_hit),
            ("cache-primary-key", &self.cache_primary_key),
            ("cache-matched-key", &self.cache_matched_key),
        ]
    }
}

/// Appends `name=value` lines to the `$GITHUB_OUTPUT` file.
pub fn write_github_output(path: &Path, lines: &[(&str, &str)]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for (name, value) in lines {
        // Values never contain newlines: keys cannot, and hit is a word.
        writeln!(file, "{name}={value}")?;
    }
    Ok(())
}
