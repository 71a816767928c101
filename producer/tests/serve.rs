//! The `runcache serve` binary itself, on the local default: it prints
//! where it listens, the real `@actions/cache` client saves and restores
//! through it, the CLI (`runcache restore`, `explain`) sees what it stored,
//! SIGTERM lets an upload in flight finish before it exits, paths it does
//! not own go to `--upstream`, and bad flags say what to pass.

mod common;

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use runcache_testkit::{
    actions_cache::{Job, Protocol},
    http::{http, response},
};
use serde_json::{json, Value};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const TOKEN: &str = "tok-main";

/// `runcache serve` on a free port over the sandbox's home.
struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    #[allow(clippy::disallowed_methods)] // passes the test runner's PATH on
    fn start(s: &Sandbox, extra: &[&str]) -> Server {
        let tokens = s.root().join("tokens.toml");
        std::fs::write(
            &tokens,
            format!(
                "[[token]]\ntoken = \"{TOKEN}\"\nrepository = \"{REPO}\"\nref = \"{MAIN}\"\ntrust = \"protected\"\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_runcache"))
            .args(["serve", "--listen", "127.0.0.1:0", "--tokens"])
            .arg(&tokens)
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUNCACHE_HOME", s.home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn({
            let stderr = stderr.clone();
            move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "serve printed {line:?}, not `listening on http://ADDR`; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            })
            .to_string();
        Server {
            child,
            url: format!("http://{addr}/"),
            stderr,
        }
    }

    fn addr(&self) -> &str {
        self.url.trim_start_matches("http://").trim_end_matches('/')
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (within `secs`), returning its status.
    fn wait(mut self, secs: u64) -> std::process::ExitStatus {
        for _ in 0..secs * 10 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!(
            "serve did not exit within {secs} s; stderr:\n{}",
            self.stderr.lock().unwrap()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn job<'a>(url: &'a str, workspace: &'a std::path::Path, temp: &'a tempfile::TempDir) -> Job<'a> {
    Job {
        url,
        protocol: Protocol::V2,
        token: TOKEN,
        workspace,
        temp: temp.path(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_real_client_and_the_cli_sees_its_entries() {
    let s = Sandbox::new();
    let server = Server::start(&s, &[]);
    let (status, _, body) = http("GET", &format!("{}healthz", server.url), &[], b"").await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"ok\n"[..]),
        "a load balancer's check needs no token"
    );
    let temp = tempfile::tempdir().unwrap();
    let ws = s.ws();
    std::fs::create_dir_all(s.ws().join("deps")).unwrap();
    std::fs::write(s.ws().join("deps/lib.js"), b"module.exports = 1;\n").unwrap();

    let r = job(&server.url, &ws, &temp)
        .run(&["save", "deps-v1", "deps"])
        .await;
    assert!(r["cacheId"].as_i64().unwrap_or(-1) > 0, "{r:#}");

    std::fs::remove_dir_all(s.ws().join("deps")).unwrap();
    let r = job(&server.url, &ws, &temp)
        .run(&["restore", "deps-v1", "deps"])
        .await;
    assert_eq!(r["matchedKey"].as_str(), Some("deps-v1"), "{r:#}");
    assert_eq!(
        std::fs::read(s.ws().join("deps/lib.js")).unwrap(),
        b"module.exports = 1;\n"
    );

    // The CLI restores the served entry: same version for the same paths.
    std::fs::remove_dir_all(s.ws().join("deps")).unwrap();
    let out = s.run(&["restore", "--key", "deps-v1", "--path", "deps"], MAIN);
    ok(&out);
    assert!(s.outputs().contains("cache-hit=true"), "{}", s.outputs());
    assert_eq!(
        std::fs::read(s.ws().join("deps/lib.js")).unwrap(),
        b"module.exports = 1;\n"
    );
    let out = s.run(&["explain", "--key", "deps-v1", "--path", "deps"], MAIN);
    let text = ok(&out);
    assert!(text.contains("deps-v1"), "{text}");

    server.terminate();
    assert!(server.wait(30).success());
}

/// SIGTERM stops new connections but lets the upload in flight finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_upload_in_flight_then_exits() {
    let s = Sandbox::new();
    let server = Server::start(&s, &[]);
    let auth = format!("Bearer {TOKEN}");
    let (status, _, body) = http(
        "POST",
        &format!(
            "{}twirp/github.actions.results.api.v1.CacheService/CreateCacheEntry",
            server.url
        ),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        json!({"key": "big", "version": "v1"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).unwrap();
    let upload_url = created["signed_upload_url"]
        .as_str()
        .or_else(|| created["signedUploadUrl"].as_str())
        .unwrap_or_else(|| panic!("no upload URL in {created}"))
        .to_string();
    let path = upload_url
        .split_once(server.addr())
        .map(|(_, p)| p.to_string())
        .unwrap();

    // Half of an 8 MiB Put Blob, then SIGTERM.
    let payload = vec![7u8; 8 << 20];
    let mut upload = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nx-ms-blob-type: BlockBlob\r\nContent-Length: {}\r\n\r\n",
        server.addr(),
        payload.len()
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(&payload[..4 << 20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        TcpStream::connect(server.addr()).await.is_err(),
        "a draining server accepts no new connection"
    );
    upload.write_all(&payload[4 << 20..]).await.unwrap();
    let (status, _, body) = response(&mut upload).await;
    assert_eq!(
        status,
        201,
        "the upload in flight finished: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        server.wait(30).success(),
        "serve exits cleanly after draining"
    );
}

/// Paths that are not the cache service's go to --upstream, streamed,
/// with the job's token; without one they are refused with what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_actions_services_go_to_the_upstream() {
    use axum::{body::Bytes, http::HeaderMap, routing::any};
    // The upstream: answers with what it received.
    let app =
        axum::Router::new()
            .fallback(any(
                |method: axum::http::Method,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(String::from)
                    };
                    (
                        axum::http::StatusCode::ACCEPTED,
                        [("x-upstream", "yes")],
                        axum::Json(json!({
                            "method": method.as_str(),
                            "uri": uri.to_string(),
                            "authorization": header("authorization"),
                            "host": header("host"),
                            "body_len": body.len(),
                            "body_sum": body.iter().map(|b| *b as u64).sum::<u64>(),
                        })),
                    )
                },
            ))
            .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move { axum::serve(listener, app).await });

    let s = Sandbox::new();
    let plain = Server::start(&s, &[]);
    let artifacts = "twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact";
    let (status, _, body) = http("POST", &format!("{}{artifacts}", plain.url), &[], b"{}").await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("--upstream"));
    drop(plain);

    let server = Server::start(&s, &["--upstream", &format!("http://{upstream_addr}/")]);
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = payload.iter().map(|b| *b as u64).sum();
    let (status, head, body) = http(
        "PUT",
        &format!("{}{artifacts}?x=1", server.url),
        &[("Authorization", "Bearer runtime-token")],
        &payload,
    )
    .await;
    assert!(
        head.to_ascii_lowercase().contains("x-upstream: yes"),
        "{head}"
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["method"], "PUT");
    assert_eq!(
        seen["uri"],
        "/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact?x=1"
    );
    assert_eq!(seen["authorization"], "Bearer runtime-token");
    assert_eq!(
        seen["host"],
        upstream_addr.to_string(),
        "Host names the upstream"
    );
    assert_eq!(
        (seen["body_len"].as_u64(), seen["body_sum"].as_u64()),
        (Some(3_000_000), Some(sum))
    );
    // The cache service itself is still served here, never forwarded.
    let (status, _, _) = http(
        "POST",
        &format!(
            "{}twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL",
            server.url
        ),
        &[("Content-Type", "application/json")],
        br#"{"key":"k","version":"v"}"#,
    )
    .await;
    assert_eq!(status, 401, "no token: refused here, not forwarded");
    upstream.abort();
}

#[test]
fn serve_without_tokens_says_what_to_pass() {
    let s = Sandbox::new();
    let out = s.run(&["serve", "--listen", "127.0.0.1:0"], MAIN);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--tokens") && err.contains("--github-auth"),
        "{err}"
    );
}
