//! docs/DESIGN.md §7, revocation and workers: the revocations feed (poll, cursor,
//! paging, resets, its own cluster, eviction, outages) and the cache shared
//! between workers of one Envoy.

#[path = "common/pw_support.rs"]
mod pw_support;

use harness::proxy_wasm::{Callout, Envoy, Outcome, Settings};
use pw_support::*;
use serde_json::{json, Value};

/// The docs/DESIGN.md §7 configuration with a long `ttl_s` (only the feed can evict)
/// and callouts that outlive a poll period.
fn fresh_feed_envoy() -> Envoy {
    envoy_with(json!({"cache": {"ttl_s": 3600}, "token_api": {"timeout_ms": 5000}}))
}

/// As [`fresh_feed_envoy`], past its first poll (`since=now`, answered with
/// the head `c-0`): the worker has a cursor and caches decisions.
fn feed_envoy() -> Envoy {
    let mut env = fresh_feed_envoy();
    env.tick();
    let poll = feed_polls(&env).remove(0);
    assert_eq!(poll.path(), format!("{FEED_PATH}?since=now"));
    env.answer(poll.id, 200, &feed_page("c-0", &[]));
    env
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
    json!({"cursor": cursor, "revoked": revoked.iter().map(|t| sha(t)).collect::<Vec<_>>(),
           "more": false})
}

/// A page with more to read.
fn feed_page_more(cursor: &str, revoked: &[&str]) -> Value {
    let mut page = feed_page(cursor, revoked);
    page["more"] = json!(true);
    page
}

/// The token API's answer to a cursor it cannot continue from.
fn feed_reset(head: &str) -> Value {
    json!({"cursor": head, "revoked": [], "more": false, "reset": true})
}

fn since(cursor: &str) -> String {
    format!("{FEED_PATH}?since={cursor}")
}

fn assert_served(out: &Outcome) {
    assert_eq!(
        out.forwarded().headers.get("x-mcp-tenant").as_deref(),
        Some("acme")
    );
}

