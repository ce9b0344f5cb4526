//! Every error a caller can cause (docs/DESIGN.md §6), at the HTTP level: status, the
//! `{"error":{"code","message"}}` shape, a snake_case code and a message that
//! names what to fix.

#[path = "common/spin_api.rs"]
mod spin_api;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use spin_api::{Api, Req, Resp, ADMIN_KEY};

const TOKENS: &str = "/api/v1/mcptokens";

/// Checks the error shape and returns the message.
#[track_caller]
fn expect_error(r: &Resp, status: StatusCode, code: &str, names: &str) -> String {
    assert_eq!(
        r.status,
        status,
        "expected {status} {code}, got {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    let obj = body["error"].as_object().expect("error object");
    assert_eq!(obj.len(), 2, "error has exactly code and message: {body}");
    let got = r.code();
    assert!(
        got.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
        "code {got:?} is not snake_case"
    );
    assert_eq!(got, code, "{body}");
    let message = r.message();
    assert!(
        message.contains(names),
        "message should name {names:?}: {message}"
    );
    message
}

async fn create(api: &Api, body: Value) -> Resp {
    api.post(TOKENS, ADMIN_KEY, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_naming_the_field() {
    let api = Api::start().await;
    let long = "n".repeat(65);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"tenant": "acme"}), "invalid_name", "name"),
        (
            json!({"name": "", "tenant": "acme"}),
            "invalid_name",
            "name",
        ),
        (
            json!({"name": long, "tenant": "acme"}),
            "invalid_name",
            "name",
        ),
        (json!({"name": "ok"}), "invalid_tenant", "tenant"),
        (
            json!({"name": "ok", "tenant": "Acme!"}),
            "invalid_tenant",
            "tenant",
        ),
        (
            json!({"name": "ok", "tenant": "_system"}),
            "invalid_tenant",
            "tenant",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "project": "Web App"}),
            "invalid_project",
            "project",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "ttl": "5 fortnights"}),
            "invalid_ttl",
            "ttl",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "expires_at": "2001-01-01T00:00:00Z"}),
            "invalid_expires_at",
            "expires_at",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "expires_at": "tomorrow"}),
            "invalid_expires_at",
            "expires_at",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "scopes": ["mcp:tools/list:x"]}),
            "invalid_scopes",
            "mcp:tools/list:x",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "scopes": "mcp:*"}),
            "invalid_scopes",
            "scopes",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "rbac": "everything"}),
            "invalid_rbac",
            "rbac",
        ),
        (
            json!({"name": "ok", "tenant": "acme", "nmae": "typo"}),
            "unknown_field",
            "nmae",
        ),
    ];
    for (body, code, names) in cases {
        let r = create(&api, body).await;
        expect_error(&r, StatusCode::BAD_REQUEST, code, names);
    }

    let r = api
        .send(
            Req::new(Method::POST, TOKENS)
                .bearer(ADMIN_KEY)
                .raw_body("application/json", "{\"name\": \"x\", "),
        )
        .await;
    expect_error(&r, StatusCode::BAD_REQUEST, "invalid_json", "JSON");

    for (query, code, names) in [
        ("limit=0", "invalid_limit", "limit"),
        ("limit=many", "invalid_limit", "limit"),
        ("cursor=zzz", "invalid_cursor", "cursor"),
        ("tenant=Not%20A%20Tenant", "invalid_tenant", "tenant"),
        ("colour=blue", "unknown_parameter", "colour"),
    ] {
        let r = api.get(&format!("{TOKENS}?{query}"), ADMIN_KEY).await;
        expect_error(&r, StatusCode::BAD_REQUEST, code, names);
    }
    let r = api.get("/api/v1/mcptokens/revocations?since=-4", "x").await;
    expect_error(&r, StatusCode::BAD_REQUEST, "invalid_since", "since");
    let r = api.get("/api/v1/audit?token_id=nope", ADMIN_KEY).await;
    expect_error(&r, StatusCode::BAD_REQUEST, "invalid_token_id", "token_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_401_with_a_challenge_and_scopes_403() {
    let api = Api::start().await;
    let list = |bearer: Option<&str>| {
        let req = Req::new(Method::GET, TOKENS);
        match bearer {
            Some(b) => req.bearer(b),
            None => req,
        }
    };

    for req in [
        list(None),
        list(Some("wrong-admin-key")),
        list(Some("mcpctl_pat_notevenclose")),
        Req::new(Method::GET, TOKENS).header("authorization", &format!("Basic {ADMIN_KEY}")),
    ] {
        let r = api.send(req).await;
        expect_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", "");
        let challenge = r.header("www-authenticate").expect("WWW-Authenticate");
        assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    }

    // A token that is no longer active is no credential either.
    let c = api
        .create(json!({"name": "admin-ish", "tenant": "acme", "scopes": ["tokens:read", "tokens:write"]}))
        .await;
    let pat = c["token"].as_str().unwrap().to_owned();
    assert_eq!(api.get(TOKENS, &pat).await.status, StatusCode::OK);
    assert!(api
        .revoke(c["id"].as_str().unwrap())
        .await
        .status
        .is_success());
    let r = api.get(TOKENS, &pat).await;
    expect_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", "");

    // A live token lacking the scope gets 403 naming it.
    let reader = api
        .create(json!({"name": "reader", "tenant": "acme", "scopes": ["tokens:read"]}))
        .await;
    let reader = reader["token"].as_str().unwrap();
    let r = api
        .post(TOKENS, reader, &json!({"name": "x", "tenant": "acme"}))
        .await;
    expect_error(
        &r,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "tokens:write",
    );
    let writer = api
        .create(json!({"name": "writer", "tenant": "acme", "scopes": ["tokens:write"]}))
        .await;
    let r = api.get(TOKENS, writer["token"].as_str().unwrap()).await;
    expect_error(
        &r,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "tokens:read",
    );

    // Tokens of another tenant are invisible (404), never 403 with details.
    let other = api
        .create(json!({"name": "theirs", "tenant": "globex"}))
        .await;
    let r = api
        .get(
            &format!("{TOKENS}/{}", other["id"].as_str().unwrap()),
            reader,
        )
        .await;
    expect_error(&r, StatusCode::NOT_FOUND, "not_found", "");
    let r = api.get(&format!("{TOKENS}?tenant=globex"), reader).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_conflicting_oversized_and_mistyped_requests() {
    let api = Api::start().await;

    // 404: unknown token id, unknown route.
    let r = api
        .get(
            &format!("{TOKENS}/tok_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            ADMIN_KEY,
        )
        .await;
    expect_error(
        &r,
        StatusCode::NOT_FOUND,
        "not_found",
        "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    );
    let r = api.get("/api/v2/everything", ADMIN_KEY).await;
    expect_error(&r, StatusCode::NOT_FOUND, "not_found", "/api/v2/everything");

    // 409: the same name twice in one tenant + project; other project is fine.
    let body = json!({"name": "dup", "tenant": "acme", "project": "a"});
    assert_eq!(create(&api, body.clone()).await.status, StatusCode::CREATED);
    let r = create(&api, body).await;
    expect_error(&r, StatusCode::CONFLICT, "name_taken", "dup");
    let r = create(
        &api,
        json!({"name": "dup", "tenant": "acme", "project": "b"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // 413: bodies over 64 KiB are refused, whatever they hold.
    let big = json!({"name": "big", "tenant": "acme", "pad": "x".repeat(70 * 1024)});
    let r = create(&api, big).await;
    expect_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "64");

    // 415: not JSON.
    let r = api
        .send(
            Req::new(Method::POST, TOKENS)
                .bearer(ADMIN_KEY)
                .raw_body("text/plain", "name=x&tenant=acme"),
        )
        .await;
    expect_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "application/json",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_is_500_without_internals() {
    let api = Api::start().await;
    api.create(json!({"name": "before", "tenant": "acme"}))
        .await;

    // Break the schema behind the component's back.
    let db = api.running.database().expect("default database").to_owned();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TABLE tokens; CREATE TABLE tokens (unrelated TEXT);")
        .unwrap();
    drop(conn);

    let r = api.get(TOKENS, ADMIN_KEY).await;
    let message = expect_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "internal", "");
    let raw = String::from_utf8_lossy(&r.body).to_lowercase();
    for leak in [
        "sqlite",
        "column",
        "table",
        "unrelated",
        "select",
        db.to_str().unwrap(),
    ] {
        assert!(
            !raw.contains(&leak.to_lowercase()),
            "500 leaks {leak:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_credential() {
    let api = Api::start().await;
    let r = api.send(Req::new(Method::GET, "/health")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["status"], "ok");
}
