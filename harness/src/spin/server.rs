//! The HTTP side: accept connections with hyper, route each request as Spin
//! does, hand it to the component's instances (reused as Spin reuses
//! `wasi:http@0.3` instances), and shut down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::postgres::PgCtx;
use super::routes::{RouteMatch, Router};
use super::sqlite::SqliteCtx;
use super::state::{ComponentVariables, InstanceState, NoOutboundHttp};
use super::InstanceReuse;

/// A served component: its instances, created and reused by wasmtime's
/// `ProxyHandler` (the dispatcher Spin and `wasmtime serve` use).
pub struct ServedComponent {
    pub id: String,
    pub handler: ProxyHandler<ComponentInstances>,
}

/// Everything a request needs, shared by all connections.
pub struct App {
    pub router: Router,
    /// Component index for each route of `router`.
    pub route_targets: Vec<usize>,
    pub components: Vec<ServedComponent>,
    pub local_addr: SocketAddr,
    pub request_timeout: Duration,
}

/// How a component's instances are made, and how long each may serve.
pub struct ComponentInstances {
    pub id: String,
    pub engine: Engine,
    pub pre: ServicePre<InstanceState>,
    pub sqlite: SqliteCtx,
    pub pg: PgCtx,
    pub variables: ComponentVariables,
    pub environment: Vec<(String, String)>,
    pub guest_stdio: bool,
    pub reuse: InstanceReuse,
    pub request_timeout: Duration,
    pub counters: Arc<Counters>,
    /// Cancelled at shutdown: idle instances are dropped at once.
    pub stop: CancellationToken,
}

/// Instances started and alive, across the components of one host.
#[derive(Debug, Default)]
pub struct Counters {
    started: AtomicU64,
    alive: AtomicUsize,
    ended: Notify,
}

impl Counters {
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Resolves once no instance is alive.
    pub async fn none_alive(&self) {
        loop {
            let ended = self.ended.notified();
            if self.alive.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// Held by a worker for its instance's life.
struct Alive(Arc<Counters>);

impl Alive {
    fn new(counters: Arc<Counters>) -> Self {
        counters.started.fetch_add(1, Ordering::Relaxed);
        counters.alive.fetch_add(1, Ordering::AcqRel);
        Self(counters)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

fn http_view(state: &mut InstanceState) -> WasiHttpCtxView<'_> {
    state.http()
}

impl HandlerState for ComponentInstances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiration, Worker>> {
        let mut wasi = WasiCtx::builder();
        wasi.envs(&self.environment);
        if self.guest_stdio {
            wasi.inherit_stdout().inherit_stderr();
        }
        let state = InstanceState {
            table: Default::default(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: NoOutboundHttp,
            sqlite: self.sqlite.clone(),
            pg: self.pg.clone(),
            variables: self.variables.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        let service = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: http_view,
            expiration: Expiration {
                idle_timeout: self.reuse.idle_timeout,
                // A request expires at `request_timeout` (see
                // `Worker::on_request_start`); this bound is the second line,
                // for a guest that keeps the store busy so that expiry cannot
                // run, as wasmtime's handler documents.
                busy_timeout: self.request_timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                stop: Box::pin(self.stop.clone().cancelled_owned()),
                stopping: self.stop.clone(),
            },
            state: Worker {
                component: self.id.clone(),
                stopping: self.stop.clone(),
                reuse: self.reuse,
                request_timeout: self.request_timeout,
                _alive: Alive::new(self.counters.clone()),
            },
        })
    }
}

/// When an instance is dropped: idle too long, busy too long, or the host
/// is shutting down and it is idle.
pub struct Expiration {
    idle_timeout: Duration,
    busy_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    stopping: CancellationToken,
}

impl WorkerExpiration for Expiration {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let me = self.get_mut();
        if status == WorkerStatus::Idle
            && (me.stopping.is_cancelled() || me.stop.as_mut().poll(cx).is_ready())
        {
            return Poll::Ready(());
        }
        let timeout = match status {
            WorkerStatus::Idle => me.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => me.busy_timeout,
        };
        let Some(deadline) = start.checked_add(timeout) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if me.sleep.deadline() != deadline {
            me.sleep.as_mut().reset(deadline);
        }
        me.sleep.as_mut().poll(cx)
    }
}

/// One instance's reuse bounds.
pub struct Worker {
    component: String,
    stopping: CancellationToken,
    reuse: InstanceReuse,
    request_timeout: Duration,
    _alive: Alive,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.max_reuse_count {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_concurrent_reuse_count {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        // An expired request stops the instance taking more; it is dropped
        // once its other requests are done.
        Box::pin(tokio::time::sleep(self.request_timeout))
    }

    fn drop(&self, _store: Store<InstanceState>, result: wasmtime::Result<()>) {
        // A trap ends the instance and every request it was serving; the
        // next request gets a fresh one. Instances cut off by the host
        // stopping (or its runtime going away) are not news.
        if let Err(e) = result {
            if self.stopping.is_cancelled() {
                return;
            }
            eprintln!(
                "spin host: an instance of component {:?} ended: {e:?}",
                self.component
            );
        }
    }
}

type Body = Full<Bytes>;

/// Serves `listener` until `shutdown` turns true, then lets in-flight
/// requests finish (up to `grace`).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("spin host: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let mut stop = shutdown.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(handle(&app, req, client).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stopped(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        connections.abort_all();
    }
}

/// Resolves once shutdown is requested (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

async fn handle(app: &App, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if let Some(well_known) = path.strip_prefix("/.well-known/spin/") {
        // Spin answers its own health check without running the component.
        return match well_known {
            "health" => plain(StatusCode::OK, "OK"),
            _ => plain(StatusCode::NOT_FOUND, ""),
        };
    }
    let Some(route) = app.router.route(&path) else {
        return plain(StatusCode::NOT_FOUND, "");
    };
    let component = &app.components[app.route_targets[route.index]];
    let req = match prepare_request(req, &route, app.local_addr, client) {
        Ok(req) => req,
        Err(msg) => return plain(StatusCode::BAD_REQUEST, &msg),
    };
    match tokio::time::timeout(app.request_timeout, run(component, req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            eprintln!(
                "spin host: component {:?} failed on {path}: {e:?}",
                component.id
            );
            plain(StatusCode::INTERNAL_SERVER_ERROR, "")
        }
        Err(_) => {
            eprintln!(
                "spin host: component {:?} did not answer {path} within {:?}",
                component.id, app.request_timeout
            );
            plain(StatusCode::INTERNAL_SERVER_ERROR, "")
        }
    }
}

fn plain(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_owned())));
    *res.status_mut() = status;
    res
}

