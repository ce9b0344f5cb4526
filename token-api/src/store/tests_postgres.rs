//! The store on a real PostgreSQL server, under the races several instances
//! make: each instance is a connection of its own, on its own thread, and a
//! gate holds one transaction just before its `COMMIT` so interleavings
//! happen on purpose, not by luck of timing.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use serde_json::json;

use super::*;
use crate::testdb_pg::PgTestDb;
use crate::ulid;

const NOW: i64 = 1_795_459_243;

fn record(name: &str) -> TokenRecord {
    let token = mcpgw_token::format::generate().unwrap();
    TokenRecord {
        id: ulid::new_token_id(NOW * 1000).unwrap(),
        token_sha: mcpgw_token::format::sha256_hex(&token),
        name: name.into(),
        tenant: "acme".into(),
        project: "default".into(),
        scopes: vec!["mcp:*".into()],
        hint: mcpgw_token::format::hint(&token),
        created_by: "admin".into(),
        created_at: NOW,
        expires_at: Some(NOW + 86_400),
        revoked_at: None,
        last_used_at: None,
        rate_limit: None,
    }
}

fn create(store: &Store<impl Db>, t: &TokenRecord) -> Created {
    let audit = audit_for(t, Event::Created, NOW, "admin", json!({}));
    block_on(store.create(t, &audit)).unwrap()
}

fn revoke(db: &impl Db, id: &str) -> Option<Revoked> {
    block_on(Store::new(db).revoke(id, None, NOW, "admin", &json!({}))).unwrap()
}

/// The whole feed as a reader on another connection sees it now.
fn feed(db: &impl Db, after: i64) -> Vec<(i64, String)> {
    block_on(Store::new(db).revocations(after, 10_000, NOW))
        .unwrap()
        .entries
}

fn one_int(db: &PgTestDb, sql: &str) -> i64 {
    match block_on(db.query(sql, vec![]))
        .unwrap()
        .first()
        .and_then(|r| r.first())
    {
        Some(Value::Integer(n)) => *n,
        other => panic!("{sql}: {other:?}"),
    }
}

/// A connection that stops just before `COMMIT` until released.
struct Gated {
    inner: PgTestDb,
    reached: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
}

impl Db for Gated {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        if sql == "COMMIT" {
            let _ = self.reached.lock().unwrap().send(());
            let _ = self.release.lock().unwrap().recv();
        }
        self.inner.query(sql, params).await
    }
}

