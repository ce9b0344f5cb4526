use super::*;
use serde_json::json;

fn scopes(list: &[&str]) -> Vec<Scope> {
    scopes::parse_all(list).unwrap()
}

fn check(body: &Value, granted: &[&str]) -> Verdict {
    let s = scopes(granted);
    inspect(body.to_string().as_bytes(), Claimed::default(), Some(&s))
}

fn call(id: i64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
}

#[test]
fn single_request_within_scope_is_allowed() {
    assert_eq!(
        check(&call(1, "list_files"), &["mcp:tools/call:list_*"]),
        Verdict::Allow
    );
    assert_eq!(
        check(&call(1, "anything"), &["mcp:tools/call"]),
        Verdict::Allow
    );
    assert_eq!(check(&call(1, "anything"), &["mcp:*"]), Verdict::Allow);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(check(&list, &["mcp:tools/*"]), Verdict::Allow);
}

#[test]
fn single_request_outside_scope_is_denied_with_its_id() {
    assert_eq!(
        check(&call(7, "delete_all"), &["mcp:tools/call:list_*"]),
        Verdict::Deny {
            required: "mcp:tools/call:delete_all".into(),
            id: json!(7)
        }
    );
    let list = json!({"jsonrpc": "2.0", "id": "abc", "method": "tools/list"});
    assert_eq!(
        check(&list, &["mcp:tools/call"]),
        Verdict::Deny {
            required: "mcp:tools/list".into(),
            id: json!("abc")
        }
    );
}

#[test]
fn names_come_from_the_right_param() {
    let read = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                      "params": {"uri": "file:///docs/a.md"}});
    assert_eq!(
        check(&read, &["mcp:resources/read:file:///docs/*"]),
        Verdict::Allow
    );
    assert!(matches!(
        check(&read, &["mcp:resources/read:file:///etc/*"]),
        Verdict::Deny { .. }
    ));
    let prompt = json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/get",
                        "params": {"name": "summary"}});
    assert_eq!(check(&prompt, &["mcp:prompts/get:sum*"]), Verdict::Allow);
}

#[test]
fn a_call_without_a_name_needs_the_method_wide_scope() {
    let nameless = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}});
    assert_eq!(
        check(&nameless, &["mcp:tools/call:*"]),
        Verdict::Deny {
            required: "mcp:tools/call".into(),
            id: json!(1)
        }
    );
    // A name that is not a string is read differently by different servers.
    let numeric = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": 5}});
    assert!(matches!(
        check(&numeric, &["mcp:tools/call:*"]),
        Verdict::InvalidRequest { .. }
    ));
}

#[test]
fn lifecycle_responses_and_notifications_need_no_scope() {
    let none: &[&str] = &[];
    for body in [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
        json!({"jsonrpc": "2.0", "id": 3, "error": {"code": 1, "message": "x"}}),
    ] {
        assert_eq!(check(&body, none), Verdict::Allow, "{body}");
    }
}

#[test]
fn id_less_requests_are_still_checked() {
    let sneaky = json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x"}});
    assert_eq!(
        check(&sneaky, &["mcp:tools/list"]),
        Verdict::Deny {
            required: "mcp:tools/call:x".into(),
            id: Value::Null
        }
    );
}

#[test]
fn batch_is_denied_on_the_first_denied_request() {
    let batch = json!([
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        call(1, "list_a"),
        call(2, "rm_b"),
        call(3, "rm_c"),
    ]);
    assert_eq!(
        check(&batch, &["mcp:tools/call:list_*"]),
        Verdict::Deny {
            required: "mcp:tools/call:rm_b".into(),
            id: json!(2)
        }
    );
    let fine = json!([call(1, "list_a"), {"jsonrpc": "2.0", "id": 9, "result": {}}]);
    assert_eq!(check(&fine, &["mcp:tools/call:list_*"]), Verdict::Allow);
}

#[test]
fn invalid_json_and_shapes_are_refused() {
    let s = scopes(&["mcp:*"]);
    for body in [&b""[..], b"{", b"nul", b"\xff"] {
        assert!(matches!(
            inspect(body, Claimed::default(), Some(&s)),
            Verdict::ParseError { .. }
        ));
    }
    for body in [&b"42"[..], b"\"x\"", b"null", b"true"] {
        assert!(matches!(
            inspect(body, Claimed::default(), Some(&s)),
            Verdict::InvalidRequest { .. }
        ));
    }
    let bad_method = json!({"jsonrpc": "2.0", "id": 4, "method": 12});
    assert_eq!(
        check(&bad_method, &["mcp:*"]),
        Verdict::InvalidRequest {
            detail: "\"method\" must be a string".into(),
            id: json!(4)
        }
    );
}

#[test]
fn odd_ids_are_refused_and_answered_with_null() {
    let obj_id = json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "tools/list"});
    assert!(matches!(
        check(&obj_id, &[]),
        Verdict::InvalidRequest {
            id: Value::Null,
            ..
        }
    ));
}

