//! Per-token visibility of list results: the answers to `tools/list`,
//! `prompts/list`, `resources/list` and `resources/templates/list` keep only
//! the items the token's scopes would let it use.
//!
//! Decisions (documented in the README):
//! - Listing follows calling: an item stays when
//!   [`mcpgw_token::scopes::lists`] says so, the rule `tools/call`,
//!   `prompts/get` and `resources/read` are decided by (templates: when they
//!   can produce a URI the token may read). A token whose scopes allow every
//!   item of a list ([`Visibility`]) gets that list untouched, with no work.
//! - The answer to a list request is found by its `id`; every other response
//!   in the same answer is also checked by shape (a `result` holding
//!   `tools`, `prompts`, `resources` or `resourceTemplates`), so a server
//!   that writes the id another way (`1.0` for `1`) cannot carry a whole
//!   list past the filter. A resumed event stream (`Last-Event-ID`) is
//!   checked by shape only: which requests it answers is not known here.
//! - The answer is read once, and refused when JSON parsers could read it
//!   differently (duplicate keys, keys that fold to `result`, `tools`,
//!   `name`, …), when it is not JSON, or when the answer to a list request
//!   has no list: the client then gets a JSON-RPC error (`-32603`) naming
//!   why, never the original. Items that are not objects with a string
//!   `name` / `uri` / `uriTemplate` are dropped.
//! - Kept items, and every member the filter does not change, go out as the
//!   server wrote them (raw JSON); `nextCursor` and `ttlMs` are kept, a
//!   `cacheScope` becomes `"private"` (the list is now per caller).

use crate::message::{self, Reading};
use crate::sse::{self, Input, Splitter};
use mcpgw_token::scopes::{self, Scope};
pub use memo::Memo;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// JSON-RPC error code of an answer the filter withholds.
pub const INTERNAL_ERROR: i64 = -32603;

/// The four MCP list methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl List {
    pub const ALL: [List; 4] = [List::Tools, List::Prompts, List::Resources, List::Templates];

    pub fn of_method(method: &str) -> Option<List> {
        List::ALL.into_iter().find(|l| l.method() == method)
    }

    pub fn method(self) -> &'static str {
        match self {
            List::Tools => "tools/list",
            List::Prompts => "prompts/list",
            List::Resources => "resources/list",
            List::Templates => "resources/templates/list",
        }
    }

    /// The member of the result holding the items.
    pub fn array(self) -> &'static str {
        match self {
            List::Tools => "tools",
            List::Prompts => "prompts",
            List::Resources => "resources",
            List::Templates => "resourceTemplates",
        }
    }

    /// The member of an item that names it.
    pub fn key(self) -> &'static str {
        match self {
            List::Tools | List::Prompts => "name",
            List::Resources => "uri",
            List::Templates => "uriTemplate",
        }
    }

    fn of_array(key: &str) -> Option<List> {
        List::ALL.into_iter().find(|l| l.array() == key)
    }
}

/// Which lists a token sees whole (no filtering, no response work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visibility {
    whole: [bool; 4],
}

impl Visibility {
    pub fn of(scopes: &[Scope]) -> Visibility {
        Visibility {
            whole: List::ALL.map(|l| {
                scopes::item_method(l.method())
                    .is_some_and(|m| scopes::grants_every_name(scopes, m))
            }),
        }
    }

    pub fn whole(&self, list: List) -> bool {
        self.whole.get(list as usize).copied().unwrap_or(false)
    }

    /// Every list whole: nothing to filter, ever.
    pub fn everything(&self) -> bool {
        self.whole.iter().all(|w| *w)
    }
}

/// What the filter expects of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// List requests whose answers are still to come, by id.
    pending: Vec<(Value, List)>,
    /// The id of every request of the body (the answers an error replaces).
    requests: Vec<Value>,
    /// The body was a batch: a whole-answer error is an array too.
    batch: bool,
}

impl Plan {
    /// The list requests of `reading` a token with `visibility` must get
    /// filtered answers to; `None` when there is nothing to filter.
    pub fn for_body(reading: &Reading, visibility: Visibility) -> Option<Plan> {
        let mut plan = Plan {
            pending: Vec::new(),
            requests: Vec::new(),
            batch: matches!(reading, Reading::Batch(_)),
        };
        for msg in reading.messages() {
            let Some(method) = msg.method() else { continue };
            // A notification gets no answer.
            if msg.id.is_null() {
                continue;
            }
            plan.requests.push(msg.id.clone());
            if let Some(list) = List::of_method(method) {
                if !visibility.whole(list) {
                    plan.pending.push((msg.id.clone(), list));
                }
            }
        }
        (!plan.pending.is_empty()).then_some(plan)
    }

