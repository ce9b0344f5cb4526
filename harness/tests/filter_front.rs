//! docs/DESIGN.md §7, before any cache or callout: header stripping, bypass paths,
//! missing or malformed credentials, tokens in the query, and configuration
//! errors at load.

#[path = "common/pw_support.rs"]
mod pw_support;

use harness::proxy_wasm::{Envoy, Request};
use pw_support::*;
use serde_json::{json, Value};

const SPOOFED: [(&str, &str); 4] = [
    ("x-mcp-tenant", "victim"),
    ("X-MCP-Tenant", "victim2"),
    ("X-Mcp-Project", "secret"),
    ("x-MCP-anything", "1"),
];

fn with_spoofed(mut r: Request) -> Request {
    for (k, v) in SPOOFED {
        r = r.header(k, v);
    }
    r
}

fn assert_nothing_spoofed(headers: &harness::proxy_wasm::Headers, allowed: &[(&str, &str)]) {
    for name in headers.names() {
        if name.starts_with("x-mcp-") {
            let values = headers.get_all(name);
            let expected = allowed.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            assert_eq!(
                values,
                expected.into_iter().collect::<Vec<_>>(),
                "header {name} reached the upstream: {headers:#?}"
            );
        }
    }
}

fn assert_401(env: &mut Envoy, request: Request, error: Option<&str>) -> Value {
    let out = env.request(request);
    let reply = out.replied();
    assert_eq!(reply.status, 401, "{out:#?}");
    assert!(reply.by_filter);
    let challenge = reply.header("www-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"mcp\""),
        "challenge: {challenge}"
    );
    assert_eq!(challenge_error(&challenge).as_deref(), error, "{challenge}");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(env.callouts().is_empty(), "no callout for a 401 up front");
    reply.json()
}

#[test]
fn bypass_paths_are_forwarded_without_a_token_and_without_spoofed_headers() {
    let mut env = envoy();
    for path in [
        "/health",
        "/.well-known/oauth-protected-resource",
        "/health?x=1",
    ] {
        let out = env.request(with_spoofed(Request::get(path)));
        let fwd = out.forwarded();
        assert_eq!(fwd.headers.get(":path").as_deref(), Some(path));
        assert_nothing_spoofed(&fwd.headers, &[]);
        assert_eq!(fwd.response.status, 200);
    }
    assert!(env.callouts().is_empty());
    assert_eq!(env.metric("mcp_auth.bypassed"), 3);
    assert_eq!(env.metric("mcp_auth.allowed"), 0);
}

#[test]
fn a_bypass_path_drops_the_bearer_and_picks_the_route_again() {
    let mut env = envoy();
    let t = token(1);
    let out = env.request(with_spoofed(Request::get("/.well-known/x").bearer(&t)));
    let fwd = out.forwarded();
    assert!(fwd.headers.get("authorization").is_none(), "{fwd:#?}");
    assert_nothing_spoofed(&fwd.headers, &[]);
    // The removals clear the route cache (tests/filter_abi.rs).
    assert!(fwd.route_cache_clears >= 1, "{fwd:#?}");
    assert!(
        env.callouts().is_empty(),
        "a bypass never looks the token up"
    );
    // Nothing removed, nothing to re-route.
    let out = env.request(Request::get("/health"));
    assert!(out.forwarded().headers.get("authorization").is_none());
    assert_eq!(out.forwarded().route_cache_clears, 0);
}

#[test]
fn a_bypass_path_does_not_match_longer_paths() {
    let mut env = envoy();
    for path in ["/healthz", "/health/../mcp", "/.well-knownx"] {
        assert_401(&mut env, Request::get(path), None);
    }
}

#[test]
fn spoofed_prefix_headers_never_reach_the_upstream_of_an_allowed_request() {
    let mut env = envoy();
    let t = token(1);
    let out = admit(&mut env, with_spoofed(mcp(&t, &initialize(1))), &all_mcp());
    let fwd = out.forwarded();
    assert_nothing_spoofed(
        &fwd.headers,
        &[
            ("x-mcp-tenant", "acme"),
            ("x-mcp-project", "default"),
            ("x-mcp-token-id", "tok_01JD0000000000000000000000"),
            ("x-mcp-token-name", "laptop"),
        ],
    );
}

