//! The Azure Blob subset behind the signed URLs `serve` hands out, as the
//! Azure SDK inside `@actions/cache` uses it: Put Blob, Put Block (block
//! ids stored as given), Put Block List (assembled in list order), each
//! `201`; GET and HEAD of a stored entry with `Content-Length` and `Range`
//! (`206`). URLs are path-style, `/{account}/{container}/{blob}` (what the
//! SDK expects of an IP or `localhost` host): `/_blob/runcache/up/{id}` for
//! an upload, `/_blob/runcache/cas/{sha256}/{size}` for a stored entry,
//! each with its capability ([`crate::signed`]). A forged or expired URL
//! is `403`.
//!
//! Full GETs stream the entry verified against its hash: altered bytes end
//! the response with an error instead of a clean end, so the client's
//! extraction fails rather than restoring them.
//!
//! May touch: what [`crate::uploads`] touches; the CAS (reads).

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, put},
    Router,
};
use futures::TryStreamExt;
use runcache_cache::fetch;
use runcache_infra::{names, BlobReader};
use runcache_schemas::{ContentHash, IndexEntry};
use serde::Deserialize;
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::warn;

use crate::{Failure, State as Shared};

const PREFIX: &str = "/_blob/runcache";
/// The Azure Storage service version the answers claim.
const MS_VERSION: &str = "2025-01-05";
/// A block list is a few KiB per GiB; refuse absurd ones.
const MAX_BLOCK_LIST_BYTES: usize = 4 << 20;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(&format!("{PREFIX}/up/{{id}}"), put(upload))
        .route(
            &format!("{PREFIX}/cas/{{hash}}/{{size}}"),
            get(download).head(download),
        )
}

/// The signed URL an upload's bytes go to.
pub fn upload_url(state: &Shared, headers: &HeaderMap, id: u64) -> String {
    let path = format!("{PREFIX}/up/{id}");
    let query = state.signer.sign(&path, now());
    state.url(headers, &format!("{path}?{query}"))
}

/// The signed URL `entry` is downloaded from.
pub fn download_url(state: &Shared, headers: &HeaderMap, entry: &IndexEntry) -> String {
    let path = format!(
        "{PREFIX}/cas/{}/{}",
        entry.content_hash.hex(),
        entry.size_bytes
    );
    let query = state.signer.sign(&path, now());
    state.url(headers, &format!("{path}?{query}"))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A failure as Azure reports it: XML body and `x-ms-error-code`.
struct AzureError(Failure);

impl From<Failure> for AzureError {
    fn from(f: Failure) -> Self {
        AzureError(f)
    }
}

impl IntoResponse for AzureError {
    fn into_response(self) -> Response {
        let code = match self.0.status.as_u16() {
            403 => "AuthenticationFailed",
            404 => "BlobNotFound",
            409 => "BlobAlreadyExists",
            400 => "InvalidInput",
            _ => "InternalError",
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}</Message></Error>",
            xml_escape(&self.0.msg)
        );
        let mut response = (self.0.status, body).into_response();
        let h = response.headers_mut();
        h.insert("x-ms-error-code", HeaderValue::from_static(code));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        h.insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
        response
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A request body as the ports read it.
pub(crate) fn body_reader(body: Body) -> BlobReader {
    Box::pin(StreamReader::new(
        body.into_data_stream().map_err(std::io::Error::other),
    ))
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    comp: Option<String>,
    blockid: Option<String>,
}

/// `201 Created` with the headers the SDK reads.
fn created(etag: Option<String>) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    h.insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
    h.insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("false"),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-ms-request-id", id);
    }
    let etag = etag.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", etag.trim_matches('"'))) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate(chrono::Utc::now())) {
        h.insert(header::LAST_MODIFIED, v);
    }
    response
}

