//! OpenTelemetry export, end to end through the `runcache-worker` binary:
//! a stand-in OTLP/HTTP collector on 127.0.0.1 receives what the worker
//! exports while it promotes a staged upload whose message carries the
//! producer's W3C traceparent. The message's span must arrive in the
//! producer's trace, as a child of the producer's span. Without
//! `OTEL_EXPORTER_OTLP_ENDPOINT` nothing is exported and the logs still
//! print.

mod support;

use std::{
    path::Path,
    process::Output,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value, trace::v1::Span,
};
use prost::Message;
use runcache_infra::{queue::ATTR_TRACEPARENT, Backend, Config, OutgoingMessage, SystemClock};
use runcache_schemas::Event;
use support::{main_scope, stage, staged, VERSION};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

const PRODUCER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

/// What the stand-in collector received: (path, body) per request.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP collector: HTTP/1.1 with keep-alive, bodies by
/// Content-Length (what the exporter sends), every request answered 200.
async fn collector(listener: TcpListener) -> Requests {
    let got: Requests = Arc::default();
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, sink.clone()));
        }
    });
    got
}

async fn serve(conn: TcpStream, sink: Requests) {
    let mut conn = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if conn.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if conn.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if conn.read_exact(&mut body).await.is_err() {
            return;
        }
        sink.lock().unwrap().push((path, body));
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if conn.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Stages an upload under `home` and announces it on the staged queue with
/// the producer's traceparent, as `runcache save` does.
async fn stage_with_trace(home: &Path) -> Backend {
    let backend = Backend::local(&Config::local(home), Arc::new(SystemClock)).unwrap();
    let bytes = b"traced archive bytes".to_vec();
    let ev = staged(
        "u-traced",
        &bytes,
        "deps-traced",
        &main_scope(),
        backend.clock.now(),
    );
    stage(&backend, &ev, &bytes).await;
    let traceparent = format!("00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01");
    backend
        .staged
        .send(OutgoingMessage::event(&ev, &traceparent))
        .await
        .unwrap();
    backend
}

/// `runcache-worker promote --once` on the local backend under `home`,
/// with a clean environment plus `vars`.
async fn run_worker(home: &Path, vars: &[(&str, String)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runcache-worker"));
    cmd.args(["promote", "--once"])
        .env_clear()
        .env("HOME", home)
        .env("RUNCACHE_BACKEND", "local")
        .env("RUNCACHE_HOME", home)
        .env("RUNCACHE_LOG", "info")
        .current_dir(home);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(out) = waited else {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
        panic!("the worker did not finish within 60 s");
    };
    let out = out.unwrap().unwrap();
    assert!(
        out.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The traceparent of the `worker.outcome` the worker sent.
async fn outcome_traceparent(backend: &Backend) -> String {
    let outcome = backend
        .accessed
        .receive(10, Duration::ZERO, Duration::from_secs(30))
        .await
        .unwrap()
        .into_iter()
        .find(|m| matches!(Event::decode(&m.body), Ok(Event::Outcome(_))))
        .expect("the promoted outcome");
    outcome.attributes[ATTR_TRACEPARENT].clone()
}

fn spans(requests: &[(String, Vec<u8>)]) -> (Vec<Span>, Vec<String>) {
    let mut spans = Vec::new();
    let mut services = Vec::new();
    for (path, body) in requests {
        assert_eq!(path, "/v1/traces");
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for rs in export.resource_spans {
            for attr in rs.resource.iter().flat_map(|r| &r.attributes) {
                if attr.key == "service.name" {
                    if let Some(any_value::Value::StringValue(s)) =
                        attr.value.as_ref().and_then(|v| v.value.clone())
                    {
                        services.push(s);
                    }
                }
            }
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
    }
    (spans, services)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_span_joins_the_producers_trace_and_is_exported() {
    let home = tempfile::tempdir().unwrap();
    let backend = stage_with_trace(home.path()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = collector(listener).await;

    let out = run_worker(
        home.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_SERVICE_NAME", "promote-under-test".into()),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped"), "logs still print:\n{stderr}");
    // The upload really was promoted by that process.
    assert!(backend
        .index
        .get(&main_scope(), VERSION, "deps-traced")
        .await
        .unwrap()
        .is_some());

    // The guard flushed on exit: everything is in by now.
    let requests = requests.lock().unwrap().clone();
    assert!(!requests.is_empty(), "nothing exported; stderr:\n{stderr}");
    let (spans, services) = spans(&requests);
    assert!(
        services.iter().all(|s| s == "promote-under-test") && !services.is_empty(),
        "OTEL_SERVICE_NAME is respected: {services:?}"
    );
    let producer_trace = hex::decode(PRODUCER_TRACE).unwrap();
    let producer_span = hex::decode(PRODUCER_SPAN).unwrap();
    let message = spans
        .iter()
        .find(|s| s.name == "message")
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
            panic!("no message span among {names:?}")
        });
    assert_eq!(message.trace_id, producer_trace, "in the producer's trace");
    assert_eq!(
        message.parent_span_id, producer_span,
        "a child of the producer's span"
    );
    // The handler's own spans hang below the message's, in the same trace.
    let promote = spans
        .iter()
        .find(|s| s.name == "promote")
        .expect("promote's span");
    assert_eq!(promote.trace_id, producer_trace);
    assert_eq!(promote.parent_span_id, message.span_id);

    // The outcome event the worker sent carries the trace on: its
    // traceparent names one of the exported spans.
    let tp = outcome_traceparent(&backend).await;
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts[1], PRODUCER_TRACE, "{tp}");
    let parent = hex::decode(parts[2]).unwrap();
    assert!(
        spans.iter().any(|s| s.span_id == parent),
        "the outcome's traceparent {tp} names an exported span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_logs_still_print() {
    let home = tempfile::tempdir().unwrap();
    let backend = stage_with_trace(home.path()).await;
    // A collector where the exporter would send by default
    // (http://localhost:4318), if that port is free here; else elsewhere,
    // which still shows that the worker never tries our collector.
    let listener = match TcpListener::bind("127.0.0.1:4318").await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let requests = collector(listener).await;

    let out = run_worker(
        home.path(),
        &[("OTEL_SERVICE_NAME", "promote-under-test".into())],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "plain logs:\n{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(
        !stderr.contains("OpenTelemetry"),
        "no export was attempted:\n{stderr}"
    );
    assert!(backend
        .index
        .get(&main_scope(), VERSION, "deps-traced")
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        requests.lock().unwrap().is_empty(),
        "nothing may be exported without OTEL_EXPORTER_OTLP_ENDPOINT"
    );
    // The outcome event still carries the producer's trace (as a new child
    // span id: there is no exported span to name).
    let tp = outcome_traceparent(&backend).await;
    assert_eq!(tp.split('-').nth(1), Some(PRODUCER_TRACE), "{tp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let home = tempfile::tempdir().unwrap();
    stage_with_trace(home.path()).await;
    let out = run_worker(home.path(), &[("RUNCACHE_LOG_FORMAT", "json".into())]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}
