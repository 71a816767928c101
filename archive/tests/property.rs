//! Property: whatever the entry names, kinds and link targets, extraction
//! never writes outside the declared roots, and every symlink it leaves
//! points inside the workspace or a root.

mod common;

use std::path::{Path, PathBuf};

use common::{write, RawTar, Sandbox, Snapshot};
use proptest::prelude::*;
use runcache_archive::ArchiveError;

#[derive(Debug, Clone)]
enum Kind {
    File,
    Dir,
    Symlink(String),
    HardLink(String),
}

fn component() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "c",
        "a",
        "b",
        "c",
        "a",
        "b",
        "c",
        "..",
        ".",
        "",
        "outside",
        "ws",
        "node_modules",
        ".npm",
    ])
}

/// Names mostly under a root (so that many archives are accepted and
/// committed), built from awkward components, sometimes absolute. `@` stands
/// for the sandbox path, which is not known up front.
fn name() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "node_modules/",
            "node_modules/",
            "node_modules/",
            "node_modules/",
            "node_modules/",
            "node_modules/",
            "../home/.npm/",
            "../home/.npm/",
            "@/ws/node_modules/",
            "",
            "/",
            "@/",
        ]),
        prop::collection::vec(component(), 1..5),
    )
        .prop_map(|(prefix, parts)| format!("{prefix}{}", parts.join("/")))
}

fn entry() -> impl Strategy<Value = (String, Kind)> {
    let kind = prop_oneof![
        3 => Just(Kind::File),
        2 => Just(Kind::Dir),
        2 => (name(), prop::sample::select(vec!["", "../", "../../", "../../../"]))
            .prop_map(|(target, up)| Kind::Symlink(format!("{up}{target}"))),
        2 => prop::sample::select(vec![".", "..", "../..", "../src", "../../outside", "a", "/"])
            .prop_map(|target| Kind::Symlink(target.to_string())),
        1 => name().prop_map(Kind::HardLink),
    ];
    (name(), kind)
}

fn is_under_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn extraction_never_writes_outside_the_declared_roots(
        entries in prop::collection::vec(entry(), 1..8)
    ) {
        let sb = Sandbox::new();
        write(&sb.ws.join("node_modules/keep.txt"), "existing");
        write(&sb.ws.join("src/main.rs"), "fn main() {}");
        let prefix = sb.root.display().to_string();
        let fill = |s: &str| s.replace('@', &prefix);

        let mut tar = RawTar::new();
        for (name, kind) in &entries {
            let name = fill(name);
            if name.len() > 100 { continue; }
            tar = match kind {
                Kind::File => tar.file(name.as_bytes(), b"data"),
                Kind::Dir => tar.dir(name.as_bytes()),
                Kind::Symlink(target) if fill(target).len() <= 100 => {
                    tar.symlink(name.as_bytes(), fill(target).as_bytes())
                }
                Kind::HardLink(target) if fill(target).len() <= 100 => {
                    tar.hardlink(name.as_bytes(), fill(target).as_bytes())
                }
                _ => tar,
            };
        }
        let archive = tar.zstd();
        let before = sb.snapshot();
        let roots = vec![sb.ws.join("node_modules"), sb.home.join(".npm")];

        // Twice: the second restore meets the links the first one left at
        // the destination, and must not write through them either.
        for _ in 0..2 {
            let ready = sb.snapshot();
            match sb.unpack(&archive, &["node_modules", "~/.npm"]) {
                Ok(extraction) => {
                    // Before commit nothing changed but the temporary directory.
                    prop_assert_eq!(&without_temp(sb.snapshot()), &ready);
                    extraction.commit().map_err(|e| TestCaseError::fail(format!("commit: {e}")))?;
                }
                Err(ArchiveError::UnsafeEntry { .. } | ArchiveError::UnsafeDestination { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error: {}", other),
            }
            sb.assert_no_temp_left();
        }

        let after = sb.snapshot();
        for (rel, node) in &after.0 {
            let abs = sb.root.join(rel);
            if is_under_any(&abs, &roots) {
                // Links may point anywhere (they are only names); what is
                // checked is that nothing outside the roots changed.
                continue;
            }
            // Outside the roots: as before (only a root's parent directory
            // may have a new mtime, from the root moved into it).
            let old = before.0.get(rel);
            prop_assert!(old.is_some(), "{} was created outside the roots", abs.display());
            let (mut old, mut new) = (old.cloned().unwrap_or_else(|| node.clone()), node.clone());
            if roots.iter().any(|root| root.parent() == Some(abs.as_path())) {
                old.mtime = None;
                new.mtime = None;
            }
            prop_assert_eq!(old, new, "{} changed", abs.display());
        }
        for rel in before.0.keys() {
            let abs = sb.root.join(rel);
            if !is_under_any(&abs, &roots) {
                prop_assert!(after.0.contains_key(rel), "{} vanished", abs.display());
            }
        }
    }
}

/// Leaves out the temporary extraction directory.
fn without_temp(mut snap: Snapshot) -> Snapshot {
    snap.0.retain(|rel, _| {
        let first_in_ws = rel.strip_prefix("ws").ok().and_then(|r| r.iter().next());
        !first_in_ws.is_some_and(|c| c.to_string_lossy().starts_with(".runcache-extract-"))
    });
    snap
}
