use super::*;
use mcpgw_token::ratelimit::RateLimit;

fn body(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn missing_bearer_gets_a_bare_challenge() {
    let r = unauthorized(
        &Config::default(),
        Unauthorized::Bearer(BearerError::Missing),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"mcp\""));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(body(&r)["error"]["code"], "missing_token");
    assert!(body(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization"));
}

#[test]
fn malformed_and_inactive_are_invalid_token() {
    let cfg = Config::default();
    for why in [
        Unauthorized::Malformed(FormatError::Checksum),
        Unauthorized::Inactive(Reason::Revoked),
        Unauthorized::Inactive(Reason::Expired),
        Unauthorized::Inactive(Reason::Unknown),
    ] {
        let r = unauthorized(&cfg, why);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"mcp\", error=\"invalid_token\""),
            "{why:?}"
        );
    }
    let r = unauthorized(&cfg, Unauthorized::Inactive(Reason::Revoked));
    assert!(r.body.contains("revoked"));
}

#[test]
fn query_token_is_401_and_says_why() {
    let r = unauthorized(&Config::default(), Unauthorized::QueryToken);
    assert_eq!(r.status, 401);
    assert_eq!(body(&r)["error"]["code"], "token_in_query");
}

#[test]
fn resource_metadata_and_realm_come_from_config() {
    let cfg = Config {
        realm: "gw".into(),
        resource_metadata: Some("https://gw.example/.well-known/oauth-protected-resource".into()),
        ..Config::default()
    };
    let r = unauthorized(&cfg, Unauthorized::Bearer(BearerError::Scheme));
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"gw\", resource_metadata=\
             \"https://gw.example/.well-known/oauth-protected-resource\""
        )
    );
}

#[test]
fn insufficient_scope_is_a_jsonrpc_403_with_the_id() {
    let r = insufficient_scope(
        &Config::default(),
        "mcp:tools/call:rm",
        &serde_json::json!(9),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"mcp\", error=\"insufficient_scope\", scope=\"mcp:tools/call:rm\"")
    );
    let b = body(&r);
    assert_eq!(b["jsonrpc"], "2.0");
    assert_eq!(b["id"], 9);
    assert_eq!(b["error"]["code"], jsonrpc::INSUFFICIENT_SCOPE);
    assert_eq!(b["error"]["data"]["required_scope"], "mcp:tools/call:rm");
}

#[test]
fn hostile_names_never_reach_the_challenge_header() {
    let cfg = Config::default();
    for name in ["a\"b", "a b", "x\r\nset-cookie: y", "ünï", "a\\b"] {
        let required = format!("mcp:tools/call:{name}");
        let r = insufficient_scope(&cfg, &required, &Value::Null);
        let h = r.header("www-authenticate").unwrap();
        assert!(h.ends_with("scope=\"mcp:tools/call\""), "{h}");
        assert_eq!(
            body(&r)["error"]["data"]["required_scope"],
            required.as_str()
        );
    }
    let r = insufficient_scope(&cfg, "mcp:to ols", &Value::Null);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .ends_with("scope=\"mcp:*\""));
}

#[test]
fn verdicts_map_to_replies() {
    let cfg = Config::default();
    assert_eq!(for_verdict(&cfg, &Verdict::Allow), None);
    let id = serde_json::json!("r1");
    let r = for_verdict(
        &cfg,
        &Verdict::Mismatch {
            detail: "d".into(),
            id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(body(&r)["error"]["code"], -32020);
    assert_eq!(body(&r)["id"], "r1");
    let r = for_verdict(&cfg, &Verdict::ParseError { detail: "d".into() }).unwrap();
    assert_eq!(
        (r.status, body(&r)["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    assert_eq!(body(&r)["id"], Value::Null);
    let r = for_verdict(
        &cfg,
        &Verdict::InvalidRequest {
            detail: "d".into(),
            id,
        },
    )
    .unwrap();
    assert_eq!(
        (r.status, body(&r)["error"]["code"].as_i64()),
        (400, Some(-32600))
    );
    let r = for_verdict(
        &cfg,
        &Verdict::Deny {
            required: "mcp:ping2".into(),
            id: Value::Null,
        },
    );
    assert_eq!(r.unwrap().status, 403);
}

#[test]
fn too_large_and_unavailable() {
    let r = body_too_large(1024);
    assert_eq!(r.status, 413);
    assert!(r.body.contains("1024"));
    let r = unavailable();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(body(&r)["error"]["code"], "token_api_unavailable");
}

#[test]
fn header_refs_borrow_every_header() {
    let r = unavailable();
    assert_eq!(r.header_refs().len(), r.headers.len());
}

#[test]
fn rate_limited_carries_retry_after_and_the_ietf_fields() {
    let limit = RateLimit {
        requests: 60,
        window_s: 60,
        burst: 10,
    };
    let id = serde_json::json!("req-7");
    let r = rate_limited(&limit, 4, Some(&id));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("4"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"token\";q=60;w=60"));
    assert_eq!(r.header("ratelimit"), Some("\"token\";r=0;t=4"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let b = body(&r);
    assert_eq!(b["jsonrpc"], "2.0");
    assert_eq!(b["id"], "req-7");
    assert_eq!(b["error"]["code"], jsonrpc::RATE_LIMITED);
    assert_eq!(b["error"]["data"]["retry_after_s"], 4);
    assert_eq!(
        b["error"]["data"]["rate_limit"],
        serde_json::json!({"requests": 60, "window_s": 60, "burst": 10})
    );
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("60/m burst 10"));
    // Without a JSON-RPC call (a GET for the event stream): the API error shape.
    let r = rate_limited(&limit, 1, None);
    assert_eq!(r.status, 429);
    assert_eq!(body(&r)["error"]["code"], "rate_limited");
    assert_eq!(r.header("ratelimit"), Some("\"token\";r=0;t=1"));
}
