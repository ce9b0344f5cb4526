//! Host calls on the request path, without the SDK's panics.
//!
//! The SDK's wrappers panic on any status they do not expect, and its header
//! map decoder panics on a non-UTF-8 value a client can send; a panic kills
//! the worker's VM. These declare the same ABI imports and report failure
//! as a value instead.

use crate::metrics::Metric;
use core::ptr::{null, null_mut};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};
use std::cell::RefCell;
use std::time::UNIX_EPOCH;

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
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

const OK: u32 = 0;
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
const STREAM_HTTP_REQUEST: u32 = 0;
const STREAM_HTTP_RESPONSE: u32 = 1;

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host filled `data` with `size` bytes it got from
    // `proxy_on_memory_allocate(size)`, which hands out a leaked
    // `Box<[u8]>` of that exact length.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// The serialized pairs of a header map (decode with `headermap::decode`).
pub fn header_block(map_type: u32) -> Vec<u8> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers to locals, as the ABI expects.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    let block = owned(data, size);
    if status == OK {
        block
    } else {
        Vec::new()
    }
}

pub fn remove_request_header(name: &[u8]) -> bool {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) == OK }
}

pub fn set_request_header(name: &str, value: &str) -> bool {
    set_header(REQUEST_HEADERS, name, value)
}

pub fn remove_response_header(name: &[u8]) -> bool {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len()) == OK }
}

pub fn set_response_header(name: &str, value: &str) -> bool {
    set_header(RESPONSE_HEADERS, name, value)
}

fn set_header(map: u32, name: &str, value: &str) -> bool {
    // SAFETY: pointers and lengths of live slices.
    unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
            == OK
    }
}

/// Resumes the request of the effective context.
pub fn resume_request() -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) == OK }
}

/// Resets the stream of the effective context (the SDK's wrapper panics on
/// an unexpected status).
pub fn reset_response() -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_close_stream(STREAM_HTTP_RESPONSE) == OK }
}

/// Makes Envoy pick the route again on the new routing headers. Older hosts
/// lack the function (header changes clear the route cache there anyway).
pub fn clear_route_cache() {
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
        );
    }
    drop(owned(results, size));
}

/// Sets a filter-state value of the effective stream (Envoy stores it as
/// `wasm.<name>`, for access logs and later filters). The SDK's wrapper
/// panics when there is no stream; this reports it.
pub fn set_property(name: &str, value: &[u8]) -> bool {
    // SAFETY: pointers and lengths of live slices.
    unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) == OK }
}

/// Wall-clock time in Unix nanoseconds.
pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

thread_local! {
    static METRIC_IDS: RefCell<[Option<u32>; Metric::ALL.len()]> =
        const { RefCell::new([None; Metric::ALL.len()]) };
}

/// Defines every counter (idempotent: the same name gives the same stat).
pub fn define_metrics() {
    METRIC_IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        for m in Metric::ALL {
            if let Some(id) = ids.get_mut(m as usize) {
                *id = hostcalls::define_metric(MetricType::Counter, m.name()).ok();
            }
        }
    });
}

pub fn inc(m: Metric) {
    add(m, 1);
}

pub fn add(m: Metric, n: u64) {
    if n == 0 {
        return;
    }
    let id = METRIC_IDS.with(|ids| ids.borrow().get(m as usize).copied().flatten());
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}
