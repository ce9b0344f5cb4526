//! docs/DESIGN.md §7, what operators see: metrics for every outcome, logs that never
//! carry a token, and a worker that survives hostile input.

#[path = "common/pw_support.rs"]
mod pw_support;

use std::collections::BTreeMap;

use harness::proxy_wasm::{Envoy, Request};
use pw_support::*;
use serde_json::json;

fn counters(env: &Envoy) -> BTreeMap<String, u64> {
    env.metrics().into_iter().filter(|(_, v)| *v > 0).collect()
}

#[test]
fn every_outcome_moves_its_metric() {
    let mut env = envoy();
    let [a, b, c, d, e] = [1, 2, 3, 4, 5].map(token);

    env.request(Request::get("/health"));
    env.request(Request::post("/mcp"));
    env.request(mcp("mcpctl_pat_nope", &initialize(1)));
    env.request(Request::get(&format!("/mcp?access_token={a}")));

    admit_all(&mut env, &a).forwarded();
    env.request(mcp(&a, &initialize(2))).forwarded();

    admit(&mut env, mcp(&b, &initialize(1)), &inactive("unknown")).replied();
    env.request(mcp(&b, &initialize(2))).replied();

    let limited = active(&["mcp:tools/list"]);
    let out = admit(&mut env, mcp(&c, &tool_call(1, "rm")), &limited);
    assert_eq!(out.status(), Some(403));
    let out = env.request(mcp(&c, &tool_call(2, "rm")).header("mcp-method", "ping"));
    assert_eq!(out.status(), Some(400));
    let out = env.request(Request::post("/mcp").bearer(&c).body(b"nope".to_vec()));
    assert_eq!(out.status(), Some(400));
    let big = rpc(3, "tools/list", json!({"cursor": "x".repeat(2_000_000)}));
    assert_eq!(
        env.request(mcp(&c, &big).in_chunks(100_000)).status(),
        Some(413)
    );

    let stream = env.send(mcp(&d, &initialize(1)));
    env.fail(the_introspection(&env).id);
    assert_eq!(env.outcome(stream).status(), Some(503));

    let s1 = env.send(mcp(&e, &initialize(1)));
    let s2 = env.send(mcp(&e, &initialize(2)));
    env.answer(the_introspection(&env).id, 200, &all_mcp());
    env.outcome(s1).forwarded();
    env.outcome(s2).forwarded();

    let expected: BTreeMap<String, u64> = [
        ("mcp_auth.bypassed", 1),
        ("mcp_auth.denied.missing", 1),
        ("mcp_auth.denied.malformed", 1),
        ("mcp_auth.denied.query_token", 1),
        ("mcp_auth.allowed", 4),
        ("mcp_auth.denied.invalid", 2),
        ("mcp_auth.denied.scope", 1),
        ("mcp_auth.denied.header_mismatch", 1),
        ("mcp_auth.denied.bad_body", 1),
        ("mcp_auth.denied.unavailable", 1),
        ("mcp_auth.cache.hits", 5),
        ("mcp_auth.cache.misses", 6),
        ("mcp_auth.callouts", 5),
        ("mcp_auth.callout_failures", 1),
        ("mcp_auth.coalesced_waits", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The 413 above is Envoy's own (the filter buffers up to Envoy's
    // limit), so it moves no filter metric.
    assert_eq!(counters(&env), expected);
}

#[test]
fn the_feed_and_revocations_have_metrics_too() {
    let mut env = envoy_with(json!({}));
    let t = token(1);
    env.tick();
    let poll = feed_polls(&env).remove(0);
    env.answer(
        poll.id,
        200,
        &json!({"cursor": "0", "revoked": [], "more": false}),
    );
    admit_all(&mut env, &t);
    env.tick();
    let poll = feed_polls(&env).remove(0);
    env.answer(
        poll.id,
        200,
        &json!({"cursor": "1", "revoked": [sha(&t)], "more": false}),
    );
    env.tick();
    env.fail(feed_polls(&env).remove(0).id);
    assert_eq!(env.metric("mcp_auth.feed.polls"), 3);
    assert_eq!(env.metric("mcp_auth.feed.failures"), 1);
    assert!(env.metric("mcp_auth.revocations_applied") >= 1);
}

#[test]
fn no_log_line_ever_holds_a_token() {
    let mut env = envoy_with(json!({}));
    let tokens: Vec<String> = (1..=6).map(token).collect();
    let mut bad = tokens[5].clone();
    bad.pop();
    bad.push('!');

    admit_all(&mut env, &tokens[0]);
    admit(
        &mut env,
        mcp(&tokens[1], &initialize(1)),
        &inactive("revoked"),
    );
    let stream = env.send(mcp(&tokens[2], &initialize(1)));
    env.fail(the_introspection(&env).id);
    env.outcome(stream).replied();
    let stream = env.send(mcp(&tokens[3], &initialize(1)));
    env.answer(
        the_introspection(&env).id,
        200,
        &json!({"active": "garbage"}),
    );
    env.outcome(stream).replied();
    env.request(Request::get(&format!("/mcp?access_token={}", tokens[4])));
    env.request(mcp(&bad, &initialize(1)));
    env.request(Request::post("/mcp").header("authorization", &format!("Basic {}", tokens[4])));
    env.tick();
    let poll = feed_polls(&env).remove(0);
    env.answer(
        poll.id,
        200,
        &json!({"cursor": "1", "revoked": [sha(&tokens[0])], "more": false}),
    );
    env.tick();
    env.fail(feed_polls(&env).remove(0).id);
    let stream = env.send(mcp(&tokens[5], &initialize(1)));
    env.advance(secs(1));
    env.outcome(stream).replied();

    assert!(!env.logs().is_empty());
    let mut all: Vec<&str> = tokens.iter().map(String::as_str).collect();
    all.push(&bad);
    assert_no_secret_logged(&env, &all);
}

#[test]
fn hostile_requests_get_answers_and_never_crash_the_worker() {
    let mut env = envoy();
    let t = token(1);
    let limited = active(&["mcp:tools/list"]);
    admit(&mut env, mcp(&t, &initialize(0)), &limited).forwarded();

    let long = "A".repeat(64 * 1024);
    let authorizations = [
        format!("Bearer {long}"),
        "Bearer \u{1F600}\u{1F600}".to_string(),
        format!("Bearer\t{t}"),
        format!("Bearer {t}\u{0}"),
        format!("BEARER {t}"),
        "Bearer mcpctl_pat_\u{e9}\u{e9}".to_string(),
        ",,,".to_string(),
    ];
    for a in &authorizations {
        let out = env.request(Request::post("/mcp").header("authorization", a));
        assert!(out.status().is_some(), "{a:.40}: {out:#?}");
    }
    let paths = [
        "/mcp?access_token",
        "/mcp?ACCESS_TOKEN=x",
        "/mcp?%61ccess_token=x",
        "/mcp#access_token=x",
        "/mcp?&&&=&",
        "",
        "*",
    ];
    for p in paths {
        let out = env.request(Request::post(p).bearer(&t).json(&initialize(1)));
        assert!(out.status().is_some(), "{p}: {out:#?}");
    }
    let bodies: Vec<Vec<u8>> = vec![
        "[".repeat(100_000).into_bytes(),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        b"\xff\xfe\xfd".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"tools/call\"}".to_vec(),
        b"[{\"method\":null},{\"method\":\"tools/call\",\"params\":\"x\"}]".to_vec(),
        b"[]".to_vec(),
        b"{\"method\":\"tools/call\",\"params\":{\"name\":7}}".to_vec(),
        b"null".to_vec(),
    ];
    for body in bodies {
        let out = env.request(Request::post("/mcp").bearer(&t).body(body.clone()));
        assert!(
            out.status().is_some(),
            "{:?}: {out:#?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    let out = env.request(
        mcp(&t, &tool_call(1, "x"))
            .header("mcp-method", "\u{1F600}")
            .header("mcp-name", &"n".repeat(10_000)),
    );
    assert_eq!(out.status(), Some(400));
    assert!(env.failure().is_none(), "{:?}", env.failure());
    // Still working.
    let ok = rpc(9, "tools/list", json!({}));
    assert_eq!(env.request(mcp(&t, &ok)).forwarded().body.json(), ok);
}
