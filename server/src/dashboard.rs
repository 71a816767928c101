//! The dashboard page on `runcache serve` (`GET /dashboard`), and the
//! small server behind `runcache admin dashboard --serve`.
//!
//! On `serve` the page shows only the caller's repository (its token, as
//! for every route; a browser is asked for Basic credentials with the
//! token as the password) and no queue figures, which are the operators'.
//! `admin dashboard --serve` is the operator's own: it runs with the
//! admin's credentials and shows everything it is given.
//!
//! May touch: the ports, read only (through `runcache_dashboard`).

use std::{future::Future, sync::Arc};

use axum::{
    extract::State as AxumState,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use runcache_dashboard::{gather, render, Options};
use runcache_infra::Backend;
use tracing::warn;

use crate::{Failure, State};

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new().route("/dashboard", get(page))
}

/// The caller's repository, drawn now.
async fn page(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap) -> Response {
    let caller = match state.caller(&headers).await {
        Ok(c) => c,
        Err(f) => return refused(f),
    };
    if state.config.runs_workers_inline() {
        // No metrics worker runs (the local backend): do its part first.
        let drained = runcache_worker::settle::accesses(&state.backend).await;
        if let Some(why) = drained.stopped_by {
            warn!(%why, "the dashboard does not count the restores still queued");
        }
        if let Err(e) = runcache_worker::settle::gauges(&state.backend).await {
            warn!(error = %e, "the dashboard's storage figures are not current");
        }
    }
    let options = Options {
        repository: Some(caller.job.scope.repository.clone()),
        now: state.backend.clock.now(),
        top: 10,
        queues: false,
        initial_range: "24h",
        source: format!("runcache serve, {:?} backend", state.config.backend).to_lowercase(),
    };
    drawn(&state.backend, &options).await
}

/// A 401 asks the browser for credentials; other refusals as they are.
fn refused(f: Failure) -> Response {
    let mut response = (f.status, format!("{}\n", f.msg)).into_response();
    if f.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Basic realm=\"runcache dashboard: any user name, your token as the password\"",
            ),
        );
    }
    response
}

/// The page for `options`, or a 503 saying what failed.
pub async fn drawn(backend: &Backend, options: &Options) -> Response {
    match gather(backend, options).await {
        Ok(d) => {
            let mut response = render(&d).into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // Nothing to load from anywhere: say so to the browser.
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            response
        }
        Err(e) => {
            warn!(error = %e, "the dashboard could not be drawn");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the dashboard could not read the cache store: {e}\n"),
            )
                .into_response()
        }
    }
}

/// Serves the page at `/` (and `/dashboard`) on `listener` until
/// `shutdown`, redrawn at every load with `options()`.
pub async fn serve_page(
    listener: tokio::net::TcpListener,
    backend: Backend,
    options: impl Fn() -> Options + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new((backend, options));
    let handler = {
        let state = state.clone();
        move || {
            let state = state.clone();
            async move { drawn(&state.0, &(state.1)()).await }
        }
    };
    let app = Router::new()
        .route("/", get(handler.clone()))
        .route("/dashboard", get(handler));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
