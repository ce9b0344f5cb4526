//! Host bindings for the Spin interfaces, generated from `harness/wit/`.
//!
//! WIT `async func`s get `HostWithStore` methods taking an `Accessor` (the
//! default); the synchronous variants are made Rust-`async` too so their
//! blocking SQLite work can leave the executor thread.

wasmtime::component::bindgen!({
    path: "wit",
    world: "mcpgw:spin-host/spin-imports",
    imports: {
        "spin:sqlite/sqlite.[static]connection.open": async,
        "spin:sqlite/sqlite.[method]connection.execute": async,
        "spin:sqlite/sqlite.[method]connection.changes": async,
        "spin:sqlite/sqlite.[method]connection.last-insert-rowid": async,
    },
    additional_derives: [PartialEq],
    with: {
        "spin:sqlite/sqlite.connection": super::sqlite::Connection,
    },
});

pub use spin::sqlite::sqlite;
pub use spin::variables::variables;
