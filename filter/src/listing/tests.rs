use super::*;
use crate::message;
use proptest::prelude::*;
use serde_json::json;

fn scopes(list: &[&str]) -> Vec<Scope> {
    scopes::parse_all(list).unwrap()
}

fn plan_for(body: &Value, granted: &[&str]) -> Option<Plan> {
    let reading = message::read(body.to_string().as_bytes()).unwrap();
    Plan::for_body(&reading, Visibility::of(&scopes(granted)))
}

fn tools_list(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

fn tool(name: &str) -> Value {
    json!({"name": name, "description": format!("does {name}"), "inputSchema": {"type": "object"}})
}

fn answer(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Rewrites `body` for a token with `granted`, planned from `request`
/// (requests with no list to filter: by shape), through `memo`.
fn rewrite_for(
    request: &Value,
    granted: &[&str],
    body: &str,
    memo: &mut Memo,
) -> (Result<Rewrite, Fault>, Plan, Counts) {
    let mut plan = plan_for(request, granted).unwrap_or_else(Plan::by_shape);
    let mut counts = Counts::default();
    let out = rewrite(
        body.as_bytes(),
        &mut plan,
        &scopes(granted),
        &mut counts,
        memo,
    );
    (out, plan, counts)
}

/// Rewrites `body` for a token with `granted`, planned from `request`; the
/// same answer rewritten again through the memo must come out the same.
/// An outcome with its memo hits not counted: what a fresh read must match.
fn unrecalled(
    (out, plan, mut counts): (Result<Rewrite, Fault>, Plan, Counts),
) -> (Result<Rewrite, Fault>, Plan, Counts) {
    counts.recalled = 0;
    (out, plan, counts)
}

fn run(request: &Value, granted: &[&str], body: &str) -> Result<Rewrite, Fault> {
    assert!(plan_for(request, granted).is_some(), "a plan");
    let mut memo = Memo::default();
    let first = rewrite_for(request, granted, body, &mut memo);
    let again = rewrite_for(request, granted, body, &mut memo);
    let (first, again) = (unrecalled(first), unrecalled(again));
    assert_eq!(first, again, "the memo's rewrite differs from a fresh one");
    first.0
}

fn changed(r: Result<Rewrite, Fault>) -> Value {
    match r {
        Ok(Rewrite::Changed(s)) => serde_json::from_str(&s).unwrap(),
        other => panic!("expected a rewrite, got {other:?}"),
    }
}

fn names(v: &Value, array: &str) -> Vec<String> {
    let key = match array {
        "resources" => "uri",
        "resourceTemplates" => "uriTemplate",
        _ => "name",
    };
    v["result"][array]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[key].as_str().unwrap().to_string())
        .collect()
}

const WHOAMI_ONLY: &[&str] = &["mcp:tools/list", "mcp:tools/call:whoami"];

#[test]
fn visibility_follows_the_calling_scopes() {
    let v = Visibility::of(&scopes(&["mcp:*"]));
    assert!(v.everything());
    let v = Visibility::of(&scopes(&["mcp:tools/list", "mcp:tools/call"]));
    assert!(v.whole(List::Tools) && !v.whole(List::Prompts) && !v.everything());
    let v = Visibility::of(&scopes(&["mcp:tools/*", "mcp:resources/read"]));
    assert!(v.whole(List::Tools) && v.whole(List::Resources) && v.whole(List::Templates));
    let v = Visibility::of(&scopes(WHOAMI_ONLY));
    assert!(List::ALL.iter().all(|l| !v.whole(*l)));
}

#[test]
fn only_list_requests_of_restricted_lists_are_planned() {
    assert!(plan_for(&tools_list(json!(1)), &["mcp:*"]).is_none());
    assert!(plan_for(&tools_list(json!(1)), &["mcp:tools/list", "mcp:tools/call"]).is_none());
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami"}});
    assert!(plan_for(&call, WHOAMI_ONLY).is_none());
    let note = json!({"jsonrpc": "2.0", "method": "tools/list"});
    assert!(
        plan_for(&note, WHOAMI_ONLY).is_none(),
        "a notification gets no answer"
    );
    let plan = plan_for(&json!([call, tools_list(json!("a"))]), WHOAMI_ONLY).unwrap();
    assert_eq!(plan.pending, vec![(json!("a"), List::Tools)]);
    assert_eq!(plan.requests, vec![json!(2), json!("a")]);
    assert!(plan.batch && plan.waiting());
}

#[test]
fn tools_are_kept_by_the_call_rule() {
    let body = answer(
        json!(1),
        json!({"tools": [tool("list_findings"), tool("whoami"), tool("wipe")]}),
    );
    let out = changed(run(&tools_list(json!(1)), WHOAMI_ONLY, &body.to_string()));
    assert_eq!(names(&out, "tools"), ["whoami"]);
    assert_eq!(
        out["result"]["tools"][0],
        tool("whoami"),
        "items are kept whole"
    );
    let globbed = [
        "mcp:tools/list",
        "mcp:tools/call:list_*",
        "mcp:tools/call:w*i",
    ];
    let out = changed(run(&tools_list(json!(1)), &globbed, &body.to_string()));
    assert_eq!(names(&out, "tools"), ["list_findings", "whoami"]);
}

#[test]
fn prompts_resources_and_templates_follow_get_and_read() {
    let granted = [
        "mcp:prompts/list",
        "mcp:resources/list",
        "mcp:resources/templates/list",
        "mcp:prompts/get:summary",
        "mcp:resources/read:file:///srv/public/*",
    ];
    let req = |m: &str| json!({"jsonrpc": "2.0", "id": 9, "method": m});
    let prompts = answer(
        json!(9),
        json!({"prompts": [{"name": "summary"}, {"name": "secret"}]}),
    );
    let out = changed(run(&req("prompts/list"), &granted, &prompts.to_string()));
    assert_eq!(names(&out, "prompts"), ["summary"]);

    let resources = answer(
        json!(9),
        json!({"resources": [
            {"uri": "file:///srv/public/a.md", "name": "a"},
            {"uri": "FILE:///srv/public/%62.md", "name": "b"},
            {"uri": "file:///srv/public/../private/c.md", "name": "c"},
            {"uri": "file:///srv/private/d.md", "name": "d"},
        ]}),
    );
    let out = changed(run(
        &req("resources/list"),
        &granted,
        &resources.to_string(),
    ));
    assert_eq!(
        names(&out, "resources"),
        ["file:///srv/public/a.md", "FILE:///srv/public/%62.md"]
    );

    let templates = answer(
        json!(9),
        json!({"resourceTemplates": [
            {"uriTemplate": "file:///srv/public/{name}", "name": "public"},
            {"uriTemplate": "file:///srv/private/{name}", "name": "private"},
            {"uriTemplate": "file:///{+path}", "name": "any"},
            {"uriTemplate": "file:///srv/{name", "name": "broken"},
        ]}),
    );
    let out = changed(run(
        &req("resources/templates/list"),
        &granted,
        &templates.to_string(),
    ));
    assert_eq!(
        names(&out, "resourceTemplates"),
        ["file:///srv/public/{name}", "file:///{+path}"]
    );
}

#[test]
fn cursor_and_ttl_are_kept_and_the_cache_scope_turns_private() {
    let body = answer(
        json!(1),
        json!({
            "tools": [tool("wipe")],
            "nextCursor": "page-2",
            "ttlMs": 60000,
            "cacheScope": "public",
            "_meta": {"x": 1},
        }),
    );
    let out = changed(run(&tools_list(json!(1)), WHOAMI_ONLY, &body.to_string()));
    assert_eq!(
        out["result"]["tools"],
        json!([]),
        "a page filtered to nothing"
    );
    assert_eq!(
        out["result"]["nextCursor"], "page-2",
        "still carries the cursor"
    );
    assert_eq!(out["result"]["ttlMs"], 60000);
    assert_eq!(out["result"]["cacheScope"], "private");
    assert_eq!(out["result"]["_meta"], json!({"x": 1}));
}

#[test]
fn numbers_beyond_f64_pass_unchanged_in_kept_items() {
    let body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\" : \"whoami\", \"big\": 123456789012345678901234567890, \"f\": 0.1000000000000000055511151231257827, \"huge\": 1e400},{\"name\":\"x\"}]}}";
    let Ok(Rewrite::Changed(out)) = run(&tools_list(json!(1)), WHOAMI_ONLY, body) else {
        panic!("expected a rewrite");
    };
    assert_eq!(
        out,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\" : \"whoami\", \"big\": 123456789012345678901234567890, \"f\": 0.1000000000000000055511151231257827, \"huge\": 1e400}]}}"
    );
}

#[test]
fn a_batch_answer_is_rewritten_element_by_element() {
    let request = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami"}},
        tools_list(json!(2)),
    ]);
    let call_answer = answer(json!(1), json!({"content": []}));
    let body = json!([
        call_answer,
        answer(json!(2), json!({"tools": [tool("whoami"), tool("wipe")]})),
    ]);
    let mut granted = WHOAMI_ONLY.to_vec();
    granted.push("mcp:tools/call:whoami");
    let out = match run(&request, &granted, &body.to_string()) {
        Ok(Rewrite::Changed(s)) => serde_json::from_str::<Value>(&s).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(out[1]["result"]["tools"], json!([tool("whoami")]));
    assert_eq!(out[0], call_answer);
}

