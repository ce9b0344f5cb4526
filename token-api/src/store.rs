//! All SQL: schema migrations, token rows, the revocations feed and the audit
//! log, written once over [`Db`], the one-statement-at-a-time interface both
//! Spin's SQLite and Spin's PostgreSQL offer. The component runs it on Spin
//! SQLite (local file or remote libSQL) or on PostgreSQL; the host tests run
//! the very same statements on rusqlite and on a real PostgreSQL server.
//!
//! One store for both engines: every operation is written once, in SQL both
//! understand, with `?` placeholders. What an engine needs written its own
//! way (the schema, how a writing transaction starts, placeholders, what an
//! error means) lives in [`sqlite`] and [`postgres`], chosen by the
//! connection's [`Dialect`]. The service above never knows which it runs on.
//!
//! Nothing is cached between calls: several instances may share one database.

pub mod postgres;
pub mod sqlite;

use core::fmt;
use core::future::Future;
use std::collections::BTreeSet;

use mcpgw_token::ratelimit::RateLimit;

use serde_json::Value as Json;

use crate::cursor::{AuditCursor, ListCursor};
use crate::model::{AuditRecord, Event, NewAuditEvent, Status, TokenRecord};

/// A value as the store passes it: SQLite's five types, which the PostgreSQL
/// connections map onto `BIGINT`, `DOUBLE PRECISION`, `TEXT` and `BYTEA`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

pub type Row = Vec<Value>;

/// What a database error means to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A table or column is missing: the database is older than this code.
    MissingSchema,
    /// The database cannot be reached now (down, restarting, overloaded,
    /// busy): worth trying again later.
    Unavailable,
    Other,
}

/// A database error as the connection reported it (the message goes to the
/// log only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl DbError {
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A SQLite error, classified by its message (what Spin's `spin:sqlite`
    /// and rusqlite both carry).
    pub fn sqlite(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            kind: sqlite::classify(&message),
            message,
        }
    }
}

/// The SQL engine behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sqlite` or `postgres`, as `/health` names the store.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    fn migrations(self) -> &'static [Migration] {
        match self {
            Dialect::Sqlite => sqlite::MIGRATIONS,
            Dialect::Postgres => postgres::MIGRATIONS,
        }
    }

    fn schema_version_table(self) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite::SCHEMA_VERSION_TABLE,
            Dialect::Postgres => postgres::SCHEMA_VERSION_TABLE,
        }
    }

    /// The larger of two values (a scalar, not the aggregate).
    fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }
}

/// One SQL statement at a time, on one connection (so `BEGIN` ... `COMMIT`
/// spans calls).
// The component is single-threaded: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Db {
    /// The engine: decides the few statements written per engine.
    fn dialect(&self) -> Dialect;

    /// Runs one statement with positional parameters (`?` for SQLite, `$n`
    /// for PostgreSQL: the store numbers them); returns all its rows.
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError>;
}

/// Why a storage operation failed: 503 when the database is unavailable,
/// else 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    Db(DbError),
    /// A row that this code could not have written.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "database: {}", e.message),
            StoreError::Corrupt(e) => write!(f, "unexpected stored data: {e}"),
        }
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        StoreError::Db(e)
    }
}

impl StoreError {
    /// The schema is older than this code (fresh database, or a migration to run).
    fn is_missing_schema(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.kind == DbErrorKind::MissingSchema)
    }

    /// The database cannot be reached now; the request may be tried again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.kind == DbErrorKind::Unavailable)
    }
}

type Result<T, E = StoreError> = core::result::Result<T, E>;

/// One schema version: statements run in order, in one transaction. Every
/// statement is idempotent, so a migration interrupted half-way ends in the
/// same schema when run again.
pub type Migration = &'static [&'static str];

/// The schema version this code needs.
pub const SCHEMA_VERSION: i64 = sqlite::MIGRATIONS.len() as i64;

const TOKEN_COLUMNS: &str = "id, token_sha, name, tenant, project, scopes, hint, created_by, \
                             created_at, expires_at, revoked_at, last_used_at, rate_limit";
const AUDIT_COLUMNS: &str =
    "seq, at, event, tenant, project, token_id, token_name, token_sha, actor, detail";

