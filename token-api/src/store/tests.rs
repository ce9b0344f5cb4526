use std::collections::HashSet;

use futures::executor::block_on;
use serde_json::json;

use super::*;
use crate::testdb::TestDb;
use crate::ulid;

const NOW: i64 = 1_795_459_243;

fn record(name: &str, tenant: &str, project: &str, created_at: i64) -> TokenRecord {
    let token = mcpgw_token::format::generate().unwrap();
    TokenRecord {
        id: ulid::new_token_id(created_at * 1000).unwrap(),
        token_sha: mcpgw_token::format::sha256_hex(&token),
        name: name.into(),
        tenant: tenant.into(),
        project: project.into(),
        scopes: vec!["mcp:*".into()],
        hint: mcpgw_token::format::hint(&token),
        created_by: "admin".into(),
        created_at,
        expires_at: Some(created_at + 86_400),
        revoked_at: None,
        last_used_at: None,
        rate_limit: None,
    }
}

fn created(t: &TokenRecord) -> NewAuditEvent {
    audit_for(t, Event::Created, t.created_at, "admin", json!({}))
}

fn insert(store: &Store<TestDb>, t: &TokenRecord) -> Created {
    block_on(store.create(t, &created(t))).unwrap()
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.raw(|c| c.query_row(sql, [], |r| r.get(0)).unwrap())
}

/// Every hash in the feed, oldest first.
fn feed_shas(store: &Store<TestDb>) -> Vec<String> {
    block_on(store.revocations(0, 10_000, NOW))
        .unwrap()
        .entries
        .into_iter()
        .map(|(_, sha)| sha)
        .collect()
}

/// A token minted by `parent` (same tenant + project).
fn child_of(parent: &TokenRecord, name: &str, created_at: i64) -> TokenRecord {
    let mut t = record(name, &parent.tenant, &parent.project, created_at);
    t.created_by = format!("token:{}", parent.id);
    t
}

#[test]
fn migrations_build_the_schema_once() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    assert_eq!(block_on(store.schema_version()), Ok(0));
    block_on(store.ensure_schema(NOW)).unwrap();
    block_on(store.ensure_schema(NOW)).unwrap();
    block_on(store.migrate(NOW + 1)).unwrap();
    assert_eq!(block_on(store.schema_version()), Ok(SCHEMA_VERSION));
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM schema_version"),
        SCHEMA_VERSION
    );
    let index: String = db.raw(|c| {
        c.query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'tokens_live_name'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    });
    assert!(
        index.contains("UNIQUE") && index.contains("WHERE revoked_at IS NULL"),
        "{index}"
    );
}

#[test]
fn hot_paths_migrate_a_fresh_database_on_first_use() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    assert_eq!(block_on(store.token_by_sha(&"0".repeat(64), NOW)), Ok(None));
    assert_eq!(block_on(store.schema_version()), Ok(SCHEMA_VERSION));
    let db = TestDb::memory();
    let feed = block_on(Store::new(&db).revocations(0, 10, NOW)).unwrap();
    assert_eq!((feed.head, feed.entries), (0, vec![]));
}

#[test]
fn concurrent_first_requests_migrate_exactly_once() {
    let dir = std::env::temp_dir().join(format!("token-api-mig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("race.db");
    let _ = std::fs::remove_file(&path);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let db = TestDb::file(&path);
                let store = Store::new(&db);
                // Half go through the lazy path, half through the explicit one.
                if i % 2 == 0 {
                    block_on(store.token_by_sha(&"0".repeat(64), NOW)).map(drop)
                } else {
                    block_on(store.ensure_schema(NOW))
                }
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok(()));
    }
    let db = TestDb::file(&path);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM schema_version"),
        SCHEMA_VERSION
    );
    assert_eq!(
        block_on(Store::new(&db).schema_version()),
        Ok(SCHEMA_VERSION)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_are_unique_among_live_tokens_of_a_tenant_project() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let first = record("ci", "acme", "default", NOW);
    assert_eq!(insert(&store, &first), Created::Ok);
    // Same name elsewhere is fine.
    assert_eq!(
        insert(&store, &record("ci", "acme", "web", NOW)),
        Created::Ok
    );
    assert_eq!(
        insert(&store, &record("ci", "globex", "default", NOW)),
        Created::Ok
    );
    // Same tenant + project + name is taken, and nothing of it is written.
    let dup = record("ci", "acme", "default", NOW + 1);
    assert_eq!(
        insert(&store, &dup),
        Created::NameTaken {
            existing_id: first.id.clone()
        }
    );
    assert_eq!(block_on(store.token_by_id(&dup.id, NOW)), Ok(None));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit"), 3);
    // Revoking frees the name.
    block_on(store.revoke(&first.id, None, NOW + 2, "admin", &json!({}))).unwrap();
    assert_eq!(insert(&store, &dup), Created::Ok);
    // The database itself enforces it, not only this code.
    let unrevoke = db.raw(|c| {
        c.execute(
            "UPDATE tokens SET revoked_at = NULL WHERE id = ?",
            [&first.id],
        )
    });
    assert!(unrevoke.unwrap_err().to_string().contains("UNIQUE"));
}

