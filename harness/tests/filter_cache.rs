//! docs/DESIGN.md §7, the token path: introspection callouts, what an answer does to
//! the request, the cache (hits, negative entries, TTLs, bound), coalescing,
//! and what happens when the token API fails.

#[path = "common/pw_support.rs"]
mod pw_support;

use std::collections::HashMap;
use std::time::Duration;

use harness::proxy_wasm::{Envoy, Outcome, Response};
use pw_support::*;
use serde_json::{json, Value};

fn assert_routed_to(out: &Outcome, tenant: &str) {
    let fwd = out.forwarded();
    assert_eq!(fwd.headers.get("x-mcp-tenant").as_deref(), Some(tenant));
    assert!(
        !fwd.headers.contains("authorization"),
        "the token went upstream: {fwd:#?}"
    );
}

fn assert_unavailable(out: &Outcome) {
    let reply = out.replied();
    assert_eq!(reply.status, 503, "{out:#?}");
    assert!(reply.by_filter, "{out:#?}");
    let retry: u64 = reply
        .header("retry-after")
        .expect("Retry-After on a 503")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1);
    assert!(reply.json()["error"]["code"].is_string());
}

#[test]
fn a_miss_makes_one_callout_carrying_the_token_as_its_bearer() {
    let mut env = envoy();
    let t = token(1);
    let stream = env.send(mcp(&t, &initialize(1)));
    let out = env.outcome(stream);
    let callout = the_introspection(&env);
    assert_eq!(out.paused().callouts, vec![callout.id]);
    assert_eq!(callout.cluster, "token_api");
    assert_eq!(callout.header(":method").as_deref(), Some("GET"));
    assert_eq!(callout.header(":path").as_deref(), Some(INTROSPECT_PATH));
    assert_eq!(callout.header(":authority").as_deref(), Some("token-api"));
    assert_eq!(callout.header("authorization"), Some(format!("Bearer {t}")));
    assert_eq!(callout.timeout, Some(millis(500)));
    assert!(callout.body.is_empty());
    assert_eq!(callout.stream, Some(stream));
    assert_eq!(env.metric("mcp_auth.cache.misses"), 1);
    assert_eq!(env.metric("mcp_auth.callouts"), 1);
}

#[test]
fn an_active_token_is_forwarded_with_routing_headers_and_without_authorization() {
    let mut env = envoy();
    let t = token(1);
    let body = initialize(7);
    let answer = json!({
        "active": true, "token_id": "tok_01JD5X", "name": "ci runner",
        "tenant": "globex", "project": "billing", "scopes": ["mcp:*"],
        "exp": null, "iat": 1_799_000_000u64, "cache_ttl_s": 30
    });
    let out = admit(&mut env, mcp(&t, &body), &answer);
    let fwd = out.forwarded();
    assert!(!fwd.headers.contains("authorization"), "{fwd:#?}");
    assert_eq!(fwd.headers.get("x-mcp-tenant").as_deref(), Some("globex"));
    assert_eq!(fwd.headers.get("x-mcp-project").as_deref(), Some("billing"));
    assert_eq!(
        fwd.headers.get("x-mcp-token-id").as_deref(),
        Some("tok_01JD5X")
    );
    assert_eq!(
        fwd.headers.get("x-mcp-token-name").as_deref(),
        Some("ci runner")
    );
    assert_eq!(fwd.headers.get(":path").as_deref(), Some("/mcp"));
    assert_eq!(
        fwd.body.json(),
        body,
        "the body reaches the upstream intact"
    );
    // Envoy must pick the route again on the new headers: under this ABI
    // the header changes do it (tests/filter_abi.rs).
    assert!(fwd.route_cache_clears >= 1);
    assert_eq!(env.metric("mcp_auth.allowed"), 1);
    assert_no_secret_logged(&env, &[&t]);
}

