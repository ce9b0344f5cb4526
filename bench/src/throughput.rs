//! The side-by-side load runs: every variant on both routes, interleaved
//! (round 1: A B C …, round 2: A B C …), Envoy on its own core.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::envoy_config::Chain;
use crate::gateway::{Common, Gateway};
use crate::load::{self, Load, Tool};
use crate::procfs;
use crate::summary::{Route, Sample, Variant};

pub struct Setup<'a> {
    pub tool: &'a Tool,
    pub common: &'a Common,
    pub work_dir: PathBuf,
    pub filter_config: serde_json::Value,
    pub connections: u32,
    pub duration: Duration,
    pub warmup: Duration,
    /// Rounds per generation of Envoys.
    pub rounds: u32,
    /// Times every Envoy is started afresh.
    pub generations: u32,
    pub envoy_core: usize,
    pub load_core: usize,
    /// `Bearer <active mcp:* token>` and `Bearer <bad checksum token>`.
    pub valid: String,
    pub invalid: String,
    /// `Bearer <active mcp:* token with a rate limit it never reaches>`.
    pub limited: String,
}

/// Resident memory of one Envoy, idle after start and after the runs.
#[derive(Debug, Clone)]
pub struct Memory {
    pub label: &'static str,
    pub idle_kib: u64,
    pub loaded_kib: u64,
}

pub struct Outcome {
    pub samples: Vec<Sample>,
    /// Runs thrown away because Envoy was starved of its core.
    pub retried: u32,
    pub memory: Vec<Memory>,
    /// `mcp_auth.*` counters of the filter's Envoy after all runs.
    pub filter_stats: BTreeMap<String, u64>,
}

/// The Envoys: one per filter chain (cache hit and negative share one).
const CHAINS: [(&str, usize); 4] = [
    ("no wasm", 0),
    ("empty wasm", 1),
    ("mcp_auth", 2),
    ("ext_authz", 3),
];

fn envoy_of(v: Variant) -> usize {
    match v {
        Variant::NoWasm => 0,
        Variant::EmptyWasm => 1,
        Variant::CacheHit | Variant::CacheHitLimited | Variant::Negative => 2,
        Variant::ExtAuthz => 3,
    }
}

pub async fn run(s: &Setup<'_>) -> anyhow::Result<Outcome> {
    let mut samples = Vec::new();
    let mut retried = 0;
    let mut memory = Vec::new();
    let mut filter_stats = BTreeMap::new();
    // Envoys of the same configuration differ by a few µs per request from
    // one process to the next (the same chain measured in two Envoys at
    // once: 22.9 vs 25.5 µs/req): each generation starts them afresh, so
    // the medians span processes as well as rounds.
    for generation in 0..s.generations.max(1) {
        let g = run_generation(s, generation, &mut samples, &mut retried).await?;
        if generation == 0 {
            memory = g.0;
        }
        for (k, v) in g.1 {
            *filter_stats.entry(k).or_insert(0) += v;
        }
    }
    Ok(Outcome {
        samples,
        retried,
        memory,
        filter_stats,
    })
}

/// One set of fresh Envoys, warmed up, then `s.rounds` rounds; returns
/// their memory and the filter's counters.
async fn run_generation(
    s: &Setup<'_>,
    generation: u32,
    samples: &mut Vec<Sample>,
    retried: &mut u32,
) -> anyhow::Result<(Vec<Memory>, BTreeMap<String, u64>)> {
    let chains = [
        Chain::None,
        Chain::Empty {
            probe_ops: String::new(),
        },
        Chain::McpAuth {
            config: s.filter_config.clone(),
        },
        Chain::ExtAuthz,
    ];
    eprintln!("bench: starting the Envoys, generation {}", generation + 1);
    let dirs = CHAINS.iter().map(|(label, _)| {
        s.work_dir
            .join(format!("envoy-{}-{generation}", label.replace(' ', "-")))
    });
    let envoys =
        Gateway::start_all(s.common, chains.iter().zip(dirs), &s.envoy_core.to_string()).await?;
    // Let start-up work (V8 compilation, first stats flush) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut idle = Vec::new();
    for e in &envoys {
        idle.push(e.rss_kib().unwrap_or(0));
    }

    let first_round = generation * s.rounds + 1;
    let result = measure(s, &envoys, first_round, samples).await;

    let mut memory = Vec::new();
    for (i, e) in envoys.iter().enumerate() {
        memory.push(Memory {
            label: CHAINS[i].0,
            idle_kib: idle[i],
            loaded_kib: e.rss_kib().unwrap_or(0),
        });
    }
    let filter_stats = envoys[2].stats("mcp_auth").await.unwrap_or_default();
    for e in envoys {
        e.stop().await;
    }
    *retried += result?;
    Ok((memory, filter_stats))
}

