use super::*;
use mcpgw_token::ratelimit::RateLimit;
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000_000;

fn active() -> Value {
    json!({
        "active": true, "token_id": "tok_01HZX", "name": "laptop",
        "tenant": "acme", "project": "default",
        "scopes": ["mcp:tools/call:list_*", "mcp:tools/list"],
        "exp": 1_800_000_000u64, "iat": 1_600_000_000u64, "cache_ttl_s": 60
    })
}

fn parse(v: &Value) -> Result<Answer, Unavailable> {
    parse_introspection(Some(200), v.to_string().as_bytes(), NOW)
}

#[test]
fn introspect_request_carries_the_token_as_bearer() {
    let c = introspect_request(&TokenApi::default(), "mcpctl_pat_abc");
    assert_eq!(
        c.headers(),
        vec![
            (":method", "GET"),
            (":path", "/api/v1/mcptokens/introspect"),
            (":authority", "token-api"),
            ("authorization", "Bearer mcpctl_pat_abc"),
        ]
    );
}

#[test]
fn feed_request_encodes_the_cursor_and_has_no_credential() {
    let api = TokenApi::default();
    let first = feed_request(&api, "");
    assert_eq!(
        first.path, "/api/v1/mcptokens/revocations?since=now",
        "a worker without a cursor starts at the head, not the whole history"
    );
    assert!(first.headers().iter().all(|(k, _)| *k != "authorization"));
    let next = feed_request(&api, "01HZ+a b&c=");
    assert_eq!(
        next.path,
        "/api/v1/mcptokens/revocations?since=01HZ%2Ba%20b%26c%3D"
    );
}

#[test]
fn status_is_read_from_pseudo_header() {
    assert_eq!(status_of(&[(b":status", b"200")]), Some(200));
    assert_eq!(status_of(&[(b"x", b"1"), (b":status", b"504")]), Some(504));
    assert_eq!(status_of(&[]), None);
    assert_eq!(status_of(&[(b":status", b"abc")]), None);
}