#[test]
fn routing_headers_follow_the_configured_names() {
    let mut env = envoy_with(json!({
        "revocation_poll_ms": 0,
        "headers": {"strip_prefix": "x-gw-", "tenant": "x-gw-t", "project": "x-gw-p",
                    "token_id": "x-gw-id", "token_name": "x-gw-name"}
    }));
    let t = token(1);
    let out = admit(
        &mut env,
        mcp(&t, &initialize(1)).header("x-gw-t", "spoofed"),
        &all_mcp(),
    );
    let h = &out.forwarded().headers;
    assert_eq!(h.get_all("x-gw-t"), vec!["acme"]);
    assert_eq!(h.get("x-gw-p").as_deref(), Some("default"));
    assert_eq!(h.get("x-gw-name").as_deref(), Some("laptop"));
    assert!(!h.contains("x-mcp-tenant"));
}

#[test]
fn a_cached_decision_needs_no_callout() {
    let mut env = envoy();
    let t = token(1);
    assert_routed_to(&admit_all(&mut env, &t), "acme");
    env.advance(secs(20));
    let out = env.request(mcp(&t, &tool_call(2, "anything")));
    assert_routed_to(&out, "acme");
    assert!(env.callouts().is_empty());
    assert_eq!(env.metric("mcp_auth.callouts"), 1);
    assert_eq!(env.metric("mcp_auth.cache.hits"), 1);
    assert_eq!(env.metric("mcp_auth.allowed"), 2);
}

#[test]
fn the_positive_ttl_is_the_smaller_of_ttl_s_and_the_answers_cache_ttl_s() {
    // ttl_s 30 against cache_ttl_s 60: 30 s.
    let mut env = envoy();
    let t = token(1);
    admit_all(&mut env, &t);
    env.advance(secs(29));
    assert_routed_to(&env.request(mcp(&t, &initialize(2))), "acme");
    env.advance(secs(2));
    env.send(mcp(&t, &initialize(3)));
    the_introspection(&env);

    // cache_ttl_s 5 against ttl_s 30: 5 s.
    let mut env = envoy();
    let mut short = all_mcp();
    short["cache_ttl_s"] = json!(5);
    admit(&mut env, mcp(&t, &initialize(1)), &short).forwarded();
    env.advance(secs(4));
    assert_routed_to(&env.request(mcp(&t, &initialize(2))), "acme");
    env.advance(secs(2));
    env.send(mcp(&t, &initialize(3)));
    the_introspection(&env);
}

#[test]
fn a_cached_decision_never_outlives_the_tokens_exp() {
    let mut env = envoy();
    let t = token(1);
    let mut answer = all_mcp();
    answer["exp"] = json!(now_s(&env) + 10);
    admit(&mut env, mcp(&t, &initialize(1)), &answer).forwarded();
    env.advance(secs(9));
    assert_routed_to(&env.request(mcp(&t, &initialize(2))), "acme");
    assert!(env.callouts().is_empty());
    env.advance(secs(2));
    let stream = env.send(mcp(&t, &initialize(3)));
    let callout = the_introspection(&env);
    env.answer(callout.id, 200, &inactive("expired"));
    assert_eq!(env.outcome(stream).status(), Some(401));
}

#[test]
fn an_active_answer_already_past_exp_is_refused() {
    let mut env = envoy();
    let t = token(1);
    let mut answer = all_mcp();
    answer["exp"] = json!(now_s(&env) - 1);
    let out = admit(&mut env, mcp(&t, &initialize(1)), &answer);
    let reply = out.replied();
    assert_eq!(reply.status, 401);
    assert_eq!(
        challenge_error(&reply.header("www-authenticate").unwrap()).as_deref(),
        Some("invalid_token")
    );
}

