//! What the token API writes and the gateway filter reads (docs/DESIGN.md §6):
//! the API paths, the introspection answer, the revocations-feed page and its
//! cursor. Both sides build and read these types, so a field changed here
//! changes (or breaks) both builds.
//!
//! The readers are strict: [`Introspection::from_json`] and
//! [`FeedPage::from_json`] refuse anything that is not exactly the shape the
//! token API writes, and [`ActiveToken::validate`] checks every value the
//! gateway turns into a header or a scope.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use crate::ratelimit::RateLimit;
use crate::scopes::{self, Scope};

/// The token collection: create, list, and `/{id}` below it.
pub const TOKENS_PATH: &str = "/api/v1/mcptokens";
/// Introspection: the token is the request's own bearer.
pub const INTROSPECT_PATH: &str = "/api/v1/mcptokens/introspect";
/// The revocations feed: `?since=<cursor>|now`, no credential.
pub const REVOCATIONS_PATH: &str = "/api/v1/mcptokens/revocations";

/// Most hashes in one feed page; `more` says when another page follows.
pub const FEED_PAGE_MAX: u32 = 1_000;
/// Longest cursor either side accepts (the API's are about 40 characters).
pub const MAX_CURSOR_LEN: usize = 1_024;

/// A wire value that does not have the agreed shape; for logs and 400s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn wire_err<T>(why: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(why.into()))
}

/// An active token, as introspection describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveToken {
    pub token_id: String,
    pub name: String,
    pub tenant: String,
    pub project: String,
    /// Canonical scope strings (docs/DESIGN.md §5).
    pub scopes: Vec<String>,
    /// Expiry in Unix seconds; `null` for a token that never expires. The
    /// field itself is required: a missing `exp` is not "never".
    #[serde(deserialize_with = "nullable")]
    pub exp: Option<u64>,
    /// Creation time, Unix seconds.
    pub iat: u64,
    /// Longest time a gateway may reuse this answer, seconds.
    pub cache_ttl_s: u64,
    /// The token's rate limit; `null` (or absent, from a token API that
    /// predates limits) for none.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// `Option<T>` that must be present (as a value or `null`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// Why a token is not active. Readers map any other (or no) reason to
/// [`InactiveReason::Unknown`]: an inactive answer always denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InactiveReason {
    Unknown,
    Revoked,
    Expired,
    Malformed,
}

impl InactiveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InactiveReason::Unknown => "unknown",
            InactiveReason::Revoked => "revoked",
            InactiveReason::Expired => "expired",
            InactiveReason::Malformed => "malformed",
        }
    }

    /// A reason this side knows, or `None`.
    pub fn parse(s: &str) -> Option<InactiveReason> {
        Some(match s {
            "unknown" => InactiveReason::Unknown,
            "revoked" => InactiveReason::Revoked,
            "expired" => InactiveReason::Expired,
            "malformed" => InactiveReason::Malformed,
            _ => return None,
        })
    }
}

impl fmt::Display for InactiveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of a 200 from introspection:
/// `{"active": true, <ActiveToken fields>}` or `{"active": false, "reason": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    Active(ActiveToken),
    Inactive(InactiveReason),
}

impl Serialize for Introspection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Active<'a> {
            active: bool,
            #[serde(flatten)]
            token: &'a ActiveToken,
        }
        #[derive(Serialize)]
        struct Inactive {
            active: bool,
            reason: InactiveReason,
        }
        match self {
            Introspection::Active(token) => Active {
                active: true,
                token,
            }
            .serialize(s),
            Introspection::Inactive(reason) => Inactive {
                active: false,
                reason: *reason,
            }
            .serialize(s),
        }
    }
}

impl Introspection {
    pub fn to_json(&self) -> String {
        // Strings, integers and lists of strings always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads an answer. `"active": false` is inactive whatever else the
    /// object holds (an unknown or missing `reason` reads as `unknown`);
    /// `"active": true` needs every [`ActiveToken`] field with its type.
    /// Fields this side does not know are ignored.
    pub fn from_json(body: &[u8]) -> Result<Introspection, WireError> {
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return wire_err(format!("body is not JSON: {e}")),
        };
        let Value::Object(map) = &value else {
            return wire_err("body is not a JSON object");
        };
        match map.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                return Ok(Introspection::Inactive(
                    map.get("reason")
                        .and_then(Value::as_str)
                        .and_then(InactiveReason::parse)
                        .unwrap_or(InactiveReason::Unknown),
                ))
            }
            _ => return wire_err("no boolean \"active\""),
        }
        // Read again as the struct, by the same reader as the gateway's other
        // JSON: the `Value` deserializer would compile every wire type twice
        // into the filter's `.wasm`.
        serde_json::from_slice::<ActiveToken>(body)
            .map(Introspection::Active)
            .or_else(|e| wire_err(format!("active answer: {e}")))
    }
}

