//! A fault-injecting HTTP/1.1 proxy, put in front of the token API so tests
//! can make it slow, broken or unreachable while Envoy keeps running.
//!
//! The fault is switchable at run time and applies per request, also on
//! connections Envoy already keeps alive:
//! - [`Fault::Pass`]: forward to the upstream unchanged (502 if it is down).
//! - [`Fault::Delay`]: forward after a pause (e.g. longer than the callout timeout).
//! - [`Fault::Garbage`]: answer 200 with a body that is not JSON.
//! - [`Fault::Status`]: answer that status with a JSON error body.
//! - [`Fault::Refuse`]: reset the connection without answering.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// What the proxy does to each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Delay(Duration),
    Garbage,
    Status(u16),
    Refuse,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Delay(d) => write!(f, "delay:{}", d.as_millis()),
            Self::Garbage => f.write_str("garbage"),
            Self::Status(s) => write!(f, "status:{s}"),
            Self::Refuse => f.write_str("refuse"),
        }
    }
}

/// A fault spec that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault {spec:?}: {why}; use pass, delay:<ms>, garbage, status:<100-599> or refuse")]
pub struct FaultParseError {
    spec: String,
    why: &'static str,
}

impl FromStr for Fault {
    type Err = FaultParseError;

    /// `pass`, `delay:<ms>`, `garbage`, `status:<code>`, `refuse`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| FaultParseError {
            spec: s.to_string(),
            why,
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("pass", None) => Ok(Self::Pass),
            ("garbage", None) => Ok(Self::Garbage),
            ("refuse", None) => Ok(Self::Refuse),
            ("delay", Some(ms)) => ms
                .parse::<u64>()
                .map(|ms| Self::Delay(Duration::from_millis(ms)))
                .map_err(|_| err("the delay must be whole milliseconds")),
            ("status", Some(code)) => match code.parse::<u16>() {
                Ok(c @ 100..=599) => Ok(Self::Status(c)),
                _ => Err(err("the status must be a number from 100 to 599")),
            },
            ("delay" | "status", None) => Err(err("this fault needs a value after `:`")),
            ("pass" | "garbage" | "refuse", Some(_)) => Err(err("this fault takes no value")),
            _ => Err(err("unknown fault")),
        }
    }
}

/// How many requests (or connections, for refusals at accept) each fault
/// handled, so a test can tell that its fault was really exercised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub passed: u64,
    pub delayed: u64,
    pub garbage: u64,
    pub status: u64,
    pub refused: u64,
    /// Passed or delayed requests whose upstream could not be reached (502).
    pub upstream_errors: u64,
}

#[derive(Default)]
struct Counters {
    passed: AtomicU64,
    delayed: AtomicU64,
    garbage: AtomicU64,
    status: AtomicU64,
    refused: AtomicU64,
    upstream_errors: AtomicU64,
}

struct Shared {
    fault: Mutex<Fault>,
    counts: Counters,
    upstream: String,
    client: reqwest::Client,
}

impl Shared {
    fn fault(&self) -> Fault {
        self.fault.lock().map(|f| *f).unwrap_or(Fault::Pass)
    }
}

/// A running fault proxy.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Bodies served in [`Fault::Garbage`] mode, in turn: not JSON, truncated
/// JSON, and binary bytes.
const GARBAGE: [&[u8]; 3] = [
    b"<html>502 gateway error</html>",
    b"{\"active\": true, \"tenant\": \"acme\"",
    b"\x00\xff\xfe garbage \x80",
];

impl FaultProxy {
    /// Listens on `listen` (port 0 picks one) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("fault proxy cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .context("fault proxy HTTP client")?;
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            counts: Counters::default(),
            upstream: format!("http://{upstream}"),
            client,
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), cancel.clone()));
        Ok(Self {
            addr,
            shared,
            cancel,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the fault; requests arriving from now on get it.
    pub fn set(&self, fault: Fault) {
        if let Ok(mut f) = self.shared.fault.lock() {
            *f = fault;
        }
    }

    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    pub fn counts(&self) -> FaultCounts {
        let c = &self.shared.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            passed: get(&c.passed),
            delayed: get(&c.delayed),
            garbage: get(&c.garbage),
            status: get(&c.status),
            refused: get(&c.refused),
            upstream_errors: get(&c.upstream_errors),
        }
    }

    /// Stops accepting; open connections end with their current request.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        if shared.fault() == Fault::Refuse {
            shared.counts.refused.fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

/// Closes with RST (zero linger), as close to "connection refused" as a
/// listening socket gets.
fn refuse(stream: tokio::net::TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// The error that makes hyper drop the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("fault proxy: connection refused by the `refuse` fault")]
struct Refused;

type Reply = hyper::Response<Full<Bytes>>;

async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Reply, Refused> {
    let counts = &shared.counts;
    match shared.fault() {
        Fault::Refuse => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            Err(Refused)
        }
        Fault::Garbage => {
            let n = counts.garbage.fetch_add(1, Ordering::Relaxed);
            let body = GARBAGE[(n % GARBAGE.len() as u64) as usize];
            Ok(reply(200, "application/json", Bytes::from_static(body)))
        }
        Fault::Status(code) => {
            counts.status.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                "{{\"error\":{{\"code\":\"injected\",\"message\":\"status {code} injected by the fault proxy\"}}}}"
            );
            Ok(reply(code, "application/json", Bytes::from(body)))
        }
        Fault::Delay(d) => {
            counts.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(d).await;
            Ok(forward(&shared, req).await)
        }
        Fault::Pass => {
            counts.passed.fetch_add(1, Ordering::Relaxed);
            Ok(forward(&shared, req).await)
        }
    }
}