#[test]
fn expired_tokens_keep_their_name_until_revoked_or_deleted() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let mut old = record("nightly", "acme", "default", NOW - 10_000);
    old.expires_at = Some(NOW - 1);
    insert(&store, &old);
    let again = record("nightly", "acme", "default", NOW);
    assert!(matches!(insert(&store, &again), Created::NameTaken { .. }));
    block_on(store.delete(&old.id, None, NOW, "admin")).unwrap();
    assert_eq!(insert(&store, &again), Created::Ok);
}

#[test]
fn revoke_feeds_the_hash_once_and_audits_once() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let t = record("a", "acme", "default", NOW);
    insert(&store, &t);
    let detail = json!({"reason": "leaked"});
    let r = block_on(store.revoke(&t.id, None, NOW + 5, "admin", &detail))
        .unwrap()
        .unwrap();
    assert!(r.changed && r.cascaded.is_empty());
    assert_eq!(r.token.revoked_at, Some(NOW + 5));
    let r2 = block_on(store.revoke(&t.id, None, NOW + 9, "admin", &detail))
        .unwrap()
        .unwrap();
    assert!(!r2.changed);
    assert_eq!(
        r2.token.revoked_at,
        Some(NOW + 5),
        "a second revoke changes nothing"
    );
    assert_eq!(
        block_on(store.revocations(0, 10, NOW)).unwrap().entries,
        vec![(1, t.token_sha.clone())]
    );
    let (events, _) = block_on(store.audit_page(AuditFilter::default(), 10, None, NOW)).unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.event.event).collect();
    assert_eq!(kinds, [Event::Revoked, Event::Created]);
    assert_eq!(events[0].event.detail, detail);
    assert_eq!(
        events[0].event.token_sha.as_deref(),
        Some(t.token_sha.as_str())
    );
}

#[test]
fn owners_only_reach_their_own_tokens() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let t = record("a", "acme", "default", NOW);
    insert(&store, &t);
    let other = Owner {
        tenant: "globex",
        project: "default",
    };
    let other_project = Owner {
        tenant: "acme",
        project: "web",
    };
    for owner in [other, other_project] {
        assert_eq!(
            block_on(store.revoke(&t.id, Some(owner), NOW, "x", &json!({}))),
            Ok(None)
        );
        assert_eq!(
            block_on(store.delete(&t.id, Some(owner), NOW, "x")),
            Ok(None)
        );
    }
    assert!(feed_shas(&store).is_empty());
    let mine = Owner {
        tenant: "acme",
        project: "default",
    };
    assert!(block_on(store.delete(&t.id, Some(mine), NOW, "x"))
        .unwrap()
        .is_some());
}

#[test]
fn delete_feeds_live_tokens_only_and_is_not_repeatable() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let live = record("live", "acme", "default", NOW);
    let dead = record("dead", "acme", "default", NOW);
    insert(&store, &live);
    insert(&store, &dead);
    block_on(store.revoke(&dead.id, None, NOW, "admin", &json!({}))).unwrap();
    assert!(block_on(store.delete(&dead.id, None, NOW, "admin"))
        .unwrap()
        .is_some());
    assert!(block_on(store.delete(&live.id, None, NOW, "admin"))
        .unwrap()
        .is_some());
    assert_eq!(
        block_on(store.delete(&live.id, None, NOW, "admin")),
        Ok(None)
    );
    assert_eq!(feed_shas(&store), [dead.token_sha, live.token_sha]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM tokens"), 0);
}

