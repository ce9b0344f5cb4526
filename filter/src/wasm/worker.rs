//! Per-worker state shared by the root and HTTP contexts of one VM, and the
//! shared-data reads and writes behind the cache.

use super::host::{self, log};
use super::http::{deliver, Outcome, StreamRef};
use crate::cache::{
    hex_of, Deadlines, Decision, Evicted, Key, LocalCache, Policy, Reason, RecentlyRevoked,
};
use crate::coalesce::Inflight;
use crate::config::Config;
use crate::introspect::{Answer, Unavailable};
use crate::listing;
use crate::memo::KeyMemo;
use crate::metrics::Metric;
use crate::ratelimit::lease::{self, Lease, Step};
use crate::ratelimit::{self, Admission};
use crate::replies::{self, Reply, Unauthorized};
use crate::shared::{self, SharedEntry};
use mcpgw_token::ratelimit::RateLimit;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Revoked keys remembered against late answers and shared writes.
const RECENTLY_REVOKED: usize = 4096;
/// How long a stale decision is reused after a failed callout before the
/// next one is tried (matches the 503's `Retry-After: 1`).
const STALE_HOLD_MS: u64 = 1000;
/// CAS attempts on a contended bucket before giving up (the cache is an
/// optimisation; losing one write only costs a callout elsewhere).
const CAS_ATTEMPTS: usize = 3;
/// CAS attempts on a rate-limit slot before refusing the request: each
/// failed one means another worker let a request through meanwhile, so
/// giving up must not let this one through unchecked.
const LIMIT_CAS_ATTEMPTS: usize = 16;

pub(crate) struct Worker {
    pub cfg: Rc<Config>,
    pub policy: Policy,
    pub cache: LocalCache,
    /// Token → SHA-256, so a cache hit skips the hash.
    pub keys: KeyMemo,
    /// List answers rewritten before (restricted tokens' `tools/list`, …).
    pub lists: listing::Memo,
    pub revoked: RecentlyRevoked,
    pub inflight: Inflight<StreamRef>,
    pub bucket_cap: usize,
    /// Revocations feed: cursor of the next poll (empty: none yet) and the
    /// poll in flight (callout id, sent at).
    pub feed_cursor: String,
    pub feed_call: Option<(u32, u64)>,
    /// Pages read since the tick that started this run of polls.
    pub feed_pages: u32,
    pub feed_failing: bool,
    /// The last answer was a reset (log a run of resets once).
    pub feed_resetting: bool,
}

impl Worker {
    pub fn new(cfg: Config) -> Worker {
        let policy = Policy::new(&cfg.cache);
        Worker {
            bucket_cap: shared::bucket_cap(cfg.cache.max_entries),
            cache: LocalCache::new(policy.max_entries),
            keys: KeyMemo::new(policy.max_entries),
            lists: listing::Memo::new(
                listing::memo::MAX_ENTRIES,
                usize::try_from(cfg.list_memo_bytes).unwrap_or(usize::MAX),
            ),
            cfg: Rc::new(cfg),
            policy,
            revoked: RecentlyRevoked::new(RECENTLY_REVOKED),
            inflight: Inflight::default(),
            feed_cursor: String::new(),
            feed_call: None,
            feed_pages: 0,
            feed_failing: false,
            feed_resetting: false,
        }
    }

    fn bucket(&self, key: &Key) -> String {
        shared::bucket_key(&self.cfg.token_api.cluster, key)
    }

    /// A fresh decision from the shared layer, copied into the local cache.
    pub fn lookup_shared(&mut self, key: &Key, now: u64) -> Option<Decision> {
        let (entries, _) = read_bucket(&self.bucket(key));
        let (decision, deadlines) = shared::find(&entries, key, now)?.decision()?;
        if now >= deadlines.fresh_until {
            return None;
        }
        let decision = match decision {
            Decision::Active(_) if self.revoked.contains(key) => {
                Decision::Inactive(Reason::Revoked)
            }
            d => d,
        };
        self.cache_insert(*key, decision.clone(), deadlines, now);
        Some(decision)
    }

    /// Inserts into the worker cache, counting what made room.
    fn cache_insert(&mut self, key: Key, decision: Decision, deadlines: Deadlines, now: u64) {
        if let Some(evicted) = self.cache.insert(key, decision, deadlines, now) {
            host::inc(Metric::CacheEvicted);
            if evicted == Evicted::Active {
                host::inc(Metric::CacheEvictedActive);
            }
        }
    }

