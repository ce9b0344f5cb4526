//! Per-token rate limits (docs/DESIGN.md §7), enforced per Envoy instance
//! across all its workers.
//!
//! The arithmetic is GCRA, the "generic cell rate algorithm": a token bucket
//! of `burst` requests refilled at `requests / window_s`, kept as one number
//! per token, its theoretical arrival time (TAT). A request at `now` is let
//! through when `max(TAT, now) - now <= (burst - 1) * interval`, and then
//! moves the TAT on by one `interval`. A TAT at or before `now` says "bucket
//! full", the same as no entry, so such entries are dropped.
//!
//! The TATs live in Envoy shared data, which every worker of the process sees
//! and updates with compare-and-swap: a read gives the value and its version,
//! a write with that version fails if another worker wrote in between, and
//! the writer reads again and decides again. So two workers can never both
//! spend the same unit of the bucket. Shared data can be neither listed nor
//! freed, so the key space is fixed: 4096 slots named by the first three hex
//! digits of the token_sha (`mcp_auth.l.<cluster>.<sha[0..3]>`), each a small
//! binary list of (token id, TAT) for the tokens of that slot that are not at
//! a full bucket, at most [`SLOT_CAP`] of them. Everything here is pure; the
//! glue (filter/src/wasm/worker.rs) reads, writes and retries on CAS.

use crate::cache::Key;
use mcpgw_token::ratelimit::RateLimit;

/// Number of slots: 16^3.
pub const SLOTS: u64 = 4096;
/// Tokens with a partly used bucket one slot keeps. Past it, the entry
/// nearest to a full bucket is dropped (that token may then burst again), so
/// 4096 × 32 tokens can be mid-window at once before limits loosen.
pub const SLOT_CAP: usize = 32;
/// Seconds a client told to wait is told at least.
pub const MIN_RETRY_S: u64 = 1;

const VERSION: u8 = 1;
const ENTRY_BYTES: usize = 16;
const NS_PER_S: u64 = 1_000_000_000;

/// The shared-data key of the slot holding `key`'s bucket: the first three
/// hex digits of the token_sha. Written by hand: it is built on every
/// request of a limited token.
pub fn slot_key(cluster: &str, key: &Key) -> String {
    let (a, b) = (
        key.first().copied().unwrap_or(0),
        key.get(1).copied().unwrap_or(0),
    );
    let digits =
        [a >> 4, a & 0xf, b >> 4].map(|d| char::from_digit(u32::from(d), 16).unwrap_or('0'));
    let mut out = String::with_capacity(PREFIX.len() + cluster.len() + 4);
    out.push_str(PREFIX);
    out.push_str(cluster);
    out.push('.');
    out.extend(digits);
    out
}

const PREFIX: &str = "mcp_auth.l.";

/// Every slot key, to create them all before the first request.
pub fn slot_keys(cluster: &str) -> impl Iterator<Item = String> + '_ {
    (0..SLOTS).map(move |i| format!("{PREFIX}{cluster}.{i:03x}"))
}

/// A token's id within its slot: 64 bits of the sha past the slot digits.
pub fn entry_id(key: &Key) -> u64 {
    key.get(8..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map_or(0, |b| u64::from_le_bytes(*b))
}

/// One token's bucket in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// Theoretical arrival time, Unix nanoseconds.
    pub tat_ns: u64,
}

/// A slot as stored: a version byte, then 16 bytes per entry (id, TAT; little
/// endian). Binary, since every limited request copies it out and back.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY_BYTES);
    out.push(VERSION);
    for e in entries {
        out.extend_from_slice(&e.id.to_le_bytes());
        out.extend_from_slice(&e.tat_ns.to_le_bytes());
    }
    out
}

/// The entries of a slot; anything unreadable (another version, a torn
/// length) reads as empty, and is overwritten by the next write.
pub fn decode(bytes: &[u8]) -> Vec<Entry> {
    let Some((&VERSION, rest)) = bytes.split_first() else {
        return Vec::new();
    };
    if rest.len() % ENTRY_BYTES != 0 || rest.len() / ENTRY_BYTES > SLOT_CAP {
        return Vec::new();
    }
    rest.chunks_exact(ENTRY_BYTES)
        .filter_map(|c| {
            let (id, tat) = c.split_first_chunk::<8>()?;
            let tat = tat.first_chunk::<8>()?;
            Some(Entry {
                id: u64::from_le_bytes(*id),
                tat_ns: u64::from_le_bytes(*tat),
            })
        })
        .collect()
}

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Let through; `remaining` more may follow at once, and the bucket is
    /// full again in `full_in_s` seconds.
    Allowed { remaining: u64, full_in_s: u64 },
    /// Refused: the next request fits in `retry_after_s` seconds.
    Limited { retry_after_s: u64 },
}

fn ceil_s(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_S)
}

/// [`decide`] for up to `want` requests at once (at least one): how many
/// fit, and the TAT to store after them. Refused when not even one fits.
pub fn decide_many(
    tat_ns: Option<u64>,
    limit: &RateLimit,
    now_ns: u64,
    want: u32,
) -> (Admission, u32, Option<u64>) {
    let (admission, next) = decide(tat_ns, limit, now_ns);
    if next.is_none() {
        return (admission, 0, None);
    }
    let interval = limit.interval_ns().max(1);
    let tolerance = u64::from(limit.burst.max(1) - 1).saturating_mul(interval);
    let start = tat_ns.unwrap_or(0).max(now_ns);
    // Unit i (from 0) fits while start + i × interval - now <= tolerance.
    let room = (tolerance - (start - now_ns)) / interval + 1;
    let units = u64::from(want.max(1)).min(room);
    let next = start.saturating_add(units.saturating_mul(interval));
    let admission = Admission::Allowed {
        remaining: room - units,
        full_in_s: ceil_s(next - now_ns),
    };
    (admission, u32::try_from(units).unwrap_or(1), Some(next))
}

