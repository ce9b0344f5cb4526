//! The behavioural surface tests use: load a filter, start workers, send
//! requests, answer callouts, move time, read metrics and logs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Engine, Linker, Module, Store, TypedFunc};

use super::abi;
use super::http::{Body, Headers, Request, Response};
use super::memory::Guest;
use super::state::{
    lock, After, CallResponse, LocalReply, LogLevel, LogLine, Phase, Process, SharedProcess,
    SharedWriteHook, Stream, Worker,
};

const PAUSE: u32 = 1;

/// A compiled filter module, ready to start workers from.
pub struct Host {
    engine: Engine,
    module: Module,
    linker: Linker<Worker>,
}

/// Why a `.wasm` file cannot serve as a proxy-wasm filter.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a loadable wasm module: {reason}")]
    Compile { path: PathBuf, reason: String },
    #[error("{path} does not export proxy_abi_version_0_2_1; build it with proxy-wasm 0.2.x")]
    NotProxyWasm { path: PathBuf },
}

/// The plugin failed to start, as Envoy would report it; `logs` holds what
/// the filter logged on the way (the field it complains about, typically).
#[derive(Debug)]
pub struct LoadError {
    pub reason: String,
    pub logs: Vec<LogLine>,
}

impl LoadError {
    /// Whether any log line mentions `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.iter().any(|l| l.message.contains(text))
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin failed to load: {}", self.reason)?;
        for line in &self.logs {
            write!(f, "\n  [{:?}] {}", line.level, line.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// What Envoy around the filter looks like.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Clusters `http_call` may target; others are refused with `BadArgument`.
    pub clusters: Vec<String>,
    /// Envoy's per-connection buffer limit: a body the filter buffers beyond
    /// it gets Envoy's own 413.
    pub buffer_limit: usize,
    /// Start of the virtual clock.
    pub start: SystemTime,
    pub root_id: String,
    pub vm_id: String,
    pub plugin_name: String,
    pub log_level: LogLevel,
    pub vm_config: Vec<u8>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            clusters: vec!["token_api".to_string()],
            buffer_limit: 1024 * 1024,
            // 2027-01-15T08:00:00Z: a fixed, realistic wall clock.
            start: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            root_id: "mcp_auth".to_string(),
            vm_id: "mcp_auth".to_string(),
            plugin_name: "mcp_auth".to_string(),
            log_level: LogLevel::Info,
            vm_config: Vec::new(),
        }
    }
}

/// Plugin configuration: JSON text or a JSON value.
pub trait PluginConfig {
    fn into_bytes(self) -> Vec<u8>;
}

