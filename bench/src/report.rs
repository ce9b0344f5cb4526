//! `bench/RESULTS.md`: the tables and the machine they were measured on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::callouts::Burst;
use crate::flood::Flood;
use crate::load::Measured;
use crate::probe::{self, ProbeRow};
use crate::procfs::Machine;
use crate::summary::{self, Ratio, Route, Row, Sample, Variant};
use crate::throughput::Memory;

/// One introspect run: the load tool's figures and the token API's CPU.
#[derive(Debug, Clone)]
pub struct Introspect {
    pub measured: Measured,
    pub cpu_us_per_req: f64,
}

/// Shortest introspect run, seconds: the token API's throughput wanders more
/// than Envoy's over a few seconds.
pub const INTROSPECT_MIN_S: u64 = 5;

/// Everything one `just bench` run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub loadavg_end: String,
    pub envoy_version: String,
    pub tool: String,
    pub settings: Settings,
    pub rows: Vec<Row>,
    /// The runs behind `rows`, for ratios taken within each round.
    pub samples: Vec<Sample>,
    pub memory: Vec<Memory>,
    pub filter_stats: BTreeMap<String, u64>,
    pub introspect: Option<Introspect>,
    pub introspect_postgres: Option<Introspect>,
    pub revocation_ms: Vec<f64>,
    pub callouts: Vec<(u32, Vec<Burst>)>,
    pub flood: Option<Flood>,
    pub filter_wasm_bytes: u64,
    pub empty_wasm_bytes: u64,
    pub probe: Option<Vec<ProbeRow>>,
    /// The floor, the cache hit's host calls and the filter on the proxied route.
    pub probe_proxied: Option<Vec<ProbeRow>>,
    /// `tools/list` for a restricted token vs an `mcp:*` one.
    pub lists: Option<crate::lists::Outcome>,
    /// Load runs (main table; probes) repeated because Envoy was starved of its core.
    pub retried: u32,
    pub probe_retried: u32,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub duration_s: u64,
    pub rounds: u32,
    pub generations: u32,
    pub connections: u32,
    pub warmup_s: u64,
    pub envoy_core: usize,
    pub load_core: usize,
    pub introspect_connections: u32,
    pub poll_ms: u64,
    pub burst: usize,
    pub probe_duration_s: u64,
    pub probe_rounds: u32,
}

fn kib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / 1024.0)
}

fn ratio(x: Option<Ratio>) -> String {
    x.map_or("–".into(), |r| format!("{:.2}×", r.median))
}

