use super::*;
use proptest::prelude::*;

const S: u64 = NS_PER_S;
const T0: u64 = 1_800_000_000 * S;

fn limit(requests: u32, window_s: u32, burst: u32) -> RateLimit {
    RateLimit {
        requests,
        window_s,
        burst,
    }
}

/// Runs `n` requests of one token at `now` against `slot`, keeping the slot.
fn burst_of(slot: &mut Vec<Entry>, id: u64, l: &RateLimit, now: u64, n: usize) -> Vec<Admission> {
    (0..n)
        .map(|_| {
            let (a, write) = admit(slot, id, l, now);
            if let Some(w) = write {
                *slot = w;
            }
            a
        })
        .collect()
}

fn allowed(list: &[Admission]) -> usize {
    list.iter()
        .filter(|a| matches!(a, Admission::Allowed))
        .count()
}

#[test]
fn a_quiet_token_gets_its_burst_then_waits_one_interval() {
    let l = limit(5, 60, 5);
    let mut slot = Vec::new();
    let out = burst_of(&mut slot, 7, &l, T0, 8);
    assert_eq!(allowed(&out), 5);
    assert!(out[..5].iter().all(|a| *a == Admission::Allowed));
    assert_eq!(out[5], Admission::Limited { retry_after_s: 12 });
    // One interval later exactly one more fits.
    let later = burst_of(&mut slot, 7, &l, T0 + 12 * S, 2);
    assert_eq!(allowed(&later), 1);
    assert!(matches!(later[1], Admission::Limited { .. }));
}

#[test]
fn a_small_burst_spreads_requests_over_the_window() {
    let l = limit(600, 60, 2);
    let mut slot = Vec::new();
    assert_eq!(allowed(&burst_of(&mut slot, 1, &l, T0, 5)), 2);
    // 600 a minute: one every 100 ms.
    assert_eq!(allowed(&burst_of(&mut slot, 1, &l, T0 + S / 10, 5)), 1);
    assert_eq!(allowed(&burst_of(&mut slot, 1, &l, T0 + 10 * S, 5)), 2);
}

#[test]
fn retry_after_is_at_least_a_second_and_rounds_up() {
    let l = limit(1000, 1, 1);
    let mut slot = Vec::new();
    let out = burst_of(&mut slot, 1, &l, T0, 2);
    assert_eq!(out[1], Admission::Limited { retry_after_s: 1 });
    let l = limit(2, 3, 1);
    let mut slot = Vec::new();
    let out = burst_of(&mut slot, 1, &l, T0, 2);
    assert_eq!(
        out[1],
        Admission::Limited { retry_after_s: 2 },
        "1.5 s up to 2"
    );
}

#[test]
fn a_refused_request_writes_nothing() {
    let l = limit(1, 60, 1);
    let (first, write) = admit(&[], 1, &l, T0);
    assert!(matches!(first, Admission::Allowed));
    let slot = write.unwrap();
    let (second, write) = admit(&slot, 1, &l, T0);
    assert!(matches!(second, Admission::Limited { .. }));
    assert_eq!(write, None);
}

#[test]
fn tokens_in_one_slot_have_their_own_buckets() {
    let l = limit(2, 60, 2);
    let mut slot = Vec::new();
    assert_eq!(allowed(&burst_of(&mut slot, 1, &l, T0, 3)), 2);
    assert_eq!(allowed(&burst_of(&mut slot, 2, &l, T0, 3)), 2);
    assert_eq!(slot.len(), 2);
}

#[test]
fn full_buckets_leave_the_slot_and_the_slot_stays_bounded() {
    let l = limit(1, 1, 1);
    let mut slot = Vec::new();
    for id in 0..10 {
        burst_of(&mut slot, id, &l, T0, 1);
    }
    assert_eq!(slot.len(), 10);
    // A second later every bucket is full again: the next write drops them.
    burst_of(&mut slot, 99, &l, T0 + 2 * S, 1);
    assert_eq!(
        slot,
        vec![Entry {
            id: 99,
            tat_ns: T0 + 3 * S
        }]
    );

    let slow = limit(1, 3600, 1);
    let mut slot = Vec::new();
    for id in 0..(SLOT_CAP as u64 + 5) {
        burst_of(&mut slot, id, &slow, T0 + id, 1);
        assert!(slot.len() <= SLOT_CAP);
    }
    // The oldest (nearest to full) went first.
    assert!(!slot.iter().any(|e| e.id < 5));
    assert!(decode(&encode(&slot)) == slot);
}

