//! Envoy proxy-wasm filter (SPEC §7).
