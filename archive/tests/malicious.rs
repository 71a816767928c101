//! Every escape the safety rules name, as a hand-made archive. Each asserts
//! the error kind, that nothing changed anywhere in the sandbox (the
//! sentinel outside, the targets), and that no temporary directory is left.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{pax_record, write, RawTar, Sandbox};
use runcache_archive::{ArchiveError, ExtractLimits, Limit};
use tar::EntryType;

/// A sandbox whose workspace already holds a restore target.
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    write(&sb.ws.join("node_modules/keep.txt"), "existing target");
    write(&sb.ws.join("src/main.rs"), "fn main() {}");
    sb
}

/// Unpacks `archive` for `patterns` and asserts that it fails without a
/// trace; returns the error.
fn refused(
    sb: &Sandbox,
    archive: &[u8],
    patterns: &[&str],
    limits: &ExtractLimits,
) -> ArchiveError {
    let before = sb.snapshot();
    let err = sb
        .unpack_limited(archive, patterns, limits)
        .expect_err("the archive must be refused");
    assert_eq!(sb.snapshot(), before, "the sandbox changed: {err}");
    sb.assert_no_temp_left();
    assert_eq!(
        fs::read_to_string(sb.outside.join("sentinel.txt")).expect("sentinel"),
        "do not touch"
    );
    assert_eq!(fs::read_dir(&sb.outside).expect("outside").count(), 1);
    err
}

fn assert_unsafe(err: &ArchiveError, needle: &str) {
    match err {
        ArchiveError::UnsafeEntry { reason, .. } => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            )
        }
        other => panic!("expected UnsafeEntry, got {other:?}"),
    }
}

/// Refused because of what is at the destination, not the archive.
fn destination_refused(sb: &Sandbox, archive: RawTar, patterns: &[&str], needle: &str) {
    let err = refused(sb, &archive.zstd(), patterns, &ExtractLimits::default());
    match &err {
        ArchiveError::UnsafeDestination { reason, .. } => assert!(
            reason.contains(needle),
            "reason {reason:?} lacks {needle:?}"
        ),
        other => panic!("expected UnsafeDestination, got {other:?}"),
    }
    assert!(err.to_string().contains("the cache entry is fine"), "{err}");
}

fn unsafe_for(sb: &Sandbox, archive: RawTar, needle: &str) {
    let err = refused(
        sb,
        &archive.zstd(),
        &["node_modules"],
        &ExtractLimits::default(),
    );
    assert_unsafe(&err, needle);
}

/// A valid entry first, so a refusal must also undo earlier work.
fn tar() -> RawTar {
    RawTar::new()
        .dir(b"node_modules/")
        .file(b"node_modules/ok.txt", b"fine")
}

#[test]
fn dotdot_names_are_refused() {
    let sb = sandbox();
    unsafe_for(
        &sb,
        tar().file(b"node_modules/../../outside/evil", b"x"),
        "outside every declared path",
    );
    unsafe_for(
        &sb,
        tar().file(b"../outside/evil", b"x"),
        "outside every declared path",
    );
    unsafe_for(
        &sb,
        tar().file(b"node_modules/../src/main.rs", b"x"),
        "outside every declared path",
    );
    unsafe_for(
        &sb,
        tar().file(b"../../../../../../../../etc/runcache-evil", b"x"),
        "outside",
    );
    // A sibling sharing the root's name as a prefix is not inside it.
    unsafe_for(
        &sb,
        tar().file(b"node_modules_evil/x", b"x"),
        "outside every declared path",
    );
}

#[test]
fn absolute_names_are_refused() {
    let sb = sandbox();
    let evil = sb.outside.join("evil");
    unsafe_for(
        &sb,
        tar().file(evil.to_str().expect("utf-8").as_bytes(), b"x"),
        "outside",
    );
    unsafe_for(
        &sb,
        tar().file(b"/etc/runcache-evil", b"x"),
        "outside every declared path",
    );
}

