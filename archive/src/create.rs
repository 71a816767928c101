//! Creates an archive in one streaming pass: tar of the resolved paths ->
//! zstd (multithreaded) -> SHA-256 and byte count -> the caller's writer.
//!
//! Touches the files it archives (read-only) and the output stream. Memory is
//! bounded whatever the archive's size: one copy buffer plus zstd's window
//! and job buffers.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::paths::{absolute_workspace, normalize};
use crate::resolve::resolve_paths;
use crate::stream::{CountingWriter, HashingWriter};
use crate::tar_write::{EntryKind, Mtime, TarWriter};
use crate::ArchiveError;

/// How to compress.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// zstd level (default 3, as actions/cache's `zstd -T0`).
    pub zstd_level: i32,
    /// zstd worker threads (default: the available cores; 0 compresses on the
    /// calling thread). The output does not depend on the count as long as it
    /// is at least 1.
    pub zstd_workers: u32,
    /// When set, the tar bytes written so far (before compression), updated
    /// as the archive grows, for a progress display that compares it with
    /// [`input_bytes`].
    pub progress: Option<Arc<AtomicU64>>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ArchiveOptions {
            zstd_level: 3,
            zstd_workers: u32::try_from(cores).unwrap_or(1),
            progress: None,
        }
    }
}

/// What [`create`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// SHA-256 hex of the compressed stream: the content address.
    pub sha256_hex: String,
    /// Bytes written to `out`.
    pub compressed_bytes: u64,
    /// Bytes of the tar stream before compression.
    pub uncompressed_bytes: u64,
    /// Entries written (files, directories, symlinks).
    pub entries: u64,
}

/// One streaming pass: POSIX (pax) tar of the paths the patterns resolve to
/// (see [`resolve_paths`]) -> zstd (multithreaded, level from `opts`) ->
/// SHA-256 + byte count of the compressed stream -> `out`.
///
/// Never buffers the whole archive. Entries are in sorted order, so the same
/// tree gives the same bytes; mtimes (to the nanosecond), permissions,
/// symlinks (stored as symlinks, never followed) and empty directories are
/// kept. A file with several names among the entries is stored once: its
/// later names are tar hard-link entries to the first, as GNU tar writes
/// them, so size and restored link counts match tar's. Sockets, fifos and
/// devices are skipped with a warning (extraction would refuse them).
pub fn create(
    patterns: &[String],
    workspace: &Path,
    out: impl Write,
    opts: &ArchiveOptions,
) -> Result<ArchiveSummary, ArchiveError> {
    let names = resolve_paths(patterns, workspace)?;
    create_from_paths(&names, workspace, out, opts)
}

/// The bytes of the regular files among `names` (as [`resolve_paths`]
/// returns them): what archiving them reads (a file with several names
/// once), so a progress display has a total before the archive exists.
/// Entries that vanished count as 0.
pub fn input_bytes(names: &[PathBuf], workspace: &Path) -> u64 {
    let mut seen = HashSet::new();
    names
        .iter()
        .filter_map(|name| fs::symlink_metadata(normalize(&workspace.join(name))).ok())
        .filter(|meta| meta.is_file())
        .filter(|meta| meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())))
        .map(|meta| meta.len())
        .sum()
}

/// The first entry name of each file with several links, by (device, inode).
type Linked = HashMap<(u64, u64), Vec<u8>>;

/// [`create`] for an already resolved list of entry names (relative to
/// `workspace`, as [`resolve_paths`] returns them). Writes exactly these
/// entries, in this order: a directory's contents are written only if they
/// are listed. A listed path that vanished since is skipped with a warning.
pub fn create_from_paths(
    names: &[PathBuf],
    workspace: &Path,
    out: impl Write,
    opts: &ArchiveOptions,
) -> Result<ArchiveSummary, ArchiveError> {
    let workspace = absolute_workspace(workspace)?;
    let output = |source| ArchiveError::Output { source };

    let mut encoder = zstd::stream::write::Encoder::new(HashingWriter::new(out), opts.zstd_level)
        .map_err(output)?;
    encoder.include_checksum(true).map_err(output)?;
    if opts.zstd_workers > 0 {
        encoder.multithread(opts.zstd_workers).map_err(output)?;
    }
    let mut tar = TarWriter::new(CountingWriter::new(encoder, opts.progress.clone()));

    let mut entries = 0;
    let mut linked = Linked::new();
    for name in names {
        if append(&mut tar, &workspace, name, &mut linked)? {
            entries += 1;
        }
    }

    let (uncompressed_bytes, encoder) = tar.finish().map_err(output)?.finish();
    let (sha256_hex, compressed_bytes, mut out) =
        encoder.finish().map_err(output)?.finish().map_err(output)?;
    out.flush().map_err(output)?;
    Ok(ArchiveSummary {
        sha256_hex,
        compressed_bytes,
        uncompressed_bytes,
        entries,
    })
}

/// Appends one entry; `false` when it was skipped.
fn append<W: Write>(
    tar: &mut TarWriter<W>,
    workspace: &Path,
    name: &Path,
    linked: &mut Linked,
) -> Result<bool, ArchiveError> {
    let output = |source| ArchiveError::Output { source };
    let path = normalize(&workspace.join(name));
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "skipping a path removed while archiving");
            return Ok(false);
        }
        Err(e) => return Err(ArchiveError::io(&path)(e)),
    };
    let mode = meta.permissions().mode();
    let mtime = Mtime::from_metadata(&meta);
    let file_type = meta.file_type();
    let mut tar_name = name.as_os_str().as_bytes().to_vec();

    if file_type.is_dir() {
        // GNU tar's convention, which some readers rely on.
        if !tar_name.ends_with(b"/") {
            tar_name.push(b'/');
        }
        tar.write_header(&tar_name, &EntryKind::Dir, mode, mtime)
            .map_err(output)?;
    } else if file_type.is_symlink() {
        let target = fs::read_link(&path).map_err(ArchiveError::io(&path))?;
        let target = target.as_os_str().as_bytes();
        tar.write_header(&tar_name, &EntryKind::Symlink { target }, mode, mtime)
            .map_err(output)?;
    } else if file_type.is_file()
        && meta.nlink() > 1
        && linked.contains_key(&(meta.dev(), meta.ino()))
    {
        let target = &linked[&(meta.dev(), meta.ino())];
        tar.write_header(&tar_name, &EntryKind::HardLink { target }, mode, mtime)
            .map_err(output)?;
    } else if file_type.is_file() {
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "skipping a file removed while archiving");
                return Ok(false);
            }
            Err(e) => return Err(ArchiveError::io(&path)(e)),
        };
        let size = meta.len();
        tar.write_header(&tar_name, &EntryKind::File { size }, mode, mtime)
            .map_err(output)?;
        tar.write_file_data(&mut file, &path, size)?;
        if meta.nlink() > 1 {
            linked.insert((meta.dev(), meta.ino()), tar_name);
        }
    } else {
        tracing::warn!(
            path = %path.display(),
            "skipping a socket, fifo or device file: caches hold only files, directories and symlinks"
        );
        return Ok(false);
    }
    Ok(true)
}
