//! `runcache serve`: the client protocols, a front door beside the CLI.
//! The clients people already run reach the cache unmodified: the
//! `@actions/cache` library (inside `actions/cache` and every `setup-*`
//! action) through the GitHub Actions cache service, v2 ([`twirp`] plus
//! the Azure Blob subset behind the signed URLs it hands out, [`blob`]) and
//! v1 ([`rest_v1`]). The protocol notes are `docs/design/github-cache-protocol.md`.
//!
//! Every protocol module only translates: a bearer token becomes a
//! [`Caller`] ([`auth`]), restores go through [`entries::find`] (the cache
//! library's lookup), uploads through [`uploads`] (the cache library's
//! staging, then `artifact.staged` → promote, as `runcache save`). So
//! served entries get the same verification, scopes, provenance, metrics
//! and `explain` as the CLI's.
//!
//! May touch: the ports through `runcache-cache`, the workers through
//! `runcache_worker::settle` (inline workers only), the spool directory.

pub mod access;
pub mod auth;
pub mod blob;
pub mod build_cache;
pub mod dashboard;
pub mod entries;
mod failure;
pub mod rest_v1;
pub mod signed;
pub mod twirp;
pub mod uploads;
pub mod upstream;

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    extract::Request,
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    serve::ListenerExt as _,
    Router,
};
use runcache_infra::{telemetry, Backend, Config};
use tokio_util::task::TaskTracker;
use tower::limit::ConcurrencyLimitLayer;
use tracing::{field::Empty, info, info_span, Instrument};

pub use auth::{Auth, Caller, GithubAuth, GithubAuthConfig, StaticToken, StaticTokens};
pub use failure::Failure;
pub use signed::Signer;
pub use uploads::Uploads;
pub use upstream::Upstream;

/// [`ServeOptions::max_object_bytes`] unless told: Bazel and Gradle store
/// whole outputs, Turborepo and Nx whole task tarballs.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 1 << 30;

/// How a server runs (the `runcache serve` flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The URL clients reach this server at, for the signed URLs it hands
    /// out (`http://cache.internal:8080`); default: `http://` + the
    /// request's `Host`.
    pub public_url: Option<String>,
    /// Requests handled at once; more wait (backpressure).
    pub max_requests: usize,
    /// How long a restore waits for an upload finalized here to be
    /// indexed (promote runs elsewhere).
    pub promotion_wait: Duration,
    /// How long a signed URL stays valid.
    pub url_ttl: Duration,
    /// The signing key (shared by servers behind one address); default a
    /// random key per process.
    pub url_secret: Option<Vec<u8>>,
    /// Where blocks and chunks wait for their upload to complete; default
    /// `serve-spool/` under the local backend's home.
    pub spool_dir: Option<PathBuf>,
    /// The largest build-cache object a PUT may store (`413` above it).
    pub max_object_bytes: u64,
    /// Where paths the cache service does not own are forwarded (GitHub's
    /// results URL, so `upload-artifact` keeps working); none: refused.
    pub upstream: Option<Upstream>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            public_url: None,
            max_requests: 64,
            promotion_wait: Duration::from_secs(15),
            url_ttl: Duration::from_secs(3600),
            url_secret: None,
            spool_dir: None,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            upstream: None,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct State {
    pub config: Config,
    pub backend: Backend,
    pub auth: Auth,
    pub signer: Signer,
    pub uploads: Arc<Uploads>,
    public_url: Option<String>,
    /// See [`ServeOptions::max_object_bytes`].
    pub max_object_bytes: u64,
    upstream: Option<Upstream>,
    /// Work that outlives its request (v1 commits); drained on shutdown.
    tasks: TaskTracker,
    /// Access events, sent in batches off the request path.
    pub access: access::AccessReporter,
}

impl State {
    pub fn new(
        config: Config,
        backend: Backend,
        auth: Auth,
        opts: &ServeOptions,
    ) -> std::io::Result<Arc<State>> {
        let spool = opts
            .spool_dir
            .clone()
            .unwrap_or_else(|| config.home.join("serve-spool"));
        let signer = match &opts.url_secret {
            Some(key) => Signer::new(key.clone(), opts.url_ttl),
            None => Signer::random(opts.url_ttl),
        };
        let access = access::AccessReporter::start(backend.clone());
        Ok(Arc::new(State {
            uploads: Arc::new(Uploads::new(spool, opts.promotion_wait)?),
            config,
            backend,
            auth,
            signer,
            public_url: opts.public_url.clone(),
            max_object_bytes: opts.max_object_bytes,
            upstream: opts.upstream.clone(),
            tasks: TaskTracker::new(),
            access,
        }))
    }

    /// The caller the request's bearer token names, with the request's
    /// trace context for the events sent on its behalf.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, Failure> {
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let mut caller = self
            .auth
            .caller(authorization, &self.config.default_branch)
            .await?;
        caller.job.traceparent = telemetry::current_traceparent().unwrap_or_default();
        Ok(caller)
    }

    /// `path` as an absolute URL clients can reach.
    pub fn url(&self, headers: &HeaderMap, path_and_query: &str) -> String {
        let base = match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let host = headers
                    .get(axum::http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("127.0.0.1");
                format!("http://{host}")
            }
        };
        format!("{base}{path_and_query}")
    }
}

/// Every route: the cache service's two protocols and the blob subset.
pub fn router(state: Arc<State>, max_requests: usize) -> Router {
    Router::new()
        .merge(twirp::routes())
        .merge(rest_v1::routes())
        .merge(blob::routes())
        .merge(build_cache::routes())
        .merge(dashboard::routes())
        .route("/healthz", axum::routing::get(healthz))
        .fallback(not_ours)
        .with_state(state)
        .layer(axum::middleware::from_fn(traced))
        .layer(ConcurrencyLimitLayer::new(max_requests.max(1)))
}

/// Serves on `listener` until `shutdown` completes, then stops accepting,
/// drains the requests in flight and the work they left (v1 commits).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone(), opts.max_requests);
    // Small responses go out at once: with Nagle's algorithm a response
    // whose head and body leave in two writes waits for the client's
    // delayed ACK (40 ms per request on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    info!("no requests left; finishing background work");
    state.tasks.close();
    state.tasks.wait().await;
    state.access.close().await;
    Ok(())
}

/// One span per request, a child of the client's `traceparent` if any.
async fn traced(request: Request, next: Next) -> Response {
    let span = info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        status = Empty,
    );
    if let Some(parent) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        telemetry::set_remote_parent(&span, parent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

/// For load balancers: the process answers (no token, nothing checked
/// below it; a backend outage shows in the requests that need it).
async fn healthz() -> &'static str {
    "ok\n"
}

/// Not the cache service's: to the upstream, or refused saying so.
async fn not_ours(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    request: Request,
) -> Response {
    if let Some(upstream) = &state.upstream {
        return upstream.forward(request).await;
    }
    (
        StatusCode::NOT_FOUND,
        format!(
            "runcache serve does not serve {} {}: it implements the GitHub Actions cache \
             service (/twirp/github.actions.results.api.v1.CacheService/…, /_apis/artifactcache/…), \
             the blob URLs it signs, and the build tools' remote caches (/bazel/, /ccache/, \
             /gradle/, /nx/, /turbo/: see docs/build-caches.md). Other Actions services (artifacts, logs) are \
             forwarded only when it runs with --upstream (GitHub's results URL).\n",
            request.method(),
            request.uri().path()
        ),
    )
        .into_response()
}