#[test]
fn long_names_in_pax_headers_are_checked_too() {
    let sb = sandbox();
    let name = format!(
        "node_modules/{}{}outside/evil",
        "a/".repeat(60),
        "../".repeat(62)
    );
    let archive = tar()
        .pax(&pax_record("path", name.as_bytes()))
        .file(b"innocent", b"x");
    unsafe_for(&sb, archive, "outside every declared path");
}

#[test]
fn writing_through_a_symlink_made_by_an_earlier_entry_is_refused() {
    let sb = sandbox();
    // The link itself is allowed (it points inside the workspace)...
    let archive = tar()
        .symlink(b"node_modules/a", b"../src")
        .file(b"node_modules/a/main.rs", b"overwritten through the link");
    unsafe_for(&sb, archive, "symlink");
    let archive = tar()
        .symlink(b"node_modules/self", b".")
        .file(b"node_modules/self/self/x", b"x");
    unsafe_for(&sb, archive, "symlink");
    // ... and so is a directory entry through it.
    let archive = tar()
        .symlink(b"node_modules/a", b"../src")
        .dir(b"node_modules/a/sub/");
    unsafe_for(&sb, archive, "symlink");
    // A root made a symlink, then written through.
    let archive = RawTar::new()
        .symlink(b"cache", b"src")
        .file(b"cache/main.rs", b"x");
    let err = refused(&sb, &archive.zstd(), &["cache"], &ExtractLimits::default());
    assert_unsafe(&err, "symlink");
}

#[test]
fn writing_through_a_symlink_at_the_destination_is_refused() {
    let sb = sandbox();
    symlink("../../outside", sb.ws.join("node_modules/sub")).expect("symlink");
    destination_refused(
        &sb,
        tar().file(b"node_modules/sub/evil", b"x"),
        &["node_modules"],
        "symlink at the destination",
    );
    destination_refused(
        &sb,
        tar().dir(b"node_modules/sub/"),
        &["node_modules"],
        "symlink at the destination",
    );
}

/// A declared path inside the workspace whose parent is a symlink
/// (`build -> ../outside` for a declared `build/out`) is refused before
/// anything is unpacked: restoring would write through the link.
#[test]
fn a_parent_of_a_declared_path_that_is_a_symlink_is_refused() {
    let sb = sandbox();
    symlink("../outside", sb.ws.join("build")).expect("symlink");
    destination_refused(
        &sb,
        RawTar::new()
            .dir(b"build/out/")
            .file(b"build/out/a.o", b"obj"),
        &["build/out"],
        "above the declared path",
    );
}

/// A declared path that is itself a symlink to a directory elsewhere is
/// replaced by the restored directory, as GNU tar does with a directory
/// entry: the link goes, what it pointed to is untouched.
#[test]
fn a_declared_path_that_is_a_symlink_is_replaced_not_written_through() {
    let sb = sandbox();
    fs::create_dir(sb.outside.join("cache")).expect("mkdir");
    symlink(sb.outside.join("cache"), sb.ws.join("out")).expect("symlink");
    let summary = sb
        .unpack(
            &RawTar::new().dir(b"out/").file(b"out/a.o", b"obj").zstd(),
            &["out"],
        )
        .expect("unpack")
        .commit()
        .expect("commit");
    assert_eq!(summary.replaced_symlinks, vec![sb.ws.join("out")]);
    let meta = fs::symlink_metadata(sb.ws.join("out")).expect("out");
    assert!(meta.is_dir(), "the link was replaced by a directory");
    assert_eq!(fs::read(sb.ws.join("out/a.o")).expect("a.o"), b"obj");
    assert_eq!(
        fs::read_dir(sb.outside.join("cache"))
            .expect("cache")
            .count(),
        0,
        "nothing was written where the link pointed"
    );
}

