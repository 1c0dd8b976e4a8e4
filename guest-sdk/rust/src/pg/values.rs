//! What both editions of the SDK share for PostgreSQL: errors, parameters, rows and the
//! conversions between Rust values and the WIT `value` (the same types in `hostel:host/postgres`
//! 0.1.0 and its WASI 0.3 edition 0.2.0, which uses them).

use crate::bindings_0_1::postgres as wit;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use wit::{Column, DbError, Timestamp, Value};

/// Why a call failed.
#[derive(Debug, Clone)]
pub enum Error {
    /// No pool by this name is configured on the host (the host's explanation).
    NoSuchPool(String),
    /// The pool exists, but this app's tenant was not granted it (the host's explanation).
    NotGranted(String),
    /// The server cannot be reached or no connection came free in time: worth a 503.
    Unavailable(String),
    /// The server refused the statement (bad SQL, constraint violation, …).
    Db(DbError),
    /// A parameter or column could not be converted.
    Conversion(String),
    /// The transaction was already committed or rolled back.
    Finished,
    /// A row has no column by this name (or index).
    NoSuchColumn(String),
}

impl Error {
    /// The SQLSTATE of a server error, e.g. `23505` for a unique violation.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Db(db) => Some(&db.code),
            _ => None,
        }
    }

    /// Whether the database is out of reach (rather than the request being wrong).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchPool(why) | Error::NotGranted(why) => f.write_str(why),
            Error::Unavailable(why) => write!(f, "database unavailable: {why}"),
            Error::Db(db) => {
                write!(f, "{} (SQLSTATE {})", db.message, db.code)?;
                match &db.detail {
                    Some(detail) => write!(f, ": {detail}"),
                    None => Ok(()),
                }
            }
            Error::Conversion(why) => write!(f, "conversion error: {why}"),
            Error::Finished => write!(f, "the transaction is already finished"),
            Error::NoSuchColumn(column) => write!(f, "no column {column}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Error {
        match e {
            wit::Error::NoSuchPool(name) => Error::NoSuchPool(name),
            wit::Error::NotGranted(name) => Error::NotGranted(name),
            wit::Error::Unavailable(why) => Error::Unavailable(why),
            wit::Error::Db(db) => Error::Db(db),
            wit::Error::Conversion(why) => Error::Conversion(why),
            wit::Error::Finished => Error::Finished,
        }
    }
}

pub(crate) fn values(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

pub(crate) fn rows(result: Result<wit::Rows, wit::Error>) -> Result<Vec<Row>, Error> {
    let wit::Rows { columns, rows } = result?;
    let columns: Rc<[Column]> = columns.into();
    Ok(rows
        .into_iter()
        .map(|values| Row {
            columns: columns.clone(),
            values,
        })
        .collect())
}

/// One row of a result, its values in column order.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Rc<[Column]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of a column (by name or index) as `T`; `Option<T>` for a column that may be
    /// null.
    pub fn get<T: FromValue>(&self, column: impl ColumnIndex) -> Result<T, Error> {
        let i = column
            .index(&self.columns)
            .ok_or_else(|| Error::NoSuchColumn(column.describe()))?;
        T::from_value(&self.values[i])
            .map_err(|why| Error::Conversion(format!("column {:?}: {why}", self.columns[i].name)))
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

/// How a column is named in [`Row::get`]: by name (`&str`) or position (`usize`).
pub trait ColumnIndex {
    fn index(&self, columns: &[Column]) -> Option<usize>;
    fn describe(&self) -> String;
}

impl ColumnIndex for &str {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name == *self)
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl ColumnIndex for usize {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
    fn describe(&self) -> String {
        format!("at index {self}")
    }
}

/// JSON text, for `json` and `jsonb` parameters and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(pub String);

/// A UUID, for `uuid` parameters and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub u128);

impl fmt::Display for Uuid {
    /// The hyphenated form PostgreSQL prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

/// What a parameter can be made of.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

/// What a column can be read as.
pub trait FromValue: Sized {
    /// `Err` says why not, e.g. "a text value is not an i64".
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn type_name(value: &Value) -> &'static str {
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

fn mismatch<T>(value: &Value) -> Result<T, String> {
    let hint = if matches!(value, Value::Null) {
        " (read a nullable column as Option<_>)"
    } else {
        ""
    };
    Err(format!(
        "a {} value is not a {}{hint}",
        type_name(value),
        std::any::type_name::<T>()
    ))
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_value)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// `ToValue` and `From<T> for Value` for types that map onto one variant.
macro_rules! simple_values {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl ToValue for $ty {
            fn to_value(&self) -> Value {
                Value::$variant(self.clone())
            }
        }
        impl From<$ty> for Value {
            fn from(v: $ty) -> Value {
                Value::$variant(v)
            }
        }
    )*};
}

simple_values! {
    bool => Boolean,
    i16 => Int16,
    i32 => Int32,
    i64 => Int64,
    f32 => Float32,
    f64 => Float64,
    String => Text,
    Vec<u8> => Bytes,
    Timestamp => Timestamp,
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}

impl ToValue for Json {
    fn to_value(&self) -> Value {
        Value::Json(self.0.clone())
    }
}

impl ToValue for Uuid {
    fn to_value(&self) -> Value {
        Value::Uuid(((self.0 >> 64) as u64, self.0 as u64))
    }
}

impl ToValue for SystemTime {
    fn to_value(&self) -> Value {
        let t = match self.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp {
                seconds: after.as_secs() as i64,
                nanoseconds: after.subsec_nanos(),
            },
            Err(before) => {
                let before = before.duration();
                let whole = before.as_secs() as i64 + i64::from(before.subsec_nanos() > 0);
                Timestamp {
                    seconds: -whole,
                    nanoseconds: (1_000_000_000 - before.subsec_nanos()) % 1_000_000_000,
                }
            }
        };
        Value::Timestamp(t)
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Boolean(b) => Ok(*b),
            other => mismatch(other),
        }
    }
}

