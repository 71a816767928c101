//! Archives are interchangeable with GNU tar + zstd, which is what
//! actions/cache runs: `tar --posix -cf - ... | zstd` and
//! `zstd -d | tar -xPf -`.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};

use common::{noise, set_mode, set_mtime, snapshot, write, Sandbox, Snapshot};

fn tree(sb: &Sandbox) {
    let nm = sb.ws.join("node_modules");
    write(&nm.join("pkg/index.js"), "module.exports = 1;\n");
    write(&nm.join(".bin/run"), "#!/bin/sh\n");
    set_mode(&nm.join(".bin/run"), 0o755);
    write(&nm.join("pkg/data.bin"), noise(3 * 1024 * 1024, 11));
    let long = "n".repeat(70);
    write(&nm.join(format!("{long}/{long}/file.txt")), "long");
    fs::create_dir_all(nm.join("empty")).expect("mkdir");
    symlink("pkg/index.js", nm.join("main.js")).expect("symlink");
    write(&sb.home.join(".npm/_cacache/index"), "npm");
    let mut paths: Vec<_> = snapshot(&sb.root).0.into_keys().collect();
    paths.sort();
    for (i, rel) in paths.iter().enumerate().rev() {
        if rel.starts_with("ws/node_modules") || rel.starts_with("home/.npm") {
            let path = sb.root.join(rel);
            set_mtime(&path, 1_700_000_000 + i as i64, 123_456_789 + i as u32);
        }
    }
}

/// Symlink mtimes are left out: GNU tar's are not part of the contract.
fn comparable(mut snap: Snapshot) -> Snapshot {
    for node in snap.0.values_mut() {
        if node.kind == "symlink" {
            node.mtime = None;
        }
    }
    snap
}

fn sh(script: &str, stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh (needs GNU tar and zstd)");
    let mut child_stdin = child.stdin.take().expect("stdin");
    let input = stdin.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let Some(input) = input {
            child_stdin.write_all(&input).expect("write stdin");
        }
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn gnu_tar_archives_unpack_here() {
    let src = Sandbox::new();
    tree(&src);
    let archive = sh(
        &format!(
            "tar --posix -cf - -C '{}' node_modules | zstd -3 -q -c",
            src.ws.display()
        ),
        None,
    );
    let dst = Sandbox::new();
    dst.unpack(&archive, &["node_modules"])
        .expect("unpack")
        .commit()
        .expect("commit");
    assert_eq!(
        comparable(snapshot(&dst.ws.join("node_modules"))),
        comparable(snapshot(&src.ws.join("node_modules")))
    );
    dst.assert_no_temp_left();
}

#[test]
fn gnu_tar_archives_with_dotdot_names_unpack_here() {
    // What actions/cache does for `~/.npm`: names relative to the workspace,
    // written with -P.
    let src = Sandbox::new();
    tree(&src);
    let archive = sh(
        &format!(
            "cd '{}' && tar --posix -P -cf - ../home/.npm node_modules | zstd -T0 -q -c",
            src.ws.display()
        ),
        None,
    );
    let dst = Sandbox::new();
    dst.unpack(&archive, &["~/.npm", "node_modules"])
        .expect("unpack")
        .commit()
        .expect("commit");
    assert_eq!(
        comparable(snapshot(&dst.home.join(".npm"))),
        comparable(snapshot(&src.home.join(".npm")))
    );
    assert_eq!(
        comparable(snapshot(&dst.ws.join("node_modules"))),
        comparable(snapshot(&src.ws.join("node_modules")))
    );
}

#[test]
fn our_archives_unpack_with_gnu_tar() {
    let src = Sandbox::new();
    tree(&src);
    let (archive, _) = src.create(&["node_modules", "~/.npm"]);
    let dst = Sandbox::new();
    // -P as actions/cache extracts, so `../home/.npm` lands beside the
    // workspace.
    sh(
        &format!("zstd -d -q -c | tar -xPf - -C '{}'", dst.ws.display()),
        Some(&archive),
    );
    assert_eq!(
        comparable(snapshot(&dst.ws.join("node_modules"))),
        comparable(snapshot(&src.ws.join("node_modules")))
    );
    assert_eq!(
        comparable(snapshot(&dst.home.join(".npm"))),
        comparable(snapshot(&src.home.join(".npm")))
    );
    // And GNU tar lists it without complaint.
    let listing = sh("zstd -d -q -c | tar -tvf - 2>&1", Some(&archive));
    assert!(String::from_utf8_lossy(&listing).contains("node_modules/pkg/index.js"));
}