    /// An answer whose requests are not known (a resumed event stream, a
    /// list request announced by `Mcp-Method` alone): checked by shape.
    pub fn by_shape() -> Plan {
        Plan {
            pending: Vec::new(),
            requests: Vec::new(),
            batch: false,
        }
    }

    /// Answers to list requests still to come.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether an event the filter cannot read may still hold a list answer
    /// (one is awaited, or the requests are not known).
    pub fn open(&self) -> bool {
        self.waiting() || self.requests.is_empty()
    }

    /// The whole answer replaced by JSON-RPC errors saying `why`: one per
    /// request of the body, an array for a batch.
    pub fn error_body(&self, why: &str) -> String {
        if self.requests.is_empty() {
            return error_message(&Value::Null, why);
        }
        let mut out = String::new();
        for (i, id) in self.requests.iter().enumerate() {
            out.push_str(if i > 0 { "," } else { "" });
            out.push_str(&error_message(id, why));
        }
        if self.batch {
            format!("[{out}]")
        } else {
            out
        }
    }

    /// Errors for the list requests still waiting (one JSON-RPC message
    /// each, id null when none is known), which then wait no more.
    pub fn withhold_pending(&mut self, why: &str) -> Vec<String> {
        if self.pending.is_empty() {
            return vec![error_message(&Value::Null, why)];
        }
        self.pending
            .drain(..)
            .map(|(id, _)| error_message(&id, why))
            .collect()
    }
}

/// A JSON-RPC error message for `id`.
pub fn error_message(id: &Value, why: &str) -> String {
    // Written by hand: `json!` would pull a serializer into `filter.wasm`.
    let message = Value::from(format!("the gateway withheld this answer: {why}"));
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{INTERNAL_ERROR},\"message\":{message}}}}}"
    )
}

/// Why an answer cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault(pub String);

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fault(why: impl Into<String>) -> Fault {
    Fault(why.into())
}

/// Keys a client decides on in a message, a result and an item.
const MESSAGE_KEYS: [&str; 6] = ["jsonrpc", "id", "result", "error", "method", "params"];
const RESULT_KEYS: [&str; 7] = [
    "tools",
    "prompts",
    "resources",
    "resourceTemplates",
    "nextCursor",
    "cacheScope",
    "ttlMs",
];
const ITEM_KEYS: [&str; 3] = ["name", "uri", "uriTemplate"];

/// An object's members in order. Keys borrow from the answer unless they
/// hold escapes: a list answer has thousands of them. Values stay raw JSON,
/// except where the level reads deeper in the same pass (a message's
/// `result`, a result's list arrays), so the bulk of a list answer, its
/// items, is validated once (captured) and then only scanned for its keys
/// ([`scan`]; read with serde again only when an item holds escapes).
struct Members<'a>(Vec<(Cow<'a, str>, Val<'a>)>);

/// A member's value.
enum Val<'a> {
    Raw(&'a RawValue),
    /// An object read a level deeper.
    Object(Members<'a>),
    /// An array whose elements stay raw.
    Array(Vec<&'a RawValue>),
    /// Where an object or an array was wanted, something else (not kept).
    Other,
}

/// Which object is being read, and so which members are read deeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Message,
    Result,
    Item,
}

impl Level {
    fn deeper(self, key: &str) -> Option<Level> {
        match self {
            Level::Message if key == "result" => Some(Level::Result),
            _ => None,
        }
    }

    fn array(self, key: &str) -> bool {
        self == Level::Result && List::of_array(key).is_some()
    }
}

/// A key, borrowed when it can be.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(core::marker::PhantomData))
    }
}

/// Reads an object's members at a level.
struct MembersAt(Level);

impl<'de> Visitor<'de> for MembersAt {
    type Value = Members<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = if let Some(level) = self.0.deeper(&key) {
                map.next_value_seed(Deeper::Object(level))?
            } else if self.0.array(&key) {
                map.next_value_seed(Deeper::Array)?
            } else {
                Val::Raw(map.next_value::<&'de RawValue>()?)
            };
            members.push((key, value));
        }
        Ok(Members(members))
    }
}