impl PluginConfig for &str {
    fn into_bytes(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl PluginConfig for String {
    fn into_bytes(self) -> Vec<u8> {
        String::into_bytes(self)
    }
}

impl PluginConfig for &serde_json::Value {
    fn into_bytes(self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl PluginConfig for serde_json::Value {
    fn into_bytes(self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

/// A request stream on one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u32);

/// A callout token, as Envoy returned it to the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalloutId(pub u32);

/// An HTTP callout the filter made and that awaits an answer.
#[derive(Clone, Debug)]
pub struct Callout {
    pub id: CalloutId,
    pub cluster: String,
    pub headers: Headers,
    pub body: Body,
    pub trailers: Headers,
    pub timeout: Option<Duration>,
    /// The stream whose callback made it (none for timer callouts).
    pub stream: Option<StreamId>,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }

    pub fn path(&self) -> String {
        self.header(":path").unwrap_or_default()
    }
}

/// What came of a request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The request reached the upstream.
    Forwarded(Forwarded),
    /// Someone answered in Envoy: the filter (a local reply) or Envoy itself.
    Replied(Reply),
    /// The filter holds the stream, waiting for something.
    Paused(Paused),
    /// The client went away first ([`Envoy::disconnect`]).
    Disconnected,
    /// The filter reset the stream; the client got what had gone out before
    /// (`proxy_close_stream`).
    Reset(Body),
    /// The VM trapped; Envoy would answer 503 and drop the VM.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Forwarded {
    /// Request headers as the upstream got them.
    pub headers: Headers,
    pub body: Body,
    /// Route cache clears while the filter handled the request: header
    /// changes (ABI 0.2.1) plus explicit `clear_route_cache` calls.
    pub route_cache_clears: u32,
    /// The upstream response as the client got it.
    pub response: Response,
    /// Filter state the filter set (`wasm.<name>`), as the access log reads it.
    pub filter_state: BTreeMap<String, Vec<u8>>,
    /// The body as it went to the client: the bytes passed on after each
    /// response body callback (nothing while the filter buffers).
    pub response_chunks: Vec<Body>,
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Headers,
    pub body: Body,
    /// True for the filter's `send_local_response`, false for Envoy's own
    /// replies (e.g. 413 over the buffer limit).
    pub by_filter: bool,
    /// Filter state the filter set (`wasm.<name>`), as the access log reads it.
    pub filter_state: BTreeMap<String, Vec<u8>>,
    /// The request headers as they stood when the reply was sent (what a
    /// route or an access log saw).
    pub request_headers: Headers,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }

    pub fn json(&self) -> serde_json::Value {
        self.body.json()
    }
}

#[derive(Clone, Debug)]
pub struct Paused {
    pub stream: StreamId,
    /// Callouts this stream made that are still pending.
    pub callouts: Vec<CalloutId>,
}

impl Outcome {
    /// # Panics
    /// When the request was not forwarded, showing what happened instead.
    pub fn forwarded(&self) -> &Forwarded {
        match self {
            Outcome::Forwarded(f) => f,
            other => panic!("expected the request to be forwarded, got {other:#?}"),
        }
    }

    /// # Panics
    /// When nobody replied in Envoy, showing what happened instead.
    pub fn replied(&self) -> &Reply {
        match self {
            Outcome::Replied(r) => r,
            other => panic!("expected a local reply, got {other:#?}"),
        }
    }

    /// # Panics
    /// When the stream is not paused, showing what happened instead.
    pub fn paused(&self) -> &Paused {
        match self {
            Outcome::Paused(p) => p,
            other => panic!("expected the stream to be paused, got {other:#?}"),
        }
    }

    /// The filter-state value `key` (e.g. `wasm.mcp_auth`) as JSON, once
    /// the request is answered; `None` while paused or when never set.
    pub fn filter_state_json(&self, key: &str) -> Option<serde_json::Value> {
        let state = match self {
            Outcome::Forwarded(f) => &f.filter_state,
            Outcome::Replied(r) => &r.filter_state,
            _ => return None,
        };
        state.get(key).and_then(|v| serde_json::from_slice(v).ok())
    }

    /// The status the client got, if it got one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Forwarded(f) => Some(f.response.status),
            Outcome::Replied(r) => Some(r.status),
            Outcome::Paused(_) | Outcome::Disconnected | Outcome::Reset(_) | Outcome::Failed(_) => {
                None
            }
        }
    }
}

/// `(id, size, end_of_stream) -> action` stream callbacks.
type PhaseFn = TypedFunc<(u32, u32, u32), u32>;
/// `(root_id, token, headers, body_size, trailers)`.
type CallResponseFn = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// The filter's exported callbacks (all optional in ABI 0.2.1).
#[derive(Clone)]
struct Exports {
    context_create: Option<TypedFunc<(u32, u32), ()>>,
    vm_start: Option<TypedFunc<(u32, u32), u32>>,
    configure: Option<TypedFunc<(u32, u32), u32>>,
    request_headers: Option<PhaseFn>,
    request_body: Option<PhaseFn>,
    response_headers: Option<PhaseFn>,
    response_body: Option<PhaseFn>,
    http_call_response: Option<CallResponseFn>,
    tick: Option<TypedFunc<u32, ()>>,
    done: Option<TypedFunc<u32, u32>>,
    log: Option<TypedFunc<u32, ()>>,
    delete: Option<TypedFunc<u32, ()>>,
}

/// Marker: a guest call trapped and the worker's VM is gone.
struct VmFailed;

impl Host {
    /// Compiles the module once; start any number of workers from it.
    pub fn load(path: impl AsRef<Path>) -> Result<Host, HostError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| HostError::Read {
            path: path.clone(),
            source,
        })?;
        let engine = Engine::default();
        let module = Module::new(&engine, &bytes).map_err(|e| HostError::Compile {
            path: path.clone(),
            reason: format!("{e:?}"),
        })?;
        if module.get_export("proxy_abi_version_0_2_1").is_none() {
            return Err(HostError::NotProxyWasm { path });
        }
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker, &module).map_err(|e| HostError::Compile {
            path,
            reason: format!("cannot link: {e:?}"),
        })?;
        Ok(Host {
            engine,
            module,
            linker,
        })
    }

    /// A fresh Envoy process with one worker running the plugin.
    pub fn envoy(&self, config: impl PluginConfig) -> Result<Envoy, LoadError> {
        self.envoy_with(Settings::default(), config)
    }

    pub fn envoy_with(
        &self,
        settings: Settings,
        config: impl PluginConfig,
    ) -> Result<Envoy, LoadError> {
        let start_ns = settings
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let process = SharedProcess::new(std::sync::Mutex::new(Process {
            now_ns: start_ns,
            ..Process::default()
        }));
        self.start_worker(settings, config.into_bytes(), process)
    }

    /// Another worker of the same Envoy process as `other`: same plugin
    /// configuration, one shared-data store, one set of stats, one clock.
    pub fn worker_sharing(&self, other: &Envoy) -> Result<Envoy, LoadError> {
        self.start_worker(
            other.settings.clone(),
            other.config.clone(),
            other.process.clone(),
        )
    }

    fn start_worker(
        &self,
        settings: Settings,
        config: Vec<u8>,
        process: SharedProcess,
    ) -> Result<Envoy, LoadError> {
        let mut worker = Worker::new(process.clone());
        worker.clusters = settings.clusters.clone();
        worker.log_level = settings.log_level;
        worker.vm_config = settings.vm_config.clone();
        worker.plugin_config = config.clone();
        for (k, v) in [
            ("plugin_name", &settings.plugin_name),
            ("plugin_root_id", &settings.root_id),
            ("plugin_vm_id", &settings.vm_id),
        ] {
            worker
                .properties
                .insert(k.to_string(), v.as_bytes().to_vec());
        }
        let mut store = Store::new(&self.engine, worker);
        let fail = |store: &Store<Worker>, reason: String| LoadError {
            reason,
            logs: store.data().logs.clone(),
        };
        let instance = self
            .linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| fail(&store, format!("instantiation failed: {e:?}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| fail(&store, "the module exports no memory".into()))?;
        let allocate = instance
            .get_typed_func::<u32, u32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<u32, u32>(&mut store, "malloc"))
            .map_err(|_| {
                fail(
                    &store,
                    "the module exports no proxy_on_memory_allocate".into(),
                )
            })?;
        store.data_mut().guest = Some(Guest { memory, allocate });

        macro_rules! export {
            ($name:literal) => {
                instance.get_typed_func(&mut store, $name).ok()
            };
        }
        let exports = Exports {
            context_create: export!("proxy_on_context_create"),
            vm_start: export!("proxy_on_vm_start"),
            configure: export!("proxy_on_configure"),
            request_headers: export!("proxy_on_request_headers"),
            request_body: export!("proxy_on_request_body"),
            response_headers: export!("proxy_on_response_headers"),
            response_body: export!("proxy_on_response_body"),
            http_call_response: export!("proxy_on_http_call_response"),
            tick: export!("proxy_on_tick"),
            done: export!("proxy_on_done"),
            log: export!("proxy_on_log"),
            delete: export!("proxy_on_delete"),
        };
        let init = instance
            .get_typed_func::<(), ()>(&mut store, "_initialize")
            .or_else(|_| instance.get_typed_func::<(), ()>(&mut store, "_start"));
        if let Ok(init) = init {
            init.call(&mut store, ())
                .map_err(|e| fail(&store, format!("module start trapped: {e:?}")))?;
        }

        let root = store.data().root_id;
        let mut envoy = Envoy {
            store,
            exports,
            settings,
            config,
            process,
            next_context: root + 1,
            finished: BTreeMap::new(),
            failure: None,
        };
        let failed = |e: &Envoy, reason: &str| LoadError {
            reason: e.failure.clone().unwrap_or_else(|| reason.to_string()),
            logs: e.store.data().logs.clone(),
        };
        if let Some(f) = envoy.exports.context_create.clone() {
            envoy
                .call(root, &f, (root, 0), "proxy_on_context_create")
                .map_err(|_| failed(&envoy, ""))?;
        }
        let vm_config_len = envoy.store.data().vm_config.len() as u32;
        if let Some(f) = envoy.exports.vm_start.clone() {
            let ok = envoy
                .call(root, &f, (root, vm_config_len), "proxy_on_vm_start")
                .map_err(|_| failed(&envoy, ""))?;
            if ok == 0 {
                return Err(failed(&envoy, "proxy_on_vm_start returned false"));
            }
        }
        if let Some(f) = envoy.exports.configure.clone() {
            envoy.store.data_mut().configuring = true;
            let len = envoy.config.len() as u32;
            let ok = envoy.call(root, &f, (root, len), "proxy_on_configure");
            envoy.store.data_mut().configuring = false;
            let ok = ok.map_err(|_| failed(&envoy, ""))?;
            if ok == 0 {
                return Err(failed(&envoy, "proxy_on_configure returned false"));
            }
        }
        Ok(envoy)
    }
}

