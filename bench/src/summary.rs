//! Samples of the load runs, folded into one row per variant and route, and
//! the ratios between rows.

use crate::load::Measured;

/// What sits in front of Envoy's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    NoWasm,
    EmptyWasm,
    CacheHit,
    /// A cache hit for a token with a rate limit (never reached): the
    /// limiter's shared-data read and compare-and-swap on every request.
    CacheHitLimited,
    Negative,
    ExtAuthz,
}

impl Variant {
    pub const ALL: [Variant; 6] = [
        Variant::NoWasm,
        Variant::EmptyWasm,
        Variant::CacheHit,
        Variant::CacheHitLimited,
        Variant::Negative,
        Variant::ExtAuthz,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Variant::NoWasm => "Envoy, no wasm (ceiling)",
            Variant::EmptyWasm => "empty proxy-wasm filter (floor)",
            Variant::CacheHit => "mcp_auth, cache hit",
            Variant::CacheHitLimited => "mcp_auth, cache hit, rate-limited token",
            Variant::Negative => "mcp_auth, bad checksum → 401",
            Variant::ExtAuthz => "ext_authz → introspect",
        }
    }

    /// Whether every response should be a 4xx (else every one a 2xx).
    pub fn expects_rejection(self) -> bool {
        self == Variant::Negative
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    Direct,
    Proxy,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::Direct, Route::Proxy];

    pub fn path(self) -> &'static str {
        match self {
            Route::Direct => "/direct",
            Route::Proxy => "/proxy",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Route::Direct => "direct response",
            Route::Proxy => "proxied to an upstream",
        }
    }
}

/// One bounded run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub variant: Variant,
    pub route: Route,
    /// The round the run belongs to: runs of one round ran back to back.
    pub round: u32,
    pub measured: Measured,
    /// Envoy's CPU time (all threads) over the run, per request.
    pub envoy_cpu_us_per_req: f64,
    /// Envoy's CPU time over the run's wall time (1.0: a whole core).
    pub envoy_cpu_share: f64,
    /// Busy share of the load tool's core, 0–1 (all processes on it).
    pub load_core_busy: f64,
}

/// All runs of one variant on one route.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub variant: Variant,
    pub route: Route,
    pub runs: usize,
    pub rps: f64,
    pub rps_min: f64,
    pub rps_max: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us_per_req: f64,
    pub envoy_cpu_share: f64,
    pub load_core_busy: f64,
    pub requests: u64,
    pub http_errors: u64,
    pub socket_errors: u64,
}

impl Row {
    /// Empty when every response had the expected class, else what was off.
    pub fn problem(&self) -> Option<String> {
        let wrong = if self.variant.expects_rejection() {
            self.requests - self.http_errors.min(self.requests)
        } else {
            self.http_errors
        };
        let mut out = Vec::new();
        if wrong > 0 {
            let want = if self.variant.expects_rejection() {
                "4xx"
            } else {
                "2xx"
            };
            out.push(format!("{wrong} responses were not {want}"));
        }
        if self.socket_errors > 0 {
            out.push(format!("{} socket errors/timeouts", self.socket_errors));
        }
        (!out.is_empty()).then(|| out.join(", "))
    }
}

fn med(values: impl Iterator<Item = f64>) -> f64 {
    median(&values.collect::<Vec<_>>()).unwrap_or(0.0)
}

/// One row per (variant, route) present in `samples`, route then variant order;
/// each figure is the median over the runs (robust to one disturbed run).
pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut out = Vec::new();
    for route in Route::ALL {
        for variant in Variant::ALL {
            let runs: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.variant == variant && s.route == route)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let rps: Vec<f64> = runs.iter().map(|s| s.measured.rps()).collect();
            out.push(Row {
                variant,
                route,
                runs: runs.len(),
                rps: med(rps.iter().copied()),
                rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
                rps_max: rps.iter().copied().fold(0.0, f64::max),
                p50_us: med(runs.iter().map(|s| s.measured.p50_us)),
                p99_us: med(runs.iter().map(|s| s.measured.p99_us)),
                cpu_us_per_req: med(runs.iter().map(|s| s.envoy_cpu_us_per_req)),
                envoy_cpu_share: med(runs.iter().map(|s| s.envoy_cpu_share)),
                load_core_busy: med(runs.iter().map(|s| s.load_core_busy)),
                requests: runs.iter().map(|s| s.measured.requests).sum(),
                http_errors: runs.iter().map(|s| s.measured.http_errors).sum(),
                socket_errors: runs.iter().map(|s| s.measured.socket_errors).sum(),
            });
        }
    }
    out
}

#[cfg(test)]
pub fn find(rows: &[Row], variant: Variant, route: Route) -> Option<&Row> {
    rows.iter()
        .find(|r| r.variant == variant && r.route == route)
}

