//! One reading of a JSON-RPC body: the method, name and id every reasonable
//! JSON parser would read, or a refusal.
//!
//! MCP servers do not all read JSON the same way. Go's `encoding/json` matches
//! object keys case-insensitively with Unicode simple folding (`ſ` reads as
//! `s`, the Kelvin sign `K` as `k`) and lets the last match win; some parsers
//! keep the first of two duplicate keys, others the last; some have dropped
//! trailing NULs. If the filter decided on `method` while the server executed
//! `Method`, a scope check would be worth nothing. So a message is accepted
//! only when all of them agree, which is when, at the top level and in
//! `params` (the objects a decision reads):
//! - no key appears twice;
//! - no key other than a reserved key itself *reads as* a reserved key
//!   ([`RESERVED`]) once case is folded (ASCII and Unicode simple folding) and
//!   control and default-ignorable characters are dropped;
//! - the message is a request or notification (a string `method`, no
//!   `result`/`error`) or a response (`id` and exactly one of
//!   `result`/`error`);
//! - `jsonrpc` is `"2.0"`, `id` (when present) a string, number or null,
//!   `params` (when present) an object or array, and the name a name-scoped
//!   method is decided on (`params.name`, `params.uri`) a string.
//!
//! Only what a decision reads is kept: nested values (`arguments`, `result`)
//! are checked for JSON syntax and skipped, never built.

use core::fmt;
use mcpgw_token::scopes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// Keys a decision depends on, at the top level or in `params`.
pub const RESERVED: [&str; 8] = [
    "jsonrpc", "method", "params", "id", "result", "error", "name", "uri",
];

/// One JSON-RPC message as the filter reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The id to answer with: the message's `id`, or null.
    pub id: Value,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A request or notification; `name` is the target of a name-scoped
    /// method (`tools/call`, `prompts/get`: `params.name`; `resources/read`:
    /// `params.uri`) when the message names one.
    Request {
        method: String,
        name: Option<String>,
    },
    Response,
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } => Some(method),
            Kind::Response => None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { name, .. } => name.as_deref(),
            Kind::Response => None,
        }
    }
}

/// A body: one message, or a batch of at least one.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Single(Message),
    Batch(Vec<Message>),
}

impl Reading {
    pub fn messages(&self) -> &[Message] {
        match self {
            Reading::Single(m) => core::slice::from_ref(m),
            Reading::Batch(items) => items,
        }
    }
}

/// Why a body has no single reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not JSON (JSON-RPC -32700).
    Parse(String),
    /// JSON, but not one unambiguous JSON-RPC message or batch (-32600);
    /// `id` is the offending message's id when it has a usable one.
    Invalid { detail: String, id: Value },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Parse(d) | Refusal::Invalid { detail: d, .. } => f.write_str(d),
        }
    }
}

