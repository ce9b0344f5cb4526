//! Demo MCP backends: real `rmcp` servers over Streamable HTTP whose tools
//! reveal which tenant served the call and which headers the backend saw.
//!
//! Two deployment patterns (docs/DESIGN.md §8):
//! - [`Tenancy::Fixed`]: one backend per tenant; Envoy routes on the trusted
//!   tenant header to that tenant's cluster.
//! - [`Tenancy::FromHeader`]: one shared backend that picks the tenant's data
//!   from the trusted tenant header the gateway wrote.
//!
//! Each backend serves the same MCP server ([`catalog`]: 24 tools, prompts,
//! resources, templates) three ways:
//! - `/mcp`: sessions, every answer an event stream (`text/event-stream`);
//! - `/mcp/json`: stateless, answers as `application/json` (an event stream
//!   only when notifications come before the answer);
//! - `/mcp/paged`: as `/mcp`, lists in pages of [`PAGE_SIZE`].

pub mod catalog;
pub mod scripted;
mod server;

pub use server::DemoServer;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use tokio_util::sync::CancellationToken;

/// Where a backend's tenant comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenancy {
    /// This backend serves exactly one tenant.
    Fixed(String),
    /// This backend serves whichever tenant the named trusted header says.
    FromHeader(String),
}

/// What one HTTP request to a backend carried, for tests and `whoami`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every request a backend received, shared with the process that started it.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<SeenRequest>>>);

impl Seen {
    pub fn snapshot(&self) -> Vec<SeenRequest> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn push(&self, r: SeenRequest) {
        if let Ok(mut v) = self.0.lock() {
            v.push(r);
        }
    }
}

/// Items per page on `/mcp/paged`.
pub const PAGE_SIZE: usize = 10;

/// The paths a backend serves MCP on, and how it answers there.
pub const ENDPOINTS: [(&str, &str); 3] = [
    ("/mcp", "sessions, answers as event streams"),
    ("/mcp/json", "stateless, answers as JSON"),
    ("/mcp/paged", "sessions, lists in pages of 10"),
];

/// A running demo backend.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Seen,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Serves the MCP endpoint at `/mcp` on `listen` until [`Backend::stop`].
    pub async fn start(listen: SocketAddr, tenancy: Tenancy) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let seen = Seen::default();
        let cancel = CancellationToken::new();

        let service = |json: bool, page: Option<usize>| {
            let mut config = StreamableHttpServerConfig::default();
            config.cancellation_token = cancel.child_token();
            // Behind the gateway the Host header is the gateway's, not loopback.
            config.allowed_hosts = Vec::new();
            config.legacy_session_mode = !json;
            config.json_response = json;
            let tenancy = tenancy.clone();
            StreamableHttpService::new(
                move || {
                    let server = DemoServer::new(tenancy.clone());
                    Ok(match page {
                        Some(size) => server.paged(size),
                        None => server,
                    })
                },
                Arc::new(LocalSessionManager::default()),
                config,
            )
        };
        let record = seen.clone();
        let app = axum::Router::new()
            .route_service("/mcp", service(false, None))
            .route_service("/mcp/json", service(true, None))
            .route_service("/mcp/paged", service(false, Some(PAGE_SIZE)))
            .route("/health", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    record.push(SeenRequest {
                        method: req.method().to_string(),
                        path: req.uri().path().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.as_str().to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                    });
                    next.run(req)
                },
            ));
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            seen,
            cancel,
            task,
        })
    }

    /// Stops accepting requests and ends open sessions.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}
