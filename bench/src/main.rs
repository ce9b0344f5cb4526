//! `just bench`: the gateway's filter side by side with Envoy alone, an empty
//! proxy-wasm filter and Envoy's ext_authz; introspect throughput;
//! revocation latency; callouts under a burst; a flood of made-up tokens;
//! size and memory.
//! Writes `bench/RESULTS.md`. Benchmarks, not tests: nothing here asserts a speed.

mod callouts;
mod envoy_config;
mod flood;
mod gateway;
mod lists;
mod load;
mod pin;
mod probe;
mod procfs;
mod report;
mod revocation;
mod summary;
mod throughput;
mod token_api;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use envoy_config::Chain;
use gateway::{Common, Gateway};
use load::{Load, Tool};
use report::{Report, Settings};
use summary::Route;
use token_api::TokenApi;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks of the MCP token gateway (see bench/README.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every benchmark and write the report.
    Run(RunArgs),
    /// Only the introspect throughput (SQLite, then PostgreSQL), printed;
    /// writes no report. Compares instance-reuse settings taking turns.
    Introspect(IntrospectArgs),
    /// Serve the token API (used by `run`, as its own pinned process).
    TokenApi(TokenApiArgs),
    /// Time the filter's rewrite of the tools/list answer (50 tools, a token
    /// that may see 10) natively, no Envoy: microseconds per rewrite.
    Rewrite(RewriteArgs),
    /// Only host-call probes: the empty filter making the given host calls on
    /// every request, each list in an Envoy of its own beside the floor,
    /// printed as Envoy CPU per request above the floor. Writes no report.
    Probe(ProbeArgs),
    /// Only the tools/list row (restricted token vs `mcp:*`), printed;
    /// writes no report.
    Lists(ListsArgs),
}

#[derive(Debug, Args)]
struct ListsArgs {
    /// Seconds of each run.
    #[arg(long, default_value_t = 2)]
    duration: u64,
    /// Rounds (restricted, then `mcp:*`, back to back).
    #[arg(long, default_value_t = 9)]
    rounds: u32,
    #[command(flatten)]
    place: Placement,
    /// The filter to load (default: the workspace's release build).
    #[arg(long)]
    filter_wasm: Option<PathBuf>,
    /// Scratch directory; emptied first.
    #[arg(long, default_value = "target/bench-lists")]
    work_dir: PathBuf,
}

#[derive(Debug, Args)]
struct RewriteArgs {
    /// Rewrites per measurement.
    #[arg(long, default_value_t = 50_000)]
    n: u32,
    /// Measurements; the median is printed with the range.
    #[arg(long, default_value_t = 5)]
    runs: u32,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// A comma-separated list of probe ops made once per request, e.g.
    /// `header_map,remove,set*4` (repeat the flag for more Envoys; the ops
    /// are listed in bench/empty-filter/src/ops.rs).
    #[arg(long = "ops")]
    ops: Vec<String>,
    /// `direct` (Envoy answers itself) or `proxy` (forwarded upstream).
    #[arg(long, default_value = "direct")]
    route: String,
    /// Seconds of each run.
    #[arg(long, default_value_t = 3)]
    duration: u64,
    /// Rounds over all Envoys, per generation.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Times every Envoy is started afresh.
    #[arg(long, default_value_t = 3)]
    generations: u32,
    #[command(flatten)]
    place: Placement,
    /// Also the gateway's filter on a cache hit, each in an Envoy of its own:
    /// with an unlimited token, with a rate-limited one, and with the
    /// rate-limited one while `rate_limit.enforce` is off.
    #[arg(long)]
    filter: bool,
    /// Scratch directory; emptied first.
    #[arg(long, default_value = "target/bench-probe")]
    work_dir: PathBuf,
}

