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
/// hex digits of the token_sha.
pub fn slot_key(cluster: &str, key: &Key) -> String {
    let hex = mcpgw_token::hex::encode(key.get(..2).unwrap_or_default());
    format!("{PREFIX}{cluster}.{}", hex.get(..3).unwrap_or("000"))
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

/// The entries of a slot as stored; anything unreadable (another version, a
/// torn length) reads as empty, and is overwritten by the next write.
fn entries(stored: &[u8]) -> impl Iterator<Item = Entry> + Clone + '_ {
    let rest = match stored.split_first() {
        Some((&VERSION, rest))
            if rest.len() % ENTRY_BYTES == 0 && rest.len() / ENTRY_BYTES <= SLOT_CAP =>
        {
            rest
        }
        _ => &[],
    };
    rest.chunks_exact(ENTRY_BYTES).filter_map(|c| {
        let (id, tat) = c.split_first_chunk::<8>()?;
        Some(Entry {
            id: u64::from_le_bytes(*id),
            tat_ns: u64::from_le_bytes(*tat.first_chunk::<8>()?),
        })
    })
}

/// [`entries`], collected.
#[cfg(test)]
pub fn decode(stored: &[u8]) -> Vec<Entry> {
    entries(stored).collect()
}

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refused: the next request fits in `retry_after_s` seconds.
    Limited {
        retry_after_s: u64,
    },
}

fn ceil_s(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_S)
}

/// GCRA for up to `want` requests at `now_ns` (at least one), given the
/// token's TAT (`None`: a full bucket): how many fit and the TAT to store
/// after them; refused, with the wait, when not even one fits.
pub fn decide(
    tat_ns: Option<u64>,
    limit: &RateLimit,
    now_ns: u64,
    want: u32,
) -> (Admission, u32, Option<u64>) {
    let interval = limit.interval_ns().max(1);
    let tolerance = u64::from(limit.burst.max(1) - 1).saturating_mul(interval);
    let start = tat_ns.unwrap_or(0).max(now_ns);
    let ahead = start - now_ns;
    if ahead > tolerance {
        let retry_after_s = ceil_s(ahead - tolerance).max(MIN_RETRY_S);
        return (Admission::Limited { retry_after_s }, 0, None);
    }
    // Unit i (from 0) fits while ahead + i × interval <= tolerance.
    let room = (tolerance - ahead) / interval + 1;
    let units = u64::from(want.max(1)).min(room);
    let next = start.saturating_add(units.saturating_mul(interval));
    (
        Admission::Allowed,
        u32::try_from(units).unwrap_or(1),
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
/// earlier and never used; each unit is one request at `now_ns`. Works on
/// the stored bytes without collecting them into entries first. A refused
/// request writes nothing (a flood of refused requests costs one read each)
/// unless it gave units back.
pub fn take(
    stored: &[u8],
    id: u64,
    limit: &RateLimit,
    now_ns: u64,
    want: u32,
    give_back: u32,
) -> Taken {
    let all = entries(stored);
    let stored_tat = all
        .clone()
        .find(|e| e.id == id)
        .map(|e| e.tat_ns)
        .filter(|&t| t > now_ns);
    // Unused units come off the end of the schedule; never below now.
    let returned = u64::from(give_back).saturating_mul(limit.interval_ns().max(1));
    let tat = stored_tat
        .map(|t| t.saturating_sub(returned))
        .filter(|&t| t > now_ns);
    let (admission, units, next) = decide(tat, limit, now_ns, want);
    let next = match next {
        Some(n) => Some(n),
        // Refused, but units were given back: the slot must still learn it.
        None if tat != stored_tat => tat.or(Some(now_ns)),
        None => None,
    };
    let write = next.map(|next| {
        // Entries at a full bucket say nothing: drop them while writing anyway.
        let mut out: Vec<Entry> = all.filter(|e| e.id != id && e.tat_ns > now_ns).collect();
        if next > now_ns {
            make_room(&mut out);
            out.push(Entry { id, tat_ns: next });
        }
        encode(&out)
    });
    Taken {
        admission,
        units,
        write,
    }
}

/// Drops entries until one more fits in a slot: the bucket nearest to full
/// loses least by being forgotten.
fn make_room(entries: &mut Vec<Entry>) {
    while entries.len() >= SLOT_CAP {
        let Some((i, _)) = entries.iter().enumerate().min_by_key(|(_, e)| e.tat_ns) else {
            break;
        };
        entries.swap_remove(i);
    }
}

/// One request of token `id` against a slot's `entries`, written
/// independently of [`take`] on collected entries: the reference the tests
/// hold `take` to. The slot to write back, if anything changed.
#[cfg(test)]
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
    let (admission, _, next) = decide(tat, limit, now_ns, 1);
    let Some(next) = next else {
        return (admission, None);
    };
    let mut out: Vec<Entry> = entries
        .iter()
        .filter(|e| e.id != id && e.tat_ns > now_ns)
        .copied()
        .collect();
    make_room(&mut out);
    out.push(Entry { id, tat_ns: next });
    (admission, Some(out))
}

pub mod lease;

#[cfg(test)]
mod tests;
