//! All SQL: schema migrations, token rows, the revocations feed and the audit
//! log, written once over [`Db`], the one-statement-at-a-time interface Spin's
//! SQLite offers. The component runs it on Spin SQLite (local file or remote
//! libSQL); the host tests run the very same statements on rusqlite.
//!
//! Nothing is cached between calls: several instances may share one database.

use core::fmt;
use core::future::Future;

use serde_json::Value as Json;

use crate::cursor::{AuditCursor, ListCursor};
use crate::model::{AuditRecord, Event, NewAuditEvent, Status, TokenRecord};

/// A SQLite value, as Spin's `spin:sqlite` carries it.
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

/// A database error as the host reported it (goes to the log only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

/// One SQL statement at a time, on one connection (so `BEGIN` ... `COMMIT`
/// spans calls).
// The component is single-threaded: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Db {
    /// Runs one statement with positional `?` parameters; returns all its rows.
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError>;
}

/// Why a storage operation failed. Either way the caller answers 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    Db(DbError),
    /// A row that this code could not have written.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "database: {}", e.0),
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
        matches!(self, StoreError::Db(DbError(m)) if m.contains("no such table") || m.contains("no such column"))
    }
}

type Result<T, E = StoreError> = core::result::Result<T, E>;

/// Migrations, in order; entry `i` brings the schema to version `i + 1`.
/// Every statement is idempotent, so instances racing on a fresh database and
/// a migration interrupted half-way both end in the same schema.
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE IF NOT EXISTS tokens (
        id           TEXT PRIMARY KEY,
        token_sha    TEXT NOT NULL UNIQUE,
        name         TEXT NOT NULL,
        tenant       TEXT NOT NULL,
        project      TEXT NOT NULL,
        scopes       TEXT NOT NULL,
        hint         TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER
    )",
    // Names are unique among tokens not revoked. Expired tokens keep their
    // name until revoked or deleted, so a name never silently changes owner.
    "CREATE UNIQUE INDEX IF NOT EXISTS tokens_live_name
        ON tokens (tenant, project, name) WHERE revoked_at IS NULL",
    "CREATE INDEX IF NOT EXISTS tokens_by_created ON tokens (created_at, id)",
    "CREATE INDEX IF NOT EXISTS tokens_by_tenant ON tokens (tenant, created_at, id)",
    "CREATE INDEX IF NOT EXISTS tokens_by_project ON tokens (tenant, project, created_at, id)",
    "CREATE TABLE IF NOT EXISTS revocations (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        token_sha TEXT NOT NULL,
        at        INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        event      TEXT NOT NULL,
        tenant     TEXT NOT NULL,
        project    TEXT NOT NULL,
        token_id   TEXT,
        token_name TEXT,
        token_sha  TEXT,
        actor      TEXT NOT NULL,
        detail     TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS audit_by_project ON audit (tenant, project, seq)",
    "CREATE INDEX IF NOT EXISTS audit_by_token ON audit (token_id, seq)",
]];

/// The schema version this code needs.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const TOKEN_COLUMNS: &str = "id, token_sha, name, tenant, project, scopes, hint, created_by, \
                             created_at, expires_at, revoked_at, last_used_at";
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

pub struct Store<'a, D: Db> {
    db: &'a D,
}

impl<'a, D: Db> Store<'a, D> {
    pub fn new(db: &'a D) -> Self {
        Store { db }
    }