/// One Envoy worker running the filter. Workers made with
/// [`Host::worker_sharing`] share the clock, but each one's timers and
/// callout timeouts fire only when that worker is advanced.
pub struct Envoy {
    store: Store<Worker>,
    exports: Exports,
    settings: Settings,
    config: Vec<u8>,
    process: SharedProcess,
    next_context: u32,
    finished: BTreeMap<u32, Outcome>,
    failure: Option<String>,
}

impl Envoy {
    /// Sends a request and returns what came of it so far.
    pub fn request(&mut self, request: Request) -> Outcome {
        let id = self.send(request);
        self.outcome(id)
    }

    /// Sends a request; see [`Envoy::outcome`] for what came of it.
    pub fn send(&mut self, request: Request) -> StreamId {
        let id = self.next_context;
        self.next_context += 1;
        if let Some(f) = &self.failure {
            self.finished.insert(id, Outcome::Failed(f.clone()));
            return StreamId(id);
        }
        // Envoy's connection manager adds these before any filter runs.
        let mut headers = request.headers.clone();
        if !headers.contains("x-forwarded-proto") {
            headers.add("x-forwarded-proto", "http");
        }
        if !headers.contains("x-request-id") {
            headers.add("x-request-id", &format!("00000000-0000-4000-8000-{id:012}"));
        }
        let stream = Stream {
            phase: Phase::RequestHeaders,
            request_headers: headers,
            request_headers_open: true,
            pending_chunks: request.body_chunks(),
            request_buffer: Vec::new(),
            buffering_request: false,
            in_request_body: false,
            forwarded_headers: None,
            forwarded_body: Vec::new(),
            upstream: request.upstream.clone(),
            upstream_chunks: request.upstream_chunks(),
            response_headers: Headers::new(),
            response_headers_open: false,
            response_chunks: Vec::new(),
            response_buffer: Vec::new(),
            in_response_body: false,
            client_body: Vec::new(),
            client_chunks: Vec::new(),
            reset: false,
            resume_request: false,
            resume_response: false,
            local_reply: None,
            replied: None,
            route_cache_clears: 0,
            callouts: Vec::new(),
            filter_state: BTreeMap::new(),
        };
        self.store.data_mut().streams.insert(id, stream);
        let root = self.store.data().root_id;
        if let Some(f) = self.exports.context_create.clone() {
            // A trap is recorded in `failure`; settle() reports it.
            let _ = self.call(id, &f, (id, root), "proxy_on_context_create");
        }
        self.settle();
        StreamId(id)
    }

