//! create -> unpack -> commit gives back the same tree; create is
//! deterministic; commit and discard behave as documented.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{noise, set_mode, set_mtime, sha256_hex, snapshot, write, RawTar, Sandbox};
use runcache_archive::{ArchiveError, ArchiveOptions};

/// A tree exercising everything an archive must keep.
fn build_tree(sb: &Sandbox) {
    let nm = sb.ws.join("node_modules");
    write(&nm.join("a/b/c/deep.txt"), "deep");
    write(&nm.join("pkg/index.js"), "module.exports = 1;\n");
    write(&nm.join(".bin/tool"), "#!/bin/sh\necho hi\n");
    set_mode(&nm.join(".bin/tool"), 0o755);
    write(&nm.join("readonly.txt"), "ro");
    set_mode(&nm.join("readonly.txt"), 0o444);
    write(&nm.join("big.bin"), noise(9 * 1024 * 1024 + 123, 7));
    write(&nm.join("empty-file"), "");
    fs::create_dir_all(nm.join("empty/dir")).expect("mkdir");
    let long = "x".repeat(60);
    write(&nm.join(format!("{long}/{long}/{long}.txt")), "long name");
    symlink("a/b", nm.join("link")).expect("symlink");
    symlink(
        format!("{long}/{long}/{long}/{long}.txt"),
        nm.join("long-link"),
    )
    .expect("symlink");
    write(&sb.home.join(".npm/_cacache/index"), "npm cache");
    // Names are bytes, not necessarily UTF-8.
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff-name");
    write(&nm.join(odd), "odd");

    // Mtimes last, deepest first, so directories keep theirs.
    let mut paths: Vec<_> = snapshot(&sb.root).0.into_keys().collect();
    paths.sort();
    for (i, rel) in paths.iter().enumerate().rev() {
        if rel.starts_with("ws/node_modules") || rel.starts_with("home/.npm") {
            set_mtime(
                &sb.root.join(rel),
                1_650_000_000 + i as i64,
                (i as u32 * 7919) % 1_000_000_000,
            );
        }
    }
    set_mode(&nm.join("empty"), 0o700);
}

#[test]
fn round_trip_keeps_contents_modes_mtimes_and_symlinks() {
    let src = Sandbox::new();
    build_tree(&src);
    let (archive, summary) = src.create(&["node_modules", "~/.npm"]);
    assert_eq!(summary.sha256_hex, sha256_hex(&archive));
    assert_eq!(summary.compressed_bytes, archive.len() as u64);
    assert!(summary.uncompressed_bytes > 9 * 1024 * 1024);

    let dst = Sandbox::new();
    let extraction = dst
        .unpack(&archive, &["node_modules", "~/.npm"])
        .expect("unpack");
    assert_eq!(extraction.summary().sha256_hex, summary.sha256_hex);
    assert_eq!(
        extraction.summary().compressed_bytes,
        summary.compressed_bytes
    );
    assert_eq!(
        extraction.summary().unpacked_bytes,
        summary.uncompressed_bytes
    );
    assert_eq!(extraction.summary().entries, summary.entries);
    // Nothing in place before commit.
    assert!(!dst.ws.join("node_modules").exists());
    assert!(!dst.home.join(".npm").exists());
    extraction
        .commit_verified(&summary.sha256_hex)
        .expect("commit");

    assert_eq!(
        snapshot(&dst.ws.join("node_modules")),
        snapshot(&src.ws.join("node_modules"))
    );
    assert_eq!(
        snapshot(&dst.home.join(".npm")),
        snapshot(&src.home.join(".npm"))
    );
    assert_eq!(
        fs::read(dst.ws.join("node_modules/big.bin")).expect("read"),
        fs::read(src.ws.join("node_modules/big.bin")).expect("read")
    );
    dst.assert_no_temp_left();
}

#[test]
fn names_are_relative_to_the_workspace_as_actions_cache_writes_them() {
    let sb = Sandbox::new();
    write(&sb.ws.join("node_modules/x"), "x");
    write(&sb.home.join(".npm/y"), "y");
    let (archive, _) = sb.create(&["node_modules", "~/.npm"]);
    let tar = zstd::decode_all(&archive[..]).expect("zstd");
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .expect("entries")
        .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "../home/.npm/",
            "../home/.npm/y",
            "node_modules/",
            "node_modules/x"
        ]
    );
}

