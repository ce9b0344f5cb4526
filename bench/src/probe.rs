//! Where the cache-hit path's time goes: the empty filter turned probe makes
//! the filter's host calls (and its token hashing) one kind at a time, each
//! in its own Envoy, on the direct route; their cost is Envoy CPU per request
//! above the floor. A single call costs about a microsecond, below the noise
//! of one run, so single-kind probes repeat the call 10 times per request and
//! report a tenth. All Envoys run at once and take turns, like the main table.

use std::time::Duration;

use crate::envoy_config::Chain;
use crate::gateway::{Common, Gateway};
use crate::load::{Load, Tool};
use crate::summary::median;
use crate::throughput::{timed, timed_settled};

/// A probe: its label, the empty filter's ops, and how many times the priced
/// unit repeats per request.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub label: &'static str,
    pub ops: &'static str,
    pub calls: u32,
}

const fn p(label: &'static str, ops: &'static str, calls: u32) -> Probe {
    Probe { label, ops, calls }
}

pub const HEADER_MAP: &str = "read the request header map";
pub const CLOCK: &str = "read the clock";
pub const METRIC: &str = "increment a counter";
pub const REMOVE: &str = "remove a request header";
pub const SET: &str = "replace a request header";
pub const CLEAR: &str = "call `clear_route_cache`";
pub const PAIRS: &str = "read + rewrite the whole header map";
pub const VALIDATE: &str = "token format check (no host call)";
pub const SHA: &str = "SHA-256 cache key (no host call)";
pub const PROPERTY: &str = "write the request record (one filter-state value)";
pub const SHARED: &str = "rate-limit slot read + compare-and-swap write";
pub const ALL_CALLS: &str = "the 10 host calls of a cache hit, once";
pub const WITH_CLEAR: &str = "the same plus `clear_route_cache` (a host on a newer ABI)";
pub const FLOOR: &str = "empty filter (floor)";
pub const FILTER: &str = "mcp_auth, cache hit";
pub const FILTER_LIMITED: &str = "mcp_auth, cache hit, rate-limited token";
pub const FILTER_NO_RECORD: &str = "mcp_auth, cache hit, no request record";

pub const PROBES: [Probe; 13] = [
    p(HEADER_MAP, "header_map*10", 10),
    p(CLOCK, "time*10", 10),
    p(METRIC, "metric*10", 10),
    // The first removal finds `authorization`, the others find nothing.
    p(REMOVE, "remove*10", 10),
    p(SET, "set*10", 10),
    p(CLEAR, "clear_route_cache*10", 10),
    p(PAIRS, "pairs*10", 10),
    p(VALIDATE, "validate*10", 10),
    p(SHA, "sha256*10", 10),
    p(PROPERTY, "property*10", 10),
    // Twice the calls of one op: priced per slot update (one read, one write).
    p(SHARED, "shared*10", 10),
    // What `filter/src/wasm/http.rs` calls on a cache hit under ABI 0.2.1.
    p(
        ALL_CALLS,
        "header_map,time,metric,remove,set*4,metric,property",
        1,
    ),
    p(
        WITH_CLEAR,
        "header_map,time,metric,remove,set*4,clear_route_cache,metric,property",
        1,
    ),
];

#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub label: String,
    /// Repetitions of the priced unit per request (1 for the floor and the filter).
    pub calls: u32,
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
    /// A token with a rate limit it never reaches.
    pub limited: String,
    pub connections: u32,
    pub duration: Duration,
    /// Rounds per generation of Envoys.
    pub rounds: u32,
    /// Times every probe's Envoy is started afresh.
    pub generations: u32,
    pub envoy_core: usize,
    pub load_core: usize,
}

/// One Envoy of a probe run: its label, how many times its priced unit
/// repeats per request, its filter chain and the `Authorization` it is sent.
pub struct Planned {
    pub label: String,
    pub calls: u32,
    pub chain: Chain,
    pub authorization: String,
}

