//! The `runcache` binary as users and workflows call it, on the local
//! backend: exit codes, step outputs, `--from-archive` (including hostile
//! archives), `get`, immutability and scope isolation.

use std::{fs, io::Write, os::unix::fs::symlink, path::Path, process::Command};

mod common;

use common::{ok, stderr, Sandbox, MAIN, REPO};

#[test]
fn miss_exit_codes_and_step_outputs() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    let out = s.run(&["restore", "--key", "k", "--path", "dist"], MAIN);
    let stdout = ok(&out);
    assert!(stdout.contains("cache-hit=\n"), "{stdout}");
    assert!(
        s.outputs()
            .contains("cache-hit=\ncache-primary-key=k\ncache-matched-key=\n"),
        "{}",
        s.outputs()
    );
    let out = s.run(
        &[
            "restore",
            "--key",
            "k",
            "--path",
            "dist",
            "--fail-on-cache-miss",
        ],
        MAIN,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--fail-on-cache-miss"),
        "{}",
        stderr(&out)
    );
    // Bad input says what to do.
    let out = s.run(&["restore", "--key", "a,b", "--path", "dist"], MAIN);
    assert!(stderr(&out).contains("comma"), "{}", stderr(&out));
}

#[test]
fn save_twice_is_reported_and_a_sibling_branch_never_sees_it() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/app.js"), b"console.log(1)").unwrap();
    ok(&s.run(
        &["save", "--key", "build-1", "--path", "dist"],
        "refs/heads/feature-a",
    ));
    let again = s.run(
        &["save", "--key", "build-1", "--path", "dist"],
        "refs/heads/feature-a",
    );
    ok(&again);
    assert!(
        stderr(&again).contains("already cached"),
        "{}",
        stderr(&again)
    );
    let sibling = ok(&s.run(
        &[
            "restore",
            "--key",
            "build-1",
            "--path",
            "dist",
            "--lookup-only",
        ],
        "refs/heads/feature-b",
    ));
    assert!(
        sibling.contains("cache-hit=\n"),
        "a sibling branch must miss: {sibling}"
    );
    let same = ok(&s.run(
        &[
            "restore",
            "--key",
            "build-1",
            "--path",
            "dist",
            "--lookup-only",
        ],
        "refs/heads/feature-a",
    ));
    assert!(same.contains("cache-hit=true"), "{same}");
}

#[test]
fn a_job_whose_tier_may_not_write_its_scope_saves_nothing_and_says_why() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/app.js"), b"console.log(1)").unwrap();
    let save = ["save", "--key", "build-1", "--path", "dist"];
    let lookup = [
        "restore",
        "--key",
        "build-1",
        "--path",
        "dist",
        "--lookup-only",
    ];
    // pull_request_target runs a pull request's inputs in the base
    // branch's context: it must not write the default branch's cache.
    let out = s.run_env(&save, MAIN, &[("GITHUB_EVENT_NAME", "pull_request_target")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not saving") && err.contains("refs/heads/main"),
        "{err}"
    );
    // A runner whose credentials are capped below protected neither.
    let out = s.run_env(&save, MAIN, &[("RUNCACHE_MAX_TRUST", "branch")]);
    assert!(
        stderr(&out).contains("RUNCACHE_MAX_TRUST"),
        "{}",
        stderr(&out)
    );
    assert!(ok(&s.run(&lookup, MAIN)).contains("cache-hit=\n"));
    // The same cap still saves a feature branch's own cache.
    let feature = "refs/heads/feature";
    ok(&s.run_env(&save, feature, &[("RUNCACHE_MAX_TRUST", "branch")]));
    assert!(ok(&s.run(&lookup, feature)).contains("cache-hit=true"));
}

/// `tar --posix -cf - -C dir what | zstd`, as actions/cache does.
fn actions_cache_archive(dir: &Path, what: &str, dest: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar --posix -cf - -C '{}' '{what}' | zstd -q -3 -o '{}'",
            dir.display(),
            dest.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "tar | zstd (GNU tar and zstd are needed)");
}