#[test]
fn create_is_deterministic() {
    let sb = Sandbox::new();
    build_tree(&sb);
    let (first, a) = sb.create(&["node_modules", "~/.npm"]);
    let (second, b) = sb.create(&["node_modules", "~/.npm"]);
    assert_eq!(a, b);
    assert_eq!(first, second);

    // The output does not depend on the number of zstd workers.
    let names = runcache_archive::resolve_paths_with_home(
        &common::strings(&["node_modules"]),
        &sb.ws,
        Some(&sb.home),
    )
    .expect("resolve");
    let with_workers = |zstd_workers| {
        let mut out = Vec::new();
        let opts = ArchiveOptions {
            zstd_level: 3,
            zstd_workers,
            progress: None,
        };
        runcache_archive::create_from_paths(&names, &sb.ws, &mut out, &opts).expect("create");
        out
    };
    assert_eq!(with_workers(1), with_workers(2));
}

#[test]
fn create_with_patterns_resolves_against_the_workspace() {
    let sb = Sandbox::new();
    write(&sb.ws.join("dist/app.js"), "app");
    let mut out = Vec::new();
    let summary = runcache_archive::create(
        &common::strings(&["dist"]),
        &sb.ws,
        &mut out,
        &ArchiveOptions::default(),
    )
    .expect("create");
    assert_eq!(summary.entries, 2);
    assert_eq!(summary.sha256_hex, sha256_hex(&out));

    let err = runcache_archive::create(
        &common::strings(&["missing"]),
        &sb.ws,
        &mut Vec::new(),
        &ArchiveOptions::default(),
    )
    .expect_err("nothing matches");
    assert!(matches!(err, ArchiveError::NoMatch { .. }), "{err}");
}

#[test]
fn commit_replaces_files_and_merges_directories() {
    let src = Sandbox::new();
    write(&src.ws.join("node_modules/a/new.txt"), "new");
    write(&src.ws.join("node_modules/a/changed.txt"), "from cache");
    write(&src.ws.join("node_modules/was-a-symlink"), "file now");
    let (archive, summary) = src.create(&["node_modules"]);

    let dst = Sandbox::new();
    write(&dst.ws.join("node_modules/a/changed.txt"), "local");
    write(&dst.ws.join("node_modules/a/local-only.txt"), "kept");
    write(&dst.ws.join("node_modules/other/kept.txt"), "kept");
    symlink("../../outside", dst.ws.join("node_modules/was-a-symlink")).expect("symlink");

    dst.unpack(&archive, &["node_modules"])
        .expect("unpack")
        .commit_verified(&summary.sha256_hex)
        .expect("commit");
    let read = |p: &str| fs::read_to_string(dst.ws.join(p)).expect("read");
    assert_eq!(read("node_modules/a/new.txt"), "new");
    assert_eq!(read("node_modules/a/changed.txt"), "from cache");
    assert_eq!(read("node_modules/a/local-only.txt"), "kept");
    assert_eq!(read("node_modules/other/kept.txt"), "kept");
    // The symlink itself was replaced; its old target is untouched.
    assert!(
        !fs::symlink_metadata(dst.ws.join("node_modules/was-a-symlink"))
            .expect("lstat")
            .is_symlink()
    );
    assert_eq!(read("node_modules/was-a-symlink"), "file now");
    assert_eq!(
        fs::read_to_string(dst.outside.join("sentinel.txt")).expect("sentinel"),
        "do not touch"
    );
    dst.assert_no_temp_left();
}

#[test]
fn hash_mismatch_leaves_targets_untouched() {
    let src = Sandbox::new();
    write(&src.ws.join("node_modules/a.txt"), "cached");
    let (archive, _) = src.create(&["node_modules"]);

    let dst = Sandbox::new();
    write(&dst.ws.join("node_modules/a.txt"), "local");
    let before = dst.snapshot();

    let wrong = "0".repeat(64);
    let extraction = dst.unpack(&archive, &["node_modules"]).expect("unpack");
    assert_ne!(extraction.summary().sha256_hex, wrong);
    let err = extraction.verify(&wrong).expect_err("mismatch");
    assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err}");
    extraction.discard().expect("discard");
    assert_eq!(dst.snapshot(), before);
    dst.assert_no_temp_left();

    let err = dst
        .unpack(&archive, &["node_modules"])
        .expect("unpack")
        .commit_verified(&wrong)
        .expect_err("mismatch");
    assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err}");
    assert_eq!(dst.snapshot(), before);
    dst.assert_no_temp_left();

    // Dropping without committing is a discard too.
    drop(dst.unpack(&archive, &["node_modules"]).expect("unpack"));
    assert_eq!(dst.snapshot(), before);
    dst.assert_no_temp_left();
}

