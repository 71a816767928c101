//! The build tools' remote caches on `runcache serve`, each at its own
//! prefix and speaking its client's protocol (status codes for hit, miss,
//! conflict and too large; the credentials the client sends):
//!
//! | client | routes |
//! |---|---|
//! | Bazel (`--remote_cache=http://host/bazel`) | `GET/PUT/HEAD /bazel/ac/{sha256}`, `/bazel/cas/{sha256}` |
//! | ccache (`remote_storage = http://host/ccache`) | `GET/PUT/HEAD /ccache/{path}` (`subdirs`, `flat` or `bazel` layout) |
//! | Gradle (`HttpBuildCache` url `http://host/gradle/`) | `GET/PUT /gradle/{key}` |
//! | sccache (`SCCACHE_WEBDAV_ENDPOINT=http://host/sccache`) | WebDAV: `GET/PUT/HEAD/PROPFIND/MKCOL /sccache/{path}` |
//! | Nx (`NX_SELF_HOSTED_REMOTE_CACHE_SERVER=http://host/nx`) | `GET/PUT /nx/v1/cache/{hash}` |
//! | Turborepo (`TURBO_API=http://host/turbo`) | `GET/PUT/HEAD /turbo/v8/artifacts/{hash}`, `GET …/status`, `POST …/events` |
//!
//! Every object is an index entry like any other: (the caller's scope, a
//! version naming the protocol, the client's key) → the SHA-256 of the
//! bytes, which live once in the CAS. So the key-addressed entries (Bazel's
//! action cache, ccache, Gradle, Nx, Turborepo) map a scoped key to a
//! verified content hash, Bazel's CAS entries are keyed by their own hash
//! (a body that hashes otherwise is refused), and scopes, trust tiers,
//! `explain`, invalidation, metrics and sweep cover them unchanged. Writes
//! go through [`crate::uploads`] (staging, `artifact.staged`, promote), so
//! the runner-side trust rules hold: with inline workers (the local
//! backend) an object is readable as soon as its PUT returns. Keys are
//! immutable: a second PUT of a stored key is answered as the client
//! expects (Nx: `409`; the others: success) and keeps the first object.
//!
//! Protocol notes and sources: `docs/design/build-cache-protocols.md`.
//!
//! May touch: what [`crate::uploads`] and [`crate::entries`] touch; the CAS
//! (reads).

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post},
    Json, Router,
};
use futures::TryStreamExt;
use runcache_cache::{
    fetch,
    lookup::{lookup_exact, LookupRequest},
};
use runcache_schemas::{ContentHash, IndexEntry, TrustLevel};
use serde::Deserialize;
use tokio_util::io::ReaderStream;
use tracing::warn;

use crate::{
    auth::Caller,
    uploads::{ObjectExtras, ObjectPut, UploadError},
    Failure, State as Shared,
};

/// The version (in the index's sense) of each protocol's entries: part of
/// their identity, so the clients' keys never meet each other's, nor an
/// `actions/cache` entry's.
pub mod versions {
    pub const BAZEL_AC: &str = "build-cache:bazel-ac";
    pub const BAZEL_CAS: &str = "build-cache:bazel-cas";
    pub const CCACHE: &str = "build-cache:ccache";
    pub const GRADLE: &str = "build-cache:gradle";
    pub const NX: &str = "build-cache:nx";
    pub const SCCACHE: &str = "build-cache:sccache";
    pub const TURBO: &str = "build-cache:turbo";
}

const DOWNLOAD_CHUNK: usize = 256 * 1024;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/bazel/{kind}/{hash}",
            get(bazel_get).head(bazel_head).put(bazel_put),
        )
        .route(
            "/ccache/{*path}",
            get(ccache_get)
                .head(ccache_head)
                .put(ccache_put)
                .delete(ccache_delete),
        )
        .route("/gradle/{key}", get(gradle_get).put(gradle_put))
        .route("/sccache", any(sccache_root))
        .route("/sccache/", any(sccache_root))
        .route("/sccache/{*path}", any(sccache))
        .route("/nx/v1/cache/{hash}", get(nx_get).put(nx_put))
        .route("/turbo/v8/artifacts/status", get(turbo_status))
        .route("/turbo/v8/artifacts/events", post(turbo_events))
        .route(
            "/turbo/v8/artifacts/{hash}",
            get(turbo_get).head(turbo_head).put(turbo_put),
        )
}

