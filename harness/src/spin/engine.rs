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
            // wasmtime's on-disk cache (as `spin up` and `wasmtime serve` use)
            // saves the multi-second compile on every later start.
            match wasmtime::Cache::from_file(None) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => eprintln!("spin host: compiling without wasmtime's cache: {e}"),
            }
            Engine::new(&config).map_err(|e| format!("cannot create the wasmtime engine: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
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
