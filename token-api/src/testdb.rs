//! [`Db`] on rusqlite for host tests: one statement per call on one
//! connection, rows read the way Spin's in-process SQLite reads them.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{Value as Sql, ValueRef};

use crate::store::{Db, DbError, Row, Value};

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
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let conn = self.conn.lock().unwrap();
        let err = |e: rusqlite::Error| DbError(e.to_string());
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