    /// Caches a fresh answer here and in the shared layer; `cache` false
    /// only decides (an answer to a callout sent before a feed reset).
    pub fn record(&mut self, key: &Key, answer: Answer, now: u64, cache: bool) -> Decision {
        let (decision, deadlines) = match answer {
            // Answered before a revocation this worker has since applied.
            Answer::Active { .. } if self.revoked.contains(key) => (
                Decision::Inactive(Reason::Revoked),
                self.policy.inactive(now),
            ),
            Answer::Active { grant, cache_ttl_s } => {
                let d = self.policy.active(cache_ttl_s, grant.exp_ms, now);
                (Decision::Active(Rc::new(grant)), d)
            }
            Answer::Inactive(r) => (Decision::Inactive(r), self.policy.inactive(now)),
        };
        if !cache {
            return decision;
        }
        self.cache_insert(*key, decision.clone(), deadlines, now);
        // "Unknown" answers stay local: made-up tokens are what a flood
        // sends, and sharing them would cost a bucket rewrite each while no
        // other worker is likely to see the same one.
        if decision != Decision::Inactive(Reason::Unknown) {
            let entry = SharedEntry::from_decision(key, &decision, deadlines);
            let cap = self.bucket_cap;
            update_bucket(&self.bucket(key), |entries| {
                shared::upsert(entries, entry.clone(), now, cap)
            });
        }
        decision
    }

    /// What to do for `key` when the token API failed: an active decision
    /// within the stale window (here or shared), else 503.
    pub fn failure(&mut self, key: &Key, now: u64) -> Outcome {
        self.stale_or(key, now, replies::unavailable(), Metric::DeniedUnavailable)
    }

    /// What to do for `key` when `token_api.max_inflight` callouts are in
    /// flight: as for a failure, a stale decision if there is one, else 503
    /// at once.
    pub fn overloaded(&mut self, key: &Key, now: u64) -> Outcome {
        self.stale_or(key, now, replies::overloaded(), Metric::DeniedOverloaded)
    }

    fn stale_or(&mut self, key: &Key, now: u64, deny: Reply, metric: Metric) -> Outcome {
        if let Some(Decision::Active(g)) = self.cache.get_stale(key, now) {
            let grant = g.clone();
            self.cache.hold_stale(key, now, STALE_HOLD_MS);
            return Outcome::Allow { grant, stale: true };
        }
        if !self.revoked.contains(key) {
            let (entries, _) = read_bucket(&self.bucket(key));
            let stale = shared::find(&entries, key, now).and_then(SharedEntry::decision);
            if let Some((Decision::Active(g), d)) = stale {
                if now < d.usable_until {
                    let held = Deadlines {
                        fresh_until: now.saturating_add(STALE_HOLD_MS).min(d.usable_until),
                        usable_until: d.usable_until,
                    };
                    self.cache_insert(*key, Decision::Active(g.clone()), held, now);
                    return Outcome::Allow {
                        grant: g,
                        stale: true,
                    };
                }
            }
        }
        Outcome::Deny(deny, metric, None)
    }

    /// Drops the cached decisions of tokens whose answer changed (a new rate
    /// limit), here and in the shared layer, so the next request asks the
    /// token API; how many were dropped.
    pub fn apply_changes(&mut self, keys: &[Key]) -> u64 {
        let mut applied = 0;
        let mut by_bucket: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for key in keys {
            applied += u64::from(self.cache.remove(key));
            by_bucket.entry(self.bucket(key)).or_default().push(*key);
        }
        for (bucket, keys) in by_bucket {
            let written = update_bucket(&bucket, |mut entries| {
                let mut changed = false;
                for key in &keys {
                    if let Some(next) = shared::forget(entries.clone(), key) {
                        entries = next;
                        changed = true;
                    }
                }
                changed.then_some(entries)
            });
            applied += u64::from(written);
        }
        applied
    }

