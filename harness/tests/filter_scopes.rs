//! docs/DESIGN.md §7, scopes: JSON-RPC bodies (single and batch) checked against the
//! token's scopes, `Mcp-Method` / `Mcp-Name` headers checked against the
//! body, body limits, and no buffering at all for `mcp:*` tokens.

#[path = "common/pw_support.rs"]
mod pw_support;

use harness::proxy_wasm::{Envoy, Outcome, Reply, Request};
use pw_support::*;
use serde_json::{json, Value};

const LIMITED: [&str; 3] = [
    "mcp:tools/list",
    "mcp:tools/call:list_*",
    "mcp:resources/read:file:///docs/*",
];

/// A worker where `token(1)` is cached with `scopes`.
fn worker_with(scopes: &[&str], patch: Value) -> (Envoy, String) {
    let mut env = envoy_with(merged(json!({"revocation_poll_ms": 0}), &patch));
    let t = token(1);
    let out = admit(&mut env, mcp(&t, &initialize(0)), &active(scopes));
    assert!(matches!(out, Outcome::Forwarded(_)), "{out:#?}");
    (env, t)
}

fn limited() -> (Envoy, String) {
    worker_with(&LIMITED, json!({}))
}

fn assert_allowed(out: &Outcome, body: &Value) {
    let fwd = out.forwarded();
    assert_eq!(
        &fwd.body.json(),
        body,
        "the body reaches the upstream intact"
    );
    assert_eq!(fwd.headers.get("x-mcp-tenant").as_deref(), Some("acme"));
}

fn assert_insufficient_scope(out: &Outcome, scope: &str, id: &Value) -> Reply {
    let reply = out.replied().clone();
    assert_eq!(reply.status, 403, "{out:#?}");
    assert!(reply.by_filter);
    let challenge = reply.header("www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer realm=\"mcp\""), "{challenge}");
    assert_eq!(
        challenge_error(&challenge).as_deref(),
        Some("insufficient_scope")
    );
    assert!(
        challenge.contains(&format!("scope=\"{scope}\"")),
        "{challenge} should name {scope}"
    );
    let body = reply.json();
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(&body["id"], id, "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    reply
}

#[test]
fn allowed_methods_and_tools_are_forwarded_untouched() {
    let (mut env, t) = limited();
    let bodies = [
        rpc(1, "tools/list", json!({})),
        tool_call(2, "list_files"),
        rpc(3, "resources/read", json!({"uri": "file:///docs/a.md"})),
    ];
    for body in &bodies {
        assert_allowed(&env.request(mcp(&t, body)), body);
    }
    assert!(env.callouts().is_empty());
}

#[test]
fn a_denied_tool_gets_403_naming_the_scope_with_the_request_id() {
    let (mut env, t) = limited();
    let out = env.request(mcp(&t, &tool_call(42, "delete_everything")));
    let reply = assert_insufficient_scope(&out, "mcp:tools/call:delete_everything", &json!(42));
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    // String ids come back as strings.
    let mut body = tool_call(0, "drop_db");
    body["id"] = json!("req-7");
    let out = env.request(mcp(&t, &body));
    assert_insufficient_scope(&out, "mcp:tools/call:drop_db", &json!("req-7"));
    assert_eq!(env.metric("mcp_auth.denied.scope"), 2);
}

#[test]
fn a_denied_method_names_the_method_scope() {
    let (mut env, t) = limited();
    let out = env.request(mcp(&t, &rpc(5, "prompts/list", json!({}))));
    assert_insufficient_scope(&out, "mcp:prompts/list", &json!(5));
    let out = env.request(mcp(
        &t,
        &rpc(6, "resources/read", json!({"uri": "file:///etc/passwd"})),
    ));
    let reply = out.replied();
    assert_eq!(reply.status, 403, "{out:#?}");
}

#[test]
fn the_first_request_of_a_token_is_checked_too() {
    // The body arrives while the callout is pending; it is checked once the
    // answer is in.
    let mut env = envoy();
    let t = token(1);
    let out = admit(&mut env, mcp(&t, &tool_call(9, "rm")), &active(&LIMITED));
    assert_insufficient_scope(&out, "mcp:tools/call:rm", &json!(9));
    let u = token(2);
    let body = tool_call(10, "list_x");
    let out = admit(&mut env, mcp(&u, &body), &active(&LIMITED));
    assert_allowed(&out, &body);
}

