//! The token lifecycle of docs/DESIGN.md §4–§6 over HTTP, against the real
//! `token_api.wasm` in the Spin-compatible host.

#[path = "common/spin_api.rs"]
mod spin_api;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use mcpgw_token::format;
use serde_json::{json, Value};
use spin_api::{Api, ADMIN_KEY};

fn audit_for(events: &[Value], token_id: &str) -> Vec<String> {
    let mut kinds: Vec<(i64, String)> = events
        .iter()
        .filter(|e| e["token_id"] == token_id)
        .map(|e| {
            (
                e["seq"].as_i64().unwrap_or(0),
                e["event"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    kinds.sort();
    kinds.into_iter().map(|(_, k)| k).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_introspect_revoke_delete_with_an_audit_trail() {
    let api = Api::start().await;

    // Mint: the raw token appears once, valid by shape, never again.
    let created = api
        .create(json!({"name": "ci-bot", "tenant": "acme", "project": "web", "ttl": "30d"}))
        .await;
    let token = created["token"].as_str().expect("token in create response");
    format::validate(token).expect("minted token has the docs/DESIGN.md §3 shape");
    let id = created["id"].as_str().unwrap().to_owned();
    let sha = format::sha256_hex(token);
    assert_eq!(created["name"], "ci-bot");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["project"], "web");
    assert_eq!(created["scopes"], json!(["mcp:*"]), "default scope");
    assert_eq!(created["created_by"], "admin");

    // Introspect: active, with the record's identity.
    let active = api.introspect(token).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["token_id"], id.as_str());
    assert_eq!(active["name"], "ci-bot");
    assert_eq!(active["tenant"], "acme");
    assert_eq!(active["project"], "web");
    assert_eq!(active["scopes"], json!(["mcp:*"]));
    assert!(
        active["exp"].is_number() || active["exp"].is_string(),
        "{active}"
    );
    assert!(!active["iat"].is_null(), "{active}");
    assert!(active["cache_ttl_s"].as_i64().unwrap() > 0, "{active}");

    // Describe: no secret, no hash.
    let described = api.get(&format!("/api/v1/mcptokens/{id}"), ADMIN_KEY).await;
    assert_eq!(described.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&described.body).into_owned();
    assert!(!text.contains(token), "describe leaks the token: {text}");
    assert!(!text.contains(&sha), "describe leaks the hash: {text}");
    assert!(
        !text.contains(&token[11..]),
        "describe leaks the secret: {text}"
    );
    assert_eq!(described.json()["status"], "active");

    // Revoke: idempotent, and the token stops introspecting as active at once.
    let revoked = api.revoke(&id).await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    assert!(!revoked.json()["revoked_at"].is_null());
    assert_eq!(api.revoke(&id).await.status, StatusCode::OK, "revoke twice");
    assert_eq!(
        api.introspect(token).await,
        json!({"active": false, "reason": "revoked"})
    );

    // Delete: gone for describe, unknown for introspect.
    let deleted = api.delete(&id).await;
    assert!(deleted.status.is_success(), "{:?}", deleted);
    let gone = api.get(&format!("/api/v1/mcptokens/{id}"), ADMIN_KEY).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "not_found");
    assert_eq!(
        api.introspect(token).await,
        json!({"active": false, "reason": "unknown"})
    );
    assert_eq!(api.delete(&id).await.status, StatusCode::NOT_FOUND);

    // Audit: created, revoked, deleted; each names the token and the actor.
    let events = api
        .walk(&format!("/api/v1/audit?token_id={id}"), "events", ADMIN_KEY)
        .await;
    let kinds = audit_for(&events, &id);
    assert!(
        kinds.starts_with(&["created".to_owned(), "revoked".to_owned()])
            && kinds.last().map(String::as_str) == Some("deleted")
            && kinds.iter().filter(|k| *k == "revoked").count() <= 2,
        "audit kinds {kinds:?}"
    );
    for e in &events {
        assert_eq!(e["token_name"], "ci-bot", "{e}");
        assert_eq!(e["token_sha"], sha.as_str(), "{e}");
        assert_eq!(e["actor"], "admin", "{e}");
        assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
}

/// RFC 3339 UTC for a Unix time, from `chrono`: an encoder independent of the
/// token API's own.
fn rfc3339(unix: u64) -> String {
    let secs = i64::try_from(unix).expect("a Unix time in range");
    let time = chrono::DateTime::from_timestamp(secs, 0).expect("a representable time");
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expires_at_its_expiry() {
    let api = Api::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires_at = rfc3339(now + 3);
    let created = api
        .create(json!({"name": "short", "tenant": "acme", "expires_at": expires_at}))
        .await;
    assert_eq!(created["expires_at"], expires_at.as_str());
    let token = created["token"].as_str().unwrap();

    let active = api.introspect(token).await;
    assert_eq!(active["active"], true, "{active}");
    let cache = active["cache_ttl_s"].as_i64().unwrap();
    assert!(
        (0..=3).contains(&cache),
        "a cached decision must not outlive the token: cache_ttl_s = {cache}"
    );

    tokio::time::sleep(Duration::from_millis(4_200)).await;
    assert_eq!(
        api.introspect(token).await,
        json!({"active": false, "reason": "expired"})
    );
    let described = api
        .get(
            &format!("/api/v1/mcptokens/{}", created["id"].as_str().unwrap()),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(described.json()["status"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_restart_on_the_same_data_dir() {
    let api = Api::start().await;
    let mut tokens = Vec::new();
    for (i, scopes) in [
        json!(["mcp:*"]),
        json!(["mcp:tools/list", "tokens:read"]),
        json!([]),
    ]
    .into_iter()
    .enumerate()
    {
        let c = api
            .create(json!({"name": format!("t{i}"), "tenant": "acme", "scopes": scopes}))
            .await;
        tokens.push((
            c["id"].as_str().unwrap().to_owned(),
            c["token"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(api.revoke(&tokens[2].0).await.status.is_success());

    let mut before = Vec::new();
    for (id, token) in &tokens {
        let i = api.introspect(token).await;
        let d = api
            .get(&format!("/api/v1/mcptokens/{id}"), ADMIN_KEY)
            .await
            .json();
        before.push((i, d));
    }

    let api = api.restart().await;
    for ((id, token), (introspected, described)) in tokens.iter().zip(&before) {
        assert_eq!(&api.introspect(token).await, introspected, "token {id}");
        let d = api
            .get(&format!("/api/v1/mcptokens/{id}"), ADMIN_KEY)
            .await
            .json();
        assert_eq!(&d, described, "token {id}");
    }
    assert_eq!(before[2].0, json!({"active": false, "reason": "revoked"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_mints_only_within_its_own_ceiling() {
    let api = Api::start().await;
    let parent = api
        .create(json!({
            "name": "deployer", "tenant": "acme", "project": "web",
            "scopes": ["tokens:write", "tokens:read", "mcp:tools/call:a*"]
        }))
        .await;
    let pat = parent["token"].as_str().unwrap();
    let parent_id = parent["id"].as_str().unwrap();

    let child = api
        .create_as(
            pat,
            json!({"name": "narrow", "tenant": "acme", "project": "web", "scopes": ["mcp:tools/call:ab"]}),
        )
        .await;
    assert_eq!(child["scopes"], json!(["mcp:tools/call:ab"]));
    assert_eq!(child["created_by"], format!("token:{parent_id}"));
    let introspected = api.introspect(child["token"].as_str().unwrap()).await;
    assert_eq!(introspected["scopes"], json!(["mcp:tools/call:ab"]));

    for (body, needle) in [
        (
            json!({"name": "wide", "tenant": "acme", "project": "web", "scopes": ["mcp:*"]}),
            "mcp:*",
        ),
        (
            json!({"name": "wide2", "tenant": "acme", "project": "web", "scopes": ["mcp:tools/call:b"]}),
            "mcp:tools/call:b",
        ),
        (
            json!({"name": "reader", "tenant": "acme", "project": "web", "scopes": ["tokens:read", "mcp:tools/list"]}),
            "mcp:tools/list",
        ),
    ] {
        let r = api.post("/api/v1/mcptokens", pat, &body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {:?}", r.body);
        assert!(
            r.message().contains(needle),
            "403 should name {needle:?}: {}",
            r.message()
        );
    }
    let other_tenant = api
        .post(
            "/api/v1/mcptokens",
            pat,
            &json!({"name": "x", "tenant": "globex", "project": "web", "scopes": ["mcp:tools/call:ab"]}),
        )
        .await;
    assert_eq!(other_tenant.status, StatusCode::FORBIDDEN);

    // Denied attempts are audited against the creator's tenant.
    let events = api
        .walk("/api/v1/audit?tenant=acme", "events", ADMIN_KEY)
        .await;
    let denied = events
        .iter()
        .filter(|e| e["event"] == "denied_create")
        .count();
    assert!(denied >= 3, "denied_create events: {denied} in {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_clone_copies_and_rbac_empty_grants_nothing() {
    let api = Api::start().await;
    let parent = api
        .create(json!({
            "name": "parent", "tenant": "acme",
            "scopes": ["tokens:write", "mcp:tools/list", "mcp:tools/call:search_*"]
        }))
        .await;
    let pat = parent["token"].as_str().unwrap();

    let cloned = api
        .create_as(
            pat,
            json!({"name": "clone", "tenant": "acme", "rbac": "clone"}),
        )
        .await;
    assert_eq!(cloned["scopes"], parent["scopes"]);
    assert_eq!(
        api.introspect(cloned["token"].as_str().unwrap()).await["scopes"],
        parent["scopes"]
    );

    let empty = api
        .create_as(
            pat,
            json!({"name": "empty", "tenant": "acme", "rbac": "empty"}),
        )
        .await;
    assert_eq!(empty["scopes"], json!([]));
    let e = api.introspect(empty["token"].as_str().unwrap()).await;
    assert_eq!(e["active"], true);
    assert_eq!(e["scopes"], json!([]));

    // The admin has no scopes to clone.
    let r = api
        .post(
            "/api/v1/mcptokens",
            ADMIN_KEY,
            &json!({"name": "c", "tenant": "acme", "rbac": "clone"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("rbac"), "{}", r.message());
}