#[test]
fn active_answer_becomes_a_grant() {
    match parse(&active()).unwrap() {
        Answer::Active { grant, cache_ttl_s } => {
            assert_eq!(cache_ttl_s, 60);
            assert_eq!(grant.tenant, "acme");
            assert_eq!(grant.project, "default");
            assert_eq!(grant.token_id, "tok_01HZX");
            assert_eq!(grant.name, "laptop");
            assert_eq!(grant.scopes.len(), 2);
            assert!(!grant.grants_all);
            assert_eq!(grant.exp_ms, Some(1_800_000_000_000));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn null_exp_never_expires_and_extra_fields_are_tolerated() {
    let mut v = active();
    v["exp"] = Value::Null;
    v["created_by"] = json!("admin");
    v["scopes"] = json!(["mcp:*"]);
    match parse(&v).unwrap() {
        Answer::Active { grant, .. } => {
            assert_eq!(grant.exp_ms, None);
            assert!(grant.grants_all);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn active_but_past_exp_is_expired() {
    let mut v = active();
    v["exp"] = json!(NOW / 1000 - 1);
    assert_eq!(parse(&v).unwrap(), Answer::Inactive(Reason::Expired));
}

#[test]
fn inactive_answers_carry_their_reason() {
    for r in ["unknown", "revoked", "expired", "malformed"] {
        let v = json!({"active": false, "reason": r});
        assert_eq!(
            parse(&v).unwrap(),
            Answer::Inactive(Reason::parse(r).unwrap())
        );
    }
}

#[test]
fn an_inactive_answer_denies_whatever_its_reason() {
    for v in [
        json!({"active": false}),
        json!({"active": false, "reason": "nope"}),
        json!({"active": false, "reason": 3}),
        json!({"active": false, "reason": null, "tenant": "Not A Label"}),
    ] {
        assert_eq!(parse(&v), Ok(Answer::Inactive(Reason::Unknown)), "{v}");
    }
}

#[test]
fn every_garbage_form_is_unavailable() {
    let mut cases: Vec<Value> = vec![
        json!({"active": "true"}),
        json!({"active": null, "reason": "revoked"}),
        json!({"token_id": "x"}),
        json!([active()]),
        json!("active"),
    ];
    let field_breakers: Vec<(&str, Value)> = vec![
        ("tenant", json!("Acme")),
        ("tenant", json!("_reserved")),
        ("tenant", json!(7)),
        ("project", json!("")),
        ("token_id", json!("tok 1")),
        ("token_id", json!("")),
        ("name", json!("line\r\nbreak")),
        ("name", json!("x".repeat(65))),
        ("name", json!("")),
        ("scopes", json!("mcp:*")),
        ("scopes", json!([1])),
        ("scopes", json!(["bogus"])),
        ("exp", json!("2030-01-01T00:00:00Z")),
        ("exp", json!(-5)),
        ("iat", json!(null)),
        ("cache_ttl_s", json!(-1)),
        ("cache_ttl_s", json!("60")),
    ];
    for (field, value) in field_breakers {
        let mut v = active();
        v[field] = value;
        cases.push(v);
    }
    for field in [
        "tenant",
        "project",
        "token_id",
        "name",
        "scopes",
        "exp",
        "iat",
        "cache_ttl_s",
    ] {
        let mut v = active();
        v.as_object_mut().unwrap().remove(field);
        cases.push(v);
    }
    for v in cases {
        assert!(parse(&v).is_err(), "accepted {v}");
    }
}

#[test]
fn non_200_missing_and_unparseable_bodies_are_unavailable() {
    let good = active().to_string();
    assert!(parse_introspection(None, good.as_bytes(), NOW).is_err());
    for s in [201, 401, 404, 500, 503, 504] {
        assert!(
            parse_introspection(Some(s), good.as_bytes(), NOW).is_err(),
            "{s}"
        );
    }
    for body in [&b""[..], b"{", b"null", b"<html>", b"\xff\xfe"] {
        assert!(parse_introspection(Some(200), body, NOW).is_err());
    }
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_INTROSPECT_BODY));
    let e = parse_introspection(Some(200), huge.as_bytes(), NOW).unwrap_err();
    assert!(e.0.contains("over"), "{e}");
}

#[test]
fn revocations_feed_parses_hashes_cursor_more_and_reset() {
    let sha = "ab".repeat(32);
    let body =
        json!({"cursor": "c42", "revoked": [sha, "00".repeat(32)], "more": true}).to_string();
    let r = parse_revocations(Some(200), body.as_bytes()).unwrap();
    assert_eq!(r.cursor, "c42");
    assert_eq!(r.revoked, vec![[0xab; 32], [0; 32]]);
    assert!(r.more && !r.reset);
    let reset = json!({"cursor": "e.9", "revoked": [], "more": false, "reset": true}).to_string();
    let r = parse_revocations(Some(200), reset.as_bytes()).unwrap();
    assert!(r.reset && !r.more && r.revoked.is_empty());
}

#[test]
fn the_rate_limit_reaches_the_grant_and_a_bad_one_is_unavailable() {
    let mut v = active();
    v["rate_limit"] = json!({"requests": 60, "window_s": 60, "burst": 10});
    match parse(&v).unwrap() {
        Answer::Active { grant, .. } => assert_eq!(
            grant.rate_limit,
            Some(RateLimit {
                requests: 60,
                window_s: 60,
                burst: 10
            })
        ),
        other => panic!("{other:?}"),
    }
    for none in [json!(null), Value::Null] {
        let mut v = active();
        v["rate_limit"] = none;
        assert!(
            matches!(parse(&v), Ok(Answer::Active { grant, .. }) if grant.rate_limit.is_none())
        );
    }
    // A token API from before rate limits writes no field: no limit.
    assert!(
        matches!(parse(&active()), Ok(Answer::Active { grant, .. }) if grant.rate_limit.is_none())
    );
    // Fail closed: a limit the gateway cannot read never means "unlimited".
    for bad in [
        json!({"requests": 0, "window_s": 60, "burst": 0}),
        json!({"requests": -5, "window_s": 60, "burst": 1}),
        json!({"requests": 60, "window_s": 0, "burst": 1}),
        json!({"requests": 60, "window_s": 60, "burst": 61}),
        json!({"requests": 1e12, "window_s": 60, "burst": 1}),
        json!({"requests": 60, "window_s": 60}),
        json!("60/m"),
        json!(true),
    ] {
        let mut v = active();
        v["rate_limit"] = bad.clone();
        assert!(parse(&v).is_err(), "accepted rate_limit {bad}");
    }
}

#[test]
fn the_feed_lists_changed_tokens_apart_from_revoked_ones() {
    let body = json!({"cursor": "e.3", "revoked": ["ab".repeat(32)], "changed": ["cd".repeat(32)],
                      "more": false})
    .to_string();
    let r = parse_revocations(Some(200), body.as_bytes()).unwrap();
    assert_eq!(r.revoked, vec![[0xab; 32]]);
    assert_eq!(r.changed, vec![[0xcd; 32]]);
    let bad = json!({"cursor": "e.3", "revoked": [], "changed": ["CD".repeat(32)], "more": false});
    let e = parse_revocations(Some(200), bad.to_string().as_bytes()).unwrap_err();
    assert!(e.0.contains("changed"), "{e}");
}

#[test]
fn revocations_feed_garbage_is_unavailable() {
    let sha = "ab".repeat(32);
    let cases = [
        json!({"revoked": [sha], "more": false}),
        json!({"cursor": 1, "revoked": [], "more": false}),
        json!({"cursor": "c", "more": false}),
        json!({"cursor": "c", "revoked": []}),
        json!({"cursor": "c", "revoked": "x", "more": false}),
        json!({"cursor": "c", "revoked": ["AB".repeat(32)], "more": false}),
        json!({"cursor": "c", "revoked": ["abc"], "more": false}),
        json!({"cursor": "c", "revoked": [1], "more": false}),
        json!({"cursor": "c", "revoked": [], "more": false, "reset": "yes"}),
        json!({"cursor": "x".repeat(2000), "revoked": [], "more": false}),
        json!({"cursor": "", "revoked": [], "more": false}),
        json!([]),
    ];
    for v in cases {
        assert!(
            parse_revocations(Some(200), v.to_string().as_bytes()).is_err(),
            "{v}"
        );
    }
    let ok = json!({"cursor": "c", "revoked": [], "more": false}).to_string();
    assert!(parse_revocations(Some(200), ok.as_bytes()).is_ok());
    assert!(parse_revocations(Some(500), ok.as_bytes()).is_err());
    assert!(parse_revocations(None, ok.as_bytes()).is_err());
    assert!(parse_revocations(Some(200), b"not json").is_err());
}
