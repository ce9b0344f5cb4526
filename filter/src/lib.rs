//! Envoy proxy-wasm filter (docs/DESIGN.md §7): turns an opaque `mcpctl_pat_` bearer token
//! into trusted tenant routing headers.
//!
//! Everything that decides something is plain Rust in the modules below and is
//! unit-tested on the host (`cargo test -p filter`). The proxy-wasm glue in
//! [`wasm`] only moves bytes between Envoy and these modules, and exists only
//! when built for `wasm32`.

pub mod abi;
pub mod bearer;
pub mod cache;
pub mod coalesce;
pub mod config;
pub use mcpgw_token::headermap;
pub mod introspect;
pub mod jsonrpc;
pub mod listing;
pub mod memo;
pub mod message;
pub mod metrics;
pub mod ratelimit;
pub mod record;
pub mod replies;
pub mod request;
pub mod shared;
pub mod sse;

#[cfg(target_arch = "wasm32")]
mod wasm;