#[test]
fn the_hash_covers_every_input_byte() {
    let src = Sandbox::new();
    write(&src.ws.join("node_modules/a.txt"), "cached");
    let (mut archive, summary) = src.create(&["node_modules"]);
    // A second zstd frame after the archive: still read and hashed, so the
    // hash differs from the archive's and the caller refuses it.
    archive.extend(zstd::encode_all(&[0u8; 16][..], 3).expect("zstd"));
    let dst = Sandbox::new();
    let extraction = dst.unpack(&archive, &["node_modules"]).expect("unpack");
    assert_eq!(extraction.summary().compressed_bytes, archive.len() as u64);
    assert_eq!(extraction.summary().sha256_hex, sha256_hex(&archive));
    assert_ne!(extraction.summary().sha256_hex, summary.sha256_hex);
}

#[test]
fn corrupt_and_truncated_archives_are_refused_cleanly() {
    let src = Sandbox::new();
    write(&src.ws.join("node_modules/a.txt"), noise(100_000, 3));
    let (archive, _) = src.create(&["node_modules"]);
    let dst = Sandbox::new();
    let before = dst.snapshot();
    for broken in [
        archive[..archive.len() / 2].to_vec(),
        b"not zstd at all".to_vec(),
        zstd::encode_all(&b"not a tar archive, just some text"[..], 3).expect("zstd"),
        zstd::encode_all(&[0u8; 100][..], 3).expect("zstd"), // truncated header
    ] {
        let err = dst.unpack(&broken, &["node_modules"]).expect_err("corrupt");
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
        assert_eq!(dst.snapshot(), before);
        dst.assert_no_temp_left();
    }
}

#[test]
fn a_failing_input_stream_is_an_input_error() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ))
        }
    }
    let dst = Sandbox::new();
    let err = runcache_archive::Extraction::unpack_with_home(
        Failing,
        &dst.ws,
        Some(&dst.home),
        &common::strings(&["node_modules"]),
        &Default::default(),
    )
    .expect_err("input fails");
    assert!(matches!(err, ArchiveError::Input { .. }), "{err}");
    dst.assert_no_temp_left();
}

#[test]
fn workspace_pattern_round_trips() {
    let src = Sandbox::new();
    write(&src.ws.join("a/b.txt"), "b");
    write(&src.ws.join("c.txt"), "c");
    let (archive, summary) = src.create(&["."]);
    let dst = Sandbox::new();
    dst.unpack(&archive, &["."])
        .expect("unpack")
        .commit_verified(&summary.sha256_hex)
        .expect("commit");
    assert_eq!(
        fs::read_to_string(dst.ws.join("a/b.txt")).expect("read"),
        "b"
    );
    assert_eq!(fs::read_to_string(dst.ws.join("c.txt")).expect("read"), "c");
    dst.assert_no_temp_left();
    assert!(Path::new(&dst.outside.join("sentinel.txt")).exists());
}

#[test]
fn an_extraction_can_move_between_threads() {
    // The producer unpacks in a blocking task and commits after an await.
    fn assert_send<T: Send>() {}
    assert_send::<runcache_archive::Extraction>();
    assert_send::<ArchiveError>();
}

