//! The run's identity: repository, ref, trigger and trust, and the build
//! provenance a save records. Taken from flags, which default to the GitHub
//! Actions variables (`GITHUB_REPOSITORY`, `GITHUB_REF`, …); outside GitHub
//! Actions the repository defaults to the `origin` remote's owner/name (or
//! `local/{directory}`) and the ref to the default branch. The only module of the producer that reads the process
//! environment (`GITHUB_*`, `RUNNER_*`, `TRACEPARENT`, the variables a key
//! names), besides clap's `env` defaults on argument structs; the lint in
//! clippy.toml keeps it so.

// One of the three readers of the process environment (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::{collections::BTreeMap, path::PathBuf};

use clap::Args;
use runcache_schemas::{BuildProvenance, Scope, TrustLevel};

use crate::keys::KeyError;

/// Where a run sits; shared by save, restore and get.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// Repository (`owner/name`) the cache belongs to; default:
    /// `$GITHUB_REPOSITORY`, else the workspace's `origin` remote
    /// (`owner/name`), else `local/{directory name}`, so that projects on
    /// one machine never share entries.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repository: Option<String>,
    /// The ref being built (`refs/heads/main`, `refs/pull/7/merge`); default:
    /// the default branch.
    #[arg(long = "ref", env = "GITHUB_REF")]
    pub git_ref: Option<String>,
    /// For a pull request: its base branch, searched after the PR's own scope.
    #[arg(long, env = "GITHUB_BASE_REF")]
    pub base_ref: Option<String>,
    /// The branch every run may fall back to.
    #[arg(long)]
    pub default_branch: Option<String>,
    /// The trigger (`push`, `pull_request`, …); decides the trust recorded.
    #[arg(long, env = "GITHUB_EVENT_NAME", default_value = "local")]
    pub event_name: String,
    /// Directory the path patterns are relative to.
    #[arg(long, env = "GITHUB_WORKSPACE")]
    pub workspace: Option<PathBuf>,
}

/// The resolved context.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub scope: Scope,
    pub base_ref: Option<String>,
    pub default_branch: String,
    pub event_name: String,
    pub trust: TrustLevel,
    pub workspace: PathBuf,
    /// W3C trace context of this command, put on every event it sends:
    /// `$TRACEPARENT` when a caller passes one (a child span of it), else a
    /// new trace.
    pub traceparent: String,
}

impl ScopeArgs {
    pub fn resolve(&self, config_default_branch: &str) -> Result<RunContext, KeyError> {
        let default_branch = self
            .default_branch
            .clone()
            .unwrap_or_else(|| config_default_branch.to_string());
        let git_ref = self
            .git_ref
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("refs/heads/{default_branch}"));
        let workspace = self
            .workspace
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        let repository = match self.repository.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => local_repository(&workspace),
        };
        let scope = Scope::new(repository, git_ref);
        let trust = TrustLevel::classify(&self.event_name, &scope.git_ref, &default_branch);
        Ok(RunContext {
            scope,
            base_ref: self.base_ref.clone().filter(|b| !b.is_empty()),
            default_branch,
            event_name: self.event_name.clone(),
            trust,
            workspace,
            traceparent: runcache_infra::queue::trace::child_of(var("TRACEPARENT").as_deref()),
        })
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The values of the environment variables a key names (`runcache key
/// --env NAME`), unset ones as `None`.
pub fn env_values(names: &[String]) -> std::collections::BTreeMap<String, Option<String>> {
    names
        .iter()
        .map(|name| {
            let value = std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
            (name.clone(), value)
        })
        .collect()
}

impl RunContext {
    /// The job, as the cache library sees it.
    pub fn job(&self) -> runcache_cache::Job {
        runcache_cache::Job {
            scope: self.scope.clone(),
            base_ref: self.base_ref.clone(),
            default_branch: self.default_branch.clone(),
            trust: self.trust,
            traceparent: self.traceparent.clone(),
        }
    }