/// Waits until `n` sessions of this database wait on a lock.
fn wait_for_lock_waiters(observer: &PgTestDb, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let sql = "SELECT COUNT(*) FROM pg_stat_activity \
               WHERE datname = current_database() AND wait_event_type = 'Lock'";
    while one_int(observer, sql) < n {
        assert!(
            Instant::now() < deadline,
            "no session waits on a lock: a second feed writer was not held back"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn feed_positions_become_visible_in_order_when_revokes_interleave() {
    let setup = PgTestDb::fresh();
    let url = setup.url().to_owned();
    let (a, b) = (record("a"), record("b"));
    let store = Store::new(&setup);
    assert_eq!(create(&store, &a), Created::Ok);
    assert_eq!(create(&store, &b), Created::Ok);
    let reader = PgTestDb::connect(&url);
    let before = block_on(Store::new(&reader).revocations(0, 0, NOW))
        .unwrap()
        .head;

    // Instance 1 revokes A and stops just before its COMMIT: A's feed row
    // exists, with its sequence number, but nobody else can see it.
    let (reached_tx, reached) = channel();
    let (release, release_rx) = channel();
    let gated = Gated {
        inner: PgTestDb::connect(&url),
        reached: Mutex::new(reached_tx),
        release: Mutex::new(release_rx),
    };
    let a_id = a.id.clone();
    let one = thread::spawn(move || revoke(&gated, &a_id));
    reached
        .recv_timeout(Duration::from_secs(20))
        .expect("instance 1 reaches its COMMIT");

    // Instance 2 revokes B meanwhile. Without the feed lock it would take the
    // next sequence number and commit first; a gateway reading then would
    // move its cursor past A's number and never see A.
    let b_id = b.id.clone();
    let url2 = url.clone();
    let two = thread::spawn(move || revoke(&PgTestDb::connect(&url2), &b_id));
    wait_for_lock_waiters(&reader, 1);
    assert!(!two.is_finished(), "instance 2 must wait for instance 1");
    assert_eq!(
        feed(&reader, before),
        vec![],
        "nothing is visible before a commit"
    );

    release.send(()).unwrap();
    let one = one.join().unwrap().expect("A revoked");
    let two = two.join().unwrap().expect("B revoked");
    assert!(one.changed && two.changed);

    let entries = feed(&reader, before);
    assert_eq!(
        entries
            .iter()
            .map(|(_, sha)| sha.clone())
            .collect::<Vec<_>>(),
        vec![a.token_sha.clone(), b.token_sha.clone()],
        "A committed first, so A's number is lower"
    );
    assert!(entries[0].0 < entries[1].0);
}

/// What the lock prevents, shown on the same schema with plain SQL: two
/// transactions taking feed numbers without it, the later number committed
/// first, and a reader whose cursor passes the earlier number for good.
#[test]
fn without_the_lock_a_reader_would_skip_a_revocation() {
    let setup = PgTestDb::fresh();
    block_on(Store::new(&setup).migrate(NOW)).unwrap();
    let url = setup.url().to_owned();
    let (t1, t2) = (PgTestDb::connect(&url), PgTestDb::connect(&url));
    let exec = |db: &PgTestDb, sql: &str| block_on(db.query(sql, vec![])).unwrap();
    exec(&t1, "BEGIN");
    exec(
        &t1,
        "INSERT INTO revocations (token_sha, at) VALUES ('first', 0)",
    );
    exec(&t2, "BEGIN");
    exec(
        &t2,
        "INSERT INTO revocations (token_sha, at) VALUES ('second', 0)",
    );
    exec(&t2, "COMMIT");
    let seen = feed(&setup, 0);
    assert_eq!(seen.len(), 1);
    let cursor = seen[0].0;
    exec(&t1, "COMMIT");
    assert_eq!(
        feed(&setup, cursor),
        vec![],
        "the reader's cursor is past 'first': it never sees it"
    );
    assert_eq!(feed(&setup, 0).len(), 2);
}

#[test]
fn instances_migrating_at_once_end_with_one_schema() {
    let url = crate::testdb_pg::fresh_database();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            thread::spawn(move || block_on(Store::new(&PgTestDb::connect(&url)).migrate(NOW)))
        })
        .collect();
    for t in threads {
        t.join()
            .unwrap()
            .expect("every instance's migration succeeds");
    }
    let db = PgTestDb::connect(&url);
    assert_eq!(
        block_on(Store::new(&db).schema_version()),
        Ok(SCHEMA_VERSION)
    );
    assert_eq!(
        one_int(&db, "SELECT COUNT(*) FROM schema_version"),
        SCHEMA_VERSION
    );
    assert_eq!(one_int(&db, "SELECT COUNT(*) FROM feed_state"), 1);
}

#[test]
fn the_database_decides_live_name_uniqueness_across_instances() {
    let url = crate::testdb_pg::fresh_database();
    block_on(Store::new(&PgTestDb::connect(&url)).migrate(NOW)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            thread::spawn(move || {
                let db = PgTestDb::connect(&url);
                create(&Store::new(&db), &record("contended"))
            })
        })
        .collect();
    let outcomes: Vec<Created> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let won = outcomes.iter().filter(|c| **c == Created::Ok).count();
    assert_eq!(won, 1, "{outcomes:?}");
    let db = PgTestDb::connect(&url);
    assert_eq!(one_int(&db, "SELECT COUNT(*) FROM tokens"), 1);
    assert_eq!(
        one_int(&db, "SELECT COUNT(*) FROM audit WHERE event = 'created'"),
        1
    );
}

