//! End to end through real Envoy: real `filter.wasm` in V8, the real
//! `token_api.wasm` on the Spin-compatible host, rmcp demo backends, and real
//! MCP clients (rmcp, and the PyPI `mcp` package).
//!
//! Needs `just build` and `just envoy` (the `just test` recipe runs both).

use std::time::{Duration, Instant};

use harness::stack::{self, Ports, Stack, StackOptions};
use rmcp::{
    model::CallToolRequestParams,
    service::RunningService,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    RoleClient, ServiceExt,
};
use serde_json::{json, Value};

/// Envoys with two workers each compete for two cores: one stack at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POLL_MS: u64 = 300;
/// Feed round trip and scheduling on a busy 2-core machine, on top of one poll period.
const REVOKE_SLACK_MS: u64 = 250;

/// A fresh stack; `poll_ms` 0 turns the revocation feed off, so the token
/// API's request counter in Envoy counts introspection callouts only.
async fn start(poll_ms: u64) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = stack::default_filter_config();
    config["revocation_poll_ms"] = json!(poll_ms);
    let stack = Stack::start(StackOptions {
        data_dir: dir.path().to_path_buf(),
        ports: Ports::default(),
        admin_key: stack::random_admin_key().unwrap(),
        filter_config: config,
        envoy_concurrency: 2,
    })
    .await
    .unwrap_or_else(|e| panic!("stack did not start: {e:#}"));
    (stack, dir)
}

async fn mint(
    stack: &Stack,
    tenant: &str,
    name: &str,
    scopes: Option<Vec<&str>>,
) -> (String, Value) {
    let mut body = json!({"name": name, "tenant": tenant});
    if let Some(s) = scopes {
        body["scopes"] = json!(s);
    }
    let created = stack.mint(body).await.unwrap();
    (created["token"].as_str().unwrap().to_string(), created)
}

async fn mcp_client(url: &str, token: &str) -> RunningService<RoleClient, ()> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
        .auth_header(token.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap_or_else(|e| panic!("MCP session through the gateway failed: {e}"))
}

/// Calls a tool and returns its JSON answer.
async fn call(client: &RunningService<RoleClient, ()>, tool: &str) -> Result<Value, String> {
    match client
        .call_tool(CallToolRequestParams::new(tool.to_string()))
        .await
    {
        Ok(r) => {
            let v = serde_json::to_value(&r.content).unwrap();
            let text = v[0]["text"].as_str().unwrap_or("{}");
            Ok(serde_json::from_str(text).unwrap_or(Value::Null))
        }
        Err(e) => Err(e.to_string()),
    }
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

/// One JSON-RPC POST, with any extra headers.
async fn post(url: &str, token: Option<&str>, body: &Value, extra: &[(&str, &str)]) -> Raw {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("gateway reachable");
    Raw {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}})
}

/// Requests Envoy sent to the token API on its introspection cluster.
async fn token_api_requests(stack: &Stack) -> u64 {
    cluster_requests(stack, "token_api").await
}

