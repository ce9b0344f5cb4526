//! Runs the real `token_api.wasm` (located through `token-api/spin.toml`) in
//! the Spin-compatible host on a loopback port, with a temporary data
//! directory, and talks plain HTTP/1.1 to it.
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;

use harness::spin::manifest::Manifest;
use harness::spin::{Running, SpinOptions, TokenApiHost};

/// The manifest the host reads, as `spin up` would.
pub fn manifest_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../token-api/spin.toml"
    ))
}

/// Fails with what to do when the component has not been built.
pub fn require_built() {
    let path = manifest_path();
    let manifest = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
    for (id, c) in &manifest.components {
        assert!(
            c.source.exists(),
            "component {id:?} ({}) is missing: run `just build` \
             (or `cargo build -p token-api --target wasm32-wasip2 --release`) first",
            c.source.display()
        );
    }
}

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// `TOKEN_API_TEST_STORE=postgres` runs these tests with the token API on
/// PostgreSQL (`just test` runs them on both stores): one database per data
/// directory on the test process's shared server, so a restart finds its
/// tokens again.
pub fn test_store_is_postgres() -> bool {
    std::env::var("TOKEN_API_TEST_STORE").is_ok_and(|s| s == "postgres")
}

/// The store variables for a host on `data_dir` (none on SQLite).
pub fn postgres_variables(data_dir: &std::path::Path) -> Vec<(String, String)> {
    if !test_store_is_postgres() {
        return Vec::new();
    }
    let server = harness::pgserver::shared()
        .unwrap_or_else(|e| panic!("TOKEN_API_TEST_STORE=postgres needs a PostgreSQL server: {e}"));
    let marker = data_dir.join("postgres-url");
    let url = match std::fs::read_to_string(&marker) {
        Ok(url) => url,
        Err(_) => {
            let url = server
                .fresh_database()
                .unwrap_or_else(|e| panic!("test database: {e}"));
            std::fs::create_dir_all(data_dir).expect("data dir");
            std::fs::write(&marker, &url).expect("remember the test database");
            url
        }
    };
    vec![
        ("store".into(), "postgres".into()),
        ("postgres_url".into(), url),
        ("postgres_host".into(), server.host()),
    ]
}

/// One answer, body kept raw.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON; panics with the raw body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `error.code` of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in {}", self.json()))
            .to_owned()
    }

    /// `error.message` of an error body.
    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message in {}", self.json()))
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request under construction.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.raw_body("application/json", body.to_string().into_bytes())
    }

    pub fn raw_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    fn build(self, addr: SocketAddr) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("host", addr.to_string());
        for (n, v) in &self.headers {
            b = b.header(n, v);
        }
        b.body(Full::new(self.body)).expect("valid request")
    }
}

/// A kept-alive HTTP/1.1 connection, for many requests in a row.
pub struct Conn {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to the host");
        stream.set_nodelay(true).ok();
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Self { addr, sender }
    }

    pub async fn send(&mut self, req: Req) -> Resp {
        self.sender.ready().await.expect("connection ready");
        let res = self
            .sender
            .send_request(req.build(self.addr))
            .await
            .expect("request sent");
        let (parts, body) = res.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("response body").to_bytes(),
        }
    }
}

/// The host serving the token API, plus its data directory.
pub struct Api {
    pub running: Running,
    pub data: TempDir,
    /// Spin variables besides the admin key's hash.
    pub variables: BTreeMap<String, String>,
}

impl Api {
    /// A fresh host on an empty data directory.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A fresh host with these Spin variables set.
    pub async fn start_with(variables: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let variables: BTreeMap<String, String> = variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let running = Self::launch(data.path().to_owned(), &variables).await;
        Self {
            running,
            data,
            variables,
        }
    }

    pub fn options(data_dir: PathBuf) -> SpinOptions {
        require_built();
        let postgres = postgres_variables(&data_dir);
        let mut opts = SpinOptions::new(manifest_path(), data_dir);
        opts.env_variables = false;
        opts.variables.insert(
            "admin_key_sha256".into(),
            mcpgw_token::format::sha256_hex(ADMIN_KEY),
        );
        opts.variables.extend(postgres);
        opts
    }

