//! Ctrl-C / job cancellation (#22 item 8), through the binary: SIGINT in
//! the middle of a save or a restore exits 130, says so, and leaves no
//! partial upload, no extraction directory and no half-restored target.

use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod common;

use common::{ok, Sandbox, MAIN, REPO};
use runcache_testkit::process::kill_when;

/// Files under `dir` (recursively), for "nothing left behind".
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                found.push(p);
            }
        }
    }
    found
}

/// 256 MiB of incompressible data in `dist/`, so a save or a restore takes
/// long enough to be interrupted in the middle.
fn big_tree(s: &Sandbox) {
    runcache_testkit::noise::noise_files(&s.ws().join("dist"), 8, 32 << 20);
}

#[allow(clippy::disallowed_methods)] // passes the test runner's PATH on
fn spawn(s: &Sandbox, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_runcache"))
        .args(args)
        .current_dir(s.ws())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.root())
        .env("RUNCACHE_HOME", s.home())
        .env("GITHUB_REPOSITORY", REPO)
        .env("GITHUB_REF", MAIN)
        .env("GITHUB_EVENT_NAME", "push")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to a minute) until `ready` holds, then sends SIGINT; returns
/// the exit code and stderr.
fn interrupt_when(mut child: Child, ready: impl Fn() -> bool) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the command ended before it could be interrupted"
        );
        assert!(
            Instant::now() < deadline,
            "never reached the interrupt point"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let started = Instant::now();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn extract_dirs(s: &Sandbox) -> Vec<String> {
    fs::read_dir(s.ws())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".runcache-extract-"))
        .collect()
}

#[test]
fn sigint_during_a_save_removes_the_partial_upload_and_exits_130() {
    let s = Sandbox::new();
    big_tree(&s);
    let tmp = s.home().join("blobs/.tmp");
    let child = spawn(&s, &["save", "--key", "big", "--path", "dist"]);
    // The upload has started writing.
    let (code, err) = interrupt_when(child, || {
        files_under(&tmp)
            .iter()
            .any(|f| fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false))
    });
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("save interrupted") && err.contains("partial upload was removed"),
        "{err}"
    );
    assert_eq!(files_under(&tmp), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        files_under(&s.home().join("blobs/staging")),
        Vec::<std::path::PathBuf>::new()
    );
    let lookup = ok(&s.run(
        &["restore", "--key", "big", "--path", "dist", "--lookup-only"],
        MAIN,
    ));
    assert!(lookup.contains("cache-hit=\n"), "nothing saved: {lookup}");
}

#[test]
fn sigint_during_a_restore_leaves_the_targets_as_they_were_and_exits_130() {
    let s = Sandbox::new();
    big_tree(&s);
    ok(&s.run(&["save", "--key", "big", "--path", "dist"], MAIN));
    fs::remove_dir_all(s.ws().join("dist")).unwrap();
    let child = spawn(&s, &["restore", "--key", "big", "--path", "dist"]);
    // The extraction has started writing into its hidden directory.
    let (code, err) = interrupt_when(child, || {
        fs::read_dir(s.ws()).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name()
                .to_string_lossy()
                .starts_with(".runcache-extract-")
                && !files_under(&e.path()).is_empty()
        })
    });
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("restore interrupted") && err.contains("nothing was restored"),
        "{err}"
    );
    assert_eq!(extract_dirs(&s), Vec::<String>::new());
    assert!(!s.ws().join("dist").exists(), "nothing half-restored");
}

fn extracted_bytes(s: &Sandbox) -> u64 {
    extract_dirs(s)
        .iter()
        .flat_map(|d| files_under(&s.ws().join(d)))
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// `kill -9` of a restore (at several points) leaves its hidden directory;
/// the next restore removes it, and never one a live restore still holds.
#[test]
fn a_killed_restore_leaves_debris_the_next_restore_removes_and_a_live_one_is_never_touched() {
    let s = Sandbox::new();
    big_tree(&s);
    ok(&s.run(&["save", "--key", "big", "--path", "dist"], MAIN));
    fs::create_dir_all(s.ws().join("small")).unwrap();
    fs::write(s.ws().join("small/a"), b"a").unwrap();
    ok(&s.run(&["save", "--key", "small", "--path", "small"], MAIN));
    fs::remove_dir_all(s.ws().join("dist")).unwrap();

    // Early (the first file begun) and late (a quarter of the tree written).
    for point in [1u64, 64 << 20] {
        let child = spawn(&s, &["restore", "--key", "big", "--path", "dist"]);
        kill_when(child, || extracted_bytes(&s) >= point);
        assert_eq!(
            extract_dirs(&s).len(),
            1,
            "the killed restore left its directory"
        );
        let out = ok(&s.run(&["restore", "--key", "small", "--path", "small"], MAIN));
        assert!(out.contains("cache-hit=true"), "{out}");
        assert_eq!(
            extract_dirs(&s),
            Vec::<String>::new(),
            "the next restore removed it"
        );
        assert!(!s.ws().join("dist").exists());
    }

    // A restore running while another one starts and ends: the live one's
    // directory is locked, so it survives and the restore completes.
    let mut child = spawn(&s, &["restore", "--key", "big", "--path", "dist"]);
    while extracted_bytes(&s) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before it was observed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    ok(&s.run(&["restore", "--key", "small", "--path", "small"], MAIN));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_under(&s.ws().join("dist")).len(), 8);
    assert_eq!(extract_dirs(&s), Vec::<String>::new());
}