#[test]
fn the_feed_is_polled_every_period_and_its_cursor_advances() {
    let mut env = fresh_feed_envoy();
    // The first poll goes out at once (nothing is cached before its answer),
    // then one per period.
    assert_eq!(env.tick_period(), Some(millis(50)));
    env.advance(millis(50));
    assert_eq!(env.tick_period(), Some(millis(1000)));
    let poll = feed_polls(&env).remove(0);
    assert_eq!(
        poll.cluster, "token_api",
        "feed_cluster defaults to cluster"
    );
    assert_eq!(
        poll.path(),
        since("now"),
        "the first poll starts at the head, not from the whole history"
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
    env.advance(millis(999));
    assert!(feed_polls(&env).is_empty(), "no poll before the period");

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
    let poll = next_poll(&mut env);
    env.answer(poll.id, 200, &feed_page("c-0", &[]));
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
    assert_eq!(poll.path(), since("c-0"));
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
    env.answer(poll.id, 200, &feed_page("c-1", &[]));
    for garbage in [
        json!({"cursor": "c-2", "revoked": [sha(&t), "not-a-sha"], "more": false}),
        json!({"cursor": "c-2", "revoked": [sha(&t)]}),
        json!({"cursor": "c-2", "revoked": [sha(&t)], "more": false, "reset": "yes"}),
        // No cursor to go on from: reading from `now` would skip entries.
        json!({"cursor": "", "revoked": [], "more": false}),
    ] {
        let poll = next_poll(&mut env);
        assert_eq!(
            poll.path(),
            since("c-1"),
            "a refused page does not move the cursor"
        );
        env.answer(poll.id, 200, &garbage);
        assert_served(&env.request(mcp(&t, &initialize(2))));
    }
    assert_eq!(env.metric("mcp_auth.feed.failures"), 4);
}

#[test]
fn a_tick_reads_page_after_page_while_more_says_so_up_to_ten() {
    let mut env = feed_envoy();
    let (t, u) = (token(1), token(2));
    admit_all(&mut env, &t);
    admit_all(&mut env, &u);
    let poll = next_poll(&mut env);
    env.answer(poll.id, 200, &feed_page("c-0", &[]));

    // One tick: the first page says "more", so the next read follows at
    // once, without waiting for the next tick.
    let poll = next_poll(&mut env);
    env.answer(poll.id, 200, &feed_page_more("c-1", &[&t]));
    let follow = feed_polls(&env);
    assert_eq!(follow.len(), 1, "{follow:#?}");
    assert_eq!(follow[0].path(), since("c-1"));
    assert_refused_as_revoked(&mut env, &t);
    env.answer(follow[0].id, 200, &feed_page("c-2", &[&u]));
    assert!(feed_polls(&env).is_empty(), "more: false ends the run");
    assert_refused_as_revoked(&mut env, &u);

    // A long backlog: ten pages in one tick, then the next tick goes on.
    let polls_before = env.metric("mcp_auth.feed.polls");
    let mut poll = next_poll(&mut env);
    for i in 3..13 {
        assert_eq!(poll.path(), since(&format!("c-{}", i - 1)));
        env.answer(poll.id, 200, &feed_page_more(&format!("c-{i}"), &[]));
        let pending = feed_polls(&env);
        if i < 12 {
            assert_eq!(pending.len(), 1, "page {i}");
            poll = pending[0].clone();
        } else {
            assert!(pending.is_empty(), "ten pages per tick at most");
        }
    }
    assert_eq!(env.metric("mcp_auth.feed.polls") - polls_before, 10);
    let poll = next_poll(&mut env);
    assert_eq!(poll.path(), since("c-12"), "the next tick continues");
    // `more` with a cursor that did not move would read the same page again:
    // the run stops there.
    env.answer(poll.id, 200, &feed_page_more("c-12", &[]));
    assert!(feed_polls(&env).is_empty());
}

/// A worker starts at the feed's head (`since=now`). A decision made before
/// that head was read could be revoked in between, and that revocation would
/// never come: until the first feed answer, decisions are used, not cached.
#[test]
fn before_its_first_feed_answer_a_worker_caches_nothing() {
    let mut a = fresh_feed_envoy();
    let t = token(1);
    let out = admit_all(&mut a, &t);
    assert_served(&out);
    // Revoked now; the head the first poll returns already holds it.
    let poll = next_poll(&mut a);
    assert_eq!(poll.path(), since("now"));
    // An answer in flight while that poll is answered is not kept either.
    let stream = a.send(mcp(&t, &initialize(2)));
    let callout = the_introspection(&a);
    a.answer(poll.id, 200, &feed_page("e1.7", &[]));
    a.answer(callout.id, 200, &all_mcp());
    assert_served(&a.outcome(stream));
    // So the revoked token is asked about again, and refused.
    let out = admit(&mut a, mcp(&t, &initialize(3)), &inactive("revoked"));
    assert_eq!(out.status(), Some(401));
    // From the first cursor on, decisions are cached as usual.
    let u = token(2);
    assert_served(&admit_all(&mut a, &u));
    assert_served(&a.request(mcp(&u, &initialize(4))));
    assert!(introspections(&a).is_empty());
}

/// An introspection answer already on its way when a reset empties the
/// cache may predate a revocation the reset hid: it decides for the request
/// that waited on it, and is not cached.
#[test]
fn an_answer_in_flight_across_a_reset_is_used_once_not_cached() {
    let mut a = feed_envoy();
    let t = token(1);
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_page("e1.5", &[]));
    let stream = a.send(mcp(&t, &initialize(1)));
    let callout = the_introspection(&a);
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_reset("e1.3"));
    a.answer(callout.id, 200, &all_mcp());
    assert_served(&a.outcome(stream));
    // Not cached: the next request asks again.
    let stream = a.send(mcp(&t, &initialize(2)));
    let callout = the_introspection(&a);
    a.answer(callout.id, 200, &all_mcp());
    assert_served(&a.outcome(stream));
    // That answer came after the reset: cached as usual.
    assert_served(&a.request(mcp(&t, &initialize(3))));
    assert!(introspections(&a).is_empty());
}

#[test]
fn a_reset_drops_every_cached_decision_here_and_in_shared_data() {
    let mut a = feed_envoy();
    let mut b = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    let (t, u) = (token(1), token(2));
    assert_served(&admit_all(&mut a, &t));
    assert_served(&admit_all(&mut a, &u));
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_page("e1.5", &[]));

    // The token API's database was restored: the cursor is past its head.
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_reset("e1.3"));
    assert_eq!(a.metric("mcp_auth.feed.resets"), 1);
    let resets_logged = |env: &Envoy| {
        env.logs()
            .iter()
            .filter(|l| l.message.contains("cannot continue from cursor"))
            .count()
    };
    assert_eq!(resets_logged(&a), 1, "{}", a.log_text());

    // Cached before the reset: asked again, here and on the other worker
    // (the shared buckets were emptied too).
    let stream = a.send(mcp(&t, &initialize(2)));
    let callout = the_introspection(&a);
    a.answer(callout.id, 200, &all_mcp());
    assert_served(&a.outcome(stream));
    let stream = b.send(mcp(&u, &initialize(3)));
    let callout = the_introspection(&b);
    b.answer(callout.id, 200, &inactive("revoked"));
    assert_eq!(b.outcome(stream).status(), Some(401));
    assert_eq!(b.metric("mcp_auth.cache.shared_hits"), 0);

    // The run goes on from the head the reset named; a second reset in a row
    // is counted but not logged again.
    let poll = next_poll(&mut a);
    assert_eq!(poll.path(), since("e1.3"));
    a.answer(poll.id, 200, &feed_reset("e2.0"));
    assert_eq!(a.metric("mcp_auth.feed.resets"), 2);
    assert_eq!(resets_logged(&a), 1, "{}", a.log_text());
    let poll = next_poll(&mut a);
    assert_eq!(poll.path(), since("e2.0"));
    a.answer(poll.id, 200, &feed_page("e2.0", &[]));
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_reset("e3.0"));
    assert_eq!(resets_logged(&a), 2, "a new run of resets is logged");
}

