//! End-to-end test support for runcache: whole flows (save → promote →
//! restore → …) driven through the library APIs, and static checks of the
//! deployment in `terraform/`. The tests themselves live in `tests/tests/`;
//! this library holds what several of them share.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
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

/// The checkout this test crate sits in.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> SystemTime {
    let mut latest = SystemTime::UNIX_EPOCH;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            let t = if path.is_dir() {
                newest(&path)
            } else {
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            };
            latest = latest.max(t);
        }
    }
    latest
}

/// The directory holding `runcache`, `runcache-worker` and `runcache-bench` built from this
/// checkout: this test's own profile directory (`target/debug`), built
/// there first unless both binaries are newer than every source file.
pub fn binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps")
        .to_path_buf();
    let root = workspace();
    let sources = [
        "schemas",
        "archive",
        "infra",
        "cache",
        "dashboard",
        "server",
        "producer",
        "workers",
        "benches",
    ]
    .iter()
    .map(|c| newest(&root.join(c).join("src")).max(newest(&root.join(c).join("Cargo.toml"))))
    .max()
    .unwrap_or(SystemTime::UNIX_EPOCH);
    let fresh = ["runcache", "runcache-worker", "runcache-bench"]
        .iter()
        .all(|bin| {
            fs::metadata(profile_dir.join(bin))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= sources)
        });
    if !fresh {
        let target_dir = profile_dir.parent().expect("target dir");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "runcache",
                "-p",
                "runcache-worker",
                "-p",
                "runcache-bench",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(&root);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build");
        assert!(
            status.success(),
            "building runcache, runcache-worker and runcache-bench failed"
        );
    }
    profile_dir
}