/// Above a declared path outside the workspace, directories are the
/// machine's layout: a runner whose `~/.cache` links to a larger disk gets
/// its cache restored there.
#[test]
fn links_above_a_declared_path_outside_the_workspace_are_the_machines() {
    let sb = sandbox();
    let disk = sb.root.join("disk");
    fs::create_dir(&disk).expect("mkdir");
    symlink(&disk, sb.home.join(".cache")).expect("symlink");
    let archive = RawTar::new()
        .dir(b"../home/.cache/pip/")
        .file(b"../home/.cache/pip/wheel", b"whl")
        .zstd();
    sb.unpack(&archive, &["~/.cache/pip"])
        .expect("unpack")
        .commit()
        .expect("commit");
    assert_eq!(fs::read(disk.join("pip/wheel")).expect("wheel"), b"whl");
}

/// A symlink entry is only a name: restoring one writes nothing where it
/// points, so links to anywhere are restored as they were saved (as tar
/// does); what must never happen is writing *through* one, by a later entry
/// of the same archive, a later restore or a hard link.
#[test]
fn symlinks_pointing_anywhere_are_restored_as_links_and_never_written_through() {
    let sb = sandbox();
    let targets: [(&[u8], &[u8]); 5] = [
        (b"node_modules/etc", b"/etc"),
        (b"node_modules/up", b"../../outside"),
        (b"node_modules/far", b"../../../../../../../../../tmp"),
        (b"node_modules/d", b"."),
        (b"node_modules/e", b"d/../../outside"),
    ];
    let mut archive = tar();
    for (name, target) in targets {
        archive = archive.symlink(name, target);
    }
    sb.unpack(&archive.zstd(), &["node_modules"])
        .expect("links are names")
        .commit()
        .expect("commit");
    for (name, target) in targets {
        let link = fs::read_link(sb.ws.join(std::str::from_utf8(name).unwrap())).expect("a link");
        assert_eq!(link.as_os_str().as_encoded_bytes(), target);
    }
    assert_eq!(fs::read_dir(&sb.outside).expect("outside").count(), 1);
    // Through a link made by an earlier entry of the same archive...
    let through = |name: &[u8]| {
        tar()
            .symlink(b"node_modules/x", b"../../outside")
            .file(name, b"evil")
    };
    unsafe_for(&sb, through(b"node_modules/x/evil"), "symlink");
    // ... through one a previous restore left at the destination...
    destination_refused(
        &sb,
        tar().file(b"node_modules/up/evil", b"x"),
        &["node_modules"],
        "symlink at the destination",
    );
    destination_refused(
        &sb,
        tar().dir(b"node_modules/e/sub/"),
        &["node_modules"],
        "symlink at the destination",
    );
    // ... or by hard-linking to a link.
    unsafe_for(
        &sb,
        tar()
            .symlink(b"node_modules/y", b"/etc/passwd")
            .hardlink(b"node_modules/z", b"node_modules/y"),
        "not a regular file",
    );
}

#[test]
fn relative_symlinks_inside_the_workspace_are_accepted() {
    let sb = sandbox();
    let archive = tar()
        .dir(b"packages/")
        .symlink(b"node_modules/pkg", b"../packages/pkg")
        .symlink(b"node_modules/.bin/tool", b"../pkg/bin/tool.js")
        .zstd();
    let extraction = sb
        .unpack(&archive, &["node_modules", "packages"])
        .expect("unpack");
    extraction.commit().expect("commit");
    assert_eq!(
        fs::read_link(sb.ws.join("node_modules/pkg")).expect("link"),
        std::path::Path::new("../packages/pkg")
    );
    assert_eq!(
        fs::read_to_string(sb.ws.join("node_modules/keep.txt")).expect("kept"),
        "existing target"
    );
}

