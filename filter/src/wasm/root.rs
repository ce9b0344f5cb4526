//! The root context: configuration, the tick (revocations feed, rescue of
//! orphaned callouts) and creation of HTTP contexts.

use super::host::{self, inc, log};
use super::http::Http;
use super::worker::{self, resolve, sha_prefix, Worker};
use crate::config::{self, Config};
use crate::headermap;
use crate::introspect::{self, Unavailable};
use crate::metrics::Metric;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Tick period when the feed is off: orphaned callouts still need a rescue.
const RESCUE_TICK_MS: u64 = 1000;
/// The first tick, which sends the first feed poll.
const FIRST_TICK_MS: u64 = 50;
/// Feed pages read in one tick at most (10 × 1000 hashes); a longer backlog
/// goes on at the next tick.
const MAX_FEED_PAGES_PER_TICK: u32 = 10;

pub(crate) struct Root {
    worker: Rc<RefCell<Worker>>,
    /// The tick period to switch to after the first, quick tick.
    tick_ms: Option<u64>,
}

impl Root {
    pub fn new(_context_id: u32) -> Root {
        Root {
            worker: Rc::new(RefCell::new(Worker::new(Config::default()))),
            tick_ms: None,
        }
    }

    fn timeout(cfg: &Config) -> Duration {
        Duration::from_millis(cfg.token_api.timeout_ms)
    }

    /// Sends again the callouts whose sending stream ended before the answer.
    fn rescue_orphans(&mut self) {
        let (orphans, cfg) = {
            let w = self.worker.borrow();
            if w.inflight.is_empty() {
                return;
            }
            (w.inflight.orphans(), w.cfg.clone())
        };
        for (key, token) in orphans {
            let callout = introspect::introspect_request(&cfg.token_api, &token);
            let sent = self.dispatch_http_call(
                &cfg.token_api.cluster,
                callout.headers(),
                None,
                vec![],
                Self::timeout(&cfg),
            );
            match sent {
                Ok(call) => {
                    inc(Metric::Callouts);
                    self.worker.borrow_mut().inflight.adopt(&key, call);
                }
                Err(status) => {
                    let why = Unavailable(format!("dispatch failed: {status:?}"));
                    resolve(&self.worker, &key, Err(why), host::now_ms());
                }
            }
        }
    }

    /// The tick's feed poll: starts a run of reads unless one is in flight.
    fn poll_feed(&mut self) {
        {
            let mut w = self.worker.borrow_mut();
            if w.cfg.revocation_poll_ms == 0 {
                return;
            }
            if let Some((_, sent_at)) = w.feed_call {
                // Envoy always answers (at the latest on timeout); this only
                // guards against a host that never does.
                let limit = w
                    .cfg
                    .token_api
                    .feed_timeout_ms()
                    .saturating_mul(4)
                    .max(5_000);
                if host::now_ms().saturating_sub(sent_at) < limit {
                    return;
                }
                w.feed_call = None;
            }
            if w.feed_cursor.is_empty() {
                // A worker started in a running Envoy goes on from where its
                // peers are; the first worker of a process starts at the head.
                if let Some(c) = w.shared_cursor() {
                    w.feed_cursor = c;
                }
            }
            w.feed_pages = 0;
        }
        self.read_feed();
    }

    /// Sends one feed read from the current cursor.
    fn read_feed(&mut self) {
        let (cfg, cursor) = {
            let w = self.worker.borrow();
            (w.cfg.clone(), w.feed_cursor.clone())
        };
        let callout = introspect::feed_request(&cfg.token_api, &cursor);
        let sent = self.dispatch_http_call(
            cfg.token_api.feed_cluster(),
            callout.headers(),
            None,
            vec![],
            Duration::from_millis(cfg.token_api.feed_timeout_ms()),
        );
        match sent {
            Ok(call) => {
                inc(Metric::FeedPolls);
                let mut w = self.worker.borrow_mut();
                w.feed_call = Some((call, host::now_ms()));
                w.feed_pages = w.feed_pages.saturating_add(1);
            }
            Err(status) => {
                inc(Metric::FeedFailures);
                self.feed_failed(&format!("dispatch failed: {status:?}"));
            }
        }
    }

    fn feed_failed(&self, why: &str) {
        let mut w = self.worker.borrow_mut();
        // Log the change of state, not every poll of an outage.
        if !w.feed_failing {
            w.feed_failing = true;
            log(
                LogLevel::Warn,
                &format!(
                    "mcp_auth: revocations feed unavailable on cluster {:?}: {why}",
                    w.cfg.token_api.feed_cluster()
                ),
            );
        }
    }

