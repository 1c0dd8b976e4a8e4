//! What both editions of the SDK share for Redis: commands, their arguments and the replies' values
//! (the same types in `hostel:host/redis` 0.1.0 and its WASI 0.3 edition 0.2.0).

use crate::bindings_0_1::redis as wit;
use std::time::Duration;

pub use wit::{Error, Value};

/// One command's reply (flattened) or its error, as pipelines and transactions answer.
pub type Reply = Result<Vec<Value>, Error>;

/// A command for [`Redis::execute`], [`Pipeline`] and [`Transaction::exec`].
#[derive(Debug, Clone)]
pub struct Cmd(pub(crate) wit::Command);

/// Starts a command: `cmd("ZADD").arg("board").arg(10).arg("alice")`.
pub fn cmd(name: &str) -> Cmd {
    Cmd(wit::Command {
        name: name.to_string(),
        args: Vec::new(),
    })
}

/// What can be a command argument: strings, bytes and numbers.
pub trait ToArg {
    fn to_arg(&self) -> Vec<u8>;
}

impl ToArg for str {
    fn to_arg(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}
impl ToArg for [u8] {
    fn to_arg(&self) -> Vec<u8> {
        self.to_vec()
    }
}
impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_arg(&self) -> Vec<u8> {
        (**self).to_arg()
    }
}
impl ToArg for String {
    fn to_arg(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}
impl ToArg for Vec<u8> {
    fn to_arg(&self) -> Vec<u8> {
        self.clone()
    }
}
macro_rules! number_args {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn to_arg(&self) -> Vec<u8> {
                self.to_string().into_bytes()
            }
        }
    )*};
}
number_args!(i32, i64, u32, u64, usize, f64);

impl Cmd {
    pub fn arg(mut self, arg: impl ToArg) -> Cmd {
        self.0.args.push(arg.to_arg());
        self
    }
}

pub(crate) fn args<T: ToArg>(items: &[T]) -> Vec<Vec<u8>> {
    items.iter().map(ToArg::to_arg).collect()
}

pub(crate) fn keys(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Value {
    /// The value as an integer, when it is one (or decimal text).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Data(d) => std::str::from_utf8(d).ok()?.parse().ok(),
            Value::Status(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The value as text, when it is text or bytes.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Data(d) => Some(String::from_utf8_lossy(d).into_owned()),
            Value::Status(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}
