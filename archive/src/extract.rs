//! Extraction in two phases, so that a failed or unverified restore leaves the
//! targets as they were.
//!
//! 1. [`Extraction::unpack`] decompresses and unpacks into a fresh hidden
//!    directory inside the workspace (`.runcache-extract-*`, so on the
//!    workspace's filesystem), hashing every input byte and refusing unsafe
//!    entries. On any error that directory is removed; while it lives the
//!    extraction holds a lock file in it, so that the next extraction in
//!    the workspace removes what a killed one left (and never a live one's).
//! 2. [`Extraction::commit`] (or [`Extraction::commit_verified`]) moves
//!    everything into place; dropping the value or [`Extraction::discard`]
//!    removes the temporary directory and leaves the targets untouched.
//!
//! Touches: the input stream; the temporary directory; at commit, the
//! declared roots (see `paths::declared_roots`) and the missing parent
//! directories of a root. Before commit it only reads the destination.
//!
//! # Safety rules
//!
//! An entry is refused ([`ArchiveError::UnsafeEntry`]) when:
//! - its name, joined to the workspace and lexically normalised, is not under
//!   a declared root (`safety::Bounds::land`), except a directory entry
//!   that is a parent of a root (`tar -cf - app` for a declared `app/dist`),
//!   which is skipped and not counted;
//! - a directory on its way below its root is a symlink made by an earlier
//!   entry in the temporary tree;
//! - it is a hard link whose target is not a regular file extracted before it
//!   (which implies: under a declared root);
//! - it is a symlink whose target tar cannot hold (empty, NUL); any other
//!   target is kept, since nothing is ever written through a symlink
//!   (`safety::Bounds::check_symlink_target`);
//! - it is anything but a file, directory, symlink or hard link;
//! - it would replace a non-empty directory at the destination.
//!
//! The destination is refused ([`ArchiveError::UnsafeDestination`]: the
//! entry is fine, the destination needs fixing) when a directory on an
//! entry's way below its root, or a parent of a root inside the workspace,
//! is a symlink there. A root that is itself a symlink is replaced by the
//! restored directory at commit (the link removed, its target untouched),
//! as GNU tar replaces a symlink with a directory entry of the same name.
//!
//! The decompressed stream is capped at `max_unpacked_bytes` as it is read
//! (and a file is refused before it is written when its declared size would
//! pass the cap), and entries at `max_entries`. File modes are kept without
//! the setuid, setgid and sticky bits, directory modes with setgid and
//! sticky (never setuid); mtimes are kept; owners are not.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tar::EntryType;
use tempfile::TempDir;

use crate::paths::{absolute_workspace, bytes_to_path, declared_roots, parse_patterns};
use crate::safety::{Bounds, Landing};
use crate::stream::{decompressing_read_ahead, LimitExceeded, LimitedReader};
use crate::tar_read::{TarEntry, TarReader};
use crate::tar_write::Mtime;
use crate::{ArchiveError, Limit};

/// The temporary directory's name prefix, in the workspace.
pub const TEMP_PREFIX: &str = ".runcache-extract-";
/// The lock file inside it, held by the live extraction.
const LOCK_FILE: &str = ".lock";
/// A temporary directory without its lock file is left alone this long (it
/// may be a new extraction between creating the directory and locking).
const UNLOCKED_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes what extractions killed mid-way (`kill -9`, a lost runner) left
/// in `workspace`: every `.runcache-extract-*` directory whose lock no live
/// process holds, or which has no lock file and is older than an hour. A
/// live extraction holds its lock until it ends, so it is never touched.
/// Best effort: what cannot be removed is left for the next run.
pub fn remove_stale_extractions(workspace: &Path) {
    let Ok(entries) = fs::read_dir(workspace) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
            continue;
        }
        let dir = entry.path();
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let stale = match File::open(dir.join(LOCK_FILE)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::symlink_metadata(&dir)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > UNLOCKED_GRACE)),
            Err(_) => false,
        };
        if stale {
            match fs::remove_dir_all(&dir) {
                Ok(()) => tracing::warn!(
                    dir = %dir.display(),
                    "removed what an interrupted restore left behind"
                ),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove an interrupted restore's leftover")
                }
            }
        }
    }
}

