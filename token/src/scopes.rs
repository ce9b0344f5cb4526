//! Scope grammar, matching and the creator ceiling (docs/DESIGN.md §5).
//!
//! ```text
//! mcp:<method-glob>                       every name under matching methods
//! mcp:<method>:<name-glob>                tools/call, prompts/get, resources/read only
//! tokens:read | tokens:write              manage the caller's own tenant + project
//! ```
//! `*` matches any run of characters within its segment; in a name, `\*` is a
//! literal `*` and `\\` a literal `\`, so a tool whose name holds a `*` can be
//! granted alone. The name part is the rest of the string, so resource URIs
//! may contain `:`. Resource patterns and URIs are compared in RFC 3986 normal
//! form, and a URI a server could read as another path is granted only by a
//! method-wide scope (see [`crate::uri`]).

use crate::uri;
use core::fmt;

/// The default scope of a new token: every MCP method and name.
pub const ALL_MCP: &str = "mcp:*";

const MAX_SCOPE_LEN: usize = 256;

/// One parsed scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `mcp:<method>` or `mcp:<method>:<name>`, both possibly globs.
    Mcp {
        method: String,
        name: Option<String>,
    },
    TokensRead,
    TokensWrite,
}

impl Scope {
    /// Whether every request this scope could grant is also granted by `self`.
    ///
    /// Glob containment is decided by matching `self`'s pattern against the
    /// other pattern's text, where a `*` in the other pattern can only be
    /// absorbed by a `*` here: sound, and exact for the patterns people write.
    pub fn covers(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::TokensRead, Scope::TokensRead) | (Scope::TokensWrite, Scope::TokensWrite) => {
                true
            }
            (
                Scope::Mcp { method, name },
                Scope::Mcp {
                    method: other_method,
                    name: other_name,
                },
            ) => {
                pattern_covers(method, other_method)
                    && match (name, other_name) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(n), Some(o)) => pattern_covers(n, o),
                    }
            }
            _ => false,
        }
    }

    /// Whether this scope lets a request for `method` (and `name`) through.
    /// `name` is what name patterns match: for `resources/read` the URI in
    /// normal form, `None` when it is ambiguous.
    fn grants(&self, method: &str, name: Option<&str>) -> bool {
        match self {
            Scope::Mcp {
                method: pattern,
                name: name_pattern,
            } => {
                glob_match(pattern, method)
                    && match name_pattern {
                        None => true,
                        Some(p) => name.is_some_and(|n| name_match(p, n)),
                    }
            }
            _ => false,
        }
    }

    /// `mcp:*` exactly: lets the filter skip body inspection.
    pub fn is_all_mcp(&self) -> bool {
        matches!(self, Scope::Mcp { method, name: None } if method == "*")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Mcp { method, name: None } => write!(f, "mcp:{method}"),
            Scope::Mcp {
                method,
                name: Some(name),
            } => write!(f, "mcp:{method}:{name}"),
            Scope::TokensRead => f.write_str("tokens:read"),
            Scope::TokensWrite => f.write_str("tokens:write"),
        }
    }
}

/// A scope string that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError {
    scope: String,
    reason: &'static str,
}

impl ScopeError {
    /// The offending scope string (truncated if huge).
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scope {:?}: {}", self.scope, self.reason)
    }
}

impl std::error::Error for ScopeError {}

/// Parses one scope string.
pub fn parse(s: &str) -> Result<Scope, ScopeError> {
    let err = |reason| ScopeError {
        scope: s.chars().take(80).collect(),
        reason,
    };
    if s.len() > MAX_SCOPE_LEN {
        return Err(err("longer than 256 characters"));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(err("must not contain spaces or control characters"));
    }
    match s {
        "tokens:read" => return Ok(Scope::TokensRead),
        "tokens:write" => return Ok(Scope::TokensWrite),
        _ => {}
    }
    let Some(rest) = s.strip_prefix("mcp:") else {
        return Err(err(
            "use mcp:<method>[:<name>], tokens:read or tokens:write",
        ));
    };
    let (method, name) = match rest.split_once(':') {
        Some((m, n)) => (m, Some(n)),
        None => (rest, None),
    };
    if method.is_empty() {
        return Err(err(
            "the method after \"mcp:\" is empty (use mcp:* for all)",
        ));
    }
    if !method.bytes().all(|b| b == b'*' || is_method_byte(b)) {
        return Err(err(
            "a method has only letters, digits, '/', '_', '-', '.' and '*'",
        ));
    }
    let name = match name {
        None => None,
        Some(name) => {
            if name_param(method).is_none() {
                return Err(err(
                    "a name part is allowed only after tools/call, prompts/get or resources/read",
                ));
            }
            if name.is_empty() {
                return Err(err("the name after the method is empty (use * for all)"));
            }
            if !escapes_are_valid(name) {
                return Err(err(
                    "in a name, '\\' escapes only '*' or '\\' (\\* is a literal star)",
                ));
            }
            if method == "resources/read" {
                // `\*` is a literal star, not a backslash in the URI.
                if uri::normalize(&name.replace("\\*", "*")).ambiguous {
                    return Err(err(
                        "a resource pattern must not hold . or .. segments, encoded / \\ % \
                         or control characters, a broken %-escape, or a scheme spelled with \
                         %-escapes",
                    ));
                }
                Some(uri::normalize(name).text)
            } else {
                Some(name.to_string())
            }
        }
    };
    Ok(Scope::Mcp {
        method: method.to_string(),
        name,
    })
}

