//! The `mcpgw` command line: argument definitions and dispatch.

mod api;
mod check;
mod gatewaylog;
mod table;
mod tokens;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// MCP token gateway: local stack, token management, endpoint checks.
#[derive(Debug, Parser)]
#[command(name = "mcpgw", version, about, propagate_version = true)]
pub struct Cli {
    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve token-api.wasm over HTTP on a Spin-compatible host.
    ServeTokenApi(ServeArgs),
    /// Manage tokens through the token API.
    Token {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        verb: TokenVerb,
    },
    /// Show audit events (created, revoked, deleted, denied_create, rate_limit_changed), or
    /// with --gateway-log the gateway's record of every request.
    Audit {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: AuditArgs,
    },
    /// Check a Streamable-HTTP MCP endpoint with a token: initialize, tools/list, one call.
    Check(CheckArgs),
    /// Serve a demo MCP backend (rmcp, Streamable HTTP at /mcp).
    DemoBackend(DemoBackendArgs),
    /// Run the local stack: token API, demo backends, Envoy; mint demo tokens.
    Up(UpArgs),
    /// Write filter.wasm as an OCI image (local OCI layout) for Istio and Envoy Gateway.
    Package(PackageArgs),
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// The filter module (default: the release build, `./just build`).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// The OCI image layout directory to write (replaced if it holds one).
    #[arg(long, default_value = "deploy/out/filter-oci")]
    pub out: PathBuf,
    /// Tag of the compat image; the oci variant gets `<tag>-wasm`.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Durable state (token database, admin key, demo tokens, Envoy config and log).
    #[arg(long, default_value = ".data")]
    pub data: PathBuf,
    /// Gateway listener port.
    #[arg(long, default_value_t = 10000)]
    pub port: u16,
    /// Token store: `sqlite` (a file in the data dir) or `postgres`.
    #[arg(long, value_enum, default_value_t = StoreArg::Sqlite)]
    pub store: StoreArg,
    /// PostgreSQL server for `--store postgres` (e.g.
    /// postgres://user:pass@db:5432/mcpgw); without it a local server is
    /// started with its data in <data>/postgres.
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Token API instances behind Envoy's `token_api` cluster (round robin).
    /// Several need a shared store: `--store postgres`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub token_api_instances: u16,
}

/// `mcpgw up --store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreArg {
    Sqlite,
    Postgres,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Directory for durable storage (SQLite), created if missing.
    #[arg(long, default_value = ".data/token-api")]
    pub data: PathBuf,
    /// The component's Spin manifest.
    #[arg(long, default_value = "token-api/spin.toml")]
    pub manifest: PathBuf,
    /// Spin variable, `name=value` (repeatable); SPIN_VARIABLE_<NAME> works too.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    pub variables: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Token API base URL.
    #[arg(long, env = "MCPGW_API", default_value = "http://127.0.0.1:3000")]
    pub api: String,
    /// Admin key or a token with tokens:read / tokens:write.
    #[arg(long, env = "MCPGW_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenVerb {
    /// Mint a token; its raw value is printed once.
    Create(CreateArgs),
    /// List tokens, newest first.
    List(ListArgs),
    /// Show one token (never its secret or hash).
    Describe { id: String },
    /// Change a token without minting it again (its rate limit); gateways
    /// apply it within a revocation poll.
    Update(UpdateArgs),
    /// Revoke a token (idempotent); gateways stop accepting it within a poll period.
    Revoke { id: String },
    /// Delete a token for good.
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub tenant: String,
    /// Defaults to `default`.
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub name: String,
    /// Lifetime: `30d`, `12h`, `45m`, `never`, or an RFC 3339 date.
    #[arg(long, conflicts_with = "expires_at")]
    pub ttl: Option<String>,
    /// Absolute expiry (RFC 3339).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Scope to grant (repeatable), e.g. `mcp:tools/call:list_*`. Default `mcp:*`.
    #[arg(long, conflicts_with = "rbac")]
    pub scope: Vec<String>,
    /// `clone` the caller's scopes, or `empty` (lifecycle traffic only).
    #[arg(long, value_parser = ["clone", "empty"])]
    pub rbac: Option<String>,
    /// Requests per window, e.g. `60/m`, `600/m burst 50`, `5/10s`; `none` for no
    /// limit. Default: the token API's default for the tenant.
    #[arg(long, value_name = "LIMIT")]
    pub rate_limit: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub id: String,
    /// The new rate limit (`60/m`, `600/m burst 50`, `5/10s`), or `none`.
    #[arg(long, value_name = "LIMIT")]
    pub rate_limit: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub include_revoked: bool,
    /// One page of at most this many (default: every page).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub token_id: Option<String>,
    /// At most this many, newest (with --gateway-log, 0 shows every match).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Read the gateway's JSON access log instead of the token API: every
    /// request, with its decision, token and tool.
    #[arg(long, value_name = "FILE")]
    pub gateway_log: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogFilters,
}

