//! Time from a revoke call to the first 401 through Envoy, with a cache TTL
//! long enough (300 s) that only the revocations feed can end the decision.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::gateway::Gateway;
use crate::token_api::TokenApi;

/// Give up on one trial after this long.
const LIMIT: Duration = Duration::from_secs(10);
/// Pause between probe requests after the revoke.
const STEP: Duration = Duration::from_millis(5);

/// Milliseconds of each trial: from just before the revoke call to the first 401.
pub async fn trials(
    gateway: &Gateway,
    api: &TokenApi,
    trials: u32,
    poll_ms: u64,
) -> anyhow::Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let url = gateway.url("/direct");
    let mut out = Vec::new();
    for i in 0..trials {
        let minted = api.mint(&format!("bench-revoke-{i}")).await?;
        let bearer = format!("Bearer {}", minted.token);
        let status = |http: reqwest::Client, bearer: String, url: String| async move {
            anyhow::Ok(
                http.get(&url)
                    .header("authorization", bearer)
                    .send()
                    .await?
                    .status()
                    .as_u16(),
            )
        };
        // First request: callout and cache fill; second: served from the cache.
        for _ in 0..2 {
            let s = status(http.clone(), bearer.clone(), url.clone()).await?;
            if s != 200 {
                bail!("a fresh token got {s} through Envoy, expected 200");
            }
        }
        // Land the revoke at a random point of the poll period.
        tokio::time::sleep(Duration::from_millis(jitter(poll_ms))).await;
        let start = Instant::now();
        api.revoke(&minted.id).await?;
        loop {
            let s = status(http.clone(), bearer.clone(), url.clone()).await?;
            if s == 401 {
                break;
            }
            if s != 200 {
                bail!("a token being revoked got {s}, expected 200 or 401");
            }
            if start.elapsed() > LIMIT {
                bail!("the revoked token still passed after {LIMIT:?}");
            }
            tokio::time::sleep(STEP).await;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        eprintln!("bench: revocation trial {}: 401 after {ms:.0} ms", i + 1);
        out.push(ms);
    }
    Ok(out)
}

/// A random delay below `max_ms` (0 when `max_ms` is 0).
fn jitter(max_ms: u64) -> u64 {
    let mut b = [0u8; 8];
    if max_ms == 0 || getrandom::fill(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b) % max_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_below_its_bound() {
        assert_eq!(jitter(0), 0);
        assert!((0..100).all(|_| jitter(7) < 7));
        // Not constant: 100 draws from 1000 values are not all equal.
        let draws: std::collections::BTreeSet<u64> = (0..100).map(|_| jitter(1000)).collect();
        assert!(draws.len() > 1);
    }
}
