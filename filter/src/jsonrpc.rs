//! Inspection of a buffered MCP request body (JSON-RPC 2.0, single message or
//! batch) against the token's scopes and the `Mcp-Method` / `Mcp-Name`
//! headers.
//!
//! Decisions (documented in the README):
//! - The body is read once, by [`crate::message::read`], and refused (400) when
//!   JSON parsers could read it differently: the method and name checked here
//!   are the ones every server executes.
//! - Every message with a `method` is checked, with or without `id`: a server
//!   may act on a "notification" named `tools/call`. Lifecycle methods
//!   (`initialize`, `ping`, `notifications/*`, `server/discover`) and
//!   responses need no scope.
//! - `Mcp-Method` / `Mcp-Name`, when sent, must equal the method and name of
//!   every request in the body (for a single request: that request), bare or
//!   in the `=?base64?…?=` form of SEP-2243.
//! - A denied batch is refused whole; the error carries the first denied
//!   request's `id`.

use crate::message::{self, Reading, Refusal};
use mcpgw_token::scopes::{self, Scope};
use serde_json::Value;

/// JSON-RPC error code for `Mcp-Method` / `Mcp-Name` headers that disagree
/// with the body.
pub const HEADER_MISMATCH: i64 = -32020;
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
/// Implementation-defined server error used for a scope denial.
pub const INSUFFICIENT_SCOPE: i64 = -32003;

/// Whether a `Mcp-Method` / `Mcp-Name` header value names `actual`. Values
/// that cannot travel as bare header text (non-ASCII, edge blanks) are sent
/// as `=?base64?<standard base64>?=` (SEP-2243), so both forms are accepted.
pub fn header_matches(header: &[u8], actual: &str) -> bool {
    use base64::Engine as _;
    match header
        .strip_prefix(b"=?base64?")
        .and_then(|h| h.strip_suffix(b"?="))
    {
        Some(inner) => base64::engine::general_purpose::STANDARD
            .decode(inner)
            .is_ok_and(|decoded| decoded == actual.as_bytes()),
        None => header == actual.as_bytes(),
    }
}

/// What the client's routing headers claim the body is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claimed<'a> {
    pub method: Option<&'a [u8]>,
    pub name: Option<&'a [u8]>,
}

impl Claimed<'_> {
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.name.is_none()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    /// 403: `required` is the scope the request needed.
    Deny {
        required: String,
        id: Value,
    },
    /// 400 with [`HEADER_MISMATCH`].
    Mismatch {
        detail: String,
        id: Value,
    },
    /// 400 with [`PARSE_ERROR`].
    ParseError {
        detail: String,
    },
    /// 400 with [`INVALID_REQUEST`].
    InvalidRequest {
        detail: String,
        id: Value,
    },
}

/// Inspects `body`. `scopes` is `None` when scopes need no check (the body
/// is read only to verify the headers).
pub fn inspect(body: &[u8], claimed: Claimed<'_>, scopes: Option<&[Scope]>) -> Verdict {
    inspect_reading(body, claimed, scopes).0
}

/// [`inspect`], and the reading of the body when it has one (the list
/// requests whose answers are filtered come from it).
pub fn inspect_reading(
    body: &[u8],
    claimed: Claimed<'_>,
    scopes: Option<&[Scope]>,
) -> (Verdict, Option<Reading>) {
    let reading = match message::read(body) {
        Ok(r) => r,
        Err(Refusal::Parse(detail)) => return (Verdict::ParseError { detail }, None),
        Err(Refusal::Invalid { detail, id }) => {
            return (Verdict::InvalidRequest { detail, id }, None)
        }
    };
    let verdict = verdict(&reading, claimed, scopes);
    (verdict, Some(reading))
}

fn verdict(reading: &Reading, claimed: Claimed<'_>, scopes: Option<&[Scope]>) -> Verdict {
    let mut requests = 0usize;
    let mut denied: Option<(String, Value)> = None;
    for msg in reading.messages() {
        let Some(method) = msg.method() else { continue };
        requests += 1;
        let name = msg.name();
        let id = &msg.id;

        if let Some(m) = claimed.method {
            if !header_matches(m, method) {
                return Verdict::Mismatch {
                    detail: format!(
                        "Mcp-Method header {:?} does not match the body's method {method:?}",
                        String::from_utf8_lossy(m)
                    ),
                    id: id.clone(),
                };
            }
        }
        if let Some(n) = claimed.name {
            if !name.is_some_and(|name| header_matches(n, name)) {
                return Verdict::Mismatch {
                    detail: format!(
                        "Mcp-Name header {:?} does not match the body's name {:?}",
                        String::from_utf8_lossy(n),
                        name.unwrap_or("(none)")
                    ),
                    id: id.clone(),
                };
            }
        }
        if let Some(s) = scopes {
            if denied.is_none() && !scopes::grants(s, method, name) {
                denied = Some((scopes::required_scope(method, name), id.clone()));
            }
        }
    }

    if requests == 0 && !claimed.is_empty() {
        return Verdict::Mismatch {
            detail: "Mcp-Method / Mcp-Name headers sent with a body that holds no request".into(),
            id: Value::Null,
        };
    }
    match denied {
        Some((required, id)) => Verdict::Deny { required, id },
        None => Verdict::Allow,
    }
}

#[cfg(test)]
mod tests;