#[test]
fn roots_on_another_filesystem_are_copied_into_place() {
    // /dev/shm is a tmpfs where there is one, so `~/.npm` there cannot be
    // renamed from the temporary directory in the workspace; elsewhere this
    // is an ordinary restore and must work all the same.
    let shm = Path::new("/dev/shm");
    let other_fs = if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        tempfile::tempdir().expect("tempdir")
    };
    let home = other_fs.path().join("home");
    let npm = home.join(".npm");
    write(&npm.join("a/b.txt"), "b");
    fs::create_dir_all(npm.join("empty")).expect("mkdir");
    symlink("a/b.txt", npm.join("link")).expect("symlink");
    set_mode(&npm.join("a/b.txt"), 0o640);
    set_mtime(&npm.join("a/b.txt"), 1_600_000_000, 42);
    set_mtime(&npm.join("a"), 1_600_000_001, 43);

    let src = Sandbox::new();
    write(&src.ws.join("node_modules/x"), "x");
    let patterns = common::strings(&["~/.npm", "node_modules"]);
    let names = runcache_archive::resolve_paths_with_home(&patterns, &src.ws, Some(&home))
        .expect("resolve");
    let mut archive = Vec::new();
    runcache_archive::create_from_paths(&names, &src.ws, &mut archive, &ArchiveOptions::default())
        .expect("create");

    // Restore into a fresh workspace at the same depth, so the `../` names
    // land on the same ~/.npm; put an old file in the way first.
    let expected = snapshot(&npm);
    fs::remove_dir_all(&npm).expect("clear ~/.npm");
    write(&npm.join("a/b.txt"), "old");
    let dst = Sandbox::new();
    runcache_archive::Extraction::unpack_with_home(
        &archive[..],
        &dst.ws,
        Some(&home),
        &patterns,
        &Default::default(),
    )
    .expect("unpack")
    .commit()
    .expect("commit across filesystems");
    assert_eq!(snapshot(&npm), expected);
    assert_eq!(
        fs::read_to_string(dst.ws.join("node_modules/x")).expect("read"),
        "x"
    );
    dst.assert_no_temp_left();
    let stray: Vec<_> = fs::read_dir(npm.join("a"))
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with(".runcache"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// A later entry of the same name replaces a whole directory tree in the
/// temporary tree; commit must then not apply the replaced directories'
/// modes through what is there now (here a symlink to a sibling), while a
/// directory that merely shares a name prefix keeps its own.
#[test]
fn an_entry_replacing_a_directory_tree_drops_its_directories_metadata() {
    use std::os::unix::fs::PermissionsExt;
    let mut tar = RawTar::new()
        .dir(b"node_modules/")
        .dir(b"node_modules/other/")
        .dir(b"node_modules/other/sub/")
        .dir(b"node_modules/d/");
    tar.push(
        b"node_modules/d/sub/",
        tar::EntryType::Directory,
        b"",
        b"",
        0o700,
    );
    tar.push(
        b"node_modules/d-x/",
        tar::EntryType::Directory,
        b"",
        b"",
        0o700,
    );
    let archive = tar.symlink(b"node_modules/d", b"other").zstd();
    let dst = Sandbox::new();
    dst.unpack(&archive, &["node_modules"])
        .expect("unpack")
        .commit_verified(&sha256_hex(&archive))
        .expect("commit");
    let mode = |p: &str| {
        fs::symlink_metadata(dst.ws.join(p))
            .expect("lstat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert!(fs::symlink_metadata(dst.ws.join("node_modules/d"))
        .expect("lstat")
        .is_symlink());
    assert_eq!(
        mode("node_modules/other/sub"),
        0o755,
        "d/sub's mode went through the symlink"
    );
    assert_eq!(
        mode("node_modules/d-x"),
        0o700,
        "a prefix sibling keeps its mode"
    );
    dst.assert_no_temp_left();
}

/// A file with several names is stored once (later names are tar hard-link
/// entries) and restored as one file with as many names, as tar does.
#[test]
fn hard_links_are_stored_once_and_restored_with_their_link_count() {
    use std::os::unix::fs::MetadataExt;
    let src = Sandbox::new();
    let lib = src.ws.join("lib");
    let big = noise(1 << 20, 7);
    fs::create_dir_all(lib.join("drivers")).expect("mkdir");
    fs::write(lib.join("drivers/a.so"), &big).expect("write");
    for name in ["b.so", "c.so", "drivers/d.so"] {
        fs::hard_link(lib.join("drivers/a.so"), lib.join(name)).expect("link");
    }
    let (archive, summary) = src.create(&["lib"]);
    assert!(
        summary.uncompressed_bytes < (big.len() as u64) * 3 / 2,
        "the 1 MiB file is in the tar once: {} bytes of tar",
        summary.uncompressed_bytes
    );

    let dst = Sandbox::new();
    dst.unpack(&archive, &["lib"])
        .expect("unpack")
        .commit_verified(&summary.sha256_hex)
        .expect("commit");
    let inode = |p: &str| fs::metadata(dst.ws.join(p)).expect("stat").ino();
    let meta = fs::metadata(dst.ws.join("lib/b.so")).expect("stat");
    assert_eq!(meta.nlink(), 4, "one file with four names");
    for name in ["lib/c.so", "lib/drivers/a.so", "lib/drivers/d.so"] {
        assert_eq!(inode(name), meta.ino(), "{name}");
    }
    assert_eq!(
        fs::read(dst.ws.join("lib/drivers/d.so")).expect("read"),
        big
    );
    // GNU tar reads the same archive the same way.
    let out = dst.root.join("by-tar");
    fs::create_dir_all(&out).expect("mkdir");
    let tar = std::process::Command::new("tar")
        .args(["--zstd", "-xf", "-", "-C"])
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&archive)?;
            child.wait()
        })
        .expect("tar runs (apt-get install tar zstd)");
    assert!(tar.success());
    assert_eq!(
        fs::metadata(out.join("lib/drivers/d.so"))
            .expect("stat")
            .nlink(),
        4
    );
}
