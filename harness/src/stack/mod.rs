//! The whole local gateway: token API (Spin host; one or several instances,
//! on SQLite or PostgreSQL), demo MCP backends, and real Envoy with
//! `filter.wasm`. Used by `mcpgw up` and the end-to-end tests.

pub mod envoy;
pub mod token_api;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::backends::{Backend, Tenancy};
use crate::faults::FaultProxy;
use crate::pgserver::PgServer;
use envoy::Envoy;
use token_api::TokenApis;
pub use token_api::{TokenApiOptions, TokenStore};

/// The demo tenants, each with its own backend cluster in `envoy/gateway.yaml`.
pub const DEMO_TENANTS: [&str; 2] = ["acme", "globex"];

/// The workspace root (for `envoy/`, `token-api/spin.toml`, `target/`).
pub fn workspace_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MCPGW_ROOT") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The release filter built by `just build`.
pub fn filter_wasm() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip1/release/filter.wasm"));
    if !path.is_file() {
        bail!("{} is missing: run `./just build` first", path.display());
    }
    Ok(path)
}

/// Ports of every listener; 0 picks a free one at start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ports {
    pub gateway: u16,
    pub admin: u16,
    pub token_api: u16,
    pub acme: u16,
    pub globex: u16,
    pub shared: u16,
}

impl Ports {
    /// `mcpgw up`'s fixed, memorable ports.
    pub fn well_known() -> Self {
        Self {
            gateway: 10000,
            admin: 9901,
            token_api: 3000,
            acme: 8081,
            globex: 8082,
            shared: 8083,
        }
    }

    fn resolve(mut self) -> anyhow::Result<Self> {
        for p in [
            &mut self.gateway,
            &mut self.admin,
            &mut self.token_api,
            &mut self.acme,
            &mut self.globex,
            &mut self.shared,
        ] {
            if *p == 0 {
                *p = free_port()?;
            }
        }
        Ok(self)
    }
}

/// A free loopback port for a server started later (Envoy's listeners, the
/// demo backends).
///
/// A port bound and released is free only until someone else takes it, and
/// a port the kernel picks (`bind(0)`) comes from the ephemeral range, where
/// every outgoing connection of every test also takes its local port: under
/// load one of them took Envoy's listener port before Envoy bound it. So the
/// port comes from below the ephemeral range (the kernel never hands those
/// out by itself), is checked free by binding it, and is never handed out
/// twice by this process.
pub fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let (low, high) = unassigned_range();
    let span = u32::from(high - low) + 1;
    let mut given = GIVEN
        .lock()
        .map_err(|_| anyhow::anyhow!("the port registry was poisoned by a panic"))?;
    for _ in 0..256 {
        let mut seed = [0u8; 4];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let offset = u32::from_le_bytes(seed) % span;
        let port = low + u16::try_from(offset).unwrap_or(0);
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        return Ok(port);
    }
    // A crowded range: fall back to one the kernel picks.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ports below the kernel's ephemeral range and above the well-known ones
/// `mcpgw up` uses (10000 and below).
fn unassigned_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.saturating_sub(1).max(20_001);
    (20_000, high)
}

/// The filter configuration the local stack uses; tests tweak fields.
pub fn default_filter_config() -> Value {
    json!({
        "token_api": {"cluster": "token_api", "authority": "token-api", "timeout_ms": 500,
                      "feed_cluster": "token_api_feed"},
        "cache": {"ttl_s": 300, "negative_ttl_s": 5, "max_entries": 10000, "stale_if_error_s": 300},
        "revocation_poll_ms": 500,
        "bypass_paths": ["/health", "/.well-known/*"],
        "enforce_scopes": true
    })
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Durable state: `token-api/` (SQLite), `envoy/` (rendered config, log).
    pub data_dir: PathBuf,
    pub ports: Ports,
    pub admin_key: String,
    pub filter_config: Value,
    pub envoy_concurrency: u32,
}

/// Optional parts of a stack, beyond [`StackOptions`].
#[derive(Debug, Clone, Default)]
pub struct StackExtras {
    /// Put a [`FaultProxy`] between Envoy and the token API: Envoy's
    /// `token_api` and `token_api_feed` clusters point at the proxy, while
    /// [`Stack::mint`] and [`Stack::token_api_url`] still reach the token API
    /// directly.
    pub token_api_faults: bool,
    /// More HTTP filters after the gateway's own (YAML list items, e.g. the
    /// files of `envoy/ratelimit/`), before the router.
    pub envoy_http_filters: String,
    /// More clusters (YAML list items).
    pub envoy_clusters: String,
}

/// Everything running.
pub struct Stack {
    pub ports: Ports,
    pub admin_key: String,
    pub envoy: Envoy,
    pub backends: BTreeMap<String, Backend>,
    /// The fault proxy in front of the token API, when asked for.
    pub faults: Option<FaultProxy>,
    token_api: TokenApis,
}

impl Stack {
    pub async fn start(opts: StackOptions) -> anyhow::Result<Self> {
        Self::start_with(opts, StackExtras::default()).await
    }

    pub async fn start_with(opts: StackOptions, extras: StackExtras) -> anyhow::Result<Self> {
        Self::start_full(opts, extras, TokenApiOptions::default()).await
    }