/// GCRA for one request at `now_ns`, given the token's TAT (`None`: a full
/// bucket). The TAT to store when the request is let through.
pub fn decide(tat_ns: Option<u64>, limit: &RateLimit, now_ns: u64) -> (Admission, Option<u64>) {
    let interval = limit.interval_ns().max(1);
    let tolerance = u64::from(limit.burst.max(1) - 1).saturating_mul(interval);
    let start = tat_ns.unwrap_or(0).max(now_ns);
    let ahead = start - now_ns;
    if ahead > tolerance {
        let wait = ahead - tolerance;
        return (
            Admission::Limited {
                retry_after_s: ceil_s(wait).max(MIN_RETRY_S),
            },
            None,
        );
    }
    let next = start.saturating_add(interval);
    (
        Admission::Allowed {
            remaining: (tolerance - ahead) / interval,
            full_in_s: ceil_s(next - now_ns),
        },
        Some(next),
    )
}

/// What one read of a slot decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub admission: Admission,
    /// Units taken for this request and the ones after it (0 when refused).
    pub units: u32,
    /// The slot to write back, if anything changed.
    pub write: Option<Vec<u8>>,
}

/// Takes up to `want` units (at least 1, for this request) of token `id`'s
/// bucket from a slot as stored, after giving back `give_back` units taken
/// earlier and never used; GCRA as [`decide`], each unit one request at
/// `now_ns`. Works on the stored bytes without decoding them into entries
/// first (the path of every acquisition). Unreadable bytes read as an empty
/// slot, as in [`decode`].
pub fn take(
    stored: &[u8],
    id: u64,
    limit: &RateLimit,
    now_ns: u64,
    want: u32,
    give_back: u32,
) -> Taken {
    let rest = match stored.split_first() {
        Some((&VERSION, rest))
            if rest.len() % ENTRY_BYTES == 0 && rest.len() / ENTRY_BYTES <= SLOT_CAP =>
        {
            rest
        }
        _ => &[],
    };
    let entries = rest.chunks_exact(ENTRY_BYTES).filter_map(|c| {
        let (id, tat) = c.split_first_chunk::<8>()?;
        Some(Entry {
            id: u64::from_le_bytes(*id),
            tat_ns: u64::from_le_bytes(*tat.first_chunk::<8>()?),
        })
    });
    let stored_tat = entries
        .clone()
        .find(|e| e.id == id)
        .map(|e| e.tat_ns)
        .filter(|&t| t > now_ns);
    // Unused units come off the end of the schedule; never below now.
    let returned = u64::from(give_back).saturating_mul(limit.interval_ns().max(1));
    let tat = stored_tat
        .map(|t| t.saturating_sub(returned))
        .filter(|&t| t > now_ns);
    let (admission, units, next) = decide_many(tat, limit, now_ns, want);
    let next = match next {
        Some(n) => Some(n),
        // Refused, but units were given back: the slot must still learn it.
        None if tat != stored_tat => tat.or(Some(now_ns)),
        None => None,
    };
    let Some(next) = next else {
        return Taken {
            admission,
            units,
            write: None,
        };
    };
    let kept = entries.filter(|e| e.id != id && e.tat_ns > now_ns);
    let mine = (next > now_ns).then_some(Entry { id, tat_ns: next });
    if kept.clone().count() + usize::from(mine.is_some()) > SLOT_CAP {
        // A full slot must lose an entry: the rare case takes the long way.
        let mut all: Vec<Entry> = kept.collect();
        while all.len() >= SLOT_CAP {
            let Some((i, _)) = all.iter().enumerate().min_by_key(|(_, e)| e.tat_ns) else {
                break;
            };
            all.swap_remove(i);
        }
        all.extend(mine);
        return Taken {
            admission,
            units,
            write: Some(encode(&all)),
        };
    }
    let mut out = Vec::with_capacity(stored.len() + ENTRY_BYTES);
    out.push(VERSION);
    for e in kept.chain(mine) {
        out.extend_from_slice(&e.id.to_le_bytes());
        out.extend_from_slice(&e.tat_ns.to_le_bytes());
    }
    Taken {
        admission,
        units,
        write: Some(out),
    }
}

/// Decides a request of token `id` against the slot's `entries`. The slot
/// to write back, if anything changed: a refused request writes nothing (a
/// flood of refused requests costs one read each).
pub fn admit(
    entries: &[Entry],
    id: u64,
    limit: &RateLimit,
    now_ns: u64,
) -> (Admission, Option<Vec<Entry>>) {
    let tat = entries
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.tat_ns)
        .filter(|&t| t > now_ns);
    let (admission, next) = decide(tat, limit, now_ns);
    let Some(next) = next else {
        return (admission, None);
    };
    // Entries at a full bucket say nothing: drop them while writing anyway.
    let mut out: Vec<Entry> = entries
        .iter()
        .filter(|e| e.id != id && e.tat_ns > now_ns)
        .copied()
        .collect();
    while out.len() >= SLOT_CAP {
        // The bucket nearest to full loses least by being forgotten.
        let Some((i, _)) = out.iter().enumerate().min_by_key(|(_, e)| e.tat_ns) else {
            break;
        };
        out.swap_remove(i);
    }
    out.push(Entry { id, tat_ns: next });
    (admission, Some(out))
}

pub mod lease;

#[cfg(test)]
mod tests;