/// A target's ratio with the spread of its rounds.
fn spread(r: &Ratio) -> String {
    format!(
        "{:.2}× (rounds {:.2}–{:.2}, {} of them)",
        r.median, r.min, r.max, r.rounds
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

impl Report {
    pub fn hit_over_empty(&self, route: Route) -> Option<f64> {
        self.ratio(Variant::CacheHit, Variant::EmptyWasm, route)
            .map(|r| r.median)
    }

    fn ratio(&self, variant: Variant, base: Variant, route: Route) -> Option<Ratio> {
        summary::ratio(&self.samples, variant, base, route)
    }

    /// What bounds introspect on each store, from the same run's figures.
    fn render_introspect_limits(&self, o: &mut String) {
        let busy = |i: &Introspect| i.measured.rps() * i.cpu_us_per_req / 1e6;
        let _ = writeln!(o, "What limits each:\n");
        if let Some(i) = &self.introspect {
            let _ = writeln!(
                o,
                "- SQLite: the token API's own CPU. It kept {:.0} % of its core busy at \
                 {:.1} µs per request (the component's routing, the token hash, one indexed \
                 read in the same process, the JSON answer). Target ≥ 5,000 req/s: {}.",
                busy(i) * 100.0,
                i.cpu_us_per_req,
                if i.measured.rps() >= 5000.0 {
                    "met"
                } else {
                    "**not met**"
                }
            );
        }
        if let (Some(pg), Some(lite)) = (&self.introspect_postgres, &self.introspect) {
            let _ = writeln!(
                o,
                "- PostgreSQL: the token API's CPU too ({:.0} % of its core busy), \
                 {:+.1} µs per request over SQLite for the wire protocol of one query on a \
                 pooled connection; the server's own time runs on the load core and adds \
                 a loopback round trip to each request's latency (p50 {:+.0} µs), not to \
                 the token API's CPU.",
                busy(pg) * 100.0,
                pg.cpu_us_per_req - lite.cpu_us_per_req,
                pg.measured.p50_us - lite.measured.p50_us,
            );
        }
        let _ = writeln!(o);
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let s = &self.settings;
        let _ = writeln!(o, "# Benchmark results\n");
        let _ = writeln!(
            o,
            "Written by `just bench` (bench/, envoy/bench/); every figure below comes from \
             one run. Ratios are req/s over req/s of the same route. Do not compare the \
             absolute numbers across machines.\n"
        );
        let m = &self.machine;
        let _ = writeln!(o, "| | |\n|---|---|");
        let _ = writeln!(o, "| date (UTC) | {} |", self.date);
        let _ = writeln!(o, "| nproc | {} |", m.cpus);
        let _ = writeln!(o, "| CPU model | {} |", m.cpu_model);
        let _ = writeln!(o, "| kernel | {} |", m.kernel);
        let _ = writeln!(o, "| Envoy | {} |", self.envoy_version);
        let _ = writeln!(o, "| load tool | {} |", self.tool);
        let _ = writeln!(
            o,
            "| load average (1/5/15 min) | {} at start, {} at the end |",
            m.loadavg, self.loadavg_end
        );
        let _ = writeln!(o, "| duration of the whole run | {:.0} s |", self.elapsed_s);
        let _ = writeln!(
            o,
            "\nEnvoy runs with `--concurrency 1`, all its threads pinned to core {}; the \
             load tool (1 thread, {} keep-alive connections), the upstream, the token API \
             and this driver share core {}. Loopback only. The variants take turns (A B C D \
             E F per route, then again), {} rounds in each of {} generations of Envoys: every \
             Envoy is started afresh for each generation and warmed up for {} s per variant, \
             since two Envoys of the same configuration can differ by a few µs per request \
             for their whole life. Each run lasts {} s. The table shows the median over all \
             rounds with the range of req/s; a ratio is taken within each round (the two runs \
             back to back) and its median over the rounds shown.\n",
            s.envoy_core,
            s.connections,
            s.load_core,
            s.rounds,
            s.generations,
            s.warmup_s,
            s.duration_s
        );
        self.render_throughput(&mut o);
        self.render_targets(&mut o);
        self.render_other(&mut o);
        if let Some(l) = &self.lists {
            l.render(&mut o);
        }
        if let Some(p) = &self.probe {
            render_probe(&mut o, p, s, self.probe_retried);
            if let Some(proxied) = &self.probe_proxied {
                render_proxied_probe(&mut o, p, proxied);
            }
        }
        o
    }

    fn render_throughput(&self, o: &mut String) {
        let _ = writeln!(o, "## Throughput and latency\n");
        let _ = writeln!(
            o,
            "| route | variant | req/s | req/s range | p50 | p99 | Envoy CPU/req | Envoy CPU | load core busy | × no wasm | × empty wasm |"
        );
        let _ = writeln!(o, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for r in &self.rows {
            let _ = writeln!(
                o,
                "| {} | {}{} | {:.0} | {:.0}–{:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {:.0} % | {:.0} % | {} | {} |",
                r.route.label(),
                r.variant.label(),
                r.problem().map_or(String::new(), |p| format!(" ⚠ {p}")),
                r.rps,
                r.rps_min,
                r.rps_max,
                r.p50_us,
                r.p99_us,
                r.cpu_us_per_req,
                r.envoy_cpu_share * 100.0,
                r.load_core_busy * 100.0,
                ratio(self.ratio(r.variant, Variant::NoWasm, r.route)),
                ratio(self.ratio(r.variant, Variant::EmptyWasm, r.route)),
            );
        }
        let _ = writeln!(
            o,
            "\nEach figure is the median over the rounds. *Envoy CPU/req*: Envoy's user+system \
             CPU time (all threads, from /proc) over the requests served, less sensitive than \
             req/s to other work on the machine. *Envoy CPU*: that time over the wall time; \
             below ~95 % Envoy did not have its core to itself (other processes on it) or was \
             not the bottleneck (then *load core busy* is near 100 %). A run in which Envoy \
             got under 90 % of its core while the load core had room is run again (at most \
             twice); {} runs were repeated.\n",
            self.retried
        );
        let disturbed = disturbed(&self.rows, &self.samples);
        if !disturbed.is_empty() {
            let _ = writeln!(
                o,
                "**Disturbed run**: {}. Other work shared the machine; rerun `just bench` on an \
                 idle machine before drawing conclusions from these ratios.\n",
                disturbed.join("; ")
            );
        }
    }

    fn render_targets(&self, o: &mut String) {
        let _ = writeln!(o, "## Against the targets\n");
        let _ = writeln!(o, "| target | measured | |\n|---|---|---|");
        for route in Route::ALL {
            if let Some(r) = self.ratio(Variant::CacheHit, Variant::EmptyWasm, route) {
                let _ = writeln!(
                    o,
                    "| cache hit ≥ 0.90 × empty wasm ({}) | {} | {} |",
                    route.label(),
                    spread(&r),
                    verdict(r.median >= 0.90)
                );
            }
        }
        for route in Route::ALL {
            if let Some(r) = self.ratio(Variant::CacheHitLimited, Variant::CacheHit, route) {
                let _ = writeln!(
                    o,
                    "| cache hit with a rate limit ≥ 0.90 × without ({}) | {} | {} |",
                    route.label(),
                    spread(&r),
                    verdict(r.median >= 0.90)
                );
            }
        }
        for route in Route::ALL {
            if let Some(r) = self.ratio(Variant::CacheHit, Variant::ExtAuthz, route) {
                let _ = writeln!(
                    o,
                    "| cache hit ≥ 2 × ext_authz ({}) | {} | {} |",
                    route.label(),
                    spread(&r),
                    verdict(r.median >= 2.0)
                );
            }
        }
        if let Some(med) = summary::median(&self.revocation_ms) {
            let max = self.revocation_ms.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                o,
                "| revocation ≤ 1 s | median {med:.0} ms, max {max:.0} ms ({} trials) | {} |",
                self.revocation_ms.len(),
                verdict(med <= 1000.0)
            );
        }
        let _ = writeln!(o);
    }

    fn render_other(&self, o: &mut String) {
        let s = &self.settings;
        let _ = writeln!(o, "## ext_authz, honestly\n");
        let _ = writeln!(
            o,
            "The ext_authz variant (`envoy/bench/filters/ext-authz.yaml`) calls \
             `GET /api/v1/mcptokens/introspect` (`path_override`) on every request with the \
             client's `Authorization`, on the same token API. Introspect answers 200 to \
             inactive tokens too (`{{\"active\": false}}`) and ext_authz cannot read JSON, so \
             this set-up would let revoked and unknown tokens through, and it cannot set the \
             tenant routing headers; it also forwards the client's method, so an MCP `POST` \
             would get introspect's 405 (Envoy 1.40 has no `method_override`). Matching the \
             filter would need a wrapper service answering 200 + `x-mcp-*` headers or 401, \
             one more hop per request. The row above is therefore a lower bound on its cost.\n"
        );
        if self.introspect.is_some() || self.introspect_postgres.is_some() {
            let _ = writeln!(o, "## Token API introspect\n");
            let _ = writeln!(
                o,
                "`token_api.wasm` on the harness's Spin-compatible host (profile \
                 `host-release`, instances reused with Spin's defaults), pinned alone to core \
                 {}, load tool on core {} with {} \
                 connections, active token, {} s after a warm-up. *CPU/req*: the token API \
                 process's user+system time over the requests it answered; when it has its \
                 core to itself, req/s ≈ 10⁶ / CPU/req. PostgreSQL runs on the load core, \
                 on loopback.\n",
                s.envoy_core,
                s.load_core,
                s.introspect_connections,
                s.duration_s.max(INTROSPECT_MIN_S)
            );
            let _ = writeln!(o, "| store | req/s | p50 | p99 | CPU/req | non-200 |");
            let _ = writeln!(o, "|---|--:|--:|--:|--:|--:|");
            for (name, i) in [
                ("SQLite (Spin `default` database, WAL)", &self.introspect),
                (
                    "PostgreSQL (`spin:postgres`, pooled connections)",
                    &self.introspect_postgres,
                ),
            ] {
                if let Some(i) = i {
                    let m = &i.measured;
                    let _ = writeln!(
                        o,
                        "| {name} | **{:.0}** | {:.0} µs | {:.0} µs | {:.1} µs | {} |",
                        m.rps(),
                        m.p50_us,
                        m.p99_us,
                        i.cpu_us_per_req,
                        m.http_errors + m.socket_errors
                    );
                }
            }
            let _ = writeln!(o);
            self.render_introspect_limits(o);
        }
        if !self.revocation_ms.is_empty() {
            let list: Vec<String> = self
                .revocation_ms
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect();
            let _ = writeln!(o, "## Revocation\n");
            let _ = writeln!(
                o,
                "Filter `cache.ttl_s` 300 (token API `default_cache_ttl_s` 300), \
                 `revocation_poll_ms` {}; token cached, revoke at a random point of the poll \
                 period, then a request every 5 ms. Time from the revoke call to the first \
                 401, ms: {} — median **{:.0} ms**.\n",
                s.poll_ms,
                list.join(", "),
                summary::median(&self.revocation_ms).unwrap_or(0.0)
            );
        }
        if !self.callouts.is_empty() {
            let _ = writeln!(o, "## Callouts for one uncached token\n");
            let _ = writeln!(
                o,
                "{} connections opened first, then one request with the same fresh token \
                 written on each; counters from Envoy's `/stats`.\n",
                s.burst
            );
            let _ = writeln!(
                o,
                "| Envoy workers | trial | 200s | `mcp_auth.callouts` | coalesced waits | shared-cache hits | connections per worker |"
            );
            let _ = writeln!(o, "|--:|--:|--:|--:|--:|--:|---|");
            for (workers, bursts) in &self.callouts {
                for (i, b) in bursts.iter().enumerate() {
                    let per: Vec<String> = b.per_worker.iter().map(u64::to_string).collect();
                    let _ = writeln!(
                        o,
                        "| {workers} | {} | {}/{} | {} | {} | {} | {} |",
                        i + 1,
                        b.ok,
                        b.requests,
                        b.callouts,
                        b.coalesced,
                        b.shared_hits,
                        per.join(" / ")
                    );
                }
            }
            let _ = writeln!(o);
        }
        if let Some(f) = &self.flood {
            let _ = writeln!(o, "## A flood of made-up tokens\n");
            let _ = writeln!(
                o,
                "{} well-formed tokens never issued (each worth a callout), over {} keep-alive \
                 connections, then round again until a revocation was probed; meanwhile two \
                 cached tokens send a request every 2 ms and one cached token is revoked. \
                 Envoy {} worker(s), `token_api.max_inflight` {}, `revocation_poll_ms` {}.\n",
                f.made_up, f.connections, f.workers, f.max_inflight, s.poll_ms
            );
            let _ = writeln!(o, "| | |\n|---|--:|");
            let rows = [
                (
                    "flood requests",
                    format!(
                        "{} in {:.1} s ({:.0}/s)",
                        f.requests,
                        f.seconds,
                        f.requests as f64 / f.seconds.max(1e-9)
                    ),
                ),
                (
                    "answered 401 (callout made) / 503 at once / other",
                    format!("{} / {} / {}", f.unauthorized, f.busy, f.other),
                ),
                (
                    "introspection callouts",
                    format!(
                        "{} ({:.0}/s)",
                        f.callouts,
                        f.callouts as f64 / f.seconds.max(1e-9)
                    ),
                ),
                (
                    "cached tokens: requests that succeeded",
                    format!(
                        "{} of {} ({:.2} %), p99 {:.1} ms",
                        f.live_ok,
                        f.live_ok + f.live_failed,
                        100.0 * f.live_ok as f64 / ((f.live_ok + f.live_failed).max(1)) as f64,
                        f.live_p99_ms
                    ),
                ),
                (
                    "cached tokens: what the failed requests got",
                    if f.live_failures.is_empty() {
                        "–".into()
                    } else {
                        f.live_failures.join(", ")
                    },
                ),
                (
                    "fresh active decisions evicted",
                    f.evicted_active.to_string(),
                ),
                (
                    "revoked token refused after the revoke call returned",
                    f.revocation_ms.map_or("never (5 s)".into(), |ms| {
                        format!("{ms:.0} ms (the call took {:.0} ms)", f.revoke_call_ms)
                    }),
                ),
            ];
            for (k, v) in rows {
                let _ = writeln!(o, "| {k} | {v} |");
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "## Size and memory\n");
        let _ = writeln!(
            o,
            "`filter.wasm` (release, wasm32-wasip1): **{} bytes**; the empty filter, same \
             profile: {} bytes.\n",
            self.filter_wasm_bytes, self.empty_wasm_bytes
        );
        if !self.memory.is_empty() {
            let _ = writeln!(
                o,
                "| Envoy (1 worker) | RSS after start | RSS after the runs |\n|---|--:|--:|"
            );
            for m in &self.memory {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} |",
                    m.label,
                    kib(m.idle_kib),
                    kib(m.loaded_kib)
                );
            }
            let _ = writeln!(o);
        }
        if !self.filter_stats.is_empty() {
            let keys = [
                "allowed",
                "denied.malformed",
                "cache.hits",
                "cache.misses",
                "callouts",
                "feed.polls",
            ];
            let shown: Vec<String> = keys
                .iter()
                .map(|k| {
                    let v = self
                        .filter_stats
                        .get(&format!("mcp_auth.{k}"))
                        .copied()
                        .unwrap_or(0);
                    format!("`{k}` {v}")
                })
                .collect();
            let _ = writeln!(
                o,
                "The filter's counters after the load runs: {}.\n",
                shown.join(", ")
            );
        }
    }
}

/// Signs that something else ran during the load runs: Envoy short of its
/// core while the load tool was not the limit, a wide req/s range of a
/// variant the targets use, or the ceiling below the floor. ext_authz is
/// bounded by the token API, not Envoy.
pub fn disturbed(rows: &[Row], samples: &[Sample]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.variant != Variant::ExtAuthz) {
        let name = format!("{} / {}", r.route.label(), r.variant.label());
        if r.envoy_cpu_share < 0.90 && r.load_core_busy < 0.90 {
            out.push(format!(
                "{name}: Envoy had {:.0} % of its core",
                r.envoy_cpu_share * 100.0
            ));
        }
        let in_targets = matches!(
            r.variant,
            Variant::NoWasm | Variant::EmptyWasm | Variant::CacheHit
        );
        if in_targets && r.rps > 0.0 && (r.rps_max - r.rps_min) / r.rps > 0.5 {
            out.push(format!(
                "{name}: req/s ranged {:.0}–{:.0}",
                r.rps_min, r.rps_max
            ));
        }
    }
    for route in Route::ALL {
        if summary::ratio(samples, Variant::NoWasm, Variant::EmptyWasm, route)
            .is_some_and(|x| x.median < 1.0)
        {
            out.push(format!(
                "{}: Envoy without wasm was slower than with the empty filter",
                route.label()
            ));
        }
    }
    out
}

