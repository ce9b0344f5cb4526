//! `spin:postgres/postgres@4.2.0` on tokio-postgres, as Spin's outbound
//! PostgreSQL provides it:
//!
//! - the guest passes the address (URL or `key=value` form); every host in it
//!   must be allowed by the component's `allowed_outbound_hosts`
//!   (`postgres://host:port`), else `connection-failed`;
//! - connections come from a pool per address shared by every instance of the
//!   application, so a guest connecting on every request does not reconnect;
//! - database errors come back as `query-failed(db-error)` with SQLSTATE,
//!   message and detail.
//!
//! Differences from Spin, on purpose: statements are prepared once per pooled
//! connection and reused (Spin prepares on every call), and TLS is not spoken
//! (`sslmode=require` fails to connect; `disable`/`prefer` connect in the
//! clear, for loopback test servers). A pooled connection whose guest began a
//! transaction and did not end it is rolled back before anyone else gets it.

// The interface's error carries PostgreSQL's whole diagnostic; it is what
// every host function returns, boxing it would only move the size.
#![allow(clippy::result_large_err)]

mod types;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{NoTls, Statement};
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

use super::allowed_hosts::AllowedHosts;
use super::bindings::postgres::{
    self as wit, Column, DbError, DbValue, Error, ParameterValue, QueryError, RowSet,
};
#[cfg(test)]
use super::bindings::postgres::{DbDataType, Interval};

/// Connections open at once per address (Spin's pool size).
const MAX_CONNECTIONS: usize = 64;
/// Idle connections kept per address.
const MAX_IDLE: usize = 16;
/// Prepared statements kept per connection before the cache starts over.
const MAX_STATEMENTS: usize = 256;
/// Upper bound of one query's buffered result.
const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;
/// Connect timeout when the address sets none, so an unreachable server
/// fails the request instead of holding it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One server connection and the statements prepared on it.
struct Client {
    client: tokio_postgres::Client,
    statements: Mutex<HashMap<String, Statement>>,
}

/// The connections of one address.
struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn checkout(self: &Arc<Self>) -> Result<Lease, Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::ConnectionFailed("too many connections".into()))?;
        let reused = {
            let mut idle = self.idle();
            // Connections the server closed (restart, idle timeout) are dropped here.
            idle.retain(|c| !c.client.is_closed());
            idle.pop()
        };
        let client = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Lease {
            pool: self.clone(),
            client: Some(client),
            began: AtomicBool::new(false),
            permit: Some(permit),
        })
    }

    async fn connect(&self) -> Result<Client, Error> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| Error::ConnectionFailed(connect_message(&e)))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away.
            let _ = connection.await;
        });
        Ok(Client {
            client,
            statements: Mutex::new(HashMap::new()),
        })
    }
}

/// An error with its causes: tokio-postgres's own message is only the kind
/// ("db error", "error connecting to server"), the reason is in the source.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn connect_message(e: &tokio_postgres::Error) -> String {
    let mut msg = error_chain(e);
    if msg.contains("TLS") || msg.contains("tls") {
        msg.push_str(
            " (this host connects without TLS: use sslmode=disable or prefer for a loopback server)",
        );
    }
    msg
}

/// A pooled connection on loan to one guest connection; returned on drop.
struct Lease {
    pool: Arc<Pool>,
    client: Option<Client>,
    /// The guest ran `BEGIN`/`START`: roll back before the next borrower.
    began: AtomicBool,
    /// Held until the connection is back in the pool.
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if client.client.is_closed() {
            return;
        }
        let pool = self.pool.clone();
        if !self.began.load(Ordering::Relaxed) {
            let mut idle = pool.idle();
            if idle.len() < MAX_IDLE {
                idle.push(client);
            }
            return;
        }
        // The connection goes back only once it is outside any transaction;
        // without a runtime to do that on, it is closed instead.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let permit = self.permit.take();
            rt.spawn(async move {
                let _permit = permit;
                if client.client.batch_execute("ROLLBACK").await.is_ok() {
                    let mut idle = pool.idle();
                    if idle.len() < MAX_IDLE {
                        idle.push(client);
                    }
                }
            });
        }
    }
}

fn begins_transaction(sql: &str) -> bool {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    word.eq_ignore_ascii_case("begin") || word.eq_ignore_ascii_case("start")
}

