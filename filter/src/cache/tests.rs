use super::*;
use mcpgw_token::scopes;

fn grant(scopes: &[&str], exp_ms: Option<u64>) -> Decision {
    Decision::Active(Rc::new(Grant::new(
        "acme".into(),
        "default".into(),
        "tok_1".into(),
        "laptop".into(),
        scopes::parse_all(scopes).unwrap(),
        exp_ms,
    )))
}

fn key(n: u8) -> Key {
    [n; 32]
}

fn policy() -> Policy {
    Policy::new(&config::Cache {
        ttl_s: 30,
        negative_ttl_s: 5,
        max_entries: 3,
        stale_if_error_s: 300,
    })
}

#[test]
fn key_matches_the_shared_token_sha() {
    let token = "mcpctl_pat_x";
    let k = key_of(token);
    assert_eq!(hex_of(&k), mcpgw_token::format::sha256_hex(token));
    assert_eq!(key_from_hex(&hex_of(&k)), Some(k));
}

#[test]
fn key_from_hex_is_strict() {
    assert_eq!(key_from_hex(&"ab".repeat(32)), Some([0xab; 32]));
    assert_eq!(key_from_hex(&"AB".repeat(32)), None);
    assert_eq!(key_from_hex(&"ab".repeat(31)), None);
    assert_eq!(key_from_hex(&format!("{}zz", "ab".repeat(31))), None);
    assert_eq!(key_from_hex(""), None);
}

#[test]
fn grants_all_only_for_exactly_mcp_star() {
    let all = Grant::new(
        "t".into(),
        "p".into(),
        "i".into(),
        "n".into(),
        scopes::parse_all(&["mcp:tools/list", "mcp:*"]).unwrap(),
        None,
    );
    assert!(all.grants_all);
    for s in ["mcp:tools/*", "mcp:tools/call:*", "tokens:read"] {
        let g = Grant::new(
            "t".into(),
            "p".into(),
            "i".into(),
            "n".into(),
            scopes::parse_all(&[s]).unwrap(),
            None,
        );
        assert!(!g.grants_all, "{s}");
    }
}

#[test]
fn positive_ttl_is_the_smallest_of_config_answer_and_exp() {
    let p = policy();
    let now = 1_000_000;
    // Config ttl wins.
    assert_eq!(p.active(60, None, now).fresh_until, now + 30_000);
    // Answer's cache_ttl_s wins.
    assert_eq!(p.active(10, None, now).fresh_until, now + 10_000);
    // Token expiry wins, and also bounds the stale window.
    let d = p.active(60, Some(now + 4_000), now);
    assert_eq!(d.fresh_until, now + 4_000);
    assert_eq!(d.usable_until, now + 4_000);
    // Stale window past freshness when exp allows.
    let d = p.active(60, Some(now + 100_000), now);
    assert_eq!(d.usable_until, now + 100_000);
    let d = p.active(60, None, now);
    assert_eq!(d.usable_until, now + 30_000 + 300_000);
    // cache_ttl_s 0 = do not cache.
    assert_eq!(p.active(0, None, now).fresh_until, now);
}

#[test]
fn fresh_hits_until_ttl_then_stale_only() {
    let p = policy();
    let mut c = LocalCache::new(10);
    let now = 5_000;
    c.insert(
        key(1),
        grant(&["mcp:*"], None),
        p.active(30, None, now),
        now,
    );
    assert!(c.get(&key(1), now).is_some());
    assert!(c.get(&key(1), now + 29_999).is_some());
    assert!(c.get(&key(1), now + 30_000).is_none());
    // Past TTL: usable only as a stale fallback, within the window.
    assert!(c.get_stale(&key(1), now + 30_000).is_some());
    assert!(c.get_stale(&key(1), now + 329_999).is_some());
    assert!(c.get_stale(&key(1), now + 330_000).is_none());
}

