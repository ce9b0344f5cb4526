//! The token API's request bodies: the 64 KiB cap, the media type, the create
//! and revoke payloads, and the value checks a create goes through (name,
//! tenant, project, ttl / expires_at against the operator's policy, scopes).
//!
//! Input: optional head lines, a blank line, then the body:
//! ```text
//! content-type: application/json   (default application/json)
//! content-length: 52               declared length (absent: none declared)
//! chunk: 7                         body chunk size (default 1000)
//! now: 1795459243                  server clock, Unix seconds
//! max-ttl: 365d                    Spin variables max_ttl / default_ttl
//! default-ttl: 90d
//!
//! {"name":"ci","tenant":"acme","ttl":"30d","scopes":["mcp:tools/list"]}
//! ```
//! A bare JSON body (starting with `{` or `[`) has no head.
//!
//! Checks: input alone never causes a 5xx; every error names a field and has
//! a JSON body; an accepted expiry is in the future and within `max_ttl`;
//! RFC 3339 dates and ttl spans print back to what they parse from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgw_fuzz::{block_on, check_api_error, Message};
use mcpgw_token::scopes;
use token_api::body::{self, BodySource, CreateBody, MAX_BODY};
use token_api::config::Config;
use token_api::error::ApiError;
use token_api::rfc3339;
use token_api::ttl::{self, Span};
use token_api::validate;

/// 2026-11-23T18:40:43Z.
const NOW: i64 = 1_795_459_243;
/// 9999-12-31T23:59:59Z: the last instant RFC 3339 can write.
const LAST_RFC3339: i64 = 253_402_300_799;

/// A request body delivered in fixed-size chunks, as a stream would.
struct Chunks<'a> {
    rest: &'a [u8],
    size: usize,
}

impl BodySource for Chunks<'_> {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        if self.rest.is_empty() {
            return None;
        }
        let (chunk, rest) = self.rest.split_at(self.size.min(self.rest.len()));
        self.rest = rest;
        Some(Ok(chunk.to_vec()))
    }
}

fuzz_target!(|data: &[u8]| {
    let msg = Message::parse(data);
    let content_type = match msg.get("content-type") {
        Some(_) => msg.text("content-type"),
        None => Some("application/json"),
    };
    let content_length = msg.text("content-length");
    let now = msg.num::<i64>("now").unwrap_or(NOW).clamp(0, LAST_RFC3339);
    let config = Config::from_vars(|name| match name {
        "admin_key_sha256" => Some("0".repeat(64)),
        "max_ttl" => msg.text("max-ttl").map(str::to_owned),
        "default_ttl" => msg.text("default-ttl").map(str::to_owned),
        _ => None,
    });
    let Ok(config) = config else { return };

    // The cap and the stream.
    let size = msg.num::<usize>("chunk").unwrap_or(1000).clamp(1, MAX_BODY);
    let read = block_on(body::read_capped(
        content_length,
        &mut Chunks {
            rest: msg.body,
            size,
        },
    ));
    match &read {
        Ok(bytes) => assert_eq!(bytes.as_slice(), msg.body),
        Err(e) => {
            check_api_error(e, true);
            let declared_ok = content_length
                .map(|c| c.trim().parse::<u64>().is_ok_and(|n| n <= MAX_BODY as u64))
                .unwrap_or(true);
            assert!(!declared_ok || msg.body.len() > MAX_BODY, "{e:?}");
        }
    }

    if let Err(e) = body::require_json(content_type) {
        check_api_error(&e, true);
        assert_eq!(e.status, 415);
    }

    match body::parse_revoke(msg.body, content_type) {
        Ok(Some(reason)) => {
            assert!(reason.chars().count() <= body::MAX_REASON);
            assert!(!reason.chars().any(char::is_control));
        }
        Ok(None) => {}
        Err(e) => check_api_error(&e, true),
    }

    match CreateBody::parse(msg.body) {
        Ok(create) => check_create(&create, now, &config),
        Err(e) => {
            check_api_error(&e, true);
            assert_eq!(e.status, 400);
        }
    }
});

/// The service's value checks, in its order.
fn check_create(req: &CreateBody, now: i64, config: &Config) {
    if let Some(scopes) = &req.scopes {
        assert!(scopes.len() <= body::MAX_SCOPES);
    }
    assert!(!(req.scopes.is_some() && req.rbac.is_some()));
    let checks = || -> Result<(), ApiError> {
        validate::name(&req.name)?;
        validate::label("tenant", &req.tenant)?;
        validate::label("project", req.project.as_deref().unwrap_or("default"))?;
        let exp = ttl::resolve(
            req.ttl.as_deref(),
            req.expires_at.as_deref(),
            now,
            &config.ttl,
        )?;
        check_expiry(exp, now, config);
        if let Some(list) = &req.scopes {
            scopes::parse_all(list).map_err(|e| ApiError::invalid("scopes", e.to_string()))?;
        }
        Ok(())
    };
    match checks() {
        Ok(()) => {
            let n = req.name.chars().count();
            assert!((1..=validate::NAME_MAX).contains(&n));
            assert!(!req.name.chars().any(char::is_control));
            for label in [Some(req.tenant.as_str()), req.project.as_deref()]
                .into_iter()
                .flatten()
            {
                assert!(label.len() <= validate::LABEL_MAX && !label.starts_with(['_', '-']));
            }
        }
        Err(e) => {
            check_api_error(&e, true);
            assert_eq!(e.status, 400);
            assert!(e.code.starts_with("invalid_"), "{}", e.code);
        }
    }
    for text in [req.ttl.as_deref(), req.expires_at.as_deref()]
        .into_iter()
        .flatten()
    {
        check_time_text(text);
    }
}

fn check_expiry(exp: Option<i64>, now: i64, config: &Config) {
    match (exp, config.ttl.max) {
        (None, max) => assert_eq!(max, Span::Never, "never under a finite max_ttl"),
        (Some(exp), max) => {
            assert!(exp > now, "an expiry that is not in the future");
            if let Span::Secs(limit) = max {
                assert!(exp - now <= limit, "an expiry beyond max_ttl");
            }
        }
    }
}

/// What a ttl or expires_at string parses to prints back the same way.
fn check_time_text(text: &str) {
    if let Some(span) = Span::parse(text) {
        assert_eq!(Span::parse(&span.to_string()), Some(span), "{text}");
    }
    if let Ok(t) = rfc3339::parse(text) {
        if (0..=LAST_RFC3339).contains(&t) {
            let printed = rfc3339::format(t);
            assert_eq!(rfc3339::parse(&printed), Ok(t), "{printed}");
            // Already canonical (UTC, whole seconds, no leap second): identical.
            let b = text.as_bytes();
            if b.len() == 20 && b[10] == b'T' && b[19] == b'Z' && &b[17..19] != b"60" {
                assert_eq!(printed, text);
            }
        }
    }
}
