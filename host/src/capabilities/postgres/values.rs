//! Guest values ↔ PostgreSQL's binary wire format, by the types the server says a statement
//! takes and returns. Conversions are checked before the statement runs, so a mistake is a
//! `conversion` error naming the parameter or column, never a half-run statement.

#[cfg(test)]
mod fuzz;

use super::v0_1::hostel::host::postgres::{Column, Timestamp, Value};
use bytes::{BufMut, BytesMut};
use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::Statement;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// What a statement takes and returns, as the server described it when it was first prepared.
#[derive(Debug, Clone)]
pub struct Shape {
    pub params: Vec<Type>,
    /// Name and type of each column.
    pub columns: Vec<(String, Type)>,
}

impl Shape {
    pub fn of(statement: &Statement) -> Shape {
        Shape {
            params: statement.params().to_vec(),
            columns: statement
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().clone()))
                .collect(),
        }
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

/// The PostgreSQL types Hostel converts, grouped by how they travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// text, varchar, bpchar, name: UTF-8 bytes.
    Text,
    Bytea,
    Json,
    /// jsonb: a version byte, then JSON text.
    Jsonb,
    /// timestamp and timestamptz: microseconds since 2000-01-01, both read as UTC.
    Timestamp,
    Uuid,
    /// What `SELECT f()` returns for a function returning nothing: read as null.
    Void,
}

fn kind_of(ty: &Type) -> Option<Kind> {
    let kind = if *ty == Type::BOOL {
        Kind::Bool
    } else if *ty == Type::INT2 {
        Kind::Int2
    } else if *ty == Type::INT4 {
        Kind::Int4
    } else if *ty == Type::INT8 {
        Kind::Int8
    } else if *ty == Type::FLOAT4 {
        Kind::Float4
    } else if *ty == Type::FLOAT8 {
        Kind::Float8
    } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
        Kind::Text
    } else if *ty == Type::BYTEA {
        Kind::Bytea
    } else if *ty == Type::JSON {
        Kind::Json
    } else if *ty == Type::JSONB {
        Kind::Jsonb
    } else if *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ {
        Kind::Timestamp
    } else if *ty == Type::UUID {
        Kind::Uuid
    } else if *ty == Type::VOID {
        Kind::Void
    } else {
        return None;
    };
    Some(kind)
}

/// The version byte jsonb's binary format starts with.
const JSONB_VERSION: u8 = 1;
/// Seconds from 1970-01-01 (the guest's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_OFFSET: i64 = 946_684_800;

/// A parameter checked against the type the statement takes, ready to be sent; it borrows
/// the guest's value, which stays the guest's (to send again, with another shape).
#[derive(Debug)]
pub enum Param<'a> {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Json(&'a str),
    Jsonb(&'a str),
    Timestamp(SystemTime),
    Uuid(uuid::Uuid),
}

/// Converts the guest's parameters to the types the statement takes. The error names the
/// parameter (`$1` is the first) and says how to fix the SQL.
pub fn params<'a>(shape: &Shape, values: &'a [Value]) -> Result<Vec<Param<'a>>, String> {
    let types = &shape.params;
    if types.len() != values.len() {
        return Err(format!(
            "the statement takes {} parameter(s), {} given",
            types.len(),
            values.len()
        ));
    }
    values
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (value, ty))| {
            param(value, ty).map_err(|why| format!("parameter ${}: {why}", i + 1))
        })
        .collect()
}

fn param<'a>(value: &'a Value, ty: &Type) -> Result<Param<'a>, String> {
    let given = value_name(value);
    let Some(kind) = kind_of(ty) else {
        return Err(format!(
            "the statement takes a `{ty}`, which Hostel does not convert; pass text and cast \
             it in SQL (e.g. `$1::text::{ty}`)"
        ));
    };
    let mismatch = || format!("a {given} value cannot fill a `{ty}`");
    let out_of_range = |n: &dyn std::fmt::Display| format!("{n} does not fit in a `{ty}`");
    Ok(match (value, kind) {
        (Value::Null, _) => Param::Null,
        (Value::Boolean(b), Kind::Bool) => Param::Bool(*b),
        (Value::Int16(n), _) => int(i64::from(*n), kind).ok_or_else(mismatch)?,
        (Value::Int32(n), _) => int(i64::from(*n), kind).ok_or_else(mismatch)?,
        (Value::Int64(n), Kind::Int2 | Kind::Int4 | Kind::Int8) => {
            int(*n, kind).ok_or_else(|| out_of_range(n))?
        }
        (Value::Float32(f), Kind::Float4) => Param::Float4(*f),
        (Value::Float32(f), Kind::Float8) => Param::Float8(f64::from(*f)),
        (Value::Float64(f), Kind::Float8) => Param::Float8(*f),
        (Value::Text(s), Kind::Text) => Param::Text(s),
        (Value::Text(s) | Value::Json(s), Kind::Json) => Param::Json(s),
        (Value::Text(s) | Value::Json(s), Kind::Jsonb) => Param::Jsonb(s),
        (Value::Bytes(b), Kind::Bytea) => Param::Bytes(b),
        (Value::Timestamp(t), Kind::Timestamp) => Param::Timestamp(system_time(*t)?),
        (Value::Uuid((high, low)), Kind::Uuid) => {
            Param::Uuid(uuid::Uuid::from_u64_pair(*high, *low))
        }
        _ => return Err(mismatch()),
    })
}