/// Restricts an operation to one tenant + project (a token acting on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub tenant: &'a str,
    pub project: &'a str,
}

impl Owner<'_> {
    fn owns(&self, r: &TokenRecord) -> bool {
        r.tenant == self.tenant && r.project == self.project
    }
}

/// Filters of the token list.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenFilter<'a> {
    pub tenant: Option<&'a str>,
    pub project: Option<&'a str>,
    pub include_revoked: bool,
    /// Only tokens in this state (as of `now`); overrides `include_revoked`.
    pub status: Option<Status>,
}

/// Filters of the audit log.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter<'a> {
    pub tenant: Option<&'a str>,
    pub project: Option<&'a str>,
    pub token_id: Option<&'a str>,
}

/// Outcome of inserting a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Ok,
    /// A live token of the same tenant + project already has the name.
    NameTaken {
        existing_id: String,
    },
}

/// Outcome of a revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The token as it is now.
    pub token: TokenRecord,
    /// Whether this call revoked it (false: it already was).
    pub changed: bool,
    /// Descendants revoked with it by this call, oldest first.
    pub cascaded: Vec<TokenRecord>,
}

/// Outcome of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The token as it was.
    pub token: TokenRecord,
    /// Descendants revoked because it went.
    pub cascaded: Vec<TokenRecord>,
}

/// Outcome of a rate-limit change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSet {
    /// The token as it is now (a revoked token is left as it was).
    pub token: TokenRecord,
    /// The limit it had.
    pub previous: Option<RateLimit>,
    /// Descendants whose own limit the new one lowered.
    pub cascaded: Vec<TokenRecord>,
}

/// A token's place in revocation cascades.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    /// The token whose revocation (or deletion) revoked this one.
    pub revoked_via: Option<String>,
    /// Tokens revoked because this one was.
    pub cascade_revoked: i64,
}

/// The feed's state and one page of it, read in one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRead {
    pub epoch: String,
    /// The newest sequence number pruned (entries up to it are gone).
    pub pruned_through: i64,
    /// The newest sequence number ever written (0: none).
    pub head: i64,
    /// `(seq, token_sha)` after the position asked for, oldest first.
    pub entries: Vec<(i64, String)>,
    /// The sequence numbers among `entries` that say "changed", not
    /// "revoked".
    pub changed: BTreeSet<i64>,
}

pub struct Store<'a, D: Db> {
    db: &'a D,
    /// Feed entries older than this many seconds are pruned on writes.
    feed_retention_s: Option<i64>,
}

impl<'a, D: Db> Store<'a, D> {
    /// A store that keeps the feed for ever (reads, tests).
    pub fn new(db: &'a D) -> Self {
        Store {
            db,
            feed_retention_s: None,
        }
    }

    /// Prunes feed entries older than `retention_s` whenever it writes some.
    pub fn pruning(mut self, retention_s: Option<i64>) -> Self {
        self.feed_retention_s = retention_s;
        self
    }

    async fn exec(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        Ok(match self.db.dialect() {
            Dialect::Sqlite => self.db.query(sql, params).await?,
            Dialect::Postgres => self.db.query(&postgres::numbered(sql), params).await?,
        })
    }

    /// The engine the store runs on.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// Runs `op`; when the schema is missing or old, migrates and runs it once more.
    /// Keeps the hot paths (introspect, the feed) to their one query.
    async fn with_schema<T, F, Fut>(&self, now: i64, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match op().await {
            Err(e) if e.is_missing_schema() => {
                self.migrate(now).await?;
                op().await
            }
            other => other,
        }
    }