    fn on_feed_answer(&mut self, num_headers: usize, body_size: usize) {
        let status = if num_headers == 0 {
            None
        } else {
            let block = host::header_block(host::CALL_RESPONSE_HEADERS);
            headermap::decode(&block).and_then(|pairs| introspect::status_of(&pairs))
        };
        let parsed = if body_size > introspect::MAX_FEED_BODY {
            Err(Unavailable(format!("body of {body_size} bytes")))
        } else {
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            introspect::parse_revocations(status, &body)
        };
        let page = match parsed {
            Ok(page) => page,
            Err(why) => {
                inc(Metric::FeedFailures);
                self.feed_failed(&why.0);
                return;
            }
        };
        let read_on = {
            let now = host::now_ms();
            let mut w = self.worker.borrow_mut();
            let applied = w.apply_revocations(&page.revoked, now);
            host::add(Metric::RevocationsApplied, applied);
            if !page.changed.is_empty() {
                let changed = w.apply_changes(&page.changed);
                host::add(Metric::ChangesApplied, changed);
                let first = page.changed.first().map(sha_prefix).unwrap_or_default();
                log(
                    LogLevel::Info,
                    &format!(
                        "mcp_auth: {} token(s) changed (first token_sha {first}…): dropped \
                         {changed} cached decision(s), the next request asks again",
                        page.changed.len()
                    ),
                );
            }
            if applied > 0 {
                let first = page.revoked.first().map(sha_prefix).unwrap_or_default();
                log(
                    LogLevel::Info,
                    &format!(
                        "mcp_auth: evicted {applied} cached decision(s) for {} revoked \
                         token(s) (first token_sha {first}…)",
                        page.revoked.len()
                    ),
                );
            }
            if page.reset {
                inc(Metric::FeedResets);
                w.drop_decisions();
                if !w.feed_resetting {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "mcp_auth: the revocations feed cannot continue from cursor {:?} \
                             (token API database replaced or restored, or history pruned \
                             past it); dropped every cached decision and continue from {:?}",
                            w.feed_cursor, page.cursor
                        ),
                    );
                }
            }
            w.feed_resetting = page.reset;
            if w.feed_cursor.is_empty() {
                // The first cursor of this worker (`since=now`): answers
                // already on their way may predate revocations the head
                // includes; from here on decisions are cached.
                w.inflight.forget_answers();
            }
            let moved = w.feed_cursor != page.cursor;
            w.feed_cursor = page.cursor;
            if moved {
                w.publish_cursor();
            }
            if w.feed_failing {
                w.feed_failing = false;
                log(LogLevel::Info, "mcp_auth: revocations feed reachable again");
            }
            // A backlog is read page after page, up to a bound per tick; the
            // next tick goes on from the cursor, so nothing is skipped.
            page.more && moved && w.feed_pages < MAX_FEED_PAGES_PER_TICK
        };
        if read_on {
            self.read_feed();
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let is_feed = {
            let mut w = self.worker.borrow_mut();
            match w.feed_call {
                Some((call, _)) if call == token_id => {
                    w.feed_call = None;
                    true
                }
                _ => false,
            }
        };
        if is_feed {
            self.on_feed_answer(num_headers, body_size);
            return;
        }
        let key = self.worker.borrow_mut().inflight.root_call(token_id);
        if let Some(key) = key {
            let now = host::now_ms();
            let result = if body_size > introspect::MAX_INTROSPECT_BODY {
                Err(Unavailable(format!("body of {body_size} bytes")))
            } else {
                let status = if num_headers == 0 {
                    None
                } else {
                    let block = host::header_block(host::CALL_RESPONSE_HEADERS);
                    headermap::decode(&block).and_then(|p| introspect::status_of(&p))
                };
                let body = self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default();
                introspect::parse_introspection(status, &body, now)
            };
            resolve(&self.worker, &key, result, now);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg = match config::load(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("mcp_auth: invalid plugin configuration: {e}"),
                );
                return false;
            }
        };
        host::define_metrics();
        // The feed polls on every tick; without a feed the tick only
        // rescues orphaned callouts.
        let tick = match cfg.revocation_poll_ms {
            0 => RESCUE_TICK_MS,
            ms => ms,
        };
        log(
            LogLevel::Info,
            &format!(
                "mcp_auth: configured: token API cluster {:?}, feed cluster {:?}, \
                 revocation poll {} ms, cache {} entries",
                cfg.token_api.cluster,
                cfg.token_api.feed_cluster(),
                cfg.revocation_poll_ms,
                cfg.cache.max_entries
            ),
        );
        if cfg.rate_limit.enforce {
            worker::create_limit_slots(&cfg.token_api.cluster);
        }
        // Until its first feed answer a worker caches nothing (see
        // `Worker::caching`), so that first poll goes out at once.
        let first = match cfg.revocation_poll_ms {
            0 => tick,
            _ => tick.min(FIRST_TICK_MS),
        };
        *self.worker.borrow_mut() = Worker::new(cfg);
        let _ = hostcalls::set_tick_period(Duration::from_millis(first));
        self.tick_ms = (first != tick).then_some(tick);
        true
    }

    fn on_tick(&mut self) {
        if let Some(period) = self.tick_ms.take() {
            let _ = hostcalls::set_tick_period(Duration::from_millis(period));
        }
        self.rescue_orphans();
        self.poll_feed();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(context_id, self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
