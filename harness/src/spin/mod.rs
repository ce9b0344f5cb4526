//! Spin-compatible wasmtime host for `token-api.wasm`.
//!
//! Reads the application's `spin.toml` (manifest version 2) and serves its
//! HTTP triggers on a loopback address the way `spin up` would:
//! `wasi:http/handler@0.3.0` with a fresh component instance per request,
//! `spin:sqlite@3.1.0` on `<data dir>/sqlite_db.db`, `spin:postgres@4.2.0`
//! to the servers the component's `allowed_outbound_hosts` allow,
//! `spin:variables@3.0.0` from the manifest, `SPIN_VARIABLE_*` and
//! `--variable` values.
//!
//! ```no_run
//! # async fn demo() -> Result<(), harness::spin::StartError> {
//! use harness::spin::{SpinOptions, TokenApiHost};
//! let mut opts = SpinOptions::new("token-api/spin.toml", ".spin");
//! opts.variables.insert("admin_key_sha256".into(), "…".into());
//! let running = TokenApiHost::start(opts).await?;
//! println!("token API on {}", running.url());
//! running.shutdown().await;
//! # Ok(()) }
//! ```

pub mod allowed_hosts;
mod bindings;
mod engine;
pub mod manifest;
pub mod postgres;
pub mod routes;
mod server;
pub mod sqlite;
mod state;
pub mod variables;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use allowed_hosts::AllowedHosts;
use manifest::{Manifest, ManifestError};
use postgres::{PgCtx, Pools};
use server::{App, ServedComponent};
use sqlite::{Databases, SqliteCtx};
use state::ComponentVariables;
use variables::VariablesError;

pub use sqlite::DEFAULT_DB_FILE;

