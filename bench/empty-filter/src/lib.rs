//! The wasm floor for `just bench`.
//!
//! With an empty plugin configuration every HTTP context is [`wasm`]'s
//! `Empty`: the SDK's default callbacks only, no host call, so a benchmark of
//! it measures what loading any Rust proxy-wasm 0.2.5 filter costs Envoy.
//!
//! With a configuration such as `header_map,time,set,set` each request makes
//! exactly those host calls (the ones on the real filter's cache-hit path,
//! see [`ops::Op`]), so the cost of each call can be measured on its own.

pub mod ops;

#[cfg(target_arch = "wasm32")]
mod wasm;
