//! The real `token_api.wasm` on PostgreSQL through the host's
//! `spin:postgres@4.2.0`: several instances on one database, migrations
//! racing at start, an outage of the server and its recovery, and the
//! manifest's `allowed_outbound_hosts` enforced.

#[path = "common/spin_api.rs"]
mod spin_api;

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use harness::pgserver::{self, PgServer};
use harness::spin::TokenApiHost;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use spin_api::{Api, Req, ADMIN_KEY};

const TOKENS: &str = "/api/v1/mcptokens";

/// A host whose store is the PostgreSQL database at `url`.
async fn on_postgres(url: &str, host: &str) -> Api {
    Api::start_with(&[
        ("store", "postgres"),
        ("postgres_url", url),
        ("postgres_host", host),
    ])
    .await
}

async fn health(api: &Api) -> (StatusCode, Value) {
    let r = api.send(Req::new(Method::GET, "/health")).await;
    (r.status, r.json())
}

fn shared() -> &'static pgserver::SharedServer {
    pgserver::shared().unwrap_or_else(|e| panic!("PostgreSQL test server: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_on_one_database_share_tokens_names_feed_and_audit() {
    let pg = shared();
    let url = pg.fresh_database().unwrap();
    // Two instances start at the same moment on an empty database.
    let host = pg.host();
    let (a, b) = tokio::join!(on_postgres(&url, &host), on_postgres(&url, &host));
    let (first, second) = tokio::join!(a.get(TOKENS, ADMIN_KEY), b.get(TOKENS, ADMIN_KEY));
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK)
    );
    for api in [&a, &b] {
        let (status, v) = health(api).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["store"], "postgres");
        assert_eq!(v["schema_version"], v["schema_version_required"]);
    }

    // Minted on one, alive on the other.
    let t = a.create(json!({"name": "shared", "tenant": "acme"})).await;
    let token = t["token"].as_str().unwrap();
    let id = t["id"].as_str().unwrap();
    assert_eq!(b.introspect(token).await["active"], true);

    // Live names: the database decides, whichever instance is asked.
    let body = json!({"name": "contended", "tenant": "acme"});
    let answers = join_all((0..30).map(|i| {
        let api = if i % 2 == 0 { &a } else { &b };
        api.post(TOKENS, ADMIN_KEY, &body)
    }))
    .await;
    let created = answers
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let taken = answers
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.code() == "name_taken")
        .count();
    assert_eq!((created, taken), (1, 29));

    // Revoked on the other, refused on the first; the feed of either has it.
    let head = a.feed_head().await;
    assert_eq!(b.revoke(id).await.status, StatusCode::OK);
    assert_eq!(a.introspect(token).await["reason"], "revoked");
    let sha = mcpgw_token::format::sha256_hex(token);
    for api in [&a, &b] {
        let page = api.feed(Some(&head)).await;
        assert_eq!(page["revoked"], json!([sha]), "{page}");
    }
    let events = a
        .walk(&format!("/api/v1/audit?token_id={id}"), "events", ADMIN_KEY)
        .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["revoked", "created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revokes_across_instances_are_each_in_the_feed_once() {
    let pg = shared();
    let url = pg.fresh_database().unwrap();
    let host = pg.host();
    let (a, b) = tokio::join!(on_postgres(&url, &host), on_postgres(&url, &host));
    let mut minted = Vec::new();
    for i in 0..24 {
        let t = a
            .create(json!({"name": format!("t{i}"), "tenant": "acme"}))
            .await;
        minted.push((
            t["id"].as_str().unwrap().to_owned(),
            mcpgw_token::format::sha256_hex(t["token"].as_str().unwrap()),
        ));
    }
    let head = b.feed_head().await;
    // Every token revoked twice, once through each instance, all at once.
    let answers = join_all(
        minted
            .iter()
            .flat_map(|(id, _)| [a.revoke(id), b.revoke(id)]),
    )
    .await;
    assert!(answers.iter().all(|r| r.status == StatusCode::OK));

    let mut seen = Vec::new();
    let mut cursor = head;
    loop {
        let page = a.feed(Some(&cursor)).await;
        seen.extend(
            page["revoked"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
        cursor = page["cursor"].as_str().unwrap().to_owned();
        if page["more"] != true {
            break;
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a hash twice in the feed");
    let want: HashSet<&String> = minted.iter().map(|(_, sha)| sha).collect();
    assert_eq!(unique, want);
    let events = b
        .walk("/api/v1/audit?tenant=acme", "events", ADMIN_KEY)
        .await;
    let revoked = events.iter().filter(|e| e["event"] == "revoked").count();
    assert_eq!(revoked, minted.len(), "one revoked event per token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_503_and_heals_by_itself() {
    let mut pg = PgServer::start_temp().await.expect("PostgreSQL server");
    let url = pg.create_database("mcpgw").await.unwrap();
    let host = format!("127.0.0.1:{}", pg.port());
    let api = on_postgres(&url, &host).await;
    let t = api
        .create(json!({"name": "before", "tenant": "acme"}))
        .await;
    let token = t["token"].as_str().unwrap().to_owned();

    pg.stop().await;
    let r = api.get("/api/v1/mcptokens/introspect", &token).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "storage_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(!String::from_utf8_lossy(&r.body).contains(pg.password()));
    let r = api
        .post(
            TOKENS,
            ADMIN_KEY,
            &json!({"name": "during", "tenant": "acme"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable".into()
        )
    );
    let (status, v) = health(&api).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(
        (v["storage"].as_str(), v["store"].as_str()),
        (Some("unavailable"), Some("postgres"))
    );

    // Back: the same host answers again, nothing restarted but the database.
    pg.restart().await.unwrap();
    let mut healed = false;
    for _ in 0..100 {
        if health(&api).await.0 == StatusCode::OK {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healed, "health did not come back");
    assert_eq!(api.introspect(&token).await["active"], true);
    api.create(json!({"name": "after", "tenant": "acme"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outside_allowed_outbound_hosts_is_never_reached() {
    let pg = shared();
    let url = pg.fresh_database().unwrap();

    // The variables disagree: the component says which variable to fix.
    let api = Api::start_with(&[
        ("store", "postgres"),
        ("postgres_url", &url),
        ("postgres_host", "db.internal:5432"),
    ])
    .await;
    let (status, v) = health(&api).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["store"], "postgres");
    let r = api.get(TOKENS, ADMIN_KEY).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);

    // The manifest itself allows another server: the host refuses the
    // connection, as Spin does, before any byte reaches PostgreSQL.
    let data = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(spin_api::manifest_path())
        .unwrap()
        .replace(
            "allowed_outbound_hosts = [\"postgres://{{ postgres_host }}\"]",
            "allowed_outbound_hosts = [\"postgres://127.0.0.1:1\"]",
        )
        .replace(
            "source = \"../target/",
            &format!(
                "source = \"{}/../target/",
                spin_api::manifest_path().parent().unwrap().display()
            ),
        );
    let path = data.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let mut opts = Api::options(data.path().join("data"));
    opts.manifest = path;
    // The component's own check passes: postgres_host matches the URL.
    opts.variables.extend([
        ("store".to_owned(), "postgres".to_owned()),
        ("postgres_url".to_owned(), url.clone()),
        ("postgres_host".to_owned(), pg.host()),
    ]);
    let running = TokenApiHost::start(opts).await.expect("host starts");
    let base = running.url();
    let r = reqwest::get(format!("{base}/api/v1/mcptokens/introspect"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no bearer is refused before storage");
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/mcptokens"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(r.status(), 503);
    running.shutdown().await;
    // The refused instance never created its schema there.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}
