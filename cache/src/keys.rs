//! Key validation, as actions/cache: at most 512 characters, no commas, at
//! most 10 keys (primary plus restore keys) per restore; and no control
//! characters (a newline would end the `cache-primary-key=` line written to
//! `$GITHUB_OUTPUT` and let the rest of the key set other outputs).

use thiserror::Error;

pub const MAX_KEY_LENGTH: usize = 512;
pub const MAX_KEYS: usize = 10;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("cache key is empty: pass --key with a non-empty value")]
    Empty,
    #[error("restore key {position} is empty: drop that --restore-key or give it a prefix")]
    EmptyRestoreKey { position: usize },
    #[error(
        "cache key {key:?} contains a control character ({what}); keys are one line of printable text"
    )]
    Control { key: String, what: String },
    #[error("cache key `{key:.40}…` is {len} characters; the limit is 512 (hash long parts, e.g. with `runcache key`)")]
    TooLong { key: String, len: usize },
    #[error(
        "cache key `{0}` contains a comma, which actions/cache does not allow; use `-` or `_`"
    )]
    Comma(String),
    #[error("{0} keys given; actions/cache allows at most 10 (key plus restore keys)")]
    TooMany(usize),
}

pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    let len = key.chars().count();
    if len > MAX_KEY_LENGTH {
        return Err(KeyError::TooLong {
            key: key.into(),
            len,
        });
    }
    if key.contains(',') {
        return Err(KeyError::Comma(key.into()));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        let what = match c {
            '\n' => "a newline".to_string(),
            '\r' => "a carriage return".to_string(),
            '\t' => "a tab".to_string(),
            other => format!("U+{:04X}", u32::from(other)),
        };
        return Err(KeyError::Control {
            key: key.into(),
            what,
        });
    }
    Ok(())
}

pub fn validate_keys(primary: &str, restore_keys: &[String]) -> Result<(), KeyError> {
    if 1 + restore_keys.len() > MAX_KEYS {
        return Err(KeyError::TooMany(1 + restore_keys.len()));
    }
    validate_key(primary)?;
    restore_keys
        .iter()
        .enumerate()
        .try_for_each(|(i, k)| match validate_key(k) {
            Err(KeyError::Empty) => Err(KeyError::EmptyRestoreKey { position: i + 1 }),
            other => other,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_actions_cache_rules() {
        assert!(validate_key("npm-linux-abc").is_ok());
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert!(matches!(
            validate_key(&"k".repeat(513)),
            Err(KeyError::TooLong { len: 513, .. })
        ));
        assert!(validate_key(&"k".repeat(512)).is_ok());
        assert!(matches!(validate_key("a,b"), Err(KeyError::Comma(_))));
        for bad in ["a\nb", "a\rb", "a\tb", "a\u{7}b"] {
            assert!(
                matches!(validate_key(bad), Err(KeyError::Control { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_keys("k", &["r".into(), String::new()]),
            Err(KeyError::EmptyRestoreKey { position: 2 })
        );
        let ten: Vec<String> = (0..9).map(|i| format!("r{i}")).collect();
        assert!(validate_keys("k", &ten).is_ok());
        let eleven: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        assert_eq!(validate_keys("k", &eleven), Err(KeyError::TooMany(11)));
    }
}
