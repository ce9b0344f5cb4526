//! List answers met before, so a repeated one is not read again.
//!
//! A server answers `tools/list` with the same bytes every time, but for
//! the JSON-RPC `id`. The rewrite of an answer depends only on its bytes,
//! the token's scopes and which list request (if any) its id answers, so
//! the memo keeps, per answer, the bytes around the id and the rewritten
//! bytes around the same id. An answer that equals a kept one byte for byte
//! around its id, whose id is one JSON value, and that answers the same
//! kind of request under the same scopes, gets the kept rewrite with its
//! own id put in: no parse, no filtering. Byte equality is the key (no
//! hash), so nothing can collide; the new id is checked as JSON on its own,
//! and putting one JSON value in place of another leaves the structure the
//! first read checked as it was.
//!
//! Bounded by entries and by bytes; the oldest use goes first.

use super::List;
use mcpgw_token::scopes::Scope;
use serde_json::Value;
use std::ops::Range;

/// Entries per worker.
pub const MAX_ENTRIES: usize = 16;
/// Bytes of answers (and their rewrites) per worker, by default
/// (`list_memo_bytes`).
pub const MAX_BYTES: usize = 2 << 20;
/// Longest id put in a kept rewrite (a UUID string is 38 bytes).
const MAX_ID: usize = 1024;
/// Bytes at the end of an answer compared first: an answer that changes
/// from one time to the next (a cursor, a counter, a timestamp) most often
/// changes there, and it meets every kept answer of its token's scopes.
const TAIL: usize = 32;

/// Rewritten list answers, most recently used first.
#[derive(Debug)]
pub struct Memo {
    entries: Vec<Entry>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    scopes: Vec<Scope>,
    /// The list request the id answered (`None`: rewritten by shape).
    list: Option<List>,
    answer: Box<[u8]>,
    /// Where the id is in `answer`.
    id: Range<usize>,
    rewritten: Box<str>,
    /// Where the same id starts in `rewritten`.
    out_id: usize,
    hidden: u64,
}

/// What an answer rewritten once before becomes this time.
#[derive(Debug, PartialEq, Eq)]
pub struct Recalled {
    /// Index of the pending list request it answers.
    pub pending: Option<usize>,
    pub rewritten: String,
    /// Items taken out.
    pub hidden: u64,
}

/// A fresh rewrite of one message to keep.
#[derive(Debug)]
pub struct Fresh<'a> {
    pub answer: &'a [u8],
    pub id: Range<usize>,
    pub list: Option<List>,
    pub rewritten: &'a str,
    pub out_id: usize,
    pub hidden: u64,
}

impl Default for Memo {
    fn default() -> Memo {
        Memo::new(MAX_ENTRIES, MAX_BYTES)
    }
}

impl Memo {
    pub fn new(max_entries: usize, max_bytes: usize) -> Memo {
        Memo {
            entries: Vec::new(),
            max_entries,
            max_bytes,
            bytes: 0,
        }
    }

    /// A memo that keeps nothing.
    pub fn off() -> Memo {
        Memo::new(0, 0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rewrite of `answer` for `scopes`, when an answer equal to it but
    /// for the id was rewritten before and this id answers the same kind of
    /// request in `pending` (the first request with this id, as a fresh
    /// read would pick).
    pub fn recall(
        &mut self,
        answer: &[u8],
        scopes: &[Scope],
        pending: &[(Value, List)],
    ) -> Option<Recalled> {
        let (at, recalled) = self.entries.iter().enumerate().find_map(|(at, e)| {
            let recalled = e.recall(answer, scopes, pending)?;
            Some((at, recalled))
        })?;
        // Most recently used first.
        if let Some(used) = self.entries.get_mut(..=at) {
            used.rotate_right(1);
        }
        Some(recalled)
    }

    /// Keeps a fresh rewrite, making room by dropping the least recently
    /// used; one too large for the memo is not kept.
    pub fn remember(&mut self, fresh: Fresh<'_>, scopes: &[Scope]) {
        let bytes = fresh.answer.len() + fresh.rewritten.len();
        let fits = fresh.id.start < fresh.id.end
            && fresh.id.end <= fresh.answer.len()
            && fresh.out_id + fresh.id.len() <= fresh.rewritten.len();
        if !fits || self.max_entries == 0 || bytes > self.max_bytes / 4 {
            return;
        }
        while self.entries.len() >= self.max_entries || self.bytes + bytes > self.max_bytes {
            match self.entries.pop() {
                Some(old) => self.bytes -= old.bytes(),
                None => break,
            }
        }
        self.bytes += bytes;
        self.entries.insert(
            0,
            Entry {
                scopes: scopes.to_vec(),
                list: fresh.list,
                answer: fresh.answer.into(),
                id: fresh.id,
                rewritten: fresh.rewritten.into(),
                out_id: fresh.out_id,
                hidden: fresh.hidden,
            },
        );
    }
}

impl Entry {
    fn bytes(&self) -> usize {
        self.answer.len() + self.rewritten.len()
    }

    fn recall(
        &self,
        answer: &[u8],
        scopes: &[Scope],
        pending: &[(Value, List)],
    ) -> Option<Recalled> {
        if self.scopes != scopes {
            return None;
        }
        let before = self.answer.get(..self.id.start)?;
        let after = self.answer.get(self.id.end..)?;
        let id_len = answer.len().checked_sub(before.len() + after.len())?;
        if !(1..=MAX_ID).contains(&id_len) {
            return None;
        }
        let tail = TAIL.min(after.len());
        if answer.get(answer.len() - tail..)? != after.get(after.len() - tail..)? {
            return None;
        }
        let id = answer.strip_prefix(before)?.strip_suffix(after)?;
        // One JSON value (serde refuses anything after it): the answer is
        // the one read before with another value in the id's place.
        let id_text = core::str::from_utf8(id).ok()?;
        let id: Value = serde_json::from_str(id_text).ok()?;
        let answers = pending.iter().position(|(p, _)| *p == id && !id.is_null());
        if answers.and_then(|i| pending.get(i)).map(|(_, list)| *list) != self.list {
            return None;
        }
        let out = &self.rewritten;
        let out_after = self.out_id + self.id.len();
        let mut rewritten = String::with_capacity(out.len() + id_text.len());
        rewritten.push_str(out.get(..self.out_id)?);
        rewritten.push_str(id_text);
        rewritten.push_str(out.get(out_after..)?);
        Some(Recalled {
            pending: answers,
            rewritten,
            hidden: self.hidden,
        })
    }
}
