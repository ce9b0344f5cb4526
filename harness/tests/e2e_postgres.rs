//! Real Envoy and the real filter in front of two token API instances on one
//! PostgreSQL database (`token_api` and `token_api_feed` clusters, round
//! robin): tokens minted on one work through the other, a revoke on one
//! reaches a gateway polling the other within a poll period, an instance
//! stopping in the middle of a load run loses nothing and answers no one
//! else's tenant, and a PostgreSQL outage is a clear 503 that heals.

#[allow(dead_code)]
#[path = "reliability_suite/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::stack::{self, Ports, Stack, StackExtras, StackOptions, TokenApiOptions, TokenStore};
use serde_json::{json, Value};
use support::Minted;

/// Envoys with two workers each compete for two cores: one stack at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POLL_MS: u64 = 500;

async fn start() -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StackOptions {
        data_dir: dir.path().to_path_buf(),
        ports: Ports::default(),
        admin_key: stack::random_admin_key().expect("admin key"),
        filter_config: stack::default_filter_config(),
        envoy_concurrency: 2,
    };
    let api = TokenApiOptions {
        store: TokenStore::Postgres { url: None },
        instances: 2,
        durable_postgres: false,
        variables: Vec::new(),
    };
    let mut attempt = 1;
    let stack = loop {
        match Stack::start_full(opts.clone(), StackExtras::default(), api.clone()).await {
            Ok(s) => break s,
            Err(e) if attempt < 3 => {
                eprintln!("stack did not start (attempt {attempt}), retrying: {e:#}");
                attempt += 1;
            }
            Err(e) => panic!("stack did not start: {e:#}"),
        }
    };
    // Two workers and the main thread: decisions are cached from here on.
    stack
        .envoy
        .wait_for_feed_answers(3, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (stack, dir)
}

fn instance(stack: &Stack, i: usize) -> String {
    stack.token_api_instance_url(i).expect("instance")
}

async fn introspect_at(http: &reqwest::Client, base: &str, raw: &str) -> Value {
    http.get(format!("{base}/api/v1/mcptokens/introspect"))
        .bearer_auth(raw)
        .send()
        .await
        .expect("token API reachable")
        .json()
        .await
        .expect("introspect JSON")
}

