//! The list-visibility row: `tools/list` answered with 50 tools, through the
//! filter, for a token that may call 10 of them (the answer is parsed,
//! filtered and rewritten) and for an `mcp:*` token (no response work), the
//! same request side by side.
//!
//! Self-contained: its own upstream (a hyper server answering every request
//! with the 50-tool list) and its own Envoy with the `mcp_auth` chain; POST
//! load runs through wrk (a Lua script sets method, body and headers) or oha.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::envoy_config::Chain;
use crate::gateway::{Common, Gateway};
use crate::load::{self, Measured, Tool, WRK_SCRIPT};
use crate::procfs;
use crate::token_api::TokenApi;

/// Tools in the answer, and how many the restricted token may call.
pub const TOOLS: usize = 50;
pub const VISIBLE: usize = 10;
/// `mcp:tools/call:tool_0*`: `tool_00` … `tool_09`.
const RESTRICTED: [&str; 2] = ["mcp:tools/list", "mcp:tools/call:tool_0*"];
const REQUEST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;

pub struct Setup<'a> {
    pub tool: &'a Tool,
    pub common: &'a Common,
    pub api: &'a TokenApi,
    pub work_dir: &'a Path,
    pub filter_config: Value,
    pub connections: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: u32,
    pub envoy_core: usize,
    pub load_core: usize,
}

/// One variant's runs.
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: &'static str,
    pub runs: Vec<(Measured, f64)>,
}

impl Variant {
    fn median(&self, f: impl Fn(&(Measured, f64)) -> f64) -> f64 {
        let v: Vec<f64> = self.runs.iter().map(f).collect();
        crate::summary::median(&v).unwrap_or(0.0)
    }
    pub fn rps(&self) -> f64 {
        self.median(|(m, _)| m.rps())
    }
    fn p50(&self) -> f64 {
        self.median(|(m, _)| m.p50_us)
    }
    fn p99(&self) -> f64 {
        self.median(|(m, _)| m.p99_us)
    }
    fn cpu_us(&self) -> f64 {
        self.median(|(_, cpu)| *cpu)
    }
    fn errors(&self) -> u64 {
        self.runs
            .iter()
            .map(|(m, _)| m.http_errors + m.socket_errors)
            .sum()
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub restricted: Variant,
    pub everything: Variant,
    /// The restricted token again, the answer changing on every request
    /// (never recalled from the filter's memo), and `mcp:*` beside it: run
    /// apart, after the others.
    pub changing: (Variant, Variant),
    /// Bytes of the answer each token got.
    pub bytes: (usize, usize),
    pub filtered: u64,
    /// Of those, recalled from the worker's memo.
    pub recalled: u64,
}

impl Outcome {
    /// Restricted over `mcp:*` req/s within each round (the two ran back to
    /// back), median over the rounds.
    pub fn ratio(&self) -> f64 {
        ratio(&self.restricted, &self.everything)
    }

