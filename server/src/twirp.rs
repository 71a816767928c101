//! v2: the Twirp `CacheService` over JSON, as `@actions/cache` 4.x calls it
//! with `ACTIONS_CACHE_SERVICE_V2` set. Requests use proto field names
//! (`restore_keys`, `size_bytes`; lowerCamel is accepted too), int64 as
//! strings; answers as GitHub's service does: a miss is `200 {"ok":false}`,
//! a Create for a (scope, version, key) that exists or is being uploaded is
//! `409 already_exists` (the client then says "another job may be creating
//! this cache"), other errors are Twirp error bodies (`code`, `msg`).
//!
//! May touch: what [`crate::uploads`] and [`crate::entries`] touch.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use runcache_worker::settle::UploadFate;
use serde_json::{json, Value};

use crate::{blob, entries, Failure, State as Shared};

const SERVICE: &str = "/twirp/github.actions.results.api.v1.CacheService/{method}";

pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route(SERVICE, post(call))
}

impl IntoResponse for Failure {
    /// The Twirp error body; the other protocols render their own.
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "msg": self.msg})),
        )
            .into_response()
    }
}

async fn call(
    State(state): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, Failure> {
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::bad_request(format!("the request body is not JSON: {e}")))?;
    let caller = state.caller(&headers).await?;
    let key = string(&request, "key", "key")?;
    let version = string(&request, "version", "version")?;
    match method.as_str() {
        "CreateCacheEntry" => {
            let r = state
                .uploads
                .reserve(&state.config, &state.backend, &caller, &key, &version)
                .await?;
            let url = blob::upload_url(&state, &headers, r.id);
            Ok(Json(json!({"ok": true, "signed_upload_url": url})))
        }
        "FinalizeCacheEntryUpload" => {
            let size = int(&request, "size_bytes", "sizeBytes")?;
            let r = state
                .uploads
                .find(&caller.job, &version, &key)
                .ok_or_else(|| {
                    Failure::new(
                        StatusCode::NOT_FOUND,
                        format!("no upload of `{key}` is in progress for this job: call CreateCacheEntry first"),
                    )
                })?;
            let fate = state
                .uploads
                .finalize(&state.config, &state.backend, &r, size)
                .await?;
            Ok(Json(match fate {
                UploadFate::Rejected => json!({
                    "ok": false,
                    "message": "the upload was rejected by verification (see the server's log and `runcache explain`)",
                }),
                _ => json!({"ok": true, "entry_id": r.id.to_string()}),
            }))
        }
        "GetCacheEntryDownloadURL" => {
            let restore_keys = strings(&request, "restore_keys", "restoreKeys")?;
            let found = entries::find(&state, &caller, &key, &restore_keys, &version).await?;
            Ok(Json(match found {
                Some(entry) => json!({
                    "ok": true,
                    "signed_download_url": blob::download_url(&state, &headers, &entry),
                    "matched_key": entry.cache_key,
                }),
                None => json!({"ok": false}),
            }))
        }
        other => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("CacheService has no method {other} (runcache serves CreateCacheEntry, FinalizeCacheEntryUpload, GetCacheEntryDownloadURL)"),
        )
        .with_code("bad_route")),
    }
}

impl Failure {
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

/// The field `snake` (or `camel`), as a string.
fn string(v: &Value, snake: &str, camel: &str) -> Result<String, Failure> {
    match v.get(snake).or_else(|| v.get(camel)) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(Failure::bad_request(format!("`{snake}` is required"))),
        Some(_) => Err(Failure::bad_request(format!("`{snake}` must be a string"))),
    }
}

/// An int64 field: a decimal string (proto JSON) or a number; absent is 0.
fn int(v: &Value, snake: &str, camel: &str) -> Result<u64, Failure> {
    let bad = || Failure::bad_request(format!("`{snake}` must be a non-negative integer"));
    match v.get(snake).or_else(|| v.get(camel)) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| bad()),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn strings(v: &Value, snake: &str, camel: &str) -> Result<Vec<String>, Failure> {
    match v.get(snake).or_else(|| v.get(camel)) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Failure::bad_request(format!("`{snake}` must list strings")))
            })
            .collect(),
        Some(_) => Err(Failure::bad_request(format!("`{snake}` must be a list"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_accept_proto_names_lower_camel_and_int64_strings() {
        let v = json!({"key": "k", "sizeBytes": "230", "restoreKeys": ["a", "b"]});
        assert_eq!(string(&v, "key", "key").unwrap(), "k");
        assert_eq!(int(&v, "size_bytes", "sizeBytes").unwrap(), 230);
        assert_eq!(
            int(&json!({"size_bytes": 7}), "size_bytes", "sizeBytes").unwrap(),
            7
        );
        assert_eq!(
            strings(&v, "restore_keys", "restoreKeys").unwrap(),
            ["a", "b"]
        );
        assert!(int(&json!({"size_bytes": "-1"}), "size_bytes", "sizeBytes").is_err());
        assert!(string(&json!({}), "version", "version").is_err());
    }
}
