//! What the filter, the token API and the harness must agree on byte for byte:
//! the `mcpctl_pat_` token format (docs/DESIGN.md §3), the scope grammar (docs/DESIGN.md §5),
//! rate limits (docs/DESIGN.md §4), the JSON of introspection and the revocations feed
//! (docs/DESIGN.md §6), RFC 3339 timestamps, lowercase hex (`token_sha`, cursors) and the proxy-wasm header-map
//! codec the filter and the harness's host both speak.

pub mod format;
pub mod headermap;
pub mod hex;
pub mod ratelimit;
pub mod rfc3339;
pub mod scopes;
pub mod template;
pub mod uri;
pub mod wire;
