//! The host functions a proxy-wasm 0.2.5 filter imports (`env.proxy_*` and a
//! few WASI calls), with Envoy's semantics. Everything else the module imports
//! is linked as a trap, so a filter calling something Envoy-specific that is
//! not modelled here fails loudly instead of getting a made-up answer.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::http::{Headers, Response};
use super::memory::{self, copy_out, decode_pairs, encode_pairs, read, read_str, write_u32};
use super::state::{lock, LocalReply, LogLevel, PendingCallout, Worker};

/// `proxy_status_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Status {
    NotFound = 1,
    BadArgument = 2,
    InvalidMemoryAccess = 6,
    CasMismatch = 8,
    InternalFailure = 10,
}

type HostResult = wasmtime::Result<u32>;

fn status(r: Result<(), Status>) -> HostResult {
    Ok(r.err().map_or(0, |s| s as u32))
}

/// For calls that may run the guest allocator (which may itself trap).
fn status_or_trap(r: wasmtime::Result<Result<(), Status>>) -> HostResult {
    status(r?)
}

// Map and buffer ids of ABI 0.2.1.
const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_REQUEST_TRAILERS: u32 = 1;
const MAP_RESPONSE_HEADERS: u32 = 2;
const MAP_RESPONSE_TRAILERS: u32 = 3;
const MAP_CALL_RESPONSE_HEADERS: u32 = 6;
const MAP_CALL_RESPONSE_TRAILERS: u32 = 7;

const BUFFER_REQUEST_BODY: u32 = 0;
const BUFFER_RESPONSE_BODY: u32 = 1;
const BUFFER_CALL_RESPONSE_BODY: u32 = 4;
const BUFFER_VM_CONFIGURATION: u32 = 6;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

const STREAM_REQUEST: u32 = 0;
const STREAM_RESPONSE: u32 = 1;

// WASI errno values.
const WASI_SUCCESS: u32 = 0;
const WASI_BADF: u32 = 8;
const WASI_FAULT: u32 = 21;
const WASI_NOTSUP: u32 = 58;

