//! `hostel:host/redis` over host-held Redis pools.
//!
//! Config: the `[pools]` entries of kind `redis`; a tenant's grant: `grants.pools`.
//! App-lifetime state: one [`RedisPool`] per distinct configured server and settings, shared
//! by every request of every tenant granted it. Tenant state: the pools it was granted and its
//! namespace. Request-lifetime state: the guest's
//! `connection` handles and leased `transaction`s, in its resource table and dropped with the
//! sandbox — a lease goes back to its pool however the request ends, and one dropped in the
//! middle of something (WATCH pending, a command in flight) is closed rather than reused.
//! Every key is namespaced per tenant ([`namespace`]); every failure reaches the guest as an
//! `error` value, never a trap.

#[macro_use]
mod commands;
mod namespace;
mod pool;
mod replies;

use pool::Leased;
pub use pool::RedisPool;

use super::grants::{Grants, Refusal};
use super::servers::{self, PoolConfig, PoolKind, Servers};
use super::shape::{Capability, ConfigFile, HasView, RequestInfo, TenantInfo, host_view};
use crate::sections::Table;
use anyhow::Result;
use commands::Args;
use namespace::{On, Prepared};
use redis::Value as Reply;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use replies::{error_from, typed, unavailable, values};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "hostel:host/redis-host",
        imports: { default: async | trappable },
        with: {
            "hostel:host/redis.connection": super::RedisHandle,
            "hostel:host/redis.transaction": super::RedisLease,
        },
    });
}

use bindings::hostel::host::redis::{self as wit, Command, Error, Value};

/// A guest's handle on a pool: the pool and the tenant's namespace in it.
pub struct RedisHandle {
    pool: Arc<RedisPool>,
    namespace: Arc<str>,
}

/// A connection leased to one guest. Whatever it left behind (WATCH, ...) is cleared by the
/// pool's `RESET` before the next borrower gets it; a command still in flight could answer the
/// next borrower, so such a connection is closed instead.
pub struct RedisLease {
    connection: Option<Leased>,
    namespace: Arc<str>,
    in_flight: bool,
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && self.in_flight
        {
            // Closing the connection ends a blocked command or an unfinished MULTI on the
            // server; the pool opens a fresh one when it needs it.
            drop(Leased::take(connection));
        }
    }
}

pub struct Redis;

/// A tenant's pools, and the prefix of its keys on them.
pub struct TenantRedis {
    pools: Grants<Arc<RedisPool>>,
    namespace: Arc<str>,
}

impl Capability for Redis {
    const GRANTS: &'static [&'static str] = &["pools"];

    type Config = BTreeMap<String, PoolConfig>;
    /// Names of the pools granted (of any kind).
    type Grant = Vec<String>;
    type App = HashMap<String, Arc<RedisPool>>;
    type Tenant = TenantRedis;
    type Request = ();

    fn config(file: &ConfigFile<'_>) -> Result<Self::Config> {
        Ok(servers::of_kind(file.pools, PoolKind::Redis))
    }

    fn grant(grants: &Table<'_>, _: &Self::Config, file: &ConfigFile<'_>) -> Result<Vec<String>> {
        servers::granted_pools(grants, file.pools)
    }

    fn app(
        pools: &Self::Config,
        _: &[(&str, &Vec<String>)],
        servers: &mut Servers,
    ) -> Result<Self::App> {
        pools
            .iter()
            .map(|(name, pool)| Ok((name.clone(), servers.shared(name, pool, RedisPool::new)?)))
            .collect()
    }

    fn tenant(
        pools: &Self::App,
        tenant: &TenantInfo<'_>,
        granted: &Vec<String>,
    ) -> Result<TenantRedis> {
        Ok(TenantRedis {
            pools: Grants::new(
                "Redis pool",
                "pools",
                granted,
                pools.iter().map(|(n, p)| (n, Some(p.clone()))),
            ),
            namespace: tenant.namespace.clone(),
        })
    }

    fn request(_: &TenantRedis, _: &RequestInfo<'_>) -> Result<()> {
        Ok(())
    }

    fn add_to_linker<T: HasView<Self>>(linker: &mut Linker<T>) -> Result<()> {
        wit::add_to_linker::<_, ViewData>(linker, view::<T>)?;
        Ok(())
    }
}

host_view!(RedisView for Redis);

/// Sends one prepared command, its reply as the guest sees it.
async fn send(
    connection: &mut impl ConnectionLike,
    namespace: &str,
    prepared: Prepared,
) -> Result<Vec<Value>, Error> {
    let reply: Reply = prepared
        .cmd
        .query_async(connection)
        .await
        .map_err(error_from)?;
    // Only blocking pops answer with a key to un-prefix; other commands build no prefix.
    let prefix = (prepared.strip_key_from_reply).then(|| namespace::prefixed(namespace, b""));
    values(reply, prefix.as_deref())
}