#[test]
fn feed_pages_in_sequence_order() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let mut shas = Vec::new();
    for i in 0..25 {
        let t = record(&format!("t{i}"), "acme", "default", NOW);
        insert(&store, &t);
        block_on(store.revoke(&t.id, None, NOW + i, "admin", &json!({}))).unwrap();
        shas.push(t.token_sha);
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let read = block_on(store.revocations(after, 10, NOW)).unwrap();
        assert_eq!((read.head, read.pruned_through), (25, 0));
        let page = read.entries;
        let Some(&(last, _)) = page.last() else { break };
        assert!(page.windows(2).all(|w| w[0].0 < w[1].0));
        seen.extend(page.into_iter().map(|(_, s)| s));
        after = last;
    }
    assert_eq!(seen, shas);
    let head = block_on(store.revocations(i64::MAX, 0, NOW)).unwrap();
    assert_eq!((head.head, head.entries.len()), (25, 0));
}

#[test]
fn the_feed_epoch_is_made_once_with_the_database() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let epoch = block_on(store.revocations(0, 1, NOW)).unwrap().epoch;
    assert_eq!(epoch.len(), 16);
    assert!(epoch
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    block_on(store.migrate(NOW)).unwrap();
    assert_eq!(block_on(store.revocations(0, 1, NOW)).unwrap().epoch, epoch);
    let other = TestDb::memory();
    let theirs = block_on(Store::new(&other).revocations(0, 1, NOW))
        .unwrap()
        .epoch;
    assert_ne!(theirs, epoch, "each database has its own");
}

#[test]
fn a_version_1_database_migrates_to_lineage_and_an_epoch() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    // The schema as version 1 left it, with a revocation in its feed.
    db.raw(|c| {
        c.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for sql in sqlite::MIGRATIONS[0] {
            c.execute_batch(sql).unwrap();
        }
        c.execute("INSERT INTO schema_version VALUES (1, 0)", [])
            .unwrap();
        c.execute(
            "INSERT INTO revocations (token_sha, at) VALUES (?, 0)",
            [&"ab".repeat(32)],
        )
        .unwrap();
    });
    // The feed (a hot path) migrates on first use, and keeps the history.
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!(read.entries, vec![(1, "ab".repeat(32))]);
    assert_eq!(read.head, 1);
    assert_eq!(block_on(store.schema_version()), Ok(SCHEMA_VERSION));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM cascades"), 0);
}

#[test]
fn revoking_a_token_revokes_its_descendants_each_with_a_feed_entry_and_event() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let root = record("root", "acme", "default", NOW);
    let child = child_of(&root, "child", NOW + 1);
    let grandchild = child_of(&child, "grandchild", NOW + 2);
    let sibling = child_of(&root, "sibling", NOW + 3);
    let unrelated = record("unrelated", "acme", "default", NOW + 4);
    for t in [&root, &child, &grandchild, &sibling, &unrelated] {
        insert(&store, t);
    }
    // A child already revoked stays as it was; its own children are still reached.
    block_on(store.revoke(&sibling.id, None, NOW + 5, "admin", &json!({}))).unwrap();

    let detail = json!({"reason": "laptop lost"});
    let r = block_on(store.revoke(&root.id, None, NOW + 10, "McpToken:x", &detail))
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = r.cascaded.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [child.id.as_str(), grandchild.id.as_str()]);
    for t in [&root, &child, &grandchild] {
        let now = block_on(store.token_by_id(&t.id, NOW)).unwrap().unwrap();
        assert_eq!(now.revoked_at, Some(NOW + 10), "{}", t.name);
    }
    let still = block_on(store.token_by_id(&unrelated.id, NOW))
        .unwrap()
        .unwrap();
    assert_eq!(still.revoked_at, None);
    assert_eq!(
        feed_shas(&store),
        [
            sibling.token_sha.clone(),
            root.token_sha.clone(),
            child.token_sha.clone(),
            grandchild.token_sha.clone()
        ]
    );

    let (events, _) = block_on(store.audit_page(AuditFilter::default(), 3, None, NOW)).unwrap();
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e.event.token_id.as_deref() == Some(id))
    };
    let root_event = by_id(&root.id).unwrap();
    assert_eq!(
        root_event.event.detail,
        json!({"reason": "laptop lost", "cascaded": 2})
    );
    let g = by_id(&grandchild.id).unwrap();
    assert_eq!(g.event.event, Event::Revoked);
    assert_eq!(g.event.actor, "McpToken:x");
    assert_eq!(
        g.event.detail,
        json!({"reason": "laptop lost", "cascade": {"via": root.id, "parent": child.id}})
    );

    let lineage = |id: &str| block_on(store.lineage(id, NOW)).unwrap();
    assert_eq!(
        lineage(&root.id),
        Lineage {
            revoked_via: None,
            cascade_revoked: 2
        }
    );
    assert_eq!(
        lineage(&grandchild.id).revoked_via.as_deref(),
        Some(root.id.as_str())
    );
    assert_eq!(lineage(&sibling.id), Lineage::default());

    // Again: nothing left to change, nothing written.
    let again = block_on(store.revoke(&root.id, None, NOW + 20, "admin", &json!({})))
        .unwrap()
        .unwrap();
    assert!(!again.changed && again.cascaded.is_empty());
    assert_eq!(feed_shas(&store).len(), 4);
}

