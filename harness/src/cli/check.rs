//! `mcpgw check <url> --token …`: does this Streamable-HTTP MCP endpoint work
//! with this token? A raw `initialize` first (to explain HTTP-level refusals in
//! words), then a real MCP session with the rmcp client.

use std::time::{Duration, Instant};

use rmcp::{
    model::CallToolRequestParams,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ServiceExt,
};
use serde_json::{json, Value};

use super::CheckArgs;

/// One line of the report.
struct Step {
    name: String,
    elapsed: Duration,
    outcome: Result<String, String>,
}

pub async fn run(a: CheckArgs, as_json: bool) -> anyhow::Result<std::process::ExitCode> {
    let mut steps = Vec::new();
    let ok = check(&a, &mut steps).await;
    if as_json {
        let report: Vec<Value> = steps
            .iter()
            .map(|s| {
                json!({
                    "step": s.name,
                    "ms": s.elapsed.as_secs_f64() * 1000.0,
                    "ok": s.outcome.is_ok(),
                    "detail": match &s.outcome { Ok(d) | Err(d) => d },
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"url": a.url, "ok": ok, "steps": report}))?
        );
    } else {
        println!("checking {}", a.url);
        for s in &steps {
            let (mark, detail) = match &s.outcome {
                Ok(d) => ("PASS", d),
                Err(d) => ("FAIL", d),
            };
            println!(
                "  {mark}  {:<12} {:>8.1} ms  {detail}",
                s.name,
                s.elapsed.as_secs_f64() * 1000.0
            );
        }
        println!("{}", if ok { "result: PASS" } else { "result: FAIL" });
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn check(a: &CheckArgs, steps: &mut Vec<Step>) -> bool {
    let timeout = Duration::from_millis(a.timeout_ms);

    // 1. HTTP preflight: a plain initialize, so refusals are explained precisely.
    let t = Instant::now();
    let pre = preflight(a, timeout).await;
    let pre_ok = pre.is_ok();
    steps.push(Step {
        name: "http".into(),
        elapsed: t.elapsed(),
        outcome: pre,
    });
    if !pre_ok {
        return false;
    }

    // 2. A real MCP session: initialize, tools/list, optionally tools/call.
    let mut config = StreamableHttpClientTransportConfig::with_uri(a.url.clone());
    if let Some(tok) = &a.token {
        config = config.auth_header(tok.clone());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let t = Instant::now();
    let client = match tokio::time::timeout(timeout, ().serve(transport)).await {
        Ok(Ok(c)) => {
            let info = c
                .peer_info()
                .and_then(|i| i.server_info.clone())
                .map(|s| format!("server {} {}", s.name, s.version))
                .unwrap_or_else(|| "initialized".into());
            steps.push(Step {
                name: "initialize".into(),
                elapsed: t.elapsed(),
                outcome: Ok(info),
            });
            c
        }
        Ok(Err(e)) => {
            steps.push(Step {
                name: "initialize".into(),
                elapsed: t.elapsed(),
                outcome: Err(e.to_string()),
            });
            return false;
        }
        Err(_) => {
            steps.push(Step {
                name: "initialize".into(),
                elapsed: t.elapsed(),
                outcome: Err(format!("no answer within {timeout:?}")),
            });
            return false;
        }
    };

    let t = Instant::now();
    let mut ok = match tokio::time::timeout(timeout, client.list_all_tools()).await {
        Ok(Ok(tools)) => {
            let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
            steps.push(Step {
                name: "tools/list".into(),
                elapsed: t.elapsed(),
                outcome: Ok(format!("{} tool(s): {}", names.len(), names.join(", "))),
            });
            true
        }
        Ok(Err(e)) => {
            steps.push(Step {
                name: "tools/list".into(),
                elapsed: t.elapsed(),
                outcome: Err(explain_service_error(&e.to_string())),
            });
            false
        }
        Err(_) => {
            steps.push(Step {
                name: "tools/list".into(),
                elapsed: t.elapsed(),
                outcome: Err(format!("no answer within {timeout:?}")),
            });
            false
        }
    };

    if let Some(tool) = &a.call {
        let args = match a.args.as_deref().map(serde_json::from_str::<Value>) {
            None => serde_json::Map::new(),
            Some(Ok(Value::Object(m))) => m,
            Some(_) => {
                steps.push(Step {
                    name: "tools/call".into(),
                    elapsed: Duration::ZERO,
                    outcome: Err("--args must be a JSON object".into()),
                });
                return false;
            }
        };
        let t = Instant::now();
        let params = CallToolRequestParams::new(tool.clone()).with_arguments(args);
        let step = match tokio::time::timeout(timeout, client.call_tool(params)).await {
            Ok(Ok(r)) if r.is_error == Some(true) => {
                Err(format!("{tool} reported an error: {}", content_text(&r)))
            }
            Ok(Ok(r)) => Ok(format!("{tool}: {}", truncate(&content_text(&r), 160))),
            Ok(Err(e)) => Err(explain_service_error(&e.to_string())),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        ok &= step.is_ok();
        steps.push(Step {
            name: "tools/call".into(),
            elapsed: t.elapsed(),
            outcome: step,
        });
    }
    let _ = client.cancel().await;
    ok
}

async fn preflight(a: &CheckArgs, timeout: Duration) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = http
        .post(&a.url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "mcpgw-check", "version": env!("CARGO_PKG_VERSION")}}
        }));
    if let Some(tok) = &a.token {
        req = req.bearer_auth(tok);
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {timeout:?}: is the URL right and the gateway up?")
        } else {
            format!("cannot connect: {e}: is the gateway running at this address?")
        }
    })?;
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status.is_success() {
        return Ok(format!("{status}"));
    }
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Err(explain_status(
        status.as_u16(),
        &challenge,
        retry.as_deref(),
        a.token.is_some(),
        &body,
    ))
}

