//! What the `runcache` binary tests share: a sandbox (a workspace, a
//! directory outside it with a sentinel, a `RUNCACHE_HOME`) and the binary
//! run in it with a clean, GitHub-like environment.

#![allow(dead_code)] // each test binary uses its own part

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
};

pub const REPO: &str = "acme/app";
pub const MAIN: &str = "refs/heads/main";

pub struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    /// An empty workspace, and `outside/sentinel` beside it.
    pub fn new() -> Self {
        let s = Self {
            root: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(s.ws()).unwrap();
        fs::create_dir_all(s.outside()).unwrap();
        fs::write(s.outside().join("sentinel"), b"untouched").unwrap();
        s
    }

    /// The sandbox's top directory (the workspace, home and `outside` are
    /// in it).
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    pub fn ws(&self) -> PathBuf {
        self.root.path().join("ws")
    }

    /// A directory outside the workspace: restores must never write here.
    pub fn outside(&self) -> PathBuf {
        self.root.path().join("outside")
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// `$GITHUB_OUTPUT` of every run.
    pub fn output_file(&self) -> PathBuf {
        self.root.path().join("github_output")
    }

    /// Runs `runcache` in the workspace with a clean, GitHub-like env.
    pub fn run(&self, args: &[&str], git_ref: &str) -> Output {
        self.run_env(args, git_ref, &[])
    }

    /// [`Sandbox::run`] with `extra` variables set on top.
    #[allow(clippy::disallowed_methods)] // passes the test runner's PATH on
    pub fn run_env(&self, args: &[&str], git_ref: &str, extra: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_runcache"))
            .args(args)
            .current_dir(self.ws())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root.path())
            .env("RUNCACHE_HOME", self.home())
            .env("GITHUB_REPOSITORY", REPO)
            .env("GITHUB_REF", git_ref)
            .env("GITHUB_EVENT_NAME", "push")
            .env("GITHUB_OUTPUT", self.output_file())
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    }

    /// What the runs wrote to `$GITHUB_OUTPUT`.
    pub fn outputs(&self) -> String {
        fs::read_to_string(self.output_file()).unwrap_or_default()
    }

    /// The names in [`Sandbox::outside`], sorted.
    pub fn outside_listing(&self) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

/// Asserts a successful exit (showing both streams if not); returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
