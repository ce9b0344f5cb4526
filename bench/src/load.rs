//! The load generator: `wrk` (Debian package) or, where it cannot be
//! installed, `oha`. One bounded run against one URL, pinned to a core.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

/// Which tool drives the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// `wrk` with `script`, a Lua file that prints the summary as JSON.
    Wrk {
        bin: PathBuf,
        script: PathBuf,
    },
    Oha {
        bin: PathBuf,
    },
}

/// wrk's summary as one line of JSON (latencies in microseconds).
pub const WRK_SCRIPT: &str = r#"-- Written by the bench driver: prints wrk's summary as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

impl Tool {
    /// `wrk` if found on PATH, else `oha` (PATH or ~/.cargo/bin).
    pub fn detect(choice: &str, work_dir: &Path) -> anyhow::Result<Tool> {
        let wrk = || -> anyhow::Result<Tool> {
            let bin = which("wrk").ok_or_else(|| {
                anyhow!("wrk not found: `apt-get install -y wrk` (or use --load-tool oha)")
            })?;
            let script = work_dir.join("wrk-summary.lua");
            std::fs::write(&script, WRK_SCRIPT)?;
            Ok(Tool::Wrk { bin, script })
        };
        let oha = || -> anyhow::Result<Tool> {
            let home_bin = std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cargo/bin/oha"))
                .filter(|p| p.is_file());
            let bin = which("oha").or(home_bin).ok_or_else(|| {
                anyhow!("oha not found: `cargo install oha --locked` (or install wrk)")
            })?;
            Ok(Tool::Oha { bin })
        };
        match choice {
            "wrk" => wrk(),
            "oha" => oha(),
            "auto" => wrk().or_else(|_| oha()).map_err(|_| {
                anyhow!(
                    "no load tool: install wrk (`apt-get install -y wrk`) or oha \
                     (`cargo install oha --locked`); `just bench` does this for you"
                )
            }),
            other => bail!("--load-tool {other:?}: use wrk, oha or auto"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Tool::Wrk { .. } => "wrk",
            Tool::Oha { .. } => "oha",
        }
    }

    /// The tool's version line, for the report.
    pub fn version(&self) -> String {
        let (bin, arg) = match self {
            Tool::Wrk { bin, .. } => (bin, "-v"),
            Tool::Oha { bin } => (bin, "--version"),
        };
        std::process::Command::new(bin)
            .arg(arg)
            .output()
            .map(|o| {
                let text = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    }
}

/// One run: `connections` keep-alive connections for `duration`.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub url: &'a str,
    pub authorization: Option<&'a str>,
    pub connections: u32,
    pub duration: Duration,
    pub core: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub requests: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Responses with status ≥ 400.
    pub http_errors: u64,
    /// Connect/read/write errors and timeouts.
    pub socket_errors: u64,
}

impl Measured {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

pub async fn run(tool: &Tool, load: &Load<'_>) -> anyhow::Result<Measured> {
    let secs = load.duration.as_secs().max(1).to_string();
    let mut cmd = tokio::process::Command::new("taskset");
    cmd.args(["-c", &load.core.to_string()]);
    match tool {
        Tool::Wrk { bin, script } => {
            cmd.arg(bin)
                .args(["-t1", &format!("-c{}", load.connections)])
                .args([&format!("-d{secs}s"), "--timeout", "5s", "-s"])
                .arg(script);
            if let Some(a) = load.authorization {
                cmd.args(["-H", &format!("Authorization: {a}")]);
            }
        }
        Tool::Oha { bin } => {
            cmd.arg(bin)
                .args([
                    "-z",
                    &format!("{secs}s"),
                    "-c",
                    &load.connections.to_string(),
                ])
                .args(["--no-tui", "--output-format", "json"]);
            if let Some(a) = load.authorization {
                cmd.args(["-H", &format!("Authorization: {a}")]);
            }
        }
    }
    cmd.arg(load.url).kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {}", tool.name()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            tool.name(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match tool {
        Tool::Wrk { .. } => parse_wrk(&stdout),
        Tool::Oha { .. } => parse_oha(&stdout),
    }
}

fn num(v: &Value, key: &str) -> anyhow::Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow!("load tool output lacks a number at {key:?}: {v}"))
}