/// Reads `body`, or says why it cannot be read one way only.
pub fn read(body: &[u8]) -> Result<Reading, Refusal> {
    // serde_json checks UTF-8 only in the strings it builds, not in those it
    // skips (`arguments`), and servers differ on invalid bytes: some refuse
    // the body, some substitute U+FFFD, a lax decoder may swallow the closing
    // quote after a lead byte. JSON is UTF-8 (RFC 8259 §8.1): refuse the rest.
    let text = core::str::from_utf8(body).map_err(|e| {
        Refusal::Parse(format!(
            "body is not JSON: not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let raw: RawBody =
        serde_json::from_str(text).map_err(|e| Refusal::Parse(format!("body is not JSON: {e}")))?;
    match raw {
        RawBody::Single(m) => message(m).map(Reading::Single),
        RawBody::Batch(items) => {
            if items.is_empty() {
                return Err(invalid("an empty batch holds no message", Value::Null));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Some(m) => out.push(message(m)?),
                    None => {
                        return Err(invalid(
                            format!("batch element {i} is not a JSON-RPC message object"),
                            Value::Null,
                        ))
                    }
                }
            }
            Ok(Reading::Batch(out))
        }
        RawBody::Other => Err(invalid(
            "a JSON-RPC body is an object or an array of objects",
            Value::Null,
        )),
    }
}

fn invalid(detail: impl Into<String>, id: Value) -> Refusal {
    Refusal::Invalid {
        detail: detail.into(),
        id,
    }
}

/// The reserved key a lenient parser would take `key` for, if any.
pub fn reads_as(key: &str) -> Option<&'static str> {
    reads_as_one_of(key, &RESERVED)
}

/// The key of `set` (ASCII keys) a lenient parser would take `key` for, if
/// any: `key` itself, or what it folds to under ASCII and Unicode simple
/// case folding once control and default-ignorable characters are dropped.
pub fn reads_as_one_of(key: &str, set: &[&'static str]) -> Option<&'static str> {
    if let Some(exact) = set.iter().find(|r| **r == key) {
        return Some(exact);
    }
    // Printable ASCII (most keys) holds nothing to drop and folds byte by
    // byte: compare without decoding.
    if key.bytes().all(|b| matches!(b, b' '..=b'~')) {
        return set
            .iter()
            .find(|r| r.as_bytes().eq_ignore_ascii_case(key.as_bytes()))
            .copied();
    }
    folds_to_one_of(key, set)
}

/// The general case of [`reads_as_one_of`]: `key` folded character by
/// character.
fn folds_to_one_of(key: &str, set: &[&'static str]) -> Option<&'static str> {
    // Folded on the stack: this runs for every key of every message and of
    // every list item. Longer than any reserved key: cannot match.
    let mut folded = [0u8; 32];
    let longest = set
        .iter()
        .map(|r| r.len())
        .max()
        .unwrap_or(0)
        .min(folded.len());
    let mut len = 0;
    for c in key.chars() {
        if c.is_control() || is_default_ignorable(c) {
            continue;
        }
        // Under Unicode simple case folding only ASCII letters, the long s
        // and the Kelvin sign fold to ASCII letters; any other character
        // keeps the key apart from every (ASCII) reserved key.
        let b = match c {
            '\u{017F}' => b's',
            '\u{212A}' => b'k',
            c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => return None,
        };
        match folded.get_mut(len).filter(|_| len < longest) {
            Some(slot) => *slot = b,
            None => return None,
        }
        len += 1;
    }
    let folded = folded.get(..len)?;
    set.iter()
        .find(|r| r.as_bytes().eq_ignore_ascii_case(folded))
        .copied()
}

/// Unicode `Default_Ignorable_Code_Point`: characters renderers and some
/// normalisers drop, so a key holding one may read as the key without it.
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5
        | 0x180B..=0x180F | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F
        | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// Refuses duplicate keys and keys that read as a reserved key they are not.
fn check_keys<'k>(
    keys: impl Iterator<Item = &'k str>,
    place: &str,
    id: &Value,
) -> Result<(), Refusal> {
    let mut seen: Vec<&str> = Vec::new();
    for key in keys {
        if seen.contains(&key) {
            return Err(invalid(
                format!(
                    "key {key:?} appears twice {place}; JSON parsers disagree on which one counts"
                ),
                id.clone(),
            ));
        }
        seen.push(key);
        if let Some(reserved) = reads_as(key) {
            if reserved != key {
                return Err(invalid(
                    format!(
                        "key {key:?} {place} reads as {reserved:?} to some JSON parsers; \
                         send {reserved:?} exactly"
                    ),
                    id.clone(),
                ));
            }
        }
    }
    Ok(())
}

fn message(raw: RawMessage) -> Result<Message, Refusal> {
    // The id to answer with, when it is a valid one: errors name it.
    let id = match raw.get("id") {
        Some(Member::Id(v @ (Value::String(_) | Value::Number(_)))) => v.clone(),
        _ => Value::Null,
    };
    check_keys(
        raw.members.iter().map(|(k, _)| k.as_str()),
        "at the top level",
        &id,
    )?;
    if let Some(Member::Id(v)) = raw.get("id") {
        if !matches!(v, Value::String(_) | Value::Number(_) | Value::Null) {
            return Err(invalid("\"id\" must be a string, a number or null", id));
        }
    }
    match raw.get("jsonrpc") {
        Some(Member::Scalar(Scalar::String(v))) if v == "2.0" => {}
        _ => return Err(invalid("\"jsonrpc\" must be \"2.0\"", id)),
    }
    let params = match raw.get("params") {
        None => None,
        Some(Member::Params(Params::Other)) | Some(Member::Id(_) | Member::Scalar(_)) => {
            return Err(invalid("\"params\" must be an object or an array", id))
        }
        Some(Member::Params(p)) => Some(p),
    };
    if let Some(Params::Object(members)) = params {
        check_keys(
            members.iter().map(|(k, _)| k.as_str()),
            "in \"params\"",
            &id,
        )?;
    }
    let has = |k: &str| raw.get(k).is_some();
    let kind = match raw.get("method") {
        Some(Member::Scalar(Scalar::String(method))) => {
            if has("result") || has("error") {
                return Err(invalid(
                    "a message with \"method\" must not carry \"result\" or \"error\"",
                    id,
                ));
            }
            let name = match (scopes::name_param(method), params) {
                (Some(field), Some(Params::Object(members))) => {
                    match members.iter().find(|(k, _)| k == field) {
                        None => None,
                        Some((_, Scalar::String(s))) => Some(s.clone()),
                        Some(_) => {
                            return Err(invalid(
                                format!("\"params.{field}\" of {method} must be a string"),
                                id,
                            ))
                        }
                    }
                }
                _ => None,
            };
            Kind::Request {
                method: method.clone(),
                name,
            }
        }
        Some(_) => return Err(invalid("\"method\" must be a string", id)),
        None => {
            if !has("id") || has("result") == has("error") {
                return Err(invalid(
                    "neither a request (a string \"method\") nor a response (\"id\" and \
                     exactly one of \"result\" or \"error\")",
                    id,
                ));
            }
            Kind::Response
        }
    };
    Ok(Message { id, kind })
}

// ---- what is parsed: enough to decide, keys in order, duplicates kept ----

enum RawBody {
    Single(RawMessage),
    /// `None` for an element that is not an object.
    Batch(Vec<Option<RawMessage>>),
    Other,
}

struct RawMessage {
    members: Vec<(String, Member)>,
}

impl RawMessage {
    /// The first member called exactly `key` (duplicates are refused first).
    fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

enum Member {
    Id(Value),
    Params(Params),
    Scalar(Scalar),
}

enum Params {
    Object(Vec<(String, Scalar)>),
    Array,
    Other,
}

/// A value, as far as a decision reads it: strings in full, containers only
/// as their kind.
#[derive(Debug, PartialEq)]
enum Scalar {
    String(String),
    Other,
}

/// `visit_*` for JSON scalars other than strings, all answering `$value`.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

impl<'de> Deserialize<'de> for RawBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC message or batch")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBody, A::Error> {
                RawMessage::from_map(map).map(RawBody::Single)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBody, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Element>()? {
                    items.push(item.0);
                }
                Ok(RawBody::Batch(items))
            }
            scalars_are!(RawBody::Other);
            fn visit_str<E>(self, _: &str) -> Result<RawBody, E> {
                Ok(RawBody::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A batch element: a message object, or anything else (`None`).
struct Element(Option<RawMessage>);

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC message")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element, A::Error> {
                RawMessage::from_map(map).map(|m| Element(Some(m)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
                skip_seq(seq).map(|()| Element(None))
            }
            scalars_are!(Element(None));
            fn visit_str<E>(self, _: &str) -> Result<Element, E> {
                Ok(Element(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl RawMessage {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<RawMessage, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match key.as_str() {
                // The id goes back to the client as it came: full value.
                "id" => Member::Id(map.next_value()?),
                "params" => Member::Params(map.next_value()?),
                _ => Member::Scalar(map.next_value()?),
            };
            members.push((key, value));
        }
        Ok(RawMessage { members })
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON-RPC params")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Params::Object(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Params, A::Error> {
                skip_seq(seq).map(|()| Params::Array)
            }
            scalars_are!(Params::Other);
            fn visit_str<E>(self, _: &str) -> Result<Params, E> {
                Ok(Params::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::String(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar, E> {
                Ok(Scalar::String(s))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
                skip_seq(seq).map(|()| Scalar::Other)
            }
            scalars_are!(Scalar::Other);
        }
        d.deserialize_any(V)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(any(test, feature = "oracle"))]
pub mod oracle;

#[cfg(test)]
mod tests;
