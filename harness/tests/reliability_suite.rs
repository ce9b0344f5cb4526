//! The reliability suite: real Envoy with the real `filter.wasm`, the real
//! `token_api.wasm` on the Spin-compatible host, rmcp backends, under load,
//! under token API faults, and against a catalogue of bad input.
//!
//! Needs `just build` and `just envoy`. The tests share one binary and take
//! turns (one stack at a time on two cores). `SOAK=1` lengthens the load test
//! (`just soak`).

#[path = "reliability_suite/support.rs"]
mod support;

#[path = "reliability_suite/load.rs"]
mod load;

#[path = "reliability_suite/faults.rs"]
mod faults;

#[path = "reliability_suite/catalogue.rs"]
mod catalogue;

#[path = "reliability_suite/flood.rs"]
mod flood;
