//! [`Db`] on rusqlite for host tests: one statement per call on one
//! connection, rows read the way Spin's in-process SQLite reads them.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{Value as Sql, ValueRef};

use crate::store::{Db, DbError, Dialect, Row, Value};
use crate::testdb_pg::PgTestDb;

pub struct TestDb {
    conn: Mutex<rusqlite::Connection>,
}

impl TestDb {
    pub fn memory() -> Self {
        Self::wrap(rusqlite::Connection::open_in_memory().expect("in-memory SQLite"))
    }

    /// A connection to a database file; several may share one, like instances.
    pub fn file(path: &Path) -> Self {
        Self::wrap(rusqlite::Connection::open(path).expect("SQLite file"))
    }

    fn wrap(conn: rusqlite::Connection) -> Self {
        TestDb {
            conn: Mutex::new(conn),
        }
    }

    /// Direct access for tests that inspect or tamper with the tables.
    pub fn raw<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> T) -> T {
        f(&self.conn.lock().unwrap())
    }
}

impl Db for TestDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let conn = self.conn.lock().unwrap();
        let err = |e: rusqlite::Error| DbError::sqlite(e.to_string());
        let mut stmt = conn.prepare_cached(sql).map_err(err)?;
        let params = params.into_iter().map(|v| match v {
            Value::Null => Sql::Null,
            Value::Integer(i) => Sql::Integer(i),
            Value::Real(f) => Sql::Real(f),
            Value::Text(t) => Sql::Text(t),
            Value::Blob(b) => Sql::Blob(b),
        });
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(err)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Integer(i),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// A test database on either engine, so one test body runs on both.
pub enum AnyTestDb {
    Sqlite(TestDb),
    Postgres(Box<PgTestDb>),
}

impl AnyTestDb {
    /// A fresh, empty database of this engine.
    pub fn fresh(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Sqlite => AnyTestDb::Sqlite(TestDb::memory()),
            Dialect::Postgres => AnyTestDb::Postgres(Box::new(PgTestDb::fresh())),
        }
    }

    /// The engine for the test module this is called from: modules whose
    /// path ends in `_postgres` run their tests on PostgreSQL.
    pub fn for_module(module_path: &str) -> Dialect {
        if module_path.ends_with("_postgres") {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// Two connections to one new database, as two instances have (SQLite:
    /// a file in the returned temporary directory).
    pub fn shared_pair(dialect: Dialect) -> (Self, Self, Option<tempfile::TempDir>) {
        match dialect {
            Dialect::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("shared.db");
                (
                    AnyTestDb::Sqlite(TestDb::file(&path)),
                    AnyTestDb::Sqlite(TestDb::file(&path)),
                    Some(dir),
                )
            }
            Dialect::Postgres => {
                let one = PgTestDb::fresh();
                let two = PgTestDb::connect(one.url());
                (
                    AnyTestDb::Postgres(Box::new(one)),
                    AnyTestDb::Postgres(Box::new(two)),
                    None,
                )
            }
        }
    }

    /// Runs one statement (with `?` placeholders) through the Db interface,
    /// for tests that inspect or tamper with the tables.
    pub fn sql(&self, sql: &str, params: Vec<Value>) -> Vec<Row> {
        let sql = match self.dialect() {
            Dialect::Sqlite => sql.to_owned(),
            Dialect::Postgres => crate::store::postgres::numbered(sql),
        };
        futures::executor::block_on(self.query(&sql, params))
            .unwrap_or_else(|e| panic!("{sql}: {}", e.message))
    }
}

impl Db for AnyTestDb {
    fn dialect(&self) -> Dialect {
        match self {
            AnyTestDb::Sqlite(d) => d.dialect(),
            AnyTestDb::Postgres(d) => d.dialect(),
        }
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match self {
            AnyTestDb::Sqlite(d) => d.query(sql, params).await,
            AnyTestDb::Postgres(d) => d.query(sql, params).await,
        }
    }
}
