//! End-to-end test support for runcache: whole flows (save → promote →
//! restore → …) driven through the library APIs, and static checks of the
//! deployment in `terraform/`. The tests themselves live in `tests/tests/`;
//! this library holds what several of them share.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// Every path below `root`, sorted, with its type, mode, mtime (files) and
/// content digest or link target: equal snapshots mean a byte-identical tree
/// with the same modes, mtimes and symlinks.
pub fn tree_snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("below root").to_path_buf();
            let desc = if meta.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    fs::read_link(&path).expect("readlink").display()
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", meta.permissions().mode() & 0o777)
            } else {
                let bytes = fs::read(&path).expect("read");
                let digest = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
                });
                format!(
                    "file {:o} {:?} {} bytes fnv {digest:016x}",
                    meta.permissions().mode() & 0o777,
                    meta.modified().expect("mtime"),
                    bytes.len(),
                )
            };
            out.push((rel, desc));
        }
    }
    out.sort();
    out
}