/// Where Envoy and the load run, and with what.
#[derive(Debug, Args)]
struct Placement {
    /// Keep-alive connections of the load tool.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Core for Envoy (and for the token API while its introspect throughput is measured).
    #[arg(long, default_value_t = 0)]
    envoy_core: usize,
    /// Core for the load tool, the upstream, the token API and this driver.
    #[arg(long, default_value_t = 1)]
    load_core: usize,
    /// `wrk`, `oha`, or `auto` (wrk if installed).
    #[arg(long, default_value = "auto")]
    load_tool: String,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Seconds of each measured load run.
    #[arg(long, default_value_t = 2)]
    duration: u64,
    /// Rounds over all variants (A B … then A B … again) per generation of
    /// Envoys; the report shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Times the main table's Envoys are started afresh (each runs `rounds`).
    #[arg(long, default_value_t = 3)]
    generations: u32,
    /// Seconds of unmeasured load per variant before the rounds (per generation).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    #[command(flatten)]
    place: Placement,
    /// Revoke-to-401 trials.
    #[arg(long, default_value_t = 7)]
    revocation_trials: u32,
    /// Concurrent requests with one uncached token.
    #[arg(long, default_value_t = 100)]
    burst: usize,
    /// Made-up tokens in the flood run (0 skips it).
    #[arg(long, default_value_t = 12_000)]
    flood: usize,
    /// Host-call probes: `auto` (when cache hit < 0.90 × empty wasm), `always`, `never`.
    #[arg(long, default_value = "auto")]
    probe: String,
    /// Seconds of each probe run.
    #[arg(long, default_value_t = 3)]
    probe_duration: u64,
    /// Rounds over all probes.
    #[arg(long, default_value_t = 3)]
    probe_rounds: u32,
    /// Where to write the report.
    #[arg(long, default_value = "bench/RESULTS.md")]
    out: PathBuf,
    /// Scratch directory (Envoy configs and logs, token database); emptied first.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
}

#[derive(Debug, Args)]
struct TokenApiArgs {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    data: PathBuf,
    /// SHA-256 (hex) of the admin key.
    #[arg(long)]
    admin_key_sha256: String,
    /// Longest cache TTL introspect hands out.
    #[arg(long, default_value_t = 30)]
    cache_ttl_s: u32,
    /// Keep the tokens in PostgreSQL at this URL (default: SQLite in --data).
    #[arg(long, requires = "postgres_host")]
    postgres_url: Option<String>,
    /// `host:port` of that server (the component's allowed outbound host).
    #[arg(long)]
    postgres_host: Option<String>,
    /// Requests one component instance serves (Spin's default 128; 1: a
    /// fresh instance per request).
    #[arg(long, default_value_t = harness::spin::InstanceReuse::default().max_reuse_count)]
    max_instance_reuse_count: usize,
    /// Requests one instance serves at once (Spin's default 16).
    #[arg(long, default_value_t = harness::spin::InstanceReuse::default().max_concurrent_reuse_count)]
    max_instance_concurrent_reuse_count: usize,
}

#[derive(Debug, Args)]
struct IntrospectArgs {
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Seconds of unmeasured load before each measured run.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rounds over the variants (A B, A B, …).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Core of the token API while measured.
    #[arg(long, default_value_t = 0)]
    api_core: usize,
    /// Core of the load tool (and of PostgreSQL, this driver).
    #[arg(long, default_value_t = 1)]
    load_core: usize,
    /// `wrk`, `oha`, or `auto` (wrk if installed).
    #[arg(long, default_value = "auto")]
    load_tool: String,
    /// `sqlite`, `postgres` or `both`.
    #[arg(long, default_value = "both")]
    store: String,
    /// Values of `max_instance_reuse_count` to compare, taking turns (e.g.
    /// `128,1`: Spin's reuse against a fresh instance per request).
    #[arg(long, value_delimiter = ',', default_value = "128")]
    reuse: Vec<usize>,
    /// Scratch directory; emptied first.
    #[arg(long, default_value = "target/bench-introspect")]
    work_dir: PathBuf,
}