#[test]
fn a_changed_limit_applies_to_the_next_request() {
    let mut slot = Vec::new();
    assert_eq!(
        allowed(&burst_of(&mut slot, 1, &limit(100, 60, 100), T0, 3)),
        3
    );
    // Lowered to one a minute: the three already spent count against it.
    let out = burst_of(&mut slot, 1, &limit(1, 60, 1), T0, 1);
    assert!(matches!(out[0], Admission::Limited { .. }));
}

#[test]
fn codec_round_trips_and_refuses_garbage() {
    let entries = vec![
        Entry { id: 1, tat_ns: 2 },
        Entry {
            id: u64::MAX,
            tat_ns: T0,
        },
    ];
    let bytes = encode(&entries);
    assert_eq!(bytes.len(), 1 + 2 * 16);
    assert_eq!(decode(&bytes), entries);
    assert_eq!(decode(&encode(&[])), vec![]);
    let mut torn = bytes.clone();
    torn.pop();
    let too_many = encode(&vec![Entry { id: 1, tat_ns: 1 }; SLOT_CAP + 1]);
    for garbage in [&b""[..], b"\x02", &torn, &too_many, b"[{\"s\":1}]"] {
        assert_eq!(decode(garbage), vec![], "{garbage:?}");
    }
}

#[test]
fn slot_keys_name_every_slot_once_and_ids_ignore_the_slot_digits() {
    let all: std::collections::HashSet<String> = slot_keys("token_api").collect();
    assert_eq!(all.len() as u64, SLOTS);
    let k = crate::cache::key_from_hex(&format!("abc{}", "0".repeat(61))).unwrap();
    assert_eq!(slot_key("token_api", &k), "mcp_auth.l.token_api.abc");
    assert!(all.contains(&slot_key("token_api", &k)));
    assert!(!all.contains(&crate::shared::bucket_key("token_api", &k)));
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a[0] = 1;
    b[0] = 2;
    a[8] = 9;
    b[8] = 9;
    assert_eq!(entry_id(&a), entry_id(&b));
    b[15] = 1;
    assert_ne!(entry_id(&a), entry_id(&b));
}

/// Envoy's shared data for one key: a value and a version that every write
/// bumps; a write carrying a stale version fails.
#[derive(Default)]
struct Cell {
    value: Vec<u8>,
    version: u32,
}

/// One worker's request in flight: read done, write pending.
struct Pending {
    entries: Vec<Entry>,
    version: u32,
    now: u64,
}

proptest! {
    /// Workers interleave reads and CAS writes in any order: across all of
    /// them, a token never gets more than its burst plus what the elapsed
    /// time refills, and a retried request is decided on the fresh value.
    #[test]
    fn no_interleaving_of_workers_lets_more_through(
        steps in proptest::collection::vec((0usize..3, prop_oneof![Just(0u64), 0u64..50], any::<bool>()), 1..200),
        burst in 1u32..6,
    ) {
        let l = limit(10, 1, burst); // one every 100 ms
        let mut cell = Cell { value: encode(&[]), version: 1 };
        let mut pending: [Option<Pending>; 3] = [None, None, None];
        let mut now = T0;
        let mut let_through = 0u64;
        for (worker, advance_ms, read) in steps {
            now += advance_ms * 1_000_000;
            match pending[worker].take() {
                None if read => {
                    pending[worker] = Some(Pending {
                        entries: decode(&cell.value),
                        version: cell.version,
                        now,
                    });
                }
                None => {}
                Some(p) => {
                    let (a, write) = admit(&p.entries, 42, &l, p.now);
                    match write {
                        Some(next) if p.version == cell.version => {
                            cell.value = encode(&next);
                            cell.version += 1;
                            let ok = matches!(a, Admission::Allowed);
                            prop_assert!(ok, "a write only follows a let-through");
                            let_through += 1;
                        }
                        // CAS mismatch: the worker reads again later.
                        Some(_) => {}
                        None => {
                            let limited = matches!(a, Admission::Limited { .. });
                            prop_assert!(limited, "no write only for a refusal");
                        }
                    }
                }
            }
        }
        let elapsed_intervals = (now - T0) / l.interval_ns();
        prop_assert!(
            let_through <= u64::from(burst) + elapsed_intervals,
            "{let_through} through, burst {burst}, {elapsed_intervals} intervals"
        );
    }
}

