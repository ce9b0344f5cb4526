//! The API end to end on the host: real requests through routing, auth,
//! validation and the real SQL on SQLite.

use std::cell::Cell;
use std::collections::HashSet;

use futures::executor::block_on;
use serde_json::{json, Value};

use super::*;
use crate::body::Chunks;
use crate::store::{DbError, DbErrorKind, Dialect, Row, Value as SqlValue, SCHEMA_VERSION};
use crate::testdb::AnyTestDb;

const ADMIN_KEY: &str = "correct horse battery staple";
const T0_MS: i64 = 1_795_459_243_000; // 2026-11-23T18:40:43Z
const DAY: i64 = 86_400;

struct Api<D: Db = AnyTestDb> {
    db: D,
    config: Config,
    now_ms: Cell<i64>,
}

struct Req<'a> {
    method: &'a str,
    target: &'a str,
    auth: Option<&'a str>,
    content_type: Option<&'a str>,
    body: Vec<u8>,
}

impl<'a> Req<'a> {
    fn new(method: &'a str, target: &'a str) -> Self {
        Req {
            method,
            target,
            auth: None,
            content_type: None,
            body: Vec::new(),
        }
    }
    fn auth(mut self, credential: &'a str) -> Self {
        self.auth = Some(credential);
        self
    }
    fn json(mut self, body: &Value) -> Self {
        self.content_type = Some("application/json");
        self.body = body.to_string().into_bytes();
        self
    }
    fn raw(mut self, content_type: Option<&'a str>, body: &[u8]) -> Self {
        self.content_type = content_type;
        self.body = body.to_vec();
        self
    }
}

/// This file is compiled twice (see the bottom of service.rs): as `tests`
/// on SQLite and as `tests_postgres` on PostgreSQL.
fn dialect() -> Dialect {
    AnyTestDb::for_module(module_path!())
}

fn api() -> Api {
    Api::with_db(AnyTestDb::fresh(dialect()))
}

impl<D: Db> Api<D> {
    fn with_db(db: D) -> Self {
        let sha = mcpgw_token::format::sha256_hex(ADMIN_KEY);
        let config =
            Config::from_vars(|name| (name == "admin_key_sha256").then(|| sha.clone())).unwrap();
        Api {
            db,
            config,
            now_ms: Cell::new(T0_MS),
        }
    }

    fn now(&self) -> i64 {
        self.now_ms.get() / 1000
    }

    fn advance(&self, secs: i64) {
        self.advance_ms(secs * 1000);
    }

    fn advance_ms(&self, ms: i64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    fn send(&self, r: Req) -> Response {
        let (path, query) = match r.target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (r.target, None),
        };
        let head = RequestHead {
            method: r.method.into(),
            path: path.into(),
            query,
            authorization: r
                .auth
                .map(|a| vec![format!("Bearer {a}")])
                .unwrap_or_default(),
            content_type: r.content_type.map(str::to_owned),
            content_length: (!r.body.is_empty()).then(|| r.body.len().to_string()),
        };
        let resp = block_on(handle(
            &head,
            Chunks::of(&r.body),
            Ok(&self.config),
            self.now_ms.get(),
            &self.db,
        ));
        // Every answer with a body is JSON; every error has the one shape.
        if !resp.body.is_empty() {
            let v = resp.json_body().expect("JSON body");
            assert_eq!(resp.header("content-type"), Some("application/json"));
            if resp.status >= 400 && path != "/health" {
                let e = &v["error"];
                assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
                assert_eq!(e.as_object().unwrap().len(), 2, "{v}");
                let code = e["code"].as_str().unwrap();
                assert!(
                    code.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
                    "{code}"
                );
                assert!(!e["message"].as_str().unwrap().is_empty());
            }
        }
        resp
    }

    fn get(&self, target: &str, auth: &str) -> Response {
        self.send(Req::new("GET", target).auth(auth))
    }

    /// Creates a token as `auth`, expecting 201; returns (record view + token).
    fn create(&self, auth: &str, body: Value) -> Value {
        let r = self.send(Req::new("POST", "/api/v1/mcptokens").auth(auth).json(&body));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json_body().unwrap()
    }

