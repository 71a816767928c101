//! `save --from-archive`: the check an imported archive passes before
//! anything is staged. It is unpacked exactly as a restore in this
//! workspace would unpack it (same decoder and its window limit, same path
//! safety rules, same caps), into the restore's hidden temporary directory,
//! which is then removed: a file that no restore would take is refused here,
//! with what to do, instead of being saved and failing every restore.
//!
//! Touches: reads the file; writes only the temporary extraction directory
//! inside the workspace (removed before returning). Costs one extra read and
//! unpack of the archive, which an import can afford.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use runcache_archive::{ArchiveError, ExtractLimits, ExtractSummary, Extraction};

/// How to make an archive runcache takes, for the error messages.
const HOW_TO_MAKE: &str = "runcache imports a zstd-compressed tar whose entries lie under \
     the --path patterns, as `runcache save` and actions/cache write it \
     (e.g. `tar -cf - PATHS | zstd -T0 -o FILE`)";

/// Why a file cannot be imported.
#[derive(Debug, thiserror::Error)]
#[error("cannot import {}: {reason}. {HOW_TO_MAKE}", .file.display())]
pub struct NotImportable {
    pub file: PathBuf,
    pub reason: String,
    #[source]
    pub source: Option<ArchiveError>,
}

/// Unpacks `file` as a restore into `workspace` with `patterns` would, then
/// discards it; its summary (hash, entries, sizes) on success.
pub fn check(
    file: &Path,
    workspace: &Path,
    patterns: &[String],
) -> Result<ExtractSummary, NotImportable> {
    let refuse = |reason: String, source: Option<ArchiveError>| NotImportable {
        file: file.to_path_buf(),
        reason,
        source,
    };
    let mut input = File::open(file).map_err(|e| refuse(format!("cannot open it: {e}"), None))?;
    let mut magic = [0u8; 262];
    let n = read_up_to(&mut input, &mut magic)
        .map_err(|e| refuse(format!("cannot read it: {e}"), None))?;
    if let Some(other) = other_format(&magic[..n]) {
        return Err(refuse(format!("it is {other}, not zstd"), None));
    }
    let input = crate::interrupt::Interruptible(BufReader::new(
        File::open(file).map_err(|e| refuse(format!("cannot open it: {e}"), None))?,
    ));
    let extraction = Extraction::unpack(input, workspace, patterns, &ExtractLimits::default())
        .map_err(|e| refuse(reason_for(&e), Some(e)))?;
    let summary = extraction.summary().clone();
    extraction
        .discard()
        .map_err(|e| refuse(format!("{e}"), Some(e)))?;
    if summary.entries == 0 {
        return Err(refuse("it holds no entries".into(), None));
    }
    Ok(summary)
}

fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A format recognised by its magic bytes that is not zstd.
fn other_format(head: &[u8]) -> Option<&'static str> {
    const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    if head.starts_with(&ZSTD) {
        return None;
    }
    Some(if head.is_empty() {
        "empty"
    } else if head.starts_with(&[0x1f, 0x8b]) {
        "gzip-compressed (recompress it: `gzip -dc FILE | zstd -o FILE.tzst`)"
    } else if head.starts_with(b"BZh") {
        "bzip2-compressed"
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz-compressed"
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        "an uncompressed tar (compress it: `zstd FILE`)"
    } else {
        "not an archive runcache knows (no zstd frame at its start)"
    })
}

/// The restore's refusal, said for an import.
fn reason_for(e: &ArchiveError) -> String {
    match e {
        ArchiveError::Corrupt { detail } if detail.contains("too much memory") => format!(
            "it was compressed with a window larger than restores decode (128 MiB, \
             zstd's default limit; `zstd --long=28` or more makes one): {detail}; \
             recompress it without --long, or with --long=27 at most"
        ),
        ArchiveError::Corrupt { detail } => {
            format!("it is not a valid zstd-compressed tar: {detail}")
        }
        other => format!("a restore would refuse it: {other}"),
    }
}
