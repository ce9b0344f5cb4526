//! The filter's local replies as plain data (status, headers, JSON body).
//!
//! 401, 413 and 503 bodies use the token API's error shape
//! `{"error": {"code", "message"}}`; 400 and 403 answer a JSON-RPC request
//! and so are JSON-RPC error objects carrying the request's `id`.

use crate::bearer::BearerError;
use crate::cache::Reason;
use crate::config::Config;
use crate::jsonrpc::{self, Verdict};
use mcpgw_token::format::FormatError;
use mcpgw_token::ratelimit::RateLimit;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Headers in the form `send_http_response` takes.
    pub fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// Why a request gets a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No usable `Authorization: Bearer` header.
    Bearer(BearerError),
    /// Fails the offline format check.
    Malformed(FormatError),
    /// Token in the query string.
    QueryToken,
    /// The token API says the token is not active.
    Inactive(Reason),
}

fn json_reply(status: u32, mut headers: Vec<(&'static str, String)>, body: Value) -> Reply {
    headers.push(("content-type", "application/json".into()));
    headers.push(("cache-control", "no-store".into()));
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn api_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn challenge(cfg: &Config, error: Option<&str>) -> String {
    let mut v = format!("Bearer realm=\"{}\"", cfg.realm);
    if let Some(e) = error {
        v.push_str(&format!(", error=\"{e}\""));
    }
    if let Some(url) = &cfg.resource_metadata {
        v.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    v
}

pub fn unauthorized(cfg: &Config, why: Unauthorized) -> Reply {
    let (error, code, message) = match why {
        // RFC 6750 §3.1: a request without credentials gets no error code.
        Unauthorized::Bearer(e) => (None, "missing_token", e.to_string()),
        Unauthorized::Malformed(e) => (
            Some("invalid_token"),
            "malformed_token",
            format!("{e}; copy the whole token as it was shown at creation"),
        ),
        Unauthorized::QueryToken => (
            Some("invalid_request"),
            "token_in_query",
            "tokens are never accepted in the URL; remove access_token from the query and \
             send `Authorization: Bearer mcpctl_pat_…`"
                .to_string(),
        ),
        Unauthorized::Inactive(r) => (
            Some("invalid_token"),
            "invalid_token",
            match r {
                Reason::Revoked => "the token was revoked; create a new one".to_string(),
                Reason::Expired => "the token has expired; create a new one".to_string(),
                Reason::Unknown | Reason::Malformed => {
                    "the token is not known; check that it was copied from this gateway's \
                     token API"
                        .to_string()
                }
            },
        ),
    };
    json_reply(
        401,
        vec![("www-authenticate", challenge(cfg, error))],
        api_error(code, &message),
    )
}

/// A JSON-RPC error reply.
pub fn jsonrpc_error(
    status: u32,
    headers: Vec<(&'static str, String)>,
    code: i64,
    message: &str,
    data: Option<Value>,
    id: &Value,
) -> Reply {
    let mut error = serde_json::Map::new();
    error.insert("code".into(), code.into());
    error.insert("message".into(), message.into());
    if let Some(d) = data {
        error.insert("data".into(), d);
    }
    json_reply(
        status,
        headers,
        json!({"jsonrpc": "2.0", "id": id, "error": error}),
    )
}

pub fn insufficient_scope(cfg: &Config, required: &str, id: &Value) -> Reply {
    let header = format!(
        "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
        cfg.realm,
        header_scope(required)
    );
    jsonrpc_error(
        403,
        vec![("www-authenticate", header)],
        jsonrpc::INSUFFICIENT_SCOPE,
        &format!("insufficient scope: this token needs {required}"),
        Some(json!({"required_scope": required})),
        id,
    )
}

/// The scope as it may appear in a `WWW-Authenticate` quoted string
/// (RFC 6750 §3: `%x21 / %x23-5B / %x5D-7E`). A name from the body with other
/// characters (spaces, quotes, non-ASCII) is replaced by the method-wide
/// scope, which also grants the request; the body names the exact one.
fn header_scope(required: &str) -> String {
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    };
    if ok(required) {
        return required.to_string();
    }
    let method_wide = required
        .strip_prefix("mcp:")
        .and_then(|rest| rest.split(':').next())
        .map(|m| format!("mcp:{m}"));
    match method_wide {
        Some(s) if ok(&s) => s,
        _ => mcpgw_token::scopes::ALL_MCP.to_string(),
    }
}

/// The reply for a body inspection verdict; `None` for [`Verdict::Allow`].
pub fn for_verdict(cfg: &Config, v: &Verdict) -> Option<Reply> {
    Some(match v {
        Verdict::Allow => return None,
        Verdict::Deny { required, id } => insufficient_scope(cfg, required, id),
        Verdict::Mismatch { detail, id } => jsonrpc_error(
            400,
            vec![],
            jsonrpc::HEADER_MISMATCH,
            &format!("{detail}; send Mcp-Method / Mcp-Name equal to the body, or omit them"),
            None,
            id,
        ),
        Verdict::ParseError { detail } => jsonrpc_error(
            400,
            vec![],
            jsonrpc::PARSE_ERROR,
            &format!("parse error: {detail}"),
            None,
            &Value::Null,
        ),
        Verdict::InvalidRequest { detail, id } => jsonrpc_error(
            400,
            vec![],
            jsonrpc::INVALID_REQUEST,
            &format!("invalid request: {detail}"),
            None,
            id,
        ),
    })
}

pub fn body_too_large(max: u64) -> Reply {
    json_reply(
        413,
        vec![],
        api_error(
            "body_too_large",
            &format!(
                "request body is over {max} bytes, the most this gateway reads to check scopes; \
                 send smaller requests"
            ),
        ),
    )
}

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_S: u32 = 1;

/// 503 for a token that would need a callout while `token_api.max_inflight`
/// are already in flight on this worker.
pub fn overloaded() -> Reply {
    json_reply(
        503,
        vec![("retry-after", RETRY_AFTER_S.to_string())],
        api_error(
            "token_check_busy",
            "this gateway is checking too many new tokens at once; retry shortly",
        ),
    )
}

pub fn unavailable() -> Reply {
    json_reply(
        503,
        vec![("retry-after", RETRY_AFTER_S.to_string())],
        api_error(
            "token_api_unavailable",
            "the token service could not be reached to check this token; retry shortly",
        ),
    )
}

#[cfg(test)]
mod tests;

/// The policy name in `RateLimit-Policy` / `RateLimit`.
pub const RATE_LIMIT_POLICY: &str = "token";

/// 429 for a token whose rate limit is spent, with `Retry-After` and the
/// IETF `RateLimit-Policy` / `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers: `"token";q=<requests>;w=<window>`,
/// `"token";r=0;t=<seconds>`). `id`: the JSON-RPC request's id, for a body
/// that is a JSON-RPC call (its answer is then a JSON-RPC error); `None` for a
/// request without one (GET, DELETE).
pub fn rate_limited(limit: &RateLimit, retry_after_s: u64, id: Option<&Value>) -> Reply {
    let headers = vec![
        ("retry-after", retry_after_s.to_string()),
        (
            "ratelimit-policy",
            format!(
                "\"{RATE_LIMIT_POLICY}\";q={};w={}",
                limit.requests, limit.window_s
            ),
        ),
        (
            "ratelimit",
            format!("\"{RATE_LIMIT_POLICY}\";r=0;t={retry_after_s}"),
        ),
    ];
    let message = format!(
        "this token's rate limit ({limit}) is spent; retry in {retry_after_s} s, or ask for a \
         higher limit"
    );
    match id {
        Some(id) => jsonrpc_error(
            429,
            headers,
            jsonrpc::RATE_LIMITED,
            &message,
            Some(json!({"retry_after_s": retry_after_s, "rate_limit": limit})),
            id,
        ),
        None => json_reply(429, headers, api_error("rate_limited", &message)),
    }
}
