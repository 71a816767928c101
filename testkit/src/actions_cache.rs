//! The real `@actions/cache` client (npm, pinned in
//! `tests/clients/actions-cache/`), installed once per test binary and run
//! as a job would run it: `node client.mjs save|restore …` with the
//! runner's variables pointing at a server. Its `RESULT {json}` line is
//! what a test asserts on (`cacheId`, `matchedKey`, `warnings`, `error`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use serde_json::Value;

/// Which protocol the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `ACTIONS_CACHE_SERVICE_V2=true`: Twirp + blob URLs.
    V2,
    /// The REST service under `ACTIONS_CACHE_URL`.
    V1,
}

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/actions-cache")
}

/// Installs the pinned client once per test binary (`install.sh`: npm ci)
/// and returns its driver script.
pub fn script() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = client_dir();
            let status = std::process::Command::new("bash")
                .arg(dir.join("install.sh"))
                .status()
                .unwrap_or_else(|e| {
                    panic!("could not run bash for {}/install.sh: {e}", dir.display())
                });
            assert!(
                status.success(),
                "installing the @actions/cache client failed: it needs Node.js 20+ and npm \
                 (Debian: apt-get install nodejs npm), then `bash tests/clients/actions-cache/install.sh`"
            );
            dir.join("client.mjs")
        })
        .clone()
}

/// A job on a runner: where it runs and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The server's base URL (`http://127.0.0.1:PORT/`).
    pub url: &'a str,
    pub protocol: Protocol,
    /// `ACTIONS_RUNTIME_TOKEN`.
    pub token: &'a str,
    /// `GITHUB_WORKSPACE` and the working directory.
    pub workspace: &'a Path,
    /// `RUNNER_TEMP` and `HOME`.
    pub temp: &'a Path,
}

impl Job<'_> {
    /// Runs the client (`client.mjs` args) and returns its `RESULT` JSON,
    /// with what it printed on stderr under `"stderr"`.
    pub async fn run(&self, args: &[&str]) -> Value {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(script())
            .args(args)
            .current_dir(self.workspace)
            // Only what the job sets decides the protocol and the host.
            .env_remove("ACTIONS_CACHE_SERVICE_V2")
            .env_remove("ACTIONS_RESULTS_URL")
            .env_remove("ACTIONS_CACHE_URL")
            .env_remove("GITHUB_SERVER_URL")
            .env_remove("RUNNER_DEBUG")
            .env("HOME", self.temp)
            .env("GITHUB_WORKSPACE", self.workspace)
            .env("RUNNER_TEMP", self.temp)
            .env("ACTIONS_RUNTIME_TOKEN", self.token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match self.protocol {
            Protocol::V2 => cmd
                .env("ACTIONS_CACHE_SERVICE_V2", "true")
                .env("ACTIONS_RESULTS_URL", self.url),
            Protocol::V1 => cmd.env("ACTIONS_CACHE_URL", self.url),
        };
        let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
            .await
            .expect("the client finished within 10 minutes")
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| {
                panic!("the client printed no RESULT line; stdout:\n{stdout}\nstderr:\n{stderr}")
            });
        let mut result: Value = serde_json::from_str(line).unwrap();
        result["stderr"] = Value::String(stderr.into_owned());
        result
    }
}
