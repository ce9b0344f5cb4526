//! `spin:sqlite/sqlite@3.1.0` backed by rusqlite on a local file.
//!
//! As in Spin, the `default` database lives in `<data dir>/sqlite_db.db`, a
//! component may open only the labels in its `sqlite_databases`, and each
//! guest `open` gets its own SQLite connection. Connections come from a small
//! pool shared by all instances, so a guest opening one per request does not
//! reopen the file each time;
//! one still left inside a transaction is rolled back before reuse. The file
//! is in WAL mode with a busy timeout so concurrent requests wait rather than
//! fail. Every statement runs on tokio's blocking pool.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

use super::bindings::sqlite::{self as wit, Error, QueryResult, RowResult, Value};

/// File name of the `default` database inside the data directory, as Spin.
pub const DEFAULT_DB_FILE: &str = "sqlite_db.db";

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per database.
const MAX_IDLE: usize = 32;

/// Upper bound of one query's buffered result, so a runaway `SELECT` cannot
/// exhaust host memory.
const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// One SQLite database file and its idle connections.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Database {
    /// Opens (creating if needed) the database at `path`, switching it to WAL.
    pub fn open(path: &Path) -> Result<Arc<Self>, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!("cannot create SQLite data directory {}: {e}", dir.display())
            })?;
        }
        let db = Arc::new(Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        });
        let conn = db
            .connect()
            .map_err(|e| format!("cannot open SQLite database {}: {e}", path.display()))?;
        // WAL lets readers (introspection) proceed while a writer commits; the
        // mode is stored in the file, so setting it once is enough.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(|e| format!("cannot switch {} to WAL mode: {e}", path.display()))?;
        db.idle_list().push(conn);
        Ok(db)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(&self.path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    fn idle_list(&self) -> MutexGuard<'_, Vec<rusqlite::Connection>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an idle connection or opens a new one (blocking).
    fn checkout(self: &Arc<Self>) -> Result<Pooled, Error> {
        let conn = match self.idle_list().pop() {
            Some(conn) => conn,
            None => self.connect().map_err(to_error)?,
        };
        Ok(Pooled {
            db: self.clone(),
            conn: Some(conn),
            used: false,
        })
    }
}

/// A connection on loan from a [`Database`]; returned to it on drop.
#[derive(Debug)]
struct Pooled {
    db: Arc<Database>,
    conn: Option<rusqlite::Connection>,
    /// Whether this guest connection ran a statement: until it does, its
    /// rowid and change counters read 0, as on the new connection Spin opens,
    /// not what a previous borrower left.
    used: bool,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // A guest that began a transaction and went away must not leave the
        // next request inside it (or holding the write lock).
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return;
        }
        let mut idle = self.db.idle_list();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// The `connection` resource handed to the guest.
#[derive(Debug, Clone)]
pub struct Connection(Arc<Mutex<Pooled>>);

impl Connection {
    /// Runs a statement-like `f` on the underlying connection, on the
    /// blocking pool.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.with(move |pooled, conn| {
            pooled.used = true;
            f(conn)
        })
        .await
    }

    /// Reads a counter (`changes`, `last_insert_rowid`); 0 before the first
    /// statement.
    async fn counter<R: Default + Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> R + Send + 'static,
    ) -> R {
        self.with(move |pooled, conn| if pooled.used { f(conn) } else { R::default() })
            .await
            .unwrap_or_default()
    }

    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Pooled, &rusqlite::Connection) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
            let pooled = &mut *guard;
            match pooled.conn.take() {
                Some(conn) => {
                    let r = f(pooled, &conn);
                    pooled.conn = Some(conn);
                    Ok(r)
                }
                None => Err(Error::InvalidConnection),
            }
        })
        .await
        .map_err(|e| Error::Io(format!("SQLite task failed: {e}")))?
    }
}

/// Databases of the application, shared by all instances.
#[derive(Debug, Default)]
pub struct Databases {
    by_label: BTreeMap<String, Arc<Database>>,
}

impl Databases {
    /// Opens the databases the components use. Only `default` exists, in
    /// `data_dir`, as with `spin up` and no runtime configuration.
    pub fn open<'a>(
        data_dir: &Path,
        used: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> Result<Self, String> {
        let mut by_label = BTreeMap::new();
        for (component, labels) in used {
            for label in labels {
                if label != "default" {
                    return Err(format!(
                        "component {component:?} uses SQLite database {label:?}, which is not defined: this host provides only \"default\" (in {})",
                        data_dir.join(DEFAULT_DB_FILE).display()
                    ));
                }
                if !by_label.contains_key(label) {
                    by_label.insert(
                        label.clone(),
                        Database::open(&data_dir.join(DEFAULT_DB_FILE))?,
                    );
                }
            }
        }
        Ok(Self { by_label })
    }