    /// Where the stream stands now.
    pub fn outcome(&self, stream: StreamId) -> Outcome {
        if let Some(done) = self.finished.get(&stream.0) {
            return done.clone();
        }
        let w = self.store.data();
        match w.streams.get(&stream.0) {
            Some(s) => Outcome::Paused(Paused {
                stream,
                callouts: s
                    .callouts
                    .iter()
                    .filter(|t| w.callouts.contains_key(t))
                    .map(|t| CalloutId(*t))
                    .collect(),
            }),
            None => panic!("stream {} was never sent on this worker", stream.0),
        }
    }

    /// The client goes away before its response: Envoy destroys the stream
    /// (`on_done`, then `on_log` and `on_delete`). Callouts it made stay
    /// pending: Envoy makes them on the root context.
    pub fn disconnect(&mut self, stream: StreamId) {
        let id = stream.0;
        if self.finished.contains_key(&id) {
            return;
        }
        let Some(s) = self.stream(id) else {
            panic!("stream {id} was never sent on this worker");
        };
        s.phase = Phase::Done;
        self.finished.insert(id, Outcome::Disconnected);
        self.destroy(id);
        self.settle();
    }

    /// Runs `run` just before this worker's next shared-data write to a key
    /// starting with `prefix`, after the filter read the value it decided
    /// on: `run` typically sends a request on another worker of the same
    /// process, so both decide on the same value and the second write must
    /// lose its compare-and-swap.
    pub fn before_shared_write(&mut self, prefix: &str, run: impl FnOnce() + Send + 'static) {
        self.store.data_mut().shared_write_hook = Some(SharedWriteHook {
            prefix: prefix.to_string(),
            run: Box::new(run),
        });
    }

