//! `mcpgw token …` and `mcpgw audit`: thin verbs over the token API.

use serde_json::{json, Value};

use super::api::ApiClient;
use super::table::{cell, render};
use super::{AuditArgs, CreateArgs, ListArgs, UpdateArgs};
use mcpgw_token::ratelimit::RateLimit;

const TOKENS: &str = "/api/v1/mcptokens";

pub async fn create(api: &ApiClient, a: CreateArgs, as_json: bool) -> anyhow::Result<()> {
    let mut body = json!({ "name": a.name, "tenant": a.tenant });
    let obj = body.as_object_mut().expect("literal object");
    if let Some(p) = a.project {
        obj.insert("project".into(), json!(p));
    }
    if let Some(t) = a.ttl {
        obj.insert("ttl".into(), json!(t));
    }
    if let Some(e) = a.expires_at {
        obj.insert("expires_at".into(), json!(e));
    }
    if !a.scope.is_empty() {
        obj.insert("scopes".into(), json!(a.scope));
    }
    if let Some(r) = a.rbac {
        obj.insert("rbac".into(), json!(r));
    }
    if let Some(l) = &a.rate_limit {
        obj.insert("rate_limit".into(), limit_json(l)?);
    }
    let created = api.post(TOKENS, Some(body)).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&created)?);
        return Ok(());
    }
    let token = created.get("token").and_then(Value::as_str).unwrap_or("");
    println!("{}", describe_text(&created));
    println!();
    println!("token: {token}");
    println!("Store this token now: it is shown only once and cannot be recovered.");
    Ok(())
}

pub async fn list(api: &ApiClient, a: ListArgs, as_json: bool) -> anyhow::Result<()> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    // Walk every page unless the user asked for one bounded page.
    loop {
        let mut q = vec![("include_revoked", a.include_revoked.to_string())];
        if let Some(t) = &a.tenant {
            q.push(("tenant", t.clone()));
        }
        if let Some(p) = &a.project {
            q.push(("project", p.clone()));
        }
        if let Some(l) = a.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = api.get(TOKENS, &q).await?;
        if let Some(items) = page.get("tokens").and_then(Value::as_array) {
            all.extend(items.iter().cloned());
        }
        cursor = page
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_string);
        if cursor.is_none() || a.limit.is_some() {
            break;
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tokens": all }))?
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|t| {
            vec![
                cell(t, "id"),
                cell(t, "name"),
                cell(t, "tenant"),
                cell(t, "project"),
                cell(t, "scopes"),
                limit_text(t),
                status(t),
                cell(t, "expires_at"),
                cell(t, "last_used_at"),
            ]
        })
        .collect();
    println!(
        "{}",
        render(
            &[
                "ID",
                "NAME",
                "TENANT",
                "PROJECT",
                "SCOPES",
                "RATE LIMIT",
                "STATUS",
                "EXPIRES",
                "LAST USED"
            ],
            &rows
        )
    );
    println!("{} token(s)", all.len());
    Ok(())
}

pub async fn describe(api: &ApiClient, id: &str, as_json: bool) -> anyhow::Result<()> {
    let t = api.get(&format!("{TOKENS}/{id}"), &[]).await?;
    print_record(&t, as_json)
}

/// `--rate-limit`: the text form, or `none`, as the API's JSON.
fn limit_json(text: &str) -> anyhow::Result<Value> {
    if text.trim() == "none" {
        return Ok(Value::Null);
    }
    let l = RateLimit::parse(text).map_err(|e| anyhow::anyhow!("--rate-limit: {e}, or none"))?;
    Ok(json!(l))
}

/// A rate limit as people write it: `600/m burst 50`, or `none`.
fn limit_text(t: &Value) -> String {
    match t.get("rate_limit") {
        None => "-".into(),
        Some(Value::Null) => "none".into(),
        Some(v) => serde_json::from_value::<RateLimit>(v.clone())
            .map_or_else(|_| v.to_string(), |l| l.to_string()),
    }
}

pub async fn update(api: &ApiClient, a: UpdateArgs, as_json: bool) -> anyhow::Result<()> {
    let body = json!({"rate_limit": limit_json(&a.rate_limit)?});
    let t = api.patch(&format!("{TOKENS}/{}", a.id), body).await?;
    if !as_json {
        println!(
            "rate limit of {} is now {}; gateways apply it within one revocation poll",
            a.id,
            limit_text(&t)
        );
        if let Some(n) = t
            .get("cascade_limited")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
        {
            println!("{n} token(s) it minted were lowered to it too");
        }
    }
    print_record(&t, as_json)
}

pub async fn revoke(api: &ApiClient, id: &str, as_json: bool) -> anyhow::Result<()> {
    let t = api.post(&format!("{TOKENS}/{id}/revoke"), None).await?;
    if !as_json {
        println!("revoked {id}; gateways stop accepting it within one revocation poll");
    }
    print_record(&t, as_json)
}

pub async fn delete(api: &ApiClient, id: &str, as_json: bool) -> anyhow::Result<()> {
    let v = api.delete(&format!("{TOKENS}/{id}")).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("deleted {id}");
    }
    Ok(())
}

pub async fn audit(api: &ApiClient, a: AuditArgs, as_json: bool) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if let Some(t) = a.tenant {
        q.push(("tenant", t));
    }
    if let Some(t) = a.token_id {
        q.push(("token_id", t));
    }
    q.push(("limit", a.limit.to_string()));
    let page = api.get("/api/v1/audit", &q).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    let events = page
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                cell(e, "at"),
                cell(e, "event"),
                cell(e, "tenant"),
                cell(e, "token_id"),
                cell(e, "token_name"),
                cell(e, "actor"),
            ]
        })
        .collect();
    println!(
        "{}",
        render(
            &["AT", "EVENT", "TENANT", "TOKEN ID", "TOKEN NAME", "ACTOR"],
            &rows
        )
    );
    Ok(())
}

fn print_record(t: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(t)?);
    } else {
        println!("{}", describe_text(t));
    }
    Ok(())
}

fn describe_text(t: &Value) -> String {
    let mut rows = Vec::new();
    for f in [
        "id",
        "name",
        "tenant",
        "project",
        "scopes",
        "hint",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ] {
        if t.get(f).is_some() {
            rows.push(vec![format!("{f}:"), cell(t, f)]);
        }
    }
    if t.get("rate_limit").is_some() {
        rows.push(vec!["rate_limit:".into(), limit_text(t)]);
    }
    rows.push(vec!["status:".into(), status(t)]);
    render(&["", ""], &rows).trim_start().to_string()
}

fn status(t: &Value) -> String {
    if let Some(s) = t.get("status").and_then(Value::as_str) {
        return s.to_string();
    }
    if !t.get("revoked_at").is_none_or(Value::is_null) {
        return "revoked".into();
    }
    if t.get("expired").and_then(Value::as_bool) == Some(true) {
        return "expired".into();
    }
    "active".into()
}