/// A refusal as plain text, which every one of these clients shows.
struct Refusal(Failure);

impl From<Failure> for Refusal {
    fn from(f: Failure) -> Self {
        Refusal(f)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0.status, format!("{}\n", self.0.msg)).into_response()
    }
}

/// The live entry `key` names for `caller` (its scope, then the scopes it
/// may read, as a restore searches), recording the access for metrics.
async fn find(
    state: &Shared,
    caller: &Caller,
    version: &str,
    key: &str,
) -> Result<Option<IndexEntry>, Failure> {
    Ok(crate::entries::find_exact(state, caller, key, version).await?)
}

/// [`find`] without recording an access: a client's existence check
/// before a PUT is not a restore.
async fn exists(
    state: &Shared,
    caller: &Caller,
    version: &str,
    key: &str,
) -> Result<Option<IndexEntry>, Failure> {
    runcache_cache::keys::validate_key(key).map_err(|e| Failure::bad_request(e.to_string()))?;
    let req = LookupRequest {
        primary_key: key.to_string(),
        restore_keys: Vec::new(),
        version: version.to_string(),
        min_trust: TrustLevel::Untrusted,
    };
    Ok(lookup_exact(&state.backend, &caller.job, &req)
        .await?
        .map(|hit| hit.entry))
}

/// `200` with the entry's bytes, streamed verified against its hash:
/// altered bytes cut the response instead of ending it cleanly.
async fn object(state: &Shared, entry: &IndexEntry) -> Result<Response, Failure> {
    let reader =
        fetch::open_verified(&state.backend, &entry.content_hash, entry.size_bytes).await?;
    let stream = ReaderStream::with_capacity(reader, DOWNLOAD_CHUNK).inspect_err(|e| {
        warn!(error = %e, "a download was cut: the stored bytes did not verify");
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size_bytes));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// A GET of (`version`, `key`) for the request's caller: the object, or `404`.
async fn get_object(
    state: &Shared,
    headers: &HeaderMap,
    version: &str,
    key: &str,
) -> Result<Response, Failure> {
    get_object_with(state, headers, version, key, |_, _| {}).await
}

/// [`get_object`], with the protocol's headers for the entry added by
/// `decorate`.
async fn get_object_with(
    state: &Shared,
    headers: &HeaderMap,
    version: &str,
    key: &str,
    decorate: fn(&IndexEntry, &mut HeaderMap),
) -> Result<Response, Failure> {
    let caller = state.caller(headers).await?;
    Ok(match find(state, &caller, version, key).await? {
        Some(entry) => {
            let mut response = object(state, &entry).await?;
            decorate(&entry, response.headers_mut());
            response
        }
        None => missing(),
    })
}

/// A HEAD of (`version`, `key`): its size, or `404`.
async fn head_object(
    state: &Shared,
    headers: &HeaderMap,
    version: &str,
    key: &str,
) -> Result<Response, Failure> {
    head_object_with(state, headers, version, key, |_, _| {}).await
}

/// [`head_object`], decorated like [`get_object_with`].
async fn head_object_with(
    state: &Shared,
    headers: &HeaderMap,
    version: &str,
    key: &str,
    decorate: fn(&IndexEntry, &mut HeaderMap),
) -> Result<Response, Failure> {
    let caller = state.caller(headers).await?;
    Ok(match exists(state, &caller, version, key).await? {
        Some(entry) => {
            let mut response = present(&entry);
            decorate(&entry, response.headers_mut());
            response
        }
        None => missing(),
    })
}

/// `200` with the size only, for a HEAD.
fn present(entry: &IndexEntry) -> Response {
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size_bytes));
    response
}

fn missing() -> Response {
    (StatusCode::NOT_FOUND, "not in the cache\n").into_response()
}