    fn create_err(&self, auth: &str, body: Value) -> (u16, String, String) {
        let r = self.send(Req::new("POST", "/api/v1/mcptokens").auth(auth).json(&body));
        let v = r.json_body().unwrap();
        (
            r.status,
            v["error"]["code"].as_str().unwrap_or_default().to_owned(),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    fn introspect(&self, token: &str) -> Value {
        let r = self.send(Req::new("GET", "/api/v1/mcptokens/introspect").auth(token));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        r.json_body().unwrap()
    }

    fn revoke(&self, auth: &str, id: &str) -> Response {
        self.send(Req::new("POST", &format!("/api/v1/mcptokens/{id}/revoke")).auth(auth))
    }
}

fn token_of(v: &Value) -> String {
    v["token"].as_str().unwrap().to_owned()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn code(r: &Response) -> (u16, String) {
    let v = r.json_body().unwrap_or(Value::Null);
    (
        r.status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A Db that counts statements, to prove which paths touch storage.
struct Counting {
    inner: AnyTestDb,
    statements: Cell<usize>,
}

impl Db for Counting {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>, DbError> {
        self.statements.set(self.statements.get() + 1);
        self.inner.query(sql, params).await
    }
}

/// A Db whose every statement fails, as an unreachable database would.
struct Broken;

impl Db for Broken {
    fn dialect(&self) -> Dialect {
        dialect()
    }

    async fn query(&self, _: &str, _: Vec<SqlValue>) -> Result<Vec<Row>, DbError> {
        Err(DbError::new(
            DbErrorKind::Other,
            "unable to open database file /srv/secret/path.db",
        ))
    }
}

/// A Db whose database is down (connection refused, server restarting).
struct Down;

impl Db for Down {
    fn dialect(&self) -> Dialect {
        dialect()
    }

    async fn query(&self, _: &str, _: Vec<SqlValue>) -> Result<Vec<Row>, DbError> {
        Err(DbError::new(
            DbErrorKind::Unavailable,
            "connection refused to db.internal:5432 as user secret_user",
        ))
    }
}

#[test]
fn health_reports_storage() {
    fn health<D: Db>(a: &Api<D>) -> (u16, Value) {
        let r = a.send(Req::new("GET", "/health"));
        (r.status, r.json_body().unwrap())
    }
    let a = api();
    let name = dialect().name();
    // A fresh database: reachable, not migrated yet (the first management
    // request migrates it).
    assert_eq!(
        health(&a),
        (
            200,
            json!({"status": "ok", "storage": "ok", "store": name,
                   "schema_version": 0, "schema_version_required": SCHEMA_VERSION})
        )
    );
    a.get("/api/v1/mcptokens", ADMIN_KEY);
    assert_eq!(health(&a).1["schema_version"], SCHEMA_VERSION);

    let (status, v) = health(&Api::with_db(Broken));
    assert_eq!(
        (status, &v["storage"], &v["store"]),
        (503, &json!("unreachable"), &json!(name))
    );
    let (status, v) = health(&Api::with_db(Down));
    assert_eq!((status, &v["storage"]), (503, &json!("unavailable")));
    assert!(!v.to_string().contains("secret"), "{v}");
}

#[test]
fn an_unavailable_store_is_503_with_retry_after() {
    let d = Api::with_db(Down);
    for r in [
        d.get("/api/v1/mcptokens", ADMIN_KEY),
        d.send(Req::new("GET", "/api/v1/mcptokens/revocations")),
        d.introspect_raw(&mcpgw_token::format::generate().unwrap()),
        d.send(
            Req::new("POST", "/api/v1/mcptokens")
                .auth(ADMIN_KEY)
                .json(&json!({"name": "n", "tenant": "acme"})),
        ),
    ] {
        assert_eq!(code(&r), (503, "storage_unavailable".into()));
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(!String::from_utf8_lossy(&r.body).contains("secret"));
    }
}

#[test]
fn storage_failures_are_500_without_internals() {
    let b = Api::with_db(Broken);
    for r in [
        b.get("/api/v1/mcptokens", ADMIN_KEY),
        b.send(Req::new("GET", "/api/v1/mcptokens/revocations")),
        b.introspect_raw(&mcpgw_token::format::generate().unwrap()),
    ] {
        assert_eq!(code(&r), (500, "internal".into()));
        assert!(!String::from_utf8_lossy(&r.body).contains("secret"));
    }
}

impl<D: Db> Api<D> {
    fn introspect_raw(&self, token: &str) -> Response {
        self.send(Req::new("GET", "/api/v1/mcptokens/introspect").auth(token))
    }
}

#[test]
fn misconfiguration_fails_closed_but_health_answers() {
    let a = api();
    let head = |path: &str| RequestHead {
        method: "GET".into(),
        path: path.into(),
        authorization: vec![format!("Bearer {ADMIN_KEY}")],
        ..Default::default()
    };
    for path in ["/api/v1/mcptokens", "/api/v1/mcptokens/introspect"] {
        let r = block_on(handle(
            &head(path),
            Chunks::of(b""),
            Err("max_ttl bad"),
            T0_MS,
            &a.db,
        ));
        assert_eq!(code(&r), (500, "internal".into()));
        assert!(!String::from_utf8_lossy(&r.body).contains("max_ttl"));
    }
    let r = block_on(handle(
        &head("/health"),
        Chunks::of(b""),
        Err("x"),
        T0_MS,
        &a.db,
    ));
    assert_eq!(r.status, 200);
}

#[test]
fn admin_creates_a_token_shown_once() {
    let a = api();
    let r = a.send(
        Req::new("POST", "/api/v1/mcptokens")
            .auth(ADMIN_KEY)
            .json(&json!({"name": "ci bot", "tenant": "acme"})),
    );
    assert_eq!(r.status, 201);
    let v = r.json_body().unwrap();
    let token = token_of(&v);
    assert_eq!(mcpgw_token::format::validate(&token), Ok(()));
    assert_eq!(v["hint"], mcpgw_token::format::hint(&token));
    assert!(token.starts_with(v["hint"].as_str().unwrap().trim_end_matches('…')));
    assert!(crate::ulid::is_token_id(&id_of(&v)));
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/mcptokens/{}", id_of(&v)).as_str())
    );
    let expected = json!({
        "id": id_of(&v),
        "name": "ci bot",
        "tenant": "acme",
        "project": "default",
        "scopes": ["mcp:*"],
        "status": "active",
        "hint": v["hint"],
        "created_by": "admin",
        "created_at": "2026-11-23T18:40:43Z",
        "expires_at": "2027-02-21T18:40:43Z",
        "revoked_at": null,
        "last_used_at": null,
        "rate_limit": null,
        "token": token,
    });
    assert_eq!(v, expected);
    // Never again: describe and list carry neither the token nor its hash.
    let sha = mcpgw_token::format::sha256_hex(&token);
    for r in [
        a.get(&format!("/api/v1/mcptokens/{}", id_of(&v)), ADMIN_KEY),
        a.get("/api/v1/mcptokens", ADMIN_KEY),
    ] {
        let text = String::from_utf8(r.body).unwrap();
        assert!(
            !text.contains(&token[11..]) && !text.contains(&sha),
            "{text}"
        );
        assert!(!text.contains("\"token\""), "{text}");
    }
    // Hashed at rest: the raw token is nowhere in the database.
    let stored = a.db.sql("SELECT token_sha FROM tokens", vec![]);
    assert_eq!(stored, vec![vec![SqlValue::Text(sha)]]);
}

#[test]
fn create_validates_every_field() {
    let a = api();
    let base = |extra: Value| {
        let mut b = json!({"name": "n", "tenant": "acme"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, want, says) in [
        (
            json!({"tenant": "acme"}),
            "invalid_name",
            "name is required",
        ),
        (base(json!({"name": ""})), "invalid_name", "empty"),
        (
            base(json!({"name": "x".repeat(65)})),
            "invalid_name",
            "limit is 64",
        ),
        (
            base(json!({"name": "bad\u{7}bell"})),
            "invalid_name",
            "control character",
        ),
        (json!({"name": "n"}), "invalid_tenant", "tenant is required"),
        (
            base(json!({"tenant": "_system"})),
            "invalid_tenant",
            "reserved",
        ),
        (
            base(json!({"tenant": "Acme"})),
            "invalid_tenant",
            "lower case",
        ),
        (
            base(json!({"project": "_internal"})),
            "invalid_project",
            "reserved",
        ),
        (base(json!({"project": "a/b"})), "invalid_project", "'/'"),
        (
            base(json!({"ttl": "forever"})),
            "invalid_ttl",
            "30d, 12h, 45m",
        ),
        (base(json!({"ttl": "0d"})), "invalid_ttl", "30d, 12h, 45m"),
        (
            base(json!({"ttl": "400d"})),
            "invalid_ttl",
            "max_ttl of 365d",
        ),
        (
            base(json!({"ttl": "never"})),
            "invalid_ttl",
            "max_ttl of 365d",
        ),
        (
            base(json!({"ttl": "2020-01-01"})),
            "invalid_ttl",
            "in the future",
        ),
        (
            base(json!({"expires_at": "tomorrow"})),
            "invalid_expires_at",
            "RFC 3339",
        ),
        (
            base(json!({"expires_at": "2026-11-23T18:40:43Z"})),
            "invalid_expires_at",
            "in the future",
        ),
        (
            base(json!({"ttl": "1d", "expires_at": "2027-01-01"})),
            "invalid_ttl",
            "not both",
        ),
        (
            base(json!({"scopes": ["mcp:"]})),
            "invalid_scopes",
            "invalid scope \"mcp:\"",
        ),
        (
            base(json!({"scopes": ["tokens:admin"]})),
            "invalid_scopes",
            "\"tokens:admin\"",
        ),
        (
            base(json!({"scopes": ["mcp:tools/list:x"]})),
            "invalid_scopes",
            "\"mcp:tools/list:x\"",
        ),
        (
            base(json!({"scopes": "mcp:*"})),
            "invalid_scopes",
            "array of strings",
        ),
        (
            base(json!({"rbac": "all"})),
            "invalid_rbac",
            "\"clone\" or \"empty\"",
        ),
        (
            base(json!({"rbac": "empty", "scopes": []})),
            "invalid_rbac",
            "not both",
        ),
        (
            base(json!({"rbac": "clone"})),
            "invalid_rbac",
            "admin key has none",
        ),
        (base(json!({"owner": "me"})), "unknown_field", "\"owner\""),
    ] {
        let (status, got, message) = a.create_err(ADMIN_KEY, body.clone());
        assert_eq!((status, got.as_str()), (400, want), "{body}: {message}");
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(
        a.db.sql("SELECT COUNT(*) FROM tokens", vec![]),
        vec![vec![SqlValue::Integer(0)]]
    );
}

#[test]
fn create_accepts_every_lifetime_form() {
    let a = api();
    let now = a.now();
    for (i, (field, value, exp)) in [
        ("ttl", "30d", Some(now + 30 * DAY)),
        ("ttl", "12h", Some(now + 12 * 3600)),
        ("ttl", "45m", Some(now + 45 * 60)),
        ("ttl", "2027-01-01", Some(1_798_761_600)),
        (
            "ttl",
            "2027-01-01T06:00:00+01:00",
            Some(1_798_761_600 + 5 * 3600),
        ),
        ("expires_at", "2027-03-01T00:00:00Z", Some(1_803_859_200)),
    ]
    .into_iter()
    .enumerate()
    {
        let v = a.create(
            ADMIN_KEY,
            json!({"name": format!("t{i}"), "tenant": "acme", field: value}),
        );
        let introspected = a.introspect(&token_of(&v));
        assert_eq!(introspected["exp"], json!(exp), "{field}={value}");
    }
    // `never` needs an operator who lifts max_ttl.
    let mut unlimited = api();
    unlimited.config.ttl.max = crate::ttl::Span::Never;
    let v = unlimited.create(
        ADMIN_KEY,
        json!({"name": "forever", "tenant": "acme", "ttl": "never"}),
    );
    assert_eq!(v["expires_at"], Value::Null);
    let i = unlimited.introspect(&token_of(&v));
    assert_eq!(
        (i["exp"].clone(), i["cache_ttl_s"].clone()),
        (Value::Null, json!(30))
    );
}

#[test]
fn media_type_and_size_limits() {
    let a = api();
    let body = br#"{"name":"n","tenant":"acme"}"#;
    let post = || Req::new("POST", "/api/v1/mcptokens").auth(ADMIN_KEY);
    assert_eq!(code(&a.send(post().raw(Some("text/plain"), body))).0, 415);
    assert_eq!(code(&a.send(post().raw(None, body))).0, 415);
    assert_eq!(
        a.send(post().raw(Some("application/json; charset=utf-8"), body))
            .status,
        201
    );
    let mut huge = br#"{"name":"n2","tenant":"acme","scopes":["#.to_vec();
    while huge.len() <= 64 * 1024 {
        huge.extend_from_slice(b"\"mcp:*\",");
    }
    huge.extend_from_slice(b"\"mcp:*\"]}");
    assert_eq!(
        code(&a.send(post().raw(Some("application/json"), &huge))),
        (413, "body_too_large".into())
    );
    assert_eq!(
        code(&a.send(post().raw(Some("application/json"), b"{nope"))),
        (400, "invalid_json".into())
    );
    // Revoke takes no body or a JSON one.
    let id = id_of(&a.create(ADMIN_KEY, json!({"name": "r", "tenant": "acme"})));
    let revoke = || Req::new("POST", "/api/v1/mcptokens/ID/revoke");
    let path = format!("/api/v1/mcptokens/{id}/revoke");
    let r = a.send(Req {
        target: &path,
        ..revoke().auth(ADMIN_KEY).raw(Some("text/plain"), b"x")
    });
    assert_eq!(r.status, 415);
    let r = a.send(Req {
        target: &path,
        ..revoke().auth(ADMIN_KEY).json(&json!({"reason": "rotated"}))
    });
    assert_eq!(r.status, 200);
}

#[test]
fn names_are_unique_among_live_tokens() {
    let a = api();
    let first = a.create(ADMIN_KEY, json!({"name": "deploy", "tenant": "acme"}));
    let (status, c, message) = a.create_err(ADMIN_KEY, json!({"name": "deploy", "tenant": "acme"}));
    assert_eq!((status, c.as_str()), (409, "name_taken"));
    assert!(message.contains(&id_of(&first)), "{message}");
    a.create(
        ADMIN_KEY,
        json!({"name": "deploy", "tenant": "acme", "project": "web"}),
    );
    a.create(ADMIN_KEY, json!({"name": "deploy", "tenant": "globex"}));
    assert_eq!(a.revoke(ADMIN_KEY, &id_of(&first)).status, 200);
    a.create(ADMIN_KEY, json!({"name": "deploy", "tenant": "acme"}));
}

#[test]
fn introspect_reports_each_state() {
    let a = api();
    let v = a.create(ADMIN_KEY, json!({"name": "n", "tenant": "acme", "project": "web", "ttl": "1h", "scopes": ["mcp:tools/list", "mcp:tools/call:search_*"]}));
    let token = token_of(&v);
    let iat = a.now();
    assert_eq!(
        a.introspect(&token),
        json!({
            "active": true,
            "token_id": id_of(&v),
            "name": "n",
            "tenant": "acme",
            "project": "web",
            "scopes": ["mcp:tools/list", "mcp:tools/call:search_*"],
            "exp": iat + 3600,
            "iat": iat,
            "cache_ttl_s": 30,
            "rate_limit": null,
        })
    );
    // Close to expiry the cache lifetime shrinks so no cache outlives the token.
    a.advance(3600 - 7);
    assert_eq!(a.introspect(&token)["cache_ttl_s"], 7);
    a.advance(7);
    assert_eq!(
        a.introspect(&token),
        json!({"active": false, "reason": "expired"})
    );

    let live = token_of(&a.create(ADMIN_KEY, json!({"name": "m", "tenant": "acme"})));
    let id = a.introspect(&live)["token_id"].as_str().unwrap().to_owned();
    assert_eq!(a.revoke(ADMIN_KEY, &id).status, 200);
    assert_eq!(
        a.introspect(&live),
        json!({"active": false, "reason": "revoked"})
    );

    let stranger = mcpgw_token::format::generate().unwrap();
    assert_eq!(
        a.introspect(&stranger),
        json!({"active": false, "reason": "unknown"})
    );
    assert_eq!(
        a.introspect(ADMIN_KEY),
        json!({"active": false, "reason": "malformed"})
    );

    let r = a.send(Req::new("GET", "/api/v1/mcptokens/introspect"));
    assert_eq!(code(&r), (401, "unauthorized".into()));
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let r = a.send(Req::new(
        "GET",
        &format!("/api/v1/mcptokens/introspect?access_token={live}"),
    ));
    assert_eq!(code(&r).0, 400, "a token in the query string is never read");
}

#[test]
fn malformed_tokens_cost_no_query() {
    let a = Api::with_db(Counting {
        inner: AnyTestDb::fresh(dialect()),
        statements: Cell::new(0),
    });
    let mut token = mcpgw_token::format::generate().unwrap();
    // Change the last checksum character to a different one (never back to itself).
    let last = token.pop();
    token.push(if last == Some('0') { '1' } else { '0' });
    for bad in [token.as_str(), "mcpctl_pat_short", "hello"] {
        assert_eq!(
            a.introspect(bad),
            json!({"active": false, "reason": "malformed"})
        );
    }
    assert_eq!(a.db.statements.get(), 0);
    // A well-formed one is a single lookup once the schema exists.
    a.introspect(&mcpgw_token::format::generate().unwrap());
    let before = a.db.statements.get();
    a.introspect(&mcpgw_token::format::generate().unwrap());
    assert_eq!(a.db.statements.get() - before, 1);
}

#[test]
fn last_used_at_moves_at_most_once_a_minute() {
    let a = api();
    let v = a.create(ADMIN_KEY, json!({"name": "n", "tenant": "acme"}));
    let (token, path) = (token_of(&v), format!("/api/v1/mcptokens/{}", id_of(&v)));
    let last_used = || a.get(&path, ADMIN_KEY).json_body().unwrap()["last_used_at"].clone();
    assert_eq!(last_used(), Value::Null);
    a.introspect(&token);
    assert_eq!(last_used(), "2026-11-23T18:40:43Z");
    a.advance(59);
    a.introspect(&token);
    assert_eq!(last_used(), "2026-11-23T18:40:43Z");
    a.advance(1);
    a.introspect(&token);
    assert_eq!(last_used(), "2026-11-23T18:41:43Z");
}

#[test]
fn management_auth() {
    let a = api();
    for (auth, says) in [
        (None, "missing credential"),
        (Some("wrong key"), "neither the admin key nor a token"),
        (Some("mcpctl_pat_nope"), "malformed"),
    ] {
        let mut req = Req::new("GET", "/api/v1/mcptokens");
        req.auth = auth;
        let r = a.send(req);
        assert_eq!(code(&r), (401, "unauthorized".into()), "{auth:?}");
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm="));
        assert!(String::from_utf8_lossy(&r.body).contains(says));
    }
    let unknown = mcpgw_token::format::generate().unwrap();
    assert_eq!(code(&a.get("/api/v1/mcptokens", &unknown)).0, 401);

    // A token without tokens:* scopes cannot manage anything.
    let plain = token_of(&a.create(ADMIN_KEY, json!({"name": "plain", "tenant": "acme"})));
    let r = a.get("/api/v1/mcptokens", &plain);
    assert_eq!(code(&r), (403, "insufficient_scope".into()));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("scope=\"tokens:read\""));
    // tokens:write does not imply tokens:read, nor the reverse.
    let writer = token_of(&a.create(
        ADMIN_KEY,
        json!({"name": "w", "tenant": "acme", "scopes": ["tokens:write"]}),
    ));
    assert_eq!(code(&a.get("/api/v1/mcptokens", &writer)).0, 403);
    let reader = a.create(
        ADMIN_KEY,
        json!({"name": "r", "tenant": "acme", "scopes": ["tokens:read"]}),
    );
    assert_eq!(a.get("/api/v1/mcptokens", &token_of(&reader)).status, 200);
    let (status, c, message) =
        a.create_err(&token_of(&reader), json!({"name": "x", "tenant": "acme"}));
    assert_eq!((status, c.as_str()), (403, "insufficient_scope"));
    assert!(message.contains("\"tokens:write\""));
    // Revoked and expired tokens stop working for management at once.
    assert_eq!(a.revoke(ADMIN_KEY, &id_of(&reader)).status, 200);
    let r = a.get("/api/v1/mcptokens", &token_of(&reader));
    assert_eq!(code(&r).0, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("revoked"));
    let short = token_of(&a.create(
        ADMIN_KEY,
        json!({"name": "s", "tenant": "acme", "ttl": "1m", "scopes": ["tokens:read"]}),
    ));
    assert_eq!(a.get("/api/v1/mcptokens", &short).status, 200);
    a.advance(60);
    assert_eq!(code(&a.get("/api/v1/mcptokens", &short)).0, 401);
}

/// A token managing tokens: its own tenant + project, its own scopes at most.
#[test]
fn tokens_manage_only_their_tenant_within_their_ceiling() {
    let a = api();
    let manager = a.create(
        ADMIN_KEY,
        json!({"name": "mgr", "tenant": "acme", "project": "web",
               "scopes": ["tokens:read", "tokens:write", "mcp:tools/list", "mcp:tools/call:search_*"]}),
    );
    let mgr = token_of(&manager);
    let globex = a.create(ADMIN_KEY, json!({"name": "g", "tenant": "globex"}));
    let acme_other_project = a.create(ADMIN_KEY, json!({"name": "o", "tenant": "acme"}));

    // Explicit scopes within the ceiling bind exactly; project defaults to the creator's.
    let child = a.create(
        &mgr,
        json!({"name": "c1", "tenant": "acme", "scopes": ["mcp:tools/call:search_web"]}),
    );
    assert_eq!(child["project"], "web");
    assert_eq!(child["scopes"], json!(["mcp:tools/call:search_web"]));
    assert_eq!(child["created_by"], format!("token:{}", id_of(&manager)));
    // Wildcards inside the ceiling's wildcard are covered too.
    let c = a.create(&mgr, json!({"name": "c2", "tenant": "acme", "scopes": ["mcp:tools/call:search_*_v2", "mcp:tools/list"]}));
    assert_eq!(
        c["scopes"],
        json!(["mcp:tools/call:search_*_v2", "mcp:tools/list"])
    );
    // clone copies, empty grants nothing beyond lifecycle traffic.
    let cloned = a.create(
        &mgr,
        json!({"name": "c3", "tenant": "acme", "rbac": "clone"}),
    );
    assert_eq!(cloned["scopes"], manager["scopes"]);
    let empty = a.create(
        &mgr,
        json!({"name": "c4", "tenant": "acme", "rbac": "empty"}),
    );
    assert_eq!(empty["scopes"], json!([]));

    // Beyond the ceiling: 403 naming the scope, suggesting clone, audited.
    for (scopes, offending) in [
        (json!(null), "mcp:*"),
        (json!(["mcp:tools/call:*"]), "mcp:tools/call:*"),
        (
            json!(["mcp:tools/list", "mcp:resources/read"]),
            "mcp:resources/read",
        ),
        (json!(["mcp:tools/call"]), "mcp:tools/call"),
    ] {
        let mut body = json!({"name": "over", "tenant": "acme"});
        if !scopes.is_null() {
            body["scopes"] = scopes;
        }
        let (status, c, message) = a.create_err(&mgr, body);
        assert_eq!(
            (status, c.as_str()),
            (403, "scope_exceeds_ceiling"),
            "{message}"
        );
        assert!(message.contains(&format!("{offending:?}")), "{message}");
        assert!(message.contains("\"rbac\": \"clone\""), "{message}");
    }
    // Other tenant or project: tenant_mismatch, audited as well.
    for body in [
        json!({"name": "x", "tenant": "globex"}),
        json!({"name": "x", "tenant": "acme", "project": "default"}),
    ] {
        assert_eq!(a.create_err(&mgr, body).1, "tenant_mismatch");
    }
    let audit = a.get("/api/v1/audit?event=x", ADMIN_KEY);
    assert_eq!(code(&audit).1, "unknown_parameter");
    let audit = a
        .get("/api/v1/audit?tenant=acme&project=web", ADMIN_KEY)
        .json_body()
        .unwrap();
    let denied: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "denied_create")
        .collect();
    assert_eq!(denied.len(), 6);
    let sha = mcpgw_token::format::sha256_hex(&mgr);
    assert!(denied
        .iter()
        .all(|e| e["actor"] == format!("McpToken:{sha}")));
    assert_eq!(
        denied.last().unwrap()["detail"],
        json!({"reason": "scope_exceeds_ceiling", "scope": "mcp:*"})
    );

    // Listing is confined, and asking for elsewhere is refused.
    let list = a.get("/api/v1/mcptokens", &mgr).json_body().unwrap();
    let tenants: HashSet<(String, String)> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().unwrap().into(),
                t["project"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(tenants, HashSet::from([("acme".into(), "web".into())]));
    assert_eq!(list["tokens"].as_array().unwrap().len(), 5);
    for q in [
        "tenant=globex",
        "project=default",
        "tenant=acme&project=default",
    ] {
        let r = a.get(&format!("/api/v1/mcptokens?{q}"), &mgr);
        assert_eq!(code(&r), (403, "tenant_mismatch".into()), "{q}");
    }
    assert_eq!(
        a.get("/api/v1/mcptokens?tenant=acme&project=web", &mgr)
            .status,
        200
    );
    assert_eq!(
        code(&a.get("/api/v1/audit?tenant=globex", &mgr)).1,
        "tenant_mismatch"
    );

    // Other tenants' tokens do not exist for it: 404, and they stay intact.
    for other in [&globex, &acme_other_project] {
        let path = format!("/api/v1/mcptokens/{}", id_of(other));
        assert_eq!(code(&a.get(&path, &mgr)), (404, "not_found".into()));
        assert_eq!(code(&a.revoke(&mgr, &id_of(other))).0, 404);
        assert_eq!(code(&a.send(Req::new("DELETE", &path).auth(&mgr))).0, 404);
        assert_eq!(a.introspect(&token_of(other))["active"], true);
    }
    // Its own: fine.
    assert_eq!(a.revoke(&mgr, &id_of(&child)).status, 200);
    let own_audit = a.get("/api/v1/audit", &mgr).json_body().unwrap();
    assert!(own_audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant"] == "acme" && e["project"] == "web"));
}

#[test]
fn scopes_are_canonical_and_deduplicated() {
    let a = api();
    let v = a.create(
        ADMIN_KEY,
        json!({"name": "n", "tenant": "acme", "scopes": ["mcp:tools/list", "tokens:read", "mcp:tools/list"]}),
    );
    assert_eq!(v["scopes"], json!(["mcp:tools/list", "tokens:read"]));
}

#[test]
fn describe_revoke_delete_lifecycle() {
    let a = api();
    let v = a.create(ADMIN_KEY, json!({"name": "n", "tenant": "acme"}));
    let (id, token) = (id_of(&v), token_of(&v));
    let path = format!("/api/v1/mcptokens/{id}");
    let described = a.get(&path, ADMIN_KEY).json_body().unwrap();
    let mut expected = v.clone();
    expected.as_object_mut().unwrap().remove("token");
    // Describe adds where the token stands in revocation cascades.
    expected["revoked_via"] = Value::Null;
    expected["cascade_revoked"] = json!(0);
    assert_eq!(described, expected);

    a.advance(5);
    let r = a.revoke(ADMIN_KEY, &id);
    assert_eq!(r.status, 200);
    let revoked = r.json_body().unwrap();
    assert_eq!(
        (revoked["status"].clone(), revoked["revoked_at"].clone()),
        (json!("revoked"), json!("2026-11-23T18:40:48Z"))
    );
    a.advance(5);
    // Idempotent: same answer, no second feed entry.
    assert_eq!(a.revoke(ADMIN_KEY, &id).json_body().unwrap(), revoked);
    let feed = a
        .send(Req::new("GET", "/api/v1/mcptokens/revocations"))
        .json_body()
        .unwrap();
    assert_eq!(
        feed["revoked"],
        json!([mcpgw_token::format::sha256_hex(&token)])
    );

    // Revoked tokens are listed only on request.
    let list = |q: &str| {
        a.get(&format!("/api/v1/mcptokens{q}"), ADMIN_KEY)
            .json_body()
            .unwrap()["tokens"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((list(""), list("?include_revoked=true")), (0, 1));

    let r = a.send(Req::new("DELETE", &path).auth(ADMIN_KEY));
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(
        code(&a.send(Req::new("DELETE", &path).auth(ADMIN_KEY))),
        (404, "not_found".into())
    );
    assert_eq!(code(&a.get(&path, ADMIN_KEY)).0, 404);
    assert_eq!(code(&a.revoke(ADMIN_KEY, &id)).0, 404);
    assert_eq!(
        a.introspect(&token),
        json!({"active": false, "reason": "unknown"})
    );
    // Ids that cannot exist are 404 too, without a lookup.
    assert_eq!(code(&a.get("/api/v1/mcptokens/tok_nope", ADMIN_KEY)).0, 404);

    let events = a
        .get(&format!("/api/v1/audit?token_id={id}"), ADMIN_KEY)
        .json_body()
        .unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deleted", "revoked", "created"]);
    let created = &events["events"][2];
    assert_eq!(
        created["token_sha"],
        mcpgw_token::format::sha256_hex(&token)
    );
    assert_eq!(created["token_name"], "n");
    assert_eq!(created["actor"], "admin");
    assert_eq!(created["at"], "2026-11-23T18:40:43Z");
    assert_eq!(created["detail"]["scopes"], json!(["mcp:*"]));
    assert_eq!(
        code(&a.get("/api/v1/audit?token_id=nope", ADMIN_KEY)).1,
        "invalid_token_id"
    );
}

impl<D: Db> Api<D> {
    fn feed(&self, query: &str) -> Value {
        let r = self.send(Req::new(
            "GET",
            &format!("/api/v1/mcptokens/revocations{query}"),
        ));
        assert_eq!(
            r.status,
            200,
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json_body().unwrap()
    }

    /// This database's feed epoch, from the head cursor.
    fn epoch(&self) -> String {
        let head = self.feed("?since=now");
        head["cursor"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned()
    }
}

fn sha_of(v: &Value) -> String {
    mcpgw_token::format::sha256_hex(&token_of(v))
}

#[test]
fn revocations_feed_order_cursor_and_paging() {
    let a = api();
    let e = a.epoch();
    assert_eq!(e.len(), 16);
    let at = |seq: u64| format!("{e}.{seq}");
    assert_eq!(
        a.feed(""),
        json!({"cursor": at(0), "revoked": [], "more": false, "reset": false})
    );
    let mut shas = Vec::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        let v = a.create(
            ADMIN_KEY,
            json!({"name": format!("t{i}"), "tenant": "acme"}),
        );
        shas.push(sha_of(&v));
        ids.push(id_of(&v));
    }
    a.revoke(ADMIN_KEY, &ids[2]);
    a.revoke(ADMIN_KEY, &ids[0]);
    let head = a.feed("?since=now");
    assert_eq!(
        head,
        json!({"cursor": at(2), "revoked": [], "more": false, "reset": false})
    );
    a.send(Req::new("DELETE", &format!("/api/v1/mcptokens/{}", ids[3])).auth(ADMIN_KEY));
    // Deleting an already revoked token adds nothing.
    a.send(Req::new("DELETE", &format!("/api/v1/mcptokens/{}", ids[2])).auth(ADMIN_KEY));
    assert_eq!(
        a.feed(""),
        json!({"cursor": at(3), "revoked": [shas[2], shas[0], shas[3]], "more": false, "reset": false})
    );
    assert_eq!(
        a.feed(&format!("?since={}", at(2))),
        json!({"cursor": at(3), "revoked": [shas[3]], "more": false, "reset": false})
    );
    assert_eq!(
        a.feed(&format!("?since={}", at(3))),
        json!({"cursor": at(3), "revoked": [], "more": false, "reset": false})
    );
    for bad in [
        "?since=-1",
        "?since=abc",
        "?since=1&since=2",
        "?cursor=1",
        "?since=AB.1",
    ] {
        let r = a.send(Req::new(
            "GET",
            &format!("/api/v1/mcptokens/revocations{bad}"),
        ));
        assert_eq!(r.status, 400, "{bad}");
    }

    // Pages of 1000: `more` says when to call again, cursors chain without gaps.
    for i in 0..1_500 {
        a.db.sql(
            "INSERT INTO revocations (token_sha, at) VALUES (?, ?)",
            vec![format!("{i:064x}").into(), a.now().into()],
        );
    }
    let first = a.feed(&format!("?since={}", at(3)));
    assert_eq!(first["revoked"].as_array().unwrap().len(), 1_000);
    assert_eq!(
        (first["cursor"].clone(), first["more"].clone()),
        (json!(at(1003)), json!(true))
    );
    let second = a.feed(&format!("?since={}", at(1003)));
    assert_eq!(second["revoked"].as_array().unwrap().len(), 500);
    assert_eq!(
        (second["cursor"].clone(), second["more"].clone()),
        (json!(at(1503)), json!(false))
    );
    assert_eq!(second["revoked"][0], format!("{:064x}", 1000));
}

/// A cursor the feed cannot continue is a reset, never a silent gap.
#[test]
fn cursors_the_feed_cannot_continue_get_a_reset_with_the_head() {
    let a = api();
    let e = a.epoch();
    for i in 0..3 {
        let v = a.create(
            ADMIN_KEY,
            json!({"name": format!("t{i}"), "tenant": "acme"}),
        );
        a.revoke(ADMIN_KEY, &id_of(&v));
    }
    let reset = json!({"cursor": format!("{e}.3"), "revoked": [], "more": false, "reset": true});
    for (what, since) in [
        ("another database's epoch", "0123456789abcdef.1".to_owned()),
        ("past the head (a restored database)", format!("{e}.4")),
        ("far past the head", format!("{e}.9223372036854775807")),
        ("a plain number from before epochs", "2".to_owned()),
        ("a plain number past the head", "99".to_owned()),
    ] {
        assert_eq!(a.feed(&format!("?since={since}")), reset, "{what}");
    }
    // The cursor a reset hands out works.
    assert_eq!(a.feed(&format!("?since={e}.3"))["reset"], false);
}

/// Writes prune what is older than `feed_retention`; a cursor from before
/// the horizon is a reset, a cursor after it still reads every entry.
#[test]
fn pruning_keeps_recent_entries_and_resets_cursors_older_than_the_horizon() {
    let mut a = api();
    a.config.feed_retention_s = Some(3_600);
    let e = a.epoch();
    let revoke_new = |a: &Api, name: &str| {
        let v = a.create(ADMIN_KEY, json!({"name": name, "tenant": "acme"}));
        a.revoke(ADMIN_KEY, &id_of(&v));
        sha_of(&v)
    };
    let old = revoke_new(&a, "old");
    a.advance(1_800);
    let recent = revoke_new(&a, "recent");
    a.advance(1_801);
    // This write is 3601 s after the first: that entry goes, the rest stays.
    let newest = revoke_new(&a, "newest");
    assert_eq!(
        a.feed(""),
        json!({"cursor": format!("{e}.3"), "revoked": [recent, newest], "more": false, "reset": false})
    );
    assert_eq!(
        a.feed(&format!("?since={e}.1"))["revoked"],
        json!([recent, newest]),
        "a cursor at the horizon misses nothing"
    );
    assert_eq!(
        a.feed(&format!("?since={e}.0")),
        json!({"cursor": format!("{e}.3"), "revoked": [], "more": false, "reset": true}),
        "the entry after this cursor ({old}) was pruned"
    );
}

#[test]
fn a_token_cannot_mint_a_token_that_outlives_it() {
    let a = api();
    let creator = a.create(
        ADMIN_KEY,
        json!({"name": "ci", "tenant": "acme", "ttl": "1h",
               "scopes": ["tokens:write", "tokens:read", "mcp:*"]}),
    );
    let ci = token_of(&creator);
    let limit = creator["expires_at"].as_str().unwrap().to_owned();
    for (body, asked) in [
        (
            json!({"ttl": "365d", "rbac": "clone"}),
            "2027-11-23T18:40:43Z",
        ),
        (json!({"ttl": "61m"}), "2026-11-23T19:41:43Z"),
        (
            json!({"expires_at": "2026-11-23T19:40:44Z"}),
            "2026-11-23T19:40:44Z",
        ),
    ] {
        let mut body = body;
        body["name"] = json!("child");
        body["tenant"] = json!("acme");
        let (status, c, message) = a.create_err(&ci, body.clone());
        assert_eq!(
            (status, c.as_str()),
            (403, "expiry_exceeds_creator"),
            "{body}"
        );
        assert!(
            message.contains(asked) && message.contains(&limit),
            "{message}"
        );
    }
    // Up to the creator's own expiry is fine; without a lifetime asked for,
    // the default (90 days) stops there.
    a.advance(1);
    let child = a.create(
        &ci,
        json!({"name": "child", "tenant": "acme", "ttl": "59m", "rbac": "clone"}),
    );
    assert_eq!(child["expires_at"], "2026-11-23T19:39:44Z");
    let defaulted = a.create(&ci, json!({"name": "defaulted", "tenant": "acme"}));
    assert_eq!(defaulted["expires_at"], json!(limit));
    // A grandchild is bound by the same instant, through its parent.
    let (status, c, _) = a.create_err(
        &token_of(&child),
        json!({"name": "grandchild", "tenant": "acme", "ttl": "2h"}),
    );
    assert_eq!((status, c.as_str()), (403, "expiry_exceeds_creator"));

    // Denials are audited under the creator's tenant + project.
    let audit = a
        .get("/api/v1/audit?tenant=acme", ADMIN_KEY)
        .json_body()
        .unwrap();
    let denied: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "denied_create")
        .collect();
    assert_eq!(denied.len(), 4);
    assert_eq!(denied[0]["detail"]["reason"], "expiry_exceeds_creator");
    assert_eq!(denied[3]["detail"]["creator_expires_at"], json!(limit));
    assert_eq!(denied[3]["detail"]["expires_at"], "2027-11-23T18:40:43Z");

    // A creator that never expires imposes no limit (within max_ttl).
    let mut a = api();
    a.config.ttl.max = crate::ttl::Span::Never;
    let forever = token_of(&a.create(
        ADMIN_KEY,
        json!({"name": "svc", "tenant": "acme", "ttl": "never", "scopes": ["tokens:write"]}),
    ));
    let c = a.create(
        &forever,
        json!({"name": "c", "tenant": "acme", "ttl": "never", "rbac": "empty"}),
    );
    assert_eq!(c["expires_at"], Value::Null);
}

#[test]
fn revoking_a_token_revokes_what_it_minted_transitively() {
    let a = api();
    let root = a.create(
        ADMIN_KEY,
        json!({"name": "root", "tenant": "acme", "scopes": ["tokens:write", "mcp:*"]}),
    );
    a.advance(1);
    let child = a.create(
        &token_of(&root),
        json!({"name": "child", "tenant": "acme", "rbac": "clone"}),
    );
    // Created a second apart: descendants are revoked oldest first.
    a.advance(1);
    let grandchild = a.create(
        &token_of(&child),
        json!({"name": "grandchild", "tenant": "acme", "scopes": ["mcp:tools/list"]}),
    );
    let other = a.create(ADMIN_KEY, json!({"name": "other", "tenant": "acme"}));
    let since = a.feed("?since=now")["cursor"].as_str().unwrap().to_owned();

    a.advance(7);
    let r = a.send(
        Req::new(
            "POST",
            &format!("/api/v1/mcptokens/{}/revoke", id_of(&root)),
        )
        .auth(ADMIN_KEY)
        .json(&json!({"reason": "laptop lost"})),
    );
    assert_eq!(r.status, 200);
    let view = r.json_body().unwrap();
    assert_eq!(
        (view["status"].clone(), view["cascade_revoked"].clone()),
        (json!("revoked"), json!(2))
    );

    for t in [&root, &child, &grandchild] {
        assert_eq!(
            a.introspect(&token_of(t)),
            json!({"active": false, "reason": "revoked"})
        );
    }
    assert_eq!(a.introspect(&token_of(&other))["active"], true);
    assert_eq!(
        a.feed(&format!("?since={since}"))["revoked"],
        json!([sha_of(&root), sha_of(&child), sha_of(&grandchild)])
    );

    // describe: the parent (`created_by`), and the cascade on both ends.
    let describe = |v: &Value| {
        a.get(&format!("/api/v1/mcptokens/{}", id_of(v)), ADMIN_KEY)
            .json_body()
            .unwrap()
    };
    let g = describe(&grandchild);
    assert_eq!(g["created_by"], format!("token:{}", id_of(&child)));
    assert_eq!(g["revoked_via"], json!(id_of(&root)));
    assert_eq!(g["revoked_at"], "2026-11-23T18:40:52Z");
    assert_eq!(describe(&root)["cascade_revoked"], 2);
    assert_eq!(describe(&root)["revoked_via"], Value::Null);

    // The audit log tells the story, one event per token.
    let events = a
        .get("/api/v1/audit?tenant=acme", ADMIN_KEY)
        .json_body()
        .unwrap()["events"]
        .as_array()
        .unwrap()
        .clone();
    let revoked: Vec<&Value> = events.iter().filter(|e| e["event"] == "revoked").collect();
    assert_eq!(revoked.len(), 3);
    let of = |v: &Value| *revoked.iter().find(|e| e["token_id"] == id_of(v)).unwrap();
    assert_eq!(
        of(&root)["detail"],
        json!({"reason": "laptop lost", "cascaded": 2})
    );
    assert_eq!(
        of(&grandchild)["detail"],
        json!({"reason": "laptop lost", "cascade": {"via": id_of(&root), "parent": id_of(&child)}})
    );
    assert!(revoked.iter().all(|e| e["actor"] == "admin"));
}

#[test]
fn deleting_a_token_revokes_what_it_minted() {
    let a = api();
    let parent = a.create(
        ADMIN_KEY,
        json!({"name": "parent", "tenant": "acme", "scopes": ["tokens:write", "mcp:*"]}),
    );
    let child = a.create(
        &token_of(&parent),
        json!({"name": "child", "tenant": "acme"}),
    );
    let r = a
        .send(Req::new("DELETE", &format!("/api/v1/mcptokens/{}", id_of(&parent))).auth(ADMIN_KEY));
    assert_eq!(r.status, 204);
    assert_eq!(a.introspect(&token_of(&child))["reason"], "revoked");
    let c = a
        .get(&format!("/api/v1/mcptokens/{}", id_of(&child)), ADMIN_KEY)
        .json_body()
        .unwrap();
    assert_eq!(c["revoked_via"], json!(id_of(&parent)));
    assert_eq!(
        a.feed("")["revoked"],
        json!([sha_of(&parent), sha_of(&child)])
    );
}

#[test]
fn a_token_revokes_or_deletes_only_tokens_its_scopes_cover() {
    let a = api();
    let narrow = a.create(
        ADMIN_KEY,
        json!({"name": "narrow", "tenant": "acme", "project": "web",
               "scopes": ["tokens:write", "tokens:read", "mcp:tools/list"]}),
    );
    let n = token_of(&narrow);
    let broad = a.create(
        ADMIN_KEY,
        json!({"name": "broad", "tenant": "acme", "project": "web"}),
    );
    let writer = a.create(
        ADMIN_KEY,
        json!({"name": "writer", "tenant": "acme", "project": "web", "scopes": ["tokens:write"]}),
    );
    let covered = a.create(
        ADMIN_KEY,
        json!({"name": "covered", "tenant": "acme", "project": "web", "scopes": ["mcp:tools/list"]}),
    );

    let path = |v: &Value| format!("/api/v1/mcptokens/{}", id_of(v));
    let r = a.revoke(&n, &id_of(&broad));
    assert_eq!(code(&r), (403, "scope_exceeds_ceiling".into()));
    let message = r.json_body().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("\"mcp:*\"") && message.contains(&id_of(&broad)),
        "{message}"
    );
    let r = a.send(Req::new("DELETE", &path(&broad)).auth(&n));
    assert_eq!(code(&r), (403, "scope_exceeds_ceiling".into()));
    // Not even a token holding only tokens:write: it does not cover tokens:read.
    assert_eq!(code(&a.revoke(&token_of(&writer), &id_of(&narrow))).0, 403);
    assert_eq!(a.introspect(&token_of(&broad))["active"], true);
    assert_eq!(a.feed("")["revoked"], json!([]));

    // Refusals are audited, with the scope that was not covered.
    let events = a
        .get("/api/v1/audit?tenant=acme&project=web", ADMIN_KEY)
        .json_body()
        .unwrap()["events"]
        .as_array()
        .unwrap()
        .clone();
    let kinds: Vec<&str> = events
        .iter()
        .take(3)
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["denied_revoke", "denied_delete", "denied_revoke"]);
    assert_eq!(events[1]["token_id"], json!(id_of(&broad)));
    assert_eq!(events[1]["actor"], format!("McpToken:{}", sha_of(&narrow)));
    assert_eq!(
        events[1]["detail"],
        json!({"reason": "scope_exceeds_ceiling", "scope": "mcp:*"})
    );
    assert_eq!(events[0]["detail"]["scope"], "tokens:read");

    // Within its scopes: fine, and a token may always revoke itself.
    assert_eq!(a.revoke(&n, &id_of(&covered)).status, 200);
    assert_eq!(
        a.send(Req::new("DELETE", &path(&covered)).auth(&n)).status,
        204
    );
    assert_eq!(a.revoke(&n, &id_of(&narrow)).status, 200);
    // The admin reaches everything.
    assert_eq!(a.revoke(ADMIN_KEY, &id_of(&broad)).status, 200);
}

#[test]
fn list_paginates_over_http() {
    let a = api();
    for i in 0..120 {
        a.create(ADMIN_KEY, json!({"name": format!("t{i:03}"), "tenant": if i % 2 == 0 { "acme" } else { "globex" }}));
        // Many per second: within a second, the id's millisecond time orders them.
        a.advance_ms(if i % 25 == 0 { 1000 } else { 1 });
    }
    let mut names = Vec::new();
    let mut target = "/api/v1/mcptokens?tenant=acme&limit=7".to_owned();
    loop {
        let page = a.get(&target, ADMIN_KEY).json_body().unwrap();
        let tokens = page["tokens"].as_array().unwrap();
        assert!(tokens.len() <= 7);
        names.extend(
            tokens
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => target = format!("/api/v1/mcptokens?tenant=acme&limit=7&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..120)
        .rev()
        .filter(|i| i % 2 == 0)
        .map(|i| format!("t{i:03}"))
        .collect();
    assert_eq!(names, expected, "newest first, every token once");
    let all = a.get("/api/v1/mcptokens", ADMIN_KEY).json_body().unwrap();
    assert_eq!(all["tokens"].as_array().unwrap().len(), 50);
    assert!(all["next_cursor"].is_string());
    for (q, want) in [
        ("?cursor=zz", "invalid_cursor"),
        ("?limit=0", "invalid_limit"),
        ("?limit=501", "invalid_limit"),
        ("?include_revoked=maybe", "invalid_include_revoked"),
        ("?tenant=_x", "invalid_tenant"),
        ("?sort=name", "unknown_parameter"),
    ] {
        assert_eq!(
            code(&a.get(&format!("/api/v1/mcptokens{q}"), ADMIN_KEY)),
            (400, want.into()),
            "{q}"
        );
    }
    let audit_cursor = a
        .get("/api/v1/audit?limit=1", ADMIN_KEY)
        .json_body()
        .unwrap()["next_cursor"]
        .clone();
    let r = a.get(
        &format!(
            "/api/v1/mcptokens?cursor={}",
            audit_cursor.as_str().unwrap()
        ),
        ADMIN_KEY,
    );
    assert_eq!(
        code(&r).1,
        "invalid_cursor",
        "an audit cursor is not a list cursor"
    );
}

#[test]
fn audit_pages_newest_first() {
    let a = api();
    for i in 0..9 {
        a.create(
            ADMIN_KEY,
            json!({"name": format!("t{i}"), "tenant": "acme"}),
        );
    }
    let mut names = Vec::new();
    let mut target = "/api/v1/audit?limit=4".to_owned();
    loop {
        let page = a.get(&target, ADMIN_KEY).json_body().unwrap();
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["event"], "created");
            names.push(e["token_name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => target = format!("/api/v1/audit?limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        names,
        (0..9).rev().map(|i| format!("t{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        code(&a.get("/api/v1/audit?cursor=00", ADMIN_KEY)).1,
        "invalid_cursor"
    );
}

#[test]
fn unknown_routes_and_methods() {
    let a = api();
    let r = a.send(Req::new("GET", "/api/v2/tokens"));
    assert_eq!(code(&r), (404, "not_found".into()));
    let r = a.send(Req::new("PATCH", "/api/v1/mcptokens").auth(ADMIN_KEY));
    assert_eq!(code(&r), (405, "method_not_allowed".into()));
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = a.send(Req::new("DELETE", "/health"));
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[test]
fn several_instances_share_one_database() {
    let (one, two, _dir) = AnyTestDb::shared_pair(dialect());
    let (one, two) = (Api::with_db(one), Api::with_db(two));
    let v = one.create(ADMIN_KEY, json!({"name": "n", "tenant": "acme"}));
    assert_eq!(two.introspect(&token_of(&v))["active"], true);
    assert_eq!(
        two.create_err(ADMIN_KEY, json!({"name": "n", "tenant": "acme"}))
            .1,
        "name_taken"
    );
    assert_eq!(two.revoke(ADMIN_KEY, &id_of(&v)).status, 200);
    assert_eq!(one.introspect(&token_of(&v))["reason"], "revoked");
}

#[test]
fn list_filters_by_status() {
    let a = api();
    let soon = a.create(
        ADMIN_KEY,
        json!({"name": "soon", "tenant": "acme", "ttl": "1h"}),
    );
    let live = a.create(ADMIN_KEY, json!({"name": "live", "tenant": "acme"}));
    let gone = a.create(ADMIN_KEY, json!({"name": "gone", "tenant": "acme"}));
    assert_eq!(a.revoke(ADMIN_KEY, &id_of(&gone)).status, 200);
    a.advance(3_600);
    let names = |q: &str| {
        let r = a.get(&format!("/api/v1/mcptokens?tenant=acme{q}"), ADMIN_KEY);
        assert_eq!(r.status, 200, "{q}");
        r.json_body().unwrap()["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap().to_owned(), t["status"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names("&status=active"), [("live".into(), json!("active"))]);
    assert_eq!(
        names("&status=expired"),
        [("soon".into(), json!("expired"))]
    );
    assert_eq!(
        names("&status=revoked"),
        [("gone".into(), json!("revoked"))]
    );
    assert_eq!(names("").len(), 2);
    assert_eq!(names("&include_revoked=true").len(), 3);
    let _ = (soon, live);
    for (q, want) in [
        ("?status=all", "invalid_status"),
        ("?status=revoked&include_revoked=true", "invalid_status"),
    ] {
        assert_eq!(
            code(&a.get(&format!("/api/v1/mcptokens{q}"), ADMIN_KEY)),
            (400, want.into()),
            "{q}"
        );
    }
    // A token sees its own tenant + project only, status filter or not.
    let reader = a.create(
        ADMIN_KEY,
        json!({"name": "reader", "tenant": "globex", "scopes": ["tokens:read"]}),
    );
    let r = a.get("/api/v1/mcptokens?status=revoked", &token_of(&reader));
    assert_eq!(r.json_body().unwrap()["tokens"], json!([]));
}

#[test]
fn whoami_tells_the_console_what_to_offer() {
    let sha = mcpgw_token::format::sha256_hex(ADMIN_KEY);
    let mut a = api();
    a.config = Config::from_vars(|name| match name {
        "admin_key_sha256" => Some(sha.clone()),
        "max_ttl" => Some("30d".into()),
        "default_ttl" => Some("7d".into()),
        "gateway_url" => Some("https://mcp.example.com/mcp".into()),
        _ => None,
    })
    .unwrap();
    let me = a.get("/api/v1/whoami", ADMIN_KEY).json_body().unwrap();
    assert_eq!(
        me,
        json!({
            "principal": {"kind": "admin"},
            "can_read": true,
            "can_write": true,
            "max_ttl": "30d",
            "default_ttl": "7d",
            "gateway_url": "https://mcp.example.com/mcp",
        })
    );
    let reader = a.create(
        ADMIN_KEY,
        json!({"name": "r", "tenant": "acme", "project": "web", "scopes": ["tokens:read", "mcp:tools/*"]}),
    );
    let me = a
        .get("/api/v1/whoami", &token_of(&reader))
        .json_body()
        .unwrap();
    assert_eq!(
        me["principal"],
        json!({"kind": "token", "token_id": id_of(&reader), "tenant": "acme",
               "project": "web", "scopes": ["tokens:read", "mcp:tools/*"]})
    );
    assert_eq!(
        (&me["can_read"], &me["can_write"]),
        (&json!(true), &json!(false))
    );
    let writer = a.create(
        ADMIN_KEY,
        json!({"name": "w", "tenant": "acme", "scopes": ["tokens:write"]}),
    );
    let me = a
        .get("/api/v1/whoami", &token_of(&writer))
        .json_body()
        .unwrap();
    assert_eq!(
        (&me["can_read"], &me["can_write"]),
        (&json!(false), &json!(true))
    );
    // A plain MCP token may ask (it learns nothing introspect would not tell it).
    let plain = a.create(ADMIN_KEY, json!({"name": "p", "tenant": "acme"}));
    let me = a
        .get("/api/v1/whoami", &token_of(&plain))
        .json_body()
        .unwrap();
    assert_eq!(
        (&me["can_read"], &me["can_write"]),
        (&json!(false), &json!(false))
    );
    // Wrong key, revoked token, parameters: refused as everywhere else.
    assert_eq!(
        code(&a.get("/api/v1/whoami", "wrong key")),
        (401, "unauthorized".into())
    );
    assert_eq!(a.revoke(ADMIN_KEY, &id_of(&reader)).status, 200);
    assert_eq!(
        code(&a.get("/api/v1/whoami", &token_of(&reader))),
        (401, "unauthorized".into())
    );
    assert_eq!(
        code(&a.get("/api/v1/whoami?x=1", ADMIN_KEY)),
        (400, "unknown_parameter".into())
    );
    // No gateway_url set: null, so the page asks for it.
    let me = api().get("/api/v1/whoami", ADMIN_KEY).json_body().unwrap();
    assert_eq!(me["gateway_url"], Value::Null);
}

#[test]
fn console_is_served_without_configuration_or_storage() {
    let db = Counting {
        inner: AnyTestDb::fresh(dialect()),
        statements: Cell::new(0),
    };
    for (method, path, status) in [
        ("GET", "/console/", 200),
        ("GET", "/console/app.js", 200),
        ("HEAD", "/console/style.css", 200),
        ("GET", "/console", 308),
        ("GET", "/console/nope", 404),
        ("POST", "/console/", 405),
    ] {
        let head = RequestHead {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        };
        // Even a misconfigured component serves the page (it then shows the API's error).
        let r = block_on(handle(
            &head,
            Chunks::of(b""),
            Err("variable admin_key_sha256 is not set"),
            T0_MS,
            &db,
        ));
        assert_eq!(r.status, status, "{method} {path}");
        if status < 400 {
            assert_eq!(r.header("content-security-policy"), Some(console::CSP));
            assert_eq!(r.header("x-frame-options"), Some("DENY"));
        }
    }
    assert_eq!(db.statements.get(), 0);
}

impl<D: Db> Api<D> {
    fn patch(&self, auth: &str, id: &str, body: &Value) -> Response {
        self.send(
            Req::new("PATCH", &format!("/api/v1/mcptokens/{id}"))
                .auth(auth)
                .json(body),
        )
    }
}

fn limit(requests: u32, window_s: u32, burst: u32) -> Value {
    json!({"requests": requests, "window_s": window_s, "burst": burst})
}

#[test]
fn a_rate_limit_is_set_at_mint_shown_and_introspected() {
    let a = api();
    let v = a.create(
        ADMIN_KEY,
        json!({"name": "agent", "tenant": "acme", "rate_limit": {"requests": 60, "window_s": 60}}),
    );
    assert_eq!(
        v["rate_limit"],
        limit(60, 60, 60),
        "burst defaults to requests"
    );
    let t = token_of(&v);
    assert_eq!(a.introspect(&t)["rate_limit"], limit(60, 60, 60));
    let d = a.get(&format!("/api/v1/mcptokens/{}", id_of(&v)), ADMIN_KEY);
    assert_eq!(d.json_body().unwrap()["rate_limit"], limit(60, 60, 60));
    let listed = a.get("/api/v1/mcptokens?tenant=acme", ADMIN_KEY);
    assert_eq!(
        listed.json_body().unwrap()["tokens"][0]["rate_limit"],
        limit(60, 60, 60)
    );
    let audit = a.get("/api/v1/audit", ADMIN_KEY).json_body().unwrap();
    assert_eq!(
        audit["events"][0]["detail"]["rate_limit"],
        limit(60, 60, 60)
    );
    // Bad values are 400 naming the field.
    for bad in [
        json!({"requests": 0, "window_s": 60}),
        json!({"requests": -1, "window_s": 60}),
        json!({"requests": 5_000_000_000u64, "window_s": 60}),
        json!({"requests": "60", "window_s": 60}),
        json!({"requests": 60, "window_s": 60, "burst": 61}),
        json!("60/m"),
    ] {
        let (status, c, _) = a.create_err(
            ADMIN_KEY,
            json!({"name": "x", "tenant": "acme", "rate_limit": bad}),
        );
        assert_eq!((status, c.as_str()), (400, "invalid_rate_limit"), "{bad}");
    }
}

#[test]
fn the_operator_default_applies_per_tenant() {
    let mut a = api();
    a.config.rate_limits = crate::config::RateLimitDefaults {
        default: RateLimit::new(100, 60, None).ok(),
        tenants: [("globex".to_owned(), None)].into_iter().collect(),
    };
    let acme = a.create(ADMIN_KEY, json!({"name": "a", "tenant": "acme"}));
    assert_eq!(acme["rate_limit"], limit(100, 60, 100));
    let globex = a.create(ADMIN_KEY, json!({"name": "g", "tenant": "globex"}));
    assert_eq!(globex["rate_limit"], Value::Null, "globex is exempt");
    // An explicit value wins, null included.
    let own = a.create(
        ADMIN_KEY,
        json!({"name": "b", "tenant": "acme", "rate_limit": null}),
    );
    assert_eq!(own["rate_limit"], Value::Null);
}

#[test]
fn a_limited_token_mints_only_within_its_own_limit() {
    let a = api();
    let parent = a.create(
        ADMIN_KEY,
        json!({"name": "p", "tenant": "acme", "scopes": ["tokens:write", "tokens:read", "mcp:*"],
               "rate_limit": limit(60, 60, 10)}),
    );
    let p = token_of(&parent);
    // Nothing asked: the child gets the parent's limit.
    let child = a.create(&p, json!({"name": "c1", "tenant": "acme"}));
    assert_eq!(child["rate_limit"], limit(60, 60, 10));
    // Within it is fine, in any window.
    let slow = a.create(
        &p,
        json!({"name": "c2", "tenant": "acme", "rate_limit": limit(1, 1, 1)}),
    );
    assert_eq!(slow["rate_limit"], limit(1, 1, 1));
    for (asked, why) in [
        (limit(61, 60, 10), "faster"),
        (limit(2, 1, 1), "faster, per second"),
        (limit(60, 60, 11), "larger burst"),
        (Value::Null, "no limit at all"),
    ] {
        let (status, c, message) = a.create_err(
            &p,
            json!({"name": "c3", "tenant": "acme", "rate_limit": asked}),
        );
        assert_eq!(
            (status, c.as_str()),
            (403, "rate_limit_exceeds_ceiling"),
            "{why}"
        );
        assert!(message.contains("60/m burst 10"), "{message}");
    }
    let audit = a.get("/api/v1/audit", ADMIN_KEY).json_body().unwrap();
    let denied = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "denied_create")
        .count();
    assert_eq!(denied, 4);
}

#[test]
fn the_rate_limit_changes_without_reminting() {
    let a = api();
    let v = a.create(ADMIN_KEY, json!({"name": "agent", "tenant": "acme"}));
    let (id, t) = (id_of(&v), token_of(&v));
    let cursor = a.feed("?since=now")["cursor"].as_str().unwrap().to_owned();

    let r = a.patch(ADMIN_KEY, &id, &json!({"rate_limit": limit(10, 60, 2)}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body().unwrap()["rate_limit"], limit(10, 60, 2));
    assert_eq!(a.introspect(&t)["rate_limit"], limit(10, 60, 2));
    // Gateways learn it from the feed: "changed", not "revoked".
    let page = a.feed(&format!("?since={cursor}"));
    assert_eq!(page["changed"], json!([sha_of(&v)]));
    assert_eq!(page["revoked"], json!([]));
    // Audited with the old and the new limit.
    let audit = a.get(&format!("/api/v1/audit?token_id={id}"), ADMIN_KEY);
    let e = &audit.json_body().unwrap()["events"][0];
    assert_eq!(e["event"], "rate_limit_changed");
    assert_eq!(e["detail"], json!({"from": null, "to": limit(10, 60, 2)}));
    // Removed again with null; a second identical change writes nothing.
    let r = a.patch(ADMIN_KEY, &id, &json!({"rate_limit": null}));
    assert_eq!(r.json_body().unwrap()["rate_limit"], Value::Null);
    let before = a.feed(&format!("?since={cursor}"))["changed"]
        .as_array()
        .unwrap()
        .len();
    a.patch(ADMIN_KEY, &id, &json!({"rate_limit": null}));
    let after = a.feed(&format!("?since={cursor}"))["changed"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!((before, after), (2, 2));
    // Bad bodies, unknown and revoked tokens.
    assert_eq!(
        code(&a.patch(ADMIN_KEY, &id, &json!({}))),
        (400, "invalid_rate_limit".into())
    );
    assert_eq!(
        code(&a.patch(ADMIN_KEY, &id, &json!({"name": "renamed"}))),
        (400, "unknown_field".into())
    );
    assert_eq!(
        code(&a.patch(ADMIN_KEY, &id, &json!({"rate_limit": limit(0, 60, 0)}))),
        (400, "invalid_rate_limit".into())
    );
    assert_eq!(
        code(&a.patch(
            ADMIN_KEY,
            "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            &json!({"rate_limit": null})
        )),
        (404, "not_found".into())
    );
    a.revoke(ADMIN_KEY, &id);
    assert_eq!(
        code(&a.patch(ADMIN_KEY, &id, &json!({"rate_limit": null}))),
        (409, "token_revoked".into())
    );
}

#[test]
fn a_token_changes_limits_only_within_its_reach_and_its_own_limit() {
    let a = api();
    let manager = a.create(
        ADMIN_KEY,
        json!({"name": "m", "tenant": "acme", "scopes": ["tokens:write", "tokens:read", "mcp:*"],
               "rate_limit": limit(100, 60, 20)}),
    );
    let m = token_of(&manager);
    let agent = a.create(&m, json!({"name": "agent", "tenant": "acme"}));
    let agent_id = id_of(&agent);
    let r = a.patch(&m, &agent_id, &json!({"rate_limit": limit(5, 60, 1)}));
    assert_eq!(r.status, 200);
    for asked in [json!(null), limit(101, 60, 20), limit(100, 60, 21)] {
        let r = a.patch(&m, &agent_id, &json!({"rate_limit": asked}));
        assert_eq!(
            code(&r),
            (403, "rate_limit_exceeds_ceiling".into()),
            "{asked}"
        );
    }
    // It may lower its own limit, never raise it.
    let own = id_of(&manager);
    assert_eq!(
        a.patch(&m, &own, &json!({"rate_limit": limit(50, 60, 10)}))
            .status,
        200
    );
    assert_eq!(
        code(&a.patch(&m, &own, &json!({"rate_limit": limit(100, 60, 20)}))),
        (403, "rate_limit_exceeds_ceiling".into())
    );
    // A token whose scopes do not cover the target cannot change it.
    let narrow = token_of(&a.create(
        ADMIN_KEY,
        json!({"name": "narrow", "tenant": "acme", "scopes": ["tokens:write", "mcp:tools/list"]}),
    ));
    assert_eq!(
        code(&a.patch(&narrow, &agent_id, &json!({"rate_limit": limit(1, 60, 1)}))),
        (403, "scope_exceeds_ceiling".into())
    );
    // Another tenant's token is not there at all; reading is not writing.
    let other = token_of(&a.create(
        ADMIN_KEY,
        json!({"name": "o", "tenant": "globex", "scopes": ["tokens:write"]}),
    ));
    assert_eq!(
        code(&a.patch(&other, &agent_id, &json!({"rate_limit": null}))),
        (404, "not_found".into())
    );
    let reader = token_of(&a.create(
        ADMIN_KEY,
        json!({"name": "r", "tenant": "acme", "scopes": ["tokens:read"]}),
    ));
    assert_eq!(
        code(&a.patch(&reader, &agent_id, &json!({"rate_limit": null}))).0,
        403
    );
    let audit = a
        .get("/api/v1/audit?tenant=acme", ADMIN_KEY)
        .json_body()
        .unwrap();
    let denied = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "denied_update")
        .count();
    assert_eq!(denied, 5, "3 over the limit, 1 own raise, 1 out of reach");
}

#[test]
fn lowering_a_limit_lowers_the_tokens_it_minted() {
    let a = api();
    let root = a.create(
        ADMIN_KEY,
        json!({"name": "root", "tenant": "acme", "scopes": ["tokens:write", "mcp:*"],
               "rate_limit": limit(100, 60, 100)}),
    );
    let child = a.create(
        &token_of(&root),
        json!({"name": "child", "tenant": "acme", "scopes": ["tokens:write", "mcp:*"]}),
    );
    let grandchild = a.create(
        &token_of(&child),
        json!({"name": "gc", "tenant": "acme", "rate_limit": limit(1, 60, 1)}),
    );
    let cursor = a.feed("?since=now")["cursor"].as_str().unwrap().to_owned();
    let r = a.patch(
        ADMIN_KEY,
        &id_of(&root),
        &json!({"rate_limit": limit(10, 60, 5)}),
    );
    assert_eq!(r.json_body().unwrap()["cascade_limited"], 1);
    let describe = |v: &Value| {
        a.get(&format!("/api/v1/mcptokens/{}", id_of(v)), ADMIN_KEY)
            .json_body()
            .unwrap()["rate_limit"]
            .clone()
    };
    assert_eq!(
        describe(&child),
        limit(10, 60, 5),
        "lowered to the new ceiling"
    );
    assert_eq!(describe(&grandchild), limit(1, 60, 1), "already within it");
    let page = a.feed(&format!("?since={cursor}"));
    assert_eq!(page["changed"], json!([sha_of(&root), sha_of(&child)]));
    let audit = a
        .get(
            &format!("/api/v1/audit?token_id={}", id_of(&child)),
            ADMIN_KEY,
        )
        .json_body()
        .unwrap();
    assert_eq!(
        audit["events"][0]["detail"]["cascade"]["via"],
        json!(id_of(&root))
    );
    // Raising it again leaves the children where they are.
    a.patch(ADMIN_KEY, &id_of(&root), &json!({"rate_limit": null}));
    assert_eq!(describe(&child), limit(10, 60, 5));
}
