//! `runcache key`: keys derived from lockfiles, toolchains, env and build
//! config are the same for the same inputs on any machine, change when an
//! input changes, and always satisfy actions/cache's key rules.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use clap::Parser;
use runcache::{
    derive::{
        derive_key, detect, emit, parse_version, probe_version, DeriveError, DeriveOptions,
        Ecosystem, KeyArgs, KeyKind, KeyReport, KeyRequest, GRADLE_LOCKS_DIR, LOCKFILE_NAMES,
    },
    keys::validate_key,
};
use tempfile::TempDir;

/// A project directory with files, written with a given mtime.
fn project(files: &[(&str, &str)], mtime: SystemTime) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        write(dir.path(), name, body, mtime);
    }
    dir
}

fn write(dir: &Path, name: &str, body: &str, mtime: SystemTime) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, body).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// Explicit toolchains and no detection: hermetic.
fn opts(toolchains: &[(&str, &str)]) -> DeriveOptions {
    DeriveOptions {
        toolchains: toolchains
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        detect_toolchains: false,
        ..DeriveOptions::default()
    }
}

fn request(kind: KeyKind, dir: &Path, options: DeriveOptions) -> KeyRequest {
    KeyRequest {
        kind,
        repository: "acme/web".into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        dir: dir.to_path_buf(),
        options,
    }
}

fn deps(dir: &Path, options: DeriveOptions) -> KeyReport {
    derive_key(&request(KeyKind::Deps, dir, options)).unwrap()
}

const NPM: &str = r#"{"name":"web","lockfileVersion":3,"packages":{}}"#;
const CARGO: &str = "version = 4\n[[package]]\nname = \"web\"\n";

#[test]
fn the_same_inputs_give_the_same_key_in_two_checkouts() {
    let files = [
        ("package-lock.json", NPM),
        ("Cargo.lock", CARGO),
        (
            "gradle/dependency-locks/compileClasspath.lockfile",
            "a:b:1=c\n",
        ),
        ("build.toml", "opt = 3\n"),
    ];
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let a = project(&files, old);
    let b = project(&files, SystemTime::now());
    assert_ne!(a.path(), b.path());
    let options = || DeriveOptions {
        env: BTreeMap::from([("NODE_ENV".to_string(), Some("production".to_string()))]),
        config_files: vec![PathBuf::from("build.toml")],
        config_values: vec!["--release".into()],
        ..opts(&[("node", "20.11.0"), ("rustc", "1.85.0"), ("java", "21.0.2")])
    };
    for kind in [KeyKind::Deps, KeyKind::Output] {
        let ka = derive_key(&request(kind, a.path(), options())).unwrap();
        let kb = derive_key(&request(kind, b.path(), options())).unwrap();
        assert_eq!(ka.key, kb.key);
        // Every part, not just the key: nothing absolute, nothing from mtimes.
        assert_eq!(ka, kb);
        let json = serde_json::to_string(&ka).unwrap();
        assert!(!json.contains(&a.path().display().to_string()), "{json}");
    }
    // The hash is the documented sha256sum manifest, reproducible by hand.
    let report = deps(a.path(), options());
    assert_eq!(report.derivation.lockfiles.len(), 3);
    let manifest: String = report
        .derivation
        .lockfiles
        .iter()
        .map(|l| format!("{}  {}\n", l.sha256, l.path))
        .collect();
    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(manifest.as_bytes()));
    assert_eq!(
        report.derivation.lockfile_hash.as_deref(),
        Some(&expected[..32])
    );
}

