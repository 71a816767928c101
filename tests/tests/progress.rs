//! What long commands print: a spinner or bar on a terminal (here a pty
//! from util-linux `script`), and one plain summary line when not on one.

use std::process::Command;

use runcache_e2e::binaries;

fn has_terminal_codes(s: &str) -> bool {
    s.contains('\r') || s.contains('\u{1b}')
}

#[test]
fn a_worker_run_once_prints_one_summary_line_off_a_terminal_and_a_spinner_on_one() {
    let home = tempfile::tempdir().unwrap();
    let worker = binaries().join("runcache-worker");
    let out = Command::new(&worker)
        .args(["all", "--once"])
        .env("RUNCACHE_HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let summaries: Vec<&str> = err.lines().filter(|l| l.contains("done in")).collect();
    assert_eq!(summaries.len(), 1, "{err}");
    assert!(summaries[0].contains("1 sweep(s), 0 failed"), "{err}");
    assert!(
        !has_terminal_codes(&err),
        "no spinner off a terminal: {err:?}"
    );

    // On a terminal: the spinner draws (and is cleared), then the line.
    let cmd = format!("{} all --once", worker.display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("RUNCACHE_HOME", home.path())
        .output()
        .expect("util-linux `script` runs the worker on a pty (apt-get install bsdutils)");
    assert!(out.status.success());
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("draining the queues and sweeping"), "{tty:?}");
    assert!(tty.contains("done in"), "{tty:?}");
}

#[test]
fn admin_verify_off_a_terminal_prints_its_summary_and_no_progress_codes() {
    let home = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let runcache = binaries().join("runcache");
    std::fs::write(ws.path().join("f"), b"x").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&runcache)
            .args(args)
            .current_dir(ws.path())
            .env("RUNCACHE_HOME", home.path())
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    };
    run(&[
        "save",
        "--key",
        "k",
        "--path",
        "f",
        "--repository",
        "acme/app",
    ]);
    let out = run(&["admin", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("checked 1 objects"), "{stdout}");
    assert!(!has_terminal_codes(&stdout) && !has_terminal_codes(&stderr));
    let out = run(&[
        "get",
        "--key",
        "k",
        "--repository",
        "acme/app",
        "--archive",
        "k.tzst",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("wrote")).count(),
        1,
        "{stderr}"
    );
    assert!(!has_terminal_codes(&stderr), "{stderr:?}");
}
