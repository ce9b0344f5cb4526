//! Callouts to the token API (docs/DESIGN.md §6): the introspection request and the
//! revocations feed, and strict parsing of their answers. Anything but a
//! well-formed 200 is "unavailable", never a decision.

use crate::cache::{key_from_hex, Grant, Key, Reason};
use crate::config::TokenApi;
use core::fmt;
use mcpgw_token::scopes;
use serde_json::{Map, Value};

pub const INTROSPECT_PATH: &str = "/api/v1/mcptokens/introspect";
pub const REVOCATIONS_PATH: &str = "/api/v1/mcptokens/revocations";
/// An introspection answer is a few hundred bytes; more is garbage.
pub const MAX_INTROSPECT_BODY: usize = 64 * 1024;
/// A feed page of 64-character hashes.
pub const MAX_FEED_BODY: usize = 4 * 1024 * 1024;
const MAX_CURSOR_LEN: usize = 1024;

/// An HTTP callout ready for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub path: String,
    pub authority: String,
    /// `Bearer <token>` for introspection; the feed carries no credential.
    pub authorization: Option<String>,
}

impl Callout {
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![
            (":method", "GET"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
        ];
        if let Some(a) = &self.authorization {
            h.push(("authorization", a.as_str()));
        }
        h
    }
}

/// Introspection: the token is sent as the callout's own bearer.
pub fn introspect_request(api: &TokenApi, token: &str) -> Callout {
    Callout {
        path: INTROSPECT_PATH.to_string(),
        authority: api.authority.clone(),
        authorization: Some(format!("Bearer {token}")),
    }
}

/// One poll of the revocations feed from `cursor` (empty: from the start).
pub fn feed_request(api: &TokenApi, cursor: &str) -> Callout {
    let path = if cursor.is_empty() {
        REVOCATIONS_PATH.to_string()
    } else {
        format!("{REVOCATIONS_PATH}?since={}", percent_encode(cursor))
    };
    Callout {
        path,
        authority: api.authority.clone(),
        authorization: None,
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why an answer could not be used; for logs, never shown to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn unavailable<T>(why: impl Into<String>) -> Result<T, Unavailable> {
    Err(Unavailable(why.into()))
}

/// A usable introspection answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Active { grant: Grant, cache_ttl_s: u64 },
    Inactive(Reason),
}

/// The `:status` of a callout response's headers.
pub fn status_of(headers: &[(&[u8], &[u8])]) -> Option<u16> {
    headers
        .iter()
        .find(|(k, _)| *k == b":status")
        .and_then(|(_, v)| core::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

fn json_200(
    status: Option<u16>,
    body: &[u8],
    max: usize,
) -> Result<Map<String, Value>, Unavailable> {
    match status {
        None => return unavailable("no response (connection failure inside Envoy)"),
        Some(200) => {}
        Some(s) => return unavailable(format!("status {s}")),
    }
    if body.len() > max {
        return unavailable(format!("body of {} bytes is over {max}", body.len()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => unavailable("body is not a JSON object"),
        Err(e) => unavailable(format!("body is not JSON: {e}")),
    }
}

/// Parses an introspection answer received at `now_ms`.
pub fn parse_introspection(
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
) -> Result<Answer, Unavailable> {
    let m = json_200(status, body, MAX_INTROSPECT_BODY)?;
    match m.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return match m
                .get("reason")
                .and_then(Value::as_str)
                .and_then(Reason::parse)
            {
                Some(r) => Ok(Answer::Inactive(r)),
                None => {
                    unavailable("inactive answer without reason unknown|revoked|expired|malformed")
                }
            }
        }
        _ => return unavailable("no boolean \"active\""),
    }
    let tenant = field_str(&m, "tenant", is_tenant)?;
    let project = field_str(&m, "project", is_tenant)?;
    let token_id = field_str(&m, "token_id", is_token_id)?;
    let name = field_str(&m, "name", is_token_name)?;
    let scope_list = match m.get("scopes") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(()))
            .collect::<Result<Vec<_>, _>>()
            .or_else(|_| unavailable("\"scopes\" holds a non-string"))?,
        _ => return unavailable("no \"scopes\" array"),
    };
    let scopes = scopes::parse_all(&scope_list).or_else(|e| unavailable(e.to_string()))?;
    let exp = match m.get("exp") {
        Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or(())
                .or_else(|_| unavailable("\"exp\" is not null or Unix seconds"))?,
        ),
        None => return unavailable("no \"exp\""),
    };
    if m.get("iat").and_then(Value::as_u64).is_none() {
        return unavailable("no \"iat\" in Unix seconds");
    }
    let cache_ttl_s = m
        .get("cache_ttl_s")
        .and_then(Value::as_u64)
        .ok_or(())
        .or_else(|_| unavailable("no \"cache_ttl_s\" in seconds"))?;
    let exp_ms = exp.map(|s| s.saturating_mul(1000));
    if exp_ms.is_some_and(|e| e <= now_ms) {
        // Active but already past exp here: clock skew; trust exp.
        return Ok(Answer::Inactive(Reason::Expired));
    }
    Ok(Answer::Active {
        grant: Grant::new(
            tenant.into(),
            project.into(),
            token_id.into(),
            name.into(),
            scopes,
            exp_ms,
        ),
        cache_ttl_s,
    })
}

fn field_str<'a>(
    m: &'a Map<String, Value>,
    field: &str,
    valid: fn(&str) -> bool,
) -> Result<&'a str, Unavailable> {
    match m.get(field).and_then(Value::as_str) {
        Some(s) if valid(s) => Ok(s),
        Some(_) => unavailable(format!("\"{field}\" has an invalid value")),
        None => unavailable(format!("no \"{field}\" string")),
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}` (docs/DESIGN.md §4): tenants and projects.
pub fn is_tenant(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Opaque token ids (`tok_` + ULID); anything header-safe and short.
pub fn is_token_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
}

/// 1–64 printable characters (docs/DESIGN.md §4); no control characters, so the name
/// is safe as a header value.
pub fn is_token_name(s: &str) -> bool {
    let n = s.chars().count();
    (1..=64).contains(&n) && !s.chars().any(char::is_control)
}

/// One page of the revocations feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocations {
    pub cursor: String,
    pub revoked: Vec<Key>,
}

pub fn parse_revocations(status: Option<u16>, body: &[u8]) -> Result<Revocations, Unavailable> {
    let m = json_200(status, body, MAX_FEED_BODY)?;
    let cursor = match m.get("cursor") {
        Some(Value::String(c)) if c.len() <= MAX_CURSOR_LEN => c.clone(),
        Some(Value::String(_)) => return unavailable("\"cursor\" is too long"),
        _ => return unavailable("no \"cursor\" string"),
    };
    let Some(Value::Array(items)) = m.get("revoked") else {
        return unavailable("no \"revoked\" array");
    };
    let revoked = items
        .iter()
        .map(|v| v.as_str().and_then(key_from_hex).ok_or(()))
        .collect::<Result<Vec<_>, _>>()
        .or_else(|_| unavailable("\"revoked\" holds something other than a token_sha"))?;
    Ok(Revocations { cursor, revoked })
}

#[cfg(test)]
mod tests;
