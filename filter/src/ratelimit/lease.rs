//! Leases: a worker takes several units of a busy token's bucket from the
//! shared slot at once and spends them locally, so a token sending hundreds
//! of requests a second does not pay a shared-data read and write (and the
//! compare-and-swap contention between workers) on every one of them.
//!
//! Units are taken from the slot before they are spent, so no worker can ever
//! let through more than the bucket holds: leasing never loosens a limit.
//! What it can do is hold units one worker has taken while another worker
//! needs them. That is bounded by keeping leases small against the burst:
//! a token whose burst is under [`LEASE_FROM_BURST`] is decided unit by unit
//! (exactly as without leases), larger ones lease at most 1/100 of their burst
//! ([`max_units`], at most [`MAX_UNITS`]). A lease grows only while it is used
//! up quickly (doubling from 1), shrinks when units are left over, is dropped
//! after [`MAX_AGE_NS`], and the units it did not spend are given back to the
//! slot with the next acquisition, so a quiet token wastes nothing.

use mcpgw_token::ratelimit::RateLimit;
use std::collections::HashMap;
use std::hash::Hash;

/// Most units one lease takes.
pub const MAX_UNITS: u32 = 64;
/// Bursts below this are decided unit by unit.
pub const LEASE_FROM_BURST: u32 = 200;
/// A lease older than this is not spent any more.
pub const MAX_AGE_NS: u64 = 1_000_000_000;

/// Most units one lease may take for `limit`: 1 (no leasing) below
/// [`LEASE_FROM_BURST`], else 1/100 of the burst, at most [`MAX_UNITS`].
pub fn max_units(limit: &RateLimit) -> u32 {
    if limit.burst < LEASE_FROM_BURST {
        1
    } else {
        (limit.burst / 100).clamp(1, MAX_UNITS)
    }
}

/// Units of one token's bucket one worker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The limit the units were taken under.
    pub limit: RateLimit,
    /// Units taken and not spent yet.
    pub left: u32,
    /// Units the acquisition took.
    pub size: u32,
    pub taken_ns: u64,
}

/// What a request does with the worker's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Spend a unit of the lease: no shared-data access.
    Spend,
    /// Take up to `want` units from the slot (one for this request), giving
    /// back `give_back` units of the old lease first.
    Take { want: u32, give_back: u32 },
}

/// What a request of a token limited by `limit` does at `now_ns`, given the
/// worker's lease for it; [`Step::Spend`] has taken the unit from the lease.
pub fn step(lease: Option<&mut Lease>, limit: &RateLimit, now_ns: u64) -> Step {
    let cap = max_units(limit);
    let Some(l) = lease.filter(|l| l.limit == *limit) else {
        // No lease, or one taken under another limit: its units were
        // charged at another interval, so they are not given back.
        return Step::Take {
            want: 1,
            give_back: 0,
        };
    };
    let fresh = now_ns.saturating_sub(l.taken_ns) < MAX_AGE_NS;
    if l.left > 0 && fresh {
        l.left -= 1;
        return Step::Spend;
    }
    let want = if l.left == 0 && fresh {
        // Used up within its age: the token is busy, lease more.
        l.size.saturating_mul(2)
    } else {
        // Units left over: it was too large for this token's pace.
        (l.size - l.left.min(l.size)).max(1)
    };
    Step::Take {
        want: want.clamp(1, cap),
        give_back: l.left,
    }
}

/// The lease after this request took `units` (this request's one included).
pub fn taken(limit: &RateLimit, units: u32, now_ns: u64) -> Option<Lease> {
    let left = units.checked_sub(1)?;
    Some(Lease {
        limit: *limit,
        left,
        size: units,
        taken_ns: now_ns,
    })
}

