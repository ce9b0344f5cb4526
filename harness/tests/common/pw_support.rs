//! Shared setup for the filter tests: the real `filter.wasm` in the
//! proxy-wasm host, the docs/DESIGN.md §7 configuration, tokens and token API answers.
#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use harness::proxy_wasm::{Callout, Envoy, Host, Outcome, Request};
use mcpgw_token::format;
use serde_json::{json, Value};

pub use mcpgw_token::wire::{INTROSPECT_PATH, REVOCATIONS_PATH as FEED_PATH};

/// `FILTER_WASM`, else the workspace's release build.
pub fn filter_wasm() -> PathBuf {
    let path = std::env::var_os("FILTER_WASM").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip1/release/filter.wasm")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} not found: run `just build` (or `cargo build -p filter --target wasm32-wasip1 \
         --release`) before these tests, or point FILTER_WASM at a built filter",
        path.display()
    );
    path
}

/// The filter, compiled once per test binary.
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::load(filter_wasm()).unwrap_or_else(|e| panic!("{e}")))
}

/// The configuration of docs/DESIGN.md §7.
pub fn spec_config() -> Value {
    json!({
        "token_api": {"cluster": "token_api", "authority": "token-api", "timeout_ms": 500},
        "cache": {"ttl_s": 30, "negative_ttl_s": 5, "max_entries": 10000, "stale_if_error_s": 300},
        "revocation_poll_ms": 1000,
        "headers": {"tenant": "x-mcp-tenant", "project": "x-mcp-project",
                    "token_id": "x-mcp-token-id", "token_name": "x-mcp-token-name",
                    "strip_prefix": "x-mcp-"},
        "bypass_paths": ["/health", "/.well-known/*"],
        "enforce_scopes": true,
        "max_body_bytes": 1048576,
        "realm": "mcp",
        "resource_metadata": null
    })
}

/// `base` with `patch` merged in (objects recursively, anything else replaced).
pub fn merged(mut base: Value, patch: &Value) -> Value {
    match (&mut base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                let slot = b.remove(k).unwrap_or(Value::Null);
                b.insert(k.clone(), merged(slot, v));
            }
            base
        }
        (_, p) => p.clone(),
    }
}

/// A worker running the docs/DESIGN.md §7 configuration changed by `patch`.
pub fn envoy_with(patch: Value) -> Envoy {
    host()
        .envoy(merged(spec_config(), &patch))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The docs/DESIGN.md §7 configuration without the revocations feed, so that moving
/// the clock makes no feed callouts (tests of the feed turn it on).
pub fn envoy() -> Envoy {
    envoy_with(json!({"revocation_poll_ms": 0}))
}

/// A well-formed token; different `n`, different token.
pub fn token(n: u8) -> String {
    format::from_secret(&[n; 32])
}

pub fn sha(token: &str) -> String {
    format::sha256_hex(token)
}

/// Seconds since the epoch on the worker's clock.
pub fn now_s(env: &Envoy) -> u64 {
    env.now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An active introspection answer (docs/DESIGN.md §6) for tenant `acme`.
pub fn active(scopes: &[&str]) -> Value {
    json!({
        "active": true,
        "token_id": "tok_01JD0000000000000000000000",
        "name": "laptop",
        "tenant": "acme",
        "project": "default",
        "scopes": scopes,
        "exp": null,
        "iat": 1_799_000_000u64,
        "cache_ttl_s": 60
    })
}

pub fn all_mcp() -> Value {
    active(&["mcp:*"])
}

pub fn inactive(reason: &str) -> Value {
    json!({"active": false, "reason": reason})
}

/// `POST /mcp` with the bearer token and a JSON-RPC body.
pub fn mcp(token: &str, body: &Value) -> Request {
    Request::post("/mcp")
        .bearer(token)
        .header("accept", "application/json, text/event-stream")
        .json(body)
}

pub fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn tool_call(id: u64, tool: &str) -> Value {
    rpc(id, "tools/call", json!({"name": tool, "arguments": {}}))
}

pub fn initialize(id: u64) -> Value {
    rpc(
        id,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "test", "version": "1"}}),
    )
}

/// Pending introspection callouts, oldest first.
pub fn introspections(env: &Envoy) -> Vec<Callout> {
    env.callouts()
        .into_iter()
        .filter(|c| c.path() == INTROSPECT_PATH)
        .collect()
}

/// Pending revocation feed polls, oldest first.
pub fn feed_polls(env: &Envoy) -> Vec<Callout> {
    env.callouts()
        .into_iter()
        .filter(|c| c.path().starts_with(FEED_PATH))
        .collect()
}

/// The one introspection callout pending.
///
/// # Panics
/// Unless exactly one is pending.
pub fn the_introspection(env: &Envoy) -> Callout {
    let mut pending = introspections(env);
    assert_eq!(pending.len(), 1, "introspection callouts: {pending:#?}");
    pending.remove(0)
}

/// Sends `request`, which must make exactly one introspection callout;
/// answers it with `answer` and returns what came of the request.
pub fn admit(env: &mut Envoy, request: Request, answer: &Value) -> Outcome {
    let stream = env.send(request);
    let paused = env.outcome(stream);
    let callout = the_introspection(env);
    assert_eq!(paused.paused().callouts, vec![callout.id], "{paused:#?}");
    env.answer(callout.id, 200, answer);
    env.outcome(stream)
}

/// Sends a request for `token` and admits it as an `mcp:*` token.
pub fn admit_all(env: &mut Envoy, token: &str) -> Outcome {
    admit(env, mcp(token, &initialize(1)), &all_mcp())
}

/// Asserts that no log line holds a raw token or its secret part.
pub fn assert_no_secret_logged(env: &Envoy, tokens: &[&str]) {
    for t in tokens {
        let needles = [Some(*t), t.strip_prefix(format::PREFIX)];
        // Shorter strings would match by chance ("mcpctl_pat_" alone is no secret).
        for needle in needles.into_iter().flatten().filter(|n| n.len() >= 8) {
            for line in env.logs() {
                assert!(
                    !line.message.contains(needle),
                    "a log line holds a token: {line:?}"
                );
            }
        }
    }
}

/// The `error="…"` of a `WWW-Authenticate: Bearer` challenge.
pub fn challenge_error(www_authenticate: &str) -> Option<String> {
    let at = www_authenticate.find("error=\"")? + "error=\"".len();
    let rest = &www_authenticate[at..];
    Some(rest[..rest.find('"')?].to_string())
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}
