use super::*;
use serde_json::json;

fn active() -> ActiveToken {
    ActiveToken {
        token_id: "tok_01HZX".into(),
        name: "laptop".into(),
        tenant: "acme".into(),
        project: "default".into(),
        scopes: vec!["mcp:tools/call:list_*".into(), "mcp:tools/list".into()],
        exp: Some(1_800_000_000),
        iat: 1_600_000_000,
        cache_ttl_s: 60,
        rate_limit: None,
    }
}

fn read(v: &Value) -> Result<Introspection, WireError> {
    Introspection::from_json(v.to_string().as_bytes())
}

#[test]
fn paths_live_under_the_token_collection() {
    for p in [INTROSPECT_PATH, REVOCATIONS_PATH] {
        assert!(p.starts_with(TOKENS_PATH) && p[TOKENS_PATH.len()..].starts_with('/'));
    }
}

#[test]
fn introspection_is_written_as_the_gateway_reads_it() {
    let a = Introspection::Active(active());
    let v: Value = serde_json::from_str(&a.to_json()).unwrap();
    assert_eq!(
        v,
        json!({
            "active": true, "token_id": "tok_01HZX", "name": "laptop",
            "tenant": "acme", "project": "default",
            "scopes": ["mcp:tools/call:list_*", "mcp:tools/list"],
            "exp": 1_800_000_000u64, "iat": 1_600_000_000u64, "cache_ttl_s": 60,
            "rate_limit": null
        })
    );
    assert_eq!(read(&v), Ok(a));
    let mut never = active();
    never.exp = None;
    let text = Introspection::Active(never.clone()).to_json();
    assert!(text.contains("\"exp\":null"), "{text}");
    assert_eq!(
        Introspection::from_json(text.as_bytes()),
        Ok(Introspection::Active(never))
    );
    for r in [
        InactiveReason::Unknown,
        InactiveReason::Revoked,
        InactiveReason::Expired,
        InactiveReason::Malformed,
    ] {
        let i = Introspection::Inactive(r);
        let v: Value = serde_json::from_str(&i.to_json()).unwrap();
        assert_eq!(v, json!({"active": false, "reason": r.as_str()}));
        assert_eq!(read(&v), Ok(i));
        assert_eq!(InactiveReason::parse(r.as_str()), Some(r));
    }
}

#[test]
fn the_rate_limit_is_optional_and_strict() {
    let mut limited = active();
    limited.rate_limit = Some(RateLimit {
        requests: 60,
        window_s: 60,
        burst: 10,
    });
    let v: Value = serde_json::from_str(&Introspection::Active(limited.clone()).to_json()).unwrap();
    assert_eq!(
        v["rate_limit"],
        json!({"requests": 60, "window_s": 60, "burst": 10})
    );
    assert_eq!(read(&v), Ok(Introspection::Active(limited.clone())));
    assert!(limited.validate().is_ok());
    // A token API from before rate limits: no field at all.
    let mut older = v.clone();
    older.as_object_mut().unwrap().remove("rate_limit");
    assert_eq!(read(&older), Ok(Introspection::Active(active())));
    // Wrong types do not parse; values out of range do not validate.
    for bad in [
        json!("60/m"),
        json!(60),
        json!([60, 60, 10]),
        json!({"requests": -1, "window_s": 60, "burst": 1}),
        json!({"requests": 1.5, "window_s": 60, "burst": 1}),
        json!({"requests": 60, "window_s": 60}),
        json!({"requests": 60, "window_s": 60, "burst": 1, "x": 1}),
        json!({"requests": 4_294_967_296u64, "window_s": 60, "burst": 1}),
    ] {
        let mut v = v.clone();
        v["rate_limit"] = bad;
        let e = read(&v).unwrap_err();
        assert!(e.0.contains("active answer"), "{v}: {e}");
    }
    for (requests, window_s, burst) in [(0, 60, 0), (60, 0, 1), (60, 60, 0), (60, 60, 61)] {
        let mut t = active();
        t.rate_limit = Some(RateLimit {
            requests,
            window_s,
            burst,
        });
        let e = t.validate().unwrap_err();
        assert!(e.0.contains("rate_limit"), "{e}");
    }
}

#[test]
fn any_inactive_answer_is_inactive() {
    for v in [
        json!({"active": false}),
        json!({"active": false, "reason": "suspended"}),
        json!({"active": false, "reason": 3}),
        json!({"active": false, "reason": null, "token_id": 7}),
    ] {
        assert_eq!(
            read(&v),
            Ok(Introspection::Inactive(InactiveReason::Unknown)),
            "{v}"
        );
    }
}

#[test]
fn an_active_answer_needs_every_field_with_its_type() {
    let base = serde_json::to_value(Introspection::Active(active())).unwrap();
    for field in [
        "token_id",
        "name",
        "tenant",
        "project",
        "scopes",
        "exp",
        "iat",
        "cache_ttl_s",
    ] {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(field);
        let e = read(&v).unwrap_err();
        assert!(e.0.contains(field), "{field}: {e}");
    }
    for (field, bad) in [
        ("scopes", json!("mcp:*")),
        ("scopes", json!([1])),
        ("exp", json!("2030-01-01T00:00:00Z")),
        ("exp", json!(-5)),
        ("iat", json!(null)),
        ("cache_ttl_s", json!(-1)),
        ("cache_ttl_s", json!("60")),
        ("tenant", json!(7)),
    ] {
        let mut v = base.clone();
        v[field] = bad;
        assert!(read(&v).is_err(), "accepted {v}");
    }
    for v in [
        json!({"active": "true"}),
        json!({"token_id": "x"}),
        json!([base]),
        json!("active"),
    ] {
        assert!(read(&v).is_err(), "accepted {v}");
    }
    assert!(Introspection::from_json(b"{").is_err());
    // Fields a newer API adds are ignored.
    let mut v = base.clone();
    v["created_by"] = json!("admin");
    assert_eq!(read(&v), Ok(Introspection::Active(active())));
}