impl<'de> DeserializeSeed<'de> for MembersAt {
    type Value = Members<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Members<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

/// A value wanted as an object (read at a level) or as an array of raw
/// elements; anything else is skipped and read as [`Val::Other`].
#[derive(Clone, Copy)]
enum Deeper {
    Object(Level),
    Array,
}

impl<'de> DeserializeSeed<'de> for Deeper {
    type Value = Val<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Deeper {
    type Value = Val<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        match self {
            Deeper::Object(level) => MembersAt(level).visit_map(map).map(Val::Object),
            Deeper::Array => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        match self {
            Deeper::Array => {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(Val::Array(items))
            }
            Deeper::Object(_) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
        }
    }
    fn visit_bool<E>(self, _: bool) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_unit<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
}

impl<'a> Members<'a> {
    /// The whole of `text` as an object at `level`.
    fn parse(text: &'a str, level: Level, what: &str) -> Result<Members<'a>, Fault> {
        let mut de = serde_json::Deserializer::from_str(text);
        MembersAt(level)
            .deserialize(&mut de)
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| {
                if e.is_syntax() || e.is_eof() {
                    fault(format!("the answer is not JSON ({e})"))
                } else {
                    fault(format!("{what} is not a JSON object"))
                }
            })
    }

    /// Refuses duplicate keys and keys that read as one of `keys` they are
    /// not; `place` names the object, built only for the error.
    fn check(&self, keys: &[&'static str], place: impl Fn() -> String) -> Result<(), Fault> {
        let names: Vec<&str> = self.0.iter().map(|(k, _)| k.as_ref()).collect();
        check_keys(&names, keys, place)
    }

    fn get(&self, key: &str) -> Option<&Val<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn raw(&self, key: &str) -> Option<&'a RawValue> {
        match self.get(key) {
            Some(Val::Raw(r)) => Some(r),
            _ => None,
        }
    }

    /// Writes the object again; every member read deeper must be replaced.
    /// Returns where the value of member `mark` starts in `out`, when it
    /// went out as it came.
    fn write(
        &self,
        out: &mut String,
        mark: &str,
        replace: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<usize>, Fault> {
        let mut marked = None;
        out.push('{');
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_key(out, key);
            match (replace(key), value) {
                (Some(new), _) => out.push_str(&new),
                (None, Val::Raw(raw)) => {
                    if key == mark {
                        marked = Some(out.len());
                    }
                    out.push_str(raw.get());
                }
                (None, _) => return Err(fault(format!("member {key:?} cannot be written back"))),
            }
        }
        out.push('}');
        Ok(marked)
    }
}

/// Refuses duplicate keys and keys that read as one of `reserved` they are
/// not; `place` names the object, built only for the error.
fn check_keys(
    keys: &[&str],
    reserved: &[&'static str],
    place: impl Fn() -> String,
) -> Result<(), Fault> {
    for (i, key) in keys.iter().enumerate() {
        if keys.iter().take(i).any(|k| k == key) {
            return Err(fault(format!(
                "key {key:?} appears twice in {}; JSON parsers disagree on which one counts",
                place()
            )));
        }
        if let Some(reads) = message::reads_as_one_of(key, reserved) {
            if reads != *key {
                return Err(fault(format!(
                    "key {key:?} in {} reads as {reads:?} to some JSON parsers",
                    place()
                )));
            }
        }
    }
    Ok(())
}

fn push_key(out: &mut String, key: &str) {
    // A string always serialises.
    let _ = write!(out, "{}:", Value::from(key));
}

/// What became of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Nothing to change: send the original bytes.
    Unchanged,
    Changed(String),
}

/// Counts of a rewrite, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// List results rewritten.
    pub lists: u64,
    /// Items taken out of them.
    pub hidden: u64,
    /// Answers (or events) replaced by errors.
    pub withheld: u64,
    /// Of `lists`, those recalled from the memo.
    pub recalled: u64,
}

/// Rewrites one JSON-RPC payload (a message or a batch of them): the body of
/// a JSON answer, or the data of one event.
///
/// `memo` holds answers rewritten before: one that repeats but for its id
/// is not read again (see [`memo`]).
pub fn rewrite(
    payload: &[u8],
    plan: &mut Plan,
    scopes: &[Scope],
    counts: &mut Counts,
    memo: &mut Memo,
) -> Result<Rewrite, Fault> {
    if let Some(hit) = memo.recall(payload, scopes, &plan.pending) {
        if let Some(i) = hit.pending {
            plan.pending.remove(i);
        }
        counts.lists += 1;
        counts.recalled += 1;
        counts.hidden += hit.hidden;
        return Ok(Rewrite::Changed(hit.rewritten));
    }
    // A refused payload answers nothing: its list requests still wait.
    let pending = plan.pending.clone();
    let mut tally = *counts;
    let result = rewrite_payload(payload, plan, scopes, &mut tally, memo);
    match result {
        Ok(_) => *counts = tally,
        Err(_) => plan.pending = pending,
    }
    result
}

fn rewrite_payload(
    payload: &[u8],
    plan: &mut Plan,
    scopes: &[Scope],
    counts: &mut Counts,
    memo: &mut Memo,
) -> Result<Rewrite, Fault> {
    let text = core::str::from_utf8(payload).map_err(|_| fault("the answer is not UTF-8"))?;
    // One pass over the answer, not a validating one first: a message is
    // read as an object, a batch as an array, anything else is refused.
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|e| fault(format!("the answer is not JSON ({e})")))?;
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match rewrite_message(item.get(), plan, scopes, counts)? {
                Some(new) => {
                    changed = true;
                    out.push_str(&new.text);
                }
                None => out.push_str(item.get()),
            }
        }
        out.push(']');
        return Ok(if changed {
            Rewrite::Changed(out)
        } else {
            Rewrite::Unchanged
        });
    }
    let Some(new) = rewrite_message(trimmed, plan, scopes, counts)? else {
        return Ok(Rewrite::Unchanged);
    };
    if let Some(answered) = new.answered {
        let skipped = text.len() - trimmed.len();
        let fresh = memo::Fresh {
            answer: payload,
            id: answered.id.start + skipped..answered.id.end + skipped,
            list: answered.list,
            rewritten: &new.text,
            out_id: answered.out_id,
            hidden: answered.hidden,
        };
        memo.remember(fresh, scopes);
    }
    Ok(Rewrite::Changed(new.text))
}