/// Words for an HTTP refusal.
pub fn explain_status(
    status: u16,
    challenge: &str,
    retry: Option<&str>,
    had_token: bool,
    body: &str,
) -> String {
    let why = match status {
        401 if !had_token => "401 Unauthorized: the endpoint needs a token; pass --token (or MCPGW_TOKEN)".to_string(),
        401 if challenge.contains("invalid_token") => {
            "401 Unauthorized: the token was refused (malformed, unknown, revoked or expired); check it with `mcpgw token describe` or mint a new one".to_string()
        }
        401 => "401 Unauthorized: the token was not accepted; send it as `Authorization: Bearer mcpctl_pat_…`".to_string(),
        403 => {
            let scope = challenge
                .split("scope=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("?");
            format!("403 Forbidden: the token lacks the scope {scope}; mint a token with it")
        }
        404 => "404 Not Found: no MCP endpoint at this path (most servers serve /mcp); check the URL and the gateway's routes".to_string(),
        413 => "413 Payload Too Large: the request body exceeds the gateway's max_body_bytes".to_string(),
        503 => format!(
            "503 Service Unavailable: the gateway cannot reach its token API or the backend{}",
            retry.map(|r| format!(" (retry after {r}s)")).unwrap_or_default()
        ),
        s if s >= 500 => format!("{s}: the gateway or the MCP backend failed; check their logs"),
        s => format!("{s}: unexpected answer"),
    };
    if body.is_empty() {
        why
    } else {
        format!("{why} — body: {body}")
    }
}

fn explain_service_error(e: &str) -> String {
    for code in ["401", "403", "404", "503"] {
        if e.contains(code) {
            return format!(
                "{e} ({})",
                explain_status(code.parse().unwrap_or(0), e, None, true, "")
            );
        }
    }
    e.to_string()
}

fn content_text(r: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&r.content)
        .ok()
        .and_then(|v| {
            v.as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .unwrap_or_default()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::explain_status;

    #[test]
    fn explains_refusals() {
        assert!(explain_status(401, "", None, false, "").contains("pass --token"));
        assert!(explain_status(
            401,
            "Bearer realm=\"mcp\", error=\"invalid_token\"",
            None,
            true,
            ""
        )
        .contains("revoked"));
        assert!(explain_status(
            403,
            "Bearer error=\"insufficient_scope\", scope=\"mcp:tools/call:x\"",
            None,
            true,
            ""
        )
        .contains("mcp:tools/call:x"));
        assert!(explain_status(404, "", None, true, "").contains("/mcp"));
        assert!(explain_status(503, "", Some("1"), true, "").contains("retry after 1s"));
    }
}
