//! Token API Spin component (docs/DESIGN.md §4–§6): mints, lists, describes, revokes,
//! deletes and introspects `mcpctl_pat_` tokens, stored hashed in Spin SQLite or
//! PostgreSQL.
//!
//! Everything but the Spin entry point is plain Rust tested on the host,
//! against the same SQL on SQLite and on a real PostgreSQL server.

pub mod auth;
pub mod body;
pub mod config;
pub mod console;
pub mod cursor;
pub mod error;
pub mod model;
pub mod query;
pub use mcpgw_token::rfc3339;
pub mod routes;
pub mod service;
pub mod storage;
pub mod store;
pub mod ttl;
pub mod ulid;
pub mod validate;

#[cfg(target_arch = "wasm32")]
mod spin;

// SQLite and PostgreSQL on the host stand in for Spin's: host tests only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod testdb;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod testdb_pg;
