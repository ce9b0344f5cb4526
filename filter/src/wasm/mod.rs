//! The proxy-wasm glue: moves bytes between Envoy and the pure modules.
//!
//! One [`root::Root`] per worker VM owns the worker state ([`worker::Worker`]:
//! cache, in-flight callouts, feed cursor); each request gets an
//! [`http::Http`] context sharing it through an `Rc`.

mod host;
mod http;
mod response;
mod root;
mod worker;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs a panic hook that logs the panic before the VM dies.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}
