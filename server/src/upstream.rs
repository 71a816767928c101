//! Paths the cache service does not own (the artifact service that
//! `upload-artifact` talks to under the same `ACTIONS_RESULTS_URL`, …)
//! forwarded to a configured upstream (`--upstream`, GitHub's own results
//! URL), so pointing a runner at `serve` breaks nothing else. Method,
//! path, query, headers (the job's token included: it is the upstream's)
//! and body go through streamed, both ways; only the path and query of a
//! request are used, so this is never an open proxy.
//!
//! May touch: the upstream, over HTTP(S).

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;
use thiserror::Error;
use tracing::{instrument, warn};

/// Headers of one hop, never forwarded (RFC 9110 §7.6.1), and `Host`,
/// which names this server.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("--upstream {0} is not an http:// or https:// URL")]
    BadUrl(String),
    #[error("preparing the upstream client: {0}")]
    Client(String),
}

/// Where requests that are not the cache service's go.
#[derive(Debug, Clone)]
pub struct Upstream {
    base: String,
    http: reqwest::Client,
}

impl Upstream {
    /// `base`: `https://results-receiver.actions.githubusercontent.com/`.
    pub fn new(base: &str) -> Result<Upstream, UpstreamError> {
        let url = reqwest::Url::parse(base).map_err(|_| UpstreamError::BadUrl(base.into()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(UpstreamError::BadUrl(base.into()));
        }
        let http = reqwest::Client::builder()
            // Redirects are the client's business, as they would be
            // without this hop.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Client(e.to_string()))?;
        Ok(Upstream {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The upstream's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Forwards `request`, streaming its body and the answer's.
    #[instrument(skip_all, fields(upstream = %self.base))]
    pub async fn forward(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url = format!("{}{}", self.base, path);
        let forwarded = self
            .http
            .request(parts.method.clone(), &url)
            .headers(end_to_end(&parts.headers))
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await;
        let answer = match forwarded {
            Ok(answer) => answer,
            Err(e) => {
                warn!(error = %e, %url, "the upstream did not answer");
                return (
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "runcache serve could not reach its --upstream for {} {path}: {e}\n",
                        parts.method
                    ),
                )
                    .into_response();
            }
        };
        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            *headers = end_to_end(answer.headers());
        }
        let stream = answer.bytes_stream().map_err(std::io::Error::other);
        response
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
    }
}

/// `headers` without the hop-by-hop ones (and those `Connection` names).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || named.iter().any(|x| x == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("host", "serve.internal".parse().unwrap());
        h.insert("authorization", "Bearer t".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let out = end_to_end(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["authorization", "content-type"]);
    }

    #[test]
    fn only_http_upstreams_are_accepted() {
        assert!(Upstream::new("https://results.example/").is_ok());
        assert!(Upstream::new("ftp://x/").is_err());
        assert!(Upstream::new("not a url").is_err());
    }
}
