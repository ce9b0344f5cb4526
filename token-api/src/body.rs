//! Request bodies: the 64 KiB cap (declared length and actual bytes), the JSON
//! media type, and the create / revoke payloads with precise field errors.

use mcpgw_token::ratelimit::{RateLimit, MAX_REQUESTS, MAX_WINDOW_S};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Most scopes one token may carry.
pub const MAX_SCOPES: usize = 100;
/// Longest revocation reason, in characters.
pub const MAX_REASON: usize = 256;

/// Where body bytes come from (the Spin request stream, or test chunks).
// The component is single-threaded: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait BodySource {
    /// The next chunk; `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>>;
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes: up front when
/// `Content-Length` says so, else as soon as the bytes exceed it.
pub async fn read_capped(
    content_length: Option<&str>,
    body: &mut impl BodySource,
) -> Result<Vec<u8>, ApiError> {
    if let Some(declared) = content_length {
        let n: u64 = declared.trim().parse().map_err(|_| {
            ApiError::new(
                400,
                "invalid_content_length",
                "Content-Length is not a number",
            )
        })?;
        if n > MAX_BODY as u64 {
            return Err(too_large());
        }
    }
    let mut out = Vec::new();
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                400,
                "invalid_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if out.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn too_large() -> ApiError {
    ApiError::new(
        413,
        "body_too_large",
        format!("request body exceeds {MAX_BODY} bytes (64 KiB); send less"),
    )
}

/// `application/json`, parameters such as `; charset=utf-8` allowed.
pub fn require_json(content_type: Option<&str>) -> Result<(), ApiError> {
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim);
    match essence {
        Some(e) if e.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::new(
            415,
            "unsupported_media_type",
            format!(
                "send the body as JSON with \"Content-Type: application/json\" (got {})",
                content_type.map_or("no Content-Type".to_owned(), |c| format!("{c:?}"))
            ),
        )),
    }
}

/// A JSON object body; every key must be one of `allowed`.
fn object(bytes: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_json(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid_json("request body must be a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::unknown_field(unknown, allowed));
    }
    Ok(map)
}

/// An optional string field; `null` counts as absent.
fn opt_string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string"),
        )),
    }
}

fn required_string(map: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    opt_string(map, field)?.ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

/// How a new token gets its scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rbac {
    /// The creating token's own scopes.
    Clone,
    /// No scopes: lifecycle MCP traffic only.
    Empty,
}

/// What a request says about a token's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitAsked {
    /// The field is absent: the default applies.
    Default,
    /// `null`: no limit.
    None,
    Limit(RateLimit),
}

/// `"rate_limit"`: `null`, or `{"requests", "window_s", "burst"?}` with
/// integers in range (`burst` defaults to `requests`). Every problem names
/// the field and its range.
fn rate_limit(map: &Map<String, Value>) -> Result<LimitAsked, ApiError> {
    let bad = |m: String| ApiError::invalid("rate_limit", m);
    let obj = match map.get("rate_limit") {
        None => return Ok(LimitAsked::Default),
        Some(Value::Null) => return Ok(LimitAsked::None),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(bad(
                "rate_limit must be an object {\"requests\": n, \"window_s\": seconds, \
                 \"burst\": n} (burst optional), or null for no limit"
                    .into(),
            ))
        }
    };
    const FIELDS: &[&str] = &["requests", "window_s", "burst"];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!(
            "rate_limit has an unknown field {k:?}; it takes requests, window_s and burst"
        )));
    }
    let int = |field: &str, max: u32| -> Result<Option<u32>, ApiError> {
        match obj.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=max).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    bad(format!(
                        "rate_limit.{field} must be a whole number from 1 to {max}, got {v}"
                    ))
                }),
        }
    };
    let requests = int("requests", MAX_REQUESTS)?
        .ok_or_else(|| bad("rate_limit.requests is required".into()))?;
    let window_s = int("window_s", MAX_WINDOW_S)?
        .ok_or_else(|| bad("rate_limit.window_s is required (seconds: 60 for a minute)".into()))?;
    let burst = int("burst", MAX_REQUESTS)?;
    RateLimit::new(requests, window_s, burst)
        .map(LimitAsked::Limit)
        .map_err(|e| bad(format!("rate_limit.{e}")))
}

