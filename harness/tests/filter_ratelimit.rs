//! docs/DESIGN.md §7, rate limits: the real `filter.wasm` enforces each token's
//! `rate_limit` from introspection across the workers of one Envoy, through
//! shared data with compare-and-swap, and answers 429 with `Retry-After`, the
//! IETF `RateLimit-Policy` / `RateLimit` fields and, for a JSON-RPC call, a
//! JSON-RPC error carrying the call's id.

#[path = "common/pw_support.rs"]
mod pw_support;

use std::sync::{Arc, Mutex};

use harness::proxy_wasm::{Envoy, Outcome, Request};
use pw_support::*;
use serde_json::{json, Value};

/// An `mcp:*` answer with a rate limit.
fn limited(requests: u32, window_s: u32, burst: u32) -> Value {
    let mut a = all_mcp();
    a["rate_limit"] = json!({"requests": requests, "window_s": window_s, "burst": burst});
    a
}

/// A worker where `token(1)` is cached with `answer`; the admitting request
/// counts against the limit.
fn cached(answer: &Value) -> (Envoy, String) {
    let mut env = envoy();
    let t = token(1);
    let out = admit(&mut env, mcp(&t, &initialize(0)), answer);
    assert!(matches!(out, Outcome::Forwarded(_)), "{out:#?}");
    (env, t)
}

fn slot_of(t: &str) -> String {
    format!("mcp_auth.l.token_api.{}", &sha(t)[..3])
}

fn statuses(env: &mut Envoy, t: &str, n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| {
            env.request(mcp(t, &tool_call(i as u64 + 1, "whoami")))
                .status()
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn a_limited_token_gets_its_burst_then_429_with_the_ietf_fields() {
    let (mut env, t) = cached(&limited(5, 60, 5));
    assert_eq!(
        statuses(&mut env, &t, 4),
        vec![200; 4],
        "4 more fit the burst of 5"
    );
    let out = env.request(mcp(&t, &tool_call(42, "whoami")));
    let r = out.replied();
    assert_eq!(r.status, 429, "{out:#?}");
    assert!(r.by_filter);
    // 5 a minute: the next one fits in 12 s.
    assert_eq!(r.header("retry-after").as_deref(), Some("12"));
    assert_eq!(
        r.header("ratelimit-policy").as_deref(),
        Some("\"token\";q=5;w=60")
    );
    assert_eq!(r.header("ratelimit").as_deref(), Some("\"token\";r=0;t=12"));
    let body = r.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(
        body["id"], 42,
        "the JSON-RPC error answers the call: {body}"
    );
    assert_eq!(body["error"]["code"], -32029);
    assert_eq!(body["error"]["data"]["retry_after_s"], 12);
    assert_eq!(env.metric("mcp_auth.denied.rate_limited"), 1);
    assert_eq!(env.metric("mcp_auth.allowed"), 5);
}

#[test]
fn the_bucket_refills_at_the_limit_rate() {
    // 5 per 20 s: one every 4 s (all within the 30 s the decision is cached).
    let (mut env, t) = cached(&limited(5, 20, 5));
    assert_eq!(statuses(&mut env, &t, 5), vec![200, 200, 200, 200, 429]);
    env.advance(secs(3));
    assert_eq!(
        statuses(&mut env, &t, 1),
        vec![429],
        "not yet: 4 s a request"
    );
    env.advance(secs(1));
    assert_eq!(statuses(&mut env, &t, 2), vec![200, 429]);
    env.advance(secs(20));
    assert_eq!(
        statuses(&mut env, &t, 6),
        vec![200, 200, 200, 200, 200, 429]
    );
}

#[test]
fn a_request_without_a_body_gets_the_api_error_shape_at_once() {
    let (mut env, t) = cached(&limited(1, 60, 1));
    let out = env.request(Request::get("/mcp").bearer(&t));
    let r = out.replied();
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1/m"));
    assert_eq!(r.header("retry-after").as_deref(), Some("60"));
}

#[test]
fn a_throttled_call_with_a_body_is_held_for_its_id_and_never_forwarded() {
    let (mut env, t) = cached(&limited(1, 60, 1));
    // A batch answers with its first request's id; the body comes in pieces.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "b-1", "method": "tools/call", "params": {"name": "x"}},
    ]);
    let out = env.request(mcp(&t, &batch).in_chunks(7));
    let r = out.replied();
    assert_eq!(r.status, 429, "{out:#?}");
    assert_eq!(r.json()["id"], Value::Null, "the notification comes first");
    let out = env.request(mcp(&t, &json!([tool_call(9, "x")])).in_chunks(5));
    assert_eq!(out.replied().json()["id"], 9);
    // Not JSON-RPC at all: still 429, in the API error shape.
    let out = env.request(
        Request::post("/mcp")
            .bearer(&t)
            .header("content-type", "application/json")
            .body(b"{not json".to_vec()),
    );
    assert_eq!(out.replied().status, 429);
    assert_eq!(out.replied().json()["error"]["code"], "rate_limited");
}