#[test]
fn unknown_revoked_and_expired_tokens_get_401_and_are_negative_cached() {
    for (n, reason) in ["unknown", "revoked", "expired", "malformed"]
        .iter()
        .enumerate()
    {
        let mut env = envoy();
        let t = token(10 + n as u8);
        let out = admit(&mut env, mcp(&t, &initialize(1)), &inactive(reason));
        let reply = out.replied();
        assert_eq!(reply.status, 401, "{reason}: {out:#?}");
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer realm=\"mcp\""), "{challenge}");
        assert_eq!(
            challenge_error(&challenge).as_deref(),
            Some("invalid_token"),
            "{reason}"
        );
        assert!(reply.json()["error"]["message"].is_string());

        // Within negative_ttl_s (5 s): refused again, without a callout.
        env.advance(millis(4900));
        let again = env.request(mcp(&t, &initialize(2)));
        assert_eq!(again.status(), Some(401), "{reason}: {again:#?}");
        assert!(
            env.callouts().is_empty(),
            "{reason}: negative entry not used"
        );

        // After it: asked again.
        env.advance(millis(200));
        env.send(mcp(&t, &initialize(3)));
        the_introspection(&env);
        assert_eq!(env.metric("mcp_auth.callouts"), 2, "{reason}");
        assert_eq!(env.metric("mcp_auth.denied.invalid"), 2, "{reason}");
        assert_no_secret_logged(&env, &[&t]);
    }
}

#[test]
fn concurrent_misses_for_one_token_make_one_callout_and_all_resume() {
    let mut env = envoy();
    let t = token(1);
    let streams: Vec<_> = (0..5)
        .map(|i| env.send(mcp(&t, &tool_call(i, "search"))))
        .collect();
    let callout = the_introspection(&env);
    for (i, s) in streams.iter().enumerate() {
        let paused = env.outcome(*s);
        let expected = if i == 0 { vec![callout.id] } else { vec![] };
        assert_eq!(paused.paused().callouts, expected);
    }
    env.answer(callout.id, 200, &all_mcp());
    for (i, s) in streams.iter().enumerate() {
        let out = env.outcome(*s);
        assert_routed_to(&out, "acme");
        // Each stream keeps its own body.
        assert_eq!(out.forwarded().body.json()["id"], json!(i));
    }
    assert_eq!(env.metric("mcp_auth.callouts"), 1);
    assert_eq!(env.metric("mcp_auth.coalesced_waits"), 4);
    assert_eq!(env.metric("mcp_auth.allowed"), 5);
}

#[test]
fn coalesced_requests_share_a_refusal_or_a_failure_too() {
    let mut env = envoy();
    let t = token(1);
    let streams: Vec<_> = (0..3).map(|i| env.send(mcp(&t, &initialize(i)))).collect();
    env.answer(the_introspection(&env).id, 200, &inactive("revoked"));
    for s in &streams {
        assert_eq!(env.outcome(*s).status(), Some(401));
    }

    let u = token(2);
    let streams: Vec<_> = (0..3).map(|i| env.send(mcp(&u, &initialize(i)))).collect();
    env.fail(the_introspection(&env).id);
    for s in &streams {
        assert_unavailable(&env.outcome(*s));
    }
}

#[test]
fn different_tokens_make_separate_callouts_and_never_mix_answers() {
    let mut env = envoy();
    let (a, b) = (token(1), token(2));
    let sa = env.send(mcp(&a, &initialize(1)));
    let sb = env.send(mcp(&b, &initialize(2)));
    let pending = introspections(&env);
    assert_eq!(pending.len(), 2);
    let of = |who: &str| {
        pending
            .iter()
            .find(|c| c.header("authorization") == Some(format!("Bearer {who}")))
            .unwrap()
            .id
    };
    let (ca, cb) = (of(&a), of(&b));
    // Answered in the opposite order.
    let mut for_b = all_mcp();
    for_b["tenant"] = json!("globex");
    env.answer(cb, 200, &for_b);
    assert!(matches!(env.outcome(sa), Outcome::Paused(_)));
    assert_routed_to(&env.outcome(sb), "globex");
    env.answer(ca, 200, &all_mcp());
    assert_routed_to(&env.outcome(sa), "acme");
}