fn render_probe(o: &mut String, rows: &[ProbeRow], s: &Settings, retried: u32) {
    let floor = probe::floor_cpu(rows);
    let floor_rps = probe::floor_rps(rows);
    let _ = writeln!(o, "## Where the cache hit's time goes\n");
    let _ = writeln!(
        o,
        "The empty filter turned probe (`bench/empty-filter`, configuration = list of host \
         calls) makes the cache-hit path's host calls and nothing else, each set in its own \
         Envoy (1 worker, same pinning), direct route, {} rounds of {} s in turn, each in \
         a freshly started set of Envoys, medians; cost = Envoy CPU per request above the \
         floor ({floor:.1} µs/req). Single-kind probes repeat their call 10 times per \
         request; *per call* is a tenth of the cost. Differences below ~1 µs/req are within \
         the noise of a run.\n",
        s.probe_rounds, s.probe_duration_s
    );
    if retried > 0 {
        let _ = writeln!(
            o,
            "{retried} probe runs were repeated: Envoy was starved of its core.\n"
        );
    }
    let _ = writeln!(
        o,
        "| probe | per request | req/s | × floor | Envoy CPU/req | above the floor | per call |"
    );
    let _ = writeln!(o, "|---|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        let above = r.cpu_us_per_req - floor;
        let times = if floor_rps > 0.0 {
            r.rps / floor_rps
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "| {} | {}× | {:.0} | {times:.2}× | {:.1} µs | {above:+.1} µs | {:+.2} µs |",
            r.label,
            r.calls,
            r.rps,
            r.cpu_us_per_req,
            above / f64::from(r.calls.max(1))
        );
    }
    let suggestions = probe::suggestions(rows);
    if !suggestions.is_empty() {
        let _ = writeln!(
            o,
            "\nWhat the numbers suggest for `filter/src/wasm/http.rs`:\n"
        );
        for s in suggestions {
            let _ = writeln!(o, "- {s}");
        }
    }
    let _ = writeln!(o);
}

