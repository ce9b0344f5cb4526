//! The MCP server behind each demo backend: the tools, prompts, resources
//! and templates of [`super::catalog`], lists in pages when asked to, and
//! progress notifications before a list answer when the client sent a
//! `progressToken` (so an event stream carries them before the answer).

use rmcp::{
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
        GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse,
        ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    ErrorData as McpError, RoleServer, ServerHandler,
};
use serde_json::{json, Value};

use super::{catalog, Tenancy};

/// Header names the gateway writes (the filter's defaults).
const GATEWAY_HEADERS: [&str; 4] = [
    "x-mcp-tenant",
    "x-mcp-project",
    "x-mcp-token-id",
    "x-mcp-token-name",
];

/// How long a list answer stays fresh (`ttlMs`, 2026-07-28).
const LIST_TTL_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct DemoServer {
    tenancy: Tenancy,
    /// Items per list page; `None`: whole lists.
    page_size: Option<usize>,
}

impl DemoServer {
    pub fn new(tenancy: Tenancy) -> Self {
        Self {
            tenancy,
            page_size: None,
        }
    }

    /// Lists in pages of `size` items, `nextCursor` between them.
    pub fn paged(mut self, size: usize) -> Self {
        self.page_size = Some(size.max(1));
        self
    }

    fn served_by(&self) -> String {
        match &self.tenancy {
            Tenancy::Fixed(t) => format!("backend:{t}"),
            Tenancy::FromHeader(_) => "backend:shared".to_string(),
        }
    }

    /// The tenant whose data this call may see. A shared backend trusts only
    /// the gateway's header and refuses a call without it.
    fn tenant(&self, context: &RequestContext<RoleServer>) -> Result<String, McpError> {
        match &self.tenancy {
            Tenancy::Fixed(t) => Ok(t.clone()),
            Tenancy::FromHeader(h) => header(context, h).map(str::to_string).ok_or_else(|| {
                McpError::invalid_request(format!("missing trusted header {h}"), None)
            }),
        }
    }

