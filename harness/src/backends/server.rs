//! The MCP server behind each demo backend.

use rmcp::{
    handler::server::{router::tool::ToolRouter, tool::Extension},
    model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router, ErrorData as McpError, ServerHandler,
};
use serde_json::{json, Value};

use super::Tenancy;

/// Header names the gateway writes (the filter's defaults).
const GATEWAY_HEADERS: [&str; 4] = [
    "x-mcp-tenant",
    "x-mcp-project",
    "x-mcp-token-id",
    "x-mcp-token-name",
];

#[derive(Debug, Clone)]
pub struct DemoServer {
    tenancy: Tenancy,
    tool_router: ToolRouter<Self>,
}

#[tool_router(router = tool_router)]
impl DemoServer {
    pub fn new(tenancy: Tenancy) -> Self {
        Self {
            tenancy,
            tool_router: Self::tool_router(),
        }
    }

    /// Which tenant's backend served this call, and which gateway headers it saw.
    #[tool(name = "whoami")]
    async fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let tenant = self.tenant(&parts)?;
        let seen: serde_json::Map<String, Value> = GATEWAY_HEADERS
            .iter()
            .filter_map(|&h| header(&parts, h).map(|v| (h.to_string(), json!(v))))
            .collect();
        reply(json!({
            "served_by": self.served_by(),
            "tenant": tenant,
            "gateway_headers": seen,
            "saw_authorization": parts.headers.contains_key(http::header::AUTHORIZATION),
        }))
    }

    /// Security findings of the caller's tenant (demo data).
    #[tool(name = "list_findings")]
    async fn list_findings(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, McpError> {
        let tenant = self.tenant(&parts)?;
        let findings: Vec<Value> = (1..=3)
            .map(|i| {
                let severity = ["low", "medium", "high"][i % 3];
                json!({
                    "id": format!("{tenant}-F{i:03}"),
                    "title": format!("{tenant}: finding {i}"),
                    "severity": severity,
                })
            })
            .collect();
        reply(json!({ "served_by": self.served_by(), "tenant": tenant, "findings": findings }))
    }
}

impl DemoServer {
    fn served_by(&self) -> String {
        match &self.tenancy {
            Tenancy::Fixed(t) => format!("backend:{t}"),
            Tenancy::FromHeader(_) => "backend:shared".to_string(),
        }
    }

    /// The tenant whose data this call may see. A shared backend trusts only
    /// the gateway's header and refuses a call without it.
    fn tenant(&self, parts: &http::request::Parts) -> Result<String, McpError> {
        match &self.tenancy {
            Tenancy::Fixed(t) => Ok(t.clone()),
            Tenancy::FromHeader(h) => header(parts, h).map(str::to_string).ok_or_else(|| {
                McpError::invalid_request(format!("missing trusted header {h}"), None)
            }),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcpgw-demo", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!("Demo MCP backend ({}).", self.served_by()))
    }
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn reply(value: Value) -> Result<CallToolResult, McpError> {
    Ok(CallToolResult::success(vec![ContentBlock::json(value)?]))
}
