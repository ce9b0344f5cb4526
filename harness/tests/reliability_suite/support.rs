//! What the reliability tests share: one stack at a time, minting and
//! revoking through the token API, and the cheap request whose answer proves
//! which tenant served it (a stateless `tools/call whoami`).

use std::net::SocketAddr;
use std::time::Duration;

use harness::stack::{self, Ports, Stack, StackExtras, StackOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Envoys with two workers each compete for two cores: one stack at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The third tenant: no backend cluster of its own, served by the shared
/// backend (`/shared/mcp`), which reads the tenant from the trusted header.
pub const INITECH: &str = "initech";
pub const TENANTS: [&str; 3] = ["acme", "globex", INITECH];

/// A fresh stack with `tweak` applied to the default filter configuration.
pub async fn start(tweak: impl FnOnce(&mut Value), faults: bool) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = stack::default_filter_config();
    tweak(&mut config);
    let opts = StackOptions {
        data_dir: dir.path().to_path_buf(),
        ports: Ports::default(),
        admin_key: stack::random_admin_key().expect("admin key"),
        filter_config: config,
        envoy_concurrency: 2,
    };
    let extras = StackExtras {
        token_api_faults: faults,
        ..StackExtras::default()
    };
    // Free ports are picked, released, then bound: on a machine shared with
    // other test runs one can be taken in between, so try again.
    let mut attempt = 1;
    let stack = loop {
        match Stack::start_with(opts.clone(), extras.clone()).await {
            Ok(s) => break s,
            Err(e) if attempt < 3 => {
                eprintln!("stack did not start (attempt {attempt}), retrying: {e:#}");
                attempt += 1;
            }
            Err(e) => panic!("stack did not start: {e:#}"),
        }
    };
    (stack, dir)
}

/// A client for many requests: pooled connections, no system proxy.
pub fn client(max_idle: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(max_idle)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

/// A minted token.
#[derive(Debug, Clone)]
pub struct Minted {
    pub raw: String,
    pub id: String,
    pub tenant: String,
}

/// Mints with the admin key, straight to the token API (never through the
/// fault proxy).
pub async fn mint(http: &reqwest::Client, stack: &Stack, body: Value) -> anyhow::Result<Minted> {
    let resp = http
        .post(format!("{}/api/v1/mcptokens", stack.token_api_url()))
        .bearer_auth(&stack.admin_key)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let v: Value = resp.json().await?;
    anyhow::ensure!(status == 201, "minting {body} failed: {status} {v}");
    let s = |k: &str| v[k].as_str().map(str::to_string);
    match (s("token"), s("id"), s("tenant")) {
        (Some(raw), Some(id), Some(tenant)) => Ok(Minted { raw, id, tenant }),
        _ => anyhow::bail!("create answer without token/id/tenant: {v}"),
    }
}

/// Revokes (`delete` false) or deletes a token; errors unless 200/204.
pub async fn remove(
    http: &reqwest::Client,
    stack: &Stack,
    id: &str,
    delete: bool,
) -> anyhow::Result<()> {
    let base = format!("{}/api/v1/mcptokens/{id}", stack.token_api_url());
    let req = if delete {
        http.delete(base)
    } else {
        http.post(format!("{base}/revoke"))
    };
    let resp = req.bearer_auth(&stack.admin_key).send().await?;
    let status = resp.status().as_u16();
    anyhow::ensure!(
        status == 200 || status == 204,
        "{} {id}: {status} {}",
        if delete { "delete" } else { "revoke" },
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// Introspects `raw` straight at the token API.
pub async fn introspect(http: &reqwest::Client, stack: &Stack, raw: &str) -> Value {
    let resp = http
        .get(format!(
            "{}/api/v1/mcptokens/introspect",
            stack.token_api_url()
        ))
        .bearer_auth(raw)
        .send()
        .await
        .expect("token API reachable");
    assert_eq!(resp.status(), 200, "introspect answered {}", resp.status());
    resp.json().await.expect("introspect JSON")
}

/// The gateway path that serves `tenant`: its own cluster, or the shared
/// backend for a tenant without one.
pub fn path_for(tenant: &str, shared: bool) -> &'static str {
    if shared || tenant == INITECH {
        "/shared/mcp"
    } else {
        "/mcp"
    }
}

/// The backend that must answer for `tenant` on `path`.
pub fn expected_backend(tenant: &str, path: &str) -> String {
    if path == "/shared/mcp" {
        "backend:shared".to_string()
    } else {
        format!("backend:{tenant}")
    }
}

/// A stateless (MCP 2026-07-28) `tools/call whoami`: no session, one POST,
/// and the answer names the backend, the tenant and the gateway headers.
pub fn whoami(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    id: u64,
) -> reqwest::RequestBuilder {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": "whoami", "arguments": {},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    }}});
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "whoami")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req
}

/// The bytes of a stateless `whoami` POST on a kept-alive connection (the
/// load loop's request; [`whoami`] is the same through reqwest).
pub fn whoami_bytes(path: &str, token: Option<&str>, extra: &[(&str, &str)], id: u64) -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": "whoami", "arguments": {},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    }}})
    .to_string();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\nmcp-protocol-version: 2026-07-28\r\n\
         mcp-method: tools/call\r\nmcp-name: whoami\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// An answer read by [`KeepAlive`].
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Names lowercased, values trimmed (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client on one kept-alive connection, reconnecting
/// when the server closes it. The load loop spends its CPU here, and a
/// debug-built general client costs several times more per request than
/// the gateway itself.
pub struct KeepAlive {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// Sends `request` (complete bytes) and reads the whole answer. A
    /// kept-alive connection the server closed meanwhile is retried once on
    /// a fresh one.
    pub async fn send(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        let reused = self.conn.is_some();
        match self.try_send(request).await {
            Err(e) if reused && is_stale_connection(&e) => {
                self.conn = None;
                self.try_send(request).await
            }
            other => other,
        }
    }

    async fn try_send(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let result = exchange(conn, request).await;
        match &result {
            Ok((_, keep)) if *keep => {}
            _ => self.conn = None,
        }
        result.map(|(a, _)| a)
    }
}

fn is_stale_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
    )
}