#[test]
fn answers_are_found_by_shape_when_the_id_differs() {
    // The client asked with id 1.0; a server answering id 1 gets no pass.
    let request = tools_list(json!(1.0));
    let body = answer(json!(1), json!({"tools": [tool("whoami"), tool("wipe")]}));
    let out = changed(run(&request, WHOAMI_ONLY, &body.to_string()));
    assert_eq!(names(&out, "tools"), ["whoami"]);
    // By shape only (a resumed stream).
    let mut plan = Plan::by_shape();
    let out = rewrite(
        body.to_string().as_bytes(),
        &mut plan,
        &scopes(WHOAMI_ONLY),
        &mut Counts::default(),
        &mut Memo::default(),
    );
    assert_eq!(names(&changed(out), "tools"), ["whoami"]);
    assert!(plan.open(), "a by-shape plan never closes");
}

#[test]
fn other_messages_pass_untouched() {
    let mut granted = WHOAMI_ONLY.to_vec();
    granted.push("mcp:tools/call:whoami");
    for body in [
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"tools": []}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "sampling/createMessage", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "no"}}),
        answer(json!(7), json!({"content": []})),
    ] {
        assert_eq!(
            run(&tools_list(json!(1)), &granted, &body.to_string()),
            Ok(Rewrite::Unchanged),
            "{body}"
        );
    }
}

