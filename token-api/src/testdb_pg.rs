//! [`Db`] on a real PostgreSQL server for host tests: one connection of the
//! synchronous `postgres` client, each test in a database of its own on the
//! test process's shared server (`harness::pgserver`), rows read back the way
//! the component reads them through `spin:postgres`.

use std::sync::Mutex;

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::store::postgres::classify;
use crate::store::{Db, DbError, DbErrorKind, Dialect, Row, Value};

pub struct PgTestDb {
    client: Mutex<postgres::Client>,
    url: String,
}

/// A fresh, empty database on the shared server; returns its URL.
pub fn fresh_database() -> String {
    let server =
        harness::pgserver::shared().unwrap_or_else(|e| panic!("PostgreSQL test server: {e}"));
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("randomness");
    let name = format!("t_{}", mcpgw_token::hex::encode(&bytes));
    let mut admin = postgres::Client::connect(&server.url("postgres"), postgres::NoTls)
        .expect("connect to the shared server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("CREATE DATABASE");
    server.url(&name)
}

impl PgTestDb {
    /// A connection to a new, empty database.
    pub fn fresh() -> Self {
        Self::connect(&fresh_database())
    }

    /// Another connection to the database at `url`, like another instance.
    pub fn connect(url: &str) -> Self {
        let client = postgres::Client::connect(url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        Self {
            client: Mutex::new(client),
            url: url.to_owned(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// SQL NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn error(e: postgres::Error) -> DbError {
    let kind = match e.as_db_error() {
        Some(db) => classify(db.code().code()),
        None if e.is_closed() => DbErrorKind::Unavailable,
        None => DbErrorKind::Other,
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    DbError { kind, message }
}

impl Db for PgTestDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let boxed: Vec<Box<dyn ToSql + Sync>> = params
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync> {
                match v {
                    Value::Null => Box::new(Null),
                    Value::Integer(i) => Box::new(i),
                    Value::Real(f) => Box::new(f),
                    Value::Text(t) => Box::new(t),
                    Value::Blob(b) => Box::new(b),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self
            .client
            .lock()
            .unwrap()
            .query(sql, &refs)
            .map_err(error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let v = match *col.type_() {
                    Type::INT2 => row.get::<_, Option<i16>>(i).map(i64::from),
                    Type::INT4 => row.get::<_, Option<i32>>(i).map(i64::from),
                    Type::INT8 => row.get::<_, Option<i64>>(i),
                    Type::BOOL => row.get::<_, Option<bool>>(i).map(i64::from),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                        values.push(row.get::<_, Option<String>>(i).into());
                        continue;
                    }
                    Type::FLOAT8 => {
                        values.push(
                            row.get::<_, Option<f64>>(i)
                                .map_or(Value::Null, Value::Real),
                        );
                        continue;
                    }
                    Type::BYTEA => {
                        values.push(
                            row.get::<_, Option<Vec<u8>>>(i)
                                .map_or(Value::Null, Value::Blob),
                        );
                        continue;
                    }
                    // `void` (advisory locks) and whatever else: nothing to read.
                    _ => None,
                };
                values.push(v.map_or(Value::Null, Value::Integer));
            }
            out.push(values);
        }
        Ok(out)
    }
}
