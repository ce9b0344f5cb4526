//! Worker-local cache of introspection decisions, keyed by the raw SHA-256 of
//! the token (never the token itself).
//!
//! Each entry has two deadlines: `fresh_until` (served normally) and
//! `usable_until` (an active decision may still be served past its freshness,
//! up to `stale_if_error_s` and never past the token's `exp`, but only while
//! the token API fails). Eviction at `max_entries` drops a no-longer-fresh
//! entry first, else the oldest negative one, and only then the oldest active
//! one: a flood of made-up tokens (the checksum is public, so anyone can make
//! well-formed ones) churns through negative entries and leaves the decisions
//! of real callers in place. The indexes are ordered trees, so nothing on the
//! request path scans the cache.

use crate::config;
use core::fmt;
use mcpgw_token::ratelimit::RateLimit;
use mcpgw_token::scopes::Scope;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// SHA-256 of a raw token.
pub type Key = [u8; 32];

/// The key of a raw token: the bytes of its `token_sha`
/// (`key_matches_the_shared_token_sha` keeps it equal to the token API's hex).
pub fn key_of(token: &str) -> Key {
    mcpgw_token::format::sha256(token)
}

/// Parses 64 lowercase hex characters (a `token_sha`).
pub fn key_from_hex(hex: &str) -> Option<Key> {
    mcpgw_token::hex::decode_array(hex)
}

/// Lowercase hex of a key (the `token_sha`).
pub fn hex_of(key: &Key) -> String {
    mcpgw_token::hex::encode(key)
}

/// Why the token API says a token is not active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unknown,
    Revoked,
    Expired,
    Malformed,
}

impl Reason {
    pub fn parse(s: &str) -> Option<Reason> {
        Some(match s {
            "unknown" => Reason::Unknown,
            "revoked" => Reason::Revoked,
            "expired" => Reason::Expired,
            "malformed" => Reason::Malformed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unknown => "unknown",
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::Malformed => "malformed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an active token may do, as introspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant: String,
    pub project: String,
    pub token_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The token holds `mcp:*`: no body inspection needed.
    pub grants_all: bool,
    /// Expiry in Unix milliseconds, `None` for a token that never expires.
    pub exp_ms: Option<u64>,
    /// `None`: the request path does no rate-limit work for this token.
    pub rate_limit: Option<RateLimit>,
    /// This token's part of the request record (derived from the fields
    /// above by [`Grant::new`] and [`Grant::with_rate_limit`]).
    pub record: crate::record::GrantFields,
}

impl Grant {
    pub fn new(
        tenant: String,
        project: String,
        token_id: String,
        name: String,
        scopes: Vec<Scope>,
        exp_ms: Option<u64>,
    ) -> Grant {
        let grants_all = scopes
            .iter()
            .any(|s| matches!(s, Scope::Mcp { method, name: None } if method == "*"));
        let mut g = Grant {
            tenant,
            project,
            token_id,
            name,
            scopes,
            grants_all,
            exp_ms,
            rate_limit: None,
            record: crate::record::GrantFields::default(),
        };
        g.record = crate::record::GrantFields::of(&g);
        g
    }

    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Grant {
        self.rate_limit = limit;
        self.record = crate::record::GrantFields::of(&self);
        self
    }
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Active(Rc<Grant>),
    Inactive(Reason),
}

/// Deadlines of a decision made at `now` (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub fresh_until: u64,
    pub usable_until: u64,
}

/// TTL policy from the configuration, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub ttl_ms: u64,
    pub negative_ttl_ms: u64,
    pub stale_ms: u64,
    pub max_entries: usize,
}

impl Policy {
    pub fn new(c: &config::Cache) -> Policy {
        Policy {
            ttl_ms: c.ttl_s.saturating_mul(1000),
            negative_ttl_ms: c.negative_ttl_s.saturating_mul(1000),
            stale_ms: c.stale_if_error_s.saturating_mul(1000),
            max_entries: usize::try_from(c.max_entries).unwrap_or(usize::MAX).max(1),
        }
    }

    /// Positive TTL = min(ttl_s, the answer's cache_ttl_s, exp - now); the
    /// stale window extends it by `stale_if_error_s`, but never past `exp`.
    pub fn active(&self, cache_ttl_s: u64, exp_ms: Option<u64>, now: u64) -> Deadlines {
        let exp = exp_ms.unwrap_or(u64::MAX);
        let ttl = self.ttl_ms.min(cache_ttl_s.saturating_mul(1000));
        let fresh_until = now.saturating_add(ttl).min(exp);
        let usable_until = fresh_until.saturating_add(self.stale_ms).min(exp);
        Deadlines {
            fresh_until,
            usable_until,
        }
    }

    /// Negative decisions are never served stale.
    pub fn inactive(&self, now: u64) -> Deadlines {
        let fresh_until = now.saturating_add(self.negative_ttl_ms);
        Deadlines {
            fresh_until,
            usable_until: fresh_until,
        }
    }
}

#[derive(Debug)]
struct Entry {
    decision: Decision,
    deadlines: Deadlines,
    seq: u64,
}

/// What an insert pushed out to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// A decision past its freshness.
    Stale,
    /// A fresh negative decision.
    Inactive,
    /// A fresh active decision: the cache is too small for the live tokens.
    Active,
}