/// One request/answer; also says whether the connection may be reused.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
) -> std::io::Result<(Answer, bool)> {
    use std::io::{Error, ErrorKind};
    let bad = |what: &str| Error::new(ErrorKind::InvalidData, what.to_string());
    conn.get_mut().write_all(request).await?;
    let mut line = Vec::new();
    if conn.read_until(b'\n', &mut line).await? == 0 {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            "closed before answering",
        ));
    }
    let status: u16 = std::str::from_utf8(&line)
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    let mut headers = Vec::new();
    loop {
        line.clear();
        if conn.read_until(b'\n', &mut line).await? == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "closed in the headers",
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
        headers.push((name, value.to_string()));
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_until(b'\n', &mut line).await?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| usize::from_str_radix(l.trim().split(';').next()?, 16).ok())
                .ok_or_else(|| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    line.clear();
                    if conn.read_until(b'\n', &mut line).await? == 0 || line.trim_ascii().is_empty()
                    {
                        break;
                    }
                }
                break;
            }
            let at = body.len();
            body.resize(at + size + 2, 0);
            conn.read_exact(&mut body[at..]).await?;
            body.truncate(at + size);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(&mut body).await?;
    } else if status >= 200 && status != 204 && status != 304 {
        // No length: the body runs to the end of the connection.
        conn.read_to_end(&mut body).await?;
        keep = false;
    }
    Ok((
        Answer {
            status,
            headers,
            body,
        },
        keep,
    ))
}

/// What a backend's `whoami` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub served_by: String,
    pub tenant: String,
    pub token_id: String,
    pub saw_authorization: bool,
}

/// Reads the `whoami` answer from a JSON or SSE body.
pub fn parse_whoami(body: &str) -> Option<Who> {
    let msg: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("result").is_some() || v.get("error").is_some())?,
    };
    let text = msg["result"]["content"][0]["text"].as_str()?;
    let v: Value = serde_json::from_str(text).ok()?;
    Some(Who {
        served_by: v["served_by"].as_str()?.to_string(),
        tenant: v["tenant"].as_str()?.to_string(),
        token_id: v["gateway_headers"]["x-mcp-token-id"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        saw_authorization: v["saw_authorization"].as_bool()?,
    })
}

/// `error.code` of a JSON error body, if any.
pub fn error_code(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    match &v["error"]["code"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A small PRNG (xorshift64*) so the load mix needs no extra crate; the seed
/// is printed, and `RELIABILITY_SEED` replays a run's choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> (Self, u64) {
        let seed = std::env::var("RELIABILITY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).expect("randomness");
                u64::from_le_bytes(b)
            });
        (Self::new(seed), seed)
    }

    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `pct` %.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// Reads an integer from the environment, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn whoami_answers_parse_from_sse_and_json() {
    let inner = json!({"served_by": "backend:acme", "tenant": "acme",
        "gateway_headers": {"x-mcp-token-id": "tok_1"}, "saw_authorization": false});
    let msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [
        {"type": "text", "text": inner.to_string()}]}});
    let want = Who {
        served_by: "backend:acme".into(),
        tenant: "acme".into(),
        token_id: "tok_1".into(),
        saw_authorization: false,
    };
    assert_eq!(parse_whoami(&msg.to_string()), Some(want.clone()));
    let sse = format!("id: 0\ndata: \n\nevent: message\ndata: {msg}\n\n");
    assert_eq!(parse_whoami(&sse), Some(want));
    assert_eq!(parse_whoami("data: {\"jsonrpc\":\"2.0\"}\n\n"), None);
    assert_eq!(parse_whoami("not json"), None);
}

#[tokio::test]
async fn keepalive_reads_sized_chunked_and_unsized_answers_and_reconnects() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answers: [&[u8]; 3] = [
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 5\r\nwww-authenticate: Bearer x\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end",
    ];
    tokio::spawn(async move {
        // The first connection serves the first two answers, then closes
        // without a word; the second serves the third.
        for batch in [&answers[..2], &answers[2..]] {
            let (mut s, _) = listener.accept().await.unwrap();
            for a in batch {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(a).await.unwrap();
            }
        }
    });
    let mut k = KeepAlive::new(addr);
    let a = k.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!((a.status, a.body.as_slice()), (401, &b"hello"[..]));
    assert_eq!(a.header("www-authenticate"), Some("Bearer x"));
    let a = k.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abcde"[..]));
    // The server closed the kept-alive connection: one retry on a new one.
    let a = k.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"to the end"[..]));
}