/// Filters of `audit --gateway-log` only.
#[derive(Debug, Args)]
pub struct LogFilters {
    #[arg(long, requires = "gateway_log")]
    pub token_name: Option<String>,
    /// At least 8 hex digits of the token_sha: also finds the refused
    /// requests of a revoked or expired token.
    #[arg(long, requires = "gateway_log")]
    pub token_sha: Option<String>,
    #[arg(long, requires = "gateway_log")]
    pub project: Option<String>,
    /// Tool, prompt or resource name; a trailing `*` matches a prefix.
    #[arg(long, requires = "gateway_log")]
    pub tool: Option<String>,
    /// JSON-RPC method, e.g. tools/call.
    #[arg(long, requires = "gateway_log")]
    pub method: Option<String>,
    #[arg(long, requires = "gateway_log", value_parser = ["allow", "deny", "bypass"])]
    pub decision: Option<String>,
    /// Why a request was denied: rate_limited, insufficient_scope, revoked, …
    #[arg(long, requires = "gateway_log")]
    pub reason: Option<String>,
    /// HTTP status the client got.
    #[arg(long, requires = "gateway_log")]
    pub status: Option<u16>,
    /// From: RFC 3339 time, a date, or an age (15m, 2h, 7d).
    #[arg(long, requires = "gateway_log")]
    pub since: Option<String>,
    /// Until: RFC 3339 time, a date, or an age (15m, 2h, 7d).
    #[arg(long, requires = "gateway_log")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// MCP endpoint, e.g. http://127.0.0.1:10000/mcp
    pub url: String,
    /// Bearer token to send.
    #[arg(long, env = "MCPGW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Also call this tool.
    #[arg(long)]
    pub call: Option<String>,
    /// JSON object of arguments for --call.
    #[arg(long, requires = "call")]
    pub args: Option<String>,
    /// Per-step timeout.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct DemoBackendArgs {
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Serve this one tenant.
    #[arg(
        long,
        conflicts_with = "tenant_header",
        required_unless_present = "tenant_header"
    )]
    pub tenant: Option<String>,
    /// Serve every tenant, trusting this gateway header (shared backend pattern).
    #[arg(long)]
    pub tenant_header: Option<String>,
}

/// Ctrl-C (SIGINT) or SIGTERM: how people and process managers stop a server.
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::ServeTokenApi(a) => serve_token_api(a).await?,
        Command::Token { api, verb } => {
            let client = api::ApiClient::new(&api.api, api.key);
            match verb {
                TokenVerb::Create(a) => tokens::create(&client, a, json).await?,
                TokenVerb::List(a) => tokens::list(&client, a, json).await?,
                TokenVerb::Describe { id } => tokens::describe(&client, &id, json).await?,
                TokenVerb::Update(a) => tokens::update(&client, a, json).await?,
                TokenVerb::Revoke { id } => tokens::revoke(&client, &id, json).await?,
                TokenVerb::Delete { id } => tokens::delete(&client, &id, json).await?,
            }
        }
        Command::Audit { api, args } => match &args.gateway_log {
            Some(path) => gatewaylog::run(path, &args, json)?,
            None => tokens::audit(&api::ApiClient::new(&api.api, api.key), args, json).await?,
        },
        Command::Check(a) => return check::run(a, json).await,
        Command::DemoBackend(a) => demo_backend(a).await?,
        Command::Up(a) => up::run(a).await?,
        Command::Package(a) => package(a, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn package(a: PackageArgs, json: bool) -> anyhow::Result<()> {
    use crate::package::Variant;
    let wasm = match a.wasm {
        Some(w) => w,
        None => crate::stack::filter_wasm()?,
    };
    let p = crate::package::package(&wasm, &a.out, &a.tag)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    let layout = p.layout.display();
    println!(
        "wrote the OCI image layout {layout} from {} ({} bytes, sha256 {})",
        p.wasm.display(),
        p.wasm_size,
        p.wasm_sha256
    );
    for t in &p.tags {
        let what = match t.variant {
            Variant::Compat => "compat variant: Istio, Envoy Gateway, any registry",
            Variant::Oci => "oci variant: registries that take custom media types",
        };
        println!("  {:<14} {}  ({what})", t.tag, t.digest);
    }
    if let Some(t) = p.tags.first() {
        println!(
            "push:  skopeo copy oci:{layout}:{tag} docker://REGISTRY/mcpgw/filter:{tag}\n\
             pin:   REGISTRY/mcpgw/filter@{digest} (deploy/README.md)",
            tag = t.tag,
            digest = t.digest
        );
    }
    Ok(())
}

async fn demo_backend(a: DemoBackendArgs) -> anyhow::Result<()> {
    use crate::backends::{Backend, Tenancy};
    let tenancy = match (a.tenant, a.tenant_header) {
        (Some(t), _) => Tenancy::Fixed(t),
        (None, Some(h)) => Tenancy::FromHeader(h),
        (None, None) => anyhow::bail!("pass --tenant NAME or --tenant-header HEADER"),
    };
    let backend = Backend::start(a.listen, tenancy.clone()).await?;
    eprintln!(
        "demo MCP backend ({tenancy:?}) on http://{}/mcp",
        backend.addr
    );
    shutdown_signal().await?;
    backend.stop().await;
    Ok(())
}

async fn serve_token_api(a: ServeArgs) -> anyhow::Result<()> {
    use crate::spin::{SpinOptions, TokenApiHost};
    let mut opts = SpinOptions::new(a.manifest, a.data);
    opts.listen = a.listen;
    for v in a.variables {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--variable {v:?}: expected NAME=VALUE"))?;
        opts.variables
            .insert(name.trim().to_string(), value.to_string());
    }
    let running = TokenApiHost::start(opts)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("token API on {} (Ctrl-C stops)", running.url());
    shutdown_signal().await?;
    running.shutdown().await;
    Ok(())
}
