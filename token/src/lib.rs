//! What the filter, the token API and the harness must agree on byte for byte:
//! the `mcpctl_pat_` token format (docs/DESIGN.md §3) and the scope grammar (docs/DESIGN.md §5).

pub mod format;
pub mod scopes;