/// Decompressed bytes tolerated after the end-of-archive marker (tar pads
/// to its 10 KiB record size).
const MAX_TRAILING_BYTES: u64 = 1024 * 1024;
/// Mode bits kept on files: permissions, without setuid, setgid and sticky.
const MODE_MASK: u32 = 0o777;
/// Mode bits kept on directories: permissions plus setgid (new files get
/// the directory's group, as in shared caches) and sticky, which grant
/// nothing by themselves.
const DIR_MODE_MASK: u32 = 0o3777;

/// Caps against decompression bombs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Decompressed (tar stream) bytes, default 64 GiB.
    pub max_unpacked_bytes: u64,
    /// Entries of any kind, default 5 000 000.
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_unpacked_bytes: 64 << 30,
            max_entries: 5_000_000,
        }
    }
}

/// What an unpack read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractSummary {
    /// SHA-256 hex of all input bytes, read to the end of the stream.
    pub sha256_hex: String,
    /// Input bytes.
    pub compressed_bytes: u64,
    /// Decompressed (tar stream) bytes.
    pub unpacked_bytes: u64,
    /// Entries unpacked.
    pub entries: u64,
    /// Declared paths that were symlinks at the destination and were
    /// replaced by the restored directory (the link removed, what it pointed
    /// to untouched), as GNU tar replaces a symlink with a directory entry.
    pub replaced_symlinks: Vec<PathBuf>,
}

/// An archive unpacked into a temporary directory, not yet in place.
///
/// Dropping it removes the temporary directory and leaves the targets
/// untouched.
#[derive(Debug)]
pub struct Extraction {
    temp: TempDir,
    /// Held (an exclusive lock on `LOCK_FILE` in `temp`) while this value
    /// lives, so another run can tell a live extraction from a killed one's
    /// leftover (see [`remove_stale_extractions`]).
    _lock: File,
    bounds: Bounds,
    /// Mode and mtime of every directory entry, by destination; applied
    /// after everything is in place, deepest first.
    dirs: BTreeMap<PathBuf, DirMeta>,
    summary: ExtractSummary,
}

#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: Mtime,
}

impl Extraction {
    /// Phase 1: decompress and unpack `input` (a zstd-compressed tar, as
    /// [`crate::create`] or actions/cache write it) into a temporary
    /// directory in `workspace`, reading it to the end and hashing every
    /// byte. `patterns` are the cache's path patterns, which declare where
    /// entries may land. `~` is the current user's home directory.
    ///
    /// # Errors
    /// `UnsafeEntry`, `TooLarge`, `Corrupt`, `Input` (the stream failed),
    /// `InvalidPattern`, `Io`. The temporary directory is removed on error.
    pub fn unpack(
        input: impl Read + Send,
        workspace: &Path,
        patterns: &[String],
        limits: &ExtractLimits,
    ) -> Result<Extraction, ArchiveError> {
        Extraction::unpack_with_home(
            input,
            workspace,
            dirs::home_dir().as_deref(),
            patterns,
            limits,
        )
    }

    /// [`Extraction::unpack`] with an explicit home directory for `~`
    /// (`None`: a pattern using `~` is an error).
    pub fn unpack_with_home(
        input: impl Read + Send,
        workspace: &Path,
        home: Option<&Path>,
        patterns: &[String],
        limits: &ExtractLimits,
    ) -> Result<Extraction, ArchiveError> {
        let workspace = absolute_workspace(workspace)?;
        let roots = declared_roots(&parse_patterns(patterns, &workspace, home)?);
        if roots.is_empty() {
            return Err(ArchiveError::InvalidPattern {
                pattern: patterns.join(", "),
                reason: "no path to restore into: every pattern is blank, a comment or an exclude"
                    .into(),
            });
        }
        let bounds = Bounds { workspace, roots };
        check_root_parents(&bounds)?;
        fs::create_dir_all(&bounds.workspace).map_err(ArchiveError::io(&bounds.workspace))?;
        remove_stale_extractions(&bounds.workspace);
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&bounds.workspace)
            .map_err(ArchiveError::io(&bounds.workspace))?;
        let lock_path = temp.path().join(LOCK_FILE);
        let lock = File::create_new(&lock_path).map_err(ArchiveError::io(&lock_path))?;
        lock.lock().map_err(ArchiveError::io(&lock_path))?;

