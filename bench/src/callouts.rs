//! Introspection callouts made when many requests with one uncached token
//! arrive at once: all connections are opened first, then every request is
//! written before any answer can come back.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::Gateway;

/// One burst and what Envoy counted for it.
#[derive(Debug, Clone)]
pub struct Burst {
    pub requests: usize,
    pub ok: usize,
    pub callouts: u64,
    pub coalesced: u64,
    pub shared_hits: u64,
    /// Connections each worker accepted during the burst.
    pub per_worker: Vec<u64>,
}

pub async fn burst(gateway: &Gateway, token: &str, n: usize) -> anyhow::Result<Burst> {
    let before = gateway.stats("mcp_auth|downstream_cx_total").await?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpStream::connect(("127.0.0.1", gateway.port))
            .await
            .context("connecting to Envoy")?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let request = format!(
        "GET /direct HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    );
    for c in &mut conns {
        c.write_all(request.as_bytes()).await?;
    }
    let mut ok = 0;
    for mut c in conns {
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).await?;
        if status_of(&buf) == Some(200) {
            ok += 1;
        }
    }
    let after = gateway.stats("mcp_auth|downstream_cx_total").await?;
    let delta = |k: &str| {
        after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(k).copied().unwrap_or(0))
    };
    Ok(Burst {
        requests: n,
        ok,
        callouts: delta("mcp_auth.callouts"),
        coalesced: delta("mcp_auth.coalesced_waits"),
        shared_hits: delta("mcp_auth.cache.shared_hits"),
        per_worker: per_worker(&before, &after)?,
    })
}

/// `listener.<addr>.worker_<n>.downstream_cx_total` deltas, by worker number.
fn per_worker(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> anyhow::Result<Vec<u64>> {
    let mut out: BTreeMap<u32, u64> = BTreeMap::new();
    for (k, v) in after {
        let Some(rest) = k.strip_prefix("listener.") else {
            continue;
        };
        if rest.starts_with("admin") {
            continue;
        }
        let Some(worker) = rest
            .split('.')
            .find_map(|part| part.strip_prefix("worker_"))
        else {
            continue;
        };
        let n: u32 = worker
            .parse()
            .map_err(|_| anyhow!("unexpected listener stat {k}"))?;
        let was = before.get(k).copied().unwrap_or(0);
        *out.entry(n).or_default() += v.saturating_sub(was);
    }
    Ok(out.into_values().collect())
}

/// The status code of an HTTP/1.1 response.
pub fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|p| p.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nok"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 401 Unauthorized\r\n"), Some(401));
        assert_eq!(status_of(b""), None);
        assert_eq!(status_of(b"garbage 200\r\n"), None);
    }

    #[test]
    fn worker_deltas_skip_other_listeners() {
        let before = BTreeMap::from([
            (
                "listener.127.0.0.1_5000.worker_0.downstream_cx_total".to_string(),
                10,
            ),
            (
                "listener.127.0.0.1_5000.worker_1.downstream_cx_total".to_string(),
                3,
            ),
        ]);
        let after = BTreeMap::from([
            (
                "listener.127.0.0.1_5000.worker_0.downstream_cx_total".to_string(),
                60,
            ),
            (
                "listener.127.0.0.1_5000.worker_1.downstream_cx_total".to_string(),
                53,
            ),
            (
                "listener.127.0.0.1_5000.downstream_cx_total".to_string(),
                113,
            ),
            ("listener.admin.downstream_cx_total".to_string(), 9),
            ("mcp_auth.callouts".to_string(), 2),
        ]);
        assert_eq!(per_worker(&before, &after).unwrap(), vec![50, 50]);
    }
}
