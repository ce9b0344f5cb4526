//! The record of one request (docs/DESIGN.md §7): what the filter decided and
//! why, for Envoy's access log.
//!
//! The filter writes it once per request as one filter-state value
//! (`set_property`: Envoy stores it under `wasm.<record.property>`; an access
//! log reads it with `%FILTER_STATE(wasm.mcp_auth:PLAIN)%`). One host call
//! with a compact JSON object costs less than one call per field. It names the
//! token by id, name and `token_sha`, never by its secret.
//!
//! Fields (absent when unknown): `decision` (`allow`, `deny`, `bypass`),
//! `reason` (for a denial, see [`reason`]), `cache` (`hit`, `shared`,
//! `callout`, `stale`), `token_id`, `token_name`, `tenant`, `project`,
//! `token_sha`, `method` and `name` (the JSON-RPC method and its tool,
//! prompt or resource; the first request of a batch, with `batch` its size),
//! `rate_limit` (the token's limit, text form) and `retry_after_s` (429).

use crate::cache::{hex_of, Grant, Key, Reason};
use crate::message::Reading;
use crate::metrics::Metric;
use core::fmt::Write as _;
use std::rc::Rc;

/// Largest body read for the record alone (a token that needs no scope
/// check): a JSON-RPC call is a few hundred bytes; a larger body goes on
/// unread and its record has no method.
pub const MAX_BODY: usize = 64 * 1024;

/// Longest method or name kept, in bytes: a body may name a tool with
/// megabytes, a log line should not.
pub const MAX_NAME: usize = 256;

/// What a method or name that holds a token prefix is recorded as: a
/// client that pastes its token into a tool name must not get it logged.
pub const REDACTED: &str = "(redacted: holds a token)";

fn clip(s: &str) -> String {
    if s.contains(mcpgw_token::format::PREFIX) {
        return REDACTED.to_string();
    }
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// How the decision was found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cache {
    /// No lookup (bypass, refused before the cache).
    #[default]
    None,
    /// This worker's cache.
    Hit,
    /// Another worker's answer, from shared data.
    Shared,
    /// An introspection callout, made or joined.
    Callout,
    /// A decision past its TTL, served because the token API failed.
    Stale,
}

impl Cache {
    fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Cache::None => return None,
            Cache::Hit => "hit",
            Cache::Shared => "shared",
            Cache::Callout => "callout",
            Cache::Stale => "stale",
        })
    }
}

/// What a request's record holds until it is written.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub cache: Cache,
    pub key: Option<Key>,
    pub grant: Option<Rc<Grant>>,
    /// Why the token API said no, for a 401 after a lookup.
    pub inactive: Option<Reason>,
    pub method: Option<String>,
    pub name: Option<String>,
    pub batch: usize,
    pub retry_after_s: Option<u64>,
}

impl Facts {
    /// Takes the method and name of the body's first request.
    pub fn called(&mut self, reading: &Reading) {
        let mut requests = reading.messages().iter().filter(|m| m.method().is_some());
        if let Some(first) = requests.next() {
            self.method = first.method().map(clip);
            self.name = first.name().map(clip);
            self.batch = match reading {
                Reading::Batch(_) => 1 + requests.count(),
                Reading::Single(_) => 0,
            };
        }
    }
}

/// What happened to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Metric),
    Bypass,
}

/// The record's `reason` for a denial counted under `metric`: the code of
/// the reply's body, or for a 401 after a lookup, what the token API said
/// (`revoked`, `expired`, `unknown_token`).
pub fn reason(metric: Metric, inactive: Option<Reason>) -> &'static str {
    match metric {
        Metric::DeniedMissing => "missing_token",
        Metric::DeniedMalformed => "malformed_token",
        Metric::DeniedQueryToken => "token_in_query",
        Metric::DeniedInvalid => match inactive {
            Some(Reason::Revoked) => "revoked",
            Some(Reason::Expired) => "expired",
            _ => "unknown_token",
        },
        Metric::DeniedScope => "insufficient_scope",
        Metric::DeniedHeaderMismatch => "header_mismatch",
        Metric::DeniedBadBody => "bad_body",
        Metric::DeniedBodyTooLarge => "body_too_large",
        Metric::DeniedUnavailable => "token_api_unavailable",
        Metric::DeniedOverloaded => "token_check_busy",
        Metric::DeniedRateLimited => "rate_limited",
        _ => "denied",
    }
}

/// The record's fields that come from the token's grant, as JSON text,
/// built once per introspection answer: they are the same for every
/// request of the token, and serialising them per request cost ~5 µs of
/// Envoy CPU a request in V8.
/// Boxed: a grant travels inside introspection answers, kept small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFields(Box<Fields>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fields {
    /// `token_id`, `token_name`, `tenant`, `project`.
    who: String,
    /// `rate_limit`, or nothing.
    limit: String,
}

impl GrantFields {
    pub fn of(g: &Grant) -> GrantFields {
        let mut who = String::with_capacity(128);
        push_field(&mut who, "token_id", &g.token_id);
        push_field(&mut who, "token_name", &g.name);
        push_field(&mut who, "tenant", &g.tenant);
        push_field(&mut who, "project", &g.project);
        let mut limit = String::new();
        if let Some(l) = g.rate_limit {
            push_field(&mut limit, "rate_limit", &l.to_string());
        }
        GrantFields(Box::new(Fields { who, limit }))
    }
}

/// `,"key":"value"` for a value known to need no escaping (the record's own
/// words, hex).
fn push_word(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":\"");
    out.push_str(value);
    out.push('"');
}

/// `,"key":<value as JSON>`.
fn push_field(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    // A string always serialises.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// The record as written: a one-line JSON object. Fields absent when
/// unknown, in this order: decision, reason, cache, token_id, token_name,
/// tenant, project, token_sha, method, name, batch, rate_limit,
/// retry_after_s.
pub fn encode(decision: Decision, facts: &Facts) -> String {
    let mut out = String::with_capacity(384);
    out.push_str("{\"decision\":\"");
    out.push_str(match decision {
        Decision::Allow => "allow",
        Decision::Deny(_) => "deny",
        Decision::Bypass => "bypass",
    });
    out.push('"');
    if let Decision::Deny(m) = decision {
        push_word(&mut out, "reason", reason(m, facts.inactive));
    }
    if let Some(cache) = facts.cache.as_str() {
        push_word(&mut out, "cache", cache);
    }
    let grant = facts.grant.as_deref().map(|g| &g.record);
    if let Some(g) = grant {
        out.push_str(&g.0.who);
    }
    if let Some(key) = &facts.key {
        push_word(&mut out, "token_sha", &hex_of(key));
    }
    if let Some(method) = &facts.method {
        push_field(&mut out, "method", method);
    }
    if let Some(name) = &facts.name {
        push_field(&mut out, "name", name);
    }
    if facts.batch > 0 {
        let _ = write!(out, ",\"batch\":{}", facts.batch);
    }
    if let Some(g) = grant {
        out.push_str(&g.0.limit);
    }
    if let Some(s) = facts.retry_after_s {
        let _ = write!(out, ",\"retry_after_s\":{s}");
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests;