    /// The database behind `label`, if configured.
    pub fn get(&self, label: &str) -> Option<&Arc<Database>> {
        self.by_label.get(label)
    }
}

/// Per-instance SQLite state: what the component may open.
#[derive(Debug, Clone)]
pub struct SqliteCtx {
    pub databases: Arc<Databases>,
    pub allowed: Arc<HashSet<String>>,
}

impl SqliteCtx {
    fn database(&self, label: &str) -> Result<Arc<Database>, Error> {
        if !self.allowed.contains(label) {
            return Err(Error::AccessDenied);
        }
        self.databases
            .get(label)
            .cloned()
            .ok_or(Error::NoSuchDatabase)
    }
}

/// What the generated host traits see of the store data.
pub struct SqliteView<'a> {
    pub ctx: &'a SqliteCtx,
    pub table: &'a mut ResourceTable,
}

/// `HasData` marker for the `spin:sqlite` bindings.
pub struct SqliteHost;

impl HasData for SqliteHost {
    type Data<'a> = SqliteView<'a>;
}

async fn open_connection(db: Arc<Database>) -> Result<Connection, Error> {
    // An idle connection is taken here; only opening a new one (file I/O)
    // goes to the blocking pool.
    let idle = db.idle_list().pop();
    let pooled = match idle {
        Some(conn) => Pooled {
            db,
            conn: Some(conn),
            used: false,
        },
        None => tokio::task::spawn_blocking(move || db.checkout())
            .await
            .map_err(|e| Error::Io(format!("SQLite task failed: {e}")))??,
    };
    Ok(Connection(Arc::new(Mutex::new(pooled))))
}

fn push(table: &mut ResourceTable, conn: Connection) -> Result<Resource<Connection>, Error> {
    table
        .push(conn)
        .map_err(|e| Error::Io(format!("cannot open another connection: {e}")))
}

fn lookup(table: &ResourceTable, conn: &Resource<Connection>) -> Result<Connection, Error> {
    table
        .get(conn)
        .cloned()
        .map_err(|_| Error::InvalidConnection)
}

/// Rows and the first error met while stepping through them.
#[derive(Debug, Default, PartialEq)]
pub struct Executed {
    pub columns: Vec<String>,
    pub rows: Vec<RowResult>,
    /// An error after the statement was prepared (constraint violation, busy,
    /// result too large): reported through the result future, as Spin does.
    pub error: Option<Error>,
}

/// Prepares and runs one statement. An error preparing it is returned
/// directly; one while running it ends the rows and is kept in `error`.
pub fn execute(
    conn: &rusqlite::Connection,
    sql: &str,
    params: Vec<Value>,
) -> Result<Executed, Error> {
    let mut stmt = conn.prepare_cached(sql).map_err(to_error)?;
    let columns = stmt.column_names().into_iter().map(String::from).collect();
    let column_count = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.into_iter().map(to_sql)))
        .map_err(to_error)?;
    let mut out = Executed {
        columns,
        ..Default::default()
    };
    let mut bytes = 0usize;
    loop {
        match rows.next() {
            Ok(Some(row)) => {
                let mut values = Vec::with_capacity(column_count);
                for i in 0..column_count {
                    match row.get_ref(i).map_err(to_error).and_then(from_sql) {
                        Ok(v) => values.push(v),
                        Err(e) => {
                            out.error = Some(e);
                            return Ok(out);
                        }
                    }
                }
                bytes += values.iter().map(value_size).sum::<usize>();
                if bytes > MAX_RESULT_BYTES {
                    out.error = Some(Error::Io(format!(
                        "query result exceeds the limit of {MAX_RESULT_BYTES} bytes; add a LIMIT"
                    )));
                    return Ok(out);
                }
                out.rows.push(RowResult { values });
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                out.error = Some(to_error(e));
                return Ok(out);
            }
        }
    }
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Text(s) => s.len(),
        Value::Blob(b) => b.len(),
        Value::Integer(_) | Value::Real(_) | Value::Null => 8,
    }
}

fn to_sql(v: Value) -> SqlValue {
    match v {
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
        Value::Null => SqlValue::Null,
    }
}