#[test]
fn validation_checks_what_becomes_a_header_or_a_scope() {
    assert_eq!(active().validate().unwrap().len(), 2);
    let cases: Vec<fn(&mut ActiveToken)> = vec![
        |t| t.tenant = "Acme".into(),
        |t| t.tenant = "_reserved".into(),
        |t| t.project = String::new(),
        |t| t.project = "x".repeat(64),
        |t| t.token_id = "tok 1".into(),
        |t| t.token_id = String::new(),
        |t| t.name = "line\r\nbreak".into(),
        |t| t.name = "x".repeat(65),
        |t| t.name = String::new(),
        |t| t.scopes = vec!["bogus".into()],
    ];
    for (i, break_it) in cases.into_iter().enumerate() {
        let mut t = active();
        break_it(&mut t);
        assert!(t.validate().is_err(), "case {i}: {t:?}");
    }
    let mut t = active();
    t.name = "ümlaut ok".into();
    t.project = "a".repeat(63);
    assert!(t.validate().is_ok());
}

#[test]
fn feed_pages_round_trip_and_reset_defaults_to_false() {
    let page = FeedPage {
        cursor: "00ff.42".into(),
        revoked: vec!["ab".repeat(32)],
        changed: vec!["cd".repeat(32)],
        more: true,
        reset: false,
    };
    let v: Value = serde_json::from_str(&page.to_json()).unwrap();
    assert_eq!(
        v,
        json!({"cursor": "00ff.42", "revoked": ["ab".repeat(32)], "changed": ["cd".repeat(32)],
               "more": true, "reset": false})
    );
    assert_eq!(FeedPage::from_json(page.to_json().as_bytes()), Ok(page));
    let older = json!({"cursor": "7", "revoked": [], "more": false}).to_string();
    let older = FeedPage::from_json(older.as_bytes()).unwrap();
    assert!(!older.reset);
    assert!(older.changed.is_empty());
    for bad in [
        json!({"revoked": [], "more": false}),
        json!({"cursor": 1, "revoked": [], "more": false}),
        json!({"cursor": "c", "more": false}),
        json!({"cursor": "c", "revoked": "x", "more": false}),
        json!({"cursor": "c", "revoked": [1], "more": false}),
        json!({"cursor": "c", "revoked": []}),
        json!({"cursor": "c", "revoked": [], "more": "no"}),
        json!({"cursor": "c", "revoked": [], "changed": "x", "more": false}),
        json!({"cursor": "c", "revoked": [], "changed": [1], "more": false}),
        json!({"cursor": "x".repeat(MAX_CURSOR_LEN + 1), "revoked": [], "more": false}),
        // Found by the `introspection` fuzz target: a reader would go on from
        // `since=now`, past revocations it never read.
        json!({"cursor": "", "revoked": [], "more": false}),
        json!([]),
    ] {
        assert!(
            FeedPage::from_json(bad.to_string().as_bytes()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn cursors_carry_the_epoch() {
    let c = FeedCursor {
        epoch: "9f86d081884c7d65".into(),
        seq: 17,
    };
    assert_eq!(c.to_string(), "9f86d081884c7d65.17");
    assert_eq!(FeedCursor::parse(&c.to_string()), Some(c));
    for bad in [
        "",
        "17",
        ".17",
        "abc.",
        "ABC.1",
        "xyz.1",
        "abc.01",
        "abc.-1",
        "abc.1.2",
        "abc.99999999999999999999",
        "abc.9223372036854775808",
    ] {
        assert_eq!(FeedCursor::parse(bad), None, "{bad:?}");
    }
    assert!(FeedCursor::parse("abc.9223372036854775807").is_some());
}

#[test]
fn since_reads_now_cursors_and_legacy_numbers() {
    assert_eq!(Since::parse(None), Ok(Since::Beginning));
    assert_eq!(Since::parse(Some("now")), Ok(Since::Now));
    assert_eq!(
        Since::parse(Some("0a.3")),
        Ok(Since::After(FeedCursor {
            epoch: "0a".into(),
            seq: 3
        }))
    );
    assert_eq!(Since::parse(Some("42")), Ok(Since::Legacy(42)));
    assert_eq!(Since::parse(Some("0")), Ok(Since::Legacy(0)));
    for bad in [
        "",
        "-1",
        "+1",
        "01",
        "1.0.0",
        "abc",
        "NOW",
        "99999999999999999999",
    ] {
        let e = Since::parse(Some(bad)).unwrap_err();
        assert!(e.0.contains("\"now\""), "{bad:?}: {e}");
    }
}

#[test]
fn feed_paths_encode_the_cursor() {
    assert_eq!(feed_path("now"), "/api/v1/mcptokens/revocations?since=now");
    assert_eq!(
        feed_path("0a.3"),
        "/api/v1/mcptokens/revocations?since=0a.3"
    );
    assert_eq!(
        feed_path("c 2/+&é"),
        "/api/v1/mcptokens/revocations?since=c%202%2F%2B%26%C3%A9"
    );
}