/// The same host calls and the filter on both routes, side by side.
fn render_proxied_probe(o: &mut String, direct: &[ProbeRow], proxied: &[ProbeRow]) {
    let _ = writeln!(o, "### The same on the proxied route\n");
    let _ = writeln!(
        o,
        "The floor, the cache hit's 10 host calls alone and the filter again, forwarded to the \
         upstream (same rounds). Above the floor of its own route:\n"
    );
    let _ = writeln!(
        o,
        "| probe | direct: above the floor | proxied: above the floor | proxied − direct |"
    );
    let _ = writeln!(o, "|---|--:|--:|--:|");
    for label in [probe::ALL_CALLS, probe::FILTER] {
        if let (Some(d), Some(p)) = (probe::delta(direct, label), probe::delta(proxied, label)) {
            let _ = writeln!(
                o,
                "| {label} | {d:+.1} µs | {p:+.1} µs | {:+.1} µs |",
                p - d
            );
        }
    }
    let _ = writeln!(
        o,
        "\nFloors: {:.1} µs/req direct, {:.1} µs/req proxied. The header changes are the same \
         calls on both routes; on the proxied route the four written headers also travel \
         upstream, and the route chosen again after them is a cluster route.\n",
        probe::floor_cpu(direct),
        probe::floor_cpu(proxied)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(requests: u64) -> Measured {
        Measured {
            requests,
            seconds: 10.0,
            p50_us: 500.0,
            p99_us: 900.0,
            http_errors: 0,
            socket_errors: 0,
        }
    }

    #[test]
    fn renders_ratios_targets_and_sections() {
        let mut samples = Vec::new();
        for (v, n) in [
            (Variant::NoWasm, 200_000),
            (Variant::EmptyWasm, 150_000),
            (Variant::CacheHit, 120_000),
            (Variant::ExtAuthz, 30_000),
        ] {
            samples.push(Sample {
                variant: v,
                route: Route::Direct,
                round: 1,
                measured: measured(n),
                envoy_cpu_us_per_req: 10.0,
                envoy_cpu_share: 0.99,
                load_core_busy: 0.5,
            });
        }
        let report = Report {
            date: "2026-11-23T20:00:00Z".into(),
            rows: summary::rows(&samples),
            samples,
            revocation_ms: vec![400.0, 900.0, 1200.0],
            ..Report::default()
        };
        let text = report.render();
        assert!(text.contains("| 12000 |"), "{text}");
        assert!(text.contains("| 0.60× | 0.80× |"), "{text}");
        assert!(
            text.contains("cache hit ≥ 0.90 × empty wasm (direct response) | 0.80× (rounds 0.80–0.80, 1 of them) | **not met**"),
            "{text}"
        );
        assert!(text.contains("cache hit ≥ 2 × ext_authz (direct response) | 4.00× (rounds"));
        assert!(text.contains("median 900 ms, max 1200 ms (3 trials) | met"));
        assert!(!text.contains("Where the cache hit"));
        assert_eq!(report.hit_over_empty(Route::Direct), Some(0.8));
        assert_eq!(report.hit_over_empty(Route::Proxy), None);
    }

    #[test]
    fn disturbed_runs_are_named() {
        let sample = |variant, requests, share, load| Sample {
            variant,
            route: Route::Direct,
            round: 1,
            measured: measured(requests),
            envoy_cpu_us_per_req: 10.0,
            envoy_cpu_share: share,
            load_core_busy: load,
        };
        let calm_samples = [
            sample(Variant::NoWasm, 200_000, 0.98, 0.5),
            sample(Variant::EmptyWasm, 150_000, 0.97, 0.5),
            // The token API, not Envoy, bounds ext_authz.
            sample(Variant::ExtAuthz, 20_000, 0.4, 0.99),
        ];
        let calm = summary::rows(&calm_samples);
        let d = disturbed(&calm, &calm_samples);
        assert!(d.is_empty(), "{d:?}");
        let noisy_samples = [
            sample(Variant::NoWasm, 100_000, 0.6, 0.5),
            sample(Variant::EmptyWasm, 150_000, 0.97, 0.5),
            sample(Variant::EmptyWasm, 50_000, 0.97, 0.5),
            sample(Variant::EmptyWasm, 150_000, 0.97, 0.5),
        ];
        let noisy = summary::rows(&noisy_samples);
        let d = disturbed(&noisy, &noisy_samples);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("Envoy had 60 % of its core"));
        assert!(d[1].contains("req/s ranged 5000–15000"));
        assert!(d[2].contains("slower than with the empty filter"));
        let text = Report {
            rows: noisy,
            samples: noisy_samples.to_vec(),
            ..Report::default()
        }
        .render();
        assert!(text.contains("**Disturbed run**"));
    }

    #[test]
    fn probe_section_splits_host_calls_from_wasm_work() {
        let row = |label: &str, cpu: f64| ProbeRow {
            label: label.into(),
            calls: 1,
            rps: 1e6 / cpu,
            cpu_us_per_req: cpu,
        };
        let rows = vec![
            row(probe::FLOOR, 20.0),
            row(probe::ALL_CALLS, 30.0),
            row(probe::FILTER, 34.0),
        ];
        let mut o = String::new();
        render_probe(&mut o, &rows, &Settings::default(), 0);
        assert!(
            o.contains("| 1× | 33333 | 0.67× | 30.0 µs | +10.0 µs | +10.00 µs |"),
            "{o}"
        );
        assert!(
            o.contains(
                "- The filter costs 14.0 µs/req above the floor: 10.0 µs for its 10 host calls \
                 measured together, 4.0 µs in its own wasm code"
            ),
            "{o}"
        );
    }
}