fn from_sql(v: ValueRef<'_>) -> Result<Value, Error> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|_| {
                Error::Io("a TEXT value is not valid UTF-8; read it as a BLOB".into())
            })?)
        }
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

fn to_error(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => Error::DatabaseFull,
        _ => Error::Io(e.to_string()),
    }
}

async fn execute_on(conn: Connection, sql: String, params: Vec<Value>) -> Result<Executed, Error> {
    // A read outside a transaction never waits for a lock in WAL mode, and
    // takes microseconds: it runs right here, which spares two thread
    // switches on the hot path (introspection is one such read). Writes and
    // statements inside a transaction may wait for another writer's lock
    // (up to the busy timeout), so they go to the blocking pool.
    {
        let mut guard = conn.0.lock().unwrap_or_else(|e| e.into_inner());
        let pooled = &mut *guard;
        if let Some(c) = pooled.conn.as_ref() {
            if c.is_autocommit() && is_read(c, &sql) {
                pooled.used = true;
                return execute(c, &sql, params);
            }
        }
    }
    conn.run(move |c| execute(c, &sql, params)).await?
}

/// Whether `sql` only reads (SQLite's own verdict on the prepared statement).
fn is_read(conn: &rusqlite::Connection, sql: &str) -> bool {
    conn.prepare_cached(sql).is_ok_and(|s| s.readonly())
}

impl wit::Host for SqliteView<'_> {}

