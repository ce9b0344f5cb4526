//! What the filter, the token API and the harness must agree on byte for byte:
//! the `mcpctl_pat_` token format (SPEC §3) and the scope grammar (SPEC §5).

pub mod format;
pub mod scopes;
