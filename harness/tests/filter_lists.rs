//! Per-token visibility of list results, through the real `filter.wasm` on
//! the proxy-wasm host: `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` answers keep only what the token may use, in
//! JSON and in event streams cut anywhere; batches, pages, the 2026-07-28
//! stateless form, and every answer the filter cannot read fails closed.

#[path = "common/pw_support.rs"]
mod pw_support;

use harness::proxy_wasm::{Envoy, Forwarded, Outcome, Request, Response};
use pw_support::*;
use serde_json::{json, Value};

/// May list tools and call `whoami` only.
const WHOAMI: [&str; 2] = ["mcp:tools/list", "mcp:tools/call:whoami"];

fn worker(scopes: &[&str]) -> (Envoy, String) {
    worker_with(scopes, json!({}))
}

fn worker_with(scopes: &[&str], patch: Value) -> (Envoy, String) {
    let mut env = envoy_with(merged(json!({"revocation_poll_ms": 0}), &patch));
    let t = token(1);
    let out = admit(&mut env, mcp(&t, &initialize(0)), &active(scopes));
    assert!(matches!(out, Outcome::Forwarded(_)), "{out:#?}");
    (env, t)
}

fn tool(name: &str) -> Value {
    json!({"name": name, "description": format!("{name}: demo tool"),
           "inputSchema": {"type": "object", "properties": {}}})
}

fn tools(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| tool(n)).collect())
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn json_answer(body: &Value) -> Response {
    Response::json(200, body)
}

