//! The smaller things a new user tripped over (#22 item 11), through the
//! binary: one zstd level range, restore's timing split, setgid
//! directories, `get` showing only this repository's provenance, no colour
//! codes in logs that are not a terminal, and help on every admin flag.

use std::{fs, os::unix::fs::PermissionsExt};

mod common;

use common::{ok, stderr, Sandbox, MAIN};

#[test]
fn the_zstd_level_range_is_the_same_for_the_flag_and_the_config() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/a"), b"a").unwrap();
    let flag = s.run(
        &[
            "save",
            "--key",
            "k",
            "--path",
            "dist",
            "--compression-level",
            "22",
        ],
        MAIN,
    );
    assert_eq!(flag.status.code(), Some(2), "{}", stderr(&flag));
    assert!(
        stderr(&flag).contains("1..=19") || stderr(&flag).contains("19"),
        "{}",
        stderr(&flag)
    );
    let config = s.run_env(
        &["save", "--key", "k", "--path", "dist"],
        MAIN,
        &[("RUNCACHE_ZSTD_LEVEL", "22")],
    );
    assert!(!config.status.success());
    assert!(
        stderr(&config).contains("between 1 and 19"),
        "{}",
        stderr(&config)
    );
    ok(&s.run(
        &[
            "save",
            "--key",
            "k",
            "--path",
            "dist",
            "--compression-level",
            "19",
        ],
        MAIN,
    ));
}

#[test]
fn restore_json_splits_the_time_and_setgid_directories_survive() {
    let s = Sandbox::new();
    let shared = s.ws().join("dist/shared");
    fs::create_dir_all(&shared).unwrap();
    fs::write(shared.join("a"), b"a").unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o2775)).unwrap();
    ok(&s.run(&["save", "--key", "k", "--path", "dist"], MAIN));
    fs::remove_dir_all(s.ws().join("dist")).unwrap();
    let out = ok(&s.run(&["restore", "--key", "k", "--path", "dist", "--json"], MAIN));
    let json_start = out.find('{').expect("JSON on stdout");
    let report: serde_json::Value = serde_json::from_str(&out[json_start..]).unwrap();
    for field in ["lookupMs", "transferMs", "durationMs"] {
        assert!(report[field].is_u64(), "{field} in {report}");
    }
    assert!(report["durationMs"].as_u64() >= report["transferMs"].as_u64());
    let mode = fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o2775, "setgid on a directory is kept");
}

#[test]
fn get_shows_only_this_repositorys_provenance_for_a_shared_blob() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/a"), b"same bytes").unwrap();
    let save = ["save", "--key", "k", "--path", "dist", "--json"];
    let theirs: serde_json::Value = serde_json::from_str(&ok(&s.run_env(
        &save,
        MAIN,
        &[("GITHUB_REPOSITORY", "other/secret")],
    )))
    .unwrap();
    let ours: serde_json::Value = serde_json::from_str(&ok(&s.run(&save, MAIN))).unwrap();
    assert_eq!(
        theirs["contentHash"], ours["contentHash"],
        "one shared blob"
    );
    let hash = ours["contentHash"].as_str().unwrap();
    let archive = s.root().join("x.tzst");
    let got = ok(&s.run(
        &[
            "get",
            "--hash",
            hash,
            "--archive",
            archive.to_str().unwrap(),
            "--json",
        ],
        MAIN,
    ));
    assert!(!got.contains("other/secret"), "{got}");
    assert!(got.contains("acme/app"), "{got}");
}

#[test]
fn logs_that_are_not_a_terminal_have_no_colour_codes_and_admin_flags_have_help() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/a"), b"a").unwrap();
    let save = ["save", "--key", "k", "--path", "dist"];
    ok(&s.run(&save, MAIN));
    let again = s.run_env(&save, MAIN, &[("RUNCACHE_LOG", "info")]);
    let err = stderr(&again);
    assert!(err.contains("already cached"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");

    for cmd in [
        "invalidate",
        "delete",
        "ls",
        "provenance",
        "stats",
        "verify",
    ] {
        let help = ok(&s.run(&["admin", cmd, "--help"], MAIN));
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = line.split_whitespace().count() > 2
                || help
                    .lines()
                    .skip_while(|l| *l != line)
                    .nth(1)
                    .is_some_and(|next| {
                        next.starts_with("          ") && !next.trim().starts_with('-')
                    });
            assert!(described, "admin {cmd}: `{}` has no help", line.trim());
        }
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // passes the test runner's PATH on
fn save_progress_on_a_terminal_has_a_total_and_an_eta_and_says_saving() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(
        s.ws().join("dist/big"),
        runcache_testkit::noise::noise(64 << 20, 0x9E37_79B9_7F4A_7C15),
    )
    .unwrap();
    let command = format!(
        "{} save --key k --path dist --compression-level 19",
        env!("CARGO_BIN_EXE_runcache")
    );
    // `script` gives the binary a terminal, as a person at a shell has.
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(s.ws())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.root())
        .env("TERM", "xterm")
        .env("RUNCACHE_HOME", s.home())
        .env("GITHUB_REPOSITORY", "acme/widgets")
        .env("GITHUB_REF", MAIN)
        .env("GITHUB_EVENT_NAME", "push")
        .output()
        .expect("script (util-linux) runs the binary on a terminal");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("runcache: saved `k`"), "{shown}");
    assert!(shown.contains("saving "), "no progress line: {shown}");
    assert!(shown.contains("/64.00 MiB"), "no total: {shown}");
    assert!(shown.contains("eta "), "no ETA: {shown}");
    assert!(!shown.contains("uploading"), "{shown}");
}
