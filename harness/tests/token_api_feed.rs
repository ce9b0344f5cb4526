//! The revocations feed of the real `token_api.wasm` on the Spin-compatible
//! host: cursors carry the database's epoch, and a cursor the feed cannot
//! continue (another database, a restored one, history pruned past it, a
//! cursor from before epochs) is answered with a reset, never a silent gap.

#[path = "common/spin_api.rs"]
mod spin_api;

use std::path::Path;

use harness::spin::DEFAULT_DB_FILE;
use http::StatusCode;
use mcpgw_token::format;
use serde_json::{json, Value};
use spin_api::Api;

/// Mints `n` tokens; returns `(id, token_sha)` of each.
async fn mint(api: &Api, prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = api
            .create(json!({"name": format!("{prefix}{i}"), "tenant": "acme"}))
            .await;
        out.push((
            c["id"].as_str().unwrap().to_owned(),
            format::sha256_hex(c["token"].as_str().unwrap()),
        ));
    }
    out
}

async fn revoke(api: &Api, id: &str) {
    assert_eq!(api.revoke(id).await.status, StatusCode::OK);
}

fn reset_to(head: &str) -> Value {
    json!({"cursor": head, "revoked": [], "more": false, "reset": true})
}

fn epoch_of(cursor: &str) -> &str {
    cursor.split_once('.').expect("<epoch>.<seq>").0
}

/// Copies a SQLite database consistently, whatever its WAL holds.
fn copy_db(from: &Path, to: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", to.display()));
    }
    let conn = rusqlite::Connection::open(from).expect("open the database");
    conn.execute("VACUUM INTO ?", [to.display().to_string()])
        .expect("copy the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_carry_the_epoch_and_since_now_starts_at_the_head() {
    let api = Api::start().await;
    let head = api.feed_head().await;
    let epoch = epoch_of(&head).to_owned();
    assert_eq!(epoch.len(), 16, "{head}");
    assert_eq!(head, format!("{epoch}.0"));
    let tokens = mint(&api, "t", 3).await;
    revoke(&api, &tokens[0].0).await;
    assert_eq!(api.feed_head().await, format!("{epoch}.1"));
    revoke(&api, &tokens[1].0).await;
    assert_eq!(
        api.feed(Some(&format!("{epoch}.1"))).await,
        json!({"cursor": format!("{epoch}.2"), "revoked": [tokens[1].1], "more": false,
               "reset": false})
    );
    // The epoch belongs to the database: the same after a restart.
    let api = api.restart().await;
    assert_eq!(api.feed_head().await, format!("{epoch}.2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_from_another_database_or_before_epochs_is_a_reset() {
    let one = Api::start().await;
    for (id, _) in mint(&one, "a", 2).await {
        revoke(&one, &id).await;
    }
    let old_cursor = one.feed_head().await;

    // Another database (a replaced one) knows nothing of this cursor.
    let two = Api::start().await;
    let tokens = mint(&two, "b", 3).await;
    revoke(&two, &tokens[0].0).await;
    let head = two.feed_head().await;
    assert_ne!(epoch_of(&head), epoch_of(&old_cursor));
    assert_eq!(two.feed(Some(&old_cursor)).await, reset_to(&head));
    // A plain sequence number, as gateways of the previous version hold.
    for legacy in ["0", "1", "5000"] {
        assert_eq!(two.feed(Some(legacy)).await, reset_to(&head), "{legacy}");
    }
    // The cursor a reset hands out continues normally.
    revoke(&two, &tokens[1].0).await;
    let page = two.feed(Some(&head)).await;
    assert_eq!(page["revoked"], json!([tokens[1].1]));
    assert_eq!(page["reset"], false);
    // Garbage is still refused.
    let r = two
        .send(spin_api::Req::new(
            http::Method::GET,
            "/api/v1/mcptokens/revocations?since=zz.1",
        ))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_since")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_database_resets_cursors_past_its_head() {
    let api = Api::start().await;
    let tokens = mint(&api, "t", 4).await;
    revoke(&api, &tokens[0].0).await;
    let api = api
        .while_stopped(|dir| copy_db(&dir.join(DEFAULT_DB_FILE), &dir.join("backup.db")))
        .await;
    revoke(&api, &tokens[1].0).await;
    revoke(&api, &tokens[2].0).await;
    let gateway_cursor = api.feed_head().await;
    let epoch = epoch_of(&gateway_cursor).to_owned();
    assert_eq!(gateway_cursor, format!("{epoch}.3"));

    // The operator restores last night's backup: two revocations are gone,
    // and the gateway's cursor is past the head.
    let api = api
        .while_stopped(|dir| copy_db(&dir.join("backup.db"), &dir.join(DEFAULT_DB_FILE)))
        .await;
    let head = format!("{epoch}.1");
    assert_eq!(api.feed(Some(&gateway_cursor)).await, reset_to(&head));
    // New revocations reach a gateway that follows the reset.
    revoke(&api, &tokens[3].0).await;
    let page = api.feed(Some(&head)).await;
    assert_eq!(page["revoked"], json!([tokens[3].1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_recent_entries_and_resets_cursors_older_than_it() {
    // Entries older than a minute go on the next write.
    let api = Api::start_with(&[("feed_retention", "1m")]).await;
    let tokens = mint(&api, "t", 4).await;
    revoke(&api, &tokens[0].0).await;
    revoke(&api, &tokens[1].0).await;
    let before = api.feed_head().await;
    let epoch = epoch_of(&before).to_owned();
    // Two hours pass for the first two entries (the clock is real: age them).
    let api = api
        .while_stopped(|dir| {
            let conn = rusqlite::Connection::open(dir.join(DEFAULT_DB_FILE)).unwrap();
            conn.execute("UPDATE revocations SET at = at - 7200", [])
                .unwrap();
        })
        .await;
    // Before the next write nothing is pruned: reads never prune.
    assert_eq!(
        api.feed(Some(&format!("{epoch}.0"))).await["revoked"],
        json!([tokens[0].1, tokens[1].1])
    );
    revoke(&api, &tokens[2].0).await;
    revoke(&api, &tokens[3].0).await;

    // Recent entries are kept, from the beginning and from the horizon.
    let recent = json!([tokens[2].1, tokens[3].1]);
    assert_eq!(api.feed(None).await["revoked"], recent);
    assert_eq!(api.feed(Some(&before)).await["revoked"], recent);
    // A cursor from before the horizon would miss the pruned entries: reset.
    let head = format!("{epoch}.4");
    for old in ["0", "1"] {
        assert_eq!(
            api.feed(Some(&format!("{epoch}.{old}"))).await,
            reset_to(&head),
            "{epoch}.{old}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_shorter_than_the_cache_ttl_is_refused() {
    let api = Api::start_with(&[("feed_retention", "1m"), ("default_cache_ttl_s", "120")]).await;
    let r = api.get("/api/v1/mcptokens", spin_api::ADMIN_KEY).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.code(), "internal");
    assert_eq!(
        api.send(spin_api::Req::new(http::Method::GET, "/health"))
            .await
            .status,
        StatusCode::OK,
        "health still answers"
    );
}
