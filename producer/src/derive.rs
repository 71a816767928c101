//! `runcache key`: cache keys derived from what affects the build, so the
//! same inputs give the same key on any machine.
//!
//! ```text
//! deps:{repository}:{toolchain}:{lockfile}:{lockfile-hash}[:cfg-{h}][:env-{h}]
//! output:{repository}:{toolchain}:{cfg-{h}|cfg-none}:commit:{sha}[:env-{h}]
//! ```
//!
//! - `{lockfile}`: the lockfiles' paths relative to the project directory,
//!   joined with `+` (`Cargo.lock+package-lock.json`; Gradle's
//!   `gradle/dependency-locks/*.lockfile` count as one label).
//! - `{lockfile-hash}`: [`lockfile_hash`], 32 hex digits of SHA-256 over the
//!   files' bytes and relative paths: never absolute paths, never mtimes.
//! - `{toolchain}`: [`toolchain_summary`] (`node-20.11.0+python-3.12.1`),
//!   `none` when no toolchain is relevant or known.
//! - `cfg-{h}`, `env-{h}`: 16 hex digits of SHA-256 over the build
//!   configuration (files, strings) and the named environment variables'
//!   values; only their hashes ever appear in a key or report.
//!
//! Parts are ordered from broad to narrow and end with `:`-separators, so
//! restore-key ladders are prefixes; the toolchain (and for outputs the
//! build configuration) comes before anything a ladder drops, so no rung
//! restores files built by another toolchain
//! (`deps:{repository}:{toolchain}:{lockfile}:`).
//! Every part is kept short (long ones become a prefix plus a hash) and
//! commas are replaced, so keys always satisfy actions/cache's rules
//! ([`validate_key`]).
//!
//! `save` records in `BuildProvenance` (and so in the index, for
//! `admin invalidate --toolchain/--lockfile-hash`) what the key says:
//! [`KeyInputs::of`] reads a key made here back; for any other key, what
//! [`detect`] finds is kept only where the key contains it
//! ([`record_inputs`]).
//!
//! May touch: the project directory it reads lockfiles and config files
//! from, and the toolchains it runs with `--version`. Reads the named
//! `--env` variables from the process environment in the CLI layer only
//! ([`KeyCommand::to_request`]).

mod lockfiles;
mod toolchain;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, Subcommand};
use runcache_schemas::BuildProvenance;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use self::{
    lockfiles::{
        detect_lockfiles, explicit_lockfiles, lockfile_hash, Ecosystem, Lockfile, GRADLE_LOCKS_DIR,
        LOCKFILE_NAMES,
    },
    toolchain::{detect_toolchain, parse_version, probe_version, toolchain_summary, PROBES},
};
use crate::{
    context::RunContext,
    keys::{validate_key, KeyError},
    outputs::write_github_output,
};

/// Longest repository, lockfile label or toolchain part kept as is.
const MAX_PART: usize = 128;
/// Longest commit part (a SHA-256 object id is 64).
const MAX_COMMIT: usize = 64;
/// Hex digits of the config and env hashes in a key.
const SHORT_HASH: usize = 16;
/// The toolchain part when none is relevant or known.
const NO_TOOLCHAIN: &str = "none";
/// The output key's config part without build configuration.
const NO_CONFIG: &str = "cfg-none";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DeriveError {
    #[error(
        "no lockfile found in {dir} (looked for {looked_for}); pass --lockfile PATH \
         (repeatable) for lockfiles elsewhere, or --dir to point at the project"
    )]
    NoLockfile { dir: PathBuf, looked_for: String },
    #[error("cannot read lockfile {path}: {source}; check the --lockfile path")]
    Lockfile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read build config file {path}: {source}; check the --build-config-file path")]
    ConfigFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read project directory {dir}: {source}; check --dir")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the {name} version is part of the key ({needed_by} was found) but `{command}` \
         {problem}; install {name}, pass --toolchain {name}=VERSION, or --no-detect-toolchain"
    )]
    ToolchainMissing {
        name: String,
        command: String,
        needed_by: String,
        problem: String,
    },
    #[error(
        "cannot read a version from `{command}` (it printed `{output}`); \
         pass --toolchain {name}=VERSION"
    )]
    ToolchainVersion {
        name: String,
        command: String,
        output: String,
    },
    #[error("runcache does not know how to ask `{0}` its version; pass --toolchain {0}=VERSION")]
    ToolchainUnknown(String),
    #[error("invalid --toolchain `{0}`: expected NAME=VERSION, e.g. node=20.11.0")]
    ToolchainSpec(String),
    #[error(
        "no commit for the output key in {dir}: pass --sha, set GITHUB_SHA, or run inside \
         a git checkout"
    )]
    NoCommit { dir: PathBuf },
    /// A bug: derived keys are built to be valid.
    #[error("derived an invalid key ({0}); please report this")]
    Key(#[from] KeyError),
    #[error("writing step outputs to {path}: {source}")]
    GithubOutput {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("printing the key: {0}")]
    Print(std::io::Error),
}