#[test]
fn answers_that_cannot_be_read_one_way_are_refused() {
    let cases = [
        ("not json", "not JSON"),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]},\"result\":{\"tools\":[{\"name\":\"wipe\"}]}}", "twice"),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]},\"Result\":{\"tools\":[{\"name\":\"wipe\"}]}}", "reads as \"result\""),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[],\"Tools\":[{\"name\":\"wipe\"}]}}", "reads as \"tools\""),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[],\"tool\\u0073\":[{\"name\":\"wipe\"}]}}", "twice"),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"whoami\",\"Name\":\"wipe\"}]}}", "reads as \"name\""),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"whoami\"}], \"x\": NaN}}", "not JSON"),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"prompts\":[]}}", "has no \"tools\""),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[]}", "no result object"),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":{}}}", "not an array"),
        // Another answer shaped like a list is checked as one.
        ("[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}},{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":\"x\"}}]", "not an array"),
        ("[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}, 3]", "not a JSON object"),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}} trailing", "not JSON"),
        // Whatever is not a message or a batch is withheld, a bare value too.
        (" 3", "not a JSON object"),
        ("\"tools\"", "not a JSON object"),
        ("", "not JSON"),
    ];
    for (body, why) in cases {
        match run(&tools_list(json!(1)), WHOAMI_ONLY, body) {
            Err(Fault(f)) => assert!(f.contains(why), "{body}: {f}"),
            other => panic!("{body}: expected a refusal, got {other:?}"),
        }
    }
    let bytes = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"\xff\"}]}}";
    let mut plan = plan_for(&tools_list(json!(1)), WHOAMI_ONLY).unwrap();
    assert!(rewrite(
        bytes,
        &mut plan,
        &scopes(WHOAMI_ONLY),
        &mut Counts::default(),
        &mut Memo::default(),
    )
    .is_err());
}

#[test]
fn items_that_name_nothing_are_dropped() {
    let body = answer(
        json!(1),
        json!({"tools": [tool("whoami"), 3, {"name": 4}, {"title": "x"}, null]}),
    );
    let out = changed(run(&tools_list(json!(1)), WHOAMI_ONLY, &body.to_string()));
    assert_eq!(out["result"]["tools"], json!([tool("whoami")]));
}