#[test]
fn a_lockfile_change_changes_the_key_and_so_does_its_path() {
    let now = SystemTime::now();
    let dir = project(&[("package-lock.json", NPM)], now);
    let before = deps(dir.path(), opts(&[("node", "20.11.0")]));
    write(
        dir.path(),
        "package-lock.json",
        &NPM.replace("web", "web2"),
        now,
    );
    let after = deps(dir.path(), opts(&[("node", "20.11.0")]));
    assert_ne!(before.key, after.key);
    assert_ne!(
        before.derivation.lockfile_hash,
        after.derivation.lockfile_hash
    );
    // Same restore ladder root: a changed lockfile still restores the last deps.
    assert_eq!(before.restore_keys.last(), after.restore_keys.last());
    assert!(after.key.starts_with(after.restore_keys.last().unwrap()));

    // Identical bytes under another path are another input.
    write(dir.path(), "a/Cargo.lock", CARGO, now);
    write(dir.path(), "b/Cargo.lock", CARGO, now);
    let explicit = |p: &str| DeriveOptions {
        lockfiles: vec![PathBuf::from(p)],
        ..opts(&[])
    };
    let a = deps(dir.path(), explicit("a/Cargo.lock"));
    let b = deps(dir.path(), explicit("b/Cargo.lock"));
    assert_eq!(
        a.derivation.lockfiles[0].sha256,
        b.derivation.lockfiles[0].sha256
    );
    assert_ne!(a.derivation.lockfile_hash, b.derivation.lockfile_hash);
    assert!(a.key.split(':').nth(3) == Some("a/Cargo.lock"), "{}", a.key);
}

#[test]
fn explicit_lockfiles_replace_detection_and_may_lie_outside_the_directory() {
    let root = project(
        &[
            ("pnpm-lock.yaml", "lockfileVersion: '9.0'\n"),
            ("packages/app/package-lock.json", NPM),
        ],
        SystemTime::now(),
    );
    let app = root.path().join("packages/app");
    let report = deps(
        &app,
        DeriveOptions {
            lockfiles: vec![
                PathBuf::from("../../pnpm-lock.yaml"),
                app.join("package-lock.json"),
                PathBuf::from("./package-lock.json"),
            ],
            ..opts(&[("node", "20.11.0")])
        },
    );
    let paths: Vec<&str> = report
        .derivation
        .lockfiles
        .iter()
        .map(|l| l.path.as_str())
        .collect();
    assert_eq!(paths, ["../../pnpm-lock.yaml", "package-lock.json"]);
    assert_eq!(report.derivation.lockfiles[0].ecosystem, Ecosystem::Pnpm);
    assert!(report
        .key
        .starts_with("deps:acme/web:node-20.11.0:../../pnpm-lock.yaml+package-lock.json:"));
}

#[test]
fn explicit_toolchains_go_into_the_key_and_win_over_detection() {
    let dir = project(&[("package-lock.json", NPM)], SystemTime::now());
    // Detection on, but node is given: nothing is run.
    let with = |version: &str| {
        deps(
            dir.path(),
            DeriveOptions {
                detect_toolchains: true,
                ..opts(&[("node", version)])
            },
        )
    };
    let node20 = with("20.11.0");
    assert!(
        node20.key.starts_with("deps:acme/web:node-20.11.0:"),
        "{}",
        node20.key
    );
    assert_eq!(node20.derivation.toolchain.as_deref(), Some("node-20.11.0"));
    assert_eq!(node20.derivation.toolchains["node"], "20.11.0");
    assert_ne!(node20.key, with("22.1.0").key);

    // Several toolchains: sorted by name, joined with `+`; separators in
    // versions cannot break the key.
    let many = deps(
        dir.path(),
        opts(&[("python", "3.12.1"), ("node", "20.11.0+build,1:x")]),
    );
    assert_eq!(
        many.derivation.toolchain.as_deref(),
        Some("node-20.11.0_build_1_x+python-3.12.1")
    );
    // No toolchain at all is a readable part too.
    let none = deps(dir.path(), opts(&[]));
    assert!(none.key.starts_with("deps:acme/web:none:"), "{}", none.key);
}

