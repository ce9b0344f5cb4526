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
use serde::Serialize;
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

#[derive(Serialize)]
struct Line<'a> {
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_sha: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
}

/// The record as written: a one-line JSON object.
pub fn encode(decision: Decision, facts: &Facts) -> String {
    let g = facts.grant.as_deref();
    let line = Line {
        decision: match decision {
            Decision::Allow => "allow",
            Decision::Deny(_) => "deny",
            Decision::Bypass => "bypass",
        },
        reason: match decision {
            Decision::Deny(m) => Some(reason(m, facts.inactive)),
            _ => None,
        },
        cache: facts.cache.as_str(),
        token_id: g.map(|g| g.token_id.as_str()),
        token_name: g.map(|g| g.name.as_str()),
        tenant: g.map(|g| g.tenant.as_str()),
        project: g.map(|g| g.project.as_str()),
        token_sha: facts.key.as_ref().map(hex_of),
        method: facts.method.as_deref(),
        name: facts.name.as_deref(),
        batch: (facts.batch > 0).then_some(facts.batch),
        rate_limit: g.and_then(|g| g.rate_limit).map(|l| l.to_string()),
        retry_after_s: facts.retry_after_s,
    };
    // Strings and integers always serialize.
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests;