#[test]
fn hard_links_outside_or_to_nothing_are_refused() {
    let sb = sandbox();
    unsafe_for(
        &sb,
        tar().hardlink(b"node_modules/h", b"../outside/sentinel.txt"),
        "hard-link target",
    );
    let absolute = sb.outside.join("sentinel.txt");
    unsafe_for(
        &sb,
        tar().hardlink(
            b"node_modules/h",
            absolute.to_str().expect("utf-8").as_bytes(),
        ),
        "hard-link target",
    );
    // Inside the root, but not extracted by this archive (it exists at the
    // destination only).
    unsafe_for(
        &sb,
        tar().hardlink(b"node_modules/h", b"node_modules/keep.txt"),
        "not a regular file",
    );
    // To a symlink (whose relative target would change meaning).
    unsafe_for(
        &sb,
        tar()
            .symlink(b"node_modules/l", b"ok.txt")
            .hardlink(b"node_modules/deeper/h", b"node_modules/l"),
        "not a regular file",
    );
    // To a directory.
    unsafe_for(
        &sb,
        tar().hardlink(b"node_modules/h", b"node_modules"),
        "not a regular file",
    );
    // Through a symlink.
    unsafe_for(
        &sb,
        tar()
            .symlink(b"node_modules/l", b".")
            .hardlink(b"node_modules/h", b"node_modules/l/ok.txt"),
        "not a regular file",
    );
}

#[test]
fn hard_links_to_extracted_files_work() {
    let sb = sandbox();
    let archive = tar()
        .hardlink(b"node_modules/same.txt", b"node_modules/ok.txt")
        .zstd();
    sb.unpack(&archive, &["node_modules"])
        .expect("unpack")
        .commit()
        .expect("commit");
    assert_eq!(
        fs::read_to_string(sb.ws.join("node_modules/same.txt")).expect("read"),
        "fine"
    );
}

#[test]
fn devices_fifos_and_unknown_types_are_refused() {
    let sb = sandbox();
    unsafe_for(
        &sb,
        tar().special(b"node_modules/tty", EntryType::Char),
        "character device",
    );
    unsafe_for(
        &sb,
        tar().special(b"node_modules/sda", EntryType::Block),
        "block device",
    );
    unsafe_for(
        &sb,
        tar().special(b"node_modules/fifo", EntryType::Fifo),
        "fifo",
    );
    unsafe_for(
        &sb,
        tar().special(b"node_modules/v", EntryType::new(b'V')),
        "only files",
    );
    unsafe_for(
        &sb,
        tar().special(b"node_modules/s", EntryType::GNUSparse),
        "sparse",
    );
    let sparse_pax = pax_record("GNU.sparse.major", b"1");
    unsafe_for(
        &sb,
        tar().pax(&sparse_pax).file(b"node_modules/s", b"map"),
        "sparse",
    );
}

#[test]
fn replacing_a_non_empty_directory_with_a_file_is_refused() {
    let sb = sandbox();
    write(&sb.ws.join("node_modules/dir/inner.txt"), "x");
    unsafe_for(
        &sb,
        tar().file(b"node_modules/dir", b"file"),
        "non-empty directory",
    );
    unsafe_for(
        &sb,
        RawTar::new().file(b"node_modules", b"file"),
        "non-empty directory",
    );
}

