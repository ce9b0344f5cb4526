//! Independent readers of a JSON-RPC body, each reading it the way a family
//! of JSON libraries behind real MCP servers does. The differential test and
//! the `jsonrpc` fuzz target check that whatever [`super::read`] accepts, they
//! all read the same method and name.
//!
//! They share nothing with the filter's reading but serde_json's tokenizer:
//! objects keep every member in order, duplicates included, and each reader
//! applies its own key-matching rule.

use core::fmt;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// How a reader matches object keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Exact keys, the last duplicate wins (serde_json, Python's `json`, JS).
    ExactLastWins,
    /// Exact keys, the first duplicate wins (some streaming parsers).
    ExactFirstWins,
    /// Go's `encoding/json`: keys equal under Unicode simple case folding,
    /// the last match wins.
    FoldLastWins,
    /// As Go, after dropping control characters (the trailing-NUL bug some
    /// Go JSON libraries had).
    FoldNoControlsLastWins,
}

pub const READERS: [Reader; 4] = [
    Reader::ExactLastWins,
    Reader::ExactFirstWins,
    Reader::FoldLastWins,
    Reader::FoldNoControlsLastWins,
];

/// What one reader makes of one message: its method (None: a response or
/// unreadable) and the name a scope check would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub method: Option<String>,
    pub name: Option<String>,
}

/// A JSON value keeping duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    Str(String),
    Obj(Vec<(String, Tree)>),
    Arr(Vec<Tree>),
    Other,
}

impl Reader {
    fn key_matches(self, key: &str, wanted: &str) -> bool {
        match self {
            Reader::ExactLastWins | Reader::ExactFirstWins => key == wanted,
            Reader::FoldLastWins => equal_fold(key, wanted),
            Reader::FoldNoControlsLastWins => {
                let kept: String = key.chars().filter(|c| !c.is_control()).collect();
                equal_fold(&kept, wanted)
            }
        }
    }

    pub fn get<'t>(self, members: &'t [(String, Tree)], wanted: &str) -> Option<&'t Tree> {
        let mut hits = members
            .iter()
            .filter(|(k, _)| self.key_matches(k, wanted))
            .map(|(_, v)| v);
        match self {
            Reader::ExactFirstWins => hits.next(),
            _ => hits.next_back(),
        }
    }

    /// Reads every message of `body`; `None` when it is not JSON.
    pub fn read(self, body: &[u8]) -> Option<Vec<Read>> {
        let tree: Tree = serde_json::from_slice(body).ok()?;
        let messages = match &tree {
            Tree::Arr(items) => items.iter().collect(),
            one => vec![one],
        };
        Some(messages.into_iter().map(|m| self.read_one(m)).collect())
    }

    fn read_one(self, message: &Tree) -> Read {
        let Tree::Obj(members) = message else {
            return Read {
                method: None,
                name: None,
            };
        };
        let method = match self.get(members, "method") {
            Some(Tree::Str(m)) => Some(m.clone()),
            _ => None,
        };
        let field = match method.as_deref() {
            Some("tools/call" | "prompts/get") => Some("name"),
            Some("resources/read") => Some("uri"),
            _ => None,
        };
        let name = match (field, self.get(members, "params")) {
            (Some(f), Some(Tree::Obj(params))) => match self.get(params, f) {
                Some(Tree::Str(n)) => Some(n.clone()),
                _ => None,
            },
            _ => None,
        };
        Read { method, name }
    }
}

/// Go's `strings.EqualFold`: same length in characters, each pair equal
/// under simple case folding (approximated by comparing both case mappings,
/// which puts `ſ`, `s` and `S`, or `K`, `k` and `K`, in one orbit).
fn equal_fold(a: &str, b: &str) -> bool {
    a.chars().count() == b.chars().count()
        && a.chars().zip(b.chars()).all(|(x, y)| {
            x == y || x.to_lowercase().eq(y.to_lowercase()) || x.to_uppercase().eq(y.to_uppercase())
        })
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_str<E>(self, s: &str) -> Result<Tree, E> {
                Ok(Tree::Str(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    members.push(entry);
                }
                Ok(Tree::Obj(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Tree::Arr(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Other)
            }
        }
        d.deserialize_any(V)
    }
}