/// What goes into a key besides the repository and commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeriveOptions {
    /// Use these lockfiles instead of detecting them; relative paths are
    /// relative to the project directory.
    pub lockfiles: Vec<PathBuf>,
    /// Toolchain name → version; wins over detection.
    pub toolchains: BTreeMap<String, String>,
    /// Run the toolchains relevant to the lockfiles (npm → node, …) that
    /// have no explicit version.
    pub detect_toolchains: bool,
    /// How long each `--version` may take.
    pub toolchain_timeout: Duration,
    /// Environment variables whose values go into the key: name → value
    /// (`None`: unset, which differs from empty).
    pub env: BTreeMap<String, Option<String>>,
    /// Build configuration files (relative paths: to the project directory).
    pub config_files: Vec<PathBuf>,
    /// Build configuration strings (`--release --features x`).
    pub config_values: Vec<String>,
}

impl Default for DeriveOptions {
    fn default() -> Self {
        Self {
            lockfiles: Vec::new(),
            toolchains: BTreeMap::new(),
            detect_toolchains: true,
            toolchain_timeout: Duration::from_secs(10),
            env: BTreeMap::new(),
            config_files: Vec::new(),
            config_values: Vec::new(),
        }
    }
}

/// A build configuration file that went into the config hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFile {
    /// Relative to the project directory, `/`-separated.
    pub path: String,
    pub sha256: String,
}

/// Everything detected about what affects a build. Holds no absolute paths,
/// so two checkouts of the same commit give equal derivations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Derivation {
    /// Sorted by path.
    pub lockfiles: Vec<Lockfile>,
    /// [`lockfile_hash`] of `lockfiles`; `None` without lockfiles.
    pub lockfile_hash: Option<String>,
    /// Toolchain name → version (`node` → `20.11.0`).
    pub toolchains: BTreeMap<String, String>,
    /// [`toolchain_summary`]: `node-20.11.0`, the index's toolchain.
    pub toolchain: Option<String>,
    /// Names of the environment variables hashed (never their values).
    pub env_names: Vec<String>,
    pub env_hash: Option<String>,
    pub config_files: Vec<ConfigFile>,
    /// How many `--build-config` strings were hashed.
    pub config_values: usize,
    pub config_hash: Option<String>,
}

impl Derivation {
    /// Records the lockfile hash and toolchains in a save's provenance.
    pub fn apply_to(&self, provenance: &mut BuildProvenance) {
        provenance.lockfile_hash = self.lockfile_hash.clone();
        provenance.toolchain = self.toolchain.clone();
        provenance.toolchains = self.toolchains.clone();
    }

    fn lockfile_label(&self) -> String {
        let mut labels: Vec<&str> = self
            .lockfiles
            .iter()
            .map(|l| {
                if l.path.starts_with(&format!("{GRADLE_LOCKS_DIR}/")) {
                    GRADLE_LOCKS_DIR
                } else {
                    l.path.as_str()
                }
            })
            .collect();
        labels.dedup();
        part(&labels.join("+"), MAX_PART)
    }

    fn toolchain_part(&self) -> String {
        part(self.toolchain.as_deref().unwrap_or(NO_TOOLCHAIN), MAX_PART)
    }
}

