//! Local hosts for the two `.wasm` artifacts, demo MCP backends and the CLI.
//!
//! - [`proxy_wasm`]: a proxy-wasm ABI host that plays Envoy for `filter.wasm`.
//! - [`spin`]: a Spin-compatible host that serves `token-api.wasm` over HTTP.
//! - [`package`]: `filter.wasm` as an OCI image (`mcpgw package`).
//! - [`pgserver`]: a loopback PostgreSQL server for the tests and `mcpgw up`.

pub mod backends;
pub mod cli;
pub mod faults;
pub mod package;
pub mod pgserver;
pub mod proxy_wasm;
pub mod spin;
pub mod stack;