/// The `WRK_JSON {...}` line printed by [`WRK_SCRIPT`].
pub fn parse_wrk(stdout: &str) -> anyhow::Result<Measured> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .ok_or_else(|| anyhow!("wrk printed no summary line:\n{stdout}"))?;
    let v: Value = serde_json::from_str(line).context("wrk summary line")?;
    let count = |k: &str| num(&v, k).map(|n| n as u64);
    Ok(Measured {
        requests: count("requests")?,
        seconds: num(&v, "duration_us")? / 1e6,
        p50_us: num(&v, "p50_us")?,
        p99_us: num(&v, "p99_us")?,
        http_errors: count("status")?,
        socket_errors: count("connect")? + count("read")? + count("write")? + count("timeout")?,
    })
}

/// `oha --output-format json` (durations in seconds).
pub fn parse_oha(stdout: &str) -> anyhow::Result<Measured> {
    let v: Value = serde_json::from_str(stdout.trim()).context("oha JSON output")?;
    let summary = &v["summary"];
    let lat = &v["latencyPercentiles"];
    let statuses = v["statusCodeDistribution"]
        .as_object()
        .ok_or_else(|| anyhow!("oha output lacks statusCodeDistribution"))?;
    let mut requests = 0;
    let mut http_errors = 0;
    for (code, n) in statuses {
        let n = n.as_u64().unwrap_or(0);
        requests += n;
        if code.parse::<u16>().map_or(true, |c| c >= 400) {
            http_errors += n;
        }
    }
    let socket_errors = v["errorDistribution"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    Ok(Measured {
        requests,
        seconds: num(summary, "total")?,
        p50_us: num(lat, "p50")? * 1e6,
        p99_us: num(lat, "p99")? * 1e6,
        http_errors,
        socket_errors,
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_line() {
        let out = "Running 10s test @ http://x\n  1 threads\nWRK_JSON {\"requests\":1000,\
                   \"duration_us\":2000000,\"p50_us\":812,\"p99_us\":2100,\"connect\":0,\
                   \"read\":1,\"write\":0,\"status\":3,\"timeout\":2}\nRequests/sec: 500\n";
        let m = parse_wrk(out).unwrap();
        assert_eq!(m.requests, 1000);
        assert_eq!(m.rps(), 500.0);
        assert_eq!((m.p50_us, m.p99_us), (812.0, 2100.0));
        assert_eq!((m.http_errors, m.socket_errors), (3, 3));
    }

    #[test]
    fn wrk_without_the_line_is_an_error() {
        let e = parse_wrk("Requests/sec: 5\n").unwrap_err().to_string();
        assert!(e.contains("no summary line"), "{e}");
    }

    #[test]
    fn oha_json() {
        let out = r#"{"summary":{"successRate":1.0,"total":2.0,"requestsPerSec":600.0},
            "latencyPercentiles":{"p50":0.0005,"p99":0.002},
            "statusCodeDistribution":{"200":1000,"401":200},
            "errorDistribution":{"connection reset":4}}"#;
        let m = parse_oha(out).unwrap();
        assert_eq!(m.requests, 1200);
        assert_eq!(m.rps(), 600.0);
        assert_eq!((m.p50_us, m.p99_us), (500.0, 2000.0));
        assert_eq!((m.http_errors, m.socket_errors), (200, 4));
    }

    #[test]
    fn zero_seconds_is_zero_rps() {
        let m = Measured {
            requests: 5,
            seconds: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            http_errors: 0,
            socket_errors: 0,
        };
        assert_eq!(m.rps(), 0.0);
    }
}
