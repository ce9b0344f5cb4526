//! A flood of made-up tokens through real Envoy and the real `filter.wasm`.
//!
//! The token checksum is public, so anyone can mint well-formed tokens that
//! pass the offline check and each cost an introspection callout. While
//! thousands of them arrive, the tokens already in use must keep working
//! (their decisions are cached and must not be evicted for the flood's
//! negative answers), the introspection callouts must stay bounded per
//! worker (`token_api.max_inflight`), and a revocation must still land
//! within one poll period of the feed.
//!
//! `FLOOD_TOKENS` / `FLOOD_CONCURRENCY` override the figures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{self, KeepAlive, Minted};

const POLL_MS: u64 = 300;
/// A revoked token must be refused for every request sent this long after
/// its revoke call returned: one poll period, plus the poll's round trip
/// through a token API busy with the flood's introspections on two cores.
const REVOKE_BOUND: Duration = Duration::from_millis(2 * POLL_MS + 400);
/// Below the flood's connections per worker, so the bound is reached.
const MAX_INFLIGHT: u64 = 4;

/// Flood tokens: well-formed (prefix, alphabet, checksum), never issued.
fn made_up(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| mcpgw_token::format::generate().expect("randomness"))
        .collect()
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    unauthorized: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_tokens_leaves_live_tokens_and_revocation_alone() {
    let flood_n = support::env_u64("FLOOD_TOKENS", 12_000) as usize;
    let concurrency = support::env_u64("FLOOD_CONCURRENCY", 24) as usize;
    let _one = support::SERIAL.lock().await;
    let (stack, _dir) = support::start(
        |c| {
            c["revocation_poll_ms"] = json!(POLL_MS);
            c["token_api"]["max_inflight"] = json!(MAX_INFLIGHT);
            // Small enough that the flood fills it many times over.
            c["cache"]["max_entries"] = json!(1000);
        },
        false,
    )
    .await;
    let http = support::client(4);
    let mint = |name: &str, tenant: &str| {
        support::mint(&http, &stack, json!({"name": name, "tenant": tenant}))
    };
    let live: Vec<Minted> = vec![
        mint("flood-acme", "acme").await.unwrap(),
        mint("flood-globex", "globex").await.unwrap(),
    ];
    let doomed = mint("flood-doomed", "acme").await.unwrap();
    let gateway = SocketAddr::from(([127, 0, 0, 1], stack.ports.gateway));

    // Warm every worker's cache (a few requests per token over fresh
    // connections land on both workers; the shared layer covers the rest).
    for t in live.iter().chain([&doomed]) {
        for i in 0..6 {
            let mut c = KeepAlive::new(gateway);
            let path = support::path_for(&t.tenant, false);
            let a = c
                .send(&support::whoami_bytes(path, Some(&t.raw), &[], i))
                .await
                .unwrap();
            assert_eq!(a.status, 200, "warming {}", t.tenant);
        }
    }
    let stats0 = stack.envoy.filter_stats().await.unwrap();

    // The flood.
    let tokens = Arc::new(made_up(flood_n));
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    // Every token once, then round again until the revocation was probed,
    // so the flood outlasts the revocation window whatever the machine's speed.
    let revocation_probed = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..concurrency {
        let (tokens, next, tally) = (tokens.clone(), next.clone(), tally.clone());
        let done = revocation_probed.clone();
        flooders.push(tokio::spawn(async move {
            let mut conn = KeepAlive::new(gateway);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= tokens.len() && done.load(Ordering::Relaxed) {
                    break;
                }
                let t = &tokens[i % tokens.len()];
                let req = support::whoami_bytes("/mcp", Some(t), &[], i as u64);
                tally.sent.fetch_add(1, Ordering::Relaxed);
                match conn.send(&req).await.map(|a| a.status) {
                    Ok(401) => tally.unauthorized.fetch_add(1, Ordering::Relaxed),
                    Ok(503) => tally.busy.fetch_add(1, Ordering::Relaxed),
                    _ => tally.other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    // Live tokens, all through the flood.
    let flooding = Arc::new(AtomicBool::new(true));
    let mut callers = Vec::new();
    for t in live.clone() {
        let flooding = flooding.clone();
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut slowest) = (0u64, Vec::new(), Duration::ZERO);
            let mut conn = KeepAlive::new(gateway);
            let path = support::path_for(&t.tenant, false);
            let mut id = 0;
            while flooding.load(Ordering::Relaxed) {
                id += 1;
                let t0 = Instant::now();
                let a = conn
                    .send(&support::whoami_bytes(path, Some(&t.raw), &[], id))
                    .await;
                slowest = slowest.max(t0.elapsed());
                match a {
                    Ok(a) if a.status == 200 => {
                        let body = String::from_utf8_lossy(&a.body);
                        match support::parse_whoami(&body) {
                            Some(w) if w.tenant == t.tenant => ok += 1,
                            _ => failed.push(format!("wrong answer: {body:.200}")),
                        }
                    }
                    Ok(a) => failed.push(format!(
                        "{} {:.200}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    )),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (t.tenant, ok, failed, slowest)
        }));
    }

    // Revoke one cached token a third of the way in; probe it until refused.
    while next.load(Ordering::Relaxed) < (flood_n / 3) as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revoke_sent = Instant::now();
    support::remove(&http, &stack, &doomed.id, false)
        .await
        .unwrap();
    let revoked_at = Instant::now();
    let revoke_call = revoked_at - revoke_sent;
    let mut conn = KeepAlive::new(gateway);
    let (mut refused_after, mut accepted_late) = (None, Vec::new());
    let mut id = 1_000_000;
    while revoked_at.elapsed() < REVOKE_BOUND + Duration::from_millis(500) {
        id += 1;
        let sent = revoked_at.elapsed();
        let a = conn
            .send(&support::whoami_bytes("/mcp", Some(&doomed.raw), &[], id))
            .await
            .unwrap();
        if a.status == 200 {
            refused_after = None;
            if sent > REVOKE_BOUND {
                accepted_late.push(sent);
            }
        } else if refused_after.is_none() {
            assert!(matches!(a.status, 401 | 503), "{}", a.status);
            refused_after = Some(sent);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    revocation_probed.store(true, Ordering::Relaxed);

    for f in flooders {
        f.await.unwrap();
    }
    let flood_time = started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let mut live_results = Vec::new();
    for c in callers {
        live_results.push(c.await.unwrap());
    }
    let stats = stack.envoy.filter_stats().await.unwrap();
    let moved = |k: &str| stats.get(k).copied().unwrap_or(0) - stats0.get(k).copied().unwrap_or(0);
    stack.stop().await;

    let sent = tally.sent.load(Ordering::Relaxed);
    let callouts = moved("mcp_auth.callouts");
    eprintln!(
        "flood: {sent} requests with {flood_n} made-up tokens in {:.1} s ({:.0} req/s, {concurrency} connections): \
         401 {}, 503 {}, other {}; callouts {callouts} ({:.0}/s), denied.overloaded {}, \
         cache.evicted {}, cache.evicted_active {}",
        flood_time.as_secs_f64(),
        sent as f64 / flood_time.as_secs_f64(),
        tally.unauthorized.load(Ordering::Relaxed),
        tally.busy.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
        callouts as f64 / flood_time.as_secs_f64(),
        moved("mcp_auth.denied.overloaded"),
        moved("mcp_auth.cache.evicted"),
        moved("mcp_auth.cache.evicted_active"),
    );
    for (tenant, ok, failed, slowest) in &live_results {
        eprintln!(
            "flood: live token {tenant}: {ok} ok, {} failed, slowest {:.1} ms",
            failed.len(),
            slowest.as_secs_f64() * 1e3
        );
    }
    eprintln!(
        "flood: revoked token refused {refused_after:?} after the revoke call returned \
         (bound {REVOKE_BOUND:?}); the call itself took {revoke_call:?}"
    );

    assert!(sent >= flood_n as u64, "{sent}");
    assert_eq!(
        tally.other.load(Ordering::Relaxed),
        0,
        "only 401 and 503 for made-up tokens"
    );
    for (tenant, ok, failed, _) in &live_results {
        assert!(*ok > 20, "{tenant}: only {ok} requests");
        assert!(
            failed.is_empty(),
            "{tenant}: {} failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
    }
    assert_eq!(moved("mcp_auth.cache.evicted_active"), 0);
    assert!(
        moved("mcp_auth.denied.overloaded") > 0,
        "the bound was never reached"
    );
    let refused_after = refused_after.expect("the revoked token was never refused");
    assert!(
        refused_after <= REVOKE_BOUND,
        "refused only after {refused_after:?}"
    );
    assert!(
        accepted_late.is_empty(),
        "accepted after the bound: {accepted_late:?}"
    );
}
