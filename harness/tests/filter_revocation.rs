//! docs/DESIGN.md §7, revocation and workers: the revocations feed (poll, cursor,
//! eviction, outages) and the cache shared between workers of one Envoy.

#[path = "common/pw_support.rs"]
mod pw_support;

use harness::proxy_wasm::{Callout, Envoy, Outcome};
use pw_support::*;
use serde_json::{json, Value};

/// The docs/DESIGN.md §7 configuration with a long `ttl_s` (only the feed can evict)
/// and callouts that outlive a poll period.
fn feed_envoy() -> Envoy {
    envoy_with(json!({"cache": {"ttl_s": 3600}, "token_api": {"timeout_ms": 5000}}))
}

/// The token is refused as revoked. The filter knows it from the revocation
/// it applied (a tombstone in shared data), so it needs no callout.
fn assert_refused_as_revoked(env: &mut Envoy, token: &str) {
    let out = env.request(mcp(token, &initialize(9)));
    let reply = out.replied();
    assert_eq!(reply.status, 401, "{out:#?}");
    assert_eq!(
        challenge_error(&reply.header("www-authenticate").unwrap()).as_deref(),
        Some("invalid_token")
    );
    assert!(introspections(env).is_empty(), "{:#?}", env.callouts());
}

/// Ticks until the worker polls the feed and returns that poll.
fn next_poll(env: &mut Envoy) -> Callout {
    env.tick();
    let mut polls = feed_polls(env);
    assert_eq!(polls.len(), 1, "feed polls: {polls:#?}");
    polls.remove(0)
}

fn feed_page(cursor: &str, revoked: &[&str]) -> Value {
    json!({"cursor": cursor, "revoked": revoked.iter().map(|t| sha(t)).collect::<Vec<_>>()})
}

fn assert_served(out: &Outcome) {
    assert_eq!(
        out.forwarded().headers.get("x-mcp-tenant").as_deref(),
        Some("acme")
    );
}

#[test]
fn the_feed_is_polled_every_period_and_its_cursor_advances() {
    let mut env = feed_envoy();
    assert_eq!(env.tick_period(), Some(millis(1000)));
    env.advance(millis(999));
    assert!(
        feed_polls(&env).is_empty(),
        "no poll before the first period"
    );

    let poll = next_poll(&mut env);
    assert_eq!(poll.cluster, "token_api");
    assert_eq!(
        poll.path(),
        FEED_PATH,
        "the first poll starts from the beginning"
    );
    assert_eq!(poll.header(":method").as_deref(), Some("GET"));
    assert_eq!(poll.header(":authority").as_deref(), Some("token-api"));
    assert_eq!(
        poll.header("authorization"),
        None,
        "the feed takes no credential"
    );
    assert_eq!(poll.timeout, Some(millis(5000)), "token_api.timeout_ms");
    assert_eq!(poll.stream, None);
    env.answer(poll.id, 200, &feed_page("c-1", &[]));

    let poll = next_poll(&mut env);
    assert_eq!(poll.path(), format!("{FEED_PATH}?since=c-1"));
    env.answer(poll.id, 200, &feed_page("c 2/+&", &[]));

    let poll = next_poll(&mut env);
    assert_eq!(poll.path(), format!("{FEED_PATH}?since=c%202%2F%2B%26"));
    assert_eq!(env.metric("mcp_auth.feed.polls"), 3);
}

#[test]
fn a_revoked_token_stops_working_within_a_poll_period_despite_a_long_ttl() {
    // ttl_s is an hour; the feed polls every second.
    let mut env = feed_envoy();
    let (t, other) = (token(1), token(2));
    assert_served(&admit_all(&mut env, &t));
    assert_served(&admit_all(&mut env, &other));

    let poll = next_poll(&mut env);
    env.answer(poll.id, 200, &feed_page("c-1", &[&t]));
    assert!(env.metric("mcp_auth.revocations_applied") >= 1);

    assert_refused_as_revoked(&mut env, &t);
    // The other token is still cached.
    assert_served(&env.request(mcp(&other, &initialize(3))));
    assert!(introspections(&env).is_empty());
    assert_no_secret_logged(&env, &[&t, &other]);
}

#[test]
fn an_answer_that_crosses_a_revocation_cannot_readmit_the_token() {
    let mut env = feed_envoy();
    let t = token(1);
    let stream = env.send(mcp(&t, &initialize(1)));
    let callout = the_introspection(&env);
    // The feed reports the revocation before the (older) answer arrives.
    let poll = next_poll(&mut env);
    env.answer(poll.id, 200, &feed_page("c-1", &[&t]));
    env.answer(callout.id, 200, &all_mcp());
    assert_eq!(env.outcome(stream).status(), Some(401));
}

