//! Concurrent requests through the host: on several instances, one SQLite
//! file, no lost or doubled writes. Also prints introspection throughput
//! (measured, not asserted).

#[path = "common/spin_api.rs"]
mod spin_api;

use std::time::Instant;

use futures::future::join_all;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use spin_api::{Api, Conn, Req, ADMIN_KEY};

const TOKENS: &str = "/api/v1/mcptokens";
const INTROSPECT: &str = "/api/v1/mcptokens/introspect";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_of_one_name_make_one_token() {
    let api = Api::start().await;
    let body = json!({"name": "contended", "tenant": "acme", "project": "race"});
    let results = join_all((0..50).map(|_| api.post(TOKENS, ADMIN_KEY, &body))).await;

    let created: Vec<_> = results
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    let conflicts = results
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.code() == "name_taken")
        .count();
    let others: Vec<_> = results
        .iter()
        .filter(|r| r.status != StatusCode::CREATED && r.status != StatusCode::CONFLICT)
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
        .collect();
    assert!(others.is_empty(), "unexpected answers: {others:?}");
    assert_eq!(created.len(), 1, "exactly one create wins");
    assert_eq!(conflicts, 49);

    let listed = api
        .walk(
            &format!("{TOKENS}?tenant=acme&project=race"),
            "tokens",
            ADMIN_KEY,
        )
        .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], created[0].json()["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_introspections_are_all_right() {
    let api = Api::start().await;
    let mut cases: Vec<(String, Value)> = Vec::new();
    for i in 0..20 {
        let c = api
            .create(json!({"name": format!("live-{i}"), "tenant": format!("t{}", i % 3)}))
            .await;
        let token = c["token"].as_str().unwrap().to_owned();
        if i % 4 == 3 {
            assert_eq!(
                api.revoke(c["id"].as_str().unwrap()).await.status,
                StatusCode::OK
            );
            cases.push((token, json!({"active": false, "reason": "revoked"})));
        } else {
            cases.push((
                token,
                json!({"active": true, "token_id": c["id"], "tenant": c["tenant"], "name": c["name"]}),
            ));
        }
    }
    let unknown = mcpgw_token::format::generate().unwrap();
    cases.push((unknown, json!({"active": false, "reason": "unknown"})));
    cases.push((
        "mcptl_pat_definitely-not-a-token".into(),
        json!({"active": false, "reason": "malformed"}),
    ));

    let requests = (0..200).map(|i| {
        let (token, expected) = &cases[i % cases.len()];
        let api = &api;
        async move { (api.get(INTROSPECT, token).await, expected) }
    });
    for (r, expected) in join_all(requests).await {
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let got = r.json();
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&got[k], v, "field {k} of {got}");
        }
    }
}

/// Introspection is the hot path (the filter calls it on every cache miss):
/// report requests per second through the host, sequential and parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn introspection_throughput_is_reported() {
    let api = Api::start().await;
    let c = api.create(json!({"name": "bench", "tenant": "acme"})).await;
    let token = c["token"].as_str().unwrap().to_owned();
    // Warm up: the first request pays for lazy schema checks.
    assert_eq!(api.introspect(&token).await["active"], true);

    const SEQUENTIAL: usize = 300;
    let mut conn = Conn::open(api.addr()).await;
    let t = Instant::now();
    for _ in 0..SEQUENTIAL {
        let r = conn
            .send(Req::new(Method::GET, INTROSPECT).bearer(&token))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let seq = t.elapsed();

    const LANES: usize = 8;
    const PER_LANE: usize = 100;
    let t = Instant::now();
    let lanes = (0..LANES).map(|_| {
        let token = token.clone();
        let addr = api.addr();
        async move {
            let mut conn = Conn::open(addr).await;
            for _ in 0..PER_LANE {
                let r = conn
                    .send(Req::new(Method::GET, INTROSPECT).bearer(&token))
                    .await;
                assert_eq!(r.status, StatusCode::OK);
            }
        }
    });
    join_all(lanes).await;
    let par = t.elapsed();

    println!(
        "introspect through the Spin host ({} build): sequential {SEQUENTIAL} req in {seq:?} = {:.0} req/s ({:.2} ms each); \
         {LANES} connections x {PER_LANE} = {:.0} req/s",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        SEQUENTIAL as f64 / seq.as_secs_f64(),
        seq.as_secs_f64() * 1000.0 / SEQUENTIAL as f64,
        (LANES * PER_LANE) as f64 / par.as_secs_f64(),
    );
}