#[test]
fn a_held_request_carries_the_hold_header_and_no_credential() {
    // The headers must go on for the body to come: what a route sees then.
    let (mut env, t) = cached(&limited(1, 60, 1));
    let out = env.request(
        mcp(&t, &tool_call(3, "x"))
            .header("x-mcp-hold", "spoofed")
            .in_chunks(4),
    );
    let r = out.replied();
    assert_eq!(r.status, 429);
    let h = &r.request_headers;
    assert_eq!(h.get("x-mcp-hold").as_deref(), Some("rate_limited"));
    assert_eq!(
        h.get_all("x-mcp-hold").len(),
        1,
        "the client's copy was stripped"
    );
    assert_eq!(h.get("authorization"), None);
    assert_eq!(h.get("x-mcp-tenant").as_deref(), Some("acme"));
    // A request without a body is answered at once: no hold.
    let out = env.request(Request::get("/mcp").bearer(&t));
    assert_eq!(out.replied().request_headers.get("x-mcp-hold"), None);
}

#[test]
fn a_token_without_a_limit_does_no_rate_limit_work() {
    let (mut env, t) = cached(&all_mcp());
    let before = env.shared_data(&slot_of(&t));
    assert_eq!(
        before.as_deref(),
        Some(&[1u8][..]),
        "every slot is created empty at configuration"
    );
    assert_eq!(statuses(&mut env, &t, 50), vec![200; 50]);
    assert_eq!(
        env.shared_data(&slot_of(&t)),
        before,
        "its slot was never written"
    );
    assert_eq!(env.metric("mcp_auth.denied.rate_limited"), 0);
}

#[test]
fn with_enforcement_off_limits_are_not_applied() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "rate_limit": {"enforce": false}}));
    let t = token(1);
    admit(&mut env, mcp(&t, &initialize(0)), &limited(1, 60, 1));
    assert_eq!(statuses(&mut env, &t, 10), vec![200; 10]);
}

#[test]
fn two_workers_spend_one_bucket() {
    let (mut a, t) = cached(&limited(4, 60, 4));
    let mut b = host().worker_sharing(&a).unwrap();
    // b finds the decision in shared data, and the units a left.
    assert_eq!(statuses(&mut b, &t, 2), vec![200, 200]);
    assert_eq!(b.metric("mcp_auth.cache.shared_hits"), 1);
    assert_eq!(statuses(&mut a, &t, 1), vec![200]);
    assert_eq!(statuses(&mut b, &t, 1), vec![429]);
    assert_eq!(statuses(&mut a, &t, 1), vec![429]);
}

#[test]
fn a_busy_token_leases_units_and_two_workers_never_exceed_its_bucket() {
    // A burst of 1200: each worker may take up to 12 units (1/100) at a
    // time from the shared slot and spend them without touching it.
    let (mut a, t) = cached(&limited(12_000, 60, 1200));
    let mut b = host().worker_sharing(&a).unwrap();
    let slot = slot_of(&t);
    let mut last = a.shared_data(&slot);
    let (mut allowed, mut writes) = (1, 0);
    for i in 0..1500u64 {
        let env = if i % 2 == 0 { &mut a } else { &mut b };
        if env.request(mcp(&t, &tool_call(i + 1, "x"))).status() == Some(200) {
            allowed += 1;
        }
        let now = a.shared_data(&slot);
        if now != last {
            writes += 1;
            last = now;
        }
    }
    assert!(
        allowed <= 1200,
        "{allowed} let through, the bucket holds 1200"
    );
    assert!(
        allowed >= 1200 - 2 * 12,
        "{allowed}: at most a lease per worker may be held back"
    );
    assert!(
        writes * 5 < allowed,
        "{writes} slot writes for {allowed} requests: leases should spare most"
    );
    // Refilled 10 s later (200 a second): the held units are given back with
    // the next acquisition, and the token goes on.
    a.advance(secs(10));
    b.advance(secs(10));
    assert_eq!(statuses(&mut a, &t, 3), vec![200; 3]);
}

