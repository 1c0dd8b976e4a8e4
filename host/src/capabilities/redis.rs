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
//!
//! Two WIT versions, one implementation: `hostel:host/redis@0.1.0` (WASI 0.2 guests, each call
//! borrows the store until it returns) and `@0.2.0` (WASI 0.3 guests, `async func`s a guest may
//! await several of at once). Both hand each call to the same methods of [`RedisHandle`] and
//! [`LeaseCall`], which own what they need and borrow nothing from the store while they wait.

#[macro_use]
mod commands;
mod namespace;
mod pool;
mod replies;

use pool::Leased;
pub use pool::RedisPool;

use super::grants::{Grants, Refusal};
use super::servers::{self, PoolConfig, PoolKind, Servers};
use super::shape::{
    Capability, ConfigFile, HasView, RequestInfo, TenantInfo, WasiReleases, host_view,
    resource_calls,
};
use crate::metrics::{PoolClock, PoolTime, PoolTimer, RequestUsage};
use crate::sections::Table;
use crate::traces::pool_call;
use anyhow::Result;
use commands::Args;
use namespace::{On, Prepared};
use redis::Value as Reply;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use replies::{error_from, typed, unavailable, values};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "hostel:host/redis-host@0.1.0",
        imports: { default: async | trappable },
        with: {
            "hostel:host/redis@0.1.0.connection": super::RedisHandle,
            "hostel:host/redis@0.1.0.transaction": super::RedisLease,
        },
    });
}

/// The WASI 0.3 edition: its `async func`s are called concurrently, with an `Accessor` to the
/// store instead of the store itself; its types are 0.1.0's.
mod v0_2 {
    wasmtime::component::bindgen!({
        path: ["../wit", "../wit/service"],
        world: "hostel:host/redis-host@0.2.0",
        imports: { default: trappable },
        with: {
            "hostel:host/redis@0.1.0": super::v0_1::hostel::host::redis,
            "hostel:host/redis@0.2.0.connection": super::RedisHandle,
            "hostel:host/redis@0.2.0.transaction": super::RedisLease,
        },
    });
}

use v0_1::hostel::host::redis::{self as wit, Command, Error, Value};
use v0_2::hostel::host0_2_0::redis as wit_async;

/// A guest's handle on a pool: the pool and the tenant's namespace in it. Each call clones it
/// out of the resource table, so the call borrows nothing from the store while it waits.
#[derive(Clone)]
pub struct RedisHandle {
    pool: Arc<RedisPool>,
    namespace: Arc<str>,
    /// Times its calls and leases for the request's bill.
    clock: PoolClock,
}

/// A connection leased to one guest. Whatever it left behind (WATCH, ...) is cleared by the
/// pool's `RESET` before the next borrower gets it. A call takes the connection out for its
/// duration ([`LeaseCall`]): `None` while a call has it, or once it was closed.
pub struct RedisLease {
    connection: Option<Leased>,
    namespace: Arc<str>,
    /// The lease's whole life counts as pool time.
    _held: PoolTimer,
}

/// One call on a leased connection, owning the connection until [`RedisLease::give_back`].
/// A call cut off (the request ended mid-command) drops it unreturned: a command still in
/// flight could answer the next borrower, so the connection is closed instead, which also ends
/// a blocked command or an unfinished MULTI on the server.
pub struct LeaseCall {
    connection: Option<Leased>,
    namespace: Arc<str>,
}

impl Drop for LeaseCall {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            drop(Leased::take(connection));
        }
    }
}

impl RedisLease {
    fn take_for_call(&mut self) -> LeaseCall {
        LeaseCall {
            connection: self.connection.take(),
            namespace: self.namespace.clone(),
        }
    }