    /// Runs `body` in a writing transaction. SQLite: `BEGIN IMMEDIATE`, the
    /// write lock taken up front, so concurrent writers queue instead of
    /// failing on upgrade (it also serialises feed writers). PostgreSQL:
    /// `BEGIN`, and the feed lock first when `body` may write the feed (see
    /// [`postgres`]), taken before any row lock so writers never deadlock.
    async fn tx<T>(&self, writes_feed: bool, body: impl Future<Output = Result<T>>) -> Result<T> {
        match self.db.dialect() {
            Dialect::Sqlite => {
                self.exec("BEGIN IMMEDIATE", vec![]).await?;
            }
            Dialect::Postgres => {
                self.exec("BEGIN", vec![]).await?;
                if writes_feed {
                    if let Err(e) = self.lock(postgres::FEED_LOCK).await {
                        let _ = self.exec("ROLLBACK", vec![]).await;
                        return Err(e);
                    }
                }
            }
        }
        let out = body.await;
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match self.exec(end, vec![]).await {
            Ok(_) => out,
            Err(e) => {
                if out.is_ok() {
                    let _ = self.exec("ROLLBACK", vec![]).await;
                }
                Err(out.err().unwrap_or(e))
            }
        }
    }

    /// A PostgreSQL advisory lock held until the transaction ends.
    async fn lock(&self, key: i64) -> Result<()> {
        self.exec("SELECT pg_advisory_xact_lock(?)", vec![key.into()])
            .await
            .map(drop)
    }

    /// Storage reachability for `/health`; needs no schema.
    pub async fn ping(&self) -> Result<()> {
        self.exec("SELECT 1", vec![]).await.map(drop)
    }

