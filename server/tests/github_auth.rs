//! Mode `github` (`--github-auth`): the job's runtime token is a JWT,
//! verified against a JWKS (a file, or a URL refetched for a key it does not
//! hold), its issuer, audience and expiry; repository and cache scopes come
//! from its claims. Driven with the real `@actions/cache` client on every
//! backend, holding tokens signed with the test key in `fixtures/jwt/`.

mod support;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use runcache_schemas::TrustLevel;
use runcache_server::{Auth, GithubAuth, GithubAuthConfig, ServeOptions};
use serde_json::{json, Value};
use support::*;

served_tests!(
    runtime_tokens_save_and_restore_within_the_scopes_their_claims_grant,
    a_read_only_token_restores_but_cannot_save,
    tokens_that_do_not_verify_are_refused,
);

const SIGNING_KEY: &str = include_str!("fixtures/jwt/test-signing-key.pem");
/// Not in the JWKS: what a forger holds.
const OTHER_KEY: &str = include_str!("fixtures/jwt/other-key.pem");
const KID: &str = "runcache-test-1";
const ISSUER: &str = "https://token.actions.test.invalid";
const AUDIENCE: &str = "runcache-test";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims as GitHub's runtime token carries them: `ac` is a JSON string.
fn claims(repository: &str, ac: &[(&str, u64)]) -> Value {
    let ac: Vec<Value> = ac
        .iter()
        .map(|(scope, permission)| json!({"Scope": scope, "Permission": permission}))
        .collect();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "nbf": now() - 5,
        "exp": now() + 3600,
        "repository": repository,
        "actor": "octocat",
        "ac": serde_json::to_string(&ac).unwrap(),
    })
}

fn sign_with(claims: &Value, pem: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(claims, SIGNING_KEY, KID)
}

fn token(ac: &[(&str, u64)]) -> String {
    sign(&claims(REPO, ac))
}

fn config() -> GithubAuthConfig {
    GithubAuthConfig {
        jwks_file: Some(fixture("jwks.json")),
        jwks_url: None,
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        repositories: vec!["acme/*".into()],
        repository_claim: "repository".into(),
        protected_refs: vec![MAIN.into()],
        leeway_seconds: 0,
        jwks_min_refetch_seconds: 60,
    }
}

async fn serve_github(e: &Env) -> Served {
    let auth = Auth::Github(Arc::new(GithubAuth::new(config()).await.unwrap()));
    serve_auth(e, auth, ServeOptions::default()).await
}

/// `method` for key `deps-1` with `token`: (status, Twirp code, message).
async fn ask(s: &Served, method: &str, token: &str) -> (u16, String, String) {
    let (status, err) = twirp(
        s,
        method,
        Some(token),
        json!({"key": "deps-1", "version": "v"}),
    )
    .await;
    let text = |f: &str| err[f].as_str().unwrap_or_default().to_string();
    (status, text("code"), text("msg"))
}

async fn trust_of(e: &Env, key: &str) -> Vec<(String, TrustLevel)> {
    e.backend
        .index
        .by_key(REPO, key)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.git_ref, x.trust))
        .collect()
}

