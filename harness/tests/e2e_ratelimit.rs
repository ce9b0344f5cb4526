//! End to end through real Envoy with two workers: per-token rate limits (the
//! filter's own, set in the token API; and Envoy's native `local_ratelimit`
//! keyed on the trusted `x-mcp-token-id` header), and the JSON access log
//! with the filter's record of every request.
//!
//! Needs `just build` and `just envoy` (the `just test` recipe runs both).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::stack::{self, Ports, Stack, StackExtras, StackOptions};
use rmcp::{
    model::CallToolRequestParams,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ServiceExt,
};
use serde_json::{json, Value};

/// Envoys with two workers each compete for two cores: one stack at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POLL_MS: u64 = 300;
/// Feed round trip and scheduling on a busy 2-core machine, on top of one poll period.
const SLACK_MS: u64 = 700;

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

/// The requests so far were spread over both workers: a limit that held
/// was held across them, not by one worker alone.
async fn assert_both_workers_served(stack: &Stack) {
    let workers = connections_per_worker(stack).await;
    assert!(
        workers.len() == 2 && workers.iter().all(|&n| n > 0),
        "both workers took connections: {workers:?}"
    );
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
    assert_both_workers_served(&stack).await;
    // The other token has a bucket of its own, far from spent.
    let out = burst(&stack, &free, 8).await;
    assert_eq!(count(&out, 200), 8);
    assert_eq!(backend_saw(&stack, &limited_id), 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_token_gets_exactly_its_limit_across_two_workers() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start_with(StackExtras::default()).await;
    let (limited, limited_id) = mint(
        &stack,
        json!({"name": "e2e-limited", "tenant": "acme",
               "rate_limit": {"requests": 5, "window_s": 60}}),
    )
    .await;
    let (free, _) = mint(&stack, json!({"name": "e2e-free", "tenant": "acme"})).await;

    // Twenty at once, each on a new connection, spread over both workers.
    let out = burst(&stack, &limited, 20).await;
    assert_eq!(
        count(&out, 200),
        5,
        "5 a minute: 5 through, not 5 per worker"
    );
    assert_eq!(count(&out, 429), 15);
    assert_both_workers_served(&stack).await;
    for r in out.iter().filter(|r| r.status == 429) {
        let retry: u64 = r.header("retry-after").parse().unwrap();
        assert!((1..=12).contains(&retry), "one request every 12 s: {retry}");
        assert_eq!(r.header("ratelimit-policy"), "\"token\";q=5;w=60");
        assert_eq!(r.header("ratelimit"), format!("\"token\";r=0;t={retry}"));
        let body = r.json();
        assert_eq!(body["jsonrpc"], "2.0", "{body}");
        assert_eq!(body["error"]["code"], -32029, "{body}");
        assert!(
            body["id"]
                .as_u64()
                .is_some_and(|id| (100..120).contains(&id)),
            "{body}"
        );
    }
    // The refused calls were held at the gateway: the backend saw 5 only.
    assert_eq!(backend_saw(&stack, &limited_id), 5);
    // A request without a body is refused at once.
    let get = send(
        &fresh_connections(),
        "GET",
        &format!("{}/mcp", stack.gateway_url()),
        Some(&limited),
        None,
    )
    .await;
    assert_eq!(get.status, 429);
    assert_eq!(get.json()["error"]["code"], "rate_limited");

    // The other token is not limited at all.
    let out = burst(&stack, &free, 12).await;
    assert_eq!(count(&out, 200), 12);
    let stats = stack.envoy.filter_stats().await.unwrap();
    assert_eq!(
        stats.get("mcp_auth.denied.rate_limited"),
        Some(&16),
        "{stats:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_token_on_leases_never_gets_more_than_its_bucket_across_two_workers() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start_with(StackExtras::default()).await;
    // A burst of 1000 (leases of up to 10 units per worker), refilled at one
    // request every 3.6 s: the run adds only a few units.
    let (token, id) = mint(
        &stack,
        json!({"name": "e2e-busy", "tenant": "acme",
               "rate_limit": {"requests": 1000, "window_s": 3600}}),
    )
    .await;
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    for _ in 0..24 {
        out.extend(burst(&stack, &token, 50).await);
    }
    let refilled = (started.elapsed().as_secs_f64() / 3.6).ceil() as usize;
    let ok = count(&out, 200);
    assert!(
        ok <= 1000 + refilled,
        "{ok} of 1200 let through: the bucket holds 1000 (+{refilled} refilled)"
    );
    assert!(
        ok >= 1000 - 2 * 10,
        "{ok}: at most one lease per worker may be held back"
    );
    assert_eq!(count(&out, 429), out.len() - ok);
    assert_both_workers_served(&stack).await;
    assert_eq!(backend_saw(&stack, &id), ok);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_changed_through_the_api_applies_within_a_poll_period() {
    let _one = SERIAL.lock().await;
    // The stack caches decisions for 300 s: only the feed can make it quick.
    let (stack, _dir) = start_with(StackExtras::default()).await;
    // A worker's first feed read starts at the head: a change made before it
    // is not in its feed (the cache TTL still bounds it). Start once all
    // three VMs (main thread, two workers) have read the feed.
    stack
        .envoy
        .wait_for_feed_answers(3, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (token, id) = mint(&stack, json!({"name": "e2e-agent", "tenant": "acme"})).await;
    assert_eq!(
        count(&burst(&stack, &token, 6).await, 200),
        6,
        "cached, no limit"
    );

    let http = reqwest::Client::new();
    let set = |limit: Value| {
        let (http, url, key) = (
            http.clone(),
            format!("{}/api/v1/mcptokens/{id}", stack.token_api_url()),
            stack.admin_key.clone(),
        );
        async move {
            let r = http
                .patch(url)
                .bearer_auth(key)
                .json(&json!({"rate_limit": limit}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    set(json!({"requests": 1, "window_s": 3600})).await;
    let changed = Instant::now();
    let url = format!("{}/mcp", stack.gateway_url());
    let client = fresh_connections();
    let took = loop {
        let r = send(&client, "POST", &url, Some(&token), Some(&initialize())).await;
        if r.status == 429 {
            break changed.elapsed();
        }
        assert_eq!(r.status, 200);
        if changed.elapsed() > Duration::from_secs(10) {
            let stats = stack.envoy.filter_stats().await.unwrap();
            panic!("the new limit never applied: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        took <= Duration::from_millis(POLL_MS + SLACK_MS),
        "applied after {took:?}, more than a poll period ({POLL_MS} ms) and slack"
    );
    // Removing it applies the same way.
    set(Value::Null).await;
    tokio::time::sleep(Duration::from_millis(POLL_MS + SLACK_MS)).await;
    assert_eq!(count(&burst(&stack, &token, 4).await, 200), 4);
    let stats = stack.envoy.filter_stats().await.unwrap();
    assert!(
        stats.get("mcp_auth.changes_applied").copied().unwrap_or(0) >= 2,
        "{stats:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_records_every_decision_and_never_a_token() {
    let _one = SERIAL.lock().await;
    let (mut stack, dir) = start_with(StackExtras::default()).await;
    let base = stack.gateway_url();
    let mcp = format!("{base}/mcp");
    let http = fresh_connections();
    let (full, full_id) = mint(&stack, json!({"name": "e2e-full", "tenant": "acme"})).await;
    let (narrow, _) = mint(
        &stack,
        json!({"name": "e2e-narrow", "tenant": "acme", "scopes": ["mcp:tools/list"]}),
    )
    .await;
    let (limited, _) = mint(
        &stack,
        json!({"name": "e2e-one", "tenant": "globex",
               "rate_limit": {"requests": 1, "window_s": 3600}}),
    )
    .await;

    // An allowed tool call, through a real MCP client.
    let config =
        StreamableHttpClientTransportConfig::with_uri(mcp.clone()).auth_header(full.clone());
    let client = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    client
        .call_tool(CallToolRequestParams::new("whoami".to_string()))
        .await
        .unwrap();
    let _ = client.cancel().await;
    // 401: no token, a malformed one, one in the query.
    assert_eq!(
        send(&http, "POST", &mcp, None, Some(&initialize()))
            .await
            .status,
        401
    );
    assert_eq!(
        send(
            &http,
            "POST",
            &mcp,
            Some("mcpctl_pat_short"),
            Some(&initialize())
        )
        .await
        .status,
        401
    );
    let in_query = format!("{mcp}?access_token={full}");
    assert_eq!(
        send(&http, "POST", &in_query, None, Some(&initialize()))
            .await
            .status,
        401
    );
    // 403: a tool outside the scopes.
    assert_eq!(
        send(&http, "POST", &mcp, Some(&narrow), Some(&call(7, "whoami")))
            .await
            .status,
        403
    );
    // 429: the second call of a one-an-hour token.
    assert_ne!(
        send(&http, "POST", &mcp, Some(&limited), Some(&initialize()))
            .await
            .status,
        429
    );
    assert_eq!(
        send(
            &http,
            "POST",
            &mcp,
            Some(&limited),
            Some(&call(2, "whoami"))
        )
        .await
        .status,
        429
    );
    // Bypass paths.
    assert_eq!(
        send(&http, "GET", &format!("{base}/health"), Some(&full), None)
            .await
            .status,
        200
    );
    // 503: a token never seen while the token API is down.
    let (fresh, _) = mint(&stack, json!({"name": "e2e-late", "tenant": "acme"})).await;
    stack.stop_token_api().await;
    assert_eq!(
        send(&http, "POST", &mcp, Some(&fresh), Some(&initialize()))
            .await
            .status,
        503
    );

    let lines = access_log(&stack, |l| {
        l.iter().any(|x| x["status"] == 503) && l.iter().any(|x| x["status"] == 429)
    })
    .await;
    // Every line carries Envoy's facts.
    for l in &lines {
        for f in [
            "time",
            "method",
            "path",
            "status",
            "duration_ms",
            "bytes_received",
            "bytes_sent",
        ] {
            assert!(l.get(f).is_some_and(|v| !v.is_null()), "{f} missing: {l}");
        }
    }
    let find = |pred: &dyn Fn(&Value, &Value) -> bool| -> (Value, Value) {
        lines
            .iter()
            .map(|l| (l.clone(), record(l)))
            .find(|(l, r)| pred(l, r))
            .unwrap_or_else(|| panic!("no such line in:\n{lines:#?}"))
    };
    let (l, r) = find(&|_, r| {
        r["name"] == "whoami" && r["decision"] == "allow" && r["token_name"] == "e2e-full"
    });
    assert_eq!(l["status"], 200);
    assert_eq!(
        (r["tenant"].as_str(), r["project"].as_str()),
        (Some("acme"), Some("default"))
    );
    assert_eq!(r["token_id"], json!(full_id));
    assert_eq!(
        l["token_id"],
        json!(full_id),
        "the routing header, logged by Envoy"
    );
    assert_eq!(r["method"], "tools/call");
    assert!(
        matches!(r["cache"].as_str(), Some("hit" | "shared" | "callout")),
        "{r}"
    );
    assert_eq!(
        r["token_sha"],
        json!(mcpgw_token::format::sha256_hex(&full))
    );
    let (l, _) = find(&|_, r| r["reason"] == "missing_token");
    assert_eq!(l["status"], 401);
    find(&|_, r| r["reason"] == "malformed_token");
    let (l, _) = find(&|_, r| r["reason"] == "token_in_query");
    assert_eq!(l["path"], "/mcp", "logged without its query");
    let (l, r) = find(&|_, r| r["reason"] == "insufficient_scope");
    assert_eq!(
        (l["status"].as_u64(), r["name"].as_str()),
        (Some(403), Some("whoami"))
    );
    let (l, r) = find(&|_, r| r["reason"] == "rate_limited");
    assert_eq!(l["status"], 429);
    assert_eq!(
        (r["rate_limit"].as_str(), r["tenant"].as_str()),
        (Some("1/h"), Some("globex"))
    );
    let (l, r) = find(&|_, r| r["decision"] == "bypass");
    assert_eq!(
        (l["path"].as_str(), l["status"].as_u64()),
        (Some("/health"), Some(200))
    );
    assert!(r.get("token_id").is_none());
    let (l, r) = find(&|_, r| r["reason"] == "token_api_unavailable");
    assert_eq!(
        (l["status"].as_u64(), r["cache"].as_str()),
        (Some(503), Some("callout"))
    );

    // `mcpgw audit --gateway-log` reads the same file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args(["--json", "audit", "--gateway-log"])
        .arg(stack.access_log())
        .args(["--token-id", &full_id, "--tool", "whoami"])
        .output()
        .unwrap();
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!found["events"].as_array().unwrap().is_empty(), "{found}");

    stack.stop().await;
    // No log the stack wrote holds a token, not even the malformed one or
    // the one sent in the query.
    let mut logs = Vec::new();
    let mut dirs = vec![dir.path().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                logs.push(p);
            }
        }
    }
    assert!(logs.len() >= 2, "{logs:?}");
    for p in logs {
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        assert!(
            !text.contains("mcpctl_pat_"),
            "{} holds a token",
            p.display()
        );
    }
}

/// `envoy/gateway.yaml` rendered with `filters` and `clusters` spliced in.
fn gateway_with(filters: &str, clusters: &str) -> String {
    let root = stack::workspace_root();
    let template = std::fs::read_to_string(root.join("envoy/gateway.yaml")).unwrap();
    let mut vars = BTreeMap::new();
    for (i, k) in [
        "ADMIN_PORT",
        "LISTEN_PORT",
        "ACME_PORT",
        "GLOBEX_PORT",
        "SHARED_PORT",
    ]
    .into_iter()
    .enumerate()
    {
        vars.insert(k, (20_000 + i).to_string());
    }
    vars.insert(
        "FILTER_WASM",
        stack::filter_wasm().unwrap().display().to_string(),
    );
    vars.insert("FILTER_CONFIG", stack::default_filter_config().to_string());
    vars.insert("TOKEN_API_ENDPOINTS", stack::envoy::endpoints(&[20_010]));
    vars.insert("ACCESS_LOG", "/dev/null".to_string());
    vars.insert("EXTRA_HTTP_FILTERS", stack::envoy::indent(filters, 10));
    vars.insert("EXTRA_CLUSTERS", stack::envoy::indent(clusters, 2));
    stack::envoy::render(&template, &vars).unwrap()
}

#[test]
fn the_rate_limit_examples_pass_envoy_validate() {
    let dir = tempfile::tempdir().unwrap();
    let envoy = stack::envoy::find_binary().unwrap_or_else(|e| panic!("{e}"));
    let read = |f: &str| {
        std::fs::read_to_string(stack::workspace_root().join("envoy/ratelimit").join(f)).unwrap()
    };
    let local = read("local.yaml").replace("${LIMITED_TOKEN_ID}", "tok_01JEXAMPLE0000000000000000");
    let global = read("global.yaml");
    let cluster = read("global-cluster.yaml").replace("${RATELIMIT_HOST}", "ratelimit.internal");
    for (name, config) in [
        ("gateway", gateway_with("", "")),
        ("local", gateway_with(&local, "")),
        ("global", gateway_with(&global, &cluster)),
    ] {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &config).unwrap();
        let out = std::process::Command::new(&envoy)
            .args(["--mode", "validate", "--log-level", "warn", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && log.contains("OK"), "{name}: {log}");
    }
    // The service's own configuration names the domain and descriptors the filter sends.
    let service = read("ratelimit-service.yaml");
    assert!(service.contains("domain: mcp_gateway") && global.contains("domain: mcp_gateway"));
    for key in ["token_id", "tenant"] {
        assert!(service.contains(&format!("key: {key}")), "{key}");
        assert!(global.contains(&format!("descriptor_key: {key}")), "{key}");
    }
}
