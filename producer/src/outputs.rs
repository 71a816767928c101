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

/// Appends the outputs to the `$GITHUB_OUTPUT` file: `name=value`, or, for
/// a value with a line break, the runner's heredoc form with a random
/// delimiter, so that no value (a malformed key, say) can end its line and
/// set other outputs.
pub fn write_github_output(path: &Path, lines: &[(&str, &str)]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for (name, value) in lines {
        if value.contains(['\n', '\r']) {
            let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4());
            writeln!(file, "{name}<<{delimiter}\n{value}\n{delimiter}")?;
        } else {
            writeln!(file, "{name}={value}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_with_a_newline_cannot_set_another_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        write_github_output(&path, &[("a", "x\nevil=1"), ("b", "plain")]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("a<<ghadelimiter_"), "{text}");
        assert_eq!(lines[1..3], ["x", "evil=1"]);
        assert_eq!(lines[3], lines[0].trim_start_matches("a<<"));
        assert_eq!(lines[4], "b=plain");
    }
}
