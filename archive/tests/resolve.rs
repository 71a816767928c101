//! Path-pattern resolution and the cache version.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use common::{strings, write, Sandbox};
use runcache_archive::{cache_version, resolve_paths_with_home, ArchiveError, COMPRESSION};
use sha2::{Digest, Sha256};

fn resolve(sb: &Sandbox, patterns: &[&str]) -> Result<Vec<String>, ArchiveError> {
    resolve_paths_with_home(&strings(patterns), &sb.ws, Some(&sb.home)).map(|paths| {
        paths
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    })
}

fn monorepo() -> Sandbox {
    let sb = Sandbox::new();
    for pkg in ["a", "b", "skip"] {
        write(
            &sb.ws
                .join(format!("packages/{pkg}/node_modules/dep/index.js")),
            "x",
        );
        write(&sb.ws.join(format!("packages/{pkg}/src/lib.js")), "x");
    }
    write(&sb.ws.join("node_modules/.cache/big"), "x");
    write(&sb.ws.join("node_modules/dep/index.js"), "x");
    fs::create_dir_all(sb.ws.join("node_modules/empty")).expect("mkdir");
    write(&sb.home.join(".npm/_cacache/index"), "x");
    write(&sb.ws.join(".hidden/file"), "x");
    sb
}

#[test]
fn a_directory_brings_everything_below_it_sorted() {
    let sb = monorepo();
    assert_eq!(
        resolve(&sb, &["node_modules"]).expect("resolve"),
        [
            "node_modules",
            "node_modules/.cache",
            "node_modules/.cache/big",
            "node_modules/dep",
            "node_modules/dep/index.js",
            "node_modules/empty",
        ]
    );
}

#[test]
fn globs_match_across_packages() {
    let sb = monorepo();
    let got = resolve(&sb, &["packages/*/node_modules"]).expect("resolve");
    assert_eq!(
        got,
        [
            "packages/a/node_modules",
            "packages/a/node_modules/dep",
            "packages/a/node_modules/dep/index.js",
            "packages/b/node_modules",
            "packages/b/node_modules/dep",
            "packages/b/node_modules/dep/index.js",
            "packages/skip/node_modules",
            "packages/skip/node_modules/dep",
            "packages/skip/node_modules/dep/index.js",
        ]
    );
    // `**` matches at any depth, including the top; `*` matches dotfiles.
    let got = resolve(&sb, &["**/node_modules/dep/*.js"]).expect("resolve");
    assert_eq!(
        got,
        [
            "node_modules/dep/index.js",
            "packages/a/node_modules/dep/index.js",
            "packages/b/node_modules/dep/index.js",
            "packages/skip/node_modules/dep/index.js",
        ]
    );
    assert_eq!(
        resolve(&sb, &[".h*"]).expect("resolve"),
        [".hidden", ".hidden/file"]
    );
    assert_eq!(
        resolve(&sb, &["packages/[ab]/src/lib.js"]).expect("resolve"),
        ["packages/a/src/lib.js", "packages/b/src/lib.js"]
    );
}

#[test]
fn excludes_remove_matches_and_everything_below_them() {
    let sb = monorepo();
    let got = resolve(&sb, &["packages/*/node_modules", "!packages/skip"]).expect("resolve");
    assert!(
        got.iter().all(|p| !p.starts_with("packages/skip")),
        "{got:?}"
    );
    assert_eq!(got.len(), 6);

    // Unlike actions/cache, an exclude inside a matched directory works.
    let got = resolve(&sb, &["node_modules", "!node_modules/.cache"]).expect("resolve");
    assert_eq!(
        got,
        [
            "node_modules",
            "node_modules/dep",
            "node_modules/dep/index.js",
            "node_modules/empty",
        ]
    );
    // Order does not matter, and exclude globs work.
    let got = resolve(&sb, &["!**/index.js", "node_modules"]).expect("resolve");
    assert!(got.iter().all(|p| !p.ends_with("index.js")), "{got:?}");
    // An exclude above a literal pattern excludes it whole.
    let err = resolve(&sb, &["node_modules/dep", "!node_modules"]).expect_err("all excluded");
    assert!(matches!(err, ArchiveError::NoMatch { .. }), "{err}");
}