    /// Callouts waiting for an answer, oldest first.
    pub fn callouts(&self) -> Vec<Callout> {
        self.store
            .data()
            .callouts
            .iter()
            .map(|(id, c)| Callout {
                id: CalloutId(*id),
                cluster: c.cluster.clone(),
                headers: c.headers.clone(),
                body: Body(c.body.clone()),
                trailers: c.trailers.clone(),
                timeout: c.timeout,
                stream: c.stream.map(StreamId),
            })
            .collect()
    }

    /// Answers a callout with a JSON body.
    pub fn answer(&mut self, id: CalloutId, status: u16, body: &serde_json::Value) {
        self.respond(id, Response::json(status, body));
    }

    /// Answers a callout with any response.
    pub fn respond(&mut self, id: CalloutId, response: Response) {
        self.deliver(
            id,
            CallResponse {
                headers: response.headers,
                body: response.body.0,
                trailers: Headers::new(),
            },
        );
    }

    /// The upstream refused or reset the connection: Envoy's async client
    /// synthesises a 503.
    pub fn fail(&mut self, id: CalloutId) {
        let body = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        self.respond(
            id,
            Response::new(503, &[("content-type", "text/plain")], body.to_vec()),
        );
    }

    /// The callout's timeout elapsed: Envoy synthesises a 504.
    pub fn time_out(&mut self, id: CalloutId) {
        self.respond(
            id,
            Response::new(
                504,
                &[("content-type", "text/plain")],
                b"upstream request timeout".to_vec(),
            ),
        );
    }

    /// A failure inside Envoy's HTTP client: no headers, no body.
    pub fn fail_without_response(&mut self, id: CalloutId) {
        self.deliver(id, CallResponse::default());
    }