    async fn exec(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        Ok(self.db.query(sql, params).await?)
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

    /// Runs `body` inside `BEGIN IMMEDIATE` ... `COMMIT`: the write lock is taken
    /// up front, so concurrent writers queue instead of failing on upgrade.
    async fn tx<T>(&self, body: impl Future<Output = Result<T>>) -> Result<T> {
        self.exec("BEGIN IMMEDIATE", vec![]).await?;
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

    /// Applies the missing migrations in one transaction.
    pub async fn migrate(&self, now: i64) -> Result<()> {
        self.tx(async {
            self.exec(
                "CREATE TABLE IF NOT EXISTS schema_version (
                    version    INTEGER PRIMARY KEY,
                    applied_at INTEGER NOT NULL
                )",
                vec![],
            )
            .await?;
            let current = first_int(
                &self
                    .exec(
                        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                        vec![],
                    )
                    .await?,
            )?;
            for (version, statements) in (1..).zip(MIGRATIONS) {
                if version <= current {
                    continue;
                }
                for sql in *statements {
                    self.exec(sql, vec![]).await?;
                }
                self.exec(
                    "INSERT OR IGNORE INTO schema_version (version, applied_at) VALUES (?, ?)",
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
        let sql = format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
            ]
        };
        self.with_schema(t.created_at, || {
            self.tx(async {
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

    /// Revokes a token (once): sets `revoked_at`, appends its hash to the feed
    /// and writes a `revoked` event, atomically. `None` when there is no such
    /// token for `owner`; the flag says whether this call revoked it.
    pub async fn revoke(
        &self,
        id: &str,
        owner: Option<Owner<'_>>,
        now: i64,
        actor: &str,
        detail: &Json,
    ) -> Result<Option<(TokenRecord, bool)>> {
        self.with_schema(now, || {
            self.tx(async {
                let Some(mut t) = self.token_by_id_once(id).await? else {
                    return Ok(None);
                };
                if owner.is_some_and(|o| !o.owns(&t)) {
                    return Ok(None);
                }
                if t.revoked_at.is_some() {
                    return Ok(Some((t, false)));
                }
                self.exec(
                    "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    vec![now.into(), id.into()],
                )
                .await?;
                self.feed(&t.token_sha, now).await?;
                t.revoked_at = Some(now);
                self.insert_audit(&audit_for(&t, Event::Revoked, now, actor, detail.clone()))
                    .await?;
                Ok(Some((t, true)))
            })
        })
        .await
    }

    /// Deletes a token for good; a token that was not revoked yet also goes
    /// into the feed, so gateways drop it. Writes a `deleted` event.
    pub async fn delete(
        &self,
        id: &str,
        owner: Option<Owner<'_>>,
        now: i64,
        actor: &str,
    ) -> Result<Option<TokenRecord>> {
        self.with_schema(now, || {
            self.tx(async {
                let Some(t) = self.token_by_id_once(id).await? else {
                    return Ok(None);
                };
                if owner.is_some_and(|o| !o.owns(&t)) {
                    return Ok(None);
                }
                self.exec("DELETE FROM tokens WHERE id = ?", vec![id.into()])
                    .await?;
                if t.revoked_at.is_none() {
                    self.feed(&t.token_sha, now).await?;
                }
                let detail = serde_json::json!({"status": t.status(now).as_str()});
                self.insert_audit(&audit_for(&t, Event::Deleted, now, actor, detail))
                    .await?;
                Ok(Some(t))
            })
        })
        .await
    }

    async fn feed(&self, sha: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO revocations (token_sha, at) VALUES (?, ?)",
            vec![sha.into(), now.into()],
        )
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

    /// Up to `limit` feed entries after `after`, oldest first: `(seq, token_sha)`.
    pub async fn revocations(
        &self,
        after: i64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<(i64, String)>> {
        let rows = self
            .with_schema(now, || {
                self.exec(
                    "SELECT seq, token_sha FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?",
                    vec![after.into(), i64::from(limit).into()],
                )
            })
            .await?;
        rows.iter().map(|r| Ok((int(r, 0)?, text(r, 1)?))).collect()
    }

    /// The newest feed position (0 when nothing was ever revoked).
    pub async fn revocations_head(&self, now: i64) -> Result<i64> {
        let rows = self
            .with_schema(now, || {
                self.exec("SELECT COALESCE(MAX(seq), 0) FROM revocations", vec![])
            })
            .await?;
        first_int(&rows)
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
    })
}

fn audit_from_row(row: &Row) -> Result<AuditRecord> {
    let event = match text(row, 2)?.as_str() {
        "created" => Event::Created,
        "revoked" => Event::Revoked,
        "deleted" => Event::Deleted,
        "denied_create" => Event::DeniedCreate,
        other => return Err(StoreError::Corrupt(format!("audit event {other:?}"))),
    };
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