#[test]
fn env_values_change_the_key_but_never_appear_in_it() {
    let dir = project(&[("Cargo.lock", CARGO)], SystemTime::now());
    let with_env = |value: Option<&str>| {
        deps(
            dir.path(),
            DeriveOptions {
                env: BTreeMap::from([("RUSTFLAGS".to_string(), value.map(str::to_string))]),
                ..opts(&[("rustc", "1.85.0")])
            },
        )
    };
    let plain = deps(dir.path(), opts(&[("rustc", "1.85.0")]));
    let a = with_env(Some("-C target-cpu=native"));
    let b = with_env(Some("-C opt-level=3"));
    let empty = with_env(Some(""));
    let unset = with_env(None);
    let keys = [&plain.key, &a.key, &b.key, &empty.key, &unset.key];
    for (i, x) in keys.iter().enumerate() {
        for y in &keys[i + 1..] {
            assert_ne!(x, y);
        }
    }
    assert!(
        a.key.starts_with(&format!("{}:env-", plain.key)),
        "{}",
        a.key
    );
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains("target-cpu"), "{json}");
    assert_eq!(a.derivation.env_names, ["RUSTFLAGS"]);
    // The most specific restore key is the same deps with any env.
    assert_eq!(a.restore_keys[0], format!("{}:", plain.key));
}

#[test]
fn build_config_changes_the_key_and_its_order_does_not() {
    let now = SystemTime::now();
    let dir = project(
        &[("Cargo.lock", CARGO), ("build.toml", "lto = true\n")],
        now,
    );
    let output = |files: &[&str], values: &[&str]| {
        derive_key(&request(
            KeyKind::Output,
            dir.path(),
            DeriveOptions {
                config_files: files.iter().map(PathBuf::from).collect(),
                config_values: values.iter().map(|v| v.to_string()).collect(),
                ..opts(&[("rustc", "1.85.0")])
            },
        ))
        .unwrap()
    };
    let none = output(&[], &[]);
    assert_eq!(
        none.key,
        "output:acme/web:rustc-1.85.0:cfg-none:commit:0123456789abcdef0123456789abcdef01234567"
    );
    let release = output(&[], &["--release"]);
    let features = output(&[], &["--release", "--features=x"]);
    let reordered = output(&[], &["--features=x", "--release"]);
    assert_ne!(none.key, release.key);
    assert_ne!(release.key, features.key);
    assert_eq!(features.key, reordered.key);

    let file = output(&["build.toml"], &[]);
    assert!(file.key.contains(":cfg-"), "{}", file.key);
    write(dir.path(), "build.toml", "lto = false\n", now);
    assert_ne!(file.key, output(&["build.toml"], &[]).key);
    assert_eq!(file.derivation.config_files[0].path, "build.toml");

    // Deps keys carry config only when given.
    let d = deps(
        dir.path(),
        DeriveOptions {
            config_values: vec!["--release".into()],
            ..opts(&[("rustc", "1.85.0")])
        },
    );
    assert!(
        d.key.starts_with("deps:acme/web:rustc-1.85.0:") && d.key.contains(":cfg-"),
        "{}",
        d.key
    );
    assert!(!deps(dir.path(), opts(&[])).key.contains("cfg-"));

    let missing = derive_key(&request(
        KeyKind::Output,
        dir.path(),
        DeriveOptions {
            config_files: vec!["nope.toml".into()],
            ..opts(&[])
        },
    ))
    .unwrap_err();
    assert!(matches!(missing, DeriveError::ConfigFile { .. }));
    assert!(
        missing.to_string().contains("--build-config-file"),
        "{missing}"
    );
}

