//! What the served-protocol tests share: `runcache serve` started on
//! 127.0.0.1 over a fresh backend (local, or the AWS adapters on this test
//! binary's moto server), the real `@actions/cache` client (npm, pinned in
//! `tests/clients/actions-cache/`, installed here on first use) run against
//! it, and the tokens the cases use.

#![allow(dead_code)]

use std::{path::Path, sync::Arc};

use runcache_infra::{Backend, Config, SystemClock};
use runcache_schemas::TrustLevel;
use runcache_server::{Auth, ServeOptions, State, StaticToken};
use serde_json::Value;
use tokio::sync::oneshot;

pub const REPO: &str = "acme/app";
pub const MAIN: &str = "refs/heads/main";
pub const FEATURE: &str = "refs/heads/feature-x";
pub const PULL: &str = "refs/pull/7/merge";

/// Tokens: a push to main, a push to a feature branch, a pull request
/// (base main), and a pull-request-trust job on main itself
/// (`pull_request_target`), which may read main but not write it.
pub const MAIN_TOKEN: &str = "tok-main";
pub const FEATURE_TOKEN: &str = "tok-feature";
pub const PR_TOKEN: &str = "tok-pr";
pub const PR_ON_MAIN_TOKEN: &str = "tok-pr-on-main";

fn tokens() -> Vec<StaticToken> {
    let token =
        |token: &str, git_ref: &str, trust, base: Option<&str>, trigger: &str| StaticToken {
            token: token.into(),
            repository: REPO.into(),
            git_ref: git_ref.into(),
            base_ref: base.map(Into::into),
            trust,
            trigger_event: Some(trigger.into()),
            actor: Some("octocat".into()),
        };
    vec![
        token(MAIN_TOKEN, MAIN, TrustLevel::Protected, None, "push"),
        token(FEATURE_TOKEN, FEATURE, TrustLevel::Branch, None, "push"),
        token(
            PR_TOKEN,
            PULL,
            TrustLevel::PullRequest,
            Some(MAIN),
            "pull_request",
        ),
        token(
            PR_ON_MAIN_TOKEN,
            MAIN,
            TrustLevel::PullRequest,
            None,
            "pull_request_target",
        ),
    ]
}

/// A backend for the server, and what keeps it alive.
pub struct Env {
    pub config: Config,
    pub backend: Backend,
    _dir: tempfile::TempDir,
}

/// The local backend in a temporary directory (workers inline, its default).
pub async fn local() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::local(dir.path());
    let backend = Backend::local(&config, Arc::new(SystemClock)).unwrap();
    Env {
        config,
        backend,
        _dir: dir,
    }
}

/// The AWS adapters on moto, fresh resources; the server promotes inline
/// (it holds the credentials) unless a test turns that off.
pub async fn aws_moto() -> Env {
    let (sdk, mut config, _) = runcache_testkit::moto::fresh(5).await;
    config.inline_workers = Some(true);
    let dir = tempfile::tempdir().unwrap();
    config.home = dir.path().to_path_buf();
    let backend = runcache_infra::aws::connect_with(&sdk, &config).expect("aws backend");
    Env {
        config,
        backend,
        _dir: dir,
    }
}

/// Expands `async fn case(e: Env)` bodies into one test per backend.
#[macro_export]
macro_rules! served_tests {
    ($($case:ident),* $(,)?) => {
        runcache_testkit::each_backend!($crate::served_tests_on! { $($case),* });
    };
}

#[macro_export]
macro_rules! served_tests_on {
    ($backend:ident [$($cfg:tt)*] { $($case:ident),* }) => {
        #[cfg(all($($cfg)*))]
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::$backend().await).await;
                }
            )*
        }
    };
}

/// A running server.
pub struct Served {
    pub url: String,
    pub state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Stops accepting, drains, and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// `runcache serve` on 127.0.0.1 (a free port) over `env`.
pub async fn serve(env: &Env) -> Served {
    serve_with(env, ServeOptions::default()).await
}

pub async fn serve_with(env: &Env, opts: ServeOptions) -> Served {
    serve_auth(env, Auth::static_tokens(tokens()), opts).await
}

/// `runcache serve` checking tokens with `auth`.
pub async fn serve_auth(env: &Env, auth: Auth, opts: ServeOptions) -> Served {
    let state = State::new(env.config.clone(), env.backend.clone(), auth, &opts).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let state = state.clone();
        async move {
            runcache_server::serve(listener, state, &opts, async {
                let _ = rx.await;
            })
            .await
        }
    });
    Served {
        url,
        state,
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub use runcache_testkit::actions_cache::Protocol;

/// A job's workspace on the runner.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    temp: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            temp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `files` (relative path, bytes) under the workspace.
    pub fn write(&self, files: &[(&str, &[u8])]) {
        for (rel, bytes) in files {
            let p = self.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }

    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path().join(rel)).ok()
    }

    pub fn remove(&self, rel: &str) {
        let _ = std::fs::remove_dir_all(self.path().join(rel));
    }

    /// Runs the real client (`client.mjs` args) as a job holding `token`,
    /// and returns its `RESULT` JSON.
    pub async fn client(
        &self,
        served: &Served,
        proto: Protocol,
        token: &str,
        args: &[&str],
    ) -> Value {
        runcache_testkit::actions_cache::Job {
            url: &served.url,
            protocol: proto,
            token,
            workspace: self.path(),
            temp: self.temp.path(),
        }
        .run(args)
        .await
    }

    pub async fn save(
        &self,
        s: &Served,
        proto: Protocol,
        token: &str,
        key: &str,
        path: &str,
    ) -> Value {
        self.client(s, proto, token, &["save", key, path]).await
    }

    pub async fn restore(
        &self,
        s: &Served,
        proto: Protocol,
        token: &str,
        key: &str,
        restore_keys: &[&str],
        path: &str,
    ) -> Value {
        let joined = restore_keys.join(",");
        let mut args = vec!["restore", key];
        if !restore_keys.is_empty() {
            args.extend(["--restore-keys", &joined]);
        }
        args.push(path);
        self.client(s, proto, token, &args).await
    }
}

/// The saved cache id, asserting the save succeeded.
pub fn saved(result: &Value) -> i64 {
    let id = result["cacheId"].as_i64().unwrap_or(-1);
    assert!(id > 0, "the save failed: {result:#}");
    id
}

/// The matched key of a restore (`None` on a miss), asserting it raised
/// no warning.
pub fn matched(result: &Value) -> Option<String> {
    assert!(
        result["error"].is_null() && result["warnings"].as_array().is_some_and(|w| w.is_empty()),
        "the restore failed: {result:#}"
    );
    result["matchedKey"].as_str().map(str::to_string)
}

pub use runcache_testkit::http::http;

pub async fn twirp(s: &Served, method: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let url = format!(
        "{}twirp/github.actions.results.api.v1.CacheService/{method}",
        s.url
    );
    let (status, _, body) = http("POST", &url, &headers, body.to_string().as_bytes()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}