#[test]
fn stale_never_outlives_exp() {
    let p = policy();
    let mut c = LocalCache::new(10);
    let now = 0;
    c.insert(
        key(1),
        grant(&["mcp:*"], Some(40_000)),
        p.active(30, Some(40_000), now),
        now,
    );
    assert!(c.get_stale(&key(1), 39_999).is_some());
    assert!(c.get_stale(&key(1), 40_000).is_none());
}

#[test]
fn a_held_stale_decision_is_fresh_for_the_hold_then_stale_again() {
    let p = policy();
    let mut c = LocalCache::new(10);
    c.insert(key(1), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
    // Failed callout at 31 s: reuse for one more second, no callout.
    c.hold_stale(&key(1), 31_000, 1_000);
    assert!(c.get(&key(1), 31_999).is_some());
    assert!(c.get(&key(1), 32_000).is_none());
    // The stale window itself is unchanged.
    assert!(c.get_stale(&key(1), 329_999).is_some());
    assert!(c.get_stale(&key(1), 330_000).is_none());
    // A hold never reaches past the stale window.
    c.hold_stale(&key(1), 329_500, 1_000);
    assert!(c.get(&key(1), 329_999).is_some());
    assert!(c.get(&key(1), 330_000).is_none());
}

#[test]
fn negative_and_missing_decisions_are_never_held() {
    let p = policy();
    let mut c = LocalCache::new(10);
    c.insert(
        key(2),
        Decision::Inactive(Reason::Revoked),
        p.inactive(0),
        0,
    );
    c.hold_stale(&key(2), 6_000, 1_000);
    assert!(c.get(&key(2), 6_500).is_none());
    c.hold_stale(&key(3), 0, 1_000);
    assert!(c.is_empty() || c.get(&key(3), 1).is_none());
}

#[test]
fn negative_entries_use_negative_ttl_and_are_never_stale() {
    let p = policy();
    let mut c = LocalCache::new(10);
    c.insert(
        key(2),
        Decision::Inactive(Reason::Revoked),
        p.inactive(0),
        0,
    );
    assert_eq!(
        c.get(&key(2), 4_999),
        Some(&Decision::Inactive(Reason::Revoked))
    );
    assert!(c.get(&key(2), 5_000).is_none());
    assert!(c.get_stale(&key(2), 1).is_none());
}

#[test]
fn zero_negative_ttl_caches_nothing() {
    let p = Policy::new(&config::Cache {
        negative_ttl_s: 0,
        ..config::Cache::default()
    });
    let mut c = LocalCache::new(10);
    c.insert(
        key(2),
        Decision::Inactive(Reason::Unknown),
        p.inactive(7),
        7,
    );
    assert!(c.is_empty());
}

#[test]
fn bound_evicts_stale_entries_before_fresh_ones() {
    let p = policy();
    let mut c = LocalCache::new(3);
    c.insert(key(1), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
    c.insert(
        key(2),
        Decision::Inactive(Reason::Unknown),
        p.inactive(0),
        0,
    );
    c.insert(key(3), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
    // At 6 s the negative entry (key 2) is expired: it goes, not the oldest.
    c.insert(
        key(4),
        grant(&["mcp:*"], None),
        p.active(30, None, 6_000),
        6_000,
    );
    assert_eq!(c.len(), 3);
    assert!(c.get(&key(1), 6_000).is_some());
    assert!(c.deadlines(&key(2)).is_none());
    assert!(c.get(&key(3), 6_000).is_some());
    assert!(c.get(&key(4), 6_000).is_some());
}

#[test]
fn bound_evicts_the_oldest_when_all_are_fresh() {
    let p = policy();
    let mut c = LocalCache::new(3);
    for n in 1..=3u8 {
        // Later inserts expire sooner: age, not expiry, must decide.
        let d = p.active(30 - u64::from(n), None, u64::from(n));
        c.insert(key(n), grant(&["mcp:*"], None), d, u64::from(n));
    }
    c.insert(key(4), grant(&["mcp:*"], None), p.active(30, None, 10), 10);
    assert_eq!(c.len(), 3);
    assert!(c.deadlines(&key(1)).is_none(), "oldest evicted");
    for n in 2..=4u8 {
        assert!(c.get(&key(n), 10).is_some(), "{n}");
    }
}

#[test]
fn a_flood_of_negative_answers_never_evicts_fresh_active_decisions() {
    let p = policy();
    let mut c = LocalCache::new(100);
    for n in 0..90u8 {
        let e = c.insert(key(n), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
        assert_eq!(e, None);
    }
    // 10,000 made-up tokens, each answered "unknown", within the TTL.
    let mut evicted = Vec::new();
    for i in 0..10_000u64 {
        let mut k = [0xAAu8; 32];
        k[..8].copy_from_slice(&i.to_le_bytes());
        let now = 1 + i;
        if let Some(e) = c.insert(k, Decision::Inactive(Reason::Unknown), p.inactive(now), now) {
            evicted.push(e);
        }
        assert!(c.len() <= 100);
    }
    assert!(!evicted.contains(&Evicted::Active), "{evicted:?}");
    assert!(evicted.contains(&Evicted::Inactive));
    for n in 0..90u8 {
        assert!(c.get(&key(n), 10_001).is_some(), "{n}");
    }
    // Only when nothing else is left does an active decision go.
    let mut full = LocalCache::new(2);
    full.insert(key(1), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
    full.insert(key(2), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
    let e = full.insert(
        key(3),
        Decision::Inactive(Reason::Unknown),
        p.inactive(1),
        1,
    );
    assert_eq!(e, Some(Evicted::Active));
    assert!(full.get(&key(1), 1).is_none(), "the oldest");
}

#[test]
fn reinserting_a_key_replaces_it_without_growing() {
    let p = policy();
    let mut c = LocalCache::new(2);
    c.insert(key(1), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
    c.insert(
        key(1),
        Decision::Inactive(Reason::Revoked),
        p.inactive(1),
        1,
    );
    c.insert(key(2), grant(&["mcp:*"], None), p.active(30, None, 1), 1);
    assert_eq!(c.len(), 2);
    assert_eq!(
        c.get(&key(1), 2),
        Some(&Decision::Inactive(Reason::Revoked))
    );
    // Indexes stayed consistent: filling further evicts exactly one.
    c.insert(key(3), grant(&["mcp:*"], None), p.active(30, None, 2), 2);
    assert_eq!(c.len(), 2);
}

#[test]
fn remove_evicts_fresh_and_stale_use() {
    let p = policy();
    let mut c = LocalCache::new(10);
    c.insert(key(1), grant(&["mcp:*"], None), p.active(30, None, 0), 0);
    assert!(c.remove(&key(1)));
    assert!(!c.remove(&key(1)));
    assert!(c.get(&key(1), 1).is_none());
    assert!(c.get_stale(&key(1), 31_000).is_none());
}

#[test]
fn bound_holds_under_many_inserts() {
    let p = policy();
    let mut c = LocalCache::new(50);
    for i in 0..1000u64 {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&i.to_le_bytes());
        let d = if i % 3 == 0 {
            p.inactive(i)
        } else {
            p.active(30, None, i)
        };
        c.insert(k, Decision::Inactive(Reason::Unknown), d, i * 100);
        assert!(c.len() <= 50);
    }
    assert_eq!(c.len(), c.by_age.len());
    assert_eq!(c.len(), c.by_fresh.len());
    assert!(c.inactive_by_age.len() <= c.len());
}

#[test]
fn recently_revoked_is_bounded_fifo() {
    let mut r = RecentlyRevoked::new(2);
    r.insert(key(1));
    r.insert(key(2));
    r.insert(key(2));
    assert!(r.contains(&key(1)));
    r.insert(key(3));
    assert!(!r.contains(&key(1)));
    assert!(r.contains(&key(2)) && r.contains(&key(3)));
}

#[test]
fn reasons_round_trip() {
    for r in [
        Reason::Unknown,
        Reason::Revoked,
        Reason::Expired,
        Reason::Malformed,
    ] {
        assert_eq!(Reason::parse(r.as_str()), Some(r));
    }
    assert_eq!(Reason::parse("disabled"), None);
}
