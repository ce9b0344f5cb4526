//! Per-token list visibility end to end: real Envoy with the real
//! `filter.wasm`, the real token API, the rmcp demo backends (event streams,
//! JSON, pages), raw backends that compress or garble, and real MCP clients
//! (rmcp, and the PyPI `mcp` package).
//!
//! Needs `just build`, `just envoy` and `just pydeps` (`just test` runs them).

use std::net::SocketAddr;

use harness::backends::scripted::{Script, Scripted};
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

/// What the restricted token may use: two tools (on pages 1 and 3 of
/// `/mcp/paged`), one prompt family, the public documents.
const RESTRICTED: [&str; 8] = [
    "mcp:tools/list",
    "mcp:prompts/list",
    "mcp:resources/list",
    "mcp:resources/templates/list",
    "mcp:tools/call:whoami",
    "mcp:tools/call:export_report",
    "mcp:prompts/get:triage_*",
    "mcp:resources/read:demo://acme/public/*",
];

async fn start() -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = stack::default_filter_config();
    config["revocation_poll_ms"] = json!(0);
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

async fn mint(stack: &Stack, name: &str, scopes: &[&str]) -> String {
    let created = stack
        .mint(json!({"name": name, "tenant": "acme", "scopes": scopes}))
        .await
        .unwrap();
    created["token"].as_str().unwrap().to_string()
}

async fn mcp_client(url: &str, token: &str) -> RunningService<RoleClient, ()> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
        .auth_header(token.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap_or_else(|e| panic!("MCP session through the gateway failed: {e}"))
}

/// `field` of every item, through JSON (the protocol's names).
fn field<T: serde::Serialize>(items: &[T], field: &str) -> Vec<String> {
    serde_json::to_value(items)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_string())
        .collect()
}

struct Lists {
    tools: Vec<String>,
    prompts: Vec<String>,
    resources: Vec<String>,
    templates: Vec<String>,
}

async fn rmcp_lists(client: &RunningService<RoleClient, ()>) -> Lists {
    Lists {
        tools: field(&client.list_all_tools().await.unwrap(), "name"),
        prompts: field(&client.list_all_prompts().await.unwrap(), "name"),
        resources: field(&client.list_all_resources().await.unwrap(), "uri"),
        templates: field(
            &client.list_all_resource_templates().await.unwrap(),
            "uriTemplate",
        ),
    }
}

fn assert_restricted(lists: &Lists, how: &str) {
    assert_eq!(lists.tools, ["whoami", "export_report"], "{how}");
    assert_eq!(lists.prompts, ["triage_finding"], "{how}");
    assert_eq!(
        lists.resources,
        [
            "demo://acme/public/readme.md",
            "demo://acme/public/policy.md"
        ],
        "{how}"
    );
    assert_eq!(lists.templates, ["demo://acme/public/{name}"], "{how}");
}

