//! Token lineage on the real `token_api.wasm` (docs/DESIGN.md §5): a token never
//! mints one that outlives it, revoking a token revokes what it minted, and a
//! token revokes or deletes only tokens its own scopes cover.

#[path = "common/spin_api.rs"]
mod spin_api;

use http::StatusCode;
use mcpgw_token::format;
use serde_json::{json, Value};
use spin_api::{Api, ADMIN_KEY};

fn token(v: &Value) -> &str {
    v["token"].as_str().expect("token")
}

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("id")
}

fn sha(v: &Value) -> String {
    format::sha256_hex(token(v))
}

async fn audit(api: &Api, query: &str) -> Vec<Value> {
    api.walk(&format!("/api/v1/audit?{query}"), "events", ADMIN_KEY)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_cannot_mint_a_longer_lived_one() {
    let api = Api::start().await;
    let ci = api
        .create(json!({"name": "ci", "tenant": "acme", "ttl": "1h",
                       "scopes": ["tokens:write", "mcp:*"]}))
        .await;
    let limit = ci["expires_at"].as_str().unwrap().to_owned();

    // The clone of itself for a year that the review found.
    let r = api
        .post(
            "/api/v1/mcptokens",
            token(&ci),
            &json!({"name": "clone", "tenant": "acme", "rbac": "clone", "ttl": "365d"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "expiry_exceeds_creator")
    );
    assert!(r.message().contains(&limit), "{}", r.message());
    let r = api
        .post(
            "/api/v1/mcptokens",
            token(&ci),
            &json!({"name": "longer", "tenant": "acme", "ttl": "2h"}),
        )
        .await;
    assert_eq!(r.code(), "expiry_exceeds_creator");

    // Without a lifetime asked for, the child expires with its creator.
    let child = api
        .create_as(
            token(&ci),
            json!({"name": "child", "tenant": "acme", "rbac": "clone"}),
        )
        .await;
    assert!(
        child["expires_at"].as_str().unwrap() <= limit.as_str(),
        "{child}"
    );

    let denied: Vec<Value> = audit(&api, "tenant=acme")
        .await
        .into_iter()
        .filter(|e| e["event"] == "denied_create")
        .collect();
    assert_eq!(denied.len(), 2);
    assert!(denied
        .iter()
        .all(|e| e["detail"]["reason"] == "expiry_exceeds_creator"
            && e["actor"] == format!("McpToken:{}", sha(&ci))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_revokes_its_children_and_grandchildren() {
    let api = Api::start().await;
    let root = api
        .create(json!({"name": "root", "tenant": "acme", "scopes": ["tokens:write", "mcp:*"]}))
        .await;
    let child = api
        .create_as(
            token(&root),
            json!({"name": "child", "tenant": "acme", "rbac": "clone"}),
        )
        .await;
    let grandchild = api
        .create_as(
            token(&child),
            json!({"name": "grandchild", "tenant": "acme", "scopes": ["mcp:tools/list"]}),
        )
        .await;
    let bystander = api
        .create(json!({"name": "bystander", "tenant": "acme"}))
        .await;
    let cursor = api.feed_head().await;
    for t in [&root, &child, &grandchild] {
        assert_eq!(api.introspect(token(t)).await["active"], true);
    }

    let r = api.revoke(id(&root)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["cascade_revoked"], 2);

    for t in [&root, &child, &grandchild] {
        assert_eq!(
            api.introspect(token(t)).await,
            json!({"active": false, "reason": "revoked"}),
            "{}",
            t["name"]
        );
    }
    assert_eq!(api.introspect(token(&bystander)).await["active"], true);

    // The feed carries each of them, so gateways evict each.
    let page = api.feed(Some(&cursor)).await;
    let mut fed: Vec<String> = page["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    fed.sort();
    let mut expected = vec![sha(&root), sha(&child), sha(&grandchild)];
    expected.sort();
    assert_eq!(fed, expected);

    // describe names the parent and the cascade.
    let g = api
        .get(&format!("/api/v1/mcptokens/{}", id(&grandchild)), ADMIN_KEY)
        .await
        .json();
    assert_eq!(g["status"], "revoked");
    assert_eq!(g["created_by"], format!("token:{}", id(&child)));
    assert_eq!(g["revoked_via"], id(&root));

    // The audit log: one revoked event per token, the descendants naming the cascade.
    let events = audit(&api, "tenant=acme").await;
    let revoked_event = |t: &Value| {
        events
            .iter()
            .find(|e| e["event"] == "revoked" && e["token_id"] == id(t))
            .unwrap_or_else(|| panic!("no revoked event for {}", t["name"]))
            .clone()
    };
    assert_eq!(revoked_event(&root)["detail"]["cascaded"], 2);
    assert_eq!(
        revoked_event(&grandchild)["detail"]["cascade"],
        json!({"via": id(&root), "parent": id(&child)})
    );
    assert_eq!(
        revoked_event(&child)["detail"]["cascade"]["parent"],
        id(&root)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_token_cannot_revoke_or_delete_a_broader_one() {
    let api = Api::start().await;
    let narrow = api
        .create(json!({"name": "narrow", "tenant": "acme",
                       "scopes": ["tokens:write", "mcp:tools/list"]}))
        .await;
    let broad = api
        .create(json!({"name": "admin-minted", "tenant": "acme"}))
        .await;
    let within = api
        .create(json!({"name": "within", "tenant": "acme", "scopes": ["mcp:tools/list"]}))
        .await;

    for r in [
        api.revoke_as(token(&narrow), id(&broad)).await,
        api.delete_as(token(&narrow), id(&broad)).await,
    ] {
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "scope_exceeds_ceiling")
        );
        assert!(r.message().contains("\"mcp:*\""), "{}", r.message());
    }
    assert_eq!(api.introspect(token(&broad)).await["active"], true);

    let events = audit(&api, &format!("token_id={}", id(&broad))).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["denied_delete", "denied_revoke", "created"]);
    assert_eq!(events[0]["actor"], format!("McpToken:{}", sha(&narrow)));

    // Within its scopes it may.
    assert_eq!(
        api.revoke_as(token(&narrow), id(&within)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.delete_as(token(&narrow), id(&within)).await.status,
        StatusCode::NO_CONTENT
    );
}