#[test]
fn errors_carry_the_ids_of_the_requests() {
    let plan = plan_for(&tools_list(json!(4)), WHOAMI_ONLY).unwrap();
    let e: Value = serde_json::from_str(&plan.error_body("why")).unwrap();
    assert_eq!(e["id"], 4);
    assert_eq!(e["error"]["code"], INTERNAL_ERROR);
    assert!(e["error"]["message"].as_str().unwrap().contains("why"));
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami"}});
    let plan = plan_for(&json!([call, tools_list(json!(3))]), WHOAMI_ONLY).unwrap();
    let e: Value = serde_json::from_str(&plan.error_body("why")).unwrap();
    assert_eq!(
        e.as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(3)]
    );
    let e: Value = serde_json::from_str(&Plan::by_shape().error_body("why")).unwrap();
    assert_eq!(e["id"], Value::Null);
}

#[test]
fn the_body_kind_comes_from_the_headers() {
    assert_eq!(body_of(200, Some(b"application/json"), None), Body::Json);
    assert_eq!(
        body_of(
            200,
            Some(b"Application/JSON; charset=utf-8"),
            Some(b"identity")
        ),
        Body::Json
    );
    assert_eq!(body_of(200, Some(b"text/event-stream"), None), Body::Events);
    assert!(
        matches!(body_of(200, Some(b"application/json"), Some(b"gzip")), Body::Withhold(w) if w.contains("gzip"))
    );
    assert!(
        matches!(body_of(200, Some(b"text/html"), None), Body::Withhold(w) if w.contains("text/html"))
    );
    assert!(matches!(body_of(200, None, None), Body::Withhold(_)));
    assert_eq!(body_of(404, Some(b"text/plain"), None), Body::Pass);
    assert!(matches!(
        body_of(500, Some(b"text/plain"), Some(b"br")),
        Body::Withhold(_)
    ));
}

fn answer_for(request: &Value, body: Body) -> Answer {
    Answer::new(plan_for(request, WHOAMI_ONLY).unwrap(), body, 4096)
}

fn apply(chunk: Chunk, original: &[u8]) -> Vec<u8> {
    match chunk {
        Chunk::Keep => original.to_vec(),
        Chunk::Replace(b) => b,
        Chunk::Hold => Vec::new(),
    }
}

#[test]
fn a_json_answer_is_held_to_its_end() {
    let s = scopes(WHOAMI_ONLY);
    let mut a = answer_for(&tools_list(json!(1)), Body::Json);
    let body = answer(json!(1), json!({"tools": [tool("whoami"), tool("wipe")]})).to_string();
    let (head, _) = body.split_at(10);
    // Held without being read, up to its end.
    assert!(a.holds(head.len(), false));
    assert!(!a.holds(body.len(), true));
    assert_eq!(
        a.chunk(head.as_bytes(), false, &s, &mut Memo::default()),
        Chunk::Hold
    );
    let out = apply(
        a.chunk(body.as_bytes(), true, &s, &mut Memo::default()),
        body.as_bytes(),
    );
    assert_eq!(
        names(&serde_json::from_slice(&out).unwrap(), "tools"),
        ["whoami"]
    );
    assert_eq!(
        a.counts,
        Counts {
            lists: 1,
            hidden: 1,
            withheld: 0,
            recalled: 0,
        }
    );
    assert!(a.done());

    let mut a = Answer::new(
        plan_for(&tools_list(json!(1)), WHOAMI_ONLY).unwrap(),
        Body::Json,
        16,
    );
    assert!(!a.holds(body.len(), false), "too long to hold: read now");
    let out = apply(
        a.chunk(body.as_bytes(), false, &s, &mut Memo::default()),
        b"",
    );
    let e: Value = serde_json::from_slice(&out).unwrap();
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer than 16 bytes"));
    assert!(!a.holds(4, false), "withheld: the rest is read and dropped");
    assert_eq!(
        a.chunk(b"more", true, &s, &mut Memo::default()),
        Chunk::Replace(Vec::new())
    );
}

#[test]
fn a_withheld_answer_becomes_errors_and_the_rest_is_dropped() {
    let s = scopes(WHOAMI_ONLY);
    let mut a = answer_for(
        &tools_list(json!(1)),
        body_of(200, Some(b"application/json"), Some(b"gzip")),
    );
    let out = apply(
        a.chunk(b"\x1f\x8b\x08", false, &s, &mut Memo::default()),
        b"",
    );
    let e: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(e["id"], 1);
    assert!(e["error"]["message"].as_str().unwrap().contains("gzip"));
    assert_eq!(
        a.chunk(b"rest", true, &s, &mut Memo::default()),
        Chunk::Replace(Vec::new())
    );
}

