//! The token API (`token_api.wasm` on the harness's Spin-compatible host) as a
//! child process of this binary, so it can be pinned to a core on its own;
//! and the few admin calls the benchmarks make.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};

use harness::spin::{SpinOptions, TokenApiHost};

/// The PostgreSQL database a token API instance keeps its tokens in.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub url: String,
    /// `host:port`, the `postgres_host` variable (allowed_outbound_hosts).
    pub host: String,
}

/// `bench token-api …`: serves until SIGTERM or Ctrl-C.
pub async fn serve(
    listen: SocketAddr,
    data: PathBuf,
    admin_key_sha256: String,
    cache_ttl_s: u32,
    postgres: Option<Postgres>,
    reuse: harness::spin::InstanceReuse,
) -> anyhow::Result<()> {
    let mut opts = SpinOptions::new(
        harness::stack::workspace_root().join("token-api/spin.toml"),
        data,
    );
    opts.listen = listen;
    // Guest logging would put a write on every request's path.
    opts.guest_stdio = false;
    opts.env_variables = false;
    opts.instance_reuse = reuse;
    opts.variables
        .insert("admin_key_sha256".into(), admin_key_sha256);
    opts.variables
        .insert("default_cache_ttl_s".into(), cache_ttl_s.to_string());
    if let Some(pg) = postgres {
        opts.variables.insert("store".into(), "postgres".into());
        opts.variables.insert("postgres_url".into(), pg.url);
        opts.variables.insert("postgres_host".into(), pg.host);
    }
    let running = TokenApiHost::start(opts)
        .await
        .map_err(|e| anyhow!("token API: {e}"))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    running.shutdown().await;
    Ok(())
}

/// A minted token.
#[derive(Debug, Clone)]
pub struct Minted {
    pub id: String,
    pub token: String,
}

/// The running child.
pub struct TokenApi {
    child: tokio::process::Child,
    pub port: u16,
    admin_key: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl TokenApi {
    /// Starts `<this binary> token-api` pinned to `core` (on PostgreSQL when
    /// given, else SQLite in `data`; with Spin's instance reuse unless
    /// `reuse` says otherwise); waits for `/health`.
    pub async fn start(
        data: &Path,
        core: usize,
        cache_ttl_s: u32,
        postgres: Option<&Postgres>,
        reuse: Option<harness::spin::InstanceReuse>,
    ) -> anyhow::Result<Self> {
        let port = harness::stack::free_port()?;
        let admin_key = harness::stack::random_admin_key()?;
        std::fs::create_dir_all(data)?;
        let log = data.join("token-api.log");
        let log_file = std::fs::File::create(&log)?;
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut cmd = tokio::process::Command::new("taskset");
        cmd.args(["-c", &core.to_string()])
            .arg(exe)
            .arg("token-api")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(data)
            .args([
                "--admin-key-sha256",
                &mcpgw_token::format::sha256_hex(&admin_key),
            ])
            .args(["--cache-ttl-s", &cache_ttl_s.to_string()]);
        if let Some(pg) = postgres {
            cmd.args(["--postgres-url", &pg.url, "--postgres-host", &pg.host]);
        }
        if let Some(r) = reuse {
            cmd.args([
                "--max-instance-reuse-count",
                &r.max_reuse_count.to_string(),
                "--max-instance-concurrent-reuse-count",
                &r.max_concurrent_reuse_count.to_string(),
            ]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting the token API")?;
        let mut api = Self {
            child,
            port,
            admin_key,
            http: reqwest::Client::new(),
            log,
        };
        api.wait_healthy(Duration::from_secs(120)).await?;
        Ok(api)
    }

    async fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the token API exited at start ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(r) = self.http.get(format!("{}/health", self.url())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the token API was not healthy within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow!("the token API has exited"))
    }

    /// Mints a token of tenant `bench` with `mcp:*`.
    pub async fn mint(&self, name: &str) -> anyhow::Result<Minted> {
        self.mint_with(name, json!({})).await
    }

    /// Mints a token of tenant `bench` with `scopes`.
    pub async fn mint_scoped(&self, name: &str, scopes: &[&str]) -> anyhow::Result<Minted> {
        self.mint_with(name, json!({ "scopes": scopes })).await
    }

    /// Mints with more create fields (e.g. `rate_limit`, `scopes`).
    pub async fn mint_with(&self, name: &str, extra: Value) -> anyhow::Result<Minted> {
        let mut body = json!({"name": name, "tenant": "bench", "scopes": ["mcp:*"]});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let resp = self
            .http
            .post(format!("{}/api/v1/mcptokens", self.url()))
            .bearer_auth(&self.admin_key)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if status.as_u16() != 201 {
            bail!("minting {name}: {status} {v}");
        }
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("create response without {k}: {v}"))
        };
        Ok(Minted {
            id: field("id")?,
            token: field("token")?,
        })
    }

    pub async fn revoke(&self, id: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/api/v1/mcptokens/{id}/revoke", self.url()))
            .bearer_auth(&self.admin_key)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "revoking {id}: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// SIGTERM by PID, then wait; SIGKILL if it lingers.
    pub async fn stop(mut self) {
        harness::stack::envoy::stop_child(&mut self.child).await;
    }
}

/// A well-formed token whose checksum is wrong (rejected offline by the filter).
pub fn bad_checksum(token: &str) -> anyhow::Result<String> {
    let mut chars: Vec<char> = token.chars().collect();
    let last = chars.last_mut().ok_or_else(|| anyhow!("empty token"))?;
    *last = if *last == 'A' { 'B' } else { 'A' };
    let bad: String = chars.into_iter().collect();
    if mcpgw_token::format::validate(&bad).is_ok() {
        bail!("changing the last character left the checksum valid");
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_checksum_keeps_the_shape_and_fails_validation() {
        let good = mcpgw_token::format::generate().unwrap();
        let bad = bad_checksum(&good).unwrap();
        assert_eq!(bad.len(), good.len());
        assert!(bad.starts_with(mcpgw_token::format::PREFIX));
        assert_ne!(bad, good);
        assert!(mcpgw_token::format::validate(&bad).is_err());
    }
}