#[test]
fn token_id_and_name_headers_turned_off_are_not_written_and_spoofs_still_go() {
    let mut env = envoy_with(json!({"headers": {"token_id": null, "token_name": null}}));
    let t = token(1);
    let request = with_spoofed(mcp(&t, &initialize(1))).header("X-Mcp-Token-Id", "tok_spoofed");
    let out = admit(&mut env, request, &all_mcp());
    let fwd = out.forwarded();
    // Only the routing headers left on; the client's x-mcp-token-id is gone.
    assert_nothing_spoofed(
        &fwd.headers,
        &[("x-mcp-tenant", "acme"), ("x-mcp-project", "default")],
    );
    assert!(fwd.headers.get_all("x-mcp-token-id").is_empty());
    assert!(fwd.headers.get_all("x-mcp-token-name").is_empty());
}

#[test]
fn no_or_empty_bearer_other_scheme_or_two_authorizations_get_401() {
    let mut env = envoy();
    let t = token(1);
    let body = assert_401(&mut env, Request::post("/mcp"), None);
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_401(
        &mut env,
        Request::post("/mcp").header("authorization", "Bearer"),
        None,
    );
    assert_401(
        &mut env,
        Request::post("/mcp").header("authorization", ""),
        None,
    );
    assert_401(
        &mut env,
        Request::post("/mcp").header("authorization", &format!("Basic {t}")),
        None,
    );
    assert_401(&mut env, Request::post("/mcp").bearer(&t).bearer(&t), None);
    assert_401(
        &mut env,
        Request::post("/mcp")
            .bearer(&t)
            .header("Authorization", "Bearer x"),
        None,
    );
    assert_eq!(env.metric("mcp_auth.denied.missing"), 6);
}

#[test]
fn the_challenge_carries_resource_metadata_when_configured() {
    let url = "https://auth.example.com/.well-known/oauth-protected-resource";
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "resource_metadata": url}));
    let out = env.request(Request::post("/mcp"));
    let challenge = out.replied().header("www-authenticate").unwrap();
    assert!(
        challenge.contains(&format!("resource_metadata=\"{url}\"")),
        "{challenge}"
    );
    // And by default it is absent: a 401 with it starts OAuth in clients.
    let mut env = envoy();
    let out = env.request(Request::post("/mcp"));
    let challenge = out.replied().header("www-authenticate").unwrap();
    assert!(!challenge.contains("resource_metadata"), "{challenge}");
}

#[test]
fn malformed_tokens_get_401_invalid_token_without_any_callout() {
    let mut env = envoy();
    let good = token(9);
    let secret_len = good.len() - "mcpctl_pat_".len();
    let mut bad_checksum = good.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let cases = [
        bad_checksum,
        good[..good.len() - 1].to_string(),
        format!("{good}0"),
        good.replacen("mcpctl_pat_", "mcpctl_pak_", 1),
        format!("mcpctl_pat_{}", "!".repeat(secret_len)),
        "mcpctl_pat_".to_string(),
        "not-a-token".to_string(),
    ];
    for bad in &cases {
        let body = assert_401(&mut env, mcp(bad, &initialize(1)), Some("invalid_token"));
        assert!(body["error"]["message"].is_string());
    }
    assert_eq!(env.metric("mcp_auth.denied.malformed"), cases.len() as u64);
    assert_eq!(env.metric("mcp_auth.callouts"), 0);
    let refs: Vec<&str> = cases.iter().map(String::as_str).collect();
    assert_no_secret_logged(&env, &refs);
}

#[test]
fn a_token_in_the_query_string_is_refused_even_with_a_good_header() {
    let mut env = envoy();
    let t = token(2);
    for path in [
        format!("/mcp?access_token={t}"),
        format!("/mcp?x=1&access_token={t}"),
    ] {
        let out = env.request(Request::post(&path).bearer(&t).json(&initialize(1)));
        let reply = out.replied();
        assert_eq!(reply.status, 401, "{out:#?}");
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=\"mcp\""));
    }
    // Without a header too: the query is never a place for a token.
    let out = env.request(Request::get(&format!("/mcp?access_token={t}")));
    assert_eq!(out.status(), Some(401));
    assert!(env.callouts().is_empty());
    assert_eq!(env.metric("mcp_auth.denied.query_token"), 3);
    assert_no_secret_logged(&env, &[&t]);
}

