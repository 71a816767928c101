//! What a key says is what the index records, and ladders never cross
//! toolchains or projects (#22 items 4 and 5), through the binary on the
//! local backend.

use std::{fs, path::Path, process::Command};

mod common;

use common::{ok, stderr, Sandbox, MAIN};

const NPM: &str = "{\"name\":\"web\",\"lockfileVersion\":3}\n";

/// `runcache` in `dir` as on a developer's machine: no GitHub variables.
#[allow(clippy::disallowed_methods)] // passes the test runner's PATH on
fn local(s: &Sandbox, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runcache"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.root())
        .env("RUNCACHE_HOME", s.home())
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn project(s: &Sandbox) {
    fs::write(s.ws().join("package-lock.json"), NPM).unwrap();
    fs::create_dir_all(s.ws().join("node_modules/dep")).unwrap();
    fs::write(s.ws().join("node_modules/dep/index.js"), b"1").unwrap();
}

/// The toolchain given to `key` (not the one installed) and the key's
/// lockfile hash are what the index records: invalidating by them matches
/// the entry. A hand-written key beside the same lockfile records neither,
/// so invalidating the installed toolchain leaves it alone.
#[test]
fn the_index_records_the_toolchain_and_lockfile_the_key_names() {
    let s = Sandbox::new();
    project(&s);
    let key = json(&s.run(
        &[
            "key",
            "deps",
            "--toolchain",
            "node=20.11.0",
            "--no-detect-toolchain",
            "--json",
        ],
        MAIN,
    ));
    let (k, lockhash) = (
        key["key"].as_str().unwrap(),
        key["lockfileHash"].as_str().unwrap(),
    );
    ok(&s.run(&["save", "--key", k, "--path", "node_modules"], MAIN));
    // A hand-written key in the same directory (node is installed here:
    // detection finds its real version), other content.
    fs::write(s.ws().join("node_modules/dep/index.js"), b"2").unwrap();
    ok(&s.run(
        &["save", "--key", "my-output-1", "--path", "node_modules"],
        MAIN,
    ));

    let recorded = json(&s.run(&["admin", "provenance", k, "--json"], MAIN));
    let build = &recorded["records"][0]["build"];
    assert_eq!(build["toolchain"], "node-20.11.0", "{build}");
    assert_eq!(build["lockfileHash"], lockhash, "{build}");
    let hand = json(&s.run(&["admin", "provenance", "my-output-1", "--json"], MAIN));
    let build = &hand["records"][0]["build"];
    assert!(build["toolchain"].is_null(), "{build}");
    assert!(build["lockfileHash"].is_null(), "{build}");

    let invalidate = |selector: &str, value: &str| {
        let out = json(&s.run(
            &[
                "admin",
                "invalidate",
                selector,
                value,
                "--reason",
                "test",
                "--json",
            ],
            MAIN,
        ));
        out["liveMatchesNow"].as_u64().unwrap()
    };
    // The installed node (whatever version) matches nothing.
    let installed = Command::new("node").arg("--version").output();
    if let Ok(v) = installed {
        let v = String::from_utf8_lossy(&v.stdout)
            .trim()
            .trim_start_matches('v')
            .to_string();
        if !v.is_empty() && v != "20.11.0" {
            assert_eq!(invalidate("--toolchain", &format!("node-{v}")), 0);
        }
    }
    assert_eq!(invalidate("--toolchain", "node-20.11.0"), 1);
    let lookup = |key: &str| {
        ok(&s.run(
            &[
                "restore",
                "--key",
                key,
                "--path",
                "node_modules",
                "--lookup-only",
            ],
            MAIN,
        ))
    };
    assert!(lookup(k).contains("cache-hit=\n"), "invalidated");
    assert!(
        lookup("my-output-1").contains("cache-hit=true"),
        "the hand-keyed entry stays"
    );
}

/// `runcache key`'s ladder keeps the toolchain in every rung: an entry
/// saved for node 20 is not restored for node 18.
#[test]
fn the_default_ladder_never_restores_another_toolchains_entry() {
    let s = Sandbox::new();
    project(&s);
    let key_for = |node: &str| {
        json(&s.run(
            &[
                "key",
                "deps",
                "--toolchain",
                &format!("node={node}"),
                "--no-detect-toolchain",
                "--json",
            ],
            MAIN,
        ))
    };
    let node20 = key_for("20.11.0");
    ok(&s.run(
        &[
            "save",
            "--key",
            node20["key"].as_str().unwrap(),
            "--path",
            "node_modules",
        ],
        MAIN,
    ));
    let restore = |key: &serde_json::Value| {
        let mut args = vec![
            "restore".to_string(),
            "--key".into(),
            key["key"].as_str().unwrap().into(),
            "--path".into(),
            "node_modules".into(),
            "--lookup-only".into(),
        ];
        for r in key["restoreKeys"].as_array().unwrap() {
            args.push("--restore-key".into());
            args.push(r.as_str().unwrap().into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&s.run(&args, MAIN))
    };
    let node18 = key_for("18.19.0");
    let out = restore(&node18);
    assert!(
        out.contains("cache-hit=\n") && !out.contains("cache-matched-key=deps"),
        "a node-18 key restored the node-20 entry: {out}"
    );
    // The same toolchain, an older lockfile: the ladder does restore it.
    fs::write(
        s.ws().join("package-lock.json"),
        "{\"name\":\"web\",\"lockfileVersion\":3,\"v\":2}\n",
    )
    .unwrap();
    let newer = key_for("20.11.0");
    assert_ne!(newer["key"], node20["key"]);
    let out = restore(&newer);
    assert!(
        out.contains(&format!(
            "cache-matched-key={}",
            node20["key"].as_str().unwrap()
        )),
        "{out}"
    );
}

/// Outside GitHub Actions, each project is its own repository (the origin
/// remote's owner/name, else local/{directory}): one project's key never
/// restores another's entry.
#[test]
fn outside_actions_projects_on_one_machine_never_share_entries() {
    let s = Sandbox::new();
    let (web, api) = (s.root().join("web"), s.root().join("api"));
    for dir in [&web, &api] {
        fs::create_dir_all(dir.join("node_modules")).unwrap();
        fs::write(dir.join("node_modules/x.js"), dir.display().to_string()).unwrap();
        fs::write(dir.join("package-lock.json"), NPM).unwrap();
    }
    let git = |dir: &Path, args: &[&str]| {
        let st = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(st.status.success(), "git {args:?}: {}", stderr(&st));
    };
    git(&web, &["init", "-q"]);
    git(
        &web,
        &["remote", "add", "origin", "git@github.com:acme/web.git"],
    );

    // The same derived key text in both projects...
    let key = |dir: &Path| {
        ok(&local(
            &s,
            dir,
            &[
                "key",
                "deps",
                "--toolchain",
                "node=20.11.0",
                "--no-detect-toolchain",
            ],
        ))
        .trim()
        .to_string()
    };
    let (web_key, api_key) = (key(&web), key(&api));
    assert!(web_key.starts_with("deps:acme/web:"), "{web_key}");
    assert!(api_key.starts_with("deps:local/api:"), "{api_key}");
    // ...and one plain key saved in web is not seen from api.
    ok(&local(
        &s,
        &web,
        &["save", "--key", "shared", "--path", "node_modules"],
    ));
    let from_api = ok(&local(
        &s,
        &api,
        &[
            "restore",
            "--key",
            "shared",
            "--path",
            "node_modules",
            "--lookup-only",
        ],
    ));
    assert!(from_api.contains("cache-hit=\n"), "{from_api}");
    let from_web = ok(&local(
        &s,
        &web,
        &[
            "restore",
            "--key",
            "shared",
            "--path",
            "node_modules",
            "--lookup-only",
        ],
    ));
    assert!(from_web.contains("cache-hit=true"), "{from_web}");
    let ls = ok(&local(&s, &web, &["admin", "ls"]));
    assert!(
        ls.contains("shared"),
        "admin ls defaults to this project: {ls}"
    );
}
