//! What a demo backend offers: two dozen tools of a security team's
//! workspace, a few prompts, per-tenant resources and resource templates.
//! Enough surface that a token scoped to a few of them shows the difference
//! in every list.

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use serde_json::{json, Value};

/// (name, description). `whoami` and `list_findings` answer with tenant
/// data; the others echo their call.
pub const TOOLS: [(&str, &str); 24] = [
    (
        "whoami",
        "Which tenant's backend served this call, and which gateway headers it saw.",
    ),
    (
        "list_findings",
        "Security findings of the caller's tenant (demo data).",
    ),
    ("get_finding", "One finding by id, with its evidence."),
    ("search_findings", "Findings matching a text query."),
    ("tag_finding", "Adds a tag to a finding."),
    ("close_finding", "Closes a finding as fixed or accepted."),
    (
        "list_assets",
        "Hosts, repositories and buckets the tenant owns.",
    ),
    ("get_asset", "One asset by id."),
    ("scan_asset", "Starts a scan of an asset."),
    ("list_alerts", "Open alerts, newest first."),
    ("ack_alert", "Acknowledges an alert."),
    ("create_ticket", "Opens a ticket in the tenant's tracker."),
    ("add_comment", "Comments on a ticket."),
    ("list_users", "Members of the tenant."),
    ("get_user", "One member by id."),
    ("disable_user", "Disables a member's access."),
    ("rotate_keys", "Rotates the tenant's API keys."),
    (
        "run_query",
        "Runs a read-only query on the tenant's event store.",
    ),
    ("get_metrics", "Usage metrics of the tenant."),
    ("list_deployments", "Recent deployments."),
    ("rollback_deployment", "Rolls a deployment back."),
    ("page_oncall", "Pages the tenant's on-call engineer."),
    (
        "export_report",
        "Exports a PDF report of the tenant's findings.",
    ),
    ("wipe_tenant", "Deletes every record of the tenant."),
];

pub fn tools() -> Vec<Tool> {
    TOOLS
        .iter()
        .map(|(name, description)| {
            let schema = match *name {
                "whoami" | "list_findings" | "list_assets" | "list_alerts" | "list_users"
                | "get_metrics" | "list_deployments" | "rotate_keys" | "wipe_tenant" => {
                    json!({"type": "object", "properties": {}})
                }
                _ => json!({"type": "object",
                            "properties": {"id": {"type": "string", "description": "what to act on"}}}),
            };
            decode(json!({"name": name, "description": description, "inputSchema": schema}))
        })
        .collect()
}

/// (name, description, arguments).
pub const PROMPTS: [(&str, &str, &[&str]); 4] = [
    (
        "triage_finding",
        "Triage one finding: severity, owner, next step.",
        &["finding_id"],
    ),
    (
        "incident_report",
        "Draft an incident report from open alerts.",
        &[],
    ),
    (
        "weekly_summary",
        "Summarise the week's findings for leadership.",
        &[],
    ),
    (
        "access_review",
        "Review who can reach which assets.",
        &["team"],
    ),
];

pub fn prompts() -> Vec<Prompt> {
    PROMPTS
        .iter()
        .map(|(name, description, args)| {
            let arguments: Vec<Value> = args
                .iter()
                .map(|a| json!({"name": a, "required": true}))
                .collect();
            decode(json!({"name": name, "description": description, "arguments": arguments}))
        })
        .collect()
}

/// Resource paths under `demo://<tenant>/`: (path, name, description).
pub const RESOURCES: [(&str, &str, &str); 5] = [
    (
        "public/readme.md",
        "readme",
        "How this workspace is organised.",
    ),
    (
        "public/policy.md",
        "policy",
        "The tenant's security policy.",
    ),
    (
        "findings/F001.json",
        "finding F001",
        "The first finding, as JSON.",
    ),
    (
        "private/api-keys.txt",
        "api keys",
        "The tenant's API keys (demo values).",
    ),
    ("private/payroll.csv", "payroll", "Salaries (demo values)."),
];

pub fn resource_uri(tenant: &str, path: &str) -> String {
    format!("demo://{tenant}/{path}")
}

pub fn resources(tenant: &str) -> Vec<Resource> {
    RESOURCES
        .iter()
        .map(|(path, name, description)| {
            decode(json!({"uri": resource_uri(tenant, path), "name": name,
                          "description": description, "mimeType": mime(path)}))
        })
        .collect()
}

pub fn templates(tenant: &str) -> Vec<ResourceTemplate> {
    [
        (
            "public/{name}",
            "public document",
            "Any public document by name.",
        ),
        (
            "private/{name}",
            "private document",
            "Any private document by name.",
        ),
        ("findings/{id}.json", "finding", "A finding by id."),
    ]
    .iter()
    .map(|(path, name, description)| {
        decode(
            json!({"uriTemplate": resource_uri(tenant, path), "name": name,
                      "description": description}),
        )
    })
    .collect()
}

pub fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        Some("md") => "text/markdown",
        _ => "text/plain",
    }
}

/// The catalogue is written as the JSON the protocol carries; the rmcp
/// types read it (a typo here fails every backend test at once).
fn decode<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => unreachable!("the demo catalogue does not match the MCP schema: {e}"),
    }
}