fn event_stream(list: &Value) -> String {
    format!(
        "id: 0\nretry: 3000\ndata: \n\n\
         data: {}\n\n\
         : keep-alive\n\n\
         event: message\nid: 1\ndata: {}\n\n\
         data: {}\n\n",
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}),
        list,
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "after"}}),
    )
}

/// Feeds `stream` in the given chunks; returns the bytes sent on after each.
fn feed(a: &mut Answer, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let s = scopes(WHOAMI_ONLY);
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            apply(
                a.chunk(c, i + 1 == chunks.len(), &s, &mut Memo::default()),
                c,
            )
        })
        .collect()
}

#[test]
fn only_the_list_event_of_a_stream_is_rewritten() {
    let list = answer(json!(1), json!({"tools": [tool("whoami"), tool("wipe")]}));
    let stream = event_stream(&list);
    let filtered = answer(json!(1), json!({"tools": [tool("whoami")]}));
    let want = event_stream(&filtered);
    let mut a = answer_for(&tools_list(json!(1)), Body::Events);
    let out = feed(&mut a, &[stream.as_bytes()]).concat();
    assert_eq!(String::from_utf8(out).unwrap(), want);

    // Split at every byte: the events before the list answer go out as
    // soon as they are complete, the same bytes in the end.
    let bytes = stream.as_bytes();
    let first_event_end = bytes.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    for cut in 0..=bytes.len() {
        let mut a = answer_for(&tools_list(json!(1)), Body::Events);
        let outs = feed(&mut a, &[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(
            String::from_utf8(outs.concat()).unwrap(),
            want,
            "cut at {cut}"
        );
        if cut >= first_event_end {
            assert!(
                outs[0].len() >= first_event_end,
                "cut at {cut}: held back a complete event"
            );
        }
    }
}

#[test]
fn a_broken_list_event_becomes_an_error_event() {
    let stream = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                  id: 5\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"wipe\"}], \"x\": NaN}}\n\n\
                  data: after\n\n";
    let mut a = answer_for(&tools_list(json!(1)), Body::Events);
    let out = String::from_utf8(feed(&mut a, &[stream.as_bytes()]).concat()).unwrap();
    assert!(!out.contains("wipe"), "{out}");
    let events: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(
        events[0],
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}"
    );
    assert!(events[1].starts_with("id: 5\ndata: {"), "{}", events[1]);
    let e: Value = serde_json::from_str(events[1].trim_start_matches("id: 5\ndata: ")).unwrap();
    assert_eq!(e["id"], 1);
    assert_eq!(e["error"]["code"], INTERNAL_ERROR);
    assert_eq!(events[2], "data: after", "events after the answer pass");
}

#[test]
fn an_event_past_the_limit_is_withheld_while_a_list_is_awaited() {
    let s = scopes(WHOAMI_ONLY);
    let big = format!("data: {}\n\n", "x".repeat(100));
    let mut a = Answer::new(
        plan_for(&tools_list(json!(1)), WHOAMI_ONLY).unwrap(),
        Body::Events,
        50,
    );
    let out = apply(
        a.chunk(big.as_bytes(), false, &s, &mut Memo::default()),
        big.as_bytes(),
    );
    let e: Value = serde_json::from_slice(sse::data(&out).unwrap().as_slice()).unwrap();
    assert_eq!(e["id"], 1);
    // The list request got its answer (an error): a long event goes on.
    assert_eq!(
        a.chunk(big.as_bytes(), true, &s, &mut Memo::default()),
        Chunk::Keep
    );
}

fn tool_name() -> impl Strategy<Value = String> {
    "[a-c_*\\\\]{1,5}"
}

fn scope_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        tool_name().prop_map(|n| format!("mcp:tools/call:{n}")),
        Just("mcp:tools/call".to_string()),
        Just("mcp:tools/*".to_string()),
        Just("mcp:prompts/get:a*".to_string()),
        "[a-c*]{1,4}".prop_map(|n| format!("mcp:tools/call:{n}")),
    ]
}