fn empty(label: &str, calls: u32, ops: &str, authorization: &str) -> Planned {
    Planned {
        label: label.to_string(),
        calls,
        chain: Chain::Empty {
            probe_ops: ops.to_string(),
        },
        authorization: authorization.to_string(),
    }
}

/// The gateway's filter, configured with `config`, sent `authorization`.
fn filter(label: &str, config: serde_json::Value, authorization: &str) -> Planned {
    Planned {
        label: label.to_string(),
        calls: 1,
        chain: Chain::McpAuth { config },
        authorization: authorization.to_string(),
    }
}

/// `s`'s filter configuration with `key` set to `value`.
fn config_with(s: &Setup<'_>, key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = s.filter_config.clone();
    c[key] = value;
    c
}

/// The report's plan: the floor, every probe of [`PROBES`] and the filter
/// three times, in Envoys of their own: the same path with and without a
/// rate limit, and without the request record (its encoding as well as its
/// `set_property`).
pub fn standard_plan(s: &Setup<'_>) -> Vec<Planned> {
    let mut plan = vec![empty(FLOOR, 1, "", &s.valid)];
    for probe in PROBES {
        plan.push(empty(probe.label, probe.calls, probe.ops, &s.valid));
    }
    let no_record = config_with(s, "record", serde_json::json!({"property": null}));
    plan.extend([
        filter(FILTER, s.filter_config.clone(), &s.valid),
        filter(FILTER_LIMITED, s.filter_config.clone(), &s.limited),
        filter(FILTER_NO_RECORD, no_record, &s.valid),
    ]);
    plan
}

/// The filter on a cache hit: unlimited token, rate-limited token, and the
/// rate-limited token with enforcement off (what the limiter itself costs).
pub fn filter_plan(s: &Setup<'_>) -> Vec<Planned> {
    let unenforced = config_with(s, "rate_limit", serde_json::json!({"enforce": false}));
    vec![
        filter(FILTER, s.filter_config.clone(), &s.valid),
        filter(FILTER_LIMITED, s.filter_config.clone(), &s.limited),
        filter(
            "mcp_auth, cache hit, rate-limited token, not enforced",
            unenforced,
            &s.limited,
        ),
    ]
}

/// The proxied route's plan: the floor, the cache hit's host calls alone and
/// the filter, to tell what the route adds to the same calls.
pub fn proxied_plan(s: &Setup<'_>) -> Vec<Planned> {
    let mut plan = vec![empty(FLOOR, 1, "", &s.valid)];
    if let Some(p) = PROBES.iter().find(|p| p.label == ALL_CALLS) {
        plan.push(empty(p.label, p.calls, p.ops, &s.valid));
    }
    plan.push(filter(FILTER, s.filter_config.clone(), &s.valid));
    plan
}

/// `bench probe`'s plan: the floor, then each op list once per request.
pub fn ops_plan(ops: &[String], authorization: &str) -> Vec<Planned> {
    let mut plan = vec![empty(FLOOR, 1, "", authorization)];
    plan.extend(ops.iter().map(|o| empty(o, 1, o, authorization)));
    plan
}