/// Detects what affects a build in `dir`: lockfiles (or `opts.lockfiles`),
/// their hash, the relevant toolchains, the env and config hashes.
///
/// Finding no lockfile is not an error here (a save records `None`); it is
/// for a `deps` key ([`derive_key`]).
pub fn detect(dir: &Path, opts: &DeriveOptions) -> Result<Derivation, DeriveError> {
    let root = std::fs::canonicalize(dir).map_err(|source| DeriveError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let lockfiles = if opts.lockfiles.is_empty() {
        detect_lockfiles(&root)?
    } else {
        explicit_lockfiles(&root, &opts.lockfiles)?
    };

    let mut toolchains: BTreeMap<String, String> = opts
        .toolchains
        .iter()
        .map(|(name, version)| (clean_toolchain(name), clean_toolchain(version)))
        .collect();
    if opts.detect_toolchains {
        for lockfile in &lockfiles {
            let Some(name) = lockfile.ecosystem.toolchain() else {
                continue;
            };
            if !toolchains.contains_key(name) {
                let version =
                    detect_toolchain(name, &lockfile.path, &root, opts.toolchain_timeout)?;
                toolchains.insert(name.to_string(), clean_toolchain(&version));
            }
        }
    }

    let env_names: Vec<String> = opts.env.keys().cloned().collect();
    let env_hash = (!opts.env.is_empty()).then(|| {
        short_hash(
            &opts
                .env
                .iter()
                .map(|(name, value)| match value {
                    Some(v) => format!("{name}={}\n", sha256_hex(v.as_bytes())),
                    None => format!("{name} unset\n"),
                })
                .collect::<String>(),
        )
    });

    let mut config_files: Vec<ConfigFile> =
        lockfiles::hash_files(&root, &opts.config_files, |path, source| {
            DeriveError::ConfigFile {
                path: path.to_path_buf(),
                source,
            }
        })?
        .into_iter()
        .map(|f| ConfigFile {
            path: f.path,
            sha256: f.sha256,
        })
        .collect();
    config_files.sort_by(|a, b| a.path.cmp(&b.path));
    config_files.dedup();
    let config_hash = (!config_files.is_empty() || !opts.config_values.is_empty()).then(|| {
        let mut manifest: Vec<String> = config_files
            .iter()
            .map(|f| format!("file {}  {}\n", f.sha256, f.path))
            .chain(
                opts.config_values
                    .iter()
                    .map(|v| format!("value {}\n", sha256_hex(v.as_bytes()))),
            )
            .collect();
        // Order-free: flags reordered in a workflow must not change the key.
        manifest.sort();
        short_hash(&manifest.concat())
    });

    Ok(Derivation {
        lockfile_hash: (!lockfiles.is_empty()).then(|| lockfile_hash(&lockfiles)),
        lockfiles,
        toolchain: toolchain_summary(&toolchains),
        toolchains,
        env_names,
        env_hash,
        config_files,
        config_values: opts.config_values.len(),
        config_hash,
    })
}

/// The two key families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Downloaded dependencies: changes with lockfiles and toolchains.
    Deps,
    /// Build outputs: changes with every commit.
    Output,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deps => "deps",
            Self::Output => "output",
        }
    }
}

/// Everything [`derive_key`] needs; the CLI builds it from [`KeyCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    pub kind: KeyKind,
    /// `owner/name`; empty: [`crate::context::local_repository`] of `dir`.
    pub repository: String,
    /// For `output` keys; `None`: `git rev-parse HEAD` in `dir`.
    pub commit: Option<String>,
    /// The project directory.
    pub dir: PathBuf,
    pub options: DeriveOptions,
}

/// A derived key with every part that went into it (`--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyReport {
    pub kind: KeyKind,
    pub key: String,
    /// Prefixes for `--restore-key`, most specific first.
    pub restore_keys: Vec<String>,
    /// As given (the key holds it with commas replaced, shortened if long).
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(flatten)]
    pub derivation: Derivation,
}

