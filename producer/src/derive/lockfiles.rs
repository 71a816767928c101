//! Which files pin a project's dependencies, and one hash over them that is
//! the same on every machine: file bytes and paths relative to the project
//! directory, never absolute paths or mtimes.

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::DeriveError;

/// The package manager a lockfile belongs to; it decides which toolchain
/// version is relevant to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Ecosystem {
    Npm,
    Yarn,
    Pnpm,
    Pip,
    Poetry,
    Go,
    Cargo,
    Bundler,
    Gradle,
    /// A file given with `--lockfile` that runcache does not recognise.
    Other,
}

impl Ecosystem {
    /// The toolchain whose version goes into keys built from this lockfile.
    pub fn toolchain(self) -> Option<&'static str> {
        match self {
            Self::Npm | Self::Yarn | Self::Pnpm => Some("node"),
            Self::Pip | Self::Poetry => Some("python"),
            Self::Go => Some("go"),
            Self::Cargo => Some("rustc"),
            Self::Bundler => Some("ruby"),
            Self::Gradle => Some("java"),
            Self::Other => None,
        }
    }

    /// The ecosystem of a file by its name (`gradle/dependency-locks/x.lockfile`
    /// and any other `*.lockfile` are Gradle's).
    pub fn of_file_name(name: &str) -> Self {
        LOCKFILE_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| *e)
            .unwrap_or(if name.ends_with(".lockfile") {
                Self::Gradle
            } else {
                Self::Other
            })
    }
}

/// The files looked for at the top of the project directory.
pub const LOCKFILE_NAMES: &[(&str, Ecosystem)] = &[
    ("package-lock.json", Ecosystem::Npm),
    ("yarn.lock", Ecosystem::Yarn),
    ("pnpm-lock.yaml", Ecosystem::Pnpm),
    ("requirements.txt", Ecosystem::Pip),
    ("poetry.lock", Ecosystem::Poetry),
    ("go.sum", Ecosystem::Go),
    ("Cargo.lock", Ecosystem::Cargo),
    ("Gemfile.lock", Ecosystem::Bundler),
    ("gradle.lockfile", Ecosystem::Gradle),
    ("buildscript-gradle.lockfile", Ecosystem::Gradle),
];

/// Gradle's older per-configuration lock directory; every `*.lockfile` in it
/// counts.
pub const GRADLE_LOCKS_DIR: &str = "gradle/dependency-locks";

/// What detection looks for, for error messages.
pub fn looked_for() -> String {
    let mut names: Vec<String> = LOCKFILE_NAMES.iter().map(|(n, _)| n.to_string()).collect();
    names.push(format!("{GRADLE_LOCKS_DIR}/*.lockfile"));
    names.join(", ")
}

/// A lockfile that went into a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lockfile {
    /// Relative to the project directory, `/`-separated (`../` when the file
    /// lies outside it). Part of the hash, so a moved file changes the key.
    pub path: String,
    pub ecosystem: Ecosystem,
    /// SHA-256 hex of the file's bytes: what `sha256sum` prints.
    pub sha256: String,
    pub size_bytes: u64,
}

/// A hashed input file (lockfile or build configuration file).
pub(super) struct HashedFile {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
}

