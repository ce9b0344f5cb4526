//! List pagination over more than a thousand tokens, and the revocations feed
//! that gateways poll, walked by cursor.

#[path = "common/spin_api.rs"]
mod spin_api;

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use http::{Method, StatusCode};
use mcpgw_token::format;
use mcpgw_token::wire::FEED_PAGE_MAX;
use serde_json::json;
use spin_api::{Api, Conn, Req, ADMIN_KEY};

const TOKENS: &str = "/api/v1/mcptokens";
const PARALLEL: usize = 8;

/// Runs `make(i)` for `0..n` over a few kept-alive connections.
async fn fan_out(api: &Api, n: usize, make: impl Fn(usize) -> Req + Sync) -> Vec<spin_api::Resp> {
    let make = &make;
    let lanes = (0..PARALLEL).map(|lane| async move {
        let mut conn = Conn::open(api.addr()).await;
        let mut out = Vec::new();
        for i in (lane..n).step_by(PARALLEL) {
            out.push((i, conn.send(make(i)).await));
        }
        out
    });
    let mut all: Vec<_> = join_all(lanes).await.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Walks the feed from `since` (None = the oldest entry kept), page after
/// page while `more` says so; returns every hash seen, in order, the last
/// cursor and how many pages it took.
async fn walk_feed(api: &Api, since: Option<&str>) -> (Vec<String>, String, usize) {
    let mut seen = Vec::new();
    let mut cursor = since.map(str::to_owned);
    for pages in 1..=1_000 {
        // The feed needs no management credential.
        let page = api.feed(cursor.as_deref()).await;
        assert_eq!(page["reset"], false, "{page}");
        let next = page["cursor"].as_str().expect("cursor").to_owned();
        let hashes: Vec<String> = page["revoked"]
            .as_array()
            .expect("revoked array")
            .iter()
            .map(|h| h.as_str().expect("hash string").to_owned())
            .collect();
        let more = page["more"].as_bool().expect("boolean more");
        if !hashes.is_empty() {
            if let Some(prev) = &cursor {
                assert_ne!(
                    prev,
                    &next,
                    "cursor did not advance past {} hashes",
                    hashes.len()
                );
            }
        }
        seen.extend(hashes);
        if !more {
            return (seen, next, pages);
        }
        assert_eq!(
            seen.len() % FEED_PAGE_MAX as usize,
            0,
            "only a full page says more"
        );
        cursor = Some(next);
    }
    panic!("revocations feed did not end");
}

fn assert_each_once(seen: &[String], expected: &BTreeSet<String>, what: &str) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for h in seen {
        *counts.entry(h).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "{what}: hashes repeated in one walk: {dupes:?}"
    );
    let got: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(&got, expected, "{what}: feed differs from the revoked set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tokens_page_without_gaps_or_duplicates() {
    let api = Api::start().await;
    const N: usize = 1_008;
    let created = fan_out(&api, N, |i| {
        Req::new(Method::POST, TOKENS)
            .bearer(ADMIN_KEY)
            .json(&json!({
                "name": format!("bulk-{i:04}"), "tenant": "acme", "project": "load"
            }))
    })
    .await;
    let mut ids = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for r in &created {
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let v = r.json();
        ids.insert(v["id"].as_str().unwrap().to_owned());
        hashes.insert(format::sha256_hex(v["token"].as_str().unwrap()));
    }
    assert_eq!(ids.len(), N, "ids are unique");
    // Noise in another tenant that a filtered walk must not return.
    for i in 0..5 {
        api.create(json!({"name": format!("other-{i}"), "tenant": "globex"}))
            .await;
    }

    for (query, limit) in [("", 50usize), ("&limit=97", 97), ("&limit=500", 500)] {
        let path = format!("{TOKENS}?tenant=acme&project=load{query}");
        let tokens = api.walk(&path, "tokens", ADMIN_KEY).await;
        let walked: Vec<&str> = tokens.iter().map(|t| t["id"].as_str().unwrap()).collect();
        let unique: BTreeSet<String> = walked.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            walked.len(),
            N,
            "{path}: {} items for {N} tokens",
            walked.len()
        );
        assert_eq!(unique, ids, "{path}: walk misses or repeats tokens");
        let created_at: Vec<&str> = tokens
            .iter()
            .map(|t| t["created_at"].as_str().unwrap())
            .collect();
        assert!(
            created_at.windows(2).all(|w| w[0] >= w[1]),
            "{path}: not newest first"
        );
        for t in &tokens {
            assert!(
                t.get("token").is_none() && t.get("token_sha").is_none(),
                "{t}"
            );
        }
        let first = api.get(&path, ADMIN_KEY).await.json();
        assert_eq!(first["tokens"].as_array().unwrap().len(), limit.min(N));
    }

    // Revoke them all: listing hides them unless asked, and the feed walks
    // every hash exactly once across its pages.
    let revoked = fan_out(&api, N, |i| {
        let id = created[i].json()["id"].as_str().unwrap().to_owned();
        Req::new(Method::POST, format!("{TOKENS}/{id}/revoke"))
            .bearer(ADMIN_KEY)
            .json(&json!({}))
    })
    .await;
    assert!(revoked.iter().all(|r| r.status == StatusCode::OK));
    let live = api
        .walk(
            &format!("{TOKENS}?tenant=acme&project=load"),
            "tokens",
            ADMIN_KEY,
        )
        .await;
    assert!(
        live.is_empty(),
        "revoked tokens listed by default: {}",
        live.len()
    );
    let all = api
        .walk(
            &format!("{TOKENS}?tenant=acme&project=load&include_revoked=true&limit=500"),
            "tokens",
            ADMIN_KEY,
        )
        .await;
    assert_eq!(all.len(), N);
    assert!(all.iter().all(|t| t["status"] == "revoked"));

    let (seen, _, pages) = walk_feed(&api, None).await;
    assert_each_once(&seen, &hashes, "full walk");
    assert_eq!(pages, 2, "{N} hashes: a full page with more, then the rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocations_feed_gives_each_dead_hash_once_per_walk() {
    let api = Api::start().await;
    let mut tokens: Vec<(String, String)> = Vec::new();
    for i in 0..30 {
        let c = api
            .create(json!({"name": format!("f{i}"), "tenant": "acme"}))
            .await;
        tokens.push((
            c["id"].as_str().unwrap().to_owned(),
            format::sha256_hex(c["token"].as_str().unwrap()),
        ));
    }

    // `since=now` starts at the present: nothing yet.
    let start = api
        .send(Req::new(
            Method::GET,
            format!("{TOKENS}/revocations?since=now"),
        ))
        .await
        .json();
    assert_eq!(start["revoked"], json!([]));
    let start_cursor = start["cursor"].as_str().unwrap().to_owned();

    let mut dead = BTreeSet::new();
    for (id, sha) in &tokens[..10] {
        assert_eq!(api.revoke(id).await.status, StatusCode::OK);
        dead.insert(sha.clone());
    }
    // Revoking again, and deleting a revoked token, adds no second entry.
    assert_eq!(api.revoke(&tokens[0].0).await.status, StatusCode::OK);
    assert!(api.delete(&tokens[1].0).await.status.is_success());
    for (id, sha) in &tokens[10..15] {
        assert!(api.delete(id).await.status.is_success());
        dead.insert(sha.clone());
    }

    let (from_start, cursor, _) = walk_feed(&api, Some(&start_cursor)).await;
    assert_each_once(&from_start, &dead, "walk from since=now");
    let (from_beginning, _, _) = walk_feed(&api, None).await;
    assert_each_once(&from_beginning, &dead, "walk from the beginning");

    // A poll from the last cursor sees only what died since.
    let (nothing, same, _) = walk_feed(&api, Some(&cursor)).await;
    assert!(nothing.is_empty(), "{nothing:?}");
    assert_eq!(same, cursor);
    assert_eq!(api.revoke(&tokens[20].0).await.status, StatusCode::OK);
    let (fresh, _, _) = walk_feed(&api, Some(&cursor)).await;
    assert_eq!(fresh, vec![tokens[20].1.clone()]);

    // Only hashes of dead tokens ever appear: live ones are not in the feed.
    let live: BTreeSet<&String> = tokens[21..].iter().map(|(_, s)| s).collect();
    assert!(from_beginning.iter().all(|h| !live.contains(h)));
}