/// Derives a `deps` or `output` key (see the module doc for the formats).
pub fn derive_key(req: &KeyRequest) -> Result<KeyReport, DeriveError> {
    let derivation = detect(&req.dir, &req.options)?;
    let derived;
    let repository = match req.repository.trim() {
        "" => {
            derived = crate::context::local_repository(&req.dir);
            derived.as_str()
        }
        r => r,
    };
    let repo = part(repository, MAX_PART);
    let toolchain = derivation.toolchain_part();
    let cfg = derivation.config_hash.as_ref().map(|h| format!("cfg-{h}"));
    let env = derivation.env_hash.as_ref().map(|h| format!("env-{h}"));
    let (base, suffixes, mut restore_keys, commit) = match req.kind {
        KeyKind::Deps => {
            let Some(hash) = &derivation.lockfile_hash else {
                return Err(DeriveError::NoLockfile {
                    dir: req.dir.clone(),
                    looked_for: lockfiles::looked_for(),
                });
            };
            let lockfile = derivation.lockfile_label();
            (
                format!("deps:{repo}:{toolchain}:{lockfile}:{hash}"),
                vec![cfg, env],
                vec![format!("deps:{repo}:{toolchain}:{lockfile}:")],
                None,
            )
        }
        KeyKind::Output => {
            let commit = match req.commit.as_deref().map(str::trim) {
                Some(sha) if !sha.is_empty() => sha.to_string(),
                _ => head_commit(&req.dir)?,
            };
            let sha = part(&commit, MAX_COMMIT);
            let config = cfg.unwrap_or_else(|| NO_CONFIG.to_string());
            (
                format!("output:{repo}:{toolchain}:{config}:commit:{sha}"),
                vec![env],
                vec![format!("output:{repo}:{toolchain}:{config}:commit:")],
                Some(commit),
            )
        }
    };
    let suffixes: Vec<String> = suffixes.into_iter().flatten().collect();
    if !suffixes.is_empty() {
        // Same inputs but another build config or environment comes next.
        restore_keys.insert(0, format!("{base}:"));
    }
    let key = std::iter::once(base)
        .chain(suffixes)
        .collect::<Vec<_>>()
        .join(":");
    validate_key(&key)?;
    for k in &restore_keys {
        validate_key(k)?;
    }
    Ok(KeyReport {
        kind: req.kind,
        key,
        restore_keys,
        repository: repository.to_string(),
        commit,
        derivation,
    })
}

/// What a key made by [`derive_key`] says about its inputs: the toolchain
/// part and, for a `deps` key, the lockfile hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInputs {
    /// The toolchain part as in the key (`node-20.11.0`); `None` for `none`.
    pub toolchain: Option<String>,
    /// Parsed from the part (`node` → `20.11.0`); empty when shortened.
    pub toolchains: BTreeMap<String, String>,
    pub lockfile_hash: Option<String>,
}

impl KeyInputs {
    /// Reads `key` back if it has one of [`derive_key`]'s layouts.
    pub fn of(key: &str) -> Option<KeyInputs> {
        let fields: Vec<&str> = key.split(':').collect();
        let (toolchain, lockfile_hash) = match fields.as_slice() {
            ["deps", _repo, toolchain, _lockfile, hash, ..]
                if hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                (*toolchain, Some(hash.to_string()))
            }
            ["output", _repo, toolchain, config, "commit", _sha, ..]
                if config.starts_with("cfg-") =>
            {
                (*toolchain, None)
            }
            _ => return None,
        };
        if toolchain.is_empty() {
            return None;
        }
        let toolchain = (toolchain != NO_TOOLCHAIN).then(|| toolchain.to_string());
        let toolchains = toolchain
            .iter()
            .filter(|t| !t.contains('~'))
            .flat_map(|t| t.split('+'))
            .filter_map(|tv| tv.split_once('-'))
            .map(|(name, version)| (name.to_string(), version.to_string()))
            .collect();
        Some(KeyInputs {
            toolchain,
            toolchains,
            lockfile_hash,
        })
    }
}

/// Sets `provenance`'s toolchain and lockfile hash to what `key` says: a
/// key from [`derive_key`] is read back ([`KeyInputs::of`]); for any other
/// key, `detected` (what is installed and locked here) is kept only where
/// the key contains it (the toolchain's versions, the lockfile hash or its
/// first 16 digits), so an entry is never recorded as built by inputs its
/// key does not name.
pub fn record_inputs(key: &str, detected: Option<&Derivation>, provenance: &mut BuildProvenance) {
    if let Some(inputs) = KeyInputs::of(key) {
        provenance.toolchain = inputs.toolchain;
        provenance.toolchains = inputs.toolchains;
        provenance.lockfile_hash = inputs.lockfile_hash;
        return;
    }
    let Some(d) = detected else {
        return;
    };
    let named = !d.toolchains.is_empty() && d.toolchains.values().all(|v| key.contains(v.as_str()));
    if named {
        provenance.toolchain = d.toolchain.clone();
        provenance.toolchains = d.toolchains.clone();
    }
    provenance.lockfile_hash = d
        .lockfile_hash
        .clone()
        .filter(|h| key.contains(&h[..h.len().min(SHORT_HASH)]));
}