/// Stores `body` under (the request's caller's scope, `version`, `key`).
/// A declared `Content-Length` over the limit is refused before anything
/// is read.
async fn store(
    state: &Shared,
    headers: &HeaderMap,
    version: &str,
    key: &str,
    body: Body,
    expected: Option<&ContentHash>,
    extras: ObjectExtras,
) -> Result<ObjectPut, Failure> {
    let caller = state.caller(headers).await?;
    let max = state.max_object_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(UploadError::TooLarge { max }.into());
    }
    Ok(state
        .uploads
        .put_object(
            &state.config,
            &state.backend,
            &caller,
            version,
            key,
            crate::blob::body_reader(body),
            max,
            expected,
            extras,
        )
        .await?)
}

// --- Bazel -------------------------------------------------------------------

/// The version and key of a Bazel path: `ac` or `cas`, and a lowercase
/// SHA-256 (`--digest_function=sha256`, Bazel's default).
fn bazel_entry(kind: &str, hash: &str) -> Result<(&'static str, ContentHash), Failure> {
    let version = match kind {
        "ac" => versions::BAZEL_AC,
        "cas" => versions::BAZEL_CAS,
        other => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("Bazel's HTTP cache has /ac/ and /cas/, not /{other}/"),
            ))
        }
    };
    let hash = ContentHash::from_hex(hash).map_err(|e| {
        Failure::bad_request(format!(
            "{e}: runcache serves SHA-256 digests (Bazel's default --digest_function)"
        ))
    })?;
    Ok((version, hash))
}