async fn envoy_counter(stack: &Stack, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/stats?filter={name}$", stack.envoy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.ends_with(name))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_see_only_what_the_token_may_use() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start().await;
    let restricted = mint(&stack, "lists-restricted", &RESTRICTED).await;
    let everything = mint(&stack, "lists-all", &["mcp:*"]).await;
    let base = stack.gateway_url();

    // rmcp, every way the backend answers: event streams, JSON, pages (the
    // second page filters to nothing and must still lead to the third).
    for path in ["/mcp", "/mcp/json", "/mcp/paged"] {
        let client = mcp_client(&format!("{base}{path}"), &restricted).await;
        let lists = rmcp_lists(&client).await;
        assert_restricted(&lists, &format!("rmcp on {path}"));
        let who = client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .expect("a listed tool can be called");
        assert!(serde_json::to_string(&who)
            .unwrap()
            .contains("backend:acme"));
        let denied = client
            .call_tool(CallToolRequestParams::new("wipe_tenant"))
            .await
            .expect_err("an unlisted tool stays forbidden");
        assert!(
            denied
                .to_string()
                .to_lowercase()
                .contains("insufficient scope"),
            "{denied}"
        );
        let _ = client.cancel().await;
    }

    // The same backend, a token that may use everything: all of it.
    let client = mcp_client(&format!("{base}/mcp/paged"), &everything).await;
    let lists = rmcp_lists(&client).await;
    assert_eq!(lists.tools.len(), 24);
    assert_eq!(lists.prompts.len(), 4);
    assert_eq!(lists.resources.len(), 5);
    assert_eq!(lists.templates.len(), 3);
    let _ = client.cancel().await;

    // The PyPI client, following cursors.
    let python = stack::workspace_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run `just pydeps`",
        python.display()
    );
    let script = stack::workspace_root().join("harness/tests/py/lists.py");
    for path in ["/mcp", "/mcp/paged"] {
        let out = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(format!("{base}{path}"))
            .arg(&restricted)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{path}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.trim()).unwrap();
        let strings = |k: &str| -> Vec<String> { serde_json::from_value(v[k].clone()).unwrap() };
        assert_restricted(
            &Lists {
                tools: strings("tools"),
                prompts: strings("prompts"),
                resources: strings("resources"),
                templates: strings("templates"),
            },
            &format!("python on {path}"),
        );
        if path == "/mcp/paged" {
            assert_eq!(v["tools_pages"], 3, "{v}");
        }
    }

    assert!(envoy_counter(&stack, "mcp_auth.lists.filtered").await >= 20);
    assert!(envoy_counter(&stack, "mcp_auth.lists.hidden_items").await > 0);
    assert_eq!(envoy_counter(&stack, "mcp_auth.lists.withheld").await, 0);
    stack.stop().await;
}

struct Raw {
    status: u16,
    content_type: String,
    encoding: Option<String>,
    body: Vec<u8>,
}

impl Raw {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The JSON of every event's data.
    fn events(&self) -> Vec<Value> {
        self.text()
            .replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(|e| {
                let data: Vec<&str> = e
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                let data = data.join("\n");
                (!data.trim().is_empty()).then(|| serde_json::from_str(&data).unwrap())
            })
            .collect()
    }
}

async fn post(url: &str, token: &str, body: &Value, extra: &[(&str, &str)]) -> Raw {
    let mut req = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("gateway reachable");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Raw {
        status: resp.status().as_u16(),
        content_type: header("content-type").unwrap_or_default(),
        encoding: header("content-encoding"),
        body: resp.bytes().await.unwrap_or_default().to_vec(),
    }
}

fn tools_list(id: u64, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params})
}

