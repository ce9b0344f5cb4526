//! What the host keeps: process-wide state shared by workers (clock, shared
//! data, metrics) and one worker's state (its contexts, streams, callouts,
//! timer, logs).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::abi::Status;
use super::http::{Headers, Response};
use super::memory::Guest;

/// Envoy's shared-data store: per key a value and a CAS version. Versions
/// start at 1 and never repeat 0, which means "no CAS" to `set`.
#[derive(Debug, Default)]
pub(crate) struct SharedData {
    entries: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedData {
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.get(key).cloned()
    }

    /// Sets `key`; a non-zero `cas` must match the stored version of an
    /// existing key (a missing key accepts any `cas`, as in Envoy).
    pub fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Err(Status::CasMismatch);
            }
        }
        self.last_cas = self.last_cas.wrapping_add(1).max(1);
        self.entries
            .insert(key.to_string(), (value.to_vec(), self.last_cas));
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    fn from_abi(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }

    fn tag(self) -> u32 {
        match self {
            Self::Counter => 0,
            Self::Gauge => 1,
            Self::Histogram => 2,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Metric {
    pub kind: MetricKind,
    pub value: u64,
    pub records: Vec<u64>,
}

/// Stats by name: the same name defined by several workers is one stat.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub by_name: BTreeMap<String, Metric>,
}

/// One worker's metric ids. Like Envoy, an id carries its kind in the low
/// two bits, and ids grow by 4.
#[derive(Debug, Default)]
pub(crate) struct MetricIds {
    names: HashMap<u32, String>,
    next: u32,
}

impl MetricIds {
    pub fn define(&mut self, metrics: &mut Metrics, kind: u32, name: &str) -> Result<u32, Status> {
        let kind = MetricKind::from_abi(kind).ok_or(Status::BadArgument)?;
        self.next += 1;
        let id = (self.next << 2) | kind.tag();
        self.names.insert(id, name.to_string());
        metrics.by_name.entry(name.to_string()).or_insert(Metric {
            kind,
            value: 0,
            records: Vec::new(),
        });
        Ok(id)
    }

    fn lookup<'m>(&self, metrics: &'m mut Metrics, id: u32) -> Result<&'m mut Metric, Status> {
        let name = self.names.get(&id).ok_or(Status::NotFound)?;
        metrics.by_name.get_mut(name).ok_or(Status::NotFound)
    }

    /// Counters only go up (Envoy refuses a non-positive offset); gauges
    /// move either way.
    pub fn increment(&self, metrics: &mut Metrics, id: u32, offset: i64) -> Result<(), Status> {
        let m = self.lookup(metrics, id)?;
        match m.kind {
            MetricKind::Counter if offset > 0 => m.value += offset as u64,
            MetricKind::Counter | MetricKind::Histogram => return Err(Status::BadArgument),
            MetricKind::Gauge => m.value = m.value.saturating_add_signed(offset),
        }
        Ok(())
    }

    pub fn record(&self, metrics: &mut Metrics, id: u32, value: u64) -> Result<(), Status> {
        let m = self.lookup(metrics, id)?;
        match m.kind {
            MetricKind::Counter => m.value += value,
            MetricKind::Gauge => m.value = value,
            MetricKind::Histogram => m.records.push(value),
        }
        Ok(())
    }

    pub fn get(&self, metrics: &mut Metrics, id: u32) -> Result<u64, Status> {
        let m = self.lookup(metrics, id)?;
        match m.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(m.value),
        }
    }
}

/// State shared by every worker of one Envoy process.
#[derive(Debug, Default)]
pub(crate) struct Process {
    /// Virtual wall clock, nanoseconds since the Unix epoch.
    pub now_ns: u64,
    pub shared: SharedData,
    pub metrics: Metrics,
}

pub(crate) type SharedProcess = Arc<Mutex<Process>>;