#[test]
fn a_batch_is_refused_whole_when_one_call_is_denied() {
    let (mut env, t) = limited();
    let batch = json!([
        rpc(1, "tools/list", json!({})),
        tool_call(2, "list_ok"),
        tool_call(3, "delete_it"),
        tool_call(4, "rm_it"),
    ]);
    let out = env.request(mcp(&t, &batch));
    assert_insufficient_scope(&out, "mcp:tools/call:delete_it", &json!(3));

    let ok = json!([rpc(1, "tools/list", json!({})), tool_call(2, "list_ok")]);
    assert_allowed(&env.request(mcp(&t, &ok)), &ok);
}

#[test]
fn lifecycle_traffic_and_responses_need_no_scope() {
    let (mut env, t) = worker_with(&[], json!({}));
    let bodies = [
        initialize(1),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        rpc(2, "ping", json!({})),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
        json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
        json!([initialize(4), {"jsonrpc": "2.0", "method": "notifications/initialized"}]),
    ];
    for body in &bodies {
        assert_allowed(&env.request(mcp(&t, body)), body);
    }
    let out = env.request(mcp(&t, &rpc(5, "tools/list", json!({}))));
    assert_insufficient_scope(&out, "mcp:tools/list", &json!(5));
}

#[test]
fn a_notification_named_like_a_request_is_still_checked() {
    let (mut env, t) = limited();
    let sneaky = json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "rm"}});
    assert_eq!(env.request(mcp(&t, &sneaky)).status(), Some(403));
}

#[test]
fn requests_without_a_body_pass_on_the_token_alone() {
    let (mut env, t) = limited();
    let out = env.request(
        Request::get("/mcp")
            .bearer(&t)
            .header("accept", "text/event-stream"),
    );
    assert_eq!(
        out.forwarded().headers.get("x-mcp-tenant").as_deref(),
        Some("acme")
    );
    let out = env.request(Request::new("DELETE", "/mcp").bearer(&t));
    assert_eq!(out.status(), Some(200));
}

#[test]
fn mcp_method_and_name_headers_that_lie_get_400_minus_32020() {
    let (mut env, t) = worker_with(&["mcp:*"], json!({}));
    let cases = [
        (tool_call(1, "rm"), "tools/list", None),
        (tool_call(2, "rm"), "tools/call", Some("list_files")),
        (rpc(3, "tools/list", json!({})), "tools/list", Some("x")),
    ];
    for (body, method, name) in cases {
        let mut r = mcp(&t, &body).header("Mcp-Method", method);
        if let Some(n) = name {
            r = r.header("Mcp-Name", n);
        }
        let out = env.request(r);
        let reply = out.replied();
        assert_eq!(reply.status, 400, "{out:#?}");
        let json = reply.json();
        assert_eq!(json["error"]["code"], -32020, "{json}");
        assert_eq!(json["id"], body["id"], "{json}");
    }
    assert_eq!(env.metric("mcp_auth.denied.header_mismatch"), 3);
    // Honest headers pass.
    let body = tool_call(4, "rm");
    let out = env.request(
        mcp(&t, &body)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "rm"),
    );
    assert_allowed(&out, &body);
}

#[test]
fn lying_headers_are_caught_on_a_tokens_first_request_too() {
    let mut env = envoy();
    let t = token(1);
    let out = admit(
        &mut env,
        mcp(&t, &tool_call(1, "rm")).header("mcp-method", "ping"),
        &active(&LIMITED),
    );
    assert_eq!(out.replied().status, 400);
    assert_eq!(out.replied().json()["error"]["code"], -32020);
}