#[test]
fn tilde_is_the_home_directory_named_relative_to_the_workspace() {
    let sb = monorepo();
    assert_eq!(
        resolve(&sb, &["~/.npm"]).expect("resolve"),
        [
            "../home/.npm",
            "../home/.npm/_cacache",
            "../home/.npm/_cacache/index"
        ]
    );
    let err = resolve_paths_with_home(&strings(&["~/.npm"]), &sb.ws, None).expect_err("no home");
    assert!(matches!(err, ArchiveError::InvalidPattern { .. }), "{err}");
}

#[test]
fn relative_dotdot_absolute_and_duplicate_patterns() {
    let sb = monorepo();
    let abs = sb.home.join(".npm").display().to_string();
    let got = resolve(&sb, &[&abs, "../home/.npm/_cacache", "~/.npm"]).expect("resolve");
    assert_eq!(
        got,
        [
            "../home/.npm",
            "../home/.npm/_cacache",
            "../home/.npm/_cacache/index"
        ]
    );
    assert_eq!(
        resolve(&sb, &["./node_modules/dep/"]).expect("resolve"),
        ["node_modules/dep", "node_modules/dep/index.js"]
    );
}

#[test]
fn the_workspace_itself_is_named_dot() {
    let sb = Sandbox::new();
    write(&sb.ws.join("a.txt"), "a");
    assert_eq!(resolve(&sb, &["."]).expect("resolve"), [".", "a.txt"]);
}

#[test]
fn symlinks_are_entries_and_are_not_followed() {
    let sb = monorepo();
    symlink("../packages", sb.ws.join("node_modules/linked")).expect("symlink");
    symlink(&sb.outside, sb.ws.join("node_modules/out")).expect("symlink");
    let got = resolve(&sb, &["node_modules"]).expect("resolve");
    assert!(got.contains(&"node_modules/linked".to_string()));
    assert!(got.contains(&"node_modules/out".to_string()));
    assert!(!got
        .iter()
        .any(|p| p.starts_with("node_modules/linked/") || p.starts_with("node_modules/out/")));
}

#[test]
fn nothing_matching_is_no_match() {
    let sb = monorepo();
    for patterns in [
        &["missing"][..],
        &["packages/*/missing"],
        &["# only a comment", "  "],
    ] {
        let err = resolve(&sb, patterns).expect_err("no match");
        assert!(matches!(err, ArchiveError::NoMatch { .. }), "{err}");
    }
    let err = resolve(&sb, &["packages/[a"]).expect_err("bad glob");
    assert!(matches!(err, ArchiveError::InvalidPattern { .. }), "{err}");
}

#[test]
fn braces_are_literal_as_in_actions_glob() {
    let sb = Sandbox::new();
    write(&sb.ws.join("{a,b}/x"), "x");
    write(&sb.ws.join("a/x"), "x");
    assert_eq!(
        resolve(&sb, &["{a,b}"]).expect("resolve"),
        ["{a,b}", "{a,b}/x"]
    );
    assert_eq!(resolve(&sb, &["{a,b}/*"]).expect("resolve"), ["{a,b}/x"]);
}

#[test]
fn cache_version_matches_actions_toolkit() {
    let expected = hex::encode(Sha256::digest(b"node_modules|zstd-without-long|1.0"));
    assert_eq!(cache_version(&strings(&["node_modules"])), expected);
    assert_eq!(
        expected,
        "7fcda33c1e1d849a13bcc06f49b9ab64efc01ca9dabe4d7a8d0d387feef4fc88"
    );
    assert_eq!(COMPRESSION, "zstd-without-long");
    // Patterns as written, in order.
    assert_eq!(
        cache_version(&strings(&["~/.npm", "node_modules"])),
        "5f4ed3eee587aa04eaa10447709b5d5846f6f3cc65637c896b9e02408ff60e92"
    );
    assert_ne!(
        cache_version(&strings(&["node_modules", "~/.npm"])),
        cache_version(&strings(&["~/.npm", "node_modules"]))
    );
}

#[test]
fn resolve_paths_uses_the_real_home() {
    // Only that it resolves a workspace-relative pattern without a home
    // override; `~` itself is covered above with an explicit home.
    let sb = monorepo();
    let got =
        runcache_archive::resolve_paths(&strings(&["node_modules/dep"]), &sb.ws).expect("resolve");
    assert_eq!(
        got,
        [
            PathBuf::from("node_modules/dep"),
            PathBuf::from("node_modules/dep/index.js")
        ]
    );
}
