//! The answer side of per-token list visibility (see `crate::listing`): plan
//! on the request, rewrite the response. Requests of tokens that see every
//! list whole, and every request that is not a list request, never get here
//! past one `Option` check.

use super::host::{self, add, inc, log};
use super::http::StreamRef;
use super::worker::Worker;
use crate::cache::Grant;
use crate::config::Config;
use crate::headermap;
use crate::listing::{self, Answer, Body, Chunk, List, Plan, Visibility};
use crate::message::Reading;
use crate::metrics::Metric;
use crate::request;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

/// A request whose answer the filter checks.
#[derive(Debug)]
pub(crate) enum Listing {
    /// Planned on the request; the answer has not started.
    Planned(Plan, Rc<Grant>),
    /// The answer is under way; the size of the body buffered so far.
    Answering(Box<Answer>, Rc<Grant>, usize),
}

fn visibility(cfg: &Config, grant: &Grant) -> Option<Visibility> {
    request::scopes_to_check(cfg, grant)?;
    let v = Visibility::of(&grant.scopes);
    (!v.everything()).then_some(v)
}

/// Request headers of an allowed request, still open: ask the server for
/// an answer the filter can read when it may be a list answer to filter,
/// and plan the answers no body announces (a resumed event stream, a list
/// request named by `Mcp-Method` without a body).
pub(crate) fn prepare(cfg: &Config, grant: &Rc<Grant>, stream: &StreamRef) {
    if grant.grants_all {
        return;
    }
    let Some(visibility) = visibility(cfg, grant) else {
        return;
    };
    let mut s = stream.borrow_mut();
    let named = s
        .mcp_method
        .as_deref()
        .map(|m| List::ALL.into_iter().find(|l| m == l.method().as_bytes()));
    let restricted_list = matches!(named, Some(Some(l)) if !visibility.whole(l));
    // Without `Mcp-Method` any body may hold a list request; headers go
    // upstream before the body is read.
    let maybe_list = (s.has_body && named.is_none()) || restricted_list;
    if maybe_list || s.last_event_id {
        host::set_request_header("accept-encoding", "identity");
    }
    if s.last_event_id || (restricted_list && !s.has_body) {
        s.listing = Some(Listing::Planned(Plan::by_shape(), grant.clone()));
    }
}

/// The body of an allowed request was read: plan its list answers.
pub(crate) fn plan_body(cfg: &Config, grant: &Rc<Grant>, stream: &StreamRef, reading: &Reading) {
    let Some(visibility) = visibility(cfg, grant) else {
        return;
    };
    let mut s = stream.borrow_mut();
    if s.last_event_id {
        // Planned by shape already: a resumed stream may answer anything.
        return;
    }
    if let Some(plan) = Plan::for_body(reading, visibility) {
        s.listing = Some(Listing::Planned(plan, grant.clone()));
    }
}

pub(crate) fn on_headers(cfg: &Config, stream: &StreamRef, end_of_stream: bool) -> Action {
    let mut s = stream.borrow_mut();
    let Some(Listing::Planned(..)) = s.listing else {
        return Action::Continue;
    };
    let Some(Listing::Planned(plan, grant)) = s.listing.take() else {
        return Action::Continue;
    };
    if end_of_stream {
        // No body, no list (a 202 to notifications, a bodiless error).
        return Action::Continue;
    }
    let block = host::header_block(host::RESPONSE_HEADERS);
    let pairs = headermap::decode(&block).unwrap_or_default();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    };
    let status = get(":status")
        .and_then(|v| core::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = listing::body_of(status, get("content-type"), get("content-encoding"));
    if body == Body::Pass {
        return Action::Continue;
    }
    // The body changes: its length does, and a withheld one is JSON now.
    if get("content-length").is_some() {
        host::remove_response_header(b"content-length");
    }
    if let Body::Withhold(why) = &body {
        log(
            LogLevel::Warn,
            &format!("mcp_auth: list answer withheld: {why}"),
        );
        if get("content-encoding").is_some() {
            host::remove_response_header(b"content-encoding");
        }
        host::set_response_header("content-type", "application/json");
    }
    let max = usize::try_from(cfg.max_body_bytes).unwrap_or(usize::MAX);
    s.listing = Some(Listing::Answering(
        Box::new(Answer::new(plan, body, max)),
        grant,
        0,
    ));
    Action::Continue
}

/// `worker` holds the list answers rewritten before (borrowed only for an
/// answer being checked).
pub(crate) fn on_body(
    stream: &StreamRef,
    worker: &RefCell<Worker>,
    body_size: usize,
    end_of_stream: bool,
) -> Action {
    let mut s = stream.borrow_mut();
    let Some(Listing::Answering(answer, grant, held)) = &mut s.listing else {
        return Action::Continue;
    };
    // A JSON body is read once, whole, at its end.
    if answer.holds(body_size, end_of_stream) {
        *held = body_size;
        return Action::Pause;
    }
    let bytes = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    let before = answer.counts;
    let chunk = answer.chunk(
        &bytes,
        end_of_stream,
        &grant.scopes,
        &mut worker.borrow_mut().lists,
    );
    let after = answer.counts;
    add(Metric::ListsFiltered, after.lists - before.lists);
    add(Metric::ListItemsHidden, after.hidden - before.hidden);
    add(Metric::ListsWithheld, after.withheld - before.withheld);
    add(Metric::ListsRecalled, after.recalled - before.recalled);
    *held = if chunk == Chunk::Hold { body_size } else { 0 };
    if answer.done() {
        s.listing = None;
    }
    match chunk {
        Chunk::Keep => Action::Continue,
        Chunk::Hold => Action::Pause,
        Chunk::Replace(new) => {
            if hostcalls::set_buffer(BufferType::HttpResponseBody, 0, bytes.len(), &new).is_err() {
                // The original must not go out: end the stream instead.
                inc(Metric::ListsWithheld);
                log(
                    LogLevel::Error,
                    "mcp_auth: cannot replace a list answer; resetting the stream",
                );
                host::reset_response();
                return Action::Pause;
            }
            Action::Continue
        }
    }
}

/// Trailers end a body that had no end-of-stream chunk: check what is held.
pub(crate) fn on_trailers(stream: &StreamRef, worker: &RefCell<Worker>) -> Action {
    let held = match &stream.borrow().listing {
        Some(Listing::Answering(_, _, held)) if *held > 0 => *held,
        _ => return Action::Continue,
    };
    on_body(stream, worker, held, true)
}