impl wit::HostConnection for SqliteView<'_> {
    async fn open(&mut self, database: String) -> Result<Resource<Connection>, Error> {
        let conn = open_connection(self.ctx.database(&database)?).await?;
        push(self.table, conn)
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> Result<QueryResult, Error> {
        let conn = lookup(self.table, &this)?;
        let done = execute_on(conn, statement, parameters).await?;
        match done.error {
            Some(e) => Err(e),
            None => Ok(QueryResult {
                columns: done.columns,
                rows: done.rows,
            }),
        }
    }

    async fn last_insert_rowid(&mut self, this: Resource<Connection>) -> i64 {
        match lookup(self.table, &this) {
            Ok(conn) => conn.counter(|c| c.last_insert_rowid()).await,
            Err(_) => 0,
        }
    }

    async fn changes(&mut self, this: Resource<Connection>) -> u64 {
        match lookup(self.table, &this) {
            Ok(conn) => conn.counter(|c| c.changes()).await,
            Err(_) => 0,
        }
    }

    fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl<T> wit::HostConnectionWithStore<T> for SqliteHost {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> Result<Resource<Connection>, Error> {
        let db = accessor.with(|mut a| a.get().ctx.database(&database))?;
        let conn = open_connection(db).await?;
        accessor.with(|mut a| push(a.get().table, conn))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        this: Resource<Connection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> Result<
        (
            Vec<String>,
            StreamReader<RowResult>,
            FutureReader<Result<(), Error>>,
        ),
        Error,
    > {
        let conn = accessor.with(|mut a| lookup(a.get().table, &this))?;
        let done = execute_on(conn, statement, parameters).await?;
        let result = match done.error {
            Some(e) => Err(e),
            None => Ok(()),
        };
        type Handles = (
            Vec<String>,
            StreamReader<RowResult>,
            FutureReader<Result<(), Error>>,
        );
        accessor
            .with(|mut a| -> wasmtime::Result<Handles> {
                let rows = StreamReader::new(&mut a, done.rows)?;
                let result =
                    FutureReader::new(&mut a, async move { Ok::<_, wasmtime::Error>(result) })?;
                Ok((done.columns, rows, result))
            })
            .map_err(|e| Error::Io(format!("cannot hand rows to the component: {e}")))
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        this: Resource<Connection>,
    ) -> i64 {
        match accessor.with(|mut a| lookup(a.get().table, &this)) {
            Ok(conn) => conn.counter(|c| c.last_insert_rowid()).await,
            Err(_) => 0,
        }
    }

    async fn changes_async(accessor: &Accessor<T, Self>, this: Resource<Connection>) -> u64 {
        match accessor.with(|mut a| lookup(a.get().table, &this)) {
            Ok(conn) => conn.counter(|c| c.changes()).await,
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Arc<Database>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("sub").join(DEFAULT_DB_FILE)).unwrap();
        (dir, db)
    }

    #[test]
    fn values_round_trip_with_their_types() {
        let (_dir, db) = db();
        let conn = db.checkout().unwrap();
        let c = conn.conn.as_ref().unwrap();
        execute(c, "CREATE TABLE t (i, r, s, b, n)", vec![]).unwrap();
        let row = vec![
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 255]),
            Value::Null,
        ];
        let ins = execute(c, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", row.clone()).unwrap();
        assert_eq!(ins.error, None);
        assert_eq!(c.changes(), 1);
        let out = execute(c, "SELECT i, r, s, b, n FROM t", vec![]).unwrap();
        assert_eq!(out.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(out.rows, vec![RowResult { values: row }]);
        assert_eq!(out.error, None);
    }

    #[test]
    fn prepare_errors_are_immediate_and_step_errors_are_deferred() {
        let (_dir, db) = db();
        let conn = db.checkout().unwrap();
        let c = conn.conn.as_ref().unwrap();
        match execute(c, "SELEKT 1", vec![]) {
            Err(Error::Io(msg)) => assert!(msg.contains("syntax error"), "{msg}"),
            other => panic!("{other:?}"),
        }
        execute(c, "CREATE TABLE u (k TEXT UNIQUE)", vec![]).unwrap();
        let k = vec![Value::Text("a".into())];
        assert_eq!(
            execute(c, "INSERT INTO u VALUES (?)", k.clone())
                .unwrap()
                .error,
            None
        );
        match execute(c, "INSERT INTO u VALUES (?)", k).unwrap().error {
            Some(Error::Io(msg)) => assert!(msg.contains("UNIQUE constraint failed"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn database_file_is_wal_and_pooled_connections_leave_transactions_behind() {
        let (dir, db) = db();
        assert!(dir.path().join("sub").join(DEFAULT_DB_FILE).exists());
        {
            let conn = db.checkout().unwrap();
            let c = conn.conn.as_ref().unwrap();
            let mode: String = c
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            execute(c, "CREATE TABLE v (x)", vec![]).unwrap();
            execute(c, "BEGIN", vec![]).unwrap();
            execute(c, "INSERT INTO v VALUES (1)", vec![]).unwrap();
        }
        let conn = db.checkout().unwrap();
        let c = conn.conn.as_ref().unwrap();
        assert!(c.is_autocommit());
        let n: i64 = c
            .query_row("SELECT count(*) FROM v", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "the abandoned transaction must be rolled back");
    }

    #[tokio::test]
    async fn counters_read_zero_on_a_reused_connection_until_it_runs_a_statement() {
        let (_dir, db) = db();
        let first = open_connection(db.clone()).await.unwrap();
        execute_on(first.clone(), "CREATE TABLE w (x)".into(), vec![])
            .await
            .unwrap();
        let ins = execute_on(first.clone(), "INSERT INTO w VALUES (1)".into(), vec![])
            .await
            .unwrap();
        assert_eq!(ins.error, None);
        assert_eq!(first.counter(|c| c.changes()).await, 1);
        assert_eq!(first.counter(|c| c.last_insert_rowid()).await, 1);
        drop(first);

        let second = open_connection(db.clone()).await.unwrap();
        assert_eq!(second.counter(|c| c.changes()).await, 0);
        assert_eq!(second.counter(|c| c.last_insert_rowid()).await, 0);
        execute_on(second.clone(), "INSERT INTO w VALUES (2)".into(), vec![])
            .await
            .unwrap();
        assert_eq!(second.counter(|c| c.last_insert_rowid()).await, 2);
    }

    #[test]
    fn only_listed_databases_open_and_only_default_exists() {
        let dir = tempfile::tempdir().unwrap();
        let default = vec!["default".to_string()];
        let dbs = Arc::new(Databases::open(dir.path(), [("api", default.as_slice())]).unwrap());
        let ctx = SqliteCtx {
            databases: dbs.clone(),
            allowed: Arc::new(HashSet::from(["default".to_string()])),
        };
        assert!(ctx.database("default").is_ok());
        assert_eq!(ctx.database("other").unwrap_err(), Error::AccessDenied);
        let denied = SqliteCtx {
            databases: dbs,
            allowed: Arc::new(HashSet::new()),
        };
        assert_eq!(denied.database("default").unwrap_err(), Error::AccessDenied);

        let other = vec!["analytics".to_string()];
        let err = Databases::open(dir.path(), [("api", other.as_slice())]).unwrap_err();
        assert!(err.contains("\"analytics\""), "{err}");
    }
}