/// One `whoami` through the gateway: the HTTP status and, on 200, who served it.
async fn call(
    http: &reqwest::Client,
    stack: &Stack,
    t: &Minted,
) -> (u16, Option<support::Who>, bool) {
    let url = format!(
        "{}{}",
        stack.gateway_url(),
        support::path_for(&t.tenant, false)
    );
    let r = support::whoami(http, &url, Some(&t.raw), 1)
        .send()
        .await
        .expect("gateway reachable");
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    let body = r.text().await.unwrap_or_default();
    (status, support::parse_whoami(&body), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_behind_envoy() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start().await;
    let http = support::client(16);
    assert_eq!(stack.token_api_instances(), 2);

    // Minted on instance 1, introspected on instance 2, served through Envoy.
    let t = support::mint(&http, &stack, json!({"name": "shared", "tenant": "acme"}))
        .await
        .unwrap();
    assert_eq!(
        introspect_at(&http, &instance(&stack, 1), &t.raw).await["active"],
        true
    );
    let mut ok = 0;
    for _ in 0..20 {
        let (status, who, retry_after) = call(&http, &stack, &t).await;
        match status {
            200 => {
                let who = who.expect("whoami answer");
                assert_eq!(
                    (who.tenant.as_str(), who.token_id.as_str()),
                    ("acme", t.id.as_str())
                );
                ok += 1;
            }
            // A callout slower than its timeout (a cold instance on a busy
            // machine): the documented answer, to be retried.
            503 => assert!(retry_after, "a 503 carries Retry-After"),
            other => panic!("status {other} for a live token"),
        }
        if ok == 6 {
            break;
        }
    }
    assert_eq!(ok, 6, "the token did not work through the gateway");

    // Revoked on instance 2 while the gateway's workers poll both in turn.
    let r = http
        .post(format!(
            "{}/api/v1/mcptokens/{}/revoke",
            instance(&stack, 1),
            t.id
        ))
        .bearer_auth(&stack.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked_at = Instant::now();
    let bound = Duration::from_millis(3 * POLL_MS);
    loop {
        let (status, _, _) = call(&http, &stack, &t).await;
        if status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < bound,
            "still {status} {:?} after the revoke (bound {bound:?})",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "revoked on instance 2, refused after {:?}",
        revoked_at.elapsed()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopping_mid_load_loses_no_token_and_crosses_no_tenant() {
    let _one = SERIAL.lock().await;
    let (mut stack, _dir) = start().await;
    let http = support::client(64);
    let mut tokens = Vec::new();
    for (i, tenant) in ["acme", "globex", "acme", "globex"].into_iter().enumerate() {
        let t = support::mint(
            &http,
            &stack,
            json!({"name": format!("load-{i}"), "tenant": tenant}),
        )
        .await
        .unwrap();
        tokens.push(t);
    }

    let started = Instant::now();
    let run = Duration::from_secs(9);
    let (stop_at, back_at) = (Duration::from_millis(1500), Duration::from_secs(6));
    let mut stopped = false;
    let mut restarted = false;
    let mut counts: BTreeMap<u16, u64> = BTreeMap::new();
    let mut late_503 = 0;
    let mut stopped_since = None;
    let mut round = 0u64;
    while started.elapsed() < run {
        if !stopped && started.elapsed() > stop_at {
            stack.stop_token_api_instance(1).await;
            stopped = true;
            stopped_since = Some(Instant::now());
        }
        if !restarted && started.elapsed() > back_at {
            stack.restart_token_api_instance(1).await.unwrap();
            restarted = true;
        }
        // A fresh token every round: its first request needs a callout,
        // which may land on the stopped instance.
        round += 1;
        let fresh = support::mint(
            &http,
            &stack,
            json!({"name": format!("fresh-{round}"), "tenant": if round.is_multiple_of(2) { "acme" } else { "globex" }}),
        )
        .await
        .expect("instance 1 keeps minting");
        let batch: Vec<&Minted> = tokens.iter().chain(std::iter::once(&fresh)).collect();
        let answers = futures::future::join_all(batch.iter().map(|t| call(&http, &stack, t))).await;
        for (t, (status, who, retry_after)) in batch.iter().zip(answers) {
            *counts.entry(status).or_default() += 1;
            match status {
                200 => {
                    let who = who.expect("a 200 carries whoami");
                    assert_eq!(who.tenant, t.tenant, "answered for another tenant");
                    assert_eq!(who.token_id, t.id);
                    assert_eq!(who.served_by, support::expected_backend(&t.tenant, "/mcp"));
                }
                503 => {
                    assert!(retry_after, "a 503 carries Retry-After");
                    // Past the health check's ejection, no callout goes to
                    // the stopped instance any more.
                    if stopped_since.is_some_and(|s| s.elapsed() > Duration::from_millis(2500))
                        && !restarted
                    {
                        late_503 += 1;
                    }
                }
                other => panic!("status {other} for a live token ({})", t.id),
            }
        }
        tokens.push(fresh);
    }
    eprintln!("answers by status: {counts:?}");
    assert_eq!(late_503, 0, "503s long after the instance was ejected");
    assert!(counts.get(&200).copied().unwrap_or(0) > 0);

    // No token lost: every one minted is active on both instances.
    for t in &tokens {
        for i in 0..2 {
            let v = introspect_at(&http, &instance(&stack, i), &t.raw).await;
            assert_eq!(v["active"], true, "{} on instance {}: {v}", t.id, i + 1);
        }
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_a_clear_503_that_heals() {
    let _one = SERIAL.lock().await;
    let (mut stack, _dir) = start().await;
    let http = support::client(16);
    let cached = support::mint(&http, &stack, json!({"name": "cached", "tenant": "acme"}))
        .await
        .unwrap();
    assert_eq!(call(&http, &stack, &cached).await.0, 200);
    let uncached = support::mint(
        &http,
        &stack,
        json!({"name": "uncached", "tenant": "globex"}),
    )
    .await
    .unwrap();

    stack.postgres().expect("the stack's server").stop().await;
    for i in 0..2 {
        let base = instance(&stack, i);
        let h = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(h.status(), 503);
        let v: Value = h.json().await.unwrap();
        assert_eq!(
            (v["storage"].as_str(), v["store"].as_str()),
            (Some("unavailable"), Some("postgres"))
        );
        let r = http
            .get(format!("{base}/api/v1/mcptokens/introspect"))
            .bearer_auth(&uncached.raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "storage_unavailable");
    }
    // Through the gateway: the cached token keeps working (its decision is
    // fresh), the uncached one is 503 + Retry-After, never a 200 or a 401.
    assert_eq!(call(&http, &stack, &cached).await.0, 200);
    let (status, _, retry_after) = call(&http, &stack, &uncached).await;
    assert_eq!((status, retry_after), (503, true));

    stack
        .postgres()
        .expect("the stack's server")
        .restart()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, who, _) = call(&http, &stack, &uncached).await;
        if status == 200 {
            assert_eq!(who.expect("whoami").tenant, "globex");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..2 {
        let h = http
            .get(format!("{}/health", instance(&stack, i)))
            .send()
            .await
            .unwrap();
        assert_eq!(h.status(), 200);
    }
    stack.stop().await;
}
