//! What the host itself promises around the real component: startup errors
//! that say what to fix, Spin's well-known health route, data at rest in
//! `<data>/sqlite_db.db` (hashes only), and a clean shutdown.

#[path = "common/spin_api.rs"]
mod spin_api;

use std::time::Duration;

use harness::spin::manifest::Manifest;
use harness::spin::{StartError, TokenApiHost, DEFAULT_DB_FILE};
use http::{Method, StatusCode};
use serde_json::json;
use spin_api::{manifest_path, Api, Conn, Req};

async fn start_err(opts: harness::spin::SpinOptions) -> String {
    match TokenApiHost::start(opts).await {
        Ok(running) => {
            running.shutdown().await;
            panic!("the host started");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_name_what_to_fix() {
    let data = tempfile::tempdir().unwrap();

    let mut opts = Api::options(data.path().to_owned());
    opts.variables.clear();
    let msg = start_err(opts).await;
    assert!(msg.contains("admin_key_sha256"), "{msg}");
    assert!(msg.contains("--variable admin_key_sha256="), "{msg}");
    assert!(msg.contains("SPIN_VARIABLE_ADMIN_KEY_SHA256"), "{msg}");

    let mut opts = Api::options(data.path().to_owned());
    opts.variables
        .insert("admin_key_sha265".into(), "typo".into());
    let msg = start_err(opts).await;
    assert!(msg.contains("admin_key_sha265"), "{msg}");

    // The same manifest pointing at a component that was never built.
    let text = std::fs::read_to_string(manifest_path()).unwrap();
    let manifest = Manifest::load(&manifest_path()).unwrap();
    let source = &manifest.components.values().next().unwrap().source;
    let source_in_toml = source
        .strip_prefix(manifest_path().parent().unwrap())
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("spin.toml");
    std::fs::write(
        &broken,
        text.replace(&source_in_toml, "not-built/token_api.wasm"),
    )
    .unwrap();
    let mut opts = Api::options(data.path().to_owned());
    opts.manifest = broken;
    let msg = start_err(opts).await;
    assert!(msg.contains("not-built/token_api.wasm"), "{msg}");
    assert!(msg.contains("just build"), "{msg}");

    let mut opts = Api::options(data.path().to_owned());
    opts.manifest = dir.path().join("missing.toml");
    let err = TokenApiHost::start(opts).await.err().expect("no manifest");
    assert!(matches!(err, StartError::Manifest(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_health_route_and_request_context() {
    let api = Api::start().await;
    let r = api
        .send(Req::new(Method::GET, "/.well-known/spin/health"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"OK");
    let r = api
        .send(Req::new(Method::GET, "/.well-known/spin/nothing"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Every other path reaches the component (route `/...`).
    let r = api.send(Req::new(Method::GET, "/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    assert_eq!(
        api.running.routes(),
        &[("/...".to_string(), "token-api".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rest_hashed_in_the_spin_default_database() {
    let api = Api::start().await;
    let c = api
        .create(json!({"name": "at-rest", "tenant": "acme"}))
        .await;
    let token = c["token"].as_str().unwrap();
    let sha = mcpgw_token::format::sha256_hex(token);

    let db = api.data.path().join(DEFAULT_DB_FILE);
    assert_eq!(api.running.database(), Some(db.as_path()));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);

    let mut bytes = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has(&sha), "the token's hash is stored");
    assert!(!has(token), "the raw token is stored");
    assert!(!has(&token[11..]), "the token's secret is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_the_port() {
    let api = Api::start().await;
    let addr = api.addr();
    let mut idle = Conn::open(addr).await;
    let r = idle.send(Req::new(Method::GET, "/health")).await;
    assert_eq!(r.status, StatusCode::OK);

    let Api {
        running,
        data: _data,
        ..
    } = api;
    tokio::time::timeout(Duration::from_secs(3), running.shutdown())
        .await
        .expect("shutdown does not wait on an idle keep-alive connection");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
