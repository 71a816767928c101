//! The lexical safety rules of extraction: where an entry name, a hard-link
//! target or a symlink target lands, and whether that is allowed.
//!
//! Touches nothing: pure functions over paths. The checks that need the
//! filesystem (no symlink met on the way, in the temporary tree or at the
//! destination) live in `extract`, which calls these first.

use std::path::{Component, Path, PathBuf};

use crate::paths::{bytes_to_path, normalize};

/// The workspace and the declared roots an extraction may write under.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    /// Absolute, normalised.
    pub workspace: PathBuf,
    /// Absolute, normalised, none inside another (see
    /// [`crate::paths::declared_roots`]).
    pub roots: Vec<PathBuf>,
}

/// Where an entry lands: its destination, and which root holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Landing {
    /// The absolute, normalised destination.
    pub dest: PathBuf,
    /// Index into [`Bounds::roots`].
    pub root: usize,
    /// `dest` relative to its root; empty for the root itself.
    pub rel: PathBuf,
}

impl Bounds {
    /// Where the archive name `name` (raw tar bytes) lands, or why it is
    /// refused: the name joined to the workspace and normalised (so `..` and
    /// absolute names are resolved) must be under a declared root.
    pub fn land(&self, name: &[u8]) -> Result<Landing, String> {
        if name.is_empty() {
            return Err("the name is empty".into());
        }
        if name.contains(&0) {
            return Err("the name contains a NUL byte".into());
        }
        let dest = normalize(&self.workspace.join(bytes_to_path(name)));
        for (index, root) in self.roots.iter().enumerate() {
            if let Ok(rel) = dest.strip_prefix(root) {
                return Ok(Landing {
                    rel: rel.to_path_buf(),
                    dest,
                    root: index,
                });
            }
        }
        Err(format!(
            "it resolves to `{}`, outside every declared path ({})",
            dest.display(),
            self.describe_roots()
        ))
    }

    /// Whether a symlink at `link` (an absolute destination) may point to
    /// `target` (raw tar bytes), or why not.
    ///
    /// The target, resolved from the link's directory when relative, must land
    /// under the workspace or a declared root. Because that resolution is
    /// lexical, a `..` after a directory name is refused: `d/..` is not the
    /// link's directory when `d` is itself a symlink, which would let a chain
    /// of individually harmless links escape (`d -> .`, `e -> d/../../x`).
    /// Leading `..`s are fine: every directory between a link and its root
    /// is checked to be a real directory.
    pub fn check_symlink_target(&self, link: &Path, target: &[u8]) -> Result<(), String> {
        if target.is_empty() {
            return Err("the symlink target is empty".into());
        }
        if target.contains(&0) {
            return Err("the symlink target contains a NUL byte".into());
        }
        let target = bytes_to_path(target);
        let mut after_name = false;
        for component in target.components() {
            match component {
                Component::Normal(_) => after_name = true,
                Component::ParentDir if after_name => {
                    return Err(format!(
                        "the symlink target `{}` has `..` after a directory name, \
                         which can escape through other symlinks",
                        target.display()
                    ));
                }
                _ => {}
            }
        }
        let base = link.parent().unwrap_or(Path::new("/"));
        let resolved = normalize(&base.join(target));
        let inside = resolved.starts_with(&self.workspace)
            || self.roots.iter().any(|root| resolved.starts_with(root));
        if inside {
            Ok(())
        } else {
            Err(format!(
                "it is a symlink to `{}`, outside the workspace `{}` and every declared path ({})",
                resolved.display(),
                self.workspace.display(),
                self.describe_roots()
            ))
        }
    }

    fn describe_roots(&self) -> String {
        self.roots
            .iter()
            .map(|root| format!("`{}`", root.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            workspace: PathBuf::from("/home/u/work/repo"),
            roots: vec![
                PathBuf::from("/home/u/.npm"),
                PathBuf::from("/home/u/work/repo/node_modules"),
            ],
        }
    }

    #[test]
    fn names_land_under_a_root_or_are_refused() {
        let b = bounds();
        let landing = b.land(b"node_modules/a/b.js").expect("inside");
        assert_eq!(landing.root, 1);
        assert_eq!(landing.rel, Path::new("a/b.js"));
        let landing = b.land(b"../../.npm/_cacache/x").expect("inside ~/.npm");
        assert_eq!(landing.root, 0);
        assert_eq!(landing.dest, Path::new("/home/u/.npm/_cacache/x"));
        let landing = b.land(b"node_modules/").expect("the root itself");
        assert_eq!(landing.rel, Path::new(""));
        for bad in [
            &b"../../../../etc/passwd"[..],
            b"/etc/passwd",
            b"node_modules/../src/main.rs",
            b"node_modules_evil/x",
            b"src/x",
            b"",
            b"node_modules/a\0b",
        ] {
            assert!(b.land(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Absolute names inside a root are as good as relative ones.
        assert!(b.land(b"/home/u/.npm/x").is_ok());
    }

    #[test]
    fn symlink_targets_stay_inside() {
        let b = bounds();
        let link = Path::new("/home/u/work/repo/node_modules/pkg");
        for ok in [
            &b"../packages/pkg"[..],
            b"./.pnpm/pkg@1/node_modules/pkg",
            b".pnpm/pkg@1/node_modules/pkg",
            b"/home/u/.npm/x",
            b"/home/u/work/repo/src",
        ] {
            assert_eq!(
                b.check_symlink_target(link, ok),
                Ok(()),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b"/etc/passwd"[..],
            b"../../../../../etc",
            b"../../other-repo",
            b"a/../../../x",
            b"/home/u/work/repo/../../../etc",
            b"",
        ] {
            assert!(
                b.check_symlink_target(link, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