#[test]
fn a_waiter_is_served_when_the_request_that_made_the_callout_goes_away() {
    let mut env = envoy();
    let t = token(1);
    let first = env.send(mcp(&t, &initialize(1)));
    let second = env.send(mcp(&t, &initialize(2)));
    let callout = the_introspection(&env);
    env.disconnect(first);
    // Envoy still answers the callout, but the context that made it is gone.
    env.answer(callout.id, 200, &all_mcp());
    // The filter sends it again from its root context on the next tick.
    env.advance(secs(1));
    let again = the_introspection(&env);
    assert_eq!(again.stream, None);
    env.answer(again.id, 200, &all_mcp());
    assert_routed_to(&env.outcome(second), "acme");
    assert!(matches!(env.outcome(first), Outcome::Disconnected));
}

/// Tokens whose hashes share a shared-data bucket (first three hex digits).
fn same_bucket_tokens(n: usize) -> Vec<String> {
    let mut by_prefix: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0u32.. {
        let mut secret = [0x5a; 32];
        secret[..4].copy_from_slice(&i.to_le_bytes());
        let t = mcpgw_token::format::from_secret(&secret);
        let group = by_prefix.entry(sha(&t)[..3].to_string()).or_default();
        group.push(t);
        if group.len() == n {
            return group.clone();
        }
    }
    unreachable!()
}

#[test]
fn the_cache_is_bounded_by_max_entries() {
    // max_entries 2: the worker keeps two decisions, and a shared-data
    // bucket keeps two as well.
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "cache": {"max_entries": 2}}));
    let tokens = same_bucket_tokens(3);
    for t in &tokens {
        admit_all(&mut env, t).forwarded();
        env.advance(secs(1));
    }
    // The newest two are still cached.
    for t in &tokens[1..] {
        assert_routed_to(&env.request(mcp(t, &initialize(9))), "acme");
    }
    assert!(env.callouts().is_empty());
    // The oldest was evicted everywhere: asked again.
    env.send(mcp(&tokens[0], &initialize(9)));
    the_introspection(&env);
}

#[test]
fn many_tokens_through_a_small_cache_each_keep_their_own_tenant() {
    // max_entries 2 bounds the worker cache and the memo of token hashes
    // (emptied when full): tokens cycling through both must still each get
    // their own decision, never a neighbour's.
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "cache": {"max_entries": 2}}));
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli"];
    let tokens: Vec<String> = (1..=5).map(token).collect();
    for round in 0..4 {
        for (t, tenant) in tokens.iter().zip(tenants) {
            let stream = env.send(mcp(t, &initialize(round)));
            if let Outcome::Paused(_) = env.outcome(stream) {
                let callout = the_introspection(&env);
                assert_eq!(callout.header("authorization"), Some(format!("Bearer {t}")));
                let mut answer = all_mcp();
                answer["tenant"] = json!(tenant);
                env.answer(callout.id, 200, &answer);
            }
            assert_routed_to(&env.outcome(stream), tenant);
        }
    }
}

#[test]
fn past_max_entries_a_worker_falls_back_on_the_shared_layer() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "cache": {"max_entries": 2}}));
    let tokens: Vec<String> = (1..=3).map(token).collect();
    for t in &tokens {
        admit_all(&mut env, t).forwarded();
    }
    let shared_before = env.metric("mcp_auth.cache.shared_hits");
    assert_routed_to(&env.request(mcp(&tokens[0], &initialize(9))), "acme");
    assert!(env.callouts().is_empty());
    assert_eq!(env.metric("mcp_auth.cache.shared_hits"), shared_before + 1);
}

