//! Redis through a pool the host holds (`hostel:host/redis@0.2.0`): every call that waits on the
//! server is `async`, so a handler can await several at once.
//!
//! ```ignore
//! let redis = hostel_service::redis::Redis::open("cache")?;
//! let (hits, seen) = futures::join!(redis.incr("hits", 1), redis.get("last-seen"));
//! ```
//!
//! Plain commands share the host's multiplexed connection (concurrent calls are pipelined on
//! it); [`Redis::transaction`] leases one of the pool's connections for WATCH/MULTI/EXEC or
//! blocking commands until it is dropped, and runs one call at a time. Keys are namespaced per
//! tenant by the host: name your keys as if the server were yours. Commands, arguments and
//! reply values are the WASI 0.2 SDK's.

use crate::bindings::hostel::host0_2_0::redis as wit;
use std::time::Duration;

#[path = "../../rust/src/redis/command.rs"]
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

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key.to_string()).await
    }

    /// GET, as UTF-8 text (lossy).
    pub async fn get_string(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .get(key)
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub async fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.0
            .set(key.to_string(), value.as_ref().to_vec(), None)
            .await
    }

    /// SET with an expiry.
    pub async fn set_expiring(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.0
            .set(key.to_string(), value.as_ref().to_vec(), Some(millis(ttl)))
            .await
    }

    /// INCRBY: the new value.
    pub async fn incr(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.0.incr(key.to_string(), delta).await
    }

    /// How many of the keys were removed.
    pub async fn del(&self, keys_: &[&str]) -> Result<u32, Error> {
        self.0.del(keys(keys_)).await
    }

    /// How many of the keys exist.
    pub async fn exists(&self, keys_: &[&str]) -> Result<u32, Error> {
        self.0.exists(keys(keys_)).await
    }

    /// Whether the key exists (and now expires after `ttl`).
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, Error> {
        self.0.expire(key.to_string(), millis(ttl)).await
    }

    pub async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.hget(key.to_string(), field.to_string()).await
    }

    /// Whether the field is new.
    pub async fn hset(
        &self,
        key: &str,
        field: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        self.0
            .hset(key.to_string(), field.to_string(), value.as_ref().to_vec())
            .await
    }

    pub async fn hdel(&self, key: &str, fields: &[&str]) -> Result<u32, Error> {
        self.0.hdel(key.to_string(), keys(fields)).await
    }

    pub async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.0.hgetall(key.to_string()).await
    }

    pub async fn lpush<T: ToArg>(&self, key: &str, values: &[T]) -> Result<u32, Error> {
        self.0.lpush(key.to_string(), args(values)).await
    }

    pub async fn rpush<T: ToArg>(&self, key: &str, values: &[T]) -> Result<u32, Error> {
        self.0.rpush(key.to_string(), args(values)).await
    }

    pub async fn lpop(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.lpop(key.to_string()).await
    }

    pub async fn rpop(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.rpop(key.to_string()).await
    }

    /// LRANGE: inclusive, negative indexes count from the end (`0, -1` is the whole list).
    pub async fn lrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>, Error> {
        self.0.lrange(key.to_string(), start, stop).await
    }

    pub async fn llen(&self, key: &str) -> Result<u32, Error> {
        self.0.llen(key.to_string()).await
    }

    pub async fn sadd<T: ToArg>(&self, key: &str, members: &[T]) -> Result<u32, Error> {
        self.0.sadd(key.to_string(), args(members)).await
    }

    pub async fn srem<T: ToArg>(&self, key: &str, members: &[T]) -> Result<u32, Error> {
        self.0.srem(key.to_string(), args(members)).await
    }

    pub async fn smembers(&self, key: &str) -> Result<Vec<Vec<u8>>, Error> {
        self.0.smembers(key.to_string()).await
    }

    pub async fn sismember(&self, key: &str, member: impl ToArg) -> Result<bool, Error> {
        self.0.sismember(key.to_string(), member.to_arg()).await
    }

    /// How many subscribers got the message.
    pub async fn publish(&self, channel: &str, message: impl AsRef<[u8]>) -> Result<u32, Error> {
        self.0
            .publish(channel.to_string(), message.as_ref().to_vec())
            .await
    }

    /// Any command the host can namespace; array replies come flattened.
    pub async fn execute(&self, command: Cmd) -> Result<Vec<Value>, Error> {
        self.0.execute(command.0).await
    }

    /// Several commands in one round trip: one result per command, in order.
    pub async fn pipeline(&self, commands: &[Cmd]) -> Result<Vec<Reply>, Error> {
        let commands: Vec<wit::Command> = commands.iter().map(|c| c.0.clone()).collect();
        self.0.pipeline(commands).await
    }

    /// Leases a connection of the pool until the transaction is dropped.
    pub async fn transaction(&self) -> Result<Transaction, Error> {
        self.0.transaction().await.map(Transaction)
    }
}

/// A leased connection: WATCH, read, then [`Transaction::exec`] the writes atomically.
pub struct Transaction(wit::Transaction);

impl Transaction {
    pub async fn watch(&self, keys_: &[&str]) -> Result<(), Error> {
        self.0.watch(keys(keys_)).await
    }

    /// A command run now on the leased connection (reads after WATCH, BLPOP, ...).
    pub async fn execute(&self, command: Cmd) -> Result<Vec<Value>, Error> {
        self.0.execute(command.0).await
    }

    /// MULTI, the commands, EXEC. `None` when a watched key changed and nothing was applied:
    /// read again and retry.
    pub async fn exec(&self, commands: &[Cmd]) -> Result<Option<Vec<Reply>>, Error> {
        let commands: Vec<wit::Command> = commands.iter().map(|c| c.0.clone()).collect();
        self.0.exec(commands).await
    }
}