        let (entries, dirs, unpacked_bytes, (sha256_hex, compressed_bytes)) =
            std::thread::scope(|scope| {
                let input_failed = Rc::new(Cell::new(false));
                let (decompressed, reader) =
                    decompressing_read_ahead(scope, input, Rc::clone(&input_failed));
                let mut tar =
                    TarReader::new(LimitedReader::new(decompressed, limits.max_unpacked_bytes));
                let mut unpacker = Unpacker {
                    bounds: &bounds,
                    temp: temp.path(),
                    limits,
                    input_failed,
                    entries: 0,
                    parents: 0,
                    temp_dirs: HashSet::new(),
                    dest: HashMap::new(),
                    dirs: BTreeMap::new(),
                    buf: vec![0; 256 * 1024],
                };
                unpacker.run(&mut tar)?;
                let Unpacker {
                    entries,
                    parents,
                    dirs,
                    ..
                } = unpacker;
                let entries = entries - parents;

                // `run` read the decompressed stream to its end; the
                // read-ahead thread hashed whatever followed the last zstd
                // frame too.
                let unpacked_bytes = tar.into_inner().bytes_read();
                let digest = reader.join().map_err(|_| ArchiveError::Input {
                    source: io::Error::other("the thread reading the archive panicked"),
                })?;
                Ok::<_, ArchiveError>((entries, dirs, unpacked_bytes, digest))
            })?;

        tracing::debug!(
            entries,
            unpacked_bytes,
            compressed_bytes,
            "unpacked archive"
        );
        Ok(Extraction {
            temp,
            _lock: lock,
            bounds,
            dirs,
            summary: ExtractSummary {
                sha256_hex,
                compressed_bytes,
                unpacked_bytes,
                entries,
                replaced_symlinks: Vec::new(),
            },
        })
    }

    /// What was read and unpacked; compare `sha256_hex` with the expected
    /// hash before committing.
    pub fn summary(&self) -> &ExtractSummary {
        &self.summary
    }

    /// `HashMismatch` unless the input's SHA-256 is `expected_sha256_hex`
    /// (case-insensitive).
    pub fn verify(&self, expected_sha256_hex: &str) -> Result<(), ArchiveError> {
        if self
            .summary
            .sha256_hex
            .eq_ignore_ascii_case(expected_sha256_hex)
        {
            Ok(())
        } else {
            Err(ArchiveError::HashMismatch {
                expected: expected_sha256_hex.to_owned(),
                actual: self.summary.sha256_hex.clone(),
            })
        }
    }

    /// [`Extraction::verify`], then [`Extraction::commit`]; on a mismatch
    /// the temporary directory is removed and the targets are untouched.
    pub fn commit_verified(
        self,
        expected_sha256_hex: &str,
    ) -> Result<ExtractSummary, ArchiveError> {
        self.verify(expected_sha256_hex)?;
        self.commit()
    }

    /// Phase 2: move everything into place. Files and symlinks replace what
    /// is at their destination (by `rename`, so atomically each); directories
    /// are merged into existing ones, or moved whole when absent. Then
    /// directory modes and mtimes are applied, deepest first.
    ///
    /// Nothing is written through a symlink: a declared root that is a
    /// symlink at the destination is replaced by a restored directory (the
    /// link removed, its target untouched: GNU tar's default), a parent of a
    /// root inside the workspace that is one is refused (checked again
    /// here), and nothing below a root is followed. A failure here (an `Io`
    /// error, or a destination that turned into a symlink since unpacking)
    /// can leave some entries moved and others not.
    pub fn commit(mut self) -> Result<ExtractSummary, ArchiveError> {
        check_root_parents(&self.bounds)?;
        for (index, root) in self.bounds.roots.iter().enumerate() {
            let slot = slot_path(self.temp.path(), index);
            let Some(slot_meta) = lstat(&slot)? else {
                continue;
            };
            if let Some(parent) = root.parent() {
                fs::create_dir_all(parent).map_err(ArchiveError::io(parent))?;
            }
            if slot_meta.is_dir() && lstat(root)?.is_some_and(|m| m.is_symlink()) {
                fs::remove_file(root).map_err(ArchiveError::io(root))?;
                self.summary.replaced_symlinks.push(root.clone());
            }
            move_tree(&slot, root)?;
        }
        // Remove the (now nearly empty) temporary directory before setting
        // directory metadata: removing it changes the workspace's mtime, and
        // a read-only mode on the workspace would prevent it.
        let temp_path = self.temp.path().to_owned();
        self.temp.close().map_err(ArchiveError::io(temp_path))?;
        // Deepest first (reverse component order), so setting a child's
        // mtime comes after everything inside it is in place.
        for (dest, meta) in self.dirs.iter().rev() {
            if !lstat(dest)?.is_some_and(|m| m.is_dir()) {
                continue; // replaced by a later entry of another kind
            }
            fs::set_permissions(dest, Permissions::from_mode(meta.mode & DIR_MODE_MASK))
                .map_err(ArchiveError::io(dest))?;
            let mtime = meta.mtime.to_file_time();
            filetime::set_symlink_file_times(dest, mtime, mtime).map_err(ArchiveError::io(dest))?;
        }
        Ok(self.summary)
    }

    /// Removes the temporary directory; the targets stay untouched. (Dropping
    /// does the same, ignoring errors.)
    pub fn discard(self) -> Result<(), ArchiveError> {
        let temp_path = self.temp.path().to_owned();
        self.temp.close().map_err(ArchiveError::io(temp_path))
    }
}

