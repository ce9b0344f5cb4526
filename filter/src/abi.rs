//! What the proxy-wasm ABI the filter is built for implies for routing.
//!
//! Envoy picks a request's route before any filter runs, so the route that
//! matches the gateway-written `x-mcp-*` headers must be picked again after
//! the filter writes them. Under ABI 0.2.0 and 0.2.1 Envoy clears the route
//! cache itself on every request-header change a wasm filter makes; from the
//! next ABI on it does not (Envoy's changelog: "The route cache will not be
//! cleared by default if the wasm extension modified the request headers and
//! the ABI version of wasm extension is larger than 0.2.1"), and the filter
//! must call `clear_route_cache` itself.

/// The ABI export of the proxy-wasm SDK the filter is built with.
/// `harness/tests/filter_abi.rs` fails when `filter.wasm` exports another:
/// update this, and [`HEADER_CHANGES_CLEAR_ROUTE`] follows.
pub const DECLARED: &str = "proxy_abi_version_0_2_1";

/// Whether Envoy re-selects the route on the filter's header changes alone.
pub const HEADER_CHANGES_CLEAR_ROUTE: bool = header_changes_clear_route(DECLARED.as_bytes());

/// [`HEADER_CHANGES_CLEAR_ROUTE`] for an ABI export name.
pub const fn header_changes_clear_route(abi: &[u8]) -> bool {
    matches!(abi, b"proxy_abi_version_0_2_1" | b"proxy_abi_version_0_2_0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_abis_envoy_clears_the_route_for_skip_the_call() {
        assert!(header_changes_clear_route(b"proxy_abi_version_0_2_1"));
        assert!(header_changes_clear_route(b"proxy_abi_version_0_2_0"));
        for later in [
            "proxy_abi_version_0_2_2",
            "proxy_abi_version_0_3_0",
            "proxy_abi_version_1_0_0",
            "",
        ] {
            assert!(!header_changes_clear_route(later.as_bytes()), "{later}");
        }
    }
}