#[test]
fn each_invalid_configuration_field_fails_the_load_naming_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"token_api": {"cluster": ""}}), "token_api.cluster"),
        (
            json!({"token_api": {"authority": ""}}),
            "token_api.authority",
        ),
        (
            json!({"token_api": {"timeout_ms": 0}}),
            "token_api.timeout_ms",
        ),
        (
            json!({"token_api": {"timeout_ms": "fast"}}),
            "token_api.timeout_ms",
        ),
        (json!({"cache": {"ttl_s": 0}}), "cache.ttl_s"),
        (
            json!({"cache": {"negative_ttl_s": 1_000_000}}),
            "cache.negative_ttl_s",
        ),
        (json!({"cache": {"max_entries": 0}}), "cache.max_entries"),
        (
            json!({"cache": {"stale_if_error_s": 10_000_000}}),
            "cache.stale_if_error_s",
        ),
        (json!({"cache": {"ttl": 30}}), "cache.ttl"),
        (json!({"revocation_poll_ms": 5}), "revocation_poll_ms"),
        (json!({"revocation_poll_ms": -1}), "revocation_poll_ms"),
        (
            json!({"headers": {"strip_prefix": ""}}),
            "headers.strip_prefix",
        ),
        (
            json!({"headers": {"strip_prefix": "x-"}}),
            "headers.strip_prefix",
        ),
        (json!({"headers": {"tenant": "tenant"}}), "headers.tenant"),
        (
            json!({"headers": {"project": "x-mcp-tenant"}}),
            "headers.project",
        ),
        (
            json!({"headers": {"token_id": "x-mcp-bad name"}}),
            "headers.token_id",
        ),
        (json!({"headers": {"token_name": ""}}), "headers.token_name"),
        (json!({"bypass_paths": ["health"]}), "bypass_paths[0]"),
        (json!({"bypass_paths": ["/ok", 5]}), "bypass_paths[1]"),
        (json!({"enforce_scopes": "yes"}), "enforce_scopes"),
        (json!({"max_body_bytes": 0}), "max_body_bytes"),
        (json!({"max_body_bytes": 2_097_152}), "max_body_bytes"),
        (json!({"realm": ""}), "realm"),
        (json!({"realm": "a\"b"}), "realm"),
        (json!({"resource_metadata": "ftp://x"}), "resource_metadata"),
        (json!({"colour": "blue"}), "colour"),
    ];
    for (patch, field) in cases {
        let config = merged(spec_config(), &patch);
        let err = match host().envoy(&config) {
            Ok(_) => panic!("{patch} loaded; {field} should have been refused"),
            Err(e) => e,
        };
        assert!(
            err.logged(field),
            "no log line names {field} for {patch}:\n{err}"
        );
    }
}

#[test]
fn a_configuration_that_is_not_json_fails_the_load() {
    for text in ["{", "[1, 2]", "\"x\"", "{\"cache\": 5}"] {
        let err = match host().envoy(text) {
            Ok(_) => panic!("{text:?} loaded"),
            Err(e) => e,
        };
        assert!(!err.logs.is_empty(), "{text:?}: {err}");
    }
}

#[test]
fn an_empty_configuration_means_the_spec_defaults() {
    let mut env = host().envoy("").unwrap_or_else(|e| panic!("{e}"));
    let out = env.request(Request::get("/health"));
    assert_eq!(out.status(), Some(200));
    // A quick first tick sends the first feed poll, then the default period.
    assert_eq!(env.tick_period(), Some(millis(50)));
    env.tick();
    assert_eq!(env.tick_period(), Some(millis(1000)));
}

#[test]
fn an_unknown_token_api_cluster_answers_503_and_says_which_setting() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0,
                                    "token_api": {"cluster": "no_such_cluster"}}));
    let t = token(3);
    let out = env.request(mcp(&t, &initialize(1)));
    let reply = out.replied();
    assert_eq!(reply.status, 503, "{out:#?}");
    assert!(reply.header("retry-after").is_some());
    assert!(
        env.log_text().contains("token_api.cluster"),
        "{}",
        env.log_text()
    );
    assert_no_secret_logged(&env, &[&t]);
}