#[test]
fn every_lockfile_kind_is_detected_with_its_toolchain() {
    let mut cases: Vec<(String, Ecosystem)> = LOCKFILE_NAMES
        .iter()
        .map(|(n, e)| (n.to_string(), *e))
        .collect();
    cases.push((
        format!("{GRADLE_LOCKS_DIR}/compileClasspath.lockfile"),
        Ecosystem::Gradle,
    ));
    let expected_toolchain = |e: Ecosystem| match e {
        Ecosystem::Npm | Ecosystem::Yarn | Ecosystem::Pnpm => "node",
        Ecosystem::Pip | Ecosystem::Poetry => "python",
        Ecosystem::Go => "go",
        Ecosystem::Cargo => "rustc",
        Ecosystem::Bundler => "ruby",
        Ecosystem::Gradle => "java",
        _ => unreachable!(),
    };
    for (name, ecosystem) in &cases {
        let dir = project(&[(name, "locked\n")], SystemTime::now());
        let d = detect(dir.path(), &opts(&[])).unwrap();
        assert_eq!(d.lockfiles.len(), 1, "{name}");
        assert_eq!(&d.lockfiles[0].path, name);
        assert_eq!(d.lockfiles[0].ecosystem, *ecosystem, "{name}");
        assert_eq!(ecosystem.toolchain(), Some(expected_toolchain(*ecosystem)));
    }

    // All at once: sorted by path, whatever the order found in.
    let names: Vec<(&str, &str)> = cases.iter().map(|(n, _)| (n.as_str(), "x\n")).collect();
    let all = project(&names, SystemTime::now());
    let d = detect(all.path(), &opts(&[])).unwrap();
    let mut expected: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    expected.sort();
    let found: Vec<&str> = d.lockfiles.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(found, expected);
    // Gradle's lock directory is one label in the key, however many files.
    let gradle = project(
        &[
            ("gradle.lockfile", "a=1\n"),
            ("gradle/dependency-locks/compileClasspath.lockfile", "b=1\n"),
            ("gradle/dependency-locks/runtimeClasspath.lockfile", "c=1\n"),
            ("gradle/dependency-locks/notes.txt", "not a lockfile"),
        ],
        SystemTime::now(),
    );
    let report = deps(gradle.path(), opts(&[("java", "21.0.2")]));
    assert_eq!(report.derivation.lockfiles.len(), 3);
    assert!(
        report
            .key
            .starts_with("deps:acme/web:java-21.0.2:gradle.lockfile+gradle/dependency-locks:"),
        "{}",
        report.key
    );
    // Other files, and lockfiles in subdirectories, are not picked up.
    let other = project(
        &[("README.md", "hi"), ("sub/Cargo.lock", CARGO)],
        SystemTime::now(),
    );
    assert!(detect(other.path(), &opts(&[]))
        .unwrap()
        .lockfiles
        .is_empty());
}

#[test]
fn keys_stay_valid_with_very_long_or_odd_inputs() {
    let dir = project(&[("Cargo.lock", CARGO)], SystemTime::now());
    let long_name = format!("{}.lock", "x".repeat(200));
    write(dir.path(), &long_name, "x", SystemTime::now());
    let repo = format!("acme,inc/{}", "very-long-repository-name:".repeat(40));
    let options = DeriveOptions {
        lockfiles: vec!["Cargo.lock".into(), long_name.clone().into()],
        env: BTreeMap::from([("A".to_string(), Some("1".to_string()))]),
        config_values: vec!["a,b".into()],
        ..opts(&[
            ("rustc", &"1".repeat(300)),
            ("node", "20, with spaces"),
            ("java", &"9".repeat(300)),
        ])
    };
    let mut keys = Vec::new();
    for kind in [KeyKind::Deps, KeyKind::Output] {
        let report = derive_key(&KeyRequest {
            repository: repo.clone(),
            commit: Some("c".repeat(500)),
            ..request(kind, dir.path(), options.clone())
        })
        .unwrap();
        for key in std::iter::once(&report.key).chain(&report.restore_keys) {
            assert!(key.chars().count() <= 512, "{} chars", key.len());
            assert!(!key.contains(','), "{key}");
            validate_key(key).unwrap();
            assert!(report.key.starts_with(key.as_str()));
        }
        assert_eq!(report.repository, repo);
        keys.push(report.key);
    }
    // Shortening is deterministic and still tells repositories apart.
    let other = derive_key(&KeyRequest {
        repository: format!("{repo}2"),
        ..request(KeyKind::Deps, dir.path(), options.clone())
    })
    .unwrap();
    assert_ne!(other.key, keys[0]);
    let again = derive_key(&KeyRequest {
        repository: repo.clone(),
        ..request(KeyKind::Deps, dir.path(), options)
    })
    .unwrap();
    assert_eq!(again.key, keys[0]);
}

