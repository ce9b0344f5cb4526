//! A small client of the token API for the CLI, with errors that say what to do.

use anyhow::{anyhow, Context as _};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct ApiClient {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, key: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            key,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.send(Method::POST, path, &[], body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, &[], None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the token API at {}: {e}\n  \
                 is it running? start it with `mcpgw serve-token-api` or `./just up`, \
                 or point --api / MCPGW_API at it",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .context("reading the token API's answer")?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .with_context(|| format!("the token API answered {status} with invalid JSON"));
        }
        Err(explain(status, &text, self.key.is_some()))
    }
}

/// Turns an error answer into advice.
fn explain(status: StatusCode, body: &str, had_key: bool) -> anyhow::Error {
    let (code, message) = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        })
        .unwrap_or_else(|| (String::new(), body.chars().take(200).collect()));
    let advice = match status {
        StatusCode::UNAUTHORIZED if !had_key => {
            "no credential: pass --key or set MCPGW_KEY to the admin key or a token with tokens:* scopes"
        }
        StatusCode::UNAUTHORIZED => "the key was refused: check MCPGW_KEY / --key (admin key or an active token)",
        StatusCode::FORBIDDEN => "the credential lacks what this needs (see the scope named above); use the admin key or a token with that scope",
        StatusCode::NOT_FOUND => "no such token (or not visible to this credential); `mcpgw token list` shows ids",
        StatusCode::CONFLICT if code == "token_revoked" => "a revoked token cannot be changed; mint a new one",
        StatusCode::CONFLICT => "a live token with this name exists in the tenant/project: pick another --name or revoke the old one",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        s if s.is_server_error() => "the token API failed; check its log",
        _ => "fix the request as the message says",
    };
    let code = if code.is_empty() {
        String::new()
    } else {
        format!(" ({code})")
    };
    anyhow!("token API answered {status}{code}: {message}\n  {advice}")
}