fn sse_answer(body: &str) -> Response {
    Response::new(
        200,
        &[
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        body.as_bytes().to_vec(),
    )
}

fn names(v: &Value) -> Vec<String> {
    let items = v["result"]["tools"]
        .as_array()
        .or(v["result"]["prompts"].as_array())
        .or(v["result"]["resources"].as_array())
        .or(v["result"]["resourceTemplates"].as_array())
        .unwrap_or_else(|| panic!("no list in {v}"));
    items
        .iter()
        .map(|i| {
            i["name"]
                .as_str()
                .filter(|_| i.get("uri").is_none() && i.get("uriTemplate").is_none())
                .or(i["uri"].as_str())
                .or(i["uriTemplate"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

const ALL_TOOLS: [&str; 4] = ["list_findings", "whoami", "wipe_tenant", "export_all"];

fn list_request(t: &str, id: u64, upstream: Response) -> Request {
    mcp(t, &rpc(id, "tools/list", json!({}))).upstream_responds(upstream)
}

/// The data of each event of `body`.
fn event_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let data: Vec<&str> = e
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

#[test]
fn a_restricted_token_sees_only_the_tools_it_may_call() {
    let (mut env, t) = worker(&WHOAMI);
    let answer = result(json!(1), json!({"tools": tools(&ALL_TOOLS)}));
    let out = env.request(list_request(&t, 1, json_answer(&answer)));
    let fwd = out.forwarded();
    assert_eq!(
        fwd.headers.get("accept-encoding").as_deref(),
        Some("identity"),
        "the filter asks for an answer it can read"
    );
    let body = fwd.response.body.json();
    assert_eq!(names(&body), ["whoami"]);
    assert_eq!(
        body["result"]["tools"][0],
        tool("whoami"),
        "kept items are whole"
    );
    assert_eq!(
        fwd.response.header("content-length"),
        None,
        "the length changed"
    );
    assert_eq!(env.metric("mcp_auth.lists.filtered"), 1);
    assert_eq!(env.metric("mcp_auth.lists.hidden_items"), 3);

    // And calling what is not listed stays a 403.
    let out = env.request(mcp(&t, &tool_call(2, "wipe_tenant")));
    assert_eq!(out.replied().status, 403);
}

#[test]
fn a_repeated_answer_is_rewritten_for_each_id_and_a_changed_one_afresh() {
    // The worker keeps a rewritten answer; the same answer under another id
    // comes out with that id, and any other byte makes it read afresh.
    let (mut env, t) = worker(&WHOAMI);
    let mut ids = Vec::new();
    for (id, names_in) in [
        (1u64, &ALL_TOOLS[..]),
        (2, &ALL_TOOLS[..]),
        (300, &ALL_TOOLS[..]),
        (4, &["whoami", "wipe_tenant"][..]),
        (5, &["list_findings"][..]),
        (6, &ALL_TOOLS[..]),
    ] {
        let answer = result(json!(id), json!({"tools": tools(names_in)}));
        let out = env.request(list_request(&t, id, json_answer(&answer)));
        let body = out.forwarded().response.body.json();
        ids.push(body["id"].clone());
        let want: Vec<&str> = names_in
            .iter()
            .copied()
            .filter(|n| *n == "whoami")
            .collect();
        assert_eq!(names(&body), want, "answer {id}");
    }
    assert_eq!(ids, [1, 2, 300, 4, 5, 6].map(|i| json!(i)));
    assert_eq!(env.metric("mcp_auth.lists.filtered"), 6);
    assert_eq!(env.metric("mcp_auth.lists.hidden_items"), 3 * 4 + 1 + 1);
    // 2, 300 and 6 repeat answer 1 but for the id.
    assert_eq!(env.metric("mcp_auth.lists.recalled"), 3);

    // Another token with other scopes never gets the kept rewrite.
    let other = token(2);
    let scopes = ["mcp:tools/list", "mcp:tools/call:wipe_tenant"];
    let out = admit(&mut env, mcp(&other, &initialize(0)), &active(&scopes));
    assert!(matches!(out, Outcome::Forwarded(_)), "{out:#?}");
    let answer = result(json!(7), json!({"tools": tools(&ALL_TOOLS)}));
    let out = env.request(list_request(&other, 7, json_answer(&answer)));
    assert_eq!(
        names(&out.forwarded().response.body.json()),
        ["wipe_tenant"]
    );

    // An id that is not one JSON value where the kept answer had its id.
    let kept = result(json!(8), json!({"tools": tools(&ALL_TOOLS)})).to_string();
    let forged = kept.replace(r#""id":8"#, r#""id":8,"result":{"tools":[]},"x":8"#);
    assert_ne!(forged, kept);
    let upstream = Response::new(
        200,
        &[("content-type", "application/json")],
        forged.into_bytes(),
    );
    let out = env.request(list_request(&t, 8, upstream));
    let body = out.forwarded().response.body.json();
    assert_eq!(body["error"]["code"], -32603, "{body}");
}

#[test]
fn with_the_memo_off_every_answer_is_read_afresh() {
    let (mut env, t) = worker_with(&WHOAMI, json!({"list_memo_bytes": 0}));
    for id in [1u64, 2, 3] {
        let answer = result(json!(id), json!({"tools": tools(&ALL_TOOLS)}));
        let out = env.request(list_request(&t, id, json_answer(&answer)));
        let body = out.forwarded().response.body.json();
        assert_eq!(
            (body["id"].clone(), names(&body)),
            (json!(id), vec!["whoami".to_string()])
        );
    }
    assert_eq!(env.metric("mcp_auth.lists.filtered"), 3);
    assert_eq!(env.metric("mcp_auth.lists.recalled"), 0);
}

#[test]
fn tokens_that_may_use_every_tool_get_the_answer_untouched_and_unbuffered() {
    for scopes in [
        &["mcp:*"][..],
        &["mcp:tools/list", "mcp:tools/call"][..],
        &["mcp:tools/*"][..],
    ] {
        let (mut env, t) = worker(scopes);
        let answer = result(json!(1), json!({"tools": tools(&ALL_TOOLS)}));
        let upstream = json_answer(&answer);
        let out = env.request(list_request(&t, 1, upstream.clone()).upstream_in_chunks(16));
        let fwd = out.forwarded();
        assert_eq!(
            fwd.response, upstream,
            "{scopes:?}: byte for byte, length kept"
        );
        assert_eq!(
            fwd.response_chunks.len(),
            upstream.body.len().div_ceil(16),
            "{scopes:?}: every chunk went on as it came"
        );
        if scopes == ["mcp:*"] {
            assert_eq!(fwd.headers.get("accept-encoding"), None, "the hot path");
        }
        assert_eq!(env.metric("mcp_auth.lists.filtered"), 0);
    }
}

#[test]
fn other_requests_of_a_restricted_token_do_no_response_work() {
    let (mut env, t) = worker(&WHOAMI);
    let upstream = json_answer(&result(
        json!(3),
        json!({"content": [{"type": "text", "text": "me"}]}),
    ));
    let out = env.request(
        mcp(&t, &tool_call(3, "whoami"))
            .upstream_responds(upstream.clone())
            .upstream_in_chunks(7),
    );
    let fwd = out.forwarded();
    assert_eq!(fwd.response, upstream);
    assert!(fwd.response_chunks.len() > 1, "streamed, not buffered");
    // A request naming another method in Mcp-Method is not asked for identity.
    let out = env.request(
        mcp(&t, &tool_call(4, "whoami"))
            .header("mcp-method", "tools/call")
            .header("mcp-name", "whoami"),
    );
    assert_eq!(out.forwarded().headers.get("accept-encoding"), None);
}

#[test]
fn prompts_resources_and_templates_follow_get_and_read() {
    let scopes = [
        "mcp:prompts/list",
        "mcp:prompts/get:triage_*",
        "mcp:resources/list",
        "mcp:resources/templates/list",
        "mcp:resources/read:demo://acme/public/*",
    ];
    let (mut env, t) = worker(&scopes);
    let cases = [
        (
            "prompts/list",
            json!({"prompts": [{"name": "triage_finding"}, {"name": "incident_report"}]}),
            vec!["triage_finding"],
        ),
        (
            "resources/list",
            json!({"resources": [
                {"uri": "demo://acme/public/readme.md", "name": "readme"},
                {"uri": "demo://acme/private/keys.txt", "name": "keys"},
                {"uri": "demo://acme/public/../private/keys.txt", "name": "sneaky"},
            ]}),
            vec!["demo://acme/public/readme.md"],
        ),
        (
            "resources/templates/list",
            json!({"resourceTemplates": [
                {"uriTemplate": "demo://acme/public/{name}", "name": "public doc"},
                {"uriTemplate": "demo://acme/private/{name}", "name": "private doc"},
                {"uriTemplate": "demo://{tenant}/public/{name}", "name": "any tenant"},
            ]}),
            vec!["demo://acme/public/{name}", "demo://{tenant}/public/{name}"],
        ),
    ];
    for (i, (method, list, want)) in cases.into_iter().enumerate() {
        let id = i as u64 + 10;
        let out = env.request(
            mcp(&t, &rpc(id, method, json!({})))
                .upstream_responds(json_answer(&result(json!(id), list))),
        );
        assert_eq!(
            names(&out.forwarded().response.body.json()),
            want,
            "{method}"
        );
    }
}

fn notification(method: &str, n: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": {"progressToken": 1, "progress": n}})
}

/// A stream where the list answer comes after a priming event, a progress
/// notification and a keep-alive, and a log notification follows it; CRLF
/// line ends, a multi-byte character in a description.
fn list_stream(list: &Value) -> String {
    format!(
        "id: 0\r\nretry: 3000\r\ndata: \r\n\r\n\
         data: {}\r\n\r\n\
         : keep-alive\r\n\r\n\
         id: 1\r\nevent: message\r\ndata: {}\r\n\r\n\
         data: {}\r\n\r\n",
        notification("notifications/progress", 1),
        list,
        json!({"jsonrpc": "2.0", "method": "notifications/message",
               "params": {"level": "info", "data": "listed — done"}}),
    )
}

fn unicode_tools() -> Value {
    json!([
        {"name": "whoami", "description": "qui suis-je ? — réponse immédiate 🙂"},
        {"name": "wipe_tenant", "description": "efface tout ✂"},
    ])
}

#[test]
fn in_an_event_stream_only_the_list_answer_is_rewritten() {
    let (mut env, t) = worker(&WHOAMI);
    let stream = list_stream(&result(json!(1), json!({"tools": unicode_tools()})));
    let want = list_stream(&result(json!(1), json!({"tools": [unicode_tools()[0]]})));
    let out = env.request(list_request(&t, 1, sse_answer(&stream)));
    let fwd = out.forwarded();
    assert_eq!(fwd.response.body.text(), want);
    assert_eq!(
        fwd.response.header("content-type").as_deref(),
        Some("text/event-stream")
    );
}

#[test]
fn an_event_stream_cut_at_every_byte_gives_the_same_answer_without_waiting() {
    let (mut env, t) = worker(&WHOAMI);
    let stream = list_stream(&result(json!(1), json!({"tools": unicode_tools()})));
    let want = list_stream(&result(json!(1), json!({"tools": [unicode_tools()[0]]})));
    let bytes = stream.as_bytes();
    // The progress notification ends here: it must go out in the chunk that
    // completes it, before the list answer arrives.
    let progress_end = stream.find("\r\n\r\n: keep-alive").unwrap() + 4;
    for cut in 0..=bytes.len() {
        let out = env.request(list_request(&t, 1, sse_answer(&stream)).upstream_cut_at(&[cut]));
        let fwd: &Forwarded = out.forwarded();
        assert_eq!(fwd.response.body.text(), want, "cut at {cut}");
        if (progress_end..bytes.len()).contains(&cut) {
            let first = fwd.response_chunks[0].text();
            assert!(
                first.contains("notifications/progress"),
                "cut at {cut}: the progress event waited for the list answer"
            );
        }
    }
    // Three cuts, including inside the multi-byte characters.
    let emoji = stream.find('🙂').unwrap();
    for a in (0..bytes.len()).step_by(13) {
        let cuts = [a, emoji + 1, emoji + 3];
        let out = env.request(list_request(&t, 1, sse_answer(&stream)).upstream_cut_at(&cuts));
        assert_eq!(
            out.forwarded().response.body.text(),
            want,
            "cuts at {cuts:?}"
        );
    }
    // One byte at a time.
    let out = env.request(list_request(&t, 1, sse_answer(&stream)).upstream_in_chunks(1));
    assert_eq!(out.forwarded().response.body.text(), want);
}

#[test]
fn a_batch_answer_is_rewritten_element_by_element() {
    let (mut env, t) = worker(&WHOAMI);
    let batch = json!([tool_call(1, "whoami"), rpc(2, "tools/list", json!({}))]);
    let call_answer = result(
        json!(1),
        json!({"content": [{"type": "text", "text": "acme"}]}),
    );
    let answer = json!([
        call_answer,
        result(json!(2), json!({"tools": tools(&ALL_TOOLS)}))
    ]);
    let out = env.request(mcp(&t, &batch).upstream_responds(json_answer(&answer)));
    let body = out.forwarded().response.body.json();
    assert_eq!(body[0], call_answer, "the other answer is unchanged");
    assert_eq!(names(&body[1]), ["whoami"]);
}

#[test]
fn a_page_filtered_to_nothing_keeps_its_cursor() {
    let (mut env, t) = worker(&WHOAMI);
    let page = result(
        json!(5),
        json!({"tools": tools(&["list_findings", "wipe_tenant"]), "nextCursor": "cGFnZS0y"}),
    );
    let out = env.request(
        mcp(&t, &rpc(5, "tools/list", json!({"cursor": "cGFnZS0x"})))
            .upstream_responds(json_answer(&page)),
    );
    let body = out.forwarded().response.body.json();
    assert_eq!(body["result"]["tools"], json!([]));
    assert_eq!(body["result"]["nextCursor"], "cGFnZS0y");
}

#[test]
fn a_stateless_2026_list_is_recognised_and_its_cache_scope_turns_private() {
    let (mut env, t) = worker(&WHOAMI);
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let answer = result(
        json!(7),
        json!({"tools": tools(&ALL_TOOLS), "ttlMs": 300000, "cacheScope": "public",
               "resultType": "complete"}),
    );
    let out = env.request(
        mcp(&t, &request)
            .header("mcp-method", "tools/list")
            .header("mcp-protocol-version", "2026-07-28")
            .upstream_responds(json_answer(&answer)),
    );
    let fwd = out.forwarded();
    assert_eq!(
        fwd.headers.get("accept-encoding").as_deref(),
        Some("identity")
    );
    let body = fwd.response.body.json();
    assert_eq!(names(&body), ["whoami"]);
    assert_eq!(body["result"]["ttlMs"], 300000, "kept");
    assert_eq!(body["result"]["cacheScope"], "private", "per caller now");
    assert_eq!(body["result"]["resultType"], "complete");
}

#[test]
fn a_compressed_answer_is_withheld_with_a_jsonrpc_error() {
    let (mut env, t) = worker(&WHOAMI);
    // Whatever the bytes: the filter cannot read them, so they never go out.
    let gzip = Response::new(
        200,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03whoami wipe_tenant".to_vec(),
    );
    let out = env.request(list_request(&t, 9, gzip).upstream_in_chunks(8));
    let fwd = out.forwarded();
    assert_eq!(fwd.response.header("content-encoding"), None);
    assert_eq!(
        fwd.response.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = fwd.response.body.json();
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], -32603);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("content-encoding: gzip"), "{message}");
    assert!(!fwd.response.body.text().contains("wipe_tenant"));
    assert_eq!(env.metric("mcp_auth.lists.withheld"), 1);
    assert!(env.log_text().contains("list answer withheld"));
}

#[test]
fn garbled_answers_are_withheld_never_passed() {
    let (mut env, t) = worker(&WHOAMI);
    let garbled = [
        (json_answer(&json!({})), "no answer to tools/list"),
        (
            Response::new(200, &[("content-type", "application/json")], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"wipe_tenant\"}]".to_vec()),
            "not JSON",
        ),
        (
            Response::new(200, &[("content-type", "application/json")], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[],\"tools\":[{\"name\":\"wipe_tenant\"}]}}".to_vec()),
            "twice",
        ),
        (
            Response::new(200, &[("content-type", "text/html")], b"<p>wipe_tenant</p>".to_vec()),
            "text/html",
        ),
        (
            sse_answer("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"wipe_tenant\"}],}}\n\n"),
            "not JSON",
        ),
    ];
    for (upstream, why) in garbled {
        let out = env.request(list_request(&t, 1, upstream));
        let fwd = out.forwarded();
        let text = fwd.response.body.text();
        assert!(!text.contains("wipe_tenant"), "{why}: {text}");
        let error: Value = match event_data(&text).first() {
            Some(d)
                if fwd.response.header("content-type").as_deref() == Some("text/event-stream") =>
            {
                serde_json::from_str(d).unwrap()
            }
            _ => fwd.response.body.json(),
        };
        assert_eq!(error["error"]["code"], -32603, "{why}: {text}");
        assert_eq!(error["id"], 1, "{why}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(why),
            "{error}"
        );
    }
}

#[test]
fn an_answer_over_max_body_bytes_is_withheld() {
    let (mut env, t) = worker_with(&WHOAMI, json!({"max_body_bytes": 1024}));
    let many: Vec<String> = (0..40).map(|i| format!("tool_{i:02}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let answer = result(json!(1), json!({"tools": tools(&refs)}));
    let out = env.request(list_request(&t, 1, json_answer(&answer)).upstream_in_chunks(300));
    let body = out.forwarded().response.body.json();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer than 1024 bytes"));
}

#[test]
fn a_resumed_stream_is_checked_by_shape() {
    let (mut env, t) = worker(&WHOAMI);
    // The client resumes a stream whose list answer it never read.
    let replay = format!(
        "id: 3\ndata: {}\n\n",
        result(json!(17), json!({"tools": tools(&ALL_TOOLS)}))
    );
    let out = env.request(
        Request::get("/mcp")
            .bearer(&t)
            .header("accept", "text/event-stream")
            .header("last-event-id", "2")
            .upstream_responds(sse_answer(&replay)),
    );
    let fwd = out.forwarded();
    assert_eq!(
        fwd.headers.get("accept-encoding").as_deref(),
        Some("identity")
    );
    let data = event_data(&fwd.response.body.text());
    assert_eq!(names(&serde_json::from_str(&data[0]).unwrap()), ["whoami"]);
}

#[test]
fn a_list_answer_with_another_id_spelling_is_still_filtered() {
    let (mut env, t) = worker(&WHOAMI);
    let request = json!({"jsonrpc": "2.0", "id": 1.0, "method": "tools/list"});
    let answer = result(json!(1), json!({"tools": tools(&ALL_TOOLS)}));
    let out = env.request(mcp(&t, &request).upstream_responds(json_answer(&answer)));
    assert_eq!(names(&out.forwarded().response.body.json()), ["whoami"]);
}

#[test]
fn error_pages_and_empty_answers_pass() {
    let (mut env, t) = worker(&WHOAMI);
    let page = Response::new(
        404,
        &[("content-type", "text/plain")],
        b"Session not found".to_vec(),
    );
    let out = env.request(list_request(&t, 1, page.clone()));
    assert_eq!(out.forwarded().response, page);
    let accepted = Response::new(202, &[], Vec::new());
    let out = env.request(list_request(&t, 1, accepted));
    assert_eq!(out.forwarded().response.status, 202);
    let rpc_error = json_answer(&json!({"jsonrpc": "2.0", "id": 1,
        "error": {"code": -32601, "message": "no tools here"}}));
    let out = env.request(list_request(&t, 1, rpc_error.clone()));
    assert_eq!(out.forwarded().response.body, rpc_error.body);
}

#[test]
fn without_scope_enforcement_nothing_is_filtered() {
    let (mut env, t) = worker_with(&WHOAMI, json!({"enforce_scopes": false}));
    let upstream = json_answer(&result(json!(1), json!({"tools": tools(&ALL_TOOLS)})));
    let out = env.request(list_request(&t, 1, upstream.clone()));
    assert_eq!(out.forwarded().response, upstream);
}