/// [`trust_of`] once `key` is indexed (a v1 commit promotes after it
/// answers), within 10 s.
async fn indexed(e: &Env, key: &str) -> Vec<(String, TrustLevel)> {
    for _ in 0..100 {
        let found = trust_of(e, key).await;
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{key} was not indexed within 10 s");
}

async fn runtime_tokens_save_and_restore_within_the_scopes_their_claims_grant(e: Env) {
    let s = serve_github(&e).await;
    let main = token(&[(MAIN, 3)]);
    let feature = token(&[(FEATURE, 3), (MAIN, 1)]);
    let pull = token(&[(PULL, 3), (MAIN, 1)]);
    let ws = Workspace::new();

    ws.write(&[("deps/a", b"from main")]);
    saved(&ws.save(&s, Protocol::V2, &main, "deps-1", "deps").await);
    ws.write(&[("deps/a", b"from feature")]);
    saved(&ws.save(&s, Protocol::V1, &feature, "feat-1", "deps").await);
    assert_eq!(
        trust_of(&e, "deps-1").await,
        vec![(MAIN.to_string(), TrustLevel::Protected)],
        "protected_refs makes main's uploads protected"
    );
    assert_eq!(
        indexed(&e, "feat-1").await,
        vec![(FEATURE.to_string(), TrustLevel::Branch)]
    );

    // The feature branch falls back to main, as its claim says.
    ws.remove("deps");
    let r = ws
        .restore(&s, Protocol::V2, &feature, "deps-1", &[], "deps")
        .await;
    assert_eq!(matched(&r).as_deref(), Some("deps-1"));
    assert_eq!(ws.read("deps/a").unwrap(), b"from main");

    // The pull request reads its base, never a sibling branch.
    for proto in [Protocol::V2, Protocol::V1] {
        ws.remove("deps");
        let r = ws.restore(&s, proto, &pull, "deps-1", &[], "deps").await;
        assert_eq!(matched(&r).as_deref(), Some("deps-1"), "{proto:?}");
        let r = ws.restore(&s, proto, &pull, "feat-1", &[], "deps").await;
        assert_eq!(
            matched(&r),
            None,
            "{proto:?}: a sibling branch is not readable"
        );
    }
    // Its save lands in its own scope, with pull-request trust, unseen by main.
    ws.write(&[("deps/a", b"from the pull request")]);
    saved(&ws.save(&s, Protocol::V2, &pull, "pr-1", "deps").await);
    assert_eq!(
        trust_of(&e, "pr-1").await,
        vec![(PULL.to_string(), TrustLevel::PullRequest)]
    );
    let r = ws
        .restore(&s, Protocol::V2, &main, "pr-1", &[], "deps")
        .await;
    assert_eq!(matched(&r), None);
    s.stop().await;
}

async fn a_read_only_token_restores_but_cannot_save(e: Env) {
    let s = serve_github(&e).await;
    let ws = Workspace::new();
    ws.write(&[("deps/a", b"x")]);
    saved(
        &ws.save(&s, Protocol::V2, &token(&[(MAIN, 3)]), "deps-1", "deps")
            .await,
    );
    let reader = token(&[(MAIN, 1)]);
    ws.remove("deps");
    let r = ws
        .restore(&s, Protocol::V2, &reader, "deps-1", &[], "deps")
        .await;
    assert_eq!(matched(&r).as_deref(), Some("deps-1"));

    let r = ws.save(&s, Protocol::V2, &reader, "deps-2", "deps").await;
    assert_eq!(r["cacheId"].as_i64(), Some(-1), "{r:#}");
    let (status, _, msg) = ask(&s, "CreateCacheEntry", &reader).await;
    assert_eq!(status, 403, "{msg}");
    assert!(msg.contains("reading only"), "{msg}");
    assert!(trust_of(&e, "deps-2").await.is_empty());
    s.stop().await;
}

async fn tokens_that_do_not_verify_are_refused(e: Env) {
    let s = serve_github(&e).await;
    let ws = Workspace::new();
    ws.write(&[("deps/a", b"x")]);
    saved(
        &ws.save(&s, Protocol::V2, &token(&[(MAIN, 3)]), "deps-1", "deps")
            .await,
    );

    let mut expired = claims(REPO, &[(MAIN, 3)]);
    expired["exp"] = json!(now() - 120);
    let mut early = claims(REPO, &[(MAIN, 3)]);
    early["nbf"] = json!(now() + 600);
    let mut audience = claims(REPO, &[(MAIN, 3)]);
    audience["aud"] = json!("someone-else");
    let mut issuer = claims(REPO, &[(MAIN, 3)]);
    issuer["iss"] = json!("https://evil.test.invalid");
    let mut no_scopes = claims(REPO, &[]);
    no_scopes.as_object_mut().unwrap().remove("ac");
    // HS256 with the public JWKS as the secret: the algorithm-confusion
    // forgery; only asymmetric algorithms are accepted.
    let confused = jsonwebtoken::encode(
        &Header {
            kid: Some(KID.into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(REPO, &[(MAIN, 3)]),
        &EncodingKey::from_secret(std::fs::read(fixture("jwks.json")).unwrap().as_slice()).unwrap(),
    )
    .unwrap();
    let refused = [
        ("expired", sign(&expired)),
        ("not yet valid", sign(&early)),
        ("another audience", sign(&audience)),
        ("another issuer", sign(&issuer)),
        ("no ac claim", sign(&no_scopes)),
        (
            "signed by a key not in the JWKS",
            sign_with(&claims(REPO, &[(MAIN, 3)]), OTHER_KEY, KID),
        ),
        ("HS256 with the public key", confused),
        ("not a JWT", "opaque-static-token".to_string()),
    ];
    for (what, bad) in &refused {
        let (status, code, msg) = ask(&s, "GetCacheEntryDownloadURL", bad).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "unauthenticated"),
            "{what}: {msg}"
        );
        assert!(msg.contains("not accepted"), "{what}: {msg}");
    }
    // Verified, but a repository this server does not serve.
    let foreign = sign(&claims("evil/app", &[(MAIN, 3)]));
    let (status, _, msg) = ask(&s, "GetCacheEntryDownloadURL", &foreign).await;
    assert_eq!(status, 403, "{msg}");
    assert!(msg.contains("repositories"), "{msg}");

    // The real client with an expired token: nothing restored, nothing saved.
    let stale = sign(&expired);
    ws.remove("deps");
    let r = ws
        .client(&s, Protocol::V2, &stale, &["restore", "deps-1", "deps"])
        .await;
    assert!(r["matchedKey"].is_null(), "{r:#}");
    assert!(ws.read("deps/a").is_none());
    ws.write(&[("deps/a", b"y")]);
    let r = ws.save(&s, Protocol::V2, &stale, "deps-2", "deps").await;
    assert_eq!(r["cacheId"].as_i64(), Some(-1), "{r:#}");
    assert!(trust_of(&e, "deps-2").await.is_empty());
    s.stop().await;
}

/// A JWKS at a URL: fetched at start (a server with an unreachable one
/// does not start), and fetched again when a token names a new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_at_start_and_again_for_a_rotated_key() {
    let e = local().await;
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).unwrap()).unwrap();
    // The published set: at first only an older key (the fixture's, renamed).
    let mut old = jwks.clone();
    old["keys"][0]["kid"] = json!("retired");
    let published = Arc::new(Mutex::new(old));
    let app = axum::Router::new().route(
        "/.well-known/jwks",
        axum::routing::get({
            let published = published.clone();
            move || {
                let body = published.lock().unwrap().clone();
                async move { axum::Json(body) }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let jwks_server = tokio::spawn(async move { axum::serve(listener, app).await });

    let unreachable = GithubAuthConfig {
        jwks_file: None,
        jwks_url: Some("http://127.0.0.1:9/.well-known/jwks".into()),
        ..config()
    };
    let err = GithubAuth::new(unreachable).await.unwrap_err();
    assert!(err.contains("jwks_url"), "{err}");

    let auth = GithubAuth::new(GithubAuthConfig {
        jwks_file: None,
        jwks_url: Some(format!("http://{addr}/.well-known/jwks")),
        jwks_min_refetch_seconds: 0,
        ..config()
    })
    .await
    .unwrap();
    let s = serve_auth(&e, Auth::Github(Arc::new(auth)), ServeOptions::default()).await;
    let main = token(&[(MAIN, 3)]);
    let (status, err) = twirp(
        &s,
        "GetCacheEntryDownloadURL",
        Some(&main),
        json!({"key": "k", "version": "v"}),
    )
    .await;
    assert_eq!(status, 401, "kid {KID} is not published yet: {err}");

    // The issuer rotates: the new key is published; no restart needed.
    *published.lock().unwrap() = jwks;
    let ws = Workspace::new();
    ws.write(&[("deps/a", b"rotated")]);
    saved(&ws.save(&s, Protocol::V2, &main, "deps-1", "deps").await);
    s.stop().await;
    jwks_server.abort();
}
