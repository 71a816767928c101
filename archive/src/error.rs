//! The crate's one error type. Pure data: touches nothing.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which extraction limit an archive exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`crate::ExtractLimits::max_unpacked_bytes`]: decompressed bytes.
    UnpackedBytes,
    /// [`crate::ExtractLimits::max_entries`].
    Entries,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::UnpackedBytes => "decompressed bytes",
            Limit::Entries => "entries",
        })
    }
}

/// Everything that can go wrong while resolving, archiving or extracting.
///
/// Extraction errors all leave the targets untouched, except a failure in the
/// middle of [`crate::Extraction::commit`] (an `Io` error after some entries
/// were moved into place).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An entry would escape the declared paths or is of a forbidden kind.
    /// Nothing was restored. The archive is malformed or malicious: delete
    /// the cache entry rather than retrying.
    #[error(
        "refusing archive entry `{entry}`: {reason}; nothing was restored \
         (the archive is malformed or malicious: delete this cache entry)"
    )]
    UnsafeEntry { entry: String, reason: String },

    /// The destination holds a symlink where the restore would have to
    /// write through it (a parent of a declared path inside the workspace,
    /// or a directory below one). Nothing was restored. The cache entry is
    /// fine: the destination needs fixing.
    #[error(
        "refusing to restore into `{}`: {reason}; nothing was restored \
         (the cache entry is fine: remove the link, or declare the path it \
         points to, and restore again)",
        .path.display()
    )]
    UnsafeDestination { path: PathBuf, reason: String },

    /// The archive exceeds an extraction limit (a decompression bomb, or a
    /// cache that grew past the configured limit). Nothing was restored.
    #[error(
        "the archive exceeds the limit of {limit} {what}; nothing was restored \
         (raise the limit if a cache this large is expected)"
    )]
    TooLarge { what: Limit, limit: u64 },

    /// No file or directory matched the path patterns, so there is nothing to
    /// archive.
    #[error(
        "no file or directory matches the path patterns {patterns:?} \
         (relative patterns are resolved against the workspace); nothing to save"
    )]
    NoMatch { patterns: Vec<String> },

    /// A path pattern cannot be used as written.
    #[error("invalid path pattern `{pattern}`: {reason}")]
    InvalidPattern { pattern: String, reason: String },

    /// A filesystem operation on `path` failed.
    #[error("I/O error on `{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Reading the archive stream failed (not its content: the stream
    /// itself). Retrying the download may help.
    #[error("reading the archive failed: {source}; retry the download")]
    Input {
        #[source]
        source: io::Error,
    },

    /// Writing the archive to its output failed.
    #[error("writing the archive failed: {source}")]
    Output {
        #[source]
        source: io::Error,
    },

    /// The archive is not a valid zstd-compressed tar (truncated, garbled, or
    /// of another format). Nothing was restored.
    #[error("the archive is corrupt: {detail}; nothing was restored (delete this cache entry)")]
    Corrupt { detail: String },

    /// The archive's SHA-256 is not the expected one. Nothing was restored.
    #[error(
        "the archive's SHA-256 is {actual}, expected {expected}; nothing was restored \
         (the download is corrupt or the stored object was altered)"
    )]
    HashMismatch { expected: String, actual: String },
}

impl ArchiveError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ArchiveError {
        let path = path.into();
        move |source| ArchiveError::Io { path, source }
    }

    pub(crate) fn unsafe_entry(entry: &str, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::UnsafeEntry {
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }
}
