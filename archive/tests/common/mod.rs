//! Shared test fixtures: sandboxes, tree snapshots and hand-made (possibly
//! malicious) archives. Touches only temporary directories.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;
use runcache_archive::{ArchiveOptions, ExtractLimits, Extraction};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// A temporary directory with a workspace, a home directory and a sentinel
/// directory outside both that nothing may ever touch.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ws: PathBuf,
    pub home: PathBuf,
    pub outside: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let ws = root.join("ws");
        let home = root.join("home");
        let outside = root.join("outside");
        for d in [&ws, &home, &outside] {
            fs::create_dir(d).expect("mkdir");
        }
        fs::write(outside.join("sentinel.txt"), "do not touch").expect("sentinel");
        Sandbox {
            _dir: dir,
            root,
            ws,
            home,
            outside,
        }
    }

    /// The whole sandbox, for before/after comparisons. The workspace's own
    /// mtime is left out: the temporary directory is made and removed in it.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = snapshot(&self.root);
        if let Some(node) = snap.0.get_mut(Path::new("ws")) {
            node.mtime = None;
        }
        snap
    }

    pub fn unpack(
        &self,
        archive: &[u8],
        patterns: &[&str],
    ) -> Result<Extraction, runcache_archive::ArchiveError> {
        self.unpack_limited(archive, patterns, &ExtractLimits::default())
    }

    pub fn unpack_limited(
        &self,
        archive: &[u8],
        patterns: &[&str],
        limits: &ExtractLimits,
    ) -> Result<Extraction, runcache_archive::ArchiveError> {
        Extraction::unpack_with_home(
            archive,
            &self.ws,
            Some(&self.home),
            &strings(patterns),
            limits,
        )
    }

    /// Archives `patterns` from this sandbox's workspace.
    pub fn create(&self, patterns: &[&str]) -> (Vec<u8>, runcache_archive::ArchiveSummary) {
        let names = runcache_archive::resolve_paths_with_home(
            &strings(patterns),
            &self.ws,
            Some(&self.home),
        )
        .expect("resolve");
        let mut out = Vec::new();
        let summary = runcache_archive::create_from_paths(
            &names,
            &self.ws,
            &mut out,
            &ArchiveOptions::default(),
        )
        .expect("create");
        (out, summary)
    }

    /// Asserts that no temporary extraction directory is left in the
    /// workspace.
    pub fn assert_no_temp_left(&self) {
        let left: Vec<_> = fs::read_dir(&self.ws)
            .expect("read ws")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".runcache"))
            .collect();
        assert!(left.is_empty(), "temporary directories left: {left:?}");
    }
}

pub fn strings(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| p.to_string()).collect()
}

/// One filesystem object, as compared by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    /// (seconds, nanoseconds); `None` where not compared.
    pub mtime: Option<(i64, u32)>,
    /// SHA-256 of a file's content, or a symlink's target.
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<PathBuf, Node>);

/// Everything below `dir` (not following symlinks), keyed by path relative to
/// `dir`.
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut nodes = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let rel = path.strip_prefix(dir).expect("below").to_path_buf();
        let mtime = FileTime::from_last_modification_time(&meta);
        let (kind, content) = if meta.is_symlink() {
            (
                "symlink",
                fs::read_link(&path)
                    .expect("readlink")
                    .display()
                    .to_string(),
            )
        } else if meta.is_dir() {
            for entry in fs::read_dir(&path).expect("readdir") {
                stack.push(entry.expect("entry").path());
            }
            ("dir", String::new())
        } else {
            (
                "file",
                hex::encode(Sha256::digest(fs::read(&path).expect("read"))),
            )
        };
        nodes.insert(
            rel,
            Node {
                kind,
                mode: meta.permissions().mode() & 0o7777,
                mtime: Some((mtime.unix_seconds(), mtime.nanoseconds())),
                content,
            },
        );
    }
    Snapshot(nodes)
}

/// Sets an mtime without following symlinks.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).expect("set mtime");
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir -p");
    }
    fs::write(path, content).expect("write");
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough to
/// span many zstd blocks.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A hand-made tar stream: raw names (so `..` and absolute names can be
/// written), any entry type, optional pax records.
#[derive(Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    pub fn file(mut self, name: &[u8], data: &[u8]) -> Self {
        self.push(name, EntryType::Regular, b"", data, 0o644);
        self
    }

    pub fn dir(mut self, name: &[u8]) -> Self {
        self.push(name, EntryType::Directory, b"", b"", 0o755);
        self
    }

    pub fn symlink(mut self, name: &[u8], target: &[u8]) -> Self {
        self.push(name, EntryType::Symlink, target, b"", 0o777);
        self
    }

    pub fn hardlink(mut self, name: &[u8], target: &[u8]) -> Self {
        self.push(name, EntryType::Link, target, b"", 0o644);
        self
    }

    pub fn special(mut self, name: &[u8], entry_type: EntryType) -> Self {
        self.push(name, entry_type, b"", b"", 0o644);
        self
    }

    /// An entry whose header claims `size` bytes, followed by that many
    /// zeros (compresses to almost nothing: a bomb).
    pub fn zeros(mut self, name: &[u8], size: u64) -> Self {
        let header = header(name, EntryType::Regular, b"", size, 0o644);
        self.bytes.extend_from_slice(header.as_bytes());
        let padded = size.div_ceil(512) * 512;
        self.bytes.resize(self.bytes.len() + padded as usize, 0);
        self
    }

    /// A pax header with `records` (already `"<len> key=value\n"`-encoded)
    /// for the next entry.
    pub fn pax(mut self, records: &[u8]) -> Self {
        self.push(b"././@PaxHeader", EntryType::XHeader, b"", records, 0o644);
        self
    }

    pub fn push(
        &mut self,
        name: &[u8],
        entry_type: EntryType,
        link: &[u8],
        data: &[u8],
        mode: u32,
    ) {
        let header = header(name, entry_type, link, data.len() as u64, mode);
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.resize(self.bytes.len() + pad, 0);
    }

    /// The tar stream with its end marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 1024, 0);
        self.bytes
    }

    /// The tar stream, zstd-compressed.
    pub fn zstd(self) -> Vec<u8> {
        zstd::encode_all(&self.finish()[..], 3).expect("zstd")
    }
}

fn header(name: &[u8], entry_type: EntryType, link: &[u8], size: u64, mode: u32) -> Header {
    assert!(
        name.len() <= 100 && link.len() <= 100,
        "use a pax record for long names"
    );
    let mut header = Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(1_600_000_000);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    header
}

/// One pax record.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}