/// A message rewritten.
struct Rewritten {
    text: String,
    /// Where its id is, when it has one written as it came (what the memo
    /// needs to put another id in its place).
    answered: Option<Answered>,
}

struct Answered {
    /// The list request it answers, if known.
    list: Option<List>,
    /// The id in the message read.
    id: core::ops::Range<usize>,
    /// Where the id starts in the rewritten message.
    out_id: usize,
    hidden: u64,
}

/// One message; `None` when it goes out as it came.
fn rewrite_message(
    text: &str,
    plan: &mut Plan,
    scopes: &[Scope],
    counts: &mut Counts,
) -> Result<Option<Rewritten>, Fault> {
    let members = Members::parse(text, Level::Message, "a JSON-RPC message")?;
    members.check(&MESSAGE_KEYS, || "a JSON-RPC message".to_string())?;
    // Requests and notifications from the server carry no list result.
    if members.get("method").is_some() {
        return Ok(None);
    }
    let raw_id = members.raw("id");
    let id: Value = match raw_id {
        Some(v) => {
            serde_json::from_slice(v.get().as_bytes()).map_err(|_| fault("the id is not JSON"))?
        }
        None => Value::Null,
    };
    let expected = plan
        .pending
        .iter()
        .position(|(p, _)| *p == id && !id.is_null())
        .map(|i| plan.pending.remove(i).1);
    let Some(result) = members.get("result") else {
        // An error answer (or no answer at all) lists nothing.
        return Ok(None);
    };
    let Val::Object(result_members) = result else {
        return match expected {
            Some(list) => Err(fault(format!(
                "the answer to {} has no result object",
                list.method()
            ))),
            None => Ok(None),
        };
    };
    result_members.check(&RESULT_KEYS, || "the result".to_string())?;
    if let Some(list) = expected {
        if result_members.get(list.array()).is_none() {
            return Err(fault(format!(
                "the answer to {} has no {:?}",
                list.method(),
                list.array()
            )));
        }
    }
    let hidden_before = counts.hidden;
    let mut filtered: Vec<(&str, String)> = Vec::new();
    for (key, value) in &result_members.0 {
        if let Some(list) = List::of_array(key) {
            let Val::Array(items) = value else {
                return Err(fault(format!("{:?} is not an array", list.array())));
            };
            filtered.push((list.array(), filter_items(list, items, scopes, counts)?));
        }
    }
    if filtered.is_empty() {
        return Ok(None);
    }
    counts.lists += 1;
    let mut result_out = String::with_capacity(text.len());
    result_members.write(&mut result_out, "", |key| {
        if key == "cacheScope" {
            return Some("\"private\"".to_string());
        }
        filtered
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    })?;
    let mut out = String::with_capacity(text.len());
    let out_id = members.write(&mut out, "id", |key| {
        (key == "result").then(|| result_out.clone())
    })?;
    let id_in = raw_id.and_then(|raw| {
        let start = (raw.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        Some(start..start + raw.get().len()).filter(|r| r.end <= text.len())
    });
    let answered = id_in.zip(out_id).map(|(id, out_id)| Answered {
        list: expected,
        id,
        out_id,
        hidden: counts.hidden - hidden_before,
    });
    Ok(Some(Rewritten {
        text: out,
        answered,
    }))
}

/// The array of `list` items the token may see, as JSON text.
fn filter_items(
    list: List,
    items: &[&RawValue],
    scopes: &[Scope],
    counts: &mut Counts,
) -> Result<String, Fault> {
    let mut out = String::with_capacity(items.iter().map(|i| i.get().len() + 1).sum());
    out.push('[');
    let mut kept = 0usize;
    for &item in items {
        if visible(list, item, scopes)? {
            if kept > 0 {
                out.push(',');
            }
            out.push_str(item.get());
            kept += 1;
        } else {
            counts.hidden += 1;
        }
    }
    out.push(']');
    Ok(out)
}

/// Whether the token sees `item`. An item that is not an object naming
/// itself with a string is not shown.
fn visible(list: List, item: &RawValue, scopes: &[Scope]) -> Result<bool, Fault> {
    if !item.get().starts_with('{') {
        return Ok(false);
    }
    // Most items hold no escapes: their keys are found without a second
    // serde pass over their values (the capture already validated them).
    if let Some(found) = scan::object_keys(item.get(), list.key()) {
        check_keys(&found.keys, &ITEM_KEYS, || {
            format!("an item of {:?}", list.array())
        })?;
        return Ok(match found.wanted {
            Some(Some(name)) => scopes::lists(scopes, list.method(), name),
            _ => false,
        });
    }
    let members = Members::parse(item.get(), Level::Item, "a list item")?;
    members.check(&ITEM_KEYS, || format!("an item of {:?}", list.array()))?;
    let Some(name) = members.raw(list.key()) else {
        return Ok(false);
    };
    match serde_json::from_str::<Key>(name.get()) {
        Ok(Key(name)) => Ok(scopes::lists(scopes, list.method(), &name)),
        Err(_) => Ok(false),
    }
}

/// Parses a content type's media type (no parameters), lowercase.
pub fn media_type(content_type: &[u8]) -> String {
    let media = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    String::from_utf8_lossy(media).trim().to_ascii_lowercase()
}

/// How the filter treats the body of an answer it must check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `application/json`: buffered, rewritten at its end.
    Json,
    /// `text/event-stream`: rewritten event by event.
    Events,
    /// Cannot be checked: replaced by JSON-RPC errors saying why.
    Withhold(String),
    /// Not an answer a client reads JSON-RPC from (an HTTP error page).
    Pass,
}

