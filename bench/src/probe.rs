//! Where the cache-hit path's time goes: the empty filter turned probe makes
//! the filter's host calls one kind at a time, each set in its own Envoy, on
//! the direct route; their cost is Envoy CPU per request above the floor.
//! All Envoys run at once and take turns, like the main table.

use std::time::Duration;

use crate::envoy_config::Chain;
use crate::gateway::{Common, Gateway};
use crate::load::{self, Load, Tool};
use crate::procfs;
use crate::summary::median;

/// The probes, named for the report, with the empty filter's ops.
pub const PROBES: [(&str, &str); 9] = [
    ("read the request header map", "header_map"),
    ("read the clock", "time"),
    ("increment 2 counters", "metric,metric"),
    ("remove `authorization`", "remove"),
    ("set 4 headers (4 calls)", "set,set,set,set"),
    ("call `clear_route_cache`", "clear_route_cache"),
    ("header map read + rewrite in 1 call", "pairs"),
    (
        ALL_CALLS,
        "header_map,time,metric,remove,set,set,set,set,clear_route_cache,metric",
    ),
    (
        "the same without `clear_route_cache`",
        "header_map,time,metric,remove,set,set,set,set,metric",
    ),
];

pub const FLOOR: &str = "empty filter (floor)";
pub const FILTER: &str = "mcp_auth, cache hit";
pub const ALL_CALLS: &str = "all 10 host calls of the cache hit";

#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub label: String,
    /// Medians over the rounds.
    pub rps: f64,
    pub cpu_us_per_req: f64,
}

pub struct Setup<'a> {
    pub tool: &'a Tool,
    pub common: &'a Common,
    pub work_dir: std::path::PathBuf,
    pub filter_config: serde_json::Value,
    pub valid: String,
    pub connections: u32,
    pub duration: Duration,
    pub rounds: u32,
    pub envoy_core: usize,
    pub load_core: usize,
}

/// The floor, every probe and the filter, `rounds` times in turn.
pub async fn run(s: &Setup<'_>) -> anyhow::Result<Vec<ProbeRow>> {
    let mut plan: Vec<(String, Chain)> = vec![(
        FLOOR.to_string(),
        Chain::Empty {
            probe_ops: String::new(),
        },
    )];
    for (label, ops) in PROBES {
        plan.push((
            label.to_string(),
            Chain::Empty {
                probe_ops: ops.to_string(),
            },
        ));
    }
    plan.push((
        FILTER.to_string(),
        Chain::McpAuth {
            config: s.filter_config.clone(),
        },
    ));
    let mut envoys = Vec::new();
    for (i, (_, chain)) in plan.iter().enumerate() {
        let dir = s.work_dir.join(format!("envoy-probe-{i}"));
        match Gateway::start(s.common, chain, &dir, 1, &s.envoy_core.to_string()).await {
            Ok(g) => envoys.push(g),
            Err(e) => {
                for g in envoys {
                    g.stop().await;
                }
                return Err(e);
            }
        }
    }
    let measured = measure(s, &plan, &envoys).await;
    for g in envoys {
        g.stop().await;
    }
    let runs = measured?;
    Ok(plan
        .iter()
        .zip(runs)
        .map(|((label, _), runs)| ProbeRow {
            label: label.clone(),
            rps: median(&runs.iter().map(|r| r.0).collect::<Vec<_>>()).unwrap_or(0.0),
            cpu_us_per_req: median(&runs.iter().map(|r| r.1).collect::<Vec<_>>()).unwrap_or(0.0),
        })
        .collect())
}

/// (req/s, Envoy CPU µs per request) of every run, per plan entry.
async fn measure(
    s: &Setup<'_>,
    plan: &[(String, Chain)],
    envoys: &[Gateway],
) -> anyhow::Result<Vec<Vec<(f64, f64)>>> {
    let tck = procfs::ticks_per_second();
    let mut runs = vec![Vec::new(); plan.len()];
    for round in 0..=s.rounds {
        for (i, gw) in envoys.iter().enumerate() {
            let url = gw.url("/direct");
            let run = Load {
                url: &url,
                authorization: Some(&s.valid),
                connections: s.connections,
                // Round 0 warms every Envoy up and is not kept.
                duration: if round == 0 {
                    Duration::from_secs(1)
                } else {
                    s.duration
                },
                core: s.load_core,
            };
            let t0 = gw.cpu_ticks()?;
            let m = load::run(s.tool, &run).await?;
            let t1 = gw.cpu_ticks()?;
            let label = &plan[i].0;
            if m.http_errors > 0 || m.socket_errors > 0 {
                anyhow::bail!("probe {label:?}: not every response was a 200: {m:?}");
            }
            if round == 0 {
                continue;
            }
            let cpu = t1.saturating_sub(t0) as f64 / tck * 1e6 / m.requests.max(1) as f64;
            eprintln!(
                "bench: probe round {round} {label:<40} {:>7.0} req/s  Envoy {cpu:>5.1} µs/req",
                m.rps()
            );
            runs[i].push((m.rps(), cpu));
        }
    }
    Ok(runs)
}

/// Envoy CPU µs per request of the floor.
pub fn floor_cpu(rows: &[ProbeRow]) -> f64 {
    rows.iter()
        .find(|r| r.label == FLOOR)
        .map_or(0.0, |r| r.cpu_us_per_req)
}

/// req/s of the floor.
pub fn floor_rps(rows: &[ProbeRow]) -> f64 {
    rows.iter()
        .find(|r| r.label == FLOOR)
        .map_or(0.0, |r| r.rps)
}

/// CPU µs per request above the floor for the row labelled `label`.
pub fn delta(rows: &[ProbeRow], label: &str) -> Option<f64> {
    let row = rows.iter().find(|r| r.label == label)?;
    Some(row.cpu_us_per_req - floor_cpu(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, cpu: f64) -> ProbeRow {
        ProbeRow {
            label: label.into(),
            rps: 1000.0 / cpu,
            cpu_us_per_req: cpu,
        }
    }

    #[test]
    fn deltas_are_above_the_floor() {
        let rows = [row(FLOOR, 21.0), row("x", 25.0)];
        assert_eq!(floor_cpu(&rows), 21.0);
        assert_eq!(floor_rps(&rows), 1000.0 / 21.0);
        assert_eq!(delta(&rows, "x"), Some(4.0));
        assert_eq!(delta(&rows, "missing"), None);
    }

    #[test]
    fn every_probe_parses() {
        for (label, ops) in PROBES {
            let parsed = empty_filter::ops::parse(ops).unwrap();
            assert!(!parsed.is_empty(), "{label}");
        }
    }
}