    /// Moves the clock forward, firing this worker's ticks and callout
    /// timeouts (as 504s) in time order on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now_ns().saturating_add(by.as_nanos() as u64);
        while self.failure.is_none() {
            let w = self.store.data();
            let next_tick = w.next_tick_ns.filter(|t| *t <= target);
            let next_timeout = w
                .callouts
                .iter()
                .filter_map(|(id, c)| c.deadline_ns.map(|d| (d, *id)))
                .filter(|(d, _)| *d <= target)
                .min();
            match (next_tick, next_timeout) {
                (None, None) => break,
                (Some(t), timeout) if timeout.is_none_or(|(d, _)| t <= d) => {
                    self.set_clock(t);
                    self.fire_tick();
                }
                (_, Some((d, id))) => {
                    self.set_clock(d);
                    self.time_out(CalloutId(id));
                }
                (Some(_), None) => unreachable!("covered by the tick arm"),
            }
        }
        self.set_clock(target);
    }

    /// Moves the clock to this worker's next tick and fires it (and anything
    /// due before it).
    ///
    /// # Panics
    /// When the filter set no tick period.
    pub fn tick(&mut self) {
        let Some(next) = self.store.data().next_tick_ns else {
            panic!("the filter set no tick period on this worker");
        };
        let now = self.now_ns();
        self.advance(Duration::from_nanos(next.saturating_sub(now)));
    }

    /// The filter's tick period, if it set one.
    pub fn tick_period(&self) -> Option<Duration> {
        self.store.data().tick_period
    }

    /// The virtual wall clock.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.now_ns())
    }

    /// A counter's or gauge's value.
    ///
    /// # Panics
    /// When no worker defined the metric, listing those that exist.
    pub fn metric(&self, name: &str) -> u64 {
        let p = lock(&self.process);
        match p.metrics.by_name.get(name) {
            Some(m) => m.value,
            None => panic!(
                "metric {name:?} was never defined; defined: {:?}",
                p.metrics.by_name.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// Values recorded into a histogram.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        lock(&self.process)
            .metrics
            .by_name
            .get(name)
            .map(|m| m.records.clone())
            .unwrap_or_default()
    }

    /// Every counter and gauge by name.
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        lock(&self.process)
            .metrics
            .by_name
            .iter()
            .map(|(k, m)| (k.clone(), m.value))
            .collect()
    }

    /// What this worker's filter logged, plus host notes (`[host] …`).
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// The logs as one text, a line each.
    pub fn log_text(&self) -> String {
        self.logs()
            .iter()
            .map(|l| format!("[{:?}] {}", l.level, l.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Explicit `clear_route_cache` calls on this worker.
    pub fn route_cache_clears(&self) -> u32 {
        self.store.data().route_cache_clears
    }

    /// A shared-data value, as any worker of this process sees it.
    pub fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.process).shared.get(key).map(|(v, _)| v)
    }

    /// Why the VM failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn now_ns(&self) -> u64 {
        lock(&self.process).now_ns
    }

    fn set_clock(&mut self, ns: u64) {
        let mut p = lock(&self.process);
        // Another worker may have moved the shared clock further already.
        p.now_ns = p.now_ns.max(ns);
    }

    fn fire_tick(&mut self) {
        let w = self.store.data_mut();
        let Some(period) = w.tick_period else {
            return;
        };
        // Envoy re-arms the timer from now: an overdue tick fires once.
        w.next_tick_ns = Some(w.now_ns() + period.as_nanos() as u64);
        let root = w.root_id;
        if let Some(f) = self.exports.tick.clone() {
            let _ = self.call(root, &f, root, "proxy_on_tick");
        }
        self.settle();
    }

    fn deliver(&mut self, id: CalloutId, response: CallResponse) {
        let w = self.store.data_mut();
        if w.callouts.remove(&id.0).is_none() {
            panic!(
                "callout {} is not pending (answered or timed out already); pending: {:?}",
                id.0,
                w.callouts.keys().collect::<Vec<_>>()
            );
        }
        if self.failure.is_some() {
            return;
        }
        let counts = (
            response.headers.len() as u32,
            response.body.len() as u32,
            response.trailers.len() as u32,
        );
        w.call_response = Some(response);
        let root = w.root_id;
        if let Some(f) = self.exports.http_call_response.clone() {
            let _ = self.call(
                root,
                &f,
                (root, id.0, counts.0, counts.1, counts.2),
                "proxy_on_http_call_response",
            );
        }
        self.store.data_mut().call_response = None;
        self.settle();
    }

    /// Calls into the guest as `context`. A trap fails the worker's VM.
    fn call<P, R>(
        &mut self,
        context: u32,
        f: &TypedFunc<P, R>,
        args: P,
        what: &str,
    ) -> Result<R, VmFailed>
    where
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        if self.failure.is_some() {
            return Err(VmFailed);
        }
        let w = self.store.data_mut();
        w.current = context;
        w.effective = context;
        match f.call(&mut self.store, args) {
            Ok(r) => Ok(r),
            Err(e) => {
                let last = self
                    .store
                    .data()
                    .logs
                    .iter()
                    .rev()
                    .find(|l| l.level >= LogLevel::Error)
                    .map(|l| l.message.clone())
                    .unwrap_or_default();
                let message = format!("{what} on context {context} trapped: {last}\n{e:?}");
                self.store
                    .data_mut()
                    .note(LogLevel::Critical, format!("[host] {message}"));
                self.failure = Some(message);
                Err(VmFailed)
            }
        }
    }

    /// Runs Envoy's side until nothing moves: deferred resumes and local
    /// replies, body delivery, upstream, response phases, stream teardown.
    fn settle(&mut self) {
        loop {
            if self.failure.is_some() {
                self.fail_streams();
                return;
            }
            let mut moved = false;
            let ids: Vec<u32> = self.store.data().streams.keys().copied().collect();
            for id in ids {
                while self.failure.is_none() && self.step(id) {
                    moved = true;
                }
            }
            moved |= self.release_done();
            if !moved {
                return;
            }
        }
    }

    fn fail_streams(&mut self) {
        let message = self.failure.clone().unwrap_or_default();
        let w = self.store.data_mut();
        for (id, _) in std::mem::take(&mut w.streams) {
            self.finished
                .entry(id)
                .or_insert_with(|| Outcome::Failed(message.clone()));
        }
    }

    fn stream(&mut self, id: u32) -> Option<&mut Stream> {
        self.store.data_mut().streams.get_mut(&id)
    }

    /// One move of one stream; false when it waits or is gone.
    fn step(&mut self, id: u32) -> bool {
        let limit = self.settings.buffer_limit;
        let ex = self.exports.clone();
        let Some(s) = self.stream(id) else {
            return false;
        };
        if let Some(reply) = s.local_reply.take() {
            s.send_local_reply(reply);
            return true;
        }
        if s.reset && s.phase != Phase::Done {
            s.phase = Phase::Done;
            let body = Body(std::mem::take(&mut s.client_body));
            self.finished.insert(id, Outcome::Reset(body));
            self.destroy(id);
            return true;
        }
        match s.phase {
            Phase::RequestHeaders => {
                let eos = s.pending_chunks.is_empty();
                let n = s.request_headers.len() as u32;
                let then = if eos { After::Upstream } else { After::Body };
                let action = self.run(id, ex.request_headers, n, eos, "proxy_on_request_headers");
                let Some(s) = self.stream(id) else {
                    return false;
                };
                match action {
                    Some(PAUSE) => s.phase = Phase::RequestPaused { then },
                    _ => s.continue_request(then),
                }
            }
            Phase::RequestPaused { then } => {
                if !s.resume_request {
                    return false;
                }
                s.resume_request = false;
                s.continue_request(then);
            }
            Phase::RequestBody { merge } => {
                // Body that arrived while the headers were held comes in one
                // piece, up to Envoy's buffer limit.
                let mut chunk = s.pending_chunks.remove(0);
                while merge
                    && !s.pending_chunks.is_empty()
                    && chunk.len() + s.pending_chunks[0].len() <= limit
                {
                    chunk.extend(s.pending_chunks.remove(0));
                }
                s.request_buffer.extend(chunk);
                if s.buffering_request && s.request_buffer.len() > limit {
                    s.local_reply = Some(LocalReply {
                        response: Response::new(
                            413,
                            &[("content-type", "text/plain")],
                            b"Payload Too Large".to_vec(),
                        ),
                        by_filter: false,
                    });
                    return true;
                }
                let eos = s.pending_chunks.is_empty();
                let size = s.request_buffer.len() as u32;
                s.in_request_body = true;
                let action = self.run(id, ex.request_body, size, eos, "proxy_on_request_body");
                let Some(s) = self.stream(id) else {
                    return false;
                };
                match (action, eos) {
                    (Some(PAUSE), true) => {
                        s.buffering_request = true;
                        s.phase = Phase::RequestPaused {
                            then: After::Upstream,
                        };
                    }
                    (Some(PAUSE), false) => {
                        s.buffering_request = true;
                        s.phase = Phase::RequestBody { merge: false };
                    }
                    (_, true) => s.continue_request(After::Upstream),
                    (_, false) => {
                        s.pass_request_body();
                        s.phase = Phase::RequestBody { merge: false };
                    }
                }
            }
            Phase::Upstream => {
                s.forwarded_headers = Some(s.request_headers.clone());
                s.response_headers = s.upstream.headers.clone();
                s.response_chunks = std::mem::take(&mut s.upstream_chunks);
                s.phase = Phase::ResponseHeaders;
            }
            Phase::ResponseHeaders => {
                let eos = s.response_chunks.is_empty();
                let n = s.response_headers.len() as u32;
                s.response_headers_open = true;
                let then = if eos {
                    After::Complete
                } else {
                    After::ResponseBody
                };
                let action = self.run(id, ex.response_headers, n, eos, "proxy_on_response_headers");
                let Some(s) = self.stream(id) else {
                    return false;
                };
                match action {
                    Some(PAUSE) => s.phase = Phase::ResponsePaused { then },
                    _ => s.continue_response(then),
                }
            }
            Phase::ResponsePaused { then } => {
                if !s.resume_response {
                    return false;
                }
                s.resume_response = false;
                s.continue_response(then);
            }
            Phase::ResponseBody => {
                let chunk = s.response_chunks.remove(0);
                s.response_buffer.extend(chunk);
                let eos = s.response_chunks.is_empty();
                let size = s.response_buffer.len() as u32;
                s.in_response_body = true;
                let action = self.run(id, ex.response_body, size, eos, "proxy_on_response_body");
                let Some(s) = self.stream(id) else {
                    return false;
                };
                match (action, eos) {
                    (Some(PAUSE), true) => {
                        s.phase = Phase::ResponsePaused {
                            then: After::Complete,
                        }
                    }
                    (Some(PAUSE), false) => s.phase = Phase::ResponseBody,
                    (_, true) => s.continue_response(After::Complete),
                    (_, false) => {
                        s.client_chunks.push(s.response_buffer.clone());
                        s.client_body.append(&mut s.response_buffer);
                        s.phase = Phase::ResponseBody;
                    }
                }
            }
            Phase::Complete => self.complete(id),
            Phase::Done => return false,
        }
        true
    }

    /// Calls a stream callback `(id, size, end_of_stream) -> action`; `None`
    /// when the callback is not exported (Envoy continues) or trapped.
    fn run(
        &mut self,
        id: u32,
        f: Option<PhaseFn>,
        size: u32,
        eos: bool,
        what: &str,
    ) -> Option<u32> {
        let f = f?;
        self.call(id, &f, (id, size, u32::from(eos)), what).ok()
    }

    /// The client has its response: record the outcome, then tear the
    /// context down (`on_done`, and `on_log`/`on_delete` once done).
    fn complete(&mut self, id: u32) {
        let Some(s) = self.stream(id) else {
            return;
        };
        s.phase = Phase::Done;
        let status = s
            .response_headers
            .get(":status")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = Body(std::mem::take(&mut s.client_body));
        let outcome = match s.replied {
            Some(by_filter) => Outcome::Replied(Reply {
                status,
                headers: s.response_headers.clone(),
                body,
                by_filter,
                filter_state: s.filter_state.clone(),
                request_headers: s.request_headers.clone(),
            }),
            None => Outcome::Forwarded(Forwarded {
                headers: s.forwarded_headers.clone().unwrap_or_default(),
                body: Body(s.forwarded_body.clone()),
                route_cache_clears: s.route_cache_clears,
                response: Response {
                    status,
                    headers: s.response_headers.clone(),
                    body,
                },
                filter_state: s.filter_state.clone(),
                response_chunks: std::mem::take(&mut s.client_chunks)
                    .into_iter()
                    .map(Body)
                    .collect(),
            }),
        };
        self.finished.insert(id, outcome);
        self.destroy(id);
    }

    /// `on_done`; then, unless the filter holds the context until it calls
    /// `proxy_done`, `on_log` and `on_delete`.
    fn destroy(&mut self, id: u32) {
        let done = match self.exports.done.clone() {
            Some(f) => self.call(id, &f, id, "proxy_on_done").map(|r| r != 0),
            None => Ok(true),
        };
        if let Ok(true) = done {
            self.release(id);
        }
    }

    /// Contexts whose `on_done` returned false and that called `proxy_done`.
    fn release_done(&mut self) -> bool {
        let ids = std::mem::take(&mut self.store.data_mut().done_requested);
        let mut moved = false;
        for id in ids {
            if self.stream(id).is_some_and(|s| s.phase == Phase::Done) {
                self.release(id);
                moved = true;
            } else {
                // Not finished yet: keep the request for when it is.
                self.store.data_mut().done_requested.push(id);
            }
        }
        moved
    }

    fn release(&mut self, id: u32) {
        if let Some(f) = self.exports.log.clone() {
            let _ = self.call(id, &f, id, "proxy_on_log");
        }
        if let Some(f) = self.exports.delete.clone() {
            let _ = self.call(id, &f, id, "proxy_on_delete");
        }
        self.store.data_mut().streams.remove(&id);
    }
}