    pub fn render(&self, o: &mut String) {
        let _ = writeln!(o, "## tools/list for a restricted token\n");
        let _ = writeln!(
            o,
            "`POST /proxy` `tools/list` through the filter; the upstream answers with {TOOLS} \
             tools ({} bytes of JSON). The restricted token may call {VISIBLE} of them \
             (`{}`), so the filter buffers, parses, filters and rewrites the answer ({} \
             bytes out); the `mcp:*` token's answer passes untouched. The upstream sends \
             the same bytes every time but for the JSON-RPC id, as MCP servers do, so the \
             filter recalls its rewrite from the worker's memo. Same Envoy, same upstream, \
             the two take turns; medians ({} rounds; the ratio is taken within each round). \
             The last row is apart, after the others, in rounds of its own beside `mcp:*`: \
             an answer that changes on every request (a `nextCursor` counter), read afresh \
             each time.\n",
            self.bytes.1,
            RESTRICTED.join(" "),
            self.bytes.0,
            self.restricted.runs.len()
        );
        let _ = writeln!(
            o,
            "| token | req/s | p50 | p99 | Envoy CPU/req | errors | × mcp:* |\n|---|--:|--:|--:|--:|--:|--:|"
        );
        let (changing, beside) = &self.changing;
        for (v, base) in [
            (&self.restricted, &self.everything),
            (&self.everything, &self.everything),
            (changing, beside),
        ] {
            let _ = writeln!(
                o,
                "| {} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {} | {:.2}× |",
                v.label,
                v.rps(),
                v.p50(),
                v.p99(),
                v.cpu_us(),
                v.errors(),
                ratio(v, base)
            );
        }
        let _ = writeln!(
            o,
            "\nTarget ≥ 0.80× for the restricted token: {} ({:.2}×). \
             `mcp_auth.lists.filtered` counted {} rewritten answers, {} of them recalled \
             from the memo (`mcp_auth.lists.recalled`).\n",
            if self.ratio() >= 0.8 {
                "met"
            } else {
                "**not met**"
            },
            self.ratio(),
            self.filtered,
            self.recalled
        );
    }
}

/// `v` over `base` req/s within each round (run back to back), median over
/// the rounds.
fn ratio(v: &Variant, base: &Variant) -> f64 {
    let per_round: Vec<f64> = v
        .runs
        .iter()
        .zip(&base.runs)
        .filter(|(_, (all, _))| all.rps() > 0.0)
        .map(|((r, _), (all, _))| r.rps() / all.rps())
        .collect();
    crate::summary::median(&per_round).unwrap_or(0.0)
}

pub async fn run(s: &Setup<'_>) -> anyhow::Result<Outcome> {
    let upstream = ListUpstream::start().await?;
    let common = Common {
        upstream_port: upstream.port,
        ..s.common.clone()
    };
    let restricted = s
        .api
        .mint_scoped("bench-lists-restricted", &RESTRICTED)
        .await?;
    let everything = s.api.mint("bench-lists-all").await?;
    let chain = Chain::McpAuth {
        config: s.filter_config.clone(),
    };
    let core = s.envoy_core.to_string();
    let gw = Gateway::start(&common, &chain, &s.work_dir.join("envoy-lists"), 1, &core).await?;
    let result = measure(s, &gw, &restricted.token, &everything.token).await;
    let stats = gw.stats("mcp_auth.lists").await.unwrap_or_default();
    let stat = |name: &str| {
        stats
            .iter()
            .find(|(k, _)| k.ends_with(name))
            .map_or(0, |(_, v)| *v)
    };
    let (filtered, recalled) = (stat("lists.filtered"), stat("lists.recalled"));
    gw.stop().await;
    upstream.task.abort();
    let ((restricted, everything), changing, bytes) = result?;
    Ok(Outcome {
        restricted,
        everything,
        changing,
        bytes,
        filtered,
        recalled,
    })
}

async fn measure(
    s: &Setup<'_>,
    gw: &Gateway,
    restricted: &str,
    everything: &str,
) -> anyhow::Result<((Variant, Variant), (Variant, Variant), (usize, usize))> {
    let (restricted_token, everything_token) = (restricted, everything);
    let url = gw.url("/proxy/mcp");
    let changing_url = gw.url(&format!("/proxy/mcp/{CHANGING}"));
    // Measure the right thing: the filter filters one and not the other.
    let mut bytes = (0, 0);
    let mut changed = 0;
    for (token, url, want, slot) in [
        (restricted, &url, VISIBLE, &mut bytes.0),
        (everything, &url, TOOLS, &mut bytes.1),
        (restricted, &changing_url, VISIBLE, &mut changed),
    ] {
        let body = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(REQUEST)
            .send()
            .await?
            .bytes()
            .await?;
        let v: Value = serde_json::from_slice(&body).context("tools/list answer")?;
        let n = v["result"]["tools"].as_array().map_or(0, Vec::len);
        if n != want {
            bail!("tools/list through the filter gave {n} tools, not {want}: {v}");
        }
        *slot = body.len();
    }
    let script = s.work_dir.join("wrk-lists.lua");
    std::fs::write(&script, wrk_script())?;
    eprintln!("bench: tools/list, restricted token vs mcp:*");
    let same = [
        ("restricted (10 of 50)", restricted, url.as_str()),
        ("mcp:*", everything, url.as_str()),
    ];
    let [restricted, everything] = rounds(s, gw, &script, same).await?;
    // Apart, after the others: its misses fill the worker's memo.
    eprintln!("bench: tools/list, an answer that changes on every request vs mcp:*");
    let changing = [
        (
            "restricted, answer changing",
            restricted_token,
            changing_url.as_str(),
        ),
        ("mcp:*", everything_token, url.as_str()),
    ];
    let [changing, beside] = rounds(s, gw, &script, changing).await?;
    Ok(((restricted, everything), (changing, beside), bytes))
}

/// A warm-up of each variant, then `s.rounds` rounds of them in turn.
async fn rounds<const N: usize>(
    s: &Setup<'_>,
    gw: &Gateway,
    script: &Path,
    variants: [(&'static str, &str, &str); N],
) -> anyhow::Result<[Variant; N]> {
    let mut out = variants.map(|(label, ..)| Variant {
        label,
        runs: Vec::new(),
    });
    for (_, token, url) in &variants {
        post(s, script, url, token, s.warmup).await?;
    }
    for round in 1..=s.rounds {
        for (v, (label, token, url)) in out.iter_mut().zip(&variants) {
            let ticks = procfs::ticks_per_second();
            let t0 = gw.cpu_ticks()?;
            let m = post(s, script, url, token, s.duration).await?;
            let cpu_s = gw.cpu_ticks()?.saturating_sub(t0) as f64 / ticks;
            let cpu_us = cpu_s * 1e6 / m.requests.max(1) as f64;
            eprintln!(
                "bench: round {round} tools/list {label:<28} {:>7.0} req/s  p50 {:>6.0} µs  \
                 Envoy {cpu_us:>5.1} µs/req",
                m.rps(),
                m.p50_us
            );
            v.runs.push((m, cpu_us));
        }
    }
    Ok(out)
}

fn wrk_script() -> String {
    format!(
        "wrk.method = \"POST\"\nwrk.body = '{REQUEST}'\n\
         wrk.headers[\"content-type\"] = \"application/json\"\n\
         wrk.headers[\"accept\"] = \"application/json, text/event-stream\"\n{WRK_SCRIPT}"
    )
}

/// One POST load run of `duration`, pinned to the load core.
async fn post(
    s: &Setup<'_>,
    script: &Path,
    url: &str,
    token: &str,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let secs = duration.as_secs().max(1).to_string();
    let auth = format!("Authorization: Bearer {token}");
    let mut cmd = tokio::process::Command::new("taskset");
    cmd.args(["-c", &s.load_core.to_string()]);
    match s.tool {
        Tool::Wrk { bin, .. } => {
            cmd.arg(bin)
                .args(["-t1", &format!("-c{}", s.connections)])
                .args([&format!("-d{secs}s"), "--timeout", "5s", "-s"])
                .arg(script)
                .args(["-H", &auth]);
        }
        Tool::Oha { bin } => {
            cmd.arg(bin)
                .args(["-z", &format!("{secs}s"), "-c", &s.connections.to_string()])
                .args([
                    "--no-tui",
                    "--output-format",
                    "json",
                    "-m",
                    "POST",
                    "-d",
                    REQUEST,
                ])
                .args(["-H", &auth, "-H", "content-type: application/json"])
                .args(["-H", "accept: application/json, text/event-stream"]);
        }
    }
    cmd.arg(url).kill_on_drop(true);
    let started = Instant::now();
    let out = cmd.output().await.context("running the load tool")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the load tool failed after {:?} ({}): {stdout}{}",
            started.elapsed(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match s.tool {
        Tool::Wrk { .. } => load::parse_wrk(&stdout),
        Tool::Oha { .. } => load::parse_oha(&stdout),
    }
}

/// Answers every request with the 50-tool `tools/list` result.
struct ListUpstream {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

/// `bench rewrite`: the filter's rewrite of [`answer`] for the restricted
/// token, natively, `n` times; microseconds per rewrite. `memo`: through
/// the worker's memo (every rewrite after the first recalled), else each
/// read afresh.
pub fn time_rewrite(n: u32, memo: bool) -> anyhow::Result<f64> {
    use filter::listing::{self, Counts, Memo, Plan, Rewrite, Visibility};
    let scopes = mcpgw_token::scopes::parse_all(&RESTRICTED)
        .map_err(|e| anyhow::anyhow!("restricted scopes: {e}"))?;
    let reading = filter::message::read(REQUEST.as_bytes())
        .map_err(|e| anyhow::anyhow!("the tools/list request: {e:?}"))?;
    let plan = Plan::for_body(&reading, Visibility::of(&scopes))
        .ok_or_else(|| anyhow::anyhow!("the restricted token should get a filtered list"))?;
    let body = answer();
    let mut counts = Counts::default();
    let mut memo = if memo { Memo::default() } else { Memo::off() };
    let started = std::time::Instant::now();
    for _ in 0..n {
        let mut p = plan.clone();
        match listing::rewrite(body.as_bytes(), &mut p, &scopes, &mut counts, &mut memo) {
            Ok(Rewrite::Changed(out)) => {
                std::hint::black_box(out);
            }
            other => bail!("the answer was not rewritten: {other:?}"),
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(n.max(1)))
}

/// The answer: tools `tool_00` … `tool_49`, each with a description and a
/// small input schema, as MCP servers write them.
pub fn answer() -> String {
    let tools: Vec<Value> = (0..TOOLS)
        .map(|i| {
            json!({
                "name": format!("tool_{i:02}"),
                "description": format!("Demo tool number {i}: does one thing to the tenant's data."),
                "inputSchema": {"type": "object",
                                "properties": {"id": {"type": "string", "description": "what to act on"}},
                                "required": ["id"]},
            })
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}).to_string()
}

/// The path suffix on which the upstream's answer changes every time.
const CHANGING: &str = "changing";

/// `answer` (a message ending in its result's close) with `nextCursor: n`.
fn with_cursor(answer: &[u8], n: u64) -> Vec<u8> {
    let end = answer.len().saturating_sub(2);
    let mut out = answer[..end].to_vec();
    out.extend_from_slice(format!(",\"nextCursor\":\"{n}\"}}}}").as_bytes());
    out
}

impl ListUpstream {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let port = listener.local_addr()?.port();
        let body = Bytes::from(answer());
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let body = body.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let body = if req.uri().path().ends_with(CHANGING) {
                            let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            Bytes::from(with_cursor(&body, n))
                        } else {
                            body.clone()
                        };
                        async move {
                            let mut r = Response::new(Full::new(body));
                            r.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { port, task })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_holds_fifty_tools_ten_of_them_visible() {
        let v: Value = serde_json::from_str(&answer()).unwrap();
        let tools = v["result"]["tools"].as_array().unwrap();
        assert_eq!(tools.len(), TOOLS);
        let held = mcpgw_token::scopes::parse_all(&RESTRICTED).unwrap();
        let visible = tools
            .iter()
            .filter(|t| {
                mcpgw_token::scopes::lists(&held, "tools/list", t["name"].as_str().unwrap())
            })
            .count();
        assert_eq!(visible, VISIBLE);
    }

    fn run(requests: u64) -> (Measured, f64) {
        let m = Measured {
            requests,
            seconds: 1.0,
            p50_us: 0.0,
            p99_us: 0.0,
            http_errors: 0,
            socket_errors: 0,
        };
        (m, 0.0)
    }

    #[test]
    fn the_ratio_pairs_runs_of_the_same_round() {
        // The machine slowed down in round 2 and sped up in round 3: the
        // rounds say 0.5, 0.5 and 0.86, the medians of each side 500 / 700.
        let o = Outcome {
            restricted: Variant {
                label: "r",
                runs: vec![run(500), run(100), run(600)],
            },
            everything: Variant {
                label: "a",
                runs: vec![run(1000), run(200), run(700)],
            },
            changing: (
                Variant {
                    label: "c",
                    runs: vec![run(100)],
                },
                Variant {
                    label: "a",
                    runs: vec![run(200)],
                },
            ),
            bytes: (0, 0),
            filtered: 0,
            recalled: 0,
        };
        assert!((o.ratio() - 0.5).abs() < 1e-12, "{}", o.ratio());
    }

    #[test]
    fn a_changing_answer_carries_a_cursor_and_stays_json() {
        let a = answer();
        let v: Value = serde_json::from_slice(&with_cursor(a.as_bytes(), 42)).unwrap();
        assert_eq!(v["result"]["nextCursor"], "42");
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), TOOLS);
        assert_ne!(with_cursor(a.as_bytes(), 1), with_cursor(a.as_bytes(), 2));
    }

    #[test]
    fn the_rewrite_is_timed_on_the_real_filter() {
        // It fails unless the filter really rewrites the answer.
        assert!(time_rewrite(3, false).unwrap() > 0.0);
        assert!(time_rewrite(3, true).unwrap() > 0.0);
    }

    #[test]
    fn the_wrk_script_posts_the_request() {
        let s = wrk_script();
        assert!(s.contains("wrk.method = \"POST\""));
        assert!(s.contains(REQUEST));
        assert!(s.contains("WRK_JSON"));
    }
}
