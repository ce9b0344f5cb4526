//! Spin-compatible wasmtime host for `token-api.wasm`.
