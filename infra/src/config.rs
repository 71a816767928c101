//! Configuration: defaults, then a `runcache.toml`, then `RUNCACHE_*`
//! environment variables (the environment wins). The only module that reads
//! `RUNCACHE_*` variables; everything else receives a [`Config`].
//!
//! AWS resource names default from the stage (DESIGN.md "Configuration
//! contract") and can each be overridden. [`LoadedConfig::explain`] says
//! where every value came from, for `runcache config`.

// One of the three readers of the process environment (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};

use runcache_schemas::TrustLevel;

use crate::names;

/// The file looked for in the working directory when none is named.
pub const DEFAULT_FILE: &str = "runcache.toml";
/// Names a config file explicitly.
pub const CONFIG_FILE_ENV: &str = "RUNCACHE_CONFIG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Filesystem + SQLite under `home`: the embedded default.
    Local,
    /// S3, DynamoDB, SQS and CloudWatch through the AWS SDK.
    Aws,
}

/// Every setting, with its default. Keys in `runcache.toml` are the field
/// names; environment variables are `RUNCACHE_` + the name in upper case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub backend: BackendKind,
    /// Root of the local backend (blobs, databases).
    pub home: PathBuf,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance_table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessed_queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidate_queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_namespace: Option<String>,
    /// Deliveries of a message before it is dead-lettered.
    pub max_receives: u32,
    /// zstd level for `save` (1–19).
    pub zstd_level: i32,
    /// The branch every scope falls back to.
    pub default_branch: String,
    /// Entries not accessed for this many days are evicted.
    pub ttl_days: u32,
    /// Storage quota per repository, in bytes.
    pub quota_bytes: u64,
    /// The most trust this runner's credentials carry (`untrusted`,
    /// `pull-request`, `branch`, `protected`): `save` stages under
    /// `staging/{min(trust of the job, max_trust)}/`, the prefix IAM lets
    /// the runner's role write. Set it to the runner fleet's tier.
    pub max_trust: TrustLevel,
    /// Whether the CLI does the workers' part of its own work in-process
    /// (promotes its save, counts pending accesses, applies its
    /// invalidation) instead of leaving it to `runcache-worker`. Unset:
    /// yes on the local backend (nothing else runs there), no on AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_workers: Option<bool>,
}

/// The keys, in display order.
const KEYS: [&str; 17] = [
    "backend",
    "home",
    "stage",
    "bucket",
    "index_table",
    "provenance_table",
    "staged_queue",
    "accessed_queue",
    "invalidate_queue",
    "metrics_namespace",
    "max_receives",
    "zstd_level",
    "default_branch",
    "ttl_days",
    "quota_bytes",
    "max_trust",
    "inline_workers",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            backend: BackendKind::Local,
            home: default_home(),
            stage: "dev".into(),
            bucket: None,
            index_table: None,
            provenance_table: None,
            staged_queue: None,
            accessed_queue: None,
            invalidate_queue: None,
            metrics_namespace: None,
            max_receives: 5,
            zstd_level: 3,
            default_branch: "main".into(),
            ttl_days: 90,
            quota_bytes: 10_000_000_000,
            max_trust: TrustLevel::Protected,
            inline_workers: None,
        }
    }
}

fn default_home() -> PathBuf {
    dirs::cache_dir()
        .map(|d| d.join("runcache"))
        .unwrap_or_else(|| PathBuf::from(".runcache"))
}

impl Config {
    pub fn bucket(&self) -> String {
        self.bucket
            .clone()
            .unwrap_or_else(|| names::bucket(&self.stage))
    }
    pub fn index_table(&self) -> String {
        self.index_table
            .clone()
            .unwrap_or_else(|| names::index_table(&self.stage))
    }
    pub fn provenance_table(&self) -> String {
        self.provenance_table
            .clone()
            .unwrap_or_else(|| names::provenance_table(&self.stage))
    }
    pub fn staged_queue(&self) -> String {
        self.staged_queue
            .clone()
            .unwrap_or_else(|| names::staged_queue(&self.stage))
    }
    pub fn accessed_queue(&self) -> String {
        self.accessed_queue
            .clone()
            .unwrap_or_else(|| names::accessed_queue(&self.stage))
    }
    pub fn invalidate_queue(&self) -> String {
        self.invalidate_queue
            .clone()
            .unwrap_or_else(|| names::invalidate_queue(&self.stage))
    }
    /// [`Config::inline_workers`] with its default applied.
    pub fn runs_workers_inline(&self) -> bool {
        self.inline_workers
            .unwrap_or(self.backend == BackendKind::Local)
    }
    pub fn metrics_namespace(&self) -> String {
        self.metrics_namespace
            .clone()
            .unwrap_or_else(|| names::metrics_namespace(&self.stage))
    }

