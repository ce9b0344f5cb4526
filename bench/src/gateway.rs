//! One benchmark Envoy: rendered bootstrap, started through the harness,
//! pinned, and read through its admin endpoint and /proc.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context as _};

use crate::envoy_config::{self, Chain, Inputs};
use crate::{pin, procfs};
use harness::stack::envoy::{parse_stats, Envoy};

/// What every bench Envoy shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub upstream_port: u16,
    pub token_api_port: u16,
    pub filter_wasm: std::path::PathBuf,
    pub empty_wasm: std::path::PathBuf,
    /// `envoy/bench`.
    pub config_dir: std::path::PathBuf,
}

impl Common {
    /// The bench's Envoy configurations (`envoy/bench`) with these ports and filters.
    pub fn new(
        upstream_port: u16,
        token_api_port: u16,
        filter_wasm: std::path::PathBuf,
        empty_wasm: std::path::PathBuf,
    ) -> Common {
        Common {
            upstream_port,
            token_api_port,
            filter_wasm,
            empty_wasm,
            config_dir: harness::stack::workspace_root().join("envoy/bench"),
        }
    }
}

pub struct Gateway {
    pub envoy: Envoy,
    pub port: u16,
    pub pid: u32,
    http: reqwest::Client,
}

impl Gateway {
    /// Starts Envoy with `workers` worker threads in `dir`; pins all its
    /// threads to `cores` (a taskset list) once it is ready.
    pub async fn start(
        common: &Common,
        chain: &Chain,
        dir: &Path,
        workers: u32,
        cores: &str,
    ) -> anyhow::Result<Self> {
        let port = harness::stack::free_port()?;
        let admin_port = harness::stack::free_port()?;
        let inputs = Inputs {
            admin_port,
            listen_port: port,
            upstream_port: common.upstream_port,
            token_api_port: common.token_api_port,
            filter_wasm: common.filter_wasm.clone(),
            empty_wasm: common.empty_wasm.clone(),
        };
        let config = envoy_config::render_from(&common.config_dir, chain, &inputs)?;
        let envoy = Envoy::start(dir, &config, admin_port, workers, Duration::from_secs(60))
            .await
            .with_context(|| format!("Envoy for {chain:?}"))?;
        let pid = envoy
            .pid()
            .ok_or_else(|| anyhow!("Envoy exited right after start"))?;
        pin::pin(pid, cores)?;
        Ok(Self {
            envoy,
            port,
            pid,
            http: reqwest::Client::new(),
        })
    }

    /// One Envoy (1 worker, pinned to `cores`) per `(chain, dir)`, all or
    /// none: on a failure the ones already started are stopped.
    pub async fn start_all(
        common: &Common,
        envoys: impl IntoIterator<Item = (&Chain, std::path::PathBuf)>,
        cores: &str,
    ) -> anyhow::Result<Vec<Self>> {
        let mut started = Vec::new();
        for (chain, dir) in envoys {
            match Self::start(common, chain, &dir, 1, cores).await {
                Ok(g) => started.push(g),
                Err(e) => {
                    for g in started {
                        g.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Counters whose name matches `filter` (an Envoy stats regex);
    /// `wasmcustom.` is dropped from the names.
    pub async fn stats(&self, filter: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = self
            .http
            .get(format!("{}/stats", self.envoy.admin))
            .query(&[("filter", filter)])
            .send()
            .await?
            .text()
            .await?;
        Ok(parse_stats(&text))
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        procfs::rss_kib(self.pid)
    }

    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        procfs::cpu_ticks(self.pid)
    }

    pub async fn stop(self) {
        self.envoy.stop().await;
    }
}

/// `envoy --version`, e.g. `…/1.40.0/Clean/RELEASE/BoringSSL`.
pub fn envoy_version() -> String {
    harness::stack::envoy::find_binary()
        .ok()
        .and_then(|bin| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .ok()
        })
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split("version:")
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}
