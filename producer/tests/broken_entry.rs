//! An entry every restore refuses can be found, explained and removed
//! (#22 item 3), through the binary on the local backend: its CAS blob is
//! corrupted; explain says the hit cannot restore; `admin delete` removes
//! the entry and the corrupt blob (audited); the next save of the same
//! content stores fresh bytes and restores.

use std::{fs, os::unix::fs::PermissionsExt};

mod common;

use common::{ok, stderr, Sandbox, MAIN};

#[test]
fn a_corrupt_entry_is_explained_deleted_and_saved_again() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/app.js"), b"console.log(1)").unwrap();
    let saved: serde_json::Value = serde_json::from_str(&ok(
        &s.run(&["save", "--key", "k", "--path", "dist", "--json"], MAIN)
    ))
    .unwrap();
    let hash = saved["contentHash"].as_str().unwrap().to_string();
    let hex = hash.trim_start_matches("sha256:");
    let blob = s.home().join("blobs/artifacts").join(hex);
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&blob, b"bit rot").unwrap();

    // Every restore refuses it (a warning and a miss, never a failed build).
    fs::remove_dir_all(s.ws().join("dist")).unwrap();
    let restore = ["restore", "--key", "k", "--path", "dist"];
    let out = s.run(&restore, MAIN);
    ok(&out);
    assert!(!s.ws().join("dist").exists());
    // Explain says the hit cannot restore, and what to do.
    let x: serde_json::Value = serde_json::from_str(&ok(
        &s.run(&["explain", "--key", "k", "--path", "dist", "--json"], MAIN)
    ))
    .unwrap();
    let summary = x["summary"].as_str().unwrap();
    assert!(
        summary.contains("cannot restore") && summary.contains("runcache admin delete k"),
        "{summary}"
    );
    let finding = x["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "unrestorable")
        .unwrap_or_else(|| panic!("no unrestorable finding: {x}"));
    assert!(
        finding["reason"].as_str().unwrap().contains("corrupt"),
        "{finding}"
    );

    // A key that is not there is an error that says where to look.
    let none = s.run(&["admin", "delete", "nope", "--reason", "x"], MAIN);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("admin ls"), "{}", stderr(&none));

    let deleted = ok(&s.run(&["admin", "delete", "k", "--reason", "corrupt blob"], MAIN));
    assert!(deleted.contains("applied"), "{deleted}");
    assert!(!blob.exists(), "the corrupt blob is removed");
    let ls = ok(&s.run(&["admin", "ls"], MAIN));
    assert!(ls.contains("invalidated") && ls.contains(" k"), "{ls}");

    // The same content saved again is stored afresh and restores.
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/app.js"), b"console.log(1)").unwrap();
    ok(&s.run(&["save", "--key", "k", "--path", "dist"], MAIN));
    fs::remove_dir_all(s.ws().join("dist")).unwrap();
    let out = ok(&s.run(&restore, MAIN));
    assert!(out.contains("cache-hit=true"), "{out}");
    assert_eq!(
        fs::read(s.ws().join("dist/app.js")).unwrap(),
        b"console.log(1)"
    );
    // And explain now has nothing against it.
    let x = ok(&s.run(&["explain", "--key", "k", "--path", "dist"], MAIN));
    assert!(!x.contains("cannot restore"), "{x}");
}
