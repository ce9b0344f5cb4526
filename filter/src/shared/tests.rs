use super::*;
use mcpgw_token::ratelimit::RateLimit;

fn key(n: u8) -> Key {
    [n; 32]
}

fn active(n: u8, fresh_until: u64) -> SharedEntry {
    let g = Grant::new(
        "acme".into(),
        "default".into(),
        "tok_1".into(),
        "laptop".into(),
        scopes::parse_all(&["mcp:tools/call:list_*"]).unwrap(),
        Some(9_000_000),
    );
    SharedEntry::from_decision(
        &key(n),
        &Decision::Active(Rc::new(g)),
        Deadlines {
            fresh_until,
            usable_until: fresh_until + 1000,
        },
    )
}

fn inactive(n: u8, fresh_until: u64) -> SharedEntry {
    SharedEntry::from_decision(
        &key(n),
        &Decision::Inactive(Reason::Unknown),
        Deadlines {
            fresh_until,
            usable_until: fresh_until,
        },
    )
}

#[test]
fn bucket_keys_name_every_bucket_once() {
    let all: std::collections::HashSet<String> = bucket_keys("token_api").collect();
    assert_eq!(all.len() as u64, BUCKETS);
    for n in 0..=255u8 {
        let mut k = key(n);
        k[1] = n.wrapping_mul(37);
        assert!(all.contains(&bucket_key("token_api", &k)), "{n}");
    }
    assert_ne!(cursor_key("token_api"), bucket_key("token_api", &key(0)));
    assert!(!all.contains(&cursor_key("token_api")));
}

#[test]
fn bucket_key_uses_three_hex_digits_of_the_sha() {
    let k = crate::cache::key_from_hex(&format!("abc{}", "0".repeat(61))).unwrap();
    assert_eq!(bucket_key("token_api", &k), "mcp_auth.c.token_api.abc");
}

#[test]
fn bucket_cap_scales_with_max_entries() {
    assert_eq!(bucket_cap(1), 2);
    assert_eq!(bucket_cap(10_000), 6);
    assert_eq!(bucket_cap(1_000_000), 64);
}

#[test]
fn codec_round_trips_and_keeps_no_raw_token() {
    let entries = vec![
        active(1, 100),
        inactive(2, 200),
        SharedEntry::tombstone(&key(3), 300),
    ];
    let bytes = encode(&entries);
    assert_eq!(decode(&bytes), entries);
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("mcpctl_pat_"));
}

#[test]
fn garbage_buckets_decode_as_empty() {
    for b in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"v\":3,\"e\":[]}",
        b"{\"v\":2}",
        b"\xff",
    ] {
        assert!(decode(b).is_empty());
    }
}