#[test]
fn revokes_and_deletes_racing_on_tokens_write_each_feed_entry_once() {
    let url = crate::testdb_pg::fresh_database();
    let setup = PgTestDb::connect(&url);
    let store = Store::new(&setup);
    // A parent and its child, and ten loose tokens.
    let parent = record("parent");
    let mut child = record("child");
    child.created_by = format!("token:{}", parent.id);
    let loose: Vec<TokenRecord> = (0..10).map(|i| record(&format!("t{i}"))).collect();
    for t in std::iter::once(&parent).chain([&child]).chain(&loose) {
        assert_eq!(create(&store, t), Created::Ok);
    }
    // Every token revoked twice and deleted once, from three instances at
    // once; the parent's revoke cascades into the child being revoked too.
    let mut jobs: Vec<(String, bool)> = Vec::new();
    for t in std::iter::once(&parent).chain([&child]).chain(&loose) {
        jobs.push((t.id.clone(), false));
        jobs.push((t.id.clone(), false));
        jobs.push((t.id.clone(), true));
    }
    let jobs = std::sync::Arc::new(Mutex::new(jobs));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (url, jobs) = (url.clone(), jobs.clone());
            thread::spawn(move || {
                let db = PgTestDb::connect(&url);
                let store = Store::new(&db);
                loop {
                    let Some((id, delete)) = jobs.lock().unwrap().pop() else {
                        return;
                    };
                    if delete {
                        block_on(store.delete(&id, None, NOW, "admin")).unwrap();
                    } else {
                        block_on(store.revoke(&id, None, NOW, "admin", &json!({}))).unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("no worker failed (no deadlock, no error)");
    }
    let entries = feed(&setup, 0);
    let mut shas: Vec<String> = entries.iter().map(|(_, s)| s.clone()).collect();
    shas.sort();
    let mut want: Vec<String> = std::iter::once(&parent)
        .chain([&child])
        .chain(&loose)
        .map(|t| t.token_sha.clone())
        .collect();
    want.sort();
    assert_eq!(shas, want, "each dead token is in the feed exactly once");
    assert_eq!(one_int(&setup, "SELECT COUNT(*) FROM tokens"), 0);
    assert_eq!(
        one_int(&setup, "SELECT COUNT(*) FROM audit WHERE event = 'deleted'"),
        12
    );
    // One `revoked` event per token revoked before its delete, never two.
    assert_eq!(
        one_int(
            &setup,
            "SELECT COUNT(*) FROM (SELECT token_id FROM audit WHERE event = 'revoked' \
             GROUP BY token_id HAVING COUNT(*) > 1) AS doubled"
        ),
        0
    );
}

#[test]
fn a_version_2_database_migrates_to_rate_limits_keeping_its_tokens_and_feed() {
    let db = PgTestDb::fresh();
    let run = |sql: &str| block_on(db.query(sql, vec![])).unwrap();
    run(postgres::SCHEMA_VERSION_TABLE);
    for sql in postgres::MIGRATIONS[0]
        .iter()
        .chain(postgres::MIGRATIONS[1])
    {
        run(sql);
    }
    run("INSERT INTO schema_version (version, applied_at) VALUES (1, 0), (2, 0)");
    let t = record("ci");
    block_on(db.query(
        "INSERT INTO tokens (id, token_sha, name, tenant, project, scopes, hint, created_by, \
         created_at) VALUES ($1, $2, 'ci', 'acme', 'default', '[\"mcp:*\"]', 'h', 'admin', $3)",
        vec![
            t.id.as_str().into(),
            t.token_sha.as_str().into(),
            NOW.into(),
        ],
    ))
    .unwrap();
    run("INSERT INTO revocations (token_sha, at) VALUES ('ab', 0)");
    let store = Store::new(&db);
    // Introspection's lookup migrates on first use.
    let got = block_on(store.token_by_sha(&t.token_sha, NOW))
        .unwrap()
        .unwrap();
    assert_eq!(got.rate_limit, None);
    assert_eq!(block_on(store.schema_version()), Ok(SCHEMA_VERSION));
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!(read.entries, vec![(1, "ab".to_owned())]);
    assert!(read.changed.is_empty(), "old entries are revocations");
    let limit = mcpgw_token::ratelimit::RateLimit::new(5, 60, Some(2)).unwrap();
    let set = block_on(store.set_rate_limit(&t.id, None, Some(limit), NOW, "admin"))
        .unwrap()
        .unwrap();
    assert_eq!(set.token.rate_limit, Some(limit));
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!(read.changed, [2].into_iter().collect());
    // Migrating again changes nothing (the statements are idempotent here).
    block_on(store.migrate(NOW)).unwrap();
    for sql in postgres::MIGRATIONS[2] {
        run(sql);
    }
}
