//! docs/DESIGN.md §7, the request record: every request leaves one
//! filter-state value `wasm.mcp_auth` (what Envoy's access log writes) saying
//! what was decided, why, for which token and which tool, and how the
//! decision was found; never a raw token.

#[path = "common/pw_support.rs"]
mod pw_support;

use harness::proxy_wasm::{Envoy, Outcome, Request};
use pw_support::*;
use serde_json::{json, Value};

const KEY: &str = "wasm.mcp_auth";

fn record(out: &Outcome) -> Value {
    out.filter_state_json(KEY)
        .unwrap_or_else(|| panic!("no record: {out:#?}"))
}

fn cached(answer: &Value) -> (Envoy, String) {
    let mut env = envoy();
    let t = token(1);
    let out = admit(&mut env, mcp(&t, &initialize(0)), answer);
    assert!(matches!(out, Outcome::Forwarded(_)), "{out:#?}");
    (env, t)
}

#[test]
fn an_allowed_call_records_token_tool_and_cache_outcome() {
    let mut env = envoy();
    let t = token(1);
    let out = admit(&mut env, mcp(&t, &tool_call(1, "whoami")), &all_mcp());
    assert_eq!(
        record(&out),
        json!({"decision": "allow", "cache": "callout",
               "token_id": "tok_01JD0000000000000000000000", "token_name": "laptop",
               "tenant": "acme", "project": "default", "token_sha": sha(&t),
               "method": "tools/call", "name": "whoami"})
    );
    // The body reached the upstream whole after being read for the record.
    assert_eq!(out.forwarded().body.json(), tool_call(1, "whoami"));
    let out = env.request(mcp(
        &t,
        &rpc(2, "resources/read", json!({"uri": "file:///a"})),
    ));
    let r = record(&out);
    assert_eq!(r["cache"], "hit");
    assert_eq!(r["method"], "resources/read");
    assert_eq!(r["name"], "file:///a");
    // A GET for the event stream has no call to record.
    let out = env.request(Request::get("/mcp").bearer(&t));
    let r = record(&out);
    assert_eq!(r["decision"], "allow");
    assert!(r.get("method").is_none(), "{r}");
}

#[test]
fn another_workers_answer_is_a_shared_hit() {
    let (a, t) = cached(&all_mcp());
    let mut b = host().worker_sharing(&a).unwrap();
    let out = b.request(mcp(&t, &tool_call(1, "x")));
    assert_eq!(record(&out)["cache"], "shared");
}

#[test]
fn denials_record_their_reason() {
    let mut env = envoy();
    let t = token(1);
    let cases: Vec<(Request, &str)> = vec![
        (Request::post("/mcp"), "missing_token"),
        (
            Request::post("/mcp").bearer("mcpctl_pat_short"),
            "malformed_token",
        ),
        (
            Request::post("/mcp?access_token=x").bearer(&t),
            "token_in_query",
        ),
    ];
    for (req, reason) in cases {
        let out = env.request(req);
        assert_eq!(
            record(&out),
            json!({"decision": "deny", "reason": reason}),
            "{out:#?}"
        );
    }
    for (answer, reason) in [
        (inactive("revoked"), "revoked"),
        (inactive("expired"), "expired"),
        (inactive("unknown"), "unknown_token"),
    ] {
        let mut env = envoy();
        let out = admit(&mut env, mcp(&t, &initialize(1)), &answer);
        let r = record(&out);
        assert_eq!(r["reason"], reason, "{r}");
        assert_eq!(r["token_sha"], sha(&t), "a dead token is named by its hash");
        assert_eq!(r["cache"], "callout");
    }
}

#[test]
fn a_scope_denial_names_the_tool_it_refused() {
    let (mut env, t) = cached(&active(&["mcp:tools/list"]));
    let out = env.request(mcp(&t, &tool_call(5, "delete_everything")));
    assert_eq!(out.status(), Some(403));
    let r = record(&out);
    assert_eq!(r["decision"], "deny");
    assert_eq!(r["reason"], "insufficient_scope");
    assert_eq!(r["method"], "tools/call");
    assert_eq!(r["name"], "delete_everything");
    assert_eq!(r["token_id"], "tok_01JD0000000000000000000000");
}