#[test]
fn a_body_that_is_not_json_rpc_is_refused_when_scopes_apply() {
    let (mut env, t) = limited();
    let out = env.request(
        Request::post("/mcp")
            .bearer(&t)
            .header("content-type", "application/json")
            .body(b"{not json".to_vec()),
    );
    let reply = out.replied();
    assert_eq!(reply.status, 400, "{out:#?}");
    assert_eq!(reply.json()["error"]["code"], -32700);
    // Invalid UTF-8 where the filter does not look (`arguments`): servers
    // refuse, substitute or misread it, so it is refused too.
    let mut body = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_a","arguments":{"q":""#.to_vec();
    body.extend_from_slice(b"\xf0\"}}}");
    let out = env.request(
        Request::post("/mcp")
            .bearer(&t)
            .header("content-type", "application/json")
            .body(body),
    );
    let reply = out.replied();
    assert_eq!(reply.status, 400, "{out:#?}");
    assert_eq!(reply.json()["error"]["code"], -32700);
    let out = env.request(mcp(&t, &json!("just a string")));
    assert_eq!(out.replied().json()["error"]["code"], -32600);
    let out = env.request(mcp(&t, &json!({"jsonrpc": "2.0", "id": 1, "method": 7})));
    assert_eq!(out.replied().json()["error"]["code"], -32600);
}

#[test]
fn a_body_over_max_body_bytes_gets_413_when_it_must_be_checked() {
    let (mut env, t) = worker_with(&LIMITED, json!({"max_body_bytes": 1000}));
    let big = rpc(1, "tools/list", json!({"cursor": "x".repeat(2000)}));
    let out = env.request(mcp(&t, &big));
    let reply = out.replied();
    assert_eq!(reply.status, 413, "{out:#?}");
    assert!(reply.by_filter, "the filter's own 413, not Envoy's");
    assert!(reply.json()["error"]["message"].is_string());
    // Streamed in chunks, the limit holds as well.
    let out = env.request(mcp(&t, &big).in_chunks(300));
    assert_eq!(out.replied().status, 413, "{out:#?}");
    assert_eq!(env.metric("mcp_auth.denied.body_too_large"), 2);
    // A body within the limit, in chunks, is checked whole.
    let small = tool_call(2, "list_a");
    assert_allowed(&env.request(mcp(&t, &small).in_chunks(7)), &small);
    let denied = tool_call(3, "rm_a");
    let out = env.request(mcp(&t, &denied).in_chunks(7));
    assert_insufficient_scope(&out, "mcp:tools/call:rm_a", &json!(3));
}

#[test]
fn an_mcp_star_token_is_never_buffered() {
    // Two MiB, streamed: above Envoy's buffer limit, so any buffering of it
    // would end in Envoy's own 413.
    let (mut env, t) = worker_with(&["mcp:*"], json!({}));
    let huge = tool_call(1, &"a".repeat(2 * 1024 * 1024));
    let out = env.request(mcp(&t, &huge).in_chunks(64 * 1024));
    assert_allowed(&out, &huge);
    // Whereas a limited token must buffer it, and cannot.
    let (mut env, t) = limited();
    let out = env.request(mcp(&t, &huge).in_chunks(64 * 1024));
    assert_eq!(out.replied().status, 413, "{out:#?}");
}

#[test]
fn with_enforce_scopes_off_only_the_token_is_checked() {
    let (mut env, t) = worker_with(&LIMITED, json!({"enforce_scopes": false}));
    let body = tool_call(1, "delete_everything");
    assert_allowed(&env.request(mcp(&t, &body)), &body);
}

#[test]
fn scope_globs_match_whole_names() {
    let (mut env, t) = worker_with(
        &["mcp:tools/call:list_*", "mcp:prompts/get:summary"],
        json!({}),
    );
    for (tool, allowed) in [
        ("list_", true),
        ("list_a_b", true),
        ("xlist_a", false),
        ("lis", false),
    ] {
        let out = env.request(mcp(&t, &tool_call(1, tool)));
        assert_eq!(out.status() == Some(200), allowed, "{tool}: {out:#?}");
    }
    let ok = rpc(2, "prompts/get", json!({"name": "summary"}));
    assert_allowed(&env.request(mcp(&t, &ok)), &ok);
    let out = env.request(mcp(&t, &rpc(3, "prompts/get", json!({"name": "summary2"}))));
    assert_insufficient_scope(&out, "mcp:prompts/get:summary2", &json!(3));
}