impl ActiveToken {
    /// Checks every value the gateway puts in a header or enforces, and
    /// returns the parsed scopes.
    pub fn validate(&self) -> Result<Vec<Scope>, WireError> {
        for (field, value) in [("tenant", &self.tenant), ("project", &self.project)] {
            if !is_label(value) {
                return wire_err(format!("\"{field}\" is not a tenant/project label"));
            }
        }
        if !is_token_id(&self.token_id) {
            return wire_err("\"token_id\" has an invalid value");
        }
        if !is_token_name(&self.name) {
            return wire_err("\"name\" is not 1-64 printable characters");
        }
        if let Some(limit) = &self.rate_limit {
            limit
                .check()
                .or_else(|e| wire_err(format!("\"rate_limit\": {e}")))?;
        }
        scopes::parse_all(&self.scopes).map_err(|e| WireError(e.to_string()))
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}` (docs/DESIGN.md §4): tenants and projects.
pub fn is_label(s: &str) -> bool {
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

/// 1–64 characters without control characters (docs/DESIGN.md §4), so a name
/// is safe as a header value.
pub fn is_token_name(s: &str) -> bool {
    let n = s.chars().count();
    (1..=64).contains(&n) && !s.chars().any(char::is_control)
}

/// One page of the revocations feed.
///
/// `reset: true` means the cursor asked for cannot be continued (another
/// database, a cursor past the head, or history pruned past it): `cursor` is
/// the current head, `revoked` is empty, and the reader must drop every
/// decision it cached, since revocations may have been missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    /// Where the next read starts; opaque to readers.
    pub cursor: String,
    /// `token_sha` (64 lowercase hex) of tokens revoked, or deleted while
    /// live, oldest first.
    pub revoked: Vec<String>,
    /// `token_sha` of live tokens whose introspection answer changed (a new
    /// rate limit), oldest first: drop the cached decision and ask again.
    /// Absent from a token API that predates it, and when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Another page follows at once: read again from `cursor`.
    pub more: bool,
    #[serde(default)]
    pub reset: bool,
}

impl FeedPage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a page; the cursor must be 1 to [`MAX_CURSOR_LEN`] bytes.
    /// Hashes are checked by the reader, which turns them into keys.
    pub fn from_json(body: &[u8]) -> Result<FeedPage, WireError> {
        let page = serde_json::from_slice::<FeedPage>(body)
            .or_else(|e| wire_err(format!("not a feed page: {e}")))?;
        if page.cursor.len() > MAX_CURSOR_LEN {
            return wire_err("\"cursor\" is too long");
        }
        // The feed always says where the next read starts. A reader given no
        // cursor would read from `now` and silently skip what lies between.
        if page.cursor.is_empty() {
            return wire_err("\"cursor\" is empty");
        }
        Ok(page)
    }
}

/// A position in the revocations feed: the store's epoch (random, made with
/// the database) and a sequence number, written `<epoch>.<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCursor {
    pub epoch: String,
    pub seq: u64,
}

impl FeedCursor {
    /// `<epoch>.<seq>`: an epoch of 1–64 lowercase hex digits, a canonical
    /// decimal.
    pub fn parse(s: &str) -> Option<FeedCursor> {
        let (epoch, seq) = s.split_once('.')?;
        let epoch_ok = (1..=64).contains(&epoch.len())
            && epoch
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !epoch_ok {
            return None;
        }
        Some(FeedCursor {
            epoch: epoch.to_owned(),
            seq: parse_decimal(seq)?,
        })
    }
}

impl fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.seq)
    }
}

/// A canonical non-negative decimal (no sign, no leading zeros) within `i64`.
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|c| c.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .filter(|n| i64::try_from(*n).is_ok())
}

/// Where a feed read starts: the `since` query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// No `since`: the oldest entry still kept.
    Beginning,
    /// `since=now`: no history, just the current cursor.
    Now,
    /// After this cursor.
    After(FeedCursor),
    /// A plain sequence number, as cursors were before they carried an epoch:
    /// answered with a reset.
    Legacy(u64),
}

impl Since {
    pub fn parse(since: Option<&str>) -> Result<Since, WireError> {
        let Some(s) = since else {
            return Ok(Since::Beginning);
        };
        if s == "now" {
            return Ok(Since::Now);
        }
        if s.len() <= MAX_CURSOR_LEN {
            if let Some(c) = FeedCursor::parse(s) {
                return Ok(Since::After(c));
            }
            if let Some(seq) = parse_decimal(s) {
                return Ok(Since::Legacy(seq));
            }
        }
        wire_err(format!(
            "since {:?} is not a cursor from this feed: pass the \"cursor\" of the previous \
             answer, \"now\", or nothing to start from the oldest entry kept",
            s.chars().take(80).collect::<String>()
        ))
    }
}

/// The path of a feed read from `since` (a cursor the feed returned, or `now`).
pub fn feed_path(since: &str) -> String {
    let mut out = String::with_capacity(REVOCATIONS_PATH.len() + 7 + since.len());
    out.push_str(REVOCATIONS_PATH);
    out.push_str("?since=");
    // Cursors are opaque: encode whatever they hold.
    out.extend(percent_encoding::utf8_percent_encode(since, UNRESERVED));
    out
}

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests;