/// Prints a report (the key alone, or JSON) and, when `github_output` is
/// set, appends `key`, `restore-keys` (multi-line), `lockfile-hash` and
/// `toolchain` to it as step outputs.
pub fn emit(
    report: &KeyReport,
    json: bool,
    github_output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), DeriveError> {
    if let Some(path) = github_output {
        let gh = |source| DeriveError::GithubOutput {
            path: path.to_path_buf(),
            source,
        };
        let d = &report.derivation;
        let restore_keys = report.restore_keys.join("\n");
        write_github_output(
            path,
            &[
                ("key", &report.key),
                ("lockfile-hash", d.lockfile_hash.as_deref().unwrap_or("")),
                ("toolchain", d.toolchain.as_deref().unwrap_or("")),
                // One prefix per line (the heredoc form when several).
                ("restore-keys", &restore_keys),
            ],
        )
        .map_err(gh)?;
    }
    let text = if json {
        crate::json::document("key", report).expect("a key report serialises")
    } else {
        report.key.clone()
    };
    writeln!(out, "{text}").map_err(DeriveError::Print)
}

// ---------------------------------------------------------------------------
// The CLI: `runcache key deps|output …`.

/// `runcache key`: wire as `Key(runcache::derive::KeyArgs)` and call [`run`].
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeyCommand {
    /// Key for dependencies:
    /// deps:{repository}:{toolchain}:{lockfile}:{lockfile-hash}.
    #[command(after_help = "Examples:\n  \
        runcache key deps\n  \
        runcache key deps --lockfile web/package-lock.json --toolchain node=20.11.0\n  \
        runcache key deps --json")]
    Deps(DeriveArgs),
    /// Key for build outputs:
    /// output:{repository}:{toolchain}:{config}:commit:{sha}.
    #[command(after_help = "Examples:\n  \
        runcache key output --build-config release --env RUSTFLAGS\n  \
        runcache key output --sha $(git rev-parse HEAD) --toolchain rustc=1.85.0")]
    Output(OutputArgs),
}

/// What `runcache key deps` and `output` share.
#[derive(Debug, Clone, Args)]
pub struct DeriveArgs {
    /// Project directory searched for lockfiles.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// A lockfile to hash instead of detecting them (relative to the current
    /// directory); repeat.
    #[arg(long = "lockfile", value_name = "PATH")]
    pub lockfiles: Vec<PathBuf>,
    /// A toolchain version, e.g. node=20.11.0; repeat. Wins over detection.
    #[arg(long = "toolchain", value_name = "NAME=VERSION", value_parser = parse_toolchain_spec)]
    pub toolchains: Vec<(String, String)>,
    /// Do not run node/python3/go/rustc/java/ruby to learn versions.
    #[arg(long)]
    pub no_detect_toolchain: bool,
    /// Seconds each toolchain's version command may take.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub toolchain_timeout: u64,
    /// An environment variable whose value goes into the key (hashed); repeat.
    #[arg(long = "env", value_name = "NAME", value_parser = parse_env_name)]
    pub env: Vec<String>,
    /// A build configuration file whose bytes go into the key (hashed);
    /// repeat.
    #[arg(
        long = "build-config-file",
        visible_alias = "config-file",
        value_name = "PATH"
    )]
    pub config_files: Vec<PathBuf>,
    /// A build configuration string (e.g. `--release`) that goes into the key
    /// (hashed); repeat. (`--config` is runcache's own configuration file.)
    #[arg(
        long = "build-config",
        value_name = "STRING",
        allow_hyphen_values = true
    )]
    pub config_values: Vec<String>,
    /// Repository (`owner/name`); default: `$GITHUB_REPOSITORY`, else the
    /// `origin` remote's owner/name, else `local/{directory name}`.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repository: Option<String>,
    /// Print every part of the key as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    #[command(flatten)]
    pub derive: DeriveArgs,
    /// The commit built; default: `git rev-parse HEAD` in --dir.
    #[arg(long, env = "GITHUB_SHA")]
    pub sha: Option<String>,
}

impl KeyCommand {
    fn args(&self) -> &DeriveArgs {
        match self {
            Self::Deps(a) => a,
            Self::Output(a) => &a.derive,
        }
    }

