//! Host bindings for the Spin interfaces, generated from `harness/wit/`.
//!
//! WIT `async func`s get `HostWithStore` methods taking an `Accessor` (the
//! default); the synchronous variants that do I/O are made Rust-`async` too so
//! their work (blocking SQLite, network round trips) can leave the executor
//! thread.

wasmtime::component::bindgen!({
    path: "wit",
    world: "mcpgw:spin-host/spin-imports",
    imports: {
        "spin:sqlite/sqlite.[static]connection.open": async,
        "spin:sqlite/sqlite.[method]connection.execute": async,
        "spin:sqlite/sqlite.[method]connection.changes": async,
        "spin:sqlite/sqlite.[method]connection.last-insert-rowid": async,
        "spin:postgres/postgres.[static]connection.open": async,
        "spin:postgres/postgres.[method]connection.query": async,
        "spin:postgres/postgres.[method]connection.execute": async,
        "spin:postgres/postgres.[method]connection-builder.build": async,
        // A full resource table is a trap, as in wasmtime's own hosts.
        "spin:postgres/postgres.[constructor]connection-builder": trappable,
    },
    additional_derives: [PartialEq],
    with: {
        "spin:sqlite/sqlite.connection": super::sqlite::Connection,
        "spin:postgres/postgres.connection": super::postgres::Connection,
        "spin:postgres/postgres.connection-builder": super::postgres::Builder,
    },
});

pub use spin::postgres::postgres;
pub use spin::sqlite::sqlite;
pub use spin::variables::variables;
