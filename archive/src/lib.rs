//! actions/cache-compatible archives for runcache: resolve path patterns, write
//! a POSIX tar compressed with zstd while hashing it, and extract such an
//! archive without ever writing outside the declared paths.
//!
//! This crate is synchronous and touches only the `Read`/`Write` streams it is
//! given and the filesystem under the paths it is given (plus a hidden
//! temporary directory inside the workspace while extracting). It knows
//! nothing about stores, queues or the network.
//!
//! The format is actions/cache's: a POSIX (pax) tar whose entry names are
//! relative to the workspace (`../` for paths outside it, such as `~/.npm`),
//! compressed with zstd without long-distance matching. An archive made here
//! unpacks with `zstd -d | tar -xf -`, and one made by actions/cache unpacks
//! here.
//!
//! # Architecture invariant
//!
//! Extraction ([`Extraction`]) never writes to the real targets before
//! [`Extraction::commit`]; everything is first unpacked into a temporary
//! directory that is removed on error and on drop. An entry whose name,
//! hard-link target or symlink target lands outside the declared paths, or
//! that would be written through a symlink, is refused (see `safety`).
//!
//! Unix only: modes, symlinks and hard links are handled with
//! `std::os::unix`.

mod create;
mod error;
mod extract;
mod paths;
mod resolve;
mod safety;
mod stream;
mod tar_read;
mod tar_write;

use sha2::{Digest, Sha256};

pub use create::{create, create_from_paths, input_bytes, ArchiveOptions, ArchiveSummary};
pub use error::{ArchiveError, Limit};
pub use extract::{ExtractLimits, ExtractSummary, Extraction};
pub use resolve::{resolve_paths, resolve_paths_with_home};

/// The compression method name as actions/toolkit writes it into the version.
pub const COMPRESSION: &str = "zstd-without-long";

/// The salt actions/toolkit appends to every cache version.
const VERSION_SALT: &str = "1.0";

/// actions/toolkit `getCacheVersion`: SHA-256 hex of the path patterns as
/// written, in order, then [`COMPRESSION`], then `"1.0"`, joined with `|`.
///
/// Entries of another version never match a lookup, so two saves that name
/// their paths differently (or compress differently) never restore each other.
pub fn cache_version(patterns: &[String]) -> String {
    let mut components: Vec<&str> = patterns.iter().map(String::as_str).collect();
    components.push(COMPRESSION);
    components.push(VERSION_SALT);
    hex::encode(Sha256::digest(components.join("|").as_bytes()))
}