/// The filter's revocation poll period in these runs (its default).
const POLL_MS: u64 = 1000;
const INTROSPECT_CONNECTIONS: u32 = 16;
/// `token_api.max_inflight` in the flood run: below its connections.
const FLOOD_MAX_INFLIGHT: u64 = 16;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let driver_core = match &cli.command {
        Command::Run(a) => Some(a.place.load_core),
        Command::Introspect(a) => Some(a.load_core),
        Command::Probe(a) => Some(a.place.load_core),
        Command::Lists(a) => Some(a.place.load_core),
        Command::Rewrite(_) => None,
        Command::TokenApi(_) => None,
    };
    if let Some(core) = driver_core {
        // Before any thread starts, so that all of this process's threads
        // (the upstream, the driver) stay off Envoy's core.
        if let Err(e) = pin::pin_self(&core.to_string()) {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(a) => run(a).await,
            Command::Introspect(a) => introspect_only(a).await,
            Command::Probe(a) => probe_only(a).await,
            Command::Lists(a) => lists_only(a).await,
            Command::Rewrite(a) => rewrite_only(&a),
            Command::TokenApi(a) => {
                let pg = a
                    .postgres_url
                    .zip(a.postgres_host)
                    .map(|(url, host)| token_api::Postgres { url, host });
                let reuse = harness::spin::InstanceReuse {
                    max_reuse_count: a.max_instance_reuse_count,
                    max_concurrent_reuse_count: a.max_instance_concurrent_reuse_count,
                    ..Default::default()
                };
                token_api::serve(
                    a.listen,
                    a.data,
                    a.admin_key_sha256,
                    a.cache_ttl_s,
                    pg,
                    reuse,
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn rewrite_only(a: &RewriteArgs) -> anyhow::Result<()> {
    for (memo, what) in [(false, "read afresh"), (true, "recalled from the memo")] {
        let mut times = Vec::new();
        for _ in 0..a.runs.max(1) {
            times.push(lists::time_rewrite(a.n, memo)?);
        }
        let med = summary::median(&times).unwrap_or(0.0);
        let (lo, hi) = times
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), &t| (l.min(t), h.max(t)));
        println!(
            "tools/list rewrite, {} tools ({} bytes), a token that sees {}, {what}: \
             {med:.2} µs (median of {} runs of {}; {lo:.2}–{hi:.2})",
            lists::TOOLS,
            lists::answer().len(),
            lists::VISIBLE,
            times.len(),
            a.n
        );
    }
    Ok(())
}

async fn lists_only(a: ListsArgs) -> anyhow::Result<()> {
    if a.place.envoy_core == a.place.load_core {
        bail!("--envoy-core and --load-core must differ");
    }
    let work = fresh_dir(&a.work_dir)?;
    let tool = Tool::detect(&a.place.load_tool, &work)?;
    let api = TokenApi::start(&work.join("token-api"), a.place.load_core, 300, None, None).await?;
    let filter_wasm = match a.filter_wasm {
        Some(p) => p,
        None => harness::stack::filter_wasm()?,
    };
    let common = Common::new(0, api.port, filter_wasm, empty_wasm()?);
    let setup = lists::Setup {
        tool: &tool,
        common: &common,
        api: &api,
        work_dir: &work,
        filter_config: filter_config(POLL_MS),
        connections: a.place.connections,
        duration: Duration::from_secs(a.duration),
        warmup: Duration::from_secs(1),
        rounds: a.rounds,
        envoy_core: a.place.envoy_core,
        load_core: a.place.load_core,
    };
    let result = lists::run(&setup).await;
    api.stop().await;
    let mut out = String::new();
    result?.render(&mut out);
    println!("{out}");
    Ok(())
}

async fn probe_only(a: ProbeArgs) -> anyhow::Result<()> {
    if a.place.envoy_core == a.place.load_core {
        bail!("--envoy-core and --load-core must differ");
    }
    let path = match a.route.as_str() {
        "direct" => "/direct",
        "proxy" => "/proxy",
        other => bail!("--route {other:?}: use direct or proxy"),
    };
    for ops in &a.ops {
        empty_filter::ops::parse(ops).map_err(|e| anyhow::anyhow!("--ops {ops:?}: {e}"))?;
    }
    let work = fresh_dir(&a.work_dir)?;
    let empty_wasm = empty_wasm()?;
    let tool = Tool::detect(&a.place.load_tool, &work)?;
    let upstream = upstream::Upstream::start().await?;
    let api = if a.filter {
        Some(TokenApi::start(&work.join("token-api"), a.place.load_core, 300, None, None).await?)
    } else {
        None
    };
    let result = probe_with(&a, path, &work, &tool, &upstream, empty_wasm, api.as_ref()).await;
    if let Some(api) = api {
        api.stop().await;
    }
    upstream.stop();
    let (rows, retried) = result?;
    let floor = probe::floor_cpu(&rows);
    println!(
        "| ops ({} route) | req/s | Envoy CPU/req | above the floor |",
        a.route
    );
    println!("|---|--:|--:|--:|");
    for r in &rows {
        println!(
            "| `{}` | {:.0} | {:.2} µs | {:+.2} µs |",
            if r.label.is_empty() {
                "(floor)"
            } else {
                &r.label
            },
            r.rps,
            r.cpu_us_per_req,
            r.cpu_us_per_req - floor
        );
    }
    println!(
        "\nMedians of {} rounds of {} s in each of {} generations of Envoys; {retried} \
         starved runs repeated.",
        a.rounds, a.duration, a.generations
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn probe_with(
    a: &ProbeArgs,
    path: &str,
    work: &std::path::Path,
    tool: &Tool,
    upstream: &upstream::Upstream,
    empty_wasm: PathBuf,
    api: Option<&TokenApi>,
) -> anyhow::Result<(Vec<probe::ProbeRow>, u32)> {
    let common = Common::new(
        upstream.port,
        api.map_or(upstream.port, |t| t.port),
        harness::stack::filter_wasm()?,
        empty_wasm,
    );
    // A well-formed token in the header map, as the filter's requests carry.
    let mut authorization = format!("Bearer {}", mcpgw_token::format::from_secret(&[7; 32]));
    let mut limited = authorization.clone();
    if let Some(api) = api {
        authorization = format!("Bearer {}", api.mint("probe-hit").await?.token);
        let l = api
            .mint_with("probe-hit-limited", unreached_limit())
            .await?;
        limited = format!("Bearer {}", l.token);
    }
    let setup = probe::Setup {
        tool,
        common: &common,
        work_dir: work.to_path_buf(),
        filter_config: filter_config(POLL_MS),
        valid: authorization.clone(),
        limited,
        connections: a.place.connections,
        duration: Duration::from_secs(a.duration),
        rounds: a.rounds,
        generations: a.generations,
        envoy_core: a.place.envoy_core,
        load_core: a.place.load_core,
    };
    let mut plan = probe::ops_plan(&a.ops, &authorization);
    if api.is_some() {
        plan.extend(probe::filter_plan(&setup));
    }
    probe::run(&setup, &plan, path).await
}

fn filter_config(poll_ms: u64) -> serde_json::Value {
    let mut c = harness::stack::default_filter_config();
    c["cache"]["ttl_s"] = json!(300);
    c["revocation_poll_ms"] = json!(poll_ms);
    c
}

/// `dir` (relative to the workspace root unless absolute), emptied.
fn fresh_dir(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let work = harness::stack::workspace_root().join(dir);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("emptying {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    Ok(work)
}

fn empty_wasm() -> anyhow::Result<PathBuf> {
    wasm_path(
        "target/wasm32-wasip1/release/empty_filter.wasm",
        "cargo build -p empty-filter --target wasm32-wasip1 --release",
    )
}

/// A limit far above what one Envoy serves: the limiter works on every
/// request (a busy token: leased units, the shared slot once per lease) and
/// refuses none.
fn unreached_limit() -> serde_json::Value {
    json!({"rate_limit": {"requests": 1_000_000, "window_s": 1}})
}

fn wasm_path(rel: &str, build: &str) -> anyhow::Result<PathBuf> {
    let p = harness::stack::workspace_root().join(rel);
    if !p.is_file() {
        bail!(
            "{} is missing: run `{build}` (or `just bench`)",
            p.display()
        );
    }
    Ok(p)
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if a.place.envoy_core == a.place.load_core {
        bail!("--envoy-core and --load-core must differ");
    }
    if !matches!(a.probe.as_str(), "auto" | "always" | "never") {
        bail!("--probe {:?}: use auto, always or never", a.probe);
    }
    let root = harness::stack::workspace_root();
    let work = fresh_dir(&a.work_dir)?;

    let filter_wasm = harness::stack::filter_wasm()?;
    let empty_wasm = empty_wasm()?;
    let tool = Tool::detect(&a.place.load_tool, &work)?;
    let mut report = Report {
        date: utc_now(),
        machine: procfs::machine(),
        envoy_version: gateway::envoy_version(),
        tool: tool.version(),
        filter_wasm_bytes: std::fs::metadata(&filter_wasm)?.len(),
        empty_wasm_bytes: std::fs::metadata(&empty_wasm)?.len(),
        settings: Settings {
            duration_s: a.duration,
            rounds: a.rounds,
            generations: a.generations,
            connections: a.place.connections,
            warmup_s: a.warmup,
            envoy_core: a.place.envoy_core,
            load_core: a.place.load_core,
            introspect_connections: INTROSPECT_CONNECTIONS,
            poll_ms: POLL_MS,
            burst: a.burst,
            probe_duration_s: a.probe_duration,
            probe_rounds: a.probe_rounds,
        },
        ..Report::default()
    };
    eprintln!(
        "bench: {} on {} × {}; load average {}",
        report.tool, report.machine.cpus, report.machine.cpu_model, report.machine.loadavg
    );

    let upstream = upstream::Upstream::start().await?;
    eprintln!("bench: starting the token API");
    let api = TokenApi::start(&work.join("token-api"), a.place.load_core, 300, None, None).await?;
    let outcome = measure_all(
        &a,
        &mut report,
        &tool,
        &work,
        &api,
        &upstream,
        filter_wasm,
        empty_wasm,
    )
    .await;
    api.stop().await;
    upstream.stop();
    outcome?;

    report.loadavg_end = procfs::loadavg();
    report.elapsed_s = started.elapsed().as_secs_f64();
    let text = report.render();
    let out = if a.out.is_absolute() {
        a.out.clone()
    } else {
        root.join(&a.out)
    };
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    println!("{text}");
    eprintln!(
        "bench: wrote {} in {:.0} s",
        out.display(),
        report.elapsed_s
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure_all(
    a: &RunArgs,
    report: &mut Report,
    tool: &Tool,
    work: &std::path::Path,
    api: &TokenApi,
    upstream: &upstream::Upstream,
    filter_wasm: PathBuf,
    empty_wasm: PathBuf,
) -> anyhow::Result<()> {
    let common = Common::new(upstream.port, api.port, filter_wasm, empty_wasm);
    let hit = api.mint("bench-hit").await?;
    let valid = format!("Bearer {}", hit.token);
    let invalid = format!("Bearer {}", token_api::bad_checksum(&hit.token)?);
    let limited = api
        .mint_with("bench-hit-limited", unreached_limit())
        .await?;

    // 1. Side-by-side load runs.
    let setup = throughput::Setup {
        tool,
        common: &common,
        work_dir: work.to_path_buf(),
        filter_config: filter_config(POLL_MS),
        connections: a.place.connections,
        duration: Duration::from_secs(a.duration),
        warmup: Duration::from_secs(a.warmup),
        rounds: a.rounds,
        generations: a.generations,
        envoy_core: a.place.envoy_core,
        load_core: a.place.load_core,
        valid: valid.clone(),
        invalid,
        limited: format!("Bearer {}", limited.token),
    };
    let outcome = throughput::run(&setup).await?;
    report.rows = summary::rows(&outcome.samples);
    report.samples = outcome.samples;
    report.retried = outcome.retried;
    report.memory = outcome.memory;
    report.filter_stats = outcome.filter_stats;

    // 2. Introspect alone, the token API on Envoy's (now idle) core: on
    // SQLite, then the same on PostgreSQL (its server on the load core).
    eprintln!("bench: introspect throughput (SQLite)");
    let timing = Timing::of(a);
    report.introspect = Some(introspect(&timing, tool, api, &valid).await?);
    eprintln!("bench: introspect throughput (PostgreSQL)");
    let mut pg = harness::pgserver::PgServer::start(harness::pgserver::PgServerOptions {
        dir: Some(work.join("postgres")),
        port: 0,
        durable: true,
    })
    .await?;
    let measured = async {
        let url = pg.create_database("bench").await?;
        let target = token_api::Postgres {
            url,
            host: format!("127.0.0.1:{}", pg.port()),
        };
        let on_pg = TokenApi::start(
            &work.join("token-api-pg"),
            a.place.load_core,
            300,
            Some(&target),
            None,
        )
        .await?;
        let minted = on_pg.mint("bench-pg").await;
        let result = match minted {
            Ok(t) => introspect(&timing, tool, &on_pg, &format!("Bearer {}", t.token)).await,
            Err(e) => Err(e),
        };
        on_pg.stop().await;
        result
    }
    .await;
    pg.stop().await;
    report.introspect_postgres = Some(measured?);

    // 3. Revoke → first 401.
    eprintln!("bench: revocation latency");
    let chain = Chain::McpAuth {
        config: filter_config(POLL_MS),
    };
    let core = a.place.envoy_core.to_string();
    let gw = Gateway::start(&common, &chain, &work.join("envoy-revocation"), 1, &core).await?;
    let trials = revocation::trials(&gw, api, a.revocation_trials, POLL_MS).await;
    gw.stop().await;
    report.revocation_ms = trials?;

    // 4. One uncached token, a burst of requests, 1 and 2 workers (feed off).
    let chain = Chain::McpAuth {
        config: filter_config(0),
    };
    for workers in [1u32, 2] {
        eprintln!(
            "bench: callouts for a burst of {} with {workers} worker(s)",
            a.burst
        );
        let cores = if workers == 1 {
            a.place.envoy_core.to_string()
        } else {
            format!("{},{}", a.place.envoy_core, a.place.load_core)
        };
        let dir = work.join(format!("envoy-burst-{workers}"));
        let gw = Gateway::start(&common, &chain, &dir, workers, &cores).await?;
        let mut bursts = Vec::new();
        let result = async {
            for i in 0..3 {
                let t = api.mint(&format!("bench-burst-{workers}-{i}")).await?;
                bursts.push(callouts::burst(&gw, &t.token, a.burst).await?);
            }
            anyhow::Ok(())
        }
        .await;
        gw.stop().await;
        result?;
        report.callouts.push((workers, bursts));
    }

    // 5. A flood of made-up tokens while live tokens are used and one is revoked.
    if a.flood > 0 {
        eprintln!("bench: a flood of {} made-up tokens", a.flood);
        let mut config = filter_config(POLL_MS);
        config["token_api"]["max_inflight"] = json!(FLOOD_MAX_INFLIGHT);
        let chain = Chain::McpAuth { config };
        let dir = work.join("envoy-flood");
        let core = a.place.envoy_core.to_string();
        let gw = Gateway::start(&common, &chain, &dir, 1, &core).await?;
        let setup = flood::Setup {
            gateway: &gw,
            api,
            made_up: a.flood,
            connections: a.place.connections as usize,
            workers: 1,
            max_inflight: FLOOD_MAX_INFLIGHT,
        };
        let result = flood::run(&setup).await;
        gw.stop().await;
        report.flood = Some(result?);
    }
    // 6. tools/list answers filtered for a restricted token vs mcp:*.
    let setup = lists::Setup {
        tool,
        common: &common,
        api,
        work_dir: work,
        filter_config: filter_config(POLL_MS),
        connections: a.place.connections,
        duration: Duration::from_secs(a.duration),
        warmup: Duration::from_secs(a.warmup),
        rounds: a.rounds * a.generations.max(1),
        envoy_core: a.place.envoy_core,
        load_core: a.place.load_core,
    };
    report.lists = Some(lists::run(&setup).await?);

    // 7. Where the cache hit's time goes, when it misses its target.
    let below = report
        .hit_over_empty(Route::Direct)
        .is_some_and(|r| r < 0.90);
    if a.probe == "always" || (a.probe == "auto" && below) {
        eprintln!("bench: host-call probes");
        let setup = probe::Setup {
            tool,
            common: &common,
            work_dir: work.to_path_buf(),
            filter_config: filter_config(POLL_MS),
            valid,
            limited: format!("Bearer {}", limited.token),
            connections: a.place.connections,
            duration: Duration::from_secs(a.probe_duration),
            rounds: 1,
            generations: a.probe_rounds,
            envoy_core: a.place.envoy_core,
            load_core: a.place.load_core,
        };
        let plan = probe::standard_plan(&setup);
        let (rows, retried) = probe::run(&setup, &plan, "/direct").await?;
        report.probe = Some(rows);
        report.probe_retried = retried;
        eprintln!("bench: host-call probes on the proxied route");
        let plan = probe::proxied_plan(&setup);
        let (rows, retried) = probe::run(&setup, &plan, "/proxy").await?;
        report.probe_proxied = Some(rows);
        report.probe_retried += retried;
    }
    Ok(())
}

/// Where and how long the introspect runs go.
struct Timing {
    api_core: usize,
    load_core: usize,
    warmup: Duration,
    duration: Duration,
}

impl Timing {
    fn of(a: &RunArgs) -> Self {
        Self {
            api_core: a.place.envoy_core,
            load_core: a.place.load_core,
            warmup: Duration::from_secs(a.warmup.max(2)),
            // One long run: the token API's throughput wanders more than
            // Envoy's over a few seconds (instance reuse, SQLite's cache).
            duration: Duration::from_secs(a.duration.max(report::INTROSPECT_MIN_S)),
        }
    }
}

/// Introspect alone: the token API moved to Envoy's (idle) core, the load
/// tool on the load core, a warm-up then a measured run; plus the token
/// API's CPU time per request, which contention on the machine changes less.
async fn introspect(
    t: &Timing,
    tool: &Tool,
    api: &TokenApi,
    authorization: &str,
) -> anyhow::Result<report::Introspect> {
    let api_pid = api.pid()?;
    pin::pin(api_pid, &t.api_core.to_string())?;
    let url = format!("{}/api/v1/mcptokens/introspect", api.url());
    let mut run = Load {
        url: &url,
        authorization: Some(authorization),
        connections: INTROSPECT_CONNECTIONS,
        duration: t.warmup,
        core: t.load_core,
    };
    let measured = async {
        load::run(tool, &run).await?;
        run.duration = t.duration;
        let before = procfs::cpu_ticks(api_pid)?;
        let m = load::run(tool, &run).await?;
        let ticks = procfs::cpu_ticks(api_pid)?.saturating_sub(before);
        let cpu_us_per_req = if m.requests > 0 {
            ticks as f64 / procfs::ticks_per_second() * 1e6 / m.requests as f64
        } else {
            0.0
        };
        anyhow::Ok(report::Introspect {
            measured: m,
            cpu_us_per_req,
        })
    }
    .await;
    pin::pin(api_pid, &t.load_core.to_string())?;
    measured
}

/// `bench introspect`: the introspect runs alone, each reuse setting on a
/// token API of its own, taking turns round after round; one line per run
/// and the medians.
async fn introspect_only(a: IntrospectArgs) -> anyhow::Result<()> {
    if a.api_core == a.load_core {
        bail!("--api-core and --load-core must differ");
    }
    let stores: &[&str] = match a.store.as_str() {
        "sqlite" => &["sqlite"],
        "postgres" => &["postgres"],
        "both" => &["sqlite", "postgres"],
        other => bail!("--store {other:?}: use sqlite, postgres or both"),
    };
    if a.reuse.is_empty() || a.reuse.contains(&0) {
        bail!("--reuse: one or more counts of at least 1, e.g. 128,1");
    }
    let work = fresh_dir(&a.work_dir)?;
    let tool = Tool::detect(&a.load_tool, &work)?;
    let timing = Timing {
        api_core: a.api_core,
        load_core: a.load_core,
        warmup: Duration::from_secs(a.warmup.max(1)),
        duration: Duration::from_secs(a.duration),
    };
    eprintln!(
        "bench: introspect, {} connections, {} s runs; load average {}",
        INTROSPECT_CONNECTIONS,
        a.duration,
        procfs::loadavg()
    );
    for store in stores {
        let mut pg = None;
        let target = if *store == "postgres" {
            let server = harness::pgserver::PgServer::start(harness::pgserver::PgServerOptions {
                dir: Some(work.join("postgres")),
                port: 0,
                durable: true,
            })
            .await?;
            let url = server.create_database("bench").await;
            let port = server.port();
            pg = Some(server);
            Some(token_api::Postgres {
                url: url?,
                host: format!("127.0.0.1:{port}"),
            })
        } else {
            None
        };
        let result = introspect_rounds(&a, &tool, &timing, &work, store, target.as_ref()).await;
        if let Some(mut server) = pg {
            server.stop().await;
        }
        result?;
    }
    Ok(())
}

async fn introspect_rounds(
    a: &IntrospectArgs,
    tool: &Tool,
    timing: &Timing,
    work: &std::path::Path,
    store: &str,
    postgres: Option<&token_api::Postgres>,
) -> anyhow::Result<()> {
    let mut results: Vec<Vec<report::Introspect>> = vec![Vec::new(); a.reuse.len()];
    for round in 1..=a.rounds {
        for (i, &count) in a.reuse.iter().enumerate() {
            let reuse = harness::spin::InstanceReuse {
                max_reuse_count: count,
                ..Default::default()
            };
            // One database per variant, so each starts alike.
            let data = work.join(format!("token-api-{store}-{count}"));
            let api = TokenApi::start(&data, a.load_core, 300, postgres, Some(reuse)).await?;
            let measured = async {
                let t = api.mint(&format!("bench-{round}-{count}")).await?;
                introspect(timing, tool, &api, &format!("Bearer {}", t.token)).await
            }
            .await;
            api.stop().await;
            let m = measured?;
            println!(
                "{store:8} reuse {count:>4}  round {round}: {:>6.0} req/s  p50 {:>5.0} µs  \
                 p99 {:>6.0} µs  CPU/req {:>6.1} µs  non-200 {}",
                m.measured.rps(),
                m.measured.p50_us,
                m.measured.p99_us,
                m.cpu_us_per_req,
                m.measured.http_errors + m.measured.socket_errors
            );
            results[i].push(m);
        }
    }
    for (count, runs) in a.reuse.iter().zip(&results) {
        let median = |f: &dyn Fn(&report::Introspect) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        println!(
            "{store:8} reuse {count:>4}  median:  {:>6.0} req/s  CPU/req {:>6.1} µs",
            median(&|m| m.measured.rps()),
            median(&|m| m.cpu_us_per_req)
        );
    }
    Ok(())
}