#[test]
fn from_archive_imports_an_actions_cache_archive_and_get_fetches_it() {
    let s = Sandbox::new();
    let src = s.root().join("src");
    fs::create_dir_all(src.join("node_modules/pkg")).unwrap();
    fs::write(
        src.join("node_modules/pkg/index.js"),
        b"module.exports = 42",
    )
    .unwrap();
    symlink("pkg/index.js", src.join("node_modules/main.js")).unwrap();
    let archive = s.root().join("cache.tzst");
    actions_cache_archive(&src, "node_modules", &archive);

    let saved = ok(&s.run(
        &[
            "save",
            "--key",
            "npm-imported",
            "--path",
            "node_modules",
            "--from-archive",
            archive.to_str().unwrap(),
            "--json",
        ],
        MAIN,
    ));
    let report: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let hash = report["contentHash"].as_str().unwrap().to_string();
    assert_eq!(report["status"], "saved");

    ok(&s.run(
        &["restore", "--key", "npm-imported", "--path", "node_modules"],
        MAIN,
    ));
    assert_eq!(
        fs::read(s.ws().join("node_modules/pkg/index.js")).unwrap(),
        b"module.exports = 42"
    );
    assert_eq!(
        fs::read_link(s.ws().join("node_modules/main.js")).unwrap(),
        Path::new("pkg/index.js")
    );

    // get by hash, as the raw archive: byte-identical to what was imported.
    let fetched = s.root().join("fetched.tzst");
    let got = s.run(
        &[
            "get",
            "--hash",
            &hash,
            "--archive",
            fetched.to_str().unwrap(),
        ],
        MAIN,
    );
    ok(&got);
    assert_eq!(fs::read(&fetched).unwrap(), fs::read(&archive).unwrap());
    assert!(
        stderr(&got).contains("built by acme/app"),
        "provenance is shown: {}",
        stderr(&got)
    );
    // get by key, into another directory.
    let other = s.root().join("other");
    let json = ok(&s.run(
        &[
            "get",
            "--key",
            "npm-imported",
            "--out",
            other.to_str().unwrap(),
            "--json",
        ],
        MAIN,
    ));
    assert!(json.contains("\"provenance\""), "{json}");
    assert_eq!(
        fs::read(other.join("node_modules/pkg/index.js")).unwrap(),
        b"module.exports = 42"
    );
    let missing = s.run(&["get", "--key", "nope"], MAIN);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no live entry `nope`"),
        "{}",
        stderr(&missing)
    );
}

type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// Writes a zstd tar whose entries are built from raw headers, so names
/// like `../x` or `/abs` can be expressed.
fn hostile_archive(dest: &Path, entries: &[RawEntry<'_>]) {
    let mut tar_bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut tar_bytes);
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            }
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.finish().unwrap();
    }
    let mut f = fs::File::create(dest).unwrap();
    f.write_all(&zstd::encode_all(&tar_bytes[..], 3).unwrap())
        .unwrap();
}

/// Stages `file` as the entry `key` (paths `path`, scope main) and promotes
/// it, as a writer other than `save` (serve's Azure uploads) can: no import
/// check on the way, only promote's hash check.
fn plant(s: &Sandbox, key: &str, path: &str, file: &Path) {
    use runcache_cache::stage::{Claim, Upload, Written};
    use runcache_infra::{Backend, Config, SystemClock};
    use runcache_schemas::{ContentHash, Scope, TrustLevel};
    use sha2::{Digest, Sha256};
    let bytes = fs::read(file).unwrap();
    let config = Config::local(s.home());
    let backend = Backend::local(&config, std::sync::Arc::new(SystemClock)).unwrap();
    let upload = Upload::new(
        TrustLevel::Protected,
        Claim {
            scope: Scope::new(REPO, MAIN),
            cache_version: runcache_archive::cache_version(&[path.to_string()]),
            cache_key: key.to_string(),
        },
    );
    let written = Written {
        hash: ContentHash::from_hex(&hex::encode(Sha256::digest(&bytes))).unwrap(),
        size_bytes: bytes.len() as u64,
        unpacked_bytes: None,
        paths: vec![path.to_string()],
        compression: "zstd".into(),
        attributes: Default::default(),
    };
    let fate = tokio::runtime::Runtime::new().unwrap().block_on(async {
        upload
            .put(&backend, Box::pin(std::io::Cursor::new(bytes)))
            .await
            .unwrap();
        let event = upload
            .announce(&backend, written, Default::default(), "")
            .await
            .unwrap();
        runcache_worker::settle::staged_upload(&config, &backend, &event, None)
            .await
            .unwrap()
    });
    assert_eq!(fate, runcache_worker::settle::UploadFate::Promoted);
}