impl Lease {
    fn client(&self) -> Result<&Client, Error> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::ConnectionFailed("the connection is closed".into()))
    }

    async fn statement(&self, sql: &str) -> Result<Statement, Error> {
        let c = self.client()?;
        let cached = c
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        if let Some(s) = cached {
            return Ok(s);
        }
        let s = c.client.prepare(sql).await.map_err(query_failed)?;
        let mut cache = c.statements.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// A statement that failed may be stale (schema changed under it).
    fn forget(&self, sql: &str) {
        if let Some(c) = &self.client {
            c.statements
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(sql);
        }
    }

    fn note(&self, sql: &str) {
        if begins_transaction(sql) {
            self.began.store(true, Ordering::Relaxed);
        }
    }

    async fn query(
        &self,
        sql: &str,
        params: Vec<ParameterValue>,
    ) -> Result<(Vec<Column>, Vec<Vec<DbValue>>), Error> {
        self.note(sql);
        let params = to_params(params)?;
        let stmt = self.statement(sql).await?;
        let rows = match self.client()?.client.query(&stmt, &refs(&params)).await {
            Ok(rows) => rows,
            Err(e) => {
                self.forget(sql);
                return Err(query_failed(e));
            }
        };
        let columns = types::columns(stmt.columns());
        let mut out = Vec::with_capacity(rows.len());
        let mut bytes = 0usize;
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let v =
                    types::value(row, i).map_err(|e| Error::QueryFailed(QueryError::Text(e)))?;
                bytes += value_size(&v);
                values.push(v);
            }
            if bytes > MAX_RESULT_BYTES {
                return Err(Error::QueryFailed(QueryError::Text(format!(
                    "query result exceeds the limit of {MAX_RESULT_BYTES} bytes; add a LIMIT"
                ))));
            }
            out.push(values);
        }
        Ok((columns, out))
    }

    async fn execute(&self, sql: &str, params: Vec<ParameterValue>) -> Result<u64, Error> {
        self.note(sql);
        let params = to_params(params)?;
        let stmt = self.statement(sql).await?;
        match self.client()?.client.execute(&stmt, &refs(&params)).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.forget(sql);
                Err(query_failed(e))
            }
        }
    }
}

fn value_size(v: &DbValue) -> usize {
    match v {
        DbValue::Str(s) | DbValue::Decimal(s) | DbValue::Uuid(s) => s.len(),
        DbValue::Binary(b) | DbValue::Jsonb(b) | DbValue::Unsupported(b) => b.len(),
        DbValue::ArrayStr(a) => a.iter().map(|s| s.as_ref().map_or(1, String::len)).sum(),
        _ => 8,
    }
}

fn to_params(params: Vec<ParameterValue>) -> Result<Vec<types::Param>, Error> {
    params
        .into_iter()
        .enumerate()
        .map(|(i, p)| types::param(i, p))
        .collect::<Result<_, _>>()
        .map_err(Error::BadParameter)
}

