//! Scope grammar, matching and the creator ceiling (docs/DESIGN.md §5).
//!
//! ```text
//! mcp:<method-glob>                       every name under matching methods
//! mcp:<method>:<name-glob>                tools/call, prompts/get, resources/read only
//! tokens:read | tokens:write              manage the caller's own tenant + project
//! ```
//! `*` matches any run of characters within its segment. The name part is the
//! rest of the string, so resource URIs may contain `:`.

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
    fn grants(&self, method: &str, name: Option<&str>) -> bool {
        match self {
            Scope::Mcp {
                method: pattern,
                name: name_pattern,
            } => {
                glob_match(pattern, method)
                    && match name_pattern {
                        None => true,
                        Some(p) => name.is_some_and(|n| glob_match(p, n)),
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
    if let Some(name) = name {
        if name_param(method).is_none() {
            return Err(err(
                "a name part is allowed only after tools/call, prompts/get or resources/read",
            ));
        }
        if name.is_empty() {
            return Err(err("the name after the method is empty (use * for all)"));
        }
    }
    Ok(Scope::Mcp {
        method: method.to_string(),
        name: name.map(str::to_string),
    })
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
/// Lifecycle methods are always allowed. Allocation-free.
pub fn grants(scopes: &[Scope], method: &str, name: Option<&str>) -> bool {
    is_lifecycle(method) || scopes.iter().any(|s| s.grants(method, name))
}

/// The narrowest scope that would allow the request, for `insufficient_scope`.
/// A method no scope can spell (e.g. with `:` or spaces) needs `mcp:*`.
pub fn required_scope(method: &str, name: Option<&str>) -> String {
    if method.is_empty() || !method.bytes().all(is_method_byte) {
        return ALL_MCP.to_string();
    }
    match (name_param(method), name) {
        (Some(_), Some(name)) => format!("mcp:{method}:{name}"),
        _ => format!("mcp:{method}"),
    }
}

/// `*` matches any run of characters (possibly empty); everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), |p, t| p == t)
}

/// Pattern `outer` covers pattern `inner`: `*` in `inner` is a literal that only
/// a `*` in `outer` can match.
fn pattern_covers(outer: &str, inner: &str) -> bool {
    glob(outer.as_bytes(), inner.as_bytes(), |p, t| {
        p == t && t != b'*'
    })
}

/// Iterative wildcard matching with single backtrack point: linear in practice,
/// never exponential, no allocation.
fn glob(pattern: &[u8], text: &[u8], eq: impl Fn(u8, u8) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if eq(c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests;