/// Decides from the response headers. `encoding`: `content-encoding`.
pub fn body_of(status: u32, content_type: Option<&[u8]>, encoding: Option<&[u8]>) -> Body {
    if let Some(enc) = encoding {
        let enc = String::from_utf8_lossy(enc).trim().to_ascii_lowercase();
        if !enc.is_empty() && enc != "identity" {
            return Body::Withhold(format!(
                "the MCP server answered compressed (content-encoding: {enc}), which the \
                 gateway cannot filter; it asks for identity encoding"
            ));
        }
    }
    let media = content_type.map(media_type).unwrap_or_default();
    match media.as_str() {
        "application/json" => Body::Json,
        "text/event-stream" => Body::Events,
        _ if (200..300).contains(&status) => Body::Withhold(format!(
            "the MCP server answered with content-type {:?}, neither application/json nor \
             text/event-stream",
            if media.is_empty() { "(none)" } else { &media }
        )),
        _ => Body::Pass,
    }
}

/// What to do with a piece of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Send it on as it is.
    Keep,
    /// Send these bytes instead.
    Replace(Vec<u8>),
    /// Keep it buffered: the answer is checked at its end.
    Hold,
}

/// The filter's side of one answer it must check.
#[derive(Debug)]
pub struct Answer {
    plan: Plan,
    body: Body,
    max: usize,
    events: Splitter,
    pub counts: Counts,
    /// Sent an error instead of the body: the rest is dropped.
    replaced: bool,
    /// Nothing left to check: the rest passes untouched.
    done: bool,
}