/// Every `\` in a name pattern escapes a `*` or a `\`.
fn escapes_are_valid(name: &str) -> bool {
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\\' && !matches!(bytes.next(), Some(b'*' | b'\\')) {
            return false;
        }
    }
    true
}

/// Bytes a method may have in a scope (besides the `*` wildcard).
fn is_method_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.')
}

/// Parses a list, failing on the first invalid entry.
pub fn parse_all<S: AsRef<str>>(list: &[S]) -> Result<Vec<Scope>, ScopeError> {
    list.iter().map(|s| parse(s.as_ref())).collect()
}

/// The first requested scope that no ceiling scope covers.
pub fn first_uncovered<'a>(requested: &'a [Scope], ceiling: &[Scope]) -> Option<&'a Scope> {
    requested
        .iter()
        .find(|r| !ceiling.iter().any(|c| c.covers(r)))
}

/// MCP traffic that needs no scope: session set-up, liveness and notifications.
pub fn is_lifecycle(method: &str) -> bool {
    matches!(method, "initialize" | "ping" | "server/discover")
        || method.starts_with("notifications/")
}

/// The params field that names the target of a method, for name-scoped methods.
pub fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Whether `scopes` allow a JSON-RPC request for `method` on `name`.
/// Lifecycle methods are always allowed. Allocation-free but for
/// `resources/read`, whose URI is normalised once (and only when a name
/// pattern has to decide).
pub fn grants(scopes: &[Scope], method: &str, name: Option<&str>) -> bool {
    if is_lifecycle(method) {
        return true;
    }
    if method != "resources/read" {
        return scopes.iter().any(|s| s.grants(method, name));
    }
    if scopes.iter().any(|s| s.grants(method, None)) {
        return true;
    }
    let normal = name.map(uri::normalize).filter(|n| !n.ambiguous);
    let name = normal.as_ref().map(|n| n.text.as_str());
    scopes.iter().any(|s| s.grants(method, name))
}

/// The method whose scopes decide which items of an MCP list method a token
/// sees: listing follows calling.
pub fn item_method(list_method: &str) -> Option<&'static str> {
    match list_method {
        "tools/list" => Some("tools/call"),
        "prompts/list" => Some("prompts/get"),
        "resources/list" | "resources/templates/list" => Some("resources/read"),
        _ => None,
    }
}

/// Whether `scopes` allow `method` on every name: a scope without a name part
/// whose method pattern matches (`mcp:*`, `mcp:tools/call`, `mcp:tools/*`).
/// Such a token sees whole lists; nothing needs filtering.
pub fn grants_every_name(scopes: &[Scope], method: &str) -> bool {
    is_lifecycle(method) || scopes.iter().any(|s| s.grants(method, None))
}

/// Whether a token holding `scopes` sees `item` in the answer to
/// `list_method`: a tool or prompt `name`, a resource `uri`, a resource
/// template's `uriTemplate`. Exactly the items [`grants`] would let it use:
/// tools by `tools/call`, prompts by `prompts/get`, resources by
/// `resources/read`; a template when it can produce a URI the token may read
/// (see [`crate::template`]). Not a list method: nothing is listed.
pub fn lists(scopes: &[Scope], list_method: &str, item: &str) -> bool {
    let Some(method) = item_method(list_method) else {
        return false;
    };
    if list_method == "resources/templates/list" {
        return grants_every_name(scopes, method)
            || crate::template::readable_expansion(item, scopes).is_some();
    }
    grants(scopes, method, Some(item))
}