    /// Resolves paths against `cwd` and reads the `--env` variables.
    pub fn to_request(&self, cwd: &Path) -> KeyRequest {
        let a = self.args();
        let (kind, commit) = match self {
            Self::Deps(_) => (KeyKind::Deps, None),
            Self::Output(o) => (KeyKind::Output, o.sha.clone()),
        };
        let dir = match a.dir.as_path() {
            d if d == Path::new(".") => cwd.to_path_buf(),
            d => cwd.join(d),
        };
        KeyRequest {
            kind,
            repository: a.repository.clone().unwrap_or_default(),
            commit,
            options: DeriveOptions {
                lockfiles: a.lockfiles.iter().map(|p| cwd.join(p)).collect(),
                toolchains: a.toolchains.iter().cloned().collect(),
                detect_toolchains: !a.no_detect_toolchain,
                toolchain_timeout: Duration::from_secs(a.toolchain_timeout),
                env: crate::context::env_values(&a.env),
                config_files: a.config_files.iter().map(|p| cwd.join(p)).collect(),
                config_values: a.config_values.clone(),
            },
            dir,
        }
    }
}

/// `runcache key …`: derives the key, prints it (or `--json`) on stdout and
/// appends the step outputs to `$GITHUB_OUTPUT` when set. Unless `quiet`,
/// says on stderr what the key was derived from.
pub fn run(args: &KeyArgs, quiet: bool) -> Result<KeyReport, DeriveError> {
    let cwd = std::env::current_dir().map_err(|source| DeriveError::Dir {
        dir: PathBuf::from("."),
        source,
    })?;
    let report = derive_key(&args.command.to_request(&cwd))?;
    emit(
        &report,
        args.command.args().json,
        RunContext::github_output().as_deref(),
        &mut std::io::stdout().lock(),
    )?;
    if !quiet {
        let d = &report.derivation;
        let lockfiles = d
            .lockfiles
            .iter()
            .map(|l| l.path.as_str())
            .collect::<Vec<_>>();
        eprintln!(
            "runcache: {} key from {}; toolchain {}",
            report.kind.as_str(),
            if lockfiles.is_empty() {
                "no lockfiles".to_string()
            } else {
                lockfiles.join(", ")
            },
            d.toolchain.as_deref().unwrap_or(NO_TOOLCHAIN),
        );
    }
    Ok(report)
}

/// `NAME=VERSION` for `--toolchain`.
pub fn parse_toolchain_spec(spec: &str) -> Result<(String, String), DeriveError> {
    match spec.split_once('=') {
        Some((name, version)) if !name.trim().is_empty() && !version.trim().is_empty() => {
            Ok((name.trim().to_string(), version.trim().to_string()))
        }
        _ => Err(DeriveError::ToolchainSpec(spec.to_string())),
    }
}

fn parse_env_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        Err(format!(
            "`{name}` is not a variable name: give the NAME (e.g. --env NODE_ENV); \
             its value is read from the environment"
        ))
    } else {
        Ok(name.to_string())
    }
}

fn head_commit(dir: &Path) -> Result<String, DeriveError> {
    toolchain::run_with_timeout(
        "git",
        &["rev-parse", "HEAD"],
        Some(dir),
        Duration::from_secs(10),
    )
    .ok()
    .filter(|out| out.status.success())
    .map(|out| out.stdout.trim().to_string())
    .filter(|sha| !sha.is_empty())
    .ok_or_else(|| DeriveError::NoCommit {
        dir: dir.to_path_buf(),
    })
}

/// A key part: commas (forbidden), `:` (the separator) and whitespace
/// replaced by `_`; longer than `max` characters → a prefix, `~` and a hash
/// of the whole, so it stays unique, deterministic and within bounds.
fn part(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            ',' | ':' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let keep = max - SHORT_HASH - 1;
    format!(
        "{}~{}",
        clean.chars().take(keep).collect::<String>(),
        short_hash(s)
    )
}

/// Toolchain names and versions also lose `+`, which joins the summary.
fn clean_toolchain(s: &str) -> String {
    part(s.trim(), usize::MAX).replace('+', "_")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn short_hash(s: &str) -> String {
    sha256_hex(s.as_bytes())[..SHORT_HASH].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_parts_keep_a_prefix_and_stay_within_bounds() {
        let long = "a".repeat(300);
        let p = part(&long, MAX_PART);
        assert_eq!(p.chars().count(), MAX_PART);
        assert!(p.starts_with("aaaa"));
        assert_ne!(p, part(&"a".repeat(301), MAX_PART));
        assert_eq!(part("o/r,x:y z", MAX_PART), "o/r_x_y_z");
    }
}