/// Gives the guest an absolute URL (hyper sees only the path) and Spin's
/// request-context headers.
fn prepare_request<B>(
    req: Request<B>,
    route: &RouteMatch<'_>,
    local_addr: SocketAddr,
    client: SocketAddr,
) -> Result<Request<B>, String> {
    let (mut parts, body) = req.into_parts();
    let authority = match parts.headers.get(http::header::HOST) {
        Some(h) => h
            .to_str()
            .ok()
            .and_then(|h| h.parse::<Authority>().ok())
            .ok_or("the Host header is not a valid authority")?,
        None => local_addr
            .to_string()
            .parse::<Authority>()
            .map_err(|e| e.to_string())?,
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path_and_query.clone())
        .build()
        .map_err(|e| format!("cannot form the request URL: {e}"))?;

    let full_url = format!("http://{authority}{path_and_query}");
    let mut context = vec![
        ("spin-full-url".to_owned(), full_url),
        ("spin-path-info".to_owned(), route.path_info.clone()),
        ("spin-matched-route".to_owned(), route.raw.to_owned()),
        ("spin-base-path".to_owned(), "/".to_owned()),
        ("spin-raw-component-route".to_owned(), route.raw.to_owned()),
        (
            "spin-component-route".to_owned(),
            route.component_route.clone(),
        ),
        ("spin-client-addr".to_owned(), client.to_string()),
    ];
    for (name, value) in &route.params {
        context.push((
            format!("spin-path-match-{}", name.to_ascii_lowercase()),
            value.clone(),
        ));
    }
    for (name, value) in context {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            parts.headers.insert(name, value);
        }
    }
    Ok(Request::from_parts(parts, body))
}

/// Runs one request on one of the component's instances and collects the
/// whole response.
async fn run(
    component: &ServedComponent,
    req: Request<Incoming>,
) -> wasmtime::Result<Response<Body>> {
    let req = req.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
    let res = component.handler.handle((), req).await?;
    // The guest may write the body after `handle` returns; its instance
    // keeps running it meanwhile.
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| wasmtime::format_err!("reading the response body: {e:?}"))?
        .to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(uri: &str, host: Option<&str>, route: &str) -> Request<()> {
        let router = Router::new([route]).unwrap();
        let path = uri.split('?').next().unwrap();
        let m = router.route(path).expect("route matches");
        let mut b = Request::builder()
            .uri(uri)
            .header("spin-full-url", "forged");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        prepare_request(
            b.body(()).unwrap(),
            &m,
            "127.0.0.1:3000".parse().unwrap(),
            "10.0.0.9:5555".parse().unwrap(),
        )
        .unwrap()
    }

    fn header<'a>(r: &'a Request<()>, name: &str) -> &'a str {
        r.headers().get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn the_guest_sees_an_absolute_url_and_spin_context_headers() {
        let r = prepared("/api/v1/mcptokens?limit=5", Some("token-api:8080"), "/...");
        assert_eq!(
            r.uri().to_string(),
            "http://token-api:8080/api/v1/mcptokens?limit=5"
        );
        assert_eq!(
            header(&r, "spin-full-url"),
            "http://token-api:8080/api/v1/mcptokens?limit=5"
        );
        assert_eq!(r.headers().get_all("spin-full-url").iter().count(), 1);
        assert_eq!(header(&r, "spin-path-info"), "/api/v1/mcptokens");
        assert_eq!(header(&r, "spin-matched-route"), "/...");
        assert_eq!(header(&r, "spin-raw-component-route"), "/...");
        assert_eq!(header(&r, "spin-component-route"), "");
        assert_eq!(header(&r, "spin-base-path"), "/");
        assert_eq!(header(&r, "spin-client-addr"), "10.0.0.9:5555");
    }

    #[test]
    fn without_host_the_listen_address_is_the_authority() {
        let r = prepared("/t/abc/x", None, "/t/:id/...");
        assert_eq!(r.uri().to_string(), "http://127.0.0.1:3000/t/abc/x");
        assert_eq!(header(&r, "spin-path-match-id"), "abc");
        assert_eq!(header(&r, "spin-path-info"), "/x");
        assert_eq!(header(&r, "spin-component-route"), "/t/:id");
    }

    #[test]
    fn a_bad_host_header_is_refused() {
        let router = Router::new(["/..."]).unwrap();
        let m = router.route("/").unwrap();
        let req = Request::builder()
            .uri("/")
            .header("host", "bad host")
            .body(())
            .unwrap();
        let err = prepare_request(
            req,
            &m,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("Host"), "{err}");
    }
}