    /// Evicts revoked tokens here and in the shared layer; how many cached
    /// decisions were evicted.
    pub fn apply_revocations(&mut self, keys: &[Key], now: u64) -> u64 {
        let mut applied = 0;
        let mut by_bucket: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for key in keys {
            self.revoked.insert(*key);
            let here = self.cache.remove(key);
            applied += u64::from(here);
            by_bucket.entry(self.bucket(key)).or_default().push(*key);
        }
        // A tombstone outlives any decision a racing worker could still write.
        let until = now
            .saturating_add(self.policy.ttl_ms)
            .saturating_add(self.policy.stale_ms)
            .saturating_add(1000);
        let cap = self.bucket_cap;
        for (bucket, keys) in by_bucket {
            let written = update_bucket(&bucket, |mut entries| {
                let mut changed = false;
                for key in &keys {
                    if let Some(next) = shared::revoke(entries.clone(), key, now, until, cap) {
                        entries = next;
                        changed = true;
                    }
                }
                changed.then_some(entries)
            });
            if written {
                applied += 1;
            }
        }
        applied
    }
}

impl Worker {
    /// Whether decisions may be cached: with the feed on, only once this
    /// worker has a cursor. A worker that starts at the feed's head
    /// (`since=now`) would never read a revocation made between a decision
    /// and that head; until its first answer, each decision serves the
    /// requests that waited for it and is not kept.
    pub fn caching(&self) -> bool {
        self.cfg.revocation_poll_ms == 0 || !self.feed_cursor.is_empty()
    }

    /// After a feed reset: revocations may have been missed, so no decision
    /// cached before it can be trusted. Empties this worker's cache and every
    /// shared bucket (other workers empty their own caches when their own poll
    /// gets the reset). Resets are rare (a database restored or replaced, a
    /// gateway that fell behind the feed's retention), so the cost, 4096 small
    /// shared-data writes, is paid here on the tick, not on the request path.
    /// Tombstones go too, and `revoked` stays: it still holds what this
    /// worker knows was revoked.
    pub fn drop_decisions(&mut self) {
        self.cache = LocalCache::new(self.policy.max_entries);
        // Answers already on their way may predate the reset: they decide
        // for the requests waiting on them but are not cached.
        self.inflight.forget_answers();
        let empty = shared::encode(&[]);
        for bucket in shared::bucket_keys(&self.cfg.token_api.cluster) {
            let _ = hostcalls::set_shared_data(&bucket, Some(&empty), None);
        }
    }

    /// The last feed cursor any worker of this Envoy applied, to start from.
    pub fn shared_cursor(&self) -> Option<String> {
        match hostcalls::get_shared_data(&shared::cursor_key(&self.cfg.token_api.cluster)) {
            Ok((Some(bytes), _)) => String::from_utf8(bytes).ok().filter(|c| !c.is_empty()),
            _ => None,
        }
    }

    /// Records this worker's cursor for workers that start later.
    pub fn publish_cursor(&self) {
        let key = shared::cursor_key(&self.cfg.token_api.cluster);
        let _ = hostcalls::set_shared_data(&key, Some(self.feed_cursor.as_bytes()), None);
    }
}

/// Creates every rate-limit slot that does not exist yet. A write to a key
/// that does not exist succeeds whatever its CAS, so two workers creating the
/// same slot at once could each count a request; created here, at
/// configuration, every request-time write is a checked CAS.
pub fn create_limit_slots(cluster: &str) {
    let empty = ratelimit::encode(&[]);
    for slot in ratelimit::slot_keys(cluster) {
        if let Ok((None, _)) = hostcalls::get_shared_data(&slot) {
            let _ = hostcalls::set_shared_data(&slot, Some(&empty), None);
        }
    }
}

/// Leases held beyond this many tokens are dropped (their units are given
/// back by nobody: the slots refill them at the token's pace).
const MAX_LEASES: usize = 4096;

thread_local! {
    /// This worker's leases of busy tokens' buckets (src/ratelimit/lease.rs).
    /// Not in [`Worker`]: a callout's answer decides requests while the
    /// worker is borrowed.
    static LEASES: RefCell<HashMap<Key, Lease>> = RefCell::new(HashMap::new());
}

/// Decides one request of the token `key` against its rate limit, across
/// every worker of this Envoy: spend a unit this worker leased, or read the
/// slot, take units, write back with CAS; on a lost race read and decide
/// again. A token without a limit never gets here.
pub fn admit(cluster: &str, key: &Key, limit: &RateLimit, now_ns: u64) -> Admission {
    let step = LEASES.with(|l| lease::step(l.borrow_mut().get_mut(key), limit, now_ns));
    let Step::Take { want, give_back } = step else {
        return Admission::Allowed;
    };
    let (admission, units) = take_units(cluster, key, limit, now_ns, want, give_back);
    // Refused: no lease (what was given back is in the slot now).
    let lease = lease::taken(limit, units, now_ns);
    LEASES.with(|l| lease::keep(&mut l.borrow_mut(), *key, lease, now_ns, MAX_LEASES));
    admission
}