/// Integers read from any integer column whose value fits.
macro_rules! int_values {
    ($($ty:ty),*) => {$(
        impl FromValue for $ty {
            fn from_value(value: &Value) -> Result<Self, String> {
                let n = match value {
                    Value::Int16(n) => i64::from(*n),
                    Value::Int32(n) => i64::from(*n),
                    Value::Int64(n) => *n,
                    other => return mismatch(other),
                };
                <$ty>::try_from(n).map_err(|_| {
                    format!("{n} does not fit in a {}", std::any::type_name::<$ty>())
                })
            }
        }
    )*};
}

int_values!(i16, i32, i64);

impl FromValue for f32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Float32(f) => Ok(*f),
            other => mismatch(other),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Float32(f) => Ok(f64::from(*f)),
            Value::Float64(f) => Ok(*f),
            other => mismatch(other),
        }
    }
}

/// Text, and JSON as its text.
impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(s) | Value::Json(s) => Ok(s.clone()),
            other => mismatch(other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bytes(b) => Ok(b.clone()),
            other => mismatch(other),
        }
    }
}

impl FromValue for Json {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Json(s) | Value::Text(s) => Ok(Json(s.clone())),
            other => mismatch(other),
        }
    }
}

impl FromValue for Uuid {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Uuid((high, low)) => Ok(Uuid((u128::from(*high) << 64) | u128::from(*low))),
            other => mismatch(other),
        }
    }
}

impl FromValue for Timestamp {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Timestamp(t) => Ok(*t),
            other => mismatch(other),
        }
    }
}

impl FromValue for SystemTime {
    fn from_value(value: &Value) -> Result<Self, String> {
        let t = Timestamp::from_value(value)?;
        let whole = Duration::from_secs(t.seconds.unsigned_abs());
        let time = if t.seconds >= 0 {
            UNIX_EPOCH.checked_add(whole)
        } else {
            UNIX_EPOCH.checked_sub(whole)
        };
        time.and_then(|time| time.checked_add(Duration::from_nanos(u64::from(t.nanoseconds))))
            .ok_or_else(|| format!("timestamp {}s is out of range", t.seconds))
    }
}

/// RFC 3339 in UTC, e.g. `2024-05-01T12:30:00.25Z`: what JSON APIs usually want.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.seconds.div_euclid(86_400);
        let secs = self.seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if self.nanoseconds > 0 {
            let fraction = format!("{:09}", self.nanoseconds);
            write!(f, ".{}", fraction.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339() {
        let at = |seconds, nanoseconds| {
            Timestamp {
                seconds,
                nanoseconds,
            }
            .to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400, 250_000_000), "2000-02-29T00:00:00.25Z");
        assert_eq!(at(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn uuids_print_hyphenated() {
        let u = Uuid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(u.to_string(), "01234567-89ab-cdef-0123-456789abcdef");
    }
}