/// `save --from-archive` takes only what a restore would: random bytes,
/// gzip, an uncompressed tar, an empty archive and a zstd window past the
/// decoder's limit are refused with the reason and what to do, before
/// anything is staged.
#[test]
fn an_import_is_checked_as_a_restore_would_take_it_before_it_is_staged() {
    let s = Sandbox::new();
    let src = s.root().join("src");
    fs::create_dir_all(src.join("dist")).unwrap();
    // Big and varied enough that a long window matters.
    let data: Vec<u8> = (0u32..3_000_000)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    fs::write(src.join("dist/blob"), &data).unwrap();
    let tar = s.root().join("plain.tar");
    let sh = |script: &str| {
        let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
        assert!(st.success(), "{script}");
    };
    sh(&format!(
        "tar --posix -cf '{}' -C '{}' dist",
        tar.display(),
        src.display()
    ));
    let random = s.root().join("random.tzst");
    fs::write(
        &random,
        (0u32..1000)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let gzip = s.root().join("cache.tgz");
    sh(&format!(
        "gzip -c '{}' > '{}'",
        tar.display(),
        gzip.display()
    ));
    let long = s.root().join("long.tzst");
    sh(&format!(
        // From a pipe: the size unknown, zstd keeps the whole 1 GiB window.
        "cat '{}' | zstd -q --long=30 -c > '{}'",
        tar.display(),
        long.display()
    ));
    let empty = s.root().join("empty.tzst");
    sh(&format!(
        "tar --posix -cf - -T /dev/null | zstd -q -c > '{}'",
        empty.display()
    ));
    let good = s.root().join("good.tzst");
    sh(&format!(
        "zstd -q -c '{}' > '{}'",
        tar.display(),
        good.display()
    ));
    let import = |file: &Path, key: &str| {
        s.run(
            &[
                "save",
                "--key",
                key,
                "--path",
                "dist",
                "--from-archive",
                file.to_str().unwrap(),
            ],
            MAIN,
        )
    };
    for (file, expected) in [
        (&random, "no zstd frame"),
        (&gzip, "gzip-compressed"),
        (&tar, "an uncompressed tar"),
        (&long, "--long=27"),
        (&empty, "no entries"),
    ] {
        let out = import(file, "imported");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", file.display());
        assert!(
            err.contains("cannot import") && err.contains(expected) && err.contains("zstd -T0"),
            "{}: {err}",
            file.display()
        );
    }
    // Nothing was staged or saved by the refusals.
    let mut staged = walk_files(&s.home().join("blobs/staging"));
    staged.extend(walk_files(&s.home().join("blobs/.tmp")));
    assert!(staged.is_empty(), "staged: {staged:?}");
    let lookup = [
        "restore",
        "--key",
        "imported",
        "--path",
        "dist",
        "--lookup-only",
    ];
    assert!(ok(&s.run(&lookup, MAIN)).contains("cache-hit=\n"));
    // A good one is saved with its entries counted, and restores.
    let out = import(&good, "imported");
    assert!(stderr(&out).contains("2 entries"), "{}", stderr(&out));
    ok(&s.run(&["restore", "--key", "imported", "--path", "dist"], MAIN));
    assert_eq!(fs::read(s.ws().join("dist/blob")).unwrap(), data);
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
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

#[test]
fn every_escape_kind_in_an_imported_archive_is_refused_with_nothing_written_outside() {
    use tar::EntryType::*;
    let s = Sandbox::new();
    let outside = s.outside();
    let abs = format!("{}/abs-escape", outside.display());
    let cases: Vec<(&str, Vec<RawEntry<'_>>)> = vec![
        (
            "dotdot",
            vec![
                ("cache/ok", Regular, "", b"fine"),
                ("cache/../../outside/dotdot", Regular, "", b"evil"),
            ],
        ),
        (
            "absolute",
            vec![
                ("cache/ok", Regular, "", b"fine"),
                (abs.as_str(), Regular, "", b"evil"),
            ],
        ),
        (
            "symlink",
            vec![
                ("cache/link", Symlink, "../../outside", b""),
                ("cache/link/via-symlink", Regular, "", b"evil"),
            ],
        ),
        (
            "hardlink",
            vec![("cache/hard", Link, "../outside/sentinel", b"")],
        ),
        ("device", vec![("cache/null", Char, "", b"")]),
        ("fifo", vec![("cache/pipe", Fifo, "", b"")]),
    ];
    for (i, (name, entries)) in cases.into_iter().enumerate() {
        let file = s.root().join(format!("{name}.tzst"));
        hostile_archive(&file, &entries);
        let key = format!("hostile-{i}");
        // An import refuses it before anything is staged...
        let import = s.run(
            &[
                "save",
                "--key",
                &key,
                "--path",
                "cache",
                "--from-archive",
                file.to_str().unwrap(),
            ],
            MAIN,
        );
        assert_eq!(import.status.code(), Some(1), "{name}");
        assert!(
            stderr(&import).contains("a restore would refuse it"),
            "{name}: {}",
            stderr(&import)
        );
        assert!(
            !s.ws().join("cache").exists(),
            "{name}: the import check left something in the workspace"
        );
        // ...so plant it the way another writer could (staged and promoted
        // through the library, as serve does): every restore refuses it.
        plant(&s, &key, "cache", &file);
        // Not strict: a warning and exit 0 (a cache problem must not fail a
        // build); strict: exit 1.
        let out = s.run(&["restore", "--key", &key, "--path", "cache"], MAIN);
        ok(&out);
        assert!(stderr(&out).contains("refused"), "{name}: {}", stderr(&out));
        let strict = s.run(
            &["restore", "--key", &key, "--path", "cache", "--strict"],
            MAIN,
        );
        assert_eq!(strict.status.code(), Some(1), "{name}");
        assert_eq!(
            s.outside_listing(),
            ["sentinel"],
            "{name}: something was written outside"
        );
        assert_eq!(
            fs::read(outside.join("sentinel")).unwrap(),
            b"untouched",
            "{name}"
        );
        assert!(
            !s.ws().join("cache").exists(),
            "{name}: a refused archive must not be partly restored"
        );
    }
}

#[test]
fn build_started_at_gives_the_build_duration_in_provenance() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/app.js"), b"1").unwrap();
    ok(&s.run(
        &[
            "save",
            "--key",
            "timed",
            "--path",
            "dist",
            "--build-started-at",
            "2020-01-01T00:00:00Z",
        ],
        MAIN,
    ));
    let json = ok(&s.run(&["admin", "provenance", "timed", "--json"], MAIN));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let build = &report["records"][0]["build"];
    assert_eq!(build["buildStartedAt"], "2020-01-01T00:00:00Z");
    assert!(
        build["buildDurationMs"].as_u64().unwrap() > 150_000_000_000,
        "{build}"
    );
    let bad = s.run(
        &[
            "save",
            "--key",
            "t2",
            "--path",
            "dist",
            "--build-started-at",
            "yesterday",
        ],
        MAIN,
    );
    assert_eq!(bad.status.code(), Some(2), "clap rejects a malformed time");
}

/// A mistyped setting must not fail a build's restore: it warns and runs
/// uncached; `runcache config` shows the value as given.
#[test]
fn a_mistyped_backend_makes_restore_run_uncached_and_config_show_it() {
    let s = Sandbox::new();
    let bad = [("RUNCACHE_BACKEND", "s3")];
    let out = s.run_env(&["restore", "--key", "k", "--path", "dist"], MAIN, &bad);
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("continuing without cache") && err.contains("s3"),
        "{err}"
    );
    assert!(
        s.outputs()
            .contains("cache-hit=\ncache-primary-key=k\ncache-matched-key=\n"),
        "a miss, as outputs say it: {}",
        s.outputs()
    );
    // --strict keeps the failure.
    let out = s.run_env(
        &["restore", "--strict", "--key", "k", "--path", "dist"],
        MAIN,
        &bad,
    );
    assert!(!out.status.success());

    let out = s.run_env(&["config"], MAIN, &bad);
    assert!(
        !out.status.success(),
        "an invalid configuration is an error"
    );
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = shown
        .lines()
        .find(|l| l.starts_with("backend"))
        .unwrap_or_else(|| panic!("no backend line in:\n{shown}"));
    assert!(
        line.contains("s3") && line.contains("env RUNCACHE_BACKEND"),
        "{line}"
    );
    assert!(stderr(&out).contains("local"), "says what is expected");
}