async fn bazel_get(
    State(state): State<Arc<Shared>>,
    Path((kind, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let (version, hash) = bazel_entry(&kind, &hash)?;
    Ok(get_object(&state, &headers, version, hash.hex()).await?)
}

async fn bazel_head(
    State(state): State<Arc<Shared>>,
    Path((kind, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let (version, hash) = bazel_entry(&kind, &hash)?;
    Ok(head_object(&state, &headers, version, hash.hex()).await?)
}

/// A CAS PUT must hash to its name; an AC PUT is the client's action
/// result, stored as sent. Bazel never asks before it PUTs, so a PUT of a
/// stored key is cheap: its body is read and dropped.
async fn bazel_put(
    State(state): State<Arc<Shared>>,
    Path((kind, hash)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let (version, hash) = bazel_entry(&kind, &hash)?;
    let expected = (version == versions::BAZEL_CAS).then_some(&hash);
    store(
        &state,
        &headers,
        version,
        hash.hex(),
        body,
        expected,
        ObjectExtras::default(),
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

// --- ccache ------------------------------------------------------------------

/// ccache's path under the prefix is its key, whatever the layout
/// (`ab/cdef…` for `subdirs`, `abcdef…` for `flat`, `ac/…` for `bazel`).
async fn ccache_get(
    State(state): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    Ok(get_object(&state, &headers, versions::CCACHE, &path).await?)
}

async fn ccache_head(
    State(state): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    Ok(head_object(&state, &headers, versions::CCACHE, &path).await?)
}

async fn ccache_put(
    State(state): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    store(
        &state,
        &headers,
        versions::CCACHE,
        &path,
        body,
        None,
        ObjectExtras::default(),
    )
    .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// Entries are immutable and removed by invalidation or sweep, never by a
/// client.
async fn ccache_delete() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "runcache entries are immutable: invalidate them with `runcache admin invalidate --key-prefix …`\n",
    )
        .into_response()
}

// --- Gradle ------------------------------------------------------------------

async fn gradle_get(
    State(state): State<Arc<Shared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    Ok(get_object(&state, &headers, versions::GRADLE, &key).await?)
}

/// Gradle takes any 2xx as stored, and `413` as "too large, not an error"
/// (the build goes on with the remote cache enabled).
async fn gradle_put(
    State(state): State<Arc<Shared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    store(
        &state,
        &headers,
        versions::GRADLE,
        &key,
        body,
        None,
        ObjectExtras::default(),
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

// --- sccache (WebDAV) --------------------------------------------------------

/// sccache's WebDAV backend (opendal's): `GET` a key, `PUT` one after
/// making sure its parent collections exist (`PROPFIND` with depth 0,
/// `MKCOL` for what is missing). runcache has no directories: every
/// collection exists, so a PUT costs one `PROPFIND` of its parent and no
/// `MKCOL`.
async fn sccache(
    State(state): State<Arc<Shared>>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let version = versions::SCCACHE;
    Ok(match method.as_str() {
        "GET" => get_object(&state, &headers, version, &path).await?,
        "HEAD" => head_object(&state, &headers, version, &path).await?,
        "PUT" => {
            store(&state, &headers, version, &path, body, None, ObjectExtras::default()).await?;
            StatusCode::CREATED.into_response()
        }
        "PROPFIND" if path.ends_with('/') => sccache_root(State(state), method, headers).await?,
        "PROPFIND" => {
            let caller = state.caller(&headers).await?;
            match exists(&state, &caller, version, &path).await? {
                Some(entry) => multistatus(
                    &format!("/sccache/{path}"),
                    &format!(
                        "<D:getcontentlength>{}</D:getcontentlength><D:resourcetype/>",
                        entry.size_bytes
                    ),
                    entry.created_at,
                ),
                None => missing(),
            }
        }
        "MKCOL" => sccache_root(State(state), method, headers).await?,
        "DELETE" => ccache_delete().await,
        other => (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("runcache's WebDAV for sccache answers GET, HEAD, PUT, PROPFIND and MKCOL, not {other}\n"),
        )
            .into_response(),
    })
}

/// The collections: each exists (`PROPFIND`), and making one is a no-op
/// (`MKCOL`).
async fn sccache_root(
    State(state): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    state.caller(&headers).await?;
    Ok(match method.as_str() {
        "PROPFIND" => multistatus(
            "/sccache/",
            "<D:resourcetype><D:collection/></D:resourcetype>",
            chrono::Utc::now(),
        ),
        "MKCOL" => StatusCode::CREATED.into_response(),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "a collection: PROPFIND or MKCOL\n",
        )
            .into_response(),
    })
}

/// A one-resource `207 Multi-Status` with `props` and a last-modified date
/// (which opendal requires).
fn multistatus(href: &str, props: &str, modified: chrono::DateTime<chrono::Utc>) -> Response {
    let href = quick_xml::escape::escape(href);
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>{href}</D:href><D:propstat><D:prop>{props}<D:getlastmodified>{}</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#,
        modified.to_rfc2822()
    );
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

// --- Nx ----------------------------------------------------------------------

async fn nx_get(
    State(state): State<Arc<Shared>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    Ok(get_object(&state, &headers, versions::NX, &hash).await?)
}

/// Nx's spec: `409` for a record that exists; its client counts only `200`
/// as stored.
async fn nx_put(
    State(state): State<Arc<Shared>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    Ok(
        match store(
            &state,
            &headers,
            versions::NX,
            &hash,
            body,
            None,
            ObjectExtras::default(),
        )
        .await?
        {
            ObjectPut::Stored(_) => StatusCode::OK.into_response(),
            ObjectPut::Existed | ObjectPut::Racing => {
                (StatusCode::CONFLICT, "Cannot override an existing record\n").into_response()
            }
        },
    )
}

// --- Turborepo ---------------------------------------------------------------

/// The team a request names (`slug`, or a `teamId` turbo sends only when it
/// starts with `team_`): part of the key, so teams sharing a token's scope
/// keep their artifacts apart.
#[derive(Debug, Deserialize)]
struct Team {
    #[serde(rename = "teamId")]
    team_id: Option<String>,
    slug: Option<String>,
}

impl Team {
    fn key(&self, hash: &str) -> String {
        let team = self
            .slug
            .as_deref()
            .or(self.team_id.as_deref())
            .unwrap_or("-");
        format!("{team}/{hash}")
    }
}

/// Turborepo reads a refusal's body as `{"error": {"code", "message"}}`.
struct TurboRefusal(Failure);

impl From<Failure> for TurboRefusal {
    fn from(f: Failure) -> Self {
        TurboRefusal(f)
    }
}

impl IntoResponse for TurboRefusal {
    fn into_response(self) -> Response {
        let code = match self.0.status.as_u16() {
            401 => "not_authorized",
            403 => "forbidden",
            413 => "payload_too_large",
            _ => self.0.code,
        };
        (
            self.0.status,
            Json(serde_json::json!({"error": {"code": code, "message": self.0.msg}})),
        )
            .into_response()
    }
}

async fn turbo_get(
    State(state): State<Arc<Shared>>,
    Path(hash): Path<String>,
    Query(team): Query<Team>,
    headers: HeaderMap,
) -> Result<Response, TurboRefusal> {
    Ok(get_object_with(
        &state,
        &headers,
        versions::TURBO,
        &team.key(&hash),
        turbo_headers,
    )
    .await?)
}

async fn turbo_head(
    State(state): State<Arc<Shared>>,
    Path(hash): Path<String>,
    Query(team): Query<Team>,
    headers: HeaderMap,
) -> Result<Response, TurboRefusal> {
    Ok(head_object_with(
        &state,
        &headers,
        versions::TURBO,
        &team.key(&hash),
        turbo_headers,
    )
    .await?)
}

async fn turbo_put(
    State(state): State<Arc<Shared>>,
    Path(hash): Path<String>,
    Query(team): Query<Team>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TurboRefusal> {
    let extras = turbo_extras(&headers)?;
    store(
        &state,
        &headers,
        versions::TURBO,
        &team.key(&hash),
        body,
        None,
        extras,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"urls": []}))).into_response())
}

/// Turborepo's `x-artifact-tag`: the artifact's signature, kept as sent.
const TURBO_TAG: &str = "x-artifact-tag";
/// Turborepo's `x-artifact-duration`: milliseconds the task took.
const TURBO_DURATION: &str = "x-artifact-duration";
/// Longer than any signature turbo makes (base64 of an HMAC-SHA256).
const MAX_TAG_BYTES: usize = 1024;

/// The duration and signature a turbo PUT sends, checked: the tag is
/// stored and returned untouched (runcache cannot verify it; only the
/// team's key can), so it must be a header value worth keeping.
fn turbo_extras(headers: &HeaderMap) -> Result<ObjectExtras, Failure> {
    let mut extras = ObjectExtras::default();
    if let Some(v) = headers.get(TURBO_DURATION) {
        let ms = v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
        extras.build_duration_ms = Some(ms.ok_or_else(|| {
            Failure::bad_request(format!("{TURBO_DURATION} must be whole milliseconds"))
        })?);
    }
    if let Some(v) = headers.get(TURBO_TAG) {
        let tag = v
            .to_str()
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= MAX_TAG_BYTES)
            .ok_or_else(|| {
                Failure::bad_request(format!(
                    "{TURBO_TAG} must be visible ASCII of at most {MAX_TAG_BYTES} bytes"
                ))
            })?;
        extras
            .attributes
            .insert(TURBO_TAG.to_string(), tag.to_string());
    }
    Ok(extras)
}

/// The headers a turbo GET or HEAD of a stored artifact answers with: its
/// duration and, for a signed artifact, its tag as it was sent.
fn turbo_headers(entry: &IndexEntry, headers: &mut HeaderMap) {
    if let Some(ms) = entry.build_duration_ms {
        headers.insert(TURBO_DURATION, HeaderValue::from(ms));
    }
    if let Some(tag) = entry
        .attributes
        .get(TURBO_TAG)
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert(TURBO_TAG, tag);
    }
}

async fn turbo_status(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, TurboRefusal> {
    state.caller(&headers).await?;
    Ok(Json(serde_json::json!({"status": "enabled"})).into_response())
}

/// Turborepo's hit/miss analytics: runcache counts accesses itself, so
/// they are accepted and dropped.
async fn turbo_events(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, TurboRefusal> {
    state.caller(&headers).await?;
    Ok(StatusCode::OK.into_response())
}