/// `name` with `args`: how the typed functions build their commands.
fn command(name: &str, args: Args) -> Command {
    Command {
        name: name.to_string(),
        args: args.into_inner(),
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal {
            Refusal::NoSuch(message) => Error::NoSuchPool(message),
            Refusal::NotGranted(message) => Error::NotGranted(message),
        }
    }
}

fn prepare(namespace: &str, command: &Command, on: On) -> Result<Prepared, Error> {
    namespace::prepare(namespace, &command.name, &command.args, on).map_err(Error::Refused)
}

impl RedisView<'_> {
    /// The pool and namespace behind a guest's handle.
    fn parts(
        &self,
        handle: &Resource<RedisHandle>,
    ) -> wasmtime::Result<(Arc<RedisPool>, Arc<str>)> {
        let handle = self.table.get(handle)?;
        Ok((handle.pool.clone(), handle.namespace.clone()))
    }

    /// Runs one command on the shared multiplexed connection and returns the raw reply.
    async fn run(
        &mut self,
        handle: &Resource<RedisHandle>,
        command: Command,
    ) -> wasmtime::Result<Result<Reply, Error>> {
        let (pool, namespace) = self.parts(handle)?;
        Ok(async {
            let prepared = prepare(&namespace, &command, On::Shared)?;
            let mut connection = pool.shared().await.map_err(unavailable)?;
            prepared
                .cmd
                .query_async(&mut connection)
                .await
                .map_err(error_from)
        }
        .await)
    }

    /// `run`, then read the reply as `T`.
    async fn run_typed<T: redis::FromRedisValue>(
        &mut self,
        handle: &Resource<RedisHandle>,
        command: Command,
    ) -> wasmtime::Result<Result<T, Error>> {
        Ok(self.run(handle, command).await?.and_then(typed))
    }

    fn lease(&mut self, lease: &Resource<RedisLease>) -> wasmtime::Result<&mut RedisLease> {
        Ok(self.table.get_mut(lease)?)
    }
}

impl wit::Host for RedisView<'_> {}