#[test]
fn decisions_survive_the_round_trip() {
    let (d, dl) = active(1, 100).decision().unwrap();
    match d {
        Decision::Active(g) => {
            assert_eq!(g.tenant, "acme");
            assert_eq!(g.scopes[0].to_string(), "mcp:tools/call:list_*");
            assert_eq!(g.exp_ms, Some(9_000_000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        dl,
        Deadlines {
            fresh_until: 100,
            usable_until: 1100
        }
    );
    assert_eq!(
        SharedEntry::tombstone(&key(1), 5).decision().unwrap().0,
        Decision::Inactive(Reason::Revoked)
    );
    assert_eq!(
        inactive(1, 5).decision().unwrap().0,
        Decision::Inactive(Reason::Unknown)
    );
}

#[test]
fn the_rate_limit_survives_the_round_trip_and_is_checked() {
    let limit = RateLimit {
        requests: 60,
        window_s: 60,
        burst: 5,
    };
    let g = Grant::new(
        "acme".into(),
        "default".into(),
        "tok_1".into(),
        "laptop".into(),
        scopes::parse_all(&["mcp:*"]).unwrap(),
        None,
    )
    .with_rate_limit(Some(limit));
    let d = Deadlines {
        fresh_until: 100,
        usable_until: 100,
    };
    let e = SharedEntry::from_decision(&key(1), &Decision::Active(Rc::new(g)), d);
    let back = decode(&encode(std::slice::from_ref(&e)));
    match back[0].decision().unwrap().0 {
        Decision::Active(g) => assert_eq!(g.rate_limit, Some(limit)),
        other => panic!("{other:?}"),
    }
    // Without a limit nothing is written for it.
    let text = String::from_utf8(encode(&[active(2, 100)])).unwrap();
    assert!(!text.contains("\"rl\""), "{text}");
    // A limit out of range (another writer, a bug) is not trusted.
    let mut bad = e;
    if let SharedState::Active { rl, .. } = &mut bad.state {
        *rl = Some([0, 60, 0]);
    }
    assert!(bad.decision().is_none());
    // A bucket of an earlier format reads as empty: before limits (1) its
    // entries may hold limited tokens as unlimited; 2 tagged states inside.
    let now = String::from_utf8(encode(&[active(3, 100)])).unwrap();
    assert!(now.contains("\"v\":3"), "{now}");
    for old in ["\"v\":1", "\"v\":2"] {
        assert!(decode(now.replace("\"v\":3", old).as_bytes()).is_empty());
    }
}

#[test]
fn forget_drops_a_decision_but_keeps_a_tombstone() {
    assert_eq!(forget(vec![], &key(1)), None);
    let b = vec![active(1, 100), inactive(2, 100)];
    let b = forget(b, &key(1)).unwrap();
    assert_eq!(b.len(), 1);
    assert!(find(&b, &key(1), 0).is_none());
    let t = vec![SharedEntry::tombstone(&key(3), 100)];
    assert_eq!(forget(t, &key(3)), None);
}

#[test]
fn tampered_entries_are_not_trusted() {
    let mut e = active(1, 100);
    if let SharedState::Active { t, .. } = &mut e.state {
        *t = "evil\r\nx-mcp-tenant: other".into();
    }
    assert!(e.decision().is_none());
    let mut e = active(1, 100);
    if let SharedState::Active { sc, .. } = &mut e.state {
        sc.push("bogus".into());
    }
    assert!(e.decision().is_none());
    let e = SharedEntry {
        state: SharedState::Inactive {
            r: "whatever".into(),
        },
        ..inactive(1, 5)
    };
    assert!(e.decision().is_none());
}

#[test]
fn find_skips_dead_entries() {
    let entries = vec![active(1, 100), inactive(2, 50)];
    assert!(find(&entries, &key(1), 1099).is_some(), "usable past fresh");
    assert!(find(&entries, &key(1), 1100).is_none());
    assert!(find(&entries, &key(2), 49).is_some());
    assert!(find(&entries, &key(2), 50).is_none());
    assert!(find(&entries, &key(3), 0).is_none());
}

#[test]
fn upsert_replaces_prunes_and_bounds() {
    let b = upsert(vec![], active(1, 100), 0, 3).unwrap();
    let b = upsert(b, inactive(1, 200), 0, 3).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].fresh_until, 200);
    let b = upsert(b, inactive(2, 300), 0, 3).unwrap();
    let b = upsert(b, inactive(3, 150), 0, 3).unwrap();
    // Full: the soonest-stale decision (key 3) makes room.
    let b = upsert(b, inactive(4, 400), 0, 3).unwrap();
    assert_eq!(b.len(), 3);
    assert!(find(&b, &key(3), 0).is_none());
    // Dead entries are pruned on the way.
    let b = upsert(b, inactive(5, 1000), 350, 3).unwrap();
    assert!(find(&b, &key(1), 350).is_none());
    assert!(b.iter().all(|e| e.fresh_until.max(e.usable_until) > 350));
}

#[test]
fn tombstones_win_over_late_active_writes() {
    let b = upsert(vec![], active(1, 100), 0, 4).unwrap();
    let b = revoke(b, &key(1), 10, 5_000, 4).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].state, SharedState::Revoked);
    assert_eq!(upsert(b.clone(), active(1, 200), 20, 4), None);
    assert_eq!(upsert(b.clone(), inactive(1, 200), 20, 4), None);
    // Once the tombstone is dead, a new decision may land.
    assert!(upsert(b, inactive(1, 9_000), 6_000, 4).is_some());
}

#[test]
fn revoke_writes_only_when_the_token_is_cached() {
    assert_eq!(revoke(vec![], &key(1), 0, 100, 4), None);
    let b = vec![active(2, 100)];
    assert_eq!(revoke(b.clone(), &key(1), 0, 100, 4), None);
    let t = revoke(b, &key(2), 0, 100, 4).unwrap();
    assert_eq!(revoke(t, &key(2), 0, 100, 4), None, "already a tombstone");
}

#[test]
fn tombstones_are_evicted_last() {
    let b = vec![SharedEntry::tombstone(&key(1), 50), inactive(2, 500)];
    let b = upsert(b, inactive(3, 600), 0, 2).unwrap();
    assert!(b.iter().any(|e| e.state == SharedState::Revoked));
    assert!(find(&b, &key(2), 0).is_none());
}

#[test]
fn negative_decisions_make_room_before_fresh_active_ones() {
    // An active decision going stale sooner than the negatives around it
    // still outlives them.
    let b = vec![active(1, 100), inactive(2, 500), inactive(3, 600)];
    let b = upsert(b, inactive(4, 700), 50, 3).unwrap();
    assert!(find(&b, &key(1), 50).is_some(), "active kept");
    assert!(
        find(&b, &key(2), 50).is_none(),
        "oldest-expiring negative went"
    );
    // A stale active decision (only usable if the token API fails) goes first.
    let b = vec![active(1, 100), inactive(2, 500)];
    let b = upsert(b, inactive(3, 700), 150, 2).unwrap();
    assert!(b.iter().all(|e| e.sha != hex_of(&key(1))));
}
