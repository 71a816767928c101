//! v1: the REST cache service under `/_apis/artifactcache/`, for runners
//! and GHES-style clients that do not use v2: look up (`200` with the
//! entry, `204` on a miss), reserve (`409` when the key exists or is being
//! uploaded), PATCH chunks with `Content-Range` in any order, commit with
//! the size. Downloads go to the same signed URLs as v2's.
//!
//! May touch: what [`crate::uploads`] and [`crate::entries`] touch.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio_util::io::StreamReader;

use crate::{blob, entries, Failure, State as Shared};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_apis/artifactcache/cache", get(lookup))
        .route("/_apis/artifactcache/caches", post(reserve))
        .route(
            "/_apis/artifactcache/caches/{id}",
            post(commit).patch(chunk),
        )
}

/// A failure as the v1 service reports it: `{"message": …}`.
struct RestError(Failure);

impl From<Failure> for RestError {
    fn from(f: Failure) -> Self {
        RestError(f)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (
            self.0.status,
            Json(json!({"message": self.0.msg, "typeKey": self.0.code})),
        )
            .into_response()
    }
}

fn fail(e: impl Into<Failure>) -> RestError {
    RestError(e.into())
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    keys: String,
    version: String,
}

async fn lookup(
    State(state): State<Arc<Shared>>,
    Query(q): Query<LookupQuery>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let caller = state.caller(&headers).await.map_err(fail)?;
    let mut keys = q.keys.split(',').map(str::to_string);
    let primary = keys.next().unwrap_or_default();
    let restore_keys: Vec<String> = keys.collect();
    let found = entries::find(&state, &caller, &primary, &restore_keys, &q.version)
        .await
        .map_err(fail)?;
    Ok(match found {
        Some(entry) => Json(json!({
            "cacheKey": entry.cache_key,
            "scope": entry.git_ref,
            "cacheVersion": entry.cache_version,
            "creationTime": entry.created_at,
            "archiveLocation": blob::download_url(&state, &headers, &entry),
        }))
        .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReserveRequest {
    key: String,
    version: String,
    #[serde(default)]
    #[allow(dead_code)] // the size is checked at commit
    cache_size: Option<u64>,
}

async fn reserve(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, RestError> {
    let caller = state.caller(&headers).await.map_err(fail)?;
    let req: ReserveRequest = serde_json::from_slice(&body).map_err(|e| {
        fail(Failure::bad_request(format!(
            "the request is not a reservation ({{key, version, cacheSize}}): {e}"
        )))
    })?;
    let r = state
        .uploads
        .reserve(
            &state.config,
            &state.backend,
            &caller,
            &req.key,
            &req.version,
        )
        .await
        .map_err(fail)?;
    Ok((StatusCode::CREATED, Json(json!({"cacheId": r.id}))).into_response())
}

/// `Content-Range: bytes a-b/*` → a.
fn chunk_start(headers: &HeaderMap) -> Result<u64, Failure> {
    let value = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Failure::bad_request("a chunk needs Content-Range: bytes <start>-<end>/*")
        })?;
    value
        .trim()
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('-'))
        .and_then(|(start, _)| start.trim().parse().ok())
        .ok_or_else(|| {
            Failure::bad_request(format!(
                "Content-Range `{value}` is not bytes <start>-<end>/*"
            ))
        })
}

async fn chunk(
    State(state): State<Arc<Shared>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let caller = state.caller(&headers).await.map_err(fail)?;
    let r = state.uploads.get(id, Some(&caller.job)).map_err(fail)?;
    let start = chunk_start(&headers).map_err(fail)?;
    let reader = Box::pin(StreamReader::new(
        body.into_data_stream().map_err(std::io::Error::other),
    ));
    state
        .uploads
        .put_chunk(&r, start, reader)
        .await
        .map_err(fail)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct CommitRequest {
    size: u64,
}

async fn commit(
    State(state): State<Arc<Shared>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, RestError> {
    let caller = state.caller(&headers).await.map_err(fail)?;
    let r = state.uploads.get(id, Some(&caller.job)).map_err(fail)?;
    let req: CommitRequest = serde_json::from_slice(&body).map_err(|e| {
        fail(Failure::bad_request(format!(
            "the commit must be {{\"size\": <bytes>}}: {e}"
        )))
    })?;
    state.uploads.commit_chunks(
        state.config.clone(),
        state.backend.clone(),
        r,
        req.size,
        &state.tasks,
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn chunks_say_where_they_start() {
        let mut h = HeaderMap::new();
        assert!(chunk_start(&h).is_err());
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 33554432-67108863/*"),
        );
        assert_eq!(chunk_start(&h).unwrap(), 33554432);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("items 1-2"));
        assert!(chunk_start(&h).is_err());
    }
}