proptest! {
    /// Listed ⇔ callable: after the rewrite, a tool is in the list exactly
    /// when `tools/call` of it would be allowed, whatever the scopes.
    #[test]
    fn listed_iff_callable(
        granted in prop::collection::vec(scope_strategy(), 0..4),
        tools in prop::collection::vec(tool_name(), 0..8),
    ) {
        let Ok(held) = scopes::parse_all(&granted) else { return Ok(()); };
        let body = answer(json!(1), json!({"tools": tools.iter().map(|t| tool(t)).collect::<Vec<_>>()}));
        let mut plan = Plan {
            pending: vec![(json!(1), List::Tools)],
            requests: vec![json!(1)],
            batch: false,
        };
        let out = rewrite(body.to_string().as_bytes(), &mut plan, &held, &mut Counts::default(), &mut Memo::default()).unwrap();
        let Rewrite::Changed(out) = out else {
            return Err(TestCaseError::fail("a list result is always rewritten"));
        };
        let listed = names(&serde_json::from_str(&out).unwrap(), "tools");
        let callable: Vec<String> = tools
            .iter()
            .filter(|t| scopes::grants(&held, "tools/call", Some(t)))
            .cloned()
            .collect();
        prop_assert_eq!(listed, callable);
    }
}

#[test]
fn the_tail_of_a_dropped_event_never_goes_out() {
    // The list answer is longer than the limit and arrives in two chunks:
    // the first overflows, the rest must be dropped too, not passed.
    let s = scopes(WHOAMI_ONLY);
    let list = answer(
        json!(1),
        json!({"tools": [tool("whoami"), tool("wipe_tenant")]}),
    );
    let stream = format!("data: {list}\n\ndata: after\n\n");
    let cut = stream.find("wipe_tenant").unwrap() - 5;
    for max in [20, 60, cut - 1] {
        let mut a = Answer::new(
            plan_for(&tools_list(json!(1)), WHOAMI_ONLY).unwrap(),
            Body::Events,
            max,
        );
        let (head, tail) = stream.as_bytes().split_at(cut);
        let mut out = apply(a.chunk(head, false, &s, &mut Memo::default()), head);
        out.extend(apply(a.chunk(tail, true, &s, &mut Memo::default()), tail));
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("wipe_tenant"), "max {max}: {out}");
        assert!(out.ends_with("data: after\n\n"), "max {max}: {out}");
    }
}

#[test]
fn a_refused_list_event_is_answered_with_an_error_not_passed() {
    // The answer names the awaited id, then turns out unreadable (a second
    // "tools"): the event must not go on as "already answered".
    let stream = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[],\"tools\":[{\"name\":\"wipe\"}]}}\n\ndata: after\n\n";
    let mut a = answer_for(&tools_list(json!(1)), Body::Events);
    let out = String::from_utf8(feed(&mut a, &[stream.as_bytes()]).concat()).unwrap();
    assert!(!out.contains("wipe"), "{out}");
    let first = out
        .split("\n\n")
        .next()
        .unwrap()
        .trim_start_matches("data: ");
    let e: Value = serde_json::from_str(first).unwrap();
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(1), json!(INTERNAL_ERROR))
    );
    assert!(out.ends_with("data: after\n\n"), "{out}");
    assert_eq!(
        a.counts,
        Counts {
            lists: 0,
            hidden: 0,
            withheld: 1,
            recalled: 0,
        }
    );
}