#[test]
fn a_race_between_workers_is_decided_again_never_counted_twice() {
    // One request every 10 s, no burst: each worker admits one in its own
    // period first, so both hold the decision.
    let (mut a, t) = cached(&limited(1, 10, 1));
    let b = Arc::new(Mutex::new(host().worker_sharing(&a).unwrap()));
    a.advance(secs(10));
    assert_eq!(statuses(&mut b.lock().unwrap(), &t, 1), vec![200]);
    a.advance(secs(10));

    // a reads the slot (one unit left) and, before its compare-and-swap, b
    // spends that unit on the same value.
    let (b2, t2) = (b.clone(), t.clone());
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    a.before_shared_write(&slot_of(&t), move || {
        let out = b2.lock().unwrap().request(mcp(&t2, &tool_call(2, "x")));
        *seen2.lock().unwrap() = out.status();
    });
    let out = a.request(mcp(&t, &tool_call(1, "x")));
    assert_eq!(*seen.lock().unwrap(), Some(200), "b got the unit");
    assert_eq!(out.status(), Some(429), "a lost the race and decided again");
    assert_eq!(a.metric("mcp_auth.ratelimit.cas_retries"), 1);
}

#[test]
fn losing_a_race_with_a_refusal_costs_nothing_more() {
    // b's refused request writes nothing, so a's write still goes through.
    let (mut a, t) = cached(&limited(2, 60, 2));
    let b = Arc::new(Mutex::new(host().worker_sharing(&a).unwrap()));
    assert_eq!(statuses(&mut b.lock().unwrap(), &t, 1), vec![200]);
    let (b2, t2) = (b.clone(), t.clone());
    a.before_shared_write(&slot_of(&t), move || {
        // b sees the bucket spent only after a's write; here it is not yet.
        let out = b2.lock().unwrap().request(Request::get("/mcp").bearer(&t2));
        assert_eq!(out.status(), Some(200), "{out:#?}");
    });
    // a decided on "one left"; b took it meanwhile: a must be refused.
    let out = a.request(mcp(&t, &tool_call(1, "x")));
    assert_eq!(out.status(), Some(429));
    assert_eq!(statuses(&mut a, &t, 1), vec![429]);
}

#[test]
fn a_changed_token_is_asked_again_and_its_new_limit_applies() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 1000}));
    // The first poll starts at the head.
    env.tick();
    let poll = feed_polls(&env).remove(0);
    env.answer(
        poll.id,
        200,
        &json!({"cursor": "e.1", "revoked": [], "more": false}),
    );
    let t = token(1);
    admit(&mut env, mcp(&t, &initialize(0)), &limited(100, 60, 100));
    assert_eq!(statuses(&mut env, &t, 3), vec![200; 3]);
    // The operator lowers the limit: the feed says the token changed.
    env.advance(secs(1));
    let poll = feed_polls(&env).remove(0);
    env.answer(
        poll.id,
        200,
        &json!({"cursor": "e.2", "revoked": [], "changed": [sha(&t)], "more": false}),
    );
    // Dropped here and in the shared bucket.
    assert_eq!(env.metric("mcp_auth.changes_applied"), 2);
    let out = admit(&mut env, mcp(&t, &tool_call(7, "x")), &limited(1, 3600, 1));
    // Four units 0.6 s apart were spent 1 s ago: under a limit of one an
    // hour, the bucket is not back for another 1.4 s.
    assert_eq!(out.status(), Some(429), "{out:#?}");
    assert_eq!(out.replied().json()["id"], 7);
    assert_eq!(out.replied().header("retry-after").as_deref(), Some("2"));
    // Still active: a changed token is not a revoked one.
    env.advance(secs(2));
    assert_eq!(statuses(&mut env, &t, 2), vec![200, 429]);
}

#[test]
fn a_stale_decision_keeps_its_limit() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "cache": {"ttl_s": 1}}));
    let t = token(1);
    admit(&mut env, mcp(&t, &initialize(0)), &limited(2, 3600, 2));
    env.advance(secs(2));
    // The token API is down: the stale decision is used, limit included.
    let stream = env.send(mcp(&t, &tool_call(1, "x")));
    let c = the_introspection(&env);
    env.fail(c.id);
    assert_eq!(env.outcome(stream).status(), Some(200));
    assert_eq!(env.metric("mcp_auth.stale_serves"), 1);
    assert_eq!(statuses(&mut env, &t, 1), vec![429]);
}

#[test]
fn a_limit_the_gateway_cannot_read_is_never_unlimited() {
    let mut env = envoy();
    let t = token(1);
    let mut answer = all_mcp();
    answer["rate_limit"] = json!({"requests": 0, "window_s": 60, "burst": 0});
    let out = admit(&mut env, mcp(&t, &initialize(0)), &answer);
    assert_eq!(out.status(), Some(503), "{out:#?}");
    assert_eq!(env.metric("mcp_auth.callout_failures"), 1);
}

#[test]
fn many_limited_tokens_share_slots_without_losing_their_own_count() {
    let mut env = envoy();
    let tokens: Vec<String> = (1..=40).map(token).collect();
    for t in &tokens {
        admit(&mut env, mcp(t, &initialize(0)), &limited(2, 3600, 2));
    }
    for t in &tokens {
        assert_eq!(statuses(&mut env, t, 2), vec![200, 429], "{}", &sha(t)[..8]);
    }
}