    /// Puts the connection back; a call that found it busy has none to return.
    fn give_back(&mut self, mut call: LeaseCall) {
        if let Some(connection) = call.connection.take() {
            self.connection = Some(connection);
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
    type Request = PoolTime;

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

    fn request(_: &TenantRedis, _: &RequestInfo<'_>) -> Result<PoolTime> {
        Ok(PoolTime::default())
    }

    fn usage(request: &PoolTime, usage: &mut RequestUsage) {
        usage.pool_time += request.total();
    }

    fn add_to_linker<T: HasView<Self>>(
        linker: &mut Linker<T>,
        releases: WasiReleases,
    ) -> Result<()> {
        wit::add_to_linker::<_, ViewData>(linker, view::<T>)?;
        // The async edition's concurrent host functions need the WASI 0.3 engine.
        if releases == WasiReleases::V0_3 {
            wit_async::add_to_linker::<_, ViewData>(linker, view::<T>)?;
        }
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
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<RedisHandle>, Error>> {
        let pool = match self.tenant.pools.open(&name) {
            Ok(pool) => pool.clone(),
            Err(refusal) => return Ok(Err(refusal.into())),
        };
        let handle = RedisHandle {
            pool,
            namespace: self.tenant.namespace.clone(),
            clock: self.request.clock(),
        };
        Ok(Ok(self.table.push(handle)?))
    }

    fn handle(&self, handle: &Resource<RedisHandle>) -> wasmtime::Result<RedisHandle> {
        Ok(self.table.get(handle)?.clone())
    }

    /// Handles hold nothing a call took.
    fn handle_done(&mut self, _: &Resource<RedisHandle>, _: RedisHandle) -> wasmtime::Result<()> {
        Ok(())
    }

    fn push_lease(
        &mut self,
        lease: Result<RedisLease, Error>,
    ) -> wasmtime::Result<Result<Resource<RedisLease>, Error>> {
        Ok(match lease {
            Ok(lease) => Ok(self.table.push(lease)?),
            Err(e) => Err(e),
        })
    }

    fn lease_call(&mut self, lease: &Resource<RedisLease>) -> wasmtime::Result<LeaseCall> {
        Ok(self.table.get_mut(lease)?.take_for_call())
    }

    fn give_back(&mut self, lease: &Resource<RedisLease>, call: LeaseCall) -> wasmtime::Result<()> {
        self.table.get_mut(lease)?.give_back(call);
        Ok(())
    }
}

/// What every `connection` call does, whichever WIT version the guest called it through.
impl RedisHandle {
    /// Runs `query` on the shared multiplexed connection, timed for the request's bill; a
    /// server found gone counts against the pool.
    async fn on_shared<T>(
        &self,
        query: impl AsyncFnOnce(&mut redis::aio::ConnectionManager) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _timed = self.clock.start();
        let mut connection = self.pool.shared().await.map_err(unavailable)?;
        let outcome = query(&mut connection).await;
        if let Err(Error::Unavailable(_)) = &outcome {
            self.pool.failed();
        }
        outcome
    }

    /// Runs one command on the shared multiplexed connection and returns the raw reply.
    async fn run(&self, command: Command) -> Result<Reply, Error> {
        let prepared = prepare(&self.namespace, &command, On::Shared)?;
        self.on_shared(async |connection| {
            prepared
                .cmd
                .query_async(connection)
                .await
                .map_err(error_from)
        })
        .await
    }

    /// `run`, then read the reply as `T`.
    async fn run_typed<T: redis::FromRedisValue>(&self, command: Command) -> Result<T, Error> {
        self.run(command).await.and_then(typed)
    }

    async fn set(&self, key: String, value: Vec<u8>, expire_ms: Option<u64>) -> Result<(), Error> {
        let mut args = Args::default().with(key).with(value);
        if let Some(ms) = expire_ms {
            args = args.with("PX").with(ms);
        }
        self.run(command("SET", args)).await.map(drop)
    }

    async fn execute(&self, command: Command) -> Result<Vec<Value>, Error> {
        let prepared = prepare(&self.namespace, &command, On::Shared)?;
        self.on_shared(async |connection| send(connection, &self.namespace, prepared).await)
            .await
    }

    async fn pipeline(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Vec<Value>, Error>>, Error> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let strips = add_all(&mut pipe, &self.namespace, &commands, On::Shared)?;
        let reply: Reply = self
            .on_shared(async |connection| pipe.query_async(connection).await.map_err(error_from))
            .await?;
        per_command(reply, &self.namespace, &strips)
    }

    async fn transaction(&self) -> Result<RedisLease, Error> {
        let held = self.clock.start();
        let connection = self.pool.lease().await.map_err(unavailable)?;
        Ok(RedisLease {
            connection: Some(connection),
            namespace: self.namespace.clone(),
            _held: held,
        })
    }
}

impl wit::Host for RedisView<'_> {}
impl wit_async::Host for RedisView<'_> {}

connection_calls! {
    // The typed commands: `function(parameters) -> reply = "COMMAND"`, the parameters sent in
    // order as its arguments. `nothing if P is empty` answers without a round trip where Redis
    // would refuse a command with no keys.
    typed {
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
    // Written out on `RedisHandle` above.
    others {
        set(key: String, value: Vec<u8>, expire_ms: Option<u64>) -> ();
        execute(command: Command) -> Vec<Value>;
        pipeline(commands: Vec<Command>) -> Vec<Result<Vec<Value>, Error>>;
    }
}

impl super::shape::Footprint for Command {
    const OWNS_HEAP: bool = true;
    fn heap_bytes(&self) -> usize {
        self.name.heap_bytes() + self.args.heap_bytes()
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

/// What every `transaction` call does, whichever WIT version the guest called it through.
impl LeaseCall {
    async fn watch(&mut self, keys: Vec<String>) -> Result<(), Error> {
        let command = command("WATCH", Args::default().with(keys));
        self.on_connection(async move |connection, namespace| {
            let prepared = prepare(namespace, &command, On::Leased)?;
            send(connection, namespace, prepared).await.map(drop)
        })
        .await
    }

    async fn execute(&mut self, command: Command) -> Result<Vec<Value>, Error> {
        self.on_connection(async move |connection, namespace| {
            let prepared = prepare(namespace, &command, On::Leased)?;
            send(connection, namespace, prepared).await
        })
        .await
    }

    async fn exec(
        &mut self,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Result<Vec<Value>, Error>>>, Error> {
        self.on_connection(async move |connection, namespace| {
            let mut pipe = redis::pipe();
            pipe.atomic().ignore_errors();
            let strips = add_all(&mut pipe, namespace, &commands, On::Leased)?;
            let reply: Reply = pipe.query_async(connection).await.map_err(error_from)?;
            match reply {
                // A watched key changed: nothing was applied.
                Reply::Nil => Ok(None),
                reply => per_command(reply, namespace, &strips).map(Some),
            }
        })
        .await
    }

    /// Runs `op` on the leased connection. Another call of the same guest holding it (a WASI 0.3
    /// guest awaiting two at once) or a closed connection is an `unavailable` error.
    async fn on_connection<T>(
        &mut self,
        op: impl AsyncFnOnce(&mut MultiplexedConnection, &str) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(Error::Unavailable(
                "the leased connection is busy with another call of this transaction, or was \
                 closed"
                    .into(),
            ));
        };
        op(connection, &self.namespace).await
    }
}

resource_calls! {
    Resource<RedisLease> => lease_call, give_back;
    errors Error;
    v0_1 RedisView: wit::HostTransaction {}
    v0_2 RedisView: wit_async::HostTransaction {}
    with store ViewData: wit_async::HostTransactionWithStore {}
    calls {
        watch(keys: Vec<String>) -> ();
        execute(command: Command) -> Vec<Value>;
        exec(commands: Vec<Command>) -> Option<Vec<Result<Vec<Value>, Error>>>;
    }
}