#[test]
fn token_api_failures_answer_503_with_retry_after_and_are_not_cached() {
    type Fail = fn(&mut Envoy, harness::proxy_wasm::CalloutId);
    let failures: Vec<(&str, Fail)> = vec![
        ("refused", |e, id| e.fail(id)),
        ("timed out", |e, id| e.time_out(id)),
        ("no response", |e, id| e.fail_without_response(id)),
        ("500", |e, id| {
            e.answer(id, 500, &json!({"error": {"code": "internal"}}))
        }),
        ("401", |e, id| {
            e.answer(id, 401, &json!({"error": {"code": "unauthorized"}}))
        }),
        ("not JSON", |e, id| {
            e.respond(
                id,
                Response::new(200, &[("content-type", "text/html")], b"<html>".to_vec()),
            )
        }),
        ("wrong shape", |e, id| {
            e.answer(id, 200, &json!({"active": "yes"}))
        }),
        ("no tenant", |e, id| {
            let mut a = all_mcp();
            a.as_object_mut().unwrap().remove("tenant");
            e.answer(id, 200, &a)
        }),
        ("bad scope", |e, id| e.answer(id, 200, &active(&["mcp:"]))),
        ("array", |e, id| e.answer(id, 200, &json!([1, 2]))),
    ];
    for (what, fail) in failures {
        let mut env = envoy();
        let t = token(1);
        let stream = env.send(mcp(&t, &initialize(1)));
        let id = the_introspection(&env).id;
        fail(&mut env, id);
        let out = env.outcome(stream);
        assert_unavailable(&out);
        assert_eq!(env.metric("mcp_auth.callout_failures"), 1, "{what}");
        assert_eq!(env.metric("mcp_auth.denied.unavailable"), 1, "{what}");
        // Nothing was cached: the next request asks again.
        env.send(mcp(&t, &initialize(2)));
        the_introspection(&env);
        assert_no_secret_logged(&env, &[&t]);
    }
}

#[test]
fn an_unanswered_callout_times_out_after_timeout_ms() {
    let mut env = envoy();
    let t = token(1);
    let stream = env.send(mcp(&t, &initialize(1)));
    env.advance(millis(499));
    assert!(matches!(env.outcome(stream), Outcome::Paused(_)));
    env.advance(millis(1));
    assert_unavailable(&env.outcome(stream));
}

#[test]
fn stale_if_error_serves_a_recent_decision_when_the_token_api_fails() {
    let mut env = envoy();
    let t = token(1);
    admit_all(&mut env, &t).forwarded();
    // Past ttl_s (30 s), within stale_if_error_s (300 s) of it.
    env.advance(secs(31));
    let stream = env.send(mcp(&t, &initialize(2)));
    env.fail(the_introspection(&env).id);
    assert_routed_to(&env.outcome(stream), "acme");
    assert_eq!(env.metric("mcp_auth.stale_serves"), 1);

    // A stale serve does not refresh the decision: past the window, 503.
    env.advance(secs(300));
    let stream = env.send(mcp(&t, &initialize(3)));
    env.time_out(the_introspection(&env).id);
    assert_unavailable(&env.outcome(stream));
    assert_eq!(env.metric("mcp_auth.stale_serves"), 1);
}

#[test]
fn during_an_outage_a_stale_token_costs_one_callout_per_second_not_one_per_request() {
    let mut env = envoy();
    let t = token(1);
    admit_all(&mut env, &t).forwarded();
    env.advance(secs(31));
    let stream = env.send(mcp(&t, &initialize(2)));
    env.time_out(the_introspection(&env).id);
    assert_routed_to(&env.outcome(stream), "acme");
    let callouts = env.metric("mcp_auth.callouts");
    // Within the hold: served without asking the failing token API again.
    for i in 0..5 {
        env.advance(millis(100));
        assert_routed_to(&env.request(mcp(&t, &initialize(10 + i))), "acme");
    }
    assert_eq!(env.metric("mcp_auth.callouts"), callouts);
    // After it: one new attempt.
    env.advance(millis(600));
    let stream = env.send(mcp(&t, &initialize(20)));
    assert_eq!(env.metric("mcp_auth.callouts"), callouts + 1);
    env.fail(the_introspection(&env).id);
    assert_routed_to(&env.outcome(stream), "acme");
}

