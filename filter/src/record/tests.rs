use super::*;
use crate::message;
use mcpgw_token::ratelimit::RateLimit;
use mcpgw_token::scopes;
use serde_json::{json, Value};

fn grant(limit: Option<RateLimit>) -> Rc<Grant> {
    Rc::new(
        Grant::new(
            "acme".into(),
            "default".into(),
            "tok_01".into(),
            "laptop \"quoted\"".into(),
            scopes::parse_all(&["mcp:*"]).unwrap(),
            None,
        )
        .with_rate_limit(limit),
    )
}

fn line(decision: Decision, facts: &Facts) -> Value {
    serde_json::from_str(&encode(decision, facts)).unwrap()
}

#[test]
fn an_allowed_call_names_token_tool_and_cache() {
    let mut f = Facts {
        cache: Cache::Hit,
        key: Some([0xab; 32]),
        grant: Some(grant(None)),
        ..Facts::default()
    };
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami"}}"#;
    f.called(&message::read(body).unwrap());
    assert_eq!(
        line(Decision::Allow, &f),
        json!({"decision": "allow", "cache": "hit", "token_id": "tok_01",
               "token_name": "laptop \"quoted\"", "tenant": "acme", "project": "default",
               "token_sha": "ab".repeat(32), "method": "tools/call", "name": "whoami"})
    );
}

#[test]
fn a_denial_carries_its_reason() {
    let f = Facts::default();
    for (metric, inactive, want) in [
        (Metric::DeniedMissing, None, "missing_token"),
        (Metric::DeniedMalformed, None, "malformed_token"),
        (Metric::DeniedQueryToken, None, "token_in_query"),
        (Metric::DeniedInvalid, Some(Reason::Revoked), "revoked"),
        (Metric::DeniedInvalid, Some(Reason::Expired), "expired"),
        (
            Metric::DeniedInvalid,
            Some(Reason::Unknown),
            "unknown_token",
        ),
        (
            Metric::DeniedInvalid,
            Some(Reason::Malformed),
            "unknown_token",
        ),
        (Metric::DeniedScope, None, "insufficient_scope"),
        (Metric::DeniedHeaderMismatch, None, "header_mismatch"),
        (Metric::DeniedBadBody, None, "bad_body"),
        (Metric::DeniedBodyTooLarge, None, "body_too_large"),
        (Metric::DeniedUnavailable, None, "token_api_unavailable"),
        (Metric::DeniedOverloaded, None, "token_check_busy"),
        (Metric::DeniedRateLimited, None, "rate_limited"),
    ] {
        let f = Facts {
            inactive,
            ..f.clone()
        };
        assert_eq!(
            line(Decision::Deny(metric), &f),
            json!({"decision": "deny", "reason": want}),
            "{metric:?}"
        );
    }
}

#[test]
fn a_rate_limited_request_shows_the_limit_and_the_wait() {
    let limit = RateLimit {
        requests: 60,
        window_s: 60,
        burst: 10,
    };
    let f = Facts {
        cache: Cache::Shared,
        grant: Some(grant(Some(limit))),
        retry_after_s: Some(3),
        ..Facts::default()
    };
    let v = line(Decision::Deny(Metric::DeniedRateLimited), &f);
    assert_eq!(v["rate_limit"], "60/m burst 10");
    assert_eq!(v["retry_after_s"], 3);
    assert_eq!(v["cache"], "shared");
}

#[test]
fn a_batch_records_its_first_request_and_its_size() {
    let mut f = Facts::default();
    let body = br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":1,"result":{}},
        {"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}]"#;
    f.called(&message::read(body).unwrap());
    let v = line(Decision::Allow, &f);
    assert_eq!(v["method"], "notifications/initialized");
    assert_eq!(v["batch"], 2, "two requests; the response does not count");
    let mut f = Facts::default();
    f.called(&message::read(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap());
    assert_eq!(line(Decision::Allow, &f), json!({"decision": "allow"}));
}

#[test]
fn long_names_are_clipped_on_a_character_boundary() {
    let name = format!("{}é", "x".repeat(MAX_NAME - 1));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}});
    let mut f = Facts::default();
    f.called(&message::read(body.to_string().as_bytes()).unwrap());
    let got = f.name.unwrap();
    assert_eq!(got, "x".repeat(MAX_NAME - 1));
}

#[test]
fn a_bypass_is_one_word_and_no_record_holds_a_raw_token() {
    assert_eq!(
        encode(Decision::Bypass, &Facts::default()),
        r#"{"decision":"bypass"}"#
    );
    let f = Facts {
        key: Some(crate::cache::key_of("mcpctl_pat_secret")),
        grant: Some(grant(None)),
        ..Facts::default()
    };
    assert!(!encode(Decision::Allow, &f).contains("mcpctl_pat_"));
    // Not even when the client sends its token as a tool name.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "x mcpctl_pat_abc"}});
    let mut f = Facts::default();
    f.called(&message::read(body.to_string().as_bytes()).unwrap());
    assert_eq!(f.name.as_deref(), Some(REDACTED));
}

#[test]
fn the_grant_part_is_built_with_the_grant_and_the_line_keeps_its_order() {
    let g = grant(Some(RateLimit {
        requests: 10,
        window_s: 60,
        burst: 10,
    }));
    let facts = |key: u8| Facts {
        cache: Cache::Hit,
        key: Some([key; 32]),
        grant: Some(g.clone()),
        method: Some("tools/call".into()),
        name: Some("who\"ami".into()),
        batch: 2,
        ..Facts::default()
    };
    let first = encode(Decision::Allow, &facts(0xab));
    assert_eq!(
        first,
        format!(
            r#"{{"decision":"allow","cache":"hit","token_id":"tok_01","token_name":"laptop \"quoted\"","tenant":"acme","project":"default","token_sha":"{}","method":"tools/call","name":"who\"ami","batch":2,"rate_limit":"10/m"}}"#,
            "ab".repeat(32)
        )
    );
    assert_eq!(
        encode(Decision::Allow, &facts(0xab)),
        first,
        "from the memo"
    );
    // The same grant under another key (never the case in the filter) still
    // names that key, not the memoised one.
    let other = line(Decision::Allow, &facts(0xcd));
    assert_eq!(other["token_sha"], "cd".repeat(32));
    // Facts without a grant, or without a key.
    let v = line(
        Decision::Deny(Metric::DeniedInvalid),
        &Facts {
            key: Some([1; 32]),
            inactive: Some(Reason::Revoked),
            ..Facts::default()
        },
    );
    assert_eq!(
        v,
        json!({"decision": "deny", "reason": "revoked", "token_sha": "01".repeat(32)})
    );
    let v = line(
        Decision::Allow,
        &Facts {
            grant: Some(grant(None)),
            retry_after_s: Some(3),
            ..Facts::default()
        },
    );
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["retry_after_s"], 3);
    assert!(v.get("token_sha").is_none());
}
