//! Plugin configuration (docs/DESIGN.md §7): JSON in Envoy's `configuration` field.
//!
//! Every field has a default, unknown fields are refused, and every value is
//! validated at load. Each problem is reported as `<field path>: <what to fix>`
//! so the log line that fails the plugin load names the field.

use core::fmt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Envoy's default `per_connection_buffer_limit_bytes`: a body larger than this
/// is refused by Envoy itself (413) before the filter could inspect it, so a
/// larger `max_body_bytes` would be a promise the filter cannot keep.
pub const ENVOY_BUFFER_DEFAULT: u64 = 1_048_576;
/// `list_memo_bytes` by default, and at most (per worker).
pub const LIST_MEMO_DEFAULT: u64 = crate::listing::memo::MAX_BYTES as u64;
const LIST_MEMO_MAX: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub token_api: TokenApi,
    pub cache: Cache,
    /// Period of the revocations feed poll; 0 turns polling off.
    pub revocation_poll_ms: u64,
    pub headers: Headers,
    /// Paths forwarded without a token: exact, or a prefix when ending in `*`.
    pub bypass_paths: Vec<String>,
    /// Check JSON-RPC request bodies against the token's scopes.
    pub enforce_scopes: bool,
    /// Largest request body buffered for the scope check (413 above).
    pub max_body_bytes: u64,
    /// Bytes each worker keeps of list answers it rewrote, to recall one
    /// that repeats but for its id; 0 turns the memo off.
    pub list_memo_bytes: u64,
    pub realm: String,
    /// `resource_metadata=` URL added to 401 challenges (RFC 9728), or null.
    pub resource_metadata: Option<String>,
    pub rate_limit: RateLimits,
    pub record: Record,
}

/// Enforcement of the tokens' own rate limits (introspection's `rate_limit`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Enforce each token's limit in this Envoy (across its workers). Off
    /// when Envoy's own `local_ratelimit` / `ratelimit` filters do it on the
    /// token id header instead.
    pub enforce: bool,
}

/// The per-request record for Envoy's access log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Record {
    /// Filter-state name (Envoy's key is `wasm.<property>`); null: no record.
    pub property: Option<String>,
    /// Read the body of a request that needs no scope check too, to record
    /// its JSON-RPC method and tool (held to its end, never refused for it).
    pub read_body: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenApi {
    /// Envoy cluster of the token API.
    pub cluster: String,
    /// `:authority` of callouts to it.
    pub authority: String,
    pub timeout_ms: u64,
    /// Cluster of the revocations feed polls; `None` = `cluster`. A cluster
    /// of its own keeps polls from queueing behind a flood of introspections.
    pub feed_cluster: Option<String>,
    /// Timeout of a feed poll; `None` = `timeout_ms`.
    pub feed_timeout_ms: Option<u64>,
    /// Introspection callouts one worker keeps in flight at most; a token
    /// that would need one more gets 503 at once (cached tokens are not
    /// affected). Bounds what a flood of made-up tokens can cost.
    pub max_inflight: u64,
}

impl TokenApi {
    pub fn feed_cluster(&self) -> &str {
        self.feed_cluster.as_deref().unwrap_or(&self.cluster)
    }

