//! Logs and traces for runcache's binaries: [`init`] installs the global
//! `tracing` subscriber and returns a guard that flushes on drop.
//!
//! - **Logs** always: `tracing-subscriber`'s formatter on stderr, plain or
//!   JSON ([`LogFormat`]), filtered by `RUNCACHE_LOG` (an `EnvFilter`
//!   directive such as `info,runcache_infra=debug`).
//! - **OpenTelemetry** only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: every `tracing` span at
//!   INFO or above is also exported as an OpenTelemetry span, over OTLP
//!   HTTP/protobuf (`{endpoint}/v1/traces`), batched on a background thread.
//!   The service name is `OTEL_SERVICE_NAME` (or `service.name` in
//!   `OTEL_RESOURCE_ATTRIBUTES`), else the binary's own. The other standard
//!   variables (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `OTEL_BSP_*`) are
//!   honoured by the SDK. Only `http://` endpoints: point it at a collector
//!   (an OpenTelemetry Collector or ADOT sidecar on `localhost:4318` is the
//!   usual deployment); an `https://` endpoint is refused with a warning and
//!   the process runs with logs only.
//!
//! Trace context crosses the queues as a W3C `traceparent` message attribute
//! (`queue::ATTR_TRACEPARENT`): [`set_remote_parent`] makes a span the child
//! of one, [`current_traceparent`] names the current span for the events it
//! sends.
//!
//! This module reads the OpenTelemetry variables itself (they are
//! OpenTelemetry's contract, not runcache configuration); `RUNCACHE_LOG` is
//! the one runcache variable it reads, as the binaries always did.

// One of the three readers of the process environment (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::{fmt, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};
use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
    Context,
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    filter::{EnvFilter, LevelFilter},
    layer::SubscriberExt,
    util::SubscriberInitExt,
    Layer,
};

/// The variables that switch export on (either one).
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line (for log shippers).
    Json,
}

/// What [`init_with`] sets up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
    pub service_name: String,
    /// The log filter when `RUNCACHE_LOG` is unset or invalid (`info`,
    /// `warn`, …).
    pub default_log_filter: String,
    pub log_format: LogFormat,
}

impl Settings {
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            default_log_filter: "info".into(),
            log_format: LogFormat::Plain,
        }
    }
}

/// Keeps the exporter alive; dropping it flushes the spans not yet sent
/// (bounded by the exporter's timeout). Hold it in `main` until the end,
/// and drop it before the tokio runtime.
#[must_use = "dropping the guard stops and flushes the OpenTelemetry export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends every finished span now.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "could not flush OpenTelemetry spans");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: could not flush OpenTelemetry spans on exit: {e}");
            }
        }
    }
}

/// [`init_with`] with plain logs at `info` unless `RUNCACHE_LOG` says
/// otherwise.
pub fn init(service_name: &str) -> Telemetry {
    init_with(Settings::new(service_name))
}

/// Installs the global subscriber: logs on stderr, plus OpenTelemetry export
/// when an OTLP endpoint is configured. Never fails: a problem with the
/// exporter is a warning and the process runs with logs only. A second call
/// (tests) leaves the first subscriber in place.
pub fn init_with(settings: Settings) -> Telemetry {
    let filter = EnvFilter::try_from_env("RUNCACHE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(&settings.default_log_filter));
    // Colour only for a person at a terminal: CI logs and files get text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = match settings.log_format {
        LogFormat::Plain => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);

    let (provider, problem) = match endpoint() {
        None => (None, None),
        Some(endpoint) => match provider(&settings.service_name, &endpoint) {
            Ok(p) => (Some(p), None),
            Err(reason) => (None, Some(reason)),
        },
    };
    // Spans go to OpenTelemetry at INFO and above whatever RUNCACHE_LOG says
    // about log lines: the two are filtered apart.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("runcache"))
            .with_filter(LevelFilter::INFO)
    });
    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    if let Some(reason) = problem {
        tracing::warn!(%reason, "OpenTelemetry export is off; logging only");
    }
    if !installed {
        // Someone else's subscriber is in place: our exporter would get no
        // spans, so do not start it.
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return Telemetry { provider: None };
    }
    Telemetry { provider }
}