    /// Current schema version, 0 for an empty database.
    pub async fn schema_version(&self) -> Result<i64> {
        match self
            .exec(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                vec![],
            )
            .await
        {
            Ok(rows) => first_int(&rows),
            Err(e) if e.is_missing_schema() => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Brings the schema to [`SCHEMA_VERSION`] unless it is there already.
    pub async fn ensure_schema(&self, now: i64) -> Result<()> {
        if self.schema_version().await? < SCHEMA_VERSION {
            self.migrate(now).await?;
        }
        Ok(())
    }

    /// Applies the missing migrations in one transaction. Instances starting
    /// together on a fresh database take turns: SQLite's write lock, or on
    /// PostgreSQL an advisory lock (its DDL is transactional, but two
    /// `CREATE TABLE IF NOT EXISTS` racing can still collide); the second
    /// finds the version up to date and does nothing.
    pub async fn migrate(&self, now: i64) -> Result<()> {
        let dialect = self.db.dialect();
        self.tx(false, async {
            if dialect == Dialect::Postgres {
                self.lock(postgres::MIGRATION_LOCK).await?;
            }
            self.exec(dialect.schema_version_table(), vec![]).await?;
            let current = first_int(
                &self
                    .exec(
                        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                        vec![],
                    )
                    .await?,
            )?;
            for (version, statements) in (1..).zip(dialect.migrations()) {
                if version <= current {
                    continue;
                }
                for sql in *statements {
                    self.exec(sql, vec![]).await?;
                }
                self.exec(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?) \
                     ON CONFLICT DO NOTHING",
                    vec![version.into(), now.into()],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// The token with this hash: one lookup on the unique index.
    pub async fn token_by_sha(&self, sha: &str, now: i64) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_sha = ?");
        self.with_schema(now, || async {
            let rows = self.exec(&sql, vec![sha.into()]).await?;
            rows.first().map(token_from_row).transpose()
        })
        .await
    }

    /// The token with this id.
    pub async fn token_by_id(&self, id: &str, now: i64) -> Result<Option<TokenRecord>> {
        self.with_schema(now, || self.token_by_id_once(id)).await
    }

    async fn token_by_id_once(&self, id: &str) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?");
        let rows = self.exec(&sql, vec![id.into()]).await?;
        rows.first().map(token_from_row).transpose()
    }

    /// Records a use, at most once a minute per token, so introspection does
    /// not turn every request into a write. Returns whether a row changed.
    pub async fn touch(&self, id: &str, now: i64) -> Result<bool> {
        let rows = self
            .exec(
                "UPDATE tokens SET last_used_at = ? \
                 WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?) RETURNING id",
                vec![now.into(), id.into(), (now - 60).into()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Inserts a token and its `created` audit event atomically.
    pub async fn create(&self, t: &TokenRecord, audit: &NewAuditEvent) -> Result<Created> {
        let scopes = serde_json::to_string(&t.scopes)
            .map_err(|e| StoreError::Corrupt(format!("scopes: {e}")))?;
        let rate_limit = limit_text(t.rate_limit)?;
        let sql = format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING id"
        );
        let params = || {
            vec![
                t.id.as_str().into(),
                t.token_sha.as_str().into(),
                t.name.as_str().into(),
                t.tenant.as_str().into(),
                t.project.as_str().into(),
                scopes.as_str().into(),
                t.hint.as_str().into(),
                t.created_by.as_str().into(),
                t.created_at.into(),
                t.expires_at.into(),
                t.revoked_at.into(),
                t.last_used_at.into(),
                rate_limit.clone().into(),
            ]
        };
        self.with_schema(t.created_at, || {
            self.tx(false, async {
                if !self.exec(&sql, params()).await?.is_empty() {
                    self.insert_audit(audit).await?;
                    return Ok(Created::Ok);
                }
                let holder = self
                    .exec(
                        "SELECT id FROM tokens \
                         WHERE tenant = ? AND project = ? AND name = ? AND revoked_at IS NULL",
                        vec![
                            t.tenant.as_str().into(),
                            t.project.as_str().into(),
                            t.name.as_str().into(),
                        ],
                    )
                    .await?;
                match holder.first() {
                    Some(row) => Ok(Created::NameTaken {
                        existing_id: text(row, 0)?,
                    }),
                    // The id or the hash collided: 2^-80 / 2^-256 odds, but never
                    // report a name conflict that is not there.
                    None => Err(StoreError::Corrupt(format!(
                        "token id {} or its hash is already stored",
                        t.id
                    ))),
                }
            })
        })
        .await
    }

    /// Revokes a token and, transitively, every live token it created:
    /// sets `revoked_at`, appends each hash to the feed and writes a `revoked`
    /// event for each (a descendant's names the cascade), atomically. `None`
    /// when there is no such token for `owner`. Revoking a revoked token
    /// changes nothing unless some descendant is still live.
    pub async fn revoke(
        &self,
        id: &str,
        owner: Option<Owner<'_>>,
        now: i64,
        actor: &str,
        detail: &Json,
    ) -> Result<Option<Revoked>> {
        self.with_schema(now, || {
            self.tx(true, async {
                let Some(mut t) = self.token_by_id_once(id).await? else {
                    return Ok(None);
                };
                if owner.is_some_and(|o| !o.owns(&t)) {
                    return Ok(None);
                }
                let cascaded = self.live_descendants(id).await?;
                let changed = t.revoked_at.is_none();
                if changed {
                    self.exec(
                        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        vec![now.into(), id.into()],
                    )
                    .await?;
                    self.feed(&t.token_sha, now).await?;
                    t.revoked_at = Some(now);
                    let mut detail = detail.clone();
                    if !cascaded.is_empty() {
                        detail["cascaded"] = cascaded.len().into();
                    }
                    self.insert_audit(&audit_for(&t, Event::Revoked, now, actor, detail))
                        .await?;
                }
                let cascaded = self.cascade(id, cascaded, now, actor, detail).await?;
                self.prune(now).await?;
                Ok(Some(Revoked {
                    token: t,
                    changed,
                    cascaded,
                }))
            })
        })
        .await
    }

    /// Deletes a token for good; a token that was not revoked yet also goes
    /// into the feed, so gateways drop it. Its live descendants are revoked
    /// (a child must not outlive the token that minted it). Writes a
    /// `deleted` event, and a `revoked` one per descendant.
    pub async fn delete(
        &self,
        id: &str,
        owner: Option<Owner<'_>>,
        now: i64,
        actor: &str,
    ) -> Result<Option<Deleted>> {
        self.with_schema(now, || {
            self.tx(true, async {
                let Some(t) = self.token_by_id_once(id).await? else {
                    return Ok(None);
                };
                if owner.is_some_and(|o| !o.owns(&t)) {
                    return Ok(None);
                }
                let cascaded = self.live_descendants(id).await?;
                self.exec("DELETE FROM tokens WHERE id = ?", vec![id.into()])
                    .await?;
                self.exec("DELETE FROM cascades WHERE id = ?", vec![id.into()])
                    .await?;
                if t.revoked_at.is_none() {
                    self.feed(&t.token_sha, now).await?;
                }
                let mut detail = serde_json::json!({"status": t.status(now).as_str()});
                if !cascaded.is_empty() {
                    detail["cascaded"] = cascaded.len().into();
                }
                self.insert_audit(&audit_for(&t, Event::Deleted, now, actor, detail))
                    .await?;
                let cascaded = self
                    .cascade(id, cascaded, now, actor, &serde_json::json!({}))
                    .await?;
                self.prune(now).await?;
                Ok(Some(Deleted { token: t, cascaded }))
            })
        })
        .await
    }

    /// Sets a live token's rate limit (`None`: no limit), appends a
    /// "changed" feed entry so gateways drop their cached answer, and writes
    /// a `rate_limit_changed` event, atomically. A lower limit is also the
    /// ceiling of every live token below it (a token never mints one that may
    /// do more than itself): those whose limit it does not cover get it, each
    /// with its own feed entry and event naming the cascade. `None` when
    /// there is no such token for `owner`; a revoked token is not changed.
    pub async fn set_rate_limit(
        &self,
        id: &str,
        owner: Option<Owner<'_>>,
        limit: Option<RateLimit>,
        now: i64,
        actor: &str,
    ) -> Result<Option<LimitSet>> {
        let text = limit_text(limit)?;
        self.with_schema(now, || {
            let text = text.clone();
            async move {
                self.tx(true, async {
                    let Some(mut t) = self.token_by_id_once(id).await? else {
                        return Ok(None);
                    };
                    if owner.is_some_and(|o| !o.owns(&t)) {
                        return Ok(None);
                    }
                    let previous = t.rate_limit;
                    if t.revoked_at.is_some() {
                        return Ok(Some(LimitSet {
                            token: t,
                            previous,
                            cascaded: Vec::new(),
                        }));
                    }
                    if previous != limit {
                        self.exec(
                            "UPDATE tokens SET rate_limit = ? WHERE id = ?",
                            vec![text.clone().into(), id.into()],
                        )
                        .await?;
                        self.feed_kind(&t.token_sha, now, "changed").await?;
                        t.rate_limit = limit;
                        let detail = serde_json::json!({"from": previous, "to": limit});
                        self.insert_audit(&audit_for(
                            &t,
                            Event::RateLimitChanged,
                            now,
                            actor,
                            detail,
                        ))
                        .await?;
                    }
                    let mut cascaded = Vec::new();
                    if let Some(ceiling) = limit {
                        for mut d in self.live_descendants(id).await? {
                            if d.rate_limit.is_some_and(|l| ceiling.covers(&l)) {
                                continue;
                            }
                            let from = d.rate_limit;
                            self.exec(
                                "UPDATE tokens SET rate_limit = ? WHERE id = ?",
                                vec![text.clone().into(), d.id.as_str().into()],
                            )
                            .await?;
                            self.feed_kind(&d.token_sha, now, "changed").await?;
                            d.rate_limit = limit;
                            let detail = serde_json::json!({
                                "from": from, "to": limit,
                                "cascade": {"via": id, "parent": d.created_by.strip_prefix("token:")
                                    .unwrap_or(&d.created_by)},
                            });
                            self.insert_audit(&audit_for(
                                &d,
                                Event::RateLimitChanged,
                                now,
                                actor,
                                detail,
                            ))
                            .await?;
                            cascaded.push(d);
                        }
                    }
                    if previous != limit || !cascaded.is_empty() {
                        self.prune(now).await?;
                    }
                    Ok(Some(LimitSet {
                        token: t,
                        previous,
                        cascaded,
                    }))
                })
                .await
            }
        })
        .await
    }

    /// Every token descending from `id` (created by it, by those, ...) that
    /// is not revoked, oldest first. Revoked ones are walked through too: a
    /// token revoked before revocation cascaded may have live children.
    async fn live_descendants(&self, id: &str) -> Result<Vec<TokenRecord>> {
        let sql = format!(
            "WITH RECURSIVE tree(id) AS ( \
                 SELECT id FROM tokens WHERE created_by = ? \
                 UNION \
                 SELECT t.id FROM tokens t JOIN tree ON t.created_by = 'token:' || tree.id \
             ) \
             SELECT {TOKEN_COLUMNS} FROM tokens \
             WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL \
             ORDER BY created_at, id"
        );
        let rows = self.exec(&sql, vec![format!("token:{id}").into()]).await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes `tokens` because `via` was revoked or deleted: feed entry,
    /// lineage row and a `revoked` event naming the cascade, for each.
    async fn cascade(
        &self,
        via: &str,
        tokens: Vec<TokenRecord>,
        now: i64,
        actor: &str,
        detail: &Json,
    ) -> Result<Vec<TokenRecord>> {
        let mut out = Vec::with_capacity(tokens.len());
        for mut t in tokens {
            self.exec(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                vec![now.into(), t.id.as_str().into()],
            )
            .await?;
            self.feed(&t.token_sha, now).await?;
            self.exec(
                "INSERT INTO cascades (id, via) VALUES (?, ?) \
                 ON CONFLICT (id) DO UPDATE SET via = excluded.via",
                vec![t.id.as_str().into(), via.into()],
            )
            .await?;
            t.revoked_at = Some(now);
            let mut detail = detail.clone();
            detail["cascade"] = serde_json::json!({
                "via": via,
                "parent": t.created_by.strip_prefix("token:").unwrap_or(&t.created_by),
            });
            self.insert_audit(&audit_for(&t, Event::Revoked, now, actor, detail))
                .await?;
            out.push(t);
        }
        Ok(out)
    }

    /// Where a token stands in revocation cascades (for describe).
    pub async fn lineage(&self, id: &str, now: i64) -> Result<Lineage> {
        let rows = self
            .with_schema(now, || {
                self.exec(
                    "SELECT (SELECT via FROM cascades WHERE id = ?), \
                            (SELECT COUNT(*) FROM cascades WHERE via = ?)",
                    vec![id.into(), id.into()],
                )
            })
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("lineage returned no row".into()))?;
        Ok(Lineage {
            revoked_via: opt_text(row, 0)?,
            cascade_revoked: int(row, 1)?,
        })
    }

    async fn feed(&self, sha: &str, now: i64) -> Result<()> {
        self.feed_kind(sha, now, "revoked").await
    }

    async fn feed_kind(&self, sha: &str, now: i64, kind: &str) -> Result<()> {
        self.exec(
            "INSERT INTO revocations (token_sha, at, kind) VALUES (?, ?, ?)",
            vec![sha.into(), now.into(), kind.into()],
        )
        .await
        .map(drop)
    }

    /// Drops feed entries older than the retention, remembering the newest
    /// sequence number dropped so a cursor before it gets a reset. Two index
    /// probes that find nothing, unless something just aged out.
    async fn prune(&self, now: i64) -> Result<()> {
        let Some(retention) = self.feed_retention_s else {
            return Ok(());
        };
        let before = now.saturating_sub(retention);
        let sql = format!(
            "UPDATE feed_state SET pruned_through = {}(pruned_through, \
                 (SELECT COALESCE(MAX(seq), 0) FROM revocations WHERE at < ?)) \
             WHERE id = 1",
            self.db.dialect().greatest()
        );
        self.exec(&sql, vec![before.into()]).await?;
        self.exec("DELETE FROM revocations WHERE at < ?", vec![before.into()])
            .await
            .map(drop)
    }

    /// A page of tokens, newest first, after `cursor`; plus the cursor of the
    /// next page when there is one.
    pub async fn list(
        &self,
        filter: TokenFilter<'_>,
        limit: u32,
        cursor: Option<&ListCursor>,
        now: i64,
    ) -> Result<(Vec<TokenRecord>, Option<ListCursor>)> {
        let mut conds: Vec<&str> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(tenant) = filter.tenant {
            conds.push("tenant = ?");
            params.push(tenant.into());
        }
        if let Some(project) = filter.project {
            conds.push("project = ?");
            params.push(project.into());
        }
        match filter.status {
            Some(Status::Revoked) => conds.push("revoked_at IS NOT NULL"),
            Some(Status::Expired) => {
                conds.push("revoked_at IS NULL AND expires_at <= ?");
                params.push(now.into());
            }
            Some(Status::Active) => {
                conds.push("revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)");
                params.push(now.into());
            }
            None if !filter.include_revoked => conds.push("revoked_at IS NULL"),
            None => {}
        }
        if let Some(c) = cursor {
            conds.push("(created_at < ? OR (created_at = ? AND id < ?))");
            params.extend([
                c.created_at.into(),
                c.created_at.into(),
                c.id.as_str().into(),
            ]);
        }
        // One row past the page tells whether another page exists.
        params.push(i64::from(limit).saturating_add(1).into());
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens{} ORDER BY created_at DESC, id DESC LIMIT ?",
            where_clause(&conds)
        );
        let rows = self
            .with_schema(now, || self.exec(&sql, params.clone()))
            .await?;
        let mut tokens = rows
            .iter()
            .map(token_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next = if tokens.len() > limit as usize {
            tokens.truncate(limit as usize);
            tokens.last().map(|t| ListCursor {
                created_at: t.created_at,
                id: t.id.clone(),
            })
        } else {
            None
        };
        Ok((tokens, next))
    }

    /// The feed's epoch, horizon and head, and up to `limit` entries after
    /// `after`: one statement, so the page and the state agree.
    pub async fn revocations(&self, after: i64, limit: u32, now: i64) -> Result<FeedRead> {
        let rows = self
            .with_schema(now, || {
                self.exec(
                    "SELECT 0, epoch, pruned_through, \
                            (SELECT COALESCE(MAX(seq), 0) FROM revocations) \
                     FROM feed_state WHERE id = 1 \
                     UNION ALL \
                     SELECT 1, token_sha, seq, changed FROM \
                         (SELECT seq, token_sha, \
                                 CASE WHEN kind = 'changed' THEN 1 ELSE 0 END AS changed \
                          FROM revocations WHERE seq > ? \
                          ORDER BY seq LIMIT ?) AS page",
                    vec![after.into(), i64::from(limit).into()],
                )
            })
            .await?;
        let mut state = None;
        let mut entries = Vec::with_capacity(rows.len());
        let mut changed = BTreeSet::new();
        for r in &rows {
            match int(r, 0)? {
                0 => state = Some((text(r, 1)?, int(r, 2)?, int(r, 3)?)),
                _ => {
                    let seq = int(r, 2)?;
                    if int(r, 3)? == 1 {
                        changed.insert(seq);
                    }
                    entries.push((seq, text(r, 1)?));
                }
            }
        }
        let (epoch, pruned_through, max_seq) =
            state.ok_or_else(|| StoreError::Corrupt("feed_state has no row".into()))?;
        entries.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(FeedRead {
            epoch,
            pruned_through,
            head: max_seq.max(pruned_through),
            entries,
            changed,
        })
    }

    /// Appends an audit event on its own (a denied create has nothing else to write).
    pub async fn audit(&self, e: &NewAuditEvent) -> Result<()> {
        self.with_schema(e.at, || self.insert_audit(e)).await
    }

    async fn insert_audit(&self, e: &NewAuditEvent) -> Result<()> {
        self.exec(
            "INSERT INTO audit (at, event, tenant, project, token_id, token_name, token_sha, \
             actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                e.at.into(),
                e.event.as_str().into(),
                e.tenant.as_str().into(),
                e.project.as_str().into(),
                e.token_id.clone().into(),
                e.token_name.clone().into(),
                e.token_sha.clone().into(),
                e.actor.as_str().into(),
                e.detail.to_string().into(),
            ],
        )
        .await
        .map(drop)
    }

    /// A page of audit events, newest first.
    pub async fn audit_page(
        &self,
        filter: AuditFilter<'_>,
        limit: u32,
        cursor: Option<AuditCursor>,
        now: i64,
    ) -> Result<(Vec<AuditRecord>, Option<AuditCursor>)> {
        let mut conds: Vec<&str> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        for (cond, value) in [
            ("tenant = ?", filter.tenant),
            ("project = ?", filter.project),
            ("token_id = ?", filter.token_id),
        ] {
            if let Some(v) = value {
                conds.push(cond);
                params.push(v.into());
            }
        }
        if let Some(c) = cursor {
            conds.push("seq < ?");
            params.push(c.seq.into());
        }
        params.push(i64::from(limit).saturating_add(1).into());
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit{} ORDER BY seq DESC LIMIT ?",
            where_clause(&conds)
        );
        let rows = self
            .with_schema(now, || self.exec(&sql, params.clone()))
            .await?;
        let mut events = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| AuditCursor { seq: e.seq })
        } else {
            None
        };
        Ok((events, next))
    }
}

fn where_clause(conds: &[&str]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

fn audit_for(t: &TokenRecord, event: Event, at: i64, actor: &str, detail: Json) -> NewAuditEvent {
    NewAuditEvent {
        at,
        event,
        tenant: t.tenant.clone(),
        project: t.project.clone(),
        token_id: Some(t.id.clone()),
        token_name: Some(t.name.clone()),
        token_sha: Some(t.token_sha.clone()),
        actor: actor.to_owned(),
        detail,
    }
}

fn cell(row: &Row, i: usize) -> Result<&Value> {
    row.get(i)
        .ok_or_else(|| StoreError::Corrupt(format!("row has no column {i}")))
}

fn int(row: &Row, i: usize) -> Result<i64> {
    match cell(row, i)? {
        Value::Integer(v) => Ok(*v),
        other => Err(StoreError::Corrupt(format!(
            "column {i}: expected integer, got {other:?}"
        ))),
    }
}

fn opt_int(row: &Row, i: usize) -> Result<Option<i64>> {
    match cell(row, i)? {
        Value::Null => Ok(None),
        _ => int(row, i).map(Some),
    }
}

fn text(row: &Row, i: usize) -> Result<String> {
    match cell(row, i)? {
        Value::Text(v) => Ok(v.clone()),
        other => Err(StoreError::Corrupt(format!(
            "column {i}: expected text, got {other:?}"
        ))),
    }
}

fn opt_text(row: &Row, i: usize) -> Result<Option<String>> {
    match cell(row, i)? {
        Value::Null => Ok(None),
        _ => text(row, i).map(Some),
    }
}

fn first_int(rows: &[Row]) -> Result<i64> {
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("aggregate returned no row".into()))?;
    int(row, 0)
}

/// A rate limit as stored: its JSON, or NULL for none.
fn limit_text(limit: Option<RateLimit>) -> Result<Option<String>> {
    limit
        .map(|l| serde_json::to_string(&l))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("rate limit: {e}")))
}

