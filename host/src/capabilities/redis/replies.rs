//! What a Redis reply or failure becomes for the guest: replies flattened into the WIT's
//! values (with the tenant's prefix taken off the keys a blocking pop answers with), typed
//! replies read as the typed functions' results, failures as `error` values — a server error
//! is the guest's business, the rest is logged (redacted).

use super::v0_1::hostel::host::redis::{Error, Value};
use crate::secrets::redact_text;
use redis::Value as Reply;

/// What a failed Redis call tells the guest; server errors are the guest's business, the rest
/// is logged.
pub fn error_from(e: redis::RedisError) -> Error {
    if let redis::ErrorKind::Server(_) = e.kind() {
        return Error::Server(e.to_string());
    }
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        tracing::warn!("Redis unavailable: {e}");
        return Error::Unavailable(e.to_string());
    }
    if e.kind() == redis::ErrorKind::UnexpectedReturnType || e.kind() == redis::ErrorKind::Parse {
        return Error::UnexpectedReply(e.to_string());
    }
    tracing::warn!("Redis error: {e}");
    Error::Server(e.to_string())
}

pub fn unavailable(e: anyhow::Error) -> Error {
    // redis-rs errors repeat their io source in their own message: say each cause once.
    let mut why = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !why.contains(&cause) {
            if !why.is_empty() {
                why.push_str(": ");
            }
            why.push_str(&cause);
        }
    }
    let why = redact_text(&why);
    tracing::warn!("{why}");
    Error::Unavailable(why)
}

/// A reply, flattened depth-first into the guest's values; server errors inside it (a failed
/// command of a pipeline or transaction) become the error.
fn flatten(reply: Reply, strip: Option<&[u8]>, out: &mut Vec<Value>) -> Result<(), Error> {
    match reply {
        Reply::Nil => out.push(Value::Nil),
        Reply::Int(i) => out.push(Value::Int(i)),
        Reply::BulkString(mut data) => {
            if let Some(prefix) = strip
                && data.starts_with(prefix)
            {
                data.drain(..prefix.len());
            }
            out.push(Value::Data(data))
        }
        Reply::SimpleString(s) => out.push(Value::Status(s)),
        Reply::Okay => out.push(Value::Status("OK".into())),
        Reply::Double(d) => out.push(Value::Double(d)),
        Reply::Boolean(b) => out.push(Value::Boolean(b)),
        Reply::VerbatimString { text, .. } => out.push(Value::Data(text.into_bytes())),
        Reply::BigNumber(n) => out.push(Value::Status(String::from_utf8_lossy(&n).into_owned())),
        Reply::Attribute { data, .. } => flatten(*data, strip, out)?,
        Reply::Array(items) | Reply::Set(items) | Reply::Push { data: items, .. } => {
            for (i, item) in items.into_iter().enumerate() {
                // Only a blocking pop's first element is a key.
                flatten(item, strip.filter(|_| i == 0), out)?;
            }
        }
        Reply::Map(pairs) => {
            for (key, value) in pairs {
                flatten(key, None, out)?;
                flatten(value, None, out)?;
            }
        }
        Reply::ServerError(e) => return Err(Error::Server(redis::RedisError::from(e).to_string())),
        // The enum is non-exhaustive: a reply type newer than this host.
        other => {
            return Err(Error::UnexpectedReply(format!(
                "unsupported reply {other:?}"
            )));
        }
    }
    Ok(())
}

pub fn values(reply: Reply, prepared_strip: Option<&[u8]>) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    flatten(reply, prepared_strip, &mut out)?;
    Ok(out)
}

/// Reads a typed result out of a reply (`get` wants bytes or nil, `incr` an integer, ...).
pub fn typed<T: redis::FromRedisValue>(reply: Reply) -> Result<T, Error> {
    redis::from_redis_value(reply).map_err(|e| Error::UnexpectedReply(e.to_string()))
}
