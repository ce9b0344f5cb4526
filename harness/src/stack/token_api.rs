//! The stack's token API: one or several instances of `token_api.wasm` on the
//! Spin-compatible host, all on one store. SQLite (the default) keeps the
//! tokens in `<data>/token-api/`; PostgreSQL uses a given server, or starts
//! one on loopback (durable under `<data>/postgres/` for `mcpgw up`,
//! temporary for tests).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::pgserver::{PgServer, PgServerOptions};
use crate::spin::{Running, SpinOptions, TokenApiHost};

use super::workspace_root;

/// Where the token API keeps its tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenStore {
    /// Spin SQLite, a file in the data directory (`mcpgw up`'s default).
    #[default]
    Sqlite,
    /// PostgreSQL at `url`, or a server the stack starts when `None`.
    Postgres { url: Option<String> },
}

/// The token API part of a stack.
#[derive(Debug, Clone)]
pub struct TokenApiOptions {
    pub store: TokenStore,
    /// Instances behind Envoy's `token_api` cluster (round robin); ≥ 1.
    pub instances: usize,
    /// A server the stack starts keeps its data in `<data>/postgres/`
    /// (true) or in a temporary directory (false).
    pub durable_postgres: bool,
    /// Extra Spin variables for every instance.
    pub variables: Vec<(String, String)>,
}

impl Default for TokenApiOptions {
    fn default() -> Self {
        Self {
            store: TokenStore::Sqlite,
            instances: 1,
            durable_postgres: false,
            variables: Vec::new(),
        }
    }
}

/// The running instances and what they need to start again.
pub struct TokenApis {
    pub(super) instances: Vec<Option<Running>>,
    pub(super) ports: Vec<u16>,
    pub(super) postgres: Option<PgServer>,
    /// The PostgreSQL URL every instance uses (`None` on SQLite).
    pub(super) postgres_url: Option<String>,
    data_dir: PathBuf,
    admin_key: String,
    variables: Vec<(String, String)>,
}

/// `allowed_outbound_hosts` value (`host:port`) for a PostgreSQL URL.
pub fn postgres_host(url: &str) -> anyhow::Result<String> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| "the PostgreSQL URL does not parse".to_string())?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("the PostgreSQL URL must name a TCP host (Unix sockets are not reachable from WebAssembly)"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}"))
}

impl TokenApis {
    /// Starts the store (if the stack owns it) and every instance; instance
    /// 0 listens on `first_port`, the others on free ports.
    pub async fn start(
        data_dir: &Path,
        first_port: u16,
        admin_key: &str,
        opts: TokenApiOptions,
    ) -> anyhow::Result<Self> {
        if opts.instances == 0 {
            bail!("at least one token API instance is needed");
        }
        let (postgres, postgres_url) = match &opts.store {
            TokenStore::Sqlite => (None, None),
            TokenStore::Postgres { url: Some(url) } => (None, Some(url.clone())),
            TokenStore::Postgres { url: None } => {
                let server = PgServer::start(PgServerOptions {
                    dir: opts.durable_postgres.then(|| data_dir.join("postgres")),
                    port: 0,
                    durable: opts.durable_postgres,
                })
                .await
                .context("starting PostgreSQL for the token API")?;
                let url = server.create_database("mcpgw").await?;
                (Some(server), Some(url))
            }
        };
        let mut ports = vec![first_port];
        for _ in 1..opts.instances {
            ports.push(super::free_port()?);
        }
        let mut apis = Self {
            instances: Vec::new(),
            ports,
            postgres,
            postgres_url,
            data_dir: data_dir.to_owned(),
            admin_key: admin_key.to_owned(),
            variables: opts.variables,
        };
        for i in 0..apis.ports.len() {
            let running = apis.launch(i).await?;
            apis.instances.push(Some(running));
        }
        Ok(apis)
    }

    fn instance_dir(&self, i: usize) -> PathBuf {
        match i {
            0 => self.data_dir.join("token-api"),
            n => self.data_dir.join(format!("token-api-{}", n + 1)),
        }
    }

    async fn launch(&self, i: usize) -> anyhow::Result<Running> {
        let mut opts = SpinOptions::new(
            workspace_root().join("token-api/spin.toml"),
            self.instance_dir(i),
        );
        opts.listen = SocketAddr::from(([127, 0, 0, 1], self.ports[i]));
        opts.guest_stdio = false;
        opts.env_variables = false;
        opts.variables.insert(
            "admin_key_sha256".into(),
            mcpgw_token::format::sha256_hex(&self.admin_key),
        );
        if let Some(url) = &self.postgres_url {
            opts.variables.insert("store".into(), "postgres".into());
            opts.variables.insert("postgres_url".into(), url.clone());
            opts.variables
                .insert("postgres_host".into(), postgres_host(url)?);
        }
        for (k, v) in &self.variables {
            opts.variables.insert(k.clone(), v.clone());
        }
        TokenApiHost::start(opts)
            .await
            .map_err(|e| anyhow::anyhow!("token API instance {}: {e}", i + 1))
    }

    /// Stops instance `i` (the others keep serving).
    pub async fn stop(&mut self, i: usize) {
        if let Some(api) = self.instances.get_mut(i).and_then(Option::take) {
            api.shutdown().await;
        }
    }

    /// Starts instance `i` again on its port and store.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop(i).await;
        let running = self.launch(i).await?;
        if let Some(slot) = self.instances.get_mut(i) {
            *slot = Some(running);
        }
        Ok(())
    }
}