/// Refuses a declared root under the workspace whose way down from the
/// workspace passes a symlink at the destination (`build -> /elsewhere` for
/// a declared `build/out`): the restore would create and write through it.
/// The root itself may be a symlink (commit replaces it). Above the
/// workspace, and above a root outside it (`~/.cache` for `~/.cache/pip`),
/// directories are the machine's layout and are followed: a runner that
/// links `~/.cache` to a larger disk gets its cache there.
fn check_root_parents(bounds: &Bounds) -> Result<(), ArchiveError> {
    for root in &bounds.roots {
        let Ok(rel) = root.strip_prefix(&bounds.workspace) else {
            continue;
        };
        let Some(parent) = rel.parent() else {
            continue;
        };
        let mut path = bounds.workspace.clone();
        for component in parent {
            path.push(component);
            if lstat(&path)?.is_some_and(|m| m.is_symlink()) {
                return Err(ArchiveError::UnsafeDestination {
                    reason: format!(
                        "it is a symlink at the destination{} above the declared path `{}`, \
                         and nothing is written through symlinks",
                        link_target(&path),
                        root.display()
                    ),
                    path,
                });
            }
        }
    }
    Ok(())
}

/// ` (to `target`)` for a message, or nothing when it cannot be read.
fn link_target(path: &Path) -> String {
    fs::read_link(path)
        .map(|t| format!(" (to `{}`)", t.display()))
        .unwrap_or_default()
}

fn slot_path(temp: &Path, root: usize) -> PathBuf {
    temp.join(root.to_string())
}

/// `symlink_metadata`, with "not there" as `None`.
fn lstat(path: &Path) -> Result<Option<fs::Metadata>, ArchiveError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(ArchiveError::io(path)(e)),
    }
}

/// What a destination path holds before commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DestState {
    Absent,
    Dir,
    Symlink,
    Other,
}

enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
}