#[test]
fn a_token_revoked_before_cascades_existed_still_reaches_its_live_children() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let parent = record("parent", "acme", "default", NOW);
    let child = child_of(&parent, "child", NOW + 1);
    insert(&store, &parent);
    insert(&store, &child);
    db.raw(|c| {
        c.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ?",
            (NOW, &parent.id),
        )
    })
    .unwrap();
    let r = block_on(store.revoke(&parent.id, None, NOW + 5, "admin", &json!({})))
        .unwrap()
        .unwrap();
    assert!(!r.changed);
    assert_eq!(r.cascaded.len(), 1);
    assert_eq!(feed_shas(&store), std::slice::from_ref(&child.token_sha));
}

#[test]
fn deleting_a_token_revokes_its_descendants() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let parent = record("parent", "acme", "default", NOW);
    let child = child_of(&parent, "child", NOW + 1);
    let grandchild = child_of(&child, "grandchild", NOW + 2);
    for t in [&parent, &child, &grandchild] {
        insert(&store, t);
    }
    let d = block_on(store.delete(&parent.id, None, NOW + 9, "admin"))
        .unwrap()
        .unwrap();
    assert_eq!(d.cascaded.len(), 2);
    assert_eq!(block_on(store.token_by_id(&parent.id, NOW)), Ok(None));
    for t in [&child, &grandchild] {
        let now = block_on(store.token_by_id(&t.id, NOW)).unwrap().unwrap();
        assert_eq!(now.revoked_at, Some(NOW + 9));
        assert_eq!(
            block_on(store.lineage(&t.id, NOW)).unwrap().revoked_via,
            Some(parent.id.clone())
        );
    }
    assert_eq!(
        feed_shas(&store),
        [
            parent.token_sha.clone(),
            child.token_sha.clone(),
            grandchild.token_sha.clone()
        ]
    );
    // Deleting a cascaded token drops its lineage row with it.
    block_on(store.delete(&child.id, None, NOW + 10, "admin")).unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM cascades"), 1);
}

#[test]
fn writes_prune_feed_entries_older_than_the_retention() {
    let db = TestDb::memory();
    let store = Store::new(&db).pruning(Some(100));
    let revoke_at = |store: &Store<TestDb>, name: &str, at: i64| {
        let t = record(name, "acme", "default", NOW);
        insert(store, &t);
        block_on(store.revoke(&t.id, None, at, "admin", &json!({}))).unwrap();
        t.token_sha
    };
    for i in 0..4 {
        revoke_at(&store, &format!("t{i}"), NOW + 60 * i);
    }
    // The write at NOW + 180 pruned what is older than NOW + 80.
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!((read.pruned_through, read.head), (2, 4));
    assert_eq!(
        read.entries.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [3, 4]
    );
    // A store without a retention keeps everything; reads never prune.
    revoke_at(&Store::new(&db), "kept", NOW + 10_000);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM revocations"), 3);
    // Everything but the newest aged out: the horizon remembers the rest.
    let last = revoke_at(&store, "last", NOW + 10_000);
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!((read.pruned_through, read.head), (4, 6));
    assert_eq!(
        read.entries.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [5, 6]
    );
    assert_eq!(read.entries[1].1, last);
    // All of it aged out: the head survives in the horizon, and sequence
    // numbers keep rising.
    let newest = revoke_at(&store, "newest", NOW + 30_000);
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!((read.pruned_through, read.head), (6, 7));
    assert_eq!(read.entries, vec![(7, newest)]);
    db.raw(|c| c.execute("DELETE FROM revocations", []))
        .unwrap();
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!(read.head, 6, "never below what was pruned");
}

