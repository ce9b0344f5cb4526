//! The cross-worker layer of the cache, in Envoy shared data.
//!
//! Shared data can neither be listed nor freed, so decisions live in a fixed
//! set of 4096 buckets named by the first three hex digits of the token_sha
//! (`mcp_auth.c.<cluster>.<sha[0..3]>`; the cluster keeps plugins that share a
//! `vm_id` but talk to different token APIs apart). A bucket is a small JSON
//! list updated with compare-and-swap. It holds hashes, never raw tokens.
//!
//! A revocation leaves a tombstone where a decision was, so that another
//! worker's late write of an older "active" answer cannot re-admit the token.
//! A feed reset empties every bucket ([`bucket_keys`]).
//!
//! One more key, `mcp_auth.f.<cluster>`, holds the last feed cursor a worker
//! applied, so a worker VM started in a running Envoy continues the feed
//! where its peers are instead of jumping to the head past revocations the
//! buckets may still hold decisions for.
//! Everything here is pure; the glue only reads, writes and retries on CAS.

use crate::cache::{hex_of, Deadlines, Decision, Grant, Key, Reason};
use crate::introspect::{is_tenant, is_token_id, is_token_name};
use mcpgw_token::ratelimit::RateLimit;
use mcpgw_token::scopes;
use serde::{Deserialize, Serialize};
use std::rc::Rc;

/// Number of buckets: 16^3.
pub const BUCKETS: u64 = 4096;

/// The shared-data key of the bucket holding `key`.
pub fn bucket_key(cluster: &str, key: &Key) -> String {
    let hex = hex_of(key);
    format!("mcp_auth.c.{cluster}.{}", hex.get(..3).unwrap_or("000"))
}

/// The shared-data key of every bucket, for emptying them all.
pub fn bucket_keys(cluster: &str) -> impl Iterator<Item = String> + '_ {
    (0..BUCKETS).map(move |i| format!("mcp_auth.c.{cluster}.{i:03x}"))
}

/// The shared-data key of the last feed cursor applied by any worker.
pub fn cursor_key(cluster: &str) -> String {
    format!("mcp_auth.f.{cluster}")
}

/// Entries per bucket: twice the even share of `max_entries`, so an uneven
/// spread of hashes still fits, bounded to keep each CAS update small.
pub fn bucket_cap(max_entries: u64) -> usize {
    let share = max_entries.div_ceil(BUCKETS);
    usize::try_from(share.saturating_mul(2))
        .unwrap_or(64)
        .clamp(2, 64)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    v: u32,
    e: Vec<SharedEntry>,
}

/// 2: active entries carry the rate limit. 3: the state is externally
/// tagged (`{"a": {...}}`), which spares the filter serde's buffering of
/// internally tagged enums (18 KB of `filter.wasm`). A filter reading another
/// version's bucket sees it empty (and asks the token API), so an older
/// filter sharing the `vm_id` never drops a limit it cannot read.
const VERSION: u32 = 3;

/// One decision in a bucket. Field names are short: every byte is copied on
/// each read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedEntry {
    /// token_sha, lowercase hex.
    #[serde(rename = "s")]
    pub sha: String,
    #[serde(rename = "f")]
    pub fresh_until: u64,
    #[serde(rename = "u")]
    pub usable_until: u64,
    #[serde(rename = "d")]
    pub state: SharedState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharedState {
    #[serde(rename = "a")]
    Active {
        t: String,
        p: String,
        i: String,
        n: String,
        sc: Vec<String>,
        x: Option<u64>,
        /// Rate limit: requests, window_s, burst.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rl: Option<[u32; 3]>,
    },
    #[serde(rename = "i")]
    Inactive { r: String },
    #[serde(rename = "r")]
    Revoked,
}

impl SharedEntry {
    pub fn from_decision(key: &Key, decision: &Decision, d: Deadlines) -> SharedEntry {
        let state = match decision {
            Decision::Active(g) => SharedState::Active {
                t: g.tenant.clone(),
                p: g.project.clone(),
                i: g.token_id.clone(),
                n: g.name.clone(),
                sc: g.scopes.iter().map(ToString::to_string).collect(),
                x: g.exp_ms,
                rl: g.rate_limit.map(|l| [l.requests, l.window_s, l.burst]),
            },
            Decision::Inactive(r) => SharedState::Inactive {
                r: r.as_str().to_string(),
            },
        };
        SharedEntry {
            sha: hex_of(key),
            fresh_until: d.fresh_until,
            usable_until: d.usable_until,
            state,
        }
    }

    pub fn tombstone(key: &Key, until: u64) -> SharedEntry {
        SharedEntry {
            sha: hex_of(key),
            fresh_until: until,
            usable_until: until,
            state: SharedState::Revoked,
        }
    }