    async fn launch(data_dir: PathBuf, variables: &BTreeMap<String, String>) -> Running {
        let mut opts = Self::options(data_dir);
        opts.variables.extend(variables.clone());
        TokenApiHost::start(opts)
            .await
            .unwrap_or_else(|e| panic!("host did not start: {e}"))
    }

    /// Stops the host and starts a new one on the same data directory.
    pub async fn restart(self) -> Self {
        self.while_stopped(|_| {}).await
    }

    /// Stops the host, runs `f` on the data directory (back up, restore,
    /// tamper with the database file), then starts a new host on it.
    pub async fn while_stopped(self, f: impl FnOnce(&Path)) -> Self {
        let Api {
            running,
            data,
            variables,
        } = self;
        running.shutdown().await;
        f(data.path());
        let running = Self::launch(data.path().to_owned(), &variables).await;
        Self {
            running,
            data,
            variables,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// One request on its own connection.
    pub async fn send(&self, req: Req) -> Resp {
        Conn::open(self.addr()).await.send(req).await
    }

    pub async fn get(&self, path: &str, bearer: &str) -> Resp {
        self.send(Req::new(Method::GET, path).bearer(bearer)).await
    }

    pub async fn post(&self, path: &str, bearer: &str, body: &Value) -> Resp {
        self.send(Req::new(Method::POST, path).bearer(bearer).json(body))
            .await
    }

    /// Creates a token as `bearer`; panics unless 201. Returns the record
    /// including the one-time `token`.
    pub async fn create_as(&self, bearer: &str, body: Value) -> Value {
        let r = self.post("/api/v1/mcptokens", bearer, &body).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create {body} failed: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Creates a token as the admin.
    pub async fn create(&self, body: Value) -> Value {
        self.create_as(ADMIN_KEY, body).await
    }

    /// Introspects `token` (sent as its own bearer); asserts 200.
    pub async fn introspect(&self, token: &str) -> Value {
        let r = self.get("/api/v1/mcptokens/introspect", token).await;
        assert_eq!(r.status, StatusCode::OK, "introspect: {:?}", r.body);
        r.json()
    }

    pub async fn revoke(&self, id: &str) -> Resp {
        self.revoke_as(ADMIN_KEY, id).await
    }

    pub async fn revoke_as(&self, bearer: &str, id: &str) -> Resp {
        self.post(
            &format!("/api/v1/mcptokens/{id}/revoke"),
            bearer,
            &json!({}),
        )
        .await
    }

    pub async fn delete(&self, id: &str) -> Resp {
        self.delete_as(ADMIN_KEY, id).await
    }

    pub async fn delete_as(&self, bearer: &str, id: &str) -> Resp {
        self.send(Req::new(Method::DELETE, format!("/api/v1/mcptokens/{id}")).bearer(bearer))
            .await
    }

    /// One read of the revocations feed (no credential), `since` as given
    /// (`None`: from the oldest entry kept); asserts 200.
    pub async fn feed(&self, since: Option<&str>) -> Value {
        let path = match since {
            Some(s) => mcpgw_token::wire::feed_path(s),
            None => mcpgw_token::wire::REVOCATIONS_PATH.to_owned(),
        };
        let r = self.send(Req::new(Method::GET, &path)).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// The current head cursor (`since=now`).
    pub async fn feed_head(&self) -> String {
        let head = self.feed(Some("now")).await;
        head["cursor"].as_str().expect("cursor").to_owned()
    }

    /// Every page of a paginated route (`key` holds the items), following
    /// `next_cursor` until it is null.
    pub async fn walk(&self, path_and_query: &str, key: &str, bearer: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        for _ in 0..10_000 {
            let url = match &cursor {
                Some(c) => format!("{path_and_query}{sep}cursor={c}"),
                None => path_and_query.to_owned(),
            };
            let r = self.get(&url, bearer).await;
            assert_eq!(r.status, StatusCode::OK, "{url}: {:?}", r.body);
            let page = r.json();
            out.extend(page[key].as_array().expect("items array").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("{path_and_query}: pagination did not end");
    }
}
