//! The Spin entry point: converts the request, reads the variables and the
//! clock, opens the store the variables choose (Spin's `default` SQLite
//! database, or PostgreSQL through `spin:postgres`) on first use, and hands
//! over to [`crate::service::handle`].

use std::cell::OnceCell;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{HeaderMap, HeaderName, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::pg::{self, DbValue, ParameterValue, PgError, QueryError};
use spin_sdk::sqlite::{self, Connection};

use crate::body::BodySource;
use crate::config::{Config, VARIABLES};
use crate::service::{self, RequestHead};
use crate::storage::{self, StoreChoice};
use crate::store::postgres::classify;
use crate::store::{Db, DbError, DbErrorKind, Dialect, Row, Value};

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let head = RequestHead {
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        authorization: req
            .headers()
            .get_all("authorization")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
        content_type: header("content-type"),
        content_length: header("content-length"),
    };
    let config = load_config().await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let body = SpinBody(Box::pin(req.into_body().stream()));
    let store_vars = read_variables(&storage::VARIABLES).await;
    let wants_postgres = store_vars
        .as_ref()
        .ok()
        .and_then(|v| lookup(v, "store"))
        .is_some_and(|s| s.trim() == "postgres");
    let db = match store_vars.and_then(|vars| StoreChoice::from_vars(|n| lookup(&vars, n))) {
        Ok(StoreChoice::Sqlite) => SpinStore::Sqlite(SpinDb {
            conn: OnceCell::new(),
        }),
        Ok(StoreChoice::Postgres { url }) => SpinStore::Postgres(SpinPgDb {
            url,
            conn: OnceCell::new(),
        }),
        Err(why) => SpinStore::Misconfigured {
            dialect: if wants_postgres {
                Dialect::Postgres
            } else {
                Dialect::Sqlite
            },
            why,
        },
    };
    let resp = service::handle(
        &head,
        body,
        config.as_ref().map_err(String::as_str),
        now_ms,
        &db,
    )
    .await;

    let mut headers = HeaderMap::new();
    for (name, value) in &resp.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // Every body the service writes is JSON text (or empty).
    let body = String::from_utf8(resp.body).unwrap_or_default();
    (status, headers, body)
}

type Variables = Vec<(&'static str, Option<String>)>;

/// Reads component variables; an undefined one is `None`.
async fn read_variables(names: &[&'static str]) -> Result<Variables, String> {
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let value = match spin_sdk::variables::get(name).await {
            Ok(v) => Some(v),
            Err(spin_sdk::variables::Error::Undefined(_)) => None,
            Err(e) => return Err(format!("variable {name}: {e:?}")),
        };
        values.push((*name, value));
    }
    Ok(values)
}

fn lookup(values: &Variables, name: &str) -> Option<String> {
    values
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.clone())
}

/// Reads the component variables; an unset optional one takes its default.
async fn load_config() -> Result<Config, String> {
    let values = read_variables(&VARIABLES).await?;
    Config::from_vars(|name| lookup(&values, name))
}

struct SpinBody<S>(Pin<Box<S>>);

impl<S, D, E> BodySource for SpinBody<S>
where
    S: Stream<Item = Result<D, E>>,
    D: AsRef<[u8]>,
    E: std::fmt::Debug,
{
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, String>> {
        self.0
            .next()
            .await
            .map(|r| r.map(|b| b.as_ref().to_vec()).map_err(|e| format!("{e:?}")))
    }
}

/// Spin's `default` SQLite database, opened on the first statement (routes
/// that need no storage never open it).
struct SpinDb {
    conn: OnceCell<Connection>,
}

impl Db for SpinDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let err = |e: sqlite::Error| DbError::sqlite(format!("{e:?}"));
        let conn = match self.conn.get() {
            Some(c) => c,
            None => {
                let c = Connection::open_default().await.map_err(err)?;
                self.conn.get_or_init(|| c)
            }
        };
        let params = params.into_iter().map(|v| match v {
            Value::Null => sqlite::Value::Null,
            Value::Integer(i) => sqlite::Value::Integer(i),
            Value::Real(f) => sqlite::Value::Real(f),
            Value::Text(t) => sqlite::Value::Text(t),
            Value::Blob(b) => sqlite::Value::Blob(b),
        });
        // Collecting awaits the statement's completion too, so errors of
        // writes (constraint violations, busy) are never lost.
        let rows = conn
            .execute(sql, params)
            .await
            .map_err(err)?
            .collect()
            .await
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.values
                    .into_iter()
                    .map(|v| match v {
                        sqlite::Value::Null => Value::Null,
                        sqlite::Value::Integer(i) => Value::Integer(i),
                        sqlite::Value::Real(f) => Value::Real(f),
                        sqlite::Value::Text(t) => Value::Text(t),
                        sqlite::Value::Blob(b) => Value::Blob(b),
                    })
                    .collect()
            })
            .collect())
    }
}