/// `POST /api/v1/mcptokens` body, shape-checked (values are checked by the service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateBody {
    pub name: String,
    pub tenant: String,
    pub project: Option<String>,
    pub ttl: Option<String>,
    pub expires_at: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub rbac: Option<Rbac>,
    pub rate_limit: LimitAsked,
}

const CREATE_FIELDS: &[&str] = &[
    "name",
    "tenant",
    "project",
    "ttl",
    "expires_at",
    "scopes",
    "rbac",
    "rate_limit",
];

/// `PATCH /api/v1/mcptokens/{id}` body: what to change. Only the rate limit
/// changes after minting; it must be given (`null` removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateBody {
    pub rate_limit: Option<RateLimit>,
}

impl UpdateBody {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let map = object(bytes, &["rate_limit"])?;
        match rate_limit(&map)? {
            LimitAsked::Default => Err(ApiError::invalid(
                "rate_limit",
                "rate_limit is required: an object {\"requests\", \"window_s\", \"burst\"} \
                 or null to remove the limit",
            )),
            LimitAsked::None => Ok(UpdateBody { rate_limit: None }),
            LimitAsked::Limit(l) => Ok(UpdateBody {
                rate_limit: Some(l),
            }),
        }
    }
}

impl CreateBody {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let map = object(bytes, CREATE_FIELDS)?;
        let scopes = match map.get("scopes") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                if items.len() > MAX_SCOPES {
                    return Err(ApiError::invalid(
                        "scopes",
                        format!("at most {MAX_SCOPES} scopes per token, got {}", items.len()),
                    ));
                }
                let strings = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(scopes_shape)?;
                Some(strings)
            }
            Some(_) => return Err(scopes_shape()),
        };
        let rbac = match opt_string(&map, "rbac")?.as_deref() {
            None => None,
            Some("clone") => Some(Rbac::Clone),
            Some("empty") => Some(Rbac::Empty),
            Some(other) => {
                return Err(ApiError::invalid(
                    "rbac",
                    format!("rbac must be \"clone\" or \"empty\", got {other:?}"),
                ))
            }
        };
        if scopes.is_some() && rbac.is_some() {
            return Err(ApiError::invalid(
                "rbac",
                "give either \"scopes\" or \"rbac\", not both",
            ));
        }
        Ok(CreateBody {
            name: required_string(&map, "name")?,
            tenant: required_string(&map, "tenant")?,
            project: opt_string(&map, "project")?,
            ttl: opt_string(&map, "ttl")?,
            expires_at: opt_string(&map, "expires_at")?,
            scopes,
            rbac,
            rate_limit: rate_limit(&map)?,
        })
    }
}

fn scopes_shape() -> ApiError {
    ApiError::invalid(
        "scopes",
        "scopes must be an array of strings, e.g. [\"mcp:tools/list\", \"mcp:tools/call:search_*\"]",
    )
}

/// `POST /api/v1/mcptokens/{id}/revoke` body: empty, or `{"reason": "..."}`.
pub fn parse_revoke(bytes: &[u8], content_type: Option<&str>) -> Result<Option<String>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    require_json(content_type)?;
    let map = object(bytes, &["reason"])?;
    let reason = opt_string(&map, "reason")?;
    if let Some(r) = &reason {
        let n = r.chars().count();
        if n > MAX_REASON || r.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "reason",
                format!("reason must be at most {MAX_REASON} printable characters"),
            ));
        }
    }
    Ok(reason)
}

/// Test bodies: a list of chunks.
#[cfg(test)]
pub struct Chunks(pub std::collections::VecDeque<Vec<u8>>);

#[cfg(test)]
impl Chunks {
    pub fn of(bytes: &[u8]) -> Self {
        Chunks(bytes.chunks(1000).map(<[u8]>::to_vec).collect())
    }
}