#[test]
fn what_servers_read_differently_is_refused_before_any_scope_check() {
    // Found through real Envoy: each of these reached the backend.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"list_findings"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","NAME":"list_findings"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method\u0000":"tools/call","params":{"name":"list_findings"}}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        "[]",
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}},42]"#,
    ] {
        let all = scopes(&["mcp:*"]);
        for granted in [Some(&all[..]), None] {
            assert!(
                matches!(
                    inspect(body.as_bytes(), Claimed::default(), granted),
                    Verdict::InvalidRequest { .. }
                ),
                "{body}"
            );
        }
    }
}

#[test]
fn headers_matching_the_body_pass() {
    let body = call(1, "list_a").to_string();
    let claimed = Claimed {
        method: Some(b"tools/call"),
        name: Some(b"list_a"),
    };
    assert_eq!(inspect(body.as_bytes(), claimed, None), Verdict::Allow);
    let only_method = Claimed {
        method: Some(b"tools/call"),
        name: None,
    };
    assert_eq!(inspect(body.as_bytes(), only_method, None), Verdict::Allow);
}

#[test]
fn base64_wrapped_header_values_are_decoded_before_comparing() {
    // `printf %s 'résumé' | base64` → csOpc3Vtw6k=
    let body = call(1, "résumé").to_string();
    let claimed = Claimed {
        method: Some(b"tools/call"),
        name: Some(b"=?base64?csOpc3Vtw6k=?="),
    };
    assert_eq!(inspect(body.as_bytes(), claimed, None), Verdict::Allow);
    for lie in [
        &b"=?base64?bGlzdF9h?="[..],
        b"=?base64?not base64?=",
        b"=?base64?csOpc3Vtw6k=",
    ] {
        let claimed = Claimed {
            method: Some(b"tools/call"),
            name: Some(lie),
        };
        assert!(
            matches!(
                inspect(body.as_bytes(), claimed, None),
                Verdict::Mismatch { .. }
            ),
            "{}",
            String::from_utf8_lossy(lie)
        );
    }
    assert!(header_matches(b"tools/list", "tools/list"));
    assert!(header_matches(b"=?base64?dG9vbHMvbGlzdA==?=", "tools/list"));
}

#[test]
fn lying_headers_are_refused_even_without_scope_checks() {
    let body = call(5, "rm_all").to_string();
    let lies = [
        Claimed {
            method: Some(b"tools/list"),
            name: None,
        },
        Claimed {
            method: Some(b"tools/call"),
            name: Some(b"list_a"),
        },
        Claimed {
            method: None,
            name: Some(b"list_a"),
        },
        Claimed {
            method: Some(b"TOOLS/CALL"),
            name: None,
        },
    ];
    for claimed in lies {
        match inspect(body.as_bytes(), claimed, None) {
            Verdict::Mismatch { id, detail } => {
                assert_eq!(id, json!(5));
                assert!(detail.contains("Mcp-"), "{detail}");
            }
            other => panic!("{claimed:?}: {other:?}"),
        }
    }
    // A name header for a method that has no name.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let claimed = Claimed {
        method: Some(b"tools/list"),
        name: Some(b"x"),
    };
    assert!(matches!(
        inspect(list.as_bytes(), claimed, None),
        Verdict::Mismatch { .. }
    ));
    // Headers with a body holding only a response.
    let resp = json!({"jsonrpc": "2.0", "id": 1, "result": {}}).to_string();
    let claimed = Claimed {
        method: Some(b"tools/list"),
        name: None,
    };
    assert!(matches!(
        inspect(resp.as_bytes(), claimed, None),
        Verdict::Mismatch { .. }
    ));
}

#[test]
fn headers_must_match_every_request_of_a_batch() {
    let batch = json!([call(1, "list_a"), call(2, "rm_b")]).to_string();
    let claimed = Claimed {
        method: Some(b"tools/call"),
        name: Some(b"list_a"),
    };
    assert!(matches!(
        inspect(batch.as_bytes(), claimed, None),
        Verdict::Mismatch { .. }
    ));
}

#[test]
fn mismatch_wins_over_a_scope_denial() {
    let body = call(1, "rm").to_string();
    let s = scopes(&["mcp:tools/list"]);
    let claimed = Claimed {
        method: Some(b"tools/list"),
        name: None,
    };
    assert!(matches!(
        inspect(body.as_bytes(), claimed, Some(&s)),
        Verdict::Mismatch { .. }
    ));
}

#[test]
fn a_huge_numeric_id_comes_back_as_the_number_the_client_sent() {
    // Python: float(19999999999999900…048176331) == 1.99999999999999e69 (correctly rounded).
    let body = br#"{"jsonrpc":"2.0","id":1999999999999990000000000000000000000000000000000000000000001048176331,"method":"tools/call","params":{"name":"x"}}"#;
    let scopes = scopes::parse_all(&["mcp:tools/list"]).unwrap();
    match inspect(body, Claimed::default(), Some(&scopes)) {
        Verdict::Deny { id, .. } => assert_eq!(id.as_f64(), Some(1.99999999999999e69), "{id}"),
        other => panic!("{other:?}"),
    }
}