    pub fn feed_timeout_ms(&self) -> u64 {
        self.feed_timeout_ms.unwrap_or(self.timeout_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    pub ttl_s: u64,
    pub negative_ttl_s: u64,
    pub max_entries: u64,
    pub stale_if_error_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Headers {
    pub tenant: String,
    pub project: String,
    /// `None` (`null` in the configuration): not written. Each routing
    /// header is a host call on every allowed request (≈ 0.5 µs of Envoy
    /// CPU); backends that do not read the token's id or name can skip it.
    pub token_id: Option<String>,
    pub token_name: Option<String>,
    /// Set on a request the filter answers itself once its body is read (a
    /// rate-limited JSON-RPC call): a route matching it holds the request
    /// (Envoy's buffer filter) so the upstream never sees it. `None`:
    /// `<strip_prefix>hold`.
    pub hold: Option<String>,
    /// Every client-sent header starting with this is removed first.
    pub strip_prefix: String,
}

impl Headers {
    /// The hold header's name (`x-mcp-hold` by default).
    pub fn hold(&self) -> String {
        self.hold
            .clone()
            .unwrap_or_else(|| format!("{}hold", self.strip_prefix))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token_api: TokenApi::default(),
            cache: Cache::default(),
            revocation_poll_ms: 1000,
            headers: Headers::default(),
            bypass_paths: vec!["/health".into(), "/.well-known/*".into()],
            enforce_scopes: true,
            max_body_bytes: ENVOY_BUFFER_DEFAULT,
            list_memo_bytes: LIST_MEMO_DEFAULT,
            realm: "mcp".into(),
            resource_metadata: None,
            rate_limit: RateLimits::default(),
            record: Record::default(),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { enforce: true }
    }
}

impl Default for Record {
    fn default() -> Self {
        Record {
            property: Some("mcp_auth".into()),
            read_body: true,
        }
    }
}

impl Default for TokenApi {
    fn default() -> Self {
        TokenApi {
            cluster: "token_api".into(),
            authority: "token-api".into(),
            timeout_ms: 500,
            feed_cluster: None,
            feed_timeout_ms: None,
            max_inflight: 64,
        }
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            ttl_s: 30,
            negative_ttl_s: 5,
            max_entries: 10_000,
            stale_if_error_s: 300,
        }
    }
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            tenant: "x-mcp-tenant".into(),
            project: "x-mcp-project".into(),
            token_id: Some("x-mcp-token-id".into()),
            token_name: Some("x-mcp-token-name".into()),
            hold: None,
            strip_prefix: "x-mcp-".into(),
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path, e.g. `cache.ttl_s` or `bypass_paths[1]`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a configuration (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<FieldError>);

impl ConfigError {
    fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The first problem found for `field`, if any.
    pub fn for_field(&self, field: &str) -> Option<&FieldError> {
        self.0.iter().find(|e| e.field == field)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Parses and validates the plugin configuration. An empty configuration
/// means every default.
pub fn load(bytes: &[u8]) -> Result<Config, ConfigError> {
    let config = if bytes.iter().all(u8::is_ascii_whitespace) {
        Config::default()
    } else {
        match serde_json::from_slice::<Config>(bytes) {
            Ok(c) => c,
            Err(e) if e.is_data() => return Err(locate(bytes, &e)),
            Err(e) => {
                return Err(ConfigError::one(
                    "configuration",
                    format!("is not valid JSON ({e})"),
                ))
            }
        }
    };
    config.validate()?;
    Ok(config)
}

/// serde reports a wrong type or an unknown field without its path; find the
/// field by deserializing one key at a time (every field has a default, so a
/// lone well-formed key always deserializes).
fn locate(bytes: &[u8], original: &serde_json::Error) -> ConfigError {
    let fallback = || ConfigError::one("configuration", clean(original));
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(bytes) else {
        return ConfigError::one("configuration", "must be a JSON object");
    };
    for (key, value) in &top {
        if let Err(e) = probe::<Config>(key, value) {
            let inner = match key.as_str() {
                "token_api" => locate_in::<TokenApi>(key, value),
                "cache" => locate_in::<Cache>(key, value),
                "headers" => locate_in::<Headers>(key, value),
                "rate_limit" => locate_in::<RateLimits>(key, value),
                "record" => locate_in::<Record>(key, value),
                "bypass_paths" => locate_strings(key, value),
                _ => None,
            };
            return inner.unwrap_or_else(|| ConfigError::one(key.clone(), clean(&e)));
        }
    }
    fallback()
}

/// `{key: value}` read as `T`, through the same reader as [`load`]: the
/// `Value` deserializer would compile every configuration type again
/// (16 KB of `filter.wasm`).
fn probe<T: DeserializeOwned>(key: &str, value: &Value) -> Result<T, serde_json::Error> {
    let mut one = Map::new();
    one.insert(key.to_string(), value.clone());
    serde_json::from_slice(&serde_json::to_vec(&one)?)
}

fn locate_in<T: DeserializeOwned>(section: &str, value: &Value) -> Option<ConfigError> {
    let Value::Object(map) = value else {
        return Some(ConfigError::one(section, "must be a JSON object"));
    };
    map.iter().find_map(|(key, v)| {
        probe::<T>(key, v)
            .err()
            .map(|e| ConfigError::one(format!("{section}.{key}"), clean(&e)))
    })
}

fn locate_strings(field: &str, value: &Value) -> Option<ConfigError> {
    let Value::Array(items) = value else {
        return Some(ConfigError::one(field, "must be an array of strings"));
    };
    items.iter().enumerate().find_map(|(i, v)| {
        (!v.is_string()).then(|| ConfigError::one(format!("{field}[{i}]"), "must be a string"))
    })
}

/// serde's message without the position suffix, which points into a
/// one-key document of ours rather than the operator's.
fn clean(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Client headers the strip prefix must never match: stripping them would
/// break authentication, MCP sessions or Envoy itself.
const PROTECTED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-type",
    "content-length",
    "accept",
    "user-agent",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-envoy-",
];

impl Config {
    /// Every problem with the values, each naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_string(),
                message,
            })
        };

        let api = &self.token_api;
        if let Some(m) = check_visible(&api.cluster, 255) {
            err("token_api.cluster", m);
        }
        if let Some(m) = check_authority(&api.authority) {
            err("token_api.authority", m);
        }
        if let Some(m) = api
            .feed_cluster
            .as_deref()
            .and_then(|c| check_visible(c, 255))
        {
            err("token_api.feed_cluster", m);
        }
        for (field, ms) in [
            ("token_api.timeout_ms", Some(api.timeout_ms)),
            ("token_api.feed_timeout_ms", api.feed_timeout_ms),
        ] {
            if let Some(ms) = ms.filter(|ms| !(1..=60_000).contains(ms)) {
                err(field, format!("must be between 1 and 60000, got {ms}"));
            }
        }
        if !(1..=10_000).contains(&api.max_inflight) {
            err(
                "token_api.max_inflight",
                format!("must be between 1 and 10000, got {}", api.max_inflight),
            );
        }

        let c = &self.cache;
        if c.ttl_s < 1 {
            err(
                "cache.ttl_s",
                format!("must be at least 1, got {}", c.ttl_s),
            );
        } else if c.ttl_s > 86_400 {
            err(
                "cache.ttl_s",
                format!("must be at most 86400 (one day), got {}", c.ttl_s),
            );
        }
        if c.negative_ttl_s > 3_600 {
            err(
                "cache.negative_ttl_s",
                format!("must be at most 3600, got {}", c.negative_ttl_s),
            );
        }
        if c.max_entries < 1 {
            err(
                "cache.max_entries",
                format!("must be at least 1, got {}", c.max_entries),
            );
        } else if c.max_entries > 1_000_000 {
            err(
                "cache.max_entries",
                format!("must be at most 1000000, got {}", c.max_entries),
            );
        }
        if c.stale_if_error_s > 86_400 {
            err(
                "cache.stale_if_error_s",
                format!("must be at most 86400, got {}", c.stale_if_error_s),
            );
        }

        let poll = self.revocation_poll_ms;
        if poll != 0 && !(100..=3_600_000).contains(&poll) {
            err(
                "revocation_poll_ms",
                format!("must be 0 (off) or between 100 and 3600000, got {poll}"),
            );
        }

        let h = &self.headers;
        let prefix_ok = match check_header_name(&h.strip_prefix) {
            Some(m) => {
                err("headers.strip_prefix", m);
                false
            }
            None => match PROTECTED_HEADERS
                .iter()
                .find(|p| p.starts_with(h.strip_prefix.as_str()))
            {
                Some(p) => {
                    err(
                        "headers.strip_prefix",
                        format!(
                            "{:?} would also strip the client's {p:?} header; \
                             use a dedicated prefix such as \"x-mcp-\"",
                            h.strip_prefix
                        ),
                    );
                    false
                }
                None => true,
            },
        };
        let hold = h.hold();
        let routing: Vec<(&str, &String)> = [
            ("headers.tenant", Some(&h.tenant)),
            ("headers.project", Some(&h.project)),
            ("headers.token_id", h.token_id.as_ref()),
            ("headers.token_name", h.token_name.as_ref()),
            ("headers.hold", Some(&hold)),
        ]
        .into_iter()
        .filter_map(|(field, name)| Some((field, name?)))
        .collect();
        for (i, (field, name)) in routing.iter().enumerate() {
            if let Some(m) = check_header_name(name) {
                err(field, m);
            } else if prefix_ok && !name.starts_with(h.strip_prefix.as_str()) {
                err(
                    field,
                    format!(
                        "{name:?} must start with headers.strip_prefix {:?}, \
                         else a client could send it itself and spoof it",
                        h.strip_prefix
                    ),
                );
            } else if let Some((other, _)) = routing.iter().take(i).find(|(_, n)| n == name) {
                err(field, format!("{name:?} is already used by {other}"));
            }
        }

        for (i, p) in self.bypass_paths.iter().enumerate() {
            if let Some(m) = check_bypass(p) {
                err(&format!("bypass_paths[{i}]"), m);
            }
        }

        if self.max_body_bytes < 1 || self.max_body_bytes > ENVOY_BUFFER_DEFAULT {
            err(
                "max_body_bytes",
                format!(
                    "must be between 1 and {ENVOY_BUFFER_DEFAULT} (Envoy's default buffer \
                     limit, which answers 413 itself above it), got {}",
                    self.max_body_bytes
                ),
            );
        }

        if self.list_memo_bytes > LIST_MEMO_MAX {
            err(
                "list_memo_bytes",
                format!(
                    "must be at most {LIST_MEMO_MAX} per worker (0 turns the memo off), got {}",
                    self.list_memo_bytes
                ),
            );
        }

        if let Some(m) = check_quotable(&self.realm, 1, 128) {
            err("realm", m);
        }
        if let Some(url) = &self.resource_metadata {
            if let Some(m) = check_quotable(url, 1, 2048) {
                err("resource_metadata", m);
            } else if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.contains(' ')
            {
                err(
                    "resource_metadata",
                    format!("must be an absolute http(s) URL without spaces, got {url:?}"),
                );
            }
        }

        if let Some(p) = &self.record.property {
            let ok = (1..=64).contains(&p.len())
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
                });
            if !ok {
                err(
                    "record.property",
                    format!(
                        "must be 1-64 characters of a-z, 0-9, '_' and '.' (or null for no \
                         record), got {p:?}"
                    ),
                );
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Whether `path` (the `:path` without its query) is a bypass path.
    pub fn is_bypass(&self, path: &[u8]) -> bool {
        self.bypass_paths
            .iter()
            .any(|p| bypass_matches(p.as_bytes(), path))
    }
}

/// Exact match, or prefix match for a pattern ending in `*`. A path with
/// dot-segments, encoded dots or slashes, or backslashes never matches: a
/// backend that normalises `/health/../mcp` would otherwise be reached
/// without a token.
fn bypass_matches(pattern: &[u8], path: &[u8]) -> bool {
    let hit = match pattern.strip_suffix(b"*") {
        Some(prefix) => path.starts_with(prefix),
        None => path == pattern,
    };
    hit && !is_ambiguous_path(path)
}

fn is_ambiguous_path(path: &[u8]) -> bool {
    if path.contains(&b'\\') {
        return true;
    }
    if path
        .split(|&b| b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return true;
    }
    path.windows(3).any(|w| {
        matches!(
            w,
            [b'%', b'2', b'e' | b'E' | b'f' | b'F'] | [b'%', b'5', b'c' | b'C']
        )
    })
}

fn check_visible(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("must be at most {max} characters, got {}", s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(format!("must be visible ASCII without spaces, got {s:?}"));
    }
    None
}

fn check_authority(s: &str) -> Option<String> {
    check_visible(s, 255).or_else(|| {
        (!s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        }))
        .then(|| format!("must be a host or host:port, got {s:?}"))
    })
}