pub(crate) fn lock(p: &SharedProcess) -> MutexGuard<'_, Process> {
    // A panic while holding the lock is already a failed test; keep going.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a stream is in Envoy's filter chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    RequestHeaders,
    /// Body chunks left to deliver; `merge` delivers everything that
    /// arrived while the headers were held, in one call.
    RequestBody {
        merge: bool,
    },
    /// The filter returned `Pause`; `then` is where a resume goes.
    RequestPaused {
        then: After,
    },
    Upstream,
    ResponseHeaders,
    ResponseBody,
    ResponsePaused {
        then: After,
    },
    Complete,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    Body,
    Upstream,
    ResponseBody,
    Complete,
}

#[derive(Debug)]
pub(crate) struct LocalReply {
    pub response: Response,
    pub by_filter: bool,
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub phase: Phase,
    pub request_headers: Headers,
    /// False once the headers went on to the router: Envoy refuses changes
    /// after that point.
    pub request_headers_open: bool,
    pub pending_chunks: Vec<Vec<u8>>,
    /// What Envoy holds for the filter (buffered across `Pause`d calls).
    pub request_buffer: Vec<u8>,
    /// The filter paused a body callback, so Envoy buffers (and enforces its
    /// buffer limit) instead of streaming.
    pub buffering_request: bool,
    pub in_request_body: bool,
    pub forwarded_headers: Option<Headers>,
    pub forwarded_body: Vec<u8>,
    pub upstream: Response,
    /// The upstream body as Envoy delivers it, chunk by chunk.
    pub upstream_chunks: Vec<Vec<u8>>,
    pub response_headers: Headers,
    pub response_headers_open: bool,
    pub response_chunks: Vec<Vec<u8>>,
    pub response_buffer: Vec<u8>,
    pub in_response_body: bool,
    pub client_body: Vec<u8>,
    /// What went to the client after each response body callback.
    pub client_chunks: Vec<Vec<u8>>,
    /// The filter reset the stream (`proxy_close_stream`).
    pub reset: bool,
    pub resume_request: bool,
    pub resume_response: bool,
    pub local_reply: Option<LocalReply>,
    pub replied: Option<bool>,
    pub route_cache_clears: u32,
    pub callouts: Vec<u32>,
    /// `proxy_set_property` values, under Envoy's filter-state keys
    /// (`wasm.<path>`), as an access log would read them.
    pub filter_state: BTreeMap<String, Vec<u8>>,
}

/// Something to run just before the filter's next shared-data write to a
/// key starting with `prefix`: another worker's request, landing between
/// this worker's read and its compare-and-swap.
pub(crate) struct SharedWriteHook {
    pub prefix: String,
    pub run: Box<dyn FnOnce() + Send>,
}

/// An HTTP callout the filter made, waiting for an answer.
#[derive(Clone, Debug)]
pub(crate) struct PendingCallout {
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout: Option<Duration>,
    pub deadline_ns: Option<u64>,
    pub stream: Option<u32>,
}

/// The response being delivered in `proxy_on_http_call_response`.
#[derive(Debug, Default)]
pub(crate) struct CallResponse {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub(crate) fn from_abi(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }

    pub(crate) fn to_abi(self) -> u32 {
        self as u32
    }
}

/// One line the filter logged (or the host noted about the filter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Everything one worker's VM can reach through host calls.
pub(crate) struct Worker {
    pub process: SharedProcess,
    pub guest: Option<Guest>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub configuring: bool,
    pub properties: HashMap<String, Vec<u8>>,
    pub clusters: Vec<String>,
    pub log_level: LogLevel,
    pub root_id: u32,
    /// The context whose callback is running; `effective` may differ after
    /// `proxy_set_effective_context`.
    pub current: u32,
    pub effective: u32,
    pub streams: BTreeMap<u32, Stream>,
    pub callouts: BTreeMap<u32, PendingCallout>,
    pub next_callout: u32,
    pub call_response: Option<CallResponse>,
    pub tick_period: Option<Duration>,
    pub next_tick_ns: Option<u64>,
    pub metric_ids: MetricIds,
    pub logs: Vec<LogLine>,
    pub route_cache_clears: u32,
    pub done_requested: Vec<u32>,
    pub rng: u64,
    pub shared_write_hook: Option<SharedWriteHook>,
}

