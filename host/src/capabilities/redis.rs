//! `hostel:host/redis` over host-held Redis pools.
//!
//! App-lifetime state: one [`RedisPool`] per distinct configured server and settings, shared
//! by every request of every tenant granted it. Request-lifetime state: the guest's
//! `connection` handles and leased `transaction`s, in its resource table and dropped with the
//! sandbox — a lease goes back to its pool however the request ends, and one dropped in the
//! middle of something (WATCH pending, a command in flight) is closed rather than reused.
//! Every key is namespaced per tenant ([`namespace`]); every failure reaches the guest as an
//! `error` value, never a trap.

mod namespace;
mod pool;

use pool::Leased;
pub use pool::RedisPool;

use super::grants::Refusal;
use crate::apps::TenantRuntime;
use crate::sandbox::SandboxState;
use anyhow::Result;
use namespace::{On, Prepared};
use redis::Value as Reply;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

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

/// The view the generated host traits are implemented on.
pub struct Redis<'a> {
    tenant: &'a TenantRuntime,
    table: &'a mut ResourceTable,
}

struct RedisMarker;

impl HasData for RedisMarker {
    type Data<'a> = Redis<'a>;
}

pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> Result<()> {
    fn view(state: &mut SandboxState) -> Redis<'_> {
        let (tenant, table) = state.tenant_and_table();
        Redis { tenant, table }
    }
    wit::add_to_linker::<_, RedisMarker>(linker, view)?;
    Ok(())
}

/// What a failed Redis call tells the guest; server errors are the guest's business, the rest
/// is logged.
fn error_from(e: redis::RedisError) -> Error {
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

fn unavailable(e: anyhow::Error) -> Error {
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
    let why = crate::secrets::redact_text(&why);
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

fn values(reply: Reply, prepared_strip: Option<&[u8]>) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    flatten(reply, prepared_strip, &mut out)?;
    Ok(out)
}

/// Reads a typed result out of a reply (`get` wants bytes or nil, `incr` an integer, ...).
fn typed<T: redis::FromRedisValue>(reply: Reply) -> Result<T, Error> {
    redis::from_redis_value(reply).map_err(|e| Error::UnexpectedReply(e.to_string()))
}

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

fn prepare(namespace: &str, command: &Command, on: On) -> Result<Prepared, Error> {
    namespace::prepare(namespace, &command.name, &command.args, on).map_err(Error::Refused)
}

/// `name key values...`: a key and binary values.
fn keyed(name: &str, key: String, values: Vec<Vec<u8>>) -> Command {
    command(name, std::iter::once(key.into_bytes()).chain(values))
}

/// `name key args...` with string arguments: how the typed functions build their commands.
fn command(name: &str, args: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Command {
    Command {
        name: name.to_string(),
        args: args.into_iter().map(|a| a.as_ref().to_vec()).collect(),
    }
}

impl Redis<'_> {
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

impl wit::Host for Redis<'_> {}

impl wit::HostConnection for Redis<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<RedisHandle>, Error>> {
        let pool = match self.tenant.redis.open(&name) {
            Ok(pool) => pool.clone(),
            Err(Refusal::NotGranted) => {
                return Ok(Err(Error::NotGranted(format!(
                    "Redis pool {name:?} is not granted to this tenant"
                ))));
            }
            Err(Refusal::NoSuch) => {
                return Ok(Err(Error::NoSuchPool(format!(
                    "no Redis pool named {name:?} is configured"
                ))));
            }
        };
        let handle = RedisHandle {
            pool,
            namespace: self.tenant.namespace.clone(),
        };
        Ok(Ok(self.table.push(handle)?))
    }

    async fn get(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.run_typed(&h, command("GET", [key])).await
    }

    async fn set(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        value: Vec<u8>,
        expire_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let mut cmd = command("SET", [key.into_bytes(), value]);
        if let Some(ms) = expire_ms {
            cmd.args.push(b"PX".to_vec());
            cmd.args.push(ms.to_string().into_bytes());
        }
        Ok(self.run(&h, cmd).await?.map(drop))
    }

    async fn incr(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        self.run_typed(&h, command("INCRBY", [key, delta.to_string()]))
            .await
    }

    async fn del(
        &mut self,
        h: Resource<RedisHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        if keys.is_empty() {
            return Ok(Ok(0));
        }
        self.run_typed(&h, command("DEL", keys)).await
    }

    async fn exists(
        &mut self,
        h: Resource<RedisHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        if keys.is_empty() {
            return Ok(Ok(0));
        }
        self.run_typed(&h, command("EXISTS", keys)).await
    }

    async fn expire(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        expire_ms: u64,
    ) -> wasmtime::Result<Result<bool, Error>> {
        self.run_typed(&h, command("PEXPIRE", [key, expire_ms.to_string()]))
            .await
    }

    async fn hget(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        field: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.run_typed(&h, command("HGET", [key, field])).await
    }

    async fn hset(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        field: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let cmd = command("HSET", [key.into_bytes(), field.into_bytes(), value]);
        self.run_typed(&h, cmd).await
    }

    async fn hdel(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        fields: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        if fields.is_empty() {
            return Ok(Ok(0));
        }
        let cmd = command("HDEL", std::iter::once(key).chain(fields));
        self.run_typed(&h, cmd).await
    }

    async fn hgetall(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<(String, Vec<u8>)>, Error>> {
        self.run_typed(&h, command("HGETALL", [key])).await
    }

    async fn lpush(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        values: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        self.run_typed(&h, keyed("LPUSH", key, values)).await
    }

    async fn rpush(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        values: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        self.run_typed(&h, keyed("RPUSH", key, values)).await
    }

    async fn lpop(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.run_typed(&h, command("LPOP", [key])).await
    }

    async fn rpop(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.run_typed(&h, command("RPOP", [key])).await
    }

    async fn lrange(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        start: i64,
        stop: i64,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, Error>> {
        let cmd = command("LRANGE", [key, start.to_string(), stop.to_string()]);
        self.run_typed(&h, cmd).await
    }

    async fn llen(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
    ) -> wasmtime::Result<Result<u32, Error>> {
        self.run_typed(&h, command("LLEN", [key])).await
    }

    async fn sadd(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        members: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        self.run_typed(&h, keyed("SADD", key, members)).await
    }

    async fn srem(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        members: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        self.run_typed(&h, keyed("SREM", key, members)).await
    }

    async fn smembers(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, Error>> {
        self.run_typed(&h, command("SMEMBERS", [key])).await
    }

    async fn sismember(
        &mut self,
        h: Resource<RedisHandle>,
        key: String,
        member: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let cmd = command("SISMEMBER", [key.into_bytes(), member]);
        self.run_typed(&h, cmd).await
    }

    async fn publish(
        &mut self,
        h: Resource<RedisHandle>,
        channel: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let cmd = command("PUBLISH", [channel.into_bytes(), message]);
        self.run_typed(&h, cmd).await
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

impl wit::HostTransaction for Redis<'_> {
    async fn watch(
        &mut self,
        t: Resource<RedisLease>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let command = command("WATCH", keys);
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

impl Redis<'_> {
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
