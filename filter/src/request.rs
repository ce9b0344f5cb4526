//! The request-header phase as pure logic: one pass over the headers, then
//! what to do before any cache lookup.

use crate::bearer::{self, BearerError};
use crate::cache::Grant;
use crate::config::Config;
use crate::jsonrpc::Claimed;
use crate::replies::Unauthorized;
use mcpgw_token::format;
use mcpgw_token::scopes::Scope;

/// What the filter needs from the request headers, borrowed from them.
#[derive(Debug, Default)]
pub struct Scan<'a> {
    pub path: &'a [u8],
    pub authorization: Vec<&'a [u8]>,
    pub mcp_method: Option<&'a [u8]>,
    pub mcp_name: Option<&'a [u8]>,
    /// Distinct names of client headers starting with the strip prefix.
    pub strip: Vec<&'a [u8]>,
    /// `Mcp-Method` or `Mcp-Name` came more than once (400 once allowed).
    pub repeated: Option<&'static str>,
    /// `Last-Event-ID`: the client resumes an event stream.
    pub last_event_id: bool,
}

impl<'a> Scan<'a> {
    pub fn claimed(&self) -> Claimed<'a> {
        Claimed {
            method: self.mcp_method,
            name: self.mcp_name,
        }
    }
}

/// One pass over the header pairs. Names are compared ignoring ASCII case
/// (Envoy stores them lowercase; other hosts may not).
pub fn scan<'a>(pairs: &[(&'a [u8], &'a [u8])], strip_prefix: &str) -> Scan<'a> {
    let prefix = strip_prefix.as_bytes();
    let mut s = Scan::default();
    for &(name, value) in pairs {
        if name.eq_ignore_ascii_case(b":path") {
            s.path = value;
        } else if name.eq_ignore_ascii_case(b"authorization") {
            s.authorization.push(value);
        } else if name.eq_ignore_ascii_case(b"mcp-method") {
            if s.mcp_method.replace(value).is_some() {
                s.repeated = Some("Mcp-Method");
            }
        } else if name.eq_ignore_ascii_case(b"mcp-name") {
            if s.mcp_name.replace(value).is_some() {
                s.repeated = Some("Mcp-Name");
            }
        } else if name.eq_ignore_ascii_case(b"last-event-id") {
            s.last_event_id = true;
        }
        let stripped = name
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
        if stripped && !s.strip.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            s.strip.push(name);
        }
    }
    s
}

/// The outcome of the header phase before the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front<'a> {
    /// A bypass path: forward without a token.
    Bypass,
    /// 401 without a callout.
    Reject(Unauthorized),
    /// A well-formed token to look up.
    Token(&'a str),
}

pub fn front<'a>(cfg: &Config, s: &Scan<'a>) -> Front<'a> {
    let path_only = s.path.split(|&b| b == b'?').next().unwrap_or(s.path);
    if cfg.is_bypass(path_only) {
        return Front::Bypass;
    }
    if bearer::has_query_token(s.path) {
        return Front::Reject(Unauthorized::QueryToken);
    }
    let token = match bearer::extract(&s.authorization) {
        Ok(t) => t,
        Err(BearerError::NotText) => {
            return Front::Reject(Unauthorized::Malformed(format::FormatError::Prefix))
        }
        Err(e) => return Front::Reject(Unauthorized::Bearer(e)),
    };
    match format::validate(token) {
        Ok(()) => Front::Token(token),
        Err(e) => Front::Reject(Unauthorized::Malformed(e)),
    }
}

/// Scopes the body must be checked against, if any.
pub fn scopes_to_check<'g>(cfg: &Config, grant: &'g Grant) -> Option<&'g [Scope]> {
    (cfg.enforce_scopes && !grant.grants_all).then_some(grant.scopes.as_slice())
}

