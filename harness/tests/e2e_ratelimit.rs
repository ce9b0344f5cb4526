//! End to end through real Envoy with two workers: per-token rate limits (the
//! filter's own, set in the token API; and Envoy's native `local_ratelimit`
//! keyed on the trusted `x-mcp-token-id` header), and the JSON access log
//! with the filter's record of every request.
//!
//! Needs `just build` and `just envoy` (the `just test` recipe runs both).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::stack::{self, Ports, Stack, StackExtras, StackOptions};
use serde_json::{json, Value};

/// Envoys with two workers each compete for two cores: one stack at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POLL_MS: u64 = 300;

async fn start_with(extras: StackExtras) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = stack::default_filter_config();
    config["revocation_poll_ms"] = json!(POLL_MS);
    let opts = StackOptions {
        data_dir: dir.path().to_path_buf(),
        ports: Ports::default(),
        admin_key: stack::random_admin_key().unwrap(),
        filter_config: config,
        envoy_concurrency: 2,
    };
    let stack = Stack::start_with(opts, extras)
        .await
        .unwrap_or_else(|e| panic!("stack did not start: {e:#}"));
    (stack, dir)
}

async fn mint(stack: &Stack, body: Value) -> (String, String) {
    let created = stack.mint(body).await.unwrap();
    (
        created["token"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A client that opens a new connection for every request, so that Envoy's
/// two workers both take requests.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Raw {
    let mut req = http
        .request(method.parse().unwrap(), url)
        .header("accept", "application/json, text/event-stream");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("gateway reachable");
    Raw {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}})
}

/// `n` POSTs of `token` at once, each on its own connection; their statuses.
async fn burst(stack: &Stack, token: &str, n: u64) -> Vec<Raw> {
    let url = format!("{}/mcp", stack.gateway_url());
    let http = fresh_connections();
    let calls = (0..n).map(|i| {
        let (http, url, token) = (http.clone(), url.clone(), token.to_string());
        async move {
            send(
                &http,
                "POST",
                &url,
                Some(&token),
                Some(&initialize_with_id(i)),
            )
            .await
        }
    });
    futures::future::join_all(calls).await
}

fn initialize_with_id(id: u64) -> Value {
    let mut v = initialize();
    v["id"] = json!(id + 100);
    v
}

fn count(rs: &[Raw], status: u16) -> usize {
    rs.iter().filter(|r| r.status == status).count()
}

/// Connections each Envoy worker accepted on the gateway listener.
async fn connections_per_worker(stack: &Stack) -> Vec<u64> {
    let text = reqwest::get(format!(
        "{}/stats?filter=downstream_cx_total$",
        stack.envoy.admin
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let port = format!("127.0.0.1_{}.worker_", stack.ports.gateway);
    let mut by_worker = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.split_once(&port).map(|(_, r)| r) {
            if let Some((worker, value)) = rest.split_once(".downstream_cx_total: ") {
                by_worker.insert(worker.to_string(), value.trim().parse().unwrap_or(0));
            }
        }
    }
    by_worker.into_values().collect()
}

/// POSTs the acme backend received with this token id.
fn backend_saw(stack: &Stack, token_id: &str) -> usize {
    stack.backends["acme"]
        .seen
        .snapshot()
        .iter()
        .filter(|r| r.method == "POST" && r.header("x-mcp-token-id") == Some(token_id))
        .count()
}

/// The access log's lines, once Envoy has flushed them (it writes every
/// second), waiting until `until` holds.
async fn access_log(stack: &Stack, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(stack.access_log()).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if until(&lines) || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The filter's record of a log line.
fn record(line: &Value) -> Value {
    line["mcp"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_native_local_ratelimit_limits_one_token_and_not_another() {
    let _one = SERIAL.lock().await;
    // Envoy's descriptor names a token id, which exists only once minted: a
    // first stack mints into the token API's database, a second on the same
    // database starts Envoy with local.yaml naming one of the tokens.
    let dir = tempfile::tempdir().expect("tempdir");
    let admin_key = stack::random_admin_key().unwrap();
    let opts = |dir: &std::path::Path| StackOptions {
        data_dir: dir.to_path_buf(),
        ports: Ports::default(),
        admin_key: admin_key.clone(),
        filter_config: stack::default_filter_config(),
        envoy_concurrency: 2,
    };
    // A first stack mints the two tokens into the token API's database.
    let first = Stack::start(opts(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("stack did not start: {e:#}"));
    let (limited, limited_id) =
        mint(&first, json!({"name": "e2e-limited", "tenant": "acme"})).await;
    let (free, _) = mint(&first, json!({"name": "e2e-free", "tenant": "acme"})).await;
    first.stop().await;

    let fragment =
        std::fs::read_to_string(stack::workspace_root().join("envoy/ratelimit/local.yaml"))
            .unwrap()
            .replace("${LIMITED_TOKEN_ID}", &limited_id);
    let extras = StackExtras {
        envoy_http_filters: fragment,
        ..StackExtras::default()
    };
    let stack = Stack::start_with(opts(dir.path()), extras)
        .await
        .unwrap_or_else(|e| panic!("stack did not start: {e:#}"));

    let out = burst(&stack, &limited, 8).await;
    assert_eq!(
        count(&out, 200),
        3,
        "3 a minute: exactly 3 through, not 3 per worker"
    );
    assert_eq!(count(&out, 429), 5);
    let limited_reply = out.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(limited_reply.header("x-ratelimit-limit"), "3");
    assert_eq!(limited_reply.header("x-ratelimit-remaining"), "0");
    let workers = connections_per_worker(&stack).await;
    assert!(
        workers.len() == 2 && workers.iter().all(|&n| n > 0),
        "both workers took connections: {workers:?}"
    );
    // The other token has a bucket of its own, far from spent.
    let out = burst(&stack, &free, 8).await;
    assert_eq!(count(&out, 200), 8);
    assert_eq!(backend_saw(&stack, &limited_id), 3);
    stack.stop().await;
}