/// PostgreSQL through `spin:postgres`, connected on the first statement
/// (Spin pools the server connections; this one lives for the request).
struct SpinPgDb {
    url: String,
    conn: OnceCell<pg::Connection>,
}

/// A `spin:postgres` error, classified; the message never holds the URL.
fn pg_error(e: pg::Error) -> DbError {
    match e {
        pg::Error::PgError(PgError::ConnectionFailed(m)) if m.contains("not permitted") => {
            DbError::new(
                DbErrorKind::Other,
                format!(
                    "Spin refused the connection ({m}): the variable postgres_host must be the \
                     host:port of postgres_url, which allowed_outbound_hosts lets through"
                ),
            )
        }
        pg::Error::PgError(PgError::ConnectionFailed(m)) => DbError::new(
            DbErrorKind::Unavailable,
            format!("cannot connect to PostgreSQL: {m}"),
        ),
        pg::Error::PgError(PgError::QueryFailed(QueryError::DbError(d))) => DbError::new(
            classify(&d.code),
            format!("{} {}: {}", d.severity, d.code, d.message),
        ),
        pg::Error::PgError(PgError::QueryFailed(QueryError::Text(t))) => {
            let lost = [
                "connection closed",
                "error communicating",
                "connection reset",
            ];
            let kind = if lost.iter().any(|l| t.contains(l)) {
                DbErrorKind::Unavailable
            } else {
                DbErrorKind::Other
            };
            DbError::new(kind, t)
        }
        other => DbError::new(DbErrorKind::Other, format!("{other}")),
    }
}

fn pg_param(v: Value) -> ParameterValue {
    match v {
        Value::Null => ParameterValue::DbNull,
        Value::Integer(i) => ParameterValue::Int64(i),
        Value::Real(f) => ParameterValue::Floating64(f),
        Value::Text(t) => ParameterValue::Str(t),
        Value::Blob(b) => ParameterValue::Binary(b),
    }
}

fn pg_value(v: DbValue) -> Value {
    match v {
        DbValue::Boolean(b) => Value::Integer(i64::from(b)),
        DbValue::Int8(i) => Value::Integer(i64::from(i)),
        DbValue::Int16(i) => Value::Integer(i64::from(i)),
        DbValue::Int32(i) => Value::Integer(i64::from(i)),
        DbValue::Int64(i) => Value::Integer(i),
        DbValue::Floating32(f) => Value::Real(f64::from(f)),
        DbValue::Floating64(f) => Value::Real(f),
        DbValue::Str(s) => Value::Text(s),
        DbValue::Binary(b) => Value::Blob(b),
        DbValue::Jsonb(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
        // `void` (advisory locks) and types the store never reads.
        _ => Value::Null,
    }
}

impl Db for SpinPgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let conn = match self.conn.get() {
            Some(c) => c,
            None => {
                let c = pg::Connection::open(self.url.as_str())
                    .await
                    .map_err(pg_error)?;
                self.conn.get_or_init(|| c)
            }
        };
        let params: Vec<ParameterValue> = params.into_iter().map(pg_param).collect();
        let mut result = conn.query(sql, params).await.map_err(pg_error)?;
        let mut rows = Vec::new();
        while let Some(row) = result.rows().next().await {
            rows.push(row.into_iter().map(pg_value).collect());
        }
        // The statement's own outcome comes after its rows.
        result.result().await.map_err(pg_error)?;
        Ok(rows)
    }
}

/// The store the variables chose, or why they chose none.
enum SpinStore {
    Sqlite(SpinDb),
    Postgres(SpinPgDb),
    Misconfigured { dialect: Dialect, why: String },
}

impl Db for SpinStore {
    fn dialect(&self) -> Dialect {
        match self {
            SpinStore::Sqlite(_) => Dialect::Sqlite,
            SpinStore::Postgres(_) => Dialect::Postgres,
            SpinStore::Misconfigured { dialect, .. } => *dialect,
        }
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match self {
            SpinStore::Sqlite(db) => db.query(sql, params).await,
            SpinStore::Postgres(db) => db.query(sql, params).await,
            SpinStore::Misconfigured { why, .. } => Err(DbError::new(
                DbErrorKind::Other,
                format!("store configuration: {why}"),
            )),
        }
    }
}
