//! The wasmtime engine, compiled components and the linker of every host
//! interface the token API may import.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::bindings::{postgres, sqlite, variables};
use super::postgres::PgHost;
use super::sqlite::SqliteHost;
use super::state::{InstanceState, VariablesHost};

/// One engine per process, so compiled components can be shared by every
/// host started in it (tests start many).
pub fn engine() -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model_async(true);
            // Instances are reused (up to 128 requests each), but a new one
            // is still made often (after its reuse count, an idle second, a
            // trap); the pooling allocator reuses instance slots instead of
            // mapping and unmapping memory every time (as Spin and
            // `wasmtime serve` do).
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling()));
            // wasmtime's on-disk cache (as `spin up` and `wasmtime serve` use)
            // saves the multi-second compile on every later start.
            match wasmtime::Cache::from_file(None) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => eprintln!("spin host: compiling without wasmtime's cache: {e}"),
            }
            Engine::new(&config).or_else(|e| {
                // Pools reserve address space up front; where that is refused
                // (a tight `ulimit -v`), instances are mapped one by one.
                eprintln!("spin host: without the pooling allocator ({e})");
                config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|e| format!("cannot create the wasmtime engine: {e}"))
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Room for this many component instances alive at once across every host
/// of the process (tests start many; an instance serves up to 16 requests at
/// once and stays 1 s after its last), each a few core instances, memories
/// and tables.
const POOLED_REQUESTS: u32 = 1_000;

fn pooling() -> wasmtime::PoolingAllocationConfig {
    let mut p = wasmtime::PoolingAllocationConfig::new();
    p.total_component_instances(POOLED_REQUESTS)
        .total_core_instances(POOLED_REQUESTS * 8)
        .total_memories(POOLED_REQUESTS * 2)
        .total_tables(POOLED_REQUESTS * 4)
        .total_stacks(POOLED_REQUESTS)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        // Linear memories are at most 64 MiB: plenty for the token API,
        // and 2,000 of them fit the address space comfortably.
        .max_memory_size(64 << 20)
        // Reused slots are reset with memset instead of fresh pages.
        .linear_memory_keep_resident(256 << 10)
        .table_keep_resident(64 << 10);
    p
}

/// Compiles `path`, or reuses this process's compilation of the same file
/// (same size and modification time).
pub fn component(engine: &Engine, path: &Path) -> Result<Component, String> {
    type Key = (PathBuf, Option<SystemTime>, u64);
    static COMPILED: OnceLock<Mutex<HashMap<Key, Component>>> = OnceLock::new();

    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "component {} cannot be read ({e}); build it first with `./just build`",
            path.display()
        )
    })?;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let key = (canonical, meta.modified().ok(), meta.len());
    let cache = COMPILED.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let compiled = Component::from_file(engine, path)
        .map_err(|e| format!("cannot load component {}: {e:?}", path.display()))?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, compiled.clone());
    Ok(compiled)
}

/// Links WASI (0.2 and 0.3), `wasi:http@0.3` and the Spin interfaces, then
/// pre-instantiates `component` as a `wasi:http/handler@0.3.0` service.
pub fn service_pre(
    engine: &Engine,
    component: &Component,
    source: &Path,
) -> Result<ServicePre<InstanceState>, String> {
    let link = |e: wasmtime::Error| format!("cannot set up the host linker: {e}");
    let mut linker = Linker::<InstanceState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(link)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(link)?;
    sqlite::add_to_linker::<_, SqliteHost>(&mut linker, InstanceState::sqlite).map_err(link)?;
    postgres::add_to_linker::<_, PgHost>(&mut linker, InstanceState::pg).map_err(link)?;
    variables::add_to_linker::<_, VariablesHost>(&mut linker, InstanceState::variables)
        .map_err(link)?;

    let pre = linker.instantiate_pre(component).map_err(|e| {
        format!(
            "{} needs an import this host does not provide: {e}",
            source.display()
        )
    })?;
    ServicePre::new(pre).map_err(|e| {
        format!(
            "{} does not export wasi:http/handler@0.3.0 (build it with spin-sdk 7's #[http_service]): {e}",
            source.display()
        )
    })
}