/// Defines every supported import; `module` is needed to trap the rest.
pub(crate) fn link(linker: &mut Linker<Worker>, module: &wasmtime::Module) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller<'_, Worker>, level: u32, ptr: u32, len: u32| {
            status(log(&mut c, level, ptr, len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Caller<'_, Worker>, ret: u32| {
            let level = c.data().log_level.to_abi();
            status(write_u32(&mut c, ret, level))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, Worker>, ret: u32| {
            let now = c.data().now_ns();
            status(memory::write_u64(&mut c, ret, now))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, Worker>, ms: u32| {
            let w = c.data_mut();
            if ms == 0 {
                w.tick_period = None;
                w.next_tick_ns = None;
            } else {
                let period = Duration::from_millis(u64::from(ms));
                w.tick_period = Some(period);
                w.next_tick_ns = Some(w.now_ns() + period.as_nanos() as u64);
            }
            status(Ok(()))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, Worker>,
         kind: u32,
         start: u32,
         max: u32,
         ret_ptr: u32,
         ret_size: u32| {
            status_or_trap(get_buffer_bytes(
                &mut c, kind, start, max, ret_ptr, ret_size,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, Worker>, kind: u32, start: u32, size: u32, ptr: u32, len: u32| {
            status(set_buffer_bytes(&mut c, kind, start, size, ptr, len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, Worker>, kind: u32, ret_ptr: u32, ret_size: u32| {
            // Like Envoy, a map that is not available reads as empty.
            let pairs = read_map(c.data(), kind).unwrap_or_default();
            let bytes = encode_pairs(pairs.pairs());
            status_or_trap(copy_out(&mut c, &bytes, ret_ptr, ret_size))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, Worker>, kind: u32, ptr: u32, len: u32| {
            let r = read(&c, ptr, len).and_then(|bytes| {
                let pairs = decode_pairs(&bytes);
                mutate_map(c.data_mut(), kind, |m| *m = Headers::from_pairs(&pairs))
            });
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, Worker>, kind: u32, kp: u32, kl: u32, ret_ptr: u32, ret_size: u32| {
            let value = read_str(&c, kp, kl)
                .and_then(|key| read_map(c.data(), kind)?.get(&key).ok_or(Status::NotFound));
            match value {
                Ok(v) => status_or_trap(copy_out(&mut c, v.as_bytes(), ret_ptr, ret_size)),
                Err(s) => status(Err(s)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Caller<'_, Worker>, kind: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            let r = read_str(&c, kp, kl).and_then(|k| {
                let v = read_str(&c, vp, vl)?;
                mutate_map(c.data_mut(), kind, |m| m.add(&k, &v))
            });
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, Worker>, kind: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            let r = read_str(&c, kp, kl).and_then(|k| {
                let v = read_str(&c, vp, vl)?;
                mutate_map(c.data_mut(), kind, |m| m.replace(&k, &v))
            });
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, Worker>, kind: u32, kp: u32, kl: u32| {
            let r =
                read_str(&c, kp, kl).and_then(|k| mutate_map(c.data_mut(), kind, |m| m.remove(&k)));
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Caller<'_, Worker>, pp: u32, pl: u32, ret_ptr: u32, ret_size: u32| {
            let value = read(&c, pp, pl).and_then(|path| {
                // Path segments are NUL-separated; only plugin facts are modelled.
                let key = String::from_utf8_lossy(&path).replace('\0', ".");
                c.data()
                    .properties
                    .get(&key)
                    .cloned()
                    .ok_or(Status::NotFound)
            });
            match value {
                Ok(v) => status_or_trap(copy_out(&mut c, &v, ret_ptr, ret_size)),
                Err(s) => status(Err(s)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, Worker>, kp: u32, kl: u32, ret_ptr: u32, ret_size: u32, ret_cas: u32| {
            let entry = read_str(&c, kp, kl).and_then(|key| {
                lock(&c.data().process)
                    .shared
                    .get(&key)
                    .ok_or(Status::NotFound)
            });
            match entry {
                Ok((value, cas)) => status_or_trap(
                    copy_out(&mut c, &value, ret_ptr, ret_size)
                        .map(|r| r.and_then(|()| write_u32(&mut c, ret_cas, cas))),
                ),
                Err(s) => status(Err(s)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, Worker>, kp: u32, kl: u32, vp: u32, vl: u32, cas: u32| {
            let r = read_str(&c, kp, kl).and_then(|key| {
                let value = read(&c, vp, vl)?;
                let w = c.data_mut();
                if w.shared_write_hook
                    .as_ref()
                    .is_some_and(|h| key.starts_with(&h.prefix))
                {
                    if let Some(hook) = w.shared_write_hook.take() {
                        (hook.run)();
                    }
                }
                lock(&c.data().process).shared.set(&key, &value, cas)
            });
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Caller<'_, Worker>, pp: u32, pl: u32, vp: u32, vl: u32| {
            let r = read(&c, pp, pl).and_then(|path| {
                let value = read(&c, vp, vl)?;
                // Envoy keeps it as filter state `wasm.<path>` of the stream;
                // outside a stream there is none to hold it.
                let key = format!("wasm.{}", String::from_utf8_lossy(&path));
                let stream = c.data_mut().effective_stream().ok_or(Status::NotFound)?;
                stream.filter_state.insert(key, value);
                Ok(())
            });
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Caller<'_, Worker>, kind: u32| status(continue_stream(c.data_mut(), kind)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: Caller<'_, Worker>, kind: u32| {
            let w = c.data_mut();
            let id = w.effective;
            let r = match (w.streams.get_mut(&id), kind) {
                (Some(s), STREAM_REQUEST | STREAM_RESPONSE) => {
                    s.reset = true;
                    Ok(())
                }
                _ => Err(Status::BadArgument),
            };
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, Worker>,
         code: u32,
         _details_ptr: u32,
         _details_len: u32,
         body_ptr: u32,
         body_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         _grpc_status: i32| {
            let r = read(&c, body_ptr, body_len).and_then(|body| {
                let headers = decode_pairs(&read(&c, headers_ptr, headers_len)?);
                send_local_response(c.data_mut(), code, body, &headers);
                Ok(())
            });
            status(r)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller<'_, Worker>,
         up_ptr: u32,
         up_len: u32,
         h_ptr: u32,
         h_len: u32,
         b_ptr: u32,
         b_len: u32,
         t_ptr: u32,
         t_len: u32,
         timeout_ms: u32,
         ret_token: u32| {
            let call = (|| {
                let cluster = read_str(&c, up_ptr, up_len)?;
                let headers = decode_pairs(&read(&c, h_ptr, h_len)?);
                let body = read(&c, b_ptr, b_len)?;
                let trailers = decode_pairs(&read(&c, t_ptr, t_len)?);
                http_call(c.data_mut(), cluster, &headers, body, &trailers, timeout_ms)
            })();
            match call {
                Ok(token) => status(write_u32(&mut c, ret_token, token)),
                Err(s) => status(Err(s)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Caller<'_, Worker>, id: u32| {
            let w = c.data_mut();
            if id == w.root_id || w.streams.contains_key(&id) {
                w.effective = id;
                status(Ok(()))
            } else {
                status(Err(Status::BadArgument))
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: Caller<'_, Worker>,
         name_ptr: u32,
         name_len: u32,
         _args_ptr: u32,
         _args_len: u32,
         ret_ptr: u32,
         ret_size: u32| {
            let r = read_str(&c, name_ptr, name_len).and_then(|name| {
                if name != "clear_route_cache" {
                    return Err(Status::NotFound);
                }
                let w = c.data_mut();
                w.route_cache_clears += 1;
                if let Some(s) = w.effective_stream() {
                    s.route_cache_clears += 1;
                }
                // No result: Envoy writes a null pointer and size 0.
                write_u32(&mut c, ret_ptr, 0)?;
                write_u32(&mut c, ret_size, 0)
            });
            status(r)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: Caller<'_, Worker>| {
        let w = c.data_mut();
        let id = w.effective;
        if w.streams.contains_key(&id) && !w.done_requested.contains(&id) {
            w.done_requested.push(id);
            status(Ok(()))
        } else {
            status(Err(Status::NotFound))
        }
    })?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Caller<'_, Worker>, kind: u32, name_ptr: u32, name_len: u32, ret_id: u32| {
            let id = read_str(&c, name_ptr, name_len).and_then(|name| {
                let w = c.data_mut();
                let mut p = lock(&w.process);
                w.metric_ids.define(&mut p.metrics, kind, &name)
            });
            match id {
                Ok(id) => status(write_u32(&mut c, ret_id, id)),
                Err(s) => status(Err(s)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: Caller<'_, Worker>, id: u32, offset: i64| {
            let w = c.data();
            status(
                w.metric_ids
                    .increment(&mut lock(&w.process).metrics, id, offset),
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: Caller<'_, Worker>, id: u32, value: u64| {
            let w = c.data();
            status(
                w.metric_ids
                    .record(&mut lock(&w.process).metrics, id, value),
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Caller<'_, Worker>, id: u32, ret: u32| {
            let w = c.data();
            let value = w.metric_ids.get(&mut lock(&w.process).metrics, id);
            match value {
                Ok(v) => status(memory::write_u64(&mut c, ret, v)),
                Err(s) => status(Err(s)),
            }
        },
    )?;
    link_wasi(linker)?;
    linker.define_unknown_imports_as_traps(module)?;
    Ok(())
}

/// The WASI calls Envoy provides to proxy-wasm modules.
fn link_wasi(linker: &mut Linker<Worker>) -> wasmtime::Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    // No environment variables are configured for the plugin.
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: Caller<'_, Worker>, count: u32, size: u32| {
            let r = write_u32(&mut c, count, 0).and_then(|()| write_u32(&mut c, size, 0));
            Ok(if r.is_ok() { WASI_SUCCESS } else { WASI_FAULT })
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |_: Caller<'_, Worker>, _env: u32, _buf: u32| Ok(WASI_SUCCESS),
    )?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: Caller<'_, Worker>, fd: u32, iovs: u32, iovs_len: u32, nwritten: u32| {
            let level = match fd {
                1 => LogLevel::Info,
                2 => LogLevel::Error,
                _ => return Ok(WASI_BADF),
            };
            let mut text = Vec::new();
            for i in 0..iovs_len {
                let Some(at) = i.checked_mul(8).and_then(|o| iovs.checked_add(o)) else {
                    return Ok(WASI_FAULT);
                };
                let Ok(iov) = read(&c, at, 8) else {
                    return Ok(WASI_FAULT);
                };
                let buf = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                match read(&c, buf, len) {
                    Ok(b) => text.extend_from_slice(&b),
                    Err(_) => return Ok(WASI_FAULT),
                }
            }
            let written = text.len() as u32;
            if text.last() == Some(&b'\n') {
                text.pop();
            }
            if !text.is_empty() {
                let message = String::from_utf8_lossy(&text).into_owned();
                c.data_mut().note(level, message);
            }
            Ok(match write_u32(&mut c, nwritten, written) {
                Ok(()) => WASI_SUCCESS,
                Err(_) => WASI_FAULT,
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |_: Caller<'_, Worker>, code: u32| -> wasmtime::Result<()> {
            Err(wasmtime::format_err!("the filter called proc_exit({code})"))
        },
    )?;
    // Envoy serves only the realtime clock (id 0) and answers NOTSUP otherwise.
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: Caller<'_, Worker>, id: u32, _precision: u64, ret: u32| {
            if id != 0 {
                return Ok(WASI_NOTSUP);
            }
            let now = c.data().now_ns();
            Ok(match memory::write_u64(&mut c, ret, now) {
                Ok(()) => WASI_SUCCESS,
                Err(_) => WASI_FAULT,
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut c: Caller<'_, Worker>, buf: u32, len: u32| {
            let bytes = c.data_mut().random_bytes(len as usize);
            Ok(match memory::write(&mut c, buf, &bytes) {
                Ok(()) => WASI_SUCCESS,
                Err(_) => WASI_FAULT,
            })
        },
    )?;
    Ok(())
}

fn log(c: &mut Caller<'_, Worker>, level: u32, ptr: u32, len: u32) -> Result<(), Status> {
    let level = LogLevel::from_abi(level).ok_or(Status::BadArgument)?;
    let message = read_str(c, ptr, len)?;
    c.data_mut().note(level, message);
    Ok(())
}

/// A copy of a header map as the effective context sees it.
fn read_map(w: &Worker, kind: u32) -> Result<Headers, Status> {
    let stream = w.streams.get(&w.effective);
    match kind {
        MAP_REQUEST_HEADERS => stream.map(|s| s.request_headers.clone()),
        MAP_RESPONSE_HEADERS => stream
            .filter(|s| s.response_headers_open || !s.response_headers.is_empty())
            .map(|s| s.response_headers.clone()),
        MAP_CALL_RESPONSE_HEADERS => w.call_response.as_ref().map(|r| r.headers.clone()),
        MAP_CALL_RESPONSE_TRAILERS => w.call_response.as_ref().map(|r| r.trailers.clone()),
        // Requests and responses here carry no trailers.
        MAP_REQUEST_TRAILERS | MAP_RESPONSE_TRAILERS => None,
        _ => None,
    }
    .ok_or(Status::BadArgument)
}

/// Changes a header map of the effective stream. Request headers can change
/// only until they go on to the router; every change to them clears the
/// route cache (Envoy, ABI 0.2.1).
fn mutate_map(w: &mut Worker, kind: u32, f: impl FnOnce(&mut Headers)) -> Result<(), Status> {
    let id = w.effective;
    let Some(stream) = w.streams.get_mut(&id) else {
        return Err(Status::BadArgument);
    };
    match kind {
        MAP_REQUEST_HEADERS if stream.request_headers_open => {
            f(&mut stream.request_headers);
            stream.route_cache_clears += 1;
            Ok(())
        }
        MAP_REQUEST_HEADERS => {
            w.note(
                LogLevel::Critical,
                format!("[host] stream {id}: request headers changed after they went upstream; Envoy refuses this"),
            );
            Err(Status::BadArgument)
        }
        MAP_RESPONSE_HEADERS if stream.response_headers_open => {
            f(&mut stream.response_headers);
            Ok(())
        }
        _ => Err(Status::BadArgument),
    }
}

fn get_buffer_bytes(
    c: &mut Caller<'_, Worker>,
    kind: u32,
    start: u32,
    max: u32,
    ret_ptr: u32,
    ret_size: u32,
) -> wasmtime::Result<Result<(), Status>> {
    let w = c.data();
    let stream = w.streams.get(&w.effective);
    let buffer: Vec<u8> = match kind {
        // Outside its body phase a stream's body reads as empty, as in Envoy.
        BUFFER_REQUEST_BODY => match stream {
            Some(s) if s.in_request_body => s.request_buffer.clone(),
            _ => Vec::new(),
        },
        BUFFER_RESPONSE_BODY => match stream {
            Some(s) if s.in_response_body => s.response_buffer.clone(),
            _ => Vec::new(),
        },
        BUFFER_CALL_RESPONSE_BODY => match &w.call_response {
            Some(r) => r.body.clone(),
            None => return Ok(Err(Status::NotFound)),
        },
        BUFFER_VM_CONFIGURATION => w.vm_config.clone(),
        BUFFER_PLUGIN_CONFIGURATION if w.configuring => w.plugin_config.clone(),
        _ => return Ok(Err(Status::NotFound)),
    };
    let (start, max) = (start as usize, max as usize);
    if start.checked_add(max).is_none() || start > buffer.len() {
        return Ok(Err(Status::BadArgument));
    }
    let end = (start + max).min(buffer.len());
    if end == start {
        return Ok(Ok(()));
    }
    copy_out(c, &buffer[start..end], ret_ptr, ret_size)
}

/// Envoy's `Buffer::copyFrom`: prepend (0, 0), replace all (0, >= len),
/// append (start >= len); anything else is refused.
fn set_buffer_bytes(
    c: &mut Caller<'_, Worker>,
    kind: u32,
    start: u32,
    size: u32,
    ptr: u32,
    len: u32,
) -> Result<(), Status> {
    let data = read(c, ptr, len)?;
    let w = c.data_mut();
    let stream = w.streams.get_mut(&w.effective).ok_or(Status::NotFound)?;
    let buffer = match kind {
        BUFFER_REQUEST_BODY if stream.in_request_body => &mut stream.request_buffer,
        BUFFER_RESPONSE_BODY if stream.in_response_body => &mut stream.response_buffer,
        _ => return Err(Status::NotFound),
    };
    let (start, size) = (start as usize, size as usize);
    if start == 0 && size == 0 {
        buffer.splice(0..0, data);
    } else if start == 0 && size >= buffer.len() {
        *buffer = data;
    } else if start >= buffer.len() {
        buffer.extend_from_slice(&data);
    } else {
        return Err(Status::BadArgument);
    }
    Ok(())
}

fn continue_stream(w: &mut Worker, kind: u32) -> Result<(), Status> {
    let id = w.effective;
    let Some(stream) = w.streams.get_mut(&id) else {
        // Envoy has no stream to continue from a root context and ignores it.
        w.note(
            LogLevel::Warn,
            format!("[host] continue_stream on context {id}, which is not a stream: ignored (set the effective context first)"),
        );
        return Ok(());
    };
    match kind {
        STREAM_REQUEST => stream.resume_request = true,
        STREAM_RESPONSE => stream.resume_response = true,
        _ => return Err(Status::BadArgument),
    }
    Ok(())
}

/// Envoy's local reply: `:status`, `content-length`, `content-type:
/// text/plain` for a non-empty body, then the filter's headers replace
/// same-named ones. It is sent after the current callback returns.
fn send_local_response(w: &mut Worker, code: u32, body: Vec<u8>, headers: &[(String, String)]) {
    let id = w.effective;
    let Some(stream) = w.streams.get_mut(&id) else {
        w.note(
            LogLevel::Warn,
            format!("[host] send_local_response on context {id}, which is not a stream: ignored"),
        );
        return;
    };
    let content_type: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("content-type", "text/plain")]
    };
    let mut response = Response::new(code as u16, content_type, body);
    for (k, v) in headers {
        response.headers.replace(k, v);
    }
    stream.local_reply = Some(LocalReply {
        response,
        by_filter: true,
    });
}

/// Records a callout after Envoy's checks: a known cluster and the
/// `:method`, `:path` and `:authority` headers, else `BadArgument`.
fn http_call(
    w: &mut Worker,
    cluster: String,
    headers: &[(String, String)],
    body: Vec<u8>,
    trailers: &[(String, String)],
    timeout_ms: u32,
) -> Result<u32, Status> {
    if !w.clusters.contains(&cluster) {
        return Err(Status::BadArgument);
    }
    let mut headers = Headers::from_pairs(headers);
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| !headers.contains(h))
    {
        return Err(Status::BadArgument);
    }
    if !body.is_empty() {
        headers.replace("content-length", &body.len().to_string());
    }
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
    let token = w.next_callout;
    w.next_callout += 1;
    let stream = w.streams.contains_key(&w.effective).then_some(w.effective);
    if let Some(s) = stream.and_then(|id| w.streams.get_mut(&id)) {
        s.callouts.push(token);
    }
    let deadline_ns = timeout.map(|t| w.now_ns() + t.as_nanos() as u64);
    w.callouts.insert(
        token,
        PendingCallout {
            cluster,
            headers,
            body,
            trailers: Headers::from_pairs(trailers),
            timeout,
            deadline_ns,
            stream,
        },
    );
    Ok(token)
}
