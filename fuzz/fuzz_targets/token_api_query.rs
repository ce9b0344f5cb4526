//! The token API's request head: routing, the query string, list / audit /
//! feed cursors, and the management bearer credential.
//!
//! Input: `\n`-separated lines, like an HTTP/1 request head:
//! ```text
//! GET /api/v1/mcptokens?tenant=acme&limit=5&cursor=74…
//! authorization: Bearer mcpctl_pat_…
//! ```
//! Every line after the first is also tried as a raw cursor and `since`.
//!
//! Checks: a request head alone never causes a 5xx; every error has a code,
//! a message and a JSON body; cursors accepted are exactly the ones the API
//! would print; query parameters are those the route takes, each once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgw_fuzz::{check_api_error, header, lines};
use mcpgw_token::format;
use mcpgw_token::wire::Since;
use token_api::auth::{self, Credential};
use token_api::cursor::{AuditCursor, ListCursor};
use token_api::error::ApiError;
use token_api::query::Query;
use token_api::routes::{self, Route};
use token_api::service::{PAGE_DEFAULT, PAGE_MAX};
use token_api::{ulid, validate};

const ADMIN_KEY: &str = "admin-key-for-fuzzing";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut all = text.split('\n');
    let request_line = all.next().unwrap_or_default();
    let rest: Vec<&str> = all.collect();

    let (method, target) = request_line.split_once(' ').unwrap_or((request_line, "/"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };

    match routes::route(method, path) {
        Ok(route) => check_route(&route, path, query),
        Err(e) => {
            check_api_error(&e, true);
            assert!(matches!(e.status, 404 | 405), "{e:?}");
            if e.status == 405 {
                assert!(e.headers.iter().any(|(k, _)| *k == "allow"));
            }
        }
    }

    for line in &rest {
        check_cursors(line);
    }

    let authorization: Vec<String> = lines(data)
        .skip(1)
        .map(header)
        .filter(|(k, _)| k.eq_ignore_ascii_case(b"authorization"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    check_credential(&authorization);
});

fn allowed(route: &Route) -> &'static [&'static str] {
    match route {
        Route::Revocations => &["since"],
        Route::ListTokens => &["tenant", "project", "include_revoked", "limit", "cursor"],
        Route::Audit => &["tenant", "project", "token_id", "limit", "cursor"],
        _ => &[],
    }
}

fn check_route(route: &Route, path: &str, query: Option<&str>) {
    if let Route::DescribeToken(id) | Route::DeleteToken(id) | Route::RevokeToken(id) = route {
        assert!(!id.is_empty() && !id.contains('/'), "{id:?}");
        assert!(path.contains(id.as_str()));
    }
    let allowed = allowed(route);
    let q = match Query::parse(query, allowed) {
        Ok(q) => q,
        Err(e) => {
            check_api_error(&e, true);
            return;
        }
    };
    let mut errors = Vec::new();
    match route {
        // Mapped to an API error the way the service maps it.
        Route::Revocations => match Since::parse(q.get("since")) {
            Ok(since) => check_since(&since, q.get("since")),
            Err(e) => errors.push(ApiError::invalid("since", e.0)),
        },
        Route::ListTokens | Route::Audit => {
            for field in ["tenant", "project"] {
                if let Some(v) = q.get(field) {
                    if let Err(e) = validate::label(field, v) {
                        errors.push(e);
                    }
                }
            }
            match q.limit(PAGE_DEFAULT, PAGE_MAX) {
                Ok(n) => assert!((1..=PAGE_MAX).contains(&n)),
                Err(e) => errors.push(e),
            }
            if let Err(e) = q.flag("include_revoked", false) {
                errors.push(e);
            }
        }
        // Routes that take no parameters accepted none.
        _ => assert!(query.unwrap_or("").split('&').all(str::is_empty)),
    }
    for e in &errors {
        check_api_error(e, true);
        assert_eq!(e.status, 400);
    }
    if let Some(c) = q.get("cursor") {
        check_cursors(c);
    }
}

/// A cursor is accepted only in the exact form the API prints. Errors are
/// checked by status and code only: this runs for every line, and the full
/// check (JSON body round trip) runs on the routed request.
fn check_cursors(s: &str) {
    let refused = |e: ApiError, code: &str| {
        assert_eq!((e.status, e.code.as_str()), (400, code), "{e:?}");
        assert!(!e.message.is_empty());
    };
    match ListCursor::decode(s) {
        Ok(c) => {
            assert_eq!(c.encode(), s);
            assert!(c.created_at >= 0 && ulid::is_token_id(&c.id));
        }
        Err(e) => refused(e, "invalid_cursor"),
    }
    match AuditCursor::decode(s) {
        Ok(c) => {
            assert_eq!(c.encode(), s);
            assert!(c.seq >= 0);
        }
        Err(e) => refused(e, "invalid_cursor"),
    }
    match Since::parse(Some(s)) {
        Ok(since) => check_since(&since, Some(s)),
        Err(e) => refused(ApiError::invalid("since", e.0), "invalid_since"),
    }
    // A list cursor is never read as an audit cursor, or the other way round.
    assert!(!(ListCursor::decode(s).is_ok() && AuditCursor::decode(s).is_ok()));
}

/// A `since` accepted is exactly one the feed prints: `<epoch>.<seq>`, a
/// plain sequence number from before cursors had an epoch, or `now`.
fn check_since(since: &Since, raw: Option<&str>) {
    match since {
        Since::Beginning => assert_eq!(raw, None),
        Since::Now => assert_eq!(raw, Some("now")),
        Since::After(c) => {
            assert_eq!(Some(c.to_string().as_str()), raw);
            assert!(i64::try_from(c.seq).is_ok());
        }
        Since::Legacy(n) => {
            assert_eq!(Some(n.to_string().as_str()), raw);
            assert!(i64::try_from(*n).is_ok());
        }
    }
}

fn check_credential(authorization: &[String]) {
    let admin_sha = format::sha256_hex(ADMIN_KEY);
    assert_eq!(auth::classify(ADMIN_KEY, &admin_sha), Ok(Credential::Admin));
    let credential = match auth::bearer(authorization) {
        Ok(c) => c,
        Err(e) => {
            check_api_error(&e, true);
            assert_eq!(e.status, 401);
            return;
        }
    };
    assert!(!credential.is_empty() && credential.trim() == credential);
    match auth::classify(credential, &admin_sha) {
        Ok(Credential::Admin) => assert_eq!(credential, ADMIN_KEY),
        Ok(Credential::Token { sha }) => {
            assert_eq!(format::validate(credential), Ok(()));
            assert_eq!(sha, format::sha256_hex(credential));
        }
        Err(e) => {
            check_api_error(&e, true);
            assert_eq!(e.status, 401);
            assert!(format::validate(credential).is_err());
        }
    }
}