    /// The decision this entry holds, re-validated: shared memory is written
    /// by every VM with the same `vm_id`, possibly another filter version.
    pub fn decision(&self) -> Option<(Decision, Deadlines)> {
        let d = Deadlines {
            fresh_until: self.fresh_until,
            usable_until: self.usable_until,
        };
        let decision = match &self.state {
            SharedState::Active {
                t,
                p,
                i,
                n,
                sc,
                x,
                rl,
            } => {
                if !(is_tenant(t) && is_tenant(p) && is_token_id(i) && is_token_name(n)) {
                    return None;
                }
                let scopes = scopes::parse_all(sc).ok()?;
                let rate_limit = match rl {
                    None => None,
                    Some([requests, window_s, burst]) => {
                        let l = RateLimit {
                            requests: *requests,
                            window_s: *window_s,
                            burst: *burst,
                        };
                        l.check().ok()?;
                        Some(l)
                    }
                };
                Decision::Active(Rc::new(
                    Grant::new(t.clone(), p.clone(), i.clone(), n.clone(), scopes, *x)
                        .with_rate_limit(rate_limit),
                ))
            }
            SharedState::Inactive { r } => Decision::Inactive(Reason::parse(r)?),
            SharedState::Revoked => Decision::Inactive(Reason::Revoked),
        };
        Some((decision, d))
    }

    fn is_dead(&self, now: u64) -> bool {
        self.fresh_until.max(self.usable_until) <= now
    }
}

/// The entries of a bucket; anything unreadable counts as empty (and is
/// overwritten by the next update).
pub fn decode(bytes: &[u8]) -> Vec<SharedEntry> {
    match serde_json::from_slice::<Bucket>(bytes) {
        Ok(b) if b.v == VERSION => b.e,
        _ => Vec::new(),
    }
}

pub fn encode(entries: &[SharedEntry]) -> Vec<u8> {
    // Serializing plain strings and integers cannot fail.
    serde_json::to_vec(&Bucket {
        v: VERSION,
        e: entries.to_vec(),
    })
    .unwrap_or_default()
}

/// The entry for `key`, if any and not dead.
pub fn find<'a>(entries: &'a [SharedEntry], key: &Key, now: u64) -> Option<&'a SharedEntry> {
    let sha = hex_of(key);
    entries.iter().find(|e| e.sha == sha && !e.is_dead(now))
}

/// Adds or replaces the decision for `new.sha`. Returns the new bucket, or
/// `None` when nothing should be written: a live tombstone for the same
/// token wins over any decision.
pub fn upsert(
    mut entries: Vec<SharedEntry>,
    new: SharedEntry,
    now: u64,
    cap: usize,
) -> Option<Vec<SharedEntry>> {
    entries.retain(|e| !e.is_dead(now));
    if let Some(pos) = entries.iter().position(|e| e.sha == new.sha) {
        if entries
            .get(pos)
            .is_some_and(|e| e.state == SharedState::Revoked)
            && new.state != SharedState::Revoked
        {
            return None;
        }
        entries.remove(pos);
    }
    if new.is_dead(now) {
        return Some(entries);
    }
    while entries.len() >= cap.max(1) {
        // Stale decisions go first, then negative ones, then active ones,
        // tombstones last; the soonest stale first within each.
        let victim = entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| {
                let fresh_active =
                    matches!(e.state, SharedState::Active { .. }) && e.fresh_until > now;
                (e.state == SharedState::Revoked, fresh_active, e.fresh_until)
            })
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                entries.remove(i);
            }
            None => break,
        }
    }
    entries.push(new);
    Some(entries)
}

/// Drops the decision for `key` (its token changed: the next lookup asks the
/// token API). A tombstone stays: the token is still revoked.
/// `None` when there is nothing to drop.
pub fn forget(mut entries: Vec<SharedEntry>, key: &Key) -> Option<Vec<SharedEntry>> {
    let sha = hex_of(key);
    let before = entries.len();
    entries.retain(|e| e.sha != sha || e.state == SharedState::Revoked);
    (entries.len() != before).then_some(entries)
}

/// Replaces the decision for `key` with a tombstone living until `until`.
/// `None` when the bucket holds nothing for `key` (nothing to write).
pub fn revoke(
    entries: Vec<SharedEntry>,
    key: &Key,
    now: u64,
    until: u64,
    cap: usize,
) -> Option<Vec<SharedEntry>> {
    let sha = hex_of(key);
    let present = entries
        .iter()
        .any(|e| e.sha == sha && e.state != SharedState::Revoked && !e.is_dead(now));
    if !present {
        return None;
    }
    upsert(entries, SharedEntry::tombstone(key, until), now, cap)
}

#[cfg(test)]
mod tests;
