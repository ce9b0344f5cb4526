//! A flood of made-up tokens: well-formed (the checksum is public), never
//! issued, each worth an introspection callout. Measures what the flood
//! costs and what it leaves alone: callouts/s against the token API, the
//! share of requests of tokens already in use that still succeed, and the
//! time a revocation takes to land meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::gateway::Gateway;
use crate::token_api::TokenApi;

/// What one flood did.
#[derive(Debug, Clone, Default)]
pub struct Flood {
    pub made_up: usize,
    pub connections: usize,
    pub workers: u32,
    pub max_inflight: u64,
    pub seconds: f64,
    pub requests: u64,
    pub unauthorized: u64,
    pub busy: u64,
    pub other: u64,
    pub callouts: u64,
    pub evicted_active: u64,
    pub live_ok: u64,
    pub live_failed: u64,
    /// What the failed requests of cached tokens got (status, or the error).
    pub live_failures: Vec<String>,
    pub live_p99_ms: f64,
    /// From the revoke call's answer to the first refusal, ms.
    pub revocation_ms: Option<f64>,
    pub revoke_call_ms: f64,
}

/// One keep-alive connection speaking just enough HTTP/1.1 for `GET /direct`.
struct Conn {
    stream: Option<BufReader<TcpStream>>,
    port: u16,
}

impl Conn {
    fn new(port: u16) -> Self {
        Self { stream: None, port }
    }

    /// The status of `GET /direct` with `token`.
    async fn get(&mut self, token: &str) -> anyhow::Result<u16> {
        if self.stream.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port)).await?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::new(s));
        }
        let s = self.stream.as_mut().context("connected above")?;
        let req =
            format!("GET /direct HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\r\n");
        s.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        s.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .context("no status line")?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if s.read_line(&mut line).await? == 0 {
                anyhow::bail!("closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
            close |= lower == "connection: close";
        }
        let mut body = vec![0; length];
        s.read_exact(&mut body).await?;
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    k: &str,
) -> u64 {
    after
        .get(k)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(k).copied().unwrap_or(0))
}

pub struct Setup<'a> {
    pub gateway: &'a Gateway,
    pub api: &'a TokenApi,
    pub made_up: usize,
    pub connections: usize,
    pub workers: u32,
    pub max_inflight: u64,
}

pub async fn run(s: &Setup<'_>) -> anyhow::Result<Flood> {
    let port = s.gateway.port;
    let live = [
        s.api.mint("bench-flood-live-1").await?.token,
        s.api.mint("bench-flood-live-2").await?.token,
    ];
    let doomed = s.api.mint("bench-flood-doomed").await?;
    // A worker caches decisions only once it holds a feed cursor: until
    // then the warm-up below would cache nothing (one worker, main thread).
    s.gateway
        .envoy
        .wait_for_feed_answers(u64::from(s.workers) + 1, Duration::from_secs(10))
        .await?;
    let hits = |m: &std::collections::BTreeMap<String, u64>| {
        m.get("mcp_auth.cache.hits").copied().unwrap_or(0)
    };
    let warm_from = s.gateway.stats("mcp_auth").await?;
    for t in live.iter().chain([&doomed.token]) {
        // Fresh connections spread over the workers; the shared layer covers the rest.
        for _ in 0..4 {
            anyhow::ensure!(Conn::new(port).get(t).await? == 200, "warming a live token");
        }
    }
    let warmed = s.gateway.stats("mcp_auth").await?;
    anyhow::ensure!(
        hits(&warmed) - hits(&warm_from) >= 9,
        "the warm-up requests were not served from the cache"
    );
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..s.made_up)
            .map(|_| mcpgw_token::format::generate())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("randomness: {e}"))?,
    );
    let before = s.gateway.stats("mcp_auth").await?;
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let started = Instant::now();
    let mut flooders = Vec::new();
    for _ in 0..s.connections {
        let (tokens, next, done, counts) =
            (tokens.clone(), next.clone(), done.clone(), counts.clone());
        flooders.push(tokio::spawn(async move {
            let mut c = Conn::new(port);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                // Every token once, then again until the revocation was probed.
                if i >= tokens.len() && done.load(Ordering::Relaxed) {
                    break;
                }
                let slot = match c.get(&tokens[i % tokens.len()]).await {
                    Ok(401) => 0,
                    Ok(503) => 1,
                    _ => 2,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut callers = Vec::new();
    for t in live.clone() {
        let done = done.clone();
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut ms) = (0u64, Vec::new(), Vec::new());
            let mut c = Conn::new(port);
            while !done.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                match c.get(&t).await {
                    Ok(200) => ok += 1,
                    Ok(status) => failed.push(status.to_string()),
                    Err(e) => {
                        failed.push(e.to_string());
                        c = Conn::new(port);
                    }
                }
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed, ms)
        }));
    }

    while next.load(Ordering::Relaxed) < (s.made_up / 3) as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    s.api.revoke(&doomed.id).await?;
    let revoked = Instant::now();
    let mut probe = Conn::new(port);
    let mut refused = None;
    while revoked.elapsed() < Duration::from_secs(5) {
        if probe.get(&doomed.token).await? != 200 {
            refused = Some(revoked.elapsed().as_secs_f64() * 1e3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (mut live_ok, mut live_failures, mut lat) = (0, Vec::new(), Vec::new());
    for c in callers {
        let (ok, failed, ms) = c.await?;
        live_ok += ok;
        live_failures.extend(failed);
        lat.extend(ms);
    }
    lat.sort_by(f64::total_cmp);
    let after = s.gateway.stats("mcp_auth").await?;
    let [unauthorized, busy, other] = [0, 1, 2].map(|i| counts[i].load(Ordering::Relaxed));
    Ok(Flood {
        made_up: s.made_up,
        connections: s.connections,
        workers: s.workers,
        max_inflight: s.max_inflight,
        seconds,
        requests: unauthorized + busy + other,
        unauthorized,
        busy,
        other,
        callouts: delta(&before, &after, "mcp_auth.callouts"),
        evicted_active: delta(&before, &after, "mcp_auth.cache.evicted_active"),
        live_ok,
        live_failed: live_failures.len() as u64,
        live_failures,
        live_p99_ms: lat
            .get((lat.len() * 99 / 100).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0),
        revocation_ms: refused,
        revoke_call_ms: (revoked - t0).as_secs_f64() * 1e3,
    })
}
