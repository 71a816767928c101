//! Trees built from links round-trip exactly through the binary, on both
//! backends (#21): a virtualenv from `python3 -m venv` (its `bin/python` is
//! an absolute symlink out of the tree) and a tree with absolute,
//! relative, dangling and directory symlinks and hard links. Link targets
//! come back unchanged, hard-link counts are kept, and nothing is ever
//! written through a link.

use std::{
    fs,
    os::unix::fs::{symlink, MetadataExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use runcache_e2e::{binaries, tree_snapshot};

const PATHS: [&str; 2] = [".venv", "links"];

fn build_tree(ws: &Path) {
    let out = Command::new("python3")
        .args(["-m", "venv", "--without-pip", ".venv"])
        .current_dir(ws)
        .output()
        .expect("python3 runs (apt-get install python3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let links = ws.join("links");
    fs::create_dir_all(links.join("sub")).unwrap();
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    fs::write(links.join("data.bin"), &data).unwrap();
    fs::hard_link(links.join("data.bin"), links.join("hard")).unwrap();
    fs::hard_link(links.join("data.bin"), links.join("sub/hard")).unwrap();
    symlink("/usr/bin/env", links.join("absolute")).unwrap();
    symlink("data.bin", links.join("relative")).unwrap();
    symlink("../data.bin", links.join("sub/up")).unwrap();
    symlink("nowhere/at/all", links.join("dangling")).unwrap();
    symlink("/usr/share", links.join("directory")).unwrap();
    symlink("../../..", links.join("far-up")).unwrap();
    symlink("sub", links.join("sub-dir")).unwrap();
}

/// The snapshot of both paths plus the link count of every file.
fn state(ws: &Path) -> Vec<(PathBuf, String)> {
    let mut all = Vec::new();
    for path in PATHS {
        for (rel, desc) in tree_snapshot(&ws.join(path)) {
            let abs = ws.join(path).join(&rel);
            let meta = fs::symlink_metadata(&abs).unwrap();
            let links = if meta.is_file() {
                format!(" nlink {}", meta.nlink())
            } else {
                String::new()
            };
            all.push((Path::new(path).join(rel), format!("{desc}{links}")));
        }
    }
    all
}

fn run(ws: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let out = Command::new(binaries().join("runcache"))
        .args(args)
        .current_dir(ws)
        .env_remove("GITHUB_ACTIONS")
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .output()
        .expect("runcache runs");
    assert!(
        out.status.success(),
        "runcache {args:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path_args(verb: &str) -> Vec<&str> {
    let mut args = vec![
        verb,
        "--key",
        "links-1",
        "--repository",
        "acme/links",
        "--ref",
        "refs/heads/main",
    ];
    for p in PATHS {
        args.extend(["--path", p]);
    }
    args
}

/// Saves the tree, runs `promote` (a no-op where save promotes inline),
/// restores into a fresh workspace and compares.
fn round_trip(env: &[(&str, String)], promote: impl Fn()) {
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path());
    let before = state(src.path());
    assert!(
        before.iter().any(|(_, d)| d.contains("nlink 3")),
        "{before:?}"
    );
    run(src.path(), env, &path_args("save"));
    promote();

    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("sentinel"), b"untouched").unwrap();
    run(dst.path(), env, &path_args("restore"));
    assert_eq!(state(dst.path()), before, "the restored tree differs");
    let python = dst.path().join(".venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .unwrap();
    assert!(out.status.success(), "the restored venv runs");
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .ends_with(".venv"));

    // A second restore over the first meets the links it left and writes
    // through none of them.
    run(dst.path(), env, &path_args("restore"));
    assert_eq!(state(dst.path()), before);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[test]
fn links_round_trip_on_the_local_backend() {
    let home = tempfile::tempdir().unwrap();
    let env = [("RUNCACHE_HOME", home.path().display().to_string())];
    round_trip(&env, || {});
}

#[test]
fn links_round_trip_on_the_aws_backend() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_, config, _) = rt.block_on(runcache_testkit::moto::fresh(3));
    let moto = runcache_testkit::moto::moto();
    let env = [
        ("RUNCACHE_BACKEND", "aws".to_string()),
        ("RUNCACHE_STAGE", config.stage.clone()),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        (
            "RUNCACHE_HOME",
            tempfile::tempdir().unwrap().keep().display().to_string(),
        ),
    ];
    round_trip(&env, || {
        let out = Command::new(binaries().join("runcache-worker"))
            .args(["promote", "--once"])
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .output()
            .expect("runcache-worker runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
