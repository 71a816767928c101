//! The GitHub Actions wrappers in `actions/` (the composite restore-cache and
//! save-cache against a stub, and the one-step `actions/cache` JavaScript
//! action against this very binary), run by `cargo test` so that the
//! README's test command covers them. Needs bash and node 20+.

#[test]
fn the_actions_pass_their_tests_with_this_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .arg(root.join("actions/test.sh"))
        .env("RUNCACHE_BIN", env!("CARGO_BIN_EXE_runcache"))
        .current_dir(&root)
        .output()
        .expect("bash runs actions/test.sh");
    assert!(
        out.status.success(),
        "actions/test.sh failed (node 20+ is needed: apt-get install nodejs):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