#[test]
fn revoking_an_uncached_token_changes_nothing_else() {
    let mut env = feed_envoy();
    let t = token(1);
    admit_all(&mut env, &t);
    let poll = next_poll(&mut env);
    env.answer(poll.id, 200, &feed_page("c-1", &[&token(7), &token(8)]));
    assert_served(&env.request(mcp(&t, &initialize(2))));
    assert!(env.callouts().is_empty());
}

#[test]
fn a_feed_outage_keeps_cached_tokens_working_and_is_logged_once() {
    let mut env = envoy_with(json!({}));
    let t = token(1);
    admit_all(&mut env, &t);
    let poll = next_poll(&mut env);
    env.fail(poll.id);
    let poll = next_poll(&mut env);
    env.answer(poll.id, 200, &json!({"nope": true}));
    // Unanswered: Envoy times it out.
    env.tick();
    env.advance(millis(500));
    assert!(feed_polls(&env).is_empty());
    assert_eq!(env.metric("mcp_auth.feed.failures"), 3);
    let warnings = env
        .logs()
        .iter()
        .filter(|l| l.message.contains("revocations feed unavailable"))
        .count();
    assert_eq!(warnings, 1, "{}", env.log_text());
    assert_served(&env.request(mcp(&t, &initialize(2))));

    // The cursor did not move on failures.
    let poll = next_poll(&mut env);
    assert_eq!(poll.path(), FEED_PATH);
    env.answer(poll.id, 200, &feed_page("c-9", &[]));
    assert!(
        env.log_text().contains("reachable again"),
        "{}",
        env.log_text()
    );
}

#[test]
fn a_garbage_feed_page_evicts_nothing() {
    let mut env = feed_envoy();
    let t = token(1);
    admit_all(&mut env, &t);
    let poll = next_poll(&mut env);
    env.answer(
        poll.id,
        200,
        &json!({"cursor": "c-1", "revoked": [sha(&t), "not-a-sha"]}),
    );
    assert_served(&env.request(mcp(&t, &initialize(2))));
    let poll = next_poll(&mut env);
    assert_eq!(
        poll.path(),
        FEED_PATH,
        "a refused page does not move the cursor"
    );
}

#[test]
fn a_decision_made_on_one_worker_serves_another_without_a_callout() {
    let mut a = envoy();
    let mut b = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    let t = token(1);
    assert_served(&admit_all(&mut a, &t));
    let out = b.request(mcp(&t, &initialize(2)));
    assert_served(&out);
    assert!(b.callouts().is_empty());
    assert_eq!(b.metric("mcp_auth.cache.shared_hits"), 1);
    assert_eq!(b.metric("mcp_auth.callouts"), 1, "stats are per process");
}

#[test]
fn a_negative_decision_is_shared_too() {
    let mut a = envoy();
    let mut b = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    let t = token(1);
    admit(&mut a, mcp(&t, &initialize(1)), &inactive("unknown"));
    assert_eq!(b.request(mcp(&t, &initialize(2))).status(), Some(401));
    assert!(b.callouts().is_empty());
}

#[test]
fn a_revocation_applied_by_one_worker_evicts_the_shared_decision() {
    let mut a = feed_envoy();
    let mut b = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    let t = token(1);
    admit_all(&mut a, &t);
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_page("c-1", &[&t]));
    // B never cached it locally: the shared layer must not admit it.
    assert_refused_as_revoked(&mut b, &t);
}

#[test]
fn every_worker_applies_the_feed_to_its_own_cache() {
    let mut a = feed_envoy();
    let mut b = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    let t = token(1);
    admit_all(&mut a, &t);
    assert_served(&b.request(mcp(&t, &initialize(2))));
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_page("c-1", &[&t]));
    // B polls the feed itself and evicts its local copy.
    let poll = next_poll(&mut b);
    b.answer(poll.id, 200, &feed_page("c-1", &[&t]));
    assert_refused_as_revoked(&mut b, &t);
}

#[test]
fn a_worker_can_serve_a_shared_decision_stale_when_the_token_api_fails() {
    let mut a = envoy();
    let mut b = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    let t = token(1);
    admit_all(&mut a, &t);
    a.advance(secs(31));
    let stream = b.send(mcp(&t, &initialize(2)));
    let callout = the_introspection(&b);
    b.fail(callout.id);
    assert_served(&b.outcome(stream));
    assert_eq!(b.metric("mcp_auth.stale_serves"), 1);
}

#[test]
fn a_worker_that_starts_later_joins_the_shared_cache() {
    let mut a = envoy();
    let t = token(1);
    admit_all(&mut a, &t);
    a.advance(secs(10));
    let mut late = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    assert_served(&late.request(mcp(&t, &initialize(2))));
    assert!(late.callouts().is_empty());
    // Still bound by the original ttl: 30 s after the answer, asked again.
    late.advance(secs(21));
    late.send(mcp(&t, &initialize(3)));
    the_introspection(&late);
}