#[test]
fn stale_if_error_never_serves_a_token_past_its_exp() {
    let mut env = envoy();
    let t = token(1);
    let mut answer = all_mcp();
    answer["exp"] = json!(now_s(&env) + 40);
    admit(&mut env, mcp(&t, &initialize(1)), &answer).forwarded();
    env.advance(secs(35));
    let stream = env.send(mcp(&t, &initialize(2)));
    env.fail(the_introspection(&env).id);
    assert_routed_to(&env.outcome(stream), "acme");
    env.advance(secs(6));
    let stream = env.send(mcp(&t, &initialize(3)));
    env.fail(the_introspection(&env).id);
    assert_unavailable(&env.outcome(stream));
}

#[test]
fn negative_decisions_are_never_served_stale() {
    let mut env = envoy();
    let t = token(1);
    admit(&mut env, mcp(&t, &initialize(1)), &inactive("revoked"));
    env.advance(secs(6));
    let stream = env.send(mcp(&t, &initialize(2)));
    env.fail(the_introspection(&env).id);
    assert_unavailable(&env.outcome(stream));
}

#[test]
fn with_a_zero_stale_window_a_failure_is_a_503_right_after_ttl() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "cache": {"stale_if_error_s": 0}}));
    let t = token(1);
    admit_all(&mut env, &t).forwarded();
    env.advance(secs(31));
    let stream = env.send(mcp(&t, &initialize(2)));
    env.fail(the_introspection(&env).id);
    assert_unavailable(&env.outcome(stream));
}

#[test]
fn a_large_answer_is_garbage_not_a_decision() {
    let mut env = envoy();
    let t = token(1);
    let stream = env.send(mcp(&t, &initialize(1)));
    let mut huge = all_mcp();
    huge["padding"] = Value::String("x".repeat(100 * 1024));
    env.answer(the_introspection(&env).id, 200, &huge);
    assert_unavailable(&env.outcome(stream));
}

#[test]
fn the_worker_survives_every_kind_of_answer() {
    // Whatever the token API sends, the VM keeps running.
    let mut env = envoy();
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\xff\xfe\x00".to_vec(),
        b"{\"active\": true, \"scopes\": null}".to_vec(),
        b"{\"active\": true, \"tenant\": 5}".to_vec(),
        b"{\"active\": true, \"exp\": -1}".to_vec(),
        br#"{"active":true,"token_id":"t","name":"n","tenant":"Acme!","project":"p","scopes":[],"exp":null,"iat":1,"cache_ttl_s":1}"#.to_vec(),
        br#"{"active":true,"token_id":"t","name":"n","tenant":"a","project":"p","scopes":[],"exp":1e400,"iat":1,"cache_ttl_s":1}"#.to_vec(),
        "[".repeat(10_000).into_bytes(),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let t = token(100 + i as u8);
        let stream = env.send(mcp(&t, &initialize(1)));
        let id = the_introspection(&env).id;
        env.respond(
            id,
            Response::new(200, &[("content-type", "application/json")], body),
        );
        assert_eq!(env.outcome(stream).status(), Some(503), "body {i}");
    }
    assert!(env.failure().is_none());
    // And it still admits a good token.
    assert_routed_to(&admit_all(&mut env, &token(1)), "acme");
}

#[test]
fn time_keeps_the_cache_honest_across_many_requests() {
    // One callout per ttl period, however many requests come in between.
    let mut env = envoy();
    let t = token(1);
    admit_all(&mut env, &t).forwarded();
    for _ in 0..3 {
        for i in 0..10 {
            assert_routed_to(&env.request(mcp(&t, &initialize(i))), "acme");
            env.advance(Duration::from_millis(3100));
        }
        // 31 s later the entry went stale: one callout, then hits again.
        admit(&mut env, mcp(&t, &initialize(99)), &all_mcp()).forwarded();
    }
    assert_eq!(env.metric("mcp_auth.callouts"), 4);
}

