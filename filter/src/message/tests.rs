use super::oracle::READERS;
use super::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;

fn refused(body: &str) -> String {
    match read(body.as_bytes()) {
        Err(Refusal::Invalid { detail, .. }) => detail,
        other => panic!("{body}: {other:?}"),
    }
}

fn one(body: &str) -> Message {
    match read(body.as_bytes()) {
        Ok(Reading::Single(m)) => m,
        other => panic!("{body}: {other:?}"),
    }
}

#[test]
fn plain_messages_read_as_themselves() {
    let m = one(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{"NAME":1,"name":2}}}"#,
    );
    assert_eq!(m.method(), Some("tools/call"));
    assert_eq!(m.name(), Some("whoami"));
    assert_eq!(m.id, json!(7));
    let m =
        one(r#"{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///a"}}"#);
    assert_eq!((m.name(), &m.id), (Some("file:///a"), &json!("a")));
    let m = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(
        (m.method(), &m.id),
        (Some("notifications/initialized"), &Value::Null)
    );
    let m = one(r#"{"jsonrpc":"2.0","id":1,"result":{"Method":"x","method":"y"}}"#);
    assert_eq!(m.kind, Kind::Response);
    let m = one(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#);
    assert_eq!(m.kind, Kind::Response);
    // Names only where a method is name-scoped.
    let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}"#);
    assert_eq!(m.name(), None);
    // Escapes are decoded before keys are compared: this is "method".
    let m = one(r#"{"jsonrpc":"2.0","id":1,"me\u0074hod":"ping"}"#);
    assert_eq!(m.method(), Some("ping"));
}

#[test]
fn the_review_findings_are_refused() {
    // Read as a response by an exact parser, as tools/call by Go.
    let d = refused(
        r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"list_findings"}}"#,
    );
    assert!(d.contains("\"Method\"") && d.contains("\"method\""), "{d}");
    // Go takes the last case-insensitive match for the name.
    let d = refused(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","NAME":"list_findings"}}"#,
    );
    assert!(d.contains("\"NAME\"") && d.contains("params"), "{d}");
    // A trailing NUL some Go libraries drop.
    let d =
        refused(r#"{"jsonrpc":"2.0","id":1,"method\u0000":"tools/call","params":{"name":"x"}}"#);
    assert!(d.contains("method"), "{d}");
    // Neither a request nor a response.
    let d = refused(r#"{"jsonrpc":"2.0","id":1}"#);
    assert!(d.contains("neither a request"), "{d}");
}

#[test]
fn unicode_folding_and_invisible_characters_are_refused() {
    for key in [
        "jsonrpc\u{200B}", // zero-width space
        "re\u{017F}ult",   // long s folds to s
        "\u{FEFF}method",  // byte order mark
        "ID",
        "Params",
        "ERROR",
        "m\u{0000}ethod",
        "method\u{007F}",
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", key: 1}).to_string();
        assert!(
            matches!(read(body.as_bytes()), Err(Refusal::Invalid { .. })),
            "{key:?}"
        );
    }
    for key in ["Name", "na\u{00AD}me", "UR\u{0130}", "ur\u{0131}"] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "a", key: "b"}})
        .to_string();
        let verdict = read(body.as_bytes());
        // `İ`/`ı` fold to no ASCII letter under simple folding: harmless.
        let harmless = key.contains('\u{0130}') || key.contains('\u{0131}');
        assert_eq!(verdict.is_ok(), harmless, "{key:?}: {verdict:?}");
    }
    // The Kelvin sign reads as `k`; no reserved key has a k, so only check
    // the fold itself.
    assert_eq!(reads_as("\u{212A}"), None);
    assert_eq!(reads_as("jsonrpc"), Some("jsonrpc"));
    assert_eq!(reads_as("JSONRPC"), Some("jsonrpc"));
    assert_eq!(reads_as("arguments"), None);
}

#[test]
fn duplicates_on_the_decision_paths_are_refused_elsewhere_ignored() {
    let d = refused(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#);
    assert!(d.contains("twice"), "{d}");
    let d = refused(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
    );
    assert!(d.contains("twice"), "{d}");
    let d = refused(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"cursor":1,"cursor":2}}"#);
    assert!(d.contains("twice"), "{d}");
    // Below params nothing is decided: arguments are the tool's business.
    one(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"q":1,"q":2}}}"#,
    );
}