/// Inside GitHub Actions, problems are workflow annotations.
#[test]
fn inside_actions_problems_are_annotations() {
    let s = Sandbox::new();
    let actions = [("GITHUB_ACTIONS", "true")];
    let out = s.run_env(
        &[
            "restore",
            "--key",
            "k",
            "--path",
            "dist",
            "--fail-on-cache-miss",
        ],
        MAIN,
        &actions,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.lines().any(
            |l| l.starts_with("::error title=runcache::") && l.contains("--fail-on-cache-miss")
        ),
        "{err}"
    );
    let out = s.run_env(
        &["restore", "--key", "k", "--path", "dist"],
        MAIN,
        &[("GITHUB_ACTIONS", "true"), ("RUNCACHE_BACKEND", "s3")],
    );
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("::warning title=runcache::restore failed")),
        "{err}"
    );
    // Outside Actions: plain lines.
    let out = s.run(
        &[
            "restore",
            "--key",
            "k",
            "--path",
            "dist",
            "--fail-on-cache-miss",
        ],
        MAIN,
    );
    assert!(
        stderr(&out).contains("runcache: error:"),
        "{}",
        stderr(&out)
    );
}

/// `runcache` as a user who may not write `RUNCACHE_HOME` (root writes
/// anywhere, so as root the run drops to `nobody` through setpriv).
#[allow(clippy::disallowed_methods)] // passes the test runner's PATH on
fn run_read_only(s: &Sandbox, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap();
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_runcache"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_runcache"))
    };
    // The sandbox readable by all, the workspace writable, the home not.
    for dir in [s.root().to_path_buf(), s.ws()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let started = std::time::Instant::now();
    let out = cmd
        .args(args)
        .current_dir(s.ws())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.root())
        .env("RUNCACHE_HOME", s.home())
        .env("GITHUB_REPOSITORY", REPO)
        .env("GITHUB_REF", MAIN)
        .output()
        .expect("setpriv (util-linux) runs");
    assert!(
        // A guard against a hang (this was an endless retry), not a timing.
        started.elapsed() < std::time::Duration::from_secs(60),
        "{args:?} took {:?}: it must fail fast",
        started.elapsed()
    );
    out
}