/// Phase 1's state.
struct Unpacker<'a> {
    bounds: &'a Bounds,
    temp: &'a Path,
    limits: &'a ExtractLimits,
    input_failed: Rc<Cell<bool>>,
    entries: u64,
    /// Directory entries that only name a parent of a declared root (what
    /// `tar -cf - app` writes for a declared `app/dist`): skipped.
    parents: u64,
    /// Directories of the temporary tree known to be real directories.
    temp_dirs: HashSet<PathBuf>,
    /// Destination directories (and would-be directories) already looked at.
    dest: HashMap<PathBuf, DestState>,
    dirs: BTreeMap<PathBuf, DirMeta>,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn run<R: Read>(&mut self, tar: &mut TarReader<LimitedReader<R>>) -> Result<(), ArchiveError> {
        while let Some(entry) = tar.next_entry().map_err(|e| self.stream_error(e))? {
            self.entry(tar, entry)?;
        }
        let trailing = io::copy(
            &mut tar.get_mut().take(MAX_TRAILING_BYTES + 1),
            &mut io::sink(),
        )
        .map_err(|e| self.stream_error(e))?;
        if trailing > MAX_TRAILING_BYTES {
            return Err(ArchiveError::Corrupt {
                detail: "more than 1 MiB of data follows the end of the tar archive".into(),
            });
        }
        Ok(())
    }

    /// Classifies an error from the decompressed stream.
    fn stream_error(&self, error: io::Error) -> ArchiveError {
        if LimitExceeded::is(&error) {
            ArchiveError::TooLarge {
                what: Limit::UnpackedBytes,
                limit: self.limits.max_unpacked_bytes,
            }
        } else if self.input_failed.get() {
            ArchiveError::Input { source: error }
        } else {
            ArchiveError::Corrupt {
                detail: error.to_string(),
            }
        }
    }

    fn entry<R: Read>(
        &mut self,
        tar: &mut TarReader<LimitedReader<R>>,
        entry: TarEntry,
    ) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooLarge {
                what: Limit::Entries,
                limit: self.limits.max_entries,
            });
        }
        let shown = String::from_utf8_lossy(&entry.name).into_owned();
        let refuse = |reason: String| ArchiveError::unsafe_entry(&shown, reason);

        let kind = match entry.entry_type {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            other => {
                return Err(refuse(format!(
                    "it is a {}; only files, directories, symlinks and hard links are allowed",
                    describe(other)
                )))
            }
        };
        if entry.sparse {
            return Err(refuse("GNU sparse files are not supported".into()));
        }
        if matches!(kind, Kind::Dir) && self.bounds.is_parent_of_a_root(&entry.name) {
            // It creates nothing a root's own parents do not: skipped, its
            // mode and mtime too (the directory is not the cache's).
            self.parents += 1;
            return Ok(());
        }
        let landing = self.bounds.land(&entry.name).map_err(refuse)?;
        self.check_destination(&landing, matches!(kind, Kind::Dir), &shown)?;
        self.make_temp_parents(&landing, &shown)?;
        let path = self.temp_path(&landing);
        if !matches!(kind, Kind::Dir) {
            // This entry replaces whatever an earlier one put at its place,
            // a directory tree included: forget those directories'
            // metadata, or commit would apply it through what is there now
            // (a symlink, say).
            self.forget_dirs_under(&landing.dest);
        }

        match kind {
            Kind::Dir => {
                self.make_dir(&path)?;
                self.dirs.insert(
                    landing.dest,
                    DirMeta {
                        mode: entry.mode,
                        mtime: entry.mtime,
                    },
                );
            }
            Kind::File => self.write_file(tar, &entry, &path, &shown)?,
            Kind::Symlink => {
                self.bounds
                    .check_symlink_target(&entry.link)
                    .map_err(refuse)?;
                let target = bytes_to_path(&entry.link);
                self.replace(&path, |p| std::os::unix::fs::symlink(target, p))?;
                let mtime = entry.mtime.to_file_time();
                filetime::set_symlink_file_times(&path, mtime, mtime)
                    .map_err(ArchiveError::io(&path))?;
            }
            Kind::HardLink => {
                let source = self.hard_link_source(&landing, &entry.link, &shown)?;
                if source.starts_with(&path) {
                    return Err(ArchiveError::unsafe_entry(
                        &shown,
                        "a hard link to something inside what it replaces".to_string(),
                    ));
                }
                self.replace(&path, |p| fs::hard_link(&source, p))?;
            }
        }
        Ok(())
    }

    /// Forgets the metadata of `dest` and every directory under it. Paths
    /// order by component, so those are the keys from `dest` on that start
    /// with it: a range, not a scan of every directory seen so far.
    fn forget_dirs_under(&mut self, dest: &Path) {
        let under: Vec<PathBuf> = self
            .dirs
            .range::<Path, _>((std::ops::Bound::Included(dest), std::ops::Bound::Unbounded))
            .map(|(dir, _)| dir)
            .take_while(|dir| dir.starts_with(dest))
            .cloned()
            .collect();
        for dir in under {
            self.dirs.remove(&dir);
        }
    }

    fn temp_path(&self, landing: &Landing) -> PathBuf {
        let slot = slot_path(self.temp, landing.root);
        if landing.rel.as_os_str().is_empty() {
            slot
        } else {
            slot.join(&landing.rel)
        }
    }

    /// Refuses an entry whose way down from its root passes a symlink at the
    /// destination, or that would replace a non-empty directory there.
    /// The root itself, and what is above it, belong to the user.
    fn check_destination(
        &mut self,
        landing: &Landing,
        is_dir: bool,
        shown: &str,
    ) -> Result<(), ArchiveError> {
        let components: Vec<&OsStr> = landing.rel.iter().collect();
        let dirs = if is_dir {
            components.len()
        } else {
            components.len().saturating_sub(1)
        };
        let mut path = self.bounds.roots[landing.root].clone();
        for component in &components[..dirs] {
            path.push(component);
            match self.dest_state(&path)? {
                DestState::Absent => return Ok(()),
                DestState::Symlink => {
                    return Err(ArchiveError::UnsafeDestination {
                        reason: format!(
                            "it is a symlink at the destination{}, and entry `{shown}` \
                             would be written through it",
                            link_target(&path)
                        ),
                        path,
                    })
                }
                DestState::Dir | DestState::Other => {}
            }
        }
        if !is_dir {
            let dest = &landing.dest;
            if lstat(dest)?.is_some_and(|m| m.is_dir()) && !is_empty_dir(dest)? {
                return Err(ArchiveError::unsafe_entry(
                    shown,
                    format!(
                        "it would replace the non-empty directory `{}`",
                        dest.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn dest_state(&mut self, path: &Path) -> Result<DestState, ArchiveError> {
        if let Some(state) = self.dest.get(path) {
            return Ok(*state);
        }
        let state = match lstat(path)? {
            None => DestState::Absent,
            Some(meta) if meta.is_symlink() => DestState::Symlink,
            Some(meta) if meta.is_dir() => DestState::Dir,
            Some(_) => DestState::Other,
        };
        self.dest.insert(path.to_owned(), state);
        Ok(state)
    }

    /// Makes every directory of the temporary tree above the entry, refusing
    /// when one exists as something else (a symlink or a file made by an
    /// earlier entry): nothing is ever written through a symlink.
    fn make_temp_parents(&mut self, landing: &Landing, shown: &str) -> Result<(), ArchiveError> {
        let Some(parent) = landing.rel.parent() else {
            return Ok(()); // the root itself: the slot is the entry
        };
        let mut temp = slot_path(self.temp, landing.root);
        let mut dest = self.bounds.roots[landing.root].clone();
        self.ensure_temp_dir(&temp, &dest, shown)?;
        for component in parent.iter() {
            temp.push(component);
            dest.push(component);
            self.ensure_temp_dir(&temp, &dest, shown)?;
        }
        Ok(())
    }

    fn ensure_temp_dir(
        &mut self,
        temp: &Path,
        dest: &Path,
        shown: &str,
    ) -> Result<(), ArchiveError> {
        if self.temp_dirs.contains(temp) {
            return Ok(());
        }
        match lstat(temp)? {
            None => fs::create_dir(temp).map_err(ArchiveError::io(temp))?,
            Some(meta) if meta.is_dir() => {}
            Some(meta) => {
                let what = if meta.is_symlink() {
                    "a symlink (made by an earlier entry), and nothing is written through symlinks"
                } else {
                    "a file (made by an earlier entry), not a directory"
                };
                return Err(ArchiveError::unsafe_entry(
                    shown,
                    format!("`{}` is {what}", dest.display()),
                ));
            }
        }
        self.temp_dirs.insert(temp.to_owned());
        Ok(())
    }

    fn make_dir(&mut self, path: &Path) -> Result<(), ArchiveError> {
        match lstat(path)? {
            Some(meta) if meta.is_dir() => {}
            Some(_) => {
                self.clear(path)?;
                fs::create_dir(path).map_err(ArchiveError::io(path))?;
            }
            None => fs::create_dir(path).map_err(ArchiveError::io(path))?,
        }
        self.temp_dirs.insert(path.to_owned());
        Ok(())
    }

    /// Runs `make` (which creates `path`); if something is already there (an
    /// earlier entry of the same name: the later one wins, as in tar), removes
    /// it first.
    fn replace<T>(
        &mut self,
        path: &Path,
        make: impl Fn(&Path) -> io::Result<T>,
    ) -> Result<T, ArchiveError> {
        match make(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear(path)?;
                make(path).map_err(ArchiveError::io(path))
            }
            result => result.map_err(ArchiveError::io(path)),
        }
    }

    /// Removes whatever an earlier entry left at `path` in the temporary tree.
    fn clear(&mut self, path: &Path) -> Result<(), ArchiveError> {
        match lstat(path)? {
            None => Ok(()),
            Some(meta) if meta.is_dir() => {
                self.temp_dirs.retain(|dir| !dir.starts_with(path));
                fs::remove_dir_all(path).map_err(ArchiveError::io(path))
            }
            Some(_) => fs::remove_file(path).map_err(ArchiveError::io(path)),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        tar: &mut TarReader<LimitedReader<R>>,
        entry: &TarEntry,
        path: &Path,
        shown: &str,
    ) -> Result<(), ArchiveError> {
        // Refuse before writing a byte when the declared size alone passes
        // the cap; the reader enforces it again as bytes arrive.
        let so_far = tar.get_ref().bytes_read();
        if so_far.saturating_add(entry.size) > self.limits.max_unpacked_bytes {
            tracing::debug!(
                entry = shown,
                size = entry.size,
                "entry passes the size cap"
            );
            return Err(ArchiveError::TooLarge {
                what: Limit::UnpackedBytes,
                limit: self.limits.max_unpacked_bytes,
            });
        }
        // `create_new` never opens through a symlink, even a dangling one.
        let mut file = self.replace(path, |p| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(p)
        })?;
        loop {
            let n = tar
                .read_data(&mut self.buf)
                .map_err(|e| self.stream_error(e))?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n])
                .map_err(ArchiveError::io(path))?;
        }
        finish_file(&file, path, entry.mode, entry.mtime)
    }

    /// The file in the temporary tree that a hard link entry links to.
    fn hard_link_source(
        &mut self,
        landing: &Landing,
        link: &[u8],
        shown: &str,
    ) -> Result<PathBuf, ArchiveError> {
        let refuse = |reason: String| ArchiveError::unsafe_entry(shown, reason);
        let target = self
            .bounds
            .land(link)
            .map_err(|reason| refuse(format!("its hard-link target is refused: {reason}")))?;
        if target.dest == landing.dest {
            return Err(refuse("it is a hard link to itself".into()));
        }
        let not_extracted = || {
            refuse(format!(
                "it is a hard link to `{}`, which is not a regular file extracted before it",
                target.dest.display()
            ))
        };
        // Every directory on the way must be a real one that an earlier
        // entry made (`temp_dirs` knows them all), not a symlink.
        if let Some(parent) = target.rel.parent() {
            let mut dir = slot_path(self.temp, target.root);
            if !self.temp_dirs.contains(&dir) {
                return Err(not_extracted());
            }
            for component in parent {
                dir.push(component);
                if !self.temp_dirs.contains(&dir) {
                    return Err(not_extracted());
                }
            }
        }
        let source = self.temp_path(&target);
        match lstat(&source)? {
            Some(meta) if meta.is_file() => Ok(source),
            _ => Err(not_extracted()),
        }
    }
}

fn finish_file(file: &File, path: &Path, mode: u32, mtime: Mtime) -> Result<(), ArchiveError> {
    file.set_permissions(Permissions::from_mode(mode & MODE_MASK))
        .map_err(ArchiveError::io(path))?;
    file.set_modified(mtime.to_system_time())
        .map_err(ArchiveError::io(path))
}

fn is_empty_dir(path: &Path) -> Result<bool, ArchiveError> {
    let mut entries = fs::read_dir(path).map_err(ArchiveError::io(path))?;
    Ok(entries.next().is_none())
}

fn describe(entry_type: EntryType) -> String {
    match entry_type {
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "fifo".into(),
        EntryType::GNUSparse => "GNU sparse file".into(),
        other => format!("tar entry of type `{}`", other.as_byte().escape_ascii()),
    }
}

/// Moves the temporary tree `src` to `dest` (see [`Extraction::commit`]).
fn move_tree(src: &Path, dest: &Path) -> Result<(), ArchiveError> {
    // (source, destination)
    let mut work = vec![(src.to_owned(), dest.to_owned())];
    while let Some((src, dest)) = work.pop() {
        let src_is_dir = lstat(&src)?.is_some_and(|m| m.is_dir());
        let existing = match lstat(&dest)? {
            None => DestState::Absent,
            Some(meta) if meta.is_symlink() => DestState::Symlink,
            Some(meta) if meta.is_dir() => DestState::Dir,
            Some(_) => DestState::Other,
        };
        match (src_is_dir, existing) {
            (true, DestState::Dir) => {
                for child in fs::read_dir(&src).map_err(ArchiveError::io(&src))? {
                    let name = child.map_err(ArchiveError::io(&src))?.file_name();
                    work.push((src.join(&name), dest.join(&name)));
                }
            }
            (true, DestState::Symlink) => {
                return Err(ArchiveError::UnsafeDestination {
                    reason: format!(
                        "it became a symlink at the destination{} after unpacking, and \
                         nothing is written through symlinks",
                        link_target(&dest)
                    ),
                    path: dest,
                })
            }
            (true, DestState::Other) => {
                fs::remove_file(&dest).map_err(ArchiveError::io(&dest))?;
                move_dir(&src, &dest, &mut work)?;
            }
            (true, DestState::Absent) => move_dir(&src, &dest, &mut work)?,
            (false, DestState::Dir) => {
                // Only an empty one (unpack refused the others).
                fs::remove_dir(&dest).map_err(ArchiveError::io(&dest))?;
                move_file(&src, &dest)?;
            }
            // `rename` replaces a file or a symlink itself, never its target.
            (false, _) => move_file(&src, &dest)?,
        }
    }
    Ok(())
}

/// Renames a directory whole; across filesystems, creates it and queues its
/// children.
fn move_dir(
    src: &Path,
    dest: &Path,
    work: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), ArchiveError> {
    match fs::rename(src, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            fs::create_dir(dest).map_err(ArchiveError::io(dest))?;
            for child in fs::read_dir(src).map_err(ArchiveError::io(src))? {
                let name = child.map_err(ArchiveError::io(src))?.file_name();
                work.push((src.join(&name), dest.join(&name)));
            }
            Ok(())
        }
        Err(e) => Err(ArchiveError::io(dest)(e)),
    }
}

/// Renames a file or symlink over `dest`; across filesystems, copies it to a
/// fresh name beside `dest` and renames that.
fn move_file(src: &Path, dest: &Path) -> Result<(), ArchiveError> {
    match fs::rename(src, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_across(src, dest),
        Err(e) => Err(ArchiveError::io(dest)(e)),
    }
}

fn copy_across(src: &Path, dest: &Path) -> Result<(), ArchiveError> {
    let meta = fs::symlink_metadata(src).map_err(ArchiveError::io(src))?;
    let mtime = Mtime::from_metadata(&meta);
    let parent = dest.parent().unwrap_or(Path::new("/"));
    if meta.is_symlink() {
        let target = fs::read_link(src).map_err(ArchiveError::io(src))?;
        if lstat(dest)?.is_some() {
            fs::remove_file(dest).map_err(ArchiveError::io(dest))?;
        }
        std::os::unix::fs::symlink(&target, dest).map_err(ArchiveError::io(dest))?;
        let time = mtime.to_file_time();
        return filetime::set_symlink_file_times(dest, time, time).map_err(ArchiveError::io(dest));
    }
    let mut from = File::open(src).map_err(ArchiveError::io(src))?;
    let mut staged = tempfile::Builder::new()
        .prefix(".runcache-copy-")
        .tempfile_in(parent)
        .map_err(ArchiveError::io(parent))?;
    io::copy(&mut from, staged.as_file_mut()).map_err(ArchiveError::io(dest))?;
    finish_file(staged.as_file(), dest, meta.permissions().mode(), mtime)?;
    staged
        .persist(dest)
        .map_err(|e| ArchiveError::io(dest)(e.error))?;
    Ok(())
}
