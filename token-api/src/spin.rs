//! The Spin entry point: converts the request, reads the variables and the
//! clock, opens the default SQLite database on first use, and hands over to
//! [`crate::service::handle`].

use std::cell::OnceCell;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{HeaderMap, HeaderName, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::sqlite::{self, Connection};

use crate::body::BodySource;
use crate::config::{Config, VARIABLES};
use crate::service::{self, RequestHead};
use crate::store::{Db, DbError, Row, Value};

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
    let db = SpinDb {
        conn: OnceCell::new(),
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

/// Reads the component variables; an unset optional one takes its default.
async fn load_config() -> Result<Config, String> {
    let mut values = Vec::with_capacity(VARIABLES.len());
    for name in VARIABLES {
        let value = match spin_sdk::variables::get(name).await {
            Ok(v) => Some(v),
            Err(spin_sdk::variables::Error::Undefined(_)) => None,
            Err(e) => return Err(format!("variable {name}: {e:?}")),
        };
        values.push((name, value));
    }
    Config::from_vars(|name| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    })
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
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let err = |e: sqlite::Error| DbError(format!("{e:?}"));
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
