//! The answer side of list visibility: `listing::Answer` over an event
//! stream (the SSE splitter and the per-event rewrite) or a JSON body, cut
//! into chunks anywhere.
//!
//! Input: head lines, a blank line, then the upstream body:
//! ```text
//! scope: mcp:tools/call:whoami     one line per scope of the token
//! request: {"jsonrpc":"2.0","id":1,"method":"tools/list"}   the request body
//! resumed                          no request: a resumed stream (by shape)
//! json                             the body is application/json (else events)
//! cut: 17                          chunk boundaries in the body (any number)
//! max: 300                         the longest event / body checked
//!
//! data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami"}]}}
//! ```
//! Properties: no panic; the same output however the body is cut, and with
//! or without the answers met before (the worker's memo); nothing
//! that goes out holds an item the scopes do not list (filtering it again
//! hides nothing); in a stream, every event goes out unchanged and in order
//! except the ones the filter replaced, by a filtered list answer or by
//! JSON-RPC errors it wrote.

#![no_main]

use filter::listing::{self, Answer, Body, Chunk, Counts, Memo, Plan, Visibility, INTERNAL_ERROR};
use filter::message;
use filter::sse::{self, Input, Splitter};
use libfuzzer_sys::fuzz_target;
use mcpgw_fuzz::Message;
use mcpgw_token::scopes::{self, Scope};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let msg = Message::parse(data);
    let held: Vec<Scope> = msg
        .all("scope")
        .filter_map(|v| scopes::parse(core::str::from_utf8(v).ok()?).ok())
        .collect();
    let plan = match msg.get("request") {
        Some(body) => match message::read(body) {
            Ok(reading) => Plan::for_body(&reading, Visibility::of(&held)),
            Err(_) => None,
        },
        None => msg.get("resumed").map(|_| Plan::by_shape()),
    };
    let Some(plan) = plan else { return };
    let json = msg.get("json").is_some();
    let max = msg.num::<usize>("max").unwrap_or(1 << 16).clamp(1, 1 << 20);
    let body = msg.body;
    let mut cuts: Vec<usize> = msg
        .all("cut")
        .filter_map(|v| core::str::from_utf8(v).ok()?.trim().parse().ok())
        .filter(|&c| c > 0 && c < body.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();

    let kind = if json { Body::Json } else { Body::Events };
    // One memo across the runs: the second run meets the first's answers
    // again, recalled; a run without a memo must agree with both.
    let mut memo = Memo::default();
    let whole = run(
        Answer::new(plan.clone(), kind.clone(), max),
        &[body],
        &held,
        &mut memo,
    );
    let fresh = run(
        Answer::new(plan.clone(), kind.clone(), max),
        &[body],
        &held,
        &mut Memo::off(),
    );
    assert_eq!(whole, fresh, "the memo changed the output");
    let mut chunks = Vec::new();
    let mut start = 0;
    for &c in &cuts {
        chunks.push(&body[start..c]);
        start = c;
    }
    chunks.push(&body[start..]);
    let cut = run(Answer::new(plan, kind, max), &chunks, &held, &mut memo);
    assert_eq!(whole, cut, "the output depends on where the body was cut");

    // Whatever went out lists only what the scopes list: filtering it again
    // hides nothing.
    if json {
        assert_clean(&whole, &held);
        return;
    }
    let input = events(body);
    let output = events(&whole);
    // (An event over the limit after every list request got its answer
    // goes on unread, by design.)
    for o in output.iter().filter(|o| o.len() <= max) {
        if let Some(data) = sse::data(o) {
            assert_clean(&data, &held);
        }
    }
    // Every event goes on unchanged and in order, or is replaced by events
    // the filter made (a filtered list answer, JSON-RPC errors), and only an
    // event with data or over the limit is ever replaced.
    let made = |o: &Vec<u8>| -> bool {
        let Some(data) = sse::data(o) else {
            return false;
        };
        match serde_json::from_slice::<Value>(&data) {
            Ok(v) => messages(&v).iter().all(|m| {
                m["error"]["code"] == INTERNAL_ERROR
                    || ["tools", "prompts", "resources", "resourceTemplates"]
                        .iter()
                        .any(|k| m["result"][*k].is_array())
            }),
            // Numbers `Value` cannot hold (1e400) pass through a rewrite
            // as they came: ask the filter's reader whether it is a list.
            Err(_) => {
                let mut counts = Counts::default();
                listing::rewrite(
                    &data,
                    &mut Plan::by_shape(),
                    &held,
                    &mut counts,
                    &mut Memo::off(),
                )
                .is_ok()
                    && counts.lists > 0
            }
        }
    };
    let mut j = 0;
    let mut replaced = 0usize;
    for e in &input {
        match output[j..].iter().position(|o| o == e) {
            Some(k) if output[j..j + k].iter().all(made) => j += k + 1,
            _ => {
                let data = sse::data(e).is_some_and(|d| !d.trim_ascii().is_empty());
                assert!(
                    data || e.len() > max,
                    "an event without data was replaced: {:?}",
                    String::from_utf8_lossy(e)
                );
                replaced += 1;
            }
        }
    }
    let made_count = output.iter().filter(|o| made(o)).count();
    assert!(
        output[j..].iter().all(made),
        "events the input did not have"
    );
    assert!(
        replaced <= made_count,
        "{replaced} events replaced by {made_count}"
    );
});

/// Filtering `payload` again by shape hides nothing.
fn assert_clean(payload: &[u8], held: &[Scope]) {
    let mut counts = Counts::default();
    if listing::rewrite(
        payload,
        &mut Plan::by_shape(),
        held,
        &mut counts,
        &mut Memo::off(),
    )
    .is_ok()
    {
        assert_eq!(
            counts.hidden,
            0,
            "{:?} went out",
            String::from_utf8_lossy(payload)
        );
    }
}

/// The bytes sent on for each chunk, concatenated.
fn run(mut answer: Answer, chunks: &[&[u8]], scopes: &[Scope], memo: &mut Memo) -> Vec<u8> {
    let mut out = Vec::new();
    let mut held = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let end = i + 1 == chunks.len();
        // A held JSON body is the whole body so far, as Envoy buffers it.
        let bytes: Vec<u8> = if *answer.body() == Body::Json {
            held.extend_from_slice(c);
            held.clone()
        } else {
            c.to_vec()
        };
        match answer.chunk(&bytes, end, scopes, memo) {
            Chunk::Keep => {
                out.extend_from_slice(&bytes);
                held.clear();
            }
            Chunk::Replace(r) => {
                out.extend(r);
                held.clear();
            }
            Chunk::Hold => {}
        }
    }
    out
}

/// The events of a stream, as a reader splits it.
fn events(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut s = Splitter::new(usize::MAX);
    let mut out = Vec::new();
    s.push(stream, true, &mut |i| {
        if let Input::Event(e) = i {
            out.push(e.to_vec());
        }
        None
    });
    out
}

fn messages(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}