/// The lockfiles at the top of `dir` (and in `gradle/dependency-locks/`),
/// sorted by path. `dir` must be canonical.
pub fn detect_lockfiles(dir: &Path) -> Result<Vec<Lockfile>, DeriveError> {
    let mut found = Vec::new();
    for (name, ecosystem) in LOCKFILE_NAMES {
        let path = dir.join(name);
        if path.is_file() {
            found.push(lockfile(read_lockfile(&path, name)?, *ecosystem));
        }
    }
    let locks = dir.join(GRADLE_LOCKS_DIR);
    if locks.is_dir() {
        let entries = fs::read_dir(&locks).map_err(|source| DeriveError::Dir {
            dir: locks.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| DeriveError::Dir {
                dir: locks.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".lockfile") && entry.path().is_file() {
                let rel = format!("{GRADLE_LOCKS_DIR}/{name}");
                found.push(lockfile(
                    read_lockfile(&entry.path(), &rel)?,
                    Ecosystem::Gradle,
                ));
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The given lockfiles instead of detection; relative paths are relative to
/// `dir` (canonical). The same file given twice counts once.
pub fn explicit_lockfiles(dir: &Path, paths: &[PathBuf]) -> Result<Vec<Lockfile>, DeriveError> {
    let mut files = hash_files(dir, paths, |path, source| DeriveError::Lockfile {
        path: path.to_path_buf(),
        source,
    })?
    .into_iter()
    .map(|f| {
        let name = f.path.rsplit('/').next().unwrap_or_default().to_string();
        lockfile(f, Ecosystem::of_file_name(&name))
    })
    .collect::<Vec<_>>();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

/// One hash over several lockfiles: SHA-256 of the `sha256sum`-style
/// manifest (`{sha256}  {path}\n` per file, sorted by path), first 32 hex
/// digits. The same string is the key part and `lockfileHash` in provenance,
/// so what a user reads in a key is what they invalidate by. Reproducible
/// by hand: `sha256sum FILES | LC_ALL=C sort -k2 | sha256sum | cut -c1-32`.
pub fn lockfile_hash(lockfiles: &[Lockfile]) -> String {
    let mut sorted: Vec<&Lockfile> = lockfiles.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest: String = sorted
        .iter()
        .map(|l| format!("{}  {}\n", l.sha256, l.path))
        .collect();
    hex::encode(Sha256::digest(manifest.as_bytes()))[..32].to_string()
}

fn read_lockfile(path: &Path, name: &str) -> Result<HashedFile, DeriveError> {
    hash_file(path, name).map_err(|source| DeriveError::Lockfile {
        path: path.to_path_buf(),
        source,
    })
}

fn lockfile(f: HashedFile, ecosystem: Ecosystem) -> Lockfile {
    Lockfile {
        path: f.path,
        ecosystem,
        sha256: f.sha256,
        size_bytes: f.size_bytes,
    }
}

/// Reads and hashes each of `paths` (relative ones against `dir`), naming
/// each by its path relative to `dir`.
pub(super) fn hash_files(
    dir: &Path,
    paths: &[PathBuf],
    err: impl Fn(&Path, std::io::Error) -> DeriveError,
) -> Result<Vec<HashedFile>, DeriveError> {
    paths
        .iter()
        .map(|given| {
            let full = dir.join(given);
            stable_name(dir, &full)
                .and_then(|name| hash_file(&full, &name))
                .map_err(|e| err(given, e))
        })
        .collect()
}

fn hash_file(path: &Path, name: &str) -> std::io::Result<HashedFile> {
    let bytes = fs::read(path)?;
    Ok(HashedFile {
        path: name.to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size_bytes: bytes.len() as u64,
    })
}

/// `path`'s name relative to the canonical `dir`: its parent is
/// canonicalised (so `./a/../Cargo.lock` and symlinked directories agree)
/// but not the file itself (a symlinked lockfile keeps its own name).
fn stable_name(dir: &Path, path: &Path) -> std::io::Result<String> {
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = fs::canonicalize(parent)?;
    if !parent.join(file_name).is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
    }
    Ok(relative_name(dir, &parent.join(file_name)))
}

/// `/`-separated path of `path` relative to `base` (both canonical), with
/// `..` where `path` lies outside `base`. On another root (a Windows drive)
/// only the file name is stable across machines.
fn relative_name(base: &Path, path: &Path) -> String {
    let base: Vec<Component> = base.components().collect();
    let path: Vec<Component> = path.components().collect();
    if base.first() != path.first() {
        return path
            .last()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    let common = base.iter().zip(&path).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); base.len() - common];
    parts.extend(
        path[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_are_slash_separated_and_climb_out() {
        assert_eq!(
            relative_name(Path::new("/w/a/b"), Path::new("/w/a/b/c/Cargo.lock")),
            "c/Cargo.lock"
        );
        assert_eq!(
            relative_name(Path::new("/w/a/b"), Path::new("/w/x/yarn.lock")),
            "../../x/yarn.lock"
        );
    }

    #[test]
    fn unknown_names_are_other_and_lockfile_suffixes_gradle() {
        assert_eq!(Ecosystem::of_file_name("Cargo.lock"), Ecosystem::Cargo);
        assert_eq!(
            Ecosystem::of_file_name("compileClasspath.lockfile"),
            Ecosystem::Gradle
        );
        assert_eq!(Ecosystem::of_file_name("deps.txt"), Ecosystem::Other);
    }
}
