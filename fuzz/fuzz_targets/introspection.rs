//! What the filter reads from outside: the token API's introspection answer
//! and revocations feed (`introspect`), the cross-worker cache entries
//! (`shared`), the proxy-wasm header map (`headermap`), and the request
//! headers (`request`, `bearer`).
//!
//! Input: optional head lines, a blank line, then the body:
//! ```text
//! status: 200                  the callout's :status (default 200)
//! now: 1800000000000           the filter's clock in ms
//! :path: /mcp?x=1              request headers for the header phase,
//! authorization: Bearer …      any number, any order
//!
//! {"active":true,…}            parsed as an introspection answer and as a
//!                              feed page; the whole input also as a header map
//! ```

#![no_main]

use filter::cache::{self, Deadlines, Decision, Grant};
use filter::config::{Config, TokenApi};
use filter::introspect::{self, Answer};
use filter::request::{self, Front};
use filter::shared::{self, SharedEntry};
use filter::{bearer, headermap};
use libfuzzer_sys::fuzz_target;
use mcpgw_fuzz::{is_header_value, Message};
use mcpgw_token::format;
use std::rc::Rc;

/// 2027-01-15, in ms.
const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let msg = Message::parse(data);
    let status = match msg.get("status") {
        Some(_) => msg.num::<u16>("status"),
        None => Some(200),
    };
    let now = msg.num::<u64>("now").unwrap_or(NOW_MS);

    check_introspection(status, msg.body, now);
    check_feed(status, msg.body);
    for entry in shared::decode(msg.body) {
        // Whatever another worker left in shared memory, re-validated.
        if let (Some((decision, d)), Some(key)) =
            (entry.decision(), cache::key_from_hex(&entry.sha))
        {
            check_decision(&decision, d, &key);
        }
    }

    // The raw input as a serialized header map.
    if let Some(pairs) = headermap::decode(data) {
        let again = headermap::encode(&pairs);
        if !data.is_empty() {
            // Bytes after the last pair are ignored, never misread.
            assert!(data.starts_with(&again), "re-encoding differs");
        }
        check_headers(&pairs);
    }
    // The head lines as request headers, through the map encoding.
    let pairs = msg.head.clone();
    let buf = headermap::encode(&pairs);
    assert_eq!(headermap::decode(&buf).as_ref(), Some(&pairs));
    check_headers(&pairs);
});

fn check_introspection(status: Option<u16>, body: &[u8], now: u64) {
    let Ok(answer) = introspect::parse_introspection(status, body, now) else {
        return;
    };
    assert_eq!(status, Some(200), "a decision from a non-200 answer");
    if let Answer::Active { grant, .. } = &answer {
        assert!(introspect::is_tenant(&grant.tenant) && introspect::is_tenant(&grant.project));
        // Everything that becomes an upstream routing header is sendable.
        for v in [&grant.tenant, &grant.project, &grant.token_id, &grant.name] {
            assert!(!v.is_empty() && is_header_value(v), "{v:?}");
        }
        if let Some(exp) = grant.exp_ms {
            assert!(exp > now, "an active grant already past exp");
        }
        assert_eq!(
            grant.grants_all,
            grant.scopes.iter().any(|s| s.is_all_mcp())
        );
    }
    let decision = match answer {
        Answer::Active { grant, .. } => Decision::Active(Rc::new(grant)),
        Answer::Inactive(r) => Decision::Inactive(r),
    };
    let d = Deadlines {
        fresh_until: now.saturating_add(1),
        usable_until: now.saturating_add(2),
    };
    check_decision(&decision, d, &cache::key_of("t"));
}

/// A decision survives the trip through shared memory unchanged.
fn check_decision(decision: &Decision, d: Deadlines, key: &cache::Key) {
    let entry = SharedEntry::from_decision(key, decision, d);
    let bytes = shared::encode(core::slice::from_ref(&entry));
    let back = shared::decode(&bytes);
    assert_eq!(back, vec![entry]);
    let (again, d2) = back[0].decision().expect("a decision written is readable");
    assert_eq!(&again, decision);
    assert_eq!(d2, d);
    if let Decision::Active(g) = decision {
        let Grant { scopes, .. } = &**g;
        for s in scopes {
            assert_eq!(mcpgw_token::scopes::parse(&s.to_string()).as_ref(), Ok(s));
        }
    }
}

fn check_feed(status: Option<u16>, body: &[u8]) {
    let Ok(page) = introspect::parse_revocations(status, body) else {
        return;
    };
    assert_eq!(status, Some(200));
    for key in &page.revoked {
        let hex = cache::hex_of(key);
        assert_eq!(cache::key_from_hex(&hex).as_ref(), Some(key));
    }
    // The next poll's path carries the cursor safely, whatever it holds.
    let call = introspect::feed_request(&TokenApi::default(), &page.cursor);
    assert!(call.path.starts_with(introspect::REVOCATIONS_PATH));
    assert!(
        call.path.bytes().all(|b| b.is_ascii_graphic() && b != b'#'),
        "{:?}",
        call.path
    );
    // A page always has a cursor: reading on from `now` would skip entries.
    assert!(!page.cursor.is_empty());
    assert_eq!(call.path.matches('?').count(), 1);
    assert!(
        call.authorization.is_none(),
        "the feed carries no credential"
    );
}

fn check_headers(pairs: &[(&[u8], &[u8])]) {
    let cfg = Config::default();
    let scan = request::scan(pairs, &cfg.headers.strip_prefix);
    for (i, name) in scan.strip.iter().enumerate() {
        assert!(name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"x-mcp-"));
        assert!(!scan.strip[..i].iter().any(|n| n.eq_ignore_ascii_case(name)));
    }
    // Every client copy of a routing header is marked for removal.
    for (name, _) in pairs {
        if name.eq_ignore_ascii_case(cfg.headers.tenant.as_bytes()) {
            assert!(scan.strip.iter().any(|n| n.eq_ignore_ascii_case(name)));
        }
    }

    for value in &scan.authorization {
        if let Ok(token) = bearer::extract(&[value]) {
            assert!(!token.is_empty());
            assert!(!token.starts_with([' ', '\t']) && !token.ends_with([' ', '\t']));
            assert!(!token.contains(','));
        }
    }
    match request::front(&cfg, &scan) {
        Front::Token(token) => {
            assert_eq!(format::validate(token), Ok(()));
            assert_eq!(scan.authorization.len(), 1, "one Authorization header");
            assert!(!bearer::has_query_token(scan.path));
        }
        Front::Bypass => {
            let path_only = scan.path.split(|&b| b == b'?').next().unwrap_or_default();
            assert!(cfg.is_bypass(path_only));
        }
        Front::Reject(_) => {}
    }
    // A query token is refused wherever it hides, with or without a header.
    if bearer::has_query_token(scan.path) {
        assert!(!matches!(request::front(&cfg, &scan), Front::Token(_)));
    }
}
