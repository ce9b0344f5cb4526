//! A proxy-wasm ABI 0.2.1 host that plays Envoy for `filter.wasm`.
//!
//! It loads the real module on wasmtime, implements the host calls a
//! proxy-wasm 0.2.x filter imports with Envoy's semantics, and drives request
//! and response phases so tests read as "this request gets this outcome":
//!
//! ```no_run
//! use harness::proxy_wasm::{Host, Request};
//! let host = Host::load("target/wasm32-wasip1/release/filter.wasm")?;
//! let mut envoy = host.envoy(r#"{"token_api": {"cluster": "token_api"}}"#)?;
//! let out = envoy.request(Request::get("/health"));
//! assert_eq!(out.status(), Some(200));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: `abi` (host calls), `memory` (guest memory and the pair
//! format), `state` (shared data, metrics, streams), `http` (header maps,
//! requests, responses), `api` (the surface above).

mod abi;
mod api;
mod http;
mod memory;
mod state;

pub use api::{
    Callout, CalloutId, Envoy, Forwarded, Host, HostError, LoadError, Outcome, Paused,
    PluginConfig, Reply, Settings, StreamId,
};
pub use http::{Body, Headers, Request, Response};
pub use state::{LogLevel, LogLine};
