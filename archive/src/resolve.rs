//! Resolves actions/cache path patterns into the list of entries to archive.
//!
//! Touches the filesystem read-only (metadata and directory listings under
//! the patterns' literal prefixes). Symlinks are never followed: a symlink
//! is an entry of its own, as tar stores it.
//!
//! Semantics, as actions/cache (actions/glob with minimatch `dot: true`,
//! `nobrace`, no extglob) except where noted:
//! - each pattern is a path or a glob (`*`, `?`, `[...]`, `**`), relative to
//!   the workspace, `~` for the home directory;
//! - a matched directory brings everything below it;
//! - `!pattern` excludes what it matches **and everything below it**, in
//!   any order. (actions/cache lets tar recurse into matched directories, so
//!   there an exclude of something inside a matched directory does nothing;
//!   that is a long-standing surprise for its users, not a feature.)

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use crate::paths::{absolute_workspace, parse_patterns, relative, Pattern};
use crate::ArchiveError;

/// Resolve actions/cache path patterns (globs, `!` excludes, `~` expansion,
/// relative to `workspace`, a matched directory includes everything below
/// it) into the sorted, de-duplicated list of entries to archive, named as
/// they will be in the tar: relative to `workspace`, exactly as actions/cache
/// names them (`path.relative(workspace, file)`), so a pattern like `~/.npm`
/// yields names starting with `../`.
///
/// Every entry is listed, directories before what they contain, so the list
/// is exactly what [`crate::create_from_paths`] writes. `~` is the current
/// user's home directory.
///
/// # Errors
/// [`ArchiveError::NoMatch`] when nothing matches, `InvalidPattern`, or `Io`
/// when a directory cannot be listed.
pub fn resolve_paths(patterns: &[String], workspace: &Path) -> Result<Vec<PathBuf>, ArchiveError> {
    resolve_paths_with_home(patterns, workspace, dirs::home_dir().as_deref())
}

/// [`resolve_paths`] with an explicit home directory for `~` (`None`: a
/// pattern using `~` is an error).
pub fn resolve_paths_with_home(
    patterns: &[String],
    workspace: &Path,
    home: Option<&Path>,
) -> Result<Vec<PathBuf>, ArchiveError> {
    let workspace = absolute_workspace(workspace)?;
    let parsed = parse_patterns(patterns, &workspace, home)?;
    let excludes = Excludes::new(&parsed)?;

    let mut found = BTreeSet::new();
    for pattern in parsed.iter().filter(|p| !p.negated) {
        if excludes.covers_ancestry(&pattern.literal) {
            continue;
        }
        match &pattern.glob {
            None => {
                if exists(&pattern.literal)? {
                    add_tree(&pattern.literal, &excludes, &mut found)?;
                }
            }
            Some(_) => {
                let matcher = glob(pattern)?.compile_matcher();
                walk_matching(&pattern.literal, &matcher, &excludes, &mut found)?;
            }
        }
    }
    if found.is_empty() {
        return Err(ArchiveError::NoMatch {
            patterns: patterns.to_vec(),
        });
    }

    let mut names: Vec<PathBuf> = found.iter().map(|p| relative(&workspace, p)).collect();
    // Component-wise order puts every directory before its contents.
    names.sort();
    names.dedup();
    Ok(names)
}

/// The `!` patterns.
struct Excludes(GlobSet);

impl Excludes {
    fn new(parsed: &[Pattern]) -> Result<Self, ArchiveError> {
        let mut set = GlobSetBuilder::new();
        for pattern in parsed.iter().filter(|p| p.negated) {
            set.add(glob(pattern)?);
        }
        let set = set.build().map_err(|e| ArchiveError::InvalidPattern {
            pattern: parsed
                .iter()
                .filter(|p| p.negated)
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            reason: e.to_string(),
        })?;
        Ok(Excludes(set))
    }

    fn matches(&self, path: &Path) -> bool {
        !self.0.is_empty() && self.0.is_match(path)
    }

    /// Whether `path` or any directory above it is excluded.
    fn covers_ancestry(&self, path: &Path) -> bool {
        !self.0.is_empty() && path.ancestors().any(|p| self.0.is_match(p))
    }
}

fn glob(pattern: &Pattern) -> Result<globset::Glob, ArchiveError> {
    GlobBuilder::new(&pattern.glob_text())
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| ArchiveError::InvalidPattern {
            pattern: pattern.text.clone(),
            reason: e.kind().to_string(),
        })
}

fn exists(path: &Path) -> Result<bool, ArchiveError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ArchiveError::io(path)(e)),
    }
}

/// Lists a real directory (not through a symlink); `None` when `path` is
/// anything else. Each child comes with whether it is a real directory,
/// from the directory listing itself (no `lstat` per entry where the
/// filesystem reports entry types).
fn children(path: &Path) -> Result<Option<Vec<(PathBuf, bool)>>, ArchiveError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Removed while we walk: nothing to list.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArchiveError::io(path)(e)),
    };
    if !meta.is_dir() {
        return Ok(None);
    }
    list(path).map(Some)
}

fn list(dir: &Path) -> Result<Vec<(PathBuf, bool)>, ArchiveError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(ArchiveError::io(dir))? {
        let entry = entry.map_err(ArchiveError::io(dir))?;
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            // Removed since the listing: nothing below it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(ArchiveError::io(entry.path())(e)),
        };
        out.push((entry.path(), is_dir));
    }
    Ok(out)
}

/// Adds `root` and everything below it, except what is excluded.
fn add_tree(
    root: &Path,
    excludes: &Excludes,
    found: &mut BTreeSet<PathBuf>,
) -> Result<(), ArchiveError> {
    if excludes.matches(root) {
        return Ok(());
    }
    let mut stack = children(root)?.unwrap_or_default();
    found.insert(root.to_path_buf());
    while let Some((path, is_dir)) = stack.pop() {
        if excludes.matches(&path) {
            continue;
        }
        if is_dir {
            match list(&path) {
                Ok(below) => stack.extend(below),
                // Removed while we walk: nothing to list.
                Err(ArchiveError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        found.insert(path);
    }
    Ok(())
}

/// Walks from `start` (a pattern's literal prefix), adding every match with
/// its subtree and descending into the directories that do not match.
fn walk_matching(
    start: &Path,
    matcher: &GlobMatcher,
    excludes: &Excludes,
    found: &mut BTreeSet<PathBuf>,
) -> Result<(), ArchiveError> {
    let mut stack = vec![start.to_path_buf()];
    while let Some(path) = stack.pop() {
        if excludes.matches(&path) {
            continue;
        }
        if matcher.is_match(&path) {
            add_tree(&path, excludes, found)?;
        } else if let Some(children) = children(&path)? {
            stack.extend(children.into_iter().map(|(child, _)| child));
        }
    }
    Ok(())
}