    /// A config for the local backend rooted at `home`, everything else
    /// default (tests, benchmarks).
    pub fn local(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            ..Self::default()
        }
    }

    /// Loads defaults < file < environment. The file is `file` if given,
    /// else `$RUNCACHE_CONFIG`, else `./runcache.toml` if it exists.
    pub fn load(file: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
        let (figment, file) = Self::sources(file)?;
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        config.validate()?;
        Ok(LoadedConfig {
            config,
            figment,
            file,
        })
    }

    /// The defaults, the file (`file`, else `RUNCACHE_CONFIG`, else
    /// `./runcache.toml` if present) and the environment, merged in that
    /// order; not yet checked.
    fn sources(file: Option<&Path>) -> Result<(Figment, Option<PathBuf>), ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from))
            .or_else(|| Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()));
        if let Some(path) = &file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.clone()));
            }
        }
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("RUNCACHE_").only(&KEYS));
        Ok((figment, file))
    }

    /// The settings given in the file or the environment, as written, with
    /// where each came from: what `runcache config` shows when they do not
    /// make a valid configuration, so the bad value is in sight.
    pub fn given(file: Option<&Path>) -> Result<Vec<Setting>, ConfigError> {
        let (figment, _) = Self::sources(file)?;
        Ok(KEYS
            .iter()
            .filter_map(|&key| {
                let meta = figment.find_metadata(key)?;
                let source = match &meta.source {
                    Some(figment::Source::File(path)) => format!("file {}", path.display()),
                    _ if meta.name.contains("environment") => {
                        format!("env RUNCACHE_{}", key.to_uppercase())
                    }
                    _ => return None,
                };
                let value = figment.find_value(key).ok()?;
                let value = value
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| serde_json::to_string(&value).unwrap_or_default());
                Some(Setting { key, value, source })
            })
            .collect())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Value(format!("`{key}` {why}")));
        if self.stage.is_empty()
            || !self
                .stage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "stage",
                "must be letters, digits, `-` or `_` (it goes into resource names)",
            );
        }
        if self.max_receives == 0 {
            return bad("max_receives", "must be at least 1");
        }
        if !(1..=19).contains(&self.zstd_level) {
            // 20–22 ("ultra") need --ultra, far more memory and time for a
            // few percent: the CLI's --compression-level has the same range.
            return bad(
                "zstd_level",
                "must be between 1 and 19 (3 is a good default)",
            );
        }
        if self.default_branch.is_empty() {
            return bad("default_branch", "must not be empty");
        }
        Ok(())
    }
}

/// A loaded config and what it was loaded from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub file: Option<PathBuf>,
    figment: Figment,
}

/// One line of `runcache config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub key: &'static str,
    pub value: String,
    /// `default`, `default (from stage)`, `file <path>` or `env RUNCACHE_…`.
    pub source: String,
}

impl LoadedConfig {
    /// Every setting's effective value and where it came from.
    pub fn explain(&self) -> Vec<Setting> {
        let c = &self.config;
        KEYS.iter()
            .map(|&key| {
                let value = match key {
                    "backend" => format!("{:?}", c.backend).to_lowercase(),
                    "home" => c.home.display().to_string(),
                    "stage" => c.stage.clone(),
                    "bucket" => c.bucket(),
                    "index_table" => c.index_table(),
                    "provenance_table" => c.provenance_table(),
                    "staged_queue" => c.staged_queue(),
                    "accessed_queue" => c.accessed_queue(),
                    "invalidate_queue" => c.invalidate_queue(),
                    "metrics_namespace" => c.metrics_namespace(),
                    "max_receives" => c.max_receives.to_string(),
                    "zstd_level" => c.zstd_level.to_string(),
                    "default_branch" => c.default_branch.clone(),
                    "ttl_days" => c.ttl_days.to_string(),
                    "quota_bytes" => c.quota_bytes.to_string(),
                    "inline_workers" => c.runs_workers_inline().to_string(),
                    _ => c.max_trust.as_str().to_string(),
                };
                Setting {
                    key,
                    value,
                    source: self.source_of(key),
                }
            })
            .collect()
    }

    fn source_of(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            None if key == "inline_workers" => "default (from backend)".into(),
            None => "default (from stage)".into(),
            Some(meta) => {
                if let Some(figment::Source::File(path)) = &meta.source {
                    format!("file {}", path.display())
                } else if meta.name.contains("environment") {
                    format!("env RUNCACHE_{}", key.to_uppercase())
                } else {
                    "default".into()
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist (check --config or RUNCACHE_CONFIG)", .0.display())]
    MissingFile(PathBuf),
    #[error(
        "invalid configuration: {0} (run `runcache config` to see every setting and its source)"
    )]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Value(String),
}