/// Requests Envoy sent upstream on `cluster` (its upstream counter).
async fn cluster_requests(stack: &Stack, cluster: &str) -> u64 {
    let stat = format!("cluster.{cluster}.upstream_rq_total");
    let text = reqwest::get(format!("{}/stats?filter=^{stat}$", stack.envoy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{stat}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_land_on_their_own_backend_and_nothing_leaks() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start(0).await;
    let mcp = format!("{}/mcp", stack.gateway_url());
    let (acme, _) = mint(&stack, "acme", "e2e-acme", None).await;
    let (globex, _) = mint(&stack, "globex", "e2e-globex", None).await;

    // 1. Each token reaches only its tenant's backend, with the rmcp client.
    for (token, tenant) in [(&acme, "acme"), (&globex, "globex")] {
        let client = mcp_client(&mcp, token).await;
        let who = call(&client, "whoami").await.unwrap();
        assert_eq!(who["served_by"], format!("backend:{tenant}"), "{who}");
        assert_eq!(who["gateway_headers"]["x-mcp-tenant"], tenant);
        assert_eq!(
            who["saw_authorization"], false,
            "the backend saw the bearer: {who}"
        );
        let findings = call(&client, "list_findings").await.unwrap();
        assert!(findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["id"].as_str().unwrap().starts_with(tenant)));
        let _ = client.cancel().await;
    }
    // The shared-backend pattern: one backend, the tenant from the trusted header.
    let client = mcp_client(&format!("{}/shared/mcp", stack.gateway_url()), &globex).await;
    let who = call(&client, "whoami").await.unwrap();
    assert_eq!(
        (who["served_by"].as_str(), who["tenant"].as_str()),
        (Some("backend:shared"), Some("globex"))
    );
    let _ = client.cancel().await;

    // 2. Spoofed x-mcp-* headers never reach a backend; Authorization never does.
    let spoof = post(
        &mcp,
        Some(&acme),
        &initialize(),
        &[
            ("X-MCP-Tenant", "globex"),
            ("x-mcp-token-id", "tok_forged"),
            ("X-Mcp-Anything", "1"),
        ],
    )
    .await;
    assert_eq!(spoof.status, 200, "{}", spoof.body);
    let globex_seen = stack.backends["globex"].seen.snapshot();
    for req in globex_seen.iter() {
        assert_ne!(req.header("x-mcp-token-id"), Some("tok_forged"));
    }
    for (name, backend) in &stack.backends {
        for req in backend.seen.snapshot() {
            assert!(
                req.header("authorization").is_none(),
                "{name} saw Authorization: {req:?}"
            );
            assert_ne!(
                req.header("x-mcp-token-id"),
                Some("tok_forged"),
                "{name} saw a spoofed header"
            );
            assert!(
                req.header("x-mcp-anything").is_none(),
                "{name} saw a spoofed header"
            );
            if let Some(t) = req.header("x-mcp-tenant") {
                assert!(name == "shared" || t == name, "{name} served tenant {t}");
            }
        }
    }
    let acme_seen = stack.backends["acme"].seen.snapshot();
    assert!(
        acme_seen.iter().any(|r| r.method == "POST"),
        "acme served the spoofing request"
    );

    // 3. No token → 401 with a challenge; malformed → 401 and no callout.
    let none = post(&mcp, None, &initialize(), &[]).await;
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .starts_with("Bearer realm=\"mcp\""),
        "{:?}",
        none.headers
    );
    let before = token_api_requests(&stack).await;
    let mut bad = acme.clone();
    bad.replace_range(20..21, if &acme[20..21] == "A" { "B" } else { "A" });
    for token in [bad.as_str(), "mcpctl_pat_short", "ghp_notours"] {
        let r = post(&mcp, Some(token), &initialize(), &[]).await;
        assert_eq!(r.status, 401, "{token}");
        assert!(
            r.header("www-authenticate").contains("invalid_token"),
            "{:?}",
            r.headers
        );
    }
    assert_eq!(
        token_api_requests(&stack).await,
        before,
        "a malformed token caused a callout"
    );

    // 7. /health passes without a token.
    let health = reqwest::get(format!("{}/health", stack.gateway_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // 8. The filter's counters moved.
    let stats = stack.envoy.filter_stats().await.unwrap();
    let get = |k: &str| stats.get(k).copied().unwrap_or(0);
    assert!(get("mcp_auth.allowed") >= 4, "{stats:?}");
    assert!(get("mcp_auth.denied.missing") >= 1, "{stats:?}");
    assert!(get("mcp_auth.denied.malformed") >= 3, "{stats:?}");
    assert!(get("mcp_auth.callouts") >= 2, "{stats:?}");
    assert!(get("mcp_auth.cache.hits") >= 1, "{stats:?}");
    // With the feed off, every request Envoy sent the token API is a callout the filter counted.
    assert_eq!(token_api_requests(&stack).await, get("mcp_auth.callouts"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_stops_within_one_poll_period() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start(POLL_MS).await;
    let mcp = format!("{}/mcp", stack.gateway_url());
    let (token, created) = mint(&stack, "acme", "soon-revoked", None).await;
    // Warm the cache on every worker: ttl_s is 300, so only the feed can evict.
    for _ in 0..6 {
        assert_eq!(
            post(&mcp, Some(&token), &initialize(), &[]).await.status,
            200
        );
    }
    // Revoke at an arbitrary point of the poll period, not in step with it.
    let phase = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % POLL_MS)
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(phase)).await;
    let id = created["id"].as_str().unwrap();
    let revoked = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/mcptokens/{id}/revoke",
            stack.token_api_url()
        ))
        .bearer_auth(&stack.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // Every worker polls the feed once per period, so a request sent one
    // period (plus the poll's round trip and scheduling slack) after the
    // revoke must be refused, whichever worker takes it.
    let bound = Duration::from_millis(POLL_MS + REVOKE_SLACK_MS);
    let t0 = Instant::now();
    let (mut last_accepted, mut first_refused) = (None, None);
    let mut refused_past_bound = 0;
    // Until ten requests sent past the bound have been refused.
    while refused_past_bound < 10 {
        assert!(
            t0.elapsed() < bound + Duration::from_secs(20),
            "too slow to probe past the bound"
        );
        let sent = t0.elapsed();
        match post(&mcp, Some(&token), &initialize(), &[]).await.status {
            200 => {
                assert!(
                    sent < bound,
                    "accepted {sent:?} after the revoke (poll period {POLL_MS} ms)"
                );
                last_accepted = Some(sent);
            }
            401 => {
                first_refused.get_or_insert(sent);
                if sent >= bound {
                    refused_past_bound += 1;
                }
            }
            other => panic!("unexpected status {other} for a revoked token"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "revoked token: first refused at {first_refused:?}, last accepted at {last_accepted:?} \
         (poll period {POLL_MS} ms, bound {bound:?})"
    );
    let stats = stack.envoy.filter_stats().await.unwrap();
    assert!(
        stats
            .get("mcp_auth.revocations_applied")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{stats:?}"
    );
    // Feed polls went out on their own cluster; the introspection cluster
    // carried introspections only.
    let polls = stats.get("mcp_auth.feed.polls").copied().unwrap_or(0);
    assert!(polls >= 2, "{stats:?}");
    // (At most one poll per VM may still be on its way: two workers and
    // the main thread.)
    assert!(cluster_requests(&stack, "token_api_feed").await >= polls.saturating_sub(3));
    assert_eq!(
        token_api_requests(&stack).await,
        stats.get("mcp_auth.callouts").copied().unwrap_or(0)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_api_outage_fails_closed_for_new_tokens_and_recovers() {
    let _one = SERIAL.lock().await;
    let (mut stack, _dir) = start(POLL_MS).await;
    // Two workers and the main thread: `cached` below is cached for sure.
    stack
        .envoy
        .wait_for_feed_answers(3, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mcp = format!("{}/mcp", stack.gateway_url());
    let (cached, _) = mint(&stack, "acme", "cached", None).await;
    let (fresh, _) = mint(&stack, "acme", "never-seen", None).await;
    for _ in 0..4 {
        assert_eq!(
            post(&mcp, Some(&cached), &initialize(), &[]).await.status,
            200
        );
    }

    stack.stop_token_api().await;
    let r = post(&mcp, Some(&fresh), &initialize(), &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(!r.header("retry-after").is_empty(), "{:?}", r.headers);
    // Cached decisions keep serving through the outage.
    assert_eq!(
        post(&mcp, Some(&cached), &initialize(), &[]).await.status,
        200
    );

    stack.restart_token_api().await.unwrap();
    let t0 = Instant::now();
    loop {
        let s = post(&mcp, Some(&fresh), &initialize(), &[]).await.status;
        if s == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no recovery: still {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_scoped_to_one_tool_calls_only_that_tool() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start(POLL_MS).await;
    let mcp = format!("{}/mcp", stack.gateway_url());
    let (token, _) = mint(
        &stack,
        "acme",
        "whoami-only",
        Some(vec!["mcp:tools/list", "mcp:tools/call:whoami"]),
    )
    .await;

    let client = mcp_client(&mcp, &token).await;
    let who = call(&client, "whoami").await.unwrap();
    assert_eq!(who["served_by"], "backend:acme");
    let denied = call(&client, "list_findings").await.unwrap_err();
    assert!(
        denied.contains("403")
            || denied.to_lowercase().contains("insufficient")
            || denied.contains("scope"),
        "{denied}"
    );
    let _ = client.cancel().await;

    // The same refusal, raw: 403, the challenge names the scope, a JSON-RPC error with our id.
    let r = post(
        &mcp,
        Some(&token),
        &json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "list_findings", "arguments": {}}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.header("www-authenticate").contains("insufficient_scope"),
        "{:?}",
        r.headers
    );
    assert!(
        r.header("www-authenticate")
            .contains("scope=\"mcp:tools/call:list_findings\""),
        "{:?}",
        r.headers
    );
    assert_eq!(r.json()["id"], 42, "{}", r.body);
    assert!(r.json()["error"]["code"].is_i64(), "{}", r.body);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mcp_client_through_the_gateway() {
    let _one = SERIAL.lock().await;
    let python = stack::workspace_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run `just pydeps`",
        python.display()
    );
    let (stack, _dir) = start(POLL_MS).await;
    let mcp = format!("{}/mcp", stack.gateway_url());
    let (token, _) = mint(&stack, "globex", "python-client", None).await;
    let script = stack::workspace_root().join("harness/tests/py/list_tools.py");

    let ok = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&mcp)
        .arg(&token)
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "stdout: {out}\nstderr: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("whoami") && out.contains("list_findings"),
        "{out}"
    );
    assert!(out.contains("backend:globex"), "{out}");

    let refused = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&mcp)
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success(), "listed tools without a token");
    let err = String::from_utf8_lossy(&refused.stdout);
    assert!(
        err.contains("401"),
        "{err}\n{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    stack.stop().await;
}

/// Bypass paths carry no credential upstream and no client `x-mcp-*` header,
/// and the route is chosen on what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_paths_forward_without_the_bearer_or_spoofed_headers() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start(0).await;
    let (acme, _) = mint(&stack, "acme", "e2e-bypass", None).await;
    let path = "/.well-known/oauth-protected-resource";
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", stack.gateway_url()))
        .bearer_auth(&acme)
        .header("x-mcp-tenant", "acme")
        .header("X-MCP-Token-Id", "tok_forged")
        .send()
        .await
        .expect("gateway reachable");
    // The shared backend has no such document: its own 404.
    assert_eq!(resp.status(), 404);
    let seen = stack.backends["shared"].seen.snapshot();
    let req = seen
        .iter()
        .find(|r| r.path == path)
        .expect("the bypass request reached the shared backend");
    assert!(req.header("authorization").is_none(), "{req:?}");
    assert!(
        req.headers.iter().all(|(n, _)| !n.starts_with("x-mcp-")),
        "{req:?}"
    );
    for name in ["acme", "globex"] {
        assert!(
            stack.backends[name]
                .seen
                .snapshot()
                .iter()
                .all(|r| r.path != path),
            "{name} got the bypass request"
        );
    }
    stack.stop().await;
}