impl Worker {
    pub fn new(process: SharedProcess) -> Self {
        Worker {
            process,
            guest: None,
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            configuring: false,
            properties: HashMap::new(),
            clusters: Vec::new(),
            log_level: LogLevel::Info,
            root_id: 1,
            current: 0,
            effective: 0,
            streams: BTreeMap::new(),
            callouts: BTreeMap::new(),
            next_callout: 1,
            call_response: None,
            tick_period: None,
            next_tick_ns: None,
            metric_ids: MetricIds::default(),
            logs: Vec::new(),
            route_cache_clears: 0,
            done_requested: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
            shared_write_hook: None,
        }
    }

    pub fn now_ns(&self) -> u64 {
        lock(&self.process).now_ns
    }

    /// The stream of the effective context, if it is a stream.
    pub fn effective_stream(&mut self) -> Option<&mut Stream> {
        self.streams.get_mut(&self.effective)
    }

    pub fn note(&mut self, level: LogLevel, message: String) {
        self.logs.push(LogLine { level, message });
    }

    /// Deterministic bytes for `random_get`: reproducible test runs.
    pub fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            // splitmix64
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            out.extend_from_slice(&z.to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_cas_rejects_stale_versions() {
        let mut s = SharedData::default();
        assert_eq!(s.get("k"), None);
        s.set("k", b"a", 0).unwrap();
        let (v, cas) = s.get("k").unwrap();
        assert_eq!(v, b"a");
        s.set("k", b"b", cas).unwrap();
        assert_eq!(s.set("k", b"c", cas), Err(Status::CasMismatch));
        let (v, newer) = s.get("k").unwrap();
        assert_eq!(v, b"b");
        assert_ne!(newer, cas);
        // No CAS: last writer wins. Missing key: any CAS is accepted.
        s.set("k", b"d", 0).unwrap();
        s.set("other", b"x", 12345).unwrap();
        assert_eq!(s.get("other").unwrap().0, b"x");
    }

    #[test]
    fn metrics_follow_envoy_rules() {
        let mut m = Metrics::default();
        let mut ids = MetricIds::default();
        let c = ids.define(&mut m, 0, "mcp_auth.allowed").unwrap();
        let g = ids.define(&mut m, 1, "mcp_auth.cached").unwrap();
        let h = ids.define(&mut m, 2, "mcp_auth.latency").unwrap();
        assert_eq!(c & 3, 0);
        assert_eq!(g & 3, 1);
        assert_eq!(h & 3, 2);
        assert_eq!(ids.define(&mut m, 7, "bad"), Err(Status::BadArgument));

        ids.increment(&mut m, c, 2).unwrap();
        assert_eq!(ids.increment(&mut m, c, 0), Err(Status::BadArgument));
        assert_eq!(ids.increment(&mut m, c, -1), Err(Status::BadArgument));
        assert_eq!(ids.get(&mut m, c), Ok(2));

        ids.increment(&mut m, g, 5).unwrap();
        ids.increment(&mut m, g, -2).unwrap();
        assert_eq!(ids.get(&mut m, g), Ok(3));
        ids.record(&mut m, g, 9).unwrap();
        assert_eq!(ids.get(&mut m, g), Ok(9));

        ids.record(&mut m, h, 40).unwrap();
        assert_eq!(ids.get(&mut m, h), Err(Status::BadArgument));
        assert_eq!(m.by_name["mcp_auth.latency"].records, vec![40]);
        assert_eq!(ids.get(&mut m, 999), Err(Status::NotFound));
    }

    #[test]
    fn workers_defining_one_name_share_the_stat() {
        let mut m = Metrics::default();
        let (mut a, mut b) = (MetricIds::default(), MetricIds::default());
        let ia = a.define(&mut m, 0, "x").unwrap();
        let ib = b.define(&mut m, 0, "x").unwrap();
        a.increment(&mut m, ia, 1).unwrap();
        b.increment(&mut m, ib, 1).unwrap();
        assert_eq!(m.by_name["x"].value, 2);
    }

    #[test]
    fn random_bytes_are_reproducible() {
        let p = SharedProcess::default();
        let mut a = Worker::new(p.clone());
        let mut b = Worker::new(p);
        assert_eq!(a.random_bytes(13), b.random_bytes(13));
        assert_ne!(a.random_bytes(8), vec![0; 8]);
    }
}
