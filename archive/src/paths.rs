//! Lexical path arithmetic and path-pattern parsing, shared by resolving,
//! archiving and extracting.
//!
//! Touches nothing but the process's current directory (to make a relative
//! workspace absolute): no filesystem access. Everything here is lexical, in
//! the way Node's `path.resolve` / `path.relative` are, because that is how
//! actions/cache names its entries.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::ArchiveError;

/// Lexically normalises an absolute path: drops `.` components and resolves
/// `..` against the preceding component (`..` at `/` stays at `/`). Symlinks
/// are not consulted.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    debug_assert!(path.is_absolute(), "normalize needs an absolute path");
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

/// Node's `path.relative(base, path)` for absolute, normalised paths: `..`
/// for every component of `base` not shared with `path`, then the rest of
/// `path`; `.` when they are equal.
pub(crate) fn relative(base: &Path, path: &Path) -> PathBuf {
    let base: Vec<Component> = base.components().collect();
    let target: Vec<Component> = path.components().collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for component in &target[common..] {
        out.push(component);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The workspace as an absolute, normalised path (symlinks not resolved, so
/// entry names stay what the user sees).
pub(crate) fn absolute_workspace(workspace: &Path) -> Result<PathBuf, ArchiveError> {
    let absolute = std::path::absolute(workspace).map_err(ArchiveError::io(workspace))?;
    Ok(normalize(&absolute))
}

/// Turns raw tar-name bytes into a path.
pub(crate) fn bytes_to_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// One path pattern, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// As written, for error messages.
    pub text: String,
    /// `!pattern`: an exclude.
    pub negated: bool,
    /// The absolute, normalised, `~`-expanded part before the first component
    /// holding a glob metacharacter: the whole path for a literal pattern.
    pub literal: PathBuf,
    /// The rest (glob syntax, `/`-separated), if any.
    pub glob: Option<String>,
}

impl Pattern {
    /// A globset pattern matching absolute paths: the literal part escaped,
    /// then the glob part. actions/glob runs minimatch with `nobrace`, so
    /// braces are literal here too.
    pub fn glob_text(&self) -> String {
        let literal = self.literal.to_string_lossy();
        let mut text = globset::escape(&literal);
        if let Some(glob) = &self.glob {
            if !text.ends_with('/') {
                text.push('/');
            }
            for c in glob.chars() {
                match c {
                    '{' => text.push_str("[{]"),
                    '}' => text.push_str("[}]"),
                    c => text.push(c),
                }
            }
        }
        text
    }
}

fn has_glob_meta(component: &OsStr) -> bool {
    component
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Parses actions/cache path patterns: one path or glob each, `!` for an
/// exclude, a leading `~` for the home directory, relative to `workspace`
/// (absolute and normalised). Blank patterns and `#` comments are skipped,
/// as actions/glob does.
pub(crate) fn parse_patterns(
    patterns: &[String],
    workspace: &Path,
    home: Option<&Path>,
) -> Result<Vec<Pattern>, ArchiveError> {
    let mut parsed = Vec::new();
    for raw in patterns {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (negated, body) = match trimmed.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, trimmed),
        };
        let invalid = |reason: &str| ArchiveError::InvalidPattern {
            pattern: raw.clone(),
            reason: reason.to_owned(),
        };
        if body.is_empty() {
            return Err(invalid("`!` must be followed by a path"));
        }
        let expanded = if body == "~" || body.starts_with("~/") {
            let home = home.ok_or_else(|| {
                invalid("the home directory is unknown (set HOME), so `~` cannot be expanded")
            })?;
            home.join(body[1..].trim_start_matches('/'))
        } else {
            PathBuf::from(body)
        };
        let absolute = normalize(&workspace.join(expanded));

        let mut literal = PathBuf::from("/");
        let mut glob: Vec<String> = Vec::new();
        for component in absolute.components().skip(1) {
            let name = component.as_os_str();
            if glob.is_empty() && !has_glob_meta(name) {
                literal.push(name);
            } else {
                glob.push(name.to_string_lossy().into_owned());
            }
        }
        parsed.push(Pattern {
            text: raw.clone(),
            negated,
            literal,
            glob: (!glob.is_empty()).then(|| glob.join("/")),
        });
    }
    Ok(parsed)
}

/// The declared roots of a set of patterns: the literal part of every
/// non-`!` pattern, keeping only the outermost when one contains another, in
/// sorted order. Extraction writes nowhere else.
pub(crate) fn declared_roots(patterns: &[Pattern]) -> Vec<PathBuf> {
    let mut literals: Vec<&PathBuf> = patterns
        .iter()
        .filter(|p| !p.negated)
        .map(|p| &p.literal)
        .collect();
    literals.sort();
    let mut roots: Vec<PathBuf> = Vec::new();
    for literal in literals {
        // Sorted component-wise, so an ancestor always comes before its
        // descendants.
        if !roots.iter().any(|root| literal.starts_with(root)) {
            roots.push(literal.clone());
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../../etc")), Path::new("/etc"));
        assert_eq!(normalize(Path::new("/a/b/")), Path::new("/a/b"));
        assert_eq!(normalize(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn relative_matches_node_path_relative() {
        let ws = Path::new("/home/runner/work/repo/repo");
        assert_eq!(relative(ws, ws), Path::new("."));
        assert_eq!(
            relative(ws, Path::new("/home/runner/work/repo/repo/node_modules/x")),
            Path::new("node_modules/x")
        );
        assert_eq!(
            relative(ws, Path::new("/home/runner/.npm")),
            Path::new("../../../.npm")
        );
        assert_eq!(
            relative(ws, Path::new("/tmp")),
            Path::new("../../../../../tmp")
        );
    }

    #[test]
    fn patterns_split_at_the_first_glob_component() {
        let ws = Path::new("/ws");
        let home = Path::new("/home/u");
        let parsed = parse_patterns(
            &[
                "packages/*/node_modules".into(),
                "!  packages/skip".into(),
                "~/.npm".into(),
                "~".into(),
                "".into(),
                "# comment".into(),
                "../up/{a,b}/**".into(),
            ],
            ws,
            Some(home),
        )
        .expect("valid patterns");
        assert_eq!(parsed.len(), 5);
        assert_eq!(parsed[0].literal, Path::new("/ws/packages"));
        assert_eq!(parsed[0].glob.as_deref(), Some("*/node_modules"));
        assert!(parsed[1].negated);
        assert_eq!(parsed[1].literal, Path::new("/ws/packages/skip"));
        assert_eq!(parsed[2].literal, Path::new("/home/u/.npm"));
        assert_eq!(parsed[3].literal, Path::new("/home/u"));
        assert_eq!(parsed[4].literal, Path::new("/up/{a,b}"));
        assert_eq!(parsed[4].glob.as_deref(), Some("**"));
        assert_eq!(parsed[4].glob_text(), "/up/[{]a,b[}]/**");
        assert_eq!(parsed[0].glob_text(), "/ws/packages/*/node_modules");
    }

    #[test]
    fn tilde_without_home_is_an_invalid_pattern() {
        let err = parse_patterns(&["~/.npm".into()], Path::new("/ws"), None).expect_err("no home");
        assert!(matches!(err, ArchiveError::InvalidPattern { .. }), "{err}");
    }

    #[test]
    fn declared_roots_keep_the_outermost() {
        let roots = |patterns: &[&str]| {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let parsed = parse_patterns(&patterns, Path::new("/ws"), Some(Path::new("/home/u")))
                .expect("valid patterns");
            declared_roots(&parsed)
        };
        assert_eq!(
            roots(&[
                "node_modules/a",
                "node_modules",
                "~/.npm",
                "!node_modules/x"
            ]),
            vec![
                PathBuf::from("/home/u/.npm"),
                PathBuf::from("/ws/node_modules")
            ]
        );
        // A glob in the first component makes the workspace itself the root.
        assert_eq!(
            roots(&["node_modules", "dist*"]),
            vec![PathBuf::from("/ws")]
        );
    }
}
