//! The layering ARCHITECTURE.md draws, checked on the sources:
//!
//! - the CLI reaches the workers through one door only
//!   (`runcache_worker::settle`), never their handlers or consumer loop;
//! - the cache library under the front doors depends on neither door nor
//!   on the workers;
//! - the two doors never import each other: the server crate does not
//!   depend on the CLI crate, and the CLI library does not use the server
//!   (only its binary's `main.rs` hosts `runcache serve`);
//! - production crates never depend on the test kit (`runcache-testkit`
//!   is a dev-dependency, or a dependency of the benchmarks);
//! - no crate compiles another crate's sources (`#[path = "../…"]`);
//! - no document in the repository links to a file outside it (a fresh
//!   clone has nothing beside it).

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Files under `dir` (recursively) whose name ends with `ext`, skipping
/// build output, dependencies and hidden folders.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            out.extend(files(&path, ext));
        } else if name.ends_with(ext) {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_cli_reaches_the_workers_only_through_settle() {
    let mut offending = Vec::new();
    let sources = files(&root().join("producer/src"), ".rs");
    assert!(sources.len() > 5, "found the producer's sources");
    for file in sources {
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("runcache_worker::") {
                let after = &rest[at + "runcache_worker::".len()..];
                if !after.starts_with("settle") {
                    offending.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
                rest = after;
            }
        }
    }
    assert!(
        offending.is_empty(),
        "the CLI uses worker internals (use runcache_worker::settle, or move the code into \
         runcache-cache or runcache-infra):\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_cache_library_depends_on_no_front_door_and_no_worker() {
    let manifest = fs::read_to_string(root().join("cache/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("cache/Cargo.toml has dependencies");
    let deps = deps.split("\n[").next().unwrap();
    for line in deps.lines() {
        let name = line.split(['.', '=', ' ']).next().unwrap_or("");
        assert!(
            !matches!(name, "runcache" | "runcache-worker" | "runcache-server"),
            "runcache-cache must not depend on {name}: it sits below the doors and the workers"
        );
    }
    let sources = files(&root().join("cache/src"), ".rs");
    assert!(!sources.is_empty());
    for file in sources {
        let text = fs::read_to_string(&file).unwrap();
        assert!(!code_uses(&text), "{} uses runcache_worker", file.display());
    }
}

#[test]
fn the_cli_and_the_server_never_import_each_other() {
    let manifest = fs::read_to_string(root().join("server/Cargo.toml")).unwrap();
    for line in manifest.lines() {
        let name = line.split(['.', '=', ' ']).next().unwrap_or("");
        assert_ne!(
            name, "runcache",
            "runcache-server must not depend on the CLI crate"
        );
    }
    let sources = files(&root().join("server/src"), ".rs");
    assert!(sources.len() > 3, "found the server's sources");
    for file in sources {
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("runcache::"),
            "{} uses the CLI crate",
            file.display()
        );
    }
    let sources = files(&root().join("producer/src"), ".rs");
    for file in sources {
        if file.ends_with("main.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("runcache_server"),
            "{} uses the server: only main.rs hosts `runcache serve`",
            file.display()
        );
    }
}

#[test]
fn only_tests_and_benchmarks_depend_on_the_test_kit() {
    let mut manifests = files(&root(), "Cargo.toml");
    manifests.retain(|m| m.parent() != Some(root().as_path()));
    assert!(manifests.len() > 5, "found the crates' manifests");
    let mut users = 0;
    for manifest in manifests {
        let crate_dir = manifest.parent().unwrap().strip_prefix(root()).unwrap();
        if crate_dir == Path::new("testkit") || crate_dir == Path::new("benches") {
            continue;
        }
        let text = fs::read_to_string(&manifest).unwrap();
        let mut section = "";
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line;
            } else if line.starts_with("runcache-testkit") {
                users += 1;
                assert_eq!(
                    section,
                    "[dev-dependencies]",
                    "{}: runcache-testkit is for tests only (a dev-dependency)",
                    manifest.display()
                );
            }
        }
    }
    assert!(users > 0, "the check sees the test kit's users");
}

/// Whether `runcache_worker::` appears outside comments.
fn code_uses(text: &str) -> bool {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .any(|l| l.contains("runcache_worker::"))
}

#[test]
fn no_crate_compiles_another_crates_sources() {
    let mut offending = Vec::new();
    for file in files(&root(), ".rs") {
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("#[path") && line.contains("../") {
                offending.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "depend on the crate instead of compiling its files:\n{}",
        offending.join("\n")
    );
}

/// The relative link targets of a markdown text: `](target)` and
/// `[name]: target`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        if let Some(end) = after.find(')') {
            out.push(after[..end].to_string());
        }
        rest = after;
    }
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            if let Some((_, target)) = line.split_once("]: ") {
                out.push(target.trim().to_string());
            }
        }
    }
    out.retain(|t| !t.contains("://") && !t.starts_with('#') && !t.starts_with("mailto:"));
    out
}

/// `base/target` normalised without touching the filesystem.
fn resolve(base: &Path, target: &str) -> PathBuf {
    let target = target.split('#').next().unwrap_or("");
    let mut out = PathBuf::new();
    for c in base.join(target).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn no_document_links_outside_the_repository() {
    let root = root();
    let docs = files(&root, ".md");
    assert!(docs.len() > 5, "found the documentation");
    let mut offending = Vec::new();
    for doc in docs {
        let text = fs::read_to_string(&doc).unwrap();
        for target in link_targets(&text) {
            if target.is_empty() {
                continue;
            }
            let resolved = resolve(doc.parent().unwrap(), &target);
            if !resolved.starts_with(&root) {
                offending.push(format!("{}: {target}", doc.display()));
            } else if !resolved.exists() {
                offending.push(format!("{}: {target} (missing)", doc.display()));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "links that a fresh clone cannot follow:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_link_check_sees_links() {
    let base = Path::new("/repo/docs");
    assert_eq!(
        link_targets("see [a](../b.md) and [c](https://x) and [d](#e)\n[f]: g.md"),
        vec!["../b.md", "g.md"]
    );
    assert_eq!(
        resolve(base, "../../shared/x.md"),
        PathBuf::from("/shared/x.md")
    );
    assert_eq!(
        resolve(base, "./a/../b.md#top"),
        PathBuf::from("/repo/docs/b.md")
    );
}

/// The README's first command (`bash scripts/demo.sh`) builds the local
/// backend only: no AWS SDK crate in what it compiles (#22 item 9).
#[test]
fn the_demo_builds_the_local_default_without_the_aws_sdk() {
    let demo = fs::read_to_string(root().join("scripts/demo.sh")).unwrap();
    let build = demo
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("demo.sh builds with cargo");
    assert!(
        build.contains("--no-default-features") && !build.contains(" -q"),
        "the demo builds without the aws feature and shows cargo's progress: {build}"
    );
    let tree = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "runcache",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        tree.status.success(),
        "{}",
        String::from_utf8_lossy(&tree.stderr)
    );
    let tree = String::from_utf8_lossy(&tree.stdout);
    let aws: Vec<&str> = tree
        .lines()
        .filter(|l| {
            ["aws-sdk-", "aws-config", "aws-smithy"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert!(aws.is_empty(), "the local build pulls in {aws:?}");
    assert!(tree.lines().any(|l| l.starts_with("rusqlite")), "{tree}");
}