#[test]
fn json_shows_every_part_and_the_restore_ladder() {
    let dir = project(
        &[("package-lock.json", NPM), ("Cargo.lock", CARGO)],
        SystemTime::now(),
    );
    let report = deps(
        dir.path(),
        DeriveOptions {
            env: BTreeMap::from([("CI".to_string(), Some("true".to_string()))]),
            config_values: vec!["release".into()],
            ..opts(&[("node", "20.11.0"), ("rustc", "1.85.0")])
        },
    );
    let json = serde_json::to_value(&report).unwrap();
    let lockhash = json["lockfileHash"].as_str().unwrap();
    assert_eq!(lockhash.len(), 32);
    assert_eq!(json["kind"], "deps");
    assert_eq!(json["repository"], "acme/web");
    assert_eq!(json["toolchain"], "node-20.11.0+rustc-1.85.0");
    assert_eq!(json["toolchains"]["node"], "20.11.0");
    assert_eq!(json["lockfiles"][0]["path"], "Cargo.lock");
    assert_eq!(json["lockfiles"][0]["ecosystem"], "cargo");
    assert_eq!(json["lockfiles"][1]["ecosystem"], "npm");
    assert_eq!(json["lockfiles"][1]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(json["envNames"][0], "CI");
    let env = json["envHash"].as_str().unwrap();
    let cfg = json["configHash"].as_str().unwrap();
    let base =
        format!("deps:acme/web:node-20.11.0+rustc-1.85.0:Cargo.lock+package-lock.json:{lockhash}");
    assert_eq!(json["key"], format!("{base}:cfg-{cfg}:env-{env}"));
    assert_eq!(
        json["restoreKeys"],
        serde_json::json!([
            format!("{base}:"),
            // The toolchain stays in every rung.
            "deps:acme/web:node-20.11.0+rustc-1.85.0:Cargo.lock+package-lock.json:",
        ])
    );
    assert!(json.get("commit").is_none());

    let output = derive_key(&request(KeyKind::Output, dir.path(), opts(&[]))).unwrap();
    let json = serde_json::to_value(&output).unwrap();
    assert_eq!(json["commit"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(
        json["restoreKeys"],
        serde_json::json!(["output:acme/web:none:cfg-none:commit:"])
    );
}

#[test]
fn no_lockfile_says_what_was_looked_for_and_what_to_do() {
    let dir = project(&[("README.md", "hi")], SystemTime::now());
    let err = derive_key(&request(KeyKind::Deps, dir.path(), opts(&[]))).unwrap_err();
    assert!(matches!(err, DeriveError::NoLockfile { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "package-lock.json",
        "Cargo.lock",
        "gradle/dependency-locks/*.lockfile",
        "--lockfile",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }
    // An output key needs no lockfile.
    derive_key(&request(KeyKind::Output, dir.path(), opts(&[]))).unwrap();

    let err = derive_key(&request(
        KeyKind::Deps,
        dir.path(),
        DeriveOptions {
            lockfiles: vec!["missing.lock".into()],
            ..opts(&[])
        },
    ))
    .unwrap_err();
    assert!(matches!(err, DeriveError::Lockfile { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.lock"), "{err}");
}

#[test]
fn rustc_is_detected_when_cargo_lock_is_found() {
    // The one test that runs a real toolchain: rustc builds this test.
    let dir = project(&[("Cargo.lock", CARGO)], SystemTime::now());
    let d = detect(dir.path(), &DeriveOptions::default()).unwrap();
    let version = &d.toolchains["rustc"];
    assert!(version.starts_with("1."), "{version}");
    assert_eq!(d.toolchain, Some(format!("rustc-{version}")));
    // Only relevant toolchains are asked: no node for a Cargo project.
    assert_eq!(d.toolchains.len(), 1);
}

#[test]
fn a_missing_or_hanging_toolchain_is_a_clear_error() {
    let timeout = Duration::from_secs(5);
    let err = probe_version(
        "node",
        "runcache-no-such-node",
        &["--version"],
        "package-lock.json",
        Path::new("."),
        timeout,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DeriveError::ToolchainMissing { .. }));
    for needle in [
        "not found",
        "package-lock.json",
        "--toolchain node=VERSION",
        "--no-detect-toolchain",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }

    let here = Path::new(".");
    let started = std::time::Instant::now();
    let err = probe_version(
        "go",
        "sleep",
        &["30"],
        "go.sum",
        here,
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let err = probe_version(
        "ruby",
        "sh",
        &["-c", "echo no version here"],
        "Gemfile.lock",
        here,
        timeout,
    )
    .unwrap_err();
    assert!(
        matches!(err, DeriveError::ToolchainVersion { .. }),
        "{err:?}"
    );
    // java answers on stderr.
    let java = probe_version(
        "java",
        "sh",
        &["-c", "echo 'openjdk version \"21.0.2\" 2024-01-16' >&2"],
        "gradle.lockfile",
        here,
        timeout,
    )
    .unwrap();
    assert_eq!(java, "21.0.2");

    // Tools run in the project directory, where version managers (rustup's
    // rust-toolchain.toml, .python-version) choose the version.
    let dir = project(&[(".tool-version", "v18.19.1\n")], SystemTime::now());
    let pinned = probe_version(
        "node",
        "cat",
        &[".tool-version"],
        "package-lock.json",
        dir.path(),
        timeout,
    )
    .unwrap();
    assert_eq!(pinned, "18.19.1");
}

#[test]
fn versions_are_parsed_from_each_tools_output() {
    let cases = [
        ("node", "v20.11.0\n", "20.11.0"),
        ("python", "Python 3.12.1\n", "3.12.1"),
        ("go", "go version go1.22.0 linux/amd64\n", "1.22.0"),
        ("rustc", "rustc 1.85.0 (4d91de4e4 2025-02-17)\n", "1.85.0"),
        (
            "java",
            "Picked up JAVA_TOOL_OPTIONS: -Xmx2g\nopenjdk version \"17.0.10\" 2024-01-16\n",
            "17.0.10",
        ),
        ("java", "java version \"1.8.0_392\"\n", "1.8.0_392"),
        (
            "ruby",
            "ruby 3.3.0 (2023-12-25 revision 5124f9ac75) [x86_64-linux]\n",
            "3.3.0",
        ),
    ];
    for (tool, output, version) in cases {
        assert_eq!(
            parse_version(tool, output).as_deref(),
            Some(version),
            "{tool}"
        );
    }
    assert_eq!(parse_version("node", "command not found"), None);
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    key: KeyArgs,
}

#[test]
fn the_cli_flags_build_the_request_and_outputs_reach_github() {
    let dir = project(
        &[("web/package-lock.json", NPM), ("build.toml", "x")],
        SystemTime::now(),
    );
    let cli = Cli::try_parse_from([
        "runcache-key",
        "deps",
        "--dir",
        "web",
        "--repository",
        "acme/web",
        "--toolchain",
        "node=20.11.0",
        "--no-detect-toolchain",
        "--env",
        "RUNCACHE_DERIVE_TEST_UNSET_VAR",
        "--config-file",
        "build.toml",
        "--build-config",
        "--release",
        "--json",
    ])
    .unwrap();
    let req = cli.key.command.to_request(dir.path());
    assert_eq!(req.kind, KeyKind::Deps);
    assert_eq!(req.dir, dir.path().join("web"));
    assert_eq!(req.options.toolchains["node"], "20.11.0");
    assert!(!req.options.detect_toolchains);
    assert_eq!(
        req.options.env,
        BTreeMap::from([("RUNCACHE_DERIVE_TEST_UNSET_VAR".to_string(), None)])
    );
    assert_eq!(req.options.config_files, [dir.path().join("build.toml")]);
    assert_eq!(req.options.config_values, ["--release"]);
    let report = derive_key(&req).unwrap();
    assert_eq!(report.derivation.config_files[0].path, "../build.toml");

    let gh = dir.path().join("github_output");
    fs::write(&gh, "earlier=1\n").unwrap();
    let mut stdout = Vec::new();
    emit(&report, false, Some(&gh), &mut stdout).unwrap();
    assert_eq!(
        String::from_utf8(stdout).unwrap(),
        format!("{}\n", report.key)
    );
    let written = fs::read_to_string(&gh).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "earlier=1");
    assert_eq!(lines[1], format!("key={}", report.key));
    assert!(lines[2].starts_with("lockfile-hash="));
    assert_eq!(lines[3], "toolchain=node-20.11.0");
    let delimiter = lines[4].strip_prefix("restore-keys<<").unwrap();
    assert_eq!(
        lines[5..5 + report.restore_keys.len()],
        report.restore_keys[..]
    );
    assert_eq!(lines[lines.len() - 1], delimiter);

    let mut stdout = Vec::new();
    emit(&report, true, None, &mut stdout).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(json["key"], report.key);

    let err = Cli::try_parse_from(["k", "deps", "--toolchain", "node"]).unwrap_err();
    assert!(err.to_string().contains("NAME=VERSION"), "{err}");
    let out =
        Cli::try_parse_from(["k", "output", "--sha", "abc", "--no-detect-toolchain"]).unwrap();
    assert_eq!(
        out.key.command.to_request(dir.path()).commit.as_deref(),
        Some("abc")
    );
}

#[test]
fn the_output_commit_defaults_to_git_head() {
    let dir = project(&[("Cargo.lock", CARGO)], SystemTime::now());
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("git is installed");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let no_git = derive_key(&KeyRequest {
        commit: None,
        ..request(KeyKind::Output, dir.path(), opts(&[]))
    });
    // A temp dir is normally outside any repository; if it is inside one,
    // HEAD is found instead, which is also right.
    if let Err(err) = &no_git {
        assert!(matches!(err, DeriveError::NoCommit { .. }));
        assert!(err.to_string().contains("--sha"), "{err}");
    }
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "first"]);
    let head = git(&["rev-parse", "HEAD"]);
    let report = derive_key(&KeyRequest {
        commit: None,
        ..request(KeyKind::Output, dir.path(), opts(&[]))
    })
    .unwrap();
    assert_eq!(report.commit.as_deref(), Some(head.as_str()));
    assert!(
        report.key.ends_with(&format!(":commit:{head}")),
        "{}",
        report.key
    );
}

#[test]
fn provenance_gets_the_lockfile_hash_and_toolchains() {
    let dir = project(&[("yarn.lock", "# yarn\n")], SystemTime::now());
    let d = detect(dir.path(), &opts(&[("node", "20.11.0")])).unwrap();
    #[derive(Parser)]
    struct Scope {
        #[command(flatten)]
        scope: runcache::context::ScopeArgs,
    }
    let workspace = dir.path().display().to_string();
    let ctx = Scope::try_parse_from([
        "save",
        "--repository",
        "acme/web",
        "--event-name",
        "push",
        "--workspace",
        &workspace,
    ])
    .unwrap()
    .scope
    .resolve("main")
    .unwrap();
    let mut provenance = ctx.provenance();
    d.apply_to(&mut provenance);
    assert_eq!(provenance.lockfile_hash, d.lockfile_hash);
    assert_eq!(provenance.toolchain.as_deref(), Some("node-20.11.0"));
    assert_eq!(provenance.toolchains["node"], "20.11.0");
}