#[test]
fn an_outage_records_unavailable_then_stale() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "cache": {"ttl_s": 1}}));
    let t = token(1);
    let stream = env.send(mcp(&t, &initialize(1)));
    let c = the_introspection(&env);
    env.fail(c.id);
    let out = env.outcome(stream);
    assert_eq!(out.status(), Some(503));
    assert_eq!(record(&out)["reason"], "token_api_unavailable");
    admit(&mut env, mcp(&t, &initialize(1)), &all_mcp());
    env.advance(secs(2));
    let stream = env.send(mcp(&t, &initialize(2)));
    let c = the_introspection(&env);
    env.fail(c.id);
    let out = env.outcome(stream);
    assert_eq!(out.status(), Some(200));
    assert_eq!(record(&out)["cache"], "stale");
}

#[test]
fn a_rate_limited_call_records_the_limit_and_the_wait() {
    let mut answer = all_mcp();
    answer["rate_limit"] = json!({"requests": 1, "window_s": 60, "burst": 1});
    let (mut env, t) = cached(&answer);
    let out = env.request(mcp(&t, &tool_call(2, "whoami")));
    let r = record(&out);
    assert_eq!(r["reason"], "rate_limited");
    assert_eq!(r["rate_limit"], "1/m");
    assert_eq!(r["retry_after_s"], 60);
    assert_eq!(r["token_name"], "laptop");
}

#[test]
fn a_bypass_is_recorded_as_such() {
    let mut env = envoy();
    let out = env.request(Request::get("/health").bearer(&token(1)));
    assert_eq!(record(&out), json!({"decision": "bypass"}));
}

#[test]
fn the_record_can_be_turned_off_or_kept_from_reading_bodies() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "record": {"property": null}}));
    let t = token(1);
    let out = admit(&mut env, mcp(&t, &tool_call(1, "x")), &all_mcp());
    assert!(out.forwarded().filter_state.is_empty());

    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "record": {"read_body": false}}));
    let out = admit(&mut env, mcp(&t, &tool_call(1, "x")), &all_mcp());
    let r = record(&out);
    assert_eq!(r["decision"], "allow");
    assert!(r.get("method").is_none(), "{r}");

    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "record": {"property": "audit.mcp"}}));
    let out = admit(&mut env, mcp(&t, &tool_call(1, "x")), &all_mcp());
    assert!(out.filter_state_json("wasm.audit.mcp").is_some());
}

#[test]
fn a_large_body_goes_on_unread() {
    let (mut env, t) = cached(&all_mcp());
    let huge = tool_call(1, &"a".repeat(200 * 1024));
    let out = env.request(mcp(&t, &huge).in_chunks(16 * 1024));
    assert_eq!(out.forwarded().body.json(), huge);
    let r = record(&out);
    assert_eq!(r["decision"], "allow");
    assert!(r.get("method").is_none(), "{r}");
}

#[test]
fn no_record_holds_a_raw_token() {
    let mut env = envoy();
    let t = token(1);
    let mut outs = vec![admit(&mut env, mcp(&t, &tool_call(1, "x")), &all_mcp())];
    outs.push(env.request(Request::post("/mcp").bearer(&token(2)[..40])));
    outs.push(env.request(mcp(&t, &tool_call(2, &t))));
    for out in outs {
        for value in match &out {
            Outcome::Forwarded(f) => f.filter_state.values().collect::<Vec<_>>(),
            Outcome::Replied(r) => r.filter_state.values().collect(),
            other => panic!("{other:#?}"),
        } {
            let text = String::from_utf8_lossy(value);
            assert!(
                !text.contains(&t[12..]) && !text.contains("mcpctl_pat_"),
                "a token leaked into the record: {text}"
            );
        }
    }
}