impl wit::HostConnection for RedisView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<RedisHandle>, Error>> {
        let pool = match self.tenant.pools.open(&name) {
            Ok(pool) => pool.clone(),
            Err(refusal) => return Ok(Err(refusal.into())),
        };
        let handle = RedisHandle {
            pool,
            namespace: self.tenant.namespace.clone(),
        };
        Ok(Ok(self.table.push(handle)?))
    }

    async fn set(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        value: Vec<u8>,
        expire_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let mut args = Args::default().with(key).with(value);
        if let Some(ms) = expire_ms {
            args = args.with("PX").with(ms);
        }
        Ok(self.run(&h, command("SET", args)).await?.map(drop))
    }

    // The typed commands: `function(parameters) -> reply = "COMMAND"`, the parameters sent in
    // order as its arguments. `nothing if P is empty` answers without a round trip where Redis
    // would refuse a command with no keys.
    typed_commands! {
        get(key: String) -> Option<Vec<u8>> = "GET";
        incr(key: String, delta: i64) -> i64 = "INCRBY";
        del(keys: Vec<String>) -> u32 = "DEL", nothing if keys is empty;
        exists(keys: Vec<String>) -> u32 = "EXISTS", nothing if keys is empty;
        expire(key: String, expire_ms: u64) -> bool = "PEXPIRE";
        hget(key: String, field: String) -> Option<Vec<u8>> = "HGET";
        hset(key: String, field: String, value: Vec<u8>) -> bool = "HSET";
        hdel(key: String, fields: Vec<String>) -> u32 = "HDEL", nothing if fields is empty;
        hgetall(key: String) -> Vec<(String, Vec<u8>)> = "HGETALL";
        lpush(key: String, values: Vec<Vec<u8>>) -> u32 = "LPUSH";
        rpush(key: String, values: Vec<Vec<u8>>) -> u32 = "RPUSH";
        lpop(key: String) -> Option<Vec<u8>> = "LPOP";
        rpop(key: String) -> Option<Vec<u8>> = "RPOP";
        lrange(key: String, start: i64, stop: i64) -> Vec<Vec<u8>> = "LRANGE";
        llen(key: String) -> u32 = "LLEN";
        sadd(key: String, members: Vec<Vec<u8>>) -> u32 = "SADD";
        srem(key: String, members: Vec<Vec<u8>>) -> u32 = "SREM";
        smembers(key: String) -> Vec<Vec<u8>> = "SMEMBERS";
        sismember(key: String, member: Vec<u8>) -> bool = "SISMEMBER";
        publish(channel: String, message: Vec<u8>) -> u32 = "PUBLISH";
    }

    async fn execute(
        &mut self,
        h: Resource<RedisHandle>,
        command: Command,
    ) -> wasmtime::Result<Result<Vec<Value>, Error>> {
        let (pool, namespace) = self.parts(&h)?;
        Ok(async {
            let prepared = prepare(&namespace, &command, On::Shared)?;
            let mut connection = pool.shared().await.map_err(unavailable)?;
            send(&mut connection, &namespace, prepared).await
        }
        .await)
    }

    async fn pipeline(
        &mut self,
        h: Resource<RedisHandle>,
        commands: Vec<Command>,
    ) -> wasmtime::Result<Result<Vec<Result<Vec<Value>, Error>>, Error>> {
        let (pool, namespace) = self.parts(&h)?;
        Ok(async {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            let strips = add_all(&mut pipe, &namespace, &commands, On::Shared)?;
            let mut connection = pool.shared().await.map_err(unavailable)?;
            let reply: Reply = pipe
                .query_async(&mut connection)
                .await
                .map_err(error_from)?;
            per_command(reply, &namespace, &strips)
        }
        .await)
    }

    async fn transaction(
        &mut self,
        h: Resource<RedisHandle>,
    ) -> wasmtime::Result<Result<Resource<RedisLease>, Error>> {
        let (pool, namespace) = self.parts(&h)?;
        let connection = match pool.lease().await {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(unavailable(e))),
        };
        let lease = RedisLease {
            connection: Some(connection),
            namespace,
            in_flight: false,
        };
        Ok(Ok(self.table.push(lease)?))
    }

    async fn drop(&mut self, h: Resource<RedisHandle>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

/// Adds the commands to a pipeline; for each, whether its reply carries a key to un-prefix.
fn add_all(
    pipe: &mut redis::Pipeline,
    namespace: &str,
    commands: &[Command],
    on: On,
) -> Result<Vec<bool>, Error> {
    commands
        .iter()
        .map(|command| {
            let prepared = prepare(namespace, command, on)?;
            pipe.add_command(prepared.cmd);
            Ok(prepared.strip_key_from_reply)
        })
        .collect()
}

/// Splits a pipeline's (or EXEC's) array reply into one result per command.
fn per_command(
    reply: Reply,
    namespace: &str,
    strips: &[bool],
) -> Result<Vec<Result<Vec<Value>, Error>>, Error> {
    let Reply::Array(items) = reply else {
        return Err(Error::UnexpectedReply(format!(
            "expected one reply per command, got {reply:?}"
        )));
    };
    let prefix = namespace::prefixed(namespace, b"");
    Ok(items
        .into_iter()
        .zip(strips)
        .map(|(item, &strip)| values(item, strip.then_some(&prefix[..])))
        .collect())
}

impl wit::HostTransaction for RedisView<'_> {
    async fn watch(
        &mut self,
        t: Resource<RedisLease>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let command = command("WATCH", Args::default().with(keys));
        self.on_lease(&t, async move |connection, namespace| {
            let prepared = prepare(&namespace, &command, On::Leased)?;
            send(connection, &namespace, prepared).await.map(drop)
        })
        .await
    }

    async fn execute(
        &mut self,
        t: Resource<RedisLease>,
        command: Command,
    ) -> wasmtime::Result<Result<Vec<Value>, Error>> {
        self.on_lease(&t, async move |connection, namespace| {
            let prepared = prepare(&namespace, &command, On::Leased)?;
            send(connection, &namespace, prepared).await
        })
        .await
    }

    async fn exec(
        &mut self,
        t: Resource<RedisLease>,
        commands: Vec<Command>,
    ) -> wasmtime::Result<Result<Option<Vec<Result<Vec<Value>, Error>>>, Error>> {
        self.on_lease(&t, async move |connection, namespace| {
            let mut pipe = redis::pipe();
            pipe.atomic().ignore_errors();
            let strips = add_all(&mut pipe, &namespace, &commands, On::Leased)?;
            let reply: Reply = pipe.query_async(connection).await.map_err(error_from)?;
            match reply {
                // A watched key changed: nothing was applied.
                Reply::Nil => Ok(None),
                reply => per_command(reply, &namespace, &strips).map(Some),
            }
        })
        .await
    }

    async fn drop(&mut self, t: Resource<RedisLease>) -> wasmtime::Result<()> {
        self.table.delete(t)?;
        Ok(())
    }
}

impl RedisView<'_> {
    /// Runs `op` on a leased connection, marked in flight until it completes: a request that
    /// ends mid-command (timeout) drops the lease with the mark still set.
    async fn on_lease<T>(
        &mut self,
        t: &Resource<RedisLease>,
        op: impl AsyncFnOnce(&mut MultiplexedConnection, Arc<str>) -> Result<T, Error>,
    ) -> wasmtime::Result<Result<T, Error>> {
        let lease = self.lease(t)?;
        let namespace = lease.namespace.clone();
        let Some(connection) = lease.connection.as_mut() else {
            return Ok(Err(Error::Unavailable(
                "the leased connection was closed".into(),
            )));
        };
        lease.in_flight = true;
        let outcome = op(&mut *connection, namespace).await;
        lease.in_flight = false;
        Ok(outcome)
    }
}