impl Answer {
    /// `max`: the longest JSON body or event checked; longer ones are
    /// withheld.
    pub fn new(plan: Plan, body: Body, max: usize) -> Answer {
        let done = body == Body::Pass;
        Answer {
            plan,
            body,
            max,
            events: Splitter::new(max),
            counts: Counts::default(),
            replaced: false,
            done,
        }
    }

    pub fn body(&self) -> &Body {
        &self.body
    }

    /// Whether nothing is left to check.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether a chunk of `size` bytes (the body so far, for JSON) would
    /// only be held: its bytes need not be read yet.
    pub fn holds(&self, size: usize, end: bool) -> bool {
        !end && !self.done && !self.replaced && self.body == Body::Json && size <= self.max
    }

    /// The body so far (JSON: everything buffered; events: the new chunk);
    /// `end`: the body ends here.
    pub fn chunk(&mut self, bytes: &[u8], end: bool, scopes: &[Scope], memo: &mut Memo) -> Chunk {
        if self.done {
            return Chunk::Keep;
        }
        if self.replaced {
            return Chunk::Replace(Vec::new());
        }
        if self.holds(bytes.len(), end) {
            return Chunk::Hold;
        }
        match self.body.clone() {
            Body::Pass => Chunk::Keep,
            Body::Withhold(why) => self.withhold(&why),
            Body::Json if bytes.len() > self.max => {
                let why = format!("the answer is longer than {} bytes", self.max);
                self.withhold(&why)
            }
            Body::Json => {
                self.done = true;
                let lists = self.counts.lists;
                let rewritten = rewrite(bytes, &mut self.plan, scopes, &mut self.counts, memo);
                // A list answer under another id spelling was filtered by shape.
                let missing = self
                    .plan
                    .pending
                    .first()
                    .filter(|_| self.counts.lists == lists)
                    .map(|(_, list)| *list);
                match (rewritten, missing) {
                    (Err(Fault(why)), _) => self.withhold(&why),
                    // A whole JSON answer without the list answer: garbled.
                    (Ok(_), Some(list)) => {
                        let why = format!("the answer holds no answer to {}", list.method());
                        self.withhold(&why)
                    }
                    (Ok(Rewrite::Unchanged), None) => Chunk::Keep,
                    (Ok(Rewrite::Changed(new)), None) => Chunk::Replace(new.into_bytes()),
                }
            }
            Body::Events => self.events(bytes, end, scopes, memo),
        }
    }

    fn withhold(&mut self, why: &str) -> Chunk {
        self.replaced = true;
        self.counts.withheld += 1;
        Chunk::Replace(self.plan.error_body(why).into_bytes())
    }

    fn events(&mut self, bytes: &[u8], end: bool, scopes: &[Scope], memo: &mut Memo) -> Chunk {
        let Answer {
            plan,
            events,
            counts,
            max,
            ..
        } = self;
        let out = events.push(bytes, end, &mut |input| {
            let why = match input {
                // Once every list request of the body got its answer, an
                // event too long to hold is not checked: it goes on.
                Input::TooLong if !plan.open() => return None,
                Input::TooLong => format!("an event of the answer is longer than {max} bytes"),
                Input::Event(event) => {
                    let data = sse::data(event).filter(|d| !d.trim_ascii().is_empty())?;
                    match rewrite(&data, plan, scopes, counts, memo) {
                        Ok(Rewrite::Unchanged) => return None,
                        Ok(Rewrite::Changed(new)) => return Some(sse::with_data(event, &new)),
                        // Likewise an event it cannot read.
                        Err(_) if !plan.open() => return None,
                        Err(Fault(why)) => why,
                    }
                }
            };
            counts.withheld += 1;
            let errors = plan.withhold_pending(&why);
            let (first, rest) = errors.split_first()?;
            let mut out = match input {
                Input::Event(event) => sse::with_data(event, first),
                Input::TooLong => sse::event(first),
            };
            for e in rest {
                out.extend(sse::event(e));
            }
            Some(out)
        });
        if out == bytes {
            Chunk::Keep
        } else {
            Chunk::Replace(out)
        }
    }
}

pub mod memo;
mod scan;

#[cfg(test)]
mod tests;