async fn measure(
    s: &Setup<'_>,
    envoys: &[Gateway],
    first_round: u32,
    samples: &mut Vec<Sample>,
) -> anyhow::Result<u32> {
    let auth = |v: Variant| match v {
        Variant::Negative => s.invalid.as_str(),
        Variant::CacheHitLimited => s.limited.as_str(),
        _ => s.valid.as_str(),
    };
    if !s.warmup.is_zero() {
        eprintln!("bench: warming up every variant for {:?}", s.warmup);
        for route in Route::ALL {
            for v in Variant::ALL {
                let url = envoys[envoy_of(v)].url(route.path());
                let warm = Load {
                    url: &url,
                    authorization: Some(auth(v)),
                    connections: s.connections,
                    duration: s.warmup,
                    core: s.load_core,
                };
                load::run(s.tool, &warm).await?;
            }
        }
    }
    let mut retried = 0;
    for round in first_round..first_round + s.rounds {
        for route in Route::ALL {
            for v in Variant::ALL {
                let envoy = &envoys[envoy_of(v)];
                let url = envoy.url(route.path());
                let run = Load {
                    url: &url,
                    authorization: Some(auth(v)),
                    connections: s.connections,
                    duration: s.duration,
                    core: s.load_core,
                };
                let (t, again) = timed_settled(s.tool, envoy, &run, s.load_core).await?;
                retried += again;
                let sample = Sample {
                    variant: v,
                    route,
                    round,
                    measured: t.measured,
                    envoy_cpu_us_per_req: t.envoy_cpu_us_per_req,
                    envoy_cpu_share: t.envoy_cpu_share,
                    load_core_busy: t.load_core_busy,
                };
                eprintln!(
                    "bench: round {round} {:<32} {:<22} {:>7.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  \
                     Envoy {:>5.1} µs/req, {:>3.0} % of a core",
                    v.label(),
                    route.label(),
                    sample.measured.rps(),
                    sample.measured.p50_us,
                    sample.measured.p99_us,
                    sample.envoy_cpu_us_per_req,
                    sample.envoy_cpu_share * 100.0
                );
                samples.push(sample);
            }
        }
    }
    Ok(retried)
}

/// A load run with Envoy's CPU time and the load core's busy time around it.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub measured: load::Measured,
    pub envoy_cpu_us_per_req: f64,
    pub envoy_cpu_share: f64,
    pub load_core_busy: f64,
}

impl Timed {
    /// Envoy got less than 90 % of its core although the load side had room:
    /// something else ran on Envoy's core during the run.
    pub fn starved(&self) -> bool {
        self.envoy_cpu_share < STARVED && self.load_core_busy < STARVED
    }
}

const STARVED: f64 = 0.90;
/// Extra attempts of a starved run before its result is kept anyway.
pub const RETRIES: u32 = 2;

pub async fn timed(
    tool: &Tool,
    envoy: &Gateway,
    run: &Load<'_>,
    load_core: usize,
) -> anyhow::Result<Timed> {
    let tck = procfs::ticks_per_second();
    let (t0, l0, start) = (
        envoy.cpu_ticks()?,
        procfs::core_times(load_core)?,
        std::time::Instant::now(),
    );
    let measured = load::run(tool, run).await?;
    let (t1, l1, wall) = (
        envoy.cpu_ticks()?,
        procfs::core_times(load_core)?,
        start.elapsed().as_secs_f64(),
    );
    let cpu_s = t1.saturating_sub(t0) as f64 / tck;
    Ok(Timed {
        measured,
        envoy_cpu_us_per_req: cpu_s * 1e6 / measured.requests.max(1) as f64,
        envoy_cpu_share: if wall > 0.0 { cpu_s / wall } else { 0.0 },
        load_core_busy: l1.busy_since(&l0),
    })
}

/// [`timed`], run again (at most [`RETRIES`] times) while Envoy was starved;
/// also returns how many attempts were thrown away.
pub async fn timed_settled(
    tool: &Tool,
    envoy: &Gateway,
    run: &Load<'_>,
    load_core: usize,
) -> anyhow::Result<(Timed, u32)> {
    let mut retried = 0;
    loop {
        let t = timed(tool, envoy, run, load_core).await?;
        if !t.starved() || retried == RETRIES {
            return Ok((t, retried));
        }
        retried += 1;
        eprintln!(
            "bench: Envoy had only {:.0} % of its core; running again",
            t.envoy_cpu_share * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(share: f64, load: f64) -> Timed {
        Timed {
            measured: load::Measured {
                requests: 1,
                seconds: 1.0,
                p50_us: 0.0,
                p99_us: 0.0,
                http_errors: 0,
                socket_errors: 0,
            },
            envoy_cpu_us_per_req: 1.0,
            envoy_cpu_share: share,
            load_core_busy: load,
        }
    }

    #[test]
    fn starved_only_when_the_load_side_had_room() {
        assert!(timed(0.7, 0.4).starved());
        assert!(!timed(0.97, 0.4).starved());
        // The load side was the limit (e.g. ext_authz waiting on the token API).
        assert!(!timed(0.4, 0.99).starved());
    }
}