fn httpdate(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

async fn upload(
    State(state): State<Arc<Shared>>,
    Path(id): Path<u64>,
    Query(q): Query<UploadQuery>,
    uri: Uri,
    body: Body,
) -> Result<Response, AzureError> {
    state
        .signer
        .verify(uri.path(), uri.query(), now())
        .map_err(Failure::from)?;
    let r = state.uploads.get(id, None).map_err(Failure::from)?;
    match q.comp.as_deref() {
        None => {
            state
                .uploads
                .put_whole(&state.backend, &r, body_reader(body))
                .await
                .map_err(Failure::from)?;
            Ok(created(None))
        }
        Some("block") => {
            let block = q
                .blockid
                .ok_or_else(|| Failure::bad_request("Put Block needs a blockid"))?;
            state
                .uploads
                .put_block(&r, &block, body_reader(body))
                .await
                .map_err(Failure::from)?;
            Ok(created(None))
        }
        Some("blocklist") => {
            let xml = axum::body::to_bytes(body, MAX_BLOCK_LIST_BYTES)
                .await
                .map_err(|e| Failure::bad_request(format!("reading the block list: {e}")))?;
            let ids = parse_block_list(&xml)?;
            state
                .uploads
                .commit_blocks(&state.backend, &r, &ids)
                .await
                .map_err(Failure::from)?;
            Ok(created(None))
        }
        Some(other) => Err(Failure::bad_request(format!(
            "comp={other} is not supported (runcache serves Put Blob, Put Block and Put Block List)"
        ))
        .into()),
    }
}

/// The ids of a `<BlockList>`, in order (`Latest`, `Uncommitted` and
/// `Committed` all name blocks uploaded to this upload).
fn parse_block_list(xml: &[u8]) -> Result<Vec<String>, Failure> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut ids = Vec::new();
    let mut in_id = false;
    let mut saw_list = false;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| Failure::bad_request(format!("the block list is not XML: {e}")))?;
        match event {
            Event::Start(e) => match e.name().as_ref() {
                b"BlockList" => saw_list = true,
                b"Latest" | b"Uncommitted" | b"Committed" => {
                    in_id = true;
                    ids.push(String::new());
                }
                _ => {}
            },
            Event::Text(t) if in_id => {
                let text = t
                    .decode()
                    .map_err(|e| Failure::bad_request(format!("a block id is not text: {e}")))?;
                if let Some(last) = ids.last_mut() {
                    last.push_str(&text);
                }
            }
            Event::GeneralRef(r) if in_id => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.decode().map_err(|e| {
                            Failure::bad_request(format!("a block id is not text: {e}"))
                        })?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| {
                                Failure::bad_request(format!("unknown entity &{name};"))
                            })?
                            .to_string()
                    }
                };
                if let Some(last) = ids.last_mut() {
                    last.push_str(&resolved);
                }
            }
            Event::End(e)
                if matches!(e.name().as_ref(), b"Latest" | b"Uncommitted" | b"Committed") =>
            {
                in_id = false;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_list {
        return Err(Failure::bad_request("the body is not a <BlockList>"));
    }
    Ok(ids)
}

/// A `Range` (or `x-ms-range`) of `bytes=a-b`, `bytes=a-` or `bytes=-n`
/// within `size`, as a half-open range.
fn requested_range(
    headers: &HeaderMap,
    size: u64,
) -> Result<Option<std::ops::Range<u64>>, Failure> {
    let Some(value) = headers
        .get("x-ms-range")
        .or_else(|| headers.get(header::RANGE))
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let bad = || {
        Failure::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("unsatisfiable range `{value}` of {size} bytes"),
        )
    };
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let range = match (start.trim(), end.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| bad())?;
            size.saturating_sub(n)..size
        }
        (a, "") => a.parse().map_err(|_| bad())?..size,
        (a, b) => {
            let a: u64 = a.parse().map_err(|_| bad())?;
            let b: u64 = b.parse().map_err(|_| bad())?;
            a..(b + 1).min(size)
        }
    };
    if range.start >= size || range.start >= range.end {
        return Err(bad());
    }
    Ok(Some(range))
}

/// Bytes per body frame of a download: ReaderStream's default (4 KiB)
/// made a 1 GiB download a quarter of a million frames, and the client
/// (Node's streams) spent most of its time on them.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

async fn download(
    State(state): State<Arc<Shared>>,
    Path((hash, size)): Path<(String, u64)>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    _query: Query<HashMap<String, String>>,
) -> Result<Response, AzureError> {
    state
        .signer
        .verify(uri.path(), uri.query(), now())
        .map_err(Failure::from)?;
    let hash = ContentHash::from_hex(&hash).map_err(|e| Failure::bad_request(e.to_string()))?;
    let range = requested_range(&headers, size)?;
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    let (status, body) = if method == Method::HEAD {
        (StatusCode::OK, Body::empty())
    } else if let Some(range) = range.clone() {
        // A range cannot be verified alone: it is served as stored (the
        // object was verified when promoted; `admin verify` re-checks).
        let reader = state
            .backend
            .blobs
            .get(&names::artifact_key(hash.hex()), Some(range))
            .await
            .map_err(Failure::from)?;
        (
            StatusCode::PARTIAL_CONTENT,
            Body::from_stream(ReaderStream::with_capacity(reader, DOWNLOAD_CHUNK)),
        )
    } else {
        let reader = fetch::open_verified(&state.backend, &hash, size)
            .await
            .map_err(Failure::from)?;
        let stream = ReaderStream::with_capacity(reader, DOWNLOAD_CHUNK).inspect_err(move |e| {
            warn!(error = %e, "a download was cut: the stored bytes did not verify");
        });
        (StatusCode::OK, Body::from_stream(stream))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
    h.insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", hash.hex())) {
        h.insert(header::ETAG, v);
    }
    if let Some(r) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_keep_their_order_and_ids_as_given() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList><Latest>YjI=</Latest><Latest>a+/=</Latest><Uncommitted>&lt;x&gt;</Uncommitted></BlockList>"#;
        assert_eq!(parse_block_list(xml).unwrap(), ["YjI=", "a+/=", "<x>"]);
        assert!(parse_block_list(b"<Other/>").is_err());
    }

    #[test]
    fn ranges_are_read_as_http_and_azure_write_them() {
        let mut h = HeaderMap::new();
        assert_eq!(requested_range(&h, 10).unwrap(), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        assert_eq!(requested_range(&h, 10).unwrap(), Some(2..5));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=8-"));
        assert_eq!(requested_range(&h, 10).unwrap(), Some(8..10));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=-3"));
        assert_eq!(requested_range(&h, 10).unwrap(), Some(7..10));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=10-12"));
        assert!(requested_range(&h, 10).is_err());
    }
}
