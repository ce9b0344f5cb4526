//! A raw HTTP backend that answers `tools/list` the way a compressing or
//! broken MCP server would, with every demo tool: what the gateway must never
//! let through to a token that may not see them.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{catalog, Seen, SeenRequest};

/// How the backend answers `tools/list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// gzip, whatever the request accepts.
    GzipAlways,
    /// gzip only when the request's `accept-encoding` allows it.
    GzipIfAccepted,
    /// JSON cut short: not parsable, though every tool name is in it.
    Truncated,
    /// An event stream whose list answer is not JSON (`NaN`, which some
    /// clients' parsers accept).
    NanEvent,
}

pub struct Scripted {
    pub addr: SocketAddr,
    pub seen: Seen,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    /// Answers every POST on `listen` following `script`.
    pub async fn start(listen: SocketAddr, script: Script) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let seen = Seen::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                record.push(SeenRequest {
                    method: method.to_string(),
                    path: uri.path().to_string(),
                    headers: headers
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.as_str().to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                });
                async move { answer(script, &headers, &body) }
            },
        );
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            seen,
            cancel,
            task,
        })
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Every demo tool, as a `tools/list` answer to `id`.
pub fn every_tool(id: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": catalog::tools()}})
}

fn answer(script: Script, headers: &HeaderMap, body: &[u8]) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if request.get("method").and_then(Value::as_str) != Some("tools/list") {
        let ok = json!({"jsonrpc": "2.0", "id": id, "result": {}});
        return json_response(ok.to_string().into_bytes(), None);
    }
    let list = every_tool(&id).to_string();
    let accepts_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("gzip"));
    match script {
        Script::GzipIfAccepted if !accepts_gzip => json_response(list.into_bytes(), None),
        Script::GzipAlways | Script::GzipIfAccepted => {
            json_response(gzip(list.as_bytes()), Some("gzip"))
        }
        Script::Truncated => {
            let cut = list.len() - 3;
            json_response(list.as_bytes()[..cut].to_vec(), None)
        }
        Script::NanEvent => {
            let nan = list.replacen("{\"tools\":", "{\"x\":NaN,\"tools\":", 1);
            let events = format!(
                "data: {}\n\ndata: {nan}\n\n",
                json!({"jsonrpc": "2.0", "method": "notifications/progress",
                       "params": {"progressToken": 1, "progress": 1}})
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/event-stream")],
                events,
            )
                .into_response()
        }
    }
}

fn json_response(body: Vec<u8>, encoding: Option<&'static str>) -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Some(e) = encoding {
        r.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static(e),
        );
    }
    r
}

/// `data` gzipped (RFC 1952).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}