    /// A stack whose token API runs `api.instances` instances on `api.store`.
    pub async fn start_full(
        opts: StackOptions,
        extras: StackExtras,
        api: TokenApiOptions,
    ) -> anyhow::Result<Self> {
        if extras.token_api_faults && api.instances > 1 {
            bail!("the fault proxy sits in front of one token API instance, not several");
        }
        let ports = opts.ports.resolve()?;
        let mut api = api;
        // The console puts it into the client configurations of a new token.
        api.variables.push((
            "gateway_url".into(),
            format!("http://127.0.0.1:{}/mcp", ports.gateway),
        ));
        let token_api =
            TokenApis::start(&opts.data_dir, ports.token_api, &opts.admin_key, api).await?;
        let faults = if extras.token_api_faults {
            Some(FaultProxy::start(loopback(0), loopback(ports.token_api)).await?)
        } else {
            None
        };
        // The ports Envoy's `token_api` and `token_api_feed` clusters call.
        let cluster_ports: Vec<u16> = match &faults {
            Some(f) => vec![f.addr().port()],
            None => token_api.ports.clone(),
        };
        let mut backends = BTreeMap::new();
        for (name, port, tenancy) in [
            ("acme", ports.acme, Tenancy::Fixed("acme".into())),
            ("globex", ports.globex, Tenancy::Fixed("globex".into())),
            (
                "shared",
                ports.shared,
                Tenancy::FromHeader("x-mcp-tenant".into()),
            ),
        ] {
            let b = Backend::start(loopback(port), tenancy)
                .await
                .with_context(|| format!("demo backend {name}"))?;
            backends.insert(name.to_string(), b);
        }
        let wasm = filter_wasm()?;
        let template = std::fs::read_to_string(workspace_root().join("envoy/gateway.yaml"))
            .context("reading envoy/gateway.yaml")?;
        let vars = BTreeMap::from([
            ("ADMIN_PORT", ports.admin.to_string()),
            ("LISTEN_PORT", ports.gateway.to_string()),
            ("TOKEN_API_ENDPOINTS", envoy::endpoints(&cluster_ports)),
            ("ACME_PORT", ports.acme.to_string()),
            ("GLOBEX_PORT", ports.globex.to_string()),
            ("SHARED_PORT", ports.shared.to_string()),
            ("FILTER_WASM", wasm.display().to_string()),
            ("FILTER_CONFIG", opts.filter_config.to_string()),
            (
                "ACCESS_LOG",
                opts.data_dir.join("envoy/access.log").display().to_string(),
            ),
            (
                "EXTRA_HTTP_FILTERS",
                envoy::indent(&extras.envoy_http_filters, 10),
            ),
            ("EXTRA_CLUSTERS", envoy::indent(&extras.envoy_clusters, 2)),
        ]);
        let config = envoy::render(&template, &vars)?;
        let envoy = Envoy::start(
            &opts.data_dir.join("envoy"),
            &config,
            ports.admin,
            opts.envoy_concurrency,
            Duration::from_secs(30),
        )
        .await?;
        Ok(Self {
            ports,
            admin_key: opts.admin_key,
            envoy,
            backends,
            faults,
            token_api,
        })
    }

    /// `http://127.0.0.1:<gateway>`.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.gateway)
    }

    /// Envoy's JSON access log (one line per request, with the filter's
    /// record), next to its own log: `<data>/envoy/access.log`.
    pub fn access_log(&self) -> PathBuf {
        self.envoy.log.with_file_name("access.log")
    }

    /// `http://127.0.0.1:<token api>`.
    pub fn token_api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.token_api)
    }

    /// The web console the token API serves.
    pub fn console_url(&self) -> String {
        format!("{}/console/", self.token_api_url())
    }

    /// `http://127.0.0.1:<port>` of token API instance `i` (0-based).
    pub fn token_api_instance_url(&self, i: usize) -> Option<String> {
        self.token_api
            .ports
            .get(i)
            .map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// How many token API instances the stack runs.
    pub fn token_api_instances(&self) -> usize {
        self.token_api.ports.len()
    }

    /// Stops every token API instance (the gateway keeps running), for outage tests.
    pub async fn stop_token_api(&mut self) {
        for i in 0..self.token_api.ports.len() {
            self.token_api.stop(i).await;
        }
    }

    /// Starts every token API instance again on the same ports and store.
    pub async fn restart_token_api(&mut self) -> anyhow::Result<()> {
        for i in 0..self.token_api.ports.len() {
            self.token_api.restart(i).await?;
        }
        Ok(())
    }

    /// Stops token API instance `i` only.
    pub async fn stop_token_api_instance(&mut self, i: usize) {
        self.token_api.stop(i).await;
    }

    /// Starts token API instance `i` again.
    pub async fn restart_token_api_instance(&mut self, i: usize) -> anyhow::Result<()> {
        self.token_api.restart(i).await
    }

    /// The PostgreSQL server the stack started, if it did.
    pub fn postgres(&mut self) -> Option<&mut PgServer> {
        self.token_api.postgres.as_mut()
    }

    /// The PostgreSQL URL the token API uses (`None` on SQLite).
    pub fn postgres_url(&self) -> Option<&str> {
        self.token_api.postgres_url.as_deref()
    }

    /// Mints a token with the admin key; returns the create response.
    pub async fn mint(&self, body: Value) -> anyhow::Result<Value> {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/mcptokens", self.token_api_url()))
            .bearer_auth(&self.admin_key)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if status.as_u16() != 201 {
            bail!("minting {body} failed: {status} {v}");
        }
        Ok(v)
    }

    pub async fn stop(mut self) {
        self.stop_token_api().await;
        if let Some(pg) = self.token_api.postgres.as_mut() {
            pg.stop().await;
        }
        for (_, b) in std::mem::take(&mut self.backends) {
            b.stop().await;
        }
        self.envoy.stop().await;
        if let Some(f) = self.faults.take() {
            f.stop().await;
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A fresh random admin key (64 hex chars).
pub fn random_admin_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(mcpgw_token::hex::encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let (low, high) = unassigned_range();
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for p in ports {
            assert!((low..=high).contains(&p), "{p} outside {low}..={high}");
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }
}