#[test]
fn feed_polls_use_their_own_cluster_and_timeout() {
    let settings = Settings {
        clusters: vec!["token_api".into(), "token_api_feed".into()],
        ..Settings::default()
    };
    let config = merged(
        spec_config(),
        &json!({"token_api": {"timeout_ms": 5000,
                              "feed_cluster": "token_api_feed", "feed_timeout_ms": 2000}}),
    );
    let mut env = host()
        .envoy_with(settings, &config)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = token(1);
    let stream = env.send(mcp(&t, &initialize(1)));
    let callout = the_introspection(&env);
    assert_eq!(
        (callout.cluster.as_str(), callout.timeout),
        ("token_api", Some(millis(5000)))
    );
    // While the introspection is outstanding, the feed still goes out, on
    // its own cluster with its own timeout.
    let poll = next_poll(&mut env);
    assert_eq!(
        (poll.cluster.as_str(), poll.timeout),
        ("token_api_feed", Some(millis(2000)))
    );
    env.answer(poll.id, 200, &feed_page("c-1", &[&t]));
    env.answer(callout.id, 200, &all_mcp());
    assert_eq!(
        env.outcome(stream).status(),
        Some(401),
        "revoked while being introspected"
    );

    // A feed cluster Envoy does not know: the poll fails and says which cluster.
    let mut env = envoy_with(json!({"token_api": {"feed_cluster": "nope"}}));
    env.tick();
    assert_eq!(env.metric("mcp_auth.feed.failures"), 1);
    assert!(env.log_text().contains("\"nope\""), "{}", env.log_text());
}

#[test]
fn an_inactive_answer_with_a_reason_it_does_not_know_denies_and_is_never_served_stale() {
    let mut env = envoy();
    let t = token(1);
    assert_served(&admit_all(&mut env, &t));
    // Past the 30 s TTL, within stale_if_error_s: a failing token API would
    // get the stale "active" decision. A definitive "no" must not.
    env.advance(secs(31));
    for (i, answer) in [
        json!({"active": false, "reason": "suspended"}),
        json!({"active": false}),
    ]
    .into_iter()
    .enumerate()
    {
        let out = admit(&mut env, mcp(&t, &initialize(2)), &answer);
        let reply = out.replied();
        assert_eq!(reply.status, 401, "{answer}: {out:#?}");
        assert_eq!(
            challenge_error(&reply.header("www-authenticate").unwrap()).as_deref(),
            Some("invalid_token")
        );
        assert_eq!(env.metric("mcp_auth.stale_serves"), 0);
        assert_eq!(env.metric("mcp_auth.callout_failures"), 0);
        // Negative-cached like any inactive answer, then asked again.
        assert_eq!(
            env.request(mcp(&t, &initialize(3))).status(),
            Some(401),
            "case {i}"
        );
        env.advance(secs(6));
    }
}

#[test]
fn a_worker_started_in_a_running_envoy_continues_the_feed_where_its_peers_are() {
    let mut a = feed_envoy();
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_page("e1.7", &[]));
    let poll = next_poll(&mut a);
    a.answer(poll.id, 200, &feed_page("e1.9", &[]));
    let mut late = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    let poll = next_poll(&mut late);
    assert_eq!(poll.path(), since("e1.9"));
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
fn revoked_and_expired_answers_are_shared_unknown_ones_stay_local() {
    let mut a = envoy();
    let mut b = host().worker_sharing(&a).unwrap_or_else(|e| panic!("{e}"));
    for (n, reason) in [(1, "revoked"), (2, "expired")] {
        let t = token(n);
        admit(&mut a, mcp(&t, &initialize(1)), &inactive(reason));
        assert_eq!(b.request(mcp(&t, &initialize(2))).status(), Some(401));
        assert!(b.callouts().is_empty(), "{reason}");
    }
    // "unknown" is what a flood of made-up tokens gets: not worth a shared
    // write per request. Another worker asks for itself.
    let t = token(3);
    admit(&mut a, mcp(&t, &initialize(1)), &inactive("unknown"));
    let out = admit(&mut b, mcp(&t, &initialize(2)), &inactive("unknown"));
    assert_eq!(out.status(), Some(401));
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