/// A read-only `RUNCACHE_HOME`, empty or holding a cache with events still
/// queued: every command ends within seconds, naming the home and the cause.
#[test]
fn a_read_only_home_fails_fast_with_the_cause() {
    use std::os::unix::fs::PermissionsExt;
    for populated in [false, true] {
        let s = Sandbox::new();
        std::fs::create_dir_all(s.home()).unwrap();
        if populated {
            std::fs::create_dir_all(s.ws().join("dist")).unwrap();
            std::fs::write(s.ws().join("dist/a"), b"a").unwrap();
            ok(&s.run(&["save", "--key", "k", "--path", "dist"], MAIN));
            ok(&s.run(&["restore", "--key", "k", "--path", "dist"], MAIN));
        }
        let mut dirs = vec![s.home()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let mode = if p.is_dir() {
                    dirs.push(p.clone());
                    0o555
                } else {
                    0o444
                };
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let home = s.home().display().to_string();
        for args in [
            &["admin", "stats"][..],
            &["save", "--key", "k2", "--path", "dist"],
        ] {
            let out = run_read_only(&s, args);
            let err = stderr(&out);
            if populated && args[0] == "admin" {
                // Reading succeeds; the restore still queued (its metrics
                // event) is not counted, and the warning says so.
                assert!(out.status.success(), "{args:?}: {err}");
                assert!(err.contains("not counted") && err.contains(&home), "{err}");
                continue;
            }
            assert!(!out.status.success(), "{args:?}: {err}");
            assert!(
                err.contains(&home)
                    && (err.contains("ermission denied") || err.contains("readonly")),
                "{args:?} (populated: {populated}) names the home and the cause: {err}"
            );
        }
        // A restore still never fails the build.
        let out = run_read_only(&s, &["restore", "--key", "k", "--path", "out"]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Let the sandbox be cleaned up.
        std::fs::set_permissions(s.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The cache actions' save steps run at the end of a green job: a save
/// that fails there must warn, not annotate an error or fail the step.
#[test]
fn a_best_effort_save_that_fails_is_a_warning_and_exit_0() {
    let s = Sandbox::new();
    let actions = [("GITHUB_ACTIONS", "true")];
    let save = ["save", "--key", "k", "--path", "nothing-here"];
    let strict = s.run_env(&save, MAIN, &actions);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("::error"), "{}", stderr(&strict));

    let best = s.run_env(
        &[&save[..], &["--best-effort", "--json"]].concat(),
        MAIN,
        &actions,
    );
    let err = stderr(&best);
    assert_eq!(best.status.code(), Some(0), "{err}");
    assert!(
        err.contains("::warning")
            && err.contains("save failed, the build goes on without saving `k`"),
        "{err}"
    );
    assert!(!err.contains("::error"), "{err}");
    assert!(
        String::from_utf8_lossy(&best.stdout).trim().is_empty(),
        "no runcache.save document when nothing was saved"
    );
    // A bad configuration is the same: warned about, exit 0.
    let bad = [("GITHUB_ACTIONS", "true"), ("RUNCACHE_BACKEND", "s3")];
    let misconfigured = s.run_env(&[&save[..], &["--best-effort"]].concat(), MAIN, &bad);
    assert_eq!(
        misconfigured.status.code(),
        Some(0),
        "{}",
        stderr(&misconfigured)
    );
    assert!(!stderr(&misconfigured).contains("::error"));
}

/// `tar -cf - app` for a declared `app/dist` also holds `app/`: that entry
/// only names a parent of the declared path, so import and restore skip it
/// (and say how many entries they took); an entry beside the declared path
/// is refused by the import, naming it.
#[test]
fn an_import_with_parent_directories_restores_and_one_with_other_files_is_refused() {
    let s = Sandbox::new();
    let src = s.root().join("src");
    fs::create_dir_all(src.join("app/dist/js")).unwrap();
    fs::write(src.join("app/dist/js/main.js"), b"main()").unwrap();
    let parents = s.root().join("parents.tzst");
    // Only the directories above dist, then dist's tree.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar --posix --no-recursion -cf - -C '{0}' app app/dist app/dist/js app/dist/js/main.js | zstd -q -o '{1}'",
            src.display(),
            parents.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "tar | zstd");
    let import = |file: &Path, key: &str| {
        s.run(
            &[
                "save",
                "--key",
                key,
                "--path",
                "app/dist",
                "--from-archive",
                file.to_str().unwrap(),
                "--json",
            ],
            MAIN,
        )
    };
    let saved: serde_json::Value = serde_json::from_str(&ok(&import(&parents, "imp"))).unwrap();
    assert_eq!(saved["entries"], 3, "app/ is skipped, not counted: {saved}");
    let restored = s.run(
        &["restore", "--key", "imp", "--path", "app/dist", "--json"],
        MAIN,
    );
    let report: serde_json::Value = serde_json::from_str(&ok(&restored)).unwrap();
    assert_eq!(
        (&report["cacheHit"], &report["entries"]),
        (&"true".into(), &3.into()),
        "{report}"
    );
    assert_eq!(
        fs::read(s.ws().join("app/dist/js/main.js")).unwrap(),
        b"main()"
    );

    // The whole of app/ holds a file beside the declared path: refused.
    fs::write(src.join("app/package.json"), b"{}").unwrap();
    let whole = s.root().join("whole.tzst");
    actions_cache_archive(&src, "app", &whole);
    let out = import(&whole, "whole");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("app/package.json") && err.contains("outside every declared path"),
        "{err}"
    );
    assert!(
        ok(&s.run(&["restore", "--key", "whole", "--path", "app/dist"], MAIN))
            .contains("cache-hit=\n")
    );
}

/// An empty restore key is named as such, and a key with a newline is
/// refused, without letting it set other step outputs in `$GITHUB_OUTPUT`.
#[test]
fn an_empty_restore_key_is_named_and_a_key_with_a_newline_cannot_inject_outputs() {
    let s = Sandbox::new();
    let out = s.run(
        &[
            "restore",
            "--key",
            "k",
            "--restore-key",
            "",
            "--path",
            "dist",
        ],
        MAIN,
    );
    assert!(
        stderr(&out).contains("restore key 1 is empty"),
        "{}",
        stderr(&out)
    );
    let save = s.run(&["save", "--key", "a\nb", "--path", "dist"], MAIN);
    assert_eq!(save.status.code(), Some(1));
    assert!(stderr(&save).contains("a newline"), "{}", stderr(&save));

    let outputs = s.root().join("gh-output");
    let restore = s.run_env(
        &["restore", "--key", "a\ncache-hit=true", "--path", "dist"],
        MAIN,
        &[("GITHUB_OUTPUT", outputs.to_str().unwrap())],
    );
    assert!(
        stderr(&restore).contains("control character"),
        "{}",
        stderr(&restore)
    );
    let written = fs::read_to_string(&outputs).unwrap();
    // Read back as the runner does: `name=value`, or `name<<DELIM` … `DELIM`.
    let mut parsed = std::collections::BTreeMap::new();
    let mut lines = written.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            parsed.insert(name.to_string(), value.join("\n"));
        } else {
            let (name, value) = line.split_once('=').expect("name=value");
            parsed.insert(name.to_string(), value.to_string());
        }
    }
    assert_eq!(
        parsed["cache-hit"], "",
        "the key set another output: {written}"
    );
    assert_eq!(parsed["cache-primary-key"], "a\ncache-hit=true");
    assert_eq!(parsed.len(), 3, "{written}");
}