/// Keeps `lease` as `key`'s (forgets `key`'s on `None`: refused, nothing
/// held) in a worker's map of at most `max` leases: when it is full, aged
/// leases go first, then all of them (their units come back as the slots
/// refill).
pub fn keep<K: Hash + Eq>(
    leases: &mut HashMap<K, Lease>,
    key: K,
    lease: Option<Lease>,
    now_ns: u64,
    max: usize,
) {
    let Some(lease) = lease else {
        leases.remove(&key);
        return;
    };
    if leases.len() >= max && !leases.contains_key(&key) {
        leases.retain(|_, old| now_ns.saturating_sub(old.taken_ns) < MAX_AGE_NS);
        if leases.len() >= max {
            leases.clear();
        }
    }
    leases.insert(key, lease);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{decode, take, Admission, Entry};
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * S;

    fn rl(requests: u32, window_s: u32, burst: u32) -> RateLimit {
        RateLimit::new(requests, window_s, Some(burst)).unwrap()
    }

    /// Requests at the running sums of `gaps`, each on its worker.
    fn timeline(gaps: &[(usize, u64)]) -> Vec<(usize, u64)> {
        let mut at = 0;
        gaps.iter()
            .map(|&(w, gap)| {
                at += gap;
                (w, at)
            })
            .collect()
    }

    #[test]
    fn small_bursts_are_decided_unit_by_unit() {
        for burst in [1, 5, 60, LEASE_FROM_BURST - 1] {
            let l = rl(LEASE_FROM_BURST, 60, burst);
            assert_eq!(max_units(&l), 1, "{burst}");
            let mut lease = taken(&l, 1, T0);
            assert_eq!(
                step(lease.as_mut(), &l, T0),
                Step::Take {
                    want: 1,
                    give_back: 0
                }
            );
        }
        assert_eq!(max_units(&rl(1000, 1, 1000)), 10);
        assert_eq!(max_units(&rl(1_000_000, 1, 1_000_000)), MAX_UNITS);
    }

    #[test]
    fn a_busy_lease_doubles_up_to_its_cap_and_a_slow_one_shrinks() {
        let l = rl(100_000, 1, 100_000);
        let mut size = 1;
        let mut sizes = Vec::new();
        for i in 0..10u64 {
            let mut lease = taken(&l, size, T0 + i);
            // Spend it all within its age, then ask again.
            for _ in 1..size {
                assert_eq!(step(lease.as_mut(), &l, T0 + i), Step::Spend);
            }
            match step(lease.as_mut(), &l, T0 + i + 1) {
                Step::Take { want, give_back } => {
                    assert_eq!(give_back, 0);
                    size = want;
                }
                Step::Spend => panic!("nothing left to spend"),
            }
            sizes.push(size);
        }
        assert_eq!(sizes, [2, 4, 8, 16, 32, 64, 64, 64, 64, 64]);
        // 40 of 64 left when it aged out: ask for what was used, give back the rest.
        let mut old = Lease {
            limit: l,
            left: 41,
            size: 64,
            taken_ns: T0,
        };
        assert_eq!(step(Some(&mut old), &l, T0 + 10), Step::Spend);
        assert_eq!(old.left, 40, "spending takes the unit");
        assert_eq!(
            step(Some(&mut old), &l, T0 + MAX_AGE_NS),
            Step::Take {
                want: 24,
                give_back: 40
            }
        );
        // Another limit (changed through the API): start over, nothing given back.
        assert_eq!(
            step(Some(&mut old), &rl(50_000, 1, 50_000), T0 + 10),
            Step::Take {
                want: 1,
                give_back: 0
            }
        );
    }

    #[test]
    fn the_map_of_leases_stays_bounded_dropping_aged_ones_first() {
        let l = rl(1000, 1, 1000);
        let mut map = HashMap::new();
        keep(&mut map, 1, taken(&l, 5, T0), T0, 3);
        keep(
            &mut map,
            2,
            taken(&l, 5, T0 + MAX_AGE_NS),
            T0 + MAX_AGE_NS,
            3,
        );
        keep(
            &mut map,
            3,
            taken(&l, 5, T0 + MAX_AGE_NS),
            T0 + MAX_AGE_NS,
            3,
        );
        // Full: the aged lease of 1 makes room for 4.
        keep(
            &mut map,
            4,
            taken(&l, 5, T0 + MAX_AGE_NS),
            T0 + MAX_AGE_NS,
            3,
        );
        let mut keys: Vec<_> = map.keys().copied().collect();
        keys.sort_unstable();
        assert_eq!(keys, [2, 3, 4]);
        // Full of fresh leases: all go, the new one stays.
        keep(
            &mut map,
            5,
            taken(&l, 5, T0 + MAX_AGE_NS),
            T0 + MAX_AGE_NS,
            3,
        );
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [5]);
        // Replacing a held key never evicts; a refusal forgets it.
        keep(
            &mut map,
            5,
            taken(&l, 2, T0 + MAX_AGE_NS),
            T0 + MAX_AGE_NS,
            1,
        );
        assert_eq!(map.get(&5).map(|x| x.size), Some(2));
        keep(
            &mut map,
            5,
            taken(&l, 0, T0 + MAX_AGE_NS),
            T0 + MAX_AGE_NS,
            1,
        );
        assert!(map.is_empty());
    }

    #[test]
    fn giving_back_restores_the_units() {
        // 300 per second, burst 300: the bucket holds 300 at T0.
        let l = rl(300, 1, 300);
        let id = 9;
        let first = take(&[], id, &l, T0, 300, 0);
        assert_eq!(first.units, 300);
        let slot = first.write.unwrap();
        // Empty now: one more is refused.
        let refused = take(&slot, id, &l, T0, 1, 0);
        assert!(matches!(refused.admission, Admission::Limited { .. }));
        assert_eq!(refused.write, None);
        // 100 of those were never spent: given back, 100 fit again.
        let back = take(&slot, id, &l, T0, 100, 100);
        assert_eq!(back.units, 100);
        assert_eq!(decode(&back.write.unwrap()), decode(&slot));
        // A drained bucket refills one unit per interval, whoever holds what.
        let later = take(&slot, id, &l, T0 + l.interval_ns(), 5, 0);
        assert_eq!(later.units, 1);
    }

    /// Requests of one token spread over `workers` workers, each with its
    /// own lease, all taking from one slot.
    fn simulate(limit: &RateLimit, requests: &[(usize, u64)], workers: usize) -> Vec<bool> {
        let mut slot: Vec<u8> = Vec::new();
        let mut leases: Vec<Option<Lease>> = vec![None; workers];
        let mut out = Vec::new();
        for &(w, at) in requests {
            let w = w % workers;
            let now = T0 + at;
            let allowed = match step(leases[w].as_mut(), limit, now) {
                Step::Spend => true,
                Step::Take { want, give_back } => {
                    let t = take(&slot, 1, limit, now, want, give_back);
                    if let Some(write) = t.write {
                        slot = write;
                    }
                    leases[w] = taken(limit, t.units, now);
                    t.units > 0
                }
            };
            out.push(allowed);
        }
        out
    }

    proptest! {
        /// Leasing never lets more through than the bucket allows: in any
        /// window, at most `burst` plus what refills during it.
        #[test]
        fn leases_never_exceed_the_limit(
            burst in prop_oneof![Just(1u32), Just(50), Just(LEASE_FROM_BURST), Just(1000)],
            per_s in prop_oneof![Just(10u32), Just(1000), Just(100_000)],
            workers in 1usize..4,
            gaps in proptest::collection::vec((0usize..4, 0u64..5_000_000), 1..400),
        ) {
            let limit = rl(per_s.max(burst), 1, burst);
            let requests = timeline(&gaps);
            let allowed = simulate(&limit, &requests, workers);
            let interval = limit.interval_ns();
            for (i, &(_, start)) in requests.iter().enumerate() {
                let mut n = 0u64;
                for (j, &(_, t)) in requests.iter().enumerate().skip(i) {
                    if allowed[j] {
                        n += 1;
                    }
                    let bound = u64::from(limit.burst) + (t - start) / interval;
                    prop_assert!(n <= bound, "{n} allowed in {} ns, bound {bound}", t - start);
                }
            }
        }

        /// Below the leasing burst, leases change nothing: every decision is
        /// the one the slot alone would make.
        #[test]
        fn small_bursts_decide_as_without_leases(
            burst in 1u32..LEASE_FROM_BURST,
            workers in 1usize..4,
            gaps in proptest::collection::vec((0usize..4, 0u64..50_000_000), 1..200),
        ) {
            let limit = rl(burst, 1, burst);
            let requests = timeline(&gaps);
            let leased = simulate(&limit, &requests, workers);
            let mut slot: Vec<Entry> = Vec::new();
            for (k, &(_, at)) in requests.iter().enumerate() {
                let (a, w) = crate::ratelimit::admit(&slot, 1, &limit, T0 + at);
                if let Some(w) = w {
                    slot = w;
                }
                prop_assert_eq!(leased[k], matches!(a, Admission::Allowed));
            }
        }

        /// A token sending at a steady pace within its limit is never refused
        /// because of leases (units are given back, leases shrink).
        #[test]
        fn a_steady_token_within_its_limit_is_never_refused(
            workers in 1usize..4,
            pace_us in 1_000u64..20_000,
            n in 1usize..300,
        ) {
            // 1000 per second, burst 1000; requests at most 1000 per second.
            let limit = rl(1000, 1, 1000);
            let requests: Vec<(usize, u64)> =
                (0..n).map(|i| (i % workers, i as u64 * pace_us * 1000)).collect();
            let allowed = simulate(&limit, &requests, workers);
            prop_assert!(allowed.iter().all(|&a| a));
        }
    }
}