mod scan_keys {
    use super::super::scan::{object_keys, Keys};
    use super::super::{Level, Members, Val};
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn plain_items_are_read_and_escapes_give_up() {
        let k = object_keys(
            r#" { "name" : "a" , "x":{"y":[1,"}",{"z":"\""}]} ,"n":-1.5e3}"#,
            "name",
        );
        assert_eq!(
            k,
            Some(Keys {
                keys: vec!["name", "x", "n"],
                wanted: Some(Some("a")),
            })
        );
        assert_eq!(
            object_keys(r#"{"name":7,"name":"b"}"#, "name")
                .unwrap()
                .wanted,
            Some(None),
            "the first one is the one read; duplicates are the check's business"
        );
        assert_eq!(object_keys("{}", "name").unwrap().keys, Vec::<&str>::new());
        assert_eq!(object_keys(r#"{"na\u006de":"a"}"#, "name"), None);
        assert_eq!(object_keys(r#"{"name":"a\"b"}"#, "name"), None);
        assert_eq!(object_keys(r#"[1]"#, "name"), None);
        // Escapes in values not wanted are skipped, not decoded.
        assert_eq!(
            object_keys(r#"{"d":"x\\\"y","name":"t"}"#, "name")
                .unwrap()
                .wanted,
            Some(Some("t"))
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "[a-z\"\\\\/ }{\\]\\[,:\u{e9}\u{1F600}]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::vec(("[a-z\"\\\\]{0,4}", inner), 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// On any valid object the scan either gives up or finds exactly the
        /// keys and the wanted string serde finds.
        #[test]
        fn the_scan_agrees_with_serde(
            members in proptest::collection::vec(
                (prop_oneof![Just("name".to_string()), "[a-z\"\\\\]{0,4}"], json_value()),
                0..6,
            ),
            pretty in any::<bool>(),
        ) {
            // Written by hand so that duplicate keys survive.
            let sep = if pretty { " ,\n " } else { "," };
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| {
                    let v = if pretty {
                        serde_json::to_string_pretty(v).unwrap()
                    } else {
                        v.to_string()
                    };
                    format!("{} : {v}", Value::from(k.as_str()))
                })
                .collect();
            let text = format!("{{{}}}", body.join(sep));
            let serde = Members::parse(&text, Level::Item, "an item").unwrap();
            if let Some(found) = object_keys(&text, "name") {
                let keys: Vec<&str> = serde.0.iter().map(|(k, _)| k.as_ref()).collect();
                prop_assert_eq!(&found.keys, &keys);
                let want = serde.0.iter().find(|(k, _)| k == "name").map(|(_, v)| match v {
                    Val::Raw(r) => serde_json::from_str::<String>(r.get()).ok(),
                    _ => None,
                });
                prop_assert_eq!(found.wanted.map(|w| w.map(str::to_string)), want);
            } else {
                // It only gives up on escapes.
                prop_assert!(text.contains('\\'), "{}", text);
            }
        }
    }
}

// The memo: an answer met before, but for its id.

const MEMO_LIST: &str = r#"{"jsonrpc":"2.0","id":ID,"result":{"tools":[{"name":"whoami"},{"name":"wipe"}],"cacheScope":"public"}}"#;

fn memo_run(
    memo: &mut Memo,
    id: &str,
    request_id: Value,
    granted: &[&str],
) -> (Result<Rewrite, Fault>, Plan, Counts) {
    let body = MEMO_LIST.replace("ID", id);
    rewrite_for(&tools_list(request_id), granted, &body, memo)
}

#[test]
fn the_memo_puts_the_new_id_in_the_kept_rewrite() {
    let mut memo = Memo::default();
    let (first, ..) = memo_run(&mut memo, "1", json!(1), WHOAMI_ONLY);
    assert_eq!(memo.len(), 1);
    for (id, value) in [
        ("2", json!(2)),
        (r#""a\"b""#, json!("a\"b")),
        ("-7.5", json!(-7.5)),
    ] {
        let (out, plan, counts) = memo_run(&mut memo, id, value.clone(), WHOAMI_ONLY);
        assert_eq!(counts.recalled, 1, "{id}: recalled");
        let fresh = memo_run(&mut Memo::off(), id, value.clone(), WHOAMI_ONLY);
        assert_eq!(fresh.2.recalled, 0);
        let (out, plan, counts) = unrecalled((out, plan, counts));
        assert_eq!(
            (&out, &plan, &counts),
            (&fresh.0, &fresh.1, &fresh.2),
            "{id}"
        );
        let v = changed(out);
        assert_eq!(v["id"], value);
        assert_eq!(names(&v, "tools"), ["whoami"]);
        assert!(!plan.waiting(), "the list request got its answer");
        assert_eq!((counts.lists, counts.hidden), (1, 1));
    }
    assert_eq!(memo.len(), 1, "hits add nothing");
    assert_ne!(changed(first)["id"], json!(2));
}

#[test]
fn the_memo_is_not_used_across_scopes_requests_or_broken_ids() {
    let mut memo = Memo::default();
    let _ = memo_run(&mut memo, "1", json!(1), WHOAMI_ONLY);
    // Other scopes: their own rewrite.
    let all_tools = &["mcp:tools/list", "mcp:tools/call:w*"];
    let (out, ..) = memo_run(&mut memo, "1", json!(1), all_tools);
    assert_eq!(names(&changed(out), "tools"), ["whoami", "wipe"]);
    assert_eq!(memo.len(), 2);
    // Not one JSON value in the id's place: read afresh, and refused.
    for id in [
        r#"1,"id":2"#,
        "1}",
        "",
        r#"1,"result":{"tools":[{"name":"wipe"}]},"x":1"#,
    ] {
        let before = memo.len();
        let (out, plan, _) = memo_run(&mut memo, id, json!(1), WHOAMI_ONLY);
        assert!(out.is_err(), "{id}: {out:?}");
        assert!(plan.waiting(), "{id}: a refused answer answers nothing");
        assert_eq!(memo.len(), before);
    }
    // An id longer than the memo puts in: read afresh (a new entry), the same.
    let long = "x".repeat(2000);
    let before = memo.len();
    let (out, plan, _) = memo_run(&mut memo, &format!("\"{long}\""), json!(long), WHOAMI_ONLY);
    assert_eq!(changed(out)["id"], json!(long));
    assert!(!plan.waiting());
    assert_eq!(memo.len(), before + 1, "read afresh and kept");
    // An id no request has: filtered by shape, never the kept answer to a request.
    let (out, plan, _) = memo_run(&mut memo, "9", json!(1), WHOAMI_ONLY);
    assert_eq!(names(&changed(out), "tools"), ["whoami"]);
    assert!(plan.waiting(), "id 9 does not answer request 1");
    // …and the same for a by-shape entry met by a request's id.
    let (out, plan, _) = memo_run(&mut memo, "1", json!(1), WHOAMI_ONLY);
    assert_eq!(names(&changed(out), "tools"), ["whoami"]);
    assert!(!plan.waiting());
}

#[test]
fn the_memo_is_bounded_by_entries_and_bytes() {
    let mut memo = Memo::new(3, 1 << 20);
    for n in 0..10 {
        let granted = &["mcp:tools/list", &format!("mcp:tools/call:t{n}")];
        let _ = memo_run(&mut memo, "1", json!(1), granted);
        assert!(memo.len() <= 3);
    }
    let answer = MEMO_LIST.len();
    let mut memo = Memo::new(100, 4 * (answer + 80));
    for n in 0..10 {
        let granted = &["mcp:tools/list", &format!("mcp:tools/call:t{n}")];
        let _ = memo_run(&mut memo, "1", json!(1), granted);
    }
    assert!(memo.len() < 10 && !memo.is_empty(), "{}", memo.len());
    let mut tiny = Memo::new(100, answer);
    let _ = memo_run(&mut tiny, "1", json!(1), WHOAMI_ONLY);
    assert!(
        tiny.is_empty(),
        "an answer over a quarter of the memo is not kept"
    );
}

proptest! {
    /// Through one memo or none, any sequence of answers (ids, names,
    /// bytes around them) and scopes is rewritten the same.
    #[test]
    fn the_memo_never_changes_a_rewrite(
        seq in proptest::collection::vec(
            (0u8..4, "[a-z]{1,3}", prop_oneof![Just("1".to_string()), Just("\"x\"".to_string()), "[0-9]{1,3}", "[ -~]{0,6}"], 0u8..3),
            1..12,
        )
    ) {
        let mut memo = Memo::new(4, 1 << 16);
        for (shape, name, id, who) in seq {
            let granted: &[&str] = match who {
                0 => WHOAMI_ONLY,
                1 => &["mcp:tools/list", "mcp:tools/call:w*"],
                _ => &["mcp:tools/list", "mcp:prompts/get"],
            };
            let tools = format!(r#"[{{"name":"whoami"}},{{"name":"{name}"}}]"#);
            let body = match shape {
                0 => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{tools}}}}}"#),
                1 => format!(r#"{{"id":{id},"jsonrpc":"2.0","result":{{"tools":{tools},"nextCursor":"c"}}}}"#),
                2 => format!(r#" {{"jsonrpc":"2.0","result":{{"tools":{tools}}},"id":{id}}}"#),
                _ => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"prompts":{tools}}}}}"#),
            };
            // A request id is a string or a number; any other id text answers
            // request 1 (or nothing).
            let request_id = serde_json::from_str::<Value>(&id)
                .ok()
                .filter(|v| v.is_string() || v.is_number())
                .unwrap_or(json!(1));
            let request = tools_list(request_id);
            let outcomes = [
                unrecalled(rewrite_for(&request, granted, &body, &mut memo)),
                rewrite_for(&request, granted, &body, &mut Memo::off()),
            ];
            prop_assert_eq!(&outcomes[0], &outcomes[1], "{}", body);
        }
    }
}