/// An integer as the integer type `kind`, if it fits (`None` for a non-integer kind too).
fn int(n: i64, kind: Kind) -> Option<Param<'static>> {
    match kind {
        Kind::Int2 => i16::try_from(n).ok().map(Param::Int2),
        Kind::Int4 => i32::try_from(n).ok().map(Param::Int4),
        Kind::Int8 => Some(Param::Int8(n)),
        _ => None,
    }
}

fn value_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int16(_) => "int16",
        Value::Int32(_) => "int32",
        Value::Int64(_) => "int64",
        Value::Float32(_) => "float32",
        Value::Float64(_) => "float64",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
        Value::Timestamp(_) => "timestamp",
        Value::Uuid(_) => "uuid",
    }
}

/// Rejects instants PostgreSQL cannot store (its microseconds since 2000 must fit an `i64`),
/// which `SystemTime`'s encoder would silently wrap.
fn system_time(t: Timestamp) -> Result<SystemTime, String> {
    let out_of_range = || format!("timestamp {}s is out of PostgreSQL's range", t.seconds);
    if t.nanoseconds >= 1_000_000_000 {
        return Err(format!(
            "timestamp nanoseconds {} is not below 10^9",
            t.nanoseconds
        ));
    }
    let micros =
        i128::from(t.seconds - PG_EPOCH_OFFSET) * 1_000_000 + i128::from(t.nanoseconds / 1_000);
    i64::try_from(micros).map_err(|_| out_of_range())?;
    let time = if t.seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.seconds.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(t.seconds.unsigned_abs()))
    };
    // PostgreSQL keeps microseconds. Truncate here, the same way for every date: the encoder
    // rounds towards 2000-01-01, which is up for instants before it (found by fuzzing).
    let micros = Duration::from_micros(u64::from(t.nanoseconds / 1_000));
    time.and_then(|time| time.checked_add(micros))
        .ok_or_else(out_of_range)
}

fn timestamp(time: SystemTime) -> Timestamp {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => Timestamp {
            seconds: after.as_secs() as i64,
            nanoseconds: after.subsec_nanos(),
        },
        Err(before) => {
            let before = before.duration();
            let (seconds, nanoseconds) = (before.as_secs() as i64, before.subsec_nanos());
            if nanoseconds == 0 {
                Timestamp {
                    seconds: -seconds,
                    nanoseconds,
                }
            } else {
                Timestamp {
                    seconds: -seconds - 1,
                    nanoseconds: 1_000_000_000 - nanoseconds,
                }
            }
        }
    }
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Bool(b) => b.to_sql(ty, out),
            Param::Int2(n) => n.to_sql(ty, out),
            Param::Int4(n) => n.to_sql(ty, out),
            Param::Int8(n) => n.to_sql(ty, out),
            Param::Float4(f) => f.to_sql(ty, out),
            Param::Float8(f) => f.to_sql(ty, out),
            Param::Text(s) | Param::Json(s) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            Param::Jsonb(s) => {
                out.put_u8(JSONB_VERSION);
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            Param::Bytes(b) => b.to_sql(ty, out),
            Param::Timestamp(t) => t.to_sql(ty, out),
            Param::Uuid(u) => u.to_sql(ty, out),
        }
    }

    /// Checked already, against the statement's own parameter types, by [`params`].
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Fails, before the statement runs, on a column of a type Hostel does not convert.
pub fn check_columns(shape: &Shape) -> Result<(), String> {
    for (name, ty) in &shape.columns {
        if kind_of(ty).is_none() {
            return Err(format!(
                "column {name:?} is a `{ty}`, which Hostel does not convert; cast it in SQL \
                 (e.g. `{name}::text`)"
            ));
        }
    }
    Ok(())
}

