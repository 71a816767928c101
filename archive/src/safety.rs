//! The lexical safety rules of extraction: where an entry name, a hard-link
//! target or a symlink target lands, and whether that is allowed.
//!
//! Touches nothing: pure functions over paths. The checks that need the
//! filesystem (no symlink met on the way, in the temporary tree or at the
//! destination) live in `extract`, which calls these first.

use std::path::PathBuf;

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

    /// Whether the archive name `name` is a directory above a declared root
    /// (`app/` for the root `app/dist`): creating it adds nothing a
    /// restore's own `create_dir_all` of the root's parents does not.
    pub fn is_parent_of_a_root(&self, name: &[u8]) -> bool {
        if name.is_empty() || name.contains(&0) {
            return false;
        }
        let dest = normalize(&self.workspace.join(bytes_to_path(name)));
        self.roots
            .iter()
            .any(|root| root != &dest && root.starts_with(&dest))
    }

    /// Whether a symlink may hold `target` (raw tar bytes), or why not.
    ///
    /// A symlink entry is only a name: restoring it writes nothing where it
    /// points, so any target is kept as it was saved (absolute, relative,
    /// dangling, outside the declared paths: a virtualenv's
    /// `bin/python -> /usr/bin/python3`), as tar and actions/cache restore
    /// it. What keeps extraction inside is that nothing is ever written
    /// *through* a symlink: an entry whose way passes one is refused (in the
    /// temporary tree and at the destination), a hard link may not name one,
    /// and metadata is set without following links. Only a target tar
    /// cannot represent (empty, or with a NUL byte) is refused.
    pub fn check_symlink_target(&self, target: &[u8]) -> Result<(), String> {
        if target.is_empty() {
            return Err("the symlink target is empty".into());
        }
        if target.contains(&0) {
            return Err("the symlink target contains a NUL byte".into());
        }
        Ok(())
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
        assert_eq!(landing.rel, std::path::Path::new("a/b.js"));
        let landing = b.land(b"../../.npm/_cacache/x").expect("inside ~/.npm");
        assert_eq!(landing.root, 0);
        assert_eq!(
            landing.dest,
            std::path::Path::new("/home/u/.npm/_cacache/x")
        );
        let landing = b.land(b"node_modules/").expect("the root itself");
        assert_eq!(landing.rel, std::path::Path::new(""));
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
    fn parents_of_roots_are_recognised_and_nothing_else() {
        let b = bounds();
        for parent in [&b"./"[..], b"../", b"../../.", b"/home/u/work"] {
            assert!(
                b.is_parent_of_a_root(parent),
                "{}",
                String::from_utf8_lossy(parent)
            );
        }
        for not in [
            &b"node_modules/"[..],
            b"node_modules/a/",
            b"src/",
            b"../../other/",
            b"",
        ] {
            assert!(
                !b.is_parent_of_a_root(not),
                "{}",
                String::from_utf8_lossy(not)
            );
        }
    }

    #[test]
    fn symlink_targets_are_kept_whatever_they_point_to() {
        let b = bounds();
        for kept in [
            &b"../packages/pkg"[..],
            b".pnpm/pkg@1/node_modules/pkg",
            b"/usr/bin/python3",
            b"../../../../../etc",
            b"a/../../../x",
            b"does-not-exist",
        ] {
            assert_eq!(
                b.check_symlink_target(kept),
                Ok(()),
                "{}",
                String::from_utf8_lossy(kept)
            );
        }
        for bad in [&b""[..], b"a\0b"] {
            assert!(b.check_symlink_target(bad).is_err());
        }
    }
}
