//! Redis through a pool the host holds (`hostel:host/redis`).
//!
//! ```ignore
//! let redis = hostel_guest::redis::Redis::open("cache")?;
//! let hits = redis.incr("hits", 1)?;
//! redis.set_expiring("last-seen", b"now", std::time::Duration::from_secs(60))?;
//! ```
//!
//! Plain commands share the host's multiplexed connection; [`Redis::transaction`] leases one
//! of the pool's connections for WATCH/MULTI/EXEC or blocking commands until it is dropped.
//! Keys are namespaced per tenant by the host: name your keys as if the server were yours.

use crate::bindings::hostel::host::redis as wit;
use std::time::Duration;

mod command;

pub use command::{Cmd, Error, Reply, ToArg, Value, cmd};
use command::{args, keys, millis};

/// A granted Redis pool.
pub struct Redis(wit::Connection);

impl Redis {
    /// Opens the pool called `name` in the host's configuration (`[pools.NAME]`).
    pub fn open(name: &str) -> Result<Redis, Error> {
        wit::Connection::open(name).map(Redis)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key)
    }

    /// GET, as UTF-8 text (lossy).
    pub fn get_string(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.0.set(key, value.as_ref(), None)
    }

    /// SET with an expiry.
    pub fn set_expiring(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.0.set(key, value.as_ref(), Some(millis(ttl)))
    }

    /// INCRBY: the new value.
    pub fn incr(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.0.incr(key, delta)
    }

    /// How many of the keys were removed.
    pub fn del(&self, keys_: &[&str]) -> Result<u32, Error> {
        self.0.del(&keys(keys_))
    }

    /// How many of the keys exist.
    pub fn exists(&self, keys_: &[&str]) -> Result<u32, Error> {
        self.0.exists(&keys(keys_))
    }

    /// Whether the key exists (and now expires after `ttl`).
    pub fn expire(&self, key: &str, ttl: Duration) -> Result<bool, Error> {
        self.0.expire(key, millis(ttl))
    }

    pub fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.hget(key, field)
    }

    /// Whether the field is new.
    pub fn hset(&self, key: &str, field: &str, value: impl AsRef<[u8]>) -> Result<bool, Error> {
        self.0.hset(key, field, value.as_ref())
    }

    pub fn hdel(&self, key: &str, fields: &[&str]) -> Result<u32, Error> {
        self.0.hdel(key, &keys(fields))
    }

    pub fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.0.hgetall(key)
    }

    pub fn lpush<T: ToArg>(&self, key: &str, values: &[T]) -> Result<u32, Error> {
        self.0.lpush(key, &args(values))
    }

    pub fn rpush<T: ToArg>(&self, key: &str, values: &[T]) -> Result<u32, Error> {
        self.0.rpush(key, &args(values))
    }

    pub fn lpop(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.lpop(key)
    }

    pub fn rpop(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.rpop(key)
    }

    /// LRANGE: inclusive, negative indexes count from the end (`0, -1` is the whole list).
    pub fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>, Error> {
        self.0.lrange(key, start, stop)
    }

    pub fn llen(&self, key: &str) -> Result<u32, Error> {
        self.0.llen(key)
    }

    pub fn sadd<T: ToArg>(&self, key: &str, members: &[T]) -> Result<u32, Error> {
        self.0.sadd(key, &args(members))
    }

    pub fn srem<T: ToArg>(&self, key: &str, members: &[T]) -> Result<u32, Error> {
        self.0.srem(key, &args(members))
    }

    pub fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>, Error> {
        self.0.smembers(key)
    }

    pub fn sismember(&self, key: &str, member: impl ToArg) -> Result<bool, Error> {
        self.0.sismember(key, &member.to_arg())
    }

    /// How many subscribers got the message.
    pub fn publish(&self, channel: &str, message: impl AsRef<[u8]>) -> Result<u32, Error> {
        self.0.publish(channel, message.as_ref())
    }

    /// Any command the host can namespace; array replies come flattened.
    pub fn execute(&self, command: Cmd) -> Result<Vec<Value>, Error> {
        self.0.execute(&command.0)
    }

    /// Several commands in one round trip: one result per command, in order.
    pub fn pipeline(&self, commands: &[Cmd]) -> Result<Vec<Reply>, Error> {
        let commands: Vec<wit::Command> = commands.iter().map(|c| c.0.clone()).collect();
        self.0.pipeline(&commands)
    }

    /// Leases a connection of the pool until the transaction is dropped.
    pub fn transaction(&self) -> Result<Transaction, Error> {
        self.0.transaction().map(Transaction)
    }
}

/// A leased connection: WATCH, read, then [`Transaction::exec`] the writes atomically.
pub struct Transaction(wit::Transaction);

impl Transaction {
    pub fn watch(&self, keys_: &[&str]) -> Result<(), Error> {
        self.0.watch(&keys(keys_))
    }

    /// A command run now on the leased connection (reads after WATCH, BLPOP, ...).
    pub fn execute(&self, command: Cmd) -> Result<Vec<Value>, Error> {
        self.0.execute(&command.0)
    }

    /// MULTI, the commands, EXEC. `None` when a watched key changed and nothing was applied:
    /// read again and retry.
    pub fn exec(&self, commands: &[Cmd]) -> Result<Option<Vec<Reply>>, Error> {
        let commands: Vec<wit::Command> = commands.iter().map(|c| c.0.clone()).collect();
        self.0.exec(&commands)
    }
}
