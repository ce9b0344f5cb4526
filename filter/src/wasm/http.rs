//! The per-request context.

use super::host::{self, inc, log};
use super::response;
use super::worker::{self, resolve, Worker};
use crate::abi;
use crate::cache::{Decision, Grant, Key, Reason};
use crate::config::Config;
use crate::headermap;
use crate::introspect::{self, Answer, Unavailable};
use crate::jsonrpc::{self, Claimed, Verdict};
use crate::message;
use crate::metrics::Metric;
use crate::ratelimit::Admission;
use crate::record::{self, Facts};
use crate::replies::{self, Reply, Unauthorized};
use crate::request::{self, Front};
use mcpgw_token::ratelimit::RateLimit;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Where a request stands.
#[derive(Debug, Clone, Default)]
pub(crate) enum Phase {
    /// Headers not seen yet, or nothing left to do.
    #[default]
    Idle,
    /// Paused on the introspection callout for this key.
    Waiting(Key),
    /// Allowed; the body must be buffered and checked.
    Inspect(Rc<Grant>),
    /// Allowed; the body is read to its end for the record only.
    Record,
    /// Over its rate limit: the body is read for its JSON-RPC id, then 429.
    Throttled(RateLimit, u64),
}

/// Per-request state another context may update (the callout's answer is
/// delivered to whichever stream sent it, and applied to all waiters).
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub phase: Phase,
    pub has_body: bool,
    pub mcp_method: Option<Vec<u8>>,
    pub mcp_name: Option<Vec<u8>>,
    /// Size of the buffered body at the last body callback.
    pub body_size: usize,
    /// `Mcp-Method` or `Mcp-Name` sent more than once.
    pub repeated_header: Option<&'static str>,
    /// What the request's record will say; written once ([`publish`]).
    pub facts: Facts,
    pub recorded: bool,
    /// `Last-Event-ID` sent: a resumed event stream.
    pub last_event_id: bool,
    /// The answer holds list results to filter.
    pub listing: Option<response::Listing>,
}

pub(crate) type StreamRef = Rc<RefCell<Stream>>;

/// A decision ready to apply to a stream.
pub(crate) enum Outcome {
    Allow {
        grant: Rc<Grant>,
        stale: bool,
    },
    /// The reason is the token API's, for a 401 after a lookup.
    Deny(Reply, Metric, Option<Reason>),
}

pub(crate) struct Http {
    id: u32,
    worker: Rc<RefCell<Worker>>,
    stream: StreamRef,
}

impl Http {
    pub fn new(id: u32, worker: Rc<RefCell<Worker>>) -> Http {
        Http {
            id,
            worker,
            stream: Rc::default(),
        }
    }