/// HTTP token characters (RFC 9110 §5.6.2), lowercase as Envoy stores names.
fn check_header_name(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    let tchar =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !s.bytes().all(tchar) {
        return Some(format!(
            "must be a lowercase HTTP header name (letters, digits, '-', ...), got {s:?}"
        ));
    }
    None
}

fn check_bypass(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return Some(format!("must start with '/', got {p:?}"));
    }
    if let Some(i) = p.find('*') {
        if i != p.len() - 1 {
            return Some(format!(
                "'*' is only allowed as the last character (prefix match), got {p:?}"
            ));
        }
    }
    if p.bytes()
        .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#')
    {
        return Some(format!(
            "must be a path without spaces, query or fragment, got {p:?}"
        ));
    }
    if is_ambiguous_path(p.trim_end_matches('*').as_bytes()) {
        return Some(format!(
            "must not contain dot-segments, backslashes or encoded '.', '/', '\\', got {p:?}"
        ));
    }
    None
}

/// A value placed inside a quoted-string of `WWW-Authenticate`.
fn check_quotable(s: &str, min: usize, max: usize) -> Option<String> {
    if s.len() < min {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("must be at most {max} characters, got {}", s.len()));
    }
    if !s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Some(format!(
            "must be printable ASCII without '\"' or '\\', got {s:?}"
        ));
    }
    None
}

#[cfg(test)]
mod tests;
