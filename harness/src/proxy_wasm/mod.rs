//! proxy-wasm ABI host that plays Envoy for `filter.wasm`.