#[cfg(test)]
impl BodySource for Chunks {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        self.0.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn body_cap_checks_declared_and_actual_length() {
        let ok = vec![b'x'; MAX_BODY];
        assert_eq!(
            block_on(read_capped(None, &mut Chunks::of(&ok))),
            Ok(ok.clone())
        );
        assert_eq!(
            block_on(read_capped(Some("65536"), &mut Chunks::of(&ok))),
            Ok(ok)
        );
        let big = vec![b'x'; MAX_BODY + 1];
        for declared in [None, Some("10"), Some("65537")] {
            let e = block_on(read_capped(declared, &mut Chunks::of(&big))).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (413, "body_too_large"),
                "{declared:?}"
            );
        }
        // A huge declared length is refused before a byte is read.
        let mut untouched = Chunks::of(b"{}");
        let e = block_on(read_capped(Some("999999999"), &mut untouched)).unwrap_err();
        assert_eq!(e.status, 413);
        assert_eq!(untouched.0.len(), 1);
        let e = block_on(read_capped(Some("ten"), &mut Chunks::of(b""))).unwrap_err();
        assert_eq!(e.code, "invalid_content_length");
    }

    #[test]
    fn media_type() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert_eq!(require_json(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
            None,
        ] {
            let e = require_json(bad).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (415, "unsupported_media_type"));
        }
    }

    #[test]
    fn create_body_fields() {
        let b = CreateBody::parse(
            br#"{"name":"ci","tenant":"acme","project":null,"ttl":"30d","scopes":["mcp:*"]}"#,
        )
        .unwrap();
        assert_eq!(
            b,
            CreateBody {
                name: "ci".into(),
                tenant: "acme".into(),
                project: None,
                ttl: Some("30d".into()),
                expires_at: None,
                scopes: Some(vec!["mcp:*".into()]),
                rbac: None,
                rate_limit: LimitAsked::Default,
            }
        );
        let b = CreateBody::parse(br#"{"name":"x","tenant":"t","rbac":"clone"}"#).unwrap();
        assert_eq!(b.rbac, Some(Rbac::Clone));
        let b = CreateBody::parse(br#"{"name":"x","tenant":"t","rbac":"empty"}"#).unwrap();
        assert_eq!(b.rbac, Some(Rbac::Empty));
    }

    #[test]
    fn create_body_errors_name_the_field() {
        let many = format!(
            r#"{{"name":"x","tenant":"t","scopes":[{}]}}"#,
            vec!["\"mcp:*\""; 101].join(",")
        );
        for (body, code, says) in [
            ("", "invalid_json", "not valid JSON"),
            ("{", "invalid_json", "not valid JSON"),
            ("[]", "invalid_json", "JSON object"),
            ("\"x\"", "invalid_json", "JSON object"),
            (
                r#"{"name":"x","tenant":"t","colour":"red"}"#,
                "unknown_field",
                "\"colour\"",
            ),
            (r#"{"tenant":"t"}"#, "invalid_name", "name is required"),
            (r#"{"name":null,"tenant":"t"}"#, "invalid_name", "required"),
            (r#"{"name":"x"}"#, "invalid_tenant", "tenant is required"),
            (
                r#"{"name":7,"tenant":"t"}"#,
                "invalid_name",
                "must be a string",
            ),
            (
                r#"{"name":"x","tenant":"t","project":1}"#,
                "invalid_project",
                "string",
            ),
            (
                r#"{"name":"x","tenant":"t","ttl":30}"#,
                "invalid_ttl",
                "string",
            ),
            (
                r#"{"name":"x","tenant":"t","expires_at":1}"#,
                "invalid_expires_at",
                "string",
            ),
            (
                r#"{"name":"x","tenant":"t","scopes":"mcp:*"}"#,
                "invalid_scopes",
                "array",
            ),
            (
                r#"{"name":"x","tenant":"t","scopes":[1]}"#,
                "invalid_scopes",
                "array of strings",
            ),
            (&many, "invalid_scopes", "at most 100"),
            (
                r#"{"name":"x","tenant":"t","rbac":"admin"}"#,
                "invalid_rbac",
                "\"clone\" or \"empty\"",
            ),
            (
                r#"{"name":"x","tenant":"t","rbac":"empty","scopes":[]}"#,
                "invalid_rbac",
                "not both",
            ),
        ] {
            let e = CreateBody::parse(body.as_bytes()).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, code), "{body}");
            assert!(e.message.contains(says), "{body}: {}", e.message);
        }
    }

    #[test]
    fn rate_limits_parse_strictly() {
        let parse = |v: &str| {
            CreateBody::parse(format!(r#"{{"name":"x","tenant":"t","rate_limit":{v}}}"#).as_bytes())
        };
        let rl = |r, w, b| {
            LimitAsked::Limit(RateLimit {
                requests: r,
                window_s: w,
                burst: b,
            })
        };
        assert_eq!(parse("null").unwrap().rate_limit, LimitAsked::None);
        assert_eq!(
            parse(r#"{"requests":60,"window_s":60}"#)
                .unwrap()
                .rate_limit,
            rl(60, 60, 60),
            "burst defaults to requests"
        );
        assert_eq!(
            parse(r#"{"requests":600,"window_s":60,"burst":50}"#)
                .unwrap()
                .rate_limit,
            rl(600, 60, 50)
        );
        for (v, says) in [
            (
                r#"{"requests":0,"window_s":60}"#,
                "requests must be a whole number from 1",
            ),
            (r#"{"requests":-5,"window_s":60}"#, "requests must be"),
            (r#"{"requests":1.5,"window_s":60}"#, "requests must be"),
            (r#"{"requests":"60","window_s":60}"#, "requests must be"),
            (r#"{"requests":1000001,"window_s":60}"#, "1 to 1000000"),
            (
                r#"{"requests":99999999999999999999,"window_s":60}"#,
                "requests must be",
            ),
            (r#"{"requests":60,"window_s":0}"#, "window_s must be"),
            (r#"{"requests":60,"window_s":86401}"#, "1 to 86400"),
            (r#"{"requests":60}"#, "window_s is required"),
            (r#"{"window_s":60}"#, "requests is required"),
            (
                r#"{"requests":60,"window_s":60,"burst":0}"#,
                "burst must be",
            ),
            (
                r#"{"requests":60,"window_s":60,"burst":61}"#,
                "burst must be between 1 and requests",
            ),
            (
                r#"{"requests":60,"window_s":60,"per":"m"}"#,
                "unknown field \"per\"",
            ),
            (r#""60/m""#, "must be an object"),
            ("60", "must be an object"),
            ("[60,60]", "must be an object"),
            ("true", "must be an object"),
        ] {
            let e = parse(v).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "invalid_rate_limit"),
                "{v}"
            );
            assert!(e.message.contains(says), "{v}: {}", e.message);
        }
    }

    #[test]
    fn update_body_needs_the_rate_limit() {
        assert_eq!(
            UpdateBody::parse(br#"{"rate_limit":null}"#),
            Ok(UpdateBody { rate_limit: None })
        );
        let b = UpdateBody::parse(br#"{"rate_limit":{"requests":5,"window_s":1}}"#).unwrap();
        assert_eq!(b.rate_limit.map(|l| l.burst), Some(5));
        let e = UpdateBody::parse(b"{}").unwrap_err();
        assert_eq!(e.code, "invalid_rate_limit");
        let e = UpdateBody::parse(br#"{"name":"new"}"#).unwrap_err();
        assert_eq!(e.code, "unknown_field");
    }

    #[test]
    fn revoke_body() {
        assert_eq!(parse_revoke(b"", None), Ok(None));
        assert_eq!(parse_revoke(b" \n", None), Ok(None));
        assert_eq!(parse_revoke(b"{}", Some("application/json")), Ok(None));
        assert_eq!(
            parse_revoke(
                br#"{"reason":"leaked in CI log"}"#,
                Some("application/json")
            ),
            Ok(Some("leaked in CI log".into()))
        );
        assert_eq!(parse_revoke(b"{}", None).unwrap_err().status, 415);
        let e = parse_revoke(br#"{"why":"x"}"#, Some("application/json")).unwrap_err();
        assert_eq!(e.code, "unknown_field");
        let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(257));
        let e = parse_revoke(long.as_bytes(), Some("application/json")).unwrap_err();
        assert_eq!(e.code, "invalid_reason");
    }
}