    fn lookup(&mut self, cfg: &Rc<Config>, token: &str) -> Action {
        let key = self.worker.borrow_mut().keys.key_of(token);
        let now = host::now_ms();
        self.stream.borrow_mut().facts.key = Some(key);
        let cached = self.worker.borrow().cache.get(&key, now).cloned();
        if let Some(d) = cached {
            inc(Metric::CacheHits);
            self.stream.borrow_mut().facts.cache = record::Cache::Hit;
            return self.decide_now(cfg, d);
        }
        let shared = self.worker.borrow_mut().lookup_shared(&key, now);
        if let Some(d) = shared {
            inc(Metric::CacheSharedHits);
            self.stream.borrow_mut().facts.cache = record::Cache::Shared;
            return self.decide_now(cfg, d);
        }
        inc(Metric::CacheMisses);
        self.stream.borrow_mut().facts.cache = record::Cache::Callout;
        let joined = self
            .worker
            .borrow_mut()
            .inflight
            .join(&key, self.id, self.stream.clone());
        if joined {
            self.stream.borrow_mut().phase = Phase::Waiting(key);
            inc(Metric::CoalescedWaits);
            return Action::Pause;
        }
        let busy = {
            let w = self.worker.borrow();
            u64::try_from(w.inflight.len()).unwrap_or(u64::MAX) >= cfg.token_api.max_inflight
        };
        if busy {
            let outcome = self.worker.borrow_mut().overloaded(&key, now);
            return deliver(cfg, &self.stream, &outcome, false);
        }
        self.stream.borrow_mut().phase = Phase::Waiting(key);
        let callout = introspect::introspect_request(&cfg.token_api, token);
        let sent = self.dispatch_http_call(
            &cfg.token_api.cluster,
            callout.headers(),
            None,
            vec![],
            Duration::from_millis(cfg.token_api.timeout_ms),
        );
        match sent {
            Ok(_) => {
                inc(Metric::Callouts);
                self.worker.borrow_mut().inflight.start(
                    key,
                    token.to_string(),
                    self.id,
                    self.stream.clone(),
                );
                Action::Pause
            }
            Err(status) => {
                inc(Metric::CalloutFailures);
                log(
                    LogLevel::Warn,
                    &format!(
                        "mcp_auth: cannot call the token API on cluster {:?} ({status:?}); \
                         check token_api.cluster",
                        cfg.token_api.cluster
                    ),
                );
                let outcome = self.worker.borrow_mut().failure(&key, now);
                deliver(cfg, &self.stream, &outcome, false)
            }
        }
    }

    fn decide_now(&mut self, cfg: &Config, decision: Decision) -> Action {
        let outcome = match decision {
            Decision::Active(grant) => Outcome::Allow {
                grant,
                stale: false,
            },
            Decision::Inactive(r) => Outcome::Deny(
                replies::unauthorized(cfg, Unauthorized::Inactive(r)),
                Metric::DeniedInvalid,
                Some(r),
            ),
        };
        deliver(cfg, &self.stream, &outcome, false)
    }

    fn introspection_result(
        &self,
        num_headers: usize,
        body_size: usize,
        now: u64,
    ) -> Result<Answer, Unavailable> {
        let status = if num_headers == 0 {
            None
        } else {
            let block = host::header_block(host::CALL_RESPONSE_HEADERS);
            headermap::decode(&block).and_then(|pairs| introspect::status_of(&pairs))
        };
        if body_size > introspect::MAX_INTROSPECT_BODY {
            return Err(Unavailable(format!("body of {body_size} bytes")));
        }
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        introspect::parse_introspection(status, &body, now)
    }

    /// Checks the buffered body of an allowed request.
    fn inspect(&mut self, cfg: &Config, grant: &Rc<Grant>) -> Action {
        let (size, method, name) = {
            let mut s = self.stream.borrow_mut();
            s.phase = Phase::Idle;
            (s.body_size, s.mcp_method.take(), s.mcp_name.take())
        };
        let body = request_body(size);
        let claimed = Claimed {
            method: method.as_deref(),
            name: name.as_deref(),
        };
        let scopes = request::scopes_to_check(cfg, grant);
        let (verdict, reading) = match message::read(&body) {
            Ok(reading) => {
                self.stream.borrow_mut().facts.called(&reading);
                (jsonrpc::check(&reading, claimed, scopes), Some(reading))
            }
            Err(refusal) => (jsonrpc::refused(refusal), None),
        };
        let metric = match &verdict {
            Verdict::Allow => {
                inc(Metric::Allowed);
                if let Some(reading) = &reading {
                    response::plan_body(cfg, grant, &self.stream, reading);
                }
                publish(cfg, &self.stream, record::Decision::Allow);
                return Action::Continue;
            }
            Verdict::Deny { .. } => Metric::DeniedScope,
            Verdict::Mismatch { .. } => Metric::DeniedHeaderMismatch,
            Verdict::ParseError { .. } | Verdict::InvalidRequest { .. } => Metric::DeniedBadBody,
        };
        match replies::for_verdict(cfg, &verdict) {
            Some(reply) => refuse(cfg, &self.stream, &reply, metric),
            None => Action::Continue,
        }
    }