#[test]
fn touch_writes_at_most_once_a_minute() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let t = record("a", "acme", "default", NOW);
    insert(&store, &t);
    assert_eq!(block_on(store.touch(&t.id, NOW)), Ok(true));
    assert_eq!(block_on(store.touch(&t.id, NOW + 59)), Ok(false));
    assert_eq!(block_on(store.touch(&t.id, NOW + 60)), Ok(true));
    let r = block_on(store.token_by_id(&t.id, NOW)).unwrap().unwrap();
    assert_eq!(r.last_used_at, Some(NOW + 60));
}

/// ~1000 tokens, many sharing a second: keyset pages cover each exactly once,
/// in order, whatever the page size.
#[test]
fn list_pages_over_a_thousand_rows_without_gaps_or_duplicates() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let mut all = Vec::new();
    for i in 0..1_000 {
        let tenant = if i % 3 == 0 { "globex" } else { "acme" };
        let t = record(&format!("tok{i}"), tenant, "default", NOW + i / 7);
        assert_eq!(insert(&store, &t), Created::Ok);
        all.push(t);
    }
    for i in (0..1_000).step_by(10) {
        block_on(store.revoke(&all[i].id, None, NOW, "admin", &json!({}))).unwrap();
    }
    for (filter, expected) in [
        (
            TokenFilter {
                include_revoked: true,
                ..Default::default()
            },
            1_000,
        ),
        (TokenFilter::default(), 900),
        (
            TokenFilter {
                tenant: Some("acme"),
                project: Some("default"),
                include_revoked: true,
                ..Default::default()
            },
            666,
        ),
    ] {
        for limit in [1_000, 37, 500] {
            let mut ids = Vec::new();
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let (page, next) =
                    block_on(store.list(filter, limit, cursor.as_ref(), NOW)).unwrap();
                assert!(page.len() <= limit as usize);
                keys.extend(page.iter().map(|t| (t.created_at, t.id.clone())));
                ids.extend(page.into_iter().map(|t| t.id));
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(ids.len(), expected, "{filter:?} limit {limit}");
            assert_eq!(ids.iter().collect::<HashSet<_>>().len(), expected);
            assert!(keys.windows(2).all(|w| w[0] > w[1]), "newest first");
        }
    }
}

#[test]
fn audit_pages_newest_first_with_filters() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let mut ids = Vec::new();
    for i in 0..30 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        let t = record(&format!("t{i}"), tenant, "default", NOW + i);
        insert(&store, &t);
        ids.push(t.id);
    }
    block_on(store.revoke(&ids[0], None, NOW + 100, "admin", &json!({}))).unwrap();
    let acme = AuditFilter {
        tenant: Some("acme"),
        ..Default::default()
    };
    let mut seqs = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = block_on(store.audit_page(acme, 4, cursor, NOW)).unwrap();
        assert!(page.iter().all(|e| e.event.tenant == "acme"));
        seqs.extend(page.iter().map(|e| e.seq));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seqs.len(), 16);
    assert!(seqs.windows(2).all(|w| w[0] > w[1]));
    let by_token = AuditFilter {
        token_id: Some(&ids[0]),
        ..Default::default()
    };
    let (page, next) = block_on(store.audit_page(by_token, 10, None, NOW)).unwrap();
    let kinds: Vec<_> = page.iter().map(|e| e.event.event).collect();
    assert_eq!((kinds, next), (vec![Event::Revoked, Event::Created], None));
}

#[test]
fn storage_errors_surface_and_transactions_roll_back() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    block_on(store.ensure_schema(NOW)).unwrap();
    // Break the audit table so the second statement of a create fails.
    db.raw(|c| c.execute_batch("DROP TABLE audit; CREATE TABLE audit (seq INTEGER)"))
        .unwrap();
    let t = record("a", "acme", "default", NOW);
    let err = block_on(store.create(&t, &created(&t))).unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM tokens"), 0, "rolled back");
    // And the connection is usable again (no transaction left open).
    assert_eq!(block_on(store.token_by_id(&t.id, NOW)), Ok(None));
}