    /// Who an admin request comes from when `--requested-by` is not given:
    /// `$GITHUB_ACTOR` inside Actions, else `$USER`.
    pub fn requester() -> Option<String> {
        var("GITHUB_ACTOR").or_else(|| var("USER"))
    }

    /// Provenance of the build about to be saved, from the Actions
    /// environment and git.
    pub fn provenance(&self) -> BuildProvenance {
        let commit_sha = var("GITHUB_SHA").or_else(|| git(&self.workspace, &["rev-parse", "HEAD"]));
        let commit_message = commit_sha
            .as_deref()
            .and_then(|sha| git(&self.workspace, &["log", "-1", "--format=%s", sha]));
        BuildProvenance {
            repository: self.scope.repository.clone(),
            commit_sha,
            commit_message,
            branch: self.scope.git_ref.clone(),
            base_ref: self.base_ref.clone(),
            workflow_ref: var("GITHUB_WORKFLOW_REF"),
            workflow_run_id: var("GITHUB_RUN_ID"),
            run_attempt: var("GITHUB_RUN_ATTEMPT"),
            job: var("GITHUB_JOB"),
            actor: var("GITHUB_ACTOR"),
            trigger_event: self.event_name.clone(),
            trust: self.trust,
            toolchains: BTreeMap::new(),
            toolchain: None,
            lockfile_hash: None,
            build_started_at: None,
            build_duration_ms: None,
            dependency_hashes: Vec::new(),
            runner_name: var("RUNNER_NAME"),
            runner_os: var("RUNNER_OS"),
            runner_arch: var("RUNNER_ARCH"),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Where `restore` leaves a marker for `save` in the same job (build
    /// start, entries restored): `$RUNNER_TEMP`, only inside Actions.
    pub fn job_marker() -> Option<PathBuf> {
        var("RUNNER_TEMP").map(|d| PathBuf::from(d).join("runcache-job.json"))
    }

    /// `$GITHUB_OUTPUT`, when running in Actions.
    pub fn github_output() -> Option<PathBuf> {
        var("GITHUB_OUTPUT").map(PathBuf::from)
    }

    /// Inside a GitHub Actions job (`GITHUB_ACTIONS=true`): warnings and
    /// errors become workflow annotations.
    pub fn in_github_actions() -> bool {
        var("GITHUB_ACTIONS").as_deref() == Some("true")
    }
}

/// The repository a run outside GitHub Actions belongs to: the `origin`
/// remote's `owner/name` (any host, https or ssh), else
/// `local/{name of the git top level, or of dir}`.
pub fn local_repository(dir: &std::path::Path) -> String {
    if let Some(name) =
        git(dir, &["remote", "get-url", "origin"]).and_then(|url| owner_and_name(&url))
    {
        return name;
    }
    let top = git(dir, &["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let dir = top
        .or_else(|| std::fs::canonicalize(dir).ok())
        .unwrap_or_else(|| dir.to_path_buf());
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "root".into());
    format!("local/{name}")
}

/// `owner/name` from `https://host/owner/name(.git)`, `git@host:owner/name`
/// or `ssh://git@host/owner/name`.
fn owner_and_name(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':').map_or(url, |(_, p)| p),
    };
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let (name, owner) = (parts.next()?, parts.next()?);
    Some(format!("{owner}/{name}"))
}

fn git(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::owner_and_name;

    #[test]
    fn remotes_of_every_form_give_owner_and_name() {
        for url in [
            "https://github.com/acme/web.git",
            "https://github.com/acme/web",
            "git@github.com:acme/web.git",
            "ssh://git@github.com/acme/web.git",
            "https://gitlab.example.com/group/acme/web/",
        ] {
            assert_eq!(owner_and_name(url).as_deref(), Some("acme/web"), "{url}");
        }
        assert_eq!(owner_and_name("web"), None);
    }
}
