//! Values between `spin:postgres@4.2.0` and tokio-postgres, mapped as Spin's
//! outbound PostgreSQL maps them: `timestamp(s64)` parameters are unix
//! seconds, `TIMESTAMP`/`TIMESTAMPTZ` columns come back as `datetime` tuples in
//! UTC, `JSONB` travels as JSON bytes, `NUMERIC` as its decimal text, and a
//! column of a type the interface has no case for as `unsupported(<raw
//! bytes>)`. Range types are not provided by this host (a range parameter is a
//! `bad-parameter` error; range columns come back `unsupported`).

use bytes::BytesMut;
use chrono::{Datelike, Timelike};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

use crate::spin::bindings::postgres::{Column, DbDataType, DbValue, Interval, ParameterValue};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A parameter ready to bind.
pub type Param = Box<dyn ToSql + Send + Sync>;

/// The interface's type of a column.
pub fn data_type(t: &Type) -> DbDataType {
    match *t {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(t.name().to_owned()),
    }
}

pub fn columns(cols: &[tokio_postgres::Column]) -> Vec<Column> {
    cols.iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            data_type: data_type(c.type_()),
        })
        .collect()
}

fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    i: usize,
    wrap: impl FnOnce(T) -> Result<DbValue, String>,
) -> Result<DbValue, String> {
    match row.try_get::<_, Option<T>>(i) {
        Ok(Some(v)) => wrap(v),
        Ok(None) => Ok(DbValue::DbNull),
        Err(e) => Err(format!("column {i}: {e}")),
    }
}

/// One cell of a row.
pub fn value(row: &Row, i: usize) -> Result<DbValue, String> {
    let t = row.columns()[i].type_().clone();
    match t {
        Type::BOOL => get(row, i, |v| Ok(DbValue::Boolean(v))),
        Type::BYTEA => get(row, i, |v| Ok(DbValue::Binary(v))),
        Type::FLOAT4 => get(row, i, |v| Ok(DbValue::Floating32(v))),
        Type::FLOAT8 => get(row, i, |v| Ok(DbValue::Floating64(v))),
        Type::INT2 => get(row, i, |v| Ok(DbValue::Int16(v))),
        Type::INT4 => get(row, i, |v| Ok(DbValue::Int32(v))),
        Type::INT8 => get(row, i, |v| Ok(DbValue::Int64(v))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, i, |v| Ok(DbValue::Str(v))),
        Type::TIMESTAMP => get(row, i, |v: chrono::NaiveDateTime| datetime(v)),
        Type::TIMESTAMPTZ => get(row, i, |v: chrono::DateTime<chrono::Utc>| {
            datetime(v.naive_utc())
        }),
        Type::DATE => get(row, i, |v: chrono::NaiveDate| {
            Ok(DbValue::Date((
                v.year(),
                small(v.month())?,
                small(v.day())?,
            )))
        }),
        Type::TIME => get(row, i, |v: chrono::NaiveTime| {
            Ok(DbValue::Time((
                small(v.hour())?,
                small(v.minute())?,
                small(v.second())?,
                v.nanosecond(),
            )))
        }),
        Type::UUID => get(row, i, |v: uuid::Uuid| Ok(DbValue::Uuid(v.to_string()))),
        Type::JSONB => get(row, i, |v: serde_json::Value| {
            serde_json::to_vec(&v)
                .map(DbValue::Jsonb)
                .map_err(|e| e.to_string())
        }),
        Type::NUMERIC => get(row, i, |v: rust_decimal::Decimal| {
            Ok(DbValue::Decimal(v.to_string()))
        }),
        Type::INT4_ARRAY => get(row, i, |v| Ok(DbValue::ArrayInt32(v))),
        Type::INT8_ARRAY => get(row, i, |v| Ok(DbValue::ArrayInt64(v))),
        Type::NUMERIC_ARRAY => get(row, i, |v: Vec<Option<rust_decimal::Decimal>>| {
            Ok(DbValue::ArrayDecimal(
                v.into_iter().map(|d| d.map(|d| d.to_string())).collect(),
            ))
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            get(row, i, |v| Ok(DbValue::ArrayStr(v)))
        }
        Type::INTERVAL => get(row, i, |v: PgInterval| Ok(DbValue::Interval(v.0))),
        _ => get(row, i, |v: Raw| Ok(DbValue::Unsupported(v.0))),
    }
}

fn small(v: u32) -> Result<u8, String> {
    u8::try_from(v).map_err(|_| format!("{v} does not fit the interface's u8"))
}

fn datetime(v: chrono::NaiveDateTime) -> Result<DbValue, String> {
    Ok(DbValue::Datetime((
        v.year(),
        small(v.month())?,
        small(v.day())?,
        small(v.hour())?,
        small(v.minute())?,
        small(v.second())?,
        v.nanosecond(),
    )))
}

fn date(y: i32, m: u8, d: u8) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::from_ymd_opt(y, m.into(), d.into())
        .ok_or_else(|| format!("invalid date {y}-{m}-{d}"))
}

