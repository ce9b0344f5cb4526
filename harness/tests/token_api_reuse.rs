//! Instance reuse on the Spin-compatible host, with the real component: an
//! instance serves many requests (as Spin reuses `wasi:http@0.3` instances),
//! and still no request sees another's data, a trap costs only the instance
//! it happened in, and variables are read afresh on every request.

#[path = "common/spin_api.rs"]
mod spin_api;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::spin::{InstanceReuse, SpinOptions, StartError, TokenApiHost};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use spin_api::{Api, Conn, Req};

/// A host with `reuse` (and an idle timeout long enough that a slow machine
/// cannot drop an instance between two requests of one test).
async fn start(reuse: InstanceReuse, variables: &[(&str, &str)]) -> Api {
    let data = tempfile::tempdir().expect("temp dir");
    let mut opts = Api::options(data.path().to_owned());
    for (k, v) in variables {
        opts.variables.insert((*k).to_owned(), (*v).to_owned());
    }
    opts.instance_reuse = reuse;
    let running = TokenApiHost::start(opts)
        .await
        .unwrap_or_else(|e| panic!("host did not start: {e}"));
    Api {
        running,
        data,
        variables: BTreeMap::new(),
    }
}

fn long_idle() -> InstanceReuse {
    InstanceReuse {
        idle_timeout: Duration::from_secs(60),
        ..InstanceReuse::default()
    }
}