    /// One page of `items` from `cursor` (an offset), and the next cursor.
    fn page<T>(
        &self,
        items: Vec<T>,
        request: Option<&PaginatedRequestParams>,
    ) -> Result<(Vec<T>, Option<String>), McpError> {
        let Some(size) = self.page_size else {
            return Ok((items, None));
        };
        let start = match request.and_then(|r| r.cursor.as_deref()) {
            None => 0,
            Some(c) => c
                .strip_prefix("offset-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= items.len())
                .ok_or_else(|| McpError::invalid_params(format!("unknown cursor {c:?}"), None))?,
        };
        let end = (start + size).min(items.len());
        let next = (end < items.len()).then(|| format!("offset-{end}"));
        Ok((
            items.into_iter().skip(start).take(end - start).collect(),
            next,
        ))
    }

    /// Freshness hints (2026-07-28): lists that are the same for every
    /// caller of this backend may be cached by anyone.
    fn cache_scope(&self, per_tenant: bool) -> CacheScope {
        match (&self.tenancy, per_tenant) {
            (Tenancy::FromHeader(_), true) => CacheScope::Private,
            _ => CacheScope::Public,
        }
    }

    /// Progress notifications before a list answer, when asked for.
    async fn progress(&self, context: &RequestContext<RoleServer>) {
        let Some(token) = context.meta.get_progress_token() else {
            return;
        };
        for (progress, message) in [(1, "collecting"), (2, "done")] {
            let param: Result<ProgressNotificationParam, _> = serde_json::from_value(json!({
                "progressToken": token, "progress": progress, "total": 2, "message": message
            }));
            if let Ok(param) = param {
                let _ = context.peer.notify_progress(param).await;
            }
        }
    }

    fn whoami(&self, context: &RequestContext<RoleServer>) -> Result<Value, McpError> {
        let tenant = self.tenant(context)?;
        let seen: serde_json::Map<String, Value> = GATEWAY_HEADERS
            .iter()
            .filter_map(|&h| header(context, h).map(|v| (h.to_string(), json!(v))))
            .collect();
        let saw_authorization =
            parts(context).is_some_and(|p| p.headers.contains_key(http::header::AUTHORIZATION));
        Ok(json!({
            "served_by": self.served_by(),
            "tenant": tenant,
            "gateway_headers": seen,
            "saw_authorization": saw_authorization,
        }))
    }

    fn list_findings(&self, context: &RequestContext<RoleServer>) -> Result<Value, McpError> {
        let tenant = self.tenant(context)?;
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
        Ok(json!({ "served_by": self.served_by(), "tenant": tenant, "findings": findings }))
    }
}

impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("mcpgw-demo", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!("Demo MCP backend ({}).", self.served_by()))
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.progress(&context).await;
        let (tools, next) = self.page(catalog::tools(), request.as_ref())?;
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        result.ttl_ms = Some(LIST_TTL_MS);
        result.cache_scope = Some(self.cache_scope(false));
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let answer = match request.name.as_ref() {
            "whoami" => self.whoami(&context)?,
            "list_findings" => self.list_findings(&context)?,
            name if catalog::TOOLS.iter().any(|(n, _)| *n == name) => json!({
                "served_by": self.served_by(),
                "tenant": self.tenant(&context)?,
                "tool": name,
                "arguments": request.arguments,
                "result": "done (demo: nothing changed)",
            }),
            name => {
                return Err(McpError::invalid_params(
                    format!("no tool named {name:?}"),
                    None,
                ))
            }
        };
        Ok(CallToolResult::success(vec![ContentBlock::json(answer)?]).into())
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.progress(&context).await;
        let (prompts, next) = self.page(catalog::prompts(), request.as_ref())?;
        let mut result = ListPromptsResult::with_all_items(prompts);
        result.next_cursor = next;
        result.ttl_ms = Some(LIST_TTL_MS);
        result.cache_scope = Some(self.cache_scope(false));
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let tenant = self.tenant(&context)?;
        let Some((name, description, _)) =
            catalog::PROMPTS.iter().find(|(n, _, _)| *n == request.name)
        else {
            return Err(McpError::invalid_params(
                format!("no prompt named {:?}", request.name),
                None,
            ));
        };
        let text = format!(
            "{description} Tenant: {tenant}. Arguments: {}",
            serde_json::to_string(&request.arguments).unwrap_or_default()
        );
        serde_json::from_value(json!({
            "description": format!("{name} for {tenant}"),
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        }))
        .map(GetPromptResponse::Complete)
        .map_err(|e| McpError::internal_error(e.to_string(), None))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.progress(&context).await;
        let tenant = self.tenant(&context)?;
        let (resources, next) = self.page(catalog::resources(&tenant), request.as_ref())?;
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        result.ttl_ms = Some(LIST_TTL_MS);
        result.cache_scope = Some(self.cache_scope(true));
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.progress(&context).await;
        let tenant = self.tenant(&context)?;
        let (templates, next) = self.page(catalog::templates(&tenant), request.as_ref())?;
        let mut result = ListResourceTemplatesResult::with_all_items(templates);
        result.next_cursor = next;
        result.ttl_ms = Some(LIST_TTL_MS);
        result.cache_scope = Some(self.cache_scope(true));
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let tenant = self.tenant(&context)?;
        let prefix = catalog::resource_uri(&tenant, "");
        let Some(path) = request.uri.strip_prefix(&prefix) else {
            return Err(McpError::invalid_params(
                format!("{} is not a resource of tenant {tenant}", request.uri),
                None,
            ));
        };
        let text = format!("{path} of tenant {tenant}, served by {}", self.served_by());
        serde_json::from_value(json!({"contents": [
            {"uri": request.uri, "mimeType": catalog::mime(path), "text": text}
        ]}))
        .map(ReadResourceResponse::Complete)
        .map_err(|e| McpError::internal_error(e.to_string(), None))
    }
}

fn parts(context: &RequestContext<RoleServer>) -> Option<&http::request::Parts> {
    context.extensions.get::<http::request::Parts>()
}

fn header<'a>(context: &'a RequestContext<RoleServer>, name: &str) -> Option<&'a str> {
    parts(context)?.headers.get(name)?.to_str().ok()
}