fn reply(status: u16, content_type: &str, body: Bytes) -> Reply {
    let mut r = hyper::Response::new(Full::new(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1); the length is
/// recomputed from the buffered body.
fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

async fn forward(shared: &Shared, req: hyper::Request<hyper::body::Incoming>) -> Reply {
    match try_forward(shared, req).await {
        Ok(r) => r,
        Err(e) => {
            shared
                .counts
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            let body = serde_json::json!({"error": {"code": "upstream_unreachable",
                "message": format!("fault proxy: {e:#}")}});
            reply(502, "application/json", Bytes::from(body.to_string()))
        }
    }
}

async fn try_forward(
    shared: &Shared,
    req: hyper::Request<hyper::body::Incoming>,
) -> anyhow::Result<Reply> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .context("reading the request")?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = shared
        .client
        .request(parts.method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let resp = out.send().await.context("upstream request")?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.context("upstream body")?;
    let mut r = hyper::Response::new(Full::new(body));
    *r.status_mut() = status;
    for (name, value) in &headers {
        if !is_hop_by_hop(name) {
            r.headers_mut().append(name, value.clone());
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn specs_parse_and_print_back() {
        for (s, f) in [
            ("pass", Fault::Pass),
            ("delay:750", Fault::Delay(Duration::from_millis(750))),
            ("garbage", Fault::Garbage),
            ("status:500", Fault::Status(500)),
            ("refuse", Fault::Refuse),
        ] {
            assert_eq!(s.parse::<Fault>(), Ok(f));
            assert_eq!(f.to_string(), s);
        }
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        for s in [
            "",
            "slow",
            "delay",
            "delay:",
            "delay:1.5",
            "status:99",
            "status:600",
            "status:x",
            "pass:1",
            "refuse:now",
        ] {
            let e = s.parse::<Fault>().unwrap_err().to_string();
            assert!(
                e.contains("delay:<ms>") && e.contains(&format!("{s:?}")),
                "{e}"
            );
        }
    }

    /// An upstream that echoes the method, path and one header.
    async fn echo_upstream() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let who = req
                            .headers()
                            .get("x-who")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let line = format!("{} {} {who}", req.method(), req.uri());
                        Ok::<_, Infallible>(reply(200, "text/plain", Bytes::from(line)))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn every_fault_does_what_it_says_and_switches_at_run_time() {
        let up = echo_upstream().await;
        let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), up)
            .await
            .unwrap();
        let url = format!("http://{}/a/b?c=1", proxy.addr());
        // One client for all requests: its kept-alive connection must see each switch.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let get = || http.get(&url).header("x-who", "me").send();

        let r = get().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "GET /a/b?c=1 me");

        proxy.set(Fault::Status(500));
        let r = get().await.unwrap();
        assert_eq!(r.status(), 500);
        assert!(r.text().await.unwrap().contains("injected"));

        proxy.set(Fault::Garbage);
        for _ in 0..3 {
            let r = get().await.unwrap();
            assert_eq!(r.status(), 200);
            let body = r.bytes().await.unwrap();
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
        }

        proxy.set(Fault::Delay(Duration::from_millis(300)));
        let t0 = std::time::Instant::now();
        let r = get().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(t0.elapsed() >= Duration::from_millis(300));

        proxy.set(Fault::Refuse);
        assert!(get().await.is_err(), "a refused request got an answer");
        // A new connection is reset at accept.
        let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
        assert!(fresh.get(&url).send().await.is_err());

        proxy.set(Fault::Pass);
        assert_eq!(get().await.unwrap().status(), 200);

        let c = proxy.counts();
        assert_eq!(
            (c.passed, c.delayed, c.garbage, c.status, c.upstream_errors),
            (2, 1, 3, 1, 0),
            "{c:?}"
        );
        assert!(c.refused >= 2, "{c:?}");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_502() {
        let closed = crate::stack::free_port().unwrap();
        let proxy = FaultProxy::start(
            "127.0.0.1:0".parse().unwrap(),
            SocketAddr::from(([127, 0, 0, 1], closed)),
        )
        .await
        .unwrap();
        let r = reqwest::get(format!("http://{}/health", proxy.addr()))
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        assert!(r.text().await.unwrap().contains("upstream_unreachable"));
        assert_eq!(proxy.counts().upstream_errors, 1);
        proxy.stop().await;
    }
}