fn time(h: u8, m: u8, s: u8, ns: u32) -> Result<chrono::NaiveTime, String> {
    chrono::NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .ok_or_else(|| format!("invalid time {h}:{m}:{s}.{ns}"))
}

/// A parameter as tokio-postgres binds it; the error names the parameter.
pub fn param(i: usize, v: ParameterValue) -> Result<Param, String> {
    let bad = |why: String| format!("parameter ${}: {why}", i + 1);
    Ok(match v {
        ParameterValue::Boolean(v) => Box::new(v),
        ParameterValue::Int8(v) => Box::new(v),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::Date((y, m, d)) => Box::new(date(y, m, d).map_err(bad)?),
        ParameterValue::Time((h, m, s, ns)) => Box::new(time(h, m, s, ns).map_err(bad)?),
        ParameterValue::Datetime((y, mo, d, h, mi, s, ns)) => Box::new(chrono::NaiveDateTime::new(
            date(y, mo, d).map_err(bad)?,
            time(h, mi, s, ns).map_err(bad)?,
        )),
        ParameterValue::Timestamp(secs) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0)
                .ok_or_else(|| bad(format!("invalid unix timestamp {secs}")))?,
        ),
        ParameterValue::Uuid(v) => Box::new(
            uuid::Uuid::parse_str(&v).map_err(|e| bad(format!("invalid UUID {v:?}: {e}")))?,
        ),
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(&v)
                .map_err(|e| bad(format!("invalid JSON: {e}")))?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(&v).map_err(bad)?),
        ParameterValue::ArrayInt32(v) => Box::new(v),
        ParameterValue::ArrayInt64(v) => Box::new(v),
        ParameterValue::ArrayStr(v) => Box::new(v),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?,
        ),
        ParameterValue::Interval(v) => Box::new(PgInterval(v)),
        ParameterValue::RangeInt32(_)
        | ParameterValue::RangeInt64(_)
        | ParameterValue::RangeDecimal(_) => {
            return Err(bad(
                "range parameters are not provided by this host (Spin provides them)".into(),
            ))
        }
        ParameterValue::DbNull => Box::new(Null),
    })
}

fn decimal(v: &str) -> Result<rust_decimal::Decimal, String> {
    rust_decimal::Decimal::from_str_exact(v).map_err(|e| format!("invalid decimal {v:?}: {e}"))
}

/// SQL NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// `INTERVAL` in its binary form: microseconds, days, months.
#[derive(Debug)]
struct PgInterval(Interval);

impl ToSql for PgInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.extend_from_slice(&self.0.micros.to_be_bytes());
        out.extend_from_slice(&self.0.days.to_be_bytes());
        out.extend_from_slice(&self.0.months.to_be_bytes());
        Ok(IsNull::No)
    }

    fn accepts(t: &Type) -> bool {
        *t == Type::INTERVAL
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgInterval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let bytes: [u8; 16] = raw
            .try_into()
            .map_err(|_| format!("an interval is 16 bytes, got {}", raw.len()))?;
        let (m, rest) = bytes.split_at(8);
        let (d, mo) = rest.split_at(4);
        Ok(Self(Interval {
            micros: i64::from_be_bytes(m.try_into()?),
            days: i32::from_be_bytes(d.try_into()?),
            months: i32::from_be_bytes(mo.try_into()?),
        }))
    }

    fn accepts(t: &Type) -> bool {
        *t == Type::INTERVAL
    }
}

/// The wire bytes of a column of any other type.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