/// Whether an allowed request's body must be buffered and inspected: for the
/// scope check, or because `Mcp-Method` / `Mcp-Name` headers must be
/// verified (Envoy may route or rate-limit on them). Requests without a body
/// (GET for the SSE stream, DELETE to end a session) carry no JSON-RPC.
pub fn must_inspect(cfg: &Config, grant: &Grant, has_body: bool, claimed: &Claimed) -> bool {
    has_body && (scopes_to_check(cfg, grant).is_some() || !claimed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgw_token::scopes;

    fn good_token() -> String {
        format::from_secret(&[7u8; 32])
    }

    fn pairs<'a>(list: &[(&'a str, &'a str)]) -> Vec<(&'a [u8], &'a [u8])> {
        list.iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect()
    }

    #[test]
    fn scan_collects_what_matters_in_one_pass() {
        let p = pairs(&[
            (":path", "/mcp?x=1"),
            ("Authorization", "Bearer a"),
            ("x-mcp-tenant", "evil"),
            ("X-MCP-Tenant", "evil2"),
            ("x-mcp-other", "1"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "t"),
            ("x-other", "keep"),
        ]);
        let s = scan(&p, "x-mcp-");
        assert_eq!(s.path, b"/mcp?x=1");
        assert_eq!(s.authorization, vec![&b"Bearer a"[..]]);
        assert_eq!(s.mcp_method, Some(&b"tools/call"[..]));
        assert_eq!(s.mcp_name, Some(&b"t"[..]));
        assert_eq!(s.strip, vec![&b"x-mcp-tenant"[..], b"x-mcp-other"]);
    }

    #[test]
    fn scan_notices_repeated_mcp_headers() {
        let p = pairs(&[("mcp-method", "tools/list"), ("Mcp-Method", "tools/call")]);
        assert_eq!(scan(&p, "x-mcp-").repeated, Some("Mcp-Method"));
        let p = pairs(&[("mcp-name", "a"), ("mcp-method", "x"), ("mcp-name", "a")]);
        assert_eq!(scan(&p, "x-mcp-").repeated, Some("Mcp-Name"));
        let p = pairs(&[("mcp-name", "a"), ("mcp-method", "x")]);
        assert_eq!(scan(&p, "x-mcp-").repeated, None);
    }

    #[test]
    fn scan_sees_every_authorization_header() {
        let p = pairs(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(scan(&p, "x-mcp-").authorization.len(), 2);
    }

    #[test]
    fn bypass_comes_before_any_token_check() {
        let cfg = Config::default();
        let p = pairs(&[(":path", "/health?access_token=x")]);
        assert_eq!(front(&cfg, &scan(&p, "x-mcp-")), Front::Bypass);
        let p = pairs(&[(":path", "/.well-known/oauth-protected-resource")]);
        assert_eq!(front(&cfg, &scan(&p, "x-mcp-")), Front::Bypass);
    }

    #[test]
    fn query_token_is_refused_even_with_a_good_header() {
        let cfg = Config::default();
        let auth = format!("Bearer {}", good_token());
        let p = pairs(&[(":path", "/mcp?access_token=x"), ("authorization", &auth)]);
        assert_eq!(
            front(&cfg, &scan(&p, "x-mcp-")),
            Front::Reject(Unauthorized::QueryToken)
        );
    }

    #[test]
    fn bearer_problems_and_malformed_tokens_are_rejected_offline() {
        let cfg = Config::default();
        let p = pairs(&[(":path", "/mcp")]);
        assert_eq!(
            front(&cfg, &scan(&p, "x-mcp-")),
            Front::Reject(Unauthorized::Bearer(BearerError::Missing))
        );
        let p = pairs(&[(":path", "/mcp"), ("authorization", "Basic x")]);
        assert_eq!(
            front(&cfg, &scan(&p, "x-mcp-")),
            Front::Reject(Unauthorized::Bearer(BearerError::Scheme))
        );
        let mut bad = good_token();
        bad.replace_range(20..21, if &bad[20..21] == "A" { "B" } else { "A" });
        let auth = format!("Bearer {bad}");
        let p = pairs(&[(":path", "/mcp"), ("authorization", &auth)]);
        assert_eq!(
            front(&cfg, &scan(&p, "x-mcp-")),
            Front::Reject(Unauthorized::Malformed(format::FormatError::Checksum))
        );
        let p = pairs(&[
            (":path", "/mcp"),
            ("authorization", "Bearer mcpctl_pat_short"),
        ]);
        assert!(matches!(
            front(&cfg, &scan(&p, "x-mcp-")),
            Front::Reject(Unauthorized::Malformed(format::FormatError::Length { .. }))
        ));
        let p = vec![
            (&b":path"[..], &b"/mcp"[..]),
            (b"authorization", b"Bearer \xff"),
        ];
        assert!(matches!(
            front(&cfg, &scan(&p, "x-mcp-")),
            Front::Reject(Unauthorized::Malformed(_))
        ));
    }

    #[test]
    fn a_well_formed_token_goes_to_lookup() {
        let cfg = Config::default();
        let t = good_token();
        let auth = format!("bearer  {t} ");
        let p = pairs(&[(":path", "/mcp"), ("authorization", &auth)]);
        assert_eq!(front(&cfg, &scan(&p, "x-mcp-")), Front::Token(t.as_str()));
    }

    fn grant(list: &[&str]) -> Grant {
        Grant::new(
            "t".into(),
            "p".into(),
            "i".into(),
            "n".into(),
            scopes::parse_all(list).unwrap(),
            None,
        )
    }

    #[test]
    fn inspection_only_when_a_body_must_be_read() {
        let cfg = Config::default();
        let none = Claimed::default();
        let hdr = Claimed {
            method: Some(b"tools/list"),
            name: None,
        };
        let all = grant(&["mcp:*"]);
        let some = grant(&["mcp:tools/list"]);
        assert!(!must_inspect(&cfg, &all, true, &none), "hot path");
        assert!(must_inspect(&cfg, &all, true, &hdr), "headers to verify");
        assert!(must_inspect(&cfg, &some, true, &none));
        assert!(!must_inspect(&cfg, &some, false, &none), "GET/DELETE");
        let off = Config {
            enforce_scopes: false,
            ..Config::default()
        };
        assert!(!must_inspect(&off, &some, true, &none));
        assert!(scopes_to_check(&off, &some).is_none());
        assert!(scopes_to_check(&cfg, &some).is_some());
        assert!(scopes_to_check(&cfg, &all).is_none());
    }
}