impl Stream {
    /// Envoy sends a local reply once the callback returns. Before the
    /// response started, it runs through the filter's response callbacks;
    /// during the response phase it replaces the response as it stands.
    fn send_local_reply(&mut self, reply: LocalReply) {
        self.replied = Some(reply.by_filter);
        self.request_headers_open = false;
        self.in_request_body = false;
        self.pending_chunks.clear();
        let in_response = matches!(
            self.phase,
            Phase::ResponseHeaders | Phase::ResponseBody | Phase::ResponsePaused { .. }
        );
        self.response_headers = reply.response.headers;
        self.response_buffer.clear();
        if in_response {
            self.response_headers_open = false;
            self.in_response_body = false;
            self.client_body = reply.response.body.0;
            self.phase = Phase::Complete;
        } else {
            self.response_chunks = if reply.response.body.is_empty() {
                Vec::new()
            } else {
                vec![reply.response.body.0]
            };
            self.phase = Phase::ResponseHeaders;
        }
    }

    /// The request leaves the filter (headers first, then any held body).
    fn continue_request(&mut self, then: After) {
        self.request_headers_open = false;
        match then {
            After::Body => {
                self.phase = Phase::RequestBody { merge: true };
            }
            _ => {
                self.pass_request_body();
                self.phase = Phase::Upstream;
            }
        }
    }

    fn pass_request_body(&mut self) {
        self.forwarded_body.append(&mut self.request_buffer);
        self.buffering_request = false;
        self.in_request_body = false;
    }

    fn continue_response(&mut self, then: After) {
        self.response_headers_open = false;
        match then {
            After::ResponseBody => self.phase = Phase::ResponseBody,
            _ => {
                if !self.response_buffer.is_empty() {
                    self.client_chunks.push(self.response_buffer.clone());
                }
                self.client_body.append(&mut self.response_buffer);
                self.in_response_body = false;
                self.phase = Phase::Complete;
            }
        }
    }
}