#[test]
fn shapes_that_are_not_json_rpc_are_refused() {
    for (body, hint) in [
        (r#"{"id":1,"method":"ping"}"#, "jsonrpc"),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, "jsonrpc"),
        (r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#, "jsonrpc"),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, "id"),
        (r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, "id"),
        (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, "method"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
            "params",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            "result",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            "neither",
        ),
        (r#"{"jsonrpc":"2.0","result":{}}"#, "neither"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            "params.name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":null}}"#,
            "params.uri",
        ),
        ("[]", "empty batch"),
        (
            r#"[{"jsonrpc":"2.0","method":"ping","id":1}, 42]"#,
            "element 1",
        ),
        ("42", "object or an array"),
        ("null", "object or an array"),
    ] {
        let d = refused(body);
        assert!(d.contains(hint), "{body}: {d}");
    }
    for body in ["", "{", "nul", "\u{FEFF}{}", r#"{"a":"\ud800"}"#] {
        assert!(
            matches!(read(body.as_bytes()), Err(Refusal::Parse(_))),
            "{body:?}"
        );
    }
}

#[test]
fn bodies_that_are_not_utf8_are_refused_even_in_skipped_values() {
    // Found by the `jsonrpc` fuzz target: invalid bytes inside `arguments`,
    // which the filter skips without building, were let through.
    let head = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":""#;
    let mut body = head.to_vec();
    body.extend_from_slice(b"\xff\xff");
    body.extend_from_slice(br#"x"}}}"#);
    match read(&body) {
        Err(Refusal::Parse(d)) => {
            assert!(
                d.contains(&format!(
                    "not UTF-8 (invalid byte at offset {})",
                    head.len()
                )),
                "{d}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A lone lead byte that a lax decoder would join with the closing quote.
    let body = b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\
                 \"params\":{\"name\":\"a\",\"arguments\":\"\xf0\"}}]";
    assert!(matches!(read(body), Err(Refusal::Parse(_))));
    // The same characters in UTF-8 read as before.
    let ok = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\
              \"params\":{\"name\":\"search_docs\",\"arguments\":{\"q\":\"\u{ff}\u{f0}x\"}}}";
    assert_eq!(one(ok).name(), Some("search_docs"));
}

#[test]
fn refusals_carry_the_messages_id_when_it_is_usable() {
    let e = read(br#"{"jsonrpc":"2.0","id":"r1","Method":"x","method":"y"}"#).unwrap_err();
    assert!(matches!(e, Refusal::Invalid { id, .. } if id == json!("r1")));
    let e = read(br#"{"jsonrpc":"2.0","id":[1],"method":"y"}"#).unwrap_err();
    assert!(matches!(e, Refusal::Invalid { id, .. } if id.is_null()));
}

#[test]
fn batches_read_element_by_element() {
    let body = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a"}},
        {"jsonrpc": "2.0", "id": 2, "result": {}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
    ])
    .to_string();
    let Ok(Reading::Batch(items)) = read(body.as_bytes()) else {
        panic!("a batch")
    };
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].name(), Some("a"));
    assert_eq!(items[1].kind, Kind::Response);
}

// ---- the differential: whatever is accepted, every reader reads alike ----

/// Keys a message may carry, plain and in the forms lenient readers confuse.
const TOP_KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "result",
    "error",
    "Method",
    "METHOD",
    "method\u{0}",
    "me\u{200D}thod",
    "re\u{017F}ult",
    "Params",
    "Id",
    "name",
    "extra",
];
const PARAM_KEYS: &[&str] = &[
    "name",
    "uri",
    "arguments",
    "NAME",
    "Name",
    "name\u{0}",
    "n\u{0}ame",
    "Uri",
    "cursor",
    "_meta",
];
const METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "prompts/get",
    "resources/read",
    "initialize",
    "ping",
];
const NAMES: &[&str] = &["whoami", "list_findings", "file:///srv/a"];

/// A member's value text for `key`.
fn value_for(key: &str, pick: usize) -> String {
    let lower: String = key
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_lowercase();
    match lower.as_str() {
        "jsonrpc" => "\"2.0\"".into(),
        "id" => ["1", "\"x\"", "null"][pick % 3].into(),
        "method" => json!(METHODS[pick % METHODS.len()]).to_string(),
        "result" | "error" => "{}".into(),
        "name" | "uri" => json!(NAMES[pick % NAMES.len()]).to_string(),
        _ => ["1", "{}", "[]", "\"v\""][pick % 4].into(),
    }
}

fn object(members: &[(String, String)]) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

prop_compose! {
    /// A well-formed request or response, plus members drawn from the
    /// confusable pool, shuffled.
    fn message_text()(
        request in any::<bool>(),
        picks in prop::collection::vec(0usize..64, 4),
        extra in prop::collection::vec((0..TOP_KEYS.len(), 0usize..64), 0..3),
        params in prop::collection::vec((0..PARAM_KEYS.len(), 0usize..64), 0..4),
        order in any::<u64>(),
    ) -> String {
        let mut param_members: Vec<(String, String)> = vec![
            ("name".into(), value_for("name", picks[0])),
        ];
        param_members.extend(params.iter()
            .map(|&(k, p)| (PARAM_KEYS[k].to_string(), value_for(PARAM_KEYS[k], p))));
        let params_text = object(&param_members);
        let mut members: Vec<(String, String)> = vec![
            ("jsonrpc".into(), value_for("jsonrpc", 0)),
            ("id".into(), value_for("id", picks[1])),
        ];
        if request {
            members.push(("method".into(), value_for("method", picks[2])));
            members.push(("params".into(), params_text.clone()));
        } else {
            members.push(("result".into(), "{}".into()));
        }
        members.extend(extra.iter().map(|&(k, p)| {
            let key = TOP_KEYS[k];
            let value = if key.eq_ignore_ascii_case("params") { params_text.clone() } else { value_for(key, p) };
            (key.to_string(), value)
        }));
        // A cheap deterministic shuffle: key order matters to first/last-wins.
        let n = members.len();
        for i in (1..n).rev() {
            let j = usize::try_from((order >> (i % 60)) % (i as u64 + 1)).unwrap();
            members.swap(i, j);
        }
        object(&members)
    }
}

fn body_text() -> impl Strategy<Value = String> {
    prop_oneof![
        message_text(),
        prop::collection::vec(message_text(), 1..4).prop_map(|ms| format!("[{}]", ms.join(","))),
    ]
}

/// The filter's reading and every oracle's agree on method and name.
fn agrees(body: &str) -> Result<bool, String> {
    let Ok(reading) = read(body.as_bytes()) else {
        return Ok(false);
    };
    for reader in READERS {
        let theirs = reader
            .read(body.as_bytes())
            .ok_or("oracle could not parse")?;
        let ours: Vec<_> = reading
            .messages()
            .iter()
            .map(|m| (m.method().map(str::to_owned), m.name().map(str::to_owned)))
            .collect();
        let theirs: Vec<_> = theirs.into_iter().map(|r| (r.method, r.name)).collect();
        if ours != theirs {
            return Err(format!(
                "{reader:?} reads {theirs:?}, the filter {ours:?}: {body}"
            ));
        }
    }
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn what_the_filter_accepts_every_reader_reads_alike(body in body_text()) {
        if let Err(e) = agrees(&body) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn the_differential_generator_exercises_both_outcomes() {
    let mut runner = TestRunner::deterministic();
    let strategy = body_text();
    let (mut accepted, mut refused, mut disagreeing_if_unchecked) = (0, 0, 0);
    for _ in 0..4000 {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        match agrees(&body) {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        // Would the readers disagree on this body at all? (the cases the
        // filter must be refusing)
        let reads: Vec<_> = READERS.iter().map(|r| r.read(body.as_bytes())).collect();
        if reads.windows(2).any(|w| w[0] != w[1]) {
            disagreeing_if_unchecked += 1;
            assert!(
                read(body.as_bytes()).is_err(),
                "readers disagree yet accepted: {body}"
            );
        }
    }
    assert!(accepted > 200, "accepted {accepted}");
    assert!(refused > 200, "refused {refused}");
    assert!(disagreeing_if_unchecked > 100, "{disagreeing_if_unchecked}");
}

proptest! {
    /// The printable-ASCII shortcut of `reads_as_one_of` decides as folding
    /// character by character would.
    #[test]
    fn ascii_keys_read_as_folding_says(key in "[ -~]{0,12}", pick in 0usize..6) {
        let sets: [&[&'static str]; 3] = [
            &["method", "params", "id"],
            &["name", "uri", "uriTemplate"],
            &["jsonrpc", "result", "error"],
        ];
        let set = sets[pick % 3];
        // Half the time a reserved key with its case changed.
        let key = if pick >= 3 {
            set[key.len() % set.len()].to_ascii_uppercase()
        } else {
            key
        };
        let exact = set.iter().find(|r| **r == key).copied();
        prop_assert_eq!(
            reads_as_one_of(&key, set),
            exact.or_else(|| folds_to_one_of(&key, set))
        );
    }
}
