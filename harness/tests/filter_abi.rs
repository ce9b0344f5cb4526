//! Routing safety rests on the proxy-wasm ABI the filter declares: Envoy
//! re-selects the route on the filter's header changes by itself only under
//! ABI 0.2.0/0.2.1 (filter/src/abi.rs). These tests fail the day the SDK
//! declares another ABI, so the filter's skipped `clear_route_cache` can never
//! go unnoticed; the e2e tests on real Envoy (tenant routes keyed on the
//! header the filter writes, a 404 route before it) show Envoy doing it.

#[path = "common/pw_support.rs"]
mod pw_support;

use harness::proxy_wasm::Request;
use pw_support::*;

#[test]
fn the_filter_declares_the_abi_its_routing_assumes() {
    let bytes = std::fs::read(filter_wasm()).unwrap();
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &bytes).unwrap();
    let declared: Vec<String> = module
        .exports()
        .map(|e| e.name().to_string())
        .filter(|n| n.starts_with("proxy_abi_version_"))
        .collect();
    assert_eq!(
        declared,
        [filter::abi::DECLARED],
        "filter.wasm declares another proxy-wasm ABI: set filter::abi::DECLARED to it. \
         Past 0.2.1 Envoy no longer picks the route again when the filter writes the \
         x-mcp-* headers, and the filter must call clear_route_cache (it does when \
         filter::abi::header_changes_clear_route says no)"
    );
}

#[test]
fn an_allowed_request_is_routed_again_by_its_header_changes_alone() {
    let mut env = envoy();
    let t = token(1);
    let out = admit_all(&mut env, &t);
    let fwd = out.forwarded();
    assert_eq!(fwd.headers.get("x-mcp-tenant").as_deref(), Some("acme"));
    assert!(
        fwd.route_cache_clears >= 1,
        "the routing headers changed: Envoy clears the route cache: {fwd:#?}"
    );
    let explicit = env.route_cache_clears();
    if filter::abi::HEADER_CHANGES_CLEAR_ROUTE {
        assert_eq!(explicit, 0, "a clear_route_cache call Envoy does not need");
    } else {
        assert_eq!(explicit, 1, "Envoy does not re-select the route by itself");
    }
}

#[test]
fn a_bypass_path_with_stripped_headers_is_routed_again() {
    let mut env = envoy();
    let out = env.request(
        Request::get("/.well-known/x")
            .bearer(&token(1))
            .header("x-mcp-tenant", "victim"),
    );
    let fwd = out.forwarded();
    assert!(fwd.headers.get("x-mcp-tenant").is_none());
    assert!(fwd.headers.get("authorization").is_none());
    assert!(fwd.route_cache_clears >= 1, "{fwd:#?}");
    let explicit = u32::from(!filter::abi::HEADER_CHANGES_CLEAR_ROUTE);
    assert_eq!(env.route_cache_clears(), explicit);
}