/// A ratio of two variants over the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// Median of the per-round ratios.
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

/// req/s of `variant` over req/s of `base` on the same route, taken within
/// each round (the two ran back to back, under the same conditions), then
/// the median over rounds: slow drifts of the machine cancel out.
pub fn ratio(samples: &[Sample], variant: Variant, base: Variant, route: Route) -> Option<Ratio> {
    let rps = |v: Variant, round: u32| {
        samples
            .iter()
            .find(|s| s.variant == v && s.route == route && s.round == round)
            .map(|s| s.measured.rps())
    };
    let per_round: Vec<f64> = samples
        .iter()
        .filter(|s| s.variant == variant && s.route == route)
        .filter_map(|s| {
            let b = rps(base, s.round)?;
            (b > 0.0).then(|| s.measured.rps() / b)
        })
        .collect();
    Some(Ratio {
        median: median(&per_round)?,
        min: per_round.iter().copied().fold(f64::INFINITY, f64::min),
        max: per_round.iter().copied().fold(0.0, f64::max),
        rounds: per_round.len(),
    })
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(variant: Variant, route: Route, round: u32, requests: u64, errors: u64) -> Sample {
        Sample {
            variant,
            route,
            round,
            measured: Measured {
                requests,
                seconds: 10.0,
                p50_us: 100.0 * f64::from(round),
                p99_us: 1000.0,
                http_errors: errors,
                socket_errors: 0,
            },
            envoy_cpu_us_per_req: 20.0,
            envoy_cpu_share: 1.0,
            load_core_busy: 0.5,
        }
    }

    #[test]
    fn rounds_fold_into_medians_and_ranges() {
        let s = [
            sample(Variant::NoWasm, Route::Direct, 1, 100_000, 0),
            sample(Variant::NoWasm, Route::Direct, 2, 120_000, 0),
            sample(Variant::NoWasm, Route::Direct, 3, 50_000, 0),
            sample(Variant::EmptyWasm, Route::Direct, 1, 80_000, 0),
        ];
        let r = rows(&s);
        assert_eq!(r.len(), 2);
        let nw = find(&r, Variant::NoWasm, Route::Direct).unwrap();
        assert_eq!(
            (nw.runs, nw.rps, nw.rps_min, nw.rps_max),
            (3, 10_000.0, 5_000.0, 12_000.0)
        );
        assert_eq!(nw.p50_us, 200.0);
        assert_eq!(nw.requests, 270_000);
        assert_eq!(
            ratio(&s, Variant::CacheHit, Variant::NoWasm, Route::Direct),
            None
        );
        assert_eq!(
            ratio(&s, Variant::NoWasm, Variant::NoWasm, Route::Proxy),
            None
        );
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        // The machine slows down by half in round 2: each round's ratio
        // stays 0.8, the ratio of the medians would not.
        let s = [
            sample(Variant::EmptyWasm, Route::Direct, 1, 100_000, 0),
            sample(Variant::CacheHit, Route::Direct, 1, 80_000, 0),
            sample(Variant::EmptyWasm, Route::Direct, 2, 50_000, 0),
            sample(Variant::CacheHit, Route::Direct, 2, 40_000, 0),
            sample(Variant::EmptyWasm, Route::Direct, 3, 100_000, 0),
            sample(Variant::CacheHit, Route::Direct, 3, 90_000, 0),
            // A round without its base pairs with nothing.
            sample(Variant::CacheHit, Route::Direct, 4, 10_000, 0),
        ];
        let r = ratio(&s, Variant::CacheHit, Variant::EmptyWasm, Route::Direct).unwrap();
        assert_eq!(r.rounds, 3);
        assert!((r.median - 0.8).abs() < 1e-12, "{r:?}");
        assert!(
            (r.min - 0.8).abs() < 1e-12 && (r.max - 0.9).abs() < 1e-12,
            "{r:?}"
        );
    }

    #[test]
    fn problems_depend_on_the_expected_class() {
        let r = rows(&[
            sample(Variant::CacheHit, Route::Direct, 1, 100, 0),
            sample(Variant::Negative, Route::Direct, 1, 100, 100),
            sample(Variant::ExtAuthz, Route::Direct, 1, 100, 7),
            sample(Variant::Negative, Route::Proxy, 1, 100, 90),
        ]);
        let p = |v, route| find(&r, v, route).unwrap().problem();
        assert_eq!(p(Variant::CacheHit, Route::Direct), None);
        assert_eq!(p(Variant::Negative, Route::Direct), None);
        assert_eq!(
            p(Variant::ExtAuthz, Route::Direct).as_deref(),
            Some("7 responses were not 2xx")
        );
        assert_eq!(
            p(Variant::Negative, Route::Proxy).as_deref(),
            Some("10 responses were not 4xx")
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