/// What JSON parsers read differently never reaches a server: the review's
/// findings, each of which was forwarded before.
#[test]
fn bodies_that_servers_read_differently_are_refused() {
    let cases = [
        // Go's encoding/json runs tools/call; an exact reader sees a response.
        (
            &["mcp:tools/list"][..],
            r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"list_findings"}}"#,
        ),
        // Go takes the last case-insensitive "name".
        (
            &["mcp:tools/call:whoami"][..],
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","NAME":"list_findings"}}"#,
        ),
        (
            &["mcp:tools/call:whoami"][..],
            r#"{"jsonrpc":"2.0","id":1,"method\u0000":"tools/call","params":{"name":"list_findings"}}"#,
        ),
        (
            &["mcp:tools/call:whoami"][..],
            r#"{"jsonrpc":"2.0","id":1}"#,
        ),
        (
            &["mcp:tools/call:whoami"][..],
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"list_findings"}}"#,
        ),
    ];
    for (scopes, body) in cases {
        let (mut env, t) = worker_with(scopes, json!({}));
        let req = Request::post("/mcp")
            .bearer(&t)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec());
        let out = env.request(req);
        let reply = out.replied();
        assert_eq!(reply.status, 400, "{body}: {out:#?}");
        let answer = reply.json();
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
        assert_eq!(answer["id"], 1, "{answer}");
        assert_eq!(env.metric("mcp_auth.denied.bad_body"), 1);
    }
}

#[test]
fn resource_uris_cannot_climb_out_of_their_scope() {
    let (mut env, t) = worker_with(&["mcp:resources/read:file:///srv/public/*"], json!({}));
    for uri in [
        "file:///srv/public/../../etc/shadow",
        "file:///srv/public/%2e%2e/%2E%2E/etc/shadow",
        "file:///srv/public/.%2e/secret",
        "file:///srv/public/..%2Fsecret",
        "file:///srv/public/%252e%252e/secret",
    ] {
        let out = env.request(mcp(&t, &rpc(3, "resources/read", json!({"uri": uri}))));
        let reply = assert_insufficient_scope(&out, "mcp:resources/read", &json!(3));
        assert_eq!(
            reply.json()["error"]["data"]["required_scope"],
            "mcp:resources/read"
        );
    }
    // Names no pattern can hold: the 403 names the method-wide scope.
    for uri in ["", "%66ile:///srv/public/a.md"] {
        let out = env.request(mcp(&t, &rpc(3, "resources/read", json!({"uri": uri}))));
        let reply = assert_insufficient_scope(&out, "mcp:resources/read", &json!(3));
        assert_eq!(
            reply.json()["error"]["data"]["required_scope"],
            "mcp:resources/read",
            "{uri:?}"
        );
    }
    for uri in ["file:///srv/public/a.md", "FILE:///srv/public/%61.md"] {
        let body = rpc(4, "resources/read", json!({"uri": uri}));
        assert_allowed(&env.request(mcp(&t, &body)), &body);
    }
}

#[test]
fn a_tool_name_with_a_star_is_named_escaped_in_the_403() {
    let (mut env, t) = limited();
    let out = env.request(mcp(&t, &tool_call(5, "drop*")));
    let reply = out.replied();
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.json()["error"]["data"]["required_scope"],
        "mcp:tools/call:drop\\*"
    );
    // The challenge cannot carry a backslash: it names the method-wide scope.
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("scope=\"mcp:tools/call\""),
        "{challenge}"
    );
}

#[test]
fn repeated_mcp_method_or_name_headers_are_refused() {
    let (mut env, t) = worker_with(&["mcp:*"], json!({}));
    for (name, values) in [
        ("mcp-method", ["tools/call", "tools/call"]),
        ("mcp-name", ["whoami", "x"]),
    ] {
        let mut req = mcp(&t, &tool_call(6, "whoami"));
        for v in values {
            req = req.header(name, v);
        }
        let out = env.request(req);
        let reply = out.replied();
        assert_eq!(reply.status, 400, "{name}: {out:#?}");
        assert_eq!(reply.json()["error"]["code"], -32020);
        assert!(reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than once"));
    }
    assert_eq!(env.metric("mcp_auth.denied.header_mismatch"), 2);
}