/// The narrowest scope that would allow the request, for `insufficient_scope`:
/// always one [`parse`] accepts, so a token can be given it. A name is
/// escaped so that the scope grants that name only; a name no scope can
/// spell (empty, with spaces or control characters, too long) and an
/// ambiguous resource URI need the method-wide scope; a method no scope can
/// spell (e.g. with `:` or spaces) needs `mcp:*`.
pub fn required_scope(method: &str, name: Option<&str>) -> String {
    if method.is_empty() || !method.bytes().all(is_method_byte) {
        return ALL_MCP.to_string();
    }
    let name = match (name_param(method), name) {
        (Some(_), Some(name)) if method == "resources/read" => {
            let n = uri::normalize(name);
            (!n.ambiguous).then_some(n.text)
        }
        (Some(_), Some(name)) => Some(name.to_string()),
        _ => None,
    };
    let named = name.map(|name| format!("mcp:{method}:{}", escape_name(&name)));
    [named, Some(format!("mcp:{method}"))]
        .into_iter()
        .flatten()
        .find(|s| parse(s).is_ok())
        .unwrap_or_else(|| ALL_MCP.to_string())
}

/// A name as a pattern that matches exactly it.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '*' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `*` matches any run of characters (possibly empty); everything else
/// literally. For methods, which have no escapes.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), plain_item, plain_item)
}

/// A name pattern (with `\*` / `\\` escapes) against a name.
pub fn name_match(pattern: &str, name: &str) -> bool {
    glob(pattern.as_bytes(), name.as_bytes(), name_item, literal_item)
}

/// Pattern `outer` covers pattern `inner`: a `*` in `inner` can only be
/// absorbed by a `*` in `outer`. Names and methods alike: a method holds no
/// `\`, so reading it with escapes changes nothing.
fn pattern_covers(outer: &str, inner: &str) -> bool {
    glob(outer.as_bytes(), inner.as_bytes(), name_item, name_item)
}

/// One element of a pattern or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    Star,
    Lit(u8),
}

/// The item at `i` and its length in bytes.
type Next = fn(&[u8], usize) -> Option<(Item, usize)>;

fn literal_item(s: &[u8], i: usize) -> Option<(Item, usize)> {
    s.get(i).map(|&b| (Item::Lit(b), 1))
}

fn plain_item(s: &[u8], i: usize) -> Option<(Item, usize)> {
    s.get(i).map(|&b| match b {
        b'*' => (Item::Star, 1),
        b => (Item::Lit(b), 1),
    })
}

/// With escapes; a trailing lone `\` is itself (parse never lets one through).
fn name_item(s: &[u8], i: usize) -> Option<(Item, usize)> {
    match (s.get(i)?, s.get(i + 1)) {
        (b'\\', Some(&escaped @ (b'*' | b'\\'))) => Some((Item::Lit(escaped), 2)),
        (b'*', _) => Some((Item::Star, 1)),
        (&b, _) => Some((Item::Lit(b), 1)),
    }
}

/// A name pattern as items (escapes resolved).
pub(crate) fn pattern_items(pattern: &str) -> Vec<Item> {
    let bytes = pattern.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some((item, len)) = name_item(bytes, i) {
        out.push(item);
        i += len;
    }
    out
}

/// Iterative wildcard matching with a single backtrack point: linear in
/// practice, never exponential, no allocation. A text `Star` is matched only
/// by a pattern `Star`.
fn glob(pattern: &[u8], text: &[u8], pattern_at: Next, text_at: Next) -> bool {
    let (mut p, mut t) = (0, 0);
    // (pattern position after the star, text position the star resumes at)
    let mut star: Option<(usize, usize)> = None;
    while let Some((ti, tlen)) = text_at(text, t) {
        match pattern_at(pattern, p) {
            Some((Item::Star, plen)) => {
                star = Some((p + plen, t));
                p += plen;
            }
            Some((Item::Lit(c), plen)) if ti == Item::Lit(c) => {
                p += plen;
                t += tlen;
            }
            _ => match star {
                Some((sp, st)) => {
                    let skip = text_at(text, st).map_or(1, |(_, l)| l);
                    p = sp;
                    t = st + skip;
                    star = Some((sp, t));
                }
                None => return false,
            },
        }
    }
    while let Some((Item::Star, plen)) = pattern_at(pattern, p) {
        p += plen;
    }
    p >= pattern.len()
}

#[cfg(test)]
mod tests;