/// The configured OTLP endpoint, if export is on.
fn endpoint() -> Option<String> {
    ENDPOINT_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

fn provider(service_name: &str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    if !endpoint.trim_start().starts_with("http://") {
        return Err(format!(
            "OTLP endpoint `{endpoint}` is not http://: this build exports over plain HTTP only; \
             run a collector beside the worker (e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318)"
        ));
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(var) {
            if !p.is_empty() && p != "http/protobuf" {
                eprintln!(
                    "warning: {var}={p} is not supported; runcache exports OTLP as http/protobuf"
                );
            }
            break;
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(OtlpHttpClient::new(EXPORT_TIMEOUT)?)
        .build()
        .map_err(|e| e.to_string())?;
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win (the SDK's resource
    // detectors read them); the binary's name is the fallback.
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|v| !v.as_str().starts_with("unknown_service"))
        .unwrap_or(false);
    let resource = if named {
        detected
    } else {
        Resource::builder()
            .with_service_name(service_name.to_string())
            .build()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Per export request (the exporter's own default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes `span` a child of the W3C `traceparent`, so it joins the trace of
/// whoever sent the message. Call it before the span is first entered. A
/// malformed traceparent, or no OpenTelemetry layer, leaves the span as is.
pub fn set_remote_parent(span: &Span, traceparent: &str) {
    let carrier = Carrier(traceparent);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Fails only without the OpenTelemetry layer (export off) or for a
        // span already started: either way there is nothing to join.
        let _ = span.set_parent(cx);
    }
}

/// The W3C traceparent of the current span when it is exported to
/// OpenTelemetry (so an event sent now names it as its parent); `None`
/// when export is off or there is no current span.
pub fn current_traceparent() -> Option<String> {
    let cx: Context = Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// A traceparent as a text-map carrier.
struct Carrier<'a>(&'a str);

impl opentelemetry::propagation::Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The exporter's HTTP client: hyper on a runtime of its own. The SDK's
/// batch processor exports from its own thread, outside any tokio runtime
/// (`futures_executor::block_on`), so the request runs on a one-thread
/// runtime owned here and the processor only awaits its join handle. That
/// keeps export independent of the application's runtime, including while
/// it shuts down.
struct OtlpHttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

impl fmt::Debug for OtlpHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OtlpHttpClient {
    fn new(timeout: Duration) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the OTLP export thread: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            client,
            runtime: Some(runtime),
            timeout,
        })
    }
}

impl Drop for OtlpHttpClient {
    fn drop(&mut self) {
        // Never blocks, so it is safe wherever the exporter is dropped.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let Some(runtime) = &self.runtime else {
            return Err("the OTLP export thread has stopped".into());
        };
        let (client, timeout) = (self.client.clone(), self.timeout);
        let uri = request.uri().clone();
        let call = async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(Request::from_parts(parts, Full::new(body)))
                .await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let result = runtime
            .spawn(async move {
                tokio::time::timeout(timeout, call)
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}").into()))
            })
            .await
            .map_err(|e| -> HttpError { format!("export task failed: {e}").into() })
            .and_then(|r| r);
        match &result {
            Err(e) => tracing::warn!(endpoint = %uri, error = %e, "OpenTelemetry export failed"),
            Ok(r) if !r.status().is_success() => tracing::warn!(
                endpoint = %uri,
                status = %r.status(),
                "OpenTelemetry collector refused the spans"
            ),
            Ok(_) => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_parent_needs_a_well_formed_traceparent() {
        let cx = TraceContextPropagator::new().extract(&Carrier(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        let bad = TraceContextPropagator::new().extract(&Carrier("00-xyz-01"));
        assert!(!bad.span().span_context().is_valid());
    }

    #[test]
    fn without_export_there_is_no_current_traceparent() {
        assert_eq!(current_traceparent(), None);
    }
}