/// Every Envoy of `plan` at once, taking turns `rounds` times on `path`;
/// also how many runs were thrown away because Envoy was starved of its core.
pub async fn run(
    s: &Setup<'_>,
    plan: &[Planned],
    path: &str,
) -> anyhow::Result<(Vec<ProbeRow>, u32)> {
    let mut runs = vec![Vec::new(); plan.len()];
    let mut retried = 0;
    // Fresh Envoys for each generation: the same chain in two processes
    // can differ by a few µs per request, as much as a probe measures.
    for generation in 0..s.generations.max(1) {
        let envoys = Gateway::start_all(
            s.common,
            plan.iter().enumerate().map(|(i, p)| {
                let dir = s.work_dir.join(format!("envoy-probe-{generation}-{i}"));
                (&p.chain, dir)
            }),
            &s.envoy_core.to_string(),
        )
        .await?;
        let measured = measure(s, plan, &envoys, path, &mut retried).await;
        for g in envoys {
            g.stop().await;
        }
        for (all, these) in runs.iter_mut().zip(measured?) {
            all.extend(these);
        }
    }
    let rows = plan
        .iter()
        .zip(runs)
        .map(|(p, runs)| ProbeRow {
            label: p.label.clone(),
            calls: p.calls,
            rps: median(&runs.iter().map(|r| r.0).collect::<Vec<_>>()).unwrap_or(0.0),
            cpu_us_per_req: median(&runs.iter().map(|r| r.1).collect::<Vec<_>>()).unwrap_or(0.0),
        })
        .collect();
    Ok((rows, retried))
}