fn limit_from(text: Option<String>) -> Result<Option<RateLimit>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let limit: RateLimit = serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("rate_limit {text:?}: {e}")))?;
    limit
        .check()
        .map_err(|e| StoreError::Corrupt(format!("rate_limit {text:?}: {e}")))?;
    Ok(Some(limit))
}

fn token_from_row(row: &Row) -> Result<TokenRecord> {
    let scopes = text(row, 5)?;
    Ok(TokenRecord {
        id: text(row, 0)?,
        token_sha: text(row, 1)?,
        name: text(row, 2)?,
        tenant: text(row, 3)?,
        project: text(row, 4)?,
        scopes: serde_json::from_str(&scopes)
            .map_err(|e| StoreError::Corrupt(format!("scopes {scopes:?}: {e}")))?,
        hint: text(row, 6)?,
        created_by: text(row, 7)?,
        created_at: int(row, 8)?,
        expires_at: opt_int(row, 9)?,
        revoked_at: opt_int(row, 10)?,
        last_used_at: opt_int(row, 11)?,
        rate_limit: limit_from(opt_text(row, 12)?)?,
    })
}

fn audit_from_row(row: &Row) -> Result<AuditRecord> {
    let name = text(row, 2)?;
    let event =
        Event::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("audit event {name:?}")))?;
    let detail = text(row, 9)?;
    Ok(AuditRecord {
        seq: int(row, 0)?,
        event: NewAuditEvent {
            at: int(row, 1)?,
            event,
            tenant: text(row, 3)?,
            project: text(row, 4)?,
            token_id: opt_text(row, 5)?,
            token_name: opt_text(row, 6)?,
            token_sha: opt_text(row, 7)?,
            actor: text(row, 8)?,
            detail: serde_json::from_str(&detail)
                .map_err(|e| StoreError::Corrupt(format!("audit detail {detail:?}: {e}")))?,
        },
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests_postgres;