/// Made-up tokens pass the offline check; each costs a callout. Past
/// `token_api.max_inflight` callouts in flight, a new token is refused at
/// once while cached tokens and tokens already being looked up go on.
#[test]
fn callouts_in_flight_are_bounded_per_worker() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "token_api": {"max_inflight": 3}}));
    let cached = token(200);
    assert!(matches!(
        admit_all(&mut env, &cached),
        Outcome::Forwarded(_)
    ));
    let waiting: Vec<_> = (1..=3)
        .map(|n| env.send(mcp(&token(n), &initialize(1))))
        .collect();
    assert_eq!(introspections(&env).len(), 3);
    // A fourth token: 503 at once, no callout.
    let out = env.request(mcp(&token(4), &initialize(1)));
    let reply = out.replied();
    assert_eq!(reply.status, 503, "{out:#?}");
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    assert_eq!(reply.json()["error"]["code"], "token_check_busy");
    assert_eq!(introspections(&env).len(), 3);
    assert_eq!(env.metric("mcp_auth.denied.overloaded"), 1);
    // Joining a callout already in flight costs nothing and is allowed.
    let joined = env.send(mcp(&token(2), &initialize(2)));
    assert_eq!(introspections(&env).len(), 3);
    // The cached token is untouched.
    assert!(matches!(
        env.request(mcp(&cached, &initialize(3))),
        Outcome::Forwarded(_)
    ));
    // An answer frees a slot.
    let first = introspections(&env)[0].id;
    env.answer(first, 200, &inactive("unknown"));
    assert_eq!(env.outcome(waiting[0]).status(), Some(401));
    let out = env.send(mcp(&token(5), &initialize(1)));
    assert_eq!(introspections(&env).len(), 3, "token 5 called out");
    for c in introspections(&env) {
        env.answer(c.id, 200, &all_mcp());
    }
    for s in [waiting[1], waiting[2], joined, out] {
        assert!(
            matches!(env.outcome(s), Outcome::Forwarded(_)),
            "{:#?}",
            env.outcome(s)
        );
    }
}

/// The negative answers of a flood make room for each other, never for the
/// decisions of tokens in use.
#[test]
fn a_flood_of_unknown_tokens_does_not_evict_live_decisions() {
    let mut env = envoy_with(json!({"revocation_poll_ms": 0, "cache": {"max_entries": 20}}));
    let live: Vec<String> = (200..210).map(token).collect();
    for t in &live {
        assert!(matches!(admit_all(&mut env, t), Outcome::Forwarded(_)));
    }
    for n in 0..150u8 {
        let out = admit(
            &mut env,
            mcp(&token(n), &initialize(1)),
            &inactive("unknown"),
        );
        assert_eq!(out.status(), Some(401));
    }
    for t in &live {
        assert!(matches!(
            env.request(mcp(t, &initialize(2))),
            Outcome::Forwarded(_)
        ));
    }
    assert!(
        introspections(&env).is_empty(),
        "live tokens were still cached"
    );
    assert!(env.metric("mcp_auth.cache.evicted") >= 140);
    assert_eq!(env.metric("mcp_auth.cache.evicted_active"), 0);
    // "unknown" answers are not written to the shared layer.
    let bucket = |t: &str| format!("mcp_auth.c.token_api.{}", &sha(t)[..3]);
    let flood_buckets_written = (0..150u8)
        .filter(|n| {
            env.shared_data(&bucket(&token(*n)))
                .is_some_and(|b| String::from_utf8_lossy(&b).contains(&sha(&token(*n))))
        })
        .count();
    assert_eq!(flood_buckets_written, 0);
}