/// (req/s, Envoy CPU µs per request) of every run, per plan entry.
async fn measure(
    s: &Setup<'_>,
    plan: &[Planned],
    envoys: &[Gateway],
    path: &str,
    retried: &mut u32,
) -> anyhow::Result<Vec<Vec<(f64, f64)>>> {
    let mut runs = vec![Vec::new(); plan.len()];
    for round in 0..=s.rounds {
        for (i, gw) in envoys.iter().enumerate() {
            let url = gw.url(path);
            let planned = plan
                .get(i)
                .ok_or_else(|| anyhow::anyhow!("probe {i} not planned"))?;
            let run = Load {
                url: &url,
                authorization: Some(&planned.authorization),
                connections: s.connections,
                // Round 0 warms every Envoy up and is not kept.
                duration: if round == 0 {
                    Duration::from_secs(1)
                } else {
                    s.duration
                },
                core: s.load_core,
            };
            let label = &planned.label;
            let (t, again) = if round == 0 {
                (timed(s.tool, gw, &run, s.load_core).await?, 0)
            } else {
                timed_settled(s.tool, gw, &run, s.load_core).await?
            };
            *retried += again;
            let m = t.measured;
            if m.http_errors > 0 || m.socket_errors > 0 {
                anyhow::bail!("probe {label:?}: not every response was a 200: {m:?}");
            }
            if round == 0 {
                continue;
            }
            let cpu = t.envoy_cpu_us_per_req;
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

/// CPU µs above the floor of one repetition of the row's unit.
pub fn per_call(rows: &[ProbeRow], label: &str) -> Option<f64> {
    let row = rows.iter().find(|r| r.label == label)?;
    Some((row.cpu_us_per_req - floor_cpu(rows)) / f64::from(row.calls.max(1)))
}

/// Changes to the filter's hot path the probes put a number on, with the
/// Envoy CPU each would save per request (only those that save something),
/// then the split of the filter's cost and what all of them together would give.
pub fn suggestions(rows: &[ProbeRow]) -> Vec<String> {
    let c = |label: &str| per_call(rows, label);
    let (Some(filter), Some(all)) = (delta(rows, FILTER), delta(rows, ALL_CALLS)) else {
        return Vec::new();
    };
    let floor = floor_cpu(rows);
    let mut out = Vec::new();
    let mut saved = 0.0;
    let mut push = |saving: f64, text: String| {
        if saving > 0.0 {
            saved += saving;
            out.push(format!("{text} — saves ≈ {saving:.1} µs/req."));
        }
    };
    if let Some(metric) = c(METRIC) {
        push(
            metric,
            "Increment one counter per allowed request, not two (`cache.hits` and \
             `allowed` both move on every hit; derive one, or batch counts and flush them \
             on the tick)"
                .to_string(),
        );
    }
    if let (Some(rm), Some(set), Some(pairs), Some(map)) =
        (c(REMOVE), c(SET), c(PAIRS), c(HEADER_MAP))
    {
        let now = rm + 4.0 * set;
        let batched = pairs - map;
        push(
            now - batched,
            format!(
                "Write the headers in one `set_http_request_headers` call instead of a \
                 remove and 4 replaces ({now:.1} µs now; the rewrite costs {batched:.1} µs \
                 beyond the read the filter already makes)"
            ),
        );
    }
    if let Some(set) = c(SET) {
        push(
            2.0 * set,
            "Let operators turn off the `token_id` and `token_name` headers (e.g. `null` in \
             `headers`) when their backends do not read them: two replace calls fewer"
                .to_string(),
        );
    }
    if let Some(property) = c(PROPERTY) {
        push(
            property,
            "Turn the request record off (`record.property: null`) where no access log reads \
             it: one `set_property` fewer"
                .to_string(),
        );
    }
    let own = filter - all;
    out.push(format!(
        "The filter costs {filter:.1} µs/req above the floor: {all:.1} µs for its 10 host \
         calls measured together, {own:.1} µs in its own wasm code (header decode, token \
         check, keyed hash of the token, cache lookup, SDK dispatch of its state). SHA-256 \
         is paid on a token's first request only: the filter memoises it per worker."
    ));
    // Envoy-bound, throughput ∝ 1 / CPU per request: 0.90× the floor leaves
    // floor / 0.9 − floor of CPU per request for the filter.
    let budget = floor / 0.9 - floor;
    out.push(format!(
        "Budget for the 0.90× target: ≈ {budget:.1} µs/req above the floor. The host calls \
         alone take {all:.1} µs, so the target needs fewer host calls per request, not only \
         faster wasm code."
    ));
    if let Some(clear) = c(CLEAR) {
        out.push(format!(
            "`clear_route_cache` is not called: under ABI 0.2.1 Envoy 1.40 picks the route \
             again on each header change by itself (filter/src/abi.rs); a host on a newer ABI \
             would need it, ≈ {clear:.1} µs/req more."
        ));
    }
    if let (Some(bare), Some(property)) = (delta(rows, FILTER_NO_RECORD), c(PROPERTY)) {
        out.push(format!(
            "The request record: {:+.1} µs/req (the filter with `record.property: null` \
             beside it), of which its `set_property` call prices at {property:.1} µs; the \
             rest is building the line.",
            filter - bare
        ));
    }
    if let (Some(limited), Some(shared)) = (delta(rows, FILTER_LIMITED), c(SHARED)) {
        out.push(format!(
            "A token with a rate limit: {:+.1} µs/req over one without, in Envoys of their \
             own (differences within ~2 µs are the two processes, not the limiter). A busy \
             token spends leased units: the slot read and compare-and-swap write, \
             {shared:.1} µs, are paid once per lease of up to 64 requests.",
            limited - filter
        ));
    }
    let now = floor + filter;
    let after = (now - saved).max(floor);
    if saved > 0.0 && after > 0.0 && now > 0.0 {
        out.push(format!(
            "All of the above together: ≈ {after:.1} µs/req instead of {now:.1}, i.e. the \
             cache hit at ≈ {:.2}× the floor's throughput instead of ≈ {:.2}× (when Envoy is \
             the bottleneck, throughput ∝ 1 / CPU per request).",
            floor / after,
            floor / now
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, calls: u32, cpu: f64) -> ProbeRow {
        ProbeRow {
            label: label.into(),
            calls,
            rps: 1000.0 / cpu,
            cpu_us_per_req: cpu,
        }
    }

    #[test]
    fn deltas_are_above_the_floor_and_per_call() {
        let rows = [row(FLOOR, 1, 21.0), row(CLOCK, 10, 31.0)];
        assert_eq!(floor_cpu(&rows), 21.0);
        assert_eq!(floor_rps(&rows), 1000.0 / 21.0);
        assert_eq!(delta(&rows, CLOCK), Some(10.0));
        assert_eq!(per_call(&rows, CLOCK), Some(1.0));
        assert_eq!(delta(&rows, "missing"), None);
    }

    #[test]
    fn suggestions_carry_the_measured_savings() {
        let rows = vec![
            row(FLOOR, 1, 20.0),
            row(FILTER, 1, 34.0),
            row(ALL_CALLS, 1, 30.0),
            row(CLEAR, 10, 30.0),      // 1.0 per call
            row(METRIC, 10, 25.0),     // 0.5
            row(REMOVE, 10, 25.0),     // 0.5
            row(SET, 10, 30.0),        // 1.0 → remove + 4 sets = 4.5
            row(PAIRS, 10, 40.0),      // 2.0
            row(HEADER_MAP, 10, 25.0), // 0.5 → rewrite beyond the read 1.5
            row(SHA, 10, 35.0),        // 1.5
            row(FILTER_LIMITED, 1, 37.0),
            row(SHARED, 10, 32.0), // 1.2
        ];
        let s = suggestions(&rows);
        assert!(s[0].ends_with("saves ≈ 0.5 µs/req."), "{}", s[0]);
        assert!(
            s[1].contains("(4.5 µs now; the rewrite costs 1.5 µs"),
            "{}",
            s[1]
        );
        assert!(s[1].ends_with("saves ≈ 3.0 µs/req."), "{}", s[1]);
        assert!(s[2].contains("token_id") && s[2].ends_with("saves ≈ 2.0 µs/req."));
        // SHA-256 is already memoised by the filter: priced, not suggested.
        assert!(!s.iter().any(|l| l.contains("Skip SHA-256")), "{s:?}");
        assert!(
            s[3].contains("14.0 µs/req above the floor: 10.0 µs"),
            "{}",
            s[3]
        );
        assert!(s[3].contains("4.0 µs in its own wasm code"), "{}", s[3]);
        // 20 / 0.9 − 20 = 2.2 µs of budget.
        assert!(s[4].contains("≈ 2.2 µs/req above the floor. The host calls alone take 10.0 µs"));
        // Not called, priced for a newer ABI.
        assert!(
            s[5].contains("`clear_route_cache` is not called")
                && s[5].ends_with("≈ 1.0 µs/req more."),
            "{}",
            s[5]
        );
        assert!(
            s[6].contains("+3.0 µs/req over one without")
                && s[6].contains("write, 1.2 µs, are paid once per lease"),
            "{}",
            s[6]
        );
        // Savings 0.5 + 3 + 2 = 5.5: 34 − 5.5 = 28.5 µs, 20/28.5 = 0.70 instead of 20/34 = 0.59.
        assert!(s[7].contains("≈ 28.5 µs/req instead of 34.0"), "{}", s[7]);
        assert!(s[7].contains("≈ 0.70× the floor's throughput instead of ≈ 0.59×"));
        assert_eq!(s.len(), 8, "{s:?}");
    }

    #[test]
    fn a_change_that_saves_nothing_is_not_suggested() {
        let rows = vec![
            row(FLOOR, 1, 20.0),
            row(FILTER, 1, 34.0),
            row(ALL_CALLS, 1, 30.0),
            row(METRIC, 10, 19.0),
        ];
        let s = suggestions(&rows);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("The filter costs"));
        assert!(s[1].starts_with("Budget for the 0.90× target"));
        assert!(suggestions(&[row(FLOOR, 1, 20.0)]).is_empty());
    }

    #[test]
    fn every_probe_parses_to_its_call_count() {
        for probe in PROBES {
            let parsed = empty_filter::ops::parse(probe.ops).unwrap();
            assert!(!parsed.is_empty(), "{}", probe.label);
            if probe.calls > 1 {
                assert_eq!(parsed.len(), probe.calls as usize, "{}", probe.label);
            }
        }
        let all = PROBES.iter().find(|p| p.label == ALL_CALLS).unwrap();
        assert_eq!(empty_filter::ops::parse(all.ops).unwrap().len(), 10);
    }
}
