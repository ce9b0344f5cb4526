//! What the filter, the token API and the harness must agree on byte for byte:
//! the `mcpctl_pat_` token format (docs/DESIGN.md §3), the scope grammar (docs/DESIGN.md §5)
//! and the JSON of introspection and the revocations feed (docs/DESIGN.md §6).

pub mod format;
pub mod hex;
pub mod scopes;
pub mod uri;
pub mod wire;