    /// The body of a request read for the record only: its method and
    /// name are noted, it goes on whatever it holds.
    fn record_body(&mut self, cfg: &Config, complete: bool) -> Action {
        let size = {
            let mut s = self.stream.borrow_mut();
            s.phase = Phase::Idle;
            s.body_size
        };
        if complete {
            if let Ok(reading) = message::read(&request_body(size)) {
                self.stream.borrow_mut().facts.called(&reading);
            }
        }
        publish(cfg, &self.stream, record::Decision::Allow);
        Action::Continue
    }

    /// 429 for a throttled request once its body (and so its JSON-RPC id)
    /// is here; `complete` false: the body is too large to read.
    fn throttled(
        &mut self,
        cfg: &Config,
        limit: &RateLimit,
        retry_s: u64,
        complete: bool,
    ) -> Action {
        let size = {
            let mut s = self.stream.borrow_mut();
            s.phase = Phase::Idle;
            s.body_size
        };
        let id = if complete {
            message::read(&request_body(size))
                .ok()
                .map(|r| first_request_id(&r))
        } else {
            None
        };
        let reply = replies::rate_limited(limit, retry_s, id.as_ref());
        refuse(cfg, &self.stream, &reply, Metric::DeniedRateLimited)
    }

    fn inspecting(&self) -> Option<Rc<Grant>> {
        match &self.stream.borrow().phase {
            Phase::Inspect(g) => Some(g.clone()),
            _ => None,
        }
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let key = match self.stream.borrow().phase {
            Phase::Waiting(k) => k,
            _ => return,
        };
        let now = host::now_ms();
        let result = self.introspection_result(num_headers, body_size, now);
        resolve(&self.worker, &key, result, now);
    }