/// Introspects `token` on `conn` and checks the answer is that token's.
async fn introspect_is(conn: &mut Conn, token: &str, expected: &Value) {
    let r = conn
        .send(Req::new(Method::GET, "/api/v1/mcptokens/introspect").bearer(token))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let got = r.json();
    for key in ["active", "token_id", "tenant", "project", "name", "scopes"] {
        if let Some(want) = expected.get(key) {
            assert_eq!(&got[key], want, "{key} of {got} (expected {expected})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_tenants_on_reused_instances_get_their_own_answers() {
    let api = start(long_idle(), &[]).await;
    let acme = api
        .create(
            json!({"name": "a", "tenant": "acme", "project": "p1", "scopes": ["mcp:tools/list"]}),
        )
        .await;
    let globex = api
        .create(json!({"name": "g", "tenant": "globex", "scopes": ["mcp:*"]}))
        .await;
    let gone = api.create(json!({"name": "r", "tenant": "acme"})).await;
    assert_eq!(
        api.revoke(gone["id"].as_str().unwrap()).await.status,
        StatusCode::OK
    );
    let expect = [
        (
            acme["token"].as_str().unwrap().to_owned(),
            json!({"active": true, "token_id": acme["id"], "tenant": "acme", "project": "p1",
                   "name": "a", "scopes": ["mcp:tools/list"]}),
        ),
        (
            globex["token"].as_str().unwrap().to_owned(),
            json!({"active": true, "token_id": globex["id"], "tenant": "globex",
                   "project": "default", "name": "g", "scopes": ["mcp:*"]}),
        ),
        (
            gone["token"].as_str().unwrap().to_owned(),
            json!({"active": false}),
        ),
    ];

    const CONNECTIONS: usize = 8;
    const PER_CONNECTION: usize = 60;
    let before = api.running.instances_started();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        let (addr, expect) = (api.addr(), expect.clone());
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await;
            for i in 0..PER_CONNECTION {
                // Each connection walks the tokens from its own offset, so
                // requests of different tenants are in flight together.
                let (token, want) = &expect[(c + i) % expect.len()];
                introspect_is(&mut conn, token, want).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a connection's requests");
    }
    let started = api.running.instances_started() - before;
    let requests = (CONNECTIONS * PER_CONNECTION) as u64;
    assert!(
        started * 4 <= requests,
        "{started} instances for {requests} requests: instances are not reused"
    );
    // The reuse bound holds: no instance served more than its 128 requests.
    // Instances of the set-up requests above may still be idle and serve
    // some of these too, so they count as well.
    assert!(
        (started + before) * 128 >= requests,
        "{started} instances, {before} before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reuse_every_request_gets_a_fresh_instance() {
    let api = start(InstanceReuse::none(), &[]).await;
    let t = api.create(json!({"name": "fresh", "tenant": "acme"})).await;
    let token = t["token"].as_str().unwrap();
    let before = api.running.instances_started();
    let mut conn = Conn::open(api.addr()).await;
    for _ in 0..10 {
        introspect_is(
            &mut conn,
            token,
            &json!({"active": true, "token_id": t["id"]}),
        )
        .await;
    }
    assert_eq!(api.running.instances_started() - before, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_counts_of_zero_are_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    for reuse in [
        InstanceReuse {
            max_reuse_count: 0,
            ..InstanceReuse::default()
        },
        InstanceReuse {
            max_concurrent_reuse_count: 0,
            ..InstanceReuse::default()
        },
    ] {
        let mut opts: SpinOptions = Api::options(data.path().to_owned());
        opts.instance_reuse = reuse;
        match TokenApiHost::start(opts).await {
            Ok(running) => {
                running.shutdown().await;
                panic!("started with {reuse:?}");
            }
            Err(e) => {
                assert!(matches!(e, StartError::Options(_)), "{e}");
                assert!(e.to_string().contains("at least 1"), "{e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_changed_while_an_instance_lives_is_read_on_its_next_request() {
    let api = start(long_idle(), &[("default_cache_ttl_s", "30")]).await;
    let t = api.create(json!({"name": "ttl", "tenant": "acme"})).await;
    let token = t["token"].as_str().unwrap();
    let mut conn = Conn::open(api.addr()).await;
    let ttl = |v: Value| v["cache_ttl_s"].as_u64();
    let introspect = || Req::new(Method::GET, "/api/v1/mcptokens/introspect").bearer(token);
    assert_eq!(ttl(conn.send(introspect()).await.json()), Some(30));
    let instances = api.running.instances_started();

    api.running
        .set_variable("default_cache_ttl_s", "5")
        .expect("a declared variable");
    assert_eq!(ttl(conn.send(introspect()).await.json()), Some(5));
    assert_eq!(
        api.running.instances_started(),
        instances,
        "the same instance answered both"
    );

    // A bad value is the component's to report, on its next request.
    api.running
        .set_variable("default_cache_ttl_s", "soon")
        .expect("a declared variable");
    let r = conn.send(introspect()).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{:?}", r.body);

    let e = api
        .running
        .set_variable("no_such_variable", "1")
        .unwrap_err();
    assert!(e.to_string().contains("no_such_variable"), "{e}");
}

/// SQLite only (the test writes the database file itself): skipped in the
/// PostgreSQL run of `just test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_ends_only_its_instance() {
    let api = start(long_idle(), &[]).await;
    let huge = api.create(json!({"name": "huge", "tenant": "acme"})).await;
    let fine = api
        .create(json!({"name": "fine", "tenant": "globex"}))
        .await;
    // A name of 62 MB: the host passes it (under its 64 MiB result bound),
    // the guest cannot hold it and a copy within its 64 MiB memory: its
    // allocator aborts, which is a trap.
    let db = api.running.database().expect("the default database");
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "UPDATE tokens SET name = ?1 WHERE id = ?2",
        rusqlite::params!["x".repeat(62_000_000), huge["id"].as_str().unwrap()],
    )
    .unwrap();
    drop(conn);

    let mut keep_alive = Conn::open(api.addr()).await;
    let fine_token = fine["token"].as_str().unwrap();
    let expect_fine = json!({"active": true, "token_id": fine["id"], "tenant": "globex"});
    introspect_is(&mut keep_alive, fine_token, &expect_fine).await;
    let before = api.running.instances_started();

    let r = api
        .get(
            "/api/v1/mcptokens/introspect",
            huge["token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{:?}", r.body);
    assert!(r.body.is_empty(), "no guest output in a trap's answer");

    // Later requests, on the connection opened before, are answered (by a
    // fresh instance: wasmtime drops a trapped one).
    for _ in 0..3 {
        introspect_is(&mut keep_alive, fine_token, &expect_fine).await;
    }
    assert!(api.running.instances_started() > before);
}
