//! wasmtime hosts for the filter and the token API.