pub fn columns(shape: &Shape) -> Vec<Column> {
    shape
        .columns
        .iter()
        .map(|(name, ty)| Column {
            name: name.clone(),
            type_name: ty.name().to_string(),
        })
        .collect()
}

/// The bytes a row took on the wire, whatever its columns' types.
pub fn size_of(row: &tokio_postgres::Row) -> u64 {
    /// Any column, as its length.
    struct Length(usize);
    impl<'a> FromSql<'a> for Length {
        fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Length, BoxError> {
            Ok(Length(raw.len()))
        }
        fn from_sql_null(_: &Type) -> Result<Length, BoxError> {
            Ok(Length(0))
        }
        fn accepts(_: &Type) -> bool {
            true
        }
    }
    (0..row.len())
        .map(|i| row.try_get::<_, Length>(i).map_or(0, |l| l.0 as u64 + 4))
        .sum()
}

/// One column of a row, read by its type.
pub struct Decoded(pub Value);

impl<'a> FromSql<'a> for Decoded {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Decoded, BoxError> {
        let kind = kind_of(ty).ok_or_else(|| format!("unsupported type `{ty}`"))?;
        let value = match kind {
            Kind::Bool => Value::Boolean(bool::from_sql(ty, raw)?),
            Kind::Int2 => Value::Int16(i16::from_sql(ty, raw)?),
            Kind::Int4 => Value::Int32(i32::from_sql(ty, raw)?),
            Kind::Int8 => Value::Int64(i64::from_sql(ty, raw)?),
            Kind::Float4 => Value::Float32(f32::from_sql(ty, raw)?),
            Kind::Float8 => Value::Float64(f64::from_sql(ty, raw)?),
            Kind::Text => Value::Text(String::from_sql(ty, raw)?),
            Kind::Bytea => Value::Bytes(raw.to_vec()),
            Kind::Json => Value::Json(std::str::from_utf8(raw)?.to_string()),
            Kind::Jsonb => match raw.split_first() {
                Some((&JSONB_VERSION, json)) => Value::Json(std::str::from_utf8(json)?.to_string()),
                _ => return Err("unknown jsonb format version".into()),
            },
            Kind::Timestamp => Value::Timestamp(timestamp(SystemTime::from_sql(ty, raw)?)),
            Kind::Uuid => Value::Uuid(uuid::Uuid::from_sql(ty, raw)?.as_u64_pair()),
            Kind::Void => Value::Null,
        };
        Ok(Decoded(value))
    }

    fn from_sql_null(_: &Type) -> Result<Decoded, BoxError> {
        Ok(Decoded(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        kind_of(ty).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_before_and_after_1970() {
        for (seconds, nanoseconds) in [(0, 0), (1_700_000_000, 123_456_000), (-1, 500_000_000)] {
            let t = Timestamp {
                seconds,
                nanoseconds,
            };
            let back = timestamp(system_time(t).unwrap());
            assert_eq!((back.seconds, back.nanoseconds), (seconds, nanoseconds));
        }
        assert!(
            system_time(Timestamp {
                seconds: i64::MAX,
                nanoseconds: 0
            })
            .is_err()
        );
        // Below a microsecond is dropped the same way before 2000 as after (the fuzzer found
        // 1970-01-01T00:00:00.000000001 coming back as .000001).
        for (seconds, nanoseconds, kept) in [
            (0, 1, 0),
            (-1, 999_999_999, 999_999_000),
            (2_000_000_000, 1_999, 1_000),
        ] {
            let back = timestamp(
                system_time(Timestamp {
                    seconds,
                    nanoseconds,
                })
                .unwrap(),
            );
            assert_eq!((back.seconds, back.nanoseconds), (seconds, kept));
        }
    }

    #[test]
    fn integers_fill_narrower_columns_only_when_they_fit() {
        assert!(matches!(
            param(&Value::Int64(7), &Type::INT4),
            Ok(Param::Int4(7))
        ));
        let err = param(&Value::Int64(1 << 40), &Type::INT4).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
        assert!(param(&Value::Text("x".into()), &Type::INT4).is_err());
        assert!(matches!(param(&Value::Null, &Type::INT4), Ok(Param::Null)));
        let err = param(&Value::Text("1.5".into()), &Type::NUMERIC).unwrap_err();
        assert!(err.contains("::text::numeric"), "{err}");
    }
}