/// A declared path that became a symlink at the destination is replaced by
/// the restored directory (as tar does); a parent of one that is a symlink
/// is refused with the link named, and nothing is written where it points.
#[test]
fn symlinks_at_a_declared_path_or_above_it_are_never_written_through() {
    let s = Sandbox::new();
    for dir in ["out", "build/out"] {
        fs::create_dir_all(s.ws().join(dir)).unwrap();
        fs::write(s.ws().join(dir).join("a.o"), b"obj").unwrap();
        ok(&s.run(&["save", "--key", dir, "--path", dir], MAIN));
    }
    fs::remove_dir_all(s.ws().join("out")).unwrap();
    fs::remove_dir_all(s.ws().join("build")).unwrap();
    fs::create_dir_all(s.outside().join("elsewhere/out")).unwrap();
    symlink(s.outside().join("elsewhere"), s.ws().join("out")).unwrap();
    symlink(s.outside().join("elsewhere"), s.ws().join("build")).unwrap();
    let before = s.outside_listing();

    let out = s.run(&["restore", "--key", "out", "--path", "out"], MAIN);
    assert!(ok(&out).contains("cache-hit=true"), "{}", stderr(&out));
    assert!(stderr(&out).contains("was a symlink"), "{}", stderr(&out));
    assert!(fs::symlink_metadata(s.ws().join("out")).unwrap().is_dir());
    assert_eq!(fs::read(s.ws().join("out/a.o")).unwrap(), b"obj");

    let out = s.run(
        &["restore", "--key", "build/out", "--path", "build/out"],
        MAIN,
    );
    assert!(ok(&out).contains("cache-hit=\n"), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("above the declared path"), "{err}");
    assert!(err.contains("the cache entry is fine"), "{err}");
    assert_eq!(
        s.outside_listing(),
        before,
        "nothing written through a link"
    );
    let elsewhere: Vec<_> = walk_files(&s.outside().join("elsewhere"));
    assert!(
        elsewhere.is_empty(),
        "written through a link: {elsewhere:?}"
    );
}