/// The worker-local cache.
#[derive(Debug)]
pub struct LocalCache {
    map: HashMap<Key, Entry>,
    /// (fresh_until, seq): the first entry is the first to go stale.
    by_fresh: BTreeSet<(u64, u64)>,
    /// seq → key: the first entry is the oldest.
    by_age: BTreeMap<u64, Key>,
    /// seq → key of inactive decisions only: the first is the oldest.
    inactive_by_age: BTreeMap<u64, Key>,
    next_seq: u64,
    max_entries: usize,
}

impl LocalCache {
    pub fn new(max_entries: usize) -> LocalCache {
        LocalCache {
            map: HashMap::new(),
            by_fresh: BTreeSet::new(),
            by_age: BTreeMap::new(),
            inactive_by_age: BTreeMap::new(),
            next_seq: 0,
            max_entries: max_entries.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A fresh decision: the request path.
    pub fn get(&self, key: &Key, now: u64) -> Option<&Decision> {
        self.map
            .get(key)
            .filter(|e| now < e.deadlines.fresh_until)
            .map(|e| &e.decision)
    }

    /// An active decision past its freshness but within the stale window:
    /// only for when the token API fails.
    pub fn get_stale(&self, key: &Key, now: u64) -> Option<&Decision> {
        self.map
            .get(key)
            .filter(|e| matches!(e.decision, Decision::Active(_)) && now < e.deadlines.usable_until)
            .map(|e| &e.decision)
    }

    /// The deadlines of whatever is cached for `key`, fresh or not.
    pub fn deadlines(&self, key: &Key) -> Option<Deadlines> {
        self.map.get(key).map(|e| e.deadlines)
    }

    /// Stores a decision; one that is already unusable is not stored (and
    /// replaces nothing but removes what it would have replaced). Says what
    /// was evicted to make room, if anything.
    pub fn insert(
        &mut self,
        key: Key,
        decision: Decision,
        deadlines: Deadlines,
        now: u64,
    ) -> Option<Evicted> {
        self.remove(&key);
        if deadlines.fresh_until <= now && deadlines.usable_until <= now {
            return None;
        }
        let evicted = if self.map.len() >= self.max_entries {
            self.evict_one(now)
        } else {
            None
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_fresh.insert((deadlines.fresh_until, seq));
        self.by_age.insert(seq, key);
        if matches!(decision, Decision::Inactive(_)) {
            self.inactive_by_age.insert(seq, key);
        }
        self.map.insert(
            key,
            Entry {
                decision,
                deadlines,
                seq,
            },
        );
        evicted
    }

    /// After a failed callout served this stale decision: treat it as fresh
    /// for `hold_ms` more (never past its stale window), so an outage costs one
    /// callout per token per hold, not one timeout-long callout per request.
    pub fn hold_stale(&mut self, key: &Key, now: u64, hold_ms: u64) {
        let Some(e) = self.map.get(key) else {
            return;
        };
        let d = e.deadlines;
        let fresh_until = now.saturating_add(hold_ms).min(d.usable_until);
        if fresh_until <= d.fresh_until || !matches!(e.decision, Decision::Active(_)) {
            return;
        }
        let decision = e.decision.clone();
        let held = Deadlines {
            fresh_until,
            usable_until: d.usable_until,
        };
        self.insert(*key, decision, held, now);
    }

    /// Removes the decision for `key`; whether there was one.
    pub fn remove(&mut self, key: &Key) -> bool {
        match self.map.remove(key) {
            Some(e) => {
                self.by_fresh.remove(&(e.deadlines.fresh_until, e.seq));
                self.by_age.remove(&e.seq);
                self.inactive_by_age.remove(&e.seq);
                true
            }
            None => false,
        }
    }

    fn evict_one(&mut self, now: u64) -> Option<Evicted> {
        let first = |m: &BTreeMap<u64, Key>| m.first_key_value().map(|(_, &k)| k);
        let (key, why) = match self.by_fresh.first() {
            Some(&(fresh_until, seq)) if fresh_until <= now => {
                (self.by_age.get(&seq).copied(), Evicted::Stale)
            }
            _ => match first(&self.inactive_by_age) {
                Some(k) => (Some(k), Evicted::Inactive),
                None => (first(&self.by_age), Evicted::Active),
            },
        };
        let key = key?;
        self.remove(&key);
        Some(why)
    }
}

/// The most recent revoked keys this worker has seen, so that an answer or
/// a shared entry produced before the revocation cannot re-admit the token.
#[derive(Debug)]
pub struct RecentlyRevoked {
    set: HashSet<Key>,
    order: VecDeque<Key>,
    cap: usize,
}

impl RecentlyRevoked {
    pub fn new(cap: usize) -> RecentlyRevoked {
        RecentlyRevoked {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn insert(&mut self, key: Key) {
        if !self.set.insert(key) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.set.contains(key)
    }
}

#[cfg(test)]
mod tests;