    fn on_done(&mut self) -> bool {
        if let Phase::Waiting(key) = self.stream.borrow().phase {
            self.worker.borrow_mut().inflight.leave(&key, self.id);
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let block = host::header_block(host::REQUEST_HEADERS);
        let pairs = headermap::decode(&block).unwrap_or_default();
        let cfg = self.worker.borrow().cfg.clone();
        let scan = request::scan(&pairs, &cfg.headers.strip_prefix);
        for name in &scan.strip {
            host::remove_request_header(name);
        }
        match request::front(&cfg, &scan) {
            Front::Bypass => {
                // A bypass path carries no credential upstream, and the
                // route is chosen again without the stripped headers.
                if !scan.authorization.is_empty() {
                    host::remove_request_header(b"authorization");
                }
                if !abi::HEADER_CHANGES_CLEAR_ROUTE
                    && (!scan.strip.is_empty() || !scan.authorization.is_empty())
                {
                    host::clear_route_cache();
                }
                inc(Metric::Bypassed);
                publish(&cfg, &self.stream, record::Decision::Bypass);
                Action::Continue
            }
            Front::Reject(why) => {
                let metric = match why {
                    Unauthorized::Bearer(_) => Metric::DeniedMissing,
                    Unauthorized::Malformed(_) => Metric::DeniedMalformed,
                    Unauthorized::QueryToken => Metric::DeniedQueryToken,
                    Unauthorized::Inactive(_) => Metric::DeniedInvalid,
                };
                refuse(
                    &cfg,
                    &self.stream,
                    &replies::unauthorized(&cfg, why),
                    metric,
                )
            }
            Front::Token(token) => {
                {
                    let mut s = self.stream.borrow_mut();
                    s.has_body = !end_of_stream;
                    s.mcp_method = scan.mcp_method.map(<[u8]>::to_vec);
                    s.mcp_name = scan.mcp_name.map(<[u8]>::to_vec);
                    s.repeated_header = scan.repeated;
                    s.last_event_id = scan.last_event_id;
                }
                self.lookup(&cfg, token)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let phase = self.stream.borrow().phase.clone();
        let too_large =
            |cfg: &Config| u64::try_from(body_size).unwrap_or(u64::MAX) > cfg.max_body_bytes;
        match phase {
            Phase::Record | Phase::Throttled(..) => {
                let cfg = self.worker.borrow().cfg.clone();
                self.stream.borrow_mut().body_size = body_size;
                // The record's read stops early, far below Envoy's buffer
                // limit: a large body goes on unread rather than get a 413.
                let over = match phase {
                    Phase::Record => body_size > record::MAX_BODY,
                    _ => too_large(&cfg),
                };
                if !end_of_stream && !over {
                    return Action::Pause;
                }
                return match phase {
                    Phase::Throttled(limit, retry_s) => {
                        self.throttled(&cfg, &limit, retry_s, !over)
                    }
                    _ => self.record_body(&cfg, !over),
                };
            }
            _ => {}
        }
        let Some(grant) = self.inspecting() else {
            return Action::Continue;
        };
        let cfg = self.worker.borrow().cfg.clone();
        self.stream.borrow_mut().body_size = body_size;
        if too_large(&cfg) {
            self.stream.borrow_mut().phase = Phase::Idle;
            return refuse(
                &cfg,
                &self.stream,
                &replies::body_too_large(cfg.max_body_bytes),
                Metric::DeniedBodyTooLarge,
            );
        }
        if !end_of_stream {
            // Buffer until the whole body is here.
            return Action::Pause;
        }
        self.inspect(&cfg, &grant)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let phase = self.stream.borrow().phase.clone();
        match phase {
            Phase::Throttled(limit, retry_s) => {
                let cfg = self.worker.borrow().cfg.clone();
                return self.throttled(&cfg, &limit, retry_s, true);
            }
            Phase::Record => {
                let cfg = self.worker.borrow().cfg.clone();
                return self.record_body(&cfg, true);
            }
            _ => {}
        }
        let Some(grant) = self.inspecting() else {
            return Action::Continue;
        };
        let cfg = self.worker.borrow().cfg.clone();
        self.inspect(&cfg, &grant)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.stream.borrow().listing.is_none() {
            return Action::Continue;
        }
        let cfg = self.worker.borrow().cfg.clone();
        response::on_headers(&cfg, &self.stream, end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        response::on_body(&self.stream, &self.worker, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        response::on_trailers(&self.stream, &self.worker)
    }
}

/// The buffered request body of the effective stream.
fn request_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The id to answer a body with: its first request's (null without one).
fn first_request_id(reading: &message::Reading) -> serde_json::Value {
    reading
        .messages()
        .iter()
        .find(|m| m.method().is_some())
        .map(|m| m.id.clone())
        .unwrap_or(serde_json::Value::Null)
}

/// Writes the request's record (once) as the configured filter-state value,
/// where Envoy's access log reads it.
fn publish(cfg: &Config, stream: &StreamRef, decision: record::Decision) {
    let Some(property) = &cfg.record.property else {
        return;
    };
    let line = {
        let mut s = stream.borrow_mut();
        if s.recorded {
            return;
        }
        s.recorded = true;
        record::encode(decision, &s.facts)
    };
    host::set_property(property, line.as_bytes());
}

/// Sends a local reply from the effective context.
fn refuse(cfg: &Config, stream: &StreamRef, reply: &Reply, metric: Metric) -> Action {
    inc(metric);
    publish(cfg, stream, record::Decision::Deny(metric));
    let _ = hostcalls::send_http_response(
        reply.status,
        reply.header_refs(),
        Some(reply.body.as_bytes()),
    );
    Action::Pause
}

/// Counts the request against its token's rate limit, if it has one: `None`
/// to go on, or the limit and the wait when it is spent.
fn over_limit(cfg: &Config, stream: &StreamRef, grant: &Grant) -> Option<(RateLimit, u64)> {
    let limit = grant.rate_limit.filter(|_| cfg.rate_limit.enforce)?;
    let key = stream.borrow().facts.key?;
    match worker::admit(&cfg.token_api.cluster, &key, &limit, host::now_ns()) {
        Admission::Allowed => None,
        Admission::Limited { retry_after_s } => {
            stream.borrow_mut().facts.retry_after_s = Some(retry_after_s);
            Some((limit, retry_after_s))
        }
    }
}

/// Applies `outcome` to `stream` in the effective context. `resume`: the
/// stream is paused and must be resumed when allowed (a callout answer);
/// otherwise the returned action tells the current callback what to return.
pub(crate) fn deliver(cfg: &Config, stream: &StreamRef, outcome: &Outcome, resume: bool) -> Action {
    match outcome {
        Outcome::Deny(reply, metric, inactive) => {
            {
                let mut s = stream.borrow_mut();
                s.phase = Phase::Idle;
                s.facts.inactive = *inactive;
            }
            refuse(cfg, stream, reply, *metric)
        }
        Outcome::Allow { grant, stale } => {
            {
                let mut s = stream.borrow_mut();
                s.facts.grant = Some(grant.clone());
                if *stale {
                    s.facts.cache = record::Cache::Stale;
                }
            }
            let repeated = stream.borrow().repeated_header;
            if let Some(header) = repeated {
                // Which of the values would Envoy, a rate limiter or the
                // server use? None can be checked against the body.
                stream.borrow_mut().phase = Phase::Idle;
                let verdict = Verdict::Mismatch {
                    detail: format!("{header} sent more than once"),
                    id: serde_json::Value::Null,
                };
                return match replies::for_verdict(cfg, &verdict) {
                    Some(reply) => refuse(cfg, stream, &reply, Metric::DeniedHeaderMismatch),
                    None => Action::Pause,
                };
            }
            if *stale {
                inc(Metric::StaleServes);
            }
            let throttled = over_limit(cfg, stream, grant);
            if let Some((limit, retry_s)) = throttled {
                if !stream.borrow().has_body {
                    stream.borrow_mut().phase = Phase::Idle;
                    let reply = replies::rate_limited(&limit, retry_s, None);
                    return refuse(cfg, stream, &reply, Metric::DeniedRateLimited);
                }
            }
            host::remove_request_header(b"authorization");
            let h = &cfg.headers;
            host::set_request_header(&h.tenant, &grant.tenant);
            host::set_request_header(&h.project, &grant.project);
            if let Some(name) = &h.token_id {
                host::set_request_header(name, &grant.token_id);
            }
            if let Some(name) = &h.token_name {
                host::set_request_header(name, &grant.name);
            }
            if throttled.is_some() {
                // The JSON-RPC id is in the body, which only comes once the
                // headers go on: a route on this header holds them there
                // (envoy/gateway.yaml) until the 429 is sent.
                host::set_request_header(&h.hold(), "rate_limited");
            }
            response::prepare(cfg, grant, stream);
            // The headers above changed: Envoy picks the route again by
            // itself under this ABI (src/abi.rs), else it must be told.
            if !abi::HEADER_CHANGES_CLEAR_ROUTE {
                host::clear_route_cache();
            }
            {
                let mut s = stream.borrow_mut();
                let claimed = Claimed {
                    method: s.mcp_method.as_deref(),
                    name: s.mcp_name.as_deref(),
                };
                if let Some((limit, retry_s)) = throttled {
                    s.phase = Phase::Throttled(limit, retry_s);
                } else if request::must_inspect(cfg, grant, s.has_body, &claimed) {
                    s.phase = Phase::Inspect(grant.clone());
                } else {
                    inc(Metric::Allowed);
                    if s.has_body && cfg.record.read_body && cfg.record.property.is_some() {
                        s.phase = Phase::Record;
                    } else {
                        s.phase = Phase::Idle;
                        drop(s);
                        publish(cfg, stream, record::Decision::Allow);
                    }
                }
            }
            if resume && !host::resume_request() {
                log(
                    LogLevel::Warn,
                    "mcp_auth: could not resume an allowed request (its stream is gone)",
                );
            }
            Action::Continue
        }
    }
}