fn refs(params: &[types::Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

fn query_failed(e: tokio_postgres::Error) -> Error {
    let as_text = format!("{e:?}");
    Error::QueryFailed(match e.as_db_error() {
        None => QueryError::Text(error_chain(&e)),
        Some(db) => {
            let mut extras = Vec::new();
            for (k, v) in [
                ("column", db.column()),
                ("constraint", db.constraint()),
                ("hint", db.hint()),
                ("table", db.table()),
                ("datatype", db.datatype()),
                ("schema", db.schema()),
            ] {
                if let Some(v) = v {
                    extras.push((k.to_owned(), v.to_owned()));
                }
            }
            QueryError::DbError(DbError {
                as_text,
                severity: db.severity().to_owned(),
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
                extras,
            })
        }
    })
}

/// Pools by address, shared by every instance of an application.
#[derive(Default)]
pub struct Pools {
    by_address: Mutex<HashMap<String, Arc<Pool>>>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools").finish_non_exhaustive()
    }
}

impl Pools {
    fn pool(&self, address: &str) -> Result<Arc<Pool>, Error> {
        let mut pools = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pools.get(address) {
            return Ok(p.clone());
        }
        let mut config: tokio_postgres::Config = address
            .parse()
            .map_err(|e| Error::ConnectionFailed(format!("invalid PostgreSQL address: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let pool = Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        });
        pools.insert(address.to_owned(), pool.clone());
        Ok(pool)
    }
}

/// Per-instance PostgreSQL state: the shared pools and what the component may reach.
#[derive(Debug, Clone, Default)]
pub struct PgCtx {
    pub pools: Arc<Pools>,
    pub allowed: Arc<AllowedHosts>,
}

impl PgCtx {
    async fn open(&self, address: &str) -> Result<Connection, Error> {
        self.allowed
            .check_postgres(address)
            .map_err(Error::ConnectionFailed)?;
        let lease = self.pools.pool(address)?.checkout().await?;
        Ok(Connection(Arc::new(lease)))
    }
}

/// The `connection` resource handed to the guest.
#[derive(Clone)]
pub struct Connection(Arc<Lease>);

/// The `connection-builder` resource.
#[derive(Debug, Clone)]
pub struct Builder {
    address: String,
    ca_root: Option<String>,
}

/// What the generated host traits see of the store data.
pub struct PgView<'a> {
    pub ctx: &'a PgCtx,
    pub table: &'a mut ResourceTable,
}

/// `HasData` marker for the `spin:postgres` bindings.
pub struct PgHost;

impl HasData for PgHost {
    type Data<'a> = PgView<'a>;
}

fn push<T: Send + 'static>(table: &mut ResourceTable, v: T) -> Result<Resource<T>, Error> {
    table
        .push(v)
        .map_err(|e| Error::ConnectionFailed(format!("too many connections: {e}")))
}

fn lookup(table: &ResourceTable, conn: &Resource<Connection>) -> Result<Connection, Error> {
    table
        .get(conn)
        .cloned()
        .map_err(|_| Error::ConnectionFailed("no connection found".into()))
}

fn builder(table: &ResourceTable, b: &Resource<Builder>) -> Result<Builder, Error> {
    table
        .get(b)
        .cloned()
        .map_err(|_| Error::ConnectionFailed("no connection builder found".into()))
}

fn no_tls_roots(b: &Builder) -> Result<(), Error> {
    match b.ca_root {
        Some(_) => Err(Error::ConnectionFailed(
            "a custom CA root needs TLS, which this host does not speak to PostgreSQL".into(),
        )),
        None => Ok(()),
    }
}

impl wit::Host for PgView<'_> {}

impl wit::HostConnectionBuilder for PgView<'_> {
    fn new(&mut self, address: String) -> wasmtime::Result<Resource<Builder>> {
        Ok(self.table.push(Builder {
            address,
            ca_root: None,
        })?)
    }

    fn set_ca_root(&mut self, this: Resource<Builder>, certificate: String) -> Result<(), Error> {
        if !certificate.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::Other(
                "invalid root certificate: expected PEM text".into(),
            ));
        }
        let b = self
            .table
            .get_mut(&this)
            .map_err(|_| Error::ConnectionFailed("no connection builder found".into()))?;
        b.ca_root = Some(certificate);
        Ok(())
    }

    async fn build(&mut self, this: Resource<Builder>) -> Result<Resource<Connection>, Error> {
        let b = builder(self.table, &this)?;
        no_tls_roots(&b)?;
        let conn = self.ctx.open(&b.address).await?;
        push(self.table, conn)
    }

    fn drop(&mut self, rep: Resource<Builder>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::HostConnection for PgView<'_> {
    async fn open(&mut self, address: String) -> Result<Resource<Connection>, Error> {
        let conn = self.ctx.open(&address).await?;
        push(self.table, conn)
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<RowSet, Error> {
        let conn = lookup(self.table, &this)?;
        let (columns, rows) = conn.0.query(&statement, params).await?;
        Ok(RowSet { columns, rows })
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<u64, Error> {
        let conn = lookup(self.table, &this)?;
        conn.0.execute(&statement, params).await
    }

    fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl<T> wit::HostConnectionBuilderWithStore<T> for PgHost {
    async fn build_async(
        accessor: &Accessor<T, Self>,
        this: Resource<Builder>,
    ) -> Result<Resource<Connection>, Error> {
        let (ctx, b) = accessor.with(|mut a| {
            let v = a.get();
            builder(v.table, &this).map(|b| (v.ctx.clone(), b))
        })?;
        no_tls_roots(&b)?;
        let conn = ctx.open(&b.address).await?;
        accessor.with(|mut a| push(a.get().table, conn))
    }
}

impl<T> wit::HostConnectionWithStore<T> for PgHost {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> Result<Resource<Connection>, Error> {
        let ctx = accessor.with(|mut a| a.get().ctx.clone());
        let conn = ctx.open(&address).await?;
        accessor.with(|mut a| push(a.get().table, conn))
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        this: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<
        (
            Vec<Column>,
            StreamReader<Vec<DbValue>>,
            FutureReader<Result<(), Error>>,
        ),
        Error,
    > {
        let conn = accessor.with(|mut a| lookup(a.get().table, &this))?;
        let (columns, rows) = conn.0.query(&statement, params).await?;
        type Handles = (
            Vec<Column>,
            StreamReader<Vec<DbValue>>,
            FutureReader<Result<(), Error>>,
        );
        accessor
            .with(|mut a| -> wasmtime::Result<Handles> {
                let rows = StreamReader::new(&mut a, rows)?;
                let done = FutureReader::new(&mut a, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
                Ok((columns, rows, done))
            })
            .map_err(|e| Error::Other(format!("cannot hand rows to the component: {e}")))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        this: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<u64, Error> {
        let conn = accessor.with(|mut a| lookup(a.get().table, &this))?;
        conn.0.execute(&statement, params).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgserver::PgServer;

    async fn server() -> (PgServer, PgCtx, String) {
        let pg = PgServer::start_temp()
            .await
            .expect("PostgreSQL test server");
        let url = pg.create_database("host_test").await.unwrap();
        let ctx = PgCtx {
            pools: Arc::new(Pools::default()),
            allowed: Arc::new(AllowedHosts::parse(&[pg.allowed_host()]).unwrap()),
        };
        (pg, ctx, url)
    }

    fn db_code(e: &Error) -> &str {
        match e {
            Error::QueryFailed(QueryError::DbError(d)) => &d.code,
            other => panic!("not a database error: {other:?}"),
        }
    }

    #[tokio::test]
    async fn values_travel_with_spin_types_and_errors_carry_sqlstate() {
        let (_pg, ctx, url) = server().await;
        let c = ctx.open(&url).await.unwrap();
        c.0.execute(
            "CREATE TABLE t (b BOOL, i INT, l BIGINT, f DOUBLE PRECISION, s TEXT, \
             y BYTEA, j JSONB, ts TIMESTAMPTZ, u UUID, n NUMERIC, a TEXT[], iv INTERVAL)",
            vec![],
        )
        .await
        .unwrap();
        let params = vec![
            ParameterValue::Boolean(true),
            ParameterValue::Int32(-7),
            ParameterValue::Int64(1 << 40),
            ParameterValue::Floating64(1.5),
            ParameterValue::Str("héllo".into()),
            ParameterValue::Binary(vec![0, 255]),
            ParameterValue::Jsonb(br#"{"k":[1,2]}"#.to_vec()),
            ParameterValue::Timestamp(86_400 + 3_723),
            ParameterValue::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
            ParameterValue::Decimal("12.340".into()),
            ParameterValue::ArrayStr(vec![Some("a".into()), None]),
            ParameterValue::Interval(Interval {
                micros: 5,
                days: 6,
                months: 7,
            }),
        ];
        let n =
            c.0.execute(
                "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                params,
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        c.0.execute(
            "INSERT INTO t (s) VALUES ($1)",
            vec![ParameterValue::DbNull],
        )
        .await
        .unwrap();
        let (cols, rows) =
            c.0.query("SELECT * FROM t ORDER BY s NULLS LAST", vec![])
                .await
                .unwrap();
        assert_eq!(cols[0].name, "b");
        assert_eq!(cols[7].data_type, DbDataType::Datetime);
        assert_eq!(
            rows[0],
            vec![
                DbValue::Boolean(true),
                DbValue::Int32(-7),
                DbValue::Int64(1 << 40),
                DbValue::Floating64(1.5),
                DbValue::Str("héllo".into()),
                DbValue::Binary(vec![0, 255]),
                DbValue::Jsonb(br#"{"k":[1,2]}"#.to_vec()),
                DbValue::Datetime((1970, 1, 2, 1, 2, 3, 0)),
                DbValue::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
                DbValue::Decimal("12.340".into()),
                DbValue::ArrayStr(vec![Some("a".into()), None]),
                DbValue::Interval(Interval {
                    micros: 5,
                    days: 6,
                    months: 7
                }),
            ]
        );
        assert!(rows[1].iter().all(|v| *v == DbValue::DbNull));

        // Types the interface has no case for come back as raw bytes.
        let (cols, rows) = c.0.query("SELECT '1.2.3.4'::inet", vec![]).await.unwrap();
        assert_eq!(cols[0].data_type, DbDataType::Other("inet".into()));
        assert!(matches!(rows[0][0], DbValue::Unsupported(_)));

        c.0.execute("CREATE UNIQUE INDEX t_s ON t (s)", vec![])
            .await
            .unwrap();
        let dup =
            c.0.execute("INSERT INTO t (s) VALUES ('héllo')", vec![])
                .await
                .unwrap_err();
        assert_eq!(db_code(&dup), "23505");
        let missing = c.0.query("SELECT * FROM nope", vec![]).await.unwrap_err();
        assert_eq!(db_code(&missing), "42P01");
        let wrong =
            c.0.query("SELECT $1::int", vec![ParameterValue::Int64(1)])
                .await
                .unwrap_err();
        assert!(
            matches!(&wrong, Error::QueryFailed(QueryError::Text(m)) if m.contains("int4")),
            "{wrong:?}"
        );
        let range =
            c.0.query("SELECT $1", vec![ParameterValue::RangeInt32((None, None))])
                .await
                .unwrap_err();
        assert!(matches!(range, Error::BadParameter(m) if m.contains("$1")));
    }

    #[tokio::test]
    async fn only_allowed_hosts_are_reached() {
        let (pg, ctx, url) = server().await;
        let other = url.replace(&format!(":{}/", pg.port()), ":1/");
        match ctx.open(&other).await {
            Err(Error::ConnectionFailed(m)) => {
                assert!(m.contains("postgres://127.0.0.1:1 is not permitted"), "{m}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("a host outside allowed_outbound_hosts was reached"),
        }
        let bad_password = url.replace(pg.password(), "nope");
        match ctx.open(&bad_password).await {
            Err(Error::ConnectionFailed(m)) => {
                assert!(m.contains("password authentication failed"), "{m}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("a wrong password connected"),
        }
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_before_reuse() {
        let (_pg, ctx, url) = server().await;
        let c = ctx.open(&url).await.unwrap();
        c.0.execute("CREATE TABLE v (x INT)", vec![]).await.unwrap();
        c.0.execute("BEGIN", vec![]).await.unwrap();
        c.0.execute("INSERT INTO v VALUES (1)", vec![])
            .await
            .unwrap();
        drop(c);
        // The rollback runs on the runtime before the connection is pooled again.
        let mut n = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let c = ctx.open(&url).await.unwrap();
            let (_, rows) = c.0.query("SELECT count(*) FROM v", vec![]).await.unwrap();
            n = Some(rows[0][0].clone());
            let (_, open) =
                c.0.query("SELECT now() = statement_timestamp()", vec![])
                    .await
                    .unwrap();
            if open[0][0] == DbValue::Boolean(true) {
                break;
            }
        }
        assert_eq!(
            n,
            Some(DbValue::Int64(0)),
            "the abandoned insert must be gone"
        );
    }

    #[tokio::test]
    async fn pooled_connections_recover_after_a_server_restart() {
        let (mut pg, ctx, url) = server().await;
        let c = ctx.open(&url).await.unwrap();
        c.0.query("SELECT 1", vec![]).await.unwrap();
        drop(c);
        pg.stop().await;
        match ctx.open(&url).await {
            Err(Error::ConnectionFailed(m)) => assert!(m.contains("connect"), "{m}"),
            Err(e) => panic!("{e:?}"),
            Ok(c) => {
                // A pooled connection may still look open; its first use fails.
                assert!(c.0.query("SELECT 1", vec![]).await.is_err());
            }
        }
        pg.restart().await.unwrap();
        let c = ctx.open(&url).await.unwrap();
        let (_, rows) = c.0.query("SELECT 2::bigint", vec![]).await.unwrap();
        assert_eq!(rows, vec![vec![DbValue::Int64(2)]]);
    }

    #[test]
    fn transactions_are_spotted_by_their_first_word() {
        for sql in [
            "BEGIN",
            "  begin isolation level serializable",
            "START TRANSACTION",
        ] {
            assert!(begins_transaction(sql), "{sql}");
        }
        for sql in ["SELECT 1", "COMMIT", "beginning", "-- BEGIN\nSELECT 1", ""] {
            assert!(!begins_transaction(sql), "{sql}");
        }
    }
}
