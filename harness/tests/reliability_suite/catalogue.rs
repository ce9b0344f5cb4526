//! The bad-input catalogue: one table of requests a careless or hostile
//! client can send, to the gateway (real Envoy + `filter.wasm`) and to the
//! token API (the real component on the Spin-compatible host), each with the
//! status and error code it must get. Every request is written as raw bytes
//! on its own TCP connection, so duplicate headers, non-UTF-8 bytes and
//! oversized headers reach the server exactly as written.
//!
//! The same table is `harness/tests/CATALOGUE.md`; this test fails when the
//! file is stale. `UPDATE_CATALOGUE=1` rewrites it.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::stack::{self, Stack};
use serde_json::{json, Value};

use crate::support::{self, Answer, KeepAlive, Minted};

const MAX_BODY: usize = 16 * 1024;
const CATALOGUE: &str = "harness/tests/CATALOGUE.md";
/// No error code: a success, or an answer that is not ours (Envoy, backend).
const NONE: &str = "—";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Gateway,
    TokenApi,
}

/// Tokens and keys the cases use.
struct Ctx {
    admin: String,
    /// `mcp:*`, tenant acme.
    acme: Minted,
    /// Only `mcp:tools/call:whoami`, tenant acme.
    narrow: Minted,
    /// `rbac: empty`, tenant globex.
    empty: Minted,
    /// Only `tokens:read`, tenant acme.
    reader: Minted,
    /// `tokens:write` + `mcp:tools/list`, tenant acme.
    writer: Minted,
    /// Tenant initech, which has no backend cluster of its own.
    initech: Minted,
    /// Only `mcp:resources/read:file:///srv/public/*`, tenant acme.
    public_files: Minted,
    revoked: Minted,
    expired: Minted,
    unknown: String,
    /// One request an hour, already spent.
    spent: Minted,
    /// `tokens:write` + `mcp:*`, limited to 10 a minute.
    limited_writer: Minted,
}

/// One catalogue entry.
struct Case {
    target: Target,
    what: &'static str,
    /// The request, as the table shows it.
    request: &'static str,
    status: u16,
    code: &'static str,
    build: fn(&Ctx) -> Raw,
    /// For 200s through the gateway: the tenant that must have answered.
    served: Option<&'static str>,
}