/// How to run the host.
#[derive(Debug, Clone)]
pub struct SpinOptions {
    /// The application's `spin.toml`.
    pub manifest: PathBuf,
    /// Where to listen; port 0 picks a free one (see [`Running::addr`]).
    pub listen: SocketAddr,
    /// Directory of the SQLite files (Spin's `.spin/`); created if missing.
    pub data_dir: PathBuf,
    /// `--variable name=value` values; they win over the environment.
    pub variables: BTreeMap<String, String>,
    /// Whether `SPIN_VARIABLE_<NAME>` environment variables are read.
    pub env_variables: bool,
    /// Whether the guest's stdout/stderr reach the host's.
    pub guest_stdio: bool,
    /// A request still running after this gets a 500.
    pub request_timeout: Duration,
    /// How long [`Running::shutdown`] waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl SpinOptions {
    /// Defaults: listen on `127.0.0.1:0`, read `SPIN_VARIABLE_*`, show guest
    /// output, 30 s request timeout, 5 s shutdown grace.
    pub fn new(manifest: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            variables: BTreeMap::new(),
            env_variables: true,
            guest_stdio: true,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Why the host did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{manifest}: {source}")]
    Variables {
        manifest: PathBuf,
        source: VariablesError,
    },
    #[error("{0}")]
    Component(String),
    #[error("{0}")]
    Storage(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Entry point: see [`TokenApiHost::start`].
pub struct TokenApiHost;

impl TokenApiHost {
    /// Loads the manifest, resolves variables, opens the databases, compiles
    /// and pre-instantiates the components, then serves until
    /// [`Running::shutdown`].
    pub async fn start(opts: SpinOptions) -> Result<Running, StartError> {
        let manifest = Manifest::load(&opts.manifest)?;
        let variables_error = |source| StartError::Variables {
            manifest: manifest.path.clone(),
            source,
        };
        let app_values = variables::app_values(&manifest.variables, &opts.variables, |name| {
            opts.env_variables
                .then(|| std::env::var(name).ok())
                .flatten()
        })
        .map_err(variables_error)?;
        let resolved = variables::resolve_components(
            &app_values,
            manifest
                .components
                .iter()
                .map(|(id, c)| (id.as_str(), &c.variables)),
        )
        .map_err(variables_error)?;

        let router =
            routes::Router::new(manifest.http_triggers.iter().map(|t| t.route.as_str()))
                .map_err(|e| StartError::Component(format!("{}: {e}", manifest.path.display())))?;
        // Only components some route reaches are compiled.
        let mut served_ids: Vec<&str> = Vec::new();
        let mut route_targets = Vec::new();
        for t in &manifest.http_triggers {
            let index = match served_ids.iter().position(|id| *id == t.component) {
                Some(i) => i,
                None => {
                    served_ids.push(&t.component);
                    served_ids.len() - 1
                }
            };
            route_targets.push(index);
        }

        let data_dir = opts.data_dir.clone();
        let used: Vec<(String, Vec<String>)> = served_ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    manifest.components[*id].sqlite_databases.clone(),
                )
            })
            .collect();
        let databases = tokio::task::spawn_blocking(move || {
            Databases::open(
                &data_dir,
                used.iter()
                    .map(|(id, labels)| (id.as_str(), labels.as_slice())),
            )
        })
        .await
        .map_err(|e| StartError::Storage(e.to_string()))?
        .map_err(StartError::Storage)?;
        let databases = Arc::new(databases);

        let engine = engine::engine().map_err(StartError::Component)?.clone();
        // One set of PostgreSQL pools for the application, as Spin keeps.
        let pg_pools = Arc::new(Pools::default());
        let mut components = Vec::new();
        for id in &served_ids {
            let decl = &manifest.components[*id];
            let (engine2, source) = (engine.clone(), decl.source.clone());
            let pre = tokio::task::spawn_blocking(move || {
                let component = engine::component(&engine2, &source)?;
                engine::service_pre(&engine2, &component, &source)
            })
            .await
            .map_err(|e| StartError::Component(e.to_string()))?
            .map_err(StartError::Component)?;
            let allowed = allowed_hosts(id, &decl.allowed_outbound_hosts, &app_values)
                .map_err(|e| StartError::Component(format!("{}: {e}", manifest.path.display())))?;
            components.push(ServedComponent {
                id: id.to_string(),
                pre,
                sqlite: SqliteCtx {
                    databases: databases.clone(),
                    allowed: Arc::new(
                        decl.sqlite_databases
                            .iter()
                            .cloned()
                            .collect::<HashSet<_>>(),
                    ),
                },
                pg: PgCtx {
                    pools: pg_pools.clone(),
                    allowed: Arc::new(allowed),
                },
                variables: ComponentVariables {
                    component: id.to_string(),
                    values: Arc::new(resolved.get(*id).cloned().unwrap_or_default()),
                },
                environment: decl
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            });
        }

        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: opts.listen,
            source,
        })?;
        let app = Arc::new(App {
            engine,
            router,
            route_targets,
            components,
            local_addr: addr,
            request_timeout: opts.request_timeout,
            guest_stdio: opts.guest_stdio,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::serve(app, listener, stopped, opts.shutdown_grace));
        Ok(Running {
            addr,
            routes: manifest
                .http_triggers
                .iter()
                .map(|t| (t.route.clone(), t.component.clone()))
                .collect(),
            database: databases.get("default").map(|d| d.path().to_owned()),
            stop,
            task,
        })
    }
}

/// A component's `allowed_outbound_hosts` with its templates filled in.
fn allowed_hosts(
    component: &str,
    entries: &[String],
    values: &BTreeMap<String, String>,
) -> Result<AllowedHosts, String> {
    let mut rendered = Vec::with_capacity(entries.len());
    for entry in entries {
        let e = variables::render(entry, values)
            .map_err(|e| format!("component {component:?} allowed_outbound_hosts: {e}"))?;
        manifest::check_outbound(&e).map_err(|e| format!("component {component:?}: {e}"))?;
        rendered.push(e);
    }
    AllowedHosts::parse(&rendered).map_err(|e| format!("component {component:?}: {e}"))
}

/// A serving host. Dropping it without [`Running::shutdown`] stops accepting
/// too, but does not wait for requests in flight.
pub struct Running {
    addr: SocketAddr,
    routes: Vec<(String, String)>,
    database: Option<PathBuf>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `(route, component id)` of each HTTP trigger.
    pub fn routes(&self) -> &[(String, String)] {
        &self.routes
    }

    /// The file of the `default` database, if a component uses it.
    pub fn database(&self) -> Option<&std::path::Path> {
        self.database.as_deref()
    }

    /// Stops accepting, lets requests in flight finish, then returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