#[test]
fn list_filters_by_status_at_the_given_time() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    // Created at NOW + i, each lives one day: `expiring` runs out first.
    let mut expiring = record("expiring", "acme", "default", NOW);
    expiring.expires_at = Some(NOW + 100);
    let mut forever = record("forever", "acme", "default", NOW + 1);
    forever.expires_at = None;
    let live = record("live", "acme", "default", NOW + 2);
    let revoked = record("revoked", "acme", "default", NOW + 3);
    let other = record("other-tenant", "globex", "default", NOW + 4);
    for t in [&expiring, &forever, &live, &revoked, &other] {
        assert_eq!(insert(&store, t), Created::Ok);
    }
    block_on(store.revoke(&revoked.id, None, NOW + 5, "admin", &json!({}))).unwrap();
    let names = |status: Option<Status>, include_revoked: bool, now: i64| {
        let filter = TokenFilter {
            tenant: Some("acme"),
            status,
            include_revoked,
            ..Default::default()
        };
        let (tokens, _) = block_on(store.list(filter, 50, None, now)).unwrap();
        tokens.into_iter().map(|t| t.name).collect::<Vec<_>>()
    };
    let at = NOW + 100; // `expiring` expires at this second
    assert_eq!(names(Some(Status::Active), false, at), ["live", "forever"]);
    assert_eq!(names(Some(Status::Expired), false, at), ["expiring"]);
    assert_eq!(names(Some(Status::Revoked), false, at), ["revoked"]);
    // A status wins over include_revoked.
    assert_eq!(names(Some(Status::Active), true, at), ["live", "forever"]);
    // One second earlier `expiring` was still active.
    assert_eq!(
        names(Some(Status::Active), false, at - 1),
        ["live", "forever", "expiring"]
    );
    assert!(names(Some(Status::Expired), false, at - 1).is_empty());
    // Without a status: live and expired, revoked only on request.
    assert_eq!(names(None, false, at), ["live", "forever", "expiring"]);
    assert_eq!(
        names(None, true, at),
        ["revoked", "live", "forever", "expiring"]
    );
}

#[test]
fn a_version_2_database_migrates_to_rate_limits_keeping_its_tokens_and_feed() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let t = record("ci", "acme", "default", NOW);
    db.raw(|c| {
        c.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for sql in sqlite::MIGRATIONS[0].iter().chain(sqlite::MIGRATIONS[1]) {
            c.execute_batch(sql).unwrap();
        }
        c.execute("INSERT INTO schema_version VALUES (1, 0), (2, 0)", [])
            .unwrap();
        c.execute(
            "INSERT INTO tokens (id, token_sha, name, tenant, project, scopes, hint, created_by, \
             created_at) VALUES (?, ?, 'ci', 'acme', 'default', '[\"mcp:*\"]', 'h', 'admin', ?)",
            rusqlite::params![t.id, t.token_sha, NOW],
        )
        .unwrap();
        c.execute(
            "INSERT INTO revocations (token_sha, at) VALUES (?, 0)",
            [&"ab".repeat(32)],
        )
        .unwrap();
    });
    // Introspection's lookup migrates on first use.
    let got = block_on(store.token_by_sha(&t.token_sha, NOW))
        .unwrap()
        .unwrap();
    assert_eq!(got.rate_limit, None);
    assert_eq!(block_on(store.schema_version()), Ok(SCHEMA_VERSION));
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!(read.entries, vec![(1, "ab".repeat(32))]);
    assert!(read.changed.is_empty(), "old entries are revocations");
    // A limit set now is a "changed" entry, and reads back.
    let limit = RateLimit::new(5, 60, Some(2)).unwrap();
    let set = block_on(store.set_rate_limit(&t.id, None, Some(limit), NOW, "admin"))
        .unwrap()
        .unwrap();
    assert_eq!((set.previous, set.token.rate_limit), (None, Some(limit)));
    let read = block_on(store.revocations(0, 10, NOW)).unwrap();
    assert_eq!(read.changed, [2].into_iter().collect());
    let again = block_on(store.token_by_id(&t.id, NOW)).unwrap().unwrap();
    assert_eq!(again.rate_limit, Some(limit));
}

#[test]
fn a_stored_rate_limit_out_of_range_is_corrupt_not_unlimited() {
    let db = TestDb::memory();
    let store = Store::new(&db);
    let t = record("ci", "acme", "default", NOW);
    block_on(store.create(&t, &created(&t))).unwrap();
    db.raw(|c| {
        c.execute(
            "UPDATE tokens SET rate_limit = '{\"requests\":0,\"window_s\":60,\"burst\":0}'",
            [],
        )
        .unwrap();
    });
    let e = block_on(store.token_by_sha(&t.token_sha, NOW)).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
}
