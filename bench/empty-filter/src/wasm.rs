//! The proxy-wasm glue: the empty context, and the probe context.

use crate::ops::{self, Op};
use core::ptr::{null, null_mut};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

// The raw imports the filter uses (the SDK's wrappers decode or allocate more).
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

const REQUEST_HEADERS: u32 = 0;
const SET_NAMES: [&str; 4] = ["x-bench-0", "x-bench-1", "x-bench-2", "x-bench-3"];

struct Root {
    ops: Rc<Vec<Op>>,
    counter: Option<u32>,
    /// A well-formed token for the `validate` and `sha256` ops.
    token: Rc<str>,
}

impl Default for Root {
    fn default() -> Self {
        Root {
            ops: Rc::default(),
            counter: None,
            token: mcpgw_token::format::from_secret(&[7; 32]).into(),
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        match ops::parse(&text) {
            Ok(ops) => {
                if ops.contains(&Op::Metric) {
                    self.counter =
                        hostcalls::define_metric(MetricType::Counter, "bench_probe.count").ok();
                }
                self.ops = Rc::new(ops);
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &format!("empty-filter: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.ops.is_empty() {
            return Some(Box::new(Empty));
        }
        Some(Box::new(Probe {
            ops: self.ops.clone(),
            counter: self.counter,
            token: self.token.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Does nothing: every callback is the SDK's default.
struct Empty;

impl Context for Empty {}
impl HttpContext for Empty {}

/// Makes the configured host calls in the request-header phase.
struct Probe {
    ops: Rc<Vec<Op>>,
    counter: Option<u32>,
    token: Rc<str>,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut sets = 0;
        let mut adds = 0;
        for op in self.ops.iter() {
            match op {
                Op::HeaderMap => drop(header_block()),
                Op::Time => {
                    let _ = hostcalls::get_current_time();
                }
                Op::Metric => {
                    if let Some(id) = self.counter {
                        let _ = hostcalls::increment_metric(id, 1);
                    }
                }
                Op::Remove => remove(b"authorization"),
                Op::Set => {
                    replace(SET_NAMES[sets % SET_NAMES.len()], "bench");
                    sets += 1;
                }
                Op::Add => {
                    add(SET_NAMES[adds % SET_NAMES.len()], "bench");
                    adds += 1;
                }
                Op::Get => drop(header_value(b"authorization")),
                Op::Nop => {}
                Op::ClearRouteCache => clear_route_cache(),
                Op::Pairs => rewrite_all(),
                Op::Validate => {
                    let ok = mcpgw_token::format::validate(std::hint::black_box(&self.token));
                    std::hint::black_box(ok.is_ok());
                }
                Op::Sha256 => {
                    std::hint::black_box(cache_key(std::hint::black_box(&self.token)));
                }
                Op::Property => set_property("mcp_auth", RECORD),
                Op::Shared => shared_cas(),
            }
        }
        Action::Continue
    }
}

/// The record the filter writes for an allowed call (filter/src/record.rs).
const RECORD: &str = r#"{"decision":"allow","cache":"hit","token_id":"tok_01JD0000000000000000000000","token_name":"laptop","tenant":"acme","project":"default","token_sha":"017934fff2d6023c08b4e4c2d7ba2cc46494b3d606eb0ea93583ed0b179586a1","method":"tools/call","name":"whoami"}"#;

fn set_property(name: &str, value: &str) {
    // SAFETY: pointers and lengths of live slices.
    unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
}

/// One slot of the filter's rate limiter: read, then write a 17-byte value
/// back with the version read (filter/src/wasm/worker.rs `admit`).
fn shared_cas() {
    const SLOT: &str = "bench_probe.l.slot";
    let cas = match hostcalls::get_shared_data(SLOT) {
        Ok((_, cas)) => cas,
        Err(_) => None,
    };
    let _ = hostcalls::set_shared_data(SLOT, Some(&[1u8; 17]), cas);
}

/// `filter::cache::key_of`: the token's SHA-256 as bytes.
fn cache_key(token: &str) -> [u8; 32] {
    mcpgw_token::format::sha256(token)
}

/// Takes back a buffer the host allocated through `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host filled `data` with `size` bytes from the SDK's
    // allocator, which hands out a leaked `Box<[u8]>` of that length.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

fn header_block() -> Vec<u8> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers to locals, as the ABI expects.
    unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) };
    owned(data, size)
}

fn remove(name: &[u8]) {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) };
}

fn replace(name: &str, value: &str) {
    write_header(proxy_replace_header_map_value, name, value);
}

fn add(name: &str, value: &str) {
    write_header(proxy_add_header_map_value, name, value);
}

/// The signature `proxy_replace_header_map_value` and `proxy_add_header_map_value` share.
type HeaderWrite = unsafe extern "C" fn(u32, *const u8, usize, *const u8, usize) -> u32;

fn write_header(call: HeaderWrite, name: &str, value: &str) {
    // SAFETY: pointers and lengths of live slices.
    unsafe {
        call(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
}

fn header_value(name: &[u8]) -> Vec<u8> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointer and length of a live slice; out-pointers to locals.
    unsafe {
        proxy_get_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    owned(data, size)
}

fn clear_route_cache() {
    const NAME: &str = "clear_route_cache";
    let mut results = null_mut();
    let mut size = 0;
    // SAFETY: pointer and length of a static string; out-pointers to locals.
    unsafe {
        proxy_call_foreign_function(
            NAME.as_ptr(),
            NAME.len(),
            null(),
            0,
            &mut results,
            &mut size,
        )
    };
    drop(owned(results, size));
}

/// One read and one write of the whole map instead of a remove and four sets.
fn rewrite_all() {
    let Ok(pairs) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
        return;
    };
    let mut out: Vec<(&str, &[u8])> = pairs
        .iter()
        .filter(|(k, _)| k != "authorization" && !SET_NAMES.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    for name in SET_NAMES {
        out.push((name, b"bench"));
    }
    let _ = hostcalls::set_map_bytes(MapType::HttpRequestHeaders, out);
}
