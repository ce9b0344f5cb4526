//! The per-request context.

use super::host::{self, inc, log};
use super::response;
use super::worker::{resolve, Worker};
use crate::cache::{Decision, Grant, Key};
use crate::config::Config;
use crate::headermap;
use crate::introspect::{self, Answer, Unavailable};
use crate::jsonrpc::{self, Claimed, Verdict};
use crate::metrics::Metric;
use crate::replies::{self, Reply, Unauthorized};
use crate::request::{self, Front};
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
    /// `Last-Event-ID` sent: a resumed event stream.
    pub last_event_id: bool,
    /// The answer holds list results to filter.
    pub listing: Option<response::Listing>,
}

pub(crate) type StreamRef = Rc<RefCell<Stream>>;

/// A decision ready to apply to a stream.
pub(crate) enum Outcome {
    Allow { grant: Rc<Grant>, stale: bool },
    Deny(Reply, Metric),
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
        let cached = self.worker.borrow().cache.get(&key, now).cloned();
        if let Some(d) = cached {
            inc(Metric::CacheHits);
            return self.decide_now(cfg, d);
        }
        let shared = self.worker.borrow_mut().lookup_shared(&key, now);
        if let Some(d) = shared {
            inc(Metric::CacheSharedHits);
            return self.decide_now(cfg, d);
        }
        inc(Metric::CacheMisses);
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
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let claimed = Claimed {
            method: method.as_deref(),
            name: name.as_deref(),
        };
        let (verdict, reading) =
            jsonrpc::inspect_reading(&body, claimed, request::scopes_to_check(cfg, grant));
        let metric = match &verdict {
            Verdict::Allow => {
                inc(Metric::Allowed);
                if let Some(reading) = &reading {
                    response::plan_body(cfg, grant, &self.stream, reading);
                }
                return Action::Continue;
            }
            Verdict::Deny { .. } => Metric::DeniedScope,
            Verdict::Mismatch { .. } => Metric::DeniedHeaderMismatch,
            Verdict::ParseError { .. } | Verdict::InvalidRequest { .. } => Metric::DeniedBadBody,
        };
        match replies::for_verdict(cfg, &verdict) {
            Some(reply) => refuse(&reply, metric),
            None => Action::Continue,
        }
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
                if !scan.strip.is_empty() || !scan.authorization.is_empty() {
                    host::clear_route_cache();
                }
                inc(Metric::Bypassed);
                Action::Continue
            }
            Front::Reject(why) => {
                let metric = match why {
                    Unauthorized::Bearer(_) => Metric::DeniedMissing,
                    Unauthorized::Malformed(_) => Metric::DeniedMalformed,
                    Unauthorized::QueryToken => Metric::DeniedQueryToken,
                    Unauthorized::Inactive(_) => Metric::DeniedInvalid,
                };
                refuse(&replies::unauthorized(&cfg, why), metric)
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
        let Some(grant) = self.inspecting() else {
            return Action::Continue;
        };
        let cfg = self.worker.borrow().cfg.clone();
        self.stream.borrow_mut().body_size = body_size;
        if u64::try_from(body_size).unwrap_or(u64::MAX) > cfg.max_body_bytes {
            self.stream.borrow_mut().phase = Phase::Idle;
            return refuse(
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
        response::on_body(&self.stream, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        response::on_trailers(&self.stream)
    }
}

/// Sends a local reply from the effective context.
fn refuse(reply: &Reply, metric: Metric) -> Action {
    inc(metric);
    let _ = hostcalls::send_http_response(
        reply.status,
        reply.header_refs(),
        Some(reply.body.as_bytes()),
    );
    Action::Pause
}

/// Applies `outcome` to `stream` in the effective context. `resume`: the
/// stream is paused and must be resumed when allowed (a callout answer);
/// otherwise the returned action tells the current callback what to return.
pub(crate) fn deliver(cfg: &Config, stream: &StreamRef, outcome: &Outcome, resume: bool) -> Action {
    match outcome {
        Outcome::Deny(reply, metric) => {
            stream.borrow_mut().phase = Phase::Idle;
            refuse(reply, *metric)
        }
        Outcome::Allow { grant, stale } => {
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
                    Some(reply) => refuse(&reply, Metric::DeniedHeaderMismatch),
                    None => Action::Pause,
                };
            }
            if *stale {
                inc(Metric::StaleServes);
            }
            host::remove_request_header(b"authorization");
            let h = &cfg.headers;
            host::set_request_header(&h.tenant, &grant.tenant);
            host::set_request_header(&h.project, &grant.project);
            host::set_request_header(&h.token_id, &grant.token_id);
            host::set_request_header(&h.token_name, &grant.name);
            response::prepare(cfg, grant, stream);
            host::clear_route_cache();
            {
                let mut s = stream.borrow_mut();
                let claimed = Claimed {
                    method: s.mcp_method.as_deref(),
                    name: s.mcp_name.as_deref(),
                };
                if request::must_inspect(cfg, grant, s.has_body, &claimed) {
                    s.phase = Phase::Inspect(grant.clone());
                } else {
                    s.phase = Phase::Idle;
                    inc(Metric::Allowed);
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