#[test]
fn slot_keys_name_the_first_three_hex_digits() {
    let mut key: Key = [0; 32];
    key[0] = 0xab;
    key[1] = 0xcd;
    assert_eq!(slot_key("token_api", &key), "mcp_auth.l.token_api.abc");
    assert_eq!(slot_key("c", &[0; 32]), "mcp_auth.l.c.000");
    // Every key names one of the slots created at configuration.
    let all: std::collections::HashSet<String> = slot_keys("c").collect();
    assert_eq!(all.len(), 4096);
    for (a, b) in [(0u8, 0u8), (0xff, 0xff), (0x12, 0x3f), (0x9a, 0x0b)] {
        let mut k: Key = [0; 32];
        k[0] = a;
        k[1] = b;
        assert!(all.contains(&slot_key("c", &k)), "{a:02x}{b:02x}");
    }
}

proptest! {
    /// Taking one unit from the stored bytes decides and writes exactly what
    /// decoding, [`admit`] and encoding would, on any bytes (torn, foreign, full).
    #[test]
    fn take_one_is_admit_on_the_decoded_slot(
        raw in proptest::collection::vec(any::<u8>(), 0..40),
        entries in proptest::collection::vec((0u64..40, 0u64..4 * S), 0..=SLOT_CAP + 2),
        use_entries in any::<bool>(),
        id in 0u64..40,
        requests in 1u32..100,
        window_s in 1u32..100,
        burst in 0u32..10,
        at in 0u64..4 * S,
    ) {
        let stored = if use_entries {
            let e: Vec<Entry> = entries
                .iter()
                .map(|&(id, tat)| Entry { id, tat_ns: T0 + tat })
                .collect();
            encode(&e)
        } else {
            raw
        };
        let l = limit(requests, window_s, burst);
        let now = T0 + at;
        let (want_a, want_w) = admit(&decode(&stored), id, &l, now);
        let got = take(&stored, id, &l, now, 1, 0);
        prop_assert_eq!(got.admission, want_a);
        prop_assert_eq!(got.units, u32::from(want_w.is_some()));
        prop_assert_eq!(got.write, want_w.map(|e| encode(&e)));
    }
}

proptest! {
    /// Taking `want` units at once is `want` single requests at the same instant
    /// (as many as fit), and the same slot after them.
    #[test]
    fn take_many_is_that_many_single_requests(
        requests in 1u32..50,
        window_s in 1u32..10,
        burst_frac in 1u32..=100,
        want in 1u32..80,
        pre in 0usize..40,
        at in 0u64..3 * S,
    ) {
        let burst = (requests * burst_frac / 100).max(1);
        let l = limit(requests, window_s, burst);
        let now = T0 + at;
        let mut slot: Vec<Entry> = Vec::new();
        burst_of(&mut slot, 3, &l, T0, pre);
        let stored = encode(&slot);
        let many = take(&stored, 3, &l, now, want, 0);
        let mut singles = slot.clone();
        let out = burst_of(&mut singles, 3, &l, now, want as usize);
        prop_assert_eq!(many.units as usize, allowed(&out));
        if many.units > 0 {
            prop_assert_eq!(many.write.map(|w| decode(&w)), Some(singles));
        }
    }
}