#[test]
fn a_bomb_over_the_size_cap_is_refused_before_it_is_written() {
    let sb = sandbox();
    let limits = ExtractLimits {
        max_unpacked_bytes: 1024 * 1024,
        ..ExtractLimits::default()
    };
    // 64 MiB of zeros compress to a few KiB.
    let archive = tar().zeros(b"node_modules/bomb", 64 * 1024 * 1024).zstd();
    assert!(archive.len() < 64 * 1024);
    let err = refused(&sb, &archive, &["node_modules"], &limits);
    assert!(
        matches!(err, ArchiveError::TooLarge { what: Limit::UnpackedBytes, limit } if limit == 1024 * 1024),
        "{err}"
    );

    // Many small files adding up past the cap.
    let mut many = tar();
    for i in 0..40 {
        many = many.zeros(format!("node_modules/f{i}").as_bytes(), 64 * 1024);
    }
    let err = refused(&sb, &many.zstd(), &["node_modules"], &limits);
    assert!(
        matches!(
            err,
            ArchiveError::TooLarge {
                what: Limit::UnpackedBytes,
                ..
            }
        ),
        "{err}"
    );

    // Zeros after the end marker count too.
    let mut trailing = tar().finish();
    trailing.resize(4 * 1024 * 1024, 0);
    let err = refused(
        &sb,
        &zstd::encode_all(&trailing[..], 3).expect("zstd"),
        &["node_modules"],
        &limits,
    );
    assert!(
        matches!(
            err,
            ArchiveError::TooLarge {
                what: Limit::UnpackedBytes,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn too_many_entries_are_refused() {
    let sb = sandbox();
    let limits = ExtractLimits {
        max_entries: 10,
        ..ExtractLimits::default()
    };
    let mut archive = tar();
    for i in 0..20 {
        archive = archive.file(format!("node_modules/f{i}").as_bytes(), b"x");
    }
    let err = refused(&sb, &archive.zstd(), &["node_modules"], &limits);
    assert!(
        matches!(
            err,
            ArchiveError::TooLarge {
                what: Limit::Entries,
                limit: 10
            }
        ),
        "{err}"
    );
}

#[test]
fn oversized_extension_headers_are_refused_without_reading_them_into_memory() {
    let sb = sandbox();
    let mut raw = tar().finish();
    raw.truncate(raw.len() - 1024); // drop the end marker
                                    // A pax header claiming 1 GiB.
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..6].copy_from_slice(b"header");
    header.set_entry_type(EntryType::XHeader);
    header.set_size(1 << 30);
    header.set_cksum();
    raw.extend_from_slice(header.as_bytes());
    raw.resize(raw.len() + 2 * 1024 * 1024, 0);
    let err = refused(
        &sb,
        &zstd::encode_all(&raw[..], 3).expect("zstd"),
        &["node_modules"],
        &ExtractLimits::default(),
    );
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
}

#[test]
fn tilde_roots_accept_their_dotdot_names_and_nothing_else() {
    let sb = sandbox();
    // `~/.npm` as actions/cache names it from the workspace.
    let archive = tar().file(b"../home/.npm/_cacache/x", b"cached").zstd();
    sb.unpack(&archive, &["~/.npm", "node_modules"])
        .expect("unpack")
        .commit()
        .expect("commit");
    assert_eq!(
        fs::read_to_string(sb.home.join(".npm/_cacache/x")).expect("read"),
        "cached"
    );

    let err = refused(
        &sb,
        &tar().file(b"../home/.bashrc", b"evil").zstd(),
        &["~/.npm", "node_modules"],
        &ExtractLimits::default(),
    );
    assert_unsafe(&err, "outside every declared path");
}

/// Files lose setuid, setgid and sticky; directories keep setgid and
/// sticky (group inheritance, shared tmp-like dirs), never setuid.
#[test]
fn files_lose_setuid_setgid_and_sticky_and_directories_keep_setgid_and_sticky() {
    use std::os::unix::fs::PermissionsExt;
    let sb = sandbox();
    let mut archive = tar();
    archive.push(b"node_modules/suid", EntryType::Regular, b"", b"x", 0o6755);
    archive.push(
        b"node_modules/sticky/",
        EntryType::Directory,
        b"",
        b"",
        0o1777,
    );
    archive.push(
        b"node_modules/shared/",
        EntryType::Directory,
        b"",
        b"",
        0o6775,
    );
    sb.unpack(&archive.zstd(), &["node_modules"])
        .expect("unpack")
        .commit()
        .expect("commit");
    let mode = |p: &str| {
        fs::metadata(sb.ws.join(p))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("node_modules/suid"), 0o755);
    assert_eq!(mode("node_modules/sticky"), 0o1777);
    assert_eq!(
        mode("node_modules/shared"),
        0o2775,
        "setgid kept, setuid not"
    );
}