/// A request as bytes on the wire.
struct Raw {
    method: &'static str,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Raw {
    fn new(method: &'static str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn h(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }
    fn bearer(self, token: &str) -> Self {
        self.h("authorization", format!("Bearer {token}"))
    }
    fn json(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.h("content-type", "application/json")
    }
    /// The MCP headers every Streamable HTTP POST carries.
    fn mcp(self) -> Self {
        self.h("accept", "application/json, text/event-stream")
            .h("mcp-protocol-version", "2026-07-28")
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nhost: catalogue\r\n",
            self.method, self.path
        )
        .into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A stateless JSON-RPC request body.
fn rpc(id: u64, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn call(tool: &str) -> Value {
    rpc(7, "tools/call", json!({"name": tool, "arguments": {}}))
}

/// `POST <path>` calling `tool`, with the standard headers matching the body.
fn tool_post(path: &str, tool: &str) -> Raw {
    Raw::new("POST", path)
        .mcp()
        .h("mcp-method", "tools/call")
        .h("mcp-name", tool)
        .json(call(tool).to_string())
}

fn whoami(path: &str) -> Raw {
    tool_post(path, "whoami")
}

/// `POST /mcp` with `token` and this exact body text.
fn raw_body(token: &str, body: &str) -> Raw {
    Raw::new("POST", "/mcp").mcp().bearer(token).json(body)
}

/// `resources/read` of `uri`.
fn read_uri(token: &str, uri: &str) -> Raw {
    let body = rpc(9, "resources/read", json!({"uri": uri}));
    Raw::new("POST", "/mcp")
        .mcp()
        .bearer(token)
        .json(body.to_string())
}

/// A token with one character changed (the checksum no longer matches).
fn flipped(token: &str) -> String {
    let mut t = token.to_string();
    let c = if &t[30..31] == "A" { "B" } else { "A" };
    t.replace_range(30..31, c);
    t
}

fn create(body: Value) -> Raw {
    Raw::new("POST", "/api/v1/mcptokens").json(body.to_string())
}

/// A create naming this `rate_limit`, as the admin.
fn create_limited(x: &Ctx, limit: Value) -> Raw {
    create(json!({"name": "n", "tenant": "acme", "rate_limit": limit})).bearer(&x.admin)
}

/// `PATCH /api/v1/mcptokens/{id}` with this body.
fn update(id: &str, body: Value) -> Raw {
    Raw::new("PATCH", format!("/api/v1/mcptokens/{id}")).json(body.to_string())
}

// Compact rows keep the catalogue readable as a table.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Target::{Gateway as G, TokenApi as T};
    let c = |target, what, request, status, code, build: fn(&Ctx) -> Raw| Case {
        target, what, request, status, code, build, served: None,
    };
    let ok = |what, request, tenant, build: fn(&Ctx) -> Raw| Case {
        target: G, what, request, status: 200, code: NONE, build, served: Some(tenant),
    };
    vec![
        // The gateway: credentials.
        c(G, "no credential", "POST /mcp, no Authorization", 401, "missing_token",
            |_| whoami("/mcp")),
        c(G, "empty bearer", "`Authorization: Bearer`", 401, "missing_token",
            |_| whoami("/mcp").h("authorization", "Bearer")),
        c(G, "other scheme", "`Authorization: Basic dXNlcjpwYXNz`", 401, "missing_token",
            |_| whoami("/mcp").h("authorization", "Basic dXNlcjpwYXNz")),
        c(G, "token under another scheme", "`Authorization: Token <valid>`", 401, "missing_token",
            |x| whoami("/mcp").h("authorization", format!("Token {}", x.acme.raw))),
        c(G, "two Authorization headers", "two `Authorization: Bearer <valid>` lines", 401,
            "missing_token", |x| whoami("/mcp").bearer(&x.acme.raw).bearer(&x.acme.raw)),
        c(G, "two tokens in one header", "`Authorization: Bearer <valid>, Bearer <valid>`", 401,
            "missing_token",
            |x| whoami("/mcp").h("authorization", format!("Bearer {0}, Bearer {0}", x.acme.raw))),
        c(G, "no space after the scheme", "`Authorization: Bearer<valid>`", 401, "missing_token",
            |x| whoami("/mcp").h("authorization", format!("Bearer{}", x.acme.raw))),
        // Envoy hands the filter such a value altered: it never reads as the
        // token's prefix, so the answer is the malformed-token one.
        c(G, "non-UTF-8 token bytes", "`Authorization: Bearer mcpctl_pat_\\xff\\xfe…` (raw bytes)",
            401, "malformed_token", |_| {
                let mut v = b"Bearer mcpctl_pat_\xff\xfe".to_vec();
                v.extend_from_slice(&[b'a'; 40]);
                whoami("/mcp").h("authorization", v)
            }),
        ok("lowercase scheme", "`Authorization: bearer <valid>`", "acme",
            |x| whoami("/mcp").h("authorization", format!("bearer {}", x.acme.raw))),
        ok("uppercase scheme, extra blanks", "`Authorization: BEARER   <valid>  `", "acme",
            |x| whoami("/mcp").h("authorization", format!("BEARER   {}  ", x.acme.raw))),
        c(G, "wrong prefix", "`Bearer ghp_…` (another vendor's token)", 401, "malformed_token",
            |_| whoami("/mcp").bearer("ghp_16C7e42F292c6912E7710c838347Ae178B4a")),
        c(G, "checksum mismatch", "`Bearer <valid with one character changed>`", 401,
            "malformed_token", |x| whoami("/mcp").bearer(&flipped(&x.acme.raw))),
        c(G, "truncated token", "`Bearer <valid minus its last character>`", 401,
            "malformed_token", |x| whoami("/mcp").bearer(&x.acme.raw[..x.acme.raw.len() - 1])),
        c(G, "character outside base62", "`Bearer mcpctl_pat_…-…`", 401, "malformed_token",
            |x| {
                let mut t = x.acme.raw.clone();
                t.replace_range(20..21, "-");
                whoami("/mcp").bearer(&t)
            }),
        c(G, "trailing garbage", "`Authorization: Bearer <valid> extra`", 401, "malformed_token",
            |x| whoami("/mcp").h("authorization", format!("Bearer {} extra", x.acme.raw))),
        c(G, "admin key as bearer", "`Bearer <token API admin key>`", 401, "malformed_token",
            |x| whoami("/mcp").bearer(&x.admin)),
        c(G, "unknown token", "`Bearer <well-formed, never issued>`", 401, "invalid_token",
            |x| whoami("/mcp").bearer(&x.unknown)),
        c(G, "revoked token", "`Bearer <revoked>`", 401, "invalid_token",
            |x| whoami("/mcp").bearer(&x.revoked.raw)),
        c(G, "expired token", "`Bearer <expired>`", 401, "invalid_token",
            |x| whoami("/mcp").bearer(&x.expired.raw)),
        c(G, "token in the query", "`POST /mcp?access_token=<valid>`, no header", 401,
            "token_in_query", |x| whoami(&format!("/mcp?access_token={}", x.acme.raw))),
        c(G, "token in the query and the header", "`?access_token=<valid>` + `Bearer <valid>`",
            401, "token_in_query",
            |x| whoami(&format!("/mcp?access_token={}", x.acme.raw)).bearer(&x.acme.raw)),
        c(G, "encoded query name", "`POST /mcp?x=1&ACCESS%5Ftoken=abc` + `Bearer <valid>`", 401,
            "token_in_query", |x| whoami("/mcp?x=1&ACCESS%5Ftoken=abc").bearer(&x.acme.raw)),
        // The gateway: headers and routing.
        ok("spoofed tenant headers", "acme token + `X-MCP-Tenant: globex`, `x-mcp-token-id: forged`",
            "acme", |x| {
                whoami("/mcp")
                    .bearer(&x.acme.raw)
                    .h("X-MCP-Tenant", "globex")
                    .h("x-mcp-token-id", "tok_forged")
            }),
        ok("non-UTF-8 bytes in another header", "valid token + `x-note: \\xe9t\\xe9` (raw bytes)",
            "acme", |x| whoami("/mcp").bearer(&x.acme.raw).h("x-note", b"\xe9t\xe9")),
        c(G, "tenant without a backend", "initech token on `/mcp` (Envoy's no-route answer)", 404,
            NONE, |x| whoami("/mcp").bearer(&x.initech.raw)),
        ok("tenant via the shared backend", "initech token on `/shared/mcp`", "initech",
            |x| whoami("/shared/mcp").bearer(&x.initech.raw)),
        c(G, "oversized header", "valid token + a 70 KiB `x-pad` header (Envoy's limit: 60 KiB)",
            431, NONE, |x| whoami("/mcp").bearer(&x.acme.raw).h("x-pad", "p".repeat(70 * 1024))),
        c(G, "dot segments do not reach a bypass", "`POST /.well-known/../mcp`, no token", 401,
            "missing_token", |_| whoami("/.well-known/../mcp")),
        c(G, "encoded dot segments", "`POST /.well-known/%2e%2e/mcp`, no token", 401,
            "missing_token", |_| whoami("/.well-known/%2e%2e/mcp")),
        c(G, "bypass path", "`GET /health`, no token", 200, NONE, |_| Raw::new("GET", "/health")),
        // The gateway: bodies and scopes.
        c(G, "tool outside the scopes", "whoami-only token calls `list_findings`", 403, "-32003",
            |x| tool_post("/mcp", "list_findings").bearer(&x.narrow.raw)),
        c(G, "batch with one forbidden call", "whoami-only token, batch [whoami, list_findings]",
            403, "-32003", |x| {
                let body = json!([call("whoami"), {
                    "jsonrpc": "2.0", "id": 8, "method": "tools/call",
                    "params": {"name": "list_findings", "arguments": {}}}]);
                Raw::new("POST", "/mcp").mcp().bearer(&x.narrow.raw).json(body.to_string())
            }),
        c(G, "empty rbac calls a tool", "`rbac: empty` token calls whoami", 403, "-32003",
            |x| tool_post("/mcp", "whoami").bearer(&x.empty.raw)),
        c(G, "management-only token calls a tool", "`tokens:read` token calls whoami", 403,
            "-32003", |x| tool_post("/mcp", "whoami").bearer(&x.reader.raw)),
        c(G, "lying Mcp-Name", "`Mcp-Name: whoami`, body calls `list_findings` (mcp:* token)",
            400, "-32020", |x| {
                Raw::new("POST", "/mcp")
                    .mcp()
                    .bearer(&x.acme.raw)
                    .h("mcp-method", "tools/call")
                    .h("mcp-name", "whoami")
                    .json(call("list_findings").to_string())
            }),
        c(G, "lying Mcp-Method", "`Mcp-Method: tools/list`, body is `tools/call`", 400,
            "-32020", |x| {
                Raw::new("POST", "/mcp")
                    .mcp()
                    .bearer(&x.acme.raw)
                    .h("mcp-method", "tools/list")
                    .json(call("whoami").to_string())
            }),
        c(G, "body is not JSON", "whoami-only token, body `{\"jsonrpc\": `", 400, "-32700",
            |x| Raw::new("POST", "/mcp").mcp().bearer(&x.narrow.raw).json("{\"jsonrpc\": ")),
        c(G, "body is not an object", "whoami-only token, body `42`", 400, "-32600",
            |x| Raw::new("POST", "/mcp").mcp().bearer(&x.narrow.raw).json("42")),
        c(G, "method is not a string", "whoami-only token, `\"method\": 7`", 400, "-32600",
            |x| {
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": 7});
                Raw::new("POST", "/mcp").mcp().bearer(&x.narrow.raw).json(body.to_string())
            }),
        // The gateway: one reading of every message (what JSON parsers read differently).
        c(G, "key case differs", "`rbac: empty` token, `\"Method\": \"tools/call\"` (Go reads it)",
            400, "-32600", |x| raw_body(&x.empty.raw,
                r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"list_findings"}}"#)),
        c(G, "name twice, case differs", "whoami-only token, `params {name: whoami, NAME: list_findings}`",
            400, "-32600", |x| raw_body(&x.narrow.raw,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","NAME":"list_findings"}}"#)),
        c(G, "NUL in a key", "whoami-only token, `\"method\\u0000\": \"tools/call\"`", 400, "-32600",
            |x| raw_body(&x.narrow.raw,
                r#"{"jsonrpc":"2.0","id":1,"method\u0000":"tools/call","params":{"name":"list_findings"}}"#)),
        c(G, "Unicode case folding", "whoami-only token, `\"re\u{17f}ult\"` (long s) beside `method`",
            400, "-32600", |x| raw_body(&x.narrow.raw,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"re\u{17f}ult\":{},\"params\":{\"name\":\"whoami\"}}")),
        c(G, "duplicate method", "whoami-only token, `method` twice", 400, "-32600",
            |x| raw_body(&x.narrow.raw,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"list_findings"}}"#)),
        c(G, "neither request nor response", "whoami-only token, `{\"jsonrpc\":\"2.0\",\"id\":1}`",
            400, "-32600", |x| raw_body(&x.narrow.raw, r#"{"jsonrpc":"2.0","id":1}"#)),
        c(G, "Mcp-Method twice", "two `Mcp-Method` headers (mcp:* token)", 400, "-32020",
            |x| tool_post("/mcp", "whoami").bearer(&x.acme.raw).h("mcp-method", "tools/list")),
        // The gateway: resource URIs.
        c(G, "dot segments out of a resource scope",
            "`file:///srv/public/*` token reads `file:///srv/public/../../etc/shadow`", 403, "-32003",
            |x| read_uri(&x.public_files.raw, "file:///srv/public/../../etc/shadow")),
        c(G, "encoded dot segments out of a resource scope",
            "`file:///srv/public/*` token reads `file:///srv/public/%2e%2e/%2E%2E/etc/shadow`", 403,
            "-32003", |x| read_uri(&x.public_files.raw, "file:///srv/public/%2e%2e/%2E%2E/etc/shadow")),
        c(G, "encoded slash in a resource URI",
            "`file:///srv/public/*` token reads `file:///srv/public/..%2Fsecret`", 403, "-32003",
            |x| read_uri(&x.public_files.raw, "file:///srv/public/..%2Fsecret")),
        // The gateway: bypass paths carry no credential upstream.
        c(G, "token on a bypass path", "`GET /.well-known/oauth-protected-resource` + `Bearer <valid>` (the backend's 404)",
            404, NONE, |x| Raw::new("GET", "/.well-known/oauth-protected-resource").bearer(&x.acme.raw)),
        c(G, "body over max_body_bytes", "whoami-only token, 20 KiB body (limit 16 KiB)", 413,
            "body_too_large", |x| {
                let mut body = call("whoami");
                body["params"]["arguments"]["pad"] = json!("x".repeat(20 * 1024));
                Raw::new("POST", "/mcp").mcp().bearer(&x.narrow.raw).json(body.to_string())
            }),
        // The gateway: rate limits.
        c(G, "rate limit spent", "a one-an-hour token's second call", 429, "-32029",
            |x| whoami("/mcp").bearer(&x.spent.raw)),
        c(G, "rate limit spent, no body", "`GET /mcp` (event stream) with that token", 429,
            "rate_limited", |x| Raw::new("GET", "/mcp").mcp().bearer(&x.spent.raw)),
        c(G, "wrong content type", "valid token, `content-type: text/plain` (the backend answers)",
            415, NONE, |x| {
                let mut r = Raw::new("POST", "/mcp").mcp().bearer(&x.acme.raw);
                r.body = call("whoami").to_string().into_bytes();
                r.h("content-type", "text/plain")
            }),
        // The token API.
        c(T, "no credential", "`POST /api/v1/mcptokens`, no Authorization", 401, "unauthorized",
            |_| create(json!({"name": "n", "tenant": "acme"}))),
        c(T, "wrong admin key", "`Bearer <not the admin key>`", 401, "unauthorized",
            |_| create(json!({"name": "n", "tenant": "acme"})).bearer("not-the-admin-key")),
        c(T, "two Authorization headers", "two `Authorization: Bearer <admin>` lines", 401,
            "unauthorized", |x| create(json!({"name": "two", "tenant": "acme"}))
                .bearer(&x.admin).bearer(&x.admin)),
        c(T, "non-UTF-8 credential", "`Authorization: Bearer \\xff…` (raw bytes)", 401,
            "unauthorized", |_| create(json!({"name": "n", "tenant": "acme"}))
                .h("authorization", b"Bearer \xff\xfe\xfd")),
        c(T, "lowercase scheme", "`Authorization: bearer <admin>`", 201, NONE,
            |x| create(json!({"name": "lower", "tenant": "acme"}))
                .h("authorization", format!("bearer {}", x.admin))),
        c(T, "wrong content type", "`content-type: text/plain`", 415, "unsupported_media_type",
            |x| {
                let mut r = Raw::new("POST", "/api/v1/mcptokens").bearer(&x.admin);
                r.body = b"name=x&tenant=acme".to_vec();
                r.h("content-type", "text/plain")
            }),
        c(T, "invalid JSON", "body `{\"name\": \"x\", `", 400, "invalid_json",
            |x| Raw::new("POST", "/api/v1/mcptokens").bearer(&x.admin).json("{\"name\": \"x\", ")),
        c(T, "JSON that is not an object", "body `[1, 2]`", 400, "invalid_json",
            |x| Raw::new("POST", "/api/v1/mcptokens").bearer(&x.admin).json("[1, 2]")),
        c(T, "unknown field", "`{\"nmae\": \"typo\", …}`", 400, "unknown_field",
            |x| create(json!({"name": "n", "tenant": "acme", "nmae": "typo"})).bearer(&x.admin)),
        c(T, "bad ttl", "`\"ttl\": \"5 fortnights\"`", 400, "invalid_ttl",
            |x| create(json!({"name": "n", "tenant": "acme", "ttl": "5 fortnights"}))
                .bearer(&x.admin)),
        c(T, "ttl and expires_at", "both `ttl` and `expires_at`", 400, "invalid_ttl",
            |x| create(json!({"name": "n", "tenant": "acme", "ttl": "1d",
                "expires_at": "2099-01-01T00:00:00Z"})).bearer(&x.admin)),
        c(T, "expiry in the past", "`\"expires_at\": \"2001-01-01T00:00:00Z\"`", 400,
            "invalid_expires_at",
            |x| create(json!({"name": "n", "tenant": "acme", "expires_at": "2001-01-01T00:00:00Z"}))
                .bearer(&x.admin)),
        c(T, "ttl over max_ttl", "`\"ttl\": \"400d\"` (max 365d)", 400, "invalid_ttl",
            |x| create(json!({"name": "n", "tenant": "acme", "ttl": "400d"})).bearer(&x.admin)),
        c(T, "reserved tenant", "`\"tenant\": \"_system\"`", 400, "invalid_tenant",
            |x| create(json!({"name": "n", "tenant": "_system"})).bearer(&x.admin)),
        c(T, "tenant charset", "`\"tenant\": \"Acme!\"`", 400, "invalid_tenant",
            |x| create(json!({"name": "n", "tenant": "Acme!"})).bearer(&x.admin)),
        c(T, "project charset", "`\"project\": \"Web App\"`", 400, "invalid_project",
            |x| create(json!({"name": "n", "tenant": "acme", "project": "Web App"}))
                .bearer(&x.admin)),
        c(T, "name too long", "65-character `name`", 400, "invalid_name",
            |x| create(json!({"name": "n".repeat(65), "tenant": "acme"})).bearer(&x.admin)),
        c(T, "control character in name", "`\"name\": \"a\\u0007b\"`", 400, "invalid_name",
            |x| create(json!({"name": "a\u{7}b", "tenant": "acme"})).bearer(&x.admin)),
        c(T, "duplicate name", "the name of a live acme token again", 409, "name_taken",
            |x| create(json!({"name": "cat-acme", "tenant": "acme"})).bearer(&x.admin)),
        c(T, "scope grammar", "`\"scopes\": [\"mcp:tools/list:x\"]`", 400, "invalid_scopes",
            |x| create(json!({"name": "n", "tenant": "acme", "scopes": ["mcp:tools/list:x"]}))
                .bearer(&x.admin)),
        c(T, "scopes and rbac", "both `scopes` and `rbac`", 400, "invalid_rbac",
            |x| create(json!({"name": "n", "tenant": "acme", "scopes": ["mcp:*"], "rbac": "empty"}))
                .bearer(&x.admin)),
        c(T, "rate limit of 0", "`\"rate_limit\": {\"requests\": 0, \"window_s\": 60}`", 400,
            "invalid_rate_limit", |x| create_limited(x, json!({"requests": 0, "window_s": 60}))),
        c(T, "negative rate limit", "`\"rate_limit\": {\"requests\": -5, \"window_s\": 60}`", 400,
            "invalid_rate_limit", |x| create_limited(x, json!({"requests": -5, "window_s": 60}))),
        c(T, "huge rate limit", "`\"requests\": 4294967296` (2^32; the limit is 1000000)", 400,
            "invalid_rate_limit",
            |x| create_limited(x, json!({"requests": 4_294_967_296u64, "window_s": 60}))),
        c(T, "rate limit window of 0", "`\"rate_limit\": {\"requests\": 60, \"window_s\": 0}`", 400,
            "invalid_rate_limit", |x| create_limited(x, json!({"requests": 60, "window_s": 0}))),
        c(T, "rate limit window over a day", "`\"window_s\": 86401`", 400, "invalid_rate_limit",
            |x| create_limited(x, json!({"requests": 60, "window_s": 86_401}))),
        c(T, "burst over the requests", "`{\"requests\": 10, \"window_s\": 60, \"burst\": 11}`", 400,
            "invalid_rate_limit",
            |x| create_limited(x, json!({"requests": 10, "window_s": 60, "burst": 11}))),
        c(T, "rate limit as text", "`\"rate_limit\": \"60/m\"`", 400, "invalid_rate_limit",
            |x| create_limited(x, json!("60/m"))),
        c(T, "rate limit numbers as strings", "`{\"requests\": \"60\", \"window_s\": \"60\"}`", 400,
            "invalid_rate_limit", |x| create_limited(x, json!({"requests": "60", "window_s": "60"}))),
        c(T, "fractional rate limit", "`{\"requests\": 1.5, \"window_s\": 60}`", 400,
            "invalid_rate_limit", |x| create_limited(x, json!({"requests": 1.5, "window_s": 60}))),
        c(T, "rate limit as an array", "`\"rate_limit\": [60, 60]`", 400, "invalid_rate_limit",
            |x| create_limited(x, json!([60, 60]))),
        c(T, "unknown field in a rate limit", "`{\"requests\": 60, \"window_s\": 60, \"per\": \"minute\"}`",
            400, "invalid_rate_limit",
            |x| create_limited(x, json!({"requests": 60, "window_s": 60, "per": "minute"}))),
        c(T, "limited token mints an unlimited one", "10/m `tokens:write` token, `\"rate_limit\": null`",
            403, "rate_limit_exceeds_ceiling",
            |x| create(json!({"name": "n", "tenant": "acme", "rate_limit": null}))
                .bearer(&x.limited_writer.raw)),
        c(T, "limited token raises its own limit", "10/m token, `PATCH` itself to 11/m", 403,
            "rate_limit_exceeds_ceiling", |x| update(&x.limited_writer.id,
                json!({"rate_limit": {"requests": 11, "window_s": 60}})).bearer(&x.limited_writer.raw)),
        c(T, "update without a rate limit", "`PATCH /api/v1/mcptokens/{id}` body `{}`", 400,
            "invalid_rate_limit", |x| update(&x.acme.id, json!({})).bearer(&x.admin)),
        c(T, "update of another field", "`PATCH …/{id}` body `{\"name\": \"renamed\"}`", 400,
            "unknown_field", |x| update(&x.acme.id, json!({"name": "renamed"})).bearer(&x.admin)),
        c(T, "update with a bad limit", "`PATCH …/{id}` with `\"requests\": 0`", 400,
            "invalid_rate_limit", |x| update(&x.acme.id,
                json!({"rate_limit": {"requests": 0, "window_s": 60}})).bearer(&x.admin)),
        c(T, "update of a revoked token", "`PATCH …/{revoked id}`", 409, "token_revoked",
            |x| update(&x.revoked.id, json!({"rate_limit": null})).bearer(&x.admin)),
        c(T, "read-only token changes a limit", "`tokens:read` token, `PATCH …/{id}`", 403,
            "insufficient_scope",
            |x| update(&x.acme.id, json!({"rate_limit": null})).bearer(&x.reader.raw)),
        c(T, "ceiling violation", "`tokens:write`+`mcp:tools/list` token mints `mcp:*`", 403,
            "scope_exceeds_ceiling",
            |x| create(json!({"name": "n", "tenant": "acme", "scopes": ["mcp:*"]}))
                .bearer(&x.writer.raw)),
        c(T, "other tenant", "acme `tokens:write` token mints for globex", 403,
            "tenant_mismatch",
            |x| create(json!({"name": "n", "tenant": "globex", "scopes": ["mcp:tools/list"]}))
                .bearer(&x.writer.raw)),
        c(T, "read-only token revokes", "`tokens:read` token, `POST …/{id}/revoke`", 403,
            "insufficient_scope", |x| {
                Raw::new("POST", format!("/api/v1/mcptokens/{}/revoke", x.acme.id))
                    .bearer(&x.reader.raw)
            }),
        c(T, "body over 64 KiB", "70 KiB create body", 413, "body_too_large",
            |x| create(json!({"name": "n", "tenant": "acme", "pad": "x".repeat(70 * 1024)}))
                .bearer(&x.admin)),
        c(T, "introspect without a token", "`GET …/introspect`, no Authorization", 401,
            "unauthorized", |_| Raw::new("GET", "/api/v1/mcptokens/introspect")),
        c(T, "introspect, token in the query", "`GET …/introspect?access_token=<valid>`", 400,
            "unknown_parameter", |x| {
                Raw::new("GET", format!("/api/v1/mcptokens/introspect?access_token={}", x.acme.raw))
            }),
        c(T, "unknown token id", "`GET /api/v1/mcptokens/tok_01ARZ3NDEKTSV4RRFFQ69G5FAV`", 404,
            "not_found",
            |x| Raw::new("GET", "/api/v1/mcptokens/tok_01ARZ3NDEKTSV4RRFFQ69G5FAV").bearer(&x.admin)),
        c(T, "bad limit", "`GET /api/v1/mcptokens?limit=0`", 400, "invalid_limit",
            |x| Raw::new("GET", "/api/v1/mcptokens?limit=0").bearer(&x.admin)),
        c(T, "forged cursor", "`GET /api/v1/mcptokens?cursor=zzz`", 400, "invalid_cursor",
            |x| Raw::new("GET", "/api/v1/mcptokens?cursor=zzz").bearer(&x.admin)),
        c(T, "unknown parameter", "`GET /api/v1/mcptokens?colour=blue`", 400, "unknown_parameter",
            |x| Raw::new("GET", "/api/v1/mcptokens?colour=blue").bearer(&x.admin)),
        c(T, "bad feed cursor", "`GET …/revocations?since=-4`", 400, "invalid_since",
            |_| Raw::new("GET", "/api/v1/mcptokens/revocations?since=-4")),
        c(T, "wrong method", "`PUT /api/v1/mcptokens`", 405, "method_not_allowed",
            |x| Raw::new("PUT", "/api/v1/mcptokens").bearer(&x.admin).json("{}")),
    ]
}

fn code_of(a: &Answer) -> String {
    support::error_code(&String::from_utf8_lossy(&a.body)).unwrap_or_else(|| NONE.into())
}

/// Sends on a connection of its own (the request asks to close it).
async fn send(port: u16, raw: &Raw) -> Result<Answer, String> {
    let mut conn = KeepAlive::new(SocketAddr::from(([127, 0, 0, 1], port)));
    tokio::time::timeout(Duration::from_secs(10), conn.send(&raw.bytes()))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| format!("no answer: {e}"))
}

/// RFC 3339 UTC for a Unix time, from `chrono`: an encoder independent of the
/// token API's own.
fn rfc3339(unix: u64) -> String {
    let secs = i64::try_from(unix).expect("a Unix time in range");
    let time = chrono::DateTime::from_timestamp(secs, 0).expect("a representable time");
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn markdown(cases: &[Case]) -> String {
    let mut s = String::from(
        "# Bad-input catalogue\n\n\
         Requests a careless or hostile client can send, and what each gets. Gateway \
         rows go through real Envoy with `filter.wasm`; token API rows go to the real \
         component on the Spin-compatible host. Codes are `error.code` of the JSON body \
         (JSON-RPC error codes for 400/403 from the gateway); — means no error body of \
         ours (a success, or Envoy's or the backend's own answer).\n\n\
         Checked by `harness/tests/reliability_suite/catalogue.rs`, which fails when this \
         file is stale; regenerate with `UPDATE_CATALOGUE=1 cargo test -p harness --test \
         reliability_suite catalogue`.\n\n\
         | # | target | case | request | status | code |\n\
         |---|---|---|---|---|---|\n",
    );
    for (i, c) in cases.iter().enumerate() {
        let target = match c.target {
            Target::Gateway => "gateway",
            Target::TokenApi => "token API",
        };
        let code = if c.code == NONE {
            NONE.to_string()
        } else {
            format!("`{}`", c.code)
        };
        s.push_str(&format!(
            "| {} | {target} | {} | {} | {} | {code} |\n",
            i + 1,
            c.what,
            c.request.replace('|', "\\|"),
            c.status
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_catalogue() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());

    // The Markdown copy must match the table (checked first: no stack needed).
    let path = stack::workspace_root().join(CATALOGUE);
    let want = markdown(&cases);
    if std::env::var("UPDATE_CATALOGUE").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
        eprintln!("catalogue: wrote {}", path.display());
    } else {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale: run `UPDATE_CATALOGUE=1 cargo test -p harness --test reliability_suite \
             catalogue` and commit it",
            path.display()
        );
    }

    let _one = support::SERIAL.lock().await;
    let (stack, _dir) = support::start(
        |c| {
            c["max_body_bytes"] = json!(MAX_BODY);
        },
        false,
    )
    .await;
    let ctx = context(&stack).await;

    let mut failures = Vec::new();
    eprintln!("catalogue: {} cases", cases.len());
    eprintln!("  # | target    | status | code                  | case");
    for (i, case) in cases.iter().enumerate() {
        let port = match case.target {
            Target::Gateway => stack.ports.gateway,
            Target::TokenApi => stack.ports.token_api,
        };
        let raw = (case.build)(&ctx);
        let (status, code, problem) = match send(port, &raw).await {
            Ok(a) => {
                let code = code_of(&a);
                let problem = verify(case, &a, &code);
                (a.status.to_string(), code, problem)
            }
            Err(e) => ("-".to_string(), NONE.to_string(), Some(e)),
        };
        eprintln!(
            "{:>3} | {:<9} | {status:>6} | {code:<21} | {}{}",
            i + 1,
            if case.target == Target::Gateway {
                "gateway"
            } else {
                "token API"
            },
            case.what,
            problem
                .as_deref()
                .map(|p| format!("  <-- {p}"))
                .unwrap_or_default()
        );
        if let Some(p) = problem {
            failures.push(format!("#{} {}: {p}", i + 1, case.what));
        }
    }
    // Nothing a client sent took a worker down: the gateway still serves.
    let r = send(stack.ports.gateway, &whoami("/mcp").bearer(&ctx.acme.raw))
        .await
        .unwrap();
    assert_eq!(
        r.status, 200,
        "the gateway stopped serving after the catalogue"
    );
    stack.stop().await;
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What else an answer must show beyond status and code.
fn verify(case: &Case, a: &Answer, code: &str) -> Option<String> {
    if a.status != case.status || code != case.code {
        return Some(format!(
            "expected {} {}, got {} {code}: {:.200}",
            case.status,
            case.code,
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    if case.target == Target::Gateway && a.status == 401 {
        let challenge = a.header("www-authenticate").unwrap_or("");
        if !challenge.starts_with("Bearer realm=\"mcp\"") {
            return Some(format!("401 without a Bearer challenge: {challenge:?}"));
        }
    }
    if a.status == 401 && case.target == Target::TokenApi && a.header("www-authenticate").is_none()
    {
        return Some("401 without WWW-Authenticate".into());
    }
    if let Some(tenant) = case.served {
        let body = String::from_utf8_lossy(&a.body);
        match support::parse_whoami(&body) {
            Some(w) if w.tenant == tenant && !w.saw_authorization => {}
            Some(w) => return Some(format!("served by {w:?}, want tenant {tenant}")),
            None if case.what == "bypass path" => {}
            None => return Some(format!("no whoami answer: {body:.200}")),
        }
    }
    None
}

async fn context(stack: &Stack) -> Ctx {
    let http = support::client(4);
    let mint = |name: &str, tenant: &str, extra: Value| {
        let mut body = json!({"name": name, "tenant": tenant});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        support::mint(&http, stack, body)
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Expires in 2 s; never used before then, so never cached as active.
    let expires = now + 2;
    let expired = mint(
        "cat-expiring",
        "acme",
        json!({"expires_at": rfc3339(expires)}),
    )
    .await
    .unwrap();
    let revoked = mint("cat-revoked", "acme", json!({})).await.unwrap();
    support::remove(&http, stack, &revoked.id, false)
        .await
        .unwrap();
    let ctx = Ctx {
        admin: stack.admin_key.clone(),
        acme: mint("cat-acme", "acme", json!({})).await.unwrap(),
        narrow: mint(
            "cat-narrow",
            "acme",
            json!({"scopes": ["mcp:tools/call:whoami"]}),
        )
        .await
        .unwrap(),
        empty: mint("cat-empty", "globex", json!({"rbac": "empty"}))
            .await
            .unwrap(),
        reader: mint("cat-reader", "acme", json!({"scopes": ["tokens:read"]}))
            .await
            .unwrap(),
        writer: mint(
            "cat-writer",
            "acme",
            json!({"scopes": ["tokens:write", "mcp:tools/list"]}),
        )
        .await
        .unwrap(),
        initech: mint("cat-initech", support::INITECH, json!({}))
            .await
            .unwrap(),
        public_files: mint(
            "cat-public-files",
            "acme",
            json!({"scopes": ["mcp:resources/read:file:///srv/public/*"]}),
        )
        .await
        .unwrap(),
        revoked,
        expired,
        unknown: mcpgw_token::format::generate().unwrap(),
        spent: mint(
            "cat-spent",
            "acme",
            json!({"rate_limit": {"requests": 1, "window_s": 3600}}),
        )
        .await
        .unwrap(),
        limited_writer: mint(
            "cat-limited-writer",
            "acme",
            json!({"scopes": ["tokens:write", "mcp:*"],
                   "rate_limit": {"requests": 10, "window_s": 60}}),
        )
        .await
        .unwrap(),
    };
    // Spend the one-an-hour token's unit.
    let spend = send(stack.ports.gateway, &whoami("/mcp").bearer(&ctx.spent.raw))
        .await
        .unwrap();
    assert_eq!(spend.status, 200, "the limited token's first call");
    // Wait out the expiry (plus a second of clock granularity).
    let left = (expires + 1).saturating_sub(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    tokio::time::sleep(Duration::from_secs(left)).await;
    ctx
}

#[test]
fn rfc3339_of_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
}
