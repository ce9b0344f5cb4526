//! Spin-compatible wasmtime host for `token-api.wasm`.
//!
//! Reads the application's `spin.toml` (manifest version 2) and serves its
//! HTTP triggers on a loopback address the way `spin up` would:
//! `wasi:http/handler@0.3.0` on instances reused as Spin reuses them (up to
//! 128 requests each, 16 at once, dropped after 1 s idle: [`InstanceReuse`]),
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
use server::{App, ComponentInstances, Counters, ServedComponent};
use sqlite::{Databases, SqliteCtx};
use state::ComponentVariables;
use variables::VariablesError;
use wasmtime_wasi_http::handler::ProxyHandler;

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
    /// How long a component instance serves before it is dropped.
    pub instance_reuse: InstanceReuse,
}

/// Bounds of instance reuse, with the defaults and meaning of `spin up`'s
/// `--max-instance-reuse-count`, `--max-instance-concurrent-reuse-count` and
/// `--idle-instance-timeout` for `wasi:http@0.3` components (Spin also takes
/// ranges to pick from at random; this host takes one value each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is dropped; 1: a fresh
    /// instance per request.
    pub max_reuse_count: usize,
    /// Requests one instance serves at the same time (a second one is given
    /// to it only while the first waits on I/O).
    pub max_concurrent_reuse_count: usize,
    /// How long an idle instance is kept for the next request.
    pub idle_timeout: Duration,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self {
            max_reuse_count: 128,
            max_concurrent_reuse_count: 16,
            idle_timeout: Duration::from_secs(1),
        }
    }
}

impl InstanceReuse {
    /// A fresh instance per request (no reuse).
    pub fn none() -> Self {
        Self {
            max_reuse_count: 1,
            max_concurrent_reuse_count: 1,
            ..Self::default()
        }
    }
}

impl SpinOptions {
    /// Defaults: listen on `127.0.0.1:0`, read `SPIN_VARIABLE_*`, show guest
    /// output, 30 s request timeout, 5 s shutdown grace, Spin's instance
    /// reuse.
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
            instance_reuse: InstanceReuse::default(),
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
    #[error("{0}")]
    Options(String),
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
        let reuse = opts.instance_reuse;
        if reuse.max_reuse_count == 0 || reuse.max_concurrent_reuse_count == 0 {
            return Err(StartError::Options(format!(
                "instance reuse {reuse:?}: the reuse counts must be at least 1 (1: a fresh \
                 instance per request)"
            )));
        }
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
        let counters = Arc::new(Counters::default());
        let variables_of: Vec<ComponentVariables> = served_ids
            .iter()
            .map(|id| ComponentVariables::new(id, resolved.get(*id).cloned().unwrap_or_default()))
            .collect();
        let stop_instances = tokio_util::sync::CancellationToken::new();
        let mut components = Vec::new();
        for (id, variables) in served_ids.iter().zip(&variables_of) {
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
            let instances = ComponentInstances {
                id: id.to_string(),
                engine: engine.clone(),
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
                variables: variables.clone(),
                environment: decl
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                guest_stdio: opts.guest_stdio,
                reuse,
                request_timeout: opts.request_timeout,
                counters: counters.clone(),
                stop: stop_instances.clone(),
            };
            components.push(ServedComponent {
                id: id.to_string(),
                handler: ProxyHandler::new(instances),
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
            router,
            route_targets,
            components,
            local_addr: addr,
            request_timeout: opts.request_timeout,
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
            counters,
            stop_instances,
            grace: opts.shutdown_grace,
            variables: std::sync::Mutex::new(LiveVariables {
                manifest: manifest.path.clone(),
                declared: manifest.variables.keys().cloned().collect(),
                values: app_values,
                components: served_ids
                    .iter()
                    .zip(variables_of)
                    .map(|(id, vars)| (manifest.components[*id].variables.clone(), vars))
                    .collect(),
            }),
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
    counters: Arc<Counters>,
    stop_instances: tokio_util::sync::CancellationToken,
    grace: Duration,
    variables: std::sync::Mutex<LiveVariables>,
}

/// The application variables in force, and the components they fill in.
struct LiveVariables {
    manifest: PathBuf,
    declared: Vec<String>,
    values: BTreeMap<String, String>,
    /// Each served component's templates and the values its instances read.
    components: Vec<(BTreeMap<String, String>, ComponentVariables)>,
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

    /// Component instances created so far (each serves up to
    /// [`InstanceReuse::max_reuse_count`] requests).
    pub fn instances_started(&self) -> u64 {
        self.counters.started()
    }

    /// Changes an application variable while serving, as a dynamic provider
    /// of Spin's (Vault, Azure Key Vault) may: the next `variables.get` of
    /// every instance, alive or new, reads the new value. Templates of
    /// `allowed_outbound_hosts` keep the values they were rendered with at
    /// start.
    pub fn set_variable(&self, name: &str, value: &str) -> Result<(), StartError> {
        let mut live = self.variables.lock().unwrap_or_else(|e| e.into_inner());
        let error = |source| StartError::Variables {
            manifest: live.manifest.clone(),
            source,
        };
        if !live.declared.iter().any(|d| d == name) {
            return Err(error(VariablesError::UnknownOverride {
                name: name.to_owned(),
                declared: live.declared.join(", "),
            }));
        }
        let mut values = live.values.clone();
        values.insert(name.to_owned(), value.to_owned());
        let mut rendered = Vec::with_capacity(live.components.len());
        for (templates, vars) in &live.components {
            let one =
                variables::resolve_components(&values, [(vars.component.as_str(), templates)])
                    .map_err(error)?;
            rendered.push(one.into_values().next().unwrap_or_default());
        }
        for ((_, vars), values) in live.components.iter().zip(rendered) {
            vars.replace(values);
        }
        live.values = values;
        Ok(())
    }

    /// Stops accepting, lets requests in flight finish, drops the instances,
    /// then returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
        self.stop_instances.cancel();
        // Instances still running a request the grace cut off end at their
        // request timeout; this does not wait for them.
        let _ = tokio::time::timeout(self.grace, self.counters.none_alive()).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.stop_instances.cancel();
    }
}