fn names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_and_stateless_lists_through_envoy() {
    let _one = SERIAL.lock().await;
    let (stack, _dir) = start().await;
    let restricted = mint(&stack, "lists-raw", &RESTRICTED).await;
    let json_url = format!("{}/mcp/json", stack.gateway_url());
    let v2025 = [("mcp-protocol-version", "2025-06-18")];

    // A progress token makes the backend send notifications before the
    // answer: an event stream, where only the answer changes.
    let raw = post(
        &json_url,
        &restricted,
        &tools_list(3, json!({"_meta": {"progressToken": "p"}})),
        &v2025,
    )
    .await;
    assert_eq!(raw.status, 200);
    assert!(
        raw.content_type.starts_with("text/event-stream"),
        "{}",
        raw.content_type
    );
    let events = raw.events();
    assert_eq!(events.len(), 3, "{}", raw.text());
    assert_eq!(events[0]["method"], "notifications/progress");
    assert_eq!(events[0]["params"]["progress"], 1.0);
    assert_eq!(events[1]["params"]["message"], "done");
    assert_eq!(names(&events[2]), ["whoami", "export_report"]);
    assert!(!raw.text().contains("wipe_tenant"));

    // The same answer as JSON, and the backend was asked for identity.
    let raw = post(&json_url, &restricted, &tools_list(4, json!({})), &v2025).await;
    assert!(raw.content_type.starts_with("application/json"));
    assert_eq!(names(&raw.json()), ["whoami", "export_report"]);
    let asked = stack.backends["acme"].seen.snapshot();
    assert!(
        asked
            .iter()
            .filter(|r| r.method == "POST")
            .all(|r| r.header("accept-encoding") == Some("identity")),
        "{asked:?}"
    );

    // 2026-07-28: stateless, the method in `Mcp-Method`, cache hints.
    let meta = json!({"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}});
    let raw = post(
        &json_url,
        &restricted,
        &tools_list(5, meta),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    let answer = raw.json();
    assert_eq!(names(&answer), ["whoami", "export_report"], "{answer}");
    assert_eq!(answer["result"]["ttlMs"], 60000, "kept");
    assert_eq!(
        answer["result"]["cacheScope"], "private",
        "the server said public"
    );
    stack.stop().await;
}

/// Puts a scripted backend where acme's demo backend was.
async fn script(stack: &mut Stack, previous: Option<Scripted>, how: Script) -> Scripted {
    if let Some(p) = previous {
        p.stop().await;
    }
    if let Some(b) = stack.backends.remove("acme") {
        b.stop().await;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], stack.ports.acme));
    Scripted::start(addr, how).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_or_garbled_answers_never_reach_a_restricted_token() {
    let _one = SERIAL.lock().await;
    let (mut stack, _dir) = start().await;
    let restricted = mint(&stack, "lists-faults", &RESTRICTED).await;
    let everything = mint(&stack, "lists-faults-all", &["mcp:*"]).await;
    let url = format!("{}/mcp", stack.gateway_url());
    let gzip_ok = [("accept-encoding", "gzip")];

    // A server that compresses only when asked to: the filter asks for
    // identity, the restricted token gets its filtered list.
    let backend = script(&mut stack, None, Script::GzipIfAccepted).await;
    let raw = post(&url, &restricted, &tools_list(1, json!({})), &gzip_ok).await;
    assert_eq!(raw.encoding, None);
    assert_eq!(names(&raw.json()), ["whoami", "export_report"]);
    // An mcp:* token's request is not touched: it gets what it asked for.
    let raw = post(&url, &everything, &tools_list(2, json!({})), &gzip_ok).await;
    assert_eq!(raw.encoding.as_deref(), Some("gzip"));
    let seen = backend.seen.snapshot();
    assert_eq!(seen[0].header("accept-encoding"), Some("identity"));
    assert_eq!(seen[1].header("accept-encoding"), Some("gzip"));

    // A server that compresses anyway: a JSON-RPC error, never the list.
    let backend = script(&mut stack, Some(backend), Script::GzipAlways).await;
    let raw = post(&url, &restricted, &tools_list(3, json!({})), &gzip_ok).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.encoding, None);
    assert!(raw.content_type.starts_with("application/json"));
    let error = raw.json();
    assert_eq!(error["id"], 3, "{error}");
    assert_eq!(error["error"]["code"], -32603);
    assert!(
        error["error"]["message"].as_str().unwrap().contains("gzip"),
        "{error}"
    );

    // A cut-short body.
    let backend = script(&mut stack, Some(backend), Script::Truncated).await;
    let raw = post(&url, &restricted, &tools_list(4, json!({})), &[]).await;
    assert!(!raw.text().contains("wipe_tenant"), "{}", raw.text());
    let error = raw.json();
    assert_eq!(
        (error["id"].clone(), error["error"]["code"].clone()),
        (json!(4), json!(-32603))
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{error}"
    );

    // An event stream whose list answer holds NaN (Python's json reads it):
    // the progress event passes, the answer becomes an error event.
    let backend = script(&mut stack, Some(backend), Script::NanEvent).await;
    let raw = post(&url, &restricted, &tools_list(5, json!({})), &[]).await;
    assert!(!raw.text().contains("wipe_tenant"), "{}", raw.text());
    let events = raw.events();
    assert_eq!(events.len(), 2, "{}", raw.text());
    assert_eq!(events[0]["method"], "notifications/progress");
    assert_eq!(
        (events[1]["id"].clone(), events[1]["error"]["code"].clone()),
        (json!(5), json!(-32603))
    );
    backend.stop().await;

    assert_eq!(envoy_counter(&stack, "mcp_auth.lists.withheld").await, 3);
    stack.stop().await;
}