/// One read-decide-write of `key`'s slot: up to `want` units taken, after
/// `give_back` unused ones returned. Fails closed (no unit) when the slot
/// cannot be read or written.
fn take_units(
    cluster: &str,
    key: &Key,
    limit: &RateLimit,
    now_ns: u64,
    want: u32,
    give_back: u32,
) -> (Admission, u32) {
    let slot = ratelimit::slot_key(cluster, key);
    let id = ratelimit::entry_id(key);
    for _ in 0..LIMIT_CAS_ATTEMPTS {
        let (stored, cas) = match hostcalls::get_shared_data(&slot) {
            Ok((Some(bytes), cas)) => (bytes, cas),
            // Not created at configuration (another plugin version's VM
            // started first): create it, then decide on the stored value.
            Ok((None, _)) => {
                let _ = hostcalls::set_shared_data(&slot, Some(&ratelimit::encode(&[])), None);
                continue;
            }
            Err(_) => break,
        };
        let taken = ratelimit::take(&stored, id, limit, now_ns, want, give_back);
        let Some(next) = taken.write else {
            return (taken.admission, taken.units);
        };
        match hostcalls::set_shared_data(&slot, Some(&next), cas) {
            Ok(()) => return (taken.admission, taken.units),
            Err(Status::CasMismatch) => host::inc(Metric::RateLimitCasRetries),
            Err(_) => break,
        }
    }
    // Fail closed: the request could not be counted.
    (
        Admission::Limited {
            retry_after_s: ratelimit::MIN_RETRY_S,
        },
        0,
    )
}

fn read_bucket(name: &str) -> (Vec<SharedEntry>, Option<u32>) {
    match hostcalls::get_shared_data(name) {
        Ok((Some(bytes), cas)) => (shared::decode(&bytes), cas),
        Ok((None, cas)) => (Vec::new(), cas),
        Err(_) => (Vec::new(), None),
    }
}

/// Read-modify-write of a bucket with CAS; `change` returns `None` for "no
/// write needed". Whether something was written.
fn update_bucket(
    name: &str,
    change: impl Fn(Vec<SharedEntry>) -> Option<Vec<SharedEntry>>,
) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (entries, cas) = read_bucket(name);
        let Some(next) = change(entries) else {
            return false;
        };
        match hostcalls::set_shared_data(name, Some(&shared::encode(&next)), cas) {
            Ok(()) => return true,
            Err(Status::CasMismatch) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// The first characters of a token_sha: enough to find it in the token
/// API's audit log, never the token.
pub fn sha_prefix(key: &Key) -> String {
    let hex = hex_of(key);
    hex.get(..12).unwrap_or_default().to_string()
}

/// Applies the answer (or failure) of the callout for `key` to every stream
/// waiting on it, switching to each stream's context in turn.
pub fn resolve(
    worker: &Rc<RefCell<Worker>>,
    key: &Key,
    result: Result<Answer, Unavailable>,
    now: u64,
) {
    let (pending, cfg, outcome) = {
        let mut w = worker.borrow_mut();
        let pending = w.inflight.finish(key);
        let cache = pending.as_ref().is_none_or(|p| p.cacheable) && w.caching();
        let outcome = match result {
            Ok(answer) => match w.record(key, answer, now, cache) {
                Decision::Active(grant) => Outcome::Allow {
                    grant,
                    stale: false,
                },
                Decision::Inactive(r) => Outcome::Deny(
                    replies::unauthorized(&w.cfg, Unauthorized::Inactive(r)),
                    Metric::DeniedInvalid,
                    Some(r),
                ),
            },
            Err(why) => {
                host::inc(Metric::CalloutFailures);
                log(
                    LogLevel::Warn,
                    &format!(
                        "mcp_auth: token API unavailable for token_sha {}…: {why}",
                        sha_prefix(key)
                    ),
                );
                w.failure(key, now)
            }
        };
        (pending, w.cfg.clone(), outcome)
    };
    let Some(pending) = pending else {
        return;
    };
    for (context_id, stream) in pending.waiters {
        // A stream that ended has left the list; a failure here means the
        // host already dropped the context.
        if hostcalls::set_effective_context(context_id).is_err() {
            continue;
        }
        deliver(&cfg, &stream, &outcome, true);
    }
}
