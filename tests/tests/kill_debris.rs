//! `kill -9` of `save` on the local backend leaves its partial upload in
//! the store's `.tmp/`; the sweep removes it once no live upload holds it
//! and it is a minute old, and never a live upload's (#21 item 3).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use runcache_e2e::binaries;
use runcache_testkit::process::kill_when;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_killed_saves_partial_upload_is_swept_after_the_grace_minute() {
    let root = tempfile::tempdir().unwrap();
    let (ws, home) = (root.path().join("ws"), root.path().join("home"));
    // Incompressible, so the save takes long enough to be killed mid-way.
    runcache_testkit::noise::noise_files(&ws.join("dist"), 4, 64 << 20);
    let bin = binaries();
    let save = Command::new(bin.join("runcache"))
        .args([
            "save",
            "--key",
            "big",
            "--path",
            "dist",
            "--repository",
            "acme/x",
            "--ref",
            "refs/heads/main",
        ])
        .current_dir(&ws)
        .env("RUNCACHE_HOME", &home)
        .env_remove("GITHUB_ACTIONS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tmp = home.join("blobs/.tmp");
    kill_when(save, || {
        files_under(&tmp)
            .iter()
            .any(|f| fs::metadata(f).is_ok_and(|m| m.len() > 0))
    });
    let left = files_under(&tmp);
    assert_eq!(left.len(), 1, "the killed save left its partial upload");

    let sweep = || {
        let out = Command::new(bin.join("runcache-worker"))
            .args(["sweep", "--once"])
            .env("RUNCACHE_HOME", &home)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Right after: within the grace minute, it stays.
    sweep();
    assert_eq!(files_under(&tmp), left);
    // A minute later (its mtime moved back): nobody holds it, it goes.
    fs::File::options()
        .write(true)
        .open(&left[0])
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    sweep();
    assert_eq!(files_under(&tmp), Vec::<PathBuf>::new());
}
