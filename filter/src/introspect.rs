//! Callouts to the token API (docs/DESIGN.md §6): the introspection request and the
//! revocations feed, and strict reading of their answers. The JSON itself is
//! `mcpgw_token::wire`, which the token API writes; this adds the gateway's
//! rules on top: a definitive inactive answer denies, and anything but a
//! well-formed 200 is "unavailable", never a decision.

use crate::cache::{key_from_hex, Grant, Key, Reason};
use crate::config::TokenApi;
use core::fmt;
use mcpgw_token::wire::{self, FeedPage, InactiveReason, Introspection};

pub use mcpgw_token::wire::{is_label as is_tenant, is_token_id, is_token_name};
pub use mcpgw_token::wire::{INTROSPECT_PATH, REVOCATIONS_PATH};

/// An introspection answer is a few hundred bytes; more is garbage.
pub const MAX_INTROSPECT_BODY: usize = 64 * 1024;
/// A feed page of at most `wire::FEED_PAGE_MAX` 64-character hashes is
/// about 70 KB; this leaves room for a token API that pages larger.
pub const MAX_FEED_BODY: usize = 4 * 1024 * 1024;

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

/// One read of the revocations feed after `cursor`; an empty cursor (a
/// worker with no position yet) reads `since=now`: only what happens from now
/// on, never the whole history.
pub fn feed_request(api: &TokenApi, cursor: &str) -> Callout {
    let since = if cursor.is_empty() { "now" } else { cursor };
    Callout {
        path: wire::feed_path(since),
        authority: api.authority.clone(),
        authorization: None,
    }
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

/// The body of a 200 within `max` bytes.
fn body_of_200(status: Option<u16>, body: &[u8], max: usize) -> Result<&[u8], Unavailable> {
    match status {
        None => return unavailable("no response (connection failure inside Envoy)"),
        Some(200) => {}
        Some(s) => return unavailable(format!("status {s}")),
    }
    if body.len() > max {
        return unavailable(format!("body of {} bytes is over {max}", body.len()));
    }
    Ok(body)
}

fn reason(r: InactiveReason) -> Reason {
    match r {
        InactiveReason::Unknown => Reason::Unknown,
        InactiveReason::Revoked => Reason::Revoked,
        InactiveReason::Expired => Reason::Expired,
        InactiveReason::Malformed => Reason::Malformed,
    }
}

/// Parses an introspection answer received at `now_ms`. `"active": false`
/// is a decision whatever its `reason` says (one this side does not know
/// reads as `unknown`): the token API said no, so it must never fall back to
/// a stale "yes".
pub fn parse_introspection(
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
) -> Result<Answer, Unavailable> {
    let body = body_of_200(status, body, MAX_INTROSPECT_BODY)?;
    let t = match Introspection::from_json(body) {
        Ok(Introspection::Inactive(r)) => return Ok(Answer::Inactive(reason(r))),
        Ok(Introspection::Active(t)) => t,
        Err(e) => return unavailable(e.0),
    };
    let scopes = t.validate().or_else(|e| unavailable(e.0))?;
    let exp_ms = t.exp.map(|s| s.saturating_mul(1000));
    if exp_ms.is_some_and(|e| e <= now_ms) {
        // Active but already past exp here: clock skew; trust exp.
        return Ok(Answer::Inactive(Reason::Expired));
    }
    Ok(Answer::Active {
        grant: Grant::new(t.tenant, t.project, t.token_id, t.name, scopes, exp_ms)
            .with_rate_limit(t.rate_limit),
        cache_ttl_s: t.cache_ttl_s,
    })
}

/// One page of the revocations feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocations {
    pub cursor: String,
    pub revoked: Vec<Key>,
    /// Live tokens whose answer changed (a new rate limit): their cached
    /// decisions go, the next request asks again.
    pub changed: Vec<Key>,
    /// Another page is waiting: read again at once.
    pub more: bool,
    /// The feed could not continue from our cursor (another database, a
    /// cursor past its head, or history pruned past it): revocations may have
    /// been missed, so every cached decision must go.
    pub reset: bool,
}

pub fn parse_revocations(status: Option<u16>, body: &[u8]) -> Result<Revocations, Unavailable> {
    let body = body_of_200(status, body, MAX_FEED_BODY)?;
    let page = FeedPage::from_json(body).or_else(|e| unavailable(e.0))?;
    let keys = |field: &str, hashes: &[String]| {
        hashes
            .iter()
            .map(|h| key_from_hex(h).ok_or(()))
            .collect::<Result<Vec<_>, _>>()
            .or_else(|_| {
                unavailable(format!(
                    "\"{field}\" holds something other than a token_sha"
                ))
            })
    };
    let revoked = keys("revoked", &page.revoked)?;
    let changed = keys("changed", &page.changed)?;
    Ok(Revocations {
        cursor: page.cursor,
        revoked,
        changed,
        more: page.more,
        reset: page.reset,
    })
}

#[cfg(test)]
mod tests;
